// The same client through require().
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const Ductape = require('@ductape/sdk');
const { startServer } = require('./helpers/server.cjs');

let server;
before(async () => {
  server = await startServer();
});
after(() => server.stop());

test('require() gives the class, with the named exports on it', async () => {
  assert.equal(typeof Ductape, 'function');
  assert.equal(Ductape.default, Ductape);
  assert.equal(typeof Ductape.DuctapeError, 'function');
  const ductape = new Ductape({ accessKey: server.accessKey, url: server.url });
  await ductape.init();
  await ductape.secrets.create({ key: 'CJS', value: 'cjs-value', envs: ['dev'] });
  assert.equal((await ductape.secrets.fetch('CJS')).value, 'cjs-value');
  assert.equal((await ductape.secrets.fetchAll()).length, 1);
  await assert.rejects(ductape.secrets.create({ key: 'CJS', value: 'again' }), (e) => {
    assert.ok(e instanceof Ductape.DuctapeError);
    assert.equal(e.response.status, 409);
    return true;
  });
  assert.equal(await ductape.secrets.revoke('CJS'), true);
  assert.equal(await ductape.secrets.delete('CJS'), true);
});

test('configuration comes from DUCTAPE_URL and DUCTAPE_ACCESS_KEY', async () => {
  process.env.DUCTAPE_URL = server.url;
  process.env.DUCTAPE_ACCESS_KEY = server.accessKey;
  try {
    const ductape = new Ductape();
    await ductape.init();
    assert.equal(ductape.url, server.url);
    assert.ok(server.accessKey.startsWith(`dtpk_${ductape.accessKeyId}.`));
  } finally {
    delete process.env.DUCTAPE_URL;
    delete process.env.DUCTAPE_ACCESS_KEY;
  }
});
