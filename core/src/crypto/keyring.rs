//! Least privilege held by the cryptography (workspace format 2).
//!
//! - Each **binding** in use (an app and a set of environments, the unbound one included)
//!   has an X25519 key pair per key **generation**; its public half is in the [`Keyring`]
//!   the server stores, its private half only ever travels wrapped.
//! - Each value is sealed under its own random **data key** ([`SealedSecret`], `dv2`), and
//!   the data key is wrapped (HPKE, [`WrappedTo`]) to every binding whose rules let it read
//!   the secret: no other.
//! - Each access key derives an X25519 pair from its unwrap key; its binding's private key
//!   is wrapped to that public key ([`AccessGrants`], `dg2`). Anyone who may grant can do so
//!   with public keys alone; a key plus a full database opens exactly its binding's wraps.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::ops::Range;
use zeroize::Zeroizing;

use super::wrap::{RecipientKey, RecipientSecret, WrapContext, WrappedTo};
use super::{b64, envelope, unb64, Plaintext, WorkspaceKey};
use crate::access::Context;
use crate::error::{Error, ErrorCode};
use crate::ids::random_bytes;
use crate::validate::SecretKey;

/// The workspace format these types implement; clients send it with every request.
pub const FORMAT: u32 = 2;
/// The request header carrying the client's format.
pub const FORMAT_HEADER: &str = "ductape-format";
/// The most bindings one secret can be wrapped to (so a sealed secret stays bounded).
pub const MAX_BINDINGS: usize = 256;

/// The stable id of a binding: 16 hex of SHA-256 over its app and sorted environments. The
/// same binding has the same id in every generation, so concurrent registrations meet.
pub fn binding_id(app: Option<&str>, envs: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut envs: Vec<&str> = envs.iter().map(String::as_str).collect();
    envs.sort_unstable();
    envs.dedup();
    let mut h = Sha256::new();
    h.update(b"ductape binding v2\0");
    h.update(app.unwrap_or("*").as_bytes());
    h.update(b"\0");
    h.update(envs.join(",").as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// One binding's public key in one generation, with its private key wrapped to every wider
/// binding of that generation (so a key bound more widely can grant it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub id: String,
    pub app: Option<String>,
    pub envs: Vec<String>,
    pub public_key: String,
    /// Wider binding id → this binding's private key wrapped to it (raw base64url).
    #[serde(default)]
    pub wraps: BTreeMap<String, String>,
    /// Registered, but the secrets it may read are still being wrapped to it (by the
    /// client that registered it, or whoever resumes): no access key is issued for it yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// Upgrade from format 1 only: this binding's private key sealed under the old
    /// workspace key, so a format-1 access key (which holds only that) can take its grant
    /// once, on its first use by a current client. Dropped when no such key is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<String>,
}

impl Binding {
    /// A binding with public key `pair`, its private key wrapped to every binding of
    /// `among` that is wider than it (so those can grant it).
    pub fn new(
        workspace: &str,
        generation: u32,
        app: Option<&str>,
        envs: &[String],
        pair: &RecipientSecret,
        among: &[Binding],
    ) -> Result<Binding, Error> {
        let mut b = Binding {
            id: binding_id(app, envs),
            app: app.map(str::to_owned),
            envs: envs.to_vec(),
            public_key: pair.public().to_string(),
            wraps: BTreeMap::new(),
            pending: false,
            legacy: None,
        };
        let wider: Vec<&Binding> = among
            .iter()
            .filter(|w| w.id != b.id && b.within(w))
            .collect();
        for w in wider {
            let wrap = wrap_binding_to(workspace, generation, &b.id, pair, w)?;
            b.wraps.insert(w.id.clone(), wrap);
        }
        Ok(b)
    }

    /// The access rules of this binding, as a reader's context.
    pub fn context(&self) -> Context<'_> {
        Context {
            app: self.app.as_deref(),
            envs: &self.envs,
        }
    }

    /// Whether keys of this binding may read a secret with this scope and these envs.
    pub fn reads(&self, scope: &[String], envs: &[String]) -> bool {
        self.context().can_see(scope, envs)
    }

    /// Whether every secret this binding reads is also read by `other`.
    pub fn within(&self, other: &Binding) -> bool {
        crate::access::key_within(self.app.as_deref(), &self.envs, other.context())
    }

    pub fn is_unbound(&self) -> bool {
        self.app.is_none() && self.envs.is_empty()
    }

    pub fn recipient(&self) -> Result<RecipientKey, Error> {
        RecipientKey::parse(&self.public_key).ok_or_else(|| malformed("a binding's public key"))
    }
}

/// The bindings of one key generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    pub generation: u32,
    pub bindings: Vec<Binding>,
}

impl Generation {
    /// Generation `number` with fresh pairs for the unbound binding and each of `bound`
    /// (app, envs); each private key wrapped to every wider binding. Returns the private
    /// keys by binding id, for the grants and upgrade wraps its maker writes.
    pub fn fresh(
        workspace: &str,
        number: u32,
        bound: &[(Option<String>, Vec<String>)],
    ) -> Result<(Generation, Vec<(String, RecipientSecret)>), Error> {
        let mut specs: Vec<(Option<String>, Vec<String>)> = vec![(None, Vec::new())];
        for (app, envs) in bound {
            let mut envs = envs.clone();
            envs.sort();
            envs.dedup();
            if !specs.iter().any(|(a, e)| a == app && *e == envs) {
                specs.push((app.clone(), envs));
            }
        }
        // Widest first, so each binding's wider ones exist when it is made.
        specs.sort_by_key(|(app, envs)| (app.is_some(), envs.len()));
        let mut g = Generation {
            generation: number,
            bindings: Vec::with_capacity(specs.len()),
        };
        let mut secrets = Vec::with_capacity(specs.len());
        for (app, envs) in &specs {
            let pair = RecipientSecret::generate();
            let b = Binding::new(workspace, number, app.as_deref(), envs, &pair, &g.bindings)?;
            secrets.push((b.id.clone(), pair));
            g.bindings.push(b);
        }
        Ok((g, secrets))
    }

    pub fn binding(&self, id: &str) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.id == id)
    }

    /// The bindings that may read a secret with this scope and these envs: its audience.
    pub fn audience<'a>(
        &'a self,
        scope: &'a [String],
        envs: &'a [String],
    ) -> impl Iterator<Item = &'a Binding> + 'a {
        self.bindings.iter().filter(move |b| b.reads(scope, envs))
    }
}

/// The public half of a workspace's keys: its generations (oldest first; the last is
/// current) and their bindings. What the server stores and checks writes against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyring {
    pub format: u32,
    pub generations: Vec<Generation>,
    /// Upgrading from format 1 (some values may still be `dv1` envelopes): the old
    /// workspace key wrapped to the current unbound binding, so an unbound key can reseal
    /// them. Dropped when the upgrade finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_key: Option<String>,
}

impl Keyring {
    /// A first generation with only the unbound binding, whose private key is returned.
    pub fn first() -> (Keyring, RecipientSecret) {
        let pair = RecipientSecret::generate();
        let ring = Keyring {
            format: FORMAT,
            generations: vec![Generation {
                generation: 1,
                bindings: vec![Binding {
                    id: binding_id(None, &[]),
                    app: None,
                    envs: Vec::new(),
                    public_key: pair.public().to_string(),
                    wraps: BTreeMap::new(),
                    pending: false,
                    legacy: None,
                }],
            }],
            upgrade_key: None,
        };
        (ring, pair)
    }

    /// Reads the stored form, checking what every reader relies on.
    pub fn parse(json: &str) -> Result<Keyring, Error> {
        let ring: Keyring =
            serde_json::from_str(json).map_err(|_| malformed("the workspace keyring"))?;
        ring.check()?;
        Ok(ring)
    }

    /// Generations ascending and non-empty, each with the unbound binding, ids matching
    /// their bindings, public keys well formed.
    pub fn check(&self) -> Result<(), Error> {
        let ok = self.format == FORMAT
            && !self.generations.is_empty()
            && self
                .generations
                .windows(2)
                .all(|w| w[0].generation < w[1].generation)
            && self.generations.iter().all(|g| {
                g.bindings.len() <= MAX_BINDINGS
                    && g.bindings.iter().any(Binding::is_unbound)
                    && g.bindings.iter().all(|b| {
                        b.id == binding_id(b.app.as_deref(), &b.envs)
                            && RecipientKey::parse(&b.public_key).is_some()
                    })
            });
        if ok {
            Ok(())
        } else {
            Err(malformed("the workspace keyring"))
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a keyring serialises")
    }

    /// The generation new values are sealed under.
    pub fn current(&self) -> &Generation {
        self.generations
            .last()
            .expect("a checked keyring has a generation")
    }

    /// Whether a rotation (or the upgrade from format 1) is under way: values may still be
    /// sealed under an older generation (or a format-1 envelope).
    pub fn in_transition(&self) -> bool {
        self.generations.len() > 1 || self.upgrade_key.is_some()
    }

    pub fn generation(&self, generation: u32) -> Option<&Generation> {
        self.generations.iter().find(|g| g.generation == generation)
    }

    /// Checks that `sealed`, for a secret with this scope and these envs, is wrapped to
    /// exactly its audience in the current generation: none missing (every reader can open
    /// it) and none extra (no binding outside the rules can).
    pub fn check_audience(
        &self,
        sealed: &SealedSecret,
        scope: &[String],
        envs: &[String],
    ) -> Result<(), Error> {
        let current = self.current();
        if sealed.generation != current.generation {
            return Err(Error::new(
                ErrorCode::KeyringChanged,
                format!(
                    "the value is sealed for key generation {} but the workspace is at {}: refresh and seal again",
                    sealed.generation, current.generation
                ),
            ));
        }
        let mut want: Vec<&str> = current
            .audience(scope, envs)
            .map(|b| b.id.as_str())
            .collect();
        want.sort_unstable();
        let mut have: Vec<&str> = sealed.wraps.iter().map(|(id, _)| id.as_str()).collect();
        have.sort_unstable();
        if let Some(extra) = have
            .iter()
            .find(|id| current.binding(id).is_some_and(|b| !b.reads(scope, envs)))
        {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                format!("the value is wrapped to binding {extra}, which may not read this secret"),
            ));
        }
        if want != have {
            return Err(Error::new(
                ErrorCode::KeyringChanged,
                "the value is not wrapped to exactly the bindings that may read it (the keyring changed?): refresh and seal again",
            ));
        }
        Ok(())
    }
}

/// A secret's own 256-bit key. Zeroized on drop.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    pub fn generate() -> Self {
        DataKey(Zeroizing::new(random_bytes()))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// A sealed value, format 2:
/// `dv2.<generation>.<base64url(nonce ‖ ciphertext ‖ tag)>.<binding>:<wrap>[,<binding>:<wrap>…]`.
///
/// The value is XChaCha20-Poly1305 under a fresh data key, with associated data binding
/// workspace, secret key and generation; the data key is wrapped to each binding in the
/// audience with HPKE, bound to workspace, generation, secret and binding.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub generation: u32,
    body: Vec<u8>,
    /// (binding id, wrapped data key), in the order written.
    pub wraps: Vec<(String, WrappedTo)>,
}

impl SealedSecret {
    pub const PREFIX: &'static str = "dv2.";

    /// Seals `value` for `key` under a fresh data key, wrapped to `audience` (to their
    /// public keys).
    pub fn seal<'a>(
        workspace: &str,
        key: &SecretKey,
        generation: u32,
        value: &Plaintext,
        audience: impl IntoIterator<Item = &'a Binding>,
    ) -> Result<(SealedSecret, DataKey), Error> {
        Self::seal_holding(workspace, key, generation, value, audience, |_| {
            None::<&RecipientSecret>
        })
    }

    /// [`SealedSecret::seal`] by a writer holding some bindings' private keys: `holding`
    /// gives them, and those bindings get shared wraps (no key agreement; see
    /// [`WrappedTo`]), the others wraps to their public keys.
    pub fn seal_holding<'a, H: std::ops::Deref<Target = RecipientSecret>>(
        workspace: &str,
        key: &SecretKey,
        generation: u32,
        value: &Plaintext,
        audience: impl IntoIterator<Item = &'a Binding>,
        holding: impl Fn(&Binding) -> Option<H>,
    ) -> Result<(SealedSecret, DataKey), Error> {
        let dk = DataKey::generate();
        let aad = value_aad(workspace, key.as_str(), generation);
        let body = envelope::seal_joined(&dk.0, &aad, value.expose().as_bytes());
        let mut out = SealedSecret {
            generation,
            body,
            wraps: Vec::new(),
        };
        for b in audience {
            let held = holding(b);
            out.add_wrap(workspace, key, b, &dk, held.as_deref())?;
        }
        Ok((out, dk))
    }

    /// One more binding's wrap of this value's data key, as text (`<binding>:<wrap>`), to
    /// be appended to the stored value; shared when the caller holds the binding's key.
    pub fn wrap_for(
        &self,
        workspace: &str,
        key: &SecretKey,
        binding: &Binding,
        dk: &DataKey,
        held: Option<&RecipientSecret>,
    ) -> Result<String, Error> {
        let mut one = SealedSecret {
            generation: self.generation,
            body: Vec::new(),
            wraps: Vec::new(),
        };
        one.add_wrap(workspace, key, binding, dk, held)?;
        let (id, wrap) = &one.wraps[0];
        Ok(Self::wrap_text(id, wrap))
    }

    /// Wraps the data key to one more binding: shared if `held` is its private key, else
    /// to its public key.
    pub fn add_wrap(
        &mut self,
        workspace: &str,
        key: &SecretKey,
        binding: &Binding,
        dk: &DataKey,
        held: Option<&RecipientSecret>,
    ) -> Result<(), Error> {
        let subject = format!("secret:{key}");
        let ctx = WrapContext {
            workspace,
            generation: self.generation,
            subject: &subject,
            recipient: &binding.id,
        };
        let wrap = match held {
            Some(secret) if secret.public().to_string() == binding.public_key => {
                WrappedTo::seal_shared(secret, &dk.0, &ctx)
            }
            _ => WrappedTo::seal(&binding.recipient()?, &dk.0, &ctx),
        };
        self.wraps.push((binding.id.clone(), wrap));
        Ok(())
    }

    /// The binding ids this value is wrapped to.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.wraps.iter().map(|(id, _)| id.as_str())
    }

    /// One wrap's text, `<binding>:<wrap>` (what a grant to a new binding appends).
    pub fn wrap_text(binding: &str, wrap: &WrappedTo) -> String {
        format!("{binding}:{}", wrap.raw_b64())
    }

    /// Reads the text form: `None` when it is not a well-formed format-2 sealed value.
    pub fn parse(s: &str) -> Option<SealedSecret> {
        let view = SealedView::parse(s)?;
        let body = unb64(view.body)?;
        envelope::split_joined(&body)?;
        let mut out = Vec::new();
        for w in view.wraps.split(',') {
            let (id, raw) = w.split_once(':')?;
            if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            if out.iter().any(|(seen, _)| seen == id) {
                return None;
            }
            out.push((id.to_owned(), WrappedTo::from_raw_b64(raw)?));
        }
        if out.len() > MAX_BINDINGS {
            return None;
        }
        Some(SealedSecret {
            generation: view.generation,
            body,
            wraps: out,
        })
    }
}

/// A sealed value's text read in place, for opening: nothing is decoded before it is needed,
/// and of the wraps only the reader's (a client opening a batch of secrets wrapped to many
/// bindings decodes one wrap of each, or none when its data key is cached). What it does
/// not decode it does not check: [`SealedSecret::parse`] checks the whole form, and what a
/// reader opens is authenticated by the wrap's and the value's AEAD tags.
#[derive(Clone, Copy)]
pub struct SealedView<'a> {
    /// The whole text.
    text: &'a str,
    pub generation: u32,
    /// The nonce and ciphertext of the value, base64url.
    pub(crate) body: &'a str,
    /// `<binding>:<wrap>` pairs, comma-separated.
    wraps: &'a str,
}

impl<'a> SealedView<'a> {
    /// The parts of the text form: `None` when it is not one.
    pub fn parse(s: &'a str) -> Option<SealedView<'a>> {
        if s.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut parts = s.strip_prefix(SealedSecret::PREFIX)?.split('.');
        let (Some(generation), Some(body), Some(wraps), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let generation: u32 = generation.parse().ok().filter(|g| *g > 0)?;
        Some(SealedView {
            text: s,
            generation,
            body,
            wraps,
        })
    }

    /// The wrap to `binding` as written (base64url; what a cache of opened data keys is
    /// keyed by), if the value is wrapped to it.
    pub fn wrap_to(&self, binding: &str) -> Option<&'a str> {
        self.wraps
            .split(',')
            .filter_map(|w| w.split_once(':'))
            .find_map(|(id, raw)| (id == binding).then_some(raw))
    }

    /// The text of this value with `binding`'s wrap alone: what a reader of that binding
    /// needs (a value readable by many bindings carries a wrap for each, most of its size).
    /// `None` when there is nothing to leave out: no wrap for `binding`, or no other.
    pub fn only_for(&self, binding: &str) -> Option<String> {
        let (head, item) = self.only_for_ranges(binding)?;
        Some([&self.text[head], &self.text[item]].concat())
    }

    /// Where the two pieces [`SealedView::only_for`] joins lie in the parsed text: all
    /// that comes before the wraps, and `binding`'s `<binding>:<wrap>`. `None` as for
    /// `only_for`.
    pub fn only_for_ranges(&self, binding: &str) -> Option<(Range<usize>, Range<usize>)> {
        if !self.wraps.contains(',') {
            return None;
        }
        let head = self.text.len() - self.wraps.len();
        let mut at = head;
        for item in self.wraps.split(',') {
            if item.split_once(':').is_some_and(|(id, _)| id == binding) {
                return Some((0..head, at..at + item.len()));
            }
            at += item.len() + 1;
        }
        None
    }

    /// The data key, opened with the private key of `binding`.
    pub fn open_key(
        &self,
        workspace: &str,
        key: &SecretKey,
        binding: &str,
        with: &RecipientSecret,
    ) -> Result<DataKey, Error> {
        let raw = self.wrap_to(binding).ok_or_else(|| not_for_you(key))?;
        let wrap = WrappedTo::from_raw_b64(raw).ok_or_else(|| malformed_secret(key))?;
        let subject = format!("secret:{key}");
        let ctx = WrapContext {
            workspace,
            generation: self.generation,
            subject: &subject,
            recipient: binding,
        };
        Ok(DataKey(wrap.open(with, &ctx)?))
    }

    /// Decrypts the value with its data key.
    pub fn open_value(
        &self,
        workspace: &str,
        key: &SecretKey,
        dk: &DataKey,
    ) -> Result<Plaintext, Error> {
        let body = unb64(self.body).ok_or_else(|| malformed_secret(key))?;
        let aad = value_aad(workspace, key.as_str(), self.generation);
        envelope::open_value(&dk.0, &aad, body, key)
    }
}

/// The longest sealed value a server accepts: a 64 KiB value with [`MAX_BINDINGS`] wraps.
pub const MAX_SEALED_LEN: usize = envelope::MAX_ENVELOPE_LEN + MAX_BINDINGS * 128;

impl fmt::Display for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}.{}.",
            Self::PREFIX,
            self.generation,
            b64(&self.body)
        )?;
        for (i, (id, wrap)) in self.wraps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&Self::wrap_text(id, wrap))?;
        }
        Ok(())
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("generation", &self.generation)
            .field("bytes", &self.body.len())
            .field("recipients", &self.recipients().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Debug for SealedView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedView")
            .field("generation", &self.generation)
            .field("body_chars", &self.body.len())
            .finish_non_exhaustive()
    }
}

fn value_aad(workspace: &str, key: &str, generation: u32) -> Vec<u8> {
    // `ductape/value/v2 \0 workspace \0 key \0 generation`, built in one allocation (it is
    // made for every value opened).
    const LABEL: &[u8] = b"ductape/value/v2";
    let mut aad = Vec::with_capacity(LABEL.len() + workspace.len() + key.len() + 13);
    for part in [LABEL, workspace.as_bytes(), key.as_bytes()] {
        aad.extend_from_slice(part);
        aad.push(0);
    }
    let _ = write!(aad, "{generation}");
    aad
}

/// What an access key holds in format 2: its X25519 public key (derived from its unwrap
/// key, so anyone may grant to it) and, per generation, its binding's private key wrapped
/// to it: `dg2.<public key>[.<generation>:<binding>:<wrap>…]`. Stored where format 1 kept
/// the wrapped workspace key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessGrants {
    pub public_key: String,
    /// (generation, binding id, that binding's private key wrapped to this access key).
    pub grants: Vec<(u32, String, WrappedTo)>,
}

impl AccessGrants {
    pub const PREFIX: &'static str = "dg2.";

    /// No grants yet, for the key whose pair is `pair`.
    pub fn new(pair: &RecipientKey) -> Self {
        AccessGrants {
            public_key: pair.to_string(),
            grants: Vec::new(),
        }
    }

    /// Grants `binding`'s private key (`secret`) of `generation` to access key `to`.
    pub fn grant(
        &mut self,
        workspace: &str,
        to: &str,
        generation: u32,
        binding: &str,
        secret: &RecipientSecret,
    ) -> Result<(), Error> {
        let recipient = RecipientKey::parse(&self.public_key)
            .ok_or_else(|| malformed("an access key's public key"))?;
        let subject = format!("binding:{binding}");
        let ctx = WrapContext {
            workspace,
            generation,
            subject: &subject,
            recipient: to,
        };
        let wrap = WrappedTo::seal(&recipient, &secret.to_bytes(), &ctx);
        self.grants.retain(|(g, _, _)| *g != generation);
        self.grants.push((generation, binding.to_owned(), wrap));
        Ok(())
    }

    /// Opens every grant with the access key's own pair: (generation, binding, private key).
    pub fn open(
        &self,
        workspace: &str,
        access_key_id: &str,
        mine: &RecipientSecret,
    ) -> Result<Vec<(u32, String, RecipientSecret)>, Error> {
        self.grants
            .iter()
            .map(|(generation, binding, wrap)| {
                let subject = format!("binding:{binding}");
                let ctx = WrapContext {
                    workspace,
                    generation: *generation,
                    subject: &subject,
                    recipient: access_key_id,
                };
                let bytes = wrap.open(mine, &ctx)?;
                let secret = RecipientSecret::from_bytes(&bytes)
                    .ok_or_else(|| malformed("a granted binding key"))?;
                Ok((*generation, binding.clone(), secret))
            })
            .collect()
    }

    pub fn parse(s: &str) -> Option<AccessGrants> {
        let mut parts = s.strip_prefix(Self::PREFIX)?.split('.');
        let public_key = parts.next()?;
        RecipientKey::parse(public_key)?;
        let mut grants = Vec::new();
        for g in parts {
            let mut f = g.splitn(3, ':');
            let (Some(generation), Some(binding), Some(wrap)) = (f.next(), f.next(), f.next())
            else {
                return None;
            };
            let generation: u32 = generation.parse().ok()?;
            if binding.len() != 16 || grants.iter().any(|(g, _, _)| *g == generation) {
                return None;
            }
            grants.push((
                generation,
                binding.to_owned(),
                WrappedTo::from_raw_b64(wrap)?,
            ));
        }
        Some(AccessGrants {
            public_key: public_key.to_owned(),
            grants,
        })
    }
}

impl fmt::Display for AccessGrants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.public_key)?;
        for (generation, binding, wrap) in &self.grants {
            write!(f, ".{generation}:{binding}:{}", wrap.raw_b64())?;
        }
        Ok(())
    }
}

impl fmt::Debug for AccessGrants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessGrants")
            .field("public_key", &self.public_key)
            .field(
                "grants",
                &self
                    .grants
                    .iter()
                    .map(|(g, b, _)| format!("{g}:{b}"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Wraps a binding's private key to a wider binding (kept in the keyring).
pub fn wrap_binding_to(
    workspace: &str,
    generation: u32,
    binding: &str,
    secret: &RecipientSecret,
    to: &Binding,
) -> Result<String, Error> {
    let subject = format!("binding:{binding}");
    let ctx = WrapContext {
        workspace,
        generation,
        subject: &subject,
        recipient: &to.id,
    };
    Ok(WrappedTo::seal(&to.recipient()?, &secret.to_bytes(), &ctx).raw_b64())
}

/// Opens a binding's private key from its wrap to a wider binding whose key is `with`.
pub fn open_binding_from(
    workspace: &str,
    generation: u32,
    binding: &Binding,
    wider: &str,
    with: &RecipientSecret,
) -> Result<RecipientSecret, Error> {
    let wrap = binding
        .wraps
        .get(wider)
        .and_then(|w| WrappedTo::from_raw_b64(w))
        .ok_or_else(|| malformed("a binding key's wrap"))?;
    let subject = format!("binding:{}", binding.id);
    let ctx = WrapContext {
        workspace,
        generation,
        subject: &subject,
        recipient: wider,
    };
    let bytes = wrap.open(with, &ctx)?;
    RecipientSecret::from_bytes(&bytes).ok_or_else(|| malformed("a binding key"))
}

/// Upgrade from format 1: seals a binding's private key under the old workspace key
/// (XChaCha20-Poly1305, bound to workspace, generation and binding).
pub fn seal_legacy(
    wk: &WorkspaceKey,
    workspace: &str,
    generation: u32,
    binding: &str,
    secret: &RecipientSecret,
) -> String {
    let aad = legacy_aad(workspace, generation, binding);
    b64(&envelope::seal_joined(
        wk.bytes(),
        &aad,
        &*secret.to_bytes(),
    ))
}

/// Opens [`seal_legacy`]'s output for `binding` with the old workspace key.
pub fn open_legacy(
    wk: &WorkspaceKey,
    workspace: &str,
    generation: u32,
    binding: &Binding,
) -> Result<RecipientSecret, Error> {
    let gone = || {
        Error::new(
            ErrorCode::PermissionDenied,
            "this access key predates format 2 and the upgrade has retired format-1 keys: ask an admin for a new key",
        )
    };
    let raw = binding.legacy.as_deref().and_then(unb64).ok_or_else(gone)?;
    let aad = legacy_aad(workspace, generation, &binding.id);
    let bytes = envelope::open_joined_key(wk.bytes(), &aad, &raw)
        .ok_or_else(|| malformed("a binding's upgrade wrap"))?;
    RecipientSecret::from_bytes(&bytes).ok_or_else(|| malformed("a binding key"))
}

/// Upgrade from format 1: the old workspace key wrapped to the new unbound binding (what
/// [`Keyring::upgrade_key`] holds while `dv1` values are resealed).
pub fn wrap_upgrade_key(
    wk: &WorkspaceKey,
    workspace: &str,
    generation: u32,
    unbound: &Binding,
) -> Result<String, Error> {
    let subject = format!("workspace-key:{}", wk.id());
    let ctx = WrapContext {
        workspace,
        generation,
        subject: &subject,
        recipient: &unbound.id,
    };
    Ok(WrappedTo::seal(&unbound.recipient()?, wk.bytes(), &ctx).raw_b64())
}

/// Opens [`wrap_upgrade_key`]'s output with the unbound binding's private key.
pub fn open_upgrade_key(
    text: &str,
    workspace: &str,
    generation: u32,
    unbound: &str,
    with: &RecipientSecret,
    key_id: &super::KeyId,
) -> Result<WorkspaceKey, Error> {
    let wrap = WrappedTo::from_raw_b64(text).ok_or_else(|| malformed("the upgrade key"))?;
    let subject = format!("workspace-key:{key_id}");
    let ctx = WrapContext {
        workspace,
        generation,
        subject: &subject,
        recipient: unbound,
    };
    let bytes = wrap.open(with, &ctx)?;
    Ok(WorkspaceKey::from_parts(*bytes, key_id.clone()))
}

/// Whether `text` has the shape [`seal_legacy`] writes (the server cannot open it).
pub fn legacy_well_formed(text: &str) -> bool {
    unb64(text).is_some_and(|raw| raw.len() == envelope::NONCE_LEN + 32 + envelope::TAG_LEN)
}

fn legacy_aad(workspace: &str, generation: u32, binding: &str) -> Vec<u8> {
    [
        b"ductape/legacy/v2".as_slice(),
        workspace.as_bytes(),
        generation.to_string().as_bytes(),
        binding.as_bytes(),
    ]
    .join(&0u8)
}

fn malformed(what: &str) -> Error {
    Error::new(ErrorCode::Protocol, format!("{what} is malformed"))
}

/// The error for a sealed value that does not read as one.
pub(crate) fn malformed_secret(key: &SecretKey) -> Error {
    Error::new(
        ErrorCode::Integrity,
        format!("Secret '{key}' has a malformed ciphertext"),
    )
}

fn not_for_you(key: &SecretKey) -> Error {
    Error::new(
        ErrorCode::Integrity,
        format!("Secret '{key}' is not encrypted for this access key's binding"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Envelope;

    fn k(s: &str) -> SecretKey {
        SecretKey::parse(s).unwrap()
    }

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    fn binding(app: Option<&str>, envs: &[&str]) -> (Binding, RecipientSecret) {
        let pair = RecipientSecret::generate();
        let envs = tags(envs);
        (
            Binding {
                id: binding_id(app, &envs),
                app: app.map(str::to_owned),
                envs,
                public_key: pair.public().to_string(),
                wraps: BTreeMap::new(),
                pending: false,
                legacy: None,
            },
            pair,
        )
    }

    #[test]
    fn binding_ids_ignore_env_order_and_differ_by_app() {
        assert_eq!(
            binding_id(Some("web"), &tags(&["prd", "dev"])),
            binding_id(Some("web"), &tags(&["dev", "prd", "dev"]))
        );
        assert_ne!(binding_id(Some("web"), &[]), binding_id(Some("api"), &[]));
        assert_ne!(binding_id(None, &tags(&["prd"])), binding_id(None, &[]));
    }

    #[test]
    fn a_reader_decodes_only_its_own_wrap_and_a_broken_body_is_an_integrity_error() {
        let (web, web_key) = binding(Some("web"), &[]);
        let (api, _) = binding(Some("api"), &[]);
        let key = k("K");
        let (sealed, _) =
            SealedSecret::seal("ws", &key, 1, &Plaintext::from("v"), [&web, &api]).unwrap();
        let text = sealed.to_string();
        // api's wrap made unreadable: the whole form no longer parses, but web's reader,
        // which never decodes api's wrap, still opens the value.
        let (head, api_wrap) = text.rsplit_once(':').unwrap();
        assert!(text.contains(&format!("{}:", api.id)) && api_wrap.len() > 8);
        let garbled = format!("{head}:!!!!");
        assert!(SealedSecret::parse(&garbled).is_none());
        let view = SealedView::parse(&garbled).unwrap();
        let dk = view.open_key("ws", &key, &web.id, &web_key).unwrap();
        assert_eq!(view.open_value("ws", &key, &dk).unwrap().expose(), "v");
        assert_eq!(view.wrap_to(&api.id), Some("!!!!"));
        // api's reader, whose own wrap is the garbled one: a typed error, no panic.
        let (_, api_key) = binding(Some("api"), &[]);
        let err = view.open_key("ws", &key, &api.id, &api_key).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Integrity);
        assert!(err.message().contains("malformed"), "{err}");
        // Trimmed to web's wrap: a whole sealed value still, which opens for web alone.
        let web_only = SealedView::parse(&text).unwrap().only_for(&web.id).unwrap();
        let trimmed = SealedSecret::parse(&web_only).unwrap();
        assert_eq!(trimmed.recipients().collect::<Vec<_>>(), [web.id.as_str()]);
        assert!(web_only.len() < text.len() / 2 + 40, "{web_only}");
        let back = SealedView::parse(&web_only).unwrap();
        let dk = back.open_key("ws", &key, &web.id, &web_key).unwrap();
        assert_eq!(back.open_value("ws", &key, &dk).unwrap().expose(), "v");
        assert!(SealedView::parse(&text)
            .unwrap()
            .only_for("0000000000000000")
            .is_none());
        assert!(
            back.only_for(&web.id).is_none(),
            "nothing left to leave out"
        );
        // A body that is not base64, or too short to hold a nonce and a tag: a typed
        // error naming the secret, never a panic.
        let (prefix, rest) = text.split_at("dv2.1.".len());
        let wraps = &rest[rest.find('.').unwrap()..];
        for body in ["@@@@", "AAAA"] {
            let bad = format!("{prefix}{body}{wraps}");
            let err = SealedView::parse(&bad)
                .unwrap()
                .open_value("ws", &key, &dk)
                .unwrap_err();
            assert_eq!(err.code(), ErrorCode::Integrity);
            assert!(err.message().contains("'K'"), "{err}");
        }
        // Not a sealed value at all.
        for bad in ["", "dv2.", "dv2.0.AAAA.x:y", "dv2.1.AAAA", "dv1.1.AAAA.x:y"] {
            assert!(SealedView::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_audience_and_its_own_name() {
        let (ring, unbound) = Keyring::first();
        let (web, web_key) = binding(Some("web"), &["prd"]);
        let (api, api_key) = binding(Some("api"), &[]);
        let key = k("DB_URL");
        let scope = tags(&["web"]);
        let mut g = ring.current().clone();
        g.bindings.extend([web.clone(), api.clone()]);
        let audience: Vec<&Binding> = g.audience(&scope, &[]).collect();
        assert_eq!(audience.len(), 2, "unbound and web");
        let (sealed, _) =
            SealedSecret::seal("ws", &key, 1, &Plaintext::from("v"), audience).unwrap();
        let text = sealed.to_string();
        let back = SealedView::parse(&text).unwrap();
        assert!(SealedSecret::parse(&text).is_some());
        for (id, pair) in [
            (&ring.current().bindings[0].id, &unbound),
            (&web.id, &web_key),
        ] {
            let dk = back.open_key("ws", &key, id, pair).unwrap();
            assert_eq!(back.open_value("ws", &key, &dk).unwrap().expose(), "v");
        }
        // Not wrapped to api; api's key does not open another binding's wrap either.
        assert_eq!(
            back.open_key("ws", &key, &api.id, &api_key)
                .unwrap_err()
                .code(),
            ErrorCode::Integrity
        );
        assert!(back.open_key("ws", &key, &web.id, &api_key).is_err());
        // Moved to another secret or workspace: the wrap and the value refuse.
        assert!(back.open_key("ws", &k("OTHER"), &web.id, &web_key).is_err());
        assert!(back.open_key("ws2", &key, &web.id, &web_key).is_err());
        let dk = back.open_key("ws", &key, &web.id, &web_key).unwrap();
        assert!(back.open_value("ws", &k("OTHER"), &dk).is_err());
        assert!(!format!("{back:?}").contains(&text[20..40]));
    }

    #[test]
    fn a_writer_holding_a_binding_wraps_shared_and_readers_open_both_kinds() {
        let (ring, unbound) = Keyring::first();
        let (web, web_key) = binding(Some("web"), &[]);
        let (api, api_key) = binding(Some("api"), &[]);
        let mut g = ring.current().clone();
        g.bindings.extend([web.clone(), api.clone()]);
        let key = k("K");
        // Holding the unbound and web keys (not api's): shared for those two.
        let holding = |b: &Binding| match b.id.as_str() {
            id if id == g.bindings[0].id => Some(&unbound),
            id if id == web.id => Some(&web_key),
            _ => None,
        };
        let everyone: Vec<&Binding> = g.bindings.iter().collect();
        let (sealed, _) =
            SealedSecret::seal_holding("ws", &key, 1, &Plaintext::from("v"), everyone, holding)
                .unwrap();
        let text = sealed.to_string();
        let lens: Vec<usize> = SealedSecret::parse(&text)
            .unwrap()
            .wraps
            .iter()
            .map(|(_, w)| w.raw_b64().len())
            .collect();
        let back = SealedView::parse(&text).unwrap();
        assert!(
            lens[0] < lens[2] && lens[1] < lens[2],
            "shared, shared, public: {lens:?}"
        );
        for (id, pair) in [
            (&g.bindings[0].id, &unbound),
            (&web.id, &web_key),
            (&api.id, &api_key),
        ] {
            let dk = back.open_key("ws", &key, id, pair).unwrap();
            assert_eq!(back.open_value("ws", &key, &dk).unwrap().expose(), "v");
        }
        assert!(back.open_key("ws", &key, &web.id, &api_key).is_err());
        assert!(back.open_key("ws", &k("OTHER"), &web.id, &web_key).is_err());
        // A stale key for a binding (another public key) is not used for a shared wrap.
        let stale = RecipientSecret::generate();
        let (other, _) =
            SealedSecret::seal_holding("ws", &key, 1, &Plaintext::from("v"), [&web], |_| {
                Some(&stale)
            })
            .unwrap();
        let other_text = other.to_string();
        let other = SealedView::parse(&other_text).unwrap();
        assert!(other.open_key("ws", &key, &web.id, &web_key).is_ok());
        assert!(other.open_key("ws", &key, &web.id, &stale).is_err());
    }

    #[test]
    fn a_first_generation_and_the_upgrade_wraps_open_for_their_holders_only() {
        let bound = vec![
            (Some("web".to_owned()), vec!["prd".to_owned()]),
            (Some("web".to_owned()), vec![]),
            (None, vec!["dev".to_owned()]),
        ];
        let (g, secrets) = Generation::fresh("ws", 3, &bound).unwrap();
        assert_eq!(g.bindings.len(), 4);
        assert!(g.bindings[0].is_unbound());
        let ring = Keyring {
            format: FORMAT,
            generations: vec![g.clone()],
            upgrade_key: None,
        };
        ring.check().unwrap();
        // web/prd is wrapped to web and to the unbound binding, not to dev.
        let web_prd = g
            .binding(&binding_id(Some("web"), &tags(&["prd"])))
            .unwrap();
        let wider: Vec<&String> = web_prd.wraps.keys().collect();
        assert_eq!(wider.len(), 2);
        let web_id = binding_id(Some("web"), &[]);
        let web_secret = &secrets.iter().find(|(id, _)| *id == web_id).unwrap().1;
        let opened = open_binding_from("ws", 3, web_prd, &web_id, web_secret).unwrap();
        assert_eq!(opened.public().to_string(), web_prd.public_key);
        // Upgrade wraps: the old workspace key opens a binding's key; another does not.
        let wk = WorkspaceKey::generate();
        let mut b = web_prd.clone();
        b.legacy = Some(seal_legacy(&wk, "ws", 3, &b.id, &opened));
        assert!(legacy_well_formed(b.legacy.as_deref().unwrap()));
        assert_eq!(
            open_legacy(&wk, "ws", 3, &b).unwrap().public().to_string(),
            b.public_key
        );
        assert!(open_legacy(&WorkspaceKey::generate(), "ws", 3, &b).is_err());
        assert!(open_legacy(&wk, "ws", 4, &b).is_err());
        let unbound = &g.bindings[0];
        let unbound_secret = &secrets.iter().find(|(id, _)| *id == unbound.id).unwrap().1;
        let text = wrap_upgrade_key(&wk, "ws", 3, unbound).unwrap();
        let back = open_upgrade_key(&text, "ws", 3, &unbound.id, unbound_secret, wk.id()).unwrap();
        let probe = Envelope::seal(&wk, "ws", &k("P"), &Plaintext::from("p"));
        assert_eq!(probe.open(&back, "ws", &k("P")).unwrap().expose(), "p");
        assert!(open_upgrade_key(&text, "ws", 3, &unbound.id, web_secret, wk.id()).is_err());
    }

    #[test]
    fn the_server_check_wants_exactly_the_audience() {
        let (mut ring, _) = Keyring::first();
        let (web, _) = binding(Some("web"), &[]);
        let (api, _) = binding(Some("api"), &[]);
        ring.generations[0]
            .bindings
            .extend([web.clone(), api.clone()]);
        let key = k("K");
        let scope = tags(&["web"]);
        let g = ring.current();
        let seal = |to: Vec<&Binding>| {
            SealedSecret::seal("ws", &key, 1, &Plaintext::from("v"), to)
                .unwrap()
                .0
        };
        let right: Vec<&Binding> = g.audience(&scope, &[]).collect();
        assert!(ring.check_audience(&seal(right), &scope, &[]).is_ok());
        let missing = vec![&g.bindings[0]];
        assert_eq!(
            ring.check_audience(&seal(missing), &scope, &[])
                .unwrap_err()
                .code(),
            ErrorCode::KeyringChanged
        );
        let extra: Vec<&Binding> = g.bindings.iter().collect();
        assert_eq!(
            ring.check_audience(&seal(extra), &scope, &[])
                .unwrap_err()
                .code(),
            ErrorCode::PermissionDenied
        );
        let mut old = seal(g.audience(&scope, &[]).collect());
        old.generation = 7;
        assert_eq!(
            ring.check_audience(&old, &scope, &[]).unwrap_err().code(),
            ErrorCode::KeyringChanged
        );
    }

    #[test]
    fn grants_open_with_the_access_keys_own_pair_only() {
        let (web, web_key) = binding(Some("web"), &[]);
        let ak = RecipientSecret::generate();
        let mut g = AccessGrants::new(&ak.public());
        g.grant("ws", "0123456789abcdef", 1, &web.id, &web_key)
            .unwrap();
        let back = AccessGrants::parse(&g.to_string()).unwrap();
        let opened = back.open("ws", "0123456789abcdef", &ak).unwrap();
        assert_eq!(opened[0].0, 1);
        assert_eq!(opened[0].2.public(), web_key.public());
        assert!(back.open("ws", "fedcba9876543210", &ak).is_err());
        assert!(back
            .open("ws", "0123456789abcdef", &RecipientSecret::generate())
            .is_err());
    }

    #[test]
    fn junk_does_not_parse() {
        for s in [
            "",
            "dv2.",
            "dv2.0.AAAA.",
            "dv2.1.AAAA.zz:AA",
            "dv1.xc20p.x.y",
        ] {
            assert!(SealedSecret::parse(s).is_none(), "{s}");
        }
        for s in ["", "dg2.", "dg2.AAAA", "dg2.@@"] {
            assert!(AccessGrants::parse(s).is_none(), "{s}");
        }
        assert!(Keyring::parse("{}").is_err());
    }
}
