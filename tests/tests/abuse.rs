//! Slow, lying and abusive clients, and a hung database: the server answers at once where
//! it can, gives up on a client after its deadlines, keeps serving well-behaved clients,
//! and recovers by itself. Every attack here is bounded in count and time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ductape::CreateSecret;
use ductape_e2e::{raw, PgCluster, Server};
use reqwest::Method;

fn addr(server: &Server) -> String {
    server.url.strip_prefix("http://").unwrap().to_owned()
}

/// Writes `head` (and `body`) on a fresh connection and reads what comes back within
/// `wait`.
fn exchange(server: &Server, head: &str, body: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr(server)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).to_string()
}

fn post_head(server: &Server, length: usize, extra: &str) -> String {
    format!(
        "POST /v1/secrets HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n",
        addr(server),
        server.bearer()
    )
}

#[test]
fn a_body_announced_over_the_limit_is_refused_at_once() {
    let server = Server::dev();
    // 8 MiB announced, 64 KiB sent: 413 straight away, not a wait for the rest.
    let started = Instant::now();
    let got = exchange(
        &server,
        &post_head(&server, 8 << 20, ""),
        &vec![b'x'; 64 << 10],
        Duration::from_secs(5),
    );
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("payload_too_large"), "{got}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // With Expect: 100-continue, the refusal comes instead of the invitation.
    let got = exchange(
        &server,
        &post_head(&server, 8 << 20, "Expect: 100-continue\r\n"),
        b"",
        Duration::from_secs(5),
    );
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
}

#[test]
fn a_body_that_stops_arriving_gets_408_after_the_body_deadline() {
    let server = Server::dev_with(&["--body-timeout", "1"]);
    let started = Instant::now();
    let got = exchange(
        &server,
        &post_head(&server, 100, ""),
        b"{\"key\":",
        Duration::from_secs(10),
    );
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request_timeout"), "{got}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn headers_that_never_finish_are_cut_off_after_the_header_deadline() {
    let server = Server::dev_with(&["--header-timeout", "1"]);
    for partial in ["GET /healthz HTTP/1.1\r\nHost: x\r\n", ""] {
        let mut s = TcpStream::connect(addr(&server)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(partial.as_bytes()).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 256];
        // Closed by the server (0 bytes, or an error answer), well before our 10 s.
        let _ = s.read(&mut buf);
        assert!(started.elapsed() < Duration::from_secs(4), "{partial:?}");
    }
}

/// A well-behaved client's round trips, on fresh connections each time.
async fn good_client_latencies(server: &Server, rounds: usize) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let h = client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(h.status(), 200);
        out.push(started.elapsed());
        let started = Instant::now();
        let r = client
            .get(format!("{}/v1/secrets/GOOD", server.url))
            .bearer_auth(server.bearer())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        out.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    out
}

/// Holds `n` connections that send a request head one byte at a time, never finishing,
/// reconnecting when the server closes one, until `until`.
fn slowloris(address: String, n: usize, until: Instant) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let head = b"GET /healthz HTTP/1.1\r\nHost: slow\r\nX-Slow: ";
        let mut conns: Vec<(TcpStream, usize)> = Vec::new();
        let mut opened = 0;
        while Instant::now() < until {
            while conns.len() < n && Instant::now() < until {
                match TcpStream::connect(&address) {
                    Ok(s) => {
                        let _ = s.set_nonblocking(true);
                        conns.push((s, 0));
                        opened += 1;
                    }
                    Err(_) => break,
                }
            }
            // One more byte on each; drop the ones the server closed.
            conns.retain_mut(|(s, sent)| {
                let byte = head.get(*sent).copied().unwrap_or(b'a');
                *sent += 1;
                s.write(&[byte]).is_ok()
            });
            std::thread::sleep(Duration::from_millis(500));
        }
        opened
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_clients_do_not_starve_a_good_one() {
    let server = Server::dev();
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("GOOD", "v"))
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let attack = slowloris(addr(&server), 2000, until);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let latencies = good_client_latencies(&server, 20).await;
    let opened = tokio::task::spawn_blocking(move || attack.join().unwrap())
        .await
        .unwrap();
    assert!(opened >= 2000, "the attack held its connections ({opened})");
    let worst = latencies.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(1), "worst {worst:?}");
}

/// Opens `silent` connections that never send a byte, then checks that a well-behaved
/// client's health checks and secret reads still take under a second each.
async fn a_good_client_gets_in_beside(server: &Server, silent: usize) {
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("GOOD", "v"))
        .await
        .unwrap();
    drop(d);
    let held: Vec<TcpStream> = (0..silent)
        .filter_map(|_| TcpStream::connect(addr(server)).ok())
        .collect();
    assert!(
        held.len() >= silent * 5 / 6,
        "{} connections opened",
        held.len()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let latencies = good_client_latencies(server, 3).await;
    let worst = latencies.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(1), "worst {worst:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_idle_connections_make_room_for_new_ones() {
    // A cap of 50 and a long header deadline: only the eviction of idle connections can
    // let the good client in while 200 silent connections are open.
    let server = Server::dev_with(&["--max-connections", "50", "--header-timeout", "60"]);
    a_good_client_gets_in_beside(&server, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_cap_keeps_the_server_accepting() {
    // 300 descriptors in all: the default cap leaves headroom under them, so 600 silent
    // connections never exhaust the server's descriptors and a good client still gets in.
    let server = Server::dev_with_fd_limit(&["--header-timeout", "60"], 300);
    a_good_client_gets_in_beside(&server, 600).await;
    assert!(
        !server.logs().contains("Too many open files"),
        "{}",
        server.logs()
    );
}

#[test]
fn requests_hyper_cannot_parse_still_get_the_json_error_shape() {
    let server = Server::dev();
    let long_path = format!(
        "GET /v1/secrets/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "A".repeat(100_000)
    );
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1_000_000)
    );
    for (request, status, code) in [
        (long_path.as_str(), 414, "uri_too_long"),
        (huge_header.as_str(), 431, "headers_too_large"),
        ("NONSENSE\r\n\r\n", 400, "malformed_body"),
    ] {
        let got = exchange(&server, request, b"", Duration::from_secs(5));
        assert!(got.starts_with(&format!("HTTP/1.1 {status} ")), "{got}");
        let body = got.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(ductape_e2e::assert_error_shape(status, &v), code);
    }
}

#[tokio::test]
async fn liveness_and_readiness_are_separate_probes() {
    let server = Server::dev();
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let (code, body) = raw(
            Method::GET,
            &format!("{}{path}", server.url),
            None,
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "{path}");
        assert_eq!(body["status"], status);
        assert_eq!(body["initialized"], true, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_gives_503_with_retry_after_and_the_server_recovers() {
    let pg = PgCluster::start();
    let url = pg.database("hung");
    let mut server = Server::postgres(&url);
    server.setup().await;
    let d = server.client().await;
    d.secrets()
        .create(CreateSecret::new("K", "v"))
        .await
        .unwrap();
    let get = format!("{}/v1/secrets/K", server.url);
    let ready = format!("{}/readyz", server.url);
    let (status, _) = raw(Method::GET, &ready, None, None, None).await;
    assert_eq!(status, 200);

    pg.freeze();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let resp = client
        .get(&get)
        .bearer_auth(server.bearer())
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(took < Duration::from_secs(7), "{took:?}");
    // Readiness says so within its own short deadline; liveness is not the database's.
    let started = Instant::now();
    let (status, _) = raw(Method::GET, &ready, None, None, None).await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(4));
    let (status, body) = raw(
        Method::GET,
        &format!("{}/healthz", server.url),
        None,
        None,
        None,
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client
            .get(&get)
            .bearer_auth(server.bearer())
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = raw(Method::GET, &ready, None, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(d.secrets().fetch("K").await.unwrap().value.expose(), "v");
    assert!(server.stop().success());
}

#[tokio::test]
async fn default_logs_have_no_line_per_request_and_never_a_query_string() {
    let canary = "QUERY_CANARY_8e21f";
    // Default level: lifecycle and writes, nothing per request.
    let mut quiet = Server::dev_logging(&[], None);
    let d = quiet.client().await;
    d.secrets()
        .create(CreateSecret::new("LOGGED", "v"))
        .await
        .unwrap();
    for _ in 0..10 {
        d.secrets().fetch("LOGGED").await.unwrap();
    }
    let (status, body) = raw(
        Method::GET,
        &format!("{}/v1/secrets?token={canary}", quiet.url),
        Some(&quiet.bearer()),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    assert!(quiet.stop().success());
    let logs = quiet.logs();
    assert!(logs.contains("secret created"), "{logs}");
    assert!(!logs.contains("/v1/secrets/LOGGED"), "{logs}");
    assert!(!logs.contains(canary), "{logs}");
    assert!(!logs.contains("DEBUG"), "{logs}");

    // Even at DEBUG, request spans carry the path and never the query.
    let mut chatty = Server::dev_logging(&[], Some("debug"));
    raw(
        Method::GET,
        &format!("{}/v1/audit?secret_key={canary}", chatty.url),
        Some(&chatty.bearer()),
        None,
        None,
    )
    .await;
    assert!(chatty.stop().success());
    let logs = chatty.logs();
    assert!(logs.contains("/v1/audit"), "{logs}");
    assert!(!logs.contains(canary), "{logs}");

    // JSON lines for log shippers.
    let mut json = Server::dev_logging(&["--log-format", "json"], None);
    json.client()
        .await
        .secrets()
        .create(CreateSecret::new("J", "v"))
        .await
        .unwrap();
    assert!(json.stop().success());
    let logs = json.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 2, "{logs}");
    for l in lines {
        serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line");
    }
}
