'use strict';
// CommonJS entry: `const Ductape = require('@ductape/sdk')` is the class itself, with the
// named exports on it too (`require('@ductape/sdk').DuctapeError`).
const mod = require('./dist/index.js');
module.exports = mod.default;
Object.assign(module.exports, mod);
