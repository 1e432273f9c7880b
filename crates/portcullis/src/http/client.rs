//! Who is calling: the client address used for throttling.
//!
//! The peer's address, unless the peer is a trusted proxy
//! (`--trusted-proxies`): then the last `X-Forwarded-For` hop that is not a
//! trusted proxy itself. Never the first hop, which the client writes.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::auth::throttle::Origin;
use crate::state::AppState;

/// Where the request comes from, when known (not in router tests without a
/// socket).
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<Origin>);

/// One `X-Forwarded-For` hop: `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port`,
/// IPv4-mapped IPv6 read as IPv4. `None` when it is none of those.
fn read_hop(hop: &str) -> Option<IpAddr> {
    let ip = hop
        .parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

/// Picks the client out of a peer and its `X-Forwarded-For` header lines
/// (raw bytes: a line with a byte that is not ASCII is still read, and the
/// hop holding it is unreadable).
pub fn client_origin(peer: IpAddr, forwarded_for: &[&[u8]], trusted: &[IpNet]) -> Origin {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return Origin::Ip(peer);
    }
    let lines: Vec<String> = forwarded_for.iter().map(|line| String::from_utf8_lossy(line).into_owned()).collect();
    let hops: Vec<&str> = lines.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|h| !h.is_empty()).collect();
    // From the proxy closest to us backwards: the first hop that is not a
    // trusted proxy. An unreadable hop is never taken for a proxy, so the
    // client's own leading hops can never choose its bucket.
    for hop in hops.iter().rev() {
        match read_hop(hop) {
            Some(ip) if is_trusted(&ip) => continue,
            Some(ip) => return Origin::Ip(ip),
            None => return Origin::Unreadable((*hop).to_owned()),
        }
    }
    // Only trusted proxies on the way: the farthest one is the client.
    hops.first().and_then(|h| read_hop(h)).map_or(Origin::Ip(peer), Origin::Ip)
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied() else {
            return Ok(ClientAddr(None));
        };
        let forwarded: Vec<&[u8]> = parts.headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()).collect();
        Ok(ClientAddr(Some(client_origin(peer.ip(), &forwarded, &state.settings.trusted_proxies))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn origin(peer: &str, xff: &[&str], trusted: &[&str]) -> Origin {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let lines: Vec<&[u8]> = xff.iter().map(|l| l.as_bytes()).collect();
        client_origin(ip(peer), &lines, &trusted)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(origin("203.0.113.9", &["1.2.3.4"], &["10.0.0.0/8"]), Origin::Ip(ip("203.0.113.9")));
    }

    #[test]
    fn behind_trusted_proxies_the_last_untrusted_hop_is_the_client() {
        let xff = ["6.6.6.6, 198.51.100.7", "10.1.1.1"];
        assert_eq!(origin("10.0.0.2", &xff, &["10.0.0.0/8"]), Origin::Ip(ip("198.51.100.7")));
    }

    #[test]
    fn a_trusted_peer_without_forwarding_is_the_client() {
        assert_eq!(origin("127.0.0.1", &[], &["127.0.0.1/32"]), Origin::Ip(ip("127.0.0.1")));
    }

    #[test]
    fn hops_with_ports_are_read() {
        let trusted = ["10.0.0.0/8"];
        for hop in ["198.51.100.7:4711", "198.51.100.7"] {
            let xff = format!("6.6.6.6, {hop}, 10.1.1.1:443");
            assert_eq!(origin("10.0.0.2", &[&xff], &trusted), Origin::Ip(ip("198.51.100.7")), "{hop}");
        }
        for hop in ["[2001:db8::7]:4711", "[2001:db8::7]", "2001:db8::7"] {
            let xff = format!("6.6.6.6, {hop}");
            assert_eq!(origin("10.0.0.2", &[&xff], &trusted), Origin::Ip(ip("2001:db8::7")), "{hop}");
        }
    }

    #[test]
    fn a_mapped_proxy_matches_its_ipv4_range() {
        let xff = ["198.51.100.7, ::ffff:10.1.1.1"];
        assert_eq!(origin("::ffff:10.0.0.2", &xff, &["10.0.0.0/8"]), Origin::Ip(ip("198.51.100.7")));
        assert_eq!(
            origin("10.0.0.2", &["::ffff:198.51.100.7"], &["10.0.0.0/8"]),
            Origin::Ip(ip("198.51.100.7")),
            "a mapped client is its IPv4 address"
        );
    }

    #[test]
    fn an_unreadable_hop_is_the_client_never_a_proxy() {
        let trusted = ["10.0.0.0/8"];
        for bad in ["unknown", "_hidden", "198.51.100.7:99999", "1.2.3.4.5", "ü.1.2.3"] {
            let xff = format!("10.9.9.9, {bad}, 10.1.1.1");
            assert_eq!(origin("10.0.0.2", &[&xff], &trusted), Origin::Unreadable(bad.to_owned()), "{bad}");
        }
    }

    #[test]
    fn a_line_with_a_non_ascii_byte_is_still_read() {
        let raw: Vec<u8> = [&b"6.6.6.6, 198.51.100.7, "[..], &[0xff], &b", 10.1.1.1"[..]].concat();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let got = client_origin(ip("10.0.0.2"), &[&raw], &trusted);
        assert!(matches!(got, Origin::Unreadable(_)), "the hop after the client's own is the odd byte: {got:?}");
        let raw: Vec<u8> = [&[0xff], &b", 198.51.100.7"[..]].concat();
        assert_eq!(client_origin(ip("10.0.0.2"), &[&raw], &trusted), Origin::Ip(ip("198.51.100.7")));
    }
}
