#!/usr/bin/env bash
# `make run`: starts a private nats-server (JetStream) and redis-server with their data under .run/,
# then the five stages, prints where to look, and stops everything on Ctrl-C.
#
# Ports (override in the environment): SMTP 2525, HTTP 8080, NATS 14222, Redis 16379. The servers'
# own ports are not the standard ones, so a nats-server or redis-server already running on this
# machine is left alone.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/.run"
bin="${MAILDROP_BIN:-$root/target/release}"
smtp_port=${SMTP_PORT:-2525}
http_port=${HTTP_PORT:-8080}
nats_port=${NATS_PORT:-14222}
redis_port=${REDIS_PORT:-16379}

mkdir -p "$run/nats" "$run/redis" "$run/logs"
pids=()

stop() {
  trap - INT TERM EXIT
  echo
  echo "Stopping…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "Stopped. Logs are in .run/logs/."
}
trap stop INT TERM EXIT

cat > "$run/nats.conf" <<CONF
listen: 127.0.0.1:$nats_port
# Messages up to the SMTP size limit (10 MiB by default) must fit in one NATS message.
max_payload: 16777216
jetstream {
  store_dir: "$run/nats"
}
CONF
nats-server -c "$run/nats.conf" >"$run/logs/nats.log" 2>&1 &
pids+=($!)
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$run/redis" --save 60 1 --appendonly no \
  >"$run/logs/redis.log" 2>&1 &
pids+=($!)

# A self-signed certificate, so STARTTLS can be tried locally (`swaks --tls`).
if [ ! -s "$run/tls/cert.pem" ] && command -v openssl >/dev/null 2>&1; then
  mkdir -p "$run/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=localhost" \
    -keyout "$run/tls/key.pem" -out "$run/tls/cert.pem" >/dev/null 2>&1 || rm -f "$run/tls/"*.pem
fi
if [ -s "$run/tls/cert.pem" ]; then
  export MAILDROP_TLS_CERT="$run/tls/cert.pem" MAILDROP_TLS_KEY="$run/tls/key.pem"
fi
# A random alias key for this installation, kept across runs so aliases stay valid.
[ -s "$run/alias.key" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$run/alias.key"
export MAILDROP_ALIAS_KEY="${MAILDROP_ALIAS_KEY:-$(cat "$run/alias.key")}"

export MAILDROP_NATS_URL="nats://127.0.0.1:$nats_port"
export MAILDROP_REDIS_URL="redis://127.0.0.1:$redis_port"
export MAILDROP_SMTP_ADDR="${MAILDROP_SMTP_ADDR:-127.0.0.1:$smtp_port}"
export MAILDROP_HTTP_ADDR="${MAILDROP_HTTP_ADDR:-127.0.0.1:$http_port}"
export MAILDROP_DOMAINS="${MAILDROP_DOMAINS:-maildrop.localhost}"

for stage in ingest filter store-writer reporter gateway; do
  "$bin/maildrop-$stage" >"$run/logs/$stage.log" 2>&1 &
  pids+=($!)
done

# Wait until the gateway answers (it starts after NATS and Redis do).
for _ in $(seq 1 100); do
  if (exec 3<>/dev/tcp/"${MAILDROP_HTTP_ADDR%:*}"/"${MAILDROP_HTTP_ADDR##*:}") 2>/dev/null; then break; fi
  sleep 0.1
done

domain=${MAILDROP_DOMAINS%%,*}
cat <<MSG

  Maildrop is running.

    Web page   http://$MAILDROP_HTTP_ADDR/
    API        http://$MAILDROP_HTTP_ADDR/api/stats
    SMTP       $MAILDROP_SMTP_ADDR   (mail to anything@$domain)
    Logs       .run/logs/<stage>.log
    Metrics    http://$MAILDROP_HTTP_ADDR/metrics, and /metrics, /readyz on 127.0.0.1:9101-9104
               (ingest, filter, store-writer, reporter; see docs/operations.md)

  Try:  swaks --server $MAILDROP_SMTP_ADDR --to hello@$domain
   or:  python3 -c 'import smtplib; smtplib.SMTP("${MAILDROP_SMTP_ADDR%:*}", ${MAILDROP_SMTP_ADDR##*:}).sendmail("me@example.org", ["hello@$domain"], "Subject: hi\r\n\r\nhello")'
  then open http://$MAILDROP_HTTP_ADDR/inbox/hello

  Ctrl-C stops everything.
MSG

# Exit (and stop the rest) if any process dies.
wait -n "${pids[@]}" || true
echo "A process exited; see .run/logs/." >&2
