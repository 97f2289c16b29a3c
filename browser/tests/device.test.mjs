// The device flow (RFC 8628): a TV asks for a code from Node, a person
// enters it in the browser, signs in and allows; the TV's polling gets tokens.

import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { browserTest, decide, signIn, sleep, useFixtures } from './support.mjs';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/** Asks for a device code as the TV. */
async function deviceAuthorization(server) {
  const r = await server.post('/oauth/device_authorization', { client_id: 'tv', scope: 'openid offline_access' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const d = r.body;
  for (const k of ['device_code', 'user_code', 'verification_uri', 'expires_in', 'interval']) {
    assert.ok(d[k], `device authorization has ${k}: ${JSON.stringify(d)}`);
  }
  assert.ok(d.verification_uri.startsWith(server.base + '/'), `verification_uri on this server: ${d.verification_uri}`);
  return { ...d, issuedAt: Date.now() };
}

/**
 * Polls the token endpoint as the TV until it answers something other than
 * authorization_pending, waiting the interval the server asked for between
 * requests (and 5 s more on slow_down, RFC 8628 §3.5). At most ~60 s.
 */
async function poll(server, device, clientId = 'tv') {
  let interval = device.interval * 1000;
  let last = device.issuedAt;
  const deadline = Date.now() + 60_000;
  for (;;) {
    await sleep(Math.max(0, last + interval - Date.now()));
    last = Date.now();
    const r = await server.post('/oauth/token', { grant_type: DEVICE_GRANT, device_code: device.device_code, client_id: clientId });
    if (r.status === 400 && r.body.error === 'authorization_pending' && Date.now() < deadline) continue;
    if (r.status === 400 && r.body.error === 'slow_down' && Date.now() < deadline) {
      interval += 5_000;
      continue;
    }
    return r;
  }
}

describe('device flow', { concurrency: 2 }, () => {
  const fx = useFixtures('device');

  browserTest(fx, 'a device code entered on a second page connects the TV', async ({ page, check, server }) => {
    // refresh_token too: a client without that grant type gets no refresh
    // token, offline_access or not.
    await server.cli(['client', 'add', '--client-id', 'tv', '--public', '--grant-types', 'device_code,refresh_token',
      '--name', 'Living-room TV']);
    const device = await deviceAuthorization(server);

    await page.goto(device.verification_uri);
    const code = page.getByLabel('Code');
    await code.waitFor();
    assert.equal(await code.getAttribute('id'), 'user_code');
    assert.equal(await page.locator('h1').textContent(), 'Connect a device');
    await check('device code entry');

    // A code that is not one: an error, on the same page.
    await page.locator('#user_code').fill('BCDF-GHJK');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('alert').waitFor();
    assert.ok((await page.getByRole('alert').innerText()).trim().length > 5);
    await check('device code entry with an error');

    await page.locator('#user_code').fill(device.user_code);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.locator('input#username').waitFor();
    assert.match(await page.locator('main').innerText(), /Living-room TV/);
    await check('login for the TV');
    await signIn(page, server);
    await page.locator('button[name="decision"][value="allow"]').waitFor();
    await check('consent for the TV');
    await decide(page, { app: 'Living-room TV', scopes: ['openid', 'offline_access'] });
    await page.getByRole('heading', { name: 'Device connected' }).waitFor();
    assert.match(await page.locator('main').innerText(), /Living-room TV/);
    await check('device connected');

    const r = await poll(server, device);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.body.access_token, 'an access token');
    assert.ok(r.body.refresh_token, `a refresh token (offline_access): ${JSON.stringify({ ...r.body, access_token: '…', id_token: '…' })}`);
    assert.ok(r.body.id_token, 'an ID token (openid)');
    assert.equal(r.body.token_type.toLowerCase(), 'bearer');

    // The code is spent: entering it again is refused.
    await page.goto(device.verification_uri);
    await page.locator('#user_code').fill(device.user_code);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('alert').waitFor();
  }, { timeout: 90_000 });

  browserTest(fx, 'a denied device code is refused to the TV', async ({ page, check, server }) => {
    await server.cli(['client', 'add', '--client-id', 'tv2', '--public', '--grant-types', 'device_code', '--name', 'Kitchen TV']);
    const r0 = await server.post('/oauth/device_authorization', { client_id: 'tv2', scope: 'openid' });
    assert.equal(r0.status, 200, JSON.stringify(r0.body));
    const device = { ...r0.body, issuedAt: Date.now() };

    // verification_uri_complete, when given, carries the code: the page
    // shows it filled in.
    const url = device.verification_uri_complete || device.verification_uri;
    await page.goto(url);
    if (device.verification_uri_complete) {
      assert.equal((await page.locator('#user_code').inputValue()).toUpperCase().replace(/[^A-Z0-9]/g, ''),
        device.user_code.toUpperCase().replace(/[^A-Z0-9]/g, ''));
    } else {
      await page.locator('#user_code').fill(device.user_code);
    }
    await page.getByRole('button', { name: 'Continue' }).click();
    await signIn(page, server);
    await decide(page, { app: 'Kitchen TV', decision: 'deny', scopes: ['openid'] });
    await page.getByRole('heading', { name: 'Request denied' }).waitFor();
    await check('device denied');

    const r = await poll(server, device, 'tv2');
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error, 'access_denied');
  }, { timeout: 90_000 });
});
