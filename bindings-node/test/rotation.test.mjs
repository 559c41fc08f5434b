// Key rotation from Node: one call, the same core as the CLI and Python.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import Ductape from '@ductape/sdk';
import helpers from './helpers/server.cjs';

let server;
before(async () => {
  server = await helpers.startServer();
});
after(() => server.stop());

test('rotateKey reseals every value and sessions opened before keep reading', async () => {
  const admin = new Ductape({ accessKey: server.accessKey, url: server.url });
  await admin.init();
  await admin.secrets.create({ key: 'WEB_TOKEN', value: 'web-value', scope: ['web'] });
  await admin.secrets.create({ key: 'API_TOKEN', value: 'api-value', scope: ['api'] });
  const out = execFileSync(helpers.ductapeBin(), ['access-keys', 'create', '--name', 'web', '--permissions', 'list,read', '--app', 'web'], {
    env: { ...process.env, DUCTAPE_URL: server.url, DUCTAPE_ACCESS_KEY: server.accessKey },
  }).toString();
  const web = new Ductape({ accessKey: out.trim().replace('DUCTAPE_ACCESS_KEY=', ''), url: server.url });
  await web.init();

  assert.deepEqual(await admin.rotateKey(), { generation: 2, resealed: 2, started: true });
  assert.equal((await web.secrets.fetch('WEB_TOKEN')).value, 'web-value');
  assert.equal((await admin.secrets.fetch('API_TOKEN')).value, 'api-value');
  await assert.rejects(web.rotateKey(), { code: 'permission_denied' });
  assert.equal((await admin.rotateKey()).generation, 3);
});

test('ifVersion guards update, revoke, restore and delete', async () => {
  const d = new Ductape({ accessKey: server.accessKey, url: server.url });
  await d.init();
  await d.secrets.create({ key: 'GUARDED', value: 'one' });
  await assert.rejects(d.secrets.update('GUARDED', { value: 'two', ifVersion: 5 }), { code: 'version_conflict', status: 409 });
  assert.equal((await d.secrets.update('GUARDED', { value: 'two', ifVersion: 1 })).version, 2);
  await assert.rejects(d.secrets.revoke('GUARDED', { ifVersion: 1 }), { code: 'version_conflict' });
  assert.equal(await d.secrets.revoke('GUARDED', { ifVersion: 2 }), true);
  assert.equal((await d.secrets.restore('GUARDED', { ifVersion: 3 })).version, 4);
  await assert.rejects(d.secrets.delete('GUARDED', { ifVersion: 3 }), { code: 'version_conflict' });
  assert.equal((await d.secrets.fetch('GUARDED')).value, 'two');
  assert.equal(await d.secrets.delete('GUARDED', { ifVersion: 4 }), true);
});

test('requests name the Node SDK in User-Agent', async () => {
  const http = await import('node:http');
  let agent;
  const listener = http.createServer((req, res) => {
    agent = req.headers['user-agent'];
    res.writeHead(503, { connection: 'close' }).end();
  });
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const { port } = listener.address();
  const d = new Ductape({ accessKey: `dtpk_0123456789abcdef.${'A'.repeat(43)}.${'A'.repeat(43)}`, url: `http://127.0.0.1:${port}`, maxRetries: 0 });
  await assert.rejects(d.init());
  listener.close();
  assert.match(agent, /^ductape-node\//);
});
