"""Walks the flows that generated requests seldom reach (they need a real
password, a live token or a form from the previous page) against a running
`tokenfn serve`, and checks each response against docs/openapi.yaml with
schemathesis' own validation, besides its expected status.

Usage: walk_flows.py BASE_URL, with TOKENFN_ST_CLIENT_ID,
TOKENFN_ST_CLIENT_SECRET and TOKENFN_ST_USER_PASSWORD in the environment
(scripts/schemathesis.sh seeds them: a confidential client allowed every
grant, redirect URI http://127.0.0.1/st/callback, and the user st-user).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import requests
import schemathesis

DOCUMENT = Path(__file__).resolve().parents[1] / "openapi.yaml"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REDIRECT_URI = "http://127.0.0.1/st/callback"


class Walk:
    def __init__(self, url: str) -> None:
        self.url = url
        self.schema = schemathesis.openapi.from_path(str(DOCUMENT))
        self.client = (os.environ["TOKENFN_ST_CLIENT_ID"], os.environ["TOKENFN_ST_CLIENT_SECRET"])
        self.password = os.environ["TOKENFN_ST_USER_PASSWORD"]
        self.browser = requests.Session()
        self.steps = 0

    def call(self, what: str, method: str, path: str, status: int, *, browser: bool = False, **kw) -> requests.Response:
        http = self.browser if browser else requests
        r = http.request(method, self.url + path, allow_redirects=False, timeout=30, **kw)
        assert r.status_code == status, f"{what}: expected {status}, got {r.status_code}: {r.text[:300]}"
        self.schema[path][method].validate_response(r)
        self.steps += 1
        return r

    def token(self, what: str, status: int, auth=None, **form) -> requests.Response:
        return self.call(what, "POST", "/oauth/token", status, auth=auth or self.client, data=form)


def form_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'name="(interaction|csrf)" value="([^"]*)"', page))


def main(url: str) -> None:
    w = Walk(url)
    scope = "openid profile email offline_access"
    tokens = w.token("password grant", 200, grant_type="password", username="st-user", password=w.password, scope=scope).json()
    assert {"refresh_token", "id_token"} <= tokens.keys(), tokens
    for kind in ("access_token", "refresh_token"):
        body = w.call(f"introspect the {kind}", "POST", "/oauth/introspect", 200, auth=w.client, data={"token": tokens[kind]}).json()
        assert body["active"] is True, body
    bearer = {"Authorization": "Bearer " + tokens["access_token"]}
    assert w.call("userinfo", "GET", "/userinfo", 200, headers=bearer).json()["preferred_username"] == "st-user"
    w.call("userinfo in the form", "POST", "/userinfo", 200, data={"access_token": tokens["access_token"]})
    w.call("userinfo both ways", "POST", "/userinfo", 400, headers=bearer, data={"access_token": tokens["access_token"]})
    w.call("userinfo without a token", "GET", "/userinfo", 401)
    rotated = w.call("refresh", "POST", "/oauth/refresh", 200, auth=w.client, data={"refresh_token": tokens["refresh_token"]}).json()
    reuse = w.token("reuse of the spent token", 400, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    assert reuse["error"] == "invalid_grant", reuse
    w.token("the family is revoked", 400, grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    body = w.call("introspect the revoked", "POST", "/oauth/introspect", 200, auth=w.client, data={"token": rotated["access_token"]}).json()
    assert body == {"active": False}, body
    w.call("revoke", "POST", "/oauth/revoke", 200, auth=w.client, data={"token": rotated["refresh_token"]})
    wrong = w.token("a wrong secret over Basic", 401, auth=(w.client[0], "wrong"), grant_type="client_credentials")
    assert wrong.headers["www-authenticate"].startswith("Basic"), wrong.headers
    w.call("a wrong secret in the form", "POST", "/oauth/token", 401, data={"grant_type": "client_credentials", "client_id": w.client[0], "client_secret": "wrong"})
    service = w.token("client credentials", 200, grant_type="client_credentials").json()
    w.call("userinfo for a client's own token", "GET", "/userinfo", 403, headers={"Authorization": "Bearer " + service["access_token"]})

    # The device flow, through the verification pages.
    device = w.call("device authorization", "POST", "/oauth/device_authorization", 200, auth=w.client, data={"scope": "openid offline_access"}).json()
    pending = w.token("first poll", 400, grant_type=DEVICE_GRANT, device_code=device["device_code"]).json()
    assert pending["error"] == "authorization_pending", pending
    assert w.token("second poll at once", 400, grant_type=DEVICE_GRANT, device_code=device["device_code"]).json()["error"] == "slow_down"
    page = w.call("verification page", "GET", "/device", 200, browser=True, params={"user_code": device["user_code"]}).text
    page = w.call("user code", "POST", "/device", 200, browser=True, data={**form_fields(page), "user_code": device["user_code"]}).text
    page = w.call("sign in", "POST", "/login", 200, browser=True, data={**form_fields(page), "username": "st-user", "password": w.password}).text
    assert 'action="/consent"' in page
    w.call("allow the device", "POST", "/consent", 200, browser=True, data={**form_fields(page), "decision": "allow"})

    # The code flow with the session the device flow left behind.
    query = {"client_id": w.client[0], "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": "openid", "state": "s1"}
    code = w.call("authorize with a session and consent", "GET", "/authorize", 302, browser=True, params=query)
    assert "code=" in code.headers["location"] and "iss=" in code.headers["location"], code.headers
    page = w.call("prompt=consent", "GET", "/authorize", 200, browser=True, params={**query, "prompt": "consent"}).text
    denied = w.call("deny", "POST", "/consent", 303, browser=True, data={**form_fields(page), "decision": "deny"})
    assert "error=access_denied" in denied.headers["location"], denied.headers

    # The connected apps page (with a live grant), and disconnecting the app.
    live = w.token("another password grant", 200, grant_type="password", username="st-user", password=w.password, scope="openid").json()
    page = w.call("connected apps", "GET", "/account/apps", 200, browser=True).text
    assert "Disconnect" in page
    back = w.call("disconnect", "POST", "/account/apps/revoke", 303, browser=True, data={**form_fields(page), "client_id": w.client[0]})
    assert back.headers["location"].endswith("/account/apps"), back.headers
    body = w.call("introspect after disconnecting", "POST", "/oauth/introspect", 200, auth=w.client, data={"token": live["access_token"]}).json()
    assert body == {"active": False}, body
    print(f"walk_flows: {w.steps} responses conform to docs/openapi.yaml")


if __name__ == "__main__":
    main(sys.argv[1])
