// The playground: a page that is a public client of the server. It signs in
// with the code flow and PKCE, shows its tokens decoded, and lets a person
// refresh, introspect, replay a spent refresh token and revoke, logging each
// action in #log.

import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { authorizeThrough, browserTest, sleep, useFixtures } from './support.mjs';

const APP = 'tokenfn playground';

/** Clicks an action's button; resolves with the log item it appended. */
async function act(page, id) {
  const items = page.locator('#log > li');
  const before = await items.count();
  await page.locator(`#${id}`).click();
  const li = items.nth(before);
  await li.waitFor();
  const entry = {
    action: await li.getAttribute('data-action'),
    status: await li.getAttribute('data-status'),
    text: (await li.innerText()).trim(),
  };
  assert.equal(await items.count(), before + 1, `one log item per action (after #${id})`);
  return entry;
}

/** Signs in through #start (login and consent when asked); resolves with the exchange's log item. */
async function start(page, server, check) {
  await page.goto(server.playgroundUrl);
  await page.locator('#start').waitFor();
  assert.equal(await page.locator('#log > li').count(), 0, 'a fresh page has an empty log');
  await page.evaluate(() => { window.__tfnBefore = true; });
  await page.locator('#start').click();
  const exchange = page.locator('#log > li[data-action="exchange"]');
  await authorizeThrough(page, {
    username: server.username,
    password: server.password,
    app: APP,
    check,
    done: async () =>
      new URL(page.url()).pathname === '/playground' &&
      (await page.evaluate(() => !window.__tfnBefore)) &&
      (await exchange.count()) > 0,
  });
  const li = exchange.first();
  return { status: await li.getAttribute('data-status'), text: (await li.innerText()).trim() };
}

const json = async (locator) => {
  const text = await locator.innerText();
  try {
    return JSON.parse(text);
  } catch {
    assert.fail(`not JSON: ${text}`);
  }
};

const seconds = async (box) => Number((await box.locator('.expires-in').innerText()).trim());

describe('playground', () => {
  const fx = useFixtures('playground');

  browserTest(fx, 'playground tour: tokens decoded, rotated, reused and revoked', async ({ page, check, server }) => {
    assert.ok(server.playgroundUrl, `tokenfn serve printed no playground address:\n${server.output}`);
    assert.equal(new URL(server.playgroundUrl).origin, server.base);

    await page.goto(server.playgroundUrl);
    await page.locator('#start').waitFor();
    await check('playground');

    // Sign in: login and consent, back on /playground?code=..., exchanged by the page.
    const exchange = await start(page, server, check);
    assert.equal(exchange.status, '200', `the exchange: ${exchange.text}`);

    const access = page.locator('#access-token');
    const id = page.locator('#id-token');
    await access.locator('pre.claims').waitFor();
    const accessHeader = await json(access.locator('pre.header'));
    const accessClaims = await json(access.locator('pre.claims'));
    assert.ok(accessHeader.alg, 'the access token header has alg');
    assert.equal(accessClaims.iss, server.base);
    assert.ok(accessClaims.exp > Date.now() / 1000);
    const idHeader = await json(id.locator('pre.header'));
    const idClaims = await json(id.locator('pre.claims'));
    assert.ok(idHeader.alg, 'the ID token header has alg');
    assert.equal(idClaims.iss, server.base);
    assert.equal(idClaims.sub, server.userId);
    assert.ok(idClaims.nonce, 'the ID token of the sign-in carries the nonce sent');
    assert.ok(idClaims.aud === 'playground' || (Array.isArray(idClaims.aud) && idClaims.aud.includes('playground')),
      `the ID token is for the playground: ${JSON.stringify(idClaims.aud)}`);

    // The countdowns run.
    const [a0, i0] = [await seconds(access), await seconds(id)];
    assert.ok(a0 > 0 && i0 > 0, `seconds left: ${a0}, ${i0}`);
    await sleep(2_100);
    const [a1, i1] = [await seconds(access), await seconds(id)];
    assert.ok(a1 < a0 && a1 >= a0 - 4, `the access token's countdown runs: ${a0} → ${a1}`);
    assert.ok(i1 < i0 && i1 >= i0 - 4, `the ID token's countdown runs: ${i0} → ${i1}`);

    const chain = page.locator('#refresh-chain > li');
    assert.equal(await chain.count(), 1);
    assert.equal(await page.locator('#refresh-chain > li.current').count(), 1);
    await check('playground signed in');

    // Two rotations: three refresh tokens, the last one current.
    for (let n = 2; n <= 3; n++) {
      const r = await act(page, 'refresh');
      assert.equal(r.action, 'refresh');
      assert.equal(r.status, '200', r.text);
      assert.equal(await chain.count(), n);
    }
    assert.equal(await page.locator('#refresh-chain > li.current').count(), 1);
    assert.match(await chain.last().getAttribute('class'), /\bcurrent\b/);

    let r = await act(page, 'introspect');
    assert.deepEqual([r.action, r.status], ['introspect', '200'], r.text);
    assert.match(r.text, /active: true/);

    // The previous, spent refresh token comes back: reuse detection.
    r = await act(page, 'replay');
    assert.deepEqual([r.action, r.status], ['replay', '400'], r.text);
    assert.match(r.text, /invalid_grant/);

    // ...which revoked the whole family, the current token too.
    r = await act(page, 'refresh');
    assert.deepEqual([r.action, r.status], ['refresh', '400'], r.text);
    assert.match(r.text, /invalid_grant/);
    r = await act(page, 'introspect');
    assert.equal(r.action, 'introspect');
    assert.match(r.text, /active: false/);
    await check('playground after a reuse');

    // A fresh sign-in, then revoke.
    const again = await start(page, server);
    assert.equal(again.status, '200', `the second exchange: ${again.text}`);
    await page.locator('#access-token pre.claims').waitFor();
    assert.equal(await chain.count(), 1, 'a new grant, a new chain');
    r = await act(page, 'revoke');
    assert.deepEqual([r.action, r.status], ['revoke', '200'], r.text);
    r = await act(page, 'refresh');
    assert.deepEqual([r.action, r.status], ['refresh', '400'], r.text);
    await check('playground after a revoke');
  }, { timeout: 90_000 });
});
