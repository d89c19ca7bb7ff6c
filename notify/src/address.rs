//! Where a webhook may be sent: an absolute `http` or `https` URL without credentials, and,
//! unless `webhooks.allow_private_addresses` says otherwise, only to addresses of the
//! public internet. The check is made on the URL when a subscription is added, and on
//! every address its name resolves to when a message is sent (a name may change what it
//! points to after the subscription was made).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// The longest URL a subscription may have.
pub const MAX_URL: usize = 2048;

/// The URL a subscription may send to, or why not.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, String> {
    if url.len() > MAX_URL {
        return Err(format!("a webhook URL has at most {MAX_URL} characters"));
    }
    // A URL parser drops tabs and line breaks without a word; the caller is told instead.
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err("a webhook URL has no spaces or control characters (line breaks, tabs)".into());
    }
    let parsed = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "a webhook URL is http or https, not {}",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "a webhook URL carries no user name or password: the signature authenticates the hub"
                .into(),
        );
    }
    if parsed.fragment().is_some() {
        return Err("a webhook URL has no fragment (#...)".into());
    }
    if parsed.port() == Some(0) {
        return Err("a webhook URL's port is 1 to 65535".into());
    }
    let ip = match parsed.host() {
        None => return Err("a webhook URL names a host".into()),
        Some(Host::Ipv4(a)) => Some(IpAddr::V4(a)),
        Some(Host::Ipv6(a)) => Some(IpAddr::V6(a)),
        Some(Host::Domain(d)) if is_localhost(d) => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Some(Host::Domain(_)) => None,
    };
    if let Some(ip) = ip.filter(|ip| !allow_private && !public(*ip)) {
        return Err(format!(
            "{ip} is not a public internet address; webhooks go there only when \
             webhooks.allow_private_addresses is set"
        ));
    }
    Ok(parsed)
}

/// `localhost` and its subdomains, with or without the final dot.
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether `ip` is an address of the public internet: not loopback, private, link-local
/// (cloud metadata services live there), shared (carrier-grade NAT), documentation,
/// benchmarking, multicast, broadcast or unspecified.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => public_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(a),
        },
    }
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [x, y, z, _] = a.octets();
    !(a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || x == 0
        || (x == 100 && (64..128).contains(&y))
        || (x == 198 && (18..20).contains(&y))
        || (x == 192 && y == 0 && z == 0)
        || (x == 192 && y == 88 && z == 99)
        || x >= 240)
}

fn public_v6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    // Addresses that carry an IPv4 address reach it: judged by it.
    if s[..6] == [0; 6] {
        // IPv4-compatible (::a.b.c.d), deprecated.
        return !a.is_loopback() && !a.is_unspecified() && public_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64 (64:ff9b::/96).
        return public_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 6to4 (2002::/16).
        return public_v4(embedded(s[1], s[2]));
    }
    if s[..4] == [0, 0, 0, 0] && s[4] == 0xffff && s[5] == 0 {
        // IPv4-translated (::ffff:0:a.b.c.d).
        return public_v4(embedded(s[6], s[7]));
    }
    !(a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // Discard-only (100::/64).
        || s[..4] == [0x100, 0, 0, 0]
        // IETF protocol assignments (2001::/23: Teredo, benchmarking, ...) and documentation.
        || (s[0] == 0x2001 && s[1] < 0x200)
        || (s[0] == 0x2001 && s[1] == 0x0db8))
}

/// Refuses a URL whose host name resolves only to addresses webhooks may not reach (a
/// name that does not resolve now is taken: it is checked again at every attempt).
pub async fn check_resolved(url: &Url, allow_private: bool) -> Result<(), String> {
    let Some(Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    if allow_private {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let Ok(found) = tokio::net::lookup_host((name, port)).await else {
        return Ok(());
    };
    let all: Vec<IpAddr> = found.map(|a| a.ip()).collect();
    if !all.is_empty() && !all.iter().any(|ip| public(*ip)) {
        return Err(format!(
            "{name} resolves to {}, not a public internet address; webhooks go there only \
             when webhooks.allow_private_addresses is set",
            all.iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Names resolved by the system, keeping only the addresses webhooks may reach.
#[derive(Debug, Clone, Copy)]
pub struct Resolver {
    pub allow_private: bool,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| allow_private || public(a.ip()))
                .collect();
            if kept.is_empty() && !all.is_empty() {
                return Err(format!(
                    "{host} resolves only to addresses that are not public ({}); webhooks go \
                     there only when webhooks.allow_private_addresses is set",
                    all.iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .into());
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

impl Resolver {
    pub fn shared(allow_private: bool) -> Arc<Resolver> {
        Arc::new(Resolver { allow_private })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_reached_unless_allowed() {
        for ok in [
            "https://hooks.example.org/cityhub",
            "http://93.184.216.34:8080/in",
            "https://[2606:4700::1111]/x?y=1",
            "https://[2002:5db8:d822::1]/",
            "http://[64:ff9b::5db8:d822]/",
        ] {
            assert!(check_url(ok, false).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://127.0.0.1:5432/", "not a public"),
            ("http://localhost:8080/", "not a public"),
            ("http://api.localhost/", "not a public"),
            ("http://10.1.2.3/", "not a public"),
            ("http://169.254.169.254/latest/meta-data", "not a public"),
            ("http://100.64.0.1/", "not a public"),
            ("http://0.0.0.0/", "not a public"),
            ("http://[::1]/", "not a public"),
            ("http://[fd00::1]/", "not a public"),
            ("http://[fe80::1]/", "not a public"),
            ("http://[::127.0.0.1]/", "not a public"),
            ("http://[::ffff:0:127.0.0.1]/", "not a public"),
            ("http://[64:ff9b::127.0.0.1]/", "not a public"),
            ("http://[64:ff9b::a9fe:a9fe]/", "not a public"),
            ("http://[2002:7f00:1::]/", "not a public"),
            ("http://[100::1]/", "not a public"),
            ("http://[2001::1]/", "not a public"),
            ("http://192.0.0.8/", "not a public"),
            ("http://192.88.99.1/", "not a public"),
            ("http://93.184.216.34:0/", "port is 1 to 65535"),
            (
                "https://example.org/x\r\nX-Injected: 1",
                "control characters",
            ),
            ("https://example.org/a b", "no spaces"),
            ("http://[::ffff:127.0.0.1]/", "not a public"),
            ("ftp://example.org/", "http or https"),
            ("file:///etc/passwd", "http or https"),
            ("https://user:pw@example.org/", "no user name"),
            ("https://example.org/#frag", "no fragment"),
            ("example.org/hook", "not a URL"),
            ("", "not a URL"),
        ] {
            let e = check_url(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(check_url("http://127.0.0.1:5432/", true).is_ok());
    }

    #[tokio::test]
    async fn a_name_of_this_machine_is_refused_when_it_resolves_here() {
        assert!(check_url("http://localhost.:8080/", false).is_err());
        // A name, resolved: `localhost` is loopback wherever the tests run.
        let url = Url::parse("http://localhost:8080/").unwrap();
        let e = check_resolved(&url, false).await.unwrap_err();
        assert!(e.contains("not a public internet address"), "{e}");
        assert_eq!(check_resolved(&url, true).await, Ok(()));
    }

    #[test]
    fn long_urls_are_refused() {
        let long = format!("https://example.org/{}", "a".repeat(MAX_URL));
        assert!(check_url(&long, false).unwrap_err().contains("at most"));
    }
}
