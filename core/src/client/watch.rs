//! Following the server's change feed (`GET /v1/events`): [`Ductape::watch`] yields each
//! change to a secret the access key may see (metadata only), and a cache with
//! [`CacheOptions::watch`](super::CacheOptions::watch) drops a changed secret's entries as
//! soon as the change is heard, whoever made it. One background task per client holds the
//! stream, reconnects with `Last-Event-ID` (so nothing is missed across a reconnect, or the
//! server says `reset` and every cached value is dropped), and ends with the client.
//! It needs a multi-threaded async runtime (not the blocking client's).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::{Ductape, Inner};
use crate::error::{Error, ErrorCode};
use crate::wire::ChangeEvent;

/// What the feed says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A secret changed (or was deleted): its key, new version and kind of change.
    Changed(ChangeEvent),
    /// Changes may have been missed (the stream could not resume): treat everything as
    /// changed.
    Reset,
}

impl WatchEvent {
    /// The bindings' form: `{"kind", "key", "version"}`, or `{"kind": "reset"}`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            WatchEvent::Changed(c) => {
                serde_json::json!({"kind": c.kind, "key": c.key, "version": c.version})
            }
            WatchEvent::Reset => serde_json::json!({"kind": "reset"}),
        }
    }
}

/// A subscription to the change feed (see [`Ductape::watch`]).
pub struct Watcher {
    rx: broadcast::Receiver<WatchEvent>,
}

impl Watcher {
    /// The next change; `None` once the client is gone or its access key was refused.
    /// A subscriber too slow to keep up gets [`WatchEvent::Reset`].
    pub async fn next(&mut self) -> Option<WatchEvent> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(WatchEvent::Reset),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Longest a stream may stay silent (the server sends a keep-alive every 15 s).
const SILENCE: Duration = Duration::from_secs(45);

impl Ductape {
    /// Follows the change feed: every change to a secret this key may see, as it happens
    /// (within the server's 200 ms poll), from now on. Needs `init()` first.
    pub fn watch(&self) -> Result<Watcher, Error> {
        self.session()?;
        Ok(Watcher {
            rx: self.follow_changes()?.subscribe(),
        })
    }

    /// Starts the feed's background task once; its broadcast.
    pub(crate) fn follow_changes(&self) -> Result<broadcast::Sender<WatchEvent>, Error> {
        let mut guard = self.inner.feed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = guard.as_ref() {
            return Ok(tx.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorCode::Config,
                "watching changes needs an async runtime (tokio)",
            )
        })?;
        let tx = broadcast::channel(1024).0;
        runtime.spawn(follow(Arc::downgrade(&self.inner), tx.clone()));
        *guard = Some(tx.clone());
        Ok(tx)
    }
}

/// Holds the stream until the client is dropped: reads events, drops cache entries,
/// broadcasts, reconnects after a failure (from the last id), stops on 401/403.
async fn follow(client: Weak<Inner>, tx: broadcast::Sender<WatchEvent>) {
    let mut last: Option<i64> = None;
    let mut failures = 0u32;
    loop {
        let Some(inner) = client.upgrade() else {
            return;
        };
        let opened = inner.transport.open_events(last).await;
        drop(inner);
        let mut resp = match opened {
            Ok(r) => r,
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                tracing::warn!(error = %e, "the change feed refused this access key; no longer watching");
                return;
            }
            Err(e) => {
                failures += 1;
                let wait = Duration::from_millis(250 * u64::from(failures.min(20)));
                tracing::debug!(error = %e, ?wait, "the change feed is unreachable; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        failures = 0;
        let mut buf = String::new();
        loop {
            let chunk = match tokio::time::timeout(SILENCE, resp.chunk()).await {
                Ok(Ok(Some(c))) => c,
                // Closed, failed or silent too long: reconnect.
                _ => break,
            };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let Some(event) = parse(&block) else { continue };
                if let Some(id) = event.id {
                    last = Some(id);
                }
                let Some(inner) = client.upgrade() else {
                    return;
                };
                let heard = match event.kind.as_str() {
                    "change" => match serde_json::from_str::<ChangeEvent>(&event.data) {
                        Ok(c) => {
                            if let Some(cache) = &inner.cache {
                                cache.forget_secret(&c.key);
                            }
                            Some(WatchEvent::Changed(c))
                        }
                        Err(_) => None,
                    },
                    "reset" => {
                        if let Some(cache) = &inner.cache {
                            cache.clear();
                        }
                        Some(WatchEvent::Reset)
                    }
                    _ => None,
                };
                if let Some(e) = heard {
                    // Nobody subscribed is fine: the cache was the listener.
                    let _ = tx.send(e);
                }
            }
        }
    }
}

/// One server-sent event block.
struct Sse {
    id: Option<i64>,
    kind: String,
    data: String,
}

fn parse(block: &str) -> Option<Sse> {
    let mut e = Sse {
        id: None,
        kind: "message".into(),
        data: String::new(),
    };
    let mut any = false;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue; // the end of the block, or a comment (the keep-alive)
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => e.id = value.parse().ok(),
            "event" => e.kind = value.to_owned(),
            "data" => {
                if !e.data.is_empty() {
                    e.data.push('\n');
                }
                e.data.push_str(value);
            }
            _ => {}
        }
    }
    any.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_parse() {
        let e = parse(
            "id: 7\nevent: change\ndata: {\"key\":\"K\",\"version\":2,\"kind\":\"update\"}\n\n",
        )
        .unwrap();
        assert_eq!((e.id, e.kind.as_str()), (Some(7), "change"));
        let c: ChangeEvent = serde_json::from_str(&e.data).unwrap();
        assert_eq!((c.key.as_str(), c.version), ("K", 2));
        assert!(parse(":\n\n").is_none(), "a keep-alive is no event");
        let r = parse("id: 9\nevent: reset\ndata: {}\n\n").unwrap();
        assert_eq!((r.id, r.kind.as_str()), (Some(9), "reset"));
    }
}
