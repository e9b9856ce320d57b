//! What the server needs to know, already validated (the command line builds it from
//! the configuration file and the environment).

use khoa_core::forwarded::IpNet;
use khoa_core::jose::SigningAlgorithm;
use khoa_core::logout::DeliveryPolicy;
use khoa_core::throttle::{LoginThrottle, ThrottlePolicy};
use std::net::SocketAddr;
use std::time::Duration;

pub use khoa_core::client::Lifetimes;

/// How the login, consent and logout pages look (configuration, no rebuild).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branding {
    pub product_name: String,
    /// An absolute http(s) URL of a logo shown above every page.
    pub logo_url: Option<String>,
    /// `#rrggbb`, the colour of buttons and focus.
    pub primary_color: String,
}

impl Default for Branding {
    fn default() -> Self {
        Self { product_name: "khoa".into(), logo_url: None, primary_color: "#0b5fff".into() }
    }
}

/// What an access token is (PRODUCT: JWT by default, opaque selectable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessTokenFormat {
    /// RFC 9068 JWT (`typ: at+jwt`), signed with RS256.
    #[default]
    Jwt,
    /// A random 256-bit handle; only its SHA-256 is stored.
    Opaque,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// As configured, with its scheme and host in lower case (see [`normalise_issuer`]);
    /// `iss` of every token.
    pub issuer: String,
    pub listen: SocketAddr,
    /// Algorithms khoa keeps keys for; RS256 always among them.
    pub algorithms: Vec<SigningAlgorithm>,
    pub lifetimes: Lifetimes,
    /// How long a rotated key is published before it signs (seconds).
    pub key_prepublication: i64,
    /// How often each process looks for changes made elsewhere.
    pub watch_interval: Duration,
    /// Largest accepted request body (bytes).
    pub body_limit: usize,
    /// Longest time one request may take; also how long a graceful stop waits for the
    /// requests in flight.
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's line and headers; a slower
    /// one is disconnected (it cannot hold a connection open by trickling bytes).
    pub header_read_timeout: Duration,
    /// `Cache-Control: max-age` of discovery and JWKS (seconds). Kept below the
    /// pre-publication delay so caches learn a new key before it signs.
    pub metadata_max_age: u32,
    /// Added to token lifetimes when deciding how long a retired key stays published,
    /// for relying parties whose clocks run behind (seconds).
    pub clock_skew_leeway: i64,
    /// Login throttling: per account at an address, per address, per account.
    pub login_throttle: LoginThrottle,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` name the client's
    /// address (none by default: the TCP peer is the client).
    pub trusted_proxies: Vec<IpNet>,
    /// Where `/metrics` is served instead of the public listener, when set.
    pub metrics_listen: Option<SocketAddr>,
    /// The admin API's listener (`/admin/*`, health and metrics); none: no admin API.
    pub admin_listen: Option<SocketAddr>,
    /// How long audit events are kept (seconds).
    pub audit_retention: i64,
    /// Throttling of failed client authentications, per client.
    pub client_auth_throttle: ThrottlePolicy,
    /// Duplicates of a refresh token within this many seconds of its rotation get the
    /// same successor instead of revoking the family.
    pub refresh_grace: i64,
    pub access_token_format: AccessTokenFormat,
    /// Algorithm of JWT access tokens (RFC 9068 §2.1: RS256 unless configured).
    pub access_token_alg: SigningAlgorithm,
    /// How often the cleanup job runs.
    pub cleanup_interval: Duration,
    /// Rows one cleanup statement deletes at most.
    pub cleanup_batch: i64,
    /// Back-channel logout retries.
    pub backchannel: DeliveryPolicy,
    /// How often each process looks for due back-channel notifications.
    pub backchannel_poll: Duration,
    /// How long one back-channel notification may take.
    pub backchannel_timeout: Duration,
    pub branding: Branding,
    /// The organisation's scopes and the attributes each releases as claims.
    pub attribute_claims: khoa_core::tokens::AttributeClaims,
    /// Where mail goes (password reset, email verification); none: no mail, and no
    /// "Forgot password?" link.
    pub smtp: Option<crate::app::mail::SmtpSettings>,
    /// Whether people may create their own accounts (off unless configured).
    pub self_registration: bool,
    /// `accounts.require_mfa`: everyone signs in with two factors.
    pub require_mfa: bool,
    /// Mailed-link requests (reset, verification) per client address.
    pub mail_throttle_address: ThrottlePolicy,
    /// Mailed-link requests per account (or per name typed, when there is none).
    pub mail_throttle_account: ThrottlePolicy,
    /// `tls.cert` / `tls.key`: the public listener speaks https itself.
    pub tls: Option<TlsFiles>,
    /// `tls.redirect_listen`: a plain-http listener that only redirects to the issuer.
    pub redirect_listen: Option<SocketAddr>,
    /// A tracing span per request (`otlp.endpoint` set): off, nothing is spent on it.
    pub trace_requests: bool,
}

/// The PEM files of the public listener's certificate chain and private key, read
/// again whenever they change (certificate renewal needs no restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl Settings {
    pub fn new(issuer: impl Into<String>, listen: SocketAddr) -> Self {
        Self {
            issuer: normalise_issuer(&issuer.into()),
            listen,
            algorithms: SigningAlgorithm::ALL.to_vec(),
            lifetimes: Lifetimes::default(),
            key_prepublication: 3600,
            watch_interval: Duration::from_millis(500),
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            metadata_max_age: 300,
            clock_skew_leeway: 300,
            login_throttle: LoginThrottle::default(),
            trusted_proxies: vec![],
            metrics_listen: None,
            admin_listen: None,
            audit_retention: 365 * 86_400,
            // A client's secret has at least 256 bits or 32 characters: the throttle
            // bounds the cost of failures, it is not what stops guessing.
            client_auth_throttle: ThrottlePolicy { free_failures: 10, base_delay: 1, max_delay: 300, window: 3600 },
            refresh_grace: 5,
            access_token_format: AccessTokenFormat::Jwt,
            access_token_alg: SigningAlgorithm::RS256,
            cleanup_interval: Duration::from_secs(60),
            cleanup_batch: 1000,
            backchannel: DeliveryPolicy::default(),
            backchannel_poll: Duration::from_secs(1),
            backchannel_timeout: Duration::from_secs(5),
            branding: Branding::default(),
            attribute_claims: Default::default(),
            smtp: None,
            self_registration: false,
            require_mfa: false,
            // Someone may ask twice or thrice; a script asking for every account is slowed.
            mail_throttle_address: ThrottlePolicy { free_failures: 10, base_delay: 60, max_delay: 3600, window: 3600 },
            mail_throttle_account: ThrottlePolicy { free_failures: 3, base_delay: 300, max_delay: 3600, window: 3600 },
            tls: None,
            redirect_listen: None,
            trace_requests: false,
        }
    }

    /// Cookies get `Secure` (and responses HSTS) when the issuer is https (its scheme
    /// is in lower case: `Settings::new` normalises it).
    pub fn secure_cookies(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    /// How long every token signed by a key can live: retired keys stay published at
    /// least this long. `longest_client_override` is the longest per-client lifetime.
    pub fn signed_token_horizon(&self, longest_client_override: Option<i64>) -> i64 {
        let global = self.lifetimes.access_token.max(self.lifetimes.id_token);
        global.max(longest_client_override.unwrap_or(0)) + self.clock_skew_leeway
    }
}

/// The issuer with its scheme and host (the authority) in lower case, the rest exactly
/// as written: `HTTPS://SSO.Example.VN/a` is `https://sso.example.vn/a`. Scheme and
/// host are case-insensitive (RFC 3986 §3.1, §3.2.2), and the issuer must compare
/// equal, character for character, to what relying parties configured (OpenID Connect
/// Discovery §4.3), so it has one spelling.
pub fn normalise_issuer(issuer: &str) -> String {
    let Some((scheme, rest)) = issuer.split_once("://") else { return issuer.to_string() };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    format!("{}://{}{path}", scheme.to_ascii_lowercase(), authority.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_has_one_spelling_and_https_is_decided_from_the_url() {
        let cases = [
            ("HTTPS://SSO.Example.VN", "https://sso.example.vn", true),
            ("HttpS://sso.example.vn/Tenant/A", "https://sso.example.vn/Tenant/A", true),
            ("https://sso.example.vn:8443/", "https://sso.example.vn:8443/", true),
            ("HTTP://LOCALHOST:8080", "http://localhost:8080", false),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080", false),
        ];
        for (configured, issuer, https) in cases {
            let s = Settings::new(configured, "127.0.0.1:0".parse().unwrap());
            assert_eq!(s.issuer, issuer, "{configured}");
            assert_eq!(s.secure_cookies(), https, "{configured}");
        }
    }
}
