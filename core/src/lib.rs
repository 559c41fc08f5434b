//! # Ductape Secrets: the client core
//!
//! Secret values are encrypted here, in the client, before they leave the process, and
//! decrypted here after they arrive: the server only ever sees ciphertext. The same core
//! runs under the Python and Node SDKs and the `ductape` CLI.
//!
//! ## Quickstart
//!
//! ```toml
//! [dependencies]
//! ductape = "0.1"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! Run a development server (`ductape server --dev`) and export the two lines it prints
//! (`DUCTAPE_URL`, `DUCTAPE_ACCESS_KEY`), then:
//!
//! ```no_run
//! use ductape::{CreateSecret, Ductape, UpdateSecret};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), ductape::Error> {
//!     let ductape = Ductape::from_env()?; // DUCTAPE_URL, DUCTAPE_ACCESS_KEY
//!     ductape.init().await?; // unwraps the workspace key here, with the access key
//!     let secrets = ductape.secrets();
//!     secrets
//!         .create(CreateSecret::new("STRIPE_API_KEY", "sk_live_51ABC123").envs(["prd"]))
//!         .await?;
//!     let fetched = secrets.fetch("STRIPE_API_KEY").await?;
//!     assert_eq!(fetched.value.expose(), "sk_live_51ABC123");
//!     secrets
//!         .update("STRIPE_API_KEY", UpdateSecret::new().value("sk_live_new"))
//!         .await?;
//!     Ok(())
//! }
//! ```
//!
//! `cargo run -p ductape --example quickstart` runs the whole documented flow (the test
//! suite runs it against a dev server). Without async, [`blocking::Ductape`] has the same
//! operations.
//!
//! ## Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `client` | yes | the HTTP client ([`Ductape`], [`Secrets`], the cache, `watch`): reqwest over rustls with the bundled Mozilla roots, plus `DUCTAPE_CA_CERT` |
//! | `blocking` | yes | [`blocking::Ductape`]: the same operations without async |
//! | `native-roots` | no | also trust the operating system's certificate store |
//! | `openapi` | no | OpenAPI schemas of the wire types (the server's) |
//!
//! With `default-features = false` only the shared parts remain: [`crypto`] (envelopes,
//! access keys), [`validate`], [`references`] (`$Token{}`), [`access`] (the binding rules)
//! and [`wire`] — what the server uses.

pub mod access;
pub mod args;
pub mod audit;
pub mod bootstrap;
pub mod crypto;
pub mod error;
pub mod ids;
pub mod references;
pub mod session;
pub mod validate;
pub mod wire;

#[cfg(feature = "client")]
pub mod client;

pub use args::{CreateSecret, UpdateSecret};
pub use crypto::{AccessKey, Envelope, Plaintext, WorkspaceKey};
pub use error::{Error, ErrorCode};
pub use validate::{SecretKey, TokenType};
pub use wire::AuditQuery;

#[cfg(feature = "blocking")]
pub use client::blocking;
#[cfg(feature = "client")]
pub use client::{
    health, setup, AccessKeyOptions, CacheOptions, CheckItem, CheckReport, Config,
    CreatedAccessKey, Ductape, FetchedSecret, ResolveOptions, Secrets, WatchEvent, Watcher,
};
