/**
 * The Lambda functions and the HTTP routes each one serves: the only copy of
 * this list in the CDK app. The routes come from the Rust routers
 * (`tokenfn routes`), and test/stack.test.ts fails when the two disagree.
 */

export const FUNCTION_NAMES = ['authorize', 'token', 'refresh', 'revoke', 'discovery'] as const;

export type FunctionName = (typeof FUNCTION_NAMES)[number];

export type Method = 'GET' | 'POST';

export interface Route {
  readonly method: Method;
  readonly path: string;
}

export const ROUTES: Readonly<Record<FunctionName, readonly Route[]>> = {
  authorize: [
    { method: 'GET', path: '/authorize' },
    { method: 'POST', path: '/login' },
    { method: 'POST', path: '/consent' },
    { method: 'GET', path: '/device' },
    { method: 'POST', path: '/device' },
    { method: 'GET', path: '/account/apps' },
    { method: 'POST', path: '/account/apps/revoke' },
    // Always routed; the function answers 404 unless the playground is on.
    { method: 'GET', path: '/playground' },
    { method: 'POST', path: '/playground/introspect' },
  ],
  token: [
    { method: 'POST', path: '/oauth/token' },
    { method: 'POST', path: '/oauth/introspect' },
    { method: 'GET', path: '/userinfo' },
    { method: 'POST', path: '/userinfo' },
    { method: 'POST', path: '/oauth/device_authorization' },
  ],
  refresh: [{ method: 'POST', path: '/oauth/refresh' }],
  revoke: [{ method: 'POST', path: '/oauth/revoke' }],
  discovery: [
    { method: 'GET', path: '/.well-known/openid-configuration' },
    { method: 'GET', path: '/.well-known/jwks.json' },
  ],
};
