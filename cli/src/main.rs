//! `ductape`: run the server, bootstrap it, manage secrets and access keys.

mod commands;
mod dotenv;
mod login;
mod output;
mod pinning;
mod run;
mod server;
mod transfer;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ductape",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DUCTAPE_COMMIT"), ")"),
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
    /// Check what stands between this machine and a working client: URL, server, TLS,
    /// readiness, clock, access key and session; each problem with its fix (exit 1 if any).
    Doctor(commands::DoctorArgs),
    /// Keep a server URL and access key for the commands that follow (OS keyring, else a
    /// file only you can read), checked against the server first.
    Login(commands::LoginArgs),
    /// Forget what `ductape login` kept.
    Logout,
    /// Print a shell completion script: `source <(ductape completions bash)`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff): `ductape man > ductape.1`.
    Man,
}

/// Writes generated text to stdout; a reader that stops early (`| head`) is not an error.
fn print_all(text: &[u8]) -> Result<ExitCode, ductape::Error> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(ductape::Error::new(
            ductape::ErrorCode::Config,
            format!("cannot write: {e}"),
        )),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let pin_workers = matches!(&cli.command, Command::Server(args) if !args.no_pin_workers);
    let rt = match pinning::runtime(pin_workers) {
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
            Command::Doctor(args) => commands::doctor(args).await,
            Command::Login(args) => commands::login(args).await,
            Command::Logout => commands::logout().await,
            Command::Completions { shell } => {
                let mut text = Vec::new();
                clap_complete::generate(
                    shell,
                    &mut <Cli as clap::CommandFactory>::command(),
                    "ductape",
                    &mut text,
                );
                print_all(&text)
            }
            Command::Man => {
                let mut text = Vec::new();
                clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                    .render(&mut text)
                    .expect("rendering into memory cannot fail");
                print_all(&text)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            // `--json` is a global flag of every command that talks to a server (not an
            // argument after `--`, which belongs to the command `ductape run` starts).
            let json = std::env::args_os()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            output::print_error(&e, json);
            ExitCode::FAILURE
        }
    }
}
