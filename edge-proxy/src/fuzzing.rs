//! Entry points shared by the cargo-fuzz targets (`edge-proxy/fuzz`) and the seed-replay test,
//! so the properties live beside the code they check and every input a fuzzer ever found stays
//! a regression test on the stable toolchain. Each function takes raw bytes and panics only
//! when a property fails.

use pingora::http::RequestHeader;

use crate::config::{AuthMode, Config, Limits, Route};
use crate::proxy::hygiene::{self, Utf8Check};
use crate::proxy::routing::{check_path, upstream_path, Router};

/// Config files: anything either validates into a config whose routes all work, or is refused
/// with an error that names where.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            let router = Router::new(config.routes.clone());
            for route in &config.routes {
                assert!(config.services.contains_key(&route.service), "{route:?}");
                assert!(route.prefix.starts_with('/'), "{route:?}");
                // A route's own prefix reaches it (or a route with the same prefix).
                if check_path(&route.prefix).is_ok() {
                    let found = router.route(&route.prefix).map(|r| r.prefix.as_str());
                    assert_eq!(found, Ok(route.prefix.as_str()));
                }
            }
        }
        Err(error) => {
            assert!(
                !error.field.is_empty() && !error.message.is_empty(),
                "{error:?}"
            );
        }
    }
}

fn route(prefix: &str, service: &str, strip: &str) -> Route {
    Route {
        prefix: prefix.into(),
        service: service.into(),
        strip_prefix: strip.into(),
        auth: AuthMode::Public,
        scopes: Vec::new(),
        rate_limit: None,
        cache: None,
    }
}

/// Request targets and headers, as the proxy meets them: the first line is the target, the
/// others `name: value` headers. Hygiene refuses with a 4xx or passes; a routed path never
/// climbs out of its prefix, and the upstream path stays under the instance's base path.
pub fn request(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let Ok(mut request) = RequestHeader::build("POST", target, None) else {
        return;
    };
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        let _ = request.append_header(name, value);
    }
    if let Err(error) = hygiene::check(&request, &Limits::default()) {
        assert!((400..500).contains(&error.status()), "{error:?}");
        return;
    }
    let router = Router::new(vec![
        route("/api/users", "users", "/api"),
        route("/api/products", "products", "/api"),
    ]);
    let path = request.uri.path();
    if let Ok(route) = router.route(path) {
        assert!(path == route.prefix || path.starts_with(&format!("{}/", route.prefix)));
        let base = "/lambda-url/user-service";
        let upstream = upstream_path(base, route, path);
        assert!(upstream.starts_with(&format!("{base}/")), "{upstream}");
        assert!(
            !upstream
                .split('/')
                .any(|segment| segment == ".." || segment == "."),
            "{upstream}"
        );
        let lower = upstream.to_ascii_lowercase();
        assert!(
            !lower.contains("%2e") && !lower.contains("%2f"),
            "{upstream}"
        );
    }
}

/// Streaming UTF-8 validation agrees with validating the whole body, wherever it is split.
pub fn utf8(data: &[u8]) {
    let Some((&split_seed, body)) = data.split_first() else {
        return;
    };
    let whole = std::str::from_utf8(body).is_ok();
    let step = usize::from(split_seed % 7) + 1;
    let mut check = Utf8Check::default();
    let mut streamed = true;
    let chunks: Vec<&[u8]> = body.chunks(step).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        if !check.feed(chunk, i + 1 == chunks.len()) {
            streamed = false;
            break;
        }
    }
    if chunks.is_empty() {
        streamed = check.feed(&[], true);
    }
    assert_eq!(streamed, whole, "split every {step} bytes");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Calls `target` on every file under `dir` (the checked-in seeds and regressions of one
    /// fuzz target); returns how many there were.
    fn replay(dir: &Path, target: impl Fn(&[u8])) -> usize {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        entries.sort();
        for path in &entries {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&data)));
            assert!(outcome.is_ok(), "fuzz seed {} fails", path.display());
        }
        entries.len()
    }

    fn seeds(target: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target)
    }

    #[test]
    fn fuzz_seeds_hold() {
        assert!(replay(&seeds("config"), config) > 0);
        assert!(replay(&seeds("request"), request) > 0);
        assert!(replay(&seeds("utf8"), utf8) > 0);
    }
}
