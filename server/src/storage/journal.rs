//! Read events on their way into a SQLite audit table: appended to a journal file before the
//! value leaves, moved into the table in batches.
//!
//! Committing a read's event to SQLite wrote ~2 pages (8 KB) of WAL per read, with its
//! locks, checksums and page-cache work: half the CPU of a single-connection read (~24 µs of
//! its ~85 µs), and ~350 MB/s of WAL at 16 connections. Appending the event to a file is one
//! `write` of ~300 bytes; once it returns, the event is in the kernel's page cache, so it
//! survives the server being killed (`kill -9`), as a committed one did. The WAL thread
//! fsyncs the journal within [`super::sqlite::GROUP_WINDOW`] (the power-loss window of
//! `--audit-sync grouped`) and moves what was appended into the audit table, one transaction
//! for all of it, chained as any event is. Anything that reads the table (the listing,
//! verification, pruning) and every change (whose own event is chained in its transaction)
//! first moves what is pending, so the trail reads as if each event had been committed.
//!
//! The journal is in shards, one per core up to [`MAX_SHARDS`]: each thread appends to its
//! own shard (the server's workers, one per core, each to their own), so reads on different
//! cores do not wait for one lock or one file. A shard is a series of segment files, `<database>-audit.<n>`
//! for shard 0 and `<database>-audit-<s>.<n>` for shard `s`, one line of JSON per read. A
//! move takes what every shard holds and chains it in the order the events happened. A new
//! segment is started once the current one passes [`SEGMENT_BYTES`]; a segment is deleted
//! once everything in it is in the table, on disk. The table `audit_journal` records, in the
//! transaction that moves the events, each shard's segment and the length of it moved so
//! far: on start, whatever lies beyond, in every shard (a run with more cores may have left
//! more), is moved before anything else (a line cut short by a crash in the middle of its
//! `write` was never acknowledged, and is dropped).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection, TransactionBehavior};

use super::AuditEvent;

/// Past this size, the next batch moved into the table starts a new segment.
const SEGMENT_BYTES: u64 = 4 << 20;

/// Events pending at most: a read that finds this many moves them itself before it answers,
/// so the journal and the memory it takes stay bounded when reads outrun the moves.
pub(super) const MAX_PENDING: usize = 16_384;

/// The most shards a journal has. The WAL thread fsyncs each shard written to within
/// [`super::sqlite::GROUP_WINDOW`], one after another, so shards are not free; eight keep
/// that to eight fsyncs a window, and an append holds its shard's lock for one `write`
/// (~2–3 µs): eight shards take ~3 million reads a second before their locks are busy, far
/// more than a server reads (~50,000/s a core).
pub(super) const MAX_SHARDS: usize = 8;

pub(super) struct AuditJournal {
    /// `<database>-audit`; segment `n` of shard `s` is `<prefix>.<n>` for shard 0 (the
    /// journal of schema v9) and `<prefix>-<s>.<n>` for the others.
    prefix: PathBuf,
    /// `<prefix>.lock`, locked while this journal is open: a second server on the same
    /// database would move (and delete) the segments this one appends to.
    _lock: File,
    /// Each thread appends to one shard ([`this_threads_shard`]): with a shard per core,
    /// reads on different cores do not wait for each other's `write`.
    shards: Vec<Mutex<Shard>>,
    /// Events appended and not yet taken by a move, in all shards (changed under the lock
    /// of the shard they are in).
    pending: AtomicUsize,
    /// One batch at a time moves into the table, in order.
    moving: Mutex<()>,
}

struct Shard {
    file: File,
    segment: u64,
    /// Bytes written to the current segment.
    len: u64,
    /// Appended, not yet in the table, in order: the events of each read (a line).
    pending: Vec<Vec<AuditEvent>>,
    /// Appended since the last fsync.
    unsynced: bool,
}

/// How far a shard's journal is in the table: every segment before `segment`, and the first
/// `len` bytes of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Moved {
    segment: u64,
    len: u64,
}

impl AuditJournal {
    /// Opens the journal of the database at `db` with `shards` shards, first moving into
    /// its table (through `w`, in one transaction, in the order they happened) the events
    /// earlier runs appended to any shard and did not move, and deleting their segments once
    /// that is on disk (`durable`).
    pub(super) fn open(
        db: &Path,
        w: &mut Connection,
        shards: usize,
        durable: impl FnOnce() -> Result<(), String>,
    ) -> Result<Self, String> {
        let shards = shards.clamp(1, MAX_SHARDS);
        let prefix = PathBuf::from(format!("{}-audit", db.display()));
        let _lock = lock(&prefix)?;
        let mut at = moved_so_far(w).map_err(|e| e.to_string())?;
        let on_disk = segments(&prefix)?;
        let mut lines = Vec::new();
        for (&s, numbers) in &on_disk {
            let from = at.get(&s).copied().unwrap_or_default();
            for &n in numbers.iter().filter(|&&n| n >= from.segment) {
                let skip = if n == from.segment { from.len } else { 0 };
                let (read, len) = read_segment(&segment_path(&prefix, s, n), skip)?;
                lines.extend(read);
                at.insert(s, Moved { segment: n, len });
            }
        }
        if !lines.is_empty() {
            move_events(w, &in_time_order(lines), &at, None).map_err(|e| e.to_string())?;
        }
        // On disk before the segments go.
        durable()?;
        for (&s, numbers) in &on_disk {
            for &n in numbers {
                remove_segment(&prefix, s, n)?;
            }
        }
        let mut opened = Vec::with_capacity(shards);
        let mut starts = BTreeMap::new();
        for s in 0..shards as u64 {
            let segment = at.get(&s).map_or(0, |m| m.segment) + 1;
            opened.push(Mutex::new(Shard {
                file: create_segment(&prefix, s, segment)?,
                segment,
                len: 0,
                pending: Vec::new(),
                unsynced: false,
            }));
            starts.insert(s, Moved { segment, len: 0 });
        }
        // The table says where the new segments start (and forgets shards a run with more
        // of them left), so that a run that ends before its first batch does not move the
        // old segments' lines again.
        move_events(w, &[], &starts, Some(shards as u64)).map_err(|e| e.to_string())?;
        Ok(AuditJournal {
            prefix,
            _lock,
            shards: opened,
            pending: AtomicUsize::new(0),
            moving: Mutex::new(()),
        })
    }

    /// Appends a read's events to this thread's shard: once this returns, they survive the
    /// server being killed. Returns how many events are pending now, in all shards.
    pub(super) fn append(&self, events: Vec<AuditEvent>) -> Result<usize, String> {
        self.append_to(this_threads_shard() % self.shards.len(), events)
    }

    fn append_to(&self, shard: usize, events: Vec<AuditEvent>) -> Result<usize, String> {
        let mut line = Vec::with_capacity(320 * events.len());
        serde_json::to_writer(&mut line, &events).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut s = self.shard(shard);
        if let Err(e) = s.file.write_all(&line) {
            // A short write leaves part of a line: cut it off, so the next line starts clean.
            let len = s.len;
            let _ = s.file.set_len(len);
            return Err(format!("cannot append to the audit journal: {e}"));
        }
        s.len += line.len() as u64;
        let added = events.len();
        s.pending.push(events);
        s.unsynced = true;
        Ok(self.pending.fetch_add(added, Ordering::SeqCst) + added)
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// fsyncs what was appended to each shard since the last call.
    pub(super) fn sync(&self) -> Result<(), String> {
        for i in 0..self.shards.len() {
            let file = {
                let mut s = self.shard(i);
                if !std::mem::take(&mut s.unsynced) {
                    continue;
                }
                s.file.try_clone()
            };
            if let Err(e) = file.and_then(|f| f.sync_data()) {
                // Still to sync: the next call tries again.
                self.shard(i).unsynced = true;
                return Err(format!("cannot sync the audit journal: {e}"));
            }
        }
        Ok(())
    }

    /// Moves what is pending in every shard into the audit table through `w` (the writer,
    /// held by the caller), in one transaction and in the order the events happened, and,
    /// when a shard's segment is full, starts its next one and deletes the full one once the
    /// move is on disk (`durable`).
    pub(super) fn move_pending(
        &self,
        w: &mut Connection,
        durable: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let _one = self.moving.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        let mut at = BTreeMap::new();
        let mut full = Vec::new();
        for i in 0..self.shards.len() {
            // A full segment's successor is made before the shard is locked to swap it in:
            // making it syncs the directory, which no append should wait for. Only a move
            // starts segments, and this one holds `moving`.
            let full_at = {
                let s = self.shard(i);
                (s.len >= SEGMENT_BYTES).then_some(s.segment)
            };
            let next = full_at
                .map(|n| create_segment(&self.prefix, i as u64, n + 1))
                .transpose()?;
            let mut s = self.shard(i);
            self.pending
                .fetch_sub(s.pending.iter().map(Vec::len).sum(), Ordering::SeqCst);
            lines.append(&mut s.pending);
            at.insert(
                i as u64,
                Moved {
                    segment: s.segment,
                    len: s.len,
                },
            );
            if let Some(file) = next {
                full.push((i as u64, s.segment));
                s.file = file;
                s.segment += 1;
                s.len = 0;
            }
        }
        if lines.is_empty() && full.is_empty() {
            return Ok(());
        }
        let events = in_time_order(lines);
        if let Err(e) = move_events(w, &events, &at, None) {
            // Back in front of what came since, to be moved next time (the table still
            // says they are not moved, so a crash meanwhile moves them from the files).
            let mut s = self.shard(0);
            self.pending.fetch_add(events.len(), Ordering::SeqCst);
            let newer = std::mem::replace(&mut s.pending, vec![events]);
            s.pending.extend(newer);
            return Err(e.to_string());
        }
        if !full.is_empty() {
            durable()?;
            for (s, n) in full {
                remove_segment(&self.prefix, s, n)?;
            }
        }
        Ok(())
    }

    /// Whether anything appended is not yet in the table: pending, or taken by a move that
    /// has not committed yet (a listing must wait for that one too, or page past its events).
    pub(super) fn has_pending(&self) -> bool {
        self.moving.try_lock().is_err() || self.pending.load(Ordering::SeqCst) > 0
    }
}

#[cfg(test)]
impl AuditJournal {
    /// Makes every append fail as on a full disk: each shard's segment reopened read-only.
    pub(super) fn fail_appends(&self) {
        for i in 0..self.shards.len() {
            let mut s = self.shard(i);
            s.file = File::open(segment_path(&self.prefix, i as u64, s.segment)).unwrap();
        }
    }
}

/// The shard this thread appends to: threads are numbered as they first append, so the
/// server's workers (one per core) each have a shard of their own.
fn this_threads_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    MINE.with(|mine| *mine)
}

/// The reads of several shards, each in the order it was appended, in the order they
/// happened: by the time of each read's first event (a stable sort, so reads of the same
/// millisecond keep their shard's order), each read's events together.
fn in_time_order(mut lines: Vec<Vec<AuditEvent>>) -> Vec<AuditEvent> {
    lines.sort_by_key(|line| line.first().map(|e| e.at_ms));
    lines.into_iter().flatten().collect()
}

/// Chains `events` into the audit table and records how far each shard in `at` is moved,
/// in one transaction; with `shards`, forgets the shards from that number on.
fn move_events(
    w: &mut Connection,
    events: &[AuditEvent],
    at: &BTreeMap<u64, Moved>,
    shards: Option<u64>,
) -> rusqlite::Result<()> {
    let tx = w.transaction_with_behavior(TransactionBehavior::Immediate)?;
    super::sqlite::append_chained(&tx, events)?;
    {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO audit_journal (id, segment, moved) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, moved = excluded.moved",
        )?;
        for (&s, m) in at {
            upsert.execute(params![s as i64, m.segment as i64, m.len as i64])?;
        }
    }
    if let Some(n) = shards {
        tx.execute(
            "DELETE FROM audit_journal WHERE id >= ?1",
            params![n as i64],
        )?;
    }
    tx.commit()
}

/// How far each shard's journal is in the table.
fn moved_so_far(w: &Connection) -> rusqlite::Result<BTreeMap<u64, Moved>> {
    let mut st = w.prepare("SELECT id, segment, moved FROM audit_journal")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            Moved {
                segment: r.get::<_, i64>(1)? as u64,
                len: r.get::<_, i64>(2)? as u64,
            },
        ))
    })?;
    rows.collect()
}

fn segment_path(prefix: &Path, shard: u64, n: u64) -> PathBuf {
    match shard {
        0 => PathBuf::from(format!("{}.{n}", prefix.display())),
        s => PathBuf::from(format!("{}-{s}.{n}", prefix.display())),
    }
}

/// Takes the journal's lock file, or says that another server holds it.
fn lock(prefix: &Path) -> Result<File, String> {
    let path = PathBuf::from(format!("{}.lock", prefix.display()));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                format!(
                    "another server is running on this database ({} is locked); stop it first",
                    path.display()
                )
            } else {
                format!("cannot lock {}: {e}", path.display())
            });
        }
    }
    Ok(file)
}

/// The segments on disk: each shard's numbers, in order.
fn segments(prefix: &Path) -> Result<BTreeMap<u64, Vec<u64>>, String> {
    let dir = prefix.parent().unwrap_or(Path::new("."));
    let name = prefix
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut found: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&name)) else {
            continue;
        };
        // `.<n>` (shard 0) or `-<s>.<n>`; anything else (the lock file) is not a segment.
        let parsed = match rest.strip_prefix('-') {
            Some(sharded) => sharded
                .split_once('.')
                .and_then(|(s, n)| Some((s.parse().ok()?, n.parse().ok()?))),
            None => rest
                .strip_prefix('.')
                .and_then(|n| Some((0, n.parse().ok()?))),
        };
        if let Some((s, n)) = parsed {
            found.entry(s).or_default().push(n);
        }
    }
    for numbers in found.values_mut() {
        numbers.sort_unstable();
    }
    Ok(found)
}

/// The events of a segment's whole lines from byte `skip` on, and the length they end at.
/// A last line cut short (a crash in the middle of its `write`: never acknowledged) ends it.
fn read_segment(path: &Path, skip: u64) -> Result<(Vec<Vec<AuditEvent>>, u64), String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader = BufReader::new(file);
    std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(skip))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (mut events, mut len, mut line) = (Vec::new(), skip, Vec::new());
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        match serde_json::from_slice::<Vec<AuditEvent>>(&line) {
            Ok(read) => events.push(read),
            Err(_) => break,
        }
        len += n as u64;
    }
    Ok((events, len))
}

fn remove_segment(prefix: &Path, shard: u64, n: u64) -> Result<(), String> {
    let path = segment_path(prefix, shard, n);
    std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

fn create_segment(prefix: &Path, shard: u64, n: u64) -> Result<File, String> {
    let path = segment_path(prefix, shard, n);
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // The new name on disk, so that a power loss cannot lose the file with what it holds.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", dir.display()))?;
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::{AuditSync, SqliteStorage};

    /// A database file with the schema, and a connection to it (the storage that made it
    /// is gone: nothing moves the journal but the test).
    fn database() -> (tempfile::TempDir, PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        drop(SqliteStorage::open_with(&path, AuditSync::EveryRead).unwrap());
        let conn = Connection::open(&path).unwrap();
        (dir, path, conn)
    }

    /// The journal opened as a server opens it, with one shard (what it moves needs no
    /// sync in a test).
    fn reopen(path: &Path, conn: &mut Connection) -> Result<AuditJournal, String> {
        reopen_sharded(path, conn, 1)
    }

    fn reopen_sharded(
        path: &Path,
        conn: &mut Connection,
        shards: usize,
    ) -> Result<AuditJournal, String> {
        AuditJournal::open(path, conn, shards, || Ok(()))
    }

    fn read_of(key: &str) -> Vec<AuditEvent> {
        read_at(key, 1)
    }

    fn read_at(key: &str, at_ms: i64) -> Vec<AuditEvent> {
        vec![AuditEvent {
            at_ms,
            workspace_id: "ws".into(),
            access_key_id: "k".into(),
            secret_key: key.into(),
            action: "read".into(),
            allowed: true,
            ..AuditEvent::default()
        }]
    }

    /// The audit table's keys in id order, and whether its chain holds from the genesis.
    fn table(conn: &Connection) -> (Vec<String>, bool) {
        let mut st = conn
            .prepare("SELECT secret_key, prev_hash, hash FROM audit ORDER BY id")
            .unwrap();
        let rows: Vec<(String, String, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut prev = ductape::audit::GENESIS.to_owned();
        let chained = rows.iter().all(|(_, p, h)| {
            let ok = *p == prev;
            prev = h.clone();
            ok
        });
        (rows.into_iter().map(|(k, _, _)| k).collect(), chained)
    }

    fn prefix(path: &Path) -> PathBuf {
        PathBuf::from(format!("{}-audit", path.display()))
    }

    /// Shard 0's segments on disk.
    fn segment_files(path: &Path) -> Vec<u64> {
        segments(&prefix(path))
            .unwrap()
            .remove(&0)
            .unwrap_or_default()
    }

    #[test]
    fn what_a_crash_left_unmoved_is_moved_on_the_next_start_once() {
        let (_dir, path, mut conn) = database();
        let j = reopen(&path, &mut conn).unwrap();
        j.append(read_of("A")).unwrap();
        j.move_pending(&mut conn, || Ok(())).unwrap();
        j.append(read_of("B")).unwrap();
        j.append(read_of("C")).unwrap();
        assert_eq!(table(&conn).0, ["A"]);
        // Killed: B and C are only in the journal's file.
        drop(j);
        let j = reopen(&path, &mut conn).unwrap();
        assert_eq!(
            table(&conn),
            (vec!["A".into(), "B".into(), "C".into()], true)
        );
        assert_eq!(segment_files(&path).len(), 1, "the old segment is gone");
        // Started again before its first batch: nothing is moved twice.
        drop(j);
        let _j = reopen(&path, &mut conn).unwrap();
        assert_eq!(table(&conn).0, ["A", "B", "C"]);
    }

    #[test]
    fn events_taken_by_a_move_not_yet_committed_still_count_as_pending() {
        let (_dir, path, mut conn) = database();
        let j = reopen(&path, &mut conn).unwrap();
        assert!(!j.has_pending());
        j.append(read_of("A")).unwrap();
        assert!(j.has_pending());
        // A move under way has taken them out of `pending`: a listing must still wait for it.
        let moving = j.moving.lock().unwrap();
        let taken = std::mem::take(&mut j.shard(0).pending);
        assert!(j.has_pending());
        j.shard(0).pending = taken;
        drop(moving);
        j.move_pending(&mut conn, || Ok(())).unwrap();
        assert!(!j.has_pending());
        assert_eq!(table(&conn).0, ["A"]);
    }

    #[test]
    fn a_second_journal_on_the_same_database_is_refused_while_the_first_is_open() {
        let (_dir, path, mut conn) = database();
        let first = reopen(&path, &mut conn).unwrap();
        let mut other = Connection::open(&path).unwrap();
        let refused = reopen(&path, &mut other).err().unwrap();
        assert!(refused.contains("another server is running"), "{refused}");
        first.append(read_of("A")).unwrap();
        // Gone (stopped, or killed: the kernel drops the lock): the next one opens.
        drop(first);
        let _next = reopen(&path, &mut other).unwrap();
        assert_eq!(table(&other).0, ["A"]);
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_dropped_and_the_journal_goes_on() {
        let (_dir, path, mut conn) = database();
        let j = reopen(&path, &mut conn).unwrap();
        j.append(read_of("A")).unwrap();
        j.append(read_of("B")).unwrap();
        let segment = segment_path(&prefix(&path), 0, 1);
        drop(j);
        // A write cut off in the middle (never acknowledged: its read had not answered).
        let mut f = OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(br#"[{"at_ms":1,"workspace_id":"ws","#).unwrap();
        drop(f);
        let j = reopen(&path, &mut conn).unwrap();
        assert_eq!(table(&conn), (vec!["A".into(), "B".into()], true));
        j.append(read_of("C")).unwrap();
        drop(j);
        let _j = reopen(&path, &mut conn).unwrap();
        assert_eq!(
            table(&conn),
            (vec!["A".into(), "B".into(), "C".into()], true)
        );
    }

    #[test]
    fn a_full_segment_is_deleted_once_its_events_are_in_the_table() {
        let (_dir, path, mut conn) = database();
        let j = reopen(&path, &mut conn).unwrap();
        let first = segment_files(&path);
        let mut n = 0;
        while j.shard(0).len < SEGMENT_BYTES {
            j.append(read_of(&format!("K{n}"))).unwrap();
            n += 1;
        }
        let mut synced = false;
        j.move_pending(&mut conn, || {
            synced = true;
            Ok(())
        })
        .unwrap();
        assert!(synced, "the move is on disk before the segment goes");
        let now = segment_files(&path);
        assert_eq!(now.len(), 1);
        assert!(now[0] > first[0]);
        j.append(read_of("LAST")).unwrap();
        drop(j);
        let _j = reopen(&path, &mut conn).unwrap();
        let (keys, chained) = table(&conn);
        assert_eq!((keys.len(), chained), (n + 1, true));
        assert_eq!(keys.last().map(String::as_str), Some("LAST"));
    }

    /// The shards' rows in `audit_journal`.
    fn rows(conn: &Connection) -> Vec<(u64, Moved)> {
        moved_so_far(conn).unwrap().into_iter().collect()
    }

    #[test]
    fn the_shards_events_are_moved_together_in_the_order_they_happened() {
        let (_dir, path, mut conn) = database();
        let j = reopen_sharded(&path, &mut conn, 3).unwrap();
        assert_eq!(j.append_to(2, read_at("C", 30)).unwrap(), 1);
        assert_eq!(j.append_to(0, read_at("A", 10)).unwrap(), 2);
        assert_eq!(j.append_to(1, read_at("B", 20)).unwrap(), 3);
        assert_eq!(
            j.append_to(0, read_at("D", 40)).unwrap(),
            4,
            "pending in all shards"
        );
        assert!(j.has_pending());
        j.move_pending(&mut conn, || Ok(())).unwrap();
        assert!(!j.has_pending());
        assert_eq!(
            table(&conn),
            (vec!["A".into(), "B".into(), "C".into(), "D".into()], true)
        );
        // Each shard wrote its own file, and the table says how far each is moved.
        let on_disk = segments(&prefix(&path)).unwrap();
        assert_eq!(on_disk.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        let moved: Vec<u64> = rows(&conn).iter().map(|(_, m)| m.len).collect();
        assert!(moved.iter().all(|&len| len > 0), "{moved:?}");
        // Read events name keys, apps and access keys: every shard's file is the owner's alone.
        #[cfg(unix)]
        for (s, numbers) in &on_disk {
            use std::os::unix::fs::PermissionsExt;
            let path = segment_path(&prefix(&path), *s, numbers[0]);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }

    #[test]
    fn a_crash_with_more_shards_is_recovered_by_a_start_with_fewer() {
        let (_dir, path, mut conn) = database();
        let j = reopen_sharded(&path, &mut conn, 4).unwrap();
        j.append_to(3, read_at("A", 1)).unwrap();
        j.move_pending(&mut conn, || Ok(())).unwrap();
        j.append_to(3, read_at("D", 4)).unwrap();
        j.append_to(1, read_at("B", 2)).unwrap();
        j.append_to(2, read_at("C", 3)).unwrap();
        // Killed with three events only in shards 1 to 3; started again on fewer cores.
        drop(j);
        let j = reopen_sharded(&path, &mut conn, 2).unwrap();
        assert_eq!(
            table(&conn),
            (vec!["A".into(), "B".into(), "C".into(), "D".into()], true)
        );
        let on_disk = segments(&prefix(&path)).unwrap();
        assert_eq!(on_disk.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(rows(&conn).len(), 2, "the rows of shards 2 and 3 are gone");
        // Again with more shards than ever: nothing is moved twice.
        j.append_to(1, read_at("E", 5)).unwrap();
        drop(j);
        let _j = reopen_sharded(&path, &mut conn, 5).unwrap();
        assert_eq!(table(&conn).0, ["A", "B", "C", "D", "E"]);
        assert_eq!(rows(&conn).len(), 5);
    }

    #[test]
    fn threads_append_to_shards_of_their_own() {
        let (_dir, path, mut conn) = database();
        let j = reopen_sharded(&path, &mut conn, 4).unwrap();
        // Eight threads are eight numbers, so at least two shards (usually all four).
        std::thread::scope(|s| {
            for i in 0..8 {
                let j = &j;
                s.spawn(move || j.append(read_at(&format!("K{i}"), i)).unwrap());
            }
        });
        let used = (0..4).filter(|&i| j.shard(i).len > 0).count();
        assert!(used >= 2, "{used} shard(s) used");
        j.move_pending(&mut conn, || Ok(())).unwrap();
        assert_eq!(table(&conn).0.len(), 8);
    }

    #[test]
    fn a_schema_v9_journal_row_is_shard_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let conn = Connection::open(&path).unwrap();
        for m in &super::super::sqlite::MIGRATIONS[..9] {
            conn.execute_batch(m).unwrap();
        }
        conn.execute(
            "INSERT INTO audit_journal (id, segment, moved) VALUES (0, 7, 123)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 9).unwrap();
        drop(conn);
        drop(SqliteStorage::open_with(&path, AuditSync::EveryRead).unwrap());
        let conn = Connection::open(&path).unwrap();
        assert_eq!(
            rows(&conn),
            [(
                0,
                Moved {
                    segment: 7,
                    len: 123
                }
            )]
        );
        // A second shard has a row of its own now.
        conn.execute(
            "INSERT INTO audit_journal (id, segment, moved) VALUES (1, 1, 0)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn a_move_that_fails_leaves_every_event_pending_for_the_next() {
        let (_dir, path, mut conn) = database();
        let j = reopen_sharded(&path, &mut conn, 2).unwrap();
        j.append_to(1, read_at("B", 2)).unwrap();
        j.append_to(0, read_at("A", 1)).unwrap();
        // Another connection holds the write lock: the move cannot begin.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();
        assert!(j.move_pending(&mut conn, || Ok(())).is_err());
        assert!(j.has_pending());
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(j.append_to(1, read_at("C", 3)).unwrap(), 3);
        j.move_pending(&mut conn, || Ok(())).unwrap();
        assert!(!j.has_pending());
        assert_eq!(
            table(&conn),
            (vec!["A".into(), "B".into(), "C".into()], true)
        );
        // Nothing is moved again by the next start.
        drop(j);
        let _j = reopen_sharded(&path, &mut conn, 2).unwrap();
        assert_eq!(table(&conn).0, ["A", "B", "C"]);
    }
}
