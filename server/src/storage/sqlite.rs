//! SQLite backend: WAL; one writer connection behind a mutex (SQLite has one writer
//! anyway) and a pool of reader connections beside it (WAL readers never wait for the
//! writer), all blocking work off the async threads.
//!
//! Durability: every change to secrets, keys or the workspace is fsynced before it is
//! answered (it survives power loss). Commits themselves run without an fsync and the WAL
//! file is then fsynced by [`WalSync`]: changes committed while an fsync is under way share
//! the next one (group commit), so the writer is never held for the length of an fsync.
//! Audit events of reads commit before the ciphertext leaves, so they survive a crash of
//! the server process; with [`AuditSync::Grouped`] (the default) a background thread
//! fsyncs them within [`GROUP_WINDOW`], so a power loss can drop at most that window's
//! newest read events; with [`AuditSync::EveryRead`] a read waits for its fsync as a change
//! does. The same thread checkpoints the WAL into the database file (passively: readers
//! and the writer never wait for it).

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::journal::{AuditJournal, MAX_PENDING};
use super::read_cache::ReadCache;
use super::{
    check_sealed, is_last_admin, last_admin_key, name_taken_again, no_such_access_key,
    not_in_trash, read_and_record, reseals, stored_keyring, AuditEvent, Change, ChangeRow, Check,
    Deletion, Inserted, KeyringChange, Modify, ReadAnswers, ReadRule, Retention, Storage,
    StoredAccessKey, StoredSecret, Workspace,
};
use crate::error::ApiError;
use crate::retrying::Retrying;
use ductape::audit::GENESIS;
use ductape::crypto::Keyring;
use ductape::wire::{AuditEntry, AuditQuery, Permission};
use ductape::{ErrorCode, SecretKey, TokenType};

/// The migrations, in order; `PRAGMA user_version` records how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_audit_chain.sql"),
    include_str!("../../migrations/sqlite/0003_keyring.sql"),
    include_str!("../../migrations/sqlite/0004_history.sql"),
    include_str!("../../migrations/sqlite/0005_changes.sql"),
    include_str!("../../migrations/sqlite/0006_batch_reads.sql"),
    include_str!("../../migrations/sqlite/0007_secrets_generation.sql"),
    include_str!("../../migrations/sqlite/0008_audit_walks_by_id.sql"),
    include_str!("../../migrations/sqlite/0009_audit_journal.sql"),
    include_str!("../../migrations/sqlite/0010_audit_journal_shards.sql"),
];

/// The longest a read's audit event waits for its fsync in [`AuditSync::Grouped`] mode.
pub const GROUP_WINDOW: Duration = Duration::from_millis(10);

/// The most audit events the in-memory (`--dev`) database keeps; older ones are dropped.
pub const DEV_AUDIT_MAX: i64 = 100_000;

/// How read events reach the disk (`ductape server --audit-sync`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditSync {
    /// Committed before the ciphertext leaves; fsynced within [`GROUP_WINDOW`], shared by
    /// every read in that window.
    #[default]
    Grouped,
    /// Committed and fsynced before the ciphertext leaves, one fsync per read.
    EveryRead,
}

#[derive(Clone)]
pub struct SqliteStorage {
    writer: Arc<Mutex<Connection>>,
    /// WAL readers (file databases; an in-memory database reads through the writer).
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
    /// Makes commits durable, in groups.
    wal: Arc<WalSync>,
    /// Read events on their way to the [`AuditCommitter`].
    audit: std::sync::mpsc::Sender<PendingEvents>,
    /// In memory (no fsync to wait for): when the writer is free, a read commits its events
    /// itself, sparing two hand-offs between threads. (A file database in
    /// [`AuditSync::Grouped`] mode appends them to its journal instead.)
    commit_inline: bool,
    audit_cap: Option<i64>,
    /// Reads on their way to the audit trail right now.
    auditing: Arc<AtomicUsize>,
    /// With [`AuditSync::Grouped`] on a file: where read events go first.
    journal: Option<Arc<AuditJournal>>,
    /// Secrets read, served again while the database's generation is unchanged.
    read_cache: Arc<ReadCache>,
}

/// Counts a read on its way to the audit trail while it lives.
struct Busy<'a> {
    count: &'a AtomicUsize,
    /// No other read was on its way.
    alone: bool,
}

impl<'a> Busy<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let before = count.fetch_add(1, Ordering::AcqRel);
        Busy {
            count,
            alone: before == 0,
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub fn open(path: &Path) -> Result<Self, String> {
        Self::open_with(path, AuditSync::default())
    }

    /// [`SqliteStorage::open`] with a choice of how read events reach the disk.
    pub fn open_with(path: &Path, audit_sync: AuditSync) -> Result<Self, String> {
        let conn =
            Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let mut storage = Self::prepare(conn, audit_sync, None, Some(wal))?;
        // A reader per core (a read holds one only while it reads), and a journal shard.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let readers = cores.clamp(2, 32);
        let mut pool = Vec::with_capacity(readers);
        for _ in 0..readers {
            let c = Connection::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            // No memory map (`mmap_size`): a reader that sees the database changed since its
            // last read unmaps the whole map before reading again (SQLite's pager). Measured
            // when every read committed an audit event (so every read saw a change), a map
            // bought a `munmap` per read and a TLB shootdown across the cores: 16-connection
            // reads ran ~27% slower with a 64 MiB map. With the journal the database changes
            // every 10 ms at most, but held rows spare most reads any page at all.
            c.execute_batch("PRAGMA busy_timeout=5000; PRAGMA query_only=1;")
                .map_err(|e| format!("cannot configure SQLite: {e}"))?;
            pool.push(Mutex::new(c));
        }
        storage.readers = Arc::new(pool);
        if audit_sync == AuditSync::Grouped {
            let mut w = storage.writer.lock().unwrap_or_else(|e| e.into_inner());
            let wal = &storage.wal;
            let journal = AuditJournal::open(path, &mut w, cores, || wal.sync_committed())?;
            drop(w);
            storage.journal = Some(Arc::new(journal));
        }
        spawn_wal_keeper(&storage)?;
        Ok(storage)
    }

    /// A private in-memory database (the `--dev` server), with a bounded audit trail.
    pub fn in_memory() -> Result<Self, String> {
        Self::in_memory_keeping(DEV_AUDIT_MAX)
    }

    /// An in-memory database that keeps the newest `audit_events` audit events.
    pub fn in_memory_keeping(audit_events: i64) -> Result<Self, String> {
        Self::prepare(
            Connection::open_in_memory().map_err(|e| e.to_string())?,
            AuditSync::EveryRead,
            Some(audit_events),
            None,
        )
    }

    fn prepare(
        mut conn: Connection,
        audit_sync: AuditSync,
        audit_cap: Option<i64>,
        wal: Option<PathBuf>,
    ) -> Result<Self, String> {
        // synchronous=NORMAL: commits do not fsync; WalSync does, before any answer that
        // needs it. Checkpoints run in the background (WAL_CHECKPOINT_EVERY); the automatic
        // one is a backstop should they fall behind.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000;
             PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .map_err(|e| format!("cannot configure SQLite: {e}"))?;
        let done: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| e.to_string())? as usize;
        if done > MIGRATIONS.len() {
            return Err(format!(
                "the database is at schema version {done}, newer than this server ({}); upgrade the server",
                MIGRATIONS.len()
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
            let tx = conn.transaction().map_err(|e| e.to_string())?;
            tx.execute_batch(sql)
                .map_err(|e| format!("migration {} failed: {e}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
        }
        let writer = Arc::new(Mutex::new(conn));
        let in_memory = wal.is_none();
        let wal = Arc::new(WalSync::new(wal));
        let committer = AuditCommitter {
            writer: writer.clone(),
            full: audit_sync == AuditSync::EveryRead,
            wal: wal.clone(),
            cap: audit_cap,
        };
        let (audit, queued) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ductape-audit".into())
            .spawn(move || committer.run(queued))
            .map_err(|e| format!("cannot start the audit thread: {e}"))?;
        Ok(SqliteStorage {
            writer,
            readers: Arc::new(Vec::new()),
            next_reader: Arc::new(AtomicUsize::new(0)),
            wal,
            audit,
            commit_inline: in_memory,
            audit_cap,
            auditing: Arc::default(),
            journal: None,
            read_cache: Arc::default(),
        })
    }

    /// Runs a change on the writer, on the blocking pool; when it succeeds, returns once
    /// it is on disk (fsync, shared with concurrent changes).
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let writer = self.writer.clone();
        let wal = self.wal.clone();
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
            // Reads before the change are chained before its event.
            if let Some(journal) = journal.filter(|j| j.has_pending()) {
                move_journal(&journal, &mut w, &wal).map_err(ApiError::internal)?;
            }
            let out = f(&mut w)?;
            let seq = wal.committed();
            drop(w);
            wal.wait_durable(seq)
                .map_err(|e| ApiError::internal(format!("cannot sync the database: {e}")))?;
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
    }

    /// Runs a read on a reader connection (the writer when there are none).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        if self.readers.is_empty() {
            return self.with(move |c| f(c)).await;
        }
        let readers = self.readers.clone();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || f(&pick_reader(&readers, start)))
            .await
            .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
    }

    /// Commits `events` (see [`commit_events`] for `expect`): when alone (no other read on
    /// its way to the audit trail) and the writer is free, right here; under load through
    /// the [`AuditCommitter`], which groups.
    async fn record(
        &self,
        events: Vec<AuditEvent>,
        expect: Option<i64>,
    ) -> Result<Recorded, ApiError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let mut pending = PendingEvents {
            events,
            expect,
            done,
        };
        let busy = Busy::enter(&self.auditing);
        if self.commit_inline && busy.alone {
            if let Ok(mut w) = self.writer.try_lock() {
                let recorded =
                    commit_events(&mut w, std::slice::from_mut(&mut pending), self.audit_cap)
                        .map_err(db)?;
                self.wal.committed();
                return Ok(recorded[0]);
            }
        }
        let stopped = || ApiError::internal("the audit thread has stopped");
        self.audit.send(pending).map_err(|_| stopped())?;
        match outcome.await {
            Ok(Ok(recorded)) => Ok(recorded),
            Ok(Err(e)) => Err(ApiError::internal(format!(
                "cannot commit the audit trail: {e}"
            ))),
            Err(_) => Err(stopped()),
        }
    }

    /// Moves the journal's pending events into the audit table (before it is read).
    async fn move_journal(&self) -> Result<(), ApiError> {
        let Some(journal) = self.journal.clone().filter(|j| j.has_pending()) else {
            return Ok(());
        };
        let (writer, wal) = (self.writer.clone(), self.wal.clone());
        tokio::task::spawn_blocking(move || {
            let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
            move_journal(&journal, &mut w, &wal)
        })
        .await
        .map_err(|e| ApiError::internal(format!("storage task failed: {e}")))?
        .map_err(ApiError::internal)
    }

    /// A connection to read on that nobody holds right now (a reader; the writer for an
    /// in-memory database), if there is one.
    fn free_connection(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        if self.readers.is_empty() {
            return self.writer.try_lock().ok();
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        free_reader(&self.readers, start)
    }
}

/// The first reader from `start` on that nobody holds, if any.
fn free_reader(
    readers: &[Mutex<Connection>],
    start: usize,
) -> Option<std::sync::MutexGuard<'_, Connection>> {
    let n = readers.len();
    (0..n).find_map(|i| readers[(start + i) % n].try_lock().ok())
}

/// A free reader if there is one, else wait for the one at `start`.
fn pick_reader(
    readers: &[Mutex<Connection>],
    start: usize,
) -> std::sync::MutexGuard<'_, Connection> {
    free_reader(readers, start).unwrap_or_else(|| {
        readers[start % readers.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    })
}

/// Commits audit events in groups, on its own thread: the events of every read that
/// arrives while a group is being committed go into the next group, one transaction for all
/// of them, so concurrent reads share one commit (and, with `--audit-sync every-read`, one
/// fsync) instead of queueing one by one on the writer, and no read occupies a thread while
/// it waits. Each read is answered only once its own events are committed. Runs until the
/// storage is dropped.
struct AuditCommitter {
    writer: Arc<Mutex<Connection>>,
    /// Wait for the fsync ([`AuditSync::EveryRead`]).
    full: bool,
    wal: Arc<WalSync>,
    cap: Option<i64>,
}

/// Events waiting to be committed, and who waits for the outcome.
struct PendingEvents {
    events: Vec<AuditEvent>,
    /// The events stand only while the secrets are at this generation (they record a read
    /// of rows held from it); otherwise they are left out, and the outcome says so.
    expect: Option<i64>,
    done: tokio::sync::oneshot::Sender<Result<Recorded, String>>,
}

/// What became of a read's events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recorded {
    Committed,
    /// Not written: the secrets changed since the generation the read expected.
    Stale,
}

/// Most events the committer puts in one transaction.
const MAX_AUDIT_GROUP: usize = 4096;

impl AuditCommitter {
    fn run(self, queued: std::sync::mpsc::Receiver<PendingEvents>) {
        while let Ok(first) = queued.recv() {
            let mut count = first.events.len();
            let mut group = vec![first];
            while count < MAX_AUDIT_GROUP {
                match queued.try_recv() {
                    Ok(more) => {
                        count += more.events.len();
                        group.push(more);
                    }
                    Err(_) => break,
                }
            }
            match self.commit(&mut group) {
                Ok(recorded) => {
                    for (p, r) in group.into_iter().zip(recorded) {
                        let _ = p.done.send(Ok(r));
                    }
                }
                Err(e) => {
                    for p in group {
                        let _ = p.done.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Commits one group; with `full`, returns once it is on disk.
    fn commit(&self, group: &mut [PendingEvents]) -> Result<Vec<Recorded>, String> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let recorded = commit_events(&mut w, group, self.cap).map_err(|e| e.to_string())?;
        let seq = self.wal.committed();
        drop(w);
        if self.full {
            self.wal.wait_durable(seq)?;
        }
        Ok(recorded)
    }
}

/// Appends the events of `group` to the chain in one transaction (without an fsync: see
/// [`WalSync`]), each read's only if the secrets are still at the generation it expects:
/// the transaction holds the write lock, so no change can commit between that check and
/// the events (taken out of `group`).
fn commit_events(
    w: &mut Connection,
    group: &mut [PendingEvents],
    cap: Option<i64>,
) -> rusqlite::Result<Vec<Recorded>> {
    // IMMEDIATE: take the write lock first (waiting up to busy_timeout for it), rather
    // than fail to upgrade a read snapshot.
    let tx = w.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let generation = if group.iter().any(|p| p.expect.is_some()) {
        Some(secrets_generation(&tx)?)
    } else {
        None
    };
    let mut events = Vec::with_capacity(group.iter().map(|p| p.events.len()).sum());
    let recorded = group
        .iter_mut()
        .map(|p| {
            if p.expect.is_some() && p.expect != generation {
                return Recorded::Stale;
            }
            events.append(&mut p.events);
            Recorded::Committed
        })
        .collect();
    append_chained(&tx, &events)?;
    if let Some(cap) = cap {
        // The in-memory trail keeps the newest events only (`verify` then checks from the
        // oldest kept).
        tx.prepare_cached("DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?1")?
            .execute(params![cap])?;
    }
    tx.commit()?;
    Ok(recorded)
}

/// The secrets' generation: moved by every change to the `secrets` table (schema v7).
fn secrets_generation(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT n FROM secrets_generation WHERE id = 0")?
        .query_row([], |r| r.get(0))
}

/// Group fsync of the WAL file. Each commit takes a number ([`WalSync::committed`]); a
/// caller that needs its commit on disk waits until an fsync that began after it has ended
/// ([`WalSync::wait_durable`]): the first waiter to find no fsync under way runs one for
/// everything committed so far, the others wait and are covered by it. fsync acts on the
/// file, whichever descriptor it is called on.
struct WalSync {
    /// None for an in-memory database (nothing to sync).
    path: Option<PathBuf>,
    state: Mutex<SyncState>,
    ended: Condvar,
}

#[derive(Default)]
struct SyncState {
    committed: u64,
    synced: u64,
    syncing: bool,
    file: Option<std::fs::File>,
}

impl WalSync {
    fn new(path: Option<PathBuf>) -> Self {
        WalSync {
            path,
            state: Mutex::default(),
            ended: Condvar::new(),
        }
    }

    /// Numbers a commit that has just been made.
    fn committed(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.committed += 1;
        s.committed
    }

    /// Returns once every commit made so far is on disk.
    fn sync_committed(&self) -> Result<(), String> {
        self.wait_durable(self.committed())
    }

    /// Whether some commit is not yet known to be on disk.
    fn behind(&self) -> Option<u64> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (s.synced < s.committed).then_some(s.committed)
    }

    /// Returns once commit `seq` is on disk.
    fn wait_durable(&self, seq: u64) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.synced >= seq {
                return Ok(());
            }
            if s.syncing {
                s = self.ended.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.syncing = true;
            let target = s.committed;
            let file = s.file.take();
            drop(s);
            let outcome = match file {
                Some(f) => Ok(f),
                None => std::fs::OpenOptions::new().read(true).open(path),
            }
            .and_then(|f| f.sync_data().map(|()| f));
            s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.syncing = false;
            self.ended.notify_all();
            match outcome {
                Ok(f) => {
                    s.file = Some(f);
                    s.synced = s.synced.max(target);
                }
                // The next waiter tries again (reopening the file).
                Err(e) => return Err(format!("fsync of {}: {e}", path.display())),
            }
        }
    }
}

/// How often the WAL is checkpointed into the database file.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The longest a checkpoint waits for readers still on frames it would overwrite; past it,
/// the checkpoint is left for the next turn (a long listing keeps its snapshot).
const CHECKPOINT_WAIT: Duration = Duration::from_millis(20);

/// How long a connection waits for a lock SQLite holds before answering busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The background thread of a file database: fsyncs read events committed without one
/// within [`GROUP_WINDOW`], and checkpoints the WAL every [`WAL_CHECKPOINT_EVERY`] (see
/// [`checkpoint`]), until the storage is dropped.
fn spawn_wal_keeper(storage: &SqliteStorage) -> Result<(), String> {
    let wal = Arc::downgrade(&storage.wal);
    let writer = Arc::downgrade(&storage.writer);
    let journal = storage.journal.as_ref().map(Arc::downgrade);
    std::thread::Builder::new()
        .name("ductape-wal".into())
        .spawn(move || {
            let mut last_checkpoint = std::time::Instant::now();
            let mut journal_sync = Retrying::new("cannot sync the audit journal to disk");
            let mut journal_move = Retrying::new("cannot move the audit journal into the database");
            let mut trail_sync = Retrying::new("cannot sync the audit trail to disk");
            let mut checkpoints = Retrying::new("WAL checkpoint failed");
            while let Some(sync) = wal.upgrade() {
                if let Some(journal) = journal.as_ref().and_then(Weak::upgrade) {
                    journal_sync.outcome(journal.sync());
                    if let Some(writer) = writer.upgrade().filter(|_| journal.has_pending()) {
                        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                        journal_move.outcome(move_journal(&journal, &mut w, &sync));
                    }
                }
                if let Some(seq) = sync.behind() {
                    trail_sync.outcome(sync.wait_durable(seq));
                }
                if last_checkpoint.elapsed() >= WAL_CHECKPOINT_EVERY {
                    if let Some(writer) = writer.upgrade() {
                        checkpoints
                            .outcome(checkpoint(&writer).map(drop).map_err(|e| e.to_string()));
                    }
                    last_checkpoint = std::time::Instant::now();
                }
                drop(sync);
                std::thread::sleep(GROUP_WINDOW);
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the WAL thread: {e}"))
}

/// Copies the whole WAL into the database file, on the writer between two commits, so that
/// the next commit writes the WAL from its start again. Returns whether it copied it all.
///
/// A passive checkpoint beside the writer never caught up with it: every read committed an
/// audit event (before the journal; every-read mode still does), so frames were appended
/// while it copied, and readers kept older snapshots.
/// The WAL only grew (41 MB after 8 s of 16-connection reads) until SQLite's automatic
/// checkpoint (at `wal_autocheckpoint` frames) ran inside every commit from then on, with
/// its fsyncs, under the writer's lock. Here the writer is held, so nothing is appended
/// meanwhile, and RESTART waits (up to [`CHECKPOINT_WAIT`]) for readers of older snapshots.
fn checkpoint(writer: &Mutex<Connection>) -> rusqlite::Result<bool> {
    let w = writer.lock().unwrap_or_else(|e| e.into_inner());
    w.busy_timeout(CHECKPOINT_WAIT)?;
    let busy = w.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
    w.busy_timeout(BUSY_TIMEOUT)?;
    Ok(busy? == 0)
}

/// Moves the journal's pending events into the audit table through `w` (the writer, held),
/// syncing the WAL before a full segment is deleted.
fn move_journal(journal: &AuditJournal, w: &mut Connection, wal: &WalSync) -> Result<(), String> {
    journal.move_pending(w, || wal.sync_committed())
}

fn db(e: rusqlite::Error) -> ApiError {
    // A full or failing disk, or a lock another process holds past the busy timeout, is the
    // database being unavailable, not a bug: 503 with Retry-After (the transaction that met
    // it changed nothing).
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
        if matches!(
            f.code,
            DiskFull | SystemIoFailure | DatabaseBusy | DatabaseLocked
        ) {
            return ApiError::unavailable(
                "the database cannot be used now (its disk is full or failing, or another process holds it): nothing was changed; try again shortly",
                &e,
            );
        }
    }
    ApiError::internal(format!("database error: {e}"))
}

fn to_json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json(s: String) -> Vec<String> {
    // Most secrets are for every app and environment: no parse for those.
    if s == "[]" {
        return Vec::new();
    }
    serde_json::from_str(&s).unwrap_or_default()
}

const SECRET_COLS: &str = "id, workspace_id, key, ciphertext, description, token_type, scope, envs, expires_at, revoked, version, created_ms, updated_ms, changed, changed_by, changed_by_name, rollback_of";

/// The tables holding sealed values: a secret's current row, its earlier versions, the
/// trash. Statements over all three are made from these names only.
const SEALED_TABLES: [&str; 3] = ["secrets", "secret_versions", "trash"];

/// Inserts `s` into `table` (one of [`SEALED_TABLES`]; the trash's `deleted_ms` apart).
fn insert_secret(
    c: &Connection,
    table: &str,
    s: &StoredSecret,
    conflict: &str,
) -> rusqlite::Result<usize> {
    c.prepare_cached(&format!(
        "INSERT INTO {table} ({SECRET_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) {conflict}"
    ))?
    .execute(params![
        s.id, s.workspace_id, s.key, s.ciphertext, s.description,
        s.token_type.map(TokenType::as_str), to_json(&s.scope), to_json(&s.envs),
        s.expires_at, s.revoked as i64, s.version, s.created_ms, s.updated_ms,
        s.change.stored(), s.change.by.as_ref().map(|b| &b.0), s.change.by.as_ref().map(|b| &b.1),
        s.change.rollback_of
    ])
}

/// [`SECRET_COLS`] less who made the current version and what it changed: what a read needs
/// (those columns are read back whole by the history's statements).
const READ_COLS: &str = "id, workspace_id, key, ciphertext, description, token_type, scope, envs, expires_at, revoked, version, created_ms, updated_ms";

/// A row of [`READ_COLS`]; its `change` is left empty.
fn read_row(r: &Row<'_>) -> rusqlite::Result<StoredSecret> {
    let token_type: Option<String> = r.get(5)?;
    Ok(StoredSecret {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        key: r.get(2)?,
        ciphertext: r.get(3)?,
        ciphertext_json: Default::default(),
        description: r.get(4)?,
        token_type: token_type.and_then(|t| TokenType::parse(&t).ok()),
        scope: from_json(r.get(6)?),
        envs: from_json(r.get(7)?),
        expires_at: r.get(8)?,
        revoked: r.get::<_, i64>(9)? != 0,
        version: r.get(10)?,
        created_ms: r.get(11)?,
        updated_ms: r.get(12)?,
        change: Change::default(),
    })
}

/// A row of [`SECRET_COLS`] (which begin with [`READ_COLS`]).
fn secret_row(r: &Row<'_>) -> rusqlite::Result<StoredSecret> {
    Ok(StoredSecret {
        change: Change::from_stored(r.get(13)?, r.get(14)?, r.get(15)?, r.get(16)?),
        ..read_row(r)?
    })
}

const KEY_COLS: &str =
    "id, workspace_id, name, secret_hash, wrapped_key, permissions, app, envs, created_ms";

fn key_row(r: &Row<'_>) -> rusqlite::Result<StoredAccessKey> {
    let perms: Vec<String> = from_json(r.get(5)?);
    Ok(StoredAccessKey {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        name: r.get(2)?,
        secret_hash: r.get(3)?,
        wrapped_key: r.get(4)?,
        permissions: perms.iter().filter_map(|p| Permission::parse(p)).collect(),
        app: r.get(6)?,
        envs: from_json(r.get(7)?),
        created_ms: r.get(8)?,
    })
}

fn insert_key(conn: &Connection, k: &StoredAccessKey) -> rusqlite::Result<usize> {
    let perms: Vec<String> = k
        .permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    conn.execute(
        &format!(
            "INSERT INTO access_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            k.id,
            k.workspace_id,
            k.name,
            k.secret_hash,
            k.wrapped_key,
            to_json(&perms),
            k.app,
            to_json(&k.envs),
            k.created_ms
        ],
    )
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

const AUDIT_COLS: &str = "at_ms, workspace_id, access_key_id, secret_key, action, app, env, claimed_app, claimed_env, allowed, reason, detail, prev_hash, hash, batch_keys";

/// The hash of a workspace's newest chained event. `+workspace_id` keeps SQLite from
/// choosing `audit_by_secret` (and sorting every event): the table is walked from its newest
/// id, and in a database of one workspace the first chained row is the head (schema v8).
const CHAIN_HEAD: &str =
    "SELECT hash FROM audit WHERE +workspace_id = ?1 AND hash != '' ORDER BY id DESC LIMIT 1";

/// The audit listing, newest first, walked by id as [`CHAIN_HEAD`] is.
fn list_audit_sql() -> String {
    format!(
        "SELECT id, {AUDIT_COLS} FROM audit WHERE +workspace_id = ?1
           AND (?2 IS NULL OR secret_key = ?2
                OR instr(',' || batch_keys || ',', ',' || ?2 || ',') > 0) AND (?3 IS NULL OR access_key_id = ?3)
           AND (?4 IS NULL OR app = ?4) AND (?5 IS NULL OR env = ?5) AND (?6 IS NULL OR id < ?6)
         ORDER BY id DESC LIMIT ?7"
    )
}

/// Appends events to their workspace's chain. The caller holds the one connection (inside
/// a transaction), so nothing else appends in between.
pub(super) fn append_chained(c: &Connection, events: &[AuditEvent]) -> rusqlite::Result<()> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    let mut prev: String = c
        .prepare_cached(CHAIN_HEAD)?
        .query_row(params![first.workspace_id], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let mut st = c.prepare_cached(&format!(
        "INSERT INTO audit ({AUDIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?;
    for e in events {
        let hash = e.chain_hash(&prev);
        st.execute(params![
            e.at_ms,
            e.workspace_id,
            e.access_key_id,
            e.secret_key,
            e.action,
            e.app,
            e.env,
            e.claimed_app,
            e.claimed_env,
            e.allowed as i64,
            e.reason,
            e.detail,
            prev,
            hash,
            e.batch_keys()
        ])?;
        prev = hash;
    }
    Ok(())
}

/// The rows of `keys` that exist: those the [`ReadCache`] holds for the database's
/// generation now, the others read (and then held). The generation is read first, so a row
/// read is at least as new as the generation it is held under.
fn read_secrets(
    c: &Connection,
    cache: &ReadCache,
    ws: &str,
    keys: &[SecretKey],
) -> Result<Vec<Arc<StoredSecret>>, ApiError> {
    let generation = secrets_generation(c).map_err(db)?;
    let mut held = cache.lookup(generation, ws, keys);
    if !held.missing.is_empty() {
        let read: Vec<Arc<StoredSecret>> = select_secrets(c, ws, &held.missing)?
            .into_iter()
            .map(Arc::new)
            .collect();
        cache.add(generation, &read);
        held.found.extend(read);
    }
    Ok(held.found)
}

/// The rows of those `keys` that exist, from one snapshot (without who changed them: see
/// [`READ_COLS`]).
fn select_secrets(
    c: &Connection,
    ws: &str,
    keys: &[SecretKey],
) -> Result<Vec<StoredSecret>, ApiError> {
    if let [key] = keys {
        return c
            .prepare_cached(&format!(
                "SELECT {READ_COLS} FROM secrets WHERE workspace_id = ?1 AND key = ?2"
            ))
            .and_then(|mut st| st.query_row(params![ws, key.as_str()], read_row).optional())
            .map(|found| found.into_iter().collect())
            .map_err(db);
    }
    // One statement for all the keys (passed as a JSON array): one snapshot, and none of the
    // per-statement reset, bind and halt a loop of single selects pays per key.
    let keys = serde_json::to_string(keys).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {READ_COLS} FROM secrets
             WHERE workspace_id = ?1 AND key IN (SELECT value FROM json_each(?2))"
        ))
        .map_err(db)?;
    let found = st
        .query_map(params![ws, keys], read_row)
        .and_then(Iterator::collect)
        .map_err(db);
    found
}

/// The workspace's keyring as stored (inside a transaction, for [`check_sealed`]).
fn keyring_of(c: &Connection, ws: &str) -> Result<Option<String>, ApiError> {
    c.prepare_cached("SELECT keyring FROM workspaces WHERE id = ?1")
        .and_then(|mut st| st.query_row(params![ws], |r| r.get(0)).optional())
        .map(Option::flatten)
        .map_err(db)
}

fn select_secret(c: &Connection, ws: &str, key: &str) -> Result<StoredSecret, ApiError> {
    c.query_row(
        &format!("SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = ?1 AND key = ?2"),
        params![ws, key],
        secret_row,
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| ApiError::not_found(key))
}

/// A missing secret as `None`; other errors stay errors.
fn absent(e: ApiError) -> Result<Option<StoredSecret>, ApiError> {
    if e.code == ErrorCode::SecretNotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

/// Keeps `before` (the version a change replaces) in the secret's history, pruning what
/// `retention` does not keep once the secret is at `now_at`.
fn keep_version(
    c: &Connection,
    before: &StoredSecret,
    now_at: i64,
    retention: Retention,
) -> Result<(), ApiError> {
    insert_secret(
        c,
        "secret_versions",
        before,
        "ON CONFLICT (id, version) DO NOTHING",
    )
    .map_err(db)?;
    let through = retention.pruned_through(now_at);
    if through > 0 {
        c.prepare_cached("DELETE FROM secret_versions WHERE id = ?1 AND version <= ?2")
            .and_then(|mut st| st.execute(params![before.id, through]))
            .map_err(db)?;
    }
    Ok(())
}

/// Adds `s`'s new version (or deletion) to the change feed, in the change's transaction.
fn record_change(c: &Connection, s: &StoredSecret, kind: &str) -> Result<(), ApiError> {
    c.prepare_cached(
        "INSERT INTO changes (workspace_id, key, version, kind, scope, envs, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            s.workspace_id,
            s.key,
            s.version,
            kind,
            to_json(&s.scope),
            to_json(&s.envs),
            ductape::ids::now_millis()
        ])
    })
    .map(drop)
    .map_err(db)
}

/// Empties the trash of what was deleted before `before_ms`, with its history.
fn purge(c: &Connection, before_ms: i64) -> rusqlite::Result<u64> {
    c.prepare_cached(
        "DELETE FROM secret_versions WHERE id IN (SELECT id FROM trash WHERE deleted_ms < ?1)",
    )?
    .execute(params![before_ms])?;
    c.prepare_cached("DELETE FROM trash WHERE deleted_ms < ?1")?
        .execute(params![before_ms])
        .map(|n| n as u64)
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn ping(&self) -> Result<(), ApiError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db))
            .await
    }

    async fn close(&self) -> Result<(), ApiError> {
        self.move_journal().await
    }

    async fn workspace(&self) -> Result<Option<Workspace>, ApiError> {
        self.read(|c| {
            c.query_row(
                "SELECT id, name, key_id, created_ms, keyring FROM workspaces LIMIT 1",
                [],
                |r| {
                    Ok(Workspace {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        key_id: r.get(2)?,
                        created_ms: r.get(3)?,
                        keyring: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn setup(
        &self,
        token_hash: &str,
        ws: Workspace,
        key: StoredAccessKey,
        event: AuditEvent,
    ) -> Result<(), ApiError> {
        let token_hash = token_hash.to_owned();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let exists: i64 = tx
                .query_row("SELECT COUNT(*) FROM workspaces", [], |r| r.get(0))
                .map_err(db)?;
            if exists > 0 {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "this server is already set up",
                ));
            }
            let stored: Option<String> = tx
                .query_row(
                    "SELECT value FROM settings WHERE name = 'setup_token_hash'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            if !stored.is_some_and(|s| ductape::crypto::hashes_equal(&s, &token_hash)) {
                return Err(ApiError::new(
                    ErrorCode::Unauthenticated,
                    "invalid setup token",
                ));
            }
            tx.execute(
                "INSERT INTO workspaces (id, name, key_id, created_ms, keyring) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ws.id, ws.name, ws.key_id, ws.created_ms, ws.keyring],
            )
            .map_err(db)?;
            insert_key(&tx, &key).map_err(db)?;
            tx.execute("DELETE FROM settings WHERE name = 'setup_token_hash'", [])
                .map_err(db)?;
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn offer_setup_token(&self, token_hash: &str, replace: bool) -> Result<bool, ApiError> {
        let token_hash = token_hash.to_owned();
        let sql = if replace {
            "INSERT INTO settings (name, value) VALUES ('setup_token_hash', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        } else {
            "INSERT INTO settings (name, value) VALUES ('setup_token_hash', ?1)
             ON CONFLICT (name) DO NOTHING"
        };
        self.with(move |c| {
            c.execute(sql, params![token_hash])
                .map(|n| n > 0)
                .map_err(db)
        })
        .await
    }

    async fn access_key(&self, id: &str) -> Result<Option<StoredAccessKey>, ApiError> {
        let id = id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {KEY_COLS} FROM access_keys WHERE id = ?1"))
                .and_then(|mut st| st.query_row(params![id], key_row).optional())
                .map_err(db)
        })
        .await
    }

    async fn create_access_key(
        &self,
        key: StoredAccessKey,
        event: AuditEvent,
    ) -> Result<(), ApiError> {
        self.with(move |c| {
            let tx = c.transaction().map_err(db)?;
            match insert_key(&tx, &key) {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "an access key with that id already exists",
                    ))
                }
                Err(e) => return Err(db(e)),
            }
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn list_access_keys(&self, workspace_id: &str) -> Result<Vec<StoredAccessKey>, ApiError> {
        let ws = workspace_id.to_owned();
        self.read(move |c| {
            let mut st = c
                .prepare(&format!("SELECT {KEY_COLS} FROM access_keys WHERE workspace_id = ?1 ORDER BY created_ms, id"))
                .map_err(db)?;
            let rows = st.query_map(params![ws], key_row).map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }

    async fn delete_access_key(
        &self,
        workspace_id: &str,
        id: &str,
        check: Check<StoredAccessKey>,
        event: AuditEvent,
    ) -> Result<(), ApiError> {
        let (ws, id) = (workspace_id.to_owned(), id.to_owned());
        self.with(move |c| {
            // IMMEDIATE: the count of admin keys and the delete are one serialised step.
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let keys = {
                let mut st = tx
                    .prepare(&format!(
                        "SELECT {KEY_COLS} FROM access_keys WHERE workspace_id = ?1"
                    ))
                    .map_err(db)?;
                let rows = st.query_map(params![ws], key_row).map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)?
            };
            let target = keys
                .iter()
                .find(|k| k.id == id)
                .ok_or_else(no_such_access_key)?;
            check(target)?;
            if is_last_admin(&keys, target) {
                return Err(last_admin_key());
            }
            tx.execute(
                "DELETE FROM access_keys WHERE workspace_id = ?1 AND id = ?2",
                params![ws, id],
            )
            .map_err(db)?;
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn create_secrets(
        &self,
        items: Vec<(StoredSecret, AuditEvent)>,
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let mut done = Inserted::with_capacity(items.len());
            let ring = match items.first() {
                Some((s, _)) => stored_keyring(keyring_of(&tx, &s.workspace_id)?)?,
                None => None,
            };
            for (s, event) in items {
                if let Err(e) = check_sealed(ring.as_ref(), &s) {
                    done.refuse(e);
                    continue;
                }
                let inserted = insert_secret(
                    &tx,
                    "secrets",
                    &s,
                    "ON CONFLICT (workspace_id, key) DO NOTHING",
                )
                .map_err(db)?;
                if inserted > 0 {
                    record_change(&tx, &s, "create")?;
                }
                done.record(inserted > 0, &s.key, event);
            }
            append_chained(&tx, &done.events).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(done.answers)
        })
        .await
    }

    async fn list_secrets(
        &self,
        workspace_id: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredSecret>, ApiError> {
        let ws = workspace_id.to_owned();
        self.read(move |c| {
            // Two statements, not `(?2 IS NULL OR key > ?2)`: that form cannot start the
            // index scan at the cursor, so a page deep in a big workspace would scan up to it.
            let limit = limit as i64;
            let rows = match &after {
                Some(after) => c
                    .prepare_cached(&format!(
                        "SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = ?1 AND key > ?2
                         ORDER BY key LIMIT ?3"
                    ))
                    .and_then(|mut st| {
                        st.query_map(params![ws, after, limit], secret_row)?
                            .collect::<Result<Vec<_>, _>>()
                    }),
                None => c
                    .prepare_cached(&format!(
                        "SELECT {SECRET_COLS} FROM secrets WHERE workspace_id = ?1 ORDER BY key LIMIT ?2"
                    ))
                    .and_then(|mut st| {
                        st.query_map(params![ws, limit], secret_row)?
                            .collect::<Result<Vec<_>, _>>()
                    }),
            };
            rows.map_err(db)
        })
        .await
    }

    /// The select runs right here when a connection is free (a few microseconds on indexed
    /// rows: cheaper than a hand-off to the blocking pool), else on the blocking pool.
    async fn get_secrets(
        &self,
        workspace_id: &str,
        keys: &[SecretKey],
    ) -> Result<Vec<Arc<StoredSecret>>, ApiError> {
        let here = self
            .free_connection()
            .map(|conn| read_secrets(&conn, &self.read_cache, workspace_id, keys));
        if let Some(found) = here {
            return found;
        }
        let ws = workspace_id.to_owned();
        let keys = keys.to_vec();
        let cache = self.read_cache.clone();
        self.read(move |c| read_secrets(c, &cache, &ws, &keys))
            .await
    }

    async fn modify_secret(
        &self,
        workspace_id: &str,
        key: &str,
        change: Modify,
        event: AuditEvent,
        retention: Retention,
    ) -> Result<StoredSecret, ApiError> {
        let (ws, key) = (workspace_id.to_owned(), key.to_owned());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let mut s = select_secret(&tx, &ws, &key)?;
            let before = s.clone();
            change(&mut s)?;
            if reseals(&before, &s) {
                check_sealed(stored_keyring(keyring_of(&tx, &ws)?)?.as_ref(), &s)?;
            }
            if s.version != before.version {
                keep_version(&tx, &before, s.version, retention)?;
                record_change(&tx, &s, ChangeRow::kind_of(&s))?;
            }
            tx.execute(
                "UPDATE secrets SET ciphertext = ?1, description = ?2, token_type = ?3, scope = ?4, envs = ?5,
                 expires_at = ?6, revoked = ?7, version = ?8, updated_ms = ?9, changed = ?10, changed_by = ?11,
                 changed_by_name = ?12, rollback_of = ?13 WHERE id = ?14",
                params![
                    s.ciphertext, s.description, s.token_type.map(TokenType::as_str), to_json(&s.scope),
                    to_json(&s.envs), s.expires_at, s.revoked as i64, s.version, s.updated_ms,
                    s.change.stored(), s.change.by.as_ref().map(|b| &b.0), s.change.by.as_ref().map(|b| &b.1),
                    s.change.rollback_of, s.id
                ],
            )
            .map_err(db)?;
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(s)
        })
        .await
    }

    async fn delete_secret(
        &self,
        workspace_id: &str,
        key: &str,
        check: Check<StoredSecret>,
        event: AuditEvent,
        how: Deletion,
    ) -> Result<(), ApiError> {
        let (ws, key) = (workspace_id.to_owned(), key.to_owned());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let s = select_secret(&tx, &ws, &key)?;
            check(&s)?;
            match how {
                Deletion::Trash { now_ms, purge_before_ms } => {
                    tx.execute(
                        &format!("INSERT INTO trash ({SECRET_COLS}, deleted_ms) SELECT {SECRET_COLS}, ?2 FROM secrets WHERE id = ?1"),
                        params![s.id, now_ms],
                    )
                    .map_err(db)?;
                    purge(&tx, purge_before_ms).map_err(db)?;
                }
                Deletion::Permanent => {
                    tx.execute("DELETE FROM secret_versions WHERE id = ?1", params![s.id])
                        .map_err(db)?;
                }
            }
            tx.execute("DELETE FROM secrets WHERE id = ?1", params![s.id])
                .map_err(db)?;
            record_change(&tx, &s, "delete")?;
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)
        })
        .await
    }

    async fn undelete_secret(
        &self,
        workspace_id: &str,
        key: &str,
        since_ms: i64,
        change: Modify,
        event: AuditEvent,
        retention: Retention,
    ) -> Result<StoredSecret, ApiError> {
        let (ws, key) = (workspace_id.to_owned(), key.to_owned());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let trashed = tx
                .query_row(
                    &format!(
                        "SELECT {SECRET_COLS} FROM trash WHERE workspace_id = ?1 AND key = ?2 AND deleted_ms >= ?3
                         ORDER BY deleted_ms DESC LIMIT 1"
                    ),
                    params![ws, key, since_ms],
                    secret_row,
                )
                .optional()
                .map_err(db)?
                .ok_or_else(|| not_in_trash(&key))?;
            let mut s = trashed.clone();
            change(&mut s)?;
            if select_secret(&tx, &ws, &key).is_ok() {
                return Err(name_taken_again(&key, &trashed.id));
            }
            keep_version(&tx, &trashed, s.version, retention)?;
            insert_secret(&tx, "secrets", &s, "").map_err(db)?;
            record_change(&tx, &s, "undelete")?;
            tx.execute("DELETE FROM trash WHERE id = ?1", params![s.id])
                .map_err(db)?;
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(s)
        })
        .await
    }

    async fn purge_trash(&self, before_ms: i64) -> Result<u64, ApiError> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let n = purge(&tx, before_ms).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n)
        })
        .await
    }

    async fn secret_history(
        &self,
        workspace_id: &str,
        key: &str,
        before: i64,
        limit: usize,
    ) -> Result<Option<(StoredSecret, Vec<StoredSecret>)>, ApiError> {
        let (ws, key) = (workspace_id.to_owned(), key.to_owned());
        self.read(move |c| {
            let tx = c.unchecked_transaction().map_err(db)?;
            let Some(current) = select_secret(&tx, &ws, &key).map(Some).or_else(absent)? else {
                return Ok(None);
            };
            let older = tx
                .prepare_cached(&format!(
                    "SELECT {SECRET_COLS} FROM secret_versions WHERE id = ?1 AND version < ?2
                     ORDER BY version DESC LIMIT ?3"
                ))
                .and_then(|mut st| {
                    st.query_map(params![current.id, before, limit as i64], secret_row)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some((current, older)))
        })
        .await
    }

    async fn changes_after(
        &self,
        workspace_id: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeRow>, ApiError> {
        let ws = workspace_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, key, version, kind, scope, envs, at_ms FROM changes
                 WHERE workspace_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(params![ws, after, limit as i64], |r| {
                    Ok(ChangeRow {
                        id: r.get(0)?,
                        key: r.get(1)?,
                        version: r.get(2)?,
                        kind: r.get(3)?,
                        scope: from_json(r.get(4)?),
                        envs: from_json(r.get(5)?),
                        at_ms: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(db)
        })
        .await
    }

    async fn change_bounds(
        &self,
        workspace_id: &str,
    ) -> Result<(Option<i64>, Option<i64>), ApiError> {
        let ws = workspace_id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT MIN(id), MAX(id) FROM changes WHERE workspace_id = ?1",
                params![ws],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)
        })
        .await
    }

    async fn prune_changes(&self, before_ms: i64) -> Result<u64, ApiError> {
        self.with(move |c| {
            c.execute("DELETE FROM changes WHERE at_ms < ?1", params![before_ms])
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn count_sealed(&self, workspace_id: &str) -> Result<u64, ApiError> {
        let ws = workspace_id.to_owned();
        self.read(move |c| {
            let mut n = 0u64;
            for table in SEALED_TABLES {
                n += c
                    .query_row(
                        &format!("SELECT COUNT(*) FROM {table} WHERE workspace_id = ?1"),
                        params![ws],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(db)? as u64;
            }
            Ok(n)
        })
        .await
    }

    async fn list_sealed(
        &self,
        workspace_id: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<StoredSecret>, Option<String>), ApiError> {
        let current = self
            .list_secrets(workspace_id, after.clone(), limit)
            .await?;
        // The page ends at its last key when full; the other tables' rows of the keys up to
        // there (those of deleted secrets included) belong to it.
        let end = (current.len() == limit)
            .then(|| current.last().map(|s| s.key.clone()))
            .flatten();
        let ws = workspace_id.to_owned();
        let bound = end.clone();
        let mut rows = self
            .read(move |c| {
                let mut out = Vec::new();
                let mut args = vec![ws, after.unwrap_or_default()];
                let upper = match bound {
                    Some(end) => {
                        args.push(end);
                        "AND key <= ?3"
                    }
                    None => "",
                };
                for table in &SEALED_TABLES[1..] {
                    let mut st = c
                        .prepare_cached(&format!(
                            "SELECT {SECRET_COLS} FROM {table} WHERE workspace_id = ?1 AND key > ?2 {upper}"
                        ))
                        .map_err(db)?;
                    let found = st
                        .query_map(rusqlite::params_from_iter(&args), secret_row)
                        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                        .map_err(db)?;
                    out.extend(found);
                }
                Ok(out)
            })
            .await?;
        rows.extend(current);
        rows.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        Ok((rows, end))
    }

    async fn sealed_rows(
        &self,
        workspace_id: &str,
        keys: &[String],
    ) -> Result<Vec<StoredSecret>, ApiError> {
        let ws = workspace_id.to_owned();
        let keys = keys.to_vec();
        self.read(move |c| {
            let tx = c.unchecked_transaction().map_err(db)?;
            let mut out = Vec::new();
            for table in SEALED_TABLES {
                let mut st = tx
                    .prepare_cached(&format!(
                        "SELECT {SECRET_COLS} FROM {table} WHERE workspace_id = ?1 AND key = ?2"
                    ))
                    .map_err(db)?;
                for k in &keys {
                    let found = st
                        .query_map(params![ws, k], secret_row)
                        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                        .map_err(db)?;
                    out.extend(found);
                }
            }
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }

    async fn update_keyring(
        &self,
        workspace_id: &str,
        change: KeyringChange,
        event: AuditEvent,
    ) -> Result<Keyring, ApiError> {
        let ws = workspace_id.to_owned();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let stored = stored_keyring(keyring_of(&tx, &ws)?)?;
            let keys = {
                let mut st = tx
                    .prepare(&format!(
                        "SELECT {KEY_COLS} FROM access_keys WHERE workspace_id = ?1 ORDER BY created_ms, id"
                    ))
                    .map_err(db)?;
                let rows = st.query_map(params![ws], key_row).map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)?
            };
            let update = change(stored, &keys)?;
            tx.execute(
                "UPDATE workspaces SET keyring = ?1 WHERE id = ?2",
                params![update.keyring.to_json(), ws],
            )
            .map_err(db)?;
            for (id, grants) in &update.grants {
                tx.execute(
                    "UPDATE access_keys SET wrapped_key = ?1 WHERE workspace_id = ?2 AND id = ?3",
                    params![grants, ws, id],
                )
                .map_err(db)?;
            }
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(update.keyring)
        })
        .await
    }

    async fn replace_ciphertexts(
        &self,
        workspace_id: &str,
        items: Vec<(String, String, String)>,
        event: AuditEvent,
    ) -> Result<Vec<bool>, ApiError> {
        let ws = workspace_id.to_owned();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let mut done = vec![false; items.len()];
            for table in SEALED_TABLES {
                let mut update = tx
                    .prepare_cached(&format!(
                        "UPDATE {table} SET ciphertext = ?1
                         WHERE workspace_id = ?2 AND key = ?3 AND ciphertext = ?4"
                    ))
                    .map_err(db)?;
                for ((key, old, new), done) in items.iter().zip(done.iter_mut()) {
                    *done |= update.execute(params![new, ws, key, old]).map_err(db)? > 0;
                }
            }
            append_chained(&tx, &[event]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(done)
        })
        .await
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), ApiError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(journal) = &self.journal {
            let pending = journal.append(events).map_err(|e| {
                ApiError::unavailable(
                    "the audit trail cannot be written now (the server's disk is full or failing), so nothing is read: try again shortly",
                    &e,
                )
            })?;
            if pending >= MAX_PENDING {
                self.move_journal().await?;
            }
            return Ok(());
        }
        self.record(events, None).await.map(drop)
    }

    /// A read whose rows the [`ReadCache`] holds costs no reader: its events are committed
    /// only if the secrets are still at the generation those rows were read at, checked in
    /// the audit transaction itself (which holds the write lock, so the read happens there).
    /// When they have changed since, or some row is not held, the rows are read (and held)
    /// and the rule applied to them.
    async fn read_secrets(
        &self,
        workspace_id: &str,
        keys: &[SecretKey],
        rule: ReadRule<'_>,
    ) -> Result<ReadAnswers, ApiError> {
        // With a journal, a read commits nothing: it reads the generation (on a reader, which
        // finds the database unchanged between the journal's batches) and appends.
        if self.journal.is_some() {
            return read_and_record(self, workspace_id, keys, &rule).await;
        }
        if let Some((generation, held)) = self.read_cache.held(workspace_id, keys) {
            let (answers, events) = rule(held);
            if !events.is_empty()
                && self.record(events, Some(generation)).await? == Recorded::Committed
            {
                return Ok(answers);
            }
        }
        read_and_record(self, workspace_id, keys, &rule).await
    }

    async fn prune_audit(&self, before_ms: i64) -> Result<u64, ApiError> {
        // `with` moves the journal's pending events first.
        self.with(move |c| {
            c.execute("DELETE FROM audit WHERE at_ms < ?1", params![before_ms])
                .map(|n| n as u64)
                .map_err(db)
        })
        .await
    }

    async fn list_audit(
        &self,
        workspace_id: &str,
        f: &AuditQuery,
    ) -> Result<Vec<AuditEntry>, ApiError> {
        self.move_journal().await?;
        let ws = workspace_id.to_owned();
        let f = f.clone();
        self.read(move |c| {
            let mut st = c.prepare_cached(&list_audit_sql()).map_err(db)?;
            let rows = st
                .query_map(
                    params![
                        ws,
                        f.secret_key,
                        f.access_key_id,
                        f.app,
                        f.env,
                        f.before,
                        f.limit.unwrap_or(AuditQuery::DEFAULT_LIMIT) as i64
                    ],
                    |r| {
                        let e = AuditEvent {
                            at_ms: r.get(1)?,
                            workspace_id: r.get(2)?,
                            access_key_id: r.get(3)?,
                            secret_key: r.get(4)?,
                            action: r.get(5)?,
                            app: r.get(6)?,
                            env: r.get(7)?,
                            claimed_app: r.get(8)?,
                            claimed_env: r.get(9)?,
                            allowed: r.get::<_, i64>(10)? != 0,
                            reason: r.get(11)?,
                            detail: r.get(12)?,
                            keys: AuditEvent::keys_from(r.get(15)?),
                        };
                        Ok(e.entry(r.get(0)?, r.get(13)?, r.get(14)?))
                    },
                )
                .map_err(db)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every read appends an event and looks up the chain's head: neither may sort or scan
    /// an index of all events (with `audit_by_workspace` gone, SQLite would otherwise pick
    /// `audit_by_secret` and sort: reads fell from ~14,000/s to ~1,000/s as events grew).
    #[tokio::test]
    async fn the_chain_head_and_the_listing_walk_the_audit_table_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open(&dir.path().join("db.sqlite")).unwrap();
        for i in 0..50 {
            s.append_audit(vec![event(i)]).await.unwrap();
        }
        let w = s.writer.lock().unwrap();
        let indexes: Vec<String> = w
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["audit_by_secret"]);
        for sql in [CHAIN_HEAD.to_owned(), list_audit_sql()] {
            let mut st = w.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let nulls = vec![rusqlite::types::Null; st.parameter_count()];
            let plan: Vec<String> = st
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(plan, ["SCAN audit"], "{sql}");
        }
    }

    #[test]
    fn a_read_row_is_a_whole_row_less_its_change() {
        // secret_row reads its first columns with read_row.
        assert!(SECRET_COLS.starts_with(&format!("{READ_COLS}, ")));
    }

    fn event(i: usize) -> AuditEvent {
        AuditEvent {
            at_ms: i as i64,
            workspace_id: "ws".into(),
            access_key_id: "k".into(),
            secret_key: format!("S{i}"),
            action: "read".into(),
            allowed: true,
            ..AuditEvent::default()
        }
    }

    #[tokio::test]
    async fn the_in_memory_trail_keeps_the_newest_events_and_still_verifies() {
        let s = SqliteStorage::in_memory_keeping(100).unwrap();
        for i in 0..250 {
            s.append_audit(vec![event(i)]).await.unwrap();
        }
        let q = AuditQuery {
            limit: Some(1000),
            ..AuditQuery::default()
        };
        let mut kept = s.list_audit("ws", &q).await.unwrap();
        assert_eq!(kept.len(), 100);
        assert_eq!(kept[0].secret_key, "S249");
        kept.reverse();
        let v = ductape::audit::verify("ws", &kept).unwrap();
        assert_eq!((v.events, v.from_genesis), (100, false));
    }

    #[tokio::test]
    async fn readers_see_what_the_writer_committed_and_grouped_events_are_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStorage::open_with(&dir.path().join("t.sqlite"), AuditSync::Grouped).unwrap();
        assert!(s.readers.len() >= 2);
        s.append_audit(vec![event(1)]).await.unwrap();
        // A reader connection sees the event at once; a second handle on the file too.
        let q = AuditQuery::default();
        assert_eq!(s.list_audit("ws", &q).await.unwrap().len(), 1);
        let other = Connection::open(dir.path().join("t.sqlite")).unwrap();
        let n: i64 = other
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        // The syncer catches up within its window.
        std::thread::sleep(GROUP_WINDOW * 5);
        assert_eq!(s.wal.behind(), None);
    }

    /// Workspace "ws"'s trail, oldest first (up to 1,000 events), and what verifying it
    /// found: how many events, and whether the chain starts at the genesis.
    async fn oldest_first_verified(s: &SqliteStorage) -> (Vec<AuditEntry>, (usize, bool)) {
        let q = AuditQuery {
            limit: Some(1000),
            ..AuditQuery::default()
        };
        let mut all = s.list_audit("ws", &q).await.unwrap();
        all.reverse();
        let v = ductape::audit::verify("ws", &all).unwrap();
        (all, (v.events, v.from_genesis))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reads_share_commits_and_every_event_is_chained_once() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [AuditSync::Grouped, AuditSync::EveryRead] {
            let path = dir.path().join(format!("{mode:?}.sqlite"));
            let s = SqliteStorage::open_with(&path, mode).unwrap();
            let tasks: Vec<_> = (0..400)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(
                        async move { s.append_audit(vec![event(i), event(i + 1000)]).await },
                    )
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            s.move_journal().await.unwrap();
            let conn = Connection::open(&path).unwrap();
            let (events, distinct): (i64, i64) = conn
                .query_row(
                    "SELECT COUNT(*), COUNT(DISTINCT secret_key) FROM audit",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((events, distinct), (800, 800), "{mode:?}");
            let (all, verified) = oldest_first_verified(&s).await;
            assert_eq!(verified, (800, true), "{mode:?}");
            // A read's two events are next to each other: a group never splits a read.
            for pair in all.windows(2).filter(|w| w[0].secret_key.len() < 5) {
                let n: usize = pair[0].secret_key[1..].parse().unwrap();
                assert_eq!(pair[1].secret_key, format!("S{}", n + 1000), "{mode:?}");
            }
        }
    }

    fn secret(key: &str, version: i64) -> StoredSecret {
        StoredSecret::sample("ws", key, version)
    }

    /// A storage on a file, a second connection on the same file (another process, as far
    /// as the storage can tell) and, written through it, workspace "ws" with secret "A" at
    /// version 1.
    fn storage_and_writer_beside() -> (tempfile::TempDir, SqliteStorage, Connection) {
        storage_and_writer_beside_with(AuditSync::default())
    }

    fn storage_and_writer_beside_with(
        mode: AuditSync,
    ) -> (tempfile::TempDir, SqliteStorage, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let s = SqliteStorage::open_with(&path, mode).unwrap();
        let other = Connection::open(&path).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        other
            .execute(
                "INSERT INTO workspaces (id, name, key_id, created_ms) VALUES ('ws', 'w', 'k', 0)",
                [],
            )
            .unwrap();
        insert_secret(&other, "secrets", &secret("A", 1), "").unwrap();
        (dir, s, other)
    }

    async fn version_read(s: &SqliteStorage, key: &str) -> Option<(i64, String, bool)> {
        let found = s
            .get_secrets("ws", &[SecretKey::parse(key).unwrap()])
            .await
            .unwrap();
        found
            .into_iter()
            .next()
            .map(|r| (r.version, r.ciphertext.clone(), r.revoked))
    }

    #[tokio::test]
    async fn held_rows_are_never_served_after_a_change_whoever_makes_it() {
        // Another process on the same file (a second server, a hand-run statement): only the
        // database's triggers can tell this server of its changes.
        let (_dir, s, other) = storage_and_writer_beside();
        insert_secret(&other, "secrets", &secret("B", 1), "").unwrap();
        let both = ["A", "B"].map(|k| SecretKey::parse(k).unwrap());
        assert_eq!(s.get_secrets("ws", &both).await.unwrap().len(), 2);
        assert_eq!(
            s.get_secrets("ws", &both).await.unwrap().len(),
            2,
            "held now"
        );
        other
            .execute(
                "UPDATE secrets SET ciphertext = 'ct-2', version = 2 WHERE key = 'A'",
                [],
            )
            .unwrap();
        assert_eq!(version_read(&s, "A").await, Some((2, "ct-2".into(), false)));
        other
            .execute("UPDATE secrets SET revoked = 1 WHERE key = 'B'", [])
            .unwrap();
        assert_eq!(version_read(&s, "B").await, Some((1, "ct-1".into(), true)));
        other
            .execute("DELETE FROM secrets WHERE key = 'A'", [])
            .unwrap();
        assert_eq!(version_read(&s, "A").await, None);
        // A change made in a transaction that rolls back changes nothing that is served.
        let tx = other.unchecked_transaction().unwrap();
        tx.execute("UPDATE secrets SET version = 9 WHERE key = 'B'", [])
            .unwrap();
        drop(tx);
        assert_eq!(version_read(&s, "B").await.unwrap().0, 1);
    }

    /// A read of `key` through [`Storage::read_secrets`]: the version it answered, and how
    /// many times its rule was applied (twice when the rows it held had gone stale). Its
    /// event records the version read, in `detail`.
    async fn audited_read(s: &SqliteStorage, key: &str) -> (Option<i64>, usize) {
        let applied = AtomicUsize::new(0);
        let rule: ReadRule = Box::new(|found: Vec<Arc<StoredSecret>>| {
            applied.fetch_add(1, Ordering::Relaxed);
            let version = found.first().map(|r| r.version);
            let event = AuditEvent {
                detail: Some(format!("{version:?}")),
                ..event(0)
            };
            (found.into_iter().map(Ok).collect(), vec![event])
        });
        let answers = s
            .read_secrets("ws", &[SecretKey::parse(key).unwrap()], rule)
            .await
            .unwrap();
        let version = answers.first().map(|a| a.as_ref().unwrap().version);
        (version, applied.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn a_read_whose_event_cannot_be_written_is_refused_with_503_and_nothing_pends() {
        let (_dir, s, other) = storage_and_writer_beside();
        assert_eq!(audited_read(&s, "A").await.0, Some(1));
        s.move_journal().await.unwrap();
        s.journal.as_ref().unwrap().fail_appends();
        let rule: ReadRule = Box::new(|found: Vec<Arc<StoredSecret>>| {
            (found.into_iter().map(Ok).collect(), vec![event(7)])
        });
        let e = s
            .read_secrets("ws", &[SecretKey::parse("A").unwrap()], rule)
            .await
            .expect_err("a read whose event cannot be written answers nothing");
        assert_eq!((e.code, e.status().as_u16()), (ErrorCode::Unavailable, 503));
        assert_eq!(e.retry_after_secs, Some(2));
        assert!(e.message.contains("audit trail"), "{}", e.message);
        assert!(!s.journal.as_ref().unwrap().has_pending());
        s.move_journal().await.unwrap();
        assert_eq!(
            details(&other).len(),
            1,
            "only the first read is in the trail"
        );
    }

    #[test]
    fn a_full_or_failing_disk_or_a_held_lock_is_503_and_other_faults_500() {
        let failure = |code: std::ffi::c_int| {
            db(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                Some("detail".into()),
            ))
        };
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
        ] {
            let e = failure(code);
            assert_eq!(
                (e.code, e.retry_after_secs),
                (ErrorCode::Unavailable, Some(2))
            );
            assert!(!e.message.contains("detail"), "{}", e.message);
        }
        let e = failure(rusqlite::ffi::SQLITE_CORRUPT);
        assert_eq!((e.code, e.status().as_u16()), (ErrorCode::Internal, 500));
        assert_eq!(e.message, "internal server error");
    }

    fn details(other: &Connection) -> Vec<String> {
        let mut st = other
            .prepare("SELECT detail FROM audit ORDER BY id")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn a_read_of_held_rows_records_its_event_only_while_the_secrets_are_unchanged() {
        // Without a journal (every-read; the in-memory server) a read of held rows is checked
        // in its audit transaction; with one, every read checks the generation on a reader.
        for (mode, rereads) in [(AuditSync::EveryRead, 2), (AuditSync::Grouped, 1)] {
            let (_dir, s, other) = storage_and_writer_beside_with(mode);
            // Read from the database (and held), then answered from what is held: one rule
            // each.
            assert_eq!(audited_read(&s, "A").await, (Some(1), 1));
            assert_eq!(audited_read(&s, "A").await, (Some(1), 1));
            // Changed by another process: a held row is judged, found stale when its event
            // is to be committed, and the row read again. Only the event of what was
            // answered is in the trail.
            other
                .execute("UPDATE secrets SET version = 2 WHERE key = 'A'", [])
                .unwrap();
            assert_eq!(audited_read(&s, "A").await, (Some(2), rereads), "{mode:?}");
            assert_eq!(audited_read(&s, "A").await, (Some(2), 1));
            // Under load the same check is made in the committer's groups.
            let reads: Vec<_> = (0..50)
                .map(|_| {
                    let s = s.clone();
                    tokio::spawn(async move { audited_read(&s, "A").await.0 })
                })
                .collect();
            for r in reads {
                assert_eq!(r.await.unwrap(), Some(2));
            }
            s.move_journal().await.unwrap();
            other
                .execute("DELETE FROM secrets WHERE key = 'A'", [])
                .unwrap();
            assert_eq!(audited_read(&s, "A").await, (None, rereads), "{mode:?}");
            s.move_journal().await.unwrap();
            let mut expected = ["Some(1)", "Some(1)", "Some(2)"].map(String::from).to_vec();
            expected.extend(std::iter::repeat_n("Some(2)".to_owned(), 51));
            expected.push("None".into());
            assert_eq!(details(&other), expected, "{mode:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_read_after_a_committed_change_never_sees_the_row_before_it() {
        let (_dir, s, other) = storage_and_writer_beside();
        // Readers keep filling the cache while the row changes under them; after each
        // committed change, a read must see it (or a newer one).
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy: Vec<_> = (0..3)
            .map(|_| {
                let (s, stop) = (s.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        version_read(&s, "A").await.unwrap();
                        audited_read(&s, "A").await;
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for v in 2..=200 {
            other
                .execute("UPDATE secrets SET version = ?1 WHERE key = 'A'", [v])
                .unwrap();
            let seen = version_read(&s, "A").await.unwrap().0;
            assert!(
                seen >= v,
                "read version {seen} after version {v} was committed"
            );
            let (audited, _) = audited_read(&s, "A").await;
            assert!(
                audited >= Some(v),
                "audited read of version {audited:?} after version {v} was committed"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for t in busy {
            t.await.unwrap();
        }
    }

    /// Frames in the WAL now: the second column of a checkpoint that copies nothing new.
    fn wal_frames(c: &Connection) -> i64 {
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    #[tokio::test]
    async fn a_checkpoint_between_commits_has_the_next_commit_write_the_wal_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        // Every read commits (no journal), so the WAL grows by a frame or more a read.
        let s =
            SqliteStorage::open_with(&dir.path().join("t.sqlite"), AuditSync::EveryRead).unwrap();
        for i in 0..300 {
            s.append_audit(vec![event(i)]).await.unwrap();
        }
        let grown = wal_frames(&s.writer.lock().unwrap());
        assert!(grown >= 300, "{grown} frames");
        // A reader in the middle of a read holds its snapshot, older than the newest commit:
        // the checkpoint waits for it (up to CHECKPOINT_WAIT), and leaves the rest for the
        // next turn.
        let reader = Connection::open(dir.path().join("t.sqlite")).unwrap();
        let tx = reader.unchecked_transaction().unwrap();
        tx.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0))
            .unwrap();
        s.append_audit(vec![event(300)]).await.unwrap();
        assert!(
            !checkpoint(&s.writer).unwrap(),
            "not while a reader holds an older snapshot"
        );
        drop(tx);
        drop(reader);
        assert!(checkpoint(&s.writer).unwrap());
        s.append_audit(vec![event(301)]).await.unwrap();
        let after = wal_frames(&s.writer.lock().unwrap());
        assert!(
            after < 10,
            "the WAL started over: {after} frames, {grown} before"
        );
        // Nothing was lost on the way.
        assert_eq!(oldest_first_verified(&s).await.1, (302, true));
    }

    #[tokio::test]
    async fn changes_and_every_read_events_are_on_disk_before_they_return() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [AuditSync::Grouped, AuditSync::EveryRead] {
            let s = SqliteStorage::open_with(&dir.path().join(format!("{mode:?}.sqlite")), mode)
                .unwrap();
            assert!(s.offer_setup_token("hash", false).await.unwrap());
            assert_eq!(s.wal.behind(), None, "{mode:?}: a change returns synced");
            s.append_audit(vec![event(1)]).await.unwrap();
            if mode == AuditSync::EveryRead {
                assert_eq!(s.wal.behind(), None, "every-read: the event returns synced");
            } else {
                std::thread::sleep(GROUP_WINDOW * 5);
                assert_eq!(s.wal.behind(), None, "grouped: synced within the window");
            }
        }
    }
}
