#!/usr/bin/env bash
# End-to-end tests of tokenfn's HTML pages in headless Chromium: sign-in and
# consent, two-step verification, the device flow, connected apps, error
# pages and the playground, each page checked with axe-core and at phone
# width. Each test file starts its own `tokenfn serve` on a fresh data folder.
#
# Usage: scripts/browser.sh [PATH_TO_TOKENFN_BINARY]
#   (default: ${CARGO_TARGET_DIR:-target}/debug/tokenfn; build it first)
# Installs Debian's chromium if /usr/bin/chromium is missing, and the npm
# packages of browser/ (playwright-core and axe-core, no browser download).
# Screenshots, the HTML of failed pages, the servers' logs and the axe
# findings go to target/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/tokenfn}"
if [[ ! -x "$BIN" ]]; then
  echo "browser.sh: no tokenfn binary at $BIN (build it with cargo build first)" >&2
  exit 1
fi
BIN="$(realpath "$BIN")"
OUT="$PWD/target/browser"
step() { printf '\n==> %s\n' "$*"; }

if [[ ! -x /usr/bin/chromium ]]; then
  step "Chromium (Debian's package)"
  SUDO=()
  if [[ "$(id -u)" -ne 0 ]]; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

step "npm packages of browser/ (playwright-core, axe-core)"
(cd browser && npm ci --no-audit --no-fund)

step "browser tests against $BIN"
rm -rf "$OUT"
mkdir -p "$OUT"
status=0
TOKENFN_BIN="$BIN" TOKENFN_BROWSER_OUT="$OUT" \
  node --test --test-reporter=spec browser/tests/*.test.mjs || status=$?

node browser/summary.mjs "$OUT" || true
echo "screenshots and logs: $OUT"
exit "$status"
