//! What an attacker does with a stolen database: the rows that matter, read from the
//! SQLite file or a plain `pg_dump`, and an offline attempt to decrypt every value with one
//! access key using only public functions of the core.

use ductape::crypto::keyring::open_binding_from;
use ductape::crypto::wrap::RecipientSecret;
use ductape::crypto::{AccessGrants, Keyring, SealedSecret, SealedView};
use ductape::{AccessKey, SecretKey};
use std::collections::BTreeSet;

/// What a stolen database holds that matters here.
pub struct Dump {
    pub keyring: String,
    /// Every access key's stored grants.
    pub grants: Vec<String>,
    /// (key, ciphertext) of every stored value: current secrets, their earlier versions and
    /// the trash.
    pub secrets: Vec<(String, String)>,
    /// How many of `secrets`, from the first, are current values (the rest are earlier
    /// versions and the trash).
    pub current: usize,
    pub workspace: String,
}

impl Dump {
    /// The same dump with the current values only.
    pub fn current_only(&self) -> Dump {
        Dump {
            keyring: self.keyring.clone(),
            grants: self.grants.clone(),
            secrets: self.secrets[..self.current].to_vec(),
            current: self.current,
            workspace: self.workspace.clone(),
        }
    }
}

pub fn sqlite_dump(file: &std::path::Path) -> Dump {
    let c = rusqlite::Connection::open(file).unwrap();
    let (workspace, keyring): (String, String) = c
        .query_row("SELECT id, keyring FROM workspaces", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let grants = c
        .prepare("SELECT wrapped_key FROM access_keys")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut secrets = Vec::new();
    let mut current = 0;
    for table in ["secrets", "secret_versions", "trash"] {
        let rows: Vec<(String, String)> = c
            .prepare(&format!("SELECT key, ciphertext FROM {table}"))
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        if table == "secrets" {
            current = rows.len();
        }
        secrets.extend(rows);
    }
    Dump {
        keyring,
        grants,
        secrets,
        current,
        workspace,
    }
}

/// Reads the `COPY ... FROM stdin` blocks of a plain `pg_dump`.
pub fn pg_dump_rows(dump: &str, table: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut rows = Vec::new();
    let mut lines = dump.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(&format!("COPY public.{table} (")) else {
            continue;
        };
        let cols: Vec<String> = rest
            .split(')')
            .next()
            .unwrap()
            .split(", ")
            .map(str::to_owned)
            .collect();
        for row in lines.by_ref() {
            if row == "\\." {
                break;
            }
            rows.push(
                cols.iter()
                    .cloned()
                    .zip(row.split('\t').map(str::to_owned))
                    .collect(),
            );
        }
    }
    rows
}

pub fn postgres_dump(text: &str) -> Dump {
    let ws = &pg_dump_rows(text, "workspaces")[0];
    Dump {
        keyring: ws["keyring"].clone(),
        workspace: ws["id"].clone(),
        grants: pg_dump_rows(text, "access_keys")
            .into_iter()
            .map(|r| r["wrapped_key"].clone())
            .collect(),
        current: pg_dump_rows(text, "secrets").len(),
        secrets: ["secrets", "secret_versions", "trash"]
            .into_iter()
            .flat_map(|t| pg_dump_rows(text, t))
            .map(|r| (r["key"].clone(), r["ciphertext"].clone()))
            .collect(),
    }
}

/// The attacker: one access key's text and a dump, and only public functions of the core.
/// Every key pair it can reach (its grants, every binding key wrapped to one it holds) is
/// tried on every wrap of every secret. Returns the keys whose value it opened.
pub fn offline_attack(dump: &Dump, key_text: &str) -> BTreeSet<String> {
    offline_attack_remembering(dump, key_text, &[])
}

/// [`offline_attack`] by an attacker who also kept grants from an earlier dump (or from a
/// client's memory): a leaked key's grants before it was deleted.
pub fn offline_attack_remembering(
    dump: &Dump,
    key_text: &str,
    remembered: &[String],
) -> BTreeSet<String> {
    let ak: AccessKey = key_text.parse().unwrap();
    let ring = Keyring::parse(&dump.keyring).unwrap();
    let ws = &dump.workspace;
    let mine = ak.recipient();
    let mut held: Vec<(u32, String, RecipientSecret)> = Vec::new();
    for g in dump.grants.iter().chain(remembered) {
        if let Some(grants) = AccessGrants::parse(g) {
            // Only its own grants open; trying everyone's costs nothing.
            if let Ok(opened) = grants.open(ws, ak.id(), &mine) {
                held.extend(opened);
            }
        }
    }
    for generation in &ring.generations {
        for b in &generation.bindings {
            for (g, id, secret) in &held {
                if *g == generation.generation {
                    if let Ok(s) = open_binding_from(ws, *g, b, id, secret) {
                        held.push((*g, b.id.clone(), s));
                        break;
                    }
                }
            }
        }
    }
    // Small dumps: every held key on every wrap. Large ones: each held key on the wraps
    // labelled with its binding and generation (no other can open: the label is bound
    // into the wrap), so ten thousand secrets take seconds, not minutes.
    let exhaustive = dump.secrets.len() <= 1000;
    let mut opened = BTreeSet::new();
    for (key, text) in &dump.secrets {
        let (Some(sealed), Some(view)) = (SealedSecret::parse(text), SealedView::parse(text))
        else {
            continue; // not format 2: nothing here opens it
        };
        let k = SecretKey::parse(key).unwrap();
        'wraps: for id in sealed.recipients() {
            let tried = held
                .iter()
                .filter(|(g, b, _)| exhaustive || (*g == sealed.generation && b == id));
            for (_, _, secret) in tried {
                if let Ok(dk) = view.open_key(ws, &k, id, secret) {
                    if view.open_value(ws, &k, &dk).is_ok() {
                        opened.insert(key.clone());
                        break 'wraps;
                    }
                }
            }
        }
    }
    opened
}
