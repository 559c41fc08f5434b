//! How the CLI prints records and errors.

use ductape::wire::{AccessKeyInfo, SecretRecord};
use ductape::Error;
use std::io::{self, Write};

/// Entries written as they come, for listings too big to hold: one JSON array whose elements
/// arrive one by one (`json`), or one entry a line.
pub struct Streamed<W: Write> {
    out: W,
    json: bool,
    first: bool,
}

impl<W: Write> Streamed<W> {
    pub fn start(mut out: W, json: bool) -> io::Result<Self> {
        if json {
            out.write_all(b"[")?;
        }
        Ok(Streamed {
            out,
            json,
            first: true,
        })
    }

    /// One entry: an array element (already JSON) or a line.
    pub fn entry(&mut self, entry: &str) -> io::Result<()> {
        if self.json {
            self.out
                .write_all(if self.first { b"\n  " } else { b",\n  " })?;
        }
        self.first = false;
        self.out.write_all(entry.as_bytes())?;
        if !self.json {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Closes the array and flushes.
    pub fn finish(mut self) -> io::Result<()> {
        if self.json {
            self.out
                .write_all(if self.first { b"]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()
    }
}

/// An error on stderr: a line for people, or with `--json` the server's error shape
/// (`{"error": {"code", "message", "status"}}`) for scripts.
pub fn print_error(e: &Error, json: bool) {
    if json {
        let body = serde_json::json!({
            "error": { "code": e.code_str(), "message": e.message(), "status": e.status() }
        });
        eprintln!("{body}");
        return;
    }
    match e.status() {
        Some(s) => eprintln!("error: {} ({}, HTTP {s})", e.message(), e.code_str()),
        None => eprintln!("error: {} ({})", e.message(), e.code_str()),
    }
}

pub fn json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn secret_line(s: &SecretRecord) -> String {
    let scope = if s.scope.is_empty() {
        "all apps".to_owned()
    } else {
        s.scope.join(",")
    };
    let envs = if s.envs.is_empty() {
        "all envs".to_owned()
    } else {
        s.envs.join(",")
    };
    format!(
        "{}\t{}\tv{}\t{}\t{}\t{}",
        s.key,
        s.status.as_str(),
        s.version,
        scope,
        envs,
        s.description.as_deref().unwrap_or("")
    )
}

/// One version of `secrets history`: number, time, who, what changed.
pub fn version_line(v: &ductape::wire::SecretVersion) -> String {
    let who = match (&v.access_key_name, &v.access_key_id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        _ => "-".to_owned(),
    };
    let mut what = v.action.clone().unwrap_or_else(|| "-".to_owned());
    if let Some(from) = v.rollback_of {
        what.push_str(&format!(" of version {from}"));
    }
    if !v.fields.is_empty() {
        what.push_str(&format!(" ({})", v.fields.join(", ")));
    }
    let status = serde_json::to_value(v.status)
        .ok()
        .and_then(|s| s.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{}{}\t{}\t{}\t{}\t{status}",
        v.version,
        if v.current { "*" } else { "" },
        v.created_at,
        who,
        what,
    )
}

pub fn access_key_line(k: &AccessKeyInfo) -> String {
    let perms: Vec<&str> = k.permissions.iter().map(|p| p.as_str()).collect();
    format!(
        "{}\t{}\t{}\tapp={}\tenvs={}\t{}",
        k.id,
        k.name,
        perms.join(","),
        k.app.as_deref().unwrap_or("*"),
        if k.envs.is_empty() {
            "*".to_owned()
        } else {
            k.envs.join(",")
        },
        k.created_at
    )
}

/// A progress bar on stderr (hidden when stderr is not a terminal): `{verb} [===> ] n/len`.
pub fn progress_bar(verb: &str, len: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let template = format!(
        "{{spinner}} {verb} [{{bar:40}}] {{pos}}/{{len}} secrets ({{per_sec}}, {{eta}} left)"
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
