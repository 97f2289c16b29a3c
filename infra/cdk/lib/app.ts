import { App } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';

import { TokenfnStack, TokenfnStackProps } from './tokenfn-stack';

/**
 * The stack's props from context values (`cdk synth --context arch=x86_64`):
 *
 * | context | meaning |
 * |---|---|
 * | `stackName` | default `Tokenfn` |
 * | `arch` | `arm64` (default) or `x86_64` |
 * | `logRetentionDays` | a CloudWatch Logs retention, default 30 |
 * | `deletionProtection` | `true` (default) or `false`, for the table |
 * | `domainName`, `certificateArn` | custom domain for the issuer |
 * | `additionalPublicKeyArns` | comma list of extra keys to publish |
 * | `alarmTopicArn` | SNS topic for the alarms |
 * | `accessTokenTtl`, `idTokenTtl`, `refreshTtl`, `refreshIdleTtl`, `reuseLeeway` | seconds |
 * | `log` | TOKENFN_LOG |
 * | `productName`, `logoUrl`, `accentColor` | the pages' look (authorize function only) |
 * | `playground` | `off` (default) or `on`: serve /playground |
 */
export function propsFromContext(app: App): TokenfnStackProps & { stackName: string } {
  const text = (key: string): string | undefined => {
    const value: unknown = app.node.tryGetContext(key);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value);
  };
  const whole = (key: string): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value)) throw new Error(`context ${key} must be a whole number, not ${JSON.stringify(value)}`);
    return Number(value);
  };

  const arch = text('arch') ?? 'arm64';
  const architectures: Record<string, lambda.Architecture> = {
    arm64: lambda.Architecture.ARM_64,
    x86_64: lambda.Architecture.X86_64,
  };
  const architecture = architectures[arch];
  if (!architecture) throw new Error(`context arch must be arm64 or x86_64, not ${JSON.stringify(arch)}`);

  const retention = whole('logRetentionDays');
  if (retention !== undefined && !(Object.values(logs.RetentionDays) as unknown[]).includes(retention)) {
    throw new Error(`context logRetentionDays must be a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, ...), not ${retention}`);
  }

  const protection = text('deletionProtection');
  if (protection !== undefined && protection !== 'true' && protection !== 'false') {
    throw new Error(`context deletionProtection must be true or false, not ${JSON.stringify(protection)}`);
  }

  const playground = text('playground');
  if (playground !== undefined && !['on', 'off', 'true', 'false'].includes(playground)) {
    throw new Error(`context playground must be on or off, not ${JSON.stringify(playground)}`);
  }

  return {
    stackName: text('stackName') ?? 'Tokenfn',
    architecture,
    logRetention: retention as logs.RetentionDays | undefined,
    tableDeletionProtection: protection === undefined ? undefined : protection === 'true',
    domainName: text('domainName'),
    certificateArn: text('certificateArn'),
    additionalPublicKeyArns: text('additionalPublicKeyArns')
      ?.split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    alarmTopicArn: text('alarmTopicArn'),
    settings: {
      accessTokenTtl: whole('accessTokenTtl'),
      idTokenTtl: whole('idTokenTtl'),
      refreshTtl: whole('refreshTtl'),
      refreshIdleTtl: whole('refreshIdleTtl'),
      reuseLeeway: whole('reuseLeeway'),
      log: text('log'),
    },
    look: {
      productName: text('productName'),
      logoUrl: text('logoUrl'),
      accentColor: text('accentColor'),
    },
    playground: playground === undefined ? undefined : playground === 'on' || playground === 'true',
  };
}

/** The app's one stack, as `cdk synth` builds it. */
export function buildStack(app: App): TokenfnStack {
  const props = propsFromContext(app);
  return new TokenfnStack(app, props.stackName, {
    ...props,
    description: 'tokenfn: OAuth 2.0 / OpenID Connect on Lambda, DynamoDB and KMS',
  });
}
