use std::fmt;
use std::time::Duration;

use crate::crypto::AccessKey;
use crate::error::{Error, ErrorCode};

/// The default server address, a local `ductape server`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8200";

/// Client configuration: where the server is, which access key to use, timeouts and retries.
///
/// `Debug` shows the access key's id only.
///
/// ```
/// use std::time::Duration;
/// use ductape::{AccessKey, Config};
/// let config = Config::new("http://127.0.0.1:8200", AccessKey::generate())
///     .timeout(Duration::from_secs(5))
///     .max_retries(2);
/// assert!(!format!("{config:?}").contains("dtpk_"));
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) url: String,
    pub(crate) access_key: AccessKey,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    /// Extra trusted root certificates (PEM), for servers with a private CA.
    pub(crate) ca_pem: Option<Vec<u8>>,
    /// Which SDK this is, for `User-Agent` (`<sdk>/<version>`).
    pub(crate) sdk: &'static str,
    /// The value cache, when on.
    pub(crate) cache: Option<super::cache::CacheOptions>,
}

impl Config {
    pub fn new(url: impl Into<String>, access_key: AccessKey) -> Self {
        Config {
            url: url.into().trim_end_matches('/').to_owned(),
            access_key,
            sdk: "ductape-rust",
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            ca_pem: None,
            cache: None,
        }
    }

    /// Caches decrypted values (in zeroizing memory) as `options` say: served without a
    /// request for their TTL, then revalidated (a 304 keeps them); see
    /// [`CacheOptions`](super::CacheOptions). Off by default.
    pub fn cache(mut self, options: super::cache::CacheOptions) -> Self {
        self.cache = Some(options);
        self
    }

    /// Builds a config from optional arguments, falling back to `DUCTAPE_URL` and
    /// `DUCTAPE_ACCESS_KEY`, then to [`DEFAULT_URL`].
    pub fn resolve(url: Option<&str>, access_key: Option<&str>) -> Result<Self, Error> {
        let env_key = std::env::var("DUCTAPE_ACCESS_KEY").ok();
        let key_text = access_key
            .map(str::to_owned)
            .or(env_key)
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Config,
                    "no access key: pass one or set DUCTAPE_ACCESS_KEY",
                )
            })?;
        let access_key: AccessKey = key_text.parse()?;
        let url = resolve_url(url);
        check_url(&url)?;
        let mut config = Config::new(url, access_key);
        config.ca_pem = ca_from_env()?;
        Ok(config)
    }

    /// Names the SDK in `User-Agent` (`ductape-python`, `ductape-node`; default
    /// `ductape-rust`), with this build's version.
    pub fn sdk(mut self, name: &'static str) -> Self {
        self.sdk = name;
        self
    }

    /// Trusts the PEM root certificate(s) of a private CA, besides the public roots
    /// (also from a file named by `DUCTAPE_CA_CERT`).
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Per-request timeout (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Connect timeout (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Retries after the first attempt on connection errors, 5xx and 429 (default 3).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// First backoff delay; each retry doubles it, with jitter (default 100 ms).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn access_key(&self) -> &AccessKey {
        &self.access_key
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("access_key_id", &self.access_key.id())
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish_non_exhaustive()
    }
}

/// The PEM file named by `DUCTAPE_CA_CERT`, if set.
pub(crate) fn ca_from_env() -> Result<Option<Vec<u8>>, Error> {
    match std::env::var_os("DUCTAPE_CA_CERT").filter(|p| !p.is_empty()) {
        None => Ok(None),
        Some(path) => std::fs::read(&path).map(Some).map_err(|e| {
            Error::new(
                ErrorCode::Config,
                format!("cannot read DUCTAPE_CA_CERT: {e}"),
            )
        }),
    }
}

/// The server URL a client uses: `url` if given, else `DUCTAPE_URL`, else [`DEFAULT_URL`].
pub(crate) fn resolve_url(url: Option<&str>) -> String {
    url.map(str::to_owned)
        .or_else(|| std::env::var("DUCTAPE_URL").ok())
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// A server URL must be http(s) with a host, and the server's root (or the path a proxy
/// serves it under), not its API's `/v1`. One message for every malformed URL.
pub fn check_url(url: &str) -> Result<(), Error> {
    let malformed = || {
        Error::new(
            ErrorCode::Config,
            "invalid server URL: expected http(s)://host[:port], e.g. http://127.0.0.1:8200",
        )
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| malformed())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(malformed());
    }
    if parsed.path().trim_end_matches('/').ends_with("/v1") {
        return Err(Error::new(
            ErrorCode::Config,
            "invalid server URL: drop the trailing /v1 (the client adds the API's path): \
             the server's own address, e.g. http://127.0.0.1:8200",
        ));
    }
    Ok(())
}

/// Converts a timeout given in seconds by a binding, rejecting what cannot be a duration.
pub fn seconds_to_duration(field: &str, secs: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::new(
                ErrorCode::Config,
                format!("'{field}' must be a positive number of seconds"),
            )
        })
}
