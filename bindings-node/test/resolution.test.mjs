// Using secrets at run time: resolve, check, bound keys, audit, usage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import Ductape from '@ductape/sdk';
import helpers from './helpers/server.cjs';

let server;
let ductape;
before(async () => {
  server = await helpers.startServer();
  ductape = new Ductape({ accessKey: server.accessKey, url: server.url });
  await ductape.init();
  const s = ductape.secrets;
  await s.create({ key: 'STRIPE_KEY', value: 'sk_live_stripe', scope: ['stripe_app'] });
  await s.create({ key: 'PROD_KEY', value: 'prod-only', envs: ['prd'] });
  await s.create({ key: 'OLD_KEY', value: 'old' });
  await s.update('OLD_KEY', { expires_at: 1000 }); // a create with a past expiry is refused
  await s.create({ key: 'X', value: 'x' });
  await s.revoke('X');
});
after(() => server.stop());

test('resolve substitutes references and keeps the shape', async () => {
  const config = { headers: { Authorization: 'Bearer $Token{STRIPE_KEY}' }, retries: 3, list: ['$$Token{X}'] };
  const out = await ductape.secrets.resolve(config, { app: 'stripe_app', env: 'prd' });
  assert.deepEqual(out, { headers: { Authorization: 'Bearer sk_live_stripe' }, retries: 3, list: ['$Token{X}'] });
});

test('each failure has the documented message', async () => {
  const cases = [
    ['STRIPE_KEY', { app: 'other_app' }, 403, "Secret 'STRIPE_KEY' is not accessible by app 'other_app'"],
    ['PROD_KEY', { env: 'dev' }, 403, "Secret 'PROD_KEY' is not available in environment 'dev'"],
    ['OLD_KEY', {}, 410, "Secret 'OLD_KEY' has expired"],
    ['X', {}, 410, "Secret 'X' has been revoked"],
    ['MY_SECRET', {}, 404, "Secret 'MY_SECRET' not found"],
  ];
  for (const [key, opts, status, message] of cases) {
    await assert.rejects(ductape.secrets.resolve({ v: `$Token{${key}}` }, opts), (e) => {
      assert.equal(e.status, status);
      assert.equal(e.message, message);
      return true;
    });
  }
});

test('several failures are listed', async () => {
  await assert.rejects(ductape.secrets.resolve(['$Token{NOPE}', '$Token{X}']), (e) => {
    assert.deepEqual(e.failures.map((f) => f.message), ["Secret 'NOPE' not found", "Secret 'X' has been revoked"]);
    assert.deepEqual(e.failures.map((f) => f.status), [404, 410]);
    return true;
  });
  await assert.rejects(ductape.secrets.resolve('$Token{'), { status: 422, code: 'invalid_field' });
});

test('check reports without values', async () => {
  const report = await ductape.secrets.check({ a: '$Token{STRIPE_KEY}', b: '$Token{PROD_KEY}' }, { app: 'stripe_app', env: 'dev' });
  assert.equal(report.ok, false);
  assert.equal(report.references[0].ok, true);
  assert.equal(report.references[1].message, "Secret 'PROD_KEY' is not available in environment 'dev'");
  assert.ok(!JSON.stringify(report).includes('sk_live_stripe'));
});

test('a bound key reads only its app and environment; reads are audited', async () => {
  await ductape.secrets.create({ key: 'PAY_KEY', value: 'pay', scope: ['payment_app'] });
  const out = execFileSync(helpers.ductapeBin(), ['access-keys', 'create', '--name', 'rt', '--permissions', 'list,read', '--app', 'payment_app', '--envs', 'prd'], {
    env: { ...process.env, DUCTAPE_URL: server.url, DUCTAPE_ACCESS_KEY: server.accessKey },
  }).toString();
  const rt = new Ductape({ accessKey: out.trim().replace('DUCTAPE_ACCESS_KEY=', ''), url: server.url });
  await rt.init();
  assert.equal(await rt.secrets.resolve('$Token{PAY_KEY}', { app: 'payment_app', env: 'prd' }), 'pay');
  // Outside its binding a secret does not exist for the key: the same 404 as a missing one.
  await assert.rejects(rt.secrets.fetch('STRIPE_KEY'), { status: 404, message: "Secret 'STRIPE_KEY' not found" });
  const page = await ductape.audit({ secret_key: 'STRIPE_KEY', limit: 1 });
  assert.equal(page.events[0].allowed, false);
  assert.equal(page.events[0].app, 'payment_app');
  const usage = await ductape.secrets.usage('PAY_KEY');
  assert.equal(usage[0].app, 'payment_app');
  assert.equal(usage[0].reads, 1);
});

test('100 references resolve in one request', async () => {
  const batches = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    return text.split('\n')
      .filter((l) => l.startsWith('ductape_http_requests_total{method="POST",route="/v1/secrets/batch-get"'))
      .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
  };
  const config = {};
  for (let i = 0; i < 100; i++) {
    await ductape.secrets.create({ key: `MANY_${i}`, value: `v${i}` });
    config[`f${i}`] = `x-$Token{MANY_${i}}`;
  }
  const before = await batches();
  const out = await ductape.secrets.resolve(config, { app: 'web', env: 'prd' });
  assert.equal((await batches()) - before, 1);
  for (let i = 0; i < 100; i++) assert.equal(out[`f${i}`], `x-v${i}`);
  // One audit event records the batch's reads, found by any of its keys.
  const [event] = (await ductape.audit({ secret_key: 'MANY_42', limit: 1 })).events;
  assert.deepEqual([event.action, event.secret_key, event.allowed], ['resolve', '', true]);
  assert.equal(new Set(event.keys).size, 100);
});
