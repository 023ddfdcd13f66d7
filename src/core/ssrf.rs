//! The webhook SSRF guard, pure part: which hosts are allowed and which addresses are never
//! reachable. Resolution happens in the webhook provider, which calls [`HostPolicy::check_ip`]
//! on every address a name resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    entries: Vec<String>,
}

impl HostPolicy {
    pub fn new(allowed_hosts: &[String]) -> Self {
        HostPolicy {
            entries: allowed_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `host` (a name or an IP literal, without brackets) has an entry of its own,
    /// exact or by `*.suffix` pattern. `*` alone does not count as an explicit entry.
    pub fn explicitly_listed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.entries.iter().any(|e| {
            if e == &host {
                return true;
            }
            match e.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
                }
                None => false,
            }
        })
    }

    /// Whether a URL's host may be used at all (before resolution).
    pub fn check_host(&self, host: &str) -> Result<(), String> {
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = lower.parse::<IpAddr>() {
            return self.check_ip(&lower, ip);
        }
        if lower == "localhost" || lower.ends_with(".localhost") {
            return if self.explicitly_listed(&lower) {
                Ok(())
            } else {
                Err(format!(
                    "host `{host}` is a loopback name and is not in webhook.allowed_hosts"
                ))
            };
        }
        if lower == "metadata.google.internal" || lower == "metadata" {
            return Err(format!("host `{host}` is a cloud metadata service"));
        }
        if self.explicitly_listed(&lower) || self.entries.iter().any(|e| e == "*") {
            Ok(())
        } else {
            Err(format!("host `{host}` is not in webhook.allowed_hosts"))
        }
    }

    /// Whether an entry names `ip` itself or a range (`10.0.0.0/8`, `fd00::/8`) holding it.
    /// Names and name patterns never do.
    pub fn names_address(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.entries.iter().any(|e| match e.split_once('/') {
            None => e
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .is_ok_and(|a| canonical(a) == ip),
            Some((net, bits)) => match (net.parse::<IpAddr>(), bits.parse::<u8>()) {
                (Ok(net), Ok(bits)) => in_range(ip, canonical(net), bits),
                _ => false,
            },
        })
    }

    /// Whether an address `host` resolved to (or `host` itself, for a literal) may be
    /// connected to. Private and loopback addresses need an entry naming that address or
    /// its range: a name pattern such as `*.test` is not enough, whatever the name resolves
    /// to (DNS rebinding). Link-local and metadata addresses are never allowed.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), String> {
        let ip = canonical(ip);
        if never_reachable(ip) {
            return Err(format!(
                "address {ip} is link-local, metadata, multicast or unspecified and is never allowed"
            ));
        }
        if is_internal(ip) {
            return if self.names_address(ip) {
                Ok(())
            } else {
                Err(format!(
                    "`{host}` is at {ip}, a private or loopback address; add `{ip}` (or its range) to webhook.allowed_hosts to allow it"
                ))
            };
        }
        if self.explicitly_listed(host)
            || self.explicitly_listed(&ip.to_string())
            || self.entries.iter().any(|e| e == "*")
        {
            Ok(())
        } else {
            Err(format!("host `{host}` is not in webhook.allowed_hosts"))
        }
    }
}

fn in_range(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// IPv6 addresses that carry an IPv4 address are judged as that address: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002:AABB:CCDD::/48`).
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let tail =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // IPv4-compatible: 96 zero bits, then an address other than :: and ::1.
    if s[..6].iter().all(|x| *x == 0) && (s[6] != 0 || s[7] > 1) {
        return IpAddr::V4(tail(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0) {
        return IpAddr::V4(tail(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(tail(s[1], s[2]));
    }
    IpAddr::V6(v6)
}

fn never_reachable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_link_local()           // 169.254/16, incl. 169.254.169.254 metadata
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                || v4.octets()[0] >= 240 // 240/4 reserved
                || (v4.octets()[..3] == [192, 0, 0]) // 192.0.0/24 IETF protocol assignments
                || v4 == Ipv4Addr::new(100, 100, 100, 200) // Alibaba Cloud metadata
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link-local
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS metadata (IPv6)
        }
    }
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // 100.64/10 CGNAT
                || (v4.octets()[0] == 198 && (v4.octets()[1] & 0xfe) == 18) // 198.18/15
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (v6.segments()[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(h: &[&str]) -> HostPolicy {
        HostPolicy::new(&h.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn wildcard_allows_public_hosts_only() {
        let p = policy(&["*"]);
        assert!(p.check_host("hooks.example.com").is_ok());
        assert!(p.check_host("8.8.8.8").is_ok());
        for bad in [
            "127.0.0.1",
            "10.0.0.5",
            "192.168.1.1",
            "localhost",
            "169.254.169.254",
            "::1",
            "[::1]".trim_matches(['[', ']']),
            "0.0.0.0",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.100.100.200",
            "metadata.google.internal",
        ] {
            assert!(p.check_host(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn private_addresses_need_their_own_entry() {
        let p = policy(&["127.0.0.1", "*.corp.example", "localhost", "10.1.0.0/16"]);
        assert!(p.check_host("127.0.0.1").is_ok());
        assert!(p.check_host("localhost").is_ok());
        assert!(
            p.check_ip("localhost", "127.0.0.1".parse().unwrap())
                .is_ok()
        );
        assert!(
            p.check_ip("a.corp.example", "10.1.2.3".parse().unwrap())
                .is_ok(),
            "in a listed range"
        );
        assert!(
            p.check_ip("a.corp.example", "10.2.0.1".parse().unwrap())
                .is_err(),
            "a name pattern does not allow a private address outside the listed ranges"
        );
        assert!(
            p.check_host("corp.example").is_err(),
            "pattern needs a subdomain"
        );
        assert!(
            p.check_host("example.com").is_err(),
            "no wildcard, not listed"
        );
        assert!(
            p.check_ip("evil.example", "10.3.2.1".parse().unwrap())
                .is_err()
        );
    }

    #[test]
    fn link_local_and_metadata_are_never_allowed_even_when_listed() {
        let p = policy(&["169.254.169.254", "*"]);
        assert!(p.check_host("169.254.169.254").is_err());
        assert!(
            p.check_ip("rebind.example", "169.254.169.254".parse().unwrap())
                .is_err()
        );
        assert!(
            p.check_ip("rebind.example", "::ffff:169.254.169.254".parse().unwrap())
                .is_err()
        );
    }

    /// A name matching a pattern but resolving to loopback or private addresses (also after
    /// a rebind) is refused unless the address itself is listed.
    #[test]
    fn names_that_resolve_inside_need_the_address_listed() {
        let p = policy(&["*.test", "*"]);
        for ip in [
            "127.0.0.2",
            "::1",
            "10.0.0.1",
            "::ffff:127.0.0.1",
            "fd00::5",
        ] {
            assert!(
                p.check_ip("rebind.test", ip.parse().unwrap()).is_err(),
                "{ip} must be refused"
            );
        }
        assert!(
            p.check_ip("rebind.test", "93.184.216.34".parse().unwrap())
                .is_ok()
        );
        let p = policy(&["*.test", "127.0.0.0/8", "[::1]"]);
        assert!(p.check_ip("a.test", "127.0.0.2".parse().unwrap()).is_ok());
        assert!(p.check_ip("a.test", "::1".parse().unwrap()).is_ok());
        assert!(p.check_ip("a.test", "10.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn ranges_are_matched_by_their_prefix() {
        let p = policy(&["192.168.4.0/22", "fd12:3456::/32", "10.0.0.0/0x"]);
        assert!(p.names_address("192.168.7.255".parse().unwrap()));
        assert!(!p.names_address("192.168.8.0".parse().unwrap()));
        assert!(p.names_address("fd12:3456:1::1".parse().unwrap()));
        assert!(!p.names_address("fd12:3457::1".parse().unwrap()));
        assert!(
            !p.names_address("10.0.0.1".parse().unwrap()),
            "a malformed range names nothing"
        );
        let all = policy(&["0.0.0.0/0"]);
        assert!(all.names_address("10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn ipv6_forms_that_carry_ipv4_are_judged_as_it() {
        let p = policy(&["*"]);
        for bad in [
            "64:ff9b::7f00:1",  // NAT64 of 127.0.0.1
            "64:ff9b::a00:1",   // NAT64 of 10.0.0.1
            "2002:7f00:1::1",   // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::", // 6to4 of 169.254.169.254
            "::7f00:1",         // IPv4-compatible 127.0.0.1
            "::a00:5",          // IPv4-compatible 10.0.0.5
            "fec0::1",          // site-local
            "240.0.0.1",
            "255.255.255.254",
            "192.0.0.8",
        ] {
            assert!(p.check_host(bad).is_err(), "{bad} must be refused");
        }
        assert!(
            p.check_host("64:ff9b::5db8:d822").is_ok(),
            "NAT64 of a public address"
        );
        assert!(
            p.check_host("2002:5db8:d822::1").is_ok(),
            "6to4 of a public address"
        );
        // A listed private address is allowed in its embedded forms too.
        let p = policy(&["10.0.0.1"]);
        assert!(p.check_ip("h", "64:ff9b::a00:1".parse().unwrap()).is_ok());
    }
}
