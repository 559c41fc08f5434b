// The web console in a real browser (Debian's chromium, driven by playwright-core) against
// a real server on SQLite: sign-in, create, the database holding no plaintext, reveal and
// copy, edit, revoke and restore, a bound key seeing only its binding, the headers, no
// request to another origin, a phone width. Screenshots go to docs/screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ductape = process.env.DUCTAPE_BIN ?? join(root, 'target', 'debug', 'ductape');
const browserPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const shots = join(root, 'docs', 'screenshots');
const CANARY = 'sk_live_CONSOLE_CANARY_7f3a91';

/** A server on a fresh SQLite directory; resolves with its URL and process. */
function startServer(dataDir, extra = []) {
  const proc = spawn(ductape, ['server', '--addr', '127.0.0.1:0', '--data-dir', dataDir, ...extra], {
    env: { ...process.env, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const seen = {};
    const timer = setTimeout(() => reject(new Error('server did not start in 20 s')), 20_000);
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d;
      for (const line of buf.split('\n')) {
        const m = /^(DUCTAPE_[A-Z_]+)=(\S+)$/.exec(line.trim());
        if (m) seen[m[1]] = m[2];
      }
      if (seen.DUCTAPE_URL && (seen.DUCTAPE_SETUP_TOKEN || seen.DUCTAPE_ACCESS_KEY)) {
        clearTimeout(timer);
        resolve({ proc, url: seen.DUCTAPE_URL, token: seen.DUCTAPE_SETUP_TOKEN });
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

function cli(url, key, args) {
  return execFileSync(ductape, args, {
    env: { ...process.env, DUCTAPE_URL: url, DUCTAPE_ACCESS_KEY: key ?? '', DUCTAPE_KEYRING: 'off' },
  }).toString();
}

let dataDir, server, adminKey, browser;

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'ductape-console-'));
  server = await startServer(dataDir);
  const out = execFileSync(ductape, ['init', '--url', server.url, '--token', server.token]).toString();
  adminKey = /DUCTAPE_ACCESS_KEY=(\S+)/.exec(out)[1];
  browser = await chromium.launch({ executablePath: browserPath, headless: true, args: ['--no-sandbox'] });
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.proc.kill();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A page that records every request it makes and fails on any error in its console. */
async function openPage(width = 1280, height = 800) {
  const context = await browser.newContext({ viewport: { width, height } });
  await context.grantPermissions(['clipboard-write'], { origin: server.url });
  const page = await context.newPage();
  const requests = [];
  const problems = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
  page.on('dialog', (d) => d.accept());
  await page.goto(server.url);
  return { page, context, requests, problems };
}

async function signIn(page, key) {
  await page.fill('#access-key', key);
  await page.click('button[type=submit]');
  await page.waitForSelector('[data-testid=who]', { timeout: 10_000 });
}

const row = (page, key) => page.locator(`tr[data-key="${key}"]`);

test('the page is served with a strict policy, no cookies, and nothing from elsewhere', async () => {
  const resp = await fetch(server.url + '/');
  assert.equal(resp.status, 200);
  const csp = resp.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|https?:/);
  assert.equal(resp.headers.get('x-frame-options'), 'DENY');
  assert.equal(resp.headers.get('set-cookie'), null);
  const html = await resp.text();
  assert.doesNotMatch(html, /<script>(?!<\/script>)|<script(?![^>]*\bsrc=)[^>]*>[^<]/, 'no inline script');
  const asset = /src="(\/assets\/[^"]+\.js)"/.exec(html)[1];
  const js = await fetch(server.url + asset);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.equal((await fetch(server.url + '/assets/nope.js')).status, 404);
});

test('sign in, create, reveal, copy, edit, revoke and restore; the database holds no plaintext', async () => {
  const { page, context, requests, problems } = await openPage();
  await page.screenshot({ path: join(shots, 'sign-in.png') });
  // A wrong key is refused with the server's words, and nothing is kept.
  await page.fill('#access-key', 'dtpk_nonsense');
  await page.click('button[type=submit]');
  await page.waitForSelector('[role=alert]');
  assert.match(await page.textContent('[role=alert]'), /access key/i);

  await signIn(page, adminKey);
  // Validation comes from the core: the SDKs' message for a bad key.
  await page.click('[data-testid=new-secret]');
  await page.fill('#f-key', 'bad key');
  await page.fill('#f-value', 'x');
  await page.click('form[aria-label="New secret"] button[type=submit]');
  await page.waitForSelector('form [role=alert]');
  assert.match(await page.textContent('form [role=alert]'), /field 'key' may contain only letters, digits/);

  await page.fill('#f-key', 'STRIPE_KEY');
  await page.fill('#f-value', CANARY);
  await page.fill('#f-description', 'Production Stripe key');
  await page.fill('#f-scope', 'web');
  await page.fill('#f-envs', 'prd');
  await page.click('form[aria-label="New secret"] button[type=submit]');
  await row(page, 'STRIPE_KEY').waitFor();
  assert.match(await row(page, 'STRIPE_KEY').textContent(), /Production Stripe key.*web.*prd.*active/);
  cli(server.url, adminKey, ['secrets', 'create', 'BILLING_TOKEN', '--value', 'billing-value', '--scope', 'billing']);
  for (let i = 0; i < 3; i++) {
    cli(server.url, adminKey, ['secrets', 'create', `SERVICE_${i}`, '--value', `v${i}`, '--description', `Service ${i}`]);
  }
  await page.reload();
  await signIn(page, adminKey);
  await row(page, 'SERVICE_2').waitFor();

  // The database and its write-ahead log hold only ciphertext.
  for (const f of ['ductape.sqlite', 'ductape.sqlite-wal']) {
    const p = join(dataDir, f);
    if (existsSync(p)) assert.ok(!readFileSync(p).includes(CANARY), `${f} holds the value`);
  }

  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'Reveal' }).click();
  await row(page, 'STRIPE_KEY').locator('[data-testid=value]').waitFor();
  assert.equal(await row(page, 'STRIPE_KEY').locator('[data-testid=value]').textContent(), CANARY);
  await page.screenshot({ path: join(shots, 'secrets.png') });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(wide <= 0, `at 1280 px the page is ${wide}px wider than the window`);
  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'Copy token' }).click();
  await page.waitForSelector('text=Copied $Token{STRIPE_KEY}');
  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'Copy value' }).click();
  await page.waitForSelector('text=Copied the value');

  // Edit: two apps now, the value resealed for its new readers and still readable.
  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'Edit' }).click();
  await page.fill('#f-scope', 'web, api');
  await page.fill('#f-envs', 'prd, staging');
  await page.screenshot({ path: join(shots, 'edit.png') });
  await page.click('form[aria-label="Edit STRIPE_KEY"] button[type=submit]');
  await page.waitForSelector('text=Saved STRIPE_KEY');
  assert.match(await row(page, 'STRIPE_KEY').textContent(), /web, api.*prd, staging/);
  // Sealed in the browser, resealed there: the same value opens in Rust, Node and Python.
  assert.match(cli(server.url, adminKey, ['secrets', 'get', 'STRIPE_KEY']), new RegExp(CANARY));
  const { Ductape } = await import(join(root, 'bindings-node', 'index.mjs'));
  const node = new Ductape({ accessKey: adminKey, url: server.url });
  await node.init();
  assert.equal((await node.secrets.fetch('STRIPE_KEY')).value, CANARY);
  const python = join(root, 'bindings-python', '.venv', 'bin', 'python');
  const script = 'import ductape,sys; d=ductape.Ductape(access_key=sys.argv[1], url=sys.argv[2]); d.init(); print(d.secrets.fetch("STRIPE_KEY").value)';
  assert.equal(execFileSync(python, ['-c', script, adminKey, server.url]).toString().trim(), CANARY);

  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'Revoke' }).click();
  await page.waitForSelector('text=Revoked STRIPE_KEY');
  assert.match(await row(page, 'STRIPE_KEY').textContent(), /revoked/);
  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'Restore' }).click();
  await page.waitForSelector('text=Restored STRIPE_KEY');
  assert.match(await row(page, 'STRIPE_KEY').textContent(), /active/);

  // History: a new value (version 5), then back to earlier ones. Version 1's value was sealed
  // for the readers of its time (web/prd), so rolling back to it is sealed anew in the page;
  // versions 5 and 6 (the readers of now) are copied by the server.
  const SECOND = 'sk_live_SECOND_value';
  // A key for app api alone: its binding reads the secret now (scope web, api), not version 1.
  cli(server.url, adminKey, ['access-keys', 'create', '--name', 'api-only', '--permissions', 'list,read', '--app', 'api']);
  const rollbacks = [];
  const conflicts = [];
  page.on('response', (r) => {
    if (r.url().endsWith('/rollback')) rollbacks.push(r.status());
    if (r.status() === 409) conflicts.push(`${r.request().method()} ${new URL(r.url()).pathname}`);
  });
  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'Edit' }).click();
  await page.fill('#f-value', SECOND);
  await page.click('form[aria-label="Edit STRIPE_KEY"] button[type=submit]');
  await page.waitForSelector('text=Saved STRIPE_KEY');
  assert.match(cli(server.url, adminKey, ['secrets', 'get', 'STRIPE_KEY']), new RegExp(SECOND));
  await row(page, 'STRIPE_KEY').getByRole('button', { name: 'History' }).click();
  const history = page.locator('section[aria-label="History of STRIPE_KEY"]');
  const version = (v) => history.locator(`tr[data-version="${v}"]`);
  await version(1).waitFor();
  assert.equal(await history.locator('tbody tr').count(), 5);
  assert.match(await version(5).textContent(), /5 current.*update \(value\)/);
  assert.match(await version(2).textContent(), /update \(envs, scope, value\)/);
  assert.match(await version(1).textContent(), /create/);
  assert.doesNotMatch(await history.textContent(), new RegExp(`${CANARY}|${SECOND}`), 'no value until asked');
  await version(1).getByRole('button', { name: 'Reveal' }).click();
  assert.equal(await version(1).locator('[data-testid=version-value]').textContent(), CANARY);
  await page.screenshot({ path: join(shots, 'history.png') });
  assert.equal(await version(5).getByRole('button', { name: 'Roll back' }).count(), 0, 'the current version');
  await version(1).getByRole('button', { name: 'Roll back' }).click();
  await page.waitForSelector('text=Rolled STRIPE_KEY back to version 1');
  await version(6).waitFor();
  assert.match(await version(6).textContent(), /6 current.*rollback of version 1/);
  assert.match(await row(page, 'STRIPE_KEY').textContent(), /web, api.*prd, staging.*active.*6/);
  assert.match(cli(server.url, adminKey, ['secrets', 'get', 'STRIPE_KEY']), new RegExp(CANARY));
  assert.deepEqual(rollbacks, [409, 200], 'keyring_changed, then sealed anew in the page');
  await version(5).getByRole('button', { name: 'Roll back' }).click();
  await page.waitForSelector('text=Rolled STRIPE_KEY back to version 5');
  await version(7).waitFor();
  assert.match(cli(server.url, adminKey, ['secrets', 'get', 'STRIPE_KEY']), new RegExp(SECOND));
  await version(6).getByRole('button', { name: 'Roll back' }).click();
  await page.waitForSelector('text=Rolled STRIPE_KEY back to version 6');
  await version(8).waitFor();
  assert.match(cli(server.url, adminKey, ['secrets', 'get', 'STRIPE_KEY']), new RegExp(CANARY));
  assert.deepEqual(rollbacks, [409, 200, 200, 200], 'copied by the server');
  // Rolled back in the page, read by the Node SDK: the same envelope.
  assert.equal((await node.secrets.fetch('STRIPE_KEY')).value, CANARY);
  // A rollback against a secret changed meanwhile is refused, not applied over the change.
  cli(server.url, adminKey, ['secrets', 'update', 'STRIPE_KEY', '--description', 'Changed elsewhere']);
  await version(5).getByRole('button', { name: 'Roll back' }).click();
  await history.locator('[role=alert]').or(page.locator('[role=alert]')).first().waitFor();
  assert.match(await page.locator('[role=alert]').first().textContent(), /version/i);
  assert.match(cli(server.url, adminKey, ['secrets', 'get', 'STRIPE_KEY']), new RegExp(CANARY));
  await history.getByRole('button', { name: 'Close' }).click();

  // Search and the status filter.
  await page.fill('[aria-label="Search secrets"]', 'service');
  assert.match(await page.textContent('[data-testid=count]'), /^3 of 5 secrets/);
  await page.fill('[aria-label="Search secrets"]', '');

  await page.click('text=Sign out');
  await page.waitForSelector('#access-key');
  assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);

  const origin = new URL(server.url).origin;
  assert.deepEqual(requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:')), []);
  assert.ok(!requests.some((u) => u.includes(adminKey) || u.includes(CANARY)), 'no key or value in a URL');
  // The browser logs every 4xx answer. The 409s: the value edit sealed before the page knew
  // of api's binding and the rollback to version 1 (both keyring_changed: sealed anew), and
  // the refused stale rollback.
  assert.deepEqual(conflicts, [
    'PATCH /v1/secrets/STRIPE_KEY',
    'POST /v1/secrets/STRIPE_KEY/rollback',
    'POST /v1/secrets/STRIPE_KEY/rollback',
  ]);
  assert.deepEqual(problems.filter((p) => !p.includes('status of 409 (Conflict)')), []);
  assert.equal(problems.length, conflicts.length);
  await context.close();
});

test('access keys: a bound key made in the page sees only its binding; the audit shows its reads', async () => {
  const admin = await openPage();
  await signIn(admin.page, adminKey);
  await admin.page.click('button.tab:has-text("Access keys")');
  const form = admin.page.locator('form[aria-label="New access key"]');
  const make = async (name) => {
    await admin.page.fill('#k-name', name);
    await admin.page.fill('#k-app', 'web');
    await admin.page.fill('#k-envs', 'prd');
    await form.locator('button[type=submit]').click();
  };
  // The first key of a binding: the binding registered and every secret it may read wrapped
  // to it, in the page (the keys made and used by the core here).
  await make('web-prd');
  await admin.page.locator('[data-testid=new-key]').waitFor();
  const bound = (await admin.page.textContent('[data-testid=new-key]')).trim();
  assert.match(bound, /^dtpk_/);
  // A second key of the same binding only gets its grant.
  await admin.page.getByRole('button', { name: 'Done' }).click();
  await make('web-prd-2');
  await admin.page.locator('[data-testid=new-key]').waitFor();
  const second = (await admin.page.textContent('[data-testid=new-key]')).trim();
  assert.notEqual(second, bound);
  await admin.page.screenshot({ path: join(shots, 'access-keys.png') });
  const row = admin.page.locator('tr', { hasText: 'web-prd' }).first();
  assert.match(await row.textContent(), /list, read.*web.*prd/);

  const { page, context, problems } = await openPage();
  await signIn(page, bound);
  await page.locator('tr[data-key="STRIPE_KEY"]').waitFor();
  assert.match(await page.textContent('[data-testid=who]'), /bound to app web \/ env prd/);
  assert.equal(await page.locator('tr[data-key="BILLING_TOKEN"]').count(), 0, 'outside the binding: not listed');
  assert.equal(await page.locator('[data-testid=new-secret]').count(), 0, 'no write permission: no create');
  assert.equal(await page.locator('button.tab:has-text("Audit")').count(), 0, 'not an admin: no audit');
  await page.locator('tr[data-key="STRIPE_KEY"]').getByRole('button', { name: 'Reveal' }).click();
  assert.equal(await page.locator('tr[data-key="STRIPE_KEY"] [data-testid=value]').textContent(), CANARY);
  assert.deepEqual(problems, []);
  await context.close();

  // Its usage: the bound key's read under web/prd, and a bar for today.
  await admin.page.click('button.tab:has-text("Secrets")');
  await admin.page.locator('tr[data-key="STRIPE_KEY"]').getByRole('button', { name: 'Usage' }).click();
  const usage = admin.page.locator('section[aria-label="Usage of STRIPE_KEY"] tr[data-usage="web/prd"]');
  await usage.waitFor();
  assert.match(await usage.textContent(), /^webprd10/);
  await admin.page.waitForSelector('tr[data-usage="web/prd"] svg[aria-label^="1 reads and 0 denials"]');
  await admin.page.screenshot({ path: join(shots, 'usage.png') });

  // The admin's audit timeline: the bound key's read, filtered by the secret.
  await admin.page.click('button.tab:has-text("Audit")');
  await admin.page.fill('[aria-label="Secret key"]', 'STRIPE_KEY');
  await admin.page.press('[aria-label="Secret key"]', 'Enter');
  const boundId = bound.slice('dtpk_'.length).split('.')[0];
  const read = admin.page.locator(`.timeline li[data-action=read]:has-text("${boundId}")`);
  await read.first().waitFor();
  assert.match(await read.first().textContent(), /allowed.*read.*STRIPE_KEY.*app web.*env prd/);
  assert.ok((await admin.page.locator('.timeline li[data-action=revoke]').count()) >= 1);
  await admin.page.screenshot({ path: join(shots, 'audit.png') });
  assert.deepEqual(admin.problems, []);
  await admin.context.close();

  // Wrapped in the page, opened by the CLI (Rust): both keys read their binding, nothing else.
  for (const key of [bound, second]) {
    assert.match(cli(server.url, key, ['secrets', 'get', 'STRIPE_KEY']), new RegExp(CANARY));
    assert.throws(() => cli(server.url, key, ['secrets', 'get', 'BILLING_TOKEN']), /not found|404/i);
  }

  // An admin bound to web/prd cannot make a binding outside its own from the page: refused,
  // and nothing is left behind (no key, no binding).
  const boundAdmin = /DUCTAPE_ACCESS_KEY=(\S+)/.exec(
    cli(server.url, adminKey, ['access-keys', 'create', '--name', 'web-admin', '--permissions', 'admin', '--app', 'web', '--envs', 'prd']),
  )[1];
  const before = cli(server.url, adminKey, ['access-keys', 'list']);
  const other = await openPage();
  await signIn(other.page, boundAdmin);
  await other.page.click('button.tab:has-text("Access keys")');
  await other.page.fill('#k-name', 'billing-from-web');
  await other.page.fill('#k-app', 'billing');
  await other.page.locator('form[aria-label="New access key"] button[type=submit]').click();
  const refusal = other.page.locator('form[aria-label="New access key"] [role=alert]');
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /a bound key can only register bindings within its own app and environments/);
  assert.equal(await other.page.locator('[data-testid=new-key]').count(), 0);
  assert.equal(cli(server.url, adminKey, ['access-keys', 'list']), before);
  await other.context.close();
});

test('keyboard only: sign in, switch screens, open a history and reveal an earlier value', async () => {
  const { page, context, problems } = await openPage();
  /** Presses Tab until `matches` holds for the focused element (at most `limit` presses). */
  const tabTo = async (what, matches, limit = 80) => {
    for (let i = 0; i < limit; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(matches)) return;
    }
    assert.fail(`Tab never reached ${what}`);
  };
  await tabTo('the key field', () => document.activeElement?.id === 'access-key');
  await page.keyboard.type(adminKey);
  await page.keyboard.press('Enter');
  await page.waitForSelector('[data-testid=who]');
  await tabTo('the Access keys tab', () => document.activeElement?.textContent === 'Access keys');
  await page.keyboard.press('Enter');
  await page.waitForSelector('form[aria-label="New access key"]');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Secrets');
  await page.keyboard.press('Enter');
  await row(page, 'STRIPE_KEY').waitFor();
  await tabTo('History of STRIPE_KEY', () => {
    const el = document.activeElement;
    return el?.textContent === 'History' && el.closest('tr')?.dataset.key === 'STRIPE_KEY';
  }, 200);
  await page.keyboard.press('Enter');
  const first = page.locator('section[aria-label="History of STRIPE_KEY"] tr[data-version="1"]');
  await first.waitFor();
  await tabTo('Reveal of version 1', () => {
    const el = document.activeElement;
    return el?.textContent === 'Reveal' && el.closest('tr')?.dataset.version === '1';
  });
  await page.keyboard.press('Enter');
  assert.equal(await first.locator('[data-testid=version-value]').textContent(), CANARY);
  assert.deepEqual(problems, []);
  await context.close();
});

test('at a phone width nothing overflows sideways', async () => {
  const { page, context } = await openPage(390, 844);
  await signIn(page, adminKey);
  await row(page, 'STRIPE_KEY').waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: join(shots, 'phone.png'), fullPage: false });
  await context.close();
});

test('10,000 secrets: listed page by page from the server, 100 rows in the page at a time', async () => {
  const file = join(dataDir, 'many.env');
  writeFileSync(file, Array.from({ length: 10_000 }, (_, i) => `BULK_${String(i).padStart(5, '0')}=v${i}`).join('\n'));
  cli(server.url, adminKey, ['secrets', 'import', file]);
  const { page, context, problems } = await openPage();
  await signIn(page, adminKey);
  await page.waitForSelector('text=Page 1 of');
  assert.match(await page.textContent('[data-testid=count]'), /^10005 of 10005 secrets/);
  assert.equal(await page.locator('tbody tr').count(), 100);
  await page.fill('[aria-label="Search secrets"]', 'BULK_0999');
  assert.match(await page.textContent('[data-testid=count]'), /^10 of 10005 secrets/);
  // Keyboard: Tab reaches the first row's buttons, Enter reveals.
  await page.fill('[aria-label="Search secrets"]', 'BULK_09999');
  await page.locator('tr[data-key="BULK_09999"] button:has-text("Reveal")').focus();
  await page.keyboard.press('Enter');
  await page.waitForSelector('tr[data-key="BULK_09999"] [data-testid=value]');
  assert.equal(await page.textContent('tr[data-key="BULK_09999"] [data-testid=value]'), 'v9999');
  assert.deepEqual(problems, []);
  await context.close();
});

test('--no-console turns the page off and leaves the API on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ductape-console-off-'));
  const off = await startServer(dir, ['--no-console']);
  try {
    const resp = await fetch(off.url + '/');
    assert.equal(resp.status, 404);
    assert.match((await resp.json()).error.message, /--no-console/);
    assert.equal((await fetch(off.url + '/healthz')).status, 200);
  } finally {
    off.proc.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
