//! The secrets a SQLite server has read, kept in memory while they cannot have changed.
//!
//! Every change to the `secrets` table moves a counter, the *generation*, in the same
//! transaction (triggers of schema v7, so a change made by anyone — another process on the
//! file included — moves it). A read first reads the generation, then looks its keys up
//! here: the rows held are served only if they were read at that same generation. Rows
//! read from the database are added under the generation read *before* them, so a row is
//! never older than the generation it is held under; a newer generation empties the cache.
//! A change acknowledged to its client has moved the generation, so every read that starts
//! after it misses and reads the database.
//!
//! Only what the database holds is kept (ciphertext and metadata, never a plaintext), at most
//! [`ReadCache::MAX_ROWS`] rows and [`ReadCache::MAX_BYTES`] of them (values go up to 64 KiB):
//! when full it is emptied and fills again.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::StoredSecret;
use ductape::SecretKey;

#[derive(Default)]
pub struct ReadCache {
    /// Read by every read at once; written when rows are added or a change empties it.
    held: RwLock<Held>,
}

#[derive(Default)]
struct Held {
    generation: i64,
    /// Rows by workspace, then key.
    rows: HashMap<String, HashMap<String, Arc<StoredSecret>>>,
    len: usize,
    /// What the rows held weigh ([`weight`]).
    bytes: usize,
}

impl Held {
    /// Whether rows read at `generation` may be added: an older one may not, a newer one
    /// first empties what is held.
    fn move_to(&mut self, generation: i64) -> bool {
        if generation > self.generation {
            self.empty();
            self.generation = generation;
        }
        generation == self.generation
    }

    fn empty(&mut self) {
        self.rows.clear();
        self.len = 0;
        self.bytes = 0;
    }
}

/// About what a row takes in memory: its text and a fixed overhead.
fn weight(s: &StoredSecret) -> usize {
    // The ciphertext twice: the row's, and the JSON a compact read keeps of it (the whole,
    // or the part one binding reads).
    let text = [&s.id, &s.workspace_id, &s.key, &s.ciphertext, &s.ciphertext]
        .iter()
        .map(|t| t.len())
        .sum::<usize>()
        + s.description.as_ref().map_or(0, String::len)
        + s.scope
            .iter()
            .chain(&s.envs)
            .map(String::len)
            .sum::<usize>();
    text + 256
}

/// What a lookup found: rows held, and the keys to read from the database.
pub struct Lookup {
    pub found: Vec<Arc<StoredSecret>>,
    pub missing: Vec<SecretKey>,
}

impl ReadCache {
    /// The most rows held.
    pub const MAX_ROWS: usize = 16_384;
    /// The most they weigh together.
    pub const MAX_BYTES: usize = 16 << 20;

    /// The rows of `keys` held for `generation` (the one the caller just read), and the keys
    /// it must read itself.
    pub fn lookup(&self, generation: i64, workspace_id: &str, keys: &[SecretKey]) -> Lookup {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        let rows = (held.generation == generation)
            .then(|| held.rows.get(workspace_id))
            .flatten();
        let Some(rows) = rows else {
            return Lookup {
                found: Vec::new(),
                missing: keys.to_vec(),
            };
        };
        let mut found = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for key in keys {
            match rows.get(key.as_str()) {
                Some(s) => found.push(Arc::clone(s)),
                None => missing.push(key.clone()),
            }
        }
        Lookup { found, missing }
    }

    /// Every row of `keys`, when all of them are held, and the generation they were read at:
    /// not yet known to be the database's generation now (the caller confirms it, see
    /// `SqliteStorage::read_secrets`).
    pub fn held(
        &self,
        workspace_id: &str,
        keys: &[SecretKey],
    ) -> Option<(i64, Vec<Arc<StoredSecret>>)> {
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        let rows = held.rows.get(workspace_id)?;
        let found = keys
            .iter()
            .map(|key| rows.get(key.as_str()).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some((held.generation, found))
    }

    /// Holds `rows`, read from the database after `generation` was read.
    pub fn add(&self, generation: i64, rows: &[Arc<StoredSecret>]) {
        if rows.is_empty() {
            return;
        }
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        if !held.move_to(generation) {
            return;
        }
        for s in rows {
            let w = weight(s);
            if w > Self::MAX_BYTES {
                continue;
            }
            if held.len == Self::MAX_ROWS || held.bytes + w > Self::MAX_BYTES {
                held.empty();
            }
            let replaced = held
                .rows
                .entry(s.workspace_id.clone())
                .or_default()
                .insert(s.key.clone(), Arc::clone(s));
            held.bytes += w;
            match replaced {
                Some(old) => held.bytes -= weight(&old),
                None => held.len += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ws: &str, key: &str, version: i64) -> Arc<StoredSecret> {
        Arc::new(StoredSecret::sample(ws, key, version))
    }

    fn keys(k: &[&str]) -> Vec<SecretKey> {
        k.iter().map(|s| SecretKey::parse(s).unwrap()).collect()
    }

    #[test]
    fn rows_are_served_only_at_the_generation_they_were_read_at() {
        let c = ReadCache::default();
        c.add(3, &[row("w", "A", 1), row("w", "B", 1)]);
        let hit = c.lookup(3, "w", &keys(&["A", "C", "B"]));
        assert_eq!(hit.found.len(), 2);
        assert_eq!(hit.missing, keys(&["C"]));
        // Another workspace's keys are not these.
        assert_eq!(c.lookup(3, "v", &keys(&["A"])).missing, keys(&["A"]));
        // A newer generation (a change since): nothing is served.
        let after = c.lookup(4, "w", &keys(&["A", "B"]));
        assert!(after.found.is_empty());
        assert_eq!(after.missing, keys(&["A", "B"]));
    }

    #[test]
    fn held_answers_only_when_every_key_is_held_with_the_generation_read_at() {
        let c = ReadCache::default();
        assert!(c.held("w", &keys(&["A"])).is_none());
        c.add(7, &[row("w", "A", 1), row("w", "B", 2)]);
        let (generation, rows) = c.held("w", &keys(&["B", "A"])).unwrap();
        assert_eq!(generation, 7);
        let got: Vec<(&str, i64)> = rows.iter().map(|s| (s.key.as_str(), s.version)).collect();
        assert_eq!(got, [("B", 2), ("A", 1)]);
        // One key missing (or another workspace): nothing, the caller reads them all.
        assert!(c.held("w", &keys(&["A", "C"])).is_none());
        assert!(c.held("v", &keys(&["A"])).is_none());
        // After a newer generation is read, its rows only.
        c.add(8, &[row("w", "B", 3)]);
        assert!(c.held("w", &keys(&["A"])).is_none());
        assert_eq!(c.held("w", &keys(&["B"])).unwrap().0, 8);
    }

    #[test]
    fn a_newer_generation_empties_it_and_an_older_one_adds_nothing() {
        let c = ReadCache::default();
        c.add(5, &[row("w", "A", 1)]);
        // A reader that read the generation before a change finishes late: its rows are
        // not held under the newer generation.
        c.add(4, &[row("w", "B", 1)]);
        assert_eq!(c.lookup(5, "w", &keys(&["B"])).missing, keys(&["B"]));
        c.add(6, &[row("w", "A", 2)]);
        let hit = c.lookup(6, "w", &keys(&["A"]));
        assert_eq!(hit.found[0].version, 2);
        assert!(c.lookup(5, "w", &keys(&["A"])).found.is_empty());
    }

    #[test]
    fn it_holds_at_most_max_bytes() {
        let c = ReadCache::default();
        let big = |i: usize| {
            Arc::new(StoredSecret {
                ciphertext: "x".repeat(90_000),
                ciphertext_json: Default::default(),
                ..StoredSecret::sample("w", &format!("K{i}"), 1)
            })
        };
        let rows: Vec<Arc<StoredSecret>> = (0..400).map(big).collect();
        c.add(1, &rows);
        let held = c.held.read().unwrap();
        assert!(held.bytes <= ReadCache::MAX_BYTES, "{}", held.bytes);
        assert!(held.len <= ReadCache::MAX_BYTES / 90_000, "{}", held.len);
        // The newest rows are the ones held.
        assert!(held.rows["w"].contains_key("K399"));
        drop(held);
        // The same row read again replaces itself: its weight is counted once.
        let before = c.held.read().unwrap().bytes;
        c.add(1, &rows[399..]);
        assert_eq!(c.held.read().unwrap().bytes, before);
    }

    #[test]
    fn it_holds_at_most_max_rows() {
        let c = ReadCache::default();
        let many: Vec<Arc<StoredSecret>> = (0..ReadCache::MAX_ROWS + 10)
            .map(|i| row("w", &format!("K{i}"), 1))
            .collect();
        c.add(1, &many[..ReadCache::MAX_ROWS]);
        assert_eq!(c.held.read().unwrap().len, ReadCache::MAX_ROWS);
        c.add(1, &many[ReadCache::MAX_ROWS..]);
        let held = c.held.read().unwrap();
        assert_eq!(held.len, 10);
        assert_eq!(held.rows["w"].len(), 10);
    }
}
