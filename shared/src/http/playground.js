"use strict";
// The playground: a public client of this server, living in the page. It
// keeps its tokens in sessionStorage (this tab only) and builds every piece
// of text with textContent, never as HTML.
(() => {
  const root = document.getElementById("playground");
  const issuer = root.dataset.issuer;
  const client = root.dataset.client;
  const redirectUri = location.origin + location.pathname;
  const $ = (id) => document.getElementById(id);
  const store = window.sessionStorage;

  const b64url = (bytes) =>
    btoa(String.fromCharCode(...new Uint8Array(bytes)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));
  const s256 = async (text) =>
    b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));

  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };

  function log(action, status, text) {
    const li = el("li", `${action}: ${status || "-"} · ${text}`);
    li.dataset.action = action;
    li.dataset.status = String(status);
    $("log").append(li);
  }

  const load = () => JSON.parse(store.getItem("playground.tokens") || "null");
  const save = (t) => store.setItem("playground.tokens", JSON.stringify(t));

  async function post(path, fields) {
    const r = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields),
    });
    const body = await r.json().catch(() => ({}));
    return { status: r.status, body };
  }
  const problem = (b) => `${b.error || "error"}: ${b.error_description || ""}`;

  function decode(jwt) {
    const part = (p) => JSON.parse(
      new TextDecoder().decode(Uint8Array.from(
        atob(p.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0))));
    const [h, c] = jwt.split(".");
    return { header: part(h), claims: part(c) };
  }

  function showJwt(box, jwt, name, dead) {
    box.replaceChildren();
    if (!jwt) {
      box.append(el("p", "None in the last answer."));
      return;
    }
    const { header, claims } = decode(jwt);
    const expires = el("p");
    if (dead) {
      expires.textContent = "No longer works: its grant was revoked.";
    } else {
      expires.append("Expires in ", el("span", "", "expires-in"), " seconds.");
      expires.dataset.exp = String(claims.exp);
    }
    box.append(expires, el("h3", `${name} header`), el("pre", JSON.stringify(header, null, 2), "header"),
      el("h3", `${name} claims`), el("pre", JSON.stringify(claims, null, 2), "claims"));
  }

  function tick() {
    for (const p of document.querySelectorAll("[data-exp]")) {
      const left = Number(p.dataset.exp) - Math.floor(Date.now() / 1000);
      p.querySelector(".expires-in").textContent = String(Math.max(left, 0));
    }
  }

  function render() {
    const t = load();
    $("tokens").hidden = !t;
    if (!t) return;
    showJwt($("access-token"), t.access, "Access token", t.dead);
    showJwt($("id-token"), t.id, "ID token", false);
    const chain = $("refresh-chain");
    chain.replaceChildren();
    t.chain.forEach((rt, i) => {
      const current = i === t.chain.length - 1;
      const state = current ? (t.dead ? "current, but no longer works" : "current") : "spent";
      const li = el("li", "", current ? "current" : "");
      li.append(el("code", `${rt.slice(0, 16)}…`), ` (${state})`);
      chain.append(li);
    });
    tick();
  }

  function keep(body, t) {
    t.access = body.access_token;
    t.id = body.id_token || t.id;
    if (body.refresh_token) t.chain.push(body.refresh_token);
    save(t);
    render();
  }

  $("start").addEventListener("click", async () => {
    const pkce = { verifier: random(), state: random(), nonce: random() };
    store.setItem("playground.pkce", JSON.stringify(pkce));
    const query = new URLSearchParams({
      response_type: "code", client_id: client, redirect_uri: redirectUri,
      scope: "openid profile email offline_access", state: pkce.state, nonce: pkce.nonce,
      code_challenge: await s256(pkce.verifier), code_challenge_method: "S256",
    });
    location.assign(`/authorize?${query}`);
  });

  $("refresh").addEventListener("click", async () => {
    const t = load();
    const r = await post("/oauth/token", {
      grant_type: "refresh_token", refresh_token: t.chain[t.chain.length - 1], client_id: client,
    });
    if (r.status === 200) {
      keep(r.body, t);
      log("refresh", r.status, `new tokens; refresh token #${t.chain.length} is current, the one before it is spent`);
    } else {
      t.dead = true;
      save(t);
      render();
      log("refresh", r.status, problem(r.body));
    }
  });

  $("introspect").addEventListener("click", async () => {
    const t = load();
    const r = await post("/playground/introspect", { token: t.chain[t.chain.length - 1] });
    const b = r.body;
    const text = r.status !== 200 ? problem(b)
      : b.active ? `active: true (the current refresh token; scope "${b.scope}", usable until ${new Date(b.exp * 1000).toISOString()})`
      : "active: false (the current refresh token no longer works)";
    log("introspect", r.status, text);
  });

  $("replay").addEventListener("click", async () => {
    const t = load();
    if (t.chain.length < 2) {
      log("replay", 0, "refresh once first: there is no spent refresh token to replay yet");
      return;
    }
    const r = await post("/oauth/token", {
      grant_type: "refresh_token", refresh_token: t.chain[t.chain.length - 2], client_id: client,
    });
    const text = r.status === 200 ? "the spent token worked (a reuse leeway is on)"
      : `${problem(r.body)} (a spent token came back, so the server revoked the whole family)`;
    if (r.status !== 200) {
      t.dead = true;
      save(t);
      render();
    }
    log("replay", r.status, text);
  });

  $("revoke").addEventListener("click", async () => {
    const t = load();
    const r = await post("/oauth/revoke", {
      token: t.chain[t.chain.length - 1], token_type_hint: "refresh_token", client_id: client,
    });
    if (r.status === 200) {
      t.dead = true;
      save(t);
      render();
    }
    log("revoke", r.status, r.status === 200 ? "revoked: this grant's refresh and access tokens stop working" : problem(r.body));
  });

  async function arrive() {
    const q = new URLSearchParams(location.search);
    if (!q.has("code") && !q.has("error")) return;
    history.replaceState(null, "", location.pathname);
    const pkce = JSON.parse(store.getItem("playground.pkce") || "null");
    store.removeItem("playground.pkce");
    if (q.has("error")) {
      log("exchange", 0, `${q.get("error")}: ${q.get("error_description") || ""}`);
      return;
    }
    if (!pkce || q.get("state") !== pkce.state) {
      log("exchange", 0, "the state does not match this tab's sign-in: the code was not used");
      return;
    }
    // RFC 9207: the answer must come from this issuer.
    if (q.get("iss") !== issuer) {
      log("exchange", 0, `the code came from ${q.get("iss")}, not ${issuer}: not used`);
      return;
    }
    const r = await post("/oauth/token", {
      grant_type: "authorization_code", code: q.get("code"), redirect_uri: redirectUri,
      client_id: client, code_verifier: pkce.verifier,
    });
    if (r.status !== 200) {
      log("exchange", r.status, problem(r.body));
      return;
    }
    // OIDC Core §3.1.3.7: the ID token must carry this sign-in's nonce.
    if (!r.body.id_token || decode(r.body.id_token).claims.nonce !== pkce.nonce) {
      log("exchange", r.status, "the ID token does not carry this sign-in's nonce: tokens not used");
      return;
    }
    keep(r.body, { chain: [] });
    log("exchange", r.status, "signed in: an access token, an ID token and refresh token #1");
  }

  render();
  setInterval(tick, 1000);
  arrive();
})();
