//! The floor of the benchmark table: a bare axum handler answering `GET /v1/secrets/{key}`
//! with a body the size and shape of a real read, no authentication, storage or audit.
//! What any HTTP server on this machine costs per request, for scale.
//!
//! `floor ADDR` prints `FLOOR_URL=http://ADDR` once listening, and serves until killed.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

async fn read(Path(key): Path<String>) -> Json<Value> {
    Json(json!({
        "key": key, "description": null, "token_type": null, "scope": [], "envs": [],
        "expires_at": null, "status": "active", "version": 1,
        "created_at": "2026-11-27T00:00:00.000Z", "updated_at": "2026-11-27T00:00:00.000Z",
        "ciphertext": format!("dv1.xc20p.k_floor.{}", "A".repeat(76)),
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("FLOOR_URL=http://{}", listener.local_addr()?);
    let app = Router::new().route("/v1/secrets/{key}", get(read));
    axum::serve(listener, app).await
}
