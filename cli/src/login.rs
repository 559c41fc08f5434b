//! `ductape login` / `ductape logout`: the server URL and an access key kept for the
//! commands that follow, so that users do not export variables in every shell.
//!
//! The key goes to the OS keyring (macOS Keychain, Windows Credential Manager, the Secret
//! Service on Linux desktops) when one answers, else to `credentials` in the config
//! directory, a file only its owner may read (0600, replaced atomically; refused if its mode
//! was widened since). The URL, not a secret, goes to `login.json` beside it. A kept key is
//! used only for the URL it was kept with: `--url` pointing elsewhere never receives it.
//! Flags and `DUCTAPE_URL` / `DUCTAPE_ACCESS_KEY` always win over what is kept.
//!
//! The config directory: `DUCTAPE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/ductape`, else
//! `~/.config/ductape`. `DUCTAPE_KEYRING=off` keeps the key in the file even where a keyring
//! answers.

use std::path::PathBuf;

use ductape::{AccessKey, Error, ErrorCode};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The keyring's service name; the entry's user is the server URL.
const SERVICE: &str = "ductape";

/// Where the key was kept.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Keyring,
    File,
}

/// `login.json`.
#[derive(Serialize, Deserialize)]
struct Login {
    url: String,
    key_in: Store,
}

/// What `ductape login` kept.
pub struct Kept {
    pub url: String,
    pub access_key: Zeroizing<String>,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Config, message)
}

pub fn dir() -> Result<PathBuf, Error> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("DUCTAPE_CONFIG_DIR")
        .or_else(|| from("XDG_CONFIG_HOME").map(|d| d.join("ductape")))
        .or_else(|| from("HOME").map(|h| h.join(".config").join("ductape")))
        .ok_or_else(|| config_error("no config directory: set DUCTAPE_CONFIG_DIR or HOME"))
}

fn keyring_allowed() -> bool {
    std::env::var("DUCTAPE_KEYRING").map_or(true, |v| v != "off")
}

/// Runs a keyring call off the async runtime (the platform stores block); `None` when no
/// keyring answers (a server without a desktop session, say).
async fn keyring<T: Send + 'static>(
    url: &str,
    op: impl FnOnce(&keyring::Entry) -> keyring::Result<T> + Send + 'static,
) -> Option<T> {
    if !keyring_allowed() {
        return None;
    }
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let entry = keyring::Entry::new(SERVICE, &url).ok()?;
        op(&entry).ok()
    })
    .await
    .ok()
    .flatten()
}

fn io_error(what: &str, path: &std::path::Path, e: std::io::Error) -> Error {
    config_error(format!("cannot {what} {}: {e}", path.display()))
}

/// Keeps `url` and `key`; says where the key went.
pub async fn save(url: &str, key: &AccessKey) -> Result<Store, Error> {
    let dir = dir()?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .map_err(|e| io_error("create", &dir, e))?;
    let text = Zeroizing::new(key.expose().to_string());
    let copy = text.clone();
    let in_keyring = keyring(url, move |e| e.set_password(&copy)).await.is_some()
        && keyring(url, |e| e.get_password().map(Zeroizing::new))
            .await
            .is_some_and(|got| got == text);
    let credentials = dir.join("credentials");
    let key_in = if in_keyring {
        if credentials.exists() {
            std::fs::remove_file(&credentials).map_err(|e| io_error("remove", &credentials, e))?;
        }
        Store::Keyring
    } else {
        ductape::client::replace_private_file(&credentials, text.as_bytes())
            .map_err(|e| io_error("write", &credentials, e))?;
        Store::File
    };
    let login = serde_json::to_vec_pretty(&Login {
        url: url.to_owned(),
        key_in,
    })
    .expect("plain data serialises");
    let path = dir.join("login.json");
    ductape::client::replace_private_file(&path, &login)
        .map_err(|e| io_error("write", &path, e))?;
    Ok(key_in)
}

/// What `login` kept, if anything (and the key is still where it was put). Nothing where
/// there is no config directory at all (no HOME: a container, say).
pub async fn load() -> Result<Option<Kept>, Error> {
    let Ok(dir) = dir() else {
        return Ok(None);
    };
    let path = dir.join("login.json");
    let login: Login = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            config_error(format!(
                "{} is damaged ({e}): run `ductape login` again",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", &path, e)),
    };
    let access_key = match login.key_in {
        Store::Keyring => keyring(&login.url, |e| e.get_password().map(Zeroizing::new))
            .await
            .ok_or_else(|| {
                config_error(format!(
                    "the access key kept for {} is not in the OS keyring any more: run `ductape login` again",
                    login.url
                ))
            })?,
        Store::File => {
            let credentials = dir.join("credentials");
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let meta = std::fs::metadata(&credentials)
                    .map_err(|e| io_error("read", &credentials, e))?;
                if meta.mode() & 0o077 != 0 {
                    return Err(config_error(format!(
                        "{} may be read by others: `chmod 600` it (or `ductape logout` and log in again)",
                        credentials.display()
                    )));
                }
            }
            let bytes = std::fs::read(&credentials).map_err(|e| io_error("read", &credentials, e))?;
            Zeroizing::new(String::from_utf8(bytes).map_err(|_| {
                config_error(format!("{} is damaged: run `ductape login` again", credentials.display()))
            })?)
        }
    };
    Ok(Some(Kept {
        url: login.url,
        access_key,
    }))
}

/// Forgets what `login` kept (keyring entry and files). Whether there was anything.
pub async fn forget() -> Result<bool, Error> {
    let dir = dir()?;
    let path = dir.join("login.json");
    let mut any = false;
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(login) = serde_json::from_slice::<Login>(&bytes) {
            any |= keyring(&login.url, |e| e.delete_credential())
                .await
                .is_some();
        }
    }
    for file in [path, dir.join("credentials")] {
        match std::fs::remove_file(&file) {
            Ok(()) => any = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &file, e)),
        }
    }
    Ok(any)
}
