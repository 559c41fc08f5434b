//! `ductape`: run the server, bootstrap it, manage secrets and access keys.

mod commands;
mod dotenv;
mod output;
mod run;
mod server;
mod transfer;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ductape",
    version,
    about = "Ductape Secrets: zero-knowledge secrets server and client"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server is and which access key to use (flags or environment).
#[derive(clap::Args, Clone)]
pub struct ClientArgs {
    /// Server URL.
    #[arg(long, env = "DUCTAPE_URL", global = true)]
    url: Option<String>,
    /// Access key (prefer the environment: flags show up in process listings).
    #[arg(
        long,
        env = "DUCTAPE_ACCESS_KEY",
        hide_env_values = true,
        global = true
    )]
    access_key: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Server(server::ServerArgs),
    /// Set up a fresh server with the one-time token it printed; prints the admin access key once.
    Init(commands::InitArgs),
    /// Manage secrets.
    #[command(subcommand)]
    Secrets(commands::SecretsCommand),
    /// Manage access keys (admin).
    #[command(subcommand, name = "access-keys")]
    AccessKeys(commands::AccessKeysCommand),
    /// Workspace keys: rotation and the format upgrade (admin).
    #[command(subcommand)]
    Workspace(commands::WorkspaceCommand),
    /// Run a command with `$Token{KEY}` references in its environment resolved.
    Run(run::RunArgs),
    /// Check that a JSON configuration's references would resolve (exit 1 if not).
    Check(run::CheckArgs),
    /// List the audit trail (admin).
    Audit(run::AuditArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args).await,
            Command::Init(args) => commands::init(args).await,
            Command::Secrets(cmd) => commands::secrets(cmd).await,
            Command::AccessKeys(cmd) => commands::access_keys(cmd).await,
            Command::Workspace(cmd) => commands::workspace(cmd).await,
            Command::Run(args) => run::run(args).await,
            Command::Check(args) => run::check(args).await,
            Command::Audit(args) => run::audit(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e);
            ExitCode::FAILURE
        }
    }
}
