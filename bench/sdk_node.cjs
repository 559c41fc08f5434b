// One Node latency sample for bench/suite.py: the median of CALLS reads (after a warm-up)
// through WHICH of: our SDK's fetch, node-vault's read, or a raw undici GET of our server
// (prints {"p50_us": N}); or the mean of back-to-back cache hits (`cached`) or awaited Map
// lookups (`map`) (prints {"mean_us": N}).
'use strict';
const path = require('node:path');

const { WHICH, CALLS, OURS_URL, OURS_KEY, BAO_URL, BAO_TOKEN, SDK_DIR } = process.env;
const calls = Number(CALLS);

async function reader() {
  if (WHICH === 'cached') {
    const Ductape = require(path.join(SDK_DIR, 'index.cjs'));
    const d = new Ductape({ accessKey: OURS_KEY, url: OURS_URL, cache: { ttl: 3600 } });
    await d.init();
    return () => d.secrets.fetch('K');
  }
  if (WHICH === 'map') {
    const m = new Map([['K', { key: 'K', value: 'v' }]]);
    return async () => m.get('K');
  }
  if (WHICH === 'sdk') {
    const Ductape = require(path.join(SDK_DIR, 'index.cjs'));
    const d = new Ductape({ accessKey: OURS_KEY, url: OURS_URL });
    await d.init();
    return () => d.secrets.fetch('K');
  }
  if (WHICH === 'node-vault') {
    const vault = require('node-vault')({ endpoint: BAO_URL, token: BAO_TOKEN });
    return () => vault.read('secret/data/K');
  }
  if (WHICH === 'undici') {
    const { Pool } = require('undici');
    const pool = new Pool(OURS_URL, { connections: 1 });
    const bearer = OURS_KEY.replace(/^dtpk_/, '').split('.').slice(0, 2).join('.');
    return async () => {
      const r = await pool.request({
        path: '/v1/secrets/K',
        method: 'GET',
        headers: { authorization: `Bearer ${bearer}` },
      });
      if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
      return r.body.json();
    };
  }
  throw new Error(`unknown WHICH=${WHICH}`);
}

(async () => {
  const read = await reader();
  if (WHICH === 'cached' || WHICH === 'map') {
    // Sub-µs calls: the mean of back-to-back calls (a clock read each would dominate), after
    // as many calls again to let the JIT settle.
    for (let i = 0; i < calls; i++) await read();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) await read();
    const mean = Number(process.hrtime.bigint() - t0) / 1000 / calls;
    process.stdout.write(JSON.stringify({ mean_us: mean }) + '\n');
    process.exit(0);
  }
  for (let i = 0; i < 50; i++) await read();
  const samples = [];
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < calls && Date.now() < deadline; i++) {
    const t0 = process.hrtime.bigint();
    await read();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ p50_us: samples[Math.floor(samples.length / 2)] }) + '\n');
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
