//! `ductape run`, `ductape check` and `ductape audit`: secrets at run time.

use clap::Args;
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::output;
use crate::ClientArgs;
use ductape::{AuditQuery, Ductape, Error, ErrorCode, ResolveOptions, WatchEvent};

#[derive(Args)]
#[command(
    after_help = "Examples:\n  DATABASE_URL='postgres://app:$Token{DB_PASSWORD}@db/app' ductape run --app web --env prd -- ./server\n  ductape run --app web --env prd --inject -- node app.js"
)]
pub struct RunArgs {
    /// The app tag to resolve for (checked against each secret's scope).
    #[arg(long)]
    app: Option<String>,
    /// The environment slug to resolve for (checked against each secret's envs).
    #[arg(long)]
    env: Option<String>,
    /// Also set every secret available to this app and environment, under its own key
    /// (variables already set win).
    #[arg(long)]
    inject: bool,
    /// Keep running: when a referenced secret changes (any secret in scope with
    /// --inject), resolve again and restart the command (see --on-change).
    #[arg(long)]
    watch: bool,
    /// With --watch: `restart` (default: stop the command with SIGTERM, 10 s later SIGKILL,
    /// and start it again with the new values) or `signal:NAME` (send it SIGNAME, e.g.
    /// `signal:HUP`, and let it reload by itself; its environment stays as it was).
    #[arg(long, requires = "watch", default_value = "restart")]
    on_change: OnChange,
    #[command(flatten)]
    client: ClientArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    env: Option<String>,
    /// Warn about secrets expiring within this many days.
    #[arg(long, default_value_t = 7)]
    expiring_within_days: u64,
    /// A JSON configuration file (default: stdin).
    file: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    #[arg(long)]
    secret: Option<String>,
    #[arg(long)]
    access_key_id: Option<String>,
    #[arg(long)]
    app: Option<String>,
    #[arg(long)]
    env: Option<String>,
    /// Only events older than this id (a previous page's next_before).
    #[arg(long)]
    before: Option<i64>,
    /// Most events to show (default: one page of 100; with --json, every matching event).
    #[arg(long)]
    limit: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit trail's hash chain; exit 1 and name the first broken event if any.
    Verify,
}

/// Resolves the environment's references (and injected secrets), then replaces this process
/// with the command: its exit code and signals are the command's own. Values go straight
/// into the child's environment and never touch disk.
/// What `run --watch` does when a referenced secret changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnChange {
    Restart,
    Signal(i32),
}

impl std::str::FromStr for OnChange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "restart" {
            return Ok(OnChange::Restart);
        }
        let name = s
            .strip_prefix("signal:")
            .ok_or_else(|| format!("'{s}' is neither 'restart' nor 'signal:NAME'"))?;
        signal_number(name.trim_start_matches("SIG"))
            .map(OnChange::Signal)
            .ok_or_else(|| format!("unknown signal '{name}' (HUP, USR1, USR2, TERM, INT, QUIT)"))
    }
}

#[cfg(unix)]
fn signal_number(name: &str) -> Option<i32> {
    Some(match name {
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        _ => return None,
    })
}

#[cfg(not(unix))]
fn signal_number(_: &str) -> Option<i32> {
    None
}

/// The environment `run` gives the command: each variable holding a reference, resolved
/// (with --inject, every secret in scope too).
async fn command_env(d: &Ductape, args: &RunArgs) -> Result<(Map<String, Value>, Value), Error> {
    let opts = ResolveOptions::new(args.app.as_deref(), args.env.as_deref());
    let mut config = Map::new();
    for (name, value) in std::env::vars_os() {
        if let (Some(n), Some(v)) = (name.to_str(), value.to_str()) {
            if v.contains('$') && n != "DUCTAPE_ACCESS_KEY" {
                config.insert(n.to_owned(), Value::String(v.to_owned()));
            }
        }
    }
    if args.inject {
        let envs: Vec<String> = args.env.iter().cloned().collect();
        let ctx = ductape::access::Context {
            app: args.app.as_deref(),
            envs: &envs,
        };
        for s in d.secrets().fetch_all().await? {
            let visible = ductape::access::check_scope(&s.key, &s.scope, &s.envs, ctx).is_ok();
            let usable = s.status == ductape::wire::SecretStatus::Active;
            if visible && usable && std::env::var_os(&s.key).is_none() {
                config.insert(s.key.clone(), Value::String(format!("$Token{{{}}}", s.key)));
            }
        }
    }
    let config = Value::Object(config);
    // One request for every reference.
    let resolved = d.secrets().resolve(&config, &opts).await?;
    let Value::Object(vars) = resolved else {
        return Err(Error::new(ErrorCode::Protocol, "resolve changed the shape"));
    };
    Ok((vars, config))
}

fn command(args: &RunArgs, vars: &Map<String, Value>) -> std::process::Command {
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..])
        .env_remove("DUCTAPE_ACCESS_KEY");
    for (k, v) in vars {
        if let Value::String(s) = v {
            cmd.env(k, s);
        }
    }
    cmd
}

pub async fn run(args: RunArgs) -> Result<ExitCode, Error> {
    let d = crate::commands::client(&args.client).await?;
    if args.watch {
        return run_watching(&d, &args).await;
    }
    let (vars, _) = command_env(&d, &args).await?;
    exec(command(&args, &vars), &args.command[0])
}

/// `run --watch`: the command as a child, restarted (or signalled) when a secret it uses
/// changes; ends with the child's exit status. SIGINT and SIGTERM are passed to the child.
#[cfg(unix)]
async fn run_watching(d: &Ductape, args: &RunArgs) -> Result<ExitCode, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let failed = |e: std::io::Error| {
        Error::new(
            ErrorCode::Config,
            format!("cannot run '{}': {e}", args.command[0]),
        )
    };
    // Listening before the values are read, so no change falls in between.
    let mut changes = d.watch()?;
    let (vars, config) = command_env(d, args).await?;
    let mut used = ductape::references::find(&config)?
        .into_iter()
        .map(|k| k.to_string())
        .collect::<std::collections::HashSet<_>>();
    let mut child = tokio::process::Command::from(command(args, &vars))
        .spawn()
        .map_err(failed)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(failed)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(failed)?;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(failed)?;
                return Ok(exit_code(status));
            }
            _ = interrupt.recv() => send(&child, libc::SIGINT),
            _ = terminate.recv() => send(&child, libc::SIGTERM),
            change = changes.next() => {
                let relevant = match &change {
                    None => {
                        eprintln!("ductape run: the change feed ended; no longer watching");
                        let status = child.wait().await.map_err(failed)?;
                        return Ok(exit_code(status));
                    }
                    Some(WatchEvent::Reset) => true,
                    Some(WatchEvent::Changed(c)) => args.inject || used.contains(&c.key),
                };
                if !relevant {
                    continue;
                }
                // Changes often come in bursts (a rotation touches many): take them all.
                while let Ok(Some(_)) =
                    tokio::time::timeout(std::time::Duration::from_millis(300), changes.next()).await
                {}
                match args.on_change {
                    OnChange::Signal(sig) => {
                        eprintln!("ductape run: a secret changed; sending signal {sig}");
                        send(&child, sig);
                    }
                    OnChange::Restart => {
                        let (vars, config) = match command_env(d, args).await {
                            Ok(v) => v,
                            Err(e) => {
                                // Keep the running command rather than start one that fails.
                                eprintln!("ductape run: a secret changed but cannot be resolved ({e}); the command keeps running with the old values");
                                continue;
                            }
                        };
                        used = ductape::references::find(&config)?
                            .into_iter()
                            .map(|k| k.to_string())
                            .collect();
                        eprintln!("ductape run: a secret changed; restarting the command");
                        stop(&mut child).await;
                        child = tokio::process::Command::from(command(args, &vars))
                            .spawn()
                            .map_err(failed)?;
                    }
                }
            }
        }
    }
}

#[cfg(not(unix))]
async fn run_watching(_: &Ductape, _: &RunArgs) -> Result<ExitCode, Error> {
    Err(Error::new(
        ErrorCode::Config,
        "ductape run --watch needs a Unix system",
    ))
}

#[cfg(unix)]
fn send(child: &tokio::process::Child, sig: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

/// SIGTERM, then SIGKILL after 10 s.
#[cfg(unix)]
async fn stop(child: &mut tokio::process::Child) {
    send(child, libc::SIGTERM);
    if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[cfg(unix)]
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(c as u8),
        (None, Some(sig)) => ExitCode::from(128u8.wrapping_add(sig as u8)),
        _ => ExitCode::FAILURE,
    }
}

#[cfg(unix)]
fn exec(mut cmd: std::process::Command, name: &str) -> Result<ExitCode, Error> {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec(); // returns only on failure
    Err(Error::new(
        ErrorCode::Config,
        format!("cannot run '{name}': {err}"),
    ))
}

#[cfg(not(unix))]
fn exec(mut cmd: std::process::Command, name: &str) -> Result<ExitCode, Error> {
    let status = cmd
        .status()
        .map_err(|e| Error::new(ErrorCode::Config, format!("cannot run '{name}': {e}")))?;
    Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
}

/// Preflight: prints every reference of a configuration and whether it would resolve;
/// exits 1 if any would not.
pub async fn check(args: CheckArgs) -> Result<ExitCode, Error> {
    let text = match &args.file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            Error::new(
                ErrorCode::Config,
                format!("cannot read {}: {e}", p.display()),
            )
        })?,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::new(ErrorCode::Config, format!("cannot read stdin: {e}")))?;
            s
        }
    };
    let config: Value = serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorCode::Config,
            format!(
                "the configuration is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let d = crate::commands::client(&args.client).await?;
    let mut opts = ResolveOptions::new(args.app.as_deref(), args.env.as_deref());
    opts.expiring_within = Some(std::time::Duration::from_secs(
        args.expiring_within_days.saturating_mul(86400),
    ));
    let report = d.secrets().check(&config, &opts).await?;
    if args.client.json {
        output::json(&report);
    } else {
        for item in &report.references {
            match (&item.message, &item.warning) {
                (Some(m), _) => println!("FAIL\t{}\t{m}", item.key),
                (None, Some(w)) => println!("WARN\t{}\t{w}", item.key),
                (None, None) => println!("ok\t{}", item.key),
            }
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn audit(args: AuditArgs) -> Result<ExitCode, Error> {
    if let Some(AuditCommand::Verify) = args.command {
        return verify_audit(args.client).await;
    }
    let d = crate::commands::client(&args.client).await?;
    let mut query = AuditQuery {
        secret_key: args.secret,
        access_key_id: args.access_key_id,
        app: args.app,
        env: args.env,
        before: args.before,
        limit: None,
    };
    if args.client.json {
        // JSON lines, newest first, page after page: for shipping to a SIEM.
        let mut out = std::io::stdout().lock();
        d.audit_each(query, args.limit.map(u64::from), |e| {
            // Plain entries always serialise; a failed write means the reader went away
            // (e.g. `| head`): stop quietly.
            serde_json::to_string(&e).is_ok_and(|line| writeln!(out, "{line}").is_ok())
        })
        .await?;
        let _ = out.flush();
        return Ok(ExitCode::SUCCESS);
    }
    query.limit = Some(args.limit.unwrap_or(AuditQuery::DEFAULT_LIMIT));
    let page = d.audit(&query).await?;
    for e in &page.events {
        let claimed = match (&e.claimed_app, &e.claimed_env) {
            (None, None) => String::new(),
            (a, v) => format!(
                "\tclaimed app={} env={}",
                a.as_deref().unwrap_or("-"),
                v.as_deref().unwrap_or("-")
            ),
        };
        println!(
            "{}\t{}\t{}\t{}\tapp={}\tenv={}{claimed}\t{}{}",
            e.at,
            e.access_key_id,
            e.action,
            e.subject(),
            e.app.as_deref().unwrap_or("-"),
            e.env.as_deref().unwrap_or("-"),
            if e.allowed {
                "allowed".to_owned()
            } else {
                format!("denied: {}", e.reason.as_deref().unwrap_or(""))
            },
            e.detail
                .as_deref()
                .map(|d| format!("\t{d}"))
                .unwrap_or_default(),
        );
    }
    if let Some(b) = page.next_before {
        eprintln!("more: --before {b}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify_audit(client: ClientArgs) -> Result<ExitCode, Error> {
    let d = crate::commands::client(&client).await?;
    match d.verify_audit().await? {
        Ok(v) => {
            if client.json {
                output::json(&serde_json::json!({
                    "ok": true, "events": v.events, "unchained": v.unchained,
                    "from_genesis": v.from_genesis, "head": v.head,
                }));
            } else {
                println!(
                    "audit chain intact: {} events, head {}",
                    v.events,
                    v.head.as_deref().unwrap_or("-")
                );
                if !v.from_genesis {
                    println!(
                        "(older events were pruned by retention: checked from the oldest kept)"
                    );
                }
                if v.unchained > 0 {
                    println!(
                        "({} older events predate the chain and are not covered)",
                        v.unchained
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            if client.json {
                output::json(&serde_json::json!({
                    "ok": false, "broken_at": broken.id, "reason": broken.reason,
                }));
            } else {
                println!(
                    "audit chain BROKEN at event {}: {}",
                    broken.id, broken.reason
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
