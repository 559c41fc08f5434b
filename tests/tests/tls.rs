//! HTTPS: the server terminates TLS itself; clients trust a private CA when told to.

use ductape::{Config, CreateSecret, Ductape, ErrorCode};
use ductape_e2e::{ductape_bin, Server};

struct Certs {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    pem: String,
}

fn self_signed() -> Certs {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let pem = ck.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Certs {
        _dir: dir,
        cert,
        key,
        pem,
    }
}

#[tokio::test]
async fn the_documented_flow_over_https_with_a_private_ca() {
    let certs = self_signed();
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::persistent_with(
        data.path(),
        &[
            "--tls-cert",
            certs.cert.to_str().unwrap(),
            "--tls-key",
            certs.key.to_str().unwrap(),
        ],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    // `ductape init` trusts the CA named by DUCTAPE_CA_CERT.
    let out = std::process::Command::new(ductape_bin())
        .args([
            "init",
            "--url",
            &server.url,
            "--token",
            server.setup_token.as_deref().unwrap(),
        ])
        .env("DUCTAPE_CA_CERT", &certs.cert)
        .env_remove("DUCTAPE_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("DUCTAPE_ACCESS_KEY=")
        .to_owned();
    server.access_key = Some(key.clone());

    let d =
        Ductape::new(Config::new(&server.url, key.parse().unwrap()).ca_cert_pem(certs.pem.clone()))
            .unwrap();
    d.init().await.unwrap();
    d.secrets()
        .create(CreateSecret::new("TLS_KEY", "over-tls"))
        .await
        .unwrap();
    assert_eq!(
        d.secrets().fetch("TLS_KEY").await.unwrap().value.expose(),
        "over-tls"
    );

    // Without the CA the certificate is not trusted: a connection error, not a silent downgrade.
    let untrusting =
        Ductape::new(Config::new(&server.url, key.parse().unwrap()).max_retries(0)).unwrap();
    let e = untrusting.init().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Connection);
    // Plain HTTP to the TLS port gets nowhere either.
    let plain = server.url.replace("https://", "http://");
    let e = Ductape::new(Config::new(&plain, key.parse().unwrap()).max_retries(0))
        .unwrap()
        .init()
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            ErrorCode::Connection | ErrorCode::Protocol | ErrorCode::MalformedBody
        ),
        "{e:?}"
    );
    // Let the dropped clients close their pooled connections before the (blocking) stop.
    drop((d, untrusting));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let start = std::time::Instant::now();
    assert!(server.stop().success(), "graceful shutdown over TLS");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}
