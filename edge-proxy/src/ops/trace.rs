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

/// The trace this request belongs to, and the proxy's span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
    pub flags: String,
    /// Forwarded as is when the incoming `traceparent` was valid.
    pub tracestate: Option<String>,
    /// True when the trace came from the client.
    pub continued: bool,
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `bytes` random bytes (at most 16) as lower-case hex, never all zero (which W3C forbids).
fn random_hex(bytes: usize) -> String {
    let mask = if bytes >= 16 {
        u128::MAX
    } else {
        (1u128 << (bytes * 8)) - 1
    };
    let value = (fastrand::u128(..) & mask).max(1);
    format!("{value:0width$x}", width = bytes * 2)
}

impl TraceContext {
    /// Continues a valid `traceparent` or starts a new trace.
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> TraceContext {
        if let Some((trace_id, flags)) = traceparent.and_then(parse_traceparent) {
            return TraceContext {
                trace_id,
                span_id: random_hex(8),
                flags,
                tracestate: tracestate.filter(|s| s.len() <= 512).map(str::to_string),
                continued: true,
            };
        }
        TraceContext {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            flags: "01".into(),
            tracestate: None,
            continued: false,
        }
    }

    /// The `traceparent` to send upstream: this trace, the proxy's span as parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// `(trace id, flags)` of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    let valid = is_lower_hex(trace_id, 32)
        && is_lower_hex(parent_id, 16)
        && is_lower_hex(flags, 2)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.bytes().any(|b| b != b'0');
    valid.then(|| (trace_id.to_string(), flags.to_string()))
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
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(trace.span_id, "00f067aa0ba902b7");
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
        }
    }
}
