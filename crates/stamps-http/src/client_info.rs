//! Who is at the other end of a request: the client's address and whether
//! it reached us over HTTPS, taking `X-Forwarded-For` and
//! `X-Forwarded-Proto` from trusted proxies only.
//!
//! One rule for both headers. The TCP peer is the client, and the
//! connection's own scheme is its scheme, unless the peer is a configured
//! trusted proxy. Then `X-Forwarded-For` is read from the right (the hop
//! nearest us) and trusted addresses are skipped: the first untrusted hop is
//! the client (if every hop is trusted, the leftmost one is). A client can
//! write anything at the left of the header; only what trusted proxies
//! appended is believed. `X-Forwarded-Proto` is read at the same position
//! from the right as the client's hop (each proxy appends the scheme it was
//! reached with), or its leftmost entry if it has fewer entries (a proxy
//! that sets it rather than appends).
//!
//! [`ClientInfo`] is what rate limiting ([`crate::Throttle`]) and
//! `require_https` ([`transport_security`]) both read.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::error::ApiError;
use stamps_config::TrustedProxies;

/// The header naming the client and the proxies a request went through.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The header naming the scheme a proxy was reached with.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The client of a request, as far as it can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address (IPv4-mapped IPv6 addresses as IPv4).
    pub ip: IpAddr,
    /// Whether the client reached us (or the first trusted proxy) over
    /// HTTPS.
    pub https: bool,
}

impl ClientInfo {
    /// Applies the rule of this module to a request's TCP peer (`None`,
    /// as on a Unix socket, counts as `0.0.0.0`), whether the connection
    /// is TLS, and its headers.
    pub fn resolve(
        peer: Option<IpAddr>,
        tls: bool,
        headers: &HeaderMap,
        trusted: &TrustedProxies,
    ) -> Self {
        let peer = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ip| ip.to_canonical());
        if !trusted.contains(peer) {
            return Self {
                ip: peer,
                https: tls,
            };
        }
        let hops = list(headers, &X_FORWARDED_FOR);
        let mut ip = peer;
        // How many hops, from the right, were taken.
        let mut depth = 0;
        for hop in hops.iter().rev() {
            let Some(hop) = parse_hop(hop) else { break };
            ip = hop;
            depth += 1;
            if !trusted.contains(hop) {
                break;
            }
        }
        let protos = list(headers, &X_FORWARDED_PROTO);
        let https = match protos.len() {
            0 => tls,
            n => {
                let from_right = depth.max(1) - 1;
                let index = n.saturating_sub(from_right + 1);
                protos
                    .get(index)
                    .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
            }
        };
        Self { ip, https }
    }

    /// The client of `req`, by the [`ClientPolicy`] registered on the app
    /// (with none: the TCP peer, and plain HTTP).
    pub fn of(req: &HttpRequest) -> Self {
        let peer = req.peer_addr().map(|addr| addr.ip());
        match req.app_data::<web::Data<ClientPolicy>>() {
            Some(policy) => Self::resolve(peer, policy.tls, req.headers(), &policy.trusted),
            None => Self::resolve(peer, false, req.headers(), &TrustedProxies::default()),
        }
    }
}

/// The comma-separated entries of every instance of a header, in order,
/// trimmed; an unreadable header counts as one unreadable entry.
fn list<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<&'a str> {
    headers
        .get_all(name)
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .collect()
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:80`, `[::1]:80`) or in brackets.
fn parse_hop(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

/// How the server is reached and what it demands of it: the trusted
/// proxies, whether the listener is TLS, `require_https`, and the HSTS
/// header of HTTPS responses. Register it as `web::Data<ClientPolicy>`;
/// [`transport_security`] enforces it.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    trusted: TrustedProxies,
    tls: bool,
    require_https: bool,
    hsts: HeaderValue,
}

impl ClientPolicy {
    /// A policy. `hsts_max_age` is the `max-age` of the
    /// `Strict-Transport-Security` header sent with responses to HTTPS
    /// requests.
    pub fn new(
        trusted: TrustedProxies,
        tls: bool,
        require_https: bool,
        hsts_max_age: Duration,
    ) -> Self {
        let hsts = HeaderValue::from_str(&format!("max-age={}", hsts_max_age.as_secs()))
            .unwrap_or(HeaderValue::from_static("max-age=31536000"));
        Self {
            trusted,
            tls,
            require_https,
            hsts,
        }
    }

    /// The trusted proxies.
    pub fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// Whether [`transport_security`] has anything to do: refuse plain
    /// HTTP, or send HSTS (over TLS, or when a trusted proxy may report
    /// HTTPS). Without it the middleware can be left out.
    pub fn needs_middleware(&self) -> bool {
        self.tls || self.require_https || !self.trusted.is_empty()
    }
}

/// Middleware (use with `actix_web::middleware::from_fn`, with a
/// `web::Data<ClientPolicy>` on the app): refuses plain-HTTP requests with
/// 403 `https_required` when `require_https` is set, and adds
/// `Strict-Transport-Security` to responses to HTTPS requests.
pub async fn transport_security<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(policy) = req.app_data::<web::Data<ClientPolicy>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let peer = req.peer_addr().map(|addr| addr.ip());
    let client = ClientInfo::resolve(peer, policy.tls, req.headers(), &policy.trusted);
    if policy.require_https && !client.https {
        let response = ApiError::HttpsRequired.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    if client.https {
        response
            .headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, policy.hsts.clone());
    }
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use stamps_config::parse_trusted_net;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_trusted_net(n).unwrap()).collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn resolve(peer: &str, tls: bool, pairs: &[(&str, &str)], nets: &[&str]) -> ClientInfo {
        ClientInfo::resolve(Some(ip(peer)), tls, &headers(pairs), &trusted(nets))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let got = resolve(
            "198.51.100.1",
            false,
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
            ],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            got,
            ClientInfo {
                ip: ip("198.51.100.1"),
                https: false
            }
        );
        // No trusted proxies at all: the same.
        let got = resolve("10.0.0.1", true, &[("x-forwarded-for", "1.2.3.4")], &[]);
        assert_eq!(
            got,
            ClientInfo {
                ip: ip("10.0.0.1"),
                https: true
            }
        );
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_hop() {
        let nets = ["10.0.0.0/8", "127.0.0.1"];
        // The client forged the leftmost entry; 198.51.100.7 is what our
        // proxy saw.
        let got = resolve(
            "127.0.0.1",
            false,
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")],
            &nets,
        );
        assert_eq!(got.ip, ip("198.51.100.7"));
        // Several header lines are one list.
        let got = resolve(
            "127.0.0.1",
            false,
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.7:4711"),
            ],
            &nets,
        );
        assert_eq!(got.ip, ip("198.51.100.7"));
        // Every hop trusted: the leftmost.
        let got = resolve(
            "127.0.0.1",
            false,
            &[("x-forwarded-for", "10.0.0.5, 10.0.0.6")],
            &nets,
        );
        assert_eq!(got.ip, ip("10.0.0.5"));
        // No header: the proxy itself.
        assert_eq!(resolve("127.0.0.1", false, &[], &nets).ip, ip("127.0.0.1"));
        // Garbage stops the walk at the last good hop.
        let got = resolve(
            "127.0.0.1",
            false,
            &[("x-forwarded-for", "198.51.100.7, junk, 10.0.0.9")],
            &nets,
        );
        assert_eq!(got.ip, ip("10.0.0.9"));
        // IPv6, bracketed, and IPv4-mapped forms.
        let got = resolve(
            "::ffff:127.0.0.1",
            false,
            &[("x-forwarded-for", "[2001:db8::1]:443")],
            &nets,
        );
        assert_eq!(got.ip, ip("2001:db8::1"));
    }

    #[test]
    fn forwarded_proto_is_read_at_the_clients_hop() {
        let nets = ["10.0.0.0/8"];
        // Appending proxies: client --https--> 10.0.0.2 --http--> 10.0.0.1 --> us.
        let got = resolve(
            "10.0.0.1",
            false,
            &[
                ("x-forwarded-for", "198.51.100.7, 10.0.0.2"),
                ("x-forwarded-proto", "https, http"),
            ],
            &nets,
        );
        assert_eq!(
            got,
            ClientInfo {
                ip: ip("198.51.100.7"),
                https: true
            }
        );
        // One proxy that sets the header: its value.
        let got = resolve(
            "10.0.0.1",
            false,
            &[
                ("x-forwarded-for", "198.51.100.7, 10.0.0.2"),
                ("x-forwarded-proto", "HTTPS"),
            ],
            &nets,
        );
        assert!(got.https);
        // A trusted proxy saying http over our TLS: http.
        let got = resolve("10.0.0.1", true, &[("x-forwarded-proto", "http")], &nets);
        assert!(!got.https);
        // No header from a trusted proxy: the connection's scheme.
        assert!(resolve("10.0.0.1", true, &[], &nets).https);
    }

    proptest! {
        /// Whatever an untrusted client writes in the headers, it is seen
        /// as itself; and behind a trusted proxy, it can never make itself
        /// look like a trusted address or hide behind one it did not pass.
        #[test]
        fn forged_headers_never_help_the_client(
            client in any::<[u8; 4]>(),
            forged in proptest::collection::vec("[0-9a-f.:, \\[\\]]{0,20}", 0..4),
            proto in "[a-zA-Z, ]{0,12}",
        ) {
            let client = IpAddr::from(client);
            let nets = trusted(&["127.0.0.0/8"]);
            prop_assume!(!nets.contains(client));
            let mut pairs: Vec<(&str, &str)> = forged.iter().map(|f| ("x-forwarded-for", f.as_str())).collect();
            pairs.push(("x-forwarded-proto", proto.as_str()));
            let direct = ClientInfo::resolve(Some(client), false, &headers(&pairs), &nets);
            prop_assert_eq!(direct, ClientInfo { ip: client, https: false });

            // Through our proxy, which appends what it saw.
            let seen = format!("{client}");
            pairs.push(("x-forwarded-for", seen.as_str()));
            let proxied = ClientInfo::resolve(Some(ip("127.0.0.1")), false, &headers(&pairs), &nets);
            prop_assert_eq!(proxied.ip, client);
        }
    }
}
