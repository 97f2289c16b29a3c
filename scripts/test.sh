#!/usr/bin/env bash
# Runs every check and every test of tokenfn. Usage: scripts/test.sh
#
# DynamoDB and KMS in the tests are moto's server, installed into .venv and
# started here on a free loopback port.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
# The first test run is on the embedded backend whatever the shell says.
unset TOKENFN_BLACKBOX_BACKEND
step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings

step "build the binaries the black-box tests run"
cargo build --workspace --bins

step "moto ${MOTO_VERSION} (DynamoDB and KMS emulator)"
if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '${MOTO_VERSION}')" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
fi

step "infrastructure: cfn-lint and the template checks"
.venv/bin/pip install --quiet --disable-pip-version-check -r infra/checks/requirements.txt
.venv/bin/cfn-lint infra/template.yaml
.venv/bin/python -m pytest infra/checks -q -p no:cacheprovider

step "the API document: docs/openapi.yaml against the routers' routes"
.venv/bin/pip install --quiet --disable-pip-version-check -r docs/checks/requirements.txt
.venv/bin/python -m pytest docs/checks -q -p no:cacheprovider

step "infrastructure: the CDK app (assertions on the template; builds no Rust)"
(cd infra/cdk && npm ci --no-audit --no-fund && npm test)

step "start moto"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
# Single-threaded: moto's TransactWriteItems copies and restores the whole
# table without a lock, so two concurrent transactions could both win.
.venv/bin/python -c 'import moto.server as m; r = m.run_simple; m.run_simple = lambda *a, **k: r(*a, **{**k, "threaded": False}); m.main()' \
  -H 127.0.0.1 -p "$PORT" > target/moto.log 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
# Wait until it accepts connections (at most 10 s).
python3 - "$PORT" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("moto did not start; see target/moto.log")
PY
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

step "tests"
cargo test --workspace

step "black-box tests again, on DynamoDB + KMS (serve --store dynamodb --signer kms)"
TOKENFN_BLACKBOX_BACKEND=aws cargo test -p tokenfn-blackbox --test cli --test discovery --test errors --test oidc_flow --test refresh \
  --test token_apis --test device_flow --test mfa_login --test connected_apps --test abuse --test secrets_at_rest

BIN="${CARGO_TARGET_DIR:-target}/debug"

step "schemathesis: generated requests against tokenfn serve, checked against docs/openapi.yaml"
scripts/schemathesis.sh "$BIN/tokenfn"

step "the pages in a real browser (Playwright driving Debian's Chromium, axe-core)"
scripts/browser.sh "$BIN/tokenfn"

step "benchmark harness smoke run"
# A few seconds of the load generator against a fresh `tokenfn serve` (the
# debug build); the full benchmark is scripts/bench.sh and not part of this.
"$BIN/tokenfn-bench" smoke --tokenfn "$BIN/tokenfn"
