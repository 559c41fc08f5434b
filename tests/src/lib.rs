//! Test harness: starts real `ductape server` processes on loopback and talks to them.
//!
//! The binary is found at `$DUCTAPE_BIN`, else in the workspace's target directory
//! (`cargo build -p ductape-cli` first; `scripts/test` does).

pub mod stolen;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ductape::{AccessKey, Config, Ductape};

/// Path of the `ductape` binary under test.
pub fn ductape_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DUCTAPE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/ductape");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p ductape-cli` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// How a server process is started.
enum Launch<'a> {
    Plain,
    /// Under a descriptor limit (soft and hard).
    FdLimit(u32),
    /// Allowed only these CPUs (`taskset -c`).
    OnCpus(&'a str),
}

/// A running server process. Killed on drop.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    /// The admin access key (dev servers, or after `setup`).
    pub access_key: Option<String>,
    pub setup_token: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// Where the server's stderr (its logs) goes.
    pub log_path: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Server {
    /// `ductape server --dev` on a free port.
    pub fn dev() -> Server {
        Server::start(&["--dev"], None)
    }

    /// `ductape server --dev` with more flags.
    pub fn dev_with(flags: &[&str]) -> Server {
        let mut args = vec!["--dev"];
        args.extend_from_slice(flags);
        Server::start(&args, None)
    }

    /// A persistent server with more flags.
    pub fn persistent_with(data_dir: &Path, flags: &[&str]) -> Server {
        let dir = data_dir.to_str().expect("utf-8 path").to_owned();
        let mut args = vec!["--data-dir", dir.as_str()];
        args.extend_from_slice(flags);
        Server::start(&args, Some(data_dir.to_path_buf()))
    }

    /// A persistent server on `data_dir` that may run only on `cpus` (`taskset -c`): it sees
    /// that many cores (its workers, readers and journal shards follow).
    pub fn persistent_on_cpus(data_dir: &Path, cpus: &str) -> Server {
        let dir = data_dir.to_str().expect("utf-8 path").to_owned();
        Server::start_full(
            &["--data-dir", &dir],
            Some(data_dir.to_path_buf()),
            Some("debug"),
            Launch::OnCpus(cpus),
        )
    }

    /// A persistent server on `data_dir` (fresh or existing).
    pub fn persistent(data_dir: &Path) -> Server {
        let dir = data_dir.to_str().expect("utf-8 path").to_owned();
        Server::start(&["--data-dir", &dir], Some(data_dir.to_path_buf()))
    }

    /// `ductape server --dev` with more flags and `RUST_LOG` as given (`None`: unset, the
    /// server's own default).
    pub fn dev_logging(flags: &[&str], rust_log: Option<&str>) -> Server {
        let mut args = vec!["--dev"];
        args.extend_from_slice(flags);
        Server::start_logging(&args, None, rust_log)
    }

    /// `ductape server --dev` with more flags, under a descriptor limit (soft and hard).
    pub fn dev_with_fd_limit(flags: &[&str], limit: u32) -> Server {
        let mut args = vec!["--dev"];
        args.extend_from_slice(flags);
        Server::start_full(&args, None, Some("debug"), Launch::FdLimit(limit))
    }

    fn start(extra: &[&str], data_dir: Option<PathBuf>) -> Server {
        Server::start_logging(extra, data_dir, Some("debug"))
    }

    fn start_logging(extra: &[&str], data_dir: Option<PathBuf>, rust_log: Option<&str>) -> Server {
        Server::start_full(extra, data_dir, rust_log, Launch::Plain)
    }

    fn start_full(
        extra: &[&str],
        data_dir: Option<PathBuf>,
        rust_log: Option<&str>,
        launch: Launch<'_>,
    ) -> Server {
        let log_dir = tempfile::tempdir().expect("tempdir");
        let log_path = log_dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = match launch {
            Launch::Plain => Command::new(ductape_bin()),
            Launch::FdLimit(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(ductape_bin());
                c
            }
            Launch::OnCpus(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(ductape_bin());
                c
            }
        };
        match rust_log {
            Some(level) => cmd.env("RUST_LOG", level),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut child = cmd
            .args(["server", "--addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("DUCTAPE_ACCESS_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start ductape server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = None;
        let mut access_key = None;
        let mut setup_token = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        let wants_key = extra.contains(&"--dev");
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(v) = line.strip_prefix("DUCTAPE_URL=") {
                        url = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("DUCTAPE_ACCESS_KEY=") {
                        access_key = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("DUCTAPE_SETUP_TOKEN=") {
                        setup_token = Some(v.to_owned());
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "server exited early ({status}): {}",
                            std::fs::read_to_string(&log_path).unwrap_or_default()
                        );
                    }
                }
            }
            if url.is_some() && (!wants_key || access_key.is_some()) {
                // A persistent server prints its setup token (if any) in the same write as the URL.
                if !wants_key {
                    if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
                        if let Some(v) = line.strip_prefix("DUCTAPE_SETUP_TOKEN=") {
                            setup_token = Some(v.to_owned());
                        }
                    }
                }
                break;
            }
        }
        let url = url.expect("server printed DUCTAPE_URL");
        let server = Server {
            child: Some(child),
            url,
            access_key,
            setup_token,
            data_dir,
            log_path,
            _log_dir: log_dir,
        };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("{}/healthz", self.url);
        while Instant::now() < deadline {
            if probe::get_ok(&url) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server at {} never became healthy", self.url);
    }

    /// Runs first-time setup on a fresh persistent server; stores and returns the admin key.
    pub async fn setup(&mut self) -> String {
        let token = self
            .setup_token
            .clone()
            .expect("a fresh server prints a setup token");
        let (key, _) = ductape::setup(&self.url, &token, "test")
            .await
            .expect("setup");
        let text = key.expose().to_string();
        self.access_key = Some(text.clone());
        text
    }

    /// An initialized client using the admin key.
    pub async fn client(&self) -> Ductape {
        self.client_with(self.access_key.as_deref().expect("server has an admin key"))
            .await
    }

    /// An initialized client using `key`.
    pub async fn client_with(&self, key: &str) -> Ductape {
        let key: AccessKey = key.parse().expect("access key");
        let d = Ductape::new(Config::new(&self.url, key).max_retries(0)).expect("client");
        d.init().await.expect("init");
        d
    }

    /// The bearer credential (`id.secret`) of the admin key, for raw HTTP.
    pub fn bearer(&self) -> String {
        let key: AccessKey = self
            .access_key
            .as_deref()
            .expect("admin key")
            .parse()
            .expect("key");
        key.bearer().to_string()
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().expect("wait")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A health probe that needs no async runtime.
mod probe {
    pub fn get_ok(url: &str) -> bool {
        // A raw HTTP/1.1 GET over std: the harness must not need a runtime to poll health.
        // An HTTPS server is probed by connecting only.
        use std::io::{Read, Write};
        if let Some(rest) = url.strip_prefix("https://") {
            let host = rest.split('/').next().unwrap_or(rest);
            return std::net::TcpStream::connect(host).is_ok();
        }
        let Some(rest) = url.strip_prefix("http://") else {
            return false;
        };
        let (host, path) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, "/".into()));
        let Ok(mut s) = std::net::TcpStream::connect(host) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        if write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .is_err()
        {
            return false;
        }
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.1 200")
    }
}

/// A raw HTTP client for tests that bypass the SDK.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Sends a request as a current client would (with the format header) and returns the
/// status and the JSON body (or Null).
pub async fn raw(
    method: reqwest::Method,
    url: &str,
    bearer: Option<&str>,
    content_type: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let mut req = http().request(method, url).header(
        ductape::crypto::keyring::FORMAT_HEADER,
        ductape::crypto::keyring::FORMAT,
    );
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Whether a text carries a sealed value of either format (`dv1.` envelope, `dv2.` sealed
/// value): what must never appear where ciphertext may not go.
pub fn carries_sealed_value(text: &str) -> bool {
    text.contains("dv1.") || text.contains("dv2.")
}

/// Asserts the one error shape of DESIGN.md §3 and returns the code.
pub fn assert_error_shape(status: u16, body: &serde_json::Value) -> String {
    let e = &body["error"];
    assert_eq!(
        e["status"].as_u64(),
        Some(status as u64),
        "error body {body}"
    );
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body {body}"
    );
    e["code"].as_str().expect("code").to_owned()
}

impl Server {
    /// A server on a PostgreSQL database.
    pub fn postgres(url: &str) -> Server {
        Server::postgres_with(url, &[])
    }

    /// A server on a PostgreSQL database, with more flags.
    pub fn postgres_with(url: &str, flags: &[&str]) -> Server {
        let mut args = vec!["--database", url];
        args.extend_from_slice(flags);
        Server::start(&args, None)
    }
}

/// A throwaway PostgreSQL cluster on loopback, made with the machine's `initdb` and
/// `pg_ctl` (run as the `postgres` user when the tests run as root). Stopped on drop.
pub struct PgCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

fn pg_tool(name: &str) -> PathBuf {
    for dir in ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("PostgreSQL's {name} not found (install postgresql-15)");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

impl PgCluster {
    pub fn start() -> PgCluster {
        PgCluster::start_with(None)
    }

    /// A cluster that also accepts TLS with this PEM certificate and key.
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> PgCluster {
        PgCluster::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> PgCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let as_postgres = is_root();
        if as_postgres {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status();
        }
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = PgCluster {
            dir,
            port,
            as_postgres,
        };
        cluster.run(
            pg_tool("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        let mut opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=on",
            cluster.dir.path().display()
        );
        if let Some((cert, key)) = tls {
            let cert_path = cluster.dir.path().join("server.crt");
            let key_path = cluster.dir.path().join("server.key");
            std::fs::write(&cert_path, cert).unwrap();
            std::fs::write(&key_path, key).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if as_postgres {
                let _ = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(&cert_path)
                    .arg(&key_path)
                    .status();
            }
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert_path.display(),
                key_path.display()
            ));
        }
        cluster.run(
            pg_tool("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                cluster.dir.path().join("pg.log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        cluster
    }

    fn run(&self, tool: PathBuf, args: &[&str]) {
        let status = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&tool)
                .args(args)
                .stdout(Stdio::null())
                .status()
        } else {
            Command::new(&tool)
                .args(args)
                .stdout(Stdio::null())
                .status()
        }
        .expect("run a PostgreSQL tool");
        assert!(status.success(), "{} {args:?} failed", tool.display());
    }

    /// A fresh database in the cluster; returns its URL.
    pub fn database(&self, name: &str) -> String {
        self.run(
            pg_tool("createdb"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ],
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL with psql and returns its unaligned output.
    pub fn sql(&self, db: &str, query: &str) -> String {
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
            "-Atc",
            query,
        ];
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_tool("psql"))
                .args(args)
                .output()
        } else {
            Command::new(pg_tool("psql")).args(args).output()
        }
        .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `pg_dump` of a database (plain SQL, data only): what a stolen backup holds.
    pub fn dump(&self, db: &str) -> String {
        let port = self.port.to_string();
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "--data-only",
            db,
        ];
        let out = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_tool("pg_dump"))
                .args(args)
                .output()
        } else {
            Command::new(pg_tool("pg_dump")).args(args).output()
        }
        .expect("pg_dump");
        assert!(out.status.success(), "pg_dump failed");
        String::from_utf8(out.stdout).expect("utf-8 dump")
    }

    /// Forces everything to the data files (for searching them).
    pub fn checkpoint(&self) {
        self.run(
            pg_tool("psql"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-c",
                "CHECKPOINT",
            ],
        );
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The postmaster and every process it started.
    fn processes(&self) -> Vec<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .expect("postmaster.pid");
        let main: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![main];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // The parent pid is the second field after the parenthesised command name.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if parent == Some(main) {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal(&self, sig: &str) {
        for pid in self.processes() {
            let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
        }
    }

    /// Freezes the whole database (SIGSTOP): connections stay open and nothing answers,
    /// like a hung host. Resumed by [`PgCluster::resume`] (or when dropped).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.resume();
        let data = self.data_dir();
        let _ = std::panic::catch_unwind(|| {
            self.run(
                pg_tool("pg_ctl"),
                &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
            );
        });
    }
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

/// The keys `fetch_all` returns, in order.
pub async fn listed_keys(d: &Ductape) -> Vec<String> {
    d.secrets()
        .fetch_all()
        .await
        .expect("fetch_all")
        .into_iter()
        .map(|s| s.key)
        .collect()
}

/// Pages through the listing `limit` at a time; returns each page's size and every key.
pub async fn paged_keys(d: &Ductape, limit: u32) -> (Vec<usize>, Vec<String>) {
    let mut q = ductape::wire::ListQuery {
        limit: Some(limit),
        cursor: None,
    };
    let (mut sizes, mut keys) = (Vec::new(), Vec::new());
    loop {
        let page = d.secrets().page(&q).await.expect("page");
        sizes.push(page.secrets.len());
        keys.extend(page.secrets.into_iter().map(|s| s.key));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return (sizes, keys),
        }
    }
}

/// A man in the middle on loopback: passes every request on to `upstream` and its answer
/// back, with the JSON bodies of requests to `path` and of their answers rewritten by
/// `request` and `response` (a tampering proxy, or a misbehaving server). Returns its URL.
pub async fn rewriting_proxy(
    upstream: &str,
    path: &'static str,
    request: fn(serde_json::Value) -> serde_json::Value,
    response: fn(serde_json::Value) -> serde_json::Value,
) -> String {
    use axum::body::Bytes;
    use axum::http::{header, HeaderMap, Method, StatusCode, Uri};

    fn rewritten(body: Bytes, f: fn(serde_json::Value) -> serde_json::Value) -> Vec<u8> {
        let value: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        f(value).to_string().into_bytes()
    }
    let upstream = upstream.to_owned();
    let forward = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let upstream = upstream.clone();
        async move {
            let ours = uri.path() == path;
            let body = if ours {
                rewritten(body, request)
            } else {
                body.to_vec()
            };
            let mut out = http()
                .request(method, format!("{upstream}{uri}"))
                .body(body);
            for (name, value) in &headers {
                if name != header::HOST && name != header::CONTENT_LENGTH {
                    out = out.header(name, value);
                }
            }
            let answer = out.send().await.expect("the upstream answers");
            let status = StatusCode::from_u16(answer.status().as_u16()).expect("a status");
            let passed: Vec<_> = answer
                .headers()
                .iter()
                .filter(|(name, _)| {
                    ![
                        header::CONTENT_LENGTH,
                        header::TRANSFER_ENCODING,
                        header::CONNECTION,
                    ]
                    .contains(name)
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let body = answer.bytes().await.expect("the upstream's body");
            let body = if ours && status.is_success() {
                rewritten(body, response)
            } else {
                body.to_vec()
            };
            let mut reply = axum::response::Response::new(axum::body::Body::from(body));
            *reply.status_mut() = status;
            reply.headers_mut().extend(passed);
            reply
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(forward))
            .await
            .expect("the proxy serves")
    });
    url
}
