//! Prometheus metrics (`prometheus-client`): requests by route and status, and their latency
//! as a histogram. Labels are route templates (`/v1/secrets/{key}`), never concrete keys or
//! values. Owns its registry: nothing here needs the rest of the server's state.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

type Latencies = Family<RequestLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    seconds: Latencies,
}

/// 100 µs to about 3.3 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ductape");
        let requests = Family::<RequestLabels, Counter>::default();
        let seconds: Latencies = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests served", requests.clone());
        registry.register(
            "http_request_seconds",
            "Time spent serving HTTP requests",
            seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            seconds,
        }
    }
}

impl Metrics {
    fn observe(&self, labels: RequestLabels, secs: f64) {
        self.seconds.get_or_create(&labels).observe(secs);
        self.requests.get_or_create(&labels).inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// Middleware that records every request.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = RequestLabels {
        method,
        route,
        status: resp.status().as_u16(),
    };
    metrics.observe(labels, start.elapsed().as_secs_f64());
    resp
}
