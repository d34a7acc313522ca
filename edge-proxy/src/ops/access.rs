//! The access log: one line per proxied request, target `access`. With JSON logs the line is
//! written by hand here, straight into a per-thread buffer handed to the log writer's queue:
//! as a tracing event it cost about 8,000 instructions per request (tracing's dispatch, a
//! dynamic call per field and per write into the line), the most of anything on the request
//! path. It is the line tracing-subscriber's JSON formatter writes for the same event (a test
//! compares the two), and `RUST_LOG` still decides whether it is written. With text logs, or
//! before [`install`], the line is an ordinary tracing event.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::SystemTime;

use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// One request's access line: its fields, in the order they are written.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_ms: f64,
    pub upstream: &'a str,
    pub retries: u32,
    pub client: &'a str,
    pub consumer: &'a str,
    pub auth: &'a str,
    pub rate_limited: bool,
    pub cache: &'a str,
    pub error: &'a str,
}

/// The JSON log's writer, once the JSON log is set up.
static JSON: OnceLock<NonBlocking> = OnceLock::new();

/// From now on access lines are written as JSON into `writer` (the JSON log's queue), not
/// through tracing.
pub fn install(writer: NonBlocking) {
    let _ = JSON.set(writer);
}

/// Whether an access line would be written (`RUST_LOG`); check it before gathering a line's
/// fields.
pub fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

impl AccessLine<'_> {
    /// Writes the line: as JSON into the log's queue once [`install`]ed (a full queue drops
    /// and counts it), else as a tracing event.
    pub fn write(&self) {
        match JSON.get() {
            Some(writer) => self.send(writer),
            None => self.event(),
        }
    }

    fn send(&self, writer: &NonBlocking) {
        thread_local! {
            static LINE: RefCell<Option<(Vec<u8>, NonBlocking)>> = const { RefCell::new(None) };
        }
        // A thread being torn down writes no line.
        let _ = LINE.try_with(|line| {
            let mut line = line.borrow_mut();
            let (buffer, writer) =
                line.get_or_insert_with(|| (Vec::with_capacity(1024), writer.clone()));
            buffer.clear();
            self.json(buffer, SystemTime::now());
            // Lossy: never fails; a full queue counts the line as dropped.
            let _ = writer.write_all(buffer);
        });
    }

    /// The line as a tracing event, for the text log.
    fn event(&self) {
        tracing::info!(
            target: "access",
            request_id = self.request_id,
            trace_id = self.trace_id,
            span_id = self.span_id,
            method = self.method,
            path = self.path,
            route = self.route,
            status = self.status,
            latency_ms = self.latency_ms,
            upstream = self.upstream,
            retries = self.retries,
            client = self.client,
            consumer = self.consumer,
            auth = self.auth,
            rate_limited = self.rate_limited,
            cache = self.cache,
            error = self.error,
            "request"
        );
    }

    /// The JSON line, `\n` included, as tracing-subscriber's flattened JSON formatter writes
    /// the event (its fields as the event records them).
    fn json(&self, out: &mut Vec<u8>, now: SystemTime) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\"");
        string(out, b",\"request_id\":\"", self.request_id);
        string(out, b",\"trace_id\":\"", self.trace_id);
        string(out, b",\"span_id\":\"", self.span_id);
        string(out, b",\"method\":\"", self.method);
        string(out, b",\"path\":\"", self.path);
        string(out, b",\"route\":\"", self.route);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.extend_from_slice(b",\"latency_ms\":");
        float(out, self.latency_ms);
        string(out, b",\"upstream\":\"", self.upstream);
        out.extend_from_slice(b",\"retries\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.retries).as_bytes());
        string(out, b",\"client\":\"", self.client);
        string(out, b",\"consumer\":\"", self.consumer);
        string(out, b",\"auth\":\"", self.auth);
        out.extend_from_slice(if self.rate_limited {
            b",\"rate_limited\":true"
        } else {
            b",\"rate_limited\":false"
        });
        string(out, b",\"cache\":\"", self.cache);
        string(out, b",\"error\":\"", self.error);
        out.extend_from_slice(b",\"message\":\"request\",\"target\":\"access\"}\n");
    }
}

/// `name` (with its punctuation and opening quote), `value` escaped, the closing quote.
fn string(out: &mut Vec<u8>, name: &[u8], value: &str) {
    out.extend_from_slice(name);
    escape(out, value);
    out.push(b'"');
}

/// As serde_json writes an `f64`: ryu, and `null` for what JSON has no number for.
fn float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `time` as tracing-subscriber's `SystemTime` writes it (RFC 3339, UTC, microseconds:
/// `2026-11-28T13:47:37.123456Z`), the date and time of day kept per thread for the second
/// they belong to, so a line formats only its microseconds. A clock past the year 9999 (or
/// before 1970) is left to tracing-subscriber's formatter, which reads it again.
fn timestamp(out: &mut Vec<u8>, time: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let since = match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) if since.as_secs() < MAX_TIMESTAMP_SECS => since,
        _ => {
            let mut text = String::new();
            let _ =
                tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut text));
            out.extend_from_slice(text.as_bytes());
            return;
        }
    };
    let (whole, micros) = (since.as_secs(), since.subsec_micros());
    let prefix = SECOND.with(|cell| {
        let (cached, prefix) = cell.get();
        if cached == whole {
            return prefix;
        }
        let prefix = second_prefix(whole);
        cell.set((whole, prefix));
        prefix
    });
    let mut text = [0u8; 27];
    text[..20].copy_from_slice(&prefix);
    decimal(&mut text[20..26], u64::from(micros));
    text[26] = b'Z';
    out.extend_from_slice(&text);
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
fn escape(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(at) = first_escape(&bytes[start..]) {
        let i = start + at;
        out.extend_from_slice(&bytes[start..i]);
        match bytes[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            byte => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
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

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn line<'a>(path: &'a str, error: &'a str) -> AccessLine<'a> {
        AccessLine {
            request_id: "req-1",
            trace_id: "0af7651916cd43dd8448eb211c80319c",
            span_id: "b7ad6b7169203331",
            method: "GET",
            path,
            route: "/api",
            status: 503,
            latency_ms: 1.25,
            upstream: "127.0.0.1:9001",
            retries: 2,
            client: "::1",
            consumer: "alice",
            auth: "api_key",
            rate_limited: true,
            cache: "-",
            error,
        }
    }

    fn parse(text: &str) -> Value {
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.ends_with('\n'), "{text}");
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The line tracing-subscriber's flattened JSON formatter writes for the line's event.
    fn standard(line: &AccessLine<'_>) -> Value {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .json()
            .flatten_event(true)
            .finish();
        tracing::subscriber::with_default(subscriber, || line.event());
        parse(&buffer.text())
    }

    fn ours(line: &AccessLine<'_>) -> Value {
        let mut out = Vec::new();
        line.json(&mut out, SystemTime::now());
        parse(std::str::from_utf8(&out).unwrap())
    }

    #[test]
    fn the_json_line_is_the_standard_formatters_line_for_its_event() {
        for (path, error) in [
            ("/a\"b\\c\nd\u{1}é", "upstream \"x\" refused\r\n"),
            ("/", ""),
        ] {
            let line = line(path, error);
            let (mut fast, mut slow) = (ours(&line), standard(&line));
            // Written a moment apart.
            assert!(fast["timestamp"].as_str().unwrap().ends_with('Z'));
            fast["timestamp"] = Value::Null;
            slow["timestamp"] = Value::Null;
            assert_eq!(fast, slow);
            assert_eq!(fast["path"], path);
            assert_eq!(fast["error"], error);
        }
        let mut odd = line("/", "");
        odd.rate_limited = false;
        odd.latency_ms = f64::NAN;
        let (fast, slow) = (ours(&odd), standard(&odd));
        assert_eq!(fast["latency_ms"], Value::Null);
        assert_eq!(fast["rate_limited"], false);
        assert_eq!(
            (&fast["status"], &fast["retries"]),
            (&slow["status"], &slow["retries"])
        );
    }

    #[test]
    fn a_line_goes_whole_through_the_log_writers_queue() {
        let buffer = Buffer::default();
        let (writer, guard) = tracing_appender::non_blocking(buffer.clone());
        let first = line("/one", "");
        let second = line("/two", "x");
        first.send(&writer);
        second.send(&writer);
        // Dropping the guard writes out what is queued.
        drop(guard);
        let text = buffer.text();
        let lines: Vec<Value> = text.lines().map(|l| parse(&format!("{l}\n"))).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["path"], "/one");
        assert_eq!(lines[1]["path"], "/two");
        assert_eq!(lines[1]["error"], "x");
    }

    #[test]
    fn rust_log_decides_whether_a_line_is_written() {
        let enabled_under = |filter: &str| {
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(Buffer::default())
                .finish();
            tracing::subscriber::with_default(subscriber, enabled)
        };
        assert!(enabled_under("info"));
        assert!(enabled_under("warn,access=info"));
        assert!(!enabled_under("info,access=off"));
        assert!(!enabled_under("warn"));
    }

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        escape(&mut out, text);
        String::from_utf8(out).unwrap()
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

    fn timestamp_text(time: SystemTime) -> String {
        let mut out = Vec::new();
        timestamp(&mut out, time);
        String::from_utf8(out).unwrap()
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
            timestamp_text(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
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
            let ours = timestamp_text(SystemTime::now());
            let mut standard = String::new();
            tracing_subscriber::fmt::time::SystemTime
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
