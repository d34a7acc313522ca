//! Request ids and W3C trace context (`traceparent` / `tracestate`).
//!
//! A client's `x-request-id` is kept if it is well formed (1–128 characters of letters, digits,
//! `-`, `_`, `.`, `:`), otherwise the proxy makes one. An incoming valid `traceparent` is
//! continued (same trace id, the proxy's own span id as the new parent); otherwise a trace starts
//! here. `tracestate` is forwarded only alongside a valid `traceparent`, as the spec requires.

/// Longest accepted client request id.
const MAX_REQUEST_ID: usize = 128;

/// The client's request id if well formed, else a new UUID.
pub fn request_id(incoming: Option<&str>) -> String {
    match incoming {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        // Random v4 UUID from the thread-local PRNG: no syscall per request (ids need to be
        // unique, not unpredictable).
        _ => uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
            .into_uuid()
            .to_string(),
    }
}

/// The trace this request belongs to, and the proxy's span in it. The ids are kept as their
/// lower-case hex digits inline (no allocation per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    flags: [u8; 2],
    /// Forwarded as is when the incoming `traceparent` was valid.
    pub tracestate: Option<String>,
    /// True when the trace came from the client.
    pub continued: bool,
}

fn is_lower_hex(s: &[u8], len: usize) -> bool {
    s.len() == len
        && s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// `N / 2` random bytes (at most 16) as lower-case hex, never all zero (which W3C forbids).
fn random_hex<const N: usize>() -> [u8; N] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mask = if N >= 32 {
        u128::MAX
    } else {
        (1u128 << (N * 4)) - 1
    };
    let value = (fastrand::u128(..) & mask).max(1);
    let mut out = [b'0'; N];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((value >> ((N - 1 - i) * 4)) & 0xf) as usize];
    }
    out
}

/// Hex digits as text (they are ASCII by construction).
fn text(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).unwrap_or("-")
}

impl TraceContext {
    /// Continues a valid `traceparent` or starts a new trace.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> TraceContext {
        if let Some((trace_id, flags)) = traceparent.and_then(parse_traceparent) {
            return TraceContext {
                trace_id,
                span_id: random_hex(),
                flags,
                tracestate: tracestate.filter(|s| s.len() <= 512).map(str::to_string),
                continued: true,
            };
        }
        TraceContext {
            trace_id: random_hex(),
            span_id: random_hex(),
            flags: *b"01",
            tracestate: None,
            continued: false,
        }
    }

    /// The trace id (32 lower-case hex digits).
    pub fn trace_id(&self) -> &str {
        text(&self.trace_id)
    }

    /// The proxy's span id (16 lower-case hex digits).
    pub fn span_id(&self) -> &str {
        text(&self.span_id)
    }

    /// The trace flags (2 hex digits).
    pub fn flags(&self) -> &str {
        text(&self.flags)
    }

    /// The `traceparent` to send upstream: this trace, the proxy's span as parent.
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        out.push_str(self.trace_id());
        out.push('-');
        out.push_str(self.span_id());
        out.push('-');
        out.push_str(self.flags());
        out
    }
}

/// `(trace id, flags)` of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<([u8; 32], [u8; 2])> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    let (trace_id, parent_id, flags) =
        (trace_id.as_bytes(), parent_id.as_bytes(), flags.as_bytes());
    let valid = is_lower_hex(trace_id, 32)
        && is_lower_hex(parent_id, 16)
        && is_lower_hex(flags, 2)
        && trace_id.iter().any(|b| *b != b'0')
        && parent_id.iter().any(|b| *b != b'0');
    if !valid {
        return None;
    }
    Some((trace_id.try_into().ok()?, flags.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(request_id(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in [
            "",
            "has space",
            "semi;colon",
            "new\nline",
            &"a".repeat(129),
            "ünï",
        ] {
            let generated = request_id(Some(bad));
            assert_ne!(generated, bad);
            assert!(uuid::Uuid::parse_str(&generated).is_ok());
        }
        assert!(uuid::Uuid::parse_str(&request_id(None)).is_ok());
    }

    #[test]
    fn continues_a_valid_trace() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::from_headers(Some(incoming), Some("vendor=x"));
        assert!(trace.continued);
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(trace.span_id(), "00f067aa0ba902b7");
        assert_eq!(trace.tracestate.as_deref(), Some("vendor=x"));
        let outgoing = trace.traceparent();
        assert!(outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(outgoing.ends_with("-01"));
    }

    #[test]
    fn starts_a_trace_on_invalid_input() {
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let trace = TraceContext::from_headers(Some(bad), Some("vendor=x"));
            assert!(!trace.continued, "{bad}");
            assert_eq!(trace.tracestate, None);
            assert!(is_lower_hex(&trace.trace_id, 32) && is_lower_hex(&trace.span_id, 16));
            assert!(trace.trace_id().bytes().any(|b| b != b'0'));
        }
    }
}
