//! Prometheus metrics: request counts and latency sums by route and status.
//!
//! Hand-written on purpose: two counter families in the text exposition format are a few
//! lines, where an exporter crate would add a registry, a recorder and their dependencies.
//! Labels are route templates (`/v1/secrets/{key}`), never concrete keys or values.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::state::AppState;

/// (method, route template, status).
type Labels = (String, String, u16);

#[derive(Default)]
pub struct Metrics {
    /// Per label set: (count, total seconds).
    requests: Mutex<BTreeMap<Labels, (u64, f64)>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let e = m
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        e.0 += 1;
        e.1 += secs;
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP ductape_http_requests_total HTTP requests served.\n# TYPE ductape_http_requests_total counter\n");
        for ((method, route, status), (n, _)) in m.iter() {
            let _ = writeln!(out, "ductape_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP ductape_http_request_seconds_sum Total time spent serving requests.\n# TYPE ductape_http_request_seconds_sum counter\n");
        for ((method, route, status), (_, secs)) in m.iter() {
            let _ = writeln!(out, "ductape_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {secs:.6}");
        }
        out
    }
}

/// Middleware that records every request.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}
