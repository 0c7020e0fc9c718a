# Maildrop: `make run` to start everything, `make test` for the test suite.
CARGO ?= cargo

.PHONY: run test deps build lint bench fmt clean help

help:
	@echo "make run    install nats-server/redis-server if missing, build, start all five stages"
	@echo "make test   install what the tests need if missing, then run every test"
	@echo "make lint   rustfmt and clippy, as CI runs them"
	@echo "make bench  benchmarks: Maildrop against smtp-sink and Haraka, push, idle connections, soak"

deps:
	@scripts/deps.sh openssl python3 swaks rspamd redis-cli:redis-tools

build:
	$(CARGO) build --release --bins

run:
	@scripts/deps.sh openssl
	$(CARGO) build --release --bins
	@scripts/run.sh

# The tests also drive real clients (Python's smtplib, swaks), make TLS certificates (openssl)
# and open the web page in Debian's Chromium, driven by Node and playwright-core (e2e/browser).
# The fault tests (e2e/tests/faults.rs) run the stage binaries as processes: built first. The
# Redis Cluster test joins three redis-server nodes with redis-cli (Debian: redis-tools).
test:
	@scripts/deps.sh openssl python3 swaks rspamd chromium node:nodejs npm redis-cli:redis-tools
	cd e2e/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	$(CARGO) build --workspace --bins
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .run

# `scenario all` starts its own nats-server, redis-server, stages (the release binaries, as
# processes) and peers (Postfix's smtp-sink, Haraka), so nothing needs to be running; it runs the
# peers, push, connections and soak scenarios and stops by itself (the soak takes 3 minutes:
# MAILDROP_BENCH_SOAK_DURATION to change it). See docs/benchmarks.md.
bench:
	@scripts/deps.sh
	@scripts/bench-deps.sh
	$(CARGO) build --release --bins
	$(CARGO) run --release -p maildrop-bench -- scenario all
