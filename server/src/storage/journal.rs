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
//! The journal is a series of segment files, `<database>-audit.<n>`, one line of JSON per
//! read. A new segment is started once the current one passes [`SEGMENT_BYTES`]; a segment
//! is deleted once everything in it is in the table, on disk. The table `audit_journal`
//! records, in the transaction that moves the events, the segment and the length of it
//! moved so far: on start, whatever lies beyond is moved before anything else (a line cut
//! short by a crash in the middle of its `write` was never acknowledged, and is dropped).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::AuditEvent;

/// Past this size, the next batch moved into the table starts a new segment.
const SEGMENT_BYTES: u64 = 4 << 20;

/// Events pending at most: a read that finds this many moves them itself before it answers,
/// so the journal and the memory it takes stay bounded when reads outrun the moves.
pub(super) const MAX_PENDING: usize = 16_384;

pub(super) struct AuditJournal {
    /// `<database>-audit`; segment `n` is `<prefix>.<n>`.
    prefix: PathBuf,
    /// `<prefix>.lock`, locked while this journal is open: a second server on the same
    /// database would move (and delete) the segments this one appends to.
    _lock: File,
    state: Mutex<State>,
    /// One batch at a time moves into the table, in order.
    moving: Mutex<()>,
}

struct State {
    file: File,
    segment: u64,
    /// Bytes written to the current segment.
    len: u64,
    /// Appended, not yet in the table, in order.
    pending: Vec<AuditEvent>,
    /// Appended since the last fsync.
    unsynced: bool,
}

impl AuditJournal {
    /// Opens the journal of the database at `db`, first moving into its table (through
    /// `w`, in one transaction) whatever earlier runs appended and did not move, and
    /// deleting their segments once that is on disk (`durable`).
    pub(super) fn open(
        db: &Path,
        w: &mut Connection,
        durable: impl FnOnce() -> Result<(), String>,
    ) -> Result<Self, String> {
        let prefix = PathBuf::from(format!("{}-audit", db.display()));
        let _lock = lock(&prefix)?;
        let (moved_segment, moved_len) = moved_so_far(w).map_err(|e| e.to_string())?;
        let mut segments = segments(&prefix)?;
        segments.sort_unstable();
        let mut events = Vec::new();
        let mut last = (moved_segment, moved_len);
        for &n in &segments {
            if n < moved_segment {
                continue;
            }
            let skip = if n == moved_segment { moved_len } else { 0 };
            let (read, len) = read_segment(&segment_path(&prefix, n), skip)?;
            events.extend(read);
            last = (n, len);
        }
        if !events.is_empty() {
            move_events(w, &events, last.0, last.1).map_err(|e| e.to_string())?;
        }
        // On disk before the segments go.
        durable()?;
        for n in segments {
            let path = segment_path(&prefix, n);
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
        let segment = last.0 + 1;
        let file = create_segment(&prefix, segment)?;
        // The table says where the new segment starts, so that a run that ends before its
        // first batch does not move the old segments' lines again.
        move_events(w, &[], segment, 0).map_err(|e| e.to_string())?;
        Ok(AuditJournal {
            prefix,
            _lock,
            state: Mutex::new(State {
                file,
                segment,
                len: 0,
                pending: Vec::new(),
                unsynced: false,
            }),
            moving: Mutex::new(()),
        })
    }

    /// Appends a read's events: once this returns, they survive the server being killed.
    /// Returns how many events are pending now.
    pub(super) fn append(&self, events: Vec<AuditEvent>) -> Result<usize, String> {
        let mut line = Vec::with_capacity(320 * events.len());
        serde_json::to_writer(&mut line, &events).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = s.file.write_all(&line) {
            // A short write leaves part of a line: cut it off, so the next line starts clean.
            let len = s.len;
            let _ = s.file.set_len(len);
            return Err(format!("cannot append to the audit journal: {e}"));
        }
        s.len += line.len() as u64;
        s.pending.extend(events);
        s.unsynced = true;
        Ok(s.pending.len())
    }

    /// fsyncs what was appended since the last call.
    pub(super) fn sync(&self) -> Result<(), String> {
        let file = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if !std::mem::take(&mut s.unsynced) {
                return Ok(());
            }
            s.file.try_clone()
        };
        file.and_then(|f| f.sync_data())
            .map_err(|e| format!("cannot sync the audit journal: {e}"))
    }

    /// Moves what is pending into the audit table through `w` (the writer, held by the
    /// caller), in one transaction, and, when a segment is full, starts the next one and
    /// deletes the full one once the move is on disk (`durable`).
    pub(super) fn move_pending(
        &self,
        w: &mut Connection,
        durable: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let _one = self.moving.lock().unwrap_or_else(|e| e.into_inner());
        let (events, segment, len, full) = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let taken = std::mem::take(&mut s.pending);
            let at = (s.segment, s.len);
            let full = if s.len >= SEGMENT_BYTES {
                s.file = create_segment(&self.prefix, s.segment + 1)?;
                s.segment += 1;
                s.len = 0;
                Some(at.0)
            } else {
                None
            };
            (taken, at.0, at.1, full)
        };
        if !events.is_empty() || full.is_some() {
            if let Err(e) = move_events(w, &events, segment, len) {
                // Back in front of what came since, to be moved next time.
                let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let newer = std::mem::replace(&mut s.pending, events);
                s.pending.extend(newer);
                return Err(e.to_string());
            }
        }
        if let Some(done) = full {
            durable()?;
            let path = segment_path(&self.prefix, done);
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Whether anything appended is not yet in the table: pending, or taken by a move that
    /// has not committed yet (a listing must wait for that one too, or page past its events).
    pub(super) fn has_pending(&self) -> bool {
        if self.moving.try_lock().is_err() {
            return true;
        }
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        !s.pending.is_empty()
    }
}

/// Chains `events` into the audit table and records that the journal is moved up to byte
/// `len` of `segment`, in one transaction.
fn move_events(
    w: &mut Connection,
    events: &[AuditEvent],
    segment: u64,
    len: u64,
) -> rusqlite::Result<()> {
    let tx = w.transaction_with_behavior(TransactionBehavior::Immediate)?;
    super::sqlite::append_chained(&tx, events)?;
    tx.prepare_cached(
        "INSERT INTO audit_journal (id, segment, moved) VALUES (0, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET segment = excluded.segment, moved = excluded.moved",
    )?
    .execute(params![segment as i64, len as i64])?;
    tx.commit()
}

/// The segment and the length of it the table holds (all of the earlier segments).
fn moved_so_far(w: &Connection) -> rusqlite::Result<(u64, u64)> {
    let row: Option<(i64, i64)> = w
        .query_row(
            "SELECT segment, moved FROM audit_journal WHERE id = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (segment, moved) = row.unwrap_or((0, 0));
    Ok((segment as u64, moved as u64))
}

fn segment_path(prefix: &Path, n: u64) -> PathBuf {
    PathBuf::from(format!("{}.{n}", prefix.display()))
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

/// The numbers of the segments on disk.
fn segments(prefix: &Path) -> Result<Vec<u64>, String> {
    let dir = prefix.parent().unwrap_or(Path::new("."));
    let name = prefix
        .file_name()
        .map(|n| format!("{}.", n.to_string_lossy()))
        .unwrap_or_default();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    Ok(entries
        .filter_map(|e| {
            let file = e.ok()?.file_name();
            file.to_str()?.strip_prefix(&name)?.parse().ok()
        })
        .collect())
}

/// The events of a segment's whole lines from byte `skip` on, and the length they end at.
/// A last line cut short (a crash in the middle of its `write`: never acknowledged) ends it.
fn read_segment(path: &Path, skip: u64) -> Result<(Vec<AuditEvent>, u64), String> {
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
            Ok(read) => events.extend(read),
            Err(_) => break,
        }
        len += n as u64;
    }
    Ok((events, len))
}

fn create_segment(prefix: &Path, n: u64) -> Result<File, String> {
    let path = segment_path(prefix, n);
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

    /// The journal opened as a server opens it (what it moves needs no sync in a test).
    fn reopen(path: &Path, conn: &mut Connection) -> Result<AuditJournal, String> {
        AuditJournal::open(path, conn, || Ok(()))
    }

    fn read_of(key: &str) -> Vec<AuditEvent> {
        vec![AuditEvent {
            at_ms: 1,
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

    fn segment_files(path: &Path) -> Vec<u64> {
        let mut n = segments(&PathBuf::from(format!("{}-audit", path.display()))).unwrap();
        n.sort_unstable();
        n
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
        let taken = std::mem::take(&mut j.state.lock().unwrap().pending);
        assert!(j.has_pending());
        j.state.lock().unwrap().pending = taken;
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
        let segment = segment_path(&PathBuf::from(format!("{}-audit", path.display())), 1);
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
        while j.state.lock().unwrap().len < SEGMENT_BYTES {
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
}
