//! What cryptographic least privilege (format 2) costs, against format 1 in the same run.
//!
//! `keyring [--ductape PATH] [--quick]` (release build; `bench/run` builds it):
//!
//! - client CPU: sealing a value for 1, 6 and 101 bindings (101 = an unscoped secret in a
//!   workspace with 100 bound keys of distinct bindings), opening one (data key cached or
//!   not) against format 1's one AEAD; wrapping one secret to a new binding (the grant scan's
//!   cost per secret, so 100,000 secrets' grant time); storage bytes per wrap.
//! - end to end: `fetch` p50 of a bound key over a real server, format 2 against format 1
//!   (the v1 fixture database, which the bound key does not upgrade), each interleaved with
//!   the other, both the same value fetched again (data key cached) and distinct values.
//!
//! Prints one JSON object (the numbers, and the ratios against format 1).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ductape::crypto::keyring::{binding_id, Binding, Generation, SealedSecret, SealedView};
use ductape::crypto::wrap::RecipientSecret;
use ductape::crypto::{Envelope, Plaintext, WorkspaceKey};
use ductape::{AccessKey, AccessKeyOptions, Config, CreateSecret, Ductape, SecretKey};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median microseconds of `f` over `n` runs.
fn time_us(n: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect(),
    )
}

/// A generation with the unbound binding and `bound` bindings of distinct apps.
fn generation(ws: &str, bound: usize) -> (Generation, Vec<(String, RecipientSecret)>) {
    let specs: Vec<(Option<String>, Vec<String>)> = (0..bound)
        .map(|i| (Some(format!("app{i}")), vec![]))
        .collect();
    Generation::fresh(ws, 1, &specs).unwrap()
}

fn client_cpu(quick: bool) -> serde_json::Value {
    let n = if quick { 200 } else { 2000 };
    let ws = "ws_000000000000000000000001";
    let key = SecretKey::parse("STRIPE_API_KEY").unwrap();
    let value = Plaintext::from("sk_live_0123456789abcdefghijklmnopqrstuvwxyz");
    let wk = WorkspaceKey::generate();
    let v1_seal = time_us(n, || {
        std::hint::black_box(Envelope::seal(&wk, ws, &key, &value).to_string());
    });
    let v1_text = Envelope::seal(&wk, ws, &key, &value).to_string();
    let v1_open = time_us(n, || {
        let e = Envelope::parse(&v1_text).unwrap();
        std::hint::black_box(e.open(&wk, ws, &key).unwrap());
    });
    // The unit of format 2's cost: one X25519 key generation (a base-point multiplication).
    let keygen = time_us(n, || {
        std::hint::black_box(RecipientSecret::generate());
    });
    let mut seal = serde_json::Map::new();
    let mut sizes = serde_json::Map::new();
    let mut seal_held = serde_json::Map::new();
    for bound in [0usize, 5, 100] {
        let (g, secrets) = generation(ws, bound);
        let t = time_us(if bound == 100 { n / 10 } else { n }, || {
            let (s, _) = SealedSecret::seal(ws, &key, 1, &value, g.audience(&[], &[])).unwrap();
            std::hint::black_box(s.to_string());
        });
        seal.insert(format!("bindings_{}", bound + 1), t.into());
        // An unbound admin's client holds every binding's key: shared wraps.
        let held = |b: &Binding| secrets.iter().find(|(id, _)| *id == b.id).map(|(_, s)| s);
        let t = time_us(n, || {
            let (s, _) =
                SealedSecret::seal_holding(ws, &key, 1, &value, g.audience(&[], &[]), held)
                    .unwrap();
            std::hint::black_box(s.to_string());
        });
        seal_held.insert(format!("bindings_{}", bound + 1), t.into());
        let (s, _) = SealedSecret::seal(ws, &key, 1, &value, g.audience(&[], &[])).unwrap();
        sizes.insert(
            format!("bindings_{}", bound + 1),
            s.to_string().len().into(),
        );
    }
    // Opening: the unbound binding's key on its wrap (no cache), then the data key alone.
    let (g, secrets) = generation(ws, 5);
    let unbound = binding_id(None, &[]);
    let mine = &secrets.iter().find(|(id, _)| *id == unbound).unwrap().1;
    let (sealed, dk) = SealedSecret::seal(ws, &key, 1, &value, g.audience(&[], &[])).unwrap();
    let text = sealed.to_string();
    let v2_open = time_us(n, || {
        let s = SealedView::parse(&text).unwrap();
        let dk = s.open_key(ws, &key, &unbound, mine).unwrap();
        std::hint::black_box(s.open_value(ws, &key, &dk).unwrap());
    });
    let (shared, _) = SealedSecret::seal_holding(ws, &key, 1, &value, g.audience(&[], &[]), |b| {
        secrets.iter().find(|(id, _)| *id == b.id).map(|(_, s)| s)
    })
    .unwrap();
    let shared_text = shared.to_string();
    let v2_open_shared = time_us(n, || {
        let s = SealedView::parse(&shared_text).unwrap();
        let dk = s.open_key(ws, &key, &unbound, mine).unwrap();
        std::hint::black_box(s.open_value(ws, &key, &dk).unwrap());
    });
    let v2_open_cached = time_us(n, || {
        let s = SealedView::parse(&text).unwrap();
        std::hint::black_box(s.open_value(ws, &key, &dk).unwrap());
    });
    // The grant scan, per secret: open the data key, wrap it to the new binding.
    let pair = RecipientSecret::generate();
    let newcomer = Binding::new(ws, 1, Some("newapp"), &[], &pair, &g.bindings).unwrap();
    let grant = time_us(n, || {
        let s = SealedSecret::parse(&shared_text).unwrap();
        let dk = SealedView::parse(&shared_text)
            .unwrap()
            .open_key(ws, &key, &unbound, mine)
            .unwrap();
        std::hint::black_box(s.wrap_for(ws, &key, &newcomer, &dk, Some(&pair)).unwrap());
    });
    let per_wrap =
        (sizes["bindings_101"].as_f64().unwrap() - sizes["bindings_1"].as_f64().unwrap()) / 100.0;
    serde_json::json!({
        "x25519_keygen_us": keygen,
        "v1_seal_us": v1_seal,
        "v1_open_us": v1_open,
        "v2_seal_to_public_keys_us": seal,
        "v2_seal_holding_keys_us": seal_held,
        "v2_open_us": v2_open,
        "v2_open_shared_us": v2_open_shared,
        "v2_open_cached_us": v2_open_cached,
        "open_ratio_uncached": v2_open / v1_open,
        "grant_per_secret_us": grant,
        "grant_100k_secrets_s_client_cpu": grant * 100_000.0 / 1e6,
        "v1_sealed_bytes": v1_text.len(),
        "v2_sealed_bytes": sizes,
        "bytes_per_wrap": per_wrap,
    })
}

struct Server {
    child: Child,
    url: String,
    token: Option<String>,
    _dir: tempfile::TempDir,
}

fn start(bin: &Path, dir: tempfile::TempDir) -> Server {
    let mut child = Command::new(bin)
        .args(["server", "--data-dir"])
        .arg(dir.path())
        .args(["--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ductape server");
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server starts");
    let url = first.strip_prefix("DUCTAPE_URL=").map(str::to_owned);
    // A fresh server prints its setup token right after the URL.
    let token = rx
        .recv_timeout(Duration::from_millis(500))
        .ok()
        .and_then(|l| l.strip_prefix("DUCTAPE_SETUP_TOKEN=").map(str::to_owned));
    Server {
        child,
        url: url.expect("the server printed its URL"),
        token,
        _dir: dir,
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

async fn client(url: &str, key: &str) -> Ductape {
    let key: AccessKey = key.parse().unwrap();
    let d = Ductape::new(Config::new(url, key)).unwrap();
    d.init().await.unwrap();
    d
}

async fn p50_fetch(d: &Ductape, keys: &[String], rounds: usize) -> f64 {
    let mut v = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let k = &keys[i % keys.len()];
        let t = Instant::now();
        d.secrets().fetch(k).await.unwrap();
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(v)
}

async fn end_to_end(bin: &Path, fixture: &Path, quick: bool) -> serde_json::Value {
    // Format 1: the v1 fixture, read by its bound key (web/prd), which does not upgrade it.
    let v1_dir = temp_dir();
    std::fs::copy(
        fixture.join("ductape.sqlite"),
        v1_dir.path().join("ductape.sqlite"),
    )
    .unwrap();
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("keys.json")).unwrap()).unwrap();
    let mut v1 = start(bin, v1_dir);
    let v1c = client(&v1.url, keys["web_prd"].as_str().unwrap()).await;
    let v1_keys: Vec<String> = keys["web_prd_reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();

    // Format 2: a fresh workspace with the same secrets, read by a web/prd key, and 100
    // bound keys of other bindings (so every unscoped value is wrapped 100 more times).
    let mut v2 = start(bin, temp_dir());
    let (admin_key, _) = ductape::setup(&v2.url, v2.token.as_deref().unwrap(), "bench")
        .await
        .unwrap();
    let admin = client(&v2.url, &admin_key.expose()).await;
    let mut o = AccessKeyOptions::new("web-prd", [ductape::wire::Permission::Read]);
    o.app = Some("web".into());
    o.envs = vec!["prd".into()];
    let web = admin.access_keys().create(o).await.unwrap().key;
    for i in 0..100 {
        let mut o = AccessKeyOptions::new(format!("k{i}"), [ductape::wire::Permission::Read]);
        o.app = Some(format!("app{i}"));
        admin.access_keys().create(o).await.unwrap();
    }
    for k in &v1_keys {
        admin
            .secrets()
            .create(CreateSecret::new(k.clone(), format!("value of {k}")).scope(["web"]))
            .await
            .unwrap();
    }
    // Client-side create time with 100 bound keys: seal (102 bindings) + request.
    let creates = if quick { 50 } else { 300 };
    let mut create_us = Vec::new();
    for i in 0..creates {
        let t = Instant::now();
        admin
            .secrets()
            .create(CreateSecret::new(format!("NEW_{i}"), "v"))
            .await
            .unwrap();
        create_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // Values this reader has never opened, with the same readers as the format-1 ones.
    for i in 0..creates {
        admin
            .secrets()
            .create(CreateSecret::new(format!("FRESH_{i}"), format!("fresh {i}")).scope(["web"]))
            .await
            .unwrap();
    }
    let v2c = client(&v2.url, &web.expose()).await;

    let rounds = if quick { 300 } else { 3000 };
    let (mut one1, mut one2, mut many1, mut many2) = (vec![], vec![], vec![], vec![]);
    for _ in 0..if quick { 2 } else { 5 } {
        one1.push(p50_fetch(&v1c, &v1_keys[..1], rounds).await);
        one2.push(p50_fetch(&v2c, &v1_keys[..1], rounds).await);
        many2.push(p50_fetch(&v2c, &v1_keys, rounds).await);
        many1.push(p50_fetch(&v1c, &v1_keys, rounds).await);
    }
    // Distinct values, never fetched before by this session: every fetch opens a wrap.
    let cold = Ductape::new(Config::new(&v2.url, web.expose().parse().unwrap())).unwrap();
    cold.init().await.unwrap();
    let fresh: Vec<String> = (0..creates).map(|i| format!("FRESH_{i}")).collect();
    let v2_uncached = p50_fetch(&cold, &fresh, fresh.len()).await;
    // The same values again, their data keys cached now: what the first pass cost beyond.
    let v2_fresh_again = p50_fetch(&cold, &fresh, fresh.len()).await;
    // A new binding over many secrets: the grant scan (every secret it may read wrapped to
    // it, page by page) as `access-keys create` runs it.
    let many = if quick { 5_000 } else { 100_000 };
    let mut batch = Vec::with_capacity(many);
    for i in 0..many {
        batch.push(
            CreateSecret::new(format!("BULK_{i:06}"), format!("bulk value {i}")).scope(["bulk"]),
        );
    }
    for chunk in batch.chunks(5_000) {
        for (k, a) in admin.secrets().create_batch(chunk.to_vec()).await.unwrap() {
            a.unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    }
    let mut o = AccessKeyOptions::new("bulk-reader", [ductape::wire::Permission::Read]);
    o.app = Some("bulk".into());
    let t = Instant::now();
    admin.access_keys().create(o).await.unwrap();
    let grant_s = t.elapsed().as_secs_f64();
    let _ = v1.child.kill();
    let _ = v2.child.kill();
    let (one1, one2, many1, many2) = (median(one1), median(one2), median(many1), median(many2));
    serde_json::json!({
        "fetch_p50_us_v1_same_value": one1,
        "fetch_p50_us_v2_same_value": one2,
        "fetch_ratio_same_value": one2 / one1,
        "fetch_p50_us_v1_rotating_values": many1,
        "fetch_p50_us_v2_rotating_values": many2,
        "fetch_ratio_rotating_values": many2 / many1,
        "fetch_p50_us_v2_never_seen_values": v2_uncached,
        "fetch_ratio_never_seen_values": v2_uncached / many1,
        "fetch_p50_us_v2_same_values_second_pass": v2_fresh_again,
        "create_p50_us_with_100_bound_keys": median(create_us),
        "grant_new_binding_secrets": many,
        "grant_new_binding_s": grant_s,
    })
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut bin = PathBuf::from("target/release/ductape");
    let mut quick = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ductape" => bin = PathBuf::from(args.next().expect("--ductape PATH")),
            "--quick" => quick = true,
            other => panic!("unknown argument {other}"),
        }
    }
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v1");
    let cpu = client_cpu(quick);
    let e2e = tokio::time::timeout(Duration::from_secs(600), end_to_end(&bin, &fixture, quick))
        .await
        .expect("the end-to-end part finishes in 10 minutes");
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "client_cpu": cpu, "end_to_end": e2e }))
            .unwrap()
    );
}
