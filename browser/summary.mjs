// Prints what axe-core found on the pages the browser tests checked, of every
// impact (the tests fail on serious and critical only).
// Usage: node browser/summary.mjs [target/browser]

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2] || 'target/browser';
const file = join(dir, 'a11y.jsonl');
if (!existsSync(file)) {
  console.log(`accessibility: no page was checked (no ${file})`);
  process.exit(0);
}
const rows = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const findings = rows.flatMap((r) => r.violations.map((v) => ({ ...v, label: r.label, path: new URL(r.url).pathname })));
console.log(`accessibility: ${rows.length} page states checked with axe-core, ${findings.length} finding(s)`);
for (const f of findings) {
  console.log(`  ${f.impact}\t${f.id}\t${f.label} (${f.path}): ${f.help} — ${f.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}
