//! Client commands: `init`, `secrets ...`, `access-keys ...`.

use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::output;
use crate::ClientArgs;
use ductape::validate::{MetadataInput, Patch};
use ductape::wire::{ListQuery, Permission};
use ductape::{
    AccessKey, AccessKeyOptions, Config, CreateSecret, Ductape, Error, ErrorCode, Plaintext,
    TokenType, UpdateSecret,
};
use zeroize::Zeroizing;

#[derive(Args)]
pub struct InitArgs {
    /// The server's one-time setup token.
    #[arg(long, env = "DUCTAPE_SETUP_TOKEN", hide_env_values = true)]
    token: String,
    /// A name for the workspace.
    #[arg(long, default_value = "default")]
    name: String,
    #[command(flatten)]
    client: ClientArgs,
}

/// Value sources: exactly one of `--value`, `--value-file`, or stdin.
/// Where a value comes from, the same for `create` and `update`: --value, --value-file,
/// or stdin (piped: one trailing newline dropped). Stdin is read when asked for
/// (--value-stdin), and otherwise when it is not a terminal and nothing else was given
/// (`create` always needs a value; `update` only when it changes no metadata).
#[derive(Args)]
pub struct ValueArgs {
    /// The value (visible in process listings: prefer stdin or --value-file).
    #[arg(long, conflicts_with_all = ["value_file", "value_stdin"])]
    value: Option<String>,
    /// Read the value from a file (as is, no trailing newline removed).
    #[arg(long, conflicts_with = "value_stdin")]
    value_file: Option<PathBuf>,
    /// Read the value from stdin.
    #[arg(long)]
    value_stdin: bool,
}

#[derive(Args)]
pub struct MetadataArgs {
    #[arg(long)]
    description: Option<String>,
    /// api or access.
    #[arg(long)]
    token_type: Option<String>,
    /// App tags, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scope: Option<Vec<String>>,
    /// Environment slugs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    envs: Option<Vec<String>>,
    /// Expiry: Unix seconds, a date (2027-01-01), an RFC 3339 date-time
    /// (2027-01-01T09:00:00Z), or a duration from now (90d, 12h, 2w).
    #[arg(long)]
    expires_at: Option<String>,
}

impl MetadataArgs {
    /// Sets every metadata field given on the command line.
    fn apply(self, m: &mut MetadataInput) -> Result<(), Error> {
        fn set<T>(v: Option<T>) -> Patch<T> {
            v.map_or(Patch::Keep, Patch::Set)
        }
        m.description = set(self.description);
        m.token_type = set(self
            .token_type
            .as_deref()
            .map(TokenType::parse)
            .transpose()?);
        m.scope = set(self.scope);
        m.envs = set(self.envs);
        m.expires_at = set(self
            .expires_at
            .as_deref()
            .map(|t| ductape::validate::parse_expiry(t, ductape::ids::now_secs()))
            .transpose()?);
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.description.is_none()
            && self.token_type.is_none()
            && self.scope.is_none()
            && self.envs.is_none()
            && self.expires_at.is_none()
    }
}

/// `update` flags that empty a field.
#[derive(Args)]
pub struct ClearArgs {
    /// Remove the description.
    #[arg(long, conflicts_with = "description")]
    clear_description: bool,
    /// Make the secret available to every app (an empty scope).
    #[arg(long, conflicts_with = "scope")]
    clear_scope: bool,
    /// Make the secret available in every environment (no envs).
    #[arg(long, conflicts_with = "envs")]
    clear_envs: bool,
    /// Remove the expiry.
    #[arg(long, conflicts_with = "expires_at")]
    no_expiry: bool,
}

impl ClearArgs {
    fn apply(&self, m: &mut MetadataInput) {
        if self.clear_description {
            m.description = Patch::Clear;
        }
        if self.clear_scope {
            m.scope = Patch::Clear;
        }
        if self.clear_envs {
            m.envs = Patch::Clear;
        }
        if self.no_expiry {
            m.expires_at = Patch::Clear;
        }
    }

    fn is_empty(&self) -> bool {
        !(self.clear_description || self.clear_scope || self.clear_envs || self.no_expiry)
    }
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Create a secret; the value comes from --value, --value-file or stdin.
    #[command(
        after_help = "Examples:\n  echo -n 'sk_live_51ABC' | ductape secrets create STRIPE_API_KEY --scope payments --envs prd\n  ductape secrets create DB_URL --value-file db-url.txt --expires-at 2027-06-30\n  ductape secrets create TEMP_TOKEN --value abc --expires-at 12h\n  ductape secrets create DEBUG_TOKEN --value abc --description 'dev only' --envs dev"
    )]
    Create {
        key: String,
        #[command(flatten)]
        value: ValueArgs,
        #[command(flatten)]
        meta: MetadataArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create every secret of a .env or JSON file that does not exist yet (re-runs skip
    /// what is there), with a progress bar.
    Import {
        file: PathBuf,
        /// The file's format (default: from its extension, .json or else env).
        #[arg(long, value_enum)]
        format: Option<crate::transfer::Format>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write every secret with its value, as .env lines or a JSON array that import reads.
    Export {
        #[arg(long, value_enum, default_value = "env")]
        format: crate::transfer::Format,
        /// A new file to write (created readable by you only); default stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List secrets (metadata only), streamed page by page.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a secret's value (with --json, the whole secret).
    #[command(
        after_help = "Examples:\n  ductape secrets get STRIPE_API_KEY\n  export DB_URL=\"$(ductape secrets get DB_URL)\"\n  ductape secrets get STRIPE_API_KEY --json\n  ductape secrets get STRIPE_API_KEY --version 3"
    )]
    Get {
        key: String,
        /// An earlier version (see `ductape secrets history`).
        #[arg(long)]
        version: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A secret's versions, newest first: when, by which access key, what changed (never
    /// values).
    History {
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a new version with an earlier version's value (history is kept).
    #[command(
        after_help = "Examples:\n  ductape secrets history STRIPE_API_KEY\n  ductape secrets rollback STRIPE_API_KEY 3\n  ductape secrets rollback STRIPE_API_KEY 3 --if-version 7"
    )]
    Rollback {
        key: String,
        /// The version whose value becomes current again.
        version: i64,
        /// Only if the secret is still at this version (else exit 1, version_conflict).
        #[arg(long)]
        if_version: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Bring back a deleted secret (with its history) from the server's trash.
    Undelete {
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a secret's value and/or metadata; --clear-* flags empty a field.
    Update {
        key: String,
        #[command(flatten)]
        value: ValueArgs,
        #[command(flatten)]
        meta: MetadataArgs,
        #[command(flatten)]
        clear: ClearArgs,
        /// Only if the secret is still at this version (else exit 1, version_conflict).
        #[arg(long)]
        if_version: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a secret: it moves to the server's trash with its history (`ductape secrets
    /// undelete` brings it back until the trash expires it).
    Delete {
        key: String,
        /// Only if the secret is still at this version (else exit 1, version_conflict).
        #[arg(long)]
        if_version: Option<i64>,
        /// Delete it and its history at once, skipping the trash (admin).
        #[arg(long)]
        permanent: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a secret (kept, but its value can no longer be read).
    Revoke {
        key: String,
        /// Only if the secret is still at this version (else exit 1, version_conflict).
        #[arg(long)]
        if_version: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Undo a revoke.
    Restore {
        key: String,
        /// Only if the secret is still at this version (else exit 1, version_conflict).
        #[arg(long)]
        if_version: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Which apps and environments read a secret, and when last.
    Usage {
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum AccessKeysCommand {
    /// Issue a new access key; prints it once.
    #[command(
        after_help = "Examples:\n  ductape access-keys create --name ci --permissions list,read --app web --envs prd\n  ductape access-keys create --name ops-admin --permissions admin\n  ductape access-keys create --name deployer --permissions list,read,write --app web --json"
    )]
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: list, read, write, revoke, admin.
        #[arg(long, value_delimiter = ',', default_value = "list,read")]
        permissions: Vec<String>,
        /// Bind the key to an app tag.
        #[arg(long)]
        app: Option<String>,
        /// Bind the key to environments, comma-separated.
        #[arg(long, value_delimiter = ',')]
        envs: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List access keys.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete an access key, by id or by its (unique) name.
    Delete {
        /// The key's id (`ductape access-keys list`) or name.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum WorkspaceCommand {
    /// Rotate the workspace keys: a new key generation, every value re-encrypted under it,
    /// every remaining access key granted it, the old generation retired. Run it after
    /// deleting a leaked key. Resumable: run it again after an interruption. Takes an
    /// unbound admin key.
    #[command(
        name = "rotate-key",
        after_help = "Examples:\n  ductape access-keys delete 3f2a9c0d1e4b5a67 && ductape workspace rotate-key\n  ductape workspace rotate-key --json   # {\"generation\": 2, \"resealed\": 1200, \"started\": true}"
    )]
    RotateKey {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upgrade a format-1 workspace (one workspace key) to format 2 (keys per app and
    /// environments), or finish an upgrade left half done. Resumable.
    Upgrade {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn workspace(cmd: WorkspaceCommand) -> Result<ExitCode, Error> {
    let (c, rotate) = match &cmd {
        WorkspaceCommand::RotateKey { client } => (client, true),
        WorkspaceCommand::Upgrade { client } => (client, false),
    };
    let d = Ductape::new(config(c).await?)?;
    let bar = crate::output::progress_bar("resealing", 0);
    let step = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = if rotate {
        d.rotate_key_with_progress(step).await
    } else {
        d.upgrade_with_progress(step).await
    };
    bar.finish_and_clear();
    let report = report?;
    if c.json {
        output::json(&serde_json::json!({
            "generation": report.generation,
            "resealed": report.resealed,
            "started": report.started,
        }));
    } else if rotate || report.resealed > 0 || report.started {
        eprintln!(
            "Workspace keys at generation {} ({} values resealed by this run).",
            report.generation, report.resealed
        );
    } else {
        eprintln!("Nothing to upgrade: the workspace is in format 2.");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn init(args: InitArgs) -> Result<ExitCode, Error> {
    let url = args
        .client
        .url
        .as_deref()
        .unwrap_or(ductape::client::DEFAULT_URL);
    let (key, ws) = ductape::setup(url, &args.token, &args.name).await?;
    if args.client.json {
        output::json(&serde_json::json!({
            "workspace": ws,
            "access_key": key.expose().as_str(),
        }));
    } else {
        println!("DUCTAPE_ACCESS_KEY={}", key.expose().as_str());
        eprintln!(
            "Workspace '{}' ({}) is ready. This admin access key is shown only once: store it now.",
            ws.name, ws.workspace_id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The URL and access key a command uses: flags, else the environment, else what
/// `ductape login` kept, whose key goes only to the server it was kept for.
async fn url_and_key(
    args: &ClientArgs,
) -> Result<(Option<String>, Option<Zeroizing<String>>), Error> {
    let mut url = args.url.clone();
    let key = match &args.access_key {
        Some(k) => Some(Zeroizing::new(k.clone())),
        None => match crate::login::load().await? {
            Some(kept) if url.as_deref().is_none_or(|u| same_server(u, &kept.url)) => {
                url.get_or_insert(kept.url);
                Some(kept.access_key)
            }
            _ => None,
        },
    };
    Ok((url, key))
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The client configuration of a command (see [`url_and_key`]).
pub async fn config(args: &ClientArgs) -> Result<Config, Error> {
    let (url, key) = url_and_key(args).await?;
    let Some(key) = key else {
        return Err(Error::new(
            ErrorCode::Config,
            "no access key: set DUCTAPE_ACCESS_KEY, or run `ductape login` (a key kept by \
             `login` is used only for the URL it was kept with)",
        ));
    };
    Config::resolve(url.as_deref(), Some(key.as_str()))
}

pub async fn client(args: &ClientArgs) -> Result<Ductape, Error> {
    let d = Ductape::new(config(args).await?)?;
    d.init().await?;
    Ok(d)
}

fn read_value(v: &ValueArgs, stdin_ok: bool) -> Result<Option<Plaintext>, Error> {
    if let Some(value) = &v.value {
        return Ok(Some(Plaintext::from(value.as_str())));
    }
    if let Some(path) = &v.value_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorCode::Config,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        return Ok(Some(Plaintext::new(text)));
    }
    if !(stdin_ok || v.value_stdin) {
        return Ok(None);
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() && !v.value_stdin {
        return Err(Error::new(
            ErrorCode::Config,
            "no value: pipe it on stdin, or pass --value-file or --value",
        ));
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|e| Error::new(ErrorCode::Config, format!("cannot read stdin: {e}")))?;
    // `echo value | ductape ...` adds one newline that is not part of the value.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(Some(Plaintext::new(text)))
}

impl SecretsCommand {
    /// The secret a command names, and how to reach the server (for "did you mean").
    fn target(&self) -> Option<(String, ClientArgs)> {
        match self {
            SecretsCommand::Get { key, client, .. }
            | SecretsCommand::History { key, client }
            | SecretsCommand::Rollback { key, client, .. }
            | SecretsCommand::Update { key, client, .. }
            | SecretsCommand::Delete { key, client, .. }
            | SecretsCommand::Revoke { key, client, .. }
            | SecretsCommand::Restore { key, client, .. }
            | SecretsCommand::Usage { key, client } => Some((key.clone(), client.clone())),
            _ => None,
        }
    }
}

pub async fn secrets(cmd: SecretsCommand) -> Result<ExitCode, Error> {
    let target = cmd.target();
    match (secrets_command(cmd).await, target) {
        (Err(e), Some((key, c))) if e.code() == ErrorCode::SecretNotFound => {
            Err(with_suggestion(&c, &key, e).await)
        }
        (outcome, _) => outcome,
    }
}

/// A "not found" for `key`, naming the closest key the caller may list (among the first
/// 1,000) when one is a likely typo of it.
async fn with_suggestion(c: &ClientArgs, key: &str, e: Error) -> Error {
    let Ok(d) = client(c).await else {
        return e;
    };
    let query = ListQuery {
        limit: Some(ListQuery::MAX_LIMIT),
        cursor: None,
    };
    let Ok(page) = d.secrets().page(&query).await else {
        return e; // no list permission: nothing to suggest from
    };
    let wanted = key.to_ascii_lowercase();
    let best = page
        .secrets
        .iter()
        .map(|s| {
            let d = strsim::damerau_levenshtein(&wanted, &s.key.to_ascii_lowercase());
            (d, &s.key)
        })
        .filter(|(dist, k)| *dist <= (key.len() / 4).clamp(1, 3) && k.as_str() != key)
        .min();
    match best {
        Some((_, k)) => Error::new(e.code(), format!("{} (did you mean '{k}'?)", e.message())),
        None => e,
    }
}

async fn secrets_command(cmd: SecretsCommand) -> Result<ExitCode, Error> {
    match cmd {
        SecretsCommand::Create {
            key,
            value,
            meta,
            client: c,
        } => {
            let value = read_value(&value, true)?.expect("stdin fallback yields a value");
            let mut args = CreateSecret::new(key, value);
            meta.apply(&mut args.metadata)?;
            let d = client(&c).await?;
            let rec = d.secrets().create(args).await?;
            if c.json {
                output::json(&rec);
            } else {
                println!("created {} (version {})", rec.key, rec.version);
            }
        }
        SecretsCommand::Import {
            file,
            format,
            client: c,
        } => {
            let d = client(&c).await?;
            return crate::transfer::import(&d, &file, format, c.json).await;
        }
        SecretsCommand::Export {
            format,
            output,
            client: c,
        } => {
            let d = client(&c).await?;
            return crate::transfer::export(&d, format, output.as_deref()).await;
        }
        SecretsCommand::List { client: c } => {
            let d = client(&c).await?;
            list(&d, c.json).await?;
        }
        SecretsCommand::Get {
            key,
            version,
            client: c,
        } => {
            let d = client(&c).await?;
            let s = match version {
                Some(v) => d.secrets().fetch_version(&key, v).await?,
                None => d.secrets().fetch(&key).await?,
            };
            if c.json {
                output::json(&s.to_json());
            } else {
                println!("{}", s.value.expose());
            }
        }
        SecretsCommand::Update {
            key,
            value,
            meta,
            clear,
            if_version,
            client: c,
        } => {
            let mut args = UpdateSecret::new();
            if let Some(v) = if_version {
                args = args.expected_version(v);
            }
            // Stdin is the value when it is all there is (as for create).
            let value_only = meta.is_empty() && clear.is_empty();
            if let Some(v) = read_value(&value, value_only)? {
                args = args.value(v);
            }
            meta.apply(&mut args.metadata)?;
            clear.apply(&mut args.metadata);
            let d = client(&c).await?;
            let rec = d.secrets().update(&key, args).await?;
            if c.json {
                output::json(&rec);
            } else {
                println!("updated {} (version {})", rec.key, rec.version);
            }
        }
        SecretsCommand::Delete {
            key,
            if_version,
            permanent,
            client: c,
        } => {
            let d = client(&c).await?;
            if permanent {
                d.secrets().delete_permanently(&key, if_version).await?;
                done(&c, "deleted for good", &key);
            } else {
                d.secrets().delete_if_version(&key, if_version).await?;
                done(&c, "deleted", &key);
            }
        }
        SecretsCommand::History { key, client: c } => {
            let d = client(&c).await?;
            let versions = d.secrets().versions(&key).await?;
            if c.json {
                output::json(&versions);
            } else {
                for v in &versions {
                    println!("{}", output::version_line(v));
                }
            }
        }
        SecretsCommand::Rollback {
            key,
            version,
            if_version,
            client: c,
        } => {
            let d = client(&c).await?;
            let rec = d
                .secrets()
                .rollback_if_version(&key, version, if_version)
                .await?;
            if c.json {
                output::json(&rec);
            } else {
                println!(
                    "rolled back {} to the value of version {version} (now version {})",
                    rec.key, rec.version
                );
            }
        }
        SecretsCommand::Undelete { key, client: c } => {
            let d = client(&c).await?;
            let rec = d.secrets().undelete(&key).await?;
            if c.json {
                output::json(&rec);
            } else {
                println!("undeleted {} (version {})", rec.key, rec.version);
            }
        }
        SecretsCommand::Revoke {
            key,
            if_version,
            client: c,
        } => {
            let d = client(&c).await?;
            d.secrets().revoke_if_version(&key, if_version).await?;
            done(&c, "revoked", &key);
        }
        SecretsCommand::Usage { key, client: c } => {
            let d = client(&c).await?;
            let usage = d.secrets().usage(&key).await?;
            if c.json {
                output::json(&usage);
            } else {
                for u in &usage {
                    println!(
                        "app={}\tenv={}\treads={}\tdenied={}\tlast={}",
                        u.app.as_deref().unwrap_or("-"),
                        u.env.as_deref().unwrap_or("-"),
                        u.reads,
                        u.denied,
                        u.last_access
                    );
                }
            }
        }
        SecretsCommand::Restore {
            key,
            if_version,
            client: c,
        } => {
            let d = client(&c).await?;
            let rec = d.secrets().restore_if_version(&key, if_version).await?;
            if c.json {
                output::json(&rec);
            } else {
                println!("restored {}", rec.key);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the listing a page at a time (as one JSON array with `--json`), so the first
/// lines come at once and memory stays flat however many secrets there are.
async fn list(d: &Ductape, json: bool) -> Result<(), Error> {
    let failed = |e: std::io::Error| Error::new(ErrorCode::Config, format!("cannot write: {e}"));
    let mut out = output::Streamed::start(std::io::BufWriter::new(std::io::stdout().lock()), json)
        .map_err(failed)?;
    let mut query = ListQuery {
        limit: Some(ListQuery::MAX_LIMIT),
        cursor: None,
    };
    loop {
        let page = d.secrets().page(&query).await?;
        for s in &page.secrets {
            let entry = if json {
                serde_json::to_string(s).unwrap_or_default()
            } else {
                output::secret_line(s)
            };
            out.entry(&entry).map_err(failed)?;
        }
        out.flush().map_err(failed)?;
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => return out.finish().map_err(failed),
        }
    }
}

fn done(c: &ClientArgs, what: &str, key: &str) {
    if c.json {
        output::json(&serde_json::json!({ what: true, "key": key }));
    } else {
        println!("{what} {key}");
    }
}

pub async fn access_keys(cmd: AccessKeysCommand) -> Result<ExitCode, Error> {
    match cmd {
        AccessKeysCommand::Create {
            name,
            permissions,
            app,
            envs,
            client: c,
        } => {
            let permissions = permissions
                .iter()
                .map(|p| {
                    Permission::parse(p.trim()).ok_or_else(|| {
                        Error::invalid_field(
                            "permissions must be among: list, read, write, revoke, admin",
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let d = client(&c).await?;
            let mut opts = AccessKeyOptions::new(name, permissions);
            opts.app = app;
            opts.envs = envs;
            let bar = crate::output::progress_bar("granting", 0);
            let created = d
                .access_keys()
                .create_with_progress(opts, |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await;
            bar.finish_and_clear();
            let created = created?;
            if c.json {
                output::json(&serde_json::json!({
                    "access_key": created.key.expose().as_str(),
                    "info": created.info,
                }));
            } else {
                println!("DUCTAPE_ACCESS_KEY={}", created.key.expose().as_str());
                eprintln!(
                    "Access key {} ('{}') created. It is shown only once.",
                    created.info.id, created.info.name
                );
            }
        }
        AccessKeysCommand::List { client: c } => {
            let d = client(&c).await?;
            let keys = d.access_keys().list().await?;
            if c.json {
                output::json(&keys);
            } else {
                for k in &keys {
                    println!("{}", output::access_key_line(k));
                }
            }
        }
        AccessKeysCommand::Delete { id, client: c } => {
            let d = client(&c).await?;
            let id = d.access_keys().find_id(&id).await?;
            d.access_keys().delete(&id).await?;
            done(&c, "deleted", &id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Only the checks that need no access key (URL, server, TLS, readiness, clock): what a
    /// container's or a load balancer's health check runs.
    #[arg(long)]
    server_only: bool,
}

pub async fn doctor(args: DoctorArgs) -> Result<ExitCode, Error> {
    let c = &args.client;
    let (url, key) = url_and_key(c).await?;
    let findings = if args.server_only {
        ductape::client::doctor_server(url.as_deref()).await
    } else {
        ductape::client::doctor(url.as_deref(), key.as_deref().map(String::as_str)).await
    };
    if c.json {
        output::json(&findings);
    } else {
        for f in &findings {
            let mark = if f.ok { "ok  " } else { "FAIL" };
            println!("{mark} {:<10} {}", f.check, f.detail);
            if let Some(fix) = &f.fix {
                println!("     {:<10} -> {fix}", "");
            }
        }
    }
    Ok(if findings.iter().all(|f| f.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ductape login --url https://secrets.example.com     # asks for the key (hidden)\n  echo \"$KEY\" | ductape login --url http://127.0.0.1:8200\n  ductape logout"
)]
pub struct LoginArgs {
    /// The server (default: DUCTAPE_URL, else http://127.0.0.1:8200).
    #[arg(long, env = "DUCTAPE_URL")]
    url: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Checks an access key against the server and keeps it, with the URL, for the commands
/// that follow (OS keyring, else a 0600 file). The key comes from DUCTAPE_ACCESS_KEY, piped
/// stdin, or a hidden prompt; never from a flag (process listings show flags).
pub async fn login(args: LoginArgs) -> Result<ExitCode, Error> {
    let text = match std::env::var("DUCTAPE_ACCESS_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        Some(k) => Zeroizing::new(k),
        None if std::io::stdin().is_terminal() => Zeroizing::new(
            rpassword::prompt_password("Access key (dtpk_…): ")
                .map_err(|e| Error::new(ErrorCode::Config, format!("cannot read the key: {e}")))?,
        ),
        None => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut line)
                .map_err(|e| Error::new(ErrorCode::Config, format!("cannot read stdin: {e}")))?;
            Zeroizing::new(line.trim().to_owned())
        }
    };
    let key: AccessKey = text.trim().parse()?;
    let config = Config::resolve(args.url.as_deref(), Some(text.trim()))?.max_retries(0);
    let url = config.url().to_owned();
    let d = Ductape::new(config)?;
    // Only a key the server accepts is kept.
    d.init().await?;
    let who = d.access_key_info()?;
    let store = crate::login::save(&url, &key).await?;
    let kept_in = match store {
        crate::login::Store::Keyring => "the OS keyring".to_owned(),
        crate::login::Store::File => crate::login::dir()?
            .join("credentials")
            .display()
            .to_string(),
    };
    if args.json {
        output::json(&serde_json::json!({
            "url": url, "access_key_id": key.id(), "name": who.name, "kept_in": store,
        }));
    } else {
        println!(
            "logged in to {url} as '{}' ({}); the key is kept in {kept_in}",
            who.name,
            key.id()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Forgets what `ductape login` kept.
pub async fn logout() -> Result<ExitCode, Error> {
    if crate::login::forget().await? {
        println!("logged out: the kept URL and access key are gone");
    } else {
        println!("not logged in: nothing was kept");
    }
    Ok(ExitCode::SUCCESS)
}
