// The benchmark's peer: node-oidc-provider, configured to do what tokenfn
// does on the measured paths, so that the two are compared like for like:
//
// - the provider's own in-memory adapter (its default store);
// - refresh tokens rotated on every use (rotateRefreshToken: true);
// - ES256 signing, JWT access tokens (RFC 9068) through resource
//   indicators with a default resource;
// - an ID token on refresh (the grant has `openid`);
// - the same clients and user as scripts/bench.sh registers in tokenfn,
//   with PKCE S256 and client_secret_basic.
//
// Login and consent are the provider's devInteractions (plain HTML forms
// that tokenfn-bench walks like tokenfn's own).
//
// Usage: node server.mjs  (PORT=0 picks a free port; prints
// "peer listening on http://127.0.0.1:PORT" once ready).

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const env = (name, fallback) => process.env[name] ?? fallback;

const WEB_CLIENT = env('BENCH_WEB_CLIENT', 'bench-web');
const WEB_SECRET = env('BENCH_WEB_SECRET', 'bench-web-secret-0123456789abcdefghijklmnop');
const SVC_CLIENT = env('BENCH_SVC_CLIENT', 'bench-svc');
const SVC_SECRET = env('BENCH_SVC_SECRET', 'bench-svc-secret-0123456789abcdefghijklmnop');
const SVC_SCOPE = env('BENCH_SVC_SCOPE', 'api.read');
const USER = env('BENCH_USER', 'bench');
const REDIRECT_URI = env('BENCH_REDIRECT_URI', 'http://127.0.0.1:9/callback');
const RESOURCE = 'urn:tokenfn-bench:api';

// tokenfn's defaults: access tokens 900 s, ID tokens 3600 s, refresh 30 days.
const ACCESS_TTL = 900;
const ID_TTL = 3600;
const REFRESH_TTL = 30 * 24 * 3600;

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig' };

const server = createServer();
server.listen(Number(env('PORT', '0')), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: WEB_CLIENT,
        client_secret: WEB_SECRET,
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      },
      {
        client_id: SVC_CLIENT,
        client_secret: SVC_SECRET,
        redirect_uris: [],
        response_types: [],
        grant_types: ['client_credentials'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'offline_access', SVC_SCOPE],
    claims: { openid: ['sub'] },
    // The one user. devInteractions' login accepts any password; the
    // account must still exist.
    async findAccount(_ctx, id) {
      if (id !== USER) return undefined;
      return { accountId: id, async claims() { return { sub: id }; } };
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: SVC_SCOPE,
          audience: RESOURCE,
          accessTokenTTL: ACCESS_TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    rotateRefreshToken: true,
    ttl: {
      AccessToken: ACCESS_TTL,
      ClientCredentials: ACCESS_TTL,
      IdToken: ID_TTL,
      RefreshToken: REFRESH_TTL,
      Grant: REFRESH_TTL,
      Session: 24 * 3600,
      Interaction: 3600,
      AuthorizationCode: 60,
    },
  });
  // Quiet about its development-only helpers; the benchmark knows.
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));

  server.on('request', provider.callback());
  console.log(`peer listening on ${issuer}`);
});
