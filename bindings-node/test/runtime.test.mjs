// Network work runs off the JavaScript thread; nothing keeps the process alive.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import Ductape from '@ductape/sdk';
import helpers from './helpers/server.cjs';

let server;
before(async () => {
  server = await helpers.startServer();
});
after(() => server.stop());

test('200 concurrent fetches complete while a timer keeps ticking', async () => {
  const ductape = new Ductape({ accessKey: server.accessKey, url: server.url });
  await ductape.init();
  await ductape.secrets.create({ key: 'HOT', value: 'hot-value' });
  let ticks = 0;
  let last = performance.now();
  let maxGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks += 1;
  }, 2);
  const start = performance.now();
  const results = await Promise.all(Array.from({ length: 200 }, () => ductape.secrets.fetch('HOT')));
  const elapsed = performance.now() - start;
  clearInterval(timer);
  assert.equal(results.length, 200);
  assert.ok(results.every((s) => s.value === 'hot-value'));
  // The loop ran throughout: timers fired during the batch, and no gap approached the
  // batch's own duration (a blocked loop shows one gap as long as the work).
  assert.ok(ticks >= 3, `only ${ticks} ticks in ${elapsed.toFixed(0)} ms`);
  assert.ok(maxGap < Math.max(100, elapsed / 2), `the loop stalled for ${maxGap.toFixed(0)} ms of ${elapsed.toFixed(0)} ms`);
});

test('a script that is done exits on its own', async () => {
  const script = fileURLToPath(new URL('./helpers/exits.mjs', import.meta.url));
  const started = Date.now();
  const out = await new Promise((resolve, reject) => {
    execFile(process.execPath, [script], {
      env: { ...process.env, DUCTAPE_URL: server.url, DUCTAPE_ACCESS_KEY: server.accessKey },
      timeout: 15000,
    }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });
  assert.equal(out.trim(), 'done');
  assert.ok(Date.now() - started < 15000);
});
