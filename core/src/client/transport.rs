//! HTTP with retries: the only place that talks to the network.

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;
use std::time::Duration;
use thread_local::ThreadLocal;
use zeroize::Zeroizing;

use super::config::Config;
use crate::error::{Error, ErrorCode};
use crate::wire::ErrorBody;

/// Whether a request may be sent again when its outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads, deletes, revokes: repeating them changes nothing more.
    Idempotent,
    /// Creates and updates: re-sent only when the server surely did not act on them
    /// (the connection was never made, or a 429/503 answer).
    NotIdempotent,
}

pub(crate) struct Transport {
    /// Connections for tasks on multi-thread runtimes (their workers drive them).
    http: reqwest::Client,
    /// Connections for a current-thread runtime, one pool per thread (see [`Transport::http`]).
    per_thread: ThreadLocal<reqwest::Client>,
    config: Config,
    bearer: Zeroizing<String>,
}

impl Transport {
    pub(crate) fn new(config: Config) -> Result<Self, Error> {
        let http = Self::build_http(&config)?;
        let bearer = config.access_key.bearer();
        Ok(Transport {
            http,
            per_thread: ThreadLocal::new(),
            config,
            bearer,
        })
    }

    fn build_http(config: &Config) -> Result<reqwest::Client, Error> {
        http_client(
            config.ca_pem.as_deref(),
            config.timeout,
            config.connect_timeout,
        )?
        .user_agent(format!("{}/{}", config.sdk, env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(build_error)
    }

    /// The HTTP client for the runtime this runs on. A connection is driven by a task on the
    /// runtime that opened it; a current-thread runtime runs its tasks only while its thread
    /// is blocked in it (the SDKs' synchronous calls: the whole request on the caller's
    /// thread, no hand-off to another), so a connection opened there must never serve
    /// another thread, which would wait on it until that thread came back. Such runtimes get
    /// a pool per thread; multi-thread runtimes share one.
    ///
    /// Such a thread's connections also learn what happened while it was away (the other end
    /// closing an idle one) only when its runtime next polls them, so this yields once
    /// first: the runtime polls its I/O before resuming this task, and a connection closed
    /// meanwhile leaves the pool instead of failing this request.
    async fn http(&self) -> Result<&reqwest::Client, Error> {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !current_thread {
            return Ok(&self.http);
        }
        tokio::task::yield_now().await;
        self.per_thread
            .get_or_try(|| Self::build_http(&self.config))
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Sends a request and decodes a JSON answer, retrying what is safe to retry.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idem: Idempotency,
    ) -> Result<T, Error> {
        self.call_tracked(method, path, body, idem).await.0
    }

    /// Like [`Transport::call`], also telling whether an earlier attempt failed after it may
    /// have been carried out (a timeout, a dropped connection, a 500): then a later "not
    /// found" can mean that the earlier attempt already did the work.
    pub(crate) async fn call_tracked<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idem: Idempotency,
    ) -> (Result<T, Error>, bool) {
        self.call_full(method, path, body, idem, None).await
    }

    /// [`Transport::call_tracked`] with `If-Match: "<version>"` when a version is required.
    pub(crate) async fn call_full<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idem: Idempotency,
        if_match: Option<i64>,
    ) -> (Result<T, Error>, bool) {
        let (answer, maybe_done) = self.bytes_full(method, path, body, idem, if_match).await;
        (answer.and_then(|b| parse_answer(&b)), maybe_done)
    }

    /// Like [`Transport::call`], the answer's bytes kept whole: for a caller that reads it
    /// in place with [`parse_answer`] (borrowing from it, not copying every string out).
    pub(crate) async fn call_bytes<B: serde::Serialize + ?Sized + Sync>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idem: Idempotency,
    ) -> Result<Bytes, Error> {
        self.bytes_full(method, path, body, idem, None).await.0
    }

    /// The answer's bytes, retrying what is safe to retry; a body is required (304 is
    /// answered only to a conditional read, [`Transport::get_if_changed`]). The request's
    /// body is encoded once, and each retry sends those bytes again.
    async fn bytes_full<B: serde::Serialize + ?Sized + Sync>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idem: Idempotency,
        if_match: Option<i64>,
    ) -> (Result<Bytes, Error>, bool) {
        let body = match body.map(encode).transpose() {
            Ok(body) => body,
            Err(e) => return (Err(e), false),
        };
        let cond = Conditions {
            if_match,
            if_none_match: None,
        };
        let (answer, maybe_done) = self.retrying(method, path, body.as_ref(), idem, cond).await;
        let answer = answer.and_then(|r| {
            r.body
                .ok_or_else(|| Error::new(ErrorCode::Protocol, "unexpected 304 from the server"))
        });
        (answer, maybe_done)
    }

    /// A read that revalidates a copy held as `etag`: `body` is `None` when the server
    /// answers 304 (the copy is current). The answer's `ETag` comes with it.
    pub(crate) async fn get_if_changed<T: DeserializeOwned>(
        &self,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Reply<T>, Error> {
        let cond = Conditions {
            if_match: None,
            if_none_match: etag,
        };
        let reply = self
            .retrying(Method::GET, path, None, Idempotency::Idempotent, cond)
            .await
            .0?;
        Ok(Reply {
            body: reply.body.as_deref().map(parse_answer).transpose()?,
            etag: reply.etag,
        })
    }

    /// `body` is encoded JSON, sent as it is by each attempt.
    async fn retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        idem: Idempotency,
        cond: Conditions<'_>,
    ) -> (Result<Reply<Bytes>, Error>, bool) {
        let mut attempt = 0u32;
        let mut maybe_done = false;
        loop {
            match self.send_once(method.clone(), path, body, cond).await {
                Ok(v) => return (Ok(v), maybe_done),
                Err(Failed {
                    error: e,
                    reached_server,
                }) => {
                    if attempt >= self.config.max_retries || !may_retry(&e, reached_server, idem) {
                        return (Err(e), maybe_done);
                    }
                    // 429 and 503 are answered before acting; anything else that reached
                    // the server may have been carried out.
                    maybe_done |= reached_server && !matches!(e.status(), Some(429 | 503));
                    let delay = e.retry_after().unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(attempt, code = e.code_str(), ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Opens the change feed (`GET /v1/events`), resuming after `last` if given: the
    /// response, whose body is the event stream (no overall deadline: the caller watches
    /// for silence). Errors as any call's.
    pub(crate) async fn open_events(&self, last: Option<i64>) -> Result<reqwest::Response, Error> {
        let mut req = self
            .http()
            .await?
            .get(format!("{}/v1/events", self.config.url))
            .bearer_auth(self.bearer.as_str())
            .header(
                crate::crypto::keyring::FORMAT_HEADER,
                crate::crypto::keyring::FORMAT,
            )
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(Duration::from_secs(365 * 24 * 3600));
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.map_err(|e| network_error(e).error)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let origin = resp.url().origin().ascii_serialization();
        let bytes = resp.bytes().await.map_err(|e| network_error(e).error)?;
        Err(server_error(status, &origin, &bytes, None))
    }

    /// An unauthenticated call (setup, health).
    pub(crate) async fn call_anonymous<T: DeserializeOwned>(
        http: &reqwest::Client,
        url: &str,
        method: Method,
        body: Option<&Value>,
    ) -> Result<T, Error> {
        let mut req = http.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let bytes = answer(req.send().await.map_err(|e| network_error(e).error)?).await?;
        parse_answer(&bytes)
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Bytes>,
        cond: Conditions<'_>,
    ) -> Result<Reply<Bytes>, Failed> {
        let url = format!("{}{}", self.config.url, path);
        let http = self.http().await.map_err(|error| Failed {
            error,
            reached_server: false,
        })?;
        let mut req = http
            .request(method, url)
            .bearer_auth(self.bearer.as_str())
            .header(
                crate::crypto::keyring::FORMAT_HEADER,
                crate::crypto::keyring::FORMAT,
            );
        if let Some(v) = cond.if_match {
            req = req.header(reqwest::header::IF_MATCH, format!("\"{v}\""));
        }
        if let Some(tag) = cond.if_none_match {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone());
        }
        let resp = req.send().await.map_err(network_error)?;
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(Reply { body: None, etag });
        }
        answer(resp)
            .await
            .map(|body| Reply {
                body: Some(body),
                etag,
            })
            .map_err(|error| Failed {
                error,
                reached_server: true,
            })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.config.backoff_max);
        // Equal jitter: half fixed, half random, so concurrent clients spread out.
        let r: [u8; 2] = crate::ids::random_bytes();
        let frac = u16::from_le_bytes(r) as f64 / u16::MAX as f64;
        exp.mul_f64(0.5 + 0.5 * frac)
    }
}

/// The HTTP client's builder: timeouts, the default user agent, and the extra trusted roots
/// of a private CA.
pub(crate) fn http_client(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::ClientBuilder, Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        // Give idle pooled connections up before the server's keep-alive deadline (10 s by
        // default) closes them, so a request is not sent on a connection being closed.
        .pool_idle_timeout(Duration::from_secs(5))
        .user_agent(concat!("ductape-rust/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::new(ErrorCode::Config, format!("invalid CA certificate: {e}")))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

pub(crate) fn build_error(e: reqwest::Error) -> Error {
    Error::new(
        ErrorCode::Config,
        format!("cannot build the HTTP client: {e}"),
    )
}

/// The conditions a request carries.
#[derive(Clone, Copy, Default)]
struct Conditions<'a> {
    /// `If-Match: "<version>"`.
    if_match: Option<i64>,
    /// `If-None-Match: <etag>`.
    if_none_match: Option<&'a str>,
}

/// An answer and its entity tag; no body when the server answered 304 Not Modified.
pub(crate) struct Reply<T> {
    pub(crate) body: Option<T>,
    pub(crate) etag: Option<String>,
}

/// A failed attempt, and whether the request may have reached the server.
struct Failed {
    error: Error,
    reached_server: bool,
}

fn may_retry(e: &Error, reached_server: bool, idem: Idempotency) -> bool {
    match idem {
        Idempotency::Idempotent => e.is_retryable(),
        // A connection never made cannot have acted; 429/503 are answered before acting.
        Idempotency::NotIdempotent => !reached_server || matches!(e.status(), Some(429 | 503)),
    }
}

fn network_error(e: reqwest::Error) -> Failed {
    // reqwest's Display includes the URL (no credentials: they travel in a header).
    let (code, message, reached_server) = if e.is_timeout() {
        (ErrorCode::Timeout, format!("request timed out: {e}"), true)
    } else if e.is_connect() {
        let at = e
            .url()
            .map(|u| format!(" at {}", u.origin().ascii_serialization()))
            .unwrap_or_default();
        (
            ErrorCode::Connection,
            format!(
                "cannot connect to the Ductape server{at}: {}: is it running there? (`ductape doctor` checks)",
                root_cause(&e)
            ),
            false,
        )
    } else {
        (
            ErrorCode::Connection,
            format!("connection to the Ductape server failed: {e}"),
            true,
        )
    };
    Failed {
        error: Error::new(code, message),
        reached_server,
    }
}

/// The innermost error behind `e` ("Connection refused (os error 111)", "failed to lookup
/// address information: …"): what actually went wrong, under reqwest's and hyper's wrappers.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The body of a successful answer, or the error an unsuccessful one carries.
async fn answer(resp: reqwest::Response) -> Result<Bytes, Error> {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)));
    // Only a failure names the server (no allocation on the success path).
    let origin = (!status.is_success()).then(|| resp.url().origin().ascii_serialization());
    let bytes = resp.bytes().await.map_err(|e| network_error(e).error)?;
    match origin {
        None => Ok(bytes),
        Some(origin) => Err(server_error(status, &origin, &bytes, retry_after)),
    }
}

/// A request body as the JSON it is sent as.
fn encode<B: serde::Serialize + ?Sized>(body: &B) -> Result<Bytes, Error> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("cannot encode the request: {e}"),
        )
    })
}

/// A successful answer's JSON as `T`, which may borrow from `bytes`.
pub(crate) fn parse_answer<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Error> {
    serde_json::from_str(answer_text(bytes)?).map_err(unexpected_answer)
}

/// An answer's bytes as text, checked as UTF-8 once, whole: read from bytes, serde_json
/// would check each string on its own.
pub(crate) fn answer_text(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|e| unexpected_answer(format_args!("not UTF-8 ({e})")))
}

/// An answer that does not read as what the server should have sent.
pub(crate) fn unexpected_answer(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Protocol,
        format!("unexpected answer from the server: {e}"),
    )
}

fn server_error(
    status: StatusCode,
    origin: &str,
    bytes: &[u8],
    retry_after: Option<Duration>,
) -> Error {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Error::from_server(
            status.as_u16(),
            Some(body.error.code),
            body.error.message,
            retry_after,
        ),
        // A proxy or a non-Ductape server: keep the status, not the (unknown) body, and say
        // which of the two it likely is.
        Err(_) => {
            let hint = if status == StatusCode::NOT_FOUND {
                format!(
                    "{origin} does not answer like a Ductape server: is the URL the server's \
                     own address (no path)?"
                )
            } else {
                format!("not an answer of the Ductape server: a proxy in front of {origin}?")
            };
            Error::from_server(
                status.as_u16(),
                None,
                format!(
                    "HTTP {} {}: {hint}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("error")
                ),
                retry_after,
            )
        }
    }
}
