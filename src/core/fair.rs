//! Fair sharing of the dispatcher's calls among endpoints whose address comes from the
//! message (webhooks): one dead or slow receiver holds only its own share, and a healthy
//! receiver alone may use whatever the others leave idle. Pure: the dispatcher passes in what
//! it counts.

/// The key under which a webhook target's health and concurrency are kept: its origin
/// (`scheme://host[:port]`, lowercase, default ports left out). `None` when `url` is not an
/// absolute http(s) URL.
pub fn origin(url: &str) -> Option<String> {
    // The dispatcher asks several times per delivery; parsing (IDNA included) is the cost,
    // and everything that decides the origin comes before the path. So answers are kept per
    // thread by that prefix, a few thousand at most.
    const KEPT: usize = 4096;
    thread_local! {
        static SEEN: std::cell::RefCell<std::collections::HashMap<String, Option<String>>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    let Some(prefix) = authority_prefix(url) else {
        return parse_origin(url);
    };
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        if let Some(o) = seen.get(prefix) {
            return o.clone();
        }
        let o = parse_origin(url);
        if seen.len() >= KEPT {
            seen.clear();
        }
        seen.insert(prefix.to_string(), o.clone());
        o
    })
}

/// `scheme://authority` of `url`: up to the first `/`, `\`, `?` or `#` after `://`.
fn authority_prefix(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    let end = url[start..]
        .find(['/', '\\', '?', '#'])
        .map_or(url.len(), |i| start + i);
    Some(&url[..end])
}

fn parse_origin(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    if !matches!(u.scheme(), "http" | "https") {
        return None;
    }
    let host = match u.host()? {
        url::Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => format!("[{ip}]"),
    };
    Some(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// What the dispatcher knows of one endpoint with calls in flight or work just claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub in_flight: usize,
    /// Its circuit is closed, its recent calls succeeded and were not slow.
    pub healthy: bool,
    /// Its circuit lets a call through now (closed, or a free probe slot).
    pub callable: bool,
}

/// The most calls one endpoint may have in flight while `active` endpoints (this one
/// included) have calls in flight. An unhealthy endpoint counts one party more, so that a
/// newcomer always finds free slots beside it.
pub fn share(concurrency: usize, active: usize, healthy: bool) -> usize {
    let parties = active.max(1) + usize::from(!healthy);
    (concurrency / parties).max(1)
}

/// Which pass of a claim round this is: the first gives every endpoint its fair share; the
/// second, run only when the first left slots free, lets healthy endpoints use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Fair,
    Spare,
}

/// Whether an endpoint with `load` may take one more call in `pass`.
pub fn may_take(load: Load, concurrency: usize, active: usize, pass: Pass) -> bool {
    if !load.callable {
        return false;
    }
    let fair = share(concurrency, active, load.healthy);
    match pass {
        Pass::Fair => load.in_flight < fair,
        Pass::Spare => load.healthy || load.in_flight < fair,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_ignore_path_case_and_default_ports() {
        assert_eq!(
            origin("https://Hooks.Example.com/a?b=c").as_deref(),
            Some("https://hooks.example.com")
        );
        assert_eq!(
            origin("http://hooks.example.com:80/x").as_deref(),
            Some("http://hooks.example.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:9000/hook").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            origin("http://[::1]:9000/").as_deref(),
            Some("http://[::1]:9000")
        );
        assert_eq!(
            origin("https://a.example.:8443/").as_deref(),
            Some("https://a.example:8443")
        );
        assert_eq!(origin("ftp://a.example/"), None);
        assert_eq!(origin("not a url"), None);
    }

    #[test]
    fn remembered_origins_are_the_parsed_ones() {
        for url in [
            "https://Hooks.Example.com/a?b=c",
            "https://hooks.example.com?x",
            "https://hooks.example.com#f",
            "http://user@h.example:8080\\path",
            "http://[::1]:9000/",
            "http://bad host/",
            "https://a.example.:8443",
        ] {
            let first = origin(url);
            assert_eq!(first, parse_origin(url), "{url}");
            assert_eq!(origin(url), first, "{url} a second time");
        }
        // Same authority, different paths: one answer.
        assert_eq!(
            origin("https://h.example/one"),
            origin("https://h.example/two?x=1")
        );
    }

    #[test]
    fn a_lone_endpoint_may_use_every_slot() {
        assert_eq!(share(64, 1, true), 64);
        assert_eq!(share(64, 0, true), 64);
    }

    #[test]
    fn an_unhealthy_endpoint_leaves_room_for_a_newcomer() {
        assert_eq!(share(64, 1, false), 32);
        assert_eq!(share(64, 3, false), 16);
        assert_eq!(share(1, 5, false), 1, "never below one");
    }

    #[test]
    fn every_case_of_may_take() {
        // Exhaustive over small numbers: the rules in words, checked for every combination.
        for concurrency in 1..=8usize {
            for active in 0..=5usize {
                for in_flight in 0..=9usize {
                    for healthy in [true, false] {
                        for callable in [true, false] {
                            let load = Load {
                                in_flight,
                                healthy,
                                callable,
                            };
                            let fair = share(concurrency, active, healthy);
                            let f = may_take(load, concurrency, active, Pass::Fair);
                            let s = may_take(load, concurrency, active, Pass::Spare);
                            if !callable {
                                assert!(!f && !s, "an open circuit takes nothing");
                                continue;
                            }
                            assert_eq!(f, in_flight < fair, "fair pass is the share");
                            if healthy {
                                assert!(s, "a healthy endpoint may use spare slots");
                            } else {
                                assert_eq!(s, f, "an unhealthy one never exceeds its share");
                            }
                        }
                    }
                }
            }
        }
    }
}
