// The console's calls to its own server. Every request carries only the access key's
// bearer part; values go out sealed and come back sealed, opened by the core (WebAssembly).

import init, { Console, tokenReference } from './wasm/ductape_wasm.js';

export interface SecretRecord {
  _id: string;
  key: string;
  description: string | null;
  token_type: string | null;
  scope: string[];
  envs: string[];
  expires_at: number | null;
  createdAt: string;
  updatedAt: string;
  version: number;
  status: 'active' | 'revoked' | 'expired';
}

export interface AccessKeyInfo {
  id: string;
  name: string;
  permissions: string[];
  app: string | null;
  envs: string[];
  created_at?: string;
}

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
  keys?: string[];
}

export interface SecretVersion {
  version: number;
  createdAt: string;
  access_key_id: string | null;
  access_key_name: string | null;
  action: string | null;
  fields: string[];
  rollback_of?: number;
  status: 'active' | 'revoked' | 'expired';
  current: boolean;
}

export interface UsageEntry {
  app: string | null;
  env: string | null;
  last_access: string;
  reads: number;
  denied: number;
}

export interface AuditFilter {
  secret_key?: string;
  access_key_id?: string;
  app?: string;
  env?: string;
}

/** An error answer of the server, or one the core raised here: a code and the message. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

let ready: Promise<unknown> | null = null;

/** Loads the core once (the .wasm file next to this script). */
export function loadCore(): Promise<unknown> {
  return (ready ??= init());
}

/** The core's thrown errors carry `code` and `status`; anything else becomes one. */
export function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const err = e as { message?: string; code?: string; status?: number };
  return new ApiError(err?.message ?? String(e), err?.code ?? 'error', err?.status);
}

/** Calls the core: what it throws becomes an ApiError. */
function fromCore<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw asApiError(e);
  }
}

/** A signed-in session: the core's keys for this tab, and what the server said of the key. */
export class Session {
  private constructor(
    private readonly core: Console,
    readonly accessKey: AccessKeyInfo,
    readonly workspaceId: string,
  ) {}

  /** Reads the pasted key, asks the server for the session and unwraps its keys here. */
  static async signIn(pasted: string): Promise<Session> {
    await loadCore();
    const core = fromCore(() => new Console(pasted));
    let text: string;
    try {
      text = await openSession(core);
    } catch (e) {
      core.free();
      throw e;
    }
    const s = JSON.parse(text) as { access_key: AccessKeyInfo; workspace: { workspace_id: string } };
    return new Session(core, s.access_key, s.workspace.workspace_id);
  }

  /** Reads the session again: the keyring may have changed (a binding added, a rotation). */
  async refresh(): Promise<void> {
    await openSession(this.core);
  }

  signOut(): void {
    this.core.free();
  }

  can(permission: string): boolean {
    return this.accessKey.permissions.includes(permission) || this.accessKey.permissions.includes('admin');
  }

  /** Every secret's metadata, page after page of the server's listing. */
  async listSecrets(): Promise<SecretRecord[]> {
    const out: SecretRecord[] = [];
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams({ limit: '1000' });
      if (cursor) q.set('cursor', cursor);
      const page = JSON.parse(await this.call('GET', `/v1/secrets?${q}`)) as {
        secrets: SecretRecord[];
        next_cursor: string | null;
      };
      out.push(...page.secrets);
      cursor = page.next_cursor;
    } while (cursor);
    return out;
  }

  /** The value of `key` (or of its earlier `version`), opened here. */
  async reveal(key: string, version?: number): Promise<string> {
    const path = `/v1/secrets/${encodeURIComponent(key)}` + (version === undefined ? '' : `/versions/${version}`);
    const s = JSON.parse(await this.call('GET', path)) as { ciphertext: string; version: number };
    if (version !== undefined && s.version !== version) {
      throw new ApiError(
        `Asked for version ${version} of ${key} but the server answered with version ${s.version}`,
        'integrity',
      );
    }
    return fromCore(() => this.core.open(key, s.ciphertext));
  }

  /** Every kept version of `key`, newest first (who made it, what it changed; no values). */
  async versions(key: string): Promise<SecretVersion[]> {
    const out: SecretVersion[] = [];
    let cursor: number | null = null;
    do {
      const q = new URLSearchParams({ limit: '1000' });
      if (cursor !== null) q.set('cursor', String(cursor));
      const page = JSON.parse(await this.call('GET', `/v1/secrets/${encodeURIComponent(key)}/versions?${q}`)) as {
        versions: SecretVersion[];
        next_cursor: number | null;
      };
      out.push(...page.versions);
      cursor = page.next_cursor;
    } while (cursor !== null);
    return out;
  }

  /** Makes `version`'s value current again (if the secret is still at `record.version`).
   * The server copies the stored value when it is still sealed for the secret's readers;
   * otherwise (readers or key generation changed since) it is opened and sealed anew here. */
  async rollback(record: SecretRecord, version: number): Promise<SecretRecord> {
    const path = `/v1/secrets/${encodeURIComponent(record.key)}/rollback`;
    const headers = { 'If-Match': `"${record.version}"` };
    try {
      return JSON.parse(await this.call('POST', path, JSON.stringify({ version }), headers)) as SecretRecord;
    } catch (e) {
      if (asApiError(e).code !== 'keyring_changed') throw e;
    }
    const value = await this.reveal(record.key, version);
    return this.sealing(async () => {
      const ciphertext = fromCore(() => this.core.seal(record.key, value, record.scope, record.envs));
      const body = JSON.stringify({ version, ciphertext, expected_version: record.version });
      return JSON.parse(await this.call('POST', path, body, headers)) as SecretRecord;
    });
  }

  /** Creates a secret from the documented create arguments; the value is sealed here. */
  async create(args: Record<string, unknown>): Promise<SecretRecord> {
    return this.sealing(async () => {
      const body = fromCore(() => this.core.createBody(JSON.stringify(args)));
      return JSON.parse(await this.call('POST', '/v1/secrets', body)) as SecretRecord;
    });
  }

  /** Runs `f`, and once more with the session read again when the keyring changed since
   * sign-in (a binding added, a rotation): values are sealed for the keyring as it is. */
  private async sealing<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (asApiError(e).code !== 'keyring_changed') throw e;
      await this.refresh();
      return f();
    }
  }

  /** Changes metadata and/or the value (sealed here for the secret's readers after it). */
  async update(
    record: SecretRecord,
    change: { value?: string; description?: string | null; scope?: string[]; envs?: string[] },
  ): Promise<SecretRecord> {
    const body: Record<string, unknown> = {};
    if (change.description !== undefined) body.description = change.description;
    if (change.scope !== undefined) body.scope = change.scope;
    if (change.envs !== undefined) body.envs = change.envs;
    const readersChange = change.scope !== undefined || change.envs !== undefined;
    // A value is sealed to the secret's readers: new readers need it sealed anew.
    const value =
      change.value !== undefined || readersChange ? (change.value ?? (await this.reveal(record.key))) : null;
    const headers = { 'If-Match': `"${record.version}"` };
    return this.sealing(async () => {
      if (value !== null) {
        body.ciphertext = fromCore(() =>
          this.core.seal(record.key, value, change.scope ?? record.scope, change.envs ?? record.envs),
        );
      }
      return JSON.parse(
        await this.call('PATCH', `/v1/secrets/${encodeURIComponent(record.key)}`, JSON.stringify(body), headers),
      ) as SecretRecord;
    });
  }

  async lifecycle(key: string, action: 'revoke' | 'restore'): Promise<void> {
    await this.call('POST', `/v1/secrets/${encodeURIComponent(key)}/${action}`);
  }

  async remove(key: string): Promise<void> {
    await this.call('DELETE', `/v1/secrets/${encodeURIComponent(key)}`);
  }

  /** Which apps and environments read a secret, how often, and when last. */
  async usage(key: string): Promise<UsageEntry[]> {
    return JSON.parse(await this.call('GET', `/v1/secrets/${encodeURIComponent(key)}/usage`)) as UsageEntry[];
  }

  async accessKeys(): Promise<AccessKeyInfo[]> {
    return JSON.parse(await this.call('GET', '/v1/access-keys')) as AccessKeyInfo[];
  }

  /** A new key made here (its grant sealed by the core); the key text is shown once. */
  async createAccessKey(options: {
    name: string;
    permissions: string[];
    app: string | null;
    envs: string[];
  }, progress?: (seen: number, total: number) => void): Promise<{ key: string; info: AccessKeyInfo }> {
    // Grants are made for the keyring as it is now, not as it was at sign-in.
    await this.refresh();
    await this.prepareBinding(JSON.stringify(options), progress);
    const made = fromCore(() => this.core.newAccessKey(JSON.stringify(options)) as { key: string; body: string });
    const info = JSON.parse(await this.call('POST', '/v1/access-keys', made.body)) as AccessKeyInfo;
    return { key: made.key, info };
  }

  /** The first key of a binding: the binding registered (its key pair made here), then
   * every secret it may read wrapped to it page by page (the data keys opened and wrapped
   * here), then marked ready. Resumes a scan left half done. */
  private async prepareBinding(options: string, progress?: (seen: number, total: number) => void): Promise<void> {
    let state = this.bindingState(options);
    if (state.state === 'missing') {
      let refused: ApiError | null = null;
      try {
        await this.call('POST', '/v1/keyring/bindings', this.core.registerBindingBody(options));
      } catch (e) {
        refused = asApiError(e);
      }
      await this.refresh();
      state = this.bindingState(options);
      // A conflict with the binding now there: someone registered it meanwhile.
      if (refused && !(refused.code === 'conflict' && state.state !== 'missing')) throw refused;
    }
    if (state.state === 'ready') return;
    if (state.state === 'missing') throw new ApiError(`Binding ${state.id} was not registered`, 'protocol');
    const id = state.id as string;
    const path = `/v1/keyring/bindings/${id}`;
    let after: string | null = null;
    let seen = 0;
    let total = 0;
    do {
      const text = await this.call('POST', `${path}/pending`, JSON.stringify({ after }));
      const page = JSON.parse(text) as { scanned: number; next_after: string | null; total?: number };
      const bodies = fromCore(() => this.core.bindingWrapBodies(id, text));
      for (const body of bodies) await this.call('POST', `${path}/wraps`, body);
      total = page.total ?? total;
      seen += page.scanned;
      progress?.(Math.min(seen, Math.max(total, seen)), Math.max(total, seen));
      after = page.next_after;
    } while (after !== null);
    await this.call('POST', `${path}/ready`);
    await this.refresh();
  }

  private bindingState(options: string): { state: 'ready' | 'missing' | 'pending'; id?: string } {
    return fromCore(() => this.core.bindingState(options) as { state: 'ready' | 'missing' | 'pending'; id?: string });
  }

  async deleteAccessKey(id: string): Promise<void> {
    await this.call('DELETE', `/v1/access-keys/${encodeURIComponent(id)}`);
  }

  /** A page of the audit trail, newest first, from before event `before`. */
  async audit(filter: AuditFilter, before?: number): Promise<{ events: AuditEntry[]; next_before: number | null }> {
    const q = new URLSearchParams({ limit: '100' });
    for (const [k, v] of Object.entries(filter)) if (v) q.set(k, v);
    if (before !== undefined) q.set('before', String(before));
    return JSON.parse(await this.call('GET', `/v1/audit?${q}`));
  }

  private call(method: string, path: string, body?: string, headers?: Record<string, string>): Promise<string> {
    return call(this.core, method, path, body, headers);
  }
}

/** `$Token{KEY}` as the core writes it (the core is loaded: this is used once signed in). */
export function tokenOf(key: string): string {
  return tokenReference(key);
}

/** Reads `GET /v1/session` and opens its keys in the core; the answer's text. */
async function openSession(core: Console): Promise<string> {
  const text = await call(core, 'GET', '/v1/session');
  fromCore(() => core.openSession(text));
  return text;
}

async function call(
  core: Console,
  method: string,
  path: string,
  body?: string,
  extra?: Record<string, string>,
): Promise<string> {
  const headers: Record<string, string> = { ...(core.requestHeaders() as Record<string, string>), ...extra };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp: Response;
  try {
    resp = await fetch(path, { method, headers, body, credentials: 'omit', cache: 'no-store' });
  } catch {
    throw new ApiError('The server cannot be reached', 'unavailable');
  }
  const text = await resp.text();
  if (!resp.ok) {
    let message = `The server answered ${resp.status}`;
    let code = 'error';
    try {
      const e = JSON.parse(text) as { message?: string; code?: string; error?: { message?: string; code?: string } };
      message = e.message ?? e.error?.message ?? message;
      code = e.code ?? e.error?.code ?? code;
    } catch {
      // Not JSON: keep the status line.
    }
    throw new ApiError(message, code, resp.status);
  }
  return text;
}
