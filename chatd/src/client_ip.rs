//! Where a request comes from: the one rule for the client's IP address, used by the pages (the
//! per-IP sign-in limit, the first table on sign-in) and the WebSocket upgrade (the first table
//! when a sender's page connects).
//!
//! The client is the TCP peer, except behind a reverse proxy on the same host (a loopback peer):
//! then it is the last `X-Forwarded-For` entry, the one that proxy appended. Earlier entries came
//! from the client and prove nothing; a header from a remote peer is ignored for the same reason.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{request::Parts, HeaderMap},
};

/// The client's IP address by the rule of the module doc, as an extractor. `None` when the
/// server was not started with connect info (some tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(client_ip(peer, &parts.headers)))
    }
}

/// The client's address given the TCP `peer` and the request's headers (the module doc's rule).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?;
    if !peer.is_loopback() {
        return Some(peer);
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    Some(forwarded.unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_for_counts_only_behind_a_local_proxy() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.7"),
        );
        let local: IpAddr = [127, 0, 0, 1].into();
        let remote: IpAddr = [192, 0, 2, 9].into();
        assert_eq!(client_ip(Some(local), &h), Some([203, 0, 113, 7].into()));
        assert_eq!(client_ip(Some(remote), &h), Some(remote));
        assert_eq!(client_ip(Some(local), &HeaderMap::new()), Some(local));
        assert_eq!(client_ip(None, &h), None);
    }

    #[test]
    fn a_forwarded_entry_that_is_no_address_falls_back_to_the_peer() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("unknown"));
        let local: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(client_ip(Some(local), &h), Some(local));
    }
}
