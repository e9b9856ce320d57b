//! The client's address behind reverse proxies (RFC 7239 `Forwarded`, and the
//! de-facto `X-Forwarded-For`), believed only from configured proxies.
//!
//! The chain of addresses is what the headers list, then the TCP peer. Walking it from
//! the right, every address that is a trusted proxy vouches for the one before it; the
//! first one that is not a trusted proxy is the client. Anything left of it was written
//! by the client itself and is ignored, so a client cannot choose its own address by
//! sending the header. A peer that is not a trusted proxy is the client, whatever it
//! sends.

pub use ipnet::IpNet;
use std::net::IpAddr;

/// Parses `203.0.113.0/24`, `2001:db8::/32` or a single address (a /32 or /128).
pub fn parse_proxy(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{t:?} is not an address or CIDR block such as 10.0.0.0/8 or ::1"))
}

fn trusted(address: IpAddr, proxies: &[IpNet]) -> bool {
    let address = canonical(address);
    proxies.iter().any(|p| p.contains(&address))
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, what a dual-stack socket reports)
/// are their IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// One node of a header: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`, optionally quoted. `None` for `unknown`, obfuscated names, garbage.
fn node(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = t.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    t.rsplit_once(':').and_then(|(ip, port)| port.bytes().all(|b| b.is_ascii_digit()).then(|| ip.parse().ok())?)
}

/// The `for=` nodes of `Forwarded` header values, in order (RFC 7239 §4).
fn forwarded_for(values: &[&str]) -> Vec<Option<IpAddr>> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| node(v))
            })
        })
        .map(Option::flatten)
        .collect()
}

/// The client's address: `peer` unless it is a trusted proxy (see the module docs).
/// `forwarded` are the `Forwarded` header values, `x_forwarded_for` those of
/// `X-Forwarded-For`; `Forwarded` wins when both are present.
pub fn client_address(peer: IpAddr, proxies: &[IpNet], forwarded: &[&str], x_forwarded_for: &[&str]) -> IpAddr {
    if !trusted(peer, proxies) {
        return canonical(peer);
    }
    let chain: Vec<Option<IpAddr>> = if !forwarded.is_empty() {
        forwarded_for(forwarded)
    } else {
        x_forwarded_for.iter().flat_map(|v| v.split(',')).map(node).collect()
    };
    let mut client = canonical(peer);
    for hop in chain.into_iter().rev() {
        // A node the proxy could not name: the proxy is the last address we can trust.
        let Some(hop) = hop else { return client };
        client = canonical(hop);
        if !trusted(hop, proxies) {
            return client;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let proxies = vec![parse_proxy("10.0.0.0/8").unwrap(), parse_proxy("127.0.0.1").unwrap()];
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            // An untrusted peer is the client, whatever it claims.
            ("198.51.100.9", &[], &["203.0.113.5"], "198.51.100.9"),
            ("198.51.100.9", &["for=203.0.113.5"], &[], "198.51.100.9"),
            // A trusted proxy vouches for the address before it.
            ("127.0.0.1", &[], &["203.0.113.5"], "203.0.113.5"),
            ("127.0.0.1", &[], &["203.0.113.5, 10.1.2.3"], "203.0.113.5"),
            // The rightmost untrusted address wins: the client's own prefix is ignored.
            ("127.0.0.1", &[], &["6.6.6.6, 203.0.113.5"], "203.0.113.5"),
            ("127.0.0.1", &[], &["6.6.6.6", "203.0.113.5"], "203.0.113.5"),
            ("127.0.0.1", &[], &["203.0.113.5:4711"], "203.0.113.5"),
            // Forwarded (RFC 7239), quoted IPv6 with a port, wins over X-Forwarded-For.
            ("10.0.0.2", &["for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https"], &["9.9.9.9"], "2001:db8::1"),
            ("10.0.0.2", &["For=192.0.2.43"], &[], "192.0.2.43"),
            // Nothing or nothing usable: the last trusted hop.
            ("127.0.0.1", &[], &[], "127.0.0.1"),
            ("127.0.0.1", &["for=unknown"], &[], "127.0.0.1"),
            ("127.0.0.1", &[], &["10.0.0.7"], "10.0.0.7"),
            ("127.0.0.1", &[], &["garbage, 10.0.0.7"], "10.0.0.7"),
            // A dual-stack socket's mapped address is the IPv4 one.
            ("::ffff:127.0.0.1", &[], &["203.0.113.5"], "203.0.113.5"),
            ("::ffff:198.51.100.9", &[], &["203.0.113.5"], "198.51.100.9"),
        ];
        for (peer, fwd, xff, want) in cases {
            assert_eq!(client_address(ip(peer), &proxies, fwd, xff), ip(want), "{peer} {fwd:?} {xff:?}");
        }
        assert_eq!(client_address(ip("127.0.0.1"), &[], &[], &["203.0.113.5"]), ip("127.0.0.1"), "none trusted");
    }

    #[test]
    fn proxies_are_addresses_or_blocks() {
        assert_eq!(parse_proxy(" 10.0.0.0/8 ").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_proxy("::1").unwrap().to_string(), "::1/128");
        assert!(parse_proxy("10.0.0.0/33").is_err());
        assert!(parse_proxy("proxy.example").is_err());
    }
}
