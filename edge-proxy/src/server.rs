//! The composition root: builds the Pingora server from a validated [`Config`] (the proxy
//! service behind the downstream loop, the admin listener, discovery, health checks and JWKS
//! refresh as background services) and runs it until a shutdown signal. Tests call [`build`]
//! and run the server on a thread with their own shutdown signal.

use std::path::PathBuf;
use std::sync::Arc;

use pingora::listeners::ListenerConfig;
use pingora::server::ShutdownWatch;
use pingora::server::{RunArgs, Server};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::ServiceReadyNotifier;
use tokio::signal::unix::{signal, SignalKind};

use pingora::services::listening::Service;

use crate::admission::global::TokenStore;
use crate::admission::jwks::{self, JwksRefresher};
use crate::config::Config;
use crate::error::Error;
use crate::ops::admin::{AdminApp, CacheAdmin, ConfigReload};
use crate::ops::clock::{Clock, SystemClock};
use crate::ops::metrics::Metrics;
use crate::ops::otlp;
use crate::ops::trace::Tracer;
use crate::proxy::cache::{self, CacheAdminHandle, EdgeCache};
use crate::proxy::downstream::EdgeApp;
use crate::proxy::reload::Reloader;
use crate::proxy::{EdgeProxy, ProxyState, StateDeps};
use crate::upstream::discovery::DiscoveryService;
use crate::upstream::health::HealthService;
use crate::upstream::pool::ServicePool;
use crate::upstream::registry::{DynamoRegistry, RegistrySource};
use crate::upstream::resolve::{Resolver, SystemResolver};
use crate::upstream::sigv4::Signer;
use crate::upstream::Pools;

/// What a running proxy exposes to its admin listener and to tests.
#[derive(Clone)]
pub struct ProxyHandle {
    pub metrics: Arc<Metrics>,
    pub pools: Pools,
    /// Trace export (tests flush it).
    pub tracer: Tracer,
}

impl ProxyHandle {
    /// The current pool of a service.
    pub fn pool(&self, service: &str) -> Option<Arc<ServicePool>> {
        self.pools.get(service)
    }
}

/// A ready-to-run server: the proxy on `config.server.listen`, discovery, health checks.
/// `registry` overrides the registry source (tests); otherwise the configured table is used.
pub fn build(
    config: &Config,
    registry: Option<Arc<dyn RegistrySource>>,
) -> Result<(Server, ProxyHandle), Error> {
    build_with(
        config,
        Overrides {
            registry,
            ..Overrides::default()
        },
    )
}

/// The Pingora settings the proxy runs with, each measured on its own with `bench/tune.sh`
/// (README, "Benchmarks"). `examples/bare_pingora.rs` runs with the same, so the bare row is
/// Pingora as tuned as the edge proxy.
pub mod tuning {
    use pingora::listeners::L4BufferSettings;
    use pingora::server::configuration::ServerConf;

    /// Pingora settings that can matter on the request path.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Tuning {
        /// Tokio work stealing between a service's threads.
        pub work_stealing: bool,
        /// Accept tasks per listening socket.
        pub listener_tasks: usize,
        /// Idle upstream connections kept per worker.
        pub keepalive_pool: usize,
        /// Downstream read buffer, bytes (0 = unbuffered).
        pub read_buffer: usize,
        /// Downstream write buffer, bytes (0 = unbuffered).
        pub write_buffer: usize,
        /// Timeouts longer than this many whole seconds use tokio's timer rather than
        /// Pingora's fast timer (`None`: never).
        pub tokio_timeouts_above_seconds: Option<u64>,
    }

    impl Default for Tuning {
        fn default() -> Tuning {
            let pingora = ServerConf::default();
            let buffers = L4BufferSettings::default();
            Tuning {
                // Off: each worker thread runs its own connections start to end. With one
                // thread per service (the benchmark) stealing only adds cross-thread wake-ups:
                // +15 % req/s on bare Pingora and on the edge proxy (bench/results/tuning.md).
                work_stealing: false,
                listener_tasks: pingora.listener_tasks_per_fd,
                keepalive_pool: pingora.upstream_keepalive_pool_size,
                read_buffer: buffers.read_capacity(),
                write_buffer: buffers.write_capacity(),
                // Tokio's timer for every timeout of a second or more (Pingora: above 15
                // minutes). The upstream read timeout on Pingora's fast timer costs two
                // boxes, a lock, a `Notify` and a clock-thread check per proxied request: on
                // tokio's, 94,638 -> 93,111 user-space instructions per request routing only
                // (bench/results/instructions-timer-floor-vs-03cfb08.md). Inserting a timer
                // earlier than the one the runtime last parked for wakes the runtime's
                // driver, a `write` to its eventfd (6.14 syscalls per request against 5.11);
                // `proxy::timer_floor` keeps a timer due within half a second on every worker,
                // so a timeout of a second or more never is (5.12 -> 5.10 syscalls).
                tokio_timeouts_above_seconds: Some(0),
            }
        }
    }

    impl Tuning {
        /// The defaults with any `PINGORA_WORK_STEALING` (0/1), `PINGORA_LISTENER_TASKS`,
        /// `PINGORA_KEEPALIVE_POOL`, `PINGORA_READ_BUFFER`, `PINGORA_WRITE_BUFFER` or
        /// `PINGORA_TOKIO_TIMEOUTS_ABOVE` (seconds, or `never`) set in the environment
        /// applied: for the benchmark's experiments only (the `edge-proxy` binary never reads
        /// them).
        pub fn from_env() -> Result<Tuning, String> {
            fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, String> {
                match std::env::var(name) {
                    Ok(value) => value
                        .parse()
                        .map(Some)
                        .map_err(|_| format!("{name}={value} is not valid")),
                    Err(_) => Ok(None),
                }
            }
            let mut tuning = Tuning::default();
            if let Some(on) = var::<u8>("PINGORA_WORK_STEALING")? {
                tuning.work_stealing = on == 1;
            }
            if let Some(tasks) = var("PINGORA_LISTENER_TASKS")? {
                tuning.listener_tasks = tasks;
            }
            if let Some(pool) = var("PINGORA_KEEPALIVE_POOL")? {
                tuning.keepalive_pool = pool;
            }
            if let Some(read) = var("PINGORA_READ_BUFFER")? {
                tuning.read_buffer = read;
            }
            if let Some(write) = var("PINGORA_WRITE_BUFFER")? {
                tuning.write_buffer = write;
            }
            if let Some(above) = var::<String>("PINGORA_TOKIO_TIMEOUTS_ABOVE")? {
                tuning.tokio_timeouts_above_seconds = match above.as_str() {
                    "never" => None,
                    seconds => Some(seconds.parse().map_err(|_| {
                        format!("PINGORA_TOKIO_TIMEOUTS_ABOVE={seconds} is not valid")
                    })?),
                };
            }
            Ok(tuning)
        }

        /// Pingora's server configuration for `threads` worker threads.
        pub fn server_conf(&self, threads: usize) -> ServerConf {
            ServerConf {
                threads,
                work_stealing: self.work_stealing,
                listener_tasks_per_fd: self.listener_tasks,
                upstream_keepalive_pool_size: self.keepalive_pool,
                fast_timeout_to_tokio_threshold_seconds: self.tokio_timeouts_above_seconds,
                ..ServerConf::default()
            }
        }

        /// The downstream listener's socket buffers.
        pub fn l4_buffers(&self) -> L4BufferSettings {
            L4BufferSettings::new(self.read_buffer, self.write_buffer)
        }
    }
}

/// Replacements for the proxy's AWS dependencies, for tests.
#[derive(Default)]
pub struct Overrides {
    /// Registry source instead of the configured table.
    pub registry: Option<Arc<dyn RegistrySource>>,
    /// Signer (with its credentials) instead of the default AWS provider chain.
    pub signer: Option<Arc<Signer>>,
    /// Resolver for instance hosts instead of the system's.
    pub resolver: Option<Arc<dyn Resolver>>,
    /// Clock for rate limits instead of the system's.
    pub clock: Option<Arc<dyn Clock>>,
    /// Pingora settings instead of [`tuning::Tuning::default`] (benchmark experiments).
    pub tuning: Option<tuning::Tuning>,
    /// Store of global rate limits instead of Redis at `[redis].url`.
    pub limit_store: Option<Arc<dyn TokenStore>>,
    /// The file a reload (`SIGHUP`, `POST /reload`) reads; `None`: no reload.
    pub reload_from: Option<PathBuf>,
    /// Graceful upgrade: where the listening sockets are handed over.
    pub upgrade: Option<Upgrade>,
}

/// Pingora's graceful upgrade: a new process started with `take_over` receives the listening
/// sockets from the running one over `socket` when that one gets `SIGQUIT`, so no connection
/// attempt is refused while the binary is replaced.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub socket: PathBuf,
    /// This process takes the sockets over from a running one.
    pub take_over: bool,
}

/// [`build`] with any of the AWS dependencies replaced.
pub fn build_with(config: &Config, overrides: Overrides) -> Result<(Server, ProxyHandle), Error> {
    let registry = overrides.registry;
    let tuning = overrides.tuning.unwrap_or_default();
    let mut conf = tuning.server_conf(config.server.threads);
    conf.grace_period_seconds = Some(config.server.grace_period_seconds);
    conf.graceful_shutdown_timeout_seconds = Some(config.server.graceful_shutdown_timeout_seconds);
    if let Some(upgrade) = &overrides.upgrade {
        conf.upgrade_sock = upgrade.socket.display().to_string();
    }
    let opt = overrides
        .upgrade
        .as_ref()
        .map(|upgrade| pingora::server::configuration::Opt {
            upgrade: upgrade.take_over,
            ..Default::default()
        });
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let metrics = Arc::new(Metrics::new());
    let clock = overrides
        .clock
        .unwrap_or_else(|| Arc::new(SystemClock) as Arc<dyn Clock>);
    let deps = StateDeps {
        metrics: Arc::clone(&metrics),
        clock: Arc::clone(&clock),
        limit_store: overrides.limit_store,
    };
    let state = ProxyState::build(config, None, &deps)?;
    let auth = Arc::clone(state.auth());
    let file_keys = match &config.auth.jwks_file {
        Some(path) => jwks::load_file(path, config.auth.jwks_limits)?,
        None => Vec::new(),
    };
    auth.jwks.replace(file_keys.clone());
    if let Some(url) = &config.auth.jwks_url {
        // Every later state shares this state's key cell, so one refresher serves them all.
        let refresher = JwksRefresher::new(
            auth,
            url.clone(),
            file_keys,
            config.auth.jwks_refresh,
            config.auth.jwks_limits,
            Arc::clone(&metrics),
        )?;
        server.add_service(background_service("jwks", refresher));
    }
    let signer = match overrides.signer {
        Some(signer) => Some(signer),
        None if config.services.values().any(|s| s.aws_iam) => {
            Some(Arc::new(block_on(Signer::from_env())?))
        }
        None => None,
    };
    let pools = Pools::new(state.pools());
    // Built even with no cached route, so a reload can turn caching on for one.
    let cache = EdgeCache::new(&config.cache);
    cache.configure(cache::budgets(&config.routes));
    let traces = &config.tracing;
    let tracer = match otlp::endpoint(traces.endpoint.as_deref(), |name| std::env::var(name).ok()) {
        Some(endpoint) => {
            let settings = otlp::Settings {
                sample_ratio: traces.sample_ratio,
                service_name: traces.service_name.clone(),
                queue_size: traces.queue_size,
                export_timeout: traces.export_timeout,
            };
            let provider = otlp::provider(&settings, &endpoint, metrics.span_counters())
                .map_err(Error::TraceExport)?;
            tracing::info!(?endpoint, "exporting traces over OTLP/HTTP");
            let tracer = Tracer::exporting(provider);
            server.add_service(background_service(
                "trace export",
                TraceExport(tracer.clone()),
            ));
            tracer
        }
        None => Tracer::off(),
    };
    let proxy = EdgeProxy::new(
        state,
        config.rate_limit_cells,
        Arc::clone(&metrics),
        signer.clone(),
        clock,
    )
    .with_tracer(tracer.clone())
    .with_cache(cache);
    let reloader = overrides.reload_from.map(|path| {
        Arc::new(Reloader::new(
            path,
            proxy.state(),
            pools.clone(),
            deps,
            signer.is_some(),
            Some(cache),
        ))
    });
    // The listeners open only once SIGHUP is handled: a hang-up sent as soon as the port
    // answers must reload, not end the process (the signal's default action).
    let hangup_handled = reloader.as_ref().map(|reloader| {
        server.add_service(background_service(
            "config reload on SIGHUP",
            ReloadOnHangup(Arc::clone(reloader)),
        ))
    });

    let registry = match (registry, &config.registry) {
        (Some(registry), _) => Some(registry),
        (None, Some(registry_config)) => {
            let registry = block_on(DynamoRegistry::from_env(registry_config.table.clone()))?;
            Some(Arc::new(registry) as Arc<dyn RegistrySource>)
        }
        (None, None) => None,
    };
    let interval = config
        .registry
        .as_ref()
        .map_or(std::time::Duration::from_secs(5), |r| r.poll_interval);
    let resolver = overrides
        .resolver
        .unwrap_or_else(|| Arc::new(SystemResolver) as Arc<dyn Resolver>);
    let discovery = DiscoveryService::new(
        pools.clone(),
        registry,
        resolver,
        interval,
        config.dns,
        Arc::clone(&metrics),
    );
    // The static instances' hosts, before the first request (the registry's come with the
    // first poll).
    block_on(discovery.resolve_due(std::time::Instant::now()))?;
    server.add_service(background_service("discovery", discovery));
    server.add_service(background_service(
        "health checks",
        HealthService::new(pools.clone(), Arc::clone(&metrics), signer),
    ));

    let proxy = pingora::proxy::http_proxy(&server.configuration, proxy);
    let app = EdgeApp::new(proxy, config.server.head_timeout, Arc::clone(&metrics))
        .with_keepalive_idle(config.server.keepalive_idle)
        .with_drain(drain_period(
            config.server.graceful_shutdown_timeout_seconds,
        ));
    let mut service = Service::new("edge proxy".to_string(), app);
    service.add_listener(
        ListenerConfig::tcp(config.server.listen.to_string()).l4_buffer(tuning.l4_buffers()),
    );
    let proxy_service = server.add_service(service);
    if let Some(hangup_handled) = &hangup_handled {
        proxy_service.add_dependency(hangup_handled);
    }
    let handle = ProxyHandle {
        metrics,
        pools,
        tracer,
    };
    if let Some(admin_listen) = config.server.admin_listen {
        let mut admin = Service::new(
            "admin".to_string(),
            AdminApp {
                metrics: Arc::clone(&handle.metrics),
                upstreams: Arc::new(handle.pools.clone()),
                reload: reloader.map(|r| r as Arc<dyn ConfigReload>),
                cache: Some(Arc::new(CacheAdminHandle(cache)) as Arc<dyn CacheAdmin>),
                token_sha256: config.server.admin_token_sha256,
            },
        );
        admin.add_tcp(&admin_listen.to_string());
        let admin = server.add_service(admin);
        if let Some(hangup_handled) = &hangup_handled {
            admin.add_dependency(hangup_handled);
        }
    }
    Ok((server, handle))
}

/// How long idle keep-alive connections are still served at shutdown: half the grace period,
/// at most a second. Pingora keeps the runtimes running for `grace-period-seconds` after
/// shutdown begins and then drops every task, so the rest of the grace period is for requests
/// in flight; with a grace period of 0 nothing drains.
fn drain_period(grace_period_seconds: u64) -> std::time::Duration {
    (std::time::Duration::from_secs(grace_period_seconds) / 2)
        .min(std::time::Duration::from_secs(1))
}

/// At shutdown, exports the spans still queued (the batch processor would drop them).
struct TraceExport(Tracer);

#[async_trait::async_trait]
impl BackgroundService for TraceExport {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        let tracer = self.0.clone();
        // Blocking: the export thread posts what is left.
        let _ = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
    }
}

/// `SIGHUP` reloads the config, as `POST /reload` on the admin listener does.
struct ReloadOnHangup(Arc<Reloader>);

#[async_trait::async_trait]
impl BackgroundService for ReloadOnHangup {
    /// Ready (the listeners may open) once the handler is installed, or has failed to be.
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let hangups = signal(SignalKind::hangup());
        ready.notify_ready();
        let mut hangups = match hangups {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP; POST /reload still reloads");
                return;
            }
        };
        loop {
            tokio::select! {
                Some(()) = hangups.recv() => {
                    // Outcome logged and counted by the reloader.
                    let _ = self.0.reload();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Runs start-up work that needs a runtime (credentials, the registry client, the first
/// resolution of static instances) to completion, on a thread of its own so that it works
/// whether or not the caller is inside a runtime (tests are).
fn block_on<F>(work: F) -> Result<F::Output, Error>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| Error::Os {
                        what: "start a runtime",
                        source,
                    })?;
                Ok(runtime.block_on(work))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs until `run_args.shutdown_signal` fires (SIGTERM/SIGINT by default).
pub fn run(config: &Config, overrides: Overrides, run_args: RunArgs) -> Result<(), Error> {
    let (server, _handle) = build_with(config, overrides)?;
    server.run(run_args);
    Ok(())
}
