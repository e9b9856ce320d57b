//! Redirect URI rules at registration (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §4.1).
//!
//! Registered URIs are kept byte for byte as given; the authorization endpoint compares
//! them by exact string match, so nothing here normalises.

use url::{Host, Url};

pub const MAX_URI_LEN: usize = 2000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("{0:?} is not an absolute URI")]
    NotAbsolute(String),
    #[error("{0:?} has a fragment; RFC 6749 §3.1.2 forbids fragments in redirect URIs")]
    Fragment(String),
    #[error("{0:?} uses plain http with a host that is not loopback; use https (http is allowed only for 127.0.0.1, [::1] and localhost)")]
    InsecureHttp(String),
    #[error("{0:?} uses the scheme {1:?}, which is not allowed here")]
    Scheme(String, String),
    #[error("{0:?} carries user credentials, which are not allowed")]
    Credentials(String),
    #[error("{0:?} contains spaces or control characters")]
    Characters(String),
    #[error("URI is longer than {MAX_URI_LEN} characters")]
    TooLong,
    #[error("{0:?} is not an origin: write exactly scheme://host[:port], lower case, without path, query, wildcard or default port")]
    NotOrigin(String),
}

/// Schemes that could run code or read local data in a user agent.
const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "about", "blob", "filesystem"];

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn parse_absolute(raw: &str) -> Result<Url, UriError> {
    if raw.len() > MAX_URI_LEN {
        return Err(UriError::TooLong);
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UriError::Characters(raw.into()));
    }
    let url = Url::parse(raw).map_err(|_| UriError::NotAbsolute(raw.into()))?;
    if raw.contains('#') {
        return Err(UriError::Fragment(raw.into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UriError::Credentials(raw.into()));
    }
    Ok(url)
}

/// https anywhere; http only on loopback.
fn check_web(raw: &str, url: &Url) -> Result<(), UriError> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(UriError::InsecureHttp(raw.into())),
        other => Err(UriError::Scheme(raw.into(), other.into())),
    }
}

/// A redirect URI (or post-logout redirect URI): https; http on loopback (RFC 8252
/// §7.3); or a private-use scheme in reverse-domain form for native apps (RFC 8252
/// §7.1, e.g. `com.example.app:/callback`).
pub fn validate_redirect_uri(raw: &str) -> Result<(), UriError> {
    let url = parse_absolute(raw)?;
    match url.scheme() {
        "http" | "https" => check_web(raw, &url),
        s if FORBIDDEN_SCHEMES.contains(&s) || !s.contains('.') => Err(UriError::Scheme(raw.into(), s.into())),
        _ => Ok(()),
    }
}

/// A URI the server itself calls or a browser frame loads (front/back-channel logout).
pub fn validate_web_uri(raw: &str) -> Result<(), UriError> {
    let url = parse_absolute(raw)?;
    check_web(raw, &url)
}

/// A link shown to people (logo, home page, policy, terms): http or https.
pub fn validate_link_uri(raw: &str) -> Result<(), UriError> {
    let url = parse_absolute(raw)?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        other => Err(UriError::Scheme(raw.into(), other.into())),
    }
}

/// An origin a browser app runs at (the `Origin` header it sends): exactly
/// `scheme://host[:port]`, https or (loopback only) http, with no path, query, user or
/// wildcard; written as browsers serialise it (lower-case host, no default port).
pub fn validate_origin(raw: &str) -> Result<(), UriError> {
    let url = parse_absolute(raw)?;
    check_web(raw, &url)?;
    if raw.contains('*') || url.origin().ascii_serialization() != raw {
        return Err(UriError::NotOrigin(raw.into()));
    }
    Ok(())
}

/// The origin of an http(s) URI (what a browser at that page sends as `Origin`);
/// `None` for other schemes (native apps have no web origin).
pub fn origin_of(uri: &str) -> Option<String> {
    let url = Url::parse(uri).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for ok in ["https://app.example", "https://app.example:8443", "http://127.0.0.1:5173", "http://localhost:3000"]
        {
            assert_eq!(validate_origin(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("https://app.example/", "a path"),
            ("https://app.example/spa", "a path"),
            ("https://app.example?x=1", "a query"),
            ("https://*.example", "a wildcard"),
            ("https://App.Example", "upper case"),
            ("https://app.example:443", "the default port"),
            ("http://app.example", "plain http off loopback"),
            ("app.example", "no scheme"),
            ("vn.example.app://cb", "not a web origin"),
            ("https://user@app.example", "credentials"),
        ] {
            assert!(validate_origin(bad).is_err(), "{bad}: {why}");
        }
        assert_eq!(origin_of("https://App.example:443/cb?x").as_deref(), Some("https://app.example"));
        assert_eq!(origin_of("http://127.0.0.1:9/callback").as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(origin_of("vn.example.app:/callback"), None);
    }

    #[test]
    fn accepted() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com/cb?tenant=1",
            "http://127.0.0.1/callback",
            "http://127.0.0.1:8765/cb",
            "http://[::1]:9000/cb",
            "http://localhost:3000/cb",
            "com.example.app:/oauth2redirect",
            "vn.hutech.sso://callback",
        ] {
            assert_eq!(validate_redirect_uri(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refused() {
        type Expect = fn(&UriError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("/callback", |e| matches!(e, UriError::NotAbsolute(_))),
            ("app.example.com/cb", |e| matches!(e, UriError::NotAbsolute(_))),
            ("https://app.example.com/cb#x", |e| matches!(e, UriError::Fragment(_))),
            ("https://app.example.com/cb#", |e| matches!(e, UriError::Fragment(_))),
            ("http://app.example.com/cb", |e| matches!(e, UriError::InsecureHttp(_))),
            ("http://10.0.0.1/cb", |e| matches!(e, UriError::InsecureHttp(_))),
            ("javascript:alert(1)", |e| matches!(e, UriError::Scheme(..))),
            ("data:text/html,hi", |e| matches!(e, UriError::Scheme(..))),
            ("myapp:/cb", |e| matches!(e, UriError::Scheme(..))),
            ("https://user:pw@app.example.com/cb", |e| matches!(e, UriError::Credentials(_))),
            ("https://app.example.com/a b", |e| matches!(e, UriError::Characters(_))),
        ];
        for (uri, is) in cases {
            let err = validate_redirect_uri(uri).unwrap_err();
            assert!(is(&err), "{uri}: {err:?}");
        }
        assert_eq!(
            validate_redirect_uri(&format!("https://a.example/{}", "x".repeat(MAX_URI_LEN))),
            Err(UriError::TooLong)
        );
    }

    #[test]
    fn web_and_link_uris() {
        assert!(validate_web_uri("https://rp.example/logout").is_ok());
        assert!(validate_web_uri("com.example.app:/logout").is_err());
        assert!(validate_web_uri("http://rp.example/logout").is_err());
        assert!(validate_link_uri("http://rp.example/logo.png").is_ok());
        assert!(validate_link_uri("javascript:x").is_err());
    }
}
