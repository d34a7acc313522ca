//! Config changes without dropping a connection: a reload (`POST /reload`, `SIGHUP`) under
//! continuous load that adds a route and rotates an API key loses no request; a broken file or
//! a restart-only change is refused and changes nothing; a graceful upgrade of the binary
//! (`--upgrade` and `SIGQUIT`) loses no request.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_proxy::config::Config;
use edge_proxy::server::tuning::Tuning;
use edge_proxy::server::{build_with, Overrides};
use support::{client, free_port, key_sha256, run_server, Behaviour, RunningServer, Stub};

/// Consumer `ci` holds `old-key`; `extra` adds `new-key` for the same consumer (the rotation's
/// overlap) and may add a route.
fn config(port: u16, admin: u16, upstream: &str, keys: &[&str], extra_route: bool) -> String {
    let keys: String = keys
        .iter()
        .map(|key| {
            format!(
                "[[auth.api-keys]]\nconsumer = \"ci\"\nkey-sha256 = \"{}\"\nscopes = []\n",
                key_sha256(key)
            )
        })
        .collect();
    let route = if extra_route {
        "[[routes]]\nprefix = \"/api/b\"\nservice = \"svc\"\nstrip-prefix = \"/api\"\nauth = \"api-key\"\n"
    } else {
        ""
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
admin-listen = "127.0.0.1:{admin}"
threads = 1
grace-period-seconds = 2
graceful-shutdown-timeout-seconds = 1

[auth]
{keys}
[services.svc]
instances = ["{upstream}"]
[services.svc.health-check]
enabled = false

[[routes]]
prefix = "/api/a"
service = "svc"
strip-prefix = "/api"
auth = "api-key"
{route}"#
    )
}

/// The proxy in-process, started from a file that a reload re-reads.
struct Reloadable {
    base: String,
    admin: String,
    path: PathBuf,
    handle: edge_proxy::server::ProxyHandle,
    _server: RunningServer,
    _dir: TempDir,
}

async fn start(upstream: &str) -> (Reloadable, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let dir = TempDir::new();
    let path = dir.0.join("proxy.toml");
    std::fs::write(&path, config(port, admin, upstream, &["old-key"], false)).unwrap();
    let overrides = Overrides {
        reload_from: Some(path.clone()),
        // Many servers in one test process: see support::start_proxy_with.
        tuning: Some(Tuning {
            work_stealing: true,
            ..Tuning::default()
        }),
        ..Overrides::default()
    };
    let (server, handle) = build_with(&Config::load(&path).unwrap(), overrides).unwrap();
    let running = run_server(server, port).await;
    (
        Reloadable {
            base: running.base.clone(),
            admin: format!("http://127.0.0.1:{admin}"),
            path,
            handle,
            _server: running,
            _dir: dir,
        },
        port,
        admin,
    )
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "edge-reload-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn get(base: &str, path: &str, key: &str) -> u16 {
    client()
        .get(format!("{base}{path}"))
        .header("x-api-key", key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn reload(admin: &str) -> (u16, serde_json::Value) {
    let response = client()
        .post(format!("{admin}/reload"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Clients sending GET `/api/a` back to back with whichever key `key` holds, on keep-alive
/// connections, until stopped; every outcome that is not a 200 is kept.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str, key: Arc<Mutex<&'static str>>, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (base, key, stop, sent, failures) = (
                    base.to_string(),
                    Arc::clone(&key),
                    Arc::clone(&stop),
                    Arc::clone(&sent),
                    Arc::clone(&failures),
                );
                tokio::spawn(async move {
                    let http = client();
                    while !stop.load(Ordering::SeqCst) {
                        let key = *key.lock().unwrap();
                        let outcome = http
                            .get(format!("{base}/api/a/items"))
                            .header("x-api-key", key)
                            .send()
                            .await;
                        sent.fetch_add(1, Ordering::SeqCst);
                        match outcome {
                            Ok(response) if response.status() == 200 => {}
                            Ok(response) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", response.status())),
                            Err(error) => failures.lock().unwrap().push(format!("{error:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failures,
            tasks,
        }
    }

    /// Stops and returns (requests sent, failures).
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.sent.load(Ordering::SeqCst), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_under_load_adds_a_route_and_rotates_a_key_losing_nothing() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let (proxy, port, admin) = start(&stub.url()).await;
    assert_eq!(get(&proxy.base, "/api/b/x", "old-key").await, 404);
    let pool_before = proxy.handle.pool("svc").unwrap();

    let key = Arc::new(Mutex::new("old-key"));
    let load = Load::start(&proxy.base, Arc::clone(&key), 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Overlap: both keys, and a new route.
    let both = config(port, admin, &stub.url(), &["old-key", "new-key"], true);
    std::fs::write(&proxy.path, both).unwrap();
    let (status, body) = reload(&proxy.admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "applied");
    assert_eq!(
        body["pools_kept"], 1,
        "the unchanged service keeps its pool"
    );
    assert_eq!(get(&proxy.base, "/api/b/x", "new-key").await, 200);
    assert_eq!(get(&proxy.base, "/api/a/x", "old-key").await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Clients move to the new key; then the old one goes.
    *key.lock().unwrap() = "new-key";
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotated = config(port, admin, &stub.url(), &["new-key"], true);
    std::fs::write(&proxy.path, rotated).unwrap();
    assert_eq!(reload(&proxy.admin).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (sent, failures) = load.finish().await;
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(get(&proxy.base, "/api/a/x", "old-key").await, 401);
    assert_eq!(get(&proxy.base, "/api/a/x", "new-key").await, 200);
    // Breakers, in-flight counts and health of the service are the same objects.
    assert!(Arc::ptr_eq(
        &pool_before,
        &proxy.handle.pool("svc").unwrap()
    ));
    let metrics = proxy.handle.metrics.render();
    assert!(
        metrics.contains("edge_config_reloads_total{outcome=\"applied\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_broken_or_restart_only_config_is_refused_and_changes_nothing() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let (proxy, port, admin) = start(&stub.url()).await;
    let good = std::fs::read_to_string(&proxy.path).unwrap();

    let cases = [
        ("not toml [[[".to_string(), "line 1"),
        (
            good.replace("prefix = \"/api/a\"", "prefix = \"api/a\""),
            "routes[0].prefix",
        ),
        (
            config(free_port(), admin, &stub.url(), &["new-key"], true),
            "server.listen",
        ),
    ];
    for (text, field) in &cases {
        std::fs::write(&proxy.path, text).unwrap();
        let (status, body) = reload(&proxy.admin).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "config_refused");
        assert_eq!(body["error"]["field"], *field, "{body}");
        // The running config stays: old key, no new route.
        assert_eq!(get(&proxy.base, "/api/a/x", "old-key").await, 200);
        assert_eq!(get(&proxy.base, "/api/b/x", "new-key").await, 404);
    }
    let metrics = proxy.handle.metrics.render();
    assert!(
        metrics.contains("edge_config_reloads_total{outcome=\"refused\"} 3"),
        "{metrics}"
    );
    // GET is not a reload.
    let wrong = client()
        .get(format!("{}/reload", proxy.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    let _ = port;
}

/// A child process killed when dropped (a failing test leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `edge-proxy` binary, run with its `--upgrade-socket` in `dir`.
fn spawn_binary(config: &Path, dir: &Path, upgrade: bool) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-proxy"));
    command
        .args(["--log-format", "text", "run", "--config"])
        .arg(config)
        .arg("--upgrade-socket")
        .arg(dir.join("upgrade.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if upgrade {
        command.arg("--upgrade");
    }
    Running(command.spawn().unwrap())
}

fn signal(child: &Running, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_for(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Whether GET `path` with `key` is answered 200 within `seconds`.
async fn answers(base: &str, path: &str, key: &str, seconds: u64) -> bool {
    wait_for(Duration::from_secs(seconds), async || {
        get(base, path, key).await == 200
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_reloads_on_sighup_and_upgrades_gracefully_losing_nothing() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let (port, admin) = (free_port(), free_port());
    let dir = TempDir::new();
    let path = dir.0.join("proxy.toml");
    std::fs::write(&path, config(port, admin, &stub.url(), &["old-key"], false)).unwrap();
    let mut old = spawn_binary(&path, &dir.0, false);
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        answers(&base, "/api/a/x", "old-key", 20).await,
        "the proxy binary did not start"
    );

    // SIGHUP: the new route and key apply.
    std::fs::write(
        &path,
        config(port, admin, &stub.url(), &["old-key", "new-key"], true),
    )
    .unwrap();
    signal(&old, "HUP");
    assert!(
        answers(&base, "/api/b/x", "new-key", 5).await,
        "SIGHUP did not reload"
    );

    // Graceful upgrade under load: the new process takes the sockets, the old one finishes.
    let key = Arc::new(Mutex::new("old-key"));
    let load = Load::start(&base, key, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _new = spawn_binary(&path, &dir.0, true);
    let socket = dir.0.join("upgrade.sock");
    assert!(
        wait_for(Duration::from_secs(10), async || socket.exists()).await,
        "the new process is not waiting for the sockets"
    );
    signal(&old, "QUIT");
    let exited = wait_for(Duration::from_secs(15), async || {
        matches!(old.0.try_wait(), Ok(Some(_)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, failures) = load.finish().await;
    assert!(exited, "the old process did not exit after handing over");
    assert!(sent > 100, "the load ran ({sent} requests)");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // The new process serves, with the config file as it now is.
    assert_eq!(get(&base, "/api/b/x", "new-key").await, 200);
}

/// A hang-up sent the moment the port accepts reloads; it never ends the process (the signal's
/// default action, had the listeners opened before the handler was installed). Racy by nature:
/// without the ordering, one of the first few starts dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_as_soon_as_the_port_accepts_never_kills_the_binary() {
    let stub = Stub::start("svc", Behaviour::Ok).await;
    let dir = TempDir::new();
    let path = dir.0.join("proxy.toml");
    for attempt in 0..20 {
        let (port, admin) = (free_port(), free_port());
        std::fs::write(&path, config(port, admin, &stub.url(), &["key"], false)).unwrap();
        let mut proxy = spawn_binary(&path, &dir.0, false);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy binary did not start"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        // Sent directly: spawning kill(1) would give the process a millisecond to finish starting.
        let pid = nix::unistd::Pid::from_raw(i32::try_from(proxy.0.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            proxy.0.try_wait().unwrap().is_none(),
            "start {attempt}: SIGHUP ended the process"
        );
    }
}
