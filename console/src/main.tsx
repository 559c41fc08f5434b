// The console's screens: sign-in, then the secrets of the workspace as far as the access
// key may see them. Values are opened in this page by the core (WebAssembly) and shown for
// a few seconds only; the key lives in this tab's memory (sessionStorage only if asked).

import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import './style.css';
import { ApiError, asApiError, SecretRecord, Session, tokenOf } from './api';

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
  return <Secrets session={session} onSignOut={signOut} />;
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
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
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

function Secrets({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const [secrets, setSecrets] = useState<SecretRecord[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [search, setSearch] = useState('');
  const [app, setApp] = useState('');
  const [env, setEnv] = useState('');
  const [status, setStatus] = useState<StatusFilter>('all');
  const [page, setPage] = useState(0);
  const [editing, setEditing] = useState<SecretRecord | 'new' | null>(null);

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

  const act = async (what: () => Promise<unknown>, done: string) => {
    try {
      await what();
      setNotice(done);
      setError(null);
      await load();
    } catch (e) {
      setError(asApiError(e).message);
    }
  };

  const ak = session.accessKey;
  const bound = ak.app !== null || ak.envs.length > 0;
  return (
    <div class="shell">
      <header class="top">
        <strong>Ductape Secrets</strong>
        <span class="muted who" data-testid="who">
          {ak.name} · {ak.permissions.join(', ')}
          {bound && ` · bound to app ${ak.app ?? '*'} / env ${ak.envs.join(',') || '*'}`}
        </span>
        <button class="link" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main>
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
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
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
        {secrets === null ? (
          <p class="muted">Loading…</p>
        ) : (
          <>
            <table class="secrets">
              <thead>
                <tr>
                  <th>Key</th>
                  <th>Description</th>
                  <th>Type</th>
                  <th>Scope</th>
                  <th>Envs</th>
                  <th>Status</th>
                  <th>Updated</th>
                  <th>Version</th>
                  <th>
                    <span class="sr">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map((s) => (
                  <Row
                    key={s._id}
                    s={s}
                    now={now}
                    session={session}
                    onEdit={() => setEditing(s)}
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
      </main>
    </div>
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
        {session.can('write') && (
          <>
            <button class="link" onClick={props.onEdit}>
              Edit
            </button>
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
        {session.can('delete') && (
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
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
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

render(<App />, document.getElementById('app')!);
