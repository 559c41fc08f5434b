//! The Ductape core in the browser: what the web console needs of it, compiled to
//! WebAssembly with wasm-bindgen. One exported function or method per operation; each
//! translates its arguments and calls the core, so the console seals, opens and validates
//! exactly as the SDKs do (no second implementation of any of it in JavaScript).
//!
//! Errors are thrown as `Error` objects carrying the core's `code` and `status`.

use ductape::args::AccessKeyOptions;
use ductape::session::{BindingState, Session};
use ductape::wire::{PendingWraps, SessionResponse};
use ductape::{AccessKey, CreateSecret, Plaintext, SecretKey};
use wasm_bindgen::prelude::*;

/// A signed-in console: the access key (in this object's memory only) and, after
/// [`Console::open_session`], the keys it unwraps here.
#[wasm_bindgen]
pub struct Console {
    key: AccessKey,
    session: Option<Session>,
}

#[wasm_bindgen]
impl Console {
    /// Reads a pasted access key (`dtpk_…`); nothing is sent anywhere.
    #[wasm_bindgen(constructor)]
    pub fn new(access_key: &str) -> Result<Console, JsValue> {
        let key = access_key.trim().parse::<AccessKey>().map_err(thrown)?;
        Ok(Console { key, session: None })
    }

    /// The access key's id (safe to show).
    #[wasm_bindgen(getter, js_name = accessKeyId)]
    pub fn access_key_id(&self) -> String {
        self.key.id().to_owned()
    }

    /// The headers of every request, as the SDKs send them: `Authorization` with the key's
    /// bearer part (never its unwrap secret) and the data format this core seals in.
    #[wasm_bindgen(js_name = requestHeaders)]
    pub fn request_headers(&self) -> js_sys::Object {
        let headers = js_sys::Object::new();
        let set = |name: &str, value: String| {
            let _ = js_sys::Reflect::set(&headers, &name.into(), &value.into());
        };
        set(
            "Authorization",
            format!("Bearer {}", self.key.bearer().as_str()),
        );
        set(
            ductape::crypto::keyring::FORMAT_HEADER,
            ductape::crypto::keyring::FORMAT.to_string(),
        );
        headers
    }

    /// Opens the keys of a `GET /v1/session` answer (its JSON text) with the access key.
    #[wasm_bindgen(js_name = openSession)]
    pub fn open_session(&mut self, session_json: &str) -> Result<(), JsValue> {
        let resp: SessionResponse = serde_json::from_str(session_json)
            .map_err(|e| protocol(format!("malformed session answer: {e}")))?;
        self.session = Some(Session::open(resp, &self.key).map_err(thrown)?);
        Ok(())
    }

    /// The body of `POST /v1/secrets` (JSON text) for the documented create arguments
    /// (JSON text), checked with the SDKs' rules and the value sealed here.
    #[wasm_bindgen(js_name = createBody)]
    pub fn create_body(&self, args_json: &str) -> Result<String, JsValue> {
        let args = CreateSecret::from_json(&parse_json(args_json)?).map_err(thrown)?;
        let body = self.session()?.create_body(args).map_err(thrown)?;
        Ok(serde_json::Value::Object(body).to_string())
    }

    /// A new access key for the documented options (JSON text: `name`, `permissions`,
    /// `app`, `envs`), made here: `{ key, body }`, the key to show once and the body of
    /// `POST /v1/access-keys` (its grant or wrapped workspace key, made with this session's
    /// keys; the server stores only the key's hash).
    #[wasm_bindgen(js_name = newAccessKey)]
    pub fn new_access_key(&self, options_json: &str) -> Result<js_sys::Object, JsValue> {
        let opts = AccessKeyOptions::from_json(&parse_json(options_json)?).map_err(thrown)?;
        let envs = opts.checked_envs().map_err(thrown)?;
        let key = AccessKey::generate();
        let body = self
            .session()?
            .access_key_body(&key, &opts, &envs)
            .map_err(thrown)?;
        let out = js_sys::Object::new();
        let set = |name: &str, value: String| {
            let _ = js_sys::Reflect::set(&out, &name.into(), &value.into());
        };
        set("key", key.expose().to_string());
        set("body", body.to_string());
        Ok(out)
    }

    /// Where the binding of an access key with these options (JSON text) stands in the
    /// keyring: `{ state: "ready" }`, or `{ state: "missing" | "pending", id }` when its
    /// first key needs the binding registered and/or its secrets wrapped to it first.
    #[wasm_bindgen(js_name = bindingState)]
    pub fn binding_state(&self, options_json: &str) -> Result<js_sys::Object, JsValue> {
        let (app, envs) = binding_of(options_json)?;
        let (state, id) = match self.session()?.binding_state(app.as_deref(), &envs) {
            BindingState::Ready => ("ready", None),
            BindingState::Missing(id) => ("missing", Some(id)),
            BindingState::Pending(id) => ("pending", Some(id)),
        };
        let out = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&out, &"state".into(), &state.into());
        if let Some(id) = id {
            let _ = js_sys::Reflect::set(&out, &"id".into(), &id.into());
        }
        Ok(out)
    }

    /// The body (JSON text) of `POST /v1/keyring/bindings` registering the binding of an
    /// access key with these options: a key pair made here, its private key wrapped to the
    /// wider bindings this session holds.
    #[wasm_bindgen(js_name = registerBindingBody)]
    pub fn register_binding_body(&self, options_json: &str) -> Result<String, JsValue> {
        let (app, envs) = binding_of(options_json)?;
        let body = self
            .session()?
            .register_binding_body(app.as_deref(), &envs)
            .map_err(thrown)?;
        Ok(body.to_string())
    }

    /// The bodies (JSON text each) of `POST /v1/keyring/bindings/{id}/wraps` for one page of
    /// that binding's grant scan (the JSON text of a `/pending` answer): each secret's data
    /// key opened and wrapped to the binding here.
    #[wasm_bindgen(js_name = bindingWrapBodies)]
    pub fn binding_wrap_bodies(&self, id: &str, page_json: &str) -> Result<Vec<String>, JsValue> {
        let page: PendingWraps = serde_json::from_str(page_json)
            .map_err(|e| protocol(format!("malformed grant scan page: {e}")))?;
        let wraps = self.session()?.binding_wraps(id, &page).map_err(thrown)?;
        Ok(wraps
            .chunks(PendingWraps::MAX_SECRETS)
            .map(|chunk| serde_json::json!({ "wraps": chunk }).to_string())
            .collect())
    }

    /// Seals `value` for a secret `key` read by `scope`/`envs` (an update's new ciphertext).
    #[wasm_bindgen(js_name = seal)]
    pub fn seal(
        &self,
        key: &str,
        value: &str,
        scope: Vec<String>,
        envs: Vec<String>,
    ) -> Result<String, JsValue> {
        let key = SecretKey::parse(key).map_err(thrown)?;
        ductape::validate::check_value(value).map_err(thrown)?;
        self.session()?
            .seal(&key, &Plaintext::from(value), &scope, &envs)
            .map_err(thrown)
    }

    /// Opens the ciphertext of secret `key`: its value.
    #[wasm_bindgen(js_name = open)]
    pub fn open(&self, key: &str, ciphertext: &str) -> Result<String, JsValue> {
        let key = SecretKey::parse(key).map_err(thrown)?;
        let value = self
            .session()?
            .open_value(&key, ciphertext)
            .map_err(thrown)?;
        Ok(value.expose().to_owned())
    }
}

impl Console {
    fn session(&self) -> Result<&Session, JsValue> {
        self.session
            .as_ref()
            .ok_or_else(|| protocol("not signed in: open a session first".into()))
    }
}

/// `$Token{KEY}` for a key, after checking the key as the SDKs do.
#[wasm_bindgen(js_name = tokenReference)]
pub fn token_reference(key: &str) -> Result<String, JsValue> {
    let key = SecretKey::parse(key).map_err(thrown)?;
    Ok(format!("$Token{{{key}}}"))
}

/// The binding (app, checked envs) of an access key's options (JSON text).
fn binding_of(options_json: &str) -> Result<(Option<String>, Vec<String>), JsValue> {
    let opts = AccessKeyOptions::from_json(&parse_json(options_json)?).map_err(thrown)?;
    let envs = opts.checked_envs().map_err(thrown)?;
    Ok((opts.app, envs))
}

fn parse_json(text: &str) -> Result<serde_json::Value, JsValue> {
    serde_json::from_str(text).map_err(|e| protocol(format!("malformed arguments: {e}")))
}

fn protocol(message: String) -> JsValue {
    thrown(ductape::Error::new(ductape::ErrorCode::Protocol, message))
}

/// The core's error as a JavaScript `Error` with `code` and `status`.
fn thrown(e: ductape::Error) -> JsValue {
    let err = js_sys::Error::new(e.message());
    let set = |name: &str, value: JsValue| {
        let _ = js_sys::Reflect::set(&err, &JsValue::from_str(name), &value);
    };
    set("code", JsValue::from_str(e.code_str()));
    if let Some(status) = e.status() {
        set("status", JsValue::from_f64(f64::from(status)));
    }
    err.into()
}
