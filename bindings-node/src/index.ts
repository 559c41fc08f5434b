/**
 * Ductape Secrets for Node and TypeScript.
 *
 * Values are encrypted and decrypted in this process by the Rust core (a napi addon); the
 * server only ever sees ciphertext. Every network call runs off the JavaScript thread.
 *
 * ```ts
 * import Ductape from '@ductape/sdk';
 * const ductape = new Ductape({ accessKey: process.env.DUCTAPE_ACCESS_KEY });
 * await ductape.init();
 * const secret = await ductape.secrets.fetch('STRIPE_API_KEY');
 * ```
 */

import { inspect } from 'node:util';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
// The generated declarations of the addon: this file does not compile if they drift.
import type { NativeClient, NativeOptions } from '../native/native';

/** `api` or `access`. */
export type TokenType = 'api' | 'access';

/** The lifecycle state of a secret. */
export type SecretStatus = 'active' | 'revoked' | 'expired';

/** A secret's metadata, in the documented response shape. Never holds a value. */
export interface Secret {
  /** 24 lowercase hex characters. */
  _id: string;
  workspace_id: string;
  key: string;
  description: string | null;
  token_type: TokenType | null;
  /** App tags that may use the secret; empty means all apps. */
  scope: string[];
  /** Environment slugs where the secret is available; empty means all. */
  envs: string[];
  /** Unix seconds, or null for no expiry. */
  expires_at: number | null;
  /** ISO-8601 UTC with milliseconds. */
  createdAt: string;
  /** ISO-8601 UTC with milliseconds. */
  updatedAt: string;
  /** Starts at 1; every change adds one. */
  version: number;
  status: SecretStatus;
}

/** A secret with its decrypted value (`fetch`). The value is not enumerable: it shows in
 * no `console.log`, `util.inspect` or `JSON.stringify`, only through `.value`. */
export interface SecretWithValue extends Secret {
  readonly value: string;
}

/** Arguments of `secrets.create`. */
export interface CreateSecretInput {
  key: string;
  value: string;
  description?: string;
  token_type?: TokenType;
  scope?: string[];
  envs?: string[];
  expires_at?: number | null;
}

/** Arguments of `secrets.update`: left out = kept, `null` = cleared. */
export interface UpdateSecretInput {
  value?: string;
  description?: string | null;
  token_type?: TokenType | null;
  scope?: string[] | null;
  envs?: string[] | null;
  expires_at?: number | null;
  /** Fail with 409 `version_conflict` unless the secret is at this version. */
  expected_version?: number;
  /** The same as `expected_version` (the name `delete`/`revoke`/`restore` use too). */
  ifVersion?: number;
}

/** Options of `delete`, `revoke`, `restore` and `rollback`. */
export interface IfVersion {
  /** Only if the secret is still at this version: else rejects with 409 `version_conflict`. */
  ifVersion?: number;
}

/** Options of `delete`. */
export interface DeleteOptions extends IfVersion {
  /** Delete the secret and its history at once instead of moving them to the trash (admin). */
  permanent?: boolean;
}

/** Options of `fetch`. */
export interface FetchOptions {
  /** An earlier version (see `versions`), read under the same access rules. */
  version?: number;
  /** Ask the server whatever the cache holds (the answer refreshes the cache). */
  fresh?: boolean;
}

/** One version of a secret (`versions`): when it was made, by which access key, what it
 * changed (`fields` names them, `value` for the value; never values themselves). */
export interface SecretVersion {
  version: number;
  /** ISO-8601 UTC with milliseconds. */
  createdAt: string;
  access_key_id: string | null;
  access_key_name: string | null;
  /** `create`, `update`, `revoke`, `restore`, `rollback` or `undelete`. */
  action: string | null;
  fields: string[];
  /** A rollback's source version. */
  rollback_of?: number;
  status: SecretStatus;
  current: boolean;
}

/** The app and environment a configuration is resolved for. */
export interface ResolveOptions {
  /** App tag, checked against each secret's `scope`. */
  app?: string;
  /** Environment slug, checked against each secret's `envs`. */
  env?: string;
}

/** Options of `check`. */
export interface CheckOptions extends ResolveOptions {
  /** Warn about secrets expiring within this many seconds (default 7 days). */
  expiringWithin?: number;
}

/** One reference of a check report. Never holds a value. */
export interface CheckItem {
  key: string;
  ok: boolean;
  code: string | null;
  status: number | null;
  message: string | null;
  expires_at: number | null;
  warning: string | null;
}

/** Every `$Token{KEY}` of a configuration and whether it would resolve. */
export interface CheckReport {
  ok: boolean;
  references: CheckItem[];
}

/** Where a secret was read: one app and environment, with counts and the last access. */
export interface UsageEntry {
  app: string | null;
  env: string | null;
  last_access: string;
  reads: number;
  denied: number;
}

/**
 * One read or change (allowed or refused). Never holds a value. `app`/`env` are the access
 * key's binding (else what the caller named); `claimed_app`/`claimed_env` what the caller
 * claimed when it differs; `detail` the fields a change touched; `prev_hash`/`hash` chain
 * the events of a workspace.
 */
export interface AuditEntry {
  id: number;
  at: string;
  access_key_id: string;
  secret_key: string;
  action: string;
  app: string | null;
  env: string | null;
  claimed_app: string | null;
  claimed_env: string | null;
  allowed: boolean;
  reason: string | null;
  detail: string | null;
  /**
   * A batch read's (`resolve`, `check`) secrets it was allowed to read, when one event
   * records them all (`secret_key` is then empty); absent otherwise.
   */
  keys?: string[];
  prev_hash: string;
  hash: string;
}

/** What a key rotation did. */
export interface Rotation {
  /** The key generation the workspace is at now. */
  generation: number;
  /** Values this call sealed anew. */
  resealed: number;
  /** Whether this call started the rotation (false: it resumed one). */
  started: boolean;
}

/** A page of the audit trail, newest first. */
export interface AuditPage {
  events: AuditEntry[];
  /** Pass as `before` for the next (older) page; null on the last page. */
  next_before: number | null;
}

/** Filters of the audit listing. */
export interface AuditQuery {
  secret_key?: string;
  access_key_id?: string;
  app?: string;
  env?: string;
  before?: number;
  limit?: number;
}

/** Client options; `accessKey` and `url` default to `DUCTAPE_ACCESS_KEY` and `DUCTAPE_URL`. */
export interface DuctapeOptions {
  accessKey?: string;
  url?: string;
  /** Per-request timeout in seconds (default 30). */
  timeout?: number;
  /** Retries on connection errors, 5xx and 429 (default 3). */
  maxRetries?: number;
  /** The value cache (off by default): values served from memory for `ttl` seconds, then
   * revalidated with the server (a 304 keeps them); `staleIfError` (seconds, off by
   * default) serves the last good value that much longer when the server cannot answer,
   * with a process warning. */
  cache?: {
    ttl: number;
    staleIfError?: number;
    /** Follow the server's change feed: a value anyone changes leaves the cache within
     * about a second. */
    watch?: boolean;
    /** A file (mode 0600) keeping the cache's answers as the server holds them
     * (ciphertext), so `init()` and reads work within `staleIfError` when the server is
     * unreachable at start. */
    snapshot?: string;
  };
}

/** A change heard on the change feed (`watch`): never a value. `reset`: changes may have
 * been missed, treat everything as changed (no key or version then). */
export interface Change {
  kind: 'create' | 'update' | 'revoke' | 'restore' | 'rollback' | 'undelete' | 'delete' | 'reset';
  key?: string;
  version?: number;
}

/** A subscription made by `secrets.watch`. */
export interface Watching {
  /** Stops listening (the callback is not called again). */
  close(): void;
}

/** The body of an error answer, as `error.response.data`. */
export interface ErrorResponseData {
  error: { status: number; code: string; message: string };
}

/**
 * Every failure. `code` is a stable machine code (`secret_exists`, `connection_error`, ...);
 * errors that came from the server have `status` and `response` (`response.status`,
 * `response.data`), as `error.response?.status === 409` expects. Connection errors have no
 * `response`. Messages never contain a secret value or an access key.
 */
export class DuctapeError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  readonly response: { status: number; data: ErrorResponseData } | undefined;
  /** When several references failed to resolve: each failure (this error has the first
   * one's code and status, and every message). Empty otherwise. */
  readonly failures: DuctapeError[];

  constructor(message: string, code: string, status: number | undefined, failures: DuctapeError[] = []) {
    super(message);
    this.name = 'DuctapeError';
    this.code = code;
    this.status = status;
    this.response =
      status === undefined ? undefined : { status, data: { error: { status, code, message } } };
    this.failures = failures;
  }
}

const NATIVE_ERROR = /^\[ductape:(\d+|-):([a-z_]+)\] ([\s\S]*)$/;

function parseLine(line: string): DuctapeError | undefined {
  const m = NATIVE_ERROR.exec(line);
  return m ? new DuctapeError(m[3], m[2], m[1] === '-' ? undefined : Number(m[1])) : undefined;
}

/** Rebuilds a typed error from the addon's (the format is written in `src/lib.rs`): one
 * tagged line, then one per failure when the error stands for several. */
function translate(e: unknown): unknown {
  if (e instanceof Error) {
    const [first, ...rest] = e.message.split('\n');
    const top = parseLine(first);
    if (top) {
      const failures = rest.map(parseLine).filter((f): f is DuctapeError => f !== undefined);
      return new DuctapeError(top.message, top.code, top.status, failures);
    }
  }
  return e;
}

async function call<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw translate(e);
  }
}

function sync<T>(op: () => T): T {
  try {
    return op();
  } catch (e) {
    throw translate(e);
  }
}

/** JSON semantics: a property set to `undefined` is left out (not sent as null). */
function defined(args: unknown): unknown {
  if (args === null || typeof args !== 'object' || Array.isArray(args)) return args;
  return Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined));
}

function withHiddenValue(raw: Secret & { value: string }): SecretWithValue {
  const { value, ...meta } = raw;
  Object.defineProperty(meta, 'value', { value, enumerable: false, writable: false });
  return meta as SecretWithValue;
}

interface NativeModule {
  NativeClient: new (options?: NativeOptions | null) => NativeClient;
}

let nativeModule: NativeModule | undefined;

/** The platform as the prebuilt addons are named (napi-rs's triples): `linux-x64-gnu`,
 * `linux-x64-musl`, `darwin-arm64`, `win32-x64-msvc`, … */
function platformTriple(): string {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform === 'win32') return `${base}-msvc`;
  if (process.platform !== 'linux') return base;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)
    ?.header;
  return `${base}-${header?.glibcVersionRuntime ? 'gnu' : 'musl'}`;
}

/** The addon: built in this checkout (`native/`, `npm run build`), else the prebuilt one of
 * this platform's package (`@ductape/sdk-<triple>`, an optional dependency of the published
 * package that npm installs only where it fits). */
function loadNative(): NativeModule {
  if (nativeModule) return nativeModule;
  const triple = platformTriple();
  const local = join(__dirname, '..', 'native', `ductape.${triple}.node`);
  const prebuilt = `@ductape/sdk-${triple}`;
  let why: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    nativeModule = require(existsSync(local) ? local : prebuilt) as NativeModule;
    return nativeModule;
  } catch (e) {
    why = e;
  }
  const cause = why instanceof Error && 'code' in why && why.code === 'MODULE_NOT_FOUND' ? '' : ` (${String(why)})`;
  throw new DuctapeError(
    `@ductape/sdk has no native addon for this platform (${triple}): the prebuilt one comes in ` +
      `${prebuilt}, which npm installs only on that platform; reinstall without --no-optional / ` +
      `--omit=optional, or build it from a checkout with \`npm run build\`${cause}`,
    'config_error',
    undefined,
  );
}

/** Secret operations: `create`, `fetchAll`, `fetch`, `update`, `delete`, `revoke`, `restore`,
 * and history: `versions`, `rollback`, `undelete`. */
export class Secrets {
  readonly #native: NativeClient;
  /** Objects built for fresh cache hits, by key: the cache's generation then and when the
   * entry stops being fresh (`performance.now()` time). */
  readonly #hits = new Map<string, { generation: number; until: number; secret: SecretWithValue }>();

  /** A fresh cache hit without a request. Freshness and invalidation are the core's: a
   * hit holds while the cache's generation has not moved (nothing came in or went out) and
   * its freshness has not run out; otherwise the core is asked again. */
  #cacheHit(key: string): SecretWithValue | undefined {
    const generation = this.#generation();
    if (generation === null) return undefined;
    const kept = this.#hits.get(key);
    if (kept !== undefined && kept.generation === generation && performance.now() < kept.until) {
      return kept.secret;
    }
    // Taken before the core measures the freshness left, so the deadline is never late.
    const now = performance.now();
    const got = this.#native.cacheHit(key);
    if (got === null || got === undefined) {
      this.#hits.delete(key);
      return undefined;
    }
    // Shared by every hit on this entry: frozen, so no caller can change what others get.
    const secret = Object.freeze(withHiddenValue(got.secret as Secret & { value: string }));
    if (this.#hits.size >= 10_000) this.#hits.clear();
    this.#hits.set(key, { generation: got.generation, until: now + got.freshMs, secret });
    return secret;
  }

  /** The cache's generation: read from the core's counter through a shared view where the
   * runtime allows one (no call into the addon), else asked of the addon. */
  #generation(): number | null {
    const words = this.#generationWords;
    if (words === null) return this.#native.cacheGeneration() ?? null;
    for (;;) {
      const high = Atomics.load(words, 1);
      const low = Atomics.load(words, 0);
      // The high word moved under us only when the low one carried: read again.
      if (Atomics.load(words, 1) === high) return high * 0x1_0000_0000 + low;
    }
  }

  /** The core's generation counter as (low, high) words, or `null`. */
  readonly #generationWords: Uint32Array | null;

  /** @internal Made by `Ductape`. */
  constructor(native: NativeClient) {
    this.#native = native;
    this.#generationWords = native.cacheGenerationView();
  }

  /** Encrypts `value` locally and creates the secret. 409 if the key exists. */
  create(args: CreateSecretInput): Promise<Secret> {
    return call(() => this.#native.create(defined(args)) as Promise<Secret>);
  }

  /** Every secret's metadata (never values). */
  fetchAll(): Promise<Secret[]> {
    return call(() => this.#native.fetchAll() as Promise<Secret[]>);
  }

  /**
   * Every secret's metadata, a page at a time (for workspaces too big to hold at once):
   * `for await (const s of ductape.secrets.iterate()) { ... }`. `pageSize`: 1 to 1000.
   */
  async *iterate(options: { pageSize?: number } = {}): AsyncGenerator<Secret, void, undefined> {
    let cursor: string | undefined;
    do {
      const page = (await call(() => this.#native.page(options.pageSize ?? 1000, cursor))) as {
        secrets: Secret[];
        next_cursor: string | null;
      };
      yield* page.secrets;
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
  }

  /** One secret with its value, decrypted locally; `{ version }`: an earlier version. */
  fetch(key: string, options: FetchOptions = {}): Promise<SecretWithValue> {
    // A cache hit answers without an async frame; anything odd (a bad argument) goes the
    // server's way, which rejects with the typed error.
    if (typeof key === 'string' && options?.version === undefined && !options?.fresh) {
      const hit = this.#cacheHit(key);
      if (hit !== undefined) return Promise.resolve(hit);
    }
    return this.#fetchFromServer(key, options ?? {});
  }

  async #fetchFromServer(key: string, options: FetchOptions): Promise<SecretWithValue> {
    const raw = (await call(() => this.#native.fetch(key, options.version, options.fresh))) as Secret & {
      value: string;
      stale?: boolean;
    };
    if (raw.stale) {
      process.emitWarning(
        `the Ductape server cannot answer: serving the cached value of '${raw.key}' past its TTL (staleIfError)`,
        'DuctapeStaleValue',
      );
    }
    delete raw.stale;
    return withHiddenValue(raw);
  }

  /**
   * Calls `onChange` with every change to a secret this key may see, from now on, as it
   * happens (metadata only), until `close()`. Resolves once listening.
   */
  async watch(onChange: (change: Change) => void): Promise<Watching> {
    const w = await call(() => this.#native.watch());
    let open = true;
    void (async () => {
      while (open) {
        const next = (await w.next()) as Change | null;
        if (next === null || !open) return;
        onChange(next);
      }
    })();
    return {
      close() {
        open = false;
        w.close();
      },
    };
  }

  /** Every kept version of the secret, newest first (what changed, never values). */
  versions(key: string): Promise<SecretVersion[]> {
    return call(() => this.#native.versions(key) as Promise<SecretVersion[]>);
  }

  /** A new current version with `version`'s value (metadata stays; history is kept). */
  rollback(key: string, version: number, options: IfVersion = {}): Promise<Secret> {
    return call(() => this.#native.rollback(key, version, options.ifVersion) as Promise<Secret>);
  }

  /** Brings the secret most recently deleted under `key` back from the trash, with its history. */
  undelete(key: string): Promise<Secret> {
    return call(() => this.#native.undelete(key) as Promise<Secret>);
  }

  /** Changes the value (re-encrypted locally) and/or metadata. */
  update(key: string, args: UpdateSecretInput): Promise<Secret> {
    // `ifVersion` travels as the core's `if_version`; anything else is checked by the core.
    let wire: unknown = args;
    if (args !== null && typeof args === 'object' && !Array.isArray(args) && 'ifVersion' in args) {
      const { ifVersion, ...rest } = args;
      wire = { ...rest, if_version: ifVersion };
    }
    return call(() => this.#native.update(key, defined(wire)) as Promise<Secret>);
  }

  /** Deletes the secret: it moves to the server's trash with its history (`undelete` brings
   * it back) unless `permanent`. Reads answer 404 at once. Resolves `true`. */
  delete(key: string, options: DeleteOptions = {}): Promise<boolean> {
    return call(() => this.#native.delete(key, options.ifVersion, options.permanent));
  }

  /** Revokes the secret: it stays listed but its value can no longer be read. Resolves `true`. */
  revoke(key: string, options: IfVersion = {}): Promise<boolean> {
    return call(() => this.#native.revoke(key, options.ifVersion));
  }

  /** Undoes a revoke. */
  restore(key: string, options: IfVersion = {}): Promise<Secret> {
    return call(() => this.#native.restore(key, options.ifVersion) as Promise<Secret>);
  }

  /** A copy of `config` (any JSON-like value) with every `$Token{KEY}` replaced by the
   * secret's value, all fetched in one request. Rejects with the reason of each reference
   * that cannot be resolved (`error.failures` lists them when there are several).
   * `$$Token{` stands for a literal `$Token{`. */
  resolve<T = unknown>(config: T, options: ResolveOptions = {}): Promise<T> {
    return call(() => this.#native.resolve(config, { app: options.app, env: options.env }) as Promise<T>);
  }

  /** Every reference of `config` and whether it would resolve, without reading values. */
  check(config: unknown, options: CheckOptions = {}): Promise<CheckReport> {
    return call(
      () =>
        this.#native.check(config, {
          app: options.app,
          env: options.env,
          expiringWithin: options.expiringWithin,
        }) as Promise<CheckReport>,
    );
  }

  /** Which apps and environments read the secret, and when last. */
  usage(key: string): Promise<UsageEntry[]> {
    return call(() => this.#native.usage(key) as Promise<UsageEntry[]>);
  }

  [inspect.custom](): string {
    return 'Secrets {}';
  }
}

/** The Ductape Secrets client. */
export default class Ductape {
  readonly #native: NativeClient;
  /** Secret operations (after `await init()`). */
  readonly secrets: Secrets;

  constructor(options: DuctapeOptions = {}) {
    const { NativeClient } = loadNative();
    // The key goes straight to the core; no JavaScript property keeps it.
    this.#native = sync(
      () =>
        new NativeClient({
          accessKey: options.accessKey,
          url: options.url,
          timeout: options.timeout,
          maxRetries: options.maxRetries,
          cacheTtl: options.cache?.ttl,
          staleIfError: options.cache?.staleIfError,
          cacheWatch: options.cache?.watch,
          cacheSnapshot: options.cache?.snapshot,
        }),
    );
    this.secrets = new Secrets(this.#native);
  }

  /** Authenticates and unwraps the workspace key locally. Call once before use. */
  async init(): Promise<void> {
    await call(() => this.#native.init());
    if (this.#native.describe().offline) {
      process.emitWarning(
        'the Ductape server is unreachable: started from the cache snapshot (values are served within staleIfError)',
        'DuctapeOffline',
      );
    }
  }

  /** The audit trail (admin permission), newest first, filtered and paged. */
  audit(query: AuditQuery = {}): Promise<AuditPage> {
    return call(() => this.#native.audit(defined(query)) as Promise<AuditPage>);
  }

  /**
   * Rotates the workspace keys (unbound admin key): a new key generation, every value
   * re-encrypted under it, every remaining access key granted it, the old one retired.
   * Run it after deleting a leaked key. Resumable: call it again after an interruption.
   */
  rotateKey(): Promise<Rotation> {
    return call(() => this.#native.rotateKey() as Promise<Rotation>);
  }

  /** The server URL. */
  get url(): string {
    return this.#native.describe().url;
  }

  /** The access key's public id (never the key). */
  get accessKeyId(): string {
    return this.#native.describe().accessKeyId;
  }

  toJSON(): { url: string; accessKeyId: string } {
    const d = this.#native.describe();
    return { url: d.url, accessKeyId: d.accessKeyId };
  }

  [inspect.custom](): string {
    const d = this.#native.describe();
    return `Ductape { url: '${d.url}', accessKeyId: '${d.accessKeyId}', initialized: ${d.initialized} }`;
  }
}

export { Ductape };
