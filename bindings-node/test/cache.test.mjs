// The value cache from Node: hits, fresh reads, own changes, staleIfError with a process
// warning (the same core as Rust and Python).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Ductape from '@ductape/sdk';
import helpers from './helpers/server.cjs';

test('cache: hits, fresh reads, own changes and staleIfError with a warning', async () => {
  const server = await helpers.startServer();
  const admin = new Ductape({ accessKey: server.accessKey, url: server.url });
  await admin.init();
  await admin.secrets.create({ key: 'NODE_CACHED', value: 'one' });
  const d = new Ductape({ accessKey: server.accessKey, url: server.url, maxRetries: 0, cache: { ttl: 0.3, staleIfError: 30 } });
  await d.init();
  const strict = new Ductape({ accessKey: server.accessKey, url: server.url, maxRetries: 0, cache: { ttl: 0.3 } });
  await strict.init();
  assert.equal((await d.secrets.fetch('NODE_CACHED')).value, 'one');
  assert.equal((await strict.secrets.fetch('NODE_CACHED')).value, 'one');
  await admin.secrets.update('NODE_CACHED', { value: 'two' });
  assert.equal((await d.secrets.fetch('NODE_CACHED')).value, 'one', 'a hit within the TTL');
  assert.equal((await d.secrets.fetch('NODE_CACHED', { fresh: true })).value, 'two');
  await d.secrets.update('NODE_CACHED', { value: 'three' });
  assert.equal((await d.secrets.fetch('NODE_CACHED')).value, 'three', 'own change invalidates');

  server.stop();
  await sleep(400);
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  const got = await d.secrets.fetch('NODE_CACHED');
  await sleep(10);
  process.off('warning', onWarning);
  assert.equal(got.value, 'three');
  assert.equal('stale' in got, false);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0].name, 'DuctapeStaleValue');
  assert.ok(!warnings[0].message.includes('three'));
  await assert.rejects(strict.secrets.fetch('NODE_CACHED'), { code: 'connection_error' });
});

test('cache options are checked', () => {
  assert.throws(
    () => new Ductape({ accessKey: `dtpk_0123456789abcdef.${'A'.repeat(43)}.${'A'.repeat(43)}`, cache: { ttl: -1 } }),
    /cache ttl/,
  );
});

test('watch hears changes and a watching cache drops them', async () => {
  const server = await helpers.startServer();
  try {
    const admin = new Ductape({ accessKey: server.accessKey, url: server.url });
    await admin.init();
    await admin.secrets.create({ key: 'NODE_LIVE', value: 'one' });
    const d = new Ductape({ accessKey: server.accessKey, url: server.url, cache: { ttl: 600, watch: true } });
    await d.init();
    assert.equal((await d.secrets.fetch('NODE_LIVE')).value, 'one');
    const heard = [];
    const watching = await d.secrets.watch((c) => heard.push(c));
    await sleep(500);
    await admin.secrets.update('NODE_LIVE', { value: 'two' });
    const deadline = Date.now() + 3000;
    while ((await d.secrets.fetch('NODE_LIVE')).value !== 'two') {
      assert.ok(Date.now() < deadline, 'the watching cache kept the old value');
      await sleep(50);
    }
    while (heard.length === 0 && Date.now() < deadline) await sleep(20);
    watching.close();
    assert.deepEqual(heard, [{ kind: 'update', key: 'NODE_LIVE', version: 2 }]);
  } finally {
    server.stop();
  }
});

test('a snapshot starts the client while the server is down', async () => {
  const { mkdtempSync, readFileSync, statSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const path = join(mkdtempSync(join(tmpdir(), 'ductape-')), 'app.snap');
  const server = await helpers.startServer();
  const options = { accessKey: server.accessKey, url: server.url, maxRetries: 0, cache: { ttl: 0.2, staleIfError: 600, snapshot: path } };
  const d = new Ductape(options);
  await d.init();
  await d.secrets.create({ key: 'NODE_SNAP', value: 'node-snapshot-canary' });
  assert.equal((await d.secrets.fetch('NODE_SNAP')).value, 'node-snapshot-canary');
  assert.ok(!readFileSync(path, 'utf8').includes('node-snapshot-canary'));
  assert.equal(statSync(path).mode & 0o777, 0o600);
  server.stop();
  const warnings = [];
  const onWarning = (w) => warnings.push(w.name);
  process.on('warning', onWarning);
  const offline = new Ductape(options);
  await offline.init();
  await sleep(10);
  process.off('warning', onWarning);
  assert.ok(warnings.includes('DuctapeOffline'), String(warnings));
  assert.equal((await offline.secrets.fetch('NODE_SNAP')).value, 'node-snapshot-canary');
});
