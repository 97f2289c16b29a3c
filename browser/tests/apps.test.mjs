// Connected apps: a person who allowed the demo web app disconnects it from
// /account/apps, and the app's refresh token stops working.

import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { assertLoginPage, browserTest, decide, signIn, useFixtures } from './support.mjs';

describe('connected apps', () => {
  const fx = useFixtures('apps');

  browserTest(fx, 'disconnecting an app revokes its refresh token', async ({ page, check, server }) => {
    // Sign in and allow, as in the sign-in test; the app exchanges the code.
    await page.goto(server.authorizeUrl);
    await signIn(page, server);
    await decide(page, { app: 'Demo web app' });
    await page.waitForURL((u) => u.href.startsWith(server.redirectUri + '?'));
    const code = new URL(page.url()).searchParams.get('code');
    const tokens = await server.exchangeDemoCode(code);
    assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
    assert.ok(tokens.body.refresh_token, 'a refresh token (offline_access)');

    // The same browser context: the session cookie signs the person in.
    await page.goto(server.base + '/account/apps');
    await page.getByRole('heading', { name: 'Connected apps' }).waitFor();
    const app = page.locator('main section').filter({ has: page.getByRole('heading', { name: 'Demo web app' }) });
    assert.equal(await app.count(), 1, 'Demo web app is listed');
    assert.ok((await app.locator('li').count()) >= 1, 'with what it may do');
    await check('connected apps');

    await app.getByRole('button', { name: 'Disconnect Demo web app' }).click();
    await page.getByRole('heading', { name: 'Connected apps' }).waitFor();
    await page.waitForFunction(() => !document.body.innerText.includes('Disconnect Demo web app'));
    assert.equal(await page.getByRole('heading', { name: 'Demo web app' }).count(), 0, 'the app is gone');
    assert.match(await page.locator('main').innerText(), /No app has access/);
    await check('connected apps, none left');

    const r = await server.post('/oauth/token', { grant_type: 'refresh_token', refresh_token: tokens.body.refresh_token },
      { basic: ['demo-web', server.clientSecret] });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error, 'invalid_grant');
  });

  browserTest(fx, 'the connected apps page asks a stranger to sign in first', async ({ page, check, server }) => {
    await page.goto(server.base + '/account/apps');
    await assertLoginPage(page);
    assert.match(await page.locator('main').innerText(), /your account/);
    await check('connected apps sign-in');
    await signIn(page, server);
    await page.getByRole('heading', { name: 'Connected apps' }).waitFor();
    assert.match(await page.locator('main').innerText(), new RegExp(`Signed in as\\s+${server.username}`));
  });
});
