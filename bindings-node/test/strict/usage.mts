// Strict-mode user code against the package's declarations: precise types, no casts.
import Ductape, { DuctapeError, type Change, type Secret, type SecretVersion, type SecretWithValue, type TokenType } from '@ductape/sdk';

const ductape = new Ductape({ accessKey: process.env.DUCTAPE_ACCESS_KEY, timeout: 5, cache: { ttl: 60, staleIfError: 3600, watch: true } });
await ductape.init();
const created: Secret = await ductape.secrets.create({ key: 'K', value: 'v', token_type: 'api' });
const t: TokenType | null = created.token_type;
const expiry: Date | null = created.expires_at === null ? null : new Date(created.expires_at * 1000);
const fetched: SecretWithValue = await ductape.secrets.fetch('K');
const value: string = fetched.value;
const all: Secret[] = await ductape.secrets.fetchAll();
const ok: boolean = await ductape.secrets.delete('K');
try {
  await ductape.secrets.revoke('K');
} catch (e) {
  if (e instanceof DuctapeError && e.response?.status === 404) {
    const code: string = e.response.data.error.code;
    console.log(code);
  }
}
// @ts-expect-error token_type is a literal union
await ductape.secrets.create({ key: 'K', value: 'v', token_type: 'bearer' });
// @ts-expect-error value is required
await ductape.secrets.create({ key: 'K' });
const history: SecretVersion[] = await ductape.secrets.versions('K');
const changed: string[] = history[0].fields;
const source: number | undefined = history[0].rollback_of;
const old: SecretWithValue = await ductape.secrets.fetch('K', { version: 1 });
const rolled: Secret = await ductape.secrets.rollback('K', 1, { ifVersion: 2 });
const back: Secret = await ductape.secrets.undelete('K');
const gone: boolean = await ductape.secrets.delete('K', { permanent: true, ifVersion: 3 });
// @ts-expect-error a version is a number
await ductape.secrets.rollback('K', '1');
// @ts-expect-error permanent is a boolean
await ductape.secrets.delete('K', { permanent: 'yes' });
const fresh: SecretWithValue = await ductape.secrets.fetch('K', { fresh: true });
const watching = await ductape.secrets.watch((c: Change) => console.log(c.kind, c.key, c.version));
watching.close();
// @ts-expect-error a cache needs its ttl
new Ductape({ cache: { watch: true } });
console.log(t, expiry, value, all.length, ok, changed, source, old.value, rolled, back, gone, fresh.value);
