#!/usr/bin/env bash
# Runs schemathesis against a fresh `tokenfn serve` with docs/openapi.yaml.
# Usage: scripts/schemathesis.sh [TOKENFN_BINARY]
#
# The server runs on the embedded store in a temporary data folder, on a free
# loopback port. A confidential client, a public client and a user are seeded
# with the admin commands first, so that the authenticated paths are reached:
# schemathesis sends the confidential client's HTTP Basic credentials where
# the document allows them, and an access token (from a password grant) to
# UserInfo. Before that, docs/checks/walk_flows.py goes through the flows
# that generated requests seldom reach. Every response of both is checked
# against docs/openapi.yaml, and the server must not panic or die.
# Needs schemathesis in .venv (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/tokenfn}"
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance

DATA=$(mktemp -d)
REPORT="${TOKENFN_ST_REPORT_DIR:-${CARGO_TARGET_DIR:-target}/schemathesis}"
mkdir -p "$REPORT"
rm -f "$REPORT"/events-*.ndjson "$REPORT"/junit-*.xml "$REPORT"/*.toml "$REPORT"/passwords.dict
SERVER_PID=
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
export TOKENFN_ST_CLIENT_ID=st-web
TOKENFN_ST_CLIENT_SECRET=$(secret)
export TOKENFN_ST_CLIENT_SECRET
USER_PASSWORD=$(secret)
REDIRECT=http://127.0.0.1/st/callback
printf '%s' "$TOKENFN_ST_CLIENT_SECRET" | "$BIN" --data-dir "$DATA" client add --client-id st-web \
  --secret-stdin --redirect-uri "$REDIRECT" \
  --grant-types authorization_code,refresh_token,client_credentials,password,device_code \
  --access-token-ttl 3600 > /dev/null
"$BIN" --data-dir "$DATA" client add --client-id st-public --public --redirect-uri "$REDIRECT" \
  --grant-types authorization_code,refresh_token,device_code > /dev/null
printf '%s' "$USER_PASSWORD" | "$BIN" --data-dir "$DATA" user add --username st-user \
  --password-stdin --email st-user@example.com > /dev/null

"$BIN" --data-dir "$DATA" serve --addr 127.0.0.1:0 > "$REPORT/serve.out" 2> "$REPORT/serve.log" &
SERVER_PID=$!
URL=
for _ in $(seq 100); do
  URL=$(sed -n 's/^tokenfn listening on //p' "$REPORT/serve.out")
  [[ -n "$URL" ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$REPORT/serve.log"; echo "tokenfn serve did not start" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$URL" ]] || { echo "tokenfn serve did not say where it listens" >&2; exit 1; }

# First the flows that generated requests seldom reach (a real sign-in,
# live tokens, the pages' forms), each response checked against the
# document too. Before schemathesis, whose wrong passwords would make the
# user's sign-ins wait.
TOKENFN_ST_USER_PASSWORD="$USER_PASSWORD" .venv/bin/python docs/checks/walk_flows.py "$URL"

# An access token with openid for UserInfo, through the password grant.
TOKENFN_ST_ACCESS_TOKEN=$(USER_PASSWORD="$USER_PASSWORD" python3 - "$URL" <<'PY'
import base64, json, os, sys, urllib.parse, urllib.request
body = urllib.parse.urlencode({"grant_type": "password", "username": "st-user",
    "password": os.environ["USER_PASSWORD"], "scope": "openid profile email"}).encode()
basic = base64.b64encode(f"{os.environ['TOKENFN_ST_CLIENT_ID']}:{os.environ['TOKENFN_ST_CLIENT_SECRET']}".encode())
req = urllib.request.Request(sys.argv[1] + "/oauth/token", data=body,
    headers={"Authorization": "Basic " + basic.decode(), "Content-Type": "application/x-www-form-urlencoded"})
print(json.load(urllib.request.urlopen(req, timeout=30))["access_token"])
PY
)
export TOKENFN_ST_ACCESS_TOKEN

# Two passes: with the seeded credentials (HTTP Basic where the document
# allows it, a bearer token at UserInfo), and without any, so that public
# clients, missing credentials and their 401s are exercised too.
printf '"%s"\n' "$USER_PASSWORD" > "$REPORT/passwords.dict"
cp docs/checks/schemathesis.toml "$REPORT/authenticated.toml"
sed '/^\[auth/,/^$/d' docs/checks/schemathesis.toml > "$REPORT/anonymous.toml"
START=$SECONDS
STATUS=0
for pass in authenticated anonymous; do
  config="$REPORT/$pass.toml"
  echo "schemathesis ($pass) against $URL; checks $CHECKS"
  .venv/bin/schemathesis --config-file "$config" run docs/openapi.yaml \
    --url "$URL" --checks "$CHECKS" --seed "${TOKENFN_ST_SEED:-20261126}" \
    --workers 1 --no-color --generation-database none --suppress-health-check too_slow,filter_too_much \
    --report junit,ndjson --report-junit-path "$REPORT/junit-$pass.xml" \
    --report-ndjson-path "$REPORT/events-$pass.ndjson" || STATUS=$?
done

# How many requests were made, from the runs' events.
.venv/bin/python - "$((SECONDS - START))" "$REPORT"/events-*.ndjson <<'PY'
import json, sys
cases = 0
for path in sys.argv[2:]:
    with open(path) as events:
        for line in events:
            scenario = json.loads(line).get("ScenarioFinished")
            if scenario:
                cases += len(scenario.get("recorder", {}).get("cases", {}))
print(f"schemathesis: {cases} cases in {sys.argv[1]} s")
PY

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "tokenfn serve died during the run; see $REPORT/serve.log" >&2
  exit 1
fi
if grep -q "panicked" "$REPORT/serve.log"; then
  grep -A3 "panicked" "$REPORT/serve.log" >&2
  echo "tokenfn serve panicked during the run" >&2
  exit 1
fi
exit "$STATUS"
