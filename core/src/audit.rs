//! The audit trail's hash chain: each event of a workspace carries the hash of the one
//! before it and a hash over its own contents, so that an edited, removed or reordered
//! event is found by [`verify`] at the exact place.
//!
//! The server computes the hashes as it appends; any client with an unbound admin key can
//! check them (`ductape audit verify`). An unkeyed chain shows tampering by anyone who
//! cannot also rewrite every later event; keep the head hash that `verify` prints (or ship
//! the trail to a SIEM) to make a full rewrite visible too.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::wire::AuditEntry;

/// The `prev_hash` of a workspace's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event's contents as the chain hashes them, borrowed from wherever the event is held
/// (a server hashes the event it is appending without building its wire form). Serialised
/// in this fixed order (serde writes struct fields in order).
#[derive(Serialize)]
pub struct Chained<'a> {
    pub workspace_id: &'a str,
    pub at: &'a str,
    pub access_key_id: &'a str,
    pub secret_key: &'a str,
    pub action: &'a str,
    pub app: &'a Option<String>,
    pub env: &'a Option<String>,
    pub claimed_app: &'a Option<String>,
    pub claimed_env: &'a Option<String>,
    pub allowed: bool,
    pub reason: &'a Option<String>,
    pub detail: &'a Option<String>,
    /// Absent when empty, so events from before batch reads were one event hash as they did.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub keys: &'a [String],
}

impl Chained<'_> {
    /// The hash of these contents following `prev_hash` (hex SHA-256).
    pub fn hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"ductape/audit/v1\0");
        h.update(prev_hash.as_bytes());
        h.update(b"\0");
        // Serialising plain strings, options and a bool cannot fail.
        h.update(serde_json::to_vec(self).unwrap_or_default());
        hex::encode(h.finalize())
    }
}

/// The hash of `entry` following `prev_hash` (hex SHA-256). The entry's `id`, `prev_hash`
/// and `hash` fields are not part of its contents.
///
/// ```
/// use ductape::audit::{chain_hash, GENESIS};
/// # let entry: ductape::wire::AuditEntry = serde_json::from_str(r#"{"id":1,"at":"2026-01-01T00:00:00.000Z",
/// #   "access_key_id":"k","secret_key":"S","action":"read","app":null,"env":null,"allowed":true,"reason":null}"#).unwrap();
/// let h = chain_hash(GENESIS, "ws_1", &entry);
/// assert_eq!(h.len(), 64);
/// assert_ne!(h, chain_hash(&h, "ws_1", &entry)); // the same event elsewhere hashes apart
/// ```
pub fn chain_hash(prev_hash: &str, workspace_id: &str, entry: &AuditEntry) -> String {
    Chained {
        workspace_id,
        at: &entry.at,
        access_key_id: &entry.access_key_id,
        secret_key: &entry.secret_key,
        action: &entry.action,
        app: &entry.app,
        env: &entry.env,
        claimed_app: &entry.claimed_app,
        claimed_env: &entry.claimed_env,
        allowed: entry.allowed,
        reason: &entry.reason,
        detail: &entry.detail,
        keys: &entry.keys,
    }
    .hash(prev_hash)
}

/// What [`verify`] found in an intact chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Events checked.
    pub events: usize,
    /// Events at the start with no hash (written before the chain existed), skipped.
    pub unchained: usize,
    /// Whether the oldest chained event is the workspace's first (else older events were
    /// pruned by retention, and the chain is checked from there).
    pub from_genesis: bool,
    /// The newest event's hash: keep it to detect a later rewrite of the whole trail.
    pub head: Option<String>,
}

/// The first broken link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The id of the first event that does not check out.
    pub id: i64,
    pub reason: String,
}

/// Checks a workspace's events, oldest first: every event's hash matches its contents and
/// its `prev_hash` is the hash of the event before it.
///
/// ```
/// use ductape::audit::verify;
/// assert_eq!(verify("ws", &[]).unwrap().events, 0);
/// ```
pub fn verify(workspace_id: &str, oldest_first: &[AuditEntry]) -> Result<Verified, Broken> {
    let unchained = oldest_first
        .iter()
        .take_while(|e| e.hash.is_empty())
        .count();
    let chained = &oldest_first[unchained..];
    let mut prev: Option<&AuditEntry> = None;
    for e in chained {
        if let Some(p) = prev {
            if e.id <= p.id {
                return Err(Broken {
                    id: e.id,
                    reason: format!("event {} is out of order after event {}", e.id, p.id),
                });
            }
            if e.prev_hash != p.hash {
                return Err(Broken {
                    id: e.id,
                    reason: format!(
                        "event {} does not follow event {}: an event between them was removed, or event {} was altered",
                        e.id, p.id, p.id
                    ),
                });
            }
        }
        if chain_hash(&e.prev_hash, workspace_id, e) != e.hash {
            return Err(Broken {
                id: e.id,
                reason: format!("event {} does not match its hash: it was altered", e.id),
            });
        }
        prev = Some(e);
    }
    Ok(Verified {
        events: chained.len(),
        unchained,
        from_genesis: chained.first().is_none_or(|e| e.prev_hash == GENESIS),
        head: chained.last().map(|e| e.hash.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_string();
        (0..n)
            .map(|i| {
                let mut e = AuditEntry {
                    id: i as i64 + 1,
                    at: format!("2026-01-01T00:00:0{i}.000Z"),
                    access_key_id: "k1".into(),
                    secret_key: format!("S{i}"),
                    action: "read".into(),
                    app: Some("web".into()),
                    env: None,
                    claimed_app: None,
                    claimed_env: None,
                    allowed: true,
                    reason: None,
                    detail: None,
                    keys: Vec::new(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = chain_hash(&prev, "ws", &e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let c = chain(5);
        let v = verify("ws", &c).unwrap();
        assert_eq!(v.events, 5);
        assert!(v.from_genesis);
        assert_eq!(v.head.as_deref(), Some(c[4].hash.as_str()));
        // Another workspace's id does not verify.
        assert_eq!(verify("other", &c).unwrap_err().id, 1);
    }

    #[test]
    fn an_edited_event_breaks_at_that_event() {
        let mut c = chain(5);
        c[2].allowed = false;
        assert_eq!(verify("ws", &c).unwrap_err().id, 3);
        let mut c = chain(5);
        c[3].app = Some("other".into());
        assert_eq!(verify("ws", &c).unwrap_err().id, 4);
    }

    #[test]
    fn a_removed_or_reordered_event_breaks_at_the_next() {
        let mut c = chain(5);
        c.remove(2);
        assert_eq!(verify("ws", &c).unwrap_err().id, 4);
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify("ws", &c).unwrap_err().id, 3);
    }

    #[test]
    fn a_pruned_start_and_unchained_legacy_events_are_reported() {
        let c = chain(5);
        let v = verify("ws", &c[2..]).unwrap();
        assert!(!v.from_genesis);
        let mut legacy = c[0].clone();
        legacy.id = 0;
        legacy.hash.clear();
        let mut all = vec![legacy];
        all.extend(c);
        assert_eq!(verify("ws", &all).unwrap().unchained, 1);
    }
}
