//! Who the client is, for per-address limits and the access log: the socket's peer, unless that
//! peer is a trusted proxy (a load balancer in front of this one, `server.trusted-proxies`), in
//! which case the address it names in `Forwarded` (RFC 7239) or `X-Forwarded-For` counts,
//! walking back from the right over every trusted hop. Nobody else can name a client: those
//! headers from an untrusted peer are not believed. IPv6 clients count per network
//! (`server.ipv6-prefix-length`, /64 by default), since one host holds a whole /64.

use std::io::Write as _;
use std::net::IpAddr;

use http::HeaderMap;
use ipnet::{IpNet, Ipv6Net};

/// Longest text of an address: an IPv6 one with an IPv4 tail.
pub const MAX_IP_TEXT: usize = 45;

/// The address as text in `buf` (for `X-Forwarded-For` and the access log). An IPv4 address,
/// the usual client, is written octet by octet: through `Display` it costs about twenty times
/// as much (`fmt`'s machinery, twice over).
pub fn ip_text(ip: IpAddr, buf: &mut [u8; MAX_IP_TEXT]) -> &str {
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let mut octet_text = itoa::Buffer::new();
                let digits = octet_text.format(octet).as_bytes();
                buf[len..len + digits.len()].copy_from_slice(digits);
                len += digits.len();
            }
            len
        }
        IpAddr::V6(_) => {
            let mut rest = &mut buf[..];
            // Cannot fail: every address fits.
            let _ = write!(rest, "{ip}");
            MAX_IP_TEXT - rest.len()
        }
    };
    // Digits, dots, hex and colons only.
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// How the client's address is found and keyed.
#[derive(Debug, Clone)]
pub struct ClientAddress {
    trusted: Vec<IpNet>,
    ipv6_prefix_length: u8,
}

impl ClientAddress {
    pub fn new(trusted: Vec<IpNet>, ipv6_prefix_length: u8) -> ClientAddress {
        ClientAddress {
            trusted,
            ipv6_prefix_length,
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the socket's `peer` and the request's headers.
    pub fn of(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer?;
        if !self.is_trusted(client) {
            return Some(client);
        }
        for hop in forwarded_chain(headers).into_iter().rev() {
            // A hop that cannot be read ends the walk at the last address that could.
            let Some(hop) = hop else { break };
            client = hop;
            if !self.is_trusted(hop) {
                break;
            }
        }
        Some(client)
    }

    /// What limits count `ip` under: the address, or for IPv6 its network (the address with
    /// the host bits cleared; an IPv4-mapped address as the IPv4 one).
    pub fn limit_ip(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => match Ipv6Net::new(v6, self.ipv6_prefix_length) {
                    Ok(net) => IpAddr::V6(net.trunc().network()),
                    Err(_) => ip,
                },
            },
        }
    }

    /// [`Self::limit_ip`] as text: `ip:<v4>` or `ip6:<network>/<prefix length>`.
    pub fn limit_key(&self, ip: IpAddr) -> String {
        match self.limit_ip(ip) {
            IpAddr::V4(v4) => format!("ip:{v4}"),
            IpAddr::V6(v6) => format!("ip6:{v6}/{}", self.ipv6_prefix_length),
        }
    }
}

/// The addresses a request passed through, left (first) to right (last proxy), from
/// `Forwarded` if present, else `X-Forwarded-For`; `None` for a hop that is not an address.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{0}").to_string())
            .collect::<Vec<_>>()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("for")
                        .then(|| parse_node(value.trim().trim_matches('"')))?
                })
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|value| value.split(','))
        .map(|hop| parse_node(hop.trim()))
        .collect()
}

/// An address as a forwarding header writes it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        let addresses = [
            "0.0.0.0",
            "9.10.99.100",
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "2001:db8::ffff:192.0.2.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        ];
        for text in addresses {
            let ip: IpAddr = text.parse().unwrap();
            let mut buf = [0u8; MAX_IP_TEXT];
            assert_eq!(ip_text(ip, &mut buf), ip.to_string(), "{text}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn behind_balancer() -> ClientAddress {
        ClientAddress::new(vec!["10.0.0.0/8".parse().unwrap()], 64)
    }

    #[test]
    fn untrusted_peers_cannot_name_a_client() {
        let client = behind_balancer();
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client.of(Some(ip("203.0.113.9")), &spoof),
            Some(ip("203.0.113.9"))
        );
        let nobody_trusted = ClientAddress::new(Vec::new(), 64);
        assert_eq!(
            nobody_trusted.of(Some(ip("10.0.0.1")), &spoof),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_trusted_balancer_names_the_client_and_spoofed_hops_are_skipped() {
        let client = behind_balancer();
        // The client claimed 1.1.1.1 itself; the balancer appended the real address.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(
            client.of(Some(ip("10.0.0.5")), &chain),
            Some(ip("198.51.100.7"))
        );
        let two_headers = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(
            client.of(Some(ip("10.0.0.5")), &two_headers),
            Some(ip("198.51.100.8"))
        );
        let forwarded = headers(&[(
            "forwarded",
            "for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https",
        )]);
        assert_eq!(
            client.of(Some(ip("10.0.0.5")), &forwarded),
            Some(ip("2001:db8:cafe::17"))
        );
        // Garbage stops the walk at the balancer.
        let garbage = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip")]);
        assert_eq!(
            client.of(Some(ip("10.0.0.5")), &garbage),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            client.of(Some(ip("10.0.0.5")), &HeaderMap::new()),
            Some(ip("10.0.0.5"))
        );
    }

    #[test]
    fn ipv6_clients_count_per_network() {
        let client = ClientAddress::new(Vec::new(), 64);
        assert_eq!(
            client.limit_key(ip("2001:db8:1:2:aaaa::1")),
            client.limit_key(ip("2001:db8:1:2:bbbb::2")),
            "one /64, one client"
        );
        assert_ne!(
            client.limit_key(ip("2001:db8:1:2::1")),
            client.limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client.limit_key(ip("192.0.2.1")), "ip:192.0.2.1");
        assert_eq!(client.limit_key(ip("::ffff:192.0.2.1")), "ip:192.0.2.1");
        let per_host = ClientAddress::new(Vec::new(), 128);
        assert_ne!(
            per_host.limit_key(ip("2001:db8::1")),
            per_host.limit_key(ip("2001:db8::2"))
        );
    }
}
