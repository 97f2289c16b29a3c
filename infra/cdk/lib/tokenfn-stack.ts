import * as path from 'node:path';

import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';

import { FUNCTION_NAMES, FunctionName, ROUTES } from './routes';

/** The workspace root: this file runs as infra/cdk/dist/lib/tokenfn-stack.js. */
export const WORKSPACE_ROOT = path.resolve(__dirname, '..', '..', '..', '..');

/** Names fixed by the store (shared/src/store/dynamodb.rs, `create_table`). */
export const TABLE_SCHEMA = {
  partitionKey: 'pk',
  ttlAttribute: 'expires_at',
  byUser: { indexName: 'by_user', partitionKey: 'gsi_user', sortKey: 'gsi_client' },
  byClient: { indexName: 'by_client', partitionKey: 'gsi_client', include: ['revoked_at', 'expires_at'] },
} as const;

/**
 * What each function may do: the least it needs, and nothing for the others.
 * `keys` is the signing key; `totpKey` the key that seals TOTP secrets.
 */
export const ACCESS: Readonly<
  Record<
    FunctionName,
    {
      table: readonly string[];
      indexes: readonly string[];
      keys: 'sign' | 'publish' | 'none';
      totpKey: 'decrypt' | 'none';
    }
  >
> = {
  // The grant cap reads a user's grants through the by_user index. A
  // second-factor check opens the user's sealed TOTP secret (kms:Decrypt);
  // enrolment, which seals, is an operator's CLI command.
  authorize: {
    // BatchGetItem: the playground's introspection (client with token).
    table: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
    indexes: ['dynamodb:Query'],
    keys: 'none',
    totpKey: 'decrypt',
  },
  token: {
    table: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:ConditionCheckItem'],
    indexes: ['dynamodb:Query'],
    keys: 'sign',
    totpKey: 'none',
  },
  refresh: {
    table: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:ConditionCheckItem'],
    indexes: [],
    keys: 'sign',
    totpKey: 'none',
  },
  // Revocation by user and by client goes through the indexes, never a Scan.
  revoke: {
    table: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
    indexes: ['dynamodb:Query'],
    keys: 'none',
    totpKey: 'none',
  },
  // Discovery builds its documents at init from KMS public keys. It still gets
  // TOKENFN_TABLE (the settings require it) but no DynamoDB permission.
  discovery: { table: [], indexes: [], keys: 'publish', totpKey: 'none' },
};

/**
 * The encryption context key that shared/src/seal.rs (`KmsBox`) sets to the
 * user id. The TOTP key's policy requires it for kms:Encrypt and kms:Decrypt.
 */
export const TOTP_CONTEXT_KEY = 'tokenfn-user';

/**
 * What the account root may do with the signing key, through its key policy:
 * everything CloudFormation does to the key and its alias, and what an
 * administrator needs to inspect, disable or delete it. No kms:Sign, no
 * kms:GetPublicKey and no grants, so no IAM policy in the account can give
 * anyone the use of the key. The same list as infra/template.yaml's
 * KeyAdministration statement (test/stack.test.ts compares them).
 */
export const KEY_ADMIN_ACTIONS = [
  'kms:DescribeKey',
  'kms:GetKeyPolicy',
  'kms:PutKeyPolicy',
  'kms:ListKeyPolicies',
  'kms:GetKeyRotationStatus',
  'kms:EnableKeyRotation',
  'kms:DisableKeyRotation',
  'kms:ListResourceTags',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:UpdateKeyDescription',
  'kms:EnableKey',
  'kms:DisableKey',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
  'kms:CreateAlias',
  'kms:UpdateAlias',
  'kms:DeleteAlias',
  'kms:ListGrants',
  'kms:RevokeGrant',
] as const;

/** Defaults for clients registered without their own lifetimes (seconds). */
export interface TokenSettings {
  /** TOKENFN_ACCESS_TOKEN_TTL. @default 900 */
  readonly accessTokenTtl?: number;
  /** TOKENFN_ID_TOKEN_TTL: lifetime of ID tokens. @default 3600 */
  readonly idTokenTtl?: number;
  /** TOKENFN_REFRESH_TTL: absolute lifetime of a grant's refresh tokens. @default 2592000 (30 days) */
  readonly refreshTtl?: number;
  /** TOKENFN_REFRESH_IDLE_TTL. @default 1296000 (15 days) */
  readonly refreshIdleTtl?: number;
  /** TOKENFN_REUSE_LEEWAY. @default 0 */
  readonly reuseLeeway?: number;
  /** TOKENFN_LOG: a tracing filter. @default 'info' */
  readonly log?: string;
}

/**
 * How the pages present the service: `Look` in shared/src/config.rs, read by
 * the authorize function (the one that serves pages) alone.
 */
export interface Look {
  /** TOKENFN_PRODUCT_NAME: the name on every page, 1 to 60 printable characters. @default 'tokenfn' */
  readonly productName?: string;
  /** TOKENFN_LOGO_URL: an https URL, or a path on this server such as `/logo.svg`. @default no logo */
  readonly logoUrl?: string;
  /** TOKENFN_ACCENT_COLOR: `#rgb` or `#rrggbb`. @default '#2747c8' */
  readonly accentColor?: string;
}

/** The defaults of `Look::default()` in shared/src/config.rs. */
export const LOOK_DEFAULTS = { productName: 'tokenfn', accentColor: '#2747c8' } as const;

export interface TokenfnStackProps extends StackProps {
  /** CPU architecture of the functions (and of the cargo-lambda build). @default ARM_64 */
  readonly architecture?: lambda.Architecture;
  /** The Cargo.toml that cargo-lambda builds from. @default the workspace's Cargo.toml */
  readonly manifestPath?: string;
  /** Retention of the functions' log groups. @default ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** DynamoDB deletion protection. The table is retained on stack deletion either way. @default true */
  readonly tableDeletionProtection?: boolean;
  /**
   * Custom domain (host name only, e.g. `id.example.com`) for the issuer. Needs `certificateArn`.
   * Without it the issuer is the API's default endpoint URL.
   */
  readonly domainName?: string;
  /** ACM certificate for `domainName`, in the stack's region. */
  readonly certificateArn?: string;
  /** Keys published in the JWKS after the stack's own key (for rotation): the stack's key signs. */
  readonly additionalPublicKeyArns?: readonly string[];
  /** SNS topic the alarms notify. @default no action */
  readonly alarmTopicArn?: string;
  /** @default 256 */
  readonly memorySize?: number;
  readonly settings?: TokenSettings;
  /** The pages' name, logo and accent colour. @default tokenfn's own */
  readonly look?: Look;
  /**
   * TOKENFN_PLAYGROUND: serve `/playground`, a page that signs in as a public
   * client named `playground` (registered on its first view) and shows the
   * tokens it gets. Off, `/playground` and `/playground/introspect` answer 404.
   * @default false
   */
  readonly playground?: boolean;
}

/** The key policy statement that lets the account's administrators manage a key (KEY_ADMIN_ACTIONS). */
function keyAdministration(): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'KeyAdministration',
    principals: [new iam.AccountRootPrincipal()],
    actions: [...KEY_ADMIN_ACTIONS],
    // In a key policy "*" is this key, and nothing else.
    resources: ['*'],
  });
}

export class TokenfnStack extends Stack {
  readonly api: apigwv2.HttpApi;
  readonly table: dynamodb.Table;
  readonly signingKey: kms.Key;
  readonly totpKey: kms.Key;
  readonly functions: Readonly<Record<FunctionName, lambda.Function>>;
  readonly issuer: string;

  constructor(scope: Construct, id: string, props: TokenfnStackProps = {}) {
    super(scope, id, props);

    const architecture = props.architecture ?? lambda.Architecture.ARM_64;
    const manifestPath = props.manifestPath ?? path.join(WORKSPACE_ROOT, 'Cargo.toml');
    const settings = props.settings ?? {};

    this.table = new dynamodb.Table(this, 'Table', {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      partitionKey: { name: TABLE_SCHEMA.partitionKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: TABLE_SCHEMA.ttlAttribute,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      deletionProtection: props.tableDeletionProtection ?? true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: TABLE_SCHEMA.byUser.indexName,
      partitionKey: { name: TABLE_SCHEMA.byUser.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: TABLE_SCHEMA.byUser.sortKey, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: TABLE_SCHEMA.byClient.indexName,
      partitionKey: { name: TABLE_SCHEMA.byClient.partitionKey, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: [...TABLE_SCHEMA.byClient.include],
    });
    const indexArns = [TABLE_SCHEMA.byUser.indexName, TABLE_SCHEMA.byClient.indexName].map(
      (name) => `${this.table.tableArn}/index/${name}`,
    );

    // ES256. Retained: deleting it would invalidate every token it signed.
    // Its own policy instead of CDK's default (the account root may kms:*):
    // the account's administrators manage the key (KEY_ADMIN_ACTIONS), and
    // the statements added below, once the roles exist, let the token and
    // refresh roles sign and read the public key and the discovery role read
    // the public key. Nobody else can use it, whatever their IAM policies say.
    this.signingKey = new kms.Key(this, 'SigningKey', {
      description: 'tokenfn ES256 token signing key',
      keySpec: kms.KeySpec.ECC_NIST_P256,
      keyUsage: kms.KeyUsage.SIGN_VERIFY,
      alias: `alias/${this.stackName}/signing`,
      removalPolicy: RemovalPolicy.RETAIN,
      policy: new iam.PolicyDocument({ statements: [keyAdministration()] }),
    });
    const publishedKeyArns = [this.signingKey.keyArn, ...(props.additionalPublicKeyArns ?? [])];

    // Seals the users' TOTP secrets. Retained: without it no enrolled secret
    // can be opened, and every enrolled user would have to enrol again.
    // Operators enrol users with the tokenfn CLI and their own credentials,
    // so the account root may kms:Encrypt (IAM policies can grant it) and
    // use the key no other way; only the authorize role may kms:Decrypt
    // (added below), so no IAM policy can let anyone read a secret.
    const withContext = { Null: { [`kms:EncryptionContext:${TOTP_CONTEXT_KEY}`]: 'false' } };
    this.totpKey = new kms.Key(this, 'TotpKey', {
      description: 'tokenfn TOTP secret sealing key',
      keySpec: kms.KeySpec.SYMMETRIC_DEFAULT,
      keyUsage: kms.KeyUsage.ENCRYPT_DECRYPT,
      enableKeyRotation: true,
      alias: `alias/${this.stackName}/totp`,
      removalPolicy: RemovalPolicy.RETAIN,
      policy: new iam.PolicyDocument({
        statements: [
          keyAdministration(),
          new iam.PolicyStatement({
            sid: 'SealSecrets',
            principals: [new iam.AccountRootPrincipal()],
            actions: ['kms:Encrypt'],
            resources: ['*'],
            conditions: withContext,
          }),
        ],
      }),
    });

    // The API comes first: the functions read its endpoint as their issuer,
    // and the API's routes and permissions then refer to the functions.
    let domain: apigwv2.DomainName | undefined;
    if (props.domainName !== undefined) {
      if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i.test(props.domainName)) {
        throw new Error(`domainName must be a host name such as id.example.com, not ${JSON.stringify(props.domainName)}`);
      }
      if (props.certificateArn === undefined) {
        throw new Error('domainName needs certificateArn (an ACM certificate in the stack region)');
      }
      domain = new apigwv2.DomainName(this, 'Domain', {
        domainName: props.domainName,
        certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', props.certificateArn),
      });
    }
    this.api = new apigwv2.HttpApi(this, 'Api', {
      apiName: this.stackName,
      description: 'tokenfn OAuth 2.0 / OpenID Connect endpoints',
      createDefaultStage: true,
      defaultDomainMapping: domain ? { domainName: domain } : undefined,
      // One issuer: with a custom domain, the execute-api URL would be a second one.
      disableExecuteApiEndpoint: domain !== undefined,
    });
    this.issuer = domain ? `https://${props.domainName}` : this.api.apiEndpoint;

    const baseEnvironment: Record<string, string> = {
      TOKENFN_ISSUER: this.issuer,
      TOKENFN_TABLE: this.table.tableName,
      TOKENFN_ACCESS_TOKEN_TTL: seconds('accessTokenTtl', settings.accessTokenTtl ?? 900),
      TOKENFN_ID_TOKEN_TTL: seconds('idTokenTtl', settings.idTokenTtl ?? 3600),
      TOKENFN_REFRESH_TTL: seconds('refreshTtl', settings.refreshTtl ?? 30 * 86_400),
      TOKENFN_REFRESH_IDLE_TTL: seconds('refreshIdleTtl', settings.refreshIdleTtl ?? 15 * 86_400),
      TOKENFN_REUSE_LEEWAY: seconds('reuseLeeway', settings.reuseLeeway ?? 0),
      TOKENFN_LOG: settings.log ?? 'info',
    };
    // Only the authorize function serves pages, so only it gets these.
    const pageEnvironment: Record<string, string> = {
      ...lookEnvironment(props.look ?? {}),
      TOKENFN_PLAYGROUND: props.playground ? 'on' : 'off',
    };

    const functions = {} as Record<FunctionName, lambda.Function>;
    const keyUsers = { sign: [] as iam.Role[], publish: [] as iam.Role[], decrypt: [] as iam.Role[] };
    for (const name of FUNCTION_NAMES) {
      const title = name[0].toUpperCase() + name.slice(1);
      const access = ACCESS[name];

      const logGroup = new logs.LogGroup(this, `${title}Logs`, {
        retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      });
      // Its own role, without AWSLambdaBasicExecutionRole (whose logs actions
      // are on "*"): it writes to its own log group and nowhere else.
      const role = new iam.Role(this, `${title}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `tokenfn ${name} function`,
      });
      logGroup.grantWrite(role);
      if (access.table.length > 0) {
        role.addToPolicy(new iam.PolicyStatement({ actions: [...access.table], resources: [this.table.tableArn] }));
      }
      if (access.indexes.length > 0) {
        role.addToPolicy(new iam.PolicyStatement({ actions: [...access.indexes], resources: indexArns }));
      }
      // These go to the role's DefaultPolicy, an AWS::IAM::Policy of its own
      // (as the SAM template's AWS::IAM::RolePolicy): the key's policy names
      // the role, so the role itself must not depend on the key.
      if (access.keys === 'sign') {
        keyUsers.sign.push(role);
        role.addToPolicy(new iam.PolicyStatement({ actions: ['kms:Sign'], resources: [this.signingKey.keyArn] }));
      }
      if (access.keys !== 'none') {
        keyUsers.publish.push(role);
        // GetPublicKey for every published key, once per container at init.
        role.addToPolicy(new iam.PolicyStatement({ actions: ['kms:GetPublicKey'], resources: publishedKeyArns }));
      }
      if (access.totpKey === 'decrypt') {
        keyUsers.decrypt.push(role);
        role.addToPolicy(new iam.PolicyStatement({ actions: ['kms:Decrypt'], resources: [this.totpKey.keyArn] }));
      }

      const fn = new RustFunction(this, `${title}Function`, {
        manifestPath,
        binaryName: `tokenfn-${name}`,
        runtime: 'provided.al2023',
        architecture,
        memorySize: props.memorySize ?? 256,
        timeout: Duration.seconds(10),
        role,
        logGroup,
        loggingFormat: lambda.LoggingFormat.JSON,
        // TOKENFN_LOG is the one filter: with JSON format Lambda would
        // otherwise drop application lines below INFO a second time.
        applicationLogLevelV2: lambda.ApplicationLogLevel.TRACE,
        systemLogLevelV2: lambda.SystemLogLevel.INFO,
        description: `tokenfn ${name}: ${ROUTES[name].map((r) => `${r.method} ${r.path}`).join(', ')}`,
        environment: {
          ...baseEnvironment,
          // The stack's key signs, and it is ECC_NIST_P256: discovery's
          // metadata says ES256 without waiting for KMS.
          ...(access.keys === 'none'
            ? {}
            : { TOKENFN_KMS_KEY_IDS: publishedKeyArns.join(','), TOKENFN_SIGNING_ALG: 'ES256' }),
          // Without it two-step sign-in answers 503.
          ...(access.totpKey === 'none' ? {} : { TOKENFN_TOTP_KEY_ID: this.totpKey.keyArn }),
          ...(name === 'authorize' ? pageEnvironment : {}),
        },
      });
      functions[name] = fn;

      const integration = new HttpLambdaIntegration(`${title}Integration`, fn);
      for (const route of ROUTES[name]) {
        this.api.addRoutes({
          path: route.path,
          methods: [apigwv2.HttpMethod[route.method]],
          integration,
        });
      }

      new CfnOutput(this, `${title}FunctionName`, { value: fn.functionName });
    }
    this.functions = functions;

    this.signingKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'SignTokens',
        principals: keyUsers.sign,
        actions: ['kms:Sign'],
        resources: ['*'],
      }),
    );
    this.signingKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'PublishPublicKey',
        principals: keyUsers.publish,
        actions: ['kms:GetPublicKey'],
        resources: ['*'],
      }),
    );
    this.totpKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OpenSecrets',
        principals: keyUsers.decrypt,
        actions: ['kms:Decrypt'],
        resources: ['*'],
        conditions: withContext,
      }),
    );

    // Function errors are crashes, init failures and timeouts: a handled
    // failure is an HTTP reply, so any error at all deserves a look.
    const topic = props.alarmTopicArn ? sns.Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) : undefined;
    for (const name of ['token', 'refresh'] as const) {
      const fn = functions[name];
      const title = name[0].toUpperCase() + name.slice(1);
      const alarms = [
        fn.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }).createAlarm(this, `${title}ErrorsAlarm`, {
          alarmDescription: `tokenfn ${name}: function errors (crashes, init failures, timeouts)`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
        fn.metricThrottles({ period: Duration.minutes(5), statistic: 'Sum' }).createAlarm(this, `${title}ThrottlesAlarm`, {
          alarmDescription: `tokenfn ${name}: throttled invocations (clients got 5xx)`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      ];
      if (topic) {
        for (const alarm of alarms) alarm.addAlarmAction(new cloudwatchActions.SnsAction(topic));
      }
    }

    new CfnOutput(this, 'IssuerUrl', { value: this.issuer });
    new CfnOutput(this, 'DiscoveryUrl', { value: `${this.issuer}/.well-known/openid-configuration` });
    new CfnOutput(this, 'JwksUrl', { value: `${this.issuer}/.well-known/jwks.json` });
    new CfnOutput(this, 'RevokeFunctionArn', { value: functions.revoke.functionArn });
    new CfnOutput(this, 'TableName', { value: this.table.tableName });
    new CfnOutput(this, 'SigningKeyArn', { value: this.signingKey.keyArn });
    new CfnOutput(this, 'TotpKeyId', {
      description: 'The key that seals TOTP secrets (--totp-key-id or TOKENFN_TOTP_KEY_ID for the tokenfn admin commands)',
      value: this.totpKey.keyArn,
    });
    if (domain) {
      new CfnOutput(this, 'CustomDomainTarget', {
        description: `DNS target (CNAME or alias) for ${props.domainName}`,
        value: domain.regionalDomainName,
      });
    }
  }
}

/**
 * The look's settings, checked as Look::with_settings checks them (a value it
 * refuses would stop the authorize function at init): no logo means no
 * TOKENFN_LOGO_URL.
 */
function lookEnvironment(look: Look): Record<string, string> {
  // C0 and C1 control characters (Rust's char::is_control).
  const control = /[\u0000-\u001f\u007f-\u009f]/;
  const name = (look.productName ?? LOOK_DEFAULTS.productName).trim();
  if (name === '' || [...name].length > 60 || control.test(name)) {
    throw new Error(`look.productName must be 1 to 60 printable characters, not ${JSON.stringify(look.productName)}`);
  }
  const accent = (look.accentColor ?? LOOK_DEFAULTS.accentColor).trim();
  if (!/^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(accent)) {
    throw new Error(`look.accentColor must be a colour such as #2747c8 (#rgb or #rrggbb), not ${JSON.stringify(look.accentColor)}`);
  }
  const environment: Record<string, string> = { TOKENFN_PRODUCT_NAME: name, TOKENFN_ACCENT_COLOR: accent };
  const logo = look.logoUrl?.trim() ?? '';
  if (logo !== '') {
    const isPath = logo.startsWith('/') && !logo.startsWith('//');
    let isHttps = false;
    try {
      const url = new URL(logo);
      isHttps = url.protocol === 'https:' && url.hostname !== '';
    } catch {
      isHttps = false;
    }
    if (!(isPath || isHttps) || /[\s"'<>]/.test(logo) || control.test(logo)) {
      throw new Error(`look.logoUrl must be an https URL or a path such as /logo.svg, not ${JSON.stringify(look.logoUrl)}`);
    }
    environment.TOKENFN_LOGO_URL = logo;
  }
  return environment;
}

function seconds(name: string, value: number): string {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`settings.${name} must be a whole number of seconds, not ${value}`);
  }
  return String(value);
}
