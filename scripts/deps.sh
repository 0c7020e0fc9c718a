#!/usr/bin/env bash
# Installs what Maildrop needs to run and test, from Debian's packages, when it is missing:
# nats-server (JetStream) and redis-server. Idempotent; prints what it does.
set -euo pipefail

need=()
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# Extra tools by command name, e.g. `deps.sh openssl python3 swaks`; `command:package` when
# Debian's package has another name (`node:nodejs`).
for tool in "$@"; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps: installing ${need[*]} from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
