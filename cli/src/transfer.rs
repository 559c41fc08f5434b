//! `ductape secrets import` and `export`: many secrets in and out, for migrations.
//!
//! Import seals every value here and sends them through the batch-create route, several
//! hundred a request and a few requests in flight; a key that already exists is left as it
//! is and counted, so a re-run after an interruption creates only what is missing. Export
//! pages through the listing and reads values through batch reads (each read is audited as
//! any other).

use clap::ValueEnum;
use futures_util::stream::{self, StreamExt};
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::dotenv;
use crate::output::Streamed;
use ductape::wire::{BatchCreateBody, ListQuery, SecretRecord};
use ductape::{CreateSecret, Ductape, Error, ErrorCode, Plaintext, SecretKey};

/// Requests of an import in flight at once.
const IMPORT_CONCURRENCY: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `KEY=value` lines.
    Env,
    /// An array of `{key, value, description, token_type, scope, envs, expires_at}` (what
    /// export writes), or one object of `"KEY": "value"`.
    Json,
}

impl Format {
    /// `--format`, else from the file's extension (`.json`, else env).
    fn of(given: Option<Format>, path: &Path) -> Format {
        given.unwrap_or(match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Env,
        })
    }
}

/// What an import did.
#[derive(Default, serde::Serialize)]
struct Tally {
    created: usize,
    existing: usize,
    failed: usize,
}

/// Reads `path` and creates every secret in it that does not exist yet.
pub async fn import(
    d: &Ductape,
    path: &Path,
    format: Option<Format>,
    json: bool,
) -> Result<ExitCode, Error> {
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
    let secrets = match Format::of(format, path) {
        Format::Env => dotenv::parse(&text)
            .map_err(|e| config_error(format!("{}: {e}", path.display())))?
            .into_iter()
            .map(|e| CreateSecret::new(e.key, Plaintext::new(e.value)))
            .collect(),
        Format::Json => from_json(&text)
            .map_err(|e| Error::invalid_field(format!("{}: {}", path.display(), e.message())))?,
    };
    // The file's text held plaintext values.
    zeroize::Zeroize::zeroize(&mut text);
    // A key twice is a mistake in the file (which value was meant?): say so before sending.
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = secrets.iter().find(|s| !seen.insert(s.key.as_str())) {
        return Err(Error::invalid_field(format!(
            "{}: the key {} appears more than once",
            path.display(),
            shown_key(&twice.key)
        )));
    }
    let progress = crate::output::progress_bar("importing", secrets.len() as u64);
    let mut tally = Tally::default();
    let mut chunks = Vec::new();
    let mut secrets = secrets.into_iter().peekable();
    while secrets.peek().is_some() {
        chunks.push(
            secrets
                .by_ref()
                .take(BatchCreateBody::MAX_SECRETS)
                .collect::<Vec<_>>(),
        );
    }
    let mut answers = stream::iter(chunks)
        .map(|chunk| {
            let d = d.clone();
            async move { d.secrets().create_batch(chunk).await }
        })
        .buffer_unordered(IMPORT_CONCURRENCY);
    while let Some(batch) = answers.next().await {
        for (key, answer) in batch? {
            match answer {
                Ok(_) => tally.created += 1,
                Err(e) if e.code() == ErrorCode::SecretExists => tally.existing += 1,
                Err(e) => {
                    tally.failed += 1;
                    progress.suspend(|| {
                        eprintln!("{}: {} ({})", shown_key(&key), e.message(), e.code_str())
                    });
                }
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    if json {
        crate::output::json(&tally);
    } else {
        println!(
            "imported {}: {} created, {} already there, {} failed",
            path.display(),
            tally.created,
            tally.existing,
            tally.failed
        );
    }
    Ok(if tally.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes every readable secret with its value to `output` (stdout when none; a new file
/// is created readable by its owner only). Revoked and expired secrets are counted on
/// stderr, not written.
pub async fn export(d: &Ductape, format: Format, output: Option<&Path>) -> Result<ExitCode, Error> {
    let file: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(private_file(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let write_err = |e: std::io::Error| config_error(format!("cannot write the export: {e}"));
    let mut out = Streamed::start(file, format == Format::Json).map_err(write_err)?;
    let mut query = ListQuery {
        limit: Some(ListQuery::MAX_LIMIT),
        cursor: None,
    };
    let (mut written, mut skipped) = (0usize, 0usize);
    loop {
        let page = d.secrets().page(&query).await?;
        let keys = page
            .secrets
            .iter()
            .map(|s| SecretKey::parse(&s.key))
            .collect::<Result<Vec<_>, _>>()?;
        if !keys.is_empty() {
            for (key, got) in d.secrets().batch_get(&keys, None, None).await? {
                let secret = match got {
                    Ok(s) => s,
                    Err(e)
                        if matches!(
                            e.code(),
                            ErrorCode::SecretRevoked | ErrorCode::SecretExpired
                        ) =>
                    {
                        skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let entry = match format {
                    Format::Env => dotenv::line(key.as_str(), secret.value.expose()),
                    Format::Json => {
                        Value::Object(importable(&secret.record, secret.value.expose())).to_string()
                    }
                };
                out.entry(&entry).map_err(write_err)?;
                written += 1;
            }
        }
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    out.finish().map_err(write_err)?;
    eprintln!(
        "exported {written} secrets{}",
        match skipped {
            0 => String::new(),
            n => format!(" ({n} revoked or expired not exported)"),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The JSON import formats: an array of create objects, or one `{"KEY": "value"}` object.
fn from_json(text: &str) -> Result<Vec<CreateSecret>, Error> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        Error::invalid_field(format!(
            "not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    match doc {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                CreateSecret::from_json(item)
                    .map_err(|e| Error::invalid_field(format!("item {i}: {}", e.message())))
            })
            .collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(v) => Ok(CreateSecret::new(key, Plaintext::new(v))),
                _ => Err(Error::invalid_field(format!(
                    "the value of '{}' must be a string",
                    shown_key(&key)
                ))),
            })
            .collect(),
        _ => Err(Error::invalid_field(
            "expected an array of secrets or an object of KEY: value",
        )),
    }
}

/// The fields a create accepts, so that an export imports as it was.
fn importable(record: &SecretRecord, value: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("key".into(), Value::from(record.key.as_str()));
    m.insert("value".into(), Value::from(value));
    if let Some(d) = &record.description {
        m.insert("description".into(), Value::from(d.as_str()));
    }
    if let Some(t) = record.token_type {
        m.insert("token_type".into(), Value::from(t.as_str()));
    }
    if !record.scope.is_empty() {
        m.insert("scope".into(), Value::from(record.scope.clone()));
    }
    if !record.envs.is_empty() {
        m.insert("envs".into(), Value::from(record.envs.clone()));
    }
    if let Some(at) = record.expires_at {
        m.insert("expires_at".into(), Value::from(at));
    }
    m
}

/// A key as it may be shown: a name that is not a valid key may be a value pasted in the
/// wrong place, so it is not echoed.
fn shown_key(key: &str) -> String {
    match SecretKey::parse(key) {
        Ok(k) => k.to_string(),
        Err(_) => "(an invalid key)".into(),
    }
}

/// A new file only its owner can read (it will hold plaintext values).
fn private_file(path: &Path) -> Result<std::fs::File, Error> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map_err(|e| {
        config_error(format!(
            "cannot create {}: {e} (export never overwrites a file)",
            path.display()
        ))
    })
}

fn config_error(message: String) -> Error {
    Error::new(ErrorCode::Config, message)
}
