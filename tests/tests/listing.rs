//! Listing at scale: pages with a stable cursor, the whole listing streamed as one array,
//! `fetch_all` paging through transparently, and bound keys seeing only their secrets on
//! every page.

use ductape::wire::Permission;
use ductape::{AccessKeyOptions, CreateSecret};
use ductape_e2e::{listed_keys, paged_keys, raw, Server};
use reqwest::Method;

const N: usize = 2500;

async fn seeded(server: &Server) -> ductape::Ductape {
    let d = server.client().await;
    for i in 0..N {
        let app = if i % 3 == 0 { "appA" } else { "appB" };
        d.secrets()
            .create(CreateSecret::new(format!("S{i:05}"), "v").scope([app]))
            .await
            .unwrap();
    }
    d
}

#[tokio::test]
async fn listings_page_with_a_cursor_and_stream_whole() {
    let server = Server::dev();
    let d = seeded(&server).await;
    let expected: Vec<String> = (0..N).map(|i| format!("S{i:05}")).collect();

    // fetch_all pages through transparently.
    assert_eq!(listed_keys(&d).await, expected);

    // Page by page: 1000, 1000, 500, then no cursor.
    let (sizes, paged) = paged_keys(&d, 1000).await;
    assert_eq!(sizes, [1000, 1000, 500]);
    assert_eq!(paged, expected);

    // Without parameters: one array (streamed), the same secrets in the same order.
    let (status, body) = raw(
        Method::GET,
        &format!("{}/v1/secrets", server.url),
        Some(&server.bearer()),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let streamed: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, expected);

    // Bad paging asks are refused with the query error.
    for q in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=no%20such%20key!",
        "offset=5",
    ] {
        let (status, body) = raw(
            Method::GET,
            &format!("{}/v1/secrets?{q}", server.url),
            Some(&server.bearer()),
            None,
            None,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{q}"
        );
    }
}

#[tokio::test]
async fn a_bound_key_sees_only_its_secrets_on_every_page_and_in_the_stream() {
    let server = Server::dev();
    let d = seeded(&server).await;
    let mut o = AccessKeyOptions::new("a", [Permission::List]);
    o.app = Some("appA".into());
    let key = d.access_keys().create(o).await.unwrap();
    let a = server.client_with(&key.key.expose()).await;
    let expected: Vec<String> = (0..N)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("S{i:05}"))
        .collect();
    assert_eq!(listed_keys(&a).await, expected);
    let (status, body) = raw(
        Method::GET,
        &format!("{}/v1/secrets", server.url),
        Some(&key.key.bearer()),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), expected.len());
    assert!(body
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["scope"][0] == "appA"));
}
