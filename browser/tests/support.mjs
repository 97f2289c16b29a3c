// Shared pieces of the browser tests: a tokenfn server of our own on a fresh
// data folder, headless Chromium through playwright-core, and the checks run
// on every page a test visits (axe-core, phone width, CSP reports).
//
// Environment: TOKENFN_BIN (the tokenfn binary; default target/debug/tokenfn)
// and TOKENFN_BROWSER_OUT (screenshots and HTML; default target/browser).

import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '../..');
export const BIN = resolve(process.env.TOKENFN_BIN || join(REPO, 'target/debug/tokenfn'));
export const OUT = resolve(process.env.TOKENFN_BROWSER_OUT || join(REPO, 'target/browser'));
mkdirSync(join(OUT, 'pages'), { recursive: true });

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

// TOKENFN_CHROMIUM: another Chromium (for trying the failure path; the script installs /usr/bin/chromium).
export const CHROMIUM = process.env.TOKENFN_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 740 };

/** A file-name-safe form of a test's name. */
export const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// The server

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/**
 * Starts `tokenfn serve` on a fresh data folder and a free port; resolves once
 * it listens, with what its first start printed.
 */
export async function startServer(name) {
  const dataDir = mkdtempSync(join(tmpdir(), 'tokenfn-browser-'));
  const logFile = join(OUT, `${slug(name)}.server.log`);
  writeFileSync(logFile, '');
  const child = spawn(BIN, ['serve', '--data-dir', dataDir, '--addr', '127.0.0.1:0'], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  child.stderr.on('data', (b) => appendFileSync(logFile, b));

  const lines = [];
  const listening = new Promise((resolveListen, rejectListen) => {
    let rest = '';
    child.stdout.on('data', (b) => {
      appendFileSync(logFile, b);
      rest += b.toString('utf8');
      let i;
      while ((i = rest.indexOf('\n')) >= 0) {
        const line = rest.slice(0, i);
        rest = rest.slice(i + 1);
        lines.push(line);
        const m = /^tokenfn listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/.exec(line);
        if (m) resolveListen(m[1]);
      }
    });
    child.once('error', rejectListen);
    exited.then(({ code, signal }) =>
      rejectListen(new Error(`tokenfn serve exited (${code ?? signal}) before listening; see ${logFile}`)));
    setTimeout(() => rejectListen(new Error(`tokenfn serve did not listen within 30 s; see ${logFile}`)), 30_000).unref();
  });
  let base;
  try {
    base = await listening;
  } catch (e) {
    child.kill('SIGKILL');
    children.delete(child);
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }

  const text = lines.join('\n');
  const grab = (re, what) => {
    const m = re.exec(text);
    assert.ok(m, `tokenfn serve's first start did not print ${what}:\n${text}`);
    return m[1];
  };
  const server = {
    base,
    dataDir,
    output: text,
    clientId: 'demo-web',
    clientSecret: grab(/client_id=demo-web client_secret=(\S+)/, 'the demo-web client secret'),
    username: grab(/username=(\S+) password=/, 'the demo username'),
    password: grab(/username=\S+ password=(\S+)/, 'the demo password'),
    userId: grab(/user_id=(\S+)/, 'the demo user id'),
    redirectUri: grab(/redirect URI:\s+(\S+)/, 'the redirect URI'),
    authorizeUrl: grab(/^\s*(http:\/\/\S+\/authorize\?\S+)$/m, 'the authorize URL'),
    /** The playground's address, or null while serve does not print one. */
    playgroundUrl: /(http:\/\/127\.0\.0\.1:\d+\/playground)\b/.exec(text)?.[1] ?? null,

    /** Runs an admin command of the CLI on this server's data folder. */
    cli: (args, stdin) => runCli(['--data-dir', dataDir, ...args], stdin),

    /** POSTs a form to the server; resolves with { status, body (parsed JSON or text) }. */
    post: (path, fields, { basic } = {}) => postForm(base + path, fields, { basic }),

    /** Exchanges an authorization code of demo-web (confidential, no PKCE). */
    exchangeDemoCode: (code) =>
      postForm(base + '/oauth/token', {
        grant_type: 'authorization_code',
        code,
        redirect_uri: server.redirectUri,
      }, { basic: ['demo-web', server.clientSecret] }),

    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      children.delete(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return server;
}

function runCli(args, stdin) {
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(BIN, args, { env: { ...process.env, NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    child.once('error', rejectRun);
    child.once('exit', (code) => {
      children.delete(child);
      if (code === 0) resolveRun(out);
      else rejectRun(new Error(`tokenfn ${args.join(' ')} exited ${code}:\n${err}${out}`));
    });
    child.stdin.end(stdin ?? '');
  });
}

export async function postForm(url, fields, { basic } = {}) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (basic) {
    const [id, secret] = basic;
    const enc = (s) => encodeURIComponent(s); // RFC 6749 §2.3.1
    headers.authorization = 'Basic ' + Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64');
  }
  const r = await fetch(url, { method: 'POST', headers, body: new URLSearchParams(fields), redirect: 'manual' });
  const text = await r.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: r.status, headers: r.headers, body };
}

// ---------------------------------------------------------------------------
// The browser

/** Launches Chromium; a failure to start is an error with the reason, never a skip. */
export async function launchBrowser() {
  try {
    return await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  } catch (e) {
    throw new Error(`Chromium (${CHROMIUM}) could not start: ${e.message}`);
  }
}

/**
 * The file's shared fixtures: one server and one browser for all its tests,
 * started by the first test that needs them (so that a failure to start
 * fails each test with its reason, rather than cancelling them) and stopped
 * after the last.
 */
export function useFixtures(name) {
  let serverP = null;
  let browserP = null;
  const fx = {
    server: () => (serverP ??= startServer(name)),
    browser: () => (browserP ??= launchBrowser()),
  };
  after(async () => {
    await Promise.allSettled([
      browserP?.then((b) => b.close()),
      serverP?.then((s) => s.stop()),
    ]);
  });
  return fx;
}

/**
 * A browser test: `fn({ page, context, check, server })` runs in a fresh browser
 * context. After it, a full-page screenshot goes to OUT/<test>.png, and on
 * failure the page's HTML to OUT/<test>.html. `check(label)` runs the page
 * checks on the current page; their problems fail the test at its end (so one
 * page's finding does not hide the rest of the flow).
 */
export function browserTest(fx, name, fn, { timeout = 60_000 } = {}) {
  test(name, { timeout }, async () => {
    const file = slug(name);
    const [server, browser] = await Promise.all([fx.server(), fx.browser()]);
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.setDefaultNavigationTimeout(15_000);
    const problems = [];
    const cspReports = [];
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) cspReports.push(`${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`script error on ${page.url()}: ${e.message}`));
    const check = (label) => checkPage(page, `${file}--${slug(label)}`, label, problems, cspReports);
    let failure = null;
    try {
      await fn({ page, context, check, server });
    } catch (e) {
      failure = e;
    }
    for (const r of cspReports.splice(0)) problems.push(`CSP refusal: ${r}`);
    if (!failure && problems.length) {
      failure = new Error(`page checks failed:\n  - ${problems.join('\n  - ')}`);
    } else if (failure && problems.length) {
      failure.message += `\n(page checks also failed:\n  - ${problems.join('\n  - ')})`;
    }
    try {
      await page.screenshot({ path: join(OUT, `${file}.png`), fullPage: true, timeout: 10_000 });
      if (failure) writeFileSync(join(OUT, `${file}.html`), await page.content());
    } catch (e) {
      if (!failure) failure = new Error(`could not save the screenshot: ${e.message}`);
    } finally {
      await context.close().catch(() => {});
    }
    if (failure) throw failure;
  });
}

/** Axe-core in the page; the pages' CSP has no script-src, so not as a script tag. */
async function runAxe(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) {
    // page.evaluate(string) goes through the DevTools protocol, which the
    // page's CSP does not govern (a <script> or eval would be refused).
    await page.evaluate(AXE_SOURCE);
  }
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      nodes: v.nodes.map((n) => ({ target: n.target, html: n.html, summary: n.failureSummary })),
    }));
  });
}

/**
 * Checks on the page as it is now: axe-core (serious and critical violations
 * fail), no horizontal scroll at phone width, no CSP refusal so far.
 * Findings of every impact go to OUT/a11y.jsonl.
 */
async function checkPage(page, file, label, problems, cspReports) {
  await page.waitForLoadState('load');
  const url = page.url();
  const where = `${label} (${new URL(url).pathname})`;

  const violations = await runAxe(page);
  appendFileSync(join(OUT, 'a11y.jsonl'), JSON.stringify({ page: file, label, url, violations }) + '\n');
  for (const v of violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      const targets = v.nodes.map((n) => n.target.join(' ')).join(', ');
      problems.push(`axe ${v.id} [${v.impact}] on ${where}: ${v.help} — ${targets}`);
    }
  }
  await page.screenshot({ path: join(OUT, 'pages', `${file}.png`), fullPage: true });

  const desktop = page.viewportSize();
  await page.setViewportSize(PHONE);
  try {
    const { scrollWidth, widest } = await page.evaluate(() => {
      const vw = document.documentElement.clientWidth;
      // The element that sticks out furthest, to say what to fix.
      let widest = null;
      for (const e of document.querySelectorAll('body *')) {
        const right = e.getBoundingClientRect().right;
        if (right > vw + 0.5 && (!widest || right > widest.right)) {
          widest = { right: Math.round(right), tag: e.tagName.toLowerCase(), id: e.id, cls: e.className };
        }
      }
      return { scrollWidth: document.documentElement.scrollWidth, widest };
    });
    if (scrollWidth > PHONE.width) {
      problems.push(`horizontal scroll at ${PHONE.width} px on ${where}: scrollWidth ${scrollWidth}` +
        (widest ? ` (widest: <${widest.tag}${widest.id ? '#' + widest.id : ''}${widest.cls ? '.' + widest.cls : ''}> to ${widest.right} px)` : ''));
    }
    await page.screenshot({ path: join(OUT, 'pages', `${file}-phone.png`), fullPage: true });
  } finally {
    await page.setViewportSize(desktop);
  }

  for (const r of cspReports.splice(0)) problems.push(`CSP refusal: ${r}`);
}

// ---------------------------------------------------------------------------
// Steps of the flows

/** On the login page: checks its form and signs in. */
export async function signIn(page, { username, password }) {
  await assertLoginPage(page);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function assertLoginPage(page) {
  await page.locator('form input#username').waitFor();
  assert.equal(await page.locator('h1').textContent(), 'Sign in');
  // Inputs found through their labels: the labels are tied to them.
  assert.equal(await page.getByLabel('Username').getAttribute('id'), 'username');
  assert.equal(await page.getByLabel('Password').getAttribute('id'), 'password');
  assert.equal(await page.getByLabel('Password').getAttribute('type'), 'password');
  assert.equal(await page.locator('label[for="username"]').count(), 1);
  assert.equal(await page.locator('label[for="password"]').count(), 1);
  assert.equal(await page.getByRole('button', { name: 'Sign in' }).count(), 1);
}

/** On the consent page: checks the app's name and the scopes in words, then decides. */
export async function decide(page, { app, decision = 'allow', scopes }) {
  const button = page.locator(`form button[name="decision"][value="${decision}"]`);
  await button.waitFor();
  assert.equal(await page.locator('h1').textContent(), 'Allow access?');
  assert.match(await page.locator('main').innerText(), new RegExp(escapeRe(app)));
  assert.equal(await page.locator('button[name="decision"][value="allow"]').innerText(), 'Allow');
  assert.equal(await page.locator('button[name="decision"][value="deny"]').innerText(), 'Deny');
  if (scopes) {
    const items = (await page.locator('main ul li').allInnerTexts()).map((s) => s.trim());
    assert.equal(items.length, scopes.length, `one line per scope, got ${JSON.stringify(items)}`);
    for (const item of items) {
      // In words: a phrase, not a scope's token.
      assert.ok(!scopes.includes(item) && item.split(/\s+/).length >= 3, `scope not in words: ${JSON.stringify(item)}`);
    }
  }
  await button.click();
}

/**
 * Waits for the login page, the consent page, or `await done()` being true;
 * says which came first.
 */
export async function nextStep(page, done, { timeout = 15_000 } = {}) {
  const login = page.locator('input#username');
  const consent = page.locator('button[name="decision"][value="allow"]');
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    try {
      if (await done()) return 'done';
      if (await login.count()) return 'login';
      if (await consent.count()) return 'consent';
    } catch (e) {
      // A navigation destroyed the context we asked in: ask again.
      if (!/context was destroyed|navigation|Target closed/i.test(e.message)) throw e;
    }
    await sleep(100);
  }
  throw new Error(`neither the login page, the consent page nor the end was reached; at ${page.url()}`);
}

/**
 * Goes through whatever the server asks (login, consent) until `done()`:
 * a session and a remembered consent may skip either page. `check`, when
 * given, checks each of those pages.
 */
export async function authorizeThrough(page, { username, password, app, done, check }) {
  const seen = [];
  for (;;) {
    const step = await nextStep(page, done);
    seen.push(step);
    if (step === 'done') return seen;
    assert.ok(seen.length <= 4, `going in circles: ${seen.join(' → ')}`);
    // A mark on this document, to know when the next one has replaced it.
    if (check) await check(`${step} for ${app}`);
    await page.evaluate(() => { window.__tfnHandled = true; });
    if (step === 'login') await signIn(page, { username, password });
    else await decide(page, { app });
    await page.waitForFunction(() => !window.__tfnHandled);
  }
}

export const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The six-digit TOTP (RFC 6238, SHA-1, 30 s) of a base32 secret at `time` (ms). */
export async function totp(secretBase32, time = Date.now(), { digits = 6, period = 30 } = {}) {
  const { createHmac } = await import('node:crypto');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of secretBase32.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(ch);
    assert.ok(v >= 0, `not base32: ${secretBase32}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(time / 1000 / period)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 10 ** digits).padStart(digits, '0');
}

export { sleep };
