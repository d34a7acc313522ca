//! What happens before a request is routed: the head deadline (slowloris) and the JSON form of
//! the refusals Pingora makes itself, over raw TCP against an in-process proxy.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{start_proxy, Behaviour, RunningProxy, Stub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD_TIMEOUT_MS: u64 = 800;

fn config(upstream: &str) -> String {
    format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0
        graceful-shutdown-timeout-seconds = 1
        head-timeout-ms = {HEAD_TIMEOUT_MS}
        client-timeout-ms = 5000

        [services.svc]
        instances = ["{upstream}"]
        read-timeout-ms = 5000

        [services.svc.health-check]
        enabled = false

        [[routes]]
        prefix = "/api"
        service = "svc"
        strip-prefix = "/api"
        "#
    )
}

async fn setup(behaviour: Behaviour) -> (std::sync::Arc<Stub>, RunningProxy) {
    let stub = Stub::start("svc", behaviour).await;
    let proxy = start_proxy(&config(&stub.url()), None).await;
    (stub, proxy)
}

async fn connect(proxy: &RunningProxy) -> TcpStream {
    TcpStream::connect(proxy.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the proxy closes the connection (bounded, so a hang fails the test).
async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .expect("the proxy kept the connection open")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response with a `content-length` body off a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buffer.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]);
                return (status, body.into_owned());
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .expect("no response")
            .unwrap();
        assert!(n > 0, "closed before a whole response");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Status and JSON error code of a whole response text.
fn status_and_code(text: &str) -> (u16, String) {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let status = head[9..12].parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    let code = json["error"]["code"].as_str().unwrap().to_string();
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    (status, code)
}

fn refused(proxy: &RunningProxy, reason: &str) -> bool {
    proxy.handle.metrics.render().contains(&format!(
        "edge_refused_heads_total{{reason=\"{reason}\"}} 1"
    ))
}

#[tokio::test]
async fn a_head_sent_byte_by_byte_is_cut_off_with_408() {
    let (stub, proxy) = setup(Behaviour::Ok).await;
    let mut stream = connect(&proxy).await;
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // Each byte comes well within Pingora's per-read timeout; the head as a whole never does.
    let drip = async {
        for byte in
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if stream.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the proxy let the slow head go on for 7 s");
    };
    drip.await;
    let text = read_all(&mut stream).await;
    assert_eq!(status_and_code(&text), (408, "request_timeout".into()));
    assert!(text.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(stub.count(), 0, "a partial head reached the upstream");
    assert!(
        refused(&proxy, "timeout"),
        "{}",
        proxy.handle.metrics.render()
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let (_stub, proxy) = setup(Behaviour::Ok).await;
    let mut stream = connect(&proxy).await;
    assert_eq!(
        read_all(&mut stream).await,
        "",
        "nothing is written to a silent client"
    );
}

#[tokio::test]
async fn the_deadline_covers_only_the_head() {
    // A slow upstream, a body sent after a pause, and an idle keep-alive gap: each longer than
    // the head timeout, none of them refused.
    let (stub, proxy) = setup(Behaviour::Delay(Duration::from_millis(2 * HEAD_TIMEOUT_MS))).await;
    let mut stream = connect(&proxy).await;
    stream
        .write_all(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2 * HEAD_TIMEOUT_MS)).await;
    stream.write_all(b"{}").await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);

    stub.set(Behaviour::Ok);
    tokio::time::sleep(Duration::from_millis(2 * HEAD_TIMEOUT_MS)).await;
    stream
        .write_all(b"GET /api/y HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // And the deadline starts again for the next head on the same connection.
    stream.write_all(b"GET /api/z HTTP/1.1\r\n").await.unwrap();
    let text = read_all(&mut stream).await;
    assert_eq!(status_and_code(&text).0, 408);
    assert_eq!(stub.count(), 2);
}

#[tokio::test]
async fn requests_pingora_refuses_get_json_errors() {
    let (stub, proxy) = setup(Behaviour::Ok).await;
    let cases: &[(&str, &[u8], u16, &str)] = &[
        (
            "conflicting content-length",
            b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
            400,
            "bad_request",
        ),
        (
            "CR inside a header value",
            b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "garbage request line",
            b"\x01\x02 nonsense\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "unknown version",
            b"GET /api/x HTTP/7.3\r\nHost: a\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "CONNECT",
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
            405,
            "method_not_allowed",
        ),
    ];
    for (name, request, status, code) in cases {
        let mut stream = connect(&proxy).await;
        stream.write_all(request).await.unwrap();
        let text = read_all(&mut stream).await;
        assert_eq!(
            status_and_code(&text),
            (*status, code.to_string()),
            "{name}: {text:?}"
        );
        assert!(
            text.to_ascii_lowercase().contains("x-request-id: "),
            "{name}"
        );
    }
    assert_eq!(stub.count(), 0);
    // The proxy still serves well-formed requests.
    let mut stream = connect(&proxy).await;
    stream
        .write_all(b"GET /api/ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_all(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(proxy
        .handle
        .metrics
        .render()
        .contains("edge_refused_heads_total{reason=\"malformed\"} 5"));
}

#[tokio::test]
async fn many_slow_clients_neither_starve_others_nor_stay() {
    let (stub, proxy) = setup(Behaviour::Ok).await;
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = connect(&proxy).await;
        stream
            .write_all(b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // A well-behaved client is served while they hang.
    let mut stream = connect(&proxy).await;
    stream
        .write_all(b"GET /api/ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_all(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Every slow one is answered 408 and closed.
    let mut answers = tokio::task::JoinSet::new();
    for mut stream in slow {
        answers.spawn(async move { read_all(&mut stream).await });
    }
    while let Some(text) = answers.join_next().await {
        assert_eq!(status_and_code(&text.unwrap()).0, 408);
    }
    assert_eq!(stub.count(), 1);
    assert!(proxy
        .handle
        .metrics
        .render()
        .contains("edge_refused_heads_total{reason=\"timeout\"} 100"));
}

#[tokio::test]
async fn a_proxying_failure_says_connection_close_before_closing() {
    // The proxy does not reuse a client connection after a failed proxy attempt; a client
    // that was not told would send its next request into a closing socket.
    let (stub, proxy) = setup(Behaviour::Ok).await;
    stub.stop();
    let mut stream = connect(&proxy).await;
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(&mut stream).await;
    let (status, code) = status_and_code(&text);
    assert_eq!((status, code.as_str()), (502, "bad_gateway"), "{text}");
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.contains("\r\nconnection: close"), "{head}");
}

#[tokio::test]
async fn the_proxys_own_refusals_keep_the_connection() {
    let (_stub, proxy) = setup(Behaviour::Ok).await;
    let mut stream = connect(&proxy).await;
    stream
        .write_all(b"GET /nowhere HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.0, 404);
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
}

/// A proxy whose keep-alive connections may idle for one second, in front of `stub`.
async fn with_one_second_idle(stub: &Stub) -> RunningProxy {
    let text = config(&stub.url()).replace(
        "client-timeout-ms = 5000",
        "client-timeout-ms = 5000\n        keepalive-idle-seconds = 1",
    );
    assert!(text.contains("keepalive-idle-seconds = 1"));
    start_proxy(&text, None).await
}

#[tokio::test]
async fn each_request_starts_the_idle_timeout_again() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = with_one_second_idle(&stub).await;
    let mut stream = connect(&proxy).await;
    // Three requests 700 ms apart: the connection lives longer than the idle timeout, but
    // never waits that long for a request.
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        stream
            .write_all(b"GET /api/x HTTP/1.1\r\nhost: edge\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200, "request {i}");
    }
    assert_eq!(stub.count(), 3);
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_after_its_timeout() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let proxy = with_one_second_idle(&stub).await;
    let mut stream = connect(&proxy).await;
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // Kept alive for the next request within the idle timeout...
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nhost: edge\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    // ...and closed, with nothing written, once idle longer than it.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection stayed open");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}
