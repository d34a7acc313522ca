//! Test harness: tiny keep-alive HTTP stub upstreams on port 0, and the proxy run in-process
//! on a thread with its own shutdown signal (never `run_forever`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use edge_proxy::config::Config;
use edge_proxy::server::tuning::Tuning;
use edge_proxy::server::{build_with, Overrides, ProxyHandle};
use edge_proxy::upstream::registry::RegistrySource;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a stub answers non-health requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Ok,
    Status(u16),
    /// This status with a `Retry-After: 1` header.
    StatusRetryAfter(u16),
    Delay(Duration),
    /// Checks the SigV4 signature against these test credentials (access key, secret) and
    /// region; 403 when it is missing or wrong, as a Lambda function URL would.
    VerifySigV4(&'static str, &'static str, &'static str),
    /// Serves requests, but fails its health checks (503).
    FailHealth,
    /// 200 with this `Cache-Control` (and `ETag: "v1"`) after this delay; the body counts the
    /// requests served (`"n":N`), so a stale copy shows.
    Cached(&'static str, Duration),
}

/// A stub upstream that can be stopped (port closed) and started again on the same port.
pub struct Stub {
    pub name: &'static str,
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    /// The head (request line and headers) of the last non-health request.
    pub last_head: Arc<Mutex<String>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Stub {
    pub async fn start(name: &'static str, behaviour: Behaviour) -> Arc<Stub> {
        Stub::start_at(name, behaviour, "127.0.0.1:0").await
    }

    /// A stub on a given address (another loopback address, a given port).
    pub async fn start_at(name: &'static str, behaviour: Behaviour, address: &str) -> Arc<Stub> {
        let listener = TcpListener::bind(address).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // A stopped stub listens on its port again later: keep it from free_port meanwhile.
        GIVEN.lock().unwrap().push(port);
        let stub = Arc::new(Stub {
            name,
            port,
            requests: Arc::new(AtomicUsize::new(0)),
            last_head: Arc::new(Mutex::new(String::new())),
            behaviour: Arc::new(Mutex::new(behaviour)),
            task: Mutex::new(None),
        });
        stub.serve(listener);
        stub
    }

    fn serve(&self, listener: TcpListener) {
        let (name, requests, behaviour) = (
            self.name,
            Arc::clone(&self.requests),
            Arc::clone(&self.behaviour),
        );
        let last_head = Arc::clone(&self.last_head);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(handle(
                    stream,
                    name,
                    Arc::clone(&requests),
                    Arc::clone(&behaviour),
                    Arc::clone(&last_head),
                ));
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Closes the port and every open connection.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The last request head, lower-cased.
    pub fn head(&self) -> String {
        self.last_head.lock().unwrap().to_ascii_lowercase()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/svc", self.port)
    }
}

async fn handle(
    mut stream: TcpStream,
    name: &'static str,
    requests: Arc<AtomicUsize>,
    behaviour: Arc<Mutex<Behaviour>>,
    last_head: Arc<Mutex<String>>,
) {
    let mut buffer = Vec::new();
    loop {
        // Read one request head (and skip its body).
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let content_length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        while buffer.len() < head_end + content_length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[head_end..head_end + content_length].to_vec();
        buffer.drain(..head_end + content_length);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut extra = "";
        let extra_owned: String;
        let mut cached = None;
        let current = *behaviour.lock().unwrap();
        let status = if path.ends_with("/health") {
            match current {
                // A function URL checks the signature of every request, health checks too.
                Behaviour::VerifySigV4(access_key, secret, region) => {
                    if signature_ok(&head, &body, access_key, secret, region) {
                        200
                    } else {
                        403
                    }
                }
                Behaviour::FailHealth => 503,
                _ => 200,
            }
        } else {
            *last_head.lock().unwrap() = head.clone();
            requests.fetch_add(1, Ordering::SeqCst);
            match current {
                Behaviour::Ok => 200,
                Behaviour::Status(status) => status,
                Behaviour::StatusRetryAfter(status) => {
                    extra = "retry-after: 1\r\n";
                    status
                }
                Behaviour::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    200
                }
                Behaviour::VerifySigV4(access_key, secret, region) => {
                    if signature_ok(&head, &body, access_key, secret, region) {
                        200
                    } else {
                        403
                    }
                }
                Behaviour::FailHealth => 200,
                Behaviour::Cached(control, delay) => {
                    tokio::time::sleep(delay).await;
                    cached = Some(control);
                    200
                }
            }
        };
        let body = match cached {
            Some(control) => {
                extra_owned = format!("cache-control: {control}\r\netag: \"v1\"\r\n");
                extra = &extra_owned;
                let n = requests.load(Ordering::SeqCst);
                format!(r#"{{"instance":"{name}","path":"{path}","n":{n}}}"#)
            }
            None => format!(r#"{{"instance":"{name}","path":"{path}"}}"#),
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

struct TestSignal(Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        let receiver = self.0.lock().unwrap().take();
        if let Some(receiver) = receiver {
            let _ = receiver.await;
        }
        ShutdownSignal::FastShutdown
    }
}

/// A proxy running on a thread; stopped when dropped.
pub struct RunningProxy {
    pub base: String,
    pub handle: ProxyHandle,
    /// `http://` and the admin listener's address.
    pub admin: String,
    _server: RunningServer,
}

/// Ports this process has given to a proxy or a stub.
static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port nothing listens on, never handed out twice in this process: the port is released
/// before the proxy binds it, so two tests starting at once could otherwise be given the same
/// one, and one test's requests would reach the other's proxy (or admin listener).
/// The `key-sha256` a config names an API key by.
pub fn key_sha256(key: &str) -> String {
    hex::encode(edge_proxy::admission::auth::hash_key(key))
}

pub fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Starts the proxy from config text in which `{port}` is replaced by a free port.
pub async fn start_proxy(
    config_text: &str,
    registry: Option<Arc<dyn RegistrySource>>,
) -> RunningProxy {
    start_proxy_with(
        config_text,
        Overrides {
            registry,
            ..Overrides::default()
        },
    )
    .await
}

/// [`start_proxy`] with AWS dependencies replaced.
///
/// The proxy runs with work stealing on, unlike the binary: these tests start many Pingora
/// servers one after another in one process, and Pingora's no-steal runtime can hand a new
/// server's thread the runtime of a stopped one whose thread id it reuses
/// (cloudflare/pingora#981), so the server never listens. The end-to-end suite runs the
/// binary, with the binary's settings.
pub async fn start_proxy_with(config_text: &str, mut overrides: Overrides) -> RunningProxy {
    overrides.tuning.get_or_insert(Tuning {
        work_stealing: true,
        ..Tuning::default()
    });
    let port = free_port();
    let mut text = config_text.replace("{port}", &port.to_string());
    if !text.contains("admin-listen") {
        text = text.replacen(
            "[server]",
            &format!("[server]\nadmin-listen = \"127.0.0.1:{}\"", free_port()),
            1,
        );
    }
    let config = Config::parse(&text).unwrap();
    let (server, handle) = build_with(&config, overrides).unwrap();
    let running = run_server(server, port).await;
    RunningProxy {
        base: running.base.clone(),
        admin: config
            .server
            .admin_listen
            .map_or_else(String::new, |a| format!("http://{a}")),
        handle,
        _server: running,
    }
}

/// A Pingora server running on a thread; stopped when dropped.
pub struct RunningServer {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs `server` (listening on `port`) on a thread with its own shutdown signal, once its
/// port accepts connections.
pub async fn run_server(server: pingora::server::Server, port: u16) -> RunningServer {
    let (stop, receiver) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(TestSignal(Mutex::new(Some(receiver)))),
        });
    });
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    RunningServer {
        base: format!("http://127.0.0.1:{port}"),
        stop: Some(stop),
        thread: Some(thread),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `condition` every 50 ms for up to `limit`; returns whether it became true.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

/// Checks the signature as a function URL would (`function_url::verify`, independent of the
/// proxy's signing code).
fn signature_ok(head: &str, body: &[u8], access_key: &str, secret: &str, region: &str) -> bool {
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (
        request_line.next().unwrap_or(""),
        request_line.next().unwrap_or("/"),
    );
    let mut headers = http::HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let expected = function_url::verify::Expected {
        access_key: access_key.to_string(),
        secret_key: secret.to_string(),
        session_token: None,
        region: region.to_string(),
        host,
    };
    function_url::verify::verify(
        method,
        target,
        &headers,
        body,
        &expected,
        std::time::SystemTime::now(),
    )
    .is_ok()
}

/// Serves `status`, `headers` and `body` to every request until the task is aborted.
pub async fn serve_response(
    status: u16,
    headers: &[(&str, &str)],
    body: String,
) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (extra, body) = (extra.clone(), body.clone());
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, task)
}

/// Serves `body` as JSON to every request until the task is aborted.
pub async fn serve_json(body: String) -> (u16, JoinHandle<()>) {
    serve_response(200, &[], body).await
}
