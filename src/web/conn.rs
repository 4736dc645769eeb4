//! What the accept loop knows about a connection, handed to every request as an extension.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `[http]`: Provet Cloud and staff browsers inside Provet, from the internet.
    Public,
    /// `[admin]`: people and programs of the clinic.
    Admin,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Public => "public",
            Surface::Admin => "admin",
        }
    }
}

/// The connection a request arrived on. Every request carries one (`req.extensions()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub surface: Surface,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client: the peer, or, when the peer is a trusted proxy, the address it names in
    /// `X-Forwarded-For`. Use this for per-client limits and logs.
    pub client: IpAddr,
    /// Whether the connection is TLS (cookies get `Secure`).
    pub tls: bool,
}

/// The client address of a request from `peer`: the last `X-Forwarded-For` entry when `peer`
/// is a trusted proxy (the entry that proxy added; earlier ones are whatever the client sent),
/// else `peer` itself.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer)
}

/// An address for logs: the network part only (`203.0.113.x`, `2001:db8:1:2::x`), enough to
/// tell one source from another without keeping a client's address.
pub fn mask_address(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.x")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::x", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let trusted = [proxy];
        let h = headers(&["10.9.9.9, 203.0.113.5"]);
        assert_eq!(client_address(proxy, &h, &trusted), "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(stranger, &h, &trusted), stranger, "anyone can send the header");
        assert_eq!(client_address(proxy, &headers(&["1.1.1.1", "203.0.113.9"]), &trusted).to_string(), "203.0.113.9");
        assert_eq!(client_address(proxy, &headers(&["garbage"]), &trusted), proxy);
        assert_eq!(client_address(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn masked_addresses_keep_the_network_only() {
        assert_eq!(mask_address("203.0.113.77".parse().unwrap()), "203.0.113.x");
        assert_eq!(mask_address("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::x");
    }
}
