// The authorization code flow of the demo web app, as a person goes through
// it: the login page, the consent page, the redirect back to the app.

import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { assertLoginPage, browserTest, decide, signIn, useFixtures } from './support.mjs';

const SCOPES = ['openid', 'profile', 'email', 'offline_access'];

describe('sign-in and consent', () => {
  const fx = useFixtures('sign-in');

  browserTest(fx, 'sign in and allow returns a code to the app', async ({ page, check, server }) => {
    const asked = new URL(server.authorizeUrl);
    await page.goto(server.authorizeUrl);
    await assertLoginPage(page);
    assert.match(await page.locator('main').innerText(), /Demo web app/);
    await check('login');

    await signIn(page, server);
    await page.locator('button[name="decision"][value="allow"]').waitFor();
    await check('consent');
    await decide(page, { app: 'Demo web app', scopes: SCOPES });

    await page.waitForURL((u) => u.href.startsWith(server.redirectUri + '?'));
    const back = new URL(page.url());
    const code = back.searchParams.get('code');
    assert.ok(code && code.length >= 16, `a code in ${back}`);
    assert.equal(back.searchParams.get('state'), asked.searchParams.get('state'));
    assert.equal(back.searchParams.get('iss'), server.base);
    assert.equal(await page.locator('h1').textContent(), 'Signed in');
    assert.ok((await page.locator('pre').allInnerTexts()).some((t) => t.trim() === code), 'the page shows the code');
    await check('callback with a code');
  });

  browserTest(fx, 'deny returns access_denied to the app', async ({ page, check, server }) => {
    await page.goto(server.authorizeUrl);
    await signIn(page, server);
    await decide(page, { app: 'Demo web app', scopes: SCOPES, decision: 'deny' });
    await page.waitForURL((u) => u.href.startsWith(server.redirectUri + '?'));
    const back = new URL(page.url());
    assert.equal(back.searchParams.get('error'), 'access_denied');
    assert.equal(back.searchParams.get('code'), null);
    await check('callback with an error');
  });

  browserTest(fx, 'a wrong password says so and does not redirect', async ({ page, check, server }) => {
    await page.goto(server.authorizeUrl);
    await signIn(page, { username: server.username, password: 'not-the-password' });
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.ok((await alert.innerText()).trim().length > 5, 'the alert says something');
    assert.ok(!page.url().startsWith(server.redirectUri), `no redirect, at ${page.url()}`);
    await assertLoginPage(page);
    await check('login with an error');

    // And the right password still works from there.
    await signIn(page, server);
    await page.locator('button[name="decision"][value="allow"]').waitFor();
  });

  browserTest(fx, 'the login page is in Tab order: username, password, Sign in', async ({ page, server }) => {
    await page.goto(server.authorizeUrl);
    await assertLoginPage(page);
    // From the top of the page: a click on the page's header, which holds no
    // control, moves the focus (and the Tab starting point) there.
    await page.mouse.click(2, 2);
    const focused = () =>
      page.evaluate(() => {
        const e = document.activeElement;
        return e && e !== document.body ? (e.id || `${e.tagName.toLowerCase()}:${e.textContent.trim()}`) : 'body';
      });
    const order = [];
    for (let i = 0; i < 3; i++) {
      await page.keyboard.press('Tab');
      order.push(await focused());
    }
    assert.deepEqual(order, ['username', 'password', 'button:Sign in']);
  });
});
