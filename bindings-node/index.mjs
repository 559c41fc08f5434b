// ESM entry: `import Ductape, { DuctapeError } from '@ductape/sdk'`; the same objects as
// the CommonJS entry, so `instanceof` agrees across both.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Ductape = require('./index.cjs');

export default Ductape;
export const { DuctapeError, Secrets } = Ductape;
export { Ductape };
