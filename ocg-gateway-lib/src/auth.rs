//! Tokens, the login cookie and the rate limit on failed attempts.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, header};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Name of the login cookie.
pub const COOKIE: &str = "ocg_session";
const FAILURES_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);

pub use ocg_core::config::constant_time_eq;

/// The gateway's credentials and failure counters.
#[derive(Debug)]
pub struct Auth {
    token: String,
    cookie_value: String,
    trusted_proxies: Vec<IpAddr>,
    failures: Mutex<HashMap<(CredentialKind, IpAddr), (Instant, u32)>>,
}

/// Which credential failed. Each kind has its own budget of failures per
/// client, so a misconfigured webhook sender does not lock the UI out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// The UI token (bearer, `X-OCG-UI-Token`, or the login cookie).
    Ui,
    /// The token typed into the login form.
    Login,
    /// The webhooks token.
    Hooks,
}

/// The unit failures are counted per: every loopback address is one client
/// (127.0.0.2 is the same machine as 127.0.0.1), an IPv4 address mapped into
/// IPv6 is that IPv4 address, and an IPv6 client is its /64.
pub fn client_bucket(address: IpAddr) -> IpAddr {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    };
    match address {
        a if a.is_loopback() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
        v4 => v4,
    }
}

/// Why a request is not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No valid credential.
    Unauthorized,
    /// Too many failed attempts from this address.
    RateLimited,
}

impl Auth {
    /// Credentials for `token`; `X-Forwarded-For` is believed only from
    /// `trusted_proxies`.
    pub fn new(token: String, trusted_proxies: Vec<IpAddr>) -> Self {
        let cookie_value = cookie_value(&token);
        Auth {
            token,
            cookie_value,
            trusted_proxies,
            failures: Mutex::default(),
        }
    }

    /// The `Set-Cookie` value issued at login.
    pub fn login_cookie(&self, secure: bool) -> String {
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000{}",
            self.cookie_value,
            if secure { "; Secure" } else { "" }
        )
    }

    /// Whether `token` is the UI token.
    pub fn token_matches(&self, token: &str) -> bool {
        constant_time_eq(token.as_bytes(), self.token.as_bytes())
    }

    /// Whether the request carries a valid token header or cookie.
    pub fn headers_authorized(&self, headers: &HeaderMap) -> bool {
        self.credential(headers) == Some(true)
    }

    /// `None` without any credential, else whether the one presented is valid.
    fn credential(&self, headers: &HeaderMap) -> Option<bool> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let explicit = headers.get("x-ocg-ui-token").and_then(|v| v.to_str().ok());
        if let Some(token) = bearer.or(explicit) {
            return Some(self.token_matches(token.trim()));
        }
        cookie(headers, COOKIE)
            .map(|value| constant_time_eq(value.as_bytes(), self.cookie_value.as_bytes()))
    }

    /// Check a request: authorized, or why not. A valid credential is
    /// always let in, whatever failed before; a wrong one counts as a failed
    /// attempt; none at all (a browser before login) does not.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), Denied> {
        match self.credential(request.headers()) {
            Some(true) => Ok(()),
            Some(false) => Err(self.refuse(CredentialKind::Ui, self.client_address(request))),
            None => Err(Denied::Unauthorized),
        }
    }

    /// A wrong credential of `kind` from `client`: counted, and refused as
    /// rate-limited once the client used up its failures for that kind.
    pub fn refuse(&self, kind: CredentialKind, client: IpAddr) -> Denied {
        if self.is_limited(kind, client) {
            return Denied::RateLimited;
        }
        self.record_failure(kind, client);
        Denied::Unauthorized
    }

    /// The client's address: the TCP peer, or the first `X-Forwarded-For`
    /// hop when the peer is a trusted proxy.
    pub fn client_address<B>(&self, request: &Request<B>) -> IpAddr {
        self.client_of(request.extensions(), request.headers())
    }

    /// [`client_address`](Self::client_address) from a request's parts.
    pub fn client_of(&self, extensions: &axum::http::Extensions, headers: &HeaderMap) -> IpAddr {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(peer)
    }

    /// Whether `client` used up its failed attempts of `kind`.
    pub fn is_limited(&self, kind: CredentialKind, client: IpAddr) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures
            .get(&(kind, client_bucket(client)))
            .is_some_and(|(since, count)| since.elapsed() < WINDOW && *count >= FAILURES_PER_WINDOW)
    }

    /// Count a failed attempt of `kind` by `client`.
    pub fn record_failure(&self, kind: CredentialKind, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() > 10_000 {
            failures.retain(|_, (since, _)| since.elapsed() < WINDOW);
        }
        let bucket = client_bucket(client);
        let entry = failures
            .entry((kind, bucket))
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        tracing::warn!(client = %bucket, ?kind, failures = entry.1, "failed authentication");
    }
}

/// The cookie value for `token`: an HMAC, so the cookie never reveals the
/// token and stops working when the token rotates.
fn cookie_value(token: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(token.as_bytes()) {
        Ok(mut mac) => {
            mac.update(b"ocg-session");
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        // HMAC takes keys of any length; this branch is unreachable.
        Err(_) => String::new(),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::get("/api/me");
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn tokens_headers_and_cookies() {
        let token = ocg_core::config::Secret::generate()
            .unwrap()
            .expose()
            .to_owned();
        assert_eq!(token.len(), 64);
        assert_ne!(
            token,
            ocg_core::config::Secret::generate().unwrap().expose()
        );
        let auth = Auth::new(token.clone(), vec![]);
        assert!(
            auth.check(&request(&[("authorization", &format!("Bearer {token}"))]))
                .is_ok()
        );
        assert!(auth.check(&request(&[("x-ocg-ui-token", &token)])).is_ok());
        let cookie = auth.login_cookie(false);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(
            !cookie.contains(&token),
            "the cookie does not reveal the token"
        );
        let value = cookie.split(';').next().unwrap();
        assert!(
            auth.check(&request(&[("cookie", &format!("a=b; {value}"))]))
                .is_ok()
        );
        assert_eq!(auth.check(&request(&[])), Err(Denied::Unauthorized));
        assert_eq!(
            auth.check(&request(&[("authorization", "Bearer nope")])),
            Err(Denied::Unauthorized)
        );
        // Another token's cookie does not open the door.
        let other = Auth::new("other".into(), vec![]);
        let other_cookie = other.login_cookie(false);
        let other_value = other_cookie.split(';').next().unwrap();
        assert!(auth.check(&request(&[("cookie", other_value)])).is_err());
    }

    fn from(request: Request<Body>, peer: &str) -> Request<Body> {
        let mut request = request;
        let peer: SocketAddr = peer.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    }

    #[test]
    fn failures_are_limited_per_client_and_kind_and_never_refuse_a_valid_token() {
        let auth = Auth::new("t".into(), vec![]);
        let wrong = || request(&[("authorization", "Bearer wrong")]);
        for _ in 0..3 * FAILURES_PER_WINDOW {
            assert_eq!(
                auth.check(&from(request(&[]), "127.0.0.1:1")),
                Err(Denied::Unauthorized),
                "no credential: not counted"
            );
        }
        for _ in 0..FAILURES_PER_WINDOW {
            assert_eq!(
                auth.check(&from(wrong(), "127.0.0.1:1")),
                Err(Denied::Unauthorized)
            );
        }
        // Another loopback address is the same machine, the same client.
        for peer in [
            "127.0.0.1:2",
            "127.0.0.2:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert_eq!(
                auth.check(&from(wrong(), peer)),
                Err(Denied::RateLimited),
                "{peer}"
            );
        }
        assert_eq!(
            auth.check(&from(
                request(&[("authorization", "Bearer t")]),
                "127.0.0.3:9"
            )),
            Ok(()),
            "a valid token is never refused"
        );
        // Other kinds and other clients have budgets of their own.
        assert_eq!(
            auth.refuse(CredentialKind::Hooks, "127.0.0.1".parse().unwrap()),
            Denied::Unauthorized
        );
        assert_eq!(
            auth.check(&from(wrong(), "192.0.2.7:1")),
            Err(Denied::Unauthorized)
        );
        // An IPv6 client is its /64.
        for _ in 0..FAILURES_PER_WINDOW {
            auth.record_failure(CredentialKind::Login, "2001:db8::1".parse().unwrap());
        }
        assert!(auth.is_limited(CredentialKind::Login, "2001:db8::ffff".parse().unwrap()));
        assert!(!auth.is_limited(CredentialKind::Login, "2001:db8:0:1::1".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut req = request(&[("x-forwarded-for", "203.0.113.9, 10.0.0.1")]);
        req.extensions_mut().insert(ConnectInfo(proxy));
        let untrusted = Auth::new("t".into(), vec![]);
        assert_eq!(untrusted.client_address(&req), proxy.ip());
        let trusted = Auth::new("t".into(), vec![proxy.ip()]);
        assert_eq!(
            trusted.client_address(&req),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }
}
