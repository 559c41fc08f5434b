// No plaintext value or access key in any printed error or inspected object.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import Ductape from '@ductape/sdk';
import helpers from './helpers/server.cjs';

const CANARY = 'sk_live_NODE_CANARY_4c3b2a19';
let server;
before(async () => {
  server = await helpers.startServer();
});
after(() => server.stop());

test('canary: values and keys never show in inspect, JSON or errors', async () => {
  const ductape = new Ductape({ accessKey: server.accessKey, url: server.url });
  await ductape.init();
  await ductape.secrets.create({ key: 'NODE_CANARY', value: CANARY });
  const secret = await ductape.secrets.fetch('NODE_CANARY');
  assert.equal(secret.value, CANARY, 'the value is there through .value');
  const shown = [
    inspect(secret), JSON.stringify(secret), String(secret), inspect(ductape, { showHidden: true, depth: 5 }),
    JSON.stringify(ductape), inspect(ductape.secrets), `${ductape}`,
  ];
  const failures = [
    () => ductape.secrets.create({ key: 'NODE_CANARY', value: CANARY }),
    () => ductape.secrets.create({ key: `${CANARY} x`, value: CANARY }),
    () => ductape.secrets.create({ key: 'K', value: CANARY, scope: CANARY }),
    () => ductape.secrets.create({ key: 'K', value: CANARY, [CANARY]: 1 }),
    () => ductape.secrets.update('NODE_CANARY', { expires_at: CANARY }),
    async () => new Ductape({ accessKey: CANARY }),
    () => new Ductape({ accessKey: server.accessKey.slice(0, -3) + 'xyz', url: server.url }).init(),
  ];
  for (const f of failures) {
    try {
      await f();
      assert.fail('expected a failure');
    } catch (e) {
      assert.ok(e instanceof Ductape.DuctapeError || e.name === 'DuctapeError', String(e));
      shown.push(inspect(e), JSON.stringify(e), String(e), e.stack, JSON.stringify(e.response ?? null));
    }
  }
  const secretPart = server.accessKey.split('.')[1];
  for (const text of shown) {
    assert.ok(!text.includes('NODE_CANARY_4c3b2a19'), text);
    assert.ok(!text.includes(secretPart), text);
  }
  assert.ok(!server.logs().includes('NODE_CANARY_4c3b2a19'));
});
