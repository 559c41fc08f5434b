//! # Ductape Secrets client core
//!
//! Secret values are encrypted here, in the client, before they leave the process, and
//! decrypted here after they arrive: the server only ever sees ciphertext.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ductape::Error> {
//! use ductape::{Ductape, CreateSecret};
//!
//! let ductape = Ductape::from_env()?; // DUCTAPE_URL, DUCTAPE_ACCESS_KEY
//! ductape.init().await?;
//! let created = ductape
//!     .secrets()
//!     .create(CreateSecret::new("STRIPE_API_KEY", "sk_live_51ABC123").description("Stripe"))
//!     .await?;
//! let fetched = ductape.secrets().fetch("STRIPE_API_KEY").await?;
//! assert_eq!(fetched.value.expose(), "sk_live_51ABC123");
//! # let _ = created; Ok(()) }
//! ```

pub mod access;
pub mod audit;
pub mod bootstrap;
pub mod crypto;
pub mod error;
pub mod ids;
pub mod references;
pub mod validate;
pub mod wire;

#[cfg(feature = "client")]
pub mod client;

pub use crypto::{AccessKey, Envelope, Plaintext, WorkspaceKey};
pub use error::{Error, ErrorCode};
pub use validate::{SecretKey, TokenType};
pub use wire::AuditQuery;

#[cfg(feature = "client")]
pub use client::{
    blocking, health, setup, AccessKeyOptions, CacheOptions, CheckItem, CheckReport, Config,
    CreateSecret, CreatedAccessKey, Ductape, FetchedSecret, ResolveOptions, Secrets, UpdateSecret,
    WatchEvent, Watcher,
};
