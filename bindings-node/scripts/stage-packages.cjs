// Stages the npm packages a release publishes, the napi-rs way, into OUT (for `npm pack`):
//   OUT/sdk                     @ductape/sdk: the TypeScript layer and both entries, with an
//                               optional dependency on each platform package staged here;
//   OUT/sdk-<triple>            @ductape/sdk-<triple>: one prebuilt addon, with the os, cpu
//                               and libc npm matches before installing it.
// Run after `npm run build` (the release addon in native/, the declarations in dist/).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const here = path.join(__dirname, '..');
const out = process.argv[2];
if (!out) throw new Error('usage: stage-packages.cjs OUT');
const pkg = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8'));

// `ductape.linux-x64-gnu.node` → os linux, cpu x64, libc glibc.
function platformOf(triple) {
  const [os, cpu, abi] = triple.split('-');
  const libc = os === 'linux' ? { gnu: 'glibc', musl: 'musl' }[abi] : undefined;
  return { os: [os], cpu: [cpu], ...(libc ? { libc: [libc] } : {}) };
}

fs.rmSync(out, { recursive: true, force: true });
const addons = fs.readdirSync(path.join(here, 'native')).filter((f) => /^ductape\..+\.node$/.test(f));
if (addons.length === 0) throw new Error('no addon in native/: run `npm run build` first');

const common = {
  version: pkg.version,
  license: pkg.license,
  engines: pkg.engines,
  ...(pkg.repository ? { repository: pkg.repository } : {}),
};
const optional = {};
for (const file of addons) {
  const triple = file.slice('ductape.'.length, -'.node'.length);
  const name = `${pkg.name}-${triple}`;
  const dir = path.join(out, `sdk-${triple}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(here, 'native', file), path.join(dir, file));
  fs.copyFileSync(path.join(here, '..', 'LICENSE'), path.join(dir, 'LICENSE'));
  const manifest = {
    name,
    description: `The prebuilt native addon of ${pkg.name} for ${triple}`,
    ...common,
    ...platformOf(triple),
    main: file,
    files: [file],
  };
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
  fs.writeFileSync(
    path.join(dir, 'README.md'),
    `# ${name}\n\nThe ${triple} native addon of [\`${pkg.name}\`](https://www.npmjs.com/package/${pkg.name}). ` +
      `Install \`${pkg.name}\`, not this package: npm picks the addon that fits the platform.\n`,
  );
  optional[name] = pkg.version;
}

// The main package: what `files` lists, less the addons (they come in the packages above).
const main = path.join(out, 'sdk');
fs.mkdirSync(main, { recursive: true });
for (const entry of ['index.cjs', 'index.mjs', 'dist', 'README.md']) {
  fs.cpSync(path.join(here, entry), path.join(main, entry), { recursive: true });
}
fs.copyFileSync(path.join(here, '..', 'LICENSE'), path.join(main, 'LICENSE'));
const { scripts: _scripts, devDependencies: _dev, napi: _napi, ...rest } = pkg;
const manifest = {
  ...rest,
  files: ['index.cjs', 'index.mjs', 'dist/'],
  optionalDependencies: optional,
};
fs.writeFileSync(path.join(main, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
process.stdout.write(`staged ${pkg.name}@${pkg.version} and ${Object.keys(optional).join(', ')}\n`);
