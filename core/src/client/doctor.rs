//! `ductape doctor`: what stands between this machine and a working client, each check with
//! what to do about it. Every check runs (one failing does not hide the next) except where
//! a later one needs an earlier one's answer.

use reqwest::Method;
use std::time::{Duration, SystemTime};

use super::config::{ca_from_env, check_url, resolve_url};
use super::transport::http_client;
use super::{Config, Ductape};
use crate::crypto::AccessKey;
use crate::error::ErrorCode;
use crate::wire::Health;

/// The clock difference past which expiry checks (made by the server) and a client's notion
/// of "expires in 2 days" disagree noticeably.
const MAX_SKEW: Duration = Duration::from_secs(60);

/// One check's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub ok: bool,
    /// What was found (never a secret: the access key shows as its id).
    pub detail: String,
    /// What to do, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Runs every check for this URL and access key (flags, else `DUCTAPE_URL` /
/// `DUCTAPE_ACCESS_KEY`, as every command resolves them).
pub async fn doctor(url: Option<&str>, access_key: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some((url, server_up)) = server_findings(url, &mut out).await else {
        return out;
    };
    let key_text = access_key
        .map(str::to_owned)
        .or_else(|| std::env::var("DUCTAPE_ACCESS_KEY").ok())
        .filter(|k| !k.trim().is_empty());
    let key: AccessKey = match key_text.map(|k| k.parse::<AccessKey>()) {
        None => {
            out.push(fail(
                "access key",
                "none given",
                "set DUCTAPE_ACCESS_KEY (`ductape init` prints the first; an admin issues others with `ductape access-keys create`)",
            ));
            return out;
        }
        Some(Err(e)) => {
            out.push(fail(
                "access key",
                e.message().to_owned(),
                "copy the whole key, `dtpk_<id>.<secret>.<unwrap key>`, as it was printed once",
            ));
            return out;
        }
        Some(Ok(k)) => k,
    };
    out.push(ok("access key", format!("id {}", key.id())));
    if server_up {
        check_session(&url, key, &mut out).await;
    }
    out
}

/// Only the checks that need no access key: URL, reachability, TLS, readiness, clock skew
/// (what a container's health check asks).
pub async fn doctor_server(url: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    server_findings(url, &mut out).await;
    out
}

/// The URL (flag, else `DUCTAPE_URL`, else the default) and whether its server answered;
/// `None` when the URL itself is wrong.
async fn server_findings(url: Option<&str>, out: &mut Vec<Finding>) -> Option<(String, bool)> {
    let url = resolve_url(url);
    if let Err(e) = check_url(&url) {
        out.push(fail(
            "url",
            e.message().to_owned(),
            "set DUCTAPE_URL (or --url) to the server's address, e.g. https://secrets.example.com",
        ));
        return None;
    }
    out.push(ok("url", url.clone()));
    let up = check_server(&url, out).await;
    Some((url, up))
}

/// Reachability, TLS, readiness and clock skew. Returns whether the server answered.
async fn check_server(url: &str, out: &mut Vec<Finding>) -> bool {
    let client = match ca_from_env().and_then(|ca| {
        let t = Duration::from_secs(10);
        http_client(ca.as_deref(), t, t)?
            .build()
            .map_err(super::transport::build_error)
    }) {
        Ok(c) => c,
        Err(e) => {
            out.push(fail(
                "tls",
                e.message().to_owned(),
                "DUCTAPE_CA_CERT must name a readable PEM file with the CA's certificate",
            ));
            return false;
        }
    };
    let base = url.trim_end_matches('/');
    let answer = client
        .request(Method::GET, format!("{base}/healthz"))
        .send()
        .await;
    let resp = match answer {
        Ok(r) => r,
        Err(e) => {
            let text = e.to_string();
            let tls = format!("{e:?}").to_ascii_lowercase();
            if tls.contains("certificate") || tls.contains("tls") || tls.contains("handshake") {
                out.push(fail(
                    "tls",
                    text,
                    "the server's certificate is not trusted here: for a private CA set DUCTAPE_CA_CERT to its PEM file",
                ));
            } else {
                out.push(fail(
                    "server",
                    text,
                    format!("is the server running at {base}? (`ductape server` starts one; check the host, port and scheme)"),
                ));
            }
            return false;
        }
    };
    if url.starts_with("https://") {
        out.push(ok("tls", "the certificate is trusted"));
    }
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(parse_http_date);
    match resp.json::<Health>().await {
        Ok(h) => out.push(ok(
            "server",
            format!(
                "Ductape {} ({})",
                h.version,
                if h.initialized {
                    "set up"
                } else {
                    "not set up yet: run `ductape init` with its setup token"
                }
            ),
        )),
        Err(_) => {
            out.push(fail(
                "server",
                format!("{base}/healthz did not answer like a Ductape server"),
                "check the URL: it must point at the Ductape server itself (no path)",
            ));
            return false;
        }
    }
    match client
        .request(Method::GET, format!("{base}/readyz"))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => out.push(ok("ready", "the database answers")),
        Ok(r) => out.push(fail(
            "ready",
            format!("/readyz answered {}", r.status()),
            "the server cannot reach its database: see the server's log",
        )),
        Err(e) => out.push(fail("ready", e.to_string(), "see the server's log")),
    }
    if let Some(server_time) = date {
        let now = SystemTime::now();
        let skew = now
            .duration_since(server_time)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or_default();
        if skew > MAX_SKEW {
            out.push(fail(
                "clock",
                format!(
                    "this machine's clock is {}s off the server's",
                    skew.as_secs()
                ),
                "synchronise the clock (NTP): expiry is judged by the server's time",
            ));
        } else {
            out.push(ok(
                "clock",
                format!("within {}s of the server's", skew.as_secs()),
            ));
        }
    }
    true
}

/// Authenticates and opens the session: the key's name, permissions and binding.
async fn check_session(url: &str, key: AccessKey, out: &mut Vec<Finding>) {
    let mut config = Config::new(url, key).max_retries(0);
    if let Ok(ca) = ca_from_env() {
        config.ca_pem = ca;
    }
    let d = match Ductape::new(config) {
        Ok(d) => d,
        Err(e) => {
            out.push(fail(
                "session",
                e.message().to_owned(),
                "see the error above",
            ));
            return;
        }
    };
    match d.open_session().await {
        Ok(()) => {
            let info = d.access_key_info().expect("a session is open");
            let ws = d.workspace().expect("a session is open");
            let perms: Vec<&str> = info.permissions.iter().map(|p| p.as_str()).collect();
            let binding = match (&info.app, info.envs.is_empty()) {
                (None, true) => "unbound".to_owned(),
                (app, _) => format!(
                    "bound to app {} and envs {}",
                    app.as_deref().unwrap_or("*"),
                    if info.envs.is_empty() {
                        "*".to_owned()
                    } else {
                        info.envs.join(",")
                    }
                ),
            };
            out.push(ok(
                "session",
                format!(
                    "workspace '{}' ({}); key '{}' ({}; {binding})",
                    ws.name,
                    ws.workspace_id,
                    info.name,
                    perms.join(",")
                ),
            ));
        }
        Err(e) => {
            let fix = match e.code() {
                ErrorCode::Unauthenticated => "the server does not know this key (deleted, or from another server): ask an admin for a new one",
                ErrorCode::UpgradeRequired => "upgrade the Ductape client (pip/npm/cargo) to this server's format",
                ErrorCode::Integrity => "the key does not open its grants: it is damaged or belongs to another workspace",
                _ => "see the error: it names what went wrong",
            };
            out.push(fail("session", e.message().to_owned(), fix));
        }
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), what servers send in `Date`.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(s, &format)
        .ok()?
        .assume_utc();
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784111777
        );
        assert!(parse_http_date("yesterday").is_none());
    }
}
