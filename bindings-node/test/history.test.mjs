// Versions, rollback and the trash from Node: the same core as the CLI and Python.
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { after, before, test } from 'node:test';
import Ductape from '@ductape/sdk';
import helpers from './helpers/server.cjs';

let server;
before(async () => {
  server = await helpers.startServer();
});
after(() => server.stop());

test('every version is fetched, listed and rolled back to', async () => {
  const d = new Ductape({ accessKey: server.accessKey, url: server.url });
  await d.init();
  await d.secrets.create({ key: 'NODE_TOKEN', value: 'n1' });
  for (const v of ['n2', 'n3', 'n4']) await d.secrets.update('NODE_TOKEN', { value: v });
  for (let v = 1; v <= 4; v++) {
    const s = await d.secrets.fetch('NODE_TOKEN', { version: v });
    assert.equal(s.value, `n${v}`);
    assert.equal(s.version, v);
  }
  const history = await d.secrets.versions('NODE_TOKEN');
  assert.deepEqual(history.map((h) => h.version), [4, 3, 2, 1]);
  assert.equal(history[0].current, true);
  assert.deepEqual(history[0].fields, ['value']);
  assert.equal(history[3].action, 'create');
  assert.ok(!JSON.stringify(history).includes('n1') && !inspect(history).includes('n3'));
  await assert.rejects(d.secrets.rollback('NODE_TOKEN', 2, { ifVersion: 3 }), { code: 'version_conflict', status: 409 });
  const rolled = await d.secrets.rollback('NODE_TOKEN', 2, { ifVersion: 4 });
  assert.equal(rolled.version, 5);
  assert.equal((await d.secrets.fetch('NODE_TOKEN')).value, 'n2');
  const [newest] = await d.secrets.versions('NODE_TOKEN');
  assert.equal(newest.action, 'rollback');
  assert.equal(newest.rollback_of, 2);
  await assert.rejects(d.secrets.fetch('NODE_TOKEN', { version: 40 }), { code: 'secret_not_found', status: 404 });
});

test('delete goes to the trash, undelete brings it back, permanent does not', async () => {
  const d = new Ductape({ accessKey: server.accessKey, url: server.url });
  await d.init();
  await d.secrets.create({ key: 'NODE_GONE', value: 'kept' });
  assert.equal(await d.secrets.delete('NODE_GONE'), true);
  await assert.rejects(d.secrets.fetch('NODE_GONE'), { status: 404 });
  assert.equal((await d.secrets.undelete('NODE_GONE')).version, 2);
  assert.equal((await d.secrets.fetch('NODE_GONE')).value, 'kept');
  assert.equal(await d.secrets.delete('NODE_GONE', { permanent: true }), true);
  await assert.rejects(d.secrets.undelete('NODE_GONE'), (e) => e.status === 404 && /not in the trash/.test(e.message));
});
