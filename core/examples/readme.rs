//! The README's Rust example, as it is there (scripts/test-readme checks that they match):
//! `cargo run -p ductape --example readme` with DUCTAPE_URL and DUCTAPE_ACCESS_KEY set.

use ductape::{CreateSecret, Ductape, UpdateSecret};

#[tokio::main]
async fn main() -> Result<(), ductape::Error> {
    let ductape = Ductape::from_env()?; // DUCTAPE_URL, DUCTAPE_ACCESS_KEY
    ductape.init().await?; // unwraps the workspace key locally
    let secrets = ductape.secrets();
    secrets
        .create(CreateSecret::new("STRIPE_API_KEY", "sk_live_...").envs(["prd"]))
        .await?;
    let s = secrets.fetch("STRIPE_API_KEY").await?;
    println!("{}", s.value.expose());
    secrets
        .update("STRIPE_API_KEY", UpdateSecret::new().value("sk_live_new"))
        .await?;
    Ok(())
}
