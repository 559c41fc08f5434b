// Used by runtime.test.mjs: does some work and must then exit without process.exit().
import Ductape from '@ductape/sdk';

const ductape = new Ductape();
await ductape.init();
await ductape.secrets.create({ key: `EXIT_${Date.now()}`, value: 'v' });
await ductape.secrets.fetchAll();
console.log('done');
