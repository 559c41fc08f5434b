// The reference's samples type-check (non-strict, as they are written) and run as written.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';

import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import helpers from './helpers/server.cjs';

const require = createRequire(import.meta.url);
const tsc = require.resolve('typescript/bin/tsc');
const here = fileURLToPath(new URL('.', import.meta.url));
const project = join(here, 'samples', 'tsconfig.json');

function run(file, args, env) {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 60000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr }));
  });
}

let server;
before(async () => {
  server = await helpers.startServer();
});
after(() => server.stop());

test('the samples pass tsc --noEmit', async () => {
  const r = await run(process.execPath, [tsc, '-p', project, '--noEmit'], {});
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

test('the samples run against a real server', async () => {
  // Compiled next to the package so that `@ductape/sdk` resolves to it by self-reference.
  const out = mkdtempSync(join(here, 'samples', 'out-'));
  try {
    const c = await run(process.execPath, [tsc, '-p', project, '--outDir', out], {});
    assert.equal(c.code, 0, c.stdout + c.stderr);
    const r = await run(process.execPath, [join(out, 'reference.mjs')], {
      DUCTAPE_URL: server.url,
      DUCTAPE_ACCESS_KEY: server.accessKey,
    });
    assert.equal(r.code, 0, r.stderr);
    for (const line of [
      'Secret created: STRIPE_API_KEY',
      'STRIPE_API_KEY: Production Stripe API key for payment processing',
      'Value: sk_live_51ABC123...',
      'Secret updated: STRIPE_API_KEY',
      'Secret successfully deleted',
      'Secret has been revoked',
    ]) {
      assert.ok(r.stdout.includes(line), `missing "${line}" in:\n${r.stdout}`);
    }
    assert.ok(r.stderr.includes('Secret with this key already exists'), r.stderr);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('strict user code needs no casts', async () => {
  const r = await run(process.execPath, [tsc, '-p', join(here, 'strict', 'tsconfig.json'), '--noEmit'], {});
  assert.equal(r.code, 0, r.stdout + r.stderr);
});
