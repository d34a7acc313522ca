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
//! The access log's JSON line is written by [`AccessJson`], not by tracing-subscriber's JSON
//! formatter, which first copies every field into a map of owned JSON values (a dozen
//! allocations per request); other events keep the standard formatter. The line's shape is the
//! same (a test compares the two).

use std::fmt::{self, Write as _};
use std::io::BufWriter;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
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
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .event_format(AccessJson::default())
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    match result {
        Ok(()) => LogGuard {
            _writer: Some(guard),
        },
        Err(error) => {
            eprintln!("logging was already initialised: {error}");
            LogGuard { _writer: None }
        }
    }
}

/// JSON lines: the access log (target `access`) written field by field straight into the
/// line; every other event through tracing-subscriber's JSON formatter (flattened fields).
pub struct AccessJson {
    standard: Format<Json, SystemTime>,
}

impl Default for AccessJson {
    fn default() -> Self {
        AccessJson {
            standard: tracing_subscriber::fmt::format().json().flatten_event(true),
        }
    }
}

impl<S, N> FormatEvent<S, N> for AccessJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != "access" {
            return self.standard.format_event(ctx, writer, event);
        }
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, std::time::SystemTime::now())?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = JsonFields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":\"access\"}\n")
    }
}

/// Writes each field as `,"name":value`.
struct JsonFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl JsonFields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        self.write(field, "\":", value);
    }

    /// A string field: its opening quote written with the name's punctuation (each write is
    /// a dynamic call into the line's buffer).
    fn string(&mut self, field: &Field, value: impl FnOnce(&mut Escaped<'_, '_>) -> fmt::Result) {
        self.write(field, "\":\"", |w| {
            value(&mut Escaped(w))?;
            w.write_str("\"")
        });
    }

    /// `,"name` and `open`, then the value.
    fn write(
        &mut self,
        field: &Field,
        open: &str,
        value: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
    ) {
        if self.result.is_ok() {
            // Field names are Rust identifiers: nothing to escape.
            self.result = self
                .writer
                .write_str(",\"")
                .and_then(|()| self.writer.write_str(field.name()))
                .and_then(|()| self.writer.write_str(open))
                .and_then(|()| value(self.writer));
        }
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field, |w| w.write_str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here too, their Debug being their Display.
        self.string(field, |w| write!(w, "{value:?}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // ryu, as serde_json (the standard formatter) writes floats.
        self.entry(field, |w| {
            if value.is_finite() {
                w.write_str(ryu::Buffer::new().format_finite(value))
            } else {
                w.write_str("null")
            }
        });
    }
}

/// `time` as tracing-subscriber's `SystemTime` writes it (RFC 3339, UTC, microseconds:
/// `2026-11-28T13:47:37.123456Z`), the date and time of day kept per thread for the second
/// they belong to, so a line formats only its microseconds. `time` is the current time: a
/// clock past the year 9999 (or before 1970) is left to tracing-subscriber's formatter,
/// which reads it again.
fn write_timestamp(writer: &mut Writer<'_>, time: std::time::SystemTime) -> fmt::Result {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let Ok(since) = time.duration_since(std::time::UNIX_EPOCH) else {
        return SystemTime.format_time(writer);
    };
    let secs = since.as_secs();
    if secs >= MAX_TIMESTAMP_SECS {
        return SystemTime.format_time(writer);
    }
    let prefix = SECOND.with(|cell| {
        let (cached, prefix) = cell.get();
        if cached == secs {
            return prefix;
        }
        let prefix = second_prefix(secs);
        cell.set((secs, prefix));
        prefix
    });
    let mut out = [0u8; 27];
    out[..20].copy_from_slice(&prefix);
    decimal(&mut out[20..26], u64::from(since.subsec_micros()));
    out[26] = b'Z';
    writer.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
}

/// 10000-01-01T00:00:00Z: the first second whose year takes five digits.
const MAX_TIMESTAMP_SECS: u64 = 253_402_300_800;

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch (before [`MAX_TIMESTAMP_SECS`]), the
/// calendar from the `time` crate (once a second per thread, so its cost does not matter).
fn second_prefix(secs: u64) -> [u8; 20] {
    let mut out = *b"0000-00-00T00:00:00.";
    // Cannot fail below MAX_TIMESTAMP_SECS.
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(secs as i64) else {
        return out;
    };
    decimal(&mut out[0..4], at.year().unsigned_abs().into());
    decimal(&mut out[5..7], u8::from(at.month()).into());
    decimal(&mut out[8..10], at.day().into());
    decimal(&mut out[11..13], at.hour().into());
    decimal(&mut out[14..16], at.minute().into());
    decimal(&mut out[17..19], at.second().into());
    out
}

/// `value`'s last `out.len()` decimal digits, zero-padded, into `out`.
fn decimal(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A JSON string's contents: quotes, backslashes and control characters escaped, as
/// serde_json (tracing-subscriber's JSON formatter) escapes them.
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let bytes = text.as_bytes();
        let mut start = 0;
        while let Some(at) = first_escape(&bytes[start..]) {
            let i = start + at;
            self.0.write_str(&text[start..i])?;
            match bytes[i] {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                0x08 => self.0.write_str("\\b")?,
                0x0c => self.0.write_str("\\f")?,
                byte => write!(self.0, "\\u{byte:04x}")?,
            }
            start = i + 1;
        }
        self.0.write_str(&text[start..])
    }
}

/// Where the first byte JSON escapes is in `text`, if anywhere. Eight bytes at a time (a
/// byte-by-byte `match` was the access line's largest cost, and escapes are rare): each word
/// is tested at once for a control character, a quote or a backslash, and only a word with
/// one is looked at byte by byte.
fn first_escape(text: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of a byte of the result is set where that byte is below `n` (exact for
    // "is any", with n <= 0x80: "hasless" in Bit Twiddling Hacks).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let (words, _) = text.as_chunks::<8>();
    let clean = words
        .iter()
        .map(|&word| u64::from_ne_bytes(word))
        .position(|word| {
            let found = below(word, 0x20)
                | below(word ^ (ONES * u64::from(b'"')), 1)
                | below(word ^ (ONES * u64::from(b'\\')), 1);
            found != 0
        })
        .unwrap_or(words.len())
        * 8;
    text[clean..]
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|i| clean + i)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    fn access_line(fast: bool) -> Value {
        let buffer = Buffer::default();
        let builder = tracing_subscriber::fmt().with_writer(buffer.clone()).json();
        let emit = || {
            let path = "/a\"b\\c\nd\u{1}é";
            tracing::info!(
                target: "access",
                request_id = %"req-1",
                path = %path,
                route = "/api",
                status = 200u16,
                retries = 0u32,
                latency_ms = 1.25,
                rate_limited = false,
                error = "",
                "request"
            );
        };
        if fast {
            tracing::subscriber::with_default(
                builder.event_format(AccessJson::default()).finish(),
                emit,
            );
        } else {
            tracing::subscriber::with_default(builder.flatten_event(true).finish(), emit);
        }
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn the_access_line_is_the_standard_json_line() {
        let (mut fast, mut standard) = (access_line(true), access_line(false));
        // Written a moment apart.
        assert!(fast["timestamp"].as_str().unwrap().ends_with('Z'));
        fast["timestamp"] = Value::Null;
        standard["timestamp"] = Value::Null;
        assert_eq!(fast, standard);
        assert_eq!(fast["path"], "/a\"b\\c\nd\u{1}é");
        assert_eq!(fast["status"], 200);
        assert_eq!(fast["latency_ms"], 1.25);
    }

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        Escaped(&mut Writer::new(&mut out)).write_str(text).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        // Every byte that needs an escape, at every offset of a word and beside multi-byte
        // characters, and strings of every length around the word size.
        let mut cases: Vec<String> = (0..0x80u8)
            .chain([b'"', b'\\'])
            .flat_map(|b| {
                (0..17).map(move |at| {
                    let mut text: Vec<char> = "abcdéfghijklmnopqrstu".chars().collect();
                    text.insert(at, char::from(b));
                    text.into_iter().collect::<String>()
                })
            })
            .collect();
        cases.extend((0..20).map(|n| "x".repeat(n)));
        cases.push("\u{1}\u{1f}\"\\\n\r\t\u{7f}日本語 ~".into());
        let mut rng = fastrand::Rng::with_seed(7);
        cases.extend((0..2000).map(|_| {
            let n = rng.usize(0..40);
            (0..n)
                .map(|_| match rng.u8(0..4) {
                    0 => char::from(rng.u8(0..0x20)),
                    1 => ['"', '\\', 'é', '€', '😀'][rng.usize(0..5)],
                    _ => char::from(rng.u8(0x20..0x7f)),
                })
                .collect::<String>()
        }));
        for text in cases {
            let expected = serde_json::to_string(&text).unwrap();
            assert_eq!(format!("\"{}\"", escaped(&text)), expected, "{text:?}");
        }
    }

    /// Days before `year`'s first, month lengths: the calendar the slow way.
    fn reference_prefix(secs: u64) -> String {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let mut days = secs / 86_400;
        let mut year = 1970;
        while days >= if leap(year) { 366 } else { 365 } {
            days -= if leap(year) { 366 } else { 365 };
            year += 1;
        }
        let lengths = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 0;
        while days >= lengths[month] {
            days -= lengths[month];
            month += 1;
        }
        let of_day = secs % 86_400;
        format!(
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
            month + 1,
            days + 1,
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )
    }

    #[test]
    fn timestamps_are_the_calendar_s() {
        let prefix = |secs| String::from_utf8(second_prefix(secs).to_vec()).unwrap();
        assert_eq!(prefix(0), "1970-01-01T00:00:00.");
        assert_eq!(prefix(951_782_400), "2000-02-29T00:00:00.");
        assert_eq!(prefix(4_107_542_400), "2100-03-01T00:00:00.");
        assert_eq!(prefix(MAX_TIMESTAMP_SECS - 1), "9999-12-31T23:59:59.");
        for _ in 0..2000 {
            let secs = fastrand::u64(0..MAX_TIMESTAMP_SECS);
            assert_eq!(prefix(secs), reference_prefix(secs), "{secs}");
        }
        let at = |secs, nanos| {
            let mut text = String::new();
            let time = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            write_timestamp(&mut Writer::new(&mut text), time).unwrap();
            text
        };
        assert_eq!(
            at(1_795_873_657, 123_456_789),
            "2026-11-28T13:47:37.123456Z"
        );
        assert_eq!(at(1_795_873_657, 7_000), "2026-11-28T13:47:37.000007Z");
        // The cached second is not reused for the next one.
        assert_eq!(at(1_795_873_658, 0), "2026-11-28T13:47:38.000000Z");
    }

    #[test]
    fn a_timestamp_now_is_tracing_subscriber_s() {
        loop {
            let (mut ours, mut standard) = (String::new(), String::new());
            write_timestamp(&mut Writer::new(&mut ours), std::time::SystemTime::now()).unwrap();
            SystemTime
                .format_time(&mut Writer::new(&mut standard))
                .unwrap();
            assert_eq!(ours.len(), standard.len(), "{ours} / {standard}");
            // The two were read a moment apart; compare them within one second.
            if ours[..20] == standard[..20] {
                assert!(ours[20..26].bytes().all(|b| b.is_ascii_digit()) && ours.ends_with('Z'));
                break;
            }
        }
    }
}
