# Maildrop: `make run` to start everything, `make test` for the test suite.
CARGO ?= cargo

.PHONY: run test deps build lint bench fmt clean help

help:
	@echo "make run    install nats-server/redis-server if missing, build, start all five stages"
	@echo "make test   install what the tests need if missing, then run every test"
	@echo "make lint   rustfmt and clippy, as CI runs them"
	@echo "make bench  benchmarks (ingest throughput, end to end)"

deps:
	@scripts/deps.sh openssl python3 swaks

build:
	$(CARGO) build --release --bins

run:
	@scripts/deps.sh openssl
	$(CARGO) build --release --bins
	@scripts/run.sh

# The tests also drive real clients (Python's smtplib, swaks) and make TLS certificates (openssl).
test:
	@scripts/deps.sh openssl python3 swaks
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

# Both scenarios start their own nats-server, redis-server and stages in-process, so nothing needs
# to be running; each stops by itself within about two minutes. See docs/benchmarks.md.
bench:
	@scripts/deps.sh
	$(CARGO) run --release -p maildrop-bench -- scenario ingest
	$(CARGO) run --release -p maildrop-bench -- scenario pipeline
