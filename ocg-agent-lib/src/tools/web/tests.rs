use std::net::{IpAddr, Ipv4Addr};

use super::*;

async fn fetch(tool: &WebFetchTool, url: &str) -> Result<String, AgentError> {
    tool.call(&ToolContext::default(), serde_json::json!({"url": url}))
        .await
}

#[tokio::test]
async fn private_addresses_are_refused_before_connecting() {
    let tool = WebFetchTool::new(&ToolPolicy::default());
    // A listener that would notice a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://[fd00:ec2::254]/".to_owned(),
        "http://10.1.2.3/".to_owned(),
        "http://0x7f000001/".to_owned(),
        "http://2130706433/".to_owned(),
        "http://0/".to_owned(),
    ] {
        let error = fetch(&tool, &url).await.unwrap_err();
        assert_eq!(error.code(), "address_not_allowed", "{url}: {error}");
    }
    assert!(listener.accept().is_err(), "a refused fetch connected");
    let code = |r: Result<String, AgentError>| r.unwrap_err().code();
    assert_eq!(
        code(fetch(&tool, "file:///etc/passwd").await),
        "unsupported_scheme"
    );
    assert_eq!(
        code(fetch(&tool, "ftp://example.com/").await),
        "unsupported_scheme"
    );
    assert_eq!(
        code(fetch(&tool, "http://user:pw@example.com/").await),
        "credentials_in_url"
    );
    assert_eq!(code(fetch(&tool, "not a url").await), "invalid_url");
}

/// A local server with a few routes; returns its base URL.
async fn serve() -> String {
    use axum::http::header;
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/page",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body><h2>Hello</h2><p>from <a href='/other'>here</a></p>\
                     <script>secret()</script></body></html>",
                )
            }),
        )
        .route(
            "/json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"{"a":1}"#) }),
        )
        .route(
            "/binary",
            get(|| async {
                ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 10]).into_response()
            }),
        )
        .route(
            "/big",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "x".repeat(100_000)) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route("/hop", get(|| async { Redirect::temporary("/page") }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/") }),
        )
        .route(
            "/elsewhere",
            get(|| async { Redirect::temporary("http://127.0.0.2:9/") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test]
async fn fetches_converts_and_caps_when_private_is_allowed() {
    let base = serve().await;
    let tool = WebFetchTool::new(&ToolPolicy {
        web_allow_private: true,
        ..ToolPolicy::default()
    })
    .with_timeout(Duration::from_secs(2));
    let page = fetch(&tool, &format!("{base}/page")).await.unwrap();
    assert!(
        page.starts_with(&format!("URL: {base}/page\nstatus: 200 OK\n")),
        "{page}"
    );
    assert!(page.contains("content-type: text/html\n"), "{page}");
    assert!(
        page.ends_with(&format!("## Hello\n\nfrom here ({base}/other)")),
        "{page}"
    );
    assert!(!page.contains("secret"));

    let hop = fetch(&tool, &format!("{base}/hop")).await.unwrap();
    assert!(hop.starts_with(&format!("URL: {base}/page\n")), "{hop}");
    let json = fetch(&tool, &format!("{base}/json")).await.unwrap();
    assert!(json.ends_with("\n\n{\"a\":1}"), "{json}");

    let code = |r: Result<String, AgentError>| r.unwrap_err().code();
    assert_eq!(
        code(fetch(&tool, &format!("{base}/binary")).await),
        "unsupported_content_type"
    );
    assert_eq!(
        code(fetch(&tool, &format!("{base}/loop")).await),
        "too_many_redirects"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        code(fetch(&tool, &format!("{base}/slow")).await),
        "timed_out"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let big = tool
        .call(
            &ToolContext::default(),
            serde_json::json!({"url": format!("{base}/big"), "max_bytes": 1000}),
        )
        .await
        .unwrap();
    assert!(big.contains("[the body was cut at 1000 bytes]"), "{big}");
    assert!(big.ends_with(&format!("\n\n{}", "x".repeat(1000))));
}

#[tokio::test]
async fn every_redirect_hop_is_vetted() {
    let base = serve().await;
    // Only the test server's address is reachable: every other
    // loopback or private address stays refused.
    let mut tool = WebFetchTool::new(&ToolPolicy::default());
    tool.filter = |ip| ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || is_public_address(ip);
    assert!(fetch(&tool, &format!("{base}/page")).await.is_ok());
    for path in ["metadata", "elsewhere"] {
        let error = fetch(&tool, &format!("{base}/{path}")).await.unwrap_err();
        assert_eq!(error.code(), "address_not_allowed", "{path}: {error}");
    }
}
