//! The downstream connection loop, wrapped around Pingora's HTTP/1 proxy app so that what
//! happens *before* a request reaches our filters is ours too:
//!
//! - **Head deadline (slowloris).** Pingora only bounds each read of a request head (60 s per
//!   read), so a client dripping a byte a minute holds a connection for ever. Here the first
//!   head on a connection must arrive whole within `server.head-timeout-ms` of the accept, and
//!   each later one within that time of its first byte; past that the client gets a JSON 408
//!   and the connection is closed. A new connection that sends nothing at all is closed
//!   silently (as HAProxy and nginx do); an idle keep-alive connection waits
//!   `server.keepalive-idle-seconds` (Pingora's 60 s by default) for its next request.
//! - **JSON for unparseable requests.** Requests that are not valid HTTP (conflicting
//!   `Content-Length`, a CR in a header, HTTP/0.9, …) and `CONNECT` are refused by Pingora
//!   itself with an empty-bodied 400/405, before any [`ProxyHttp`](pingora::proxy::ProxyHttp)
//!   hook runs. Until a request is *admitted* (our `early_request_filter` ran), anything
//!   Pingora writes on the connection is such a refusal, so [`GuardedStream`] writes the same
//!   status in our JSON error shape instead.
//! - **A panic costs one request.** Anything on the request path that panics (a filter, Pingora
//!   itself) is caught here: the client gets a JSON 500 if no response had begun, the panic is
//!   logged and counted (`edge_panics_total`), the connection is closed, the process goes on.
//!
//! The admission signal travels from the proxy's filter to this loop through a task-local: the
//! filter runs inside the future this loop polls, on the same task.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures_util::FutureExt;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::error::ProxyError;
use crate::ops::metrics::{Metrics, RefusedHead};
use crate::ops::trace::RequestId;

/// How long writing a 408 to a client that has stopped sending may take.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

tokio::task_local! {
    static CURRENT: Arc<Gate>;
}

/// Marks the request being processed on this task as admitted: its head was read and parsed
/// and our filters now own its responses. Called by the proxy's first filter; a no-op outside
/// [`EdgeApp`] (HTTP/2 streams, tests that drive Pingora directly).
pub fn admit() {
    let _ = CURRENT.try_with(|gate| gate.set(GateState::Admitted));
}

/// Where the current request on a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum GateState {
    /// Its head is being read; nothing of it is ours yet.
    Waiting = 0,
    /// Our filters own it (and its responses).
    Admitted = 1,
    /// The head deadline passed before it was admitted.
    Expired = 2,
    /// Pingora refused the head itself; [`GuardedStream`] wrote our JSON form of its refusal.
    Refused = 3,
    /// Something on the request path panicked.
    Panicked = 4,
}

impl GateState {
    fn from_u8(value: u8) -> GateState {
        match value {
            1 => GateState::Admitted,
            2 => GateState::Expired,
            3 => GateState::Refused,
            4 => GateState::Panicked,
            _ => GateState::Waiting,
        }
    }
}

/// Per-connection state shared by the loop, the stream and the proxy's filter.
struct Gate {
    state: AtomicU8,
    /// Bytes of the current request's head have been read (the deadline is running).
    started: AtomicBool,
    /// Bytes of a response to the current request have been written.
    responded: AtomicBool,
    /// Where the stream parks itself when dropped after the head deadline or a panic, so the
    /// loop can still write the 408 or 500 on it.
    parked: Mutex<Option<Stream>>,
}

impl Gate {
    fn get(&self) -> GateState {
        GateState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set(&self, state: GateState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Starts a new request: not admitted, no byte of its head read yet.
    fn reset(&self) {
        self.set(GateState::Waiting);
        self.started.store(false, Ordering::Release);
        self.responded.store(false, Ordering::Release);
    }
}

/// Resolves when the head deadline passes with the request still waiting. The clock starts at
/// `from_now` (a new connection) or else at the first byte of the head. That byte is read by
/// the request future polled just before this one, on the same task, in the same wake-up, so
/// no waker is needed to notice it; no timer exists while a keep-alive connection idles.
struct HeadDeadline<'a> {
    gate: &'a Gate,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HeadDeadline<'_> {
    fn new(gate: &Gate, timeout: Duration, from_now: bool) -> HeadDeadline<'_> {
        let mut deadline = HeadDeadline {
            gate,
            timeout,
            sleep: None,
        };
        if from_now {
            deadline.arm();
        }
        deadline
    }

    fn arm(&mut self) {
        self.sleep = Some(Box::pin(tokio::time::sleep(self.timeout)));
    }
}

impl Future for HeadDeadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.get() != GateState::Waiting {
            return Poll::Pending;
        }
        if self.sleep.is_none() {
            if !self.gate.started.load(Ordering::Acquire) {
                return Poll::Pending;
            }
            self.arm();
        }
        match self.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

/// Resolves when a connection has waited `server.keepalive-idle-seconds` for its next request
/// without a byte of it arriving. One timer per connection, moved forward for each wait: tokio
/// extends a pending timer in place when its deadline only grows, where Pingora's keep-alive
/// timeout times each read of the wait with a timer of its own, registered and dropped for
/// every request. Like [`HeadDeadline`], it is polled after the request future, so it sees
/// that future's reads of this wake-up.
struct IdleDeadline<'a> {
    gate: &'a Gate,
    sleep: Pin<&'a mut tokio::time::Sleep>,
}

impl Future for IdleDeadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.gate.get() != GateState::Waiting || self.gate.started.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// The connection's stream. Passes everything through once the current request is admitted;
/// before that, replaces whatever Pingora writes (its own bare refusal) with the JSON form of
/// the same status.
pub struct GuardedStream {
    inner: Option<Stream>,
    gate: Arc<Gate>,
    /// The JSON refusal being written, and how much of it is out.
    refusal: Option<(Vec<u8>, usize)>,
}

/// The wrapped stream; only [`GuardedStream`]'s drop takes it out.
fn present(inner: &mut Option<Stream>) -> &mut Stream {
    inner
        .as_mut()
        .unwrap_or_else(|| unreachable!("the stream is only taken on drop"))
}

impl GuardedStream {
    fn io(&mut self) -> &mut Stream {
        present(&mut self.inner)
    }

    fn io_ref(&self) -> &Stream {
        self.inner
            .as_ref()
            .unwrap_or_else(|| unreachable!("the stream is only taken on drop"))
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        // A panic drops the request's state, this stream with it, while it unwinds.
        if std::thread::panicking() || self.gate.get() == GateState::Expired {
            if let Ok(mut parked) = self.gate.parked.lock() {
                *parked = self.inner.take();
            }
        }
    }
}

impl fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The status of the response Pingora started writing, from its status line.
fn written_status(buf: &[u8]) -> Option<u16> {
    let line = buf.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// Our JSON answer for a refusal Pingora makes before admission.
fn refusal_for(status: Option<u16>) -> ProxyError {
    match status {
        Some(405) => ProxyError::MethodNotAllowed,
        _ => ProxyError::BadRequest("the request is not valid HTTP/1.1"),
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.gate.get() == GateState::Admitted {
            let written = Pin::new(self.io()).poll_write(cx, buf);
            if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                self.gate.responded.store(true, Ordering::Release);
            }
            return written;
        }
        let this = &mut *self;
        let gate = &this.gate;
        let (bytes, written) = this.refusal.get_or_insert_with(|| {
            gate.set(GateState::Refused);
            let error = refusal_for(written_status(buf));
            let id = RequestId::new();
            tracing::info!(
                target: "access",
                request_id = %id,
                status = error.status(),
                route = "-",
                error = "refused before routing: not valid HTTP/1.1 or CONNECT",
                "request"
            );
            (error.raw_response(id.as_str()), 0)
        });
        let inner = present(&mut this.inner);
        while *written < bytes.len() {
            match Pin::new(&mut *inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Pingora's own bytes (its header, then its body) are swallowed.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.gate.get() == GateState::Admitted {
            let written = Pin::new(self.io()).poll_write_vectored(cx, bufs);
            if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
                self.gate.responded.store(true, Ordering::Release);
            }
            return written;
        }
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        self.io_ref().is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.io()).poll_shutdown(cx)
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(self.io()).poll_read(cx, buf);
        if buf.filled().len() > before && self.gate.get() == GateState::Waiting {
            self.gate.started.store(true, Ordering::Release);
        }
        read
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut **self.io()).await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.io_ref().id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.io_ref().get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.io_ref().get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.io_ref().selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io_ref().get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.io_ref().get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.io_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io_ref().get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io().set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io_ref().get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.io().set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.io().try_peek(buf).await
    }
}

/// Pingora's HTTP/1 app (the proxy) behind the head deadline and the admission gate.
pub struct EdgeApp<A> {
    inner: Arc<A>,
    head_timeout: Duration,
    /// How long an idle keep-alive connection waits for its next request.
    keepalive_idle: Duration,
    /// Once shutdown begins (SIGTERM, or SIGQUIT for a graceful upgrade), how long idle
    /// keep-alive connections are still read: a request arriving on one is answered with
    /// `Connection: close` instead of meeting a closed socket.
    drain: Duration,
    metrics: Arc<Metrics>,
}

impl<A> EdgeApp<A> {
    pub fn new(inner: A, head_timeout: Duration, metrics: Arc<Metrics>) -> EdgeApp<A> {
        EdgeApp {
            inner: Arc::new(inner),
            head_timeout,
            keepalive_idle: Duration::from_secs(60),
            drain: Duration::ZERO,
            metrics,
        }
    }

    /// With a drain period at shutdown (see [`EdgeApp`]'s `drain`).
    pub fn with_drain(mut self, drain: Duration) -> EdgeApp<A> {
        self.drain = drain;
        self
    }

    /// With another idle keep-alive timeout than Pingora's 60 s.
    pub fn with_keepalive_idle(mut self, idle: Duration) -> EdgeApp<A> {
        self.keepalive_idle = idle;
        self
    }
}

#[async_trait]
impl<A> ServerApp for EdgeApp<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        super::timer_floor::keep();
        let h2c = self.inner.server_options().is_some_and(|o| o.h2c);
        if h2c || stream.get_ssl_digest().is_some() {
            // HTTP/2 and TLS keep Pingora's own loop (neither is configured today).
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let gate = Arc::new(Gate {
            state: AtomicU8::new(GateState::Waiting as u8),
            started: AtomicBool::new(false),
            responded: AtomicBool::new(false),
            parked: Mutex::new(None),
        });
        let mut stream: Stream = Box::new(GuardedStream {
            inner: Some(stream),
            gate: Arc::clone(&gate),
            refusal: None,
        });
        let mut settings = None;
        let mut first = true;
        let mut idle = Box::pin(tokio::time::sleep(self.keepalive_idle));
        loop {
            gate.reset();
            if !first {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + self.keepalive_idle);
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(settings) => {
                    pingora::apps::HttpPersistentSettings::apply_to_session(settings, &mut session)
                }
                None => session.set_keepalive_reuses_remaining(
                    self.inner
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                ),
            }
            // Keep-alive without Pingora's timeout on the reads of the wait: the wait for the
            // next head is timed here ([`IdleDeadline`]). As Pingora's own loop does: no
            // keep-alive once shutdown has begun.
            session.set_keepalive((!*shutdown.borrow()).then_some(0));
            let outcome = {
                let request = CURRENT.scope(
                    Arc::clone(&gate),
                    AssertUnwindSafe(self.inner.process_new_http(session, shutdown)).catch_unwind(),
                );
                tokio::pin!(request);
                let deadline = HeadDeadline::new(&gate, self.head_timeout, first);
                let idle = IdleDeadline {
                    gate: &gate,
                    sleep: idle.as_mut(),
                };
                tokio::select! {
                    // The request first: the deadline looks at what its reads saw.
                    biased;
                    reused = &mut request => match reused {
                        Ok(reused) => Outcome::Done(reused),
                        Err(panic) => {
                            // The stream parked itself when the panic dropped it.
                            gate.set(GateState::Panicked);
                            Outcome::Panicked(panic)
                        }
                    },
                    () = deadline => {
                        // Dropping the request below drops the stream, which parks itself.
                        gate.set(GateState::Expired);
                        Outcome::TooSlow
                    }
                    // Closed without an answer, as Pingora's keep-alive timeout does.
                    () = idle => Outcome::Idle,
                }
            };
            let reused = match outcome {
                Outcome::Done(reused) => reused,
                Outcome::Idle => return None,
                Outcome::TooSlow => {
                    self.refuse_slow_head(&gate).await;
                    return None;
                }
                Outcome::Panicked(panic) => {
                    let message = panic_message(panic.as_ref());
                    drop(panic);
                    self.answer_panic(&gate, message).await;
                    return None;
                }
            };
            if gate.get() == GateState::Refused {
                self.metrics.refused_head(RefusedHead::Malformed);
            }
            let (next, next_settings) = reused?.consume();
            stream = next;
            settings = next_settings;
            first = false;
        }
    }

    async fn cleanup(&self) {
        // Pingora calls this once the listener has stopped accepting and the shutdown flag is
        // up: from then on every request read gets `Connection: close`. Its own cleanup drops
        // the connections idling in a read at once, so a client that was just sending on one
        // would lose that request (the keep-alive race); a drain period first lets those
        // requests be answered and their clients move to the new process.
        tokio::time::sleep(self.drain).await;
        self.inner.http_cleanup().await;
    }
}

/// What a panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_string())
}

/// How one request on a connection ended.
enum Outcome {
    /// Pingora finished it; the stream comes back if the connection may be reused.
    Done(Option<pingora::apps::ReusedHttpStream>),
    /// Its head did not arrive in time.
    TooSlow,
    /// The connection waited longer than the keep-alive idle timeout for it.
    Idle,
    /// Something on its path panicked.
    Panicked(Box<dyn std::any::Any + Send>),
}

impl<A> EdgeApp<A> {
    /// A panic on the request path costs this request, not the process: a JSON 500 if no
    /// response has begun, logged and counted, then the connection is closed.
    async fn answer_panic(&self, gate: &Gate, message: String) {
        self.metrics.panicked();
        let id = RequestId::new();
        tracing::error!(target: "access", request_id = %id, status = 500u16, route = "-", error = "panic on the request path", panic = %message, "request");
        let parked = gate.parked.lock().ok().and_then(|mut p| p.take());
        let Some(mut stream) = parked else { return };
        if !gate.responded.load(Ordering::Acquire) {
            let response = ProxyError::Internal.raw_response(id.as_str());
            let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
                stream.write_all(&response).await?;
                stream.flush().await
            })
            .await;
        }
        Shutdown::shutdown(&mut *stream).await;
    }

    /// The head did not arrive in time: a JSON 408, then close. A client that sent nothing
    /// at all is closed without an answer.
    async fn refuse_slow_head(&self, gate: &Gate) {
        let parked = gate.parked.lock().ok().and_then(|mut p| p.take());
        let Some(mut stream) = parked else { return };
        if !gate.started.load(Ordering::Acquire) {
            return;
        }
        self.metrics.refused_head(RefusedHead::Timeout);
        let id = RequestId::new();
        tracing::info!(
            target: "access",
            request_id = %id,
            status = 408u16,
            route = "-",
            error = "request head not received in time",
            "request"
        );
        let response = ProxyError::RequestTimeout.raw_response(id.as_str());
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(&response).await?;
            stream.flush().await
        })
        .await;
        Shutdown::shutdown(&mut *stream).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_pingora_wrote() {
        assert_eq!(
            written_status(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            written_status(b"HTTP/1.0 405 Method Not Allowed"),
            Some(405)
        );
        assert_eq!(written_status(b"garbage"), None);
        assert_eq!(written_status(b"HTTP/1.1 4"), None);
    }

    #[test]
    fn refusals_keep_the_status() {
        assert_eq!(refusal_for(Some(400)).status(), 400);
        assert_eq!(refusal_for(Some(405)).status(), 405);
        assert_eq!(refusal_for(None).status(), 400);
    }
}
