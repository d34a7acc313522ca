//! Path routing: which route a request path belongs to, and the path the upstream sees.
//!
//! Prefixes match on whole segments and the longest wins. Paths that try to climb out of a
//! prefix (`..` segments, encoded dots or slashes, backslashes) are refused before routing, so
//! `/api/users/../products` can never reach a service it does not name.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::Route;

/// Why a path cannot be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// The path is malformed or tries to traverse: 400.
    BadPath,
    /// No route matches: 404.
    NoRoute,
}

/// Routes in longest-prefix-first order, shared so a request holds its route without copying.
/// `T` is what a route leads to (the proxy's route with its service pool; a bare [`Route`] in
/// tests).
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<Arc<T>>,
}

impl<T: AsRef<Route>> Router<T> {
    pub fn new(routes: Vec<T>) -> Router<T> {
        let mut routes: Vec<Arc<T>> = routes.into_iter().map(Arc::new).collect();
        routes.sort_by_key(|target| std::cmp::Reverse(route_of(target).prefix.len()));
        Router { routes }
    }

    /// The route for `path` (no query string).
    pub fn route(&self, path: &str) -> Result<&Arc<T>, RouteError> {
        check_path(path)?;
        self.routes
            .iter()
            .find(|target| {
                let route = route_of(target);
                route.prefix == "/"
                    || path == route.prefix
                    || path
                        .strip_prefix(route.prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .ok_or(RouteError::NoRoute)
    }
}

fn route_of<T: AsRef<Route>>(target: &Arc<T>) -> &Route {
    AsRef::<Route>::as_ref(&**target)
}

/// Refuses paths that are not plain absolute paths.
pub fn check_path(path: &str) -> Result<(), RouteError> {
    // One pass over the bytes (this runs for every request).
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(RouteError::BadPath);
    }
    // Where the current segment began (just after its '/').
    let mut segment = 1;
    for (at, &byte) in bytes.iter().enumerate().skip(1) {
        match byte {
            b'/' => {
                if dot_segment(&bytes[segment..at]) || at == segment {
                    // `/./`, `/../` or `//`.
                    return Err(RouteError::BadPath);
                }
                segment = at + 1;
            }
            b'\\' | b' ' => return Err(RouteError::BadPath),
            // Encoded '.', '/', '\', '%' (double encoding) and NUL have no business in this
            // API's paths (either case of hex digit).
            b'%' if matches!(
                (
                    bytes.get(at + 1),
                    bytes.get(at + 2).map(u8::to_ascii_lowercase)
                ),
                (Some(b'2'), Some(b'e' | b'f' | b'5'))
                    | (Some(b'5'), Some(b'c'))
                    | (Some(b'0'), Some(b'0'))
            ) =>
            {
                return Err(RouteError::BadPath)
            }
            byte if byte.is_ascii_control() => return Err(RouteError::BadPath),
            _ => {}
        }
    }
    if dot_segment(&bytes[segment..]) {
        return Err(RouteError::BadPath);
    }
    Ok(())
}

fn dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

#[cfg(test)]
mod check_path_tests {
    use super::*;

    /// The rules as first written, one pass per rule: the reference for the one-pass version.
    fn reference(path: &str) -> bool {
        let encoded = |w: &[u8]| {
            w[0] == b'%'
                && matches!(
                    (w[1], w[2].to_ascii_lowercase()),
                    (b'2', b'e' | b'f' | b'5') | (b'5', b'c') | (b'0', b'0')
                )
        };
        path.starts_with('/')
            && !path.contains('\\')
            && !path.contains("//")
            && !path.as_bytes().windows(3).any(encoded)
            && !path.split('/').any(|s| s == "." || s == "..")
            && !path.bytes().any(|b| b.is_ascii_control() || b == b' ')
    }

    #[test]
    fn one_pass_agrees_with_the_rules() {
        for path in [
            "/",
            "/api",
            "/api/",
            "/api/products/7",
            "//",
            "/api//x",
            "/./x",
            "/x/.",
            "/x/..",
            "/x/../y",
            "/x/...",
            "/x/.y",
            "/a%2e",
            "/a%2E",
            "/a%2f",
            "/a%5c",
            "/a%5C",
            "/a%00",
            "/a%25",
            "/a%41",
            "/a%",
            "/a%2",
            "/a\\b",
            "/a b",
            "/a\tb",
            "x",
            "",
            "/a/%2",
            "/.",
            "/..",
            "/a/b/",
            "/\u{7f}",
        ] {
            assert_eq!(check_path(path).is_ok(), reference(path), "{path:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_on_any_path(path in "[/a.%25eEfFcC0\\\\ \t]{0,12}") {
            proptest::prop_assert_eq!(check_path(&path).is_ok(), reference(&path), "{:?}", path);
        }
    }
}

/// The path the upstream receives: `base_path` + (`path` without `strip_prefix`).
pub fn upstream_path<'a>(base_path: &str, route: &Route, path: &'a str) -> Cow<'a, str> {
    let rest = path
        .strip_prefix(route.strip_prefix.as_str())
        .unwrap_or(path);
    if base_path.is_empty() && rest.len() == path.len() && !path.is_empty() {
        // Nothing stripped, nothing put before it: the client's path as it is.
        return Cow::Borrowed(path);
    }
    let rest = if rest.is_empty() { "/" } else { rest };
    Cow::Owned(format!("{base_path}{rest}"))
}

/// Maps a `Location` the function returned (its own path space) back into the client's.
pub fn client_location(route: &Route, location: &str) -> Option<String> {
    if location.starts_with('/') && !location.starts_with("//") && !route.strip_prefix.is_empty() {
        Some(format!("{}{location}", route.strip_prefix))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, service: &str, strip: &str) -> Route {
        Route {
            prefix: prefix.into(),
            service: service.into(),
            strip_prefix: strip.into(),
            auth: Default::default(),
            scopes: Vec::new(),
            rate_limit: None,
            cache: None,
        }
    }

    fn router() -> Router<Route> {
        Router::new(vec![
            route("/api/users", "users", "/api"),
            route("/api/products", "products", "/api"),
            route("/api/products/special", "special", ""),
        ])
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let r = router();
        assert_eq!(r.route("/api/users").unwrap().service, "users");
        assert_eq!(r.route("/api/users/1").unwrap().service, "users");
        assert_eq!(
            r.route("/api/products/special/x").unwrap().service,
            "special"
        );
        assert_eq!(
            r.route("/api/products/specialx").unwrap().service,
            "products"
        );
        assert_eq!(r.route("/api/usersx").unwrap_err(), RouteError::NoRoute);
        assert_eq!(r.route("/").unwrap_err(), RouteError::NoRoute);
    }

    #[test]
    fn traversal_is_refused() {
        let r = router();
        for bad in [
            "/api/users/../products",
            "/api/users/./1",
            "/api/users/%2e%2e/products",
            "/api/users/%2E%2E/products",
            "/api/users%2F..%2Fproducts",
            "/api/users/%252e%252e/products",
            "/api/users\\..\\products",
            "//api/users",
            "api/users",
            "/api/users/a b",
            "/api/users/%00",
            "/api/users/%5c..%5Cproducts",
            "/api/users%2f..%2fproducts",
            "/api/users/%2e",
            "/api/users/%25",
        ] {
            assert_eq!(r.route(bad).unwrap_err(), RouteError::BadPath, "{bad}");
        }
        // Percent-encoding of anything else is fine.
        assert!(r.route("/api/users/caf%C3%A9").is_ok());
        assert!(r.route("/api/users/a%20b%2").is_ok());
    }

    #[test]
    fn rewrites_paths_and_locations() {
        let users = route("/api/users", "users", "/api");
        assert_eq!(
            upstream_path("/lambda-url/user-service", &users, "/api/users/1"),
            "/lambda-url/user-service/users/1"
        );
        assert_eq!(upstream_path("", &users, "/api/users"), "/users");
        assert_eq!(upstream_path("", &users, "/api"), "/");
        // Nothing stripped and no base path: the client's path itself, not a copy.
        let plain = route("/", "users", "");
        assert!(matches!(
            upstream_path("", &plain, "/api/users/1"),
            Cow::Borrowed("/api/users/1")
        ));
        assert!(matches!(
            upstream_path("/base", &plain, "/x"),
            Cow::Owned(p) if p == "/base/x"
        ));
        assert!(matches!(
            upstream_path("", &users, "/api/users"),
            Cow::Owned(_)
        ));
        assert_eq!(
            client_location(&users, "/users/1").as_deref(),
            Some("/api/users/1")
        );
        assert_eq!(client_location(&users, "https://elsewhere/x"), None);
        assert_eq!(client_location(&route("/x", "s", ""), "/users/1"), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn router() -> Router<Route> {
        let route = |prefix: &str| Route {
            prefix: prefix.into(),
            service: "s".into(),
            strip_prefix: "/api".into(),
            auth: Default::default(),
            scopes: Vec::new(),
            rate_limit: None,
            cache: None,
        };
        Router::new(vec![route("/api/users"), route("/api/products")])
    }

    proptest! {
        /// No path panics the router, and a routed path never climbs out of its prefix.
        #[test]
        fn routed_paths_stay_inside_their_prefix(path in "/[a-zA-Z0-9/._%~-]{0,80}") {
            if let Ok(route) = router().route(&path) {
                prop_assert!(path.starts_with(&route.prefix));
                prop_assert!(!path.split('/').any(|s| s == ".." || s == "."));
                prop_assert!(!path.to_ascii_lowercase().contains("%2e"));
                let upstream = upstream_path("/base", route, &path);
                prop_assert!(upstream.starts_with("/base/"));
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(path in "\\PC{0,100}") {
            let _ = router().route(&path);
        }
    }
}
