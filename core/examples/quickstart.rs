//! The documented flow from Rust. Start a development server first; it prints the two
//! variables this reads (`DUCTAPE_URL`, `DUCTAPE_ACCESS_KEY`) on stdout:
//!
//! ```sh
//! cargo run -q -p ductape-cli -- server --dev > dev.env &
//! until grep -q DUCTAPE_ACCESS_KEY dev.env; do sleep 0.2; done
//! set -a && . ./dev.env && set +a
//! cargo run -p ductape --example quickstart
//! ```

use ductape::{CreateSecret, Ductape, TokenType, UpdateSecret};

#[tokio::main]
async fn main() -> Result<(), ductape::Error> {
    let ductape = Ductape::from_env()?; // DUCTAPE_URL, DUCTAPE_ACCESS_KEY
    ductape.init().await?;
    let secrets = ductape.secrets();

    let one_year = ductape::ids::now_secs() + 365 * 24 * 60 * 60;
    let created = secrets
        .create(
            CreateSecret::new("STRIPE_API_KEY", "sk_live_51ABC123...")
                .description("Production Stripe API key for payment processing")
                .token_type(TokenType::Api)
                .scope(["stripe_payments", "checkout_service"])
                .envs(["prd", "staging"])
                .expires_at(one_year),
        )
        .await?;
    println!("Secret created: {} ({})", created.key, created.id);

    for s in secrets.fetch_all().await? {
        println!(
            "{}: {}",
            s.key,
            s.description.as_deref().unwrap_or("No description")
        );
    }

    let fetched = secrets.fetch("STRIPE_API_KEY").await?;
    println!("Value has {} characters", fetched.value.len());

    let updated = secrets
        .update(
            "STRIPE_API_KEY",
            UpdateSecret::new()
                .value("sk_live_51NEW_KEY...")
                .expires_at(one_year),
        )
        .await?;
    println!("Secret updated to version {}", updated.version);

    if secrets.revoke("STRIPE_API_KEY").await? {
        println!("Secret has been revoked");
    }
    if secrets.delete("STRIPE_API_KEY").await? {
        println!("Secret successfully deleted");
    }
    Ok(())
}
