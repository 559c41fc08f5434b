//! The `ductape` command line against a real server.

use ductape_e2e::{ductape_bin, Server};
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(ductape_bin())
        .args(args)
        .env("DUCTAPE_URL", &server.url)
        .env(
            "DUCTAPE_ACCESS_KEY",
            server.access_key.as_deref().unwrap_or(""),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn secrets_commands_create_list_get_update_revoke_restore_delete() {
    let server = Server::dev();
    let o = run(
        &server,
        &[
            "secrets",
            "create",
            "STRIPE_API_KEY",
            "--description",
            "Stripe",
            "--scope",
            "pay,checkout",
            "--envs",
            "prd",
        ],
        Some("sk_live_from_stdin\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&server, &["secrets", "get", "STRIPE_API_KEY"], None);
    assert_eq!(
        stdout(&o),
        "sk_live_from_stdin\n",
        "one trailing newline from echo is not part of the value"
    );

    let o = run(&server, &["secrets", "list", "--json"], None);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["key"], "STRIPE_API_KEY");
    assert_eq!(list[0]["scope"], serde_json::json!(["pay", "checkout"]));
    assert!(!stdout(&o).contains("sk_live_from_stdin"));

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "from-a-file").unwrap();
    let o = run(
        &server,
        &[
            "secrets",
            "update",
            "STRIPE_API_KEY",
            "--value-file",
            file.path().to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert!(o.status.success());
    let rec: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["version"], 2);
    let o = run(
        &server,
        &["secrets", "get", "STRIPE_API_KEY", "--json"],
        None,
    );
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(got["value"], "from-a-file");

    assert!(run(&server, &["secrets", "revoke", "STRIPE_API_KEY"], None)
        .status
        .success());
    let o = run(&server, &["secrets", "get", "STRIPE_API_KEY"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("Secret 'STRIPE_API_KEY' has been revoked (secret_revoked, HTTP 410)"));
    assert!(
        run(&server, &["secrets", "restore", "STRIPE_API_KEY"], None)
            .status
            .success()
    );
    assert!(run(&server, &["secrets", "delete", "STRIPE_API_KEY"], None)
        .status
        .success());
    let o = run(&server, &["secrets", "get", "STRIPE_API_KEY"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("HTTP 404"));
}

#[test]
fn errors_exit_non_zero_with_the_code_and_no_secret() {
    let server = Server::dev();
    run(
        &server,
        &["secrets", "create", "DUP", "--value", "first"],
        None,
    );
    let o = run(
        &server,
        &["secrets", "create", "DUP", "--value", "second-canary"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Secret with key 'DUP' already exists (secret_exists, HTTP 409)"),
        "{err}"
    );
    assert!(!err.contains("second-canary"));
    let o = run(
        &server,
        &[
            "secrets",
            "create",
            "BAD",
            "--value",
            "v",
            "--token-type",
            "bearer",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("'token_type'"));
    // A malformed access key is a config error that does not echo the key.
    let mut bad = Server::dev();
    bad.access_key = Some("dtpk_not-a-real-key-canary".into());
    let o = run(&bad, &["secrets", "list"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("canary"));
}

#[test]
fn init_sets_up_a_fresh_server_and_access_keys_can_be_issued() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent(data.path());
    let token = server.setup_token.clone().unwrap();
    let o = Command::new(ductape_bin())
        .args([
            "init",
            "--url",
            &server.url,
            "--token",
            &token,
            "--name",
            "acme",
        ])
        .env_remove("DUCTAPE_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = stdout(&o);
    let key = line
        .trim()
        .strip_prefix("DUCTAPE_ACCESS_KEY=")
        .expect("init prints the key")
        .to_owned();
    server.access_key = Some(key);

    let o = run(
        &server,
        &[
            "access-keys",
            "create",
            "--name",
            "ci",
            "--permissions",
            "list,read",
            "--app",
            "payments",
            "--envs",
            "prd",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).starts_with("DUCTAPE_ACCESS_KEY=dtpk_"));
    let o = run(&server, &["access-keys", "list", "--json"], None);
    let keys: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert_eq!(keys[1]["app"], "payments");
    assert!(!stdout(&o).contains("secret"), "no secret parts listed");
}

#[test]
fn doctor_says_what_works_and_what_to_fix() {
    let server = Server::dev();
    let o = run(&server, &["doctor", "--json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let findings: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks: Vec<&str> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        ["url", "server", "ready", "clock", "access key", "session"]
    );
    assert!(findings.as_array().unwrap().iter().all(|f| f["ok"] == true));
    // The key never shows: only its id.
    let key = server.access_key.clone().unwrap();
    let secret_part = key.split('.').nth(1).unwrap();
    assert!(!stdout(&o).contains(secret_part));

    // A key the server does not know: the session fails with what to do.
    let stranger = ductape::AccessKey::generate();
    let o = Command::new(ductape_bin())
        .args(["doctor", "--url", &server.url])
        .env("DUCTAPE_ACCESS_KEY", stranger.expose().as_str())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains("FAIL session"), "{text}");
    assert!(text.contains("ask an admin for a new one"), "{text}");
    assert!(!text.contains(stranger.secret()));

    // Nothing listening: the server check says where it looked.
    let o = Command::new(ductape_bin())
        .args(["doctor", "--url", "http://127.0.0.1:9"])
        .env_remove("DUCTAPE_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("is the server running at http://127.0.0.1:9?"),
        "{text}"
    );
    assert!(text.contains("FAIL access key"), "{text}");
}

#[test]
fn doctor_server_only_is_a_health_check_that_needs_no_key() {
    let server = Server::dev();
    let probe = |url: &str| {
        Command::new(ductape_bin())
            .args(["doctor", "--server-only", "--url", url])
            .env_remove("DUCTAPE_ACCESS_KEY")
            .output()
            .unwrap()
    };
    let o = probe(&server.url);
    assert!(o.status.success(), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.contains("ok   ready"), "{text}");
    assert!(!text.contains("access key"), "no key asked for: {text}");
    // Down: exit 1, saying where it looked.
    let o = probe("http://127.0.0.1:9");
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("is the server running at http://127.0.0.1:9?"));
}

#[test]
fn completions_man_page_and_version() {
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(ductape_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success());
        let text = stdout(&o);
        assert!(
            text.contains("rotate-key") && text.contains("secrets"),
            "{shell}"
        );
    }
    // The main commands' --help ends with examples that name the command itself.
    for cmd in [
        &["secrets", "create"][..],
        &["secrets", "get"],
        &["access-keys", "create"],
        &["run"],
        &["workspace", "rotate-key"],
    ] {
        let o = Command::new(ductape_bin())
            .args(cmd)
            .arg("--help")
            .output()
            .unwrap();
        let help = stdout(&o);
        let example = format!("ductape {}", cmd.join(" "));
        assert!(
            help.contains("Examples:") && help.contains(&example),
            "{cmd:?}: {help}"
        );
    }
    let o = Command::new(ductape_bin()).arg("man").output().unwrap();
    assert!(stdout(&o).contains(".TH ductape 1"));
    let o = Command::new(ductape_bin())
        .arg("--version")
        .output()
        .unwrap();
    let v = stdout(&o);
    assert!(
        v.starts_with(&format!("ductape {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    // A reader that stops early is not an error (and no panic).
    let mut child = Command::new(ductape_bin())
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
}

#[test]
fn errors_suggest_the_fix() {
    let server = Server::dev();
    let o = run(
        &server,
        &["secrets", "create", "STRIPE_API_KEY", "--value", "v"],
        None,
    );
    assert!(o.status.success());
    let o = run(&server, &["secrets", "get", "STRIPE_APIKEY"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("Secret 'STRIPE_APIKEY' not found (did you mean 'STRIPE_API_KEY'?)"),
        "{err}"
    );
    let o = run(&server, &["secrets", "revoke", "stripe_api_key"], None);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("did you mean 'STRIPE_API_KEY'?"),
        "case slips too"
    );
    let o = run(&server, &["secrets", "get", "SOMETHING_ELSE"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not found") && !err.contains("did you mean"),
        "{err}"
    );
    // Connection, URL and key mistakes: errors_name_the_mistake_and_the_fix.
}

#[test]
fn history_get_version_rollback_and_undelete() {
    let server = Server::dev();
    let ok = |o: &Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&run(
        &server,
        &["secrets", "create", "API_TOKEN", "--value", "one"],
        None,
    ));
    for v in ["two", "three"] {
        ok(&run(
            &server,
            &["secrets", "update", "API_TOKEN", "--value", v],
            None,
        ));
    }
    let o = run(
        &server,
        &["secrets", "get", "API_TOKEN", "--version", "1"],
        None,
    );
    ok(&o);
    assert_eq!(stdout(&o), "one\n");
    let o = run(&server, &["secrets", "history", "API_TOKEN"], None);
    ok(&o);
    let lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("3*\t") && lines[0].contains("update (value)"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("1\t") && lines[2].contains("create (value)"),
        "{lines:?}"
    );
    assert!(!stdout(&o).contains("one") && !stdout(&o).contains("three"));
    let o = run(
        &server,
        &["secrets", "rollback", "API_TOKEN", "1", "--if-version", "2"],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("version_conflict"));
    let o = run(&server, &["secrets", "rollback", "API_TOKEN", "1"], None);
    ok(&o);
    assert!(stdout(&o).contains("now version 4"), "{}", stdout(&o));
    assert_eq!(
        stdout(&run(&server, &["secrets", "get", "API_TOKEN"], None)),
        "one\n"
    );
    let o = run(
        &server,
        &["secrets", "history", "API_TOKEN", "--json"],
        None,
    );
    let versions: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(versions[0]["action"], "rollback");
    assert_eq!(versions[0]["rollback_of"], 1);
    ok(&run(&server, &["secrets", "delete", "API_TOKEN"], None));
    assert!(!run(&server, &["secrets", "get", "API_TOKEN"], None)
        .status
        .success());
    ok(&run(&server, &["secrets", "undelete", "API_TOKEN"], None));
    assert_eq!(
        stdout(&run(&server, &["secrets", "get", "API_TOKEN"], None)),
        "one\n"
    );
    ok(&run(
        &server,
        &["secrets", "delete", "API_TOKEN", "--permanent"],
        None,
    ));
    let o = run(&server, &["secrets", "undelete", "API_TOKEN"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in the trash"));
}

/// `ductape run --watch`: the command restarts with the new value when a secret it uses
/// changes (or gets a signal with `--on-change signal:HUP`); other changes leave it be.
#[test]
fn run_watch_restarts_or_signals_the_command_when_its_secret_changes() {
    use std::time::{Duration, Instant};
    let server = Server::dev();
    let ok = |o: &Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&run(
        &server,
        &["secrets", "create", "WATCHED", "--value", "v1"],
        None,
    ));
    ok(&run(
        &server,
        &["secrets", "create", "OTHER", "--value", "o1"],
        None,
    ));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let wait_for = |needle: &str| {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "'{needle}' never came: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let spawn = |extra: &[&str], script: &str| {
        Command::new(ductape_bin())
            .args(["run", "--watch"])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .env("DUCTAPE_URL", &server.url)
            .env("DUCTAPE_ACCESS_KEY", server.access_key.as_deref().unwrap())
            .env("TOKEN", "$Token{WATCHED}")
            .env("OUT", &out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut watcher = spawn(&[], "echo \"start $TOKEN\" >> \"$OUT\"; exec sleep 60");
    wait_for("start v1");
    ok(&run(
        &server,
        &["secrets", "update", "OTHER", "--value", "o2"],
        None,
    ));
    ok(&run(
        &server,
        &["secrets", "update", "WATCHED", "--value", "v2"],
        None,
    ));
    let text = wait_for("start v2");
    assert_eq!(
        text.matches("start").count(),
        2,
        "restarted once, not for OTHER: {text}"
    );
    // SIGTERM to ductape reaches the command; ductape exits with its status.
    send_signal(watcher.id(), "TERM");
    let status = watcher.wait().unwrap();
    assert!(!status.success());

    std::fs::remove_file(&out).unwrap();
    let mut watcher = spawn(
        &["--on-change", "signal:HUP"],
        "trap 'echo hup >> \"$OUT\"' HUP; echo \"start $TOKEN\" >> \"$OUT\"; while true; do sleep 0.1; done",
    );
    wait_for("start v2");
    ok(&run(
        &server,
        &["secrets", "update", "WATCHED", "--value", "v3"],
        None,
    ));
    let text = wait_for("hup");
    assert_eq!(
        text.matches("start").count(),
        1,
        "signalled, not restarted: {text}"
    );
    send_signal(watcher.id(), "KILL");
    let _ = watcher.wait();
    let bad = run(
        &server,
        &["run", "--watch", "--on-change", "signal:NOPE", "--", "true"],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown signal"));
}

fn send_signal(pid: u32, sig: &str) {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn access_keys_delete_by_name_or_id_and_says_which_when_a_name_is_ambiguous() {
    let server = Server::dev();
    let create = |name: &str| {
        let o = run(
            &server,
            &[
                "access-keys",
                "create",
                "--name",
                name,
                "--permissions",
                "read",
                "--json",
            ],
            None,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["info"]["id"]
            .as_str()
            .expect("the new key's id")
            .to_owned()
    };
    create("ci");
    let o = run(&server, &["access-keys", "delete", "ci"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&server, &["access-keys", "delete", "ci"], None);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no access key has the id or name 'ci'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (a, b) = (create("twin"), create("twin"));
    let o = run(&server, &["access-keys", "delete", "twin"], None);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(err.contains(&a) && err.contains(&b), "{err}");
    let o = run(&server, &["access-keys", "delete", &a], None);
    assert!(o.status.success(), "by id");
    let o = run(&server, &["access-keys", "delete", "twin"], None);
    assert!(o.status.success(), "unique again");
}

#[test]
fn expiry_dates_and_durations_clearing_fields_and_values_from_stdin_on_update() {
    let server = Server::dev();
    let json = |o: &Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let created = json(&run(
        &server,
        &[
            "secrets",
            "create",
            "EXP",
            "--value",
            "v1",
            "--description",
            "d",
            "--scope",
            "web",
            "--envs",
            "prd",
            "--expires-at",
            "2099-01-01",
            "--json",
        ],
        None,
    ));
    assert_eq!(
        created["expires_at"], 4070908800i64,
        "a date: its first second, UTC"
    );
    let o = run(
        &server,
        &[
            "secrets",
            "update",
            "EXP",
            "--expires-at",
            "2099-01-01T09:00:00+01:00",
            "--json",
        ],
        None,
    );
    assert_eq!(json(&o)["expires_at"], 4070908800i64 + 8 * 3600);
    let now = ductape::ids::now_secs();
    let o = run(
        &server,
        &["secrets", "update", "EXP", "--expires-at", "90d", "--json"],
        None,
    );
    let at = json(&o)["expires_at"].as_i64().unwrap();
    assert!(
        (at - (now + 90 * 86_400)).abs() < 60,
        "90 days from now: {at}"
    );
    let o = run(
        &server,
        &["secrets", "update", "EXP", "--expires-at", "someday"],
        None,
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("duration from now (90d"));

    // Clearing: description, scope, envs and expiry.
    let o = run(
        &server,
        &[
            "secrets",
            "update",
            "EXP",
            "--clear-description",
            "--clear-scope",
            "--clear-envs",
            "--no-expiry",
            "--json",
        ],
        None,
    );
    let cleared = json(&o);
    assert_eq!(cleared["description"], serde_json::Value::Null);
    assert_eq!(cleared["scope"], serde_json::json!([]));
    assert_eq!(cleared["envs"], serde_json::json!([]));
    assert_eq!(cleared["expires_at"], serde_json::Value::Null);

    // The value from stdin, as create reads it: piped, nothing else to change.
    let o = run(&server, &["secrets", "update", "EXP"], Some("from-stdin\n"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&server, &["secrets", "get", "EXP"], None);
    assert_eq!(stdout(&o), "from-stdin\n");
    // With metadata flags, stdin is left alone unless asked for.
    let o = run(
        &server,
        &["secrets", "update", "EXP", "--envs", "dev"],
        Some("ignored\n"),
    );
    assert!(o.status.success());
    assert_eq!(
        stdout(&run(&server, &["secrets", "get", "EXP"], None)),
        "from-stdin\n"
    );
    let o = run(
        &server,
        &["secrets", "update", "EXP", "--envs", "dev", "--value-stdin"],
        Some("both\n"),
    );
    assert!(o.status.success());
    assert_eq!(
        stdout(&run(&server, &["secrets", "get", "EXP"], None)),
        "both\n"
    );
}

/// Errors that say what to do: each mistake a new user makes, and the message that names it.
#[test]
fn errors_name_the_mistake_and_the_fix() {
    let server = Server::dev();
    let with_url = |url: &str, key: &str, extra: &[&str]| {
        let o = Command::new(ductape_bin())
            .args(["secrets", "list", "--url", url])
            .args(extra)
            .env("DUCTAPE_ACCESS_KEY", key)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{url} should fail");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let key = server.access_key.clone().unwrap();

    // Nothing listening: the root cause and where it looked.
    let err = with_url("http://127.0.0.1:9", &key, &[]);
    assert!(
        err.contains("http://127.0.0.1:9: Connection refused"),
        "{err}"
    );
    assert!(err.contains("is it running there?"), "{err}");
    // The API's path in the URL.
    let err = with_url(&format!("{}/v1", server.url), &key, &[]);
    assert!(err.contains("drop the trailing /v1"), "{err}");
    // No scheme, however it is missing: one message.
    let a = with_url("127.0.0.1:8200", &key, &[]);
    let b = with_url("localhost", &key, &[]);
    assert_eq!(a, b);
    assert!(a.contains("expected http(s)://host[:port]"), "{a}");
    // Something else answering: not a Ductape server.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in other.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            );
        }
    });
    let err = with_url(&other_url, &key, &[]);
    assert!(
        err.contains("does not answer like a Ductape server"),
        "{err}"
    );
    // A key the dev server does not know (one from an earlier start, say).
    let stale = ductape::AccessKey::generate();
    let err = with_url(&server.url, stale.expose().as_str(), &[]);
    assert!(err.contains("this is a --dev server"), "{err}");
    assert!(!err.contains(stale.secret()), "the key never shows");
    // --json: the error as JSON too.
    let err = with_url("http://127.0.0.1:9", &key, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(v["error"]["code"], "connection_error");
}

/// `ductape login` keeps URL and key (here in the 0600 file: DUCTAPE_KEYRING=off) for the
/// commands that follow, sends the key only to the server it was kept for, refuses a file
/// others may read, and `logout` forgets it all.
#[test]
fn login_keeps_the_key_for_its_server_only_and_logout_forgets_it() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::dev();
    let key = server.access_key.clone().unwrap();
    let secret_part = key.split('.').nth(1).unwrap().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let cfg_dir = tmp.path().join("ductape"); // made by login
    let ductape = |args: &[&str], stdin: &str| {
        let mut child = Command::new(ductape_bin())
            .args(args)
            .env_remove("DUCTAPE_URL")
            .env_remove("DUCTAPE_ACCESS_KEY")
            .env("DUCTAPE_CONFIG_DIR", &cfg_dir)
            .env("DUCTAPE_KEYRING", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        let text = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        assert!(!text.contains(&secret_part), "the key never shows: {text}");
        (o.status.success(), text)
    };

    // A key the server refuses is not kept.
    let stranger = ductape::AccessKey::generate();
    let (ok, text) = ductape(&["login", "--url", &server.url], stranger.expose().as_str());
    assert!(!ok && text.contains("invalid access key"), "{text}");
    assert!(!cfg_dir.as_path().join("login.json").exists());

    let (ok, text) = ductape(&["login", "--url", &server.url], &format!("{key}\n"));
    assert!(ok, "{text}");
    assert!(
        text.contains("as 'admin'") && text.contains("credentials"),
        "{text}"
    );
    let credentials = cfg_dir.as_path().join("credentials");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&credentials), 0o600);
    assert_eq!(
        mode(cfg_dir.as_path()) & 0o077,
        0,
        "the directory is private too"
    );
    let login = std::fs::read_to_string(cfg_dir.as_path().join("login.json")).unwrap();
    assert!(login.contains(&server.url) && !login.contains(&secret_part));

    // The commands that follow need no variables.
    let (ok, text) = ductape(&["secrets", "create", "KEPT", "--value", "v"], "");
    assert!(ok, "{text}");
    let (ok, text) = ductape(&["secrets", "get", "KEPT"], "");
    assert!(ok && text == "v\n", "{text}");
    // Another server never gets the kept key.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    other.set_nonblocking(true).unwrap();
    let (ok, text) = ductape(&["secrets", "list", "--url", &other_url], "");
    assert!(!ok && text.contains("no access key"), "{text}");
    assert!(
        other.accept().is_err(),
        "nothing connected to the other server"
    );

    // A credentials file others may read is refused, with the fix.
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, text) = ductape(&["secrets", "list"], "");
    assert!(!ok && text.contains("chmod 600"), "{text}");
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();

    let (ok, text) = ductape(&["logout"], "");
    assert!(ok && text.contains("logged out"), "{text}");
    assert!(!credentials.exists() && !cfg_dir.as_path().join("login.json").exists());
    let (ok, text) = ductape(&["secrets", "list"], "");
    assert!(!ok && text.contains("ductape login"), "{text}");
}
