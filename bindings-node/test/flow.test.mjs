// The documented flow end to end, and each documented error (ESM).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Ductape, { DuctapeError } from '@ductape/sdk';
import helpers from './helpers/server.cjs';

let server;
let ductape;

before(async () => {
  server = await helpers.startServer();
  ductape = new Ductape({ accessKey: server.accessKey, url: server.url });
  await ductape.init();
});

after(() => server.stop());

const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

test('create, fetchAll, fetch, update, revoke, delete with the documented shapes', async () => {
  const expires = Math.floor(Date.now() / 1000) + 365 * 24 * 60 * 60;
  const secret = await ductape.secrets.create({
    key: 'STRIPE_API_KEY',
    value: 'sk_live_51ABC123...',
    description: 'Production Stripe API key for payment processing',
    token_type: 'api',
    scope: ['stripe_payments', 'checkout_service'],
    envs: ['prd', 'staging'],
    expires_at: expires,
  });
  assert.match(secret._id, /^[0-9a-f]{24}$/);
  assert.match(secret.workspace_id, /^ws_/);
  assert.equal(secret.key, 'STRIPE_API_KEY');
  assert.equal(secret.token_type, 'api');
  assert.deepEqual(secret.scope, ['stripe_payments', 'checkout_service']);
  assert.deepEqual(secret.envs, ['prd', 'staging']);
  assert.equal(secret.expires_at, expires);
  assert.match(secret.createdAt, ISO_MS);
  assert.equal(secret.createdAt, secret.updatedAt);
  assert.equal(secret.version, 1);
  assert.equal(secret.status, 'active');
  assert.equal('value' in secret, false);

  const all = await ductape.secrets.fetchAll();
  const listed = all.find((s) => s.key === 'STRIPE_API_KEY');
  assert.deepEqual(listed, secret);
  assert.equal(JSON.stringify(all).includes('sk_live_51ABC123'), false);

  const fetched = await ductape.secrets.fetch('STRIPE_API_KEY');
  assert.equal(fetched.value, 'sk_live_51ABC123...');
  assert.equal(fetched.description, 'Production Stripe API key for payment processing');

  const later = Math.floor(Date.now() / 1000) + 180 * 24 * 60 * 60;
  const updated = await ductape.secrets.update('STRIPE_API_KEY', {
    value: 'sk_live_51NEW_KEY...',
    description: 'Rotated Stripe API key - January 2025',
    expires_at: later,
  });
  assert.equal(updated.version, 2);
  assert.equal(new Date(updated.expires_at * 1000).getTime(), later * 1000);
  assert.equal((await ductape.secrets.fetch('STRIPE_API_KEY')).value, 'sk_live_51NEW_KEY...');

  const meta = await ductape.secrets.update('STRIPE_API_KEY', {
    scope: ['stripe_payments', 'subscription_service', 'invoice_service'],
    envs: ['dev', 'staging', 'prd'],
    description: undefined, // undefined is "not given", not "clear"
  });
  assert.equal(meta.scope.length, 3);
  assert.equal(meta.description, 'Rotated Stripe API key - January 2025');
  const cleared = await ductape.secrets.update('STRIPE_API_KEY', { description: null, expires_at: null });
  assert.equal(cleared.description, null);
  assert.equal(cleared.expires_at, null);

  assert.equal(await ductape.secrets.revoke('STRIPE_API_KEY'), true);
  await assert.rejects(ductape.secrets.fetch('STRIPE_API_KEY'), (e) => {
    assert.ok(e instanceof DuctapeError);
    assert.equal(e.response.status, 410);
    assert.equal(e.code, 'secret_revoked');
    assert.equal(e.message, "Secret 'STRIPE_API_KEY' has been revoked");
    return true;
  });
  assert.equal((await ductape.secrets.restore('STRIPE_API_KEY')).status, 'active');
  assert.equal(await ductape.secrets.delete('STRIPE_API_KEY'), true);
  await assert.rejects(ductape.secrets.fetch('STRIPE_API_KEY'), { status: 404, code: 'secret_not_found' });
});

test('a duplicate key is 409 at error.response.status', async () => {
  await ductape.secrets.create({ key: 'MY_SECRET', value: 'secret_value' });
  await assert.rejects(ductape.secrets.create({ key: 'MY_SECRET', value: 'secret_value' }), (e) => {
    assert.equal(e.response?.status, 409);
    assert.equal(e.response.data.error.code, 'secret_exists');
    assert.equal(e.message, "Secret with key 'MY_SECRET' already exists");
    return true;
  });
});

test('a key without the write permission is 403', async () => {
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync(helpers.ductapeBin(), ['access-keys', 'create', '--name', 'reader', '--permissions', 'list,read'], {
    env: { ...process.env, DUCTAPE_URL: server.url, DUCTAPE_ACCESS_KEY: server.accessKey },
  }).toString();
  const reader = new Ductape({ accessKey: out.trim().replace('DUCTAPE_ACCESS_KEY=', ''), url: server.url });
  await reader.init();
  await assert.rejects(reader.secrets.create({ key: 'NOPE', value: 'x' }), (e) => {
    assert.equal(e.response?.status, 403);
    assert.match(e.message, /'write'/);
    return true;
  });
});

test('a wrong access key is 401, an expired secret 410, a big value 413', async () => {
  const parts = server.accessKey.split('.');
  const wrong = new Ductape({ accessKey: [parts[0], 'A'.repeat(43), parts[2]].join('.'), url: server.url });
  await assert.rejects(wrong.init(), { status: 401, code: 'unauthenticated' });
  await assert.rejects(ductape.secrets.create({ key: 'OLD_KEY', value: 'old', expires_at: 1000 }), { status: 422 });
  await ductape.secrets.create({ key: 'OLD_KEY', value: 'old' });
  await ductape.secrets.update('OLD_KEY', { expires_at: 1000 });
  await assert.rejects(ductape.secrets.fetch('OLD_KEY'), { status: 410, code: 'secret_expired', message: "Secret 'OLD_KEY' has expired" });
  await assert.rejects(ductape.secrets.create({ key: 'BIG', value: 'x'.repeat(65537) }), { status: 413 });
});

test('invalid arguments are 422 and name the field, before any request', async () => {
  const offline = new Ductape({ accessKey: server.accessKey, url: 'http://127.0.0.1:9' });
  const cases = [
    [{ key: '', value: 'v' }, "'key'"],
    [{ key: 'bad key', value: 'v' }, "'key'"],
    [{ key: 'K', value: 1 }, "'value'"],
    [{ key: 'K', value: 'v', token_type: 'bearer' }, "'token_type'"],
    [{ key: 'K', value: 'v', scope: 'app' }, "'scope'"],
    [{ key: 'K', value: 'v', envs: [1] }, "'envs'"],
    [{ key: 'K', value: 'v', expires_at: -1 }, "'expires_at'"],
    [{ key: 'K', value: 'v', expires_at: 'soon' }, "'expires_at'"],
  ];
  for (const [args, field] of cases) {
    await assert.rejects(offline.secrets.create(args), (e) => {
      assert.equal(e.status, 422, JSON.stringify(args));
      assert.ok(e.message.includes(field), e.message);
      return true;
    });
  }
});

test('connection errors have a code and no response', async () => {
  const offline = new Ductape({ accessKey: server.accessKey, url: 'http://127.0.0.1:9', maxRetries: 0 });
  await assert.rejects(offline.init(), (e) => {
    assert.ok(e instanceof DuctapeError);
    assert.equal(e.code, 'connection_error');
    assert.equal(e.response, undefined);
    return true;
  });
  assert.throws(() => new Ductape({ accessKey: 'not-a-key' }), { code: 'config_error' });
});

test('iterate pages through every secret in key order', async () => {
  const names = Array.from({ length: 7 }, (_, i) => `ITER_${String(i).padStart(2, '0')}`);
  for (const k of [...names].reverse()) await ductape.secrets.create({ key: k, value: 'v' });
  const seen = [];
  for await (const s of ductape.secrets.iterate({ pageSize: 2 })) {
    if (s.key.startsWith('ITER_')) seen.push(s.key);
  }
  assert.deepEqual(seen, names);
  await assert.rejects(async () => {
    for await (const _ of ductape.secrets.iterate({ pageSize: 0 })) break;
  }, /limit/);
  for (const k of names) await ductape.secrets.delete(k);
});
