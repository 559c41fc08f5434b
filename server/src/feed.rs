//! The change feed behind `GET /v1/events`. Every change to a secret writes a row of the
//! `changes` table in its own transaction, so servers sharing a database (PostgreSQL
//! replicas) see each other's changes; one poller per server reads the new rows every
//! [`POLL`] and broadcasts them, in id order, to this server's open streams. One query per
//! server per interval however many clients listen (LISTEN/NOTIFY would save the idle
//! queries but not the read of the rows, and SQLite has no such thing).
//!
//! PostgreSQL hands out ids before commit, so a row can become visible after a higher id:
//! the poller holds rows back until every lower id has been seen, or for at most
//! [`GAP_WAIT`] (then the missing id belonged to a transaction that rolled back).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::retrying::Retrying;
use crate::state::AppState;
use crate::storage::ChangeRow;

/// How often the poller looks for new rows.
pub const POLL: Duration = Duration::from_millis(200);
/// How long a gap in the ids is waited for.
pub const GAP_WAIT: Duration = Duration::from_secs(6);
/// How long rows are kept (a client resuming from an older id is told to reset).
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

pub struct Feed {
    tx: broadcast::Sender<Arc<ChangeRow>>,
    started: std::sync::Once,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            tx: broadcast::channel(4096).0,
            started: std::sync::Once::new(),
        }
    }
}

impl Feed {
    /// Live rows from now on (the poller starts with the first subscriber).
    pub fn subscribe(
        &self,
        st: &Arc<AppState>,
        workspace: &str,
    ) -> broadcast::Receiver<Arc<ChangeRow>> {
        let rx = self.tx.subscribe();
        self.started.call_once(|| {
            tokio::spawn(poll(st.clone(), workspace.to_owned(), self.tx.clone()));
        });
        rx
    }
}

/// Reads new rows and broadcasts them in id order, until the server stops.
async fn poll(st: Arc<AppState>, workspace: String, tx: broadcast::Sender<Arc<ChangeRow>>) {
    let mut reading = Retrying::new("the change feed cannot read the database");
    let mut floor = loop {
        match st.storage.change_bounds(&workspace).await {
            Ok((_, latest)) => {
                reading.outcome(Ok::<(), String>(()));
                break latest.unwrap_or(0);
            }
            Err(e) => {
                reading.outcome(Err(e.message));
                tokio::time::sleep(POLL * 5).await;
            }
        }
    };
    let mut held: BTreeMap<i64, ChangeRow> = BTreeMap::new();
    let mut gap_since: Option<Instant> = None;
    let mut every = tokio::time::interval(POLL);
    loop {
        every.tick().await;
        let after = held.keys().next_back().copied().unwrap_or(floor).max(floor);
        match st.storage.changes_after(&workspace, after, 1000).await {
            Ok(rows) => {
                reading.outcome(Ok::<(), String>(()));
                held.extend(rows.into_iter().map(|r| (r.id, r)));
            }
            Err(e) => {
                reading.outcome(Err(e.message));
                continue;
            }
        }
        // Rows of ids below the newest seen may still commit: look for them too.
        if let Some(&first) = held.keys().next() {
            if first > floor + 1 {
                if let Ok(late) = st
                    .storage
                    .changes_after(&workspace, floor, (first - floor) as usize)
                    .await
                {
                    held.extend(late.into_iter().map(|r| (r.id, r)));
                }
            }
        }
        loop {
            let Some((&id, _)) = held.iter().next() else {
                gap_since = None;
                break;
            };
            let waited = gap_since.get_or_insert_with(Instant::now).elapsed();
            if id == floor + 1 || waited >= GAP_WAIT {
                let row = held.remove(&id).expect("present");
                floor = id;
                gap_since = None;
                // No receiver is fine: nobody listens on this server right now.
                let _ = tx.send(Arc::new(row));
            } else {
                break;
            }
        }
    }
}
