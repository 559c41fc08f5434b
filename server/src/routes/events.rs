//! `GET /v1/events`: the change feed as server-sent events. Each event is a change to a
//! secret the access key may see (its binding decides, as for a listing): `id` (resume
//! with `Last-Event-ID`), `event: change`, data `{"key", "version", "kind"}`. Metadata only,
//! never a value. A new stream begins with `event: ready` carrying the position it starts
//! from. A client resuming from an id the feed no longer holds gets `event: reset`
//! (drop every cached value) and then the feed from now on. The stream ends when the access
//! key is deleted.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::auth::{Caller, Shared};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::ChangeRow;
use ductape::wire::{ChangeEvent, ErrorBody, Permission};
use ductape::ErrorCode;

/// Most rows sent from the past on a resume; beyond, the client is told to reset.
const BACKFILL: usize = 10_000;
/// How often an idle stream checks that its access key still exists.
const RECHECK: Duration = Duration::from_secs(2);

/// Subscribe to changes of the secrets this key may see (server-sent events).
#[utoipa::path(get, path = "/v1/events", tag = "secrets",
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: the stream resumes after it")),
    responses((status = 200, description = "text/event-stream: `change` events with data {key, version, kind}; `reset` when the resume point is gone"),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("access_key" = [])))]
pub async fn events(
    State(st): State<Shared>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Permission::List)?;
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidField,
                        "header 'Last-Event-ID' must be the id of an event this server sent",
                    )
                })?,
        ),
    };
    // Subscribed before the past is read, so nothing falls between the two.
    let live = st.feed.subscribe(&st, &caller.workspace.id);
    let (oldest, latest) = st.storage.change_bounds(&caller.workspace.id).await?;
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(pump(st.clone(), caller, resume, oldest, latest, live, tx));
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn change(row: &ChangeRow) -> Event {
    Event::default()
        .id(row.id.to_string())
        .event("change")
        .json_data(ChangeEvent {
            key: row.key.clone(),
            version: row.version,
            kind: row.kind.clone(),
        })
        .unwrap_or_default()
}

fn ready(at: i64) -> Event {
    Event::default()
        .id(at.to_string())
        .event("ready")
        .data("{}")
}

fn reset(at: i64) -> Event {
    Event::default()
        .id(at.to_string())
        .event("reset")
        .data("{}")
}

/// Feeds one stream: the past since `resume` (or a reset), then live rows, each filtered
/// by the caller's binding; ends when the client goes or its key is deleted.
async fn pump(
    st: Arc<AppState>,
    caller: Caller,
    resume: Option<i64>,
    oldest: Option<i64>,
    latest: Option<i64>,
    mut live: tokio::sync::broadcast::Receiver<Arc<ChangeRow>>,
    tx: mpsc::Sender<Event>,
) {
    let ws = caller.workspace.id.clone();
    let visible = |row: &ChangeRow| caller.binding().can_see(&row.scope, &row.envs);
    let now = latest.unwrap_or(0);
    let mut sent = now;
    // Where the stream starts, so a client that reconnects can resume from there.
    if resume.is_none() && tx.send(ready(now)).await.is_err() {
        return;
    }
    if let Some(from) = resume {
        let gone = from > now || oldest.is_some_and(|o| from + 1 < o);
        let past = if gone {
            None
        } else {
            st.storage.changes_after(&ws, from, BACKFILL + 1).await.ok()
        };
        match past {
            Some(rows) if rows.len() <= BACKFILL => {
                for row in rows.iter().filter(|r| r.id <= now) {
                    if visible(row) && tx.send(change(row)).await.is_err() {
                        return;
                    }
                }
            }
            _ => {
                if tx.send(reset(now)).await.is_err() {
                    return;
                }
            }
        }
    }
    let mut check = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            got = live.recv() => match got {
                Ok(row) if row.id <= sent => {}
                Ok(row) => {
                    sent = row.id;
                    if !still_valid(&st, &caller).await {
                        return;
                    }
                    if visible(&row) && tx.send(change(&row)).await.is_err() {
                        return;
                    }
                }
                // Fell behind the broadcast: what was missed is unknown, so reset.
                Err(RecvError::Lagged(_)) => {
                    if tx.send(reset(sent)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            _ = check.tick() => {
                if tx.is_closed() || !still_valid(&st, &caller).await {
                    return;
                }
            }
        }
    }
}

/// Whether the stream's access key still exists (a deleted key's stream ends).
async fn still_valid(st: &AppState, caller: &Caller) -> bool {
    !matches!(st.access_key(&caller.key.id).await, Ok(None))
}
