// After tsc: the ESM entry gets its own copy of the declarations (`.d.mts`), so that
// `import Ductape from '@ductape/sdk'` type-checks under every module resolution.
const fs = require('node:fs');
const path = require('node:path');
const dist = path.join(__dirname, '..', 'dist');
fs.copyFileSync(path.join(dist, 'index.d.ts'), path.join(dist, 'index.d.mts'));
