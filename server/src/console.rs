//! The web console: the pages of `console/` (built to `console/dist` by
//! `scripts/build-console`), embedded in the binary at build time and served at `/`. The
//! pages decrypt in the browser with the core compiled to WebAssembly; the server only
//! hands out files. Every answer forbids framing, inline script, other origins and
//! cookies' use (none are set).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::auth::Shared;
use crate::body::PathParam;
use crate::error::ApiError;

/// The built console. Empty when `console/dist` did not exist at build time: the server
/// then answers 404 with how to build it.
#[derive(rust_embed::Embed)]
#[folder = "../console/dist"]
#[allow_missing = true]
struct Assets;

/// Scripts from this origin only, WebAssembly compiled from them, requests to this origin
/// only; nothing inline, no frames, no forms posted elsewhere.
pub const CSP: &str =
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the console's page.
pub async fn index(State(st): State<Shared>) -> Response {
    serve(&st, "index.html")
}

/// `GET /assets/{file}`: its scripts, styles and WebAssembly (content-hashed names).
pub async fn asset(State(st): State<Shared>, PathParam(file): PathParam) -> Response {
    serve(&st, &format!("assets/{file}"))
}

/// Whether this binary carries a console.
pub fn built() -> bool {
    Assets::get("index.html").is_some()
}

/// When the embedded console was built (build.rs: the page's modification time, `none`
/// without one); its change is what makes cargo embed the new files.
pub const BUILD: &str = env!("DUCTAPE_CONSOLE_BUILD");

fn serve(st: &crate::state::AppState, path: &str) -> Response {
    if !st.console {
        return ApiError::new(
            ductape::ErrorCode::NotFound,
            "the web console is turned off on this server (--no-console)",
        )
        .into_response();
    }
    let Some(file) = Assets::get(path) else {
        let why = if built() {
            format!("no console file '{path}'")
        } else {
            "this server was built without its web console (run ./scripts/build-console, then build the server again)".to_owned()
        };
        return ApiError::new(ductape::ErrorCode::NotFound, why).into_response();
    };
    let mut r = Response::new(Body::from(file.data.into_owned()));
    let h = r.headers_mut();
    let mime = file.metadata.mimetype();
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // The page is small and names the current assets: always fetched anew. Assets carry
    // a content hash in their names, so they never change under one name.
    let cache = if path == "index.html" {
        "no-store"
    } else {
        "public, max-age=31536000, immutable"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    security_headers(h);
    r
}

/// The headers every console answer carries.
fn security_headers(h: &mut axum::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), clipboard-read=()"),
    );
}
