// @ductape/sdk from its npm tarballs, through CommonJS: `require` gives the class itself.
'use strict';
const Ductape = require('@ductape/sdk');
const { DuctapeError } = require('@ductape/sdk');

(async () => {
  const ductape = new Ductape({ accessKey: process.env.DUCTAPE_ACCESS_KEY });
  await ductape.init();
  await ductape.secrets.create({ key: 'CJS_KEY', value: 'cjs-value', envs: ['prd'] });
  const { value } = await ductape.secrets.fetch('CJS_KEY');
  if (value !== 'cjs-value') throw new Error(`fetched ${JSON.stringify(value)}`);
  await ductape.secrets.delete('CJS_KEY');
  try {
    await ductape.secrets.fetch('CJS_KEY');
    throw new Error('a deleted secret was still fetched');
  } catch (e) {
    if (!(e instanceof DuctapeError) || e.response?.status !== 404) throw e;
  }
  console.log('cjs quickstart: ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
