#!/usr/bin/env node
import { App } from 'aws-cdk-lib';

import { buildStack } from '../lib/app';

const app = new App();
buildStack(app);
app.synth();
