// Assertions on the synthesized template, without compiling Rust: the App is
// created with `aws:cdk:bundling-stacks: []`, so cargo-lambda never runs.
// Run with `npm test` (tsc, then `node --test dist/test/`).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { CfnKey } from 'aws-cdk-lib/aws-kms';
import { CfnFunction } from 'aws-cdk-lib/aws-lambda';

import { buildStack } from '../lib/app';
import { FUNCTION_NAMES, FunctionName, ROUTES, Route } from '../lib/routes';
import { ACCESS, KEY_ADMIN_ACTIONS, LOOK_DEFAULTS, TOTP_CONTEXT_KEY, TokenfnStack, WORKSPACE_ROOT } from '../lib/tokenfn-stack';

const CDK_JSON = path.resolve(__dirname, '..', '..', 'cdk.json');
const FEATURE_FLAGS: Record<string, unknown> = JSON.parse(readFileSync(CDK_JSON, 'utf8')).context ?? {};

interface Synth {
  stack: TokenfnStack;
  template: Template;
  json: { Resources: Record<string, Resource>; Outputs: Record<string, { Value: unknown }> };
  /** Logical id of each function's AWS::Lambda::Function. */
  fnId: Record<FunctionName, string>;
}

interface Resource {
  Type: string;
  Properties?: any;
  DependsOn?: string | string[];
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
}

/** The app as `cdk synth` builds it (cdk.json's context plus `context`), with bundling skipped. */
function synth(context: Record<string, string> = {}): Synth {
  const app = new App({ context: { ...FEATURE_FLAGS, ...context, 'aws:cdk:bundling-stacks': [] } });
  const stack = buildStack(app);
  // fromStack also fails on a dependency cycle between resources.
  const template = Template.fromStack(stack);
  const fnId = {} as Record<FunctionName, string>;
  for (const name of FUNCTION_NAMES) {
    fnId[name] = stack.getLogicalId(stack.functions[name].node.defaultChild as CfnFunction);
  }
  return { stack, template, json: template.toJSON() as Synth['json'], fnId };
}

const defaults = synth();

/** Logical ids of the signing key and of the TOTP key. */
function keyIds(s: Synth): { signing: string; totp: string } {
  const id = (key: { node: { defaultChild?: unknown } }) => s.stack.getLogicalId(key.node.defaultChild as CfnKey);
  const ids = { signing: id(s.stack.signingKey), totp: id(s.stack.totpKey) };
  assert.deepEqual(ofType(s, 'AWS::KMS::Key').map(([k]) => k).sort(), [ids.signing, ids.totp].sort(), 'two keys');
  return ids;
}

const ROOT = JSON.stringify({
  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::', { Ref: 'AWS::AccountId' }, ':root']],
});

function ofType(s: Synth, type: string): [string, Resource][] {
  return Object.entries(s.json.Resources).filter(([, r]) => r.Type === type);
}

function one(s: Synth, type: string): [string, Resource] {
  const found = ofType(s, type);
  assert.equal(found.length, 1, `expected exactly one ${type}, found ${found.length}`);
  return found[0];
}

function routeKeys(routes: Readonly<Record<string, readonly Route[]>>): Record<string, string[]> {
  return Object.fromEntries(
    Object.keys(routes)
      .sort()
      .map((name) => [name, routes[name].map((r) => `${r.method} ${r.path}`).sort()]),
  );
}

function tokenfnBinary(): string {
  const bin = process.env.TOKENFN_BIN ?? path.join(WORKSPACE_ROOT, 'target', 'debug', 'tokenfn');
  if (!existsSync(bin)) {
    assert.fail(
      `the tokenfn binary is missing at ${bin}: build it first with ` +
        `\`cargo build -p tokenfn\` in ${WORKSPACE_ROOT} (or set TOKENFN_BIN to its path)`,
    );
  }
  return bin;
}

describe('routes', () => {
  test('the ROUTES constant is what `tokenfn routes` prints', () => {
    const bin = tokenfnBinary();
    let printed: Record<string, Route[]>;
    try {
      printed = JSON.parse(execFileSync(bin, ['routes'], { encoding: 'utf8' }));
    } catch (e) {
      assert.fail(`\`${bin} routes\` failed or printed no JSON (is the binary stale?): ${e}`);
    }
    assert.deepEqual(
      routeKeys(ROUTES),
      routeKeys(printed),
      'infra/cdk/lib/routes.ts (actual) differs from `tokenfn routes` (expected): update ROUTES',
    );
  });

  test('every function name is a binary tokenfn-<name> of the workspace', () => {
    assert.deepEqual([...FUNCTION_NAMES].sort(), Object.keys(ROUTES).sort());
    for (const name of FUNCTION_NAMES) {
      const manifest = readFileSync(path.join(WORKSPACE_ROOT, 'functions', name, 'Cargo.toml'), 'utf8');
      assert.match(manifest, new RegExp(`\\[\\[bin\\]\\]\\s*\\nname\\s*=\\s*"tokenfn-${name}"`), `functions/${name}/Cargo.toml`);
    }
  });

  test('the HTTP API serves exactly those routes, each on its own function', () => {
    const [apiId, api] = one(defaults, 'AWS::ApiGatewayV2::Api');
    assert.equal(api.Properties.ProtocolType, 'HTTP');
    const [, stage] = one(defaults, 'AWS::ApiGatewayV2::Stage');
    assert.equal(stage.Properties.StageName, '$default');
    assert.equal(stage.Properties.AutoDeploy, true);

    const served: Record<string, string[]> = {};
    for (const [, route] of ofType(defaults, 'AWS::ApiGatewayV2::Route')) {
      assert.deepEqual(route.Properties.ApiId, { Ref: apiId });
      assert.equal(route.Properties.AuthorizationType, 'NONE');
      const integrationId = route.Properties.Target['Fn::Join'][1][1].Ref as string;
      const integration = defaults.json.Resources[integrationId];
      assert.equal(integration.Properties.IntegrationType, 'AWS_PROXY');
      assert.equal(integration.Properties.PayloadFormatVersion, '2.0');
      const target = integration.Properties.IntegrationUri['Fn::GetAtt'][0] as string;
      const name = FUNCTION_NAMES.find((n) => defaults.fnId[n] === target);
      assert.ok(name, `route ${route.Properties.RouteKey} targets ${target}, which is none of the functions`);
      (served[name] ??= []).push(route.Properties.RouteKey);
    }
    const sorted = Object.fromEntries(Object.keys(served).sort().map((n) => [n, served[n].sort()]));
    assert.deepEqual(sorted, routeKeys(ROUTES));

    // API Gateway may invoke each function, per route.
    const permissions = ofType(defaults, 'AWS::Lambda::Permission');
    assert.equal(permissions.length, Object.values(ROUTES).flat().length);
    for (const [, p] of permissions) {
      assert.equal(p.Properties.Principal, 'apigateway.amazonaws.com');
      assert.equal(p.Properties.Action, 'lambda:InvokeFunction');
    }
  });
});

describe('functions', () => {
  test('five Rust functions on provided.al2023, arm64 by default, JSON logs to their own log groups', () => {
    const fns = ofType(defaults, 'AWS::Lambda::Function');
    assert.equal(fns.length, 5);
    const logGroups = new Set<string>();
    for (const name of FUNCTION_NAMES) {
      const fn = defaults.json.Resources[defaults.fnId[name]].Properties;
      assert.equal(fn.Runtime, 'provided.al2023', name);
      assert.equal(fn.Handler, 'bootstrap', name);
      assert.deepEqual(fn.Architectures, ['arm64'], name);
      assert.equal(fn.LoggingConfig.LogFormat, 'JSON', name);
      const logGroupId = fn.LoggingConfig.LogGroup.Ref as string;
      const logGroup = defaults.json.Resources[logGroupId];
      assert.equal(logGroup.Type, 'AWS::Logs::LogGroup', name);
      assert.equal(logGroup.Properties.RetentionInDays, 30, name);
      logGroups.add(logGroupId);
    }
    assert.equal(logGroups.size, 5, 'one log group per function');
    assert.equal(ofType(defaults, 'AWS::Logs::LogGroup').length, 5);
  });

  test('context arch and logRetentionDays reach every function', () => {
    const s = synth({ arch: 'x86_64', logRetentionDays: '14' });
    for (const name of FUNCTION_NAMES) {
      const fn = s.json.Resources[s.fnId[name]].Properties;
      assert.deepEqual(fn.Architectures, ['x86_64'], name);
      assert.equal(s.json.Resources[fn.LoggingConfig.LogGroup.Ref].Properties.RetentionInDays, 14, name);
    }
    assert.throws(() => synth({ arch: 'sparc' }), /arch must be arm64 or x86_64/);
    assert.throws(() => synth({ logRetentionDays: '2' }), /logRetentionDays/);
  });

  test('environment: issuer from the API endpoint, table, keys only where they sign, publish or open TOTP secrets', () => {
    const [apiId] = one(defaults, 'AWS::ApiGatewayV2::Api');
    const [tableId] = one(defaults, 'AWS::DynamoDB::Table');
    const { signing: keyId, totp: totpId } = keyIds(defaults);
    const common = {
      TOKENFN_ISSUER: { 'Fn::GetAtt': [apiId, 'ApiEndpoint'] },
      TOKENFN_TABLE: { Ref: tableId },
      TOKENFN_ACCESS_TOKEN_TTL: '900',
      TOKENFN_ID_TOKEN_TTL: '3600',
      TOKENFN_REFRESH_TTL: '2592000',
      TOKENFN_REFRESH_IDLE_TTL: '1296000',
      TOKENFN_REUSE_LEEWAY: '0',
      TOKENFN_LOG: 'info',
    };
    const keys = { TOKENFN_KMS_KEY_IDS: { 'Fn::GetAtt': [keyId, 'Arn'] }, TOKENFN_SIGNING_ALG: 'ES256' };
    const expected: Record<FunctionName, object> = {
      // Without TOKENFN_TOTP_KEY_ID two-step sign-in answers 503.
      authorize: {
        ...common,
        TOKENFN_TOTP_KEY_ID: { 'Fn::GetAtt': [totpId, 'Arn'] },
        TOKENFN_PRODUCT_NAME: 'tokenfn',
        TOKENFN_ACCENT_COLOR: '#2747c8',
        TOKENFN_PLAYGROUND: 'off',
      },
      token: { ...common, ...keys },
      refresh: { ...common, ...keys },
      revoke: common,
      discovery: { ...common, ...keys },
    };
    for (const name of FUNCTION_NAMES) {
      assert.deepEqual(defaults.json.Resources[defaults.fnId[name]].Properties.Environment.Variables, expected[name], name);
    }
  });

  test('settings from context', () => {
    const s = synth({ accessTokenTtl: '600', idTokenTtl: '1800', refreshTtl: '86400', refreshIdleTtl: '3600', reuseLeeway: '2', log: 'debug' });
    const env = s.json.Resources[s.fnId.token].Properties.Environment.Variables;
    assert.equal(env.TOKENFN_ACCESS_TOKEN_TTL, '600');
    assert.equal(env.TOKENFN_ID_TOKEN_TTL, '1800');
    assert.equal(env.TOKENFN_REFRESH_TTL, '86400');
    assert.equal(env.TOKENFN_REFRESH_IDLE_TTL, '3600');
    assert.equal(env.TOKENFN_REUSE_LEEWAY, '2');
    assert.equal(env.TOKENFN_LOG, 'debug');
    assert.throws(() => synth({ accessTokenTtl: '15m' }), /accessTokenTtl must be a whole number/);
    assert.throws(() => synth({ idTokenTtl: '1h' }), /idTokenTtl must be a whole number/);
  });

  /** The page settings that function `name` gets. */
  const PAGE_SETTINGS = ['TOKENFN_PRODUCT_NAME', 'TOKENFN_LOGO_URL', 'TOKENFN_ACCENT_COLOR', 'TOKENFN_PLAYGROUND'];
  const pageSettings = (s: Synth, name: FunctionName): Record<string, unknown> =>
    Object.fromEntries(
      Object.entries(s.json.Resources[s.fnId[name]].Properties.Environment.Variables).filter(([k]) => PAGE_SETTINGS.includes(k)),
    );

  test("the pages' look and the playground: the authorize function's alone, by default the code's defaults and off", () => {
    // Look::default() in shared/src/config.rs.
    const config = readFileSync(path.join(WORKSPACE_ROOT, 'shared', 'src', 'config.rs'), 'utf8');
    assert.match(config, new RegExp(`product: "${LOOK_DEFAULTS.productName}"\\.into\\(\\)`), 'Look::default() product');
    assert.match(config, new RegExp(`accent: "${LOOK_DEFAULTS.accentColor}"\\.into\\(\\)`), 'Look::default() accent');
    for (const name of FUNCTION_NAMES) {
      // No logo: TOKENFN_LOGO_URL unset. The playground registers a public
      // client, so it is off unless asked for.
      const expected = name === 'authorize' ? { TOKENFN_PRODUCT_NAME: 'tokenfn', TOKENFN_ACCENT_COLOR: '#2747c8', TOKENFN_PLAYGROUND: 'off' } : {};
      assert.deepEqual(pageSettings(defaults, name), expected, name);
    }
  });

  test("the pages' look and the playground from context", () => {
    const s = synth({ productName: 'Acme ID', logoUrl: 'https://cdn.acme.example/logo.svg', accentColor: '#0A7F3F', playground: 'on' });
    for (const name of FUNCTION_NAMES) {
      const expected =
        name === 'authorize'
          ? {
              TOKENFN_PRODUCT_NAME: 'Acme ID',
              TOKENFN_LOGO_URL: 'https://cdn.acme.example/logo.svg',
              TOKENFN_ACCENT_COLOR: '#0A7F3F',
              TOKENFN_PLAYGROUND: 'on',
            }
          : {};
      assert.deepEqual(pageSettings(s, name), expected, name);
    }
    const withPath = synth({ logoUrl: '/logo.svg', accentColor: '#abc', playground: 'off' });
    assert.deepEqual(pageSettings(withPath, 'authorize'), {
      TOKENFN_PRODUCT_NAME: 'tokenfn',
      TOKENFN_LOGO_URL: '/logo.svg',
      TOKENFN_ACCENT_COLOR: '#abc',
      TOKENFN_PLAYGROUND: 'off',
    });
    assert.equal(pageSettings(synth({ playground: 'true' }), 'authorize').TOKENFN_PLAYGROUND, 'on');
  });

  test('a look or playground setting the code would refuse fails at synth', () => {
    // Each would stop the authorize function at init (Look::with_settings).
    for (const accentColor of ['red', 'red; background:url(x)', '#12345', '2747c8', '#ggg']) {
      assert.throws(() => synth({ accentColor }), /accentColor must be a colour/, accentColor);
    }
    for (const logoUrl of ['http://plain.example/logo.png', '//elsewhere.example/logo.png', '/logo.svg" onerror="x', '/a b', 'logo.svg', 'javascript:alert(1)']) {
      assert.throws(() => synth({ logoUrl }), /logoUrl must be an https URL or a path/, logoUrl);
    }
    for (const productName of ['  ', 'x'.repeat(61), 'bell\u0007']) {
      assert.throws(() => synth({ productName }), /productName must be 1 to 60 printable characters/, JSON.stringify(productName));
    }
    assert.throws(() => synth({ playground: 'yes' }), /playground must be on or off/);
    // The props themselves, without context.
    const app = () => new App({ context: { ...FEATURE_FLAGS, 'aws:cdk:bundling-stacks': [] } });
    assert.throws(() => new TokenfnStack(app(), 'Bad', { look: { accentColor: 'blue' } }), /accentColor/);
    assert.doesNotThrow(() => new TokenfnStack(app(), 'Good', { look: { productName: 'x'.repeat(60) }, playground: true }));
  });

  test('a custom domain is the issuer, and the execute-api endpoint is off', () => {
    const s = synth({ domainName: 'id.example.com', certificateArn: 'arn:aws:acm:eu-west-1:111111111111:certificate/abc' });
    for (const name of FUNCTION_NAMES) {
      assert.equal(s.json.Resources[s.fnId[name]].Properties.Environment.Variables.TOKENFN_ISSUER, 'https://id.example.com');
    }
    s.template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', { DomainName: 'id.example.com' });
    s.template.resourceCountIs('AWS::ApiGatewayV2::ApiMapping', 1);
    s.template.hasResourceProperties('AWS::ApiGatewayV2::Api', { DisableExecuteApiEndpoint: true });
    assert.equal(s.json.Outputs.IssuerUrl.Value, 'https://id.example.com');
    assert.equal(s.json.Outputs.DiscoveryUrl.Value, 'https://id.example.com/.well-known/openid-configuration');
    assert.ok(s.json.Outputs.CustomDomainTarget);
    assert.throws(() => synth({ domainName: 'id.example.com' }), /certificateArn/);
    assert.throws(() => synth({ domainName: 'https://id.example.com', certificateArn: 'arn:x' }), /host name/);
  });
});

describe('data and keys', () => {
  test('the DynamoDB table matches the store (create_table in shared/src/store/dynamodb.rs)', () => {
    const [, table] = one(defaults, 'AWS::DynamoDB::Table');
    assert.equal(table.DeletionPolicy, 'Retain');
    assert.equal(table.UpdateReplacePolicy, 'Retain');
    defaults.template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      AttributeDefinitions: Match.arrayWith([{ AttributeName: 'pk', AttributeType: 'S' }]),
      TimeToLiveSpecification: { AttributeName: 'expires_at', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      DeletionProtectionEnabled: true,
      GlobalSecondaryIndexes: [
        {
          IndexName: 'by_user',
          KeySchema: [
            { AttributeName: 'gsi_user', KeyType: 'HASH' },
            { AttributeName: 'gsi_client', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
        {
          IndexName: 'by_client',
          KeySchema: [{ AttributeName: 'gsi_client', KeyType: 'HASH' }],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['revoked_at', 'expires_at'] },
        },
      ],
    });
    const attributes = table.Properties.AttributeDefinitions.map((a: { AttributeName: string }) => a.AttributeName).sort();
    assert.deepEqual(attributes, ['gsi_client', 'gsi_user', 'pk']);

    // The store's own schema, so a renamed index or key fails here too.
    const store = readFileSync(path.join(WORKSPACE_ROOT, 'shared', 'src', 'store', 'dynamodb.rs'), 'utf8');
    for (const [constant, value] of [
      ['PK', 'pk'],
      ['EXPIRES_AT', 'expires_at'],
      ['GSI_USER', 'gsi_user'],
      ['GSI_CLIENT', 'gsi_client'],
      ['BY_USER', 'by_user'],
      ['BY_CLIENT', 'by_client'],
    ]) {
      assert.match(store, new RegExp(`const ${constant}: &str = "${value}";`), `dynamodb.rs ${constant}`);
    }
    assert.match(store, /non_key_attributes\("revoked_at"\)\s*\.non_key_attributes\(EXPIRES_AT\)/);

    synth({ deletionProtection: 'false' }).template.hasResourceProperties('AWS::DynamoDB::Table', {
      DeletionProtectionEnabled: false,
    });
  });

  /** The aliases of key `keyId`. */
  const aliasesOf = (s: Synth, keyId: string) =>
    ofType(s, 'AWS::KMS::Alias').filter(
      ([, a]) => JSON.stringify(a.Properties.TargetKeyId) === JSON.stringify({ 'Fn::GetAtt': [keyId, 'Arn'] }),
    );

  test('the signing key is a retained P-256 SIGN_VERIFY key with an alias', () => {
    const { signing: keyId } = keyIds(defaults);
    const key = defaults.json.Resources[keyId];
    assert.equal(key.Properties.KeySpec, 'ECC_NIST_P256');
    assert.equal(key.Properties.KeyUsage, 'SIGN_VERIFY');
    assert.equal(key.DeletionPolicy, 'Retain');
    const aliases = aliasesOf(defaults, keyId);
    assert.equal(aliases.length, 1);
    assert.match(aliases[0][1].Properties.AliasName, /^alias\//);
  });

  test('the TOTP key is a retained, rotated symmetric key with an alias', () => {
    const { signing, totp } = keyIds(defaults);
    const key = defaults.json.Resources[totp];
    assert.equal(key.Properties.KeySpec, 'SYMMETRIC_DEFAULT');
    assert.equal(key.Properties.KeyUsage, 'ENCRYPT_DECRYPT');
    assert.equal(key.Properties.EnableKeyRotation, true);
    // Deleting it would leave every enrolled secret unreadable.
    assert.equal(key.DeletionPolicy, 'Retain');
    assert.equal(key.UpdateReplacePolicy, 'Retain');
    assert.equal(key.Properties.PendingWindowInDays, defaults.json.Resources[signing].Properties.PendingWindowInDays);
    const aliases = aliasesOf(defaults, totp);
    assert.equal(aliases.length, 1);
    assert.match(aliases[0][1].Properties.AliasName, /^alias\/.+totp$/);
  });

  test('TOTP_CONTEXT_KEY is the encryption context key of shared/src/seal.rs', () => {
    const seal = readFileSync(path.join(WORKSPACE_ROOT, 'shared', 'src', 'seal.rs'), 'utf8');
    assert.match(seal, new RegExp(`const CONTEXT: &str = "${TOTP_CONTEXT_KEY}";`));
  });

  test('the TOTP key policy: the root administers and may encrypt, only authorize decrypts, both with the context', () => {
    const { totp } = keyIds(defaults);
    const roleOf: Record<string, FunctionName> = {};
    for (const name of FUNCTION_NAMES) roleOf[defaults.json.Resources[defaults.fnId[name]].Properties.Role['Fn::GetAtt'][0]] = name;
    const withContext = { Null: { [`kms:EncryptionContext:${TOTP_CONTEXT_KEY}`]: 'false' } };

    const uses: Record<string, Set<string>> = {};
    const admin: string[] = [];
    for (const st of defaults.json.Resources[totp].Properties.KeyPolicy.Statement) {
      const sid: string = st.Sid ?? JSON.stringify(st.Principal);
      assert.equal(st.Effect, 'Allow', sid);
      for (const forbidden of ['NotAction', 'NotPrincipal', 'NotResource']) {
        assert.equal(st[forbidden], undefined, `${sid}: ${forbidden}`);
      }
      assert.equal(st.Resource, '*', sid);
      const actions: string[] = [st.Action].flat();
      for (const action of actions) assert.ok(!/[*?]/.test(action), `${sid}: wildcard action ${action}`);
      assert.deepEqual(Object.keys(st.Principal), ['AWS'], sid);
      const used = actions.filter((a) => !(KEY_ADMIN_ACTIONS as readonly string[]).includes(a));
      if (used.length > 0) assert.deepEqual(st.Condition, withContext, `${sid}: ${used} without the encryption context`);
      else assert.equal(st.Condition, undefined, sid);
      for (const principal of [st.Principal.AWS].flat()) {
        let who: string;
        if (JSON.stringify(principal) === ROOT) {
          who = 'root';
          admin.push(...actions.filter((a) => !used.includes(a)));
        } else {
          who = roleOf[principal?.['Fn::GetAtt']?.[0]];
          assert.ok(who, `${sid}: principal ${JSON.stringify(principal)} is neither the account root nor a function's role`);
          assert.equal(used.length, actions.length, `${sid}: ${who} may administer the key`);
        }
        for (const a of used) (uses[a] ??= new Set()).add(who);
      }
    }
    assert.deepEqual(admin.sort(), [...KEY_ADMIN_ACTIONS].sort());
    // IAM policies may let operators seal (enrol); only the authorize role
    // opens, so no IAM policy can let anyone read a secret.
    const granted = Object.fromEntries(Object.entries(uses).map(([a, who]) => [a, [...who].sort()]));
    assert.deepEqual(granted, { 'kms:Encrypt': ['root'], 'kms:Decrypt': ['authorize'] });
    assert.deepEqual(
      FUNCTION_NAMES.filter((n) => ACCESS[n].totpKey === 'decrypt'),
      ['authorize'],
    );
  });

  for (const [label, context] of [
    ['defaults', {}],
    ['with additional published keys', { additionalPublicKeyArns: 'arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-0000-0000-000000000000' }],
  ] as const) {
    test(`the key policy: the root administers, only token and refresh sign (${label})`, () => {
      const s = synth(context);
      const key = s.json.Resources[keyIds(s).signing];
      const roleOf: Record<string, FunctionName> = {};
      for (const name of FUNCTION_NAMES) roleOf[s.json.Resources[s.fnId[name]].Properties.Role['Fn::GetAtt'][0]] = name;
      const root = ROOT;

      const rootActions = new Set<string>();
      const users: Record<string, Set<string>> = {};
      for (const st of key.Properties.KeyPolicy.Statement) {
        const sid: string = st.Sid ?? JSON.stringify(st.Principal);
        assert.equal(st.Effect, 'Allow', sid);
        for (const forbidden of ['NotAction', 'NotPrincipal', 'NotResource', 'Condition']) {
          assert.equal(st[forbidden], undefined, `${sid}: ${forbidden}`);
        }
        // In a key policy "*" is the key itself.
        assert.equal(st.Resource, '*', sid);
        const actions: string[] = [st.Action].flat();
        for (const action of actions) assert.ok(!/[*?]/.test(action), `${sid}: wildcard action ${action}`);
        assert.deepEqual(Object.keys(st.Principal), ['AWS'], sid);
        for (const principal of [st.Principal.AWS].flat()) {
          if (JSON.stringify(principal) === root) {
            for (const a of actions) rootActions.add(a);
            continue;
          }
          const name = roleOf[principal?.['Fn::GetAtt']?.[0]];
          assert.ok(name, `${sid}: principal ${JSON.stringify(principal)} is neither the account root nor a function's role`);
          assert.deepEqual(principal, { 'Fn::GetAtt': [principal['Fn::GetAtt'][0], 'Arn'] });
          for (const a of actions) (users[a] ??= new Set()).add(name);
        }
      }

      // The administrators' list, and none of the actions that use the key:
      // with those, any IAM policy in the account could grant them.
      for (const use of ['kms:Sign', 'kms:Verify', 'kms:GetPublicKey', 'kms:CreateGrant', 'kms:Encrypt', 'kms:Decrypt']) {
        assert.ok(!rootActions.has(use), `the account root may ${use}`);
      }
      assert.deepEqual([...rootActions].sort(), [...KEY_ADMIN_ACTIONS].sort());
      const granted = Object.fromEntries(Object.entries(users).map(([a, names]) => [a, [...names].sort()]));
      assert.deepEqual(granted, {
        'kms:Sign': ['refresh', 'token'],
        'kms:GetPublicKey': ['discovery', 'refresh', 'token'],
      });
    });
  }

  test('the key administration actions are those of infra/template.yaml', () => {
    const sam = readFileSync(path.join(WORKSPACE_ROOT, 'infra', 'template.yaml'), 'utf8');
    const lists = sam
      .split('Sid: KeyAdministration')
      .slice(1)
      .map((block) => [...block.split('Resource:')[0].matchAll(/^\s*- (kms:\w+)\s*$/gm)].map((m) => m[1]).sort());
    assert.ok(lists.length > 0, 'no KeyAdministration statement in infra/template.yaml');
    for (const list of lists) assert.deepEqual(list, [...KEY_ADMIN_ACTIONS].sort());
  });
});

/** Every (action, resource) a role's policies allow, resources named symbolically. */
function grants(s: Synth, name: FunctionName): string[] {
  const fn = s.json.Resources[s.fnId[name]].Properties;
  const roleId = fn.Role['Fn::GetAtt'][0] as string;
  const role = s.json.Resources[roleId];
  assert.equal(role.Type, 'AWS::IAM::Role');
  assert.equal(role.Properties.ManagedPolicyArns, undefined, `${name}: no managed policies`);
  assert.deepEqual(role.Properties.AssumeRolePolicyDocument.Statement, [
    { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } },
  ]);

  const [tableId] = one(s, 'AWS::DynamoDB::Table');
  const { signing: keyId, totp: totpId } = keyIds(s);
  const logGroupId = fn.LoggingConfig.LogGroup.Ref as string;
  const symbol = (resource: unknown): string => {
    const text = JSON.stringify(resource);
    const known: Record<string, string> = {
      [JSON.stringify({ 'Fn::GetAtt': [tableId, 'Arn'] })]: 'table',
      [JSON.stringify({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [tableId, 'Arn'] }, '/index/by_user']] })]: 'table/index/by_user',
      [JSON.stringify({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [tableId, 'Arn'] }, '/index/by_client']] })]: 'table/index/by_client',
      [JSON.stringify({ 'Fn::GetAtt': [keyId, 'Arn'] })]: 'key',
      [JSON.stringify({ 'Fn::GetAtt': [totpId, 'Arn'] })]: 'totp-key',
      [JSON.stringify({ 'Fn::GetAtt': [logGroupId, 'Arn'] })]: 'own-log-group',
    };
    return known[text] ?? text;
  };

  const statements: any[] = [];
  for (const inline of role.Properties.Policies ?? []) statements.push(...inline.PolicyDocument.Statement);
  for (const [, policy] of ofType(s, 'AWS::IAM::Policy')) {
    if (policy.Properties.Roles.some((r: unknown) => JSON.stringify(r) === JSON.stringify({ Ref: roleId }))) {
      statements.push(...policy.Properties.PolicyDocument.Statement);
    }
  }
  const pairs: string[] = [];
  for (const st of statements) {
    assert.equal(st.Effect, 'Allow');
    assert.equal(st.NotAction, undefined);
    assert.equal(st.NotResource, undefined);
    assert.equal(st.Condition, undefined);
    for (const action of [st.Action].flat()) {
      assert.ok(!action.includes('*'), `${name}: wildcard action ${action}`);
      for (const resource of [st.Resource].flat()) {
        assert.notEqual(resource, '*', `${name}: ${action} on "*"`);
        pairs.push(`${action} ${symbol(resource)}`);
      }
    }
  }
  return [...new Set(pairs)].sort();
}

describe('least privilege', () => {
  const logs = ['logs:CreateLogStream own-log-group', 'logs:PutLogEvents own-log-group'];
  const on = (resource: string, ...actions: string[]) => actions.map((a) => `${a} ${resource}`);
  const indexes = [...on('table/index/by_user', 'dynamodb:Query'), ...on('table/index/by_client', 'dynamodb:Query')];
  const rotate = on('table', 'dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:ConditionCheckItem');
  const expected: Record<FunctionName, string[]> = {
    authorize: [
      ...logs,
      ...on('table', 'dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'),
      ...indexes,
      ...on('totp-key', 'kms:Decrypt'),
    ],
    token: [...logs, ...rotate, ...indexes, ...on('key', 'kms:Sign', 'kms:GetPublicKey')],
    refresh: [...logs, ...rotate, ...on('key', 'kms:Sign', 'kms:GetPublicKey')],
    revoke: [
      ...logs,
      ...on('table', 'dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'),
      ...indexes,
    ],
    discovery: [...logs, ...on('key', 'kms:GetPublicKey')],
  };

  for (const name of FUNCTION_NAMES) {
    test(`${name}: exactly its own grants`, () => {
      assert.deepEqual(grants(defaults, name), [...expected[name]].sort());
    });
  }

  test('each function has a role of its own', () => {
    const roles = FUNCTION_NAMES.map((n) => JSON.stringify(defaults.json.Resources[defaults.fnId[n]].Properties.Role));
    assert.equal(new Set(roles).size, 5);
    assert.equal(ofType(defaults, 'AWS::IAM::Role').length, 5);
  });

  test('additional published keys: GetPublicKey on all, Sign on the stack key only', () => {
    const old = 'arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-0000-0000-000000000000';
    const s = synth({ additionalPublicKeyArns: old });
    const { signing: keyId } = keyIds(s);
    assert.deepEqual(s.json.Resources[s.fnId.discovery].Properties.Environment.Variables.TOKENFN_KMS_KEY_IDS, {
      'Fn::Join': ['', [{ 'Fn::GetAtt': [keyId, 'Arn'] }, `,${old}`]],
    });
    const token = grants(s, 'token');
    assert.ok(token.includes(`kms:GetPublicKey ${JSON.stringify(old)}`));
    assert.ok(!token.includes(`kms:Sign ${JSON.stringify(old)}`));
    assert.ok(token.includes('kms:Sign key'));
  });
});

describe('alarms and outputs', () => {
  test('Errors and Throttles alarms on token and refresh', () => {
    const alarms = ofType(defaults, 'AWS::CloudWatch::Alarm').map(([, a]) => {
      const p = a.Properties;
      assert.equal(p.Namespace, 'AWS/Lambda');
      assert.equal(p.Dimensions.length, 1);
      assert.equal(p.Dimensions[0].Name, 'FunctionName');
      const name = FUNCTION_NAMES.find((n) => defaults.fnId[n] === p.Dimensions[0].Value.Ref);
      return `${name} ${p.MetricName}`;
    });
    assert.deepEqual(alarms.sort(), ['refresh Errors', 'refresh Throttles', 'token Errors', 'token Throttles']);

    const topic = 'arn:aws:sns:eu-west-1:111111111111:ops';
    const s = synth({ alarmTopicArn: topic });
    for (const [, a] of ofType(s, 'AWS::CloudWatch::Alarm')) assert.deepEqual(a.Properties.AlarmActions, [topic]);
  });

  test('issuer, discovery URL, function names, the revoke ARN and the TOTP key', () => {
    const [apiId] = one(defaults, 'AWS::ApiGatewayV2::Api');
    const out = defaults.json.Outputs;
    assert.deepEqual(out.IssuerUrl.Value, { 'Fn::GetAtt': [apiId, 'ApiEndpoint'] });
    assert.deepEqual(out.DiscoveryUrl.Value, {
      'Fn::Join': ['', [{ 'Fn::GetAtt': [apiId, 'ApiEndpoint'] }, '/.well-known/openid-configuration']],
    });
    for (const name of FUNCTION_NAMES) {
      const title = name[0].toUpperCase() + name.slice(1);
      assert.deepEqual(out[`${title}FunctionName`]?.Value, { Ref: defaults.fnId[name] }, name);
    }
    assert.deepEqual(out.JwksUrl.Value, {
      'Fn::Join': ['', [{ 'Fn::GetAtt': [apiId, 'ApiEndpoint'] }, '/.well-known/jwks.json']],
    });
    assert.deepEqual(out.RevokeFunctionArn.Value, { 'Fn::GetAtt': [defaults.fnId.revoke, 'Arn'] });
    // The operators' --totp-key-id for `tokenfn user mfa enroll`.
    assert.deepEqual(out.TotpKeyId.Value, { 'Fn::GetAtt': [keyIds(defaults).totp, 'Arn'] });
  });
});
