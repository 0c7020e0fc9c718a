#!/usr/bin/env bash
# Installs what `make bench` needs beyond scripts/deps.sh: Postfix's smtp-sink (Debian's postfix
# package, preseeded to "No configuration" so it installs no mail system and starts nothing), node
# and npm, and the Haraka peer from its lock file (npm ci in bench/peers/haraka). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/smtp-sink ] || command -v smtp-sink >/dev/null 2>&1 || need+=(postfix)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "bench-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "bench-deps: installing ${need[*]} from Debian's packages"
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# The Haraka peer, exactly as locked; reinstalled only when the lock file changed.
haraka=bench/peers/haraka
if [ ! -f "$haraka/node_modules/.package-lock.json" ] || [ "$haraka/package-lock.json" -nt "$haraka/node_modules/.package-lock.json" ]; then
  echo "bench-deps: npm ci in $haraka"
  (cd "$haraka" && npm ci --no-audit --no-fund --loglevel=error)
fi
