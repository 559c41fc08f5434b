// The console's screens: sign-in, then the secrets of the workspace as far as the access
// key may see them. Values are opened in this page by the core (WebAssembly) and shown for
// a few seconds only; the key lives in this tab's memory (sessionStorage only if asked).

import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import './style.css';
import {
  AccessKeyInfo,
  ApiError,
  asApiError,
  AuditEntry,
  AuditFilter,
  SecretRecord,
  SecretVersion,
  Session,
  tokenOf,
  UsageEntry,
} from './api';

/** How long a revealed value stays on screen. */
const REVEAL_MS = 8000;
/** Rows rendered at once; the rest are a page away (10,000 secrets stay smooth). */
const PAGE_ROWS = 100;
const KEPT = 'ductape.console.key';

function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [restoring, setRestoring] = useState(() => sessionStorage.getItem(KEPT) !== null);

  useEffect(() => {
    const kept = sessionStorage.getItem(KEPT);
    if (kept === null) return;
    Session.signIn(kept)
      .then(setSession)
      .catch(() => sessionStorage.removeItem(KEPT))
      .finally(() => setRestoring(false));
  }, []);

  const signOut = () => {
    sessionStorage.removeItem(KEPT);
    session?.signOut();
    setSession(null);
  };

  if (restoring) return <main class="center">Signing in…</main>;
  if (!session) return <SignIn onSignedIn={setSession} />;
  return <Workspace session={session} onSignOut={signOut} />;
}

type Tab = 'secrets' | 'keys' | 'audit';

function Workspace({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const [tab, setTab] = useState<Tab>('secrets');
  const ak = session.accessKey;
  const bound = ak.app !== null || ak.envs.length > 0;
  const tabs: [Tab, string][] = [['secrets', 'Secrets']];
  if (session.can('admin')) tabs.push(['keys', 'Access keys'], ['audit', 'Audit']);
  return (
    <div class="shell">
      <header class="top">
        <strong>Ductape Secrets</strong>
        <nav class="tabs" aria-label="Sections">
          {tabs.map(([id, label]) => (
            <button class={`tab ${tab === id ? 'on' : ''}`} aria-current={tab === id ? 'page' : undefined} onClick={() => setTab(id)}>
              {label}
            </button>
          ))}
        </nav>
        <span class="muted who" data-testid="who">
          {ak.name} · {ak.permissions.join(', ')}
          {bound && ` · bound to app ${ak.app ?? '*'} / env ${ak.envs.join(',') || '*'}`}
        </span>
        <button class="link" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main>
        {tab === 'secrets' && <Secrets session={session} />}
        {tab === 'keys' && <AccessKeys session={session} />}
        {tab === 'audit' && <Audit session={session} />}
      </main>
    </div>
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [key, setKey] = useState('');
  const [keep, setKeep] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const s = await Session.signIn(key);
      if (keep) sessionStorage.setItem(KEPT, key.trim());
      setKey('');
      onSignedIn(s);
    } catch (err) {
      setError(asApiError(err).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="center">
      <form class="card signin" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Ductape Secrets</h1>
        <p class="muted">
          Paste an access key. It stays in this tab: only its public part is sent, and values are decrypted here.
        </p>
        <label for="access-key">Access key</label>
        <input
          id="access-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          placeholder="dtpk_…"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          required
        />
        <label class="check">
          <input type="checkbox" checked={keep} onChange={(e) => setKeep((e.target as HTMLInputElement).checked)} />
          Keep me signed in until this tab closes
        </label>
        <Alert message={error} />
        <button type="submit" disabled={busy || key.trim() === ''}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

type StatusFilter = 'all' | 'active' | 'revoked' | 'expired' | 'expiring';

/** Within a week of its expiry. */
function expiringSoon(s: SecretRecord, now: number): boolean {
  return s.status === 'active' && s.expires_at !== null && s.expires_at - now <= 7 * 86400;
}

function Secrets({ session }: { session: Session }) {
  const [secrets, setSecrets] = useState<SecretRecord[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [search, setSearch] = useState('');
  const [app, setApp] = useState('');
  const [env, setEnv] = useState('');
  const [status, setStatus] = useState<StatusFilter>('all');
  const [page, setPage] = useState(0);
  const [editing, setEditing] = useState<SecretRecord | 'new' | null>(null);
  const [usageOf, setUsageOf] = useState<string | null>(null);
  const [historyOf, setHistoryOf] = useState<string | null>(null);

  const load = async () => {
    try {
      setSecrets(await session.listSecrets());
      setError(null);
    } catch (e) {
      setError(asApiError(e).message);
    }
  };
  useEffect(() => {
    void load();
  }, [session]);

  const now = Math.floor(Date.now() / 1000);
  const shown = useMemo(() => {
    const q = search.trim().toLowerCase();
    return (secrets ?? []).filter(
      (s) =>
        (q === '' || s.key.toLowerCase().includes(q) || (s.description ?? '').toLowerCase().includes(q)) &&
        (app === '' || s.scope.length === 0 || s.scope.includes(app)) &&
        (env === '' || s.envs.length === 0 || s.envs.includes(env)) &&
        (status === 'all' || (status === 'expiring' ? expiringSoon(s, now) : s.status === status)),
    );
  }, [secrets, search, app, env, status]);
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_ROWS));
  const current = Math.min(page, pages - 1);
  const rows = shown.slice(current * PAGE_ROWS, (current + 1) * PAGE_ROWS);
  const apps = useMemo(() => [...new Set((secrets ?? []).flatMap((s) => s.scope))].sort(), [secrets]);
  const envs = useMemo(() => [...new Set((secrets ?? []).flatMap((s) => s.envs))].sort(), [secrets]);

  // The notice comes once the list shows the change (so what it says is on screen).
  const act = async (what: () => Promise<unknown>, done: string) => {
    try {
      await what();
      setError(null);
      await load();
      setNotice(done);
    } catch (e) {
      setError(asApiError(e).message);
    }
  };

  return (
    <>
        <div class="toolbar" role="search">
          <input
            aria-label="Search secrets"
            placeholder="Search key or description"
            value={search}
            onInput={(e) => {
              setSearch((e.target as HTMLInputElement).value);
              setPage(0);
            }}
          />
          <select aria-label="App" value={app} onChange={(e) => setApp((e.target as HTMLSelectElement).value)}>
            <option value="">All apps</option>
            {apps.map((a) => (
              <option value={a}>{a}</option>
            ))}
          </select>
          <select aria-label="Environment" value={env} onChange={(e) => setEnv((e.target as HTMLSelectElement).value)}>
            <option value="">All environments</option>
            {envs.map((v) => (
              <option value={v}>{v}</option>
            ))}
          </select>
          <select
            aria-label="Status"
            value={status}
            onChange={(e) => setStatus((e.target as HTMLSelectElement).value as StatusFilter)}
          >
            <option value="all">Any status</option>
            <option value="active">Active</option>
            <option value="expiring">Expiring soon</option>
            <option value="expired">Expired</option>
            <option value="revoked">Revoked</option>
          </select>
          {session.can('write') && (
            <button onClick={() => setEditing('new')} data-testid="new-secret">
              New secret
            </button>
          )}
        </div>
        <Alert message={error} />
        {notice && (
          <p class="notice" role="status">
            {notice}
          </p>
        )}
        {editing && (
          <SecretForm
            session={session}
            record={editing === 'new' ? null : editing}
            onDone={(message) => {
              setEditing(null);
              if (message) void act(async () => undefined, message);
            }}
          />
        )}
        {usageOf && <Usage session={session} secret={usageOf} onClose={() => setUsageOf(null)} />}
        {historyOf && secrets?.some((s) => s.key === historyOf) && (
          <History
            session={session}
            record={secrets.find((s) => s.key === historyOf) as SecretRecord}
            onClose={() => setHistoryOf(null)}
            act={act}
          />
        )}
        {secrets === null ? (
          <p class="muted">Loading…</p>
        ) : (
          <>
            <table class="secrets">
              <Head columns={['Key', 'Description', 'Type', 'Scope', 'Envs', 'Status', 'Updated', 'Version']} />
              <tbody>
                {rows.map((s) => (
                  <Row
                    key={s._id}
                    s={s}
                    now={now}
                    session={session}
                    onEdit={() => setEditing(s)}
                    onUsage={() => setUsageOf(s.key)}
                    onHistory={() => setHistoryOf(s.key)}
                    act={act}
                    onError={setError}
                    onNotice={setNotice}
                  />
                ))}
              </tbody>
            </table>
            {shown.length === 0 && <p class="muted">No secrets match.</p>}
            <nav class="pager" aria-label="Pages">
              <span class="muted" data-testid="count">
                {shown.length} of {secrets.length} secrets
              </span>
              <button class="link" disabled={current === 0} onClick={() => setPage(current - 1)}>
                Previous
              </button>
              <span>
                Page {current + 1} of {pages}
              </span>
              <button class="link" disabled={current >= pages - 1} onClick={() => setPage(current + 1)}>
                Next
              </button>
            </nav>
          </>
        )}
    </>
  );
}

function Badge({ s, now }: { s: SecretRecord; now: number }) {
  if (expiringSoon(s, now)) return <span class="badge warn">expiring soon</span>;
  return <span class={`badge ${s.status}`}>{s.status}</span>;
}

function Row(props: {
  s: SecretRecord;
  now: number;
  session: Session;
  onEdit: () => void;
  onUsage: () => void;
  onHistory: () => void;
  act: (what: () => Promise<unknown>, done: string) => Promise<void>;
  onError: (m: string) => void;
  onNotice: (m: string) => void;
}) {
  const { s, session, act } = props;
  const [value, setValue] = useState<string | null>(null);
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);

  const reveal = async () => {
    try {
      setValue(await session.reveal(s.key));
      window.clearTimeout(timer.current);
      timer.current = window.setTimeout(() => setValue(null), REVEAL_MS);
    } catch (e) {
      props.onError(asApiError(e).message);
    }
  };
  const copy = async (text: string, what: string) => {
    try {
      await navigator.clipboard.writeText(text);
      props.onNotice(`Copied ${what}`);
    } catch {
      props.onError('The browser refused the clipboard');
    }
  };
  const confirmed = (question: string) => window.confirm(question);

  return (
    <tr data-key={s.key}>
      <td class="mono">{s.key}</td>
      <td>{s.description ?? ''}</td>
      <td>{s.token_type ?? ''}</td>
      <td>{s.scope.join(', ') || <span class="muted">all apps</span>}</td>
      <td>{s.envs.join(', ') || <span class="muted">all</span>}</td>
      <td>
        <Badge s={s} now={props.now} />
      </td>
      <td class="when" title={s.updatedAt}>
        {s.updatedAt.slice(0, 16).replace('T', ' ')}
      </td>
      <td>{s.version}</td>
      <td class="actions">
        {value === null ? (
          session.can('read') &&
          s.status !== 'revoked' && (
            <button class="link" onClick={reveal}>
              Reveal
            </button>
          )
        ) : (
          <span class="value mono" data-testid="value">
            {value}
          </span>
        )}
        {value !== null && (
          <button class="link" onClick={() => copy(value, 'the value')}>
            Copy value
          </button>
        )}
        <button class="link" onClick={() => copy(tokenOf(s.key), tokenOf(s.key))}>
          Copy token
        </button>
        <button class="link" onClick={props.onUsage}>
          Usage
        </button>
        <button class="link" onClick={props.onHistory}>
          History
        </button>
        {session.can('write') && (
          <button class="link" onClick={props.onEdit}>
            Edit
          </button>
        )}
        {session.can('revoke') && (
          <>
            {s.status === 'revoked' ? (
              <button class="link" onClick={() => act(() => session.lifecycle(s.key, 'restore'), `Restored ${s.key}`)}>
                Restore
              </button>
            ) : (
              <button
                class="link"
                onClick={() =>
                  confirmed(`Revoke ${s.key}? Its value can no longer be read until it is restored.`) &&
                  act(() => session.lifecycle(s.key, 'revoke'), `Revoked ${s.key}`)
                }
              >
                Revoke
              </button>
            )}
          </>
        )}
        {session.can('write') && (
          <button
            class="link danger"
            onClick={() =>
              confirmed(`Delete ${s.key}? It moves to the server's trash.`) &&
              act(() => session.remove(s.key), `Deleted ${s.key}`)
            }
          >
            Delete
          </button>
        )}
      </td>
    </tr>
  );
}

const list = (text: string) =>
  text
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');

function SecretForm(props: { session: Session; record: SecretRecord | null; onDone: (message?: string) => void }) {
  const r = props.record;
  const [key, setKey] = useState(r?.key ?? '');
  const [value, setValue] = useState('');
  const [description, setDescription] = useState(r?.description ?? '');
  const [scope, setScope] = useState(r?.scope.join(', ') ?? '');
  const [envs, setEnvs] = useState(r?.envs.join(', ') ?? '');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const first = useRef<HTMLInputElement>(null);
  useEffect(() => first.current?.focus(), []);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (r === null) {
        const args: Record<string, unknown> = { key, value, scope: list(scope), envs: list(envs) };
        if (description !== '') args.description = description;
        await props.session.create(args);
        props.onDone(`Created ${key}`);
      } else {
        await props.session.update(r, {
          value: value === '' ? undefined : value,
          description: description === (r.description ?? '') ? undefined : description || null,
          scope: scope === r.scope.join(', ') ? undefined : list(scope),
          envs: envs === r.envs.join(', ') ? undefined : list(envs),
        });
        props.onDone(`Saved ${r.key}`);
      }
    } catch (err) {
      const e = err instanceof ApiError ? err : asApiError(err);
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card form" onSubmit={submit} aria-label={r ? `Edit ${r.key}` : 'New secret'}>
      <h2>{r ? `Edit ${r.key}` : 'New secret'}</h2>
      <label for="f-key">Key</label>
      <input id="f-key" ref={first} value={key} disabled={r !== null} onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
      <label for="f-value">{r ? 'New value (leave empty to keep it)' : 'Value'}</label>
      <input
        id="f-value"
        type="password"
        autocomplete="off"
        value={value}
        onInput={(e) => setValue((e.target as HTMLInputElement).value)}
      />
      <label for="f-description">Description</label>
      <input id="f-description" value={description} onInput={(e) => setDescription((e.target as HTMLInputElement).value)} />
      <label for="f-scope">Apps (scope, comma-separated; empty: all)</label>
      <input id="f-scope" value={scope} onInput={(e) => setScope((e.target as HTMLInputElement).value)} />
      <label for="f-envs">Environments (comma-separated; empty: all)</label>
      <input id="f-envs" value={envs} onInput={(e) => setEnvs((e.target as HTMLInputElement).value)} />
      <Alert message={error} />
      <div class="buttons">
        <button type="submit" disabled={busy}>
          {r ? 'Save' : 'Create'}
        </button>
        <button type="button" class="link" onClick={() => props.onDone()}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** A secret's kept versions, newest first: who made each and what it changed (names of
 * fields, never values); an earlier value revealed here on click, and rolled back to. */
function History(props: {
  session: Session;
  record: SecretRecord;
  onClose: () => void;
  act: (what: () => Promise<unknown>, done: string) => Promise<void>;
}) {
  const { session, record } = props;
  const [versions, setVersions] = useState<SecretVersion[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [shown, setShown] = useState<{ version: number; value: string } | null>(null);
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  useEffect(() => {
    setVersions(null);
    session.versions(record.key).then(setVersions, (e) => setError(asApiError(e).message));
  }, [session, record.key, record.version]);

  const reveal = async (version: number) => {
    try {
      setShown({ version, value: await session.reveal(record.key, version) });
      window.clearTimeout(timer.current);
      timer.current = window.setTimeout(() => setShown(null), REVEAL_MS);
    } catch (e) {
      setError(asApiError(e).message);
    }
  };
  const rollback = (version: number) =>
    window.confirm(`Make version ${version}'s value of ${record.key} current again? It becomes version ${record.version + 1}.`) &&
    props.act(() => session.rollback(record, version), `Rolled ${record.key} back to version ${version}`);

  return (
    <section class="card history" aria-label={`History of ${record.key}`}>
      <div class="buttons">
        <h2>History of {record.key}</h2>
        <button class="link" onClick={props.onClose}>
          Close
        </button>
      </div>
      <Alert message={error} />
      {versions === null ? (
        <p class="muted">Loading…</p>
      ) : (
        <table class="secrets">
          <Head columns={['Version', 'When', 'By', 'Change', 'Status']} />
          <tbody>
            {versions.map((v) => (
              <tr data-version={v.version}>
                <td>
                  {v.version} {v.current && <span class="badge active">current</span>}
                </td>
                <td class="when" title={v.createdAt}>
                  {v.createdAt.slice(0, 16).replace('T', ' ')}
                </td>
                <td>{v.access_key_name ?? v.access_key_id ?? <span class="muted">unknown</span>}</td>
                <td>
                  {v.action ?? ''}
                  {v.rollback_of !== undefined && ` of version ${v.rollback_of}`}
                  {v.fields.length > 0 && <span class="muted"> ({v.fields.join(', ')})</span>}
                </td>
                <td>
                  <span class={`badge ${v.status}`}>{v.status}</span>
                </td>
                <td class="actions">
                  {shown?.version === v.version ? (
                    <span class="value mono" data-testid="version-value">
                      {shown.value}
                    </span>
                  ) : (
                    session.can('read') && (
                      <button class="link" onClick={() => reveal(v.version)}>
                        Reveal
                      </button>
                    )
                  )}
                  {!v.current && session.can('write') && (
                    <button class="link" onClick={() => rollback(v.version)}>
                      Roll back
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** Days the usage chart covers. */
const USAGE_DAYS = 14;
const READ_ACTIONS = ['read', 'resolve', 'check'];

/** A secret's usage: per app and environment, reads and denials, and (for an admin, from
 * the audit trail) a bar per day of the last two weeks. */
function Usage({ session, secret, onClose }: { session: Session; secret: string; onClose: () => void }) {
  const [rows, setRows] = useState<UsageEntry[] | null>(null);
  const [events, setEvents] = useState<AuditEntry[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setRows(null);
    setEvents([]);
    session.usage(secret).then(setRows, (e) => setError(asApiError(e).message));
    if (!session.can('admin')) return;
    void (async () => {
      // At most 10 pages of 100 events: the chart shows recent use, not the whole trail.
      const since = Date.now() - USAGE_DAYS * 86_400_000;
      let before: number | undefined;
      const got: AuditEntry[] = [];
      for (let i = 0; i < 10; i++) {
        const page = await session.audit({ secret_key: secret }, before);
        got.push(...page.events.filter((e) => READ_ACTIONS.includes(e.action)));
        const oldest = page.events.at(-1);
        if (page.next_before === null || !oldest || Date.parse(oldest.at) < since) break;
        before = page.next_before;
      }
      setEvents(got);
    })().catch((e) => setError(asApiError(e).message));
  }, [session, secret]);

  const today = Math.floor(Date.now() / 86_400_000);
  const series = (u: UsageEntry) => {
    const days = Array.from({ length: USAGE_DAYS }, () => ({ reads: 0, denied: 0 }));
    for (const e of events) {
      if (e.app !== u.app || e.env !== u.env) continue;
      const ago = today - Math.floor(Date.parse(e.at) / 86_400_000);
      if (ago < 0 || ago >= USAGE_DAYS) continue;
      const d = days[USAGE_DAYS - 1 - ago];
      if (e.allowed) d.reads++;
      else d.denied++;
    }
    return days;
  };
  return (
    <section class="card usage" aria-label={`Usage of ${secret}`}>
      <div class="buttons">
        <h2>Usage of {secret}</h2>
        <button class="link" onClick={onClose}>
          Close
        </button>
      </div>
      <Alert message={error} />
      {rows?.length === 0 && <p class="muted">Not read yet.</p>}
      <table class="secrets">
        <thead>
          <tr>
            <th>App</th>
            <th>Env</th>
            <th>Reads</th>
            <th>Denied</th>
            <th>Last access</th>
            {session.can('admin') && <th>Last {USAGE_DAYS} days</th>}
          </tr>
        </thead>
        <tbody>
          {(rows ?? []).map((u) => (
            <tr data-usage={`${u.app ?? '-'}/${u.env ?? '-'}`}>
              <td>{u.app ?? <span class="muted">none</span>}</td>
              <td>{u.env ?? <span class="muted">none</span>}</td>
              <td>{u.reads}</td>
              <td>{u.denied}</td>
              <td class="when">{u.last_access.slice(0, 16).replace('T', ' ')}</td>
              {session.can('admin') && (
                <td>
                  <Bars days={series(u)} />
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** Reads (up) and denials (down) per day, as an SVG drawn here: no chart library, no
 * inline style (the page's policy forbids it). */
function Bars({ days }: { days: { reads: number; denied: number }[] }) {
  const max = Math.max(1, ...days.map((d) => Math.max(d.reads, d.denied)));
  const w = 8;
  const h = 24;
  const total = days.reduce((n, d) => n + d.reads, 0);
  const refused = days.reduce((n, d) => n + d.denied, 0);
  return (
    <svg
      class="bars"
      width={days.length * (w + 2)}
      height={h * 2 + 1}
      role="img"
      aria-label={`${total} reads and ${refused} denials in the last ${days.length} days`}
    >
      {days.map((d, i) => (
        <g>
          <rect class="read" x={i * (w + 2)} y={h - (d.reads / max) * h} width={w} height={(d.reads / max) * h} />
          <rect class="denied" x={i * (w + 2)} y={h + 1} width={w} height={(d.denied / max) * h} />
        </g>
      ))}
      <line class="axis" x1="0" x2={days.length * (w + 2)} y1={h + 0.5} y2={h + 0.5} />
    </svg>
  );
}

const PERMISSIONS = ['list', 'read', 'write', 'revoke', 'admin'];

function AccessKeys({ session }: { session: Session }) {
  const [keys, setKeys] = useState<AccessKeyInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [made, setMade] = useState<{ key: string; info: AccessKeyInfo } | null>(null);
  const [name, setName] = useState('');
  const [perms, setPerms] = useState<string[]>(['list', 'read']);
  const [app, setApp] = useState('');
  const [envs, setEnvs] = useState('');
  const [busy, setBusy] = useState(false);
  const [wrapped, setWrapped] = useState<{ seen: number; total: number } | null>(null);

  const load = async () => {
    try {
      setKeys(await session.accessKeys());
    } catch (e) {
      setError(asApiError(e).message);
    }
  };
  useEffect(() => {
    void load();
  }, [session]);

  const create = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const options = { name, permissions: perms, app: app.trim() || null, envs: list(envs) };
      setMade(await session.createAccessKey(options, (seen, total) => setWrapped({ seen, total })));
      setName('');
      await load();
    } catch (err) {
      setError(asApiError(err).message);
    } finally {
      setBusy(false);
      setWrapped(null);
    }
  };
  const remove = async (k: AccessKeyInfo) => {
    if (!window.confirm(`Delete access key ${k.name} (${k.id})? Whatever uses it stops working.`)) return;
    try {
      await session.deleteAccessKey(k.id);
      await load();
    } catch (err) {
      setError(asApiError(err).message);
    }
  };

  return (
    <>
      <form class="card form" onSubmit={create} aria-label="New access key">
        <h2>New access key</h2>
        <label for="k-name">Name</label>
        <input id="k-name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <fieldset class="perms">
          <legend>Permissions</legend>
          {PERMISSIONS.map((p) => (
            <label class="check">
              <input
                type="checkbox"
                name={`perm-${p}`}
                checked={perms.includes(p)}
                onChange={(e) =>
                  setPerms((e.target as HTMLInputElement).checked ? [...perms, p] : perms.filter((x) => x !== p))
                }
              />
              {p}
            </label>
          ))}
        </fieldset>
        <label for="k-app">Bound to app (empty: every app)</label>
        <input id="k-app" value={app} onInput={(e) => setApp((e.target as HTMLInputElement).value)} />
        <label for="k-envs">Bound to environments (comma-separated; empty: all)</label>
        <input id="k-envs" value={envs} onInput={(e) => setEnvs((e.target as HTMLInputElement).value)} />
        <p class="muted">
          The first key of an app and environments makes their binding: every secret it may read is then wrapped to
          it here, in this page.
        </p>
        {wrapped && (
          <p role="status" data-testid="wrapping">
            Wrapping secrets to the new binding: {wrapped.seen} of {wrapped.total} looked at
            <progress max={wrapped.total} value={wrapped.seen} />
          </p>
        )}
        <Alert message={error} />
        <div class="buttons">
          <button type="submit" disabled={busy}>
            Create key
          </button>
        </div>
      </form>
      {made && (
        <div class="card made" role="status">
          <p>
            <strong>{made.info.name}</strong> was created. Copy the key now: it is shown only this once.
          </p>
          <code class="mono value" data-testid="new-key">
            {made.key}
          </code>
          <div class="buttons">
            <button onClick={() => navigator.clipboard.writeText(made.key)}>Copy key</button>
            <button class="link" onClick={() => setMade(null)}>
              Done
            </button>
          </div>
        </div>
      )}
      <table class="secrets">
        <Head columns={['Name', 'Id', 'Permissions', 'App', 'Envs', 'Created']} />
        <tbody>
          {(keys ?? []).map((k) => (
            <tr data-key-id={k.id}>
              <td>{k.name}</td>
              <td class="mono">{k.id}</td>
              <td>{k.permissions.join(', ')}</td>
              <td>{k.app ?? <span class="muted">all</span>}</td>
              <td>{k.envs.join(', ') || <span class="muted">all</span>}</td>
              <td class="when">{(k.created_at ?? '').slice(0, 16).replace('T', ' ')}</td>
              <td class="actions">
                {k.id !== session.accessKey.id && (
                  <button class="link danger" onClick={() => remove(k)}>
                    Delete
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

function Audit({ session }: { session: Session }) {
  const [filter, setFilter] = useState<AuditFilter>({});
  const [events, setEvents] = useState<AuditEntry[]>([]);
  const [next, setNext] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = async (before?: number) => {
    try {
      const page = await session.audit(filter, before);
      setEvents(before === undefined ? page.events : [...events, ...page.events]);
      setNext(page.next_before);
      setError(null);
    } catch (e) {
      setError(asApiError(e).message);
    }
  };
  useEffect(() => {
    void load();
  }, [session, filter.secret_key, filter.access_key_id, filter.app, filter.env]);

  const field = (name: keyof AuditFilter, label: string) => (
    <input
      aria-label={label}
      placeholder={label}
      value={filter[name] ?? ''}
      onChange={(e) => setFilter({ ...filter, [name]: (e.target as HTMLInputElement).value.trim() || undefined })}
    />
  );
  return (
    <>
      <div class="toolbar" role="search">
        {field('secret_key', 'Secret key')}
        {field('access_key_id', 'Access key id')}
        {field('app', 'App')}
        {field('env', 'Environment')}
      </div>
      <Alert message={error} />
      <ol class="timeline" aria-label="Audit events, newest first">
        {events.map((e) => (
          <li class={e.allowed ? '' : 'denied'} data-action={e.action}>
            <span class="when mono">{e.at.replace('T', ' ').slice(0, 19)}</span>
            <span class={`badge ${e.allowed ? 'active' : 'revoked'}`}>{e.allowed ? 'allowed' : 'denied'}</span>
            <strong>{e.action}</strong>
            <span class="mono">{e.keys && e.keys.length > 0 ? e.keys.join(', ') : e.secret_key}</span>
            <span class="muted">
              by {e.access_key_id}
              {e.app && ` · app ${e.app}`}
              {e.env && ` · env ${e.env}`}
              {e.detail && ` · ${e.detail}`}
            </span>
            {e.reason && <span class="error">{e.reason}</span>}
          </li>
        ))}
      </ol>
      {events.length === 0 && <p class="muted">No events match.</p>}
      {next !== null && (
        <button class="link" onClick={() => load(next)}>
          Older events
        </button>
      )}
    </>
  );
}

/** An error in the words of the server or the core. */
function Alert({ message }: { message: string | null }) {
  return message ? (
    <p class="error" role="alert">
      {message}
    </p>
  ) : null;
}

/** A table's header row, with a last column for the row's actions. */
function Head({ columns }: { columns: string[] }) {
  return (
    <thead>
      <tr>
        {columns.map((c) => (
          <th>{c}</th>
        ))}
        <th>
          <span class="sr">Actions</span>
        </th>
      </tr>
    </thead>
  );
}

render(<App />, document.getElementById('app')!);
