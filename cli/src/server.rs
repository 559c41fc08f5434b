//! `ductape server`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ductape::{Error, ErrorCode};
use ductape_server::storage::postgres::PostgresStorage;
use ductape_server::storage::sqlite::{AuditSync, SqliteStorage};
use ductape_server::storage::Storage;
use ductape_server::{AppState, SetupToken};

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Development mode: in-memory store, a workspace and an admin access key made at
    /// start and printed. Nothing survives a restart.
    #[arg(long)]
    dev: bool,
    /// Do not serve the web console at `/` (the API is unchanged).
    #[arg(long, env = "DUCTAPE_NO_CONSOLE")]
    no_console: bool,
    /// Address to listen on (port 0 picks a free one; the URL printed says which).
    #[arg(long, env = "DUCTAPE_ADDR", default_value = "127.0.0.1:8200")]
    addr: SocketAddr,
    /// Where the SQLite database lives (default: $XDG_DATA_HOME/ductape or ~/.local/share/ductape).
    #[arg(long, env = "DUCTAPE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL database (`postgres://user:password@host:port/db`) instead of SQLite.
    #[arg(long, env = "DUCTAPE_DATABASE_URL", hide_env_values = true, conflicts_with_all = ["dev", "data_dir"])]
    database: Option<String>,
    /// Limit each access key to this many requests per second (429 with Retry-After beyond).
    #[arg(long, env = "DUCTAPE_RATE_LIMIT")]
    rate_limit: Option<std::num::NonZeroU32>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, env = "DUCTAPE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "DUCTAPE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Delete audit events older than this many days (checked hourly). Default: keep all.
    #[arg(long, env = "DUCTAPE_AUDIT_RETENTION_DAYS")]
    audit_retention_days: Option<std::num::NonZeroU32>,
    /// Keep at most this many versions of each secret, the current one included (the
    /// oldest are pruned as new ones are made). Default: keep every version.
    #[arg(long, env = "DUCTAPE_MAX_VERSIONS")]
    max_versions: Option<std::num::NonZeroU32>,
    /// Days a deleted secret stays in the trash (for `ductape secrets undelete`) before it
    /// is gone for good. 0: deletes are permanent at once.
    #[arg(long, env = "DUCTAPE_TRASH_DAYS", default_value_t = ductape_server::storage::Retention::DEFAULT_TRASH_DAYS)]
    trash_days: u32,
    /// The trash retention in seconds (overrides --trash-days; for tests).
    #[arg(long, env = "DUCTAPE_TRASH_SECONDS", hide = true)]
    trash_seconds: Option<u64>,
    /// A PEM CA certificate to trust for the PostgreSQL server's TLS (see `sslmode` in the URL).
    #[arg(long, env = "DUCTAPE_DATABASE_CA_CERT", requires = "database")]
    database_ca_cert: Option<PathBuf>,
    /// Most connections open at once (default: the descriptor limit, raised to its hard
    /// maximum, less 320). When full, the oldest connection with no request in flight is
    /// closed to make room.
    #[arg(long, env = "DUCTAPE_MAX_CONNECTIONS")]
    max_connections: Option<std::num::NonZeroUsize>,
    /// Seconds a client has to send a request's headers (and a new connection its first
    /// request, a TLS handshake its messages); an HTTP/1.1 keep-alive connection waiting
    /// longer for its next request is closed.
    #[arg(long, env = "DUCTAPE_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a client has to send a request's body (408 after).
    #[arg(long, env = "DUCTAPE_BODY_TIMEOUT", default_value_t = 30)]
    body_timeout: u64,
    /// Seconds an HTTP/2 connection may sit with no request in flight.
    #[arg(long, env = "DUCTAPE_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// How read events reach the disk (SQLite): `grouped` commits each before the value
    /// leaves and fsyncs within 10 ms, shared by the reads in that window (a power loss may
    /// drop that window's newest read events; a crash of the server drops none);
    /// `every-read` fsyncs each one before the value leaves. Changes to secrets and keys
    /// are always fsynced before they are acknowledged.
    #[arg(long, env = "DUCTAPE_AUDIT_SYNC", value_enum, default_value_t = AuditSyncArg::Grouped)]
    audit_sync: AuditSyncArg,
    /// Let the async worker threads run on any CPU. By default, when the server has a
    /// worker for each CPU it may run on (no CPU quota below that), each worker stays on its
    /// own CPU: the kernel otherwise wakes a worker on the CPU of whoever woke it, piling
    /// the work onto the cores that take the network's traffic while others sit idle.
    #[arg(long, env = "DUCTAPE_NO_PIN_WORKERS")]
    pub no_pin_workers: bool,
    /// Issue a new setup token even if one is pending (the pending one stops working).
    #[arg(long)]
    new_setup_token: bool,
    /// Log format: `text`, or `json` (one JSON object per line, for log shippers).
    #[arg(long, env = "DUCTAPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Same as --log-format json.
    #[arg(long, hide = true)]
    log_json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditSyncArg {
    Grouped,
    EveryRead,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("ductape");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/ductape"),
        None => PathBuf::from("ductape-data"),
    }
}

fn fail(msg: String) -> Error {
    Error::new(ErrorCode::Config, msg)
}

pub async fn run(args: ServerArgs) -> Result<ExitCode, Error> {
    init_logging(args.log_json || args.log_format == LogFormat::Json);
    let secs = |n: u64, flag: &str| {
        if n == 0 {
            Err(fail(format!("{flag} must be at least 1 second")))
        } else {
            Ok(std::time::Duration::from_secs(n))
        }
    };
    let mut limits = ductape_server::listen::Limits {
        header_timeout: secs(args.header_timeout, "--header-timeout")?,
        body_timeout: secs(args.body_timeout, "--body-timeout")?,
        idle_timeout: secs(args.idle_timeout, "--idle-timeout")?,
        ..Default::default()
    };
    if let Some(n) = args.max_connections {
        limits.max_connections = n.get();
    }
    let storage: Arc<dyn Storage> = if args.dev {
        Arc::new(SqliteStorage::in_memory().map_err(fail)?)
    } else if let Some(url) = &args.database {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(fail(
                "--database takes a postgres:// URL (SQLite is the default, see --data-dir)".into(),
            ));
        }
        tracing::info!("connecting to PostgreSQL");
        let ca = match &args.database_ca_cert {
            Some(p) => Some(
                std::fs::read(p).map_err(|e| fail(format!("cannot read {}: {e}", p.display())))?,
            ),
            None => None,
        };
        Arc::new(
            PostgresStorage::connect(url, ca.as_deref())
                .await
                .map_err(fail)?,
        )
    } else {
        let dir = args.data_dir.unwrap_or_else(default_data_dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        restrict_permissions(&dir);
        let path = dir.join("ductape.sqlite");
        tracing::info!(path = %path.display(), "opening the database");
        let sync = match args.audit_sync {
            AuditSyncArg::Grouped => AuditSync::Grouped,
            AuditSyncArg::EveryRead => AuditSync::EveryRead,
        };
        Arc::new(SqliteStorage::open_with(&path, sync).map_err(fail)?)
    };
    let trash_secs = args
        .trash_seconds
        .unwrap_or(u64::from(args.trash_days) * 86_400);
    let retention = ductape_server::storage::Retention {
        max_versions: args.max_versions.map(|n| n.get()),
        trash_ms: i64::try_from(trash_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
    };
    let mut state = AppState::new(storage.clone())
        .with_limits(limits.clone())
        .with_retention(retention);
    if let Some(n) = args.rate_limit {
        state = state.with_rate_limit(n);
    }
    if args.dev {
        state = state.dev();
    }
    state.console = !args.no_console;
    let state = Arc::new(state);
    if let Some(days) = args.audit_retention_days {
        let secs = u64::from(days.get()) * 86_400;
        ductape_server::spawn_audit_pruner(state.clone(), std::time::Duration::from_secs(secs));
    }
    ductape_server::spawn_trash_purger(state.clone());
    let listener = ductape_server::listen::bind(args.addr)
        .map_err(|e| fail(format!("cannot listen on {}: {e}", args.addr)))?;
    let local = listener.local_addr().map_err(|e| fail(e.to_string()))?;

    // These lines are the interface for people and scripts: `KEY=value`, on stdout, flushed.
    // The setup token is issued before anything is printed, and the lines go out in one
    // write, so that whoever reads the URL finds the token right behind it (issuing it
    // commits to the database, which can take long on a loaded machine).
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    // Zeroized, and large enough not to move: a development server's lines hold its admin key.
    let mut lines = zeroize::Zeroizing::new(String::with_capacity(1024));
    lines.push_str(&format!("DUCTAPE_URL={scheme}://{local}\n"));
    let mut notice = None;
    if args.dev {
        let key = ductape_server::dev_bootstrap(&state)
            .await
            .map_err(|e| fail(e.message))?;
        for part in ["DUCTAPE_ACCESS_KEY=", key.expose().as_str(), "\n"] {
            lines.push_str(part);
        }
        notice = Some(
            "Development server: in-memory, nothing is kept. Do not use it for real secrets."
                .to_owned(),
        );
    } else {
        match ductape_server::issue_setup_token(&state, args.new_setup_token)
            .await
            .map_err(|e| fail(e.message))?
        {
            SetupToken::Issued(token) => {
                lines.push_str(&format!("DUCTAPE_SETUP_TOKEN={token}\n"));
                notice = Some(format!("This server has no workspace yet. Set it up (once) with:\n  ductape init --url {scheme}://{local} --token <DUCTAPE_SETUP_TOKEN>"));
            }
            SetupToken::Pending => notice = Some(
                "This server has no workspace yet, and a setup token issued earlier (by a previous run, or by another server on this database) is still pending. Use it, or restart with --new-setup-token to issue a new one (the old one stops working).".to_owned()
            ),
            SetupToken::NotNeeded => {}
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(lines.as_bytes());
    let _ = out.flush();
    drop(out);
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }

    tracing::info!(addr = %local, dev = args.dev, tls = args.tls_cert.is_some(), max_connections = limits.max_connections, "serving");
    let served = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            ductape_server::serve_tls(listener, state, limits, cert, key, shutdown_signal()).await
        }
        _ => ductape_server::serve(listener, state, limits, shutdown_signal()).await,
    };
    served.map_err(|e| fail(format!("server failed: {e}")))?;
    if let Err(e) = storage.close().await {
        tracing::error!(error = %e.message, "could not finish the storage's pending work (it is done on the next start)");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // INFO: start, stop, writes and warnings; no line per request (RUST_LOG=debug adds
        // per-request spans, with paths but never query strings).
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(unix)]
fn restrict_permissions(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_permissions(_dir: &std::path::Path) {}
