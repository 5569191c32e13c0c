//! The trusted proxies (`proxy.trusted`): networks whose peers may name
//! their clients. A value of the configuration, read by the HTTP layer's
//! client-address rule and by its connection cap.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks whose peers may speak for their clients through
/// `X-Forwarded-For` and `X-Forwarded-Proto` (`proxy.trusted`).
///
/// ```
/// use stamps_config::{TrustedProxies, parse_trusted_net};
///
/// let proxies = TrustedProxies::new(vec![parse_trusted_net("10.0.0.0/8").unwrap()]);
/// assert!(proxies.contains("10.1.2.3".parse().unwrap()));
/// assert!(proxies.contains("::ffff:10.1.2.3".parse().unwrap())); // IPv4-mapped
/// assert!(!proxies.contains("192.0.2.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Proxies in these networks are trusted.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// The networks, as configured.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// True when no proxy is trusted: the TCP peer is always the client.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// True when `ip` (an IPv4-mapped IPv6 address counts as IPv4) is in a
    /// trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

/// Parses one trusted network: a CIDR (`10.0.0.0/8`, `::1/128`) or a bare
/// address (one host). Host bits below the prefix are dropped.
///
/// ```
/// use stamps_config::parse_trusted_net;
///
/// assert_eq!(parse_trusted_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
/// assert_eq!(parse_trusted_net("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
/// assert!(parse_trusted_net("10.0.0.0/33").is_none());
/// ```
pub fn parse_trusted_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    match text.parse::<IpNet>() {
        Ok(net) => Some(net.trunc()),
        Err(_) => text.parse::<IpAddr>().ok().map(IpNet::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_nets_parse_cidrs_and_bare_addresses() {
        assert_eq!(
            parse_trusted_net(" 10.1.2.3/8 ").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_trusted_net("::1").unwrap().to_string(), "::1/128");
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0/8", "1.2.3.4/-1"] {
            assert!(parse_trusted_net(bad).is_none(), "{bad}");
        }
        let nets = TrustedProxies::new(vec![parse_trusted_net("10.0.0.0/8").unwrap()]);
        assert!(nets.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!nets.contains("11.0.0.0".parse().unwrap()));
    }
}
