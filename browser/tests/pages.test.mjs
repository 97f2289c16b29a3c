// The pages off the happy path: two-step verification, error pages, the
// demo callback without a code.

import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { browserTest, decide, signIn, totp, useFixtures } from './support.mjs';

describe('other pages', () => {
  const fx = useFixtures('pages');

  browserTest(fx, 'two-step verification asks for a code after the password', async ({ page, check, server }) => {
    const password = 'bob-password-for-the-browser-tests';
    await server.cli(['user', 'add', '--username', 'bob', '--password-stdin'], password);
    const enrolled = JSON.parse(await server.cli(['user', 'mfa', 'enroll', '--username', 'bob']));
    const uri = new URL(enrolled.otpauth_uri);
    const secret = uri.searchParams.get('secret');
    const opts = { digits: Number(uri.searchParams.get('digits') || 6), period: Number(uri.searchParams.get('period') || 30) };
    assert.ok(!uri.searchParams.get('algorithm') || uri.searchParams.get('algorithm') === 'SHA1');

    await page.goto(server.authorizeUrl);
    await signIn(page, { username: 'bob', password });
    const field = page.getByLabel('Code');
    await field.waitFor();
    assert.equal(await field.getAttribute('id'), 'otp');
    assert.equal(await page.locator('h1').textContent(), 'Two-step verification');
    assert.match(await page.locator('main').innerText(), /Demo web app/);
    await check('two-step code');

    // A wrong code: one that no nearby time step gives.
    const near = await Promise.all([-1, 0, 1].map((k) => totp(secret, Date.now() + k * opts.period * 1000, opts)));
    let wrong = '123456';
    while (near.includes(wrong)) wrong = String((Number(wrong) + 111_111) % 1_000_000).padStart(6, '0');
    await field.fill(wrong);
    await page.getByRole('button', { name: 'Verify' }).click();
    await page.getByRole('alert').waitFor();
    assert.equal(await page.locator('h1').textContent(), 'Two-step verification');
    await check('two-step code with an error');

    await page.getByLabel('Code').fill(await totp(secret, Date.now(), opts));
    await page.getByRole('button', { name: 'Verify' }).click();
    await decide(page, { app: 'Demo web app' });
    await page.waitForURL((u) => u.href.startsWith(server.redirectUri + '?code='));
  });

  browserTest(fx, 'an unknown client gets an error page, not a redirect', async ({ page, check, server }) => {
    const r = await page.goto(server.base + '/authorize?client_id=nope');
    assert.equal(r.status(), 400);
    assert.equal(new URL(page.url()).pathname, '/authorize');
    assert.equal(await page.locator('h1').textContent(), 'Something went wrong');
    assert.ok((await page.getByRole('alert').innerText()).trim().length > 5);
    // A reference to quote, for the operator's logs.
    assert.ok((await page.locator('main code').innerText()).trim().length >= 8);
    await check('authorize error');
  });

  browserTest(fx, 'an unknown address gets a 404 page', async ({ page, check, server }) => {
    const r = await page.goto(server.base + '/nope');
    assert.equal(r.status(), 404);
    assert.match(r.headers()['content-type'], /^text\/html/, 'a browser gets HTML');
    assert.equal(await page.locator('h1').textContent(), 'Something went wrong');
    await page.getByRole('alert').waitFor();
    await check('404');
  });

  browserTest(fx, 'the demo callback without a code says there is nothing to show', async ({ page, check, server }) => {
    const r = await page.goto(server.redirectUri);
    assert.equal(r.status(), 200);
    assert.ok((await page.locator('h1').textContent()).trim().length > 0);
    await check('demo callback without a code');
  });
});
