//! Log set-up for the proxy: JSON lines by default (one access-log line per request, target
//! `access`), human-readable text with `--log-format text`. Pingora's own `log` records are
//! bridged into the same subscriber.
//!
//! Lines are formatted on the request path but written off it: a bounded queue feeds a writer
//! thread that batches them into few `write` calls on stderr (`tracing-appender`'s
//! non-blocking writer over a buffered stderr). When the queue is full (stderr slower than the
//! requests), a line is dropped rather than the request kept waiting, and counted
//! (`edge_log_lines_dropped_total`).
//!
//! The access log's JSON line is written by [`super::access`] straight into the same queue;
//! every other event goes through tracing-subscriber's JSON formatter (flattened fields).

use std::io::BufWriter;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines the queue holds before it drops.
const QUEUE_LINES: usize = 64 * 1024;

/// Bytes the writer thread gathers before a `write` (it also writes whenever the queue empties).
const WRITE_BUFFER: usize = 64 * 1024;

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped because the queue was full, since start.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Keeps the writer thread; dropping it writes out what is queued. Hold it until exit.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("edge-proxy-log")
        .finish(BufWriter::with_capacity(WRITE_BUFFER, std::io::stderr()));
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    match result {
        Ok(()) => {
            if format == LogFormat::Json {
                super::access::install(writer);
            }
            LogGuard {
                _writer: Some(guard),
            }
        }
        Err(error) => {
            eprintln!("logging was already initialised: {error}");
            LogGuard { _writer: None }
        }
    }
}
