//! Configuration: a TOML file (`--config`) and `KHOA_*` environment variables that
//! override it. Everything is validated before anything starts; every error names the
//! key or variable at fault.

use khoa_core::client::{check_lifetime, lifetime_bounds};
use khoa_core::jose::SigningAlgorithm;
use khoa_server::{Lifetimes, Settings};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_ISSUER: &str = "http://localhost:8080";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://khoa.db";
pub const DEFAULT_SECRET_FILE: &str = "khoa.key";

/// Environment variables and what they override (shown by `khoa serve --help`).
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("KHOA_ISSUER", "issuer: the exact issuer URL (default http://localhost:8080)"),
    ("KHOA_LISTEN", "listen: address and port (default 127.0.0.1:8080)"),
    ("KHOA_DATABASE_URL", "database_url: sqlite://FILE or postgres://… (default sqlite://khoa.db)"),
    ("KHOA_SECRET", "secret: master key (≥ 32 characters) sealing private keys at rest"),
    (
        "KHOA_SECRET_FILE",
        "secret_file: key file used when no secret is set (default khoa.key; generated with mode 0600 for SQLite)",
    ),
    ("KHOA_LOG", "log.filter: tracing filter, e.g. info or khoa=debug (default info)"),
    ("KHOA_LOG_FORMAT", "log.format: text or json (default text)"),
    ("KHOA_KEY_ALGORITHMS", "keys.algorithms: comma-separated, RS256 required (default RS256,ES256,EdDSA)"),
    ("KHOA_KEY_PREPUBLICATION", "keys.prepublication: delay before a rotated key signs (default 1h)"),
    ("KHOA_AUTHORIZATION_CODE_LIFETIME", "tokens.authorization_code (default 60s)"),
    ("KHOA_ACCESS_TOKEN_LIFETIME", "tokens.access_token (default 1h)"),
    ("KHOA_ID_TOKEN_LIFETIME", "tokens.id_token (default 1h)"),
    ("KHOA_REFRESH_TOKEN_LIFETIME", "tokens.refresh_token (default 30days)"),
    ("KHOA_SESSION_LIFETIME", "tokens.session: SSO session (default 24h)"),
    ("KHOA_WATCH_INTERVAL", "watch_interval: how often changes made elsewhere are picked up (default 500ms)"),
    ("KHOA_ACCESS_TOKEN_FORMAT", "tokens.access_token_format: jwt (RFC 9068, the default) or opaque (a random handle, looked up at introspection and userinfo)"),
    ("KHOA_ACCESS_TOKEN_ALG", "tokens.access_token_alg: algorithm of JWT access tokens, one of keys.algorithms (default RS256)"),
    ("KHOA_REFRESH_GRACE", "tokens.refresh_grace: duplicates of a refresh token within this time of its rotation get the same successor (default 5s)"),
    ("KHOA_BACKCHANNEL_BASE_DELAY", "backchannel.base_delay: wait before retrying a back-channel logout, doubled per attempt (default 5s)"),
    ("KHOA_BACKCHANNEL_MAX_ATTEMPTS", "backchannel.max_attempts: attempts per notification (default 30)"),
    ("KHOA_BACKCHANNEL_HORIZON", "backchannel.horizon: no attempt later than this after the logout (default 24h)"),
    ("KHOA_BRAND_NAME", "branding.product_name: the name shown on the pages (default khoa)"),
    ("KHOA_BRAND_LOGO_URL", "branding.logo_url: an https logo shown on the pages"),
    ("KHOA_BRAND_COLOR", "branding.primary_color: #rrggbb of buttons and focus (default #0b5fff)"),
    (
        "KHOA_SMTP_URL",
        "smtp.url: where mail goes, e.g. smtp://user:pass@mail.example.vn:587?tls=required, smtps://…, smtp://127.0.0.1:2525",
    ),
    ("KHOA_SMTP_FROM", "smtp.from: the sender of khoa's mails, e.g. \"Cổng SSO <sso@example.vn>\""),
    (
        "KHOA_SELF_REGISTRATION",
        "accounts.self_registration: true lets people create their own accounts (needs smtp; default false)",
    ),
    (
        "KHOA_REQUIRE_MFA",
        "accounts.require_mfa: true asks everyone for a second factor (an authenticator app or a passkey) at sign-in (default false)",
    ),
    (
        "KHOA_SCOPE_CLAIMS",
        "scopes.NAME.claims: attributes released as claims per scope, e.g. student=student_id,class;staff=staff_no",
    ),
    ("KHOA_CLEANUP_INTERVAL", "cleanup_interval: how often expired rows are deleted (default 1m)"),
    (
        "KHOA_REQUEST_TIMEOUT",
        "http.request_timeout: longest time one request may take (408), and the drain time on SIGTERM (default 30s)",
    ),
    (
        "KHOA_HEADER_READ_TIMEOUT",
        "http.header_read_timeout: a client must send a request's headers within this, or is disconnected (default 10s)",
    ),
    (
        "KHOA_LOGIN_FREE_FAILURES",
        "login_throttle.free_failures: failed logins per account or address before waiting (default 5)",
    ),
    ("KHOA_LOGIN_BASE_DELAY", "login_throttle.base_delay: first wait, doubled per further failure (default 1s)"),
    ("KHOA_LOGIN_MAX_DELAY", "login_throttle.max_delay: longest wait (default 15m)"),
    ("KHOA_LOGIN_WINDOW", "login_throttle.window: failures older than this are forgotten (default 1h)"),
    (
        "KHOA_LOGIN_ADDRESS_FREE_FAILURES",
        "login_throttle.address_free_failures: failed logins from one address over all accounts before waiting (default 100)",
    ),
    (
        "KHOA_LOGIN_ACCOUNT_FREE_FAILURES",
        "login_throttle.account_free_failures: failed logins of one account over all addresses before a delay (default 20)",
    ),
    (
        "KHOA_LOGIN_ACCOUNT_MAX_DELAY",
        "login_throttle.account_max_delay: longest delay of an attacked account; known devices are exempt (default 1m)",
    ),
    (
        "KHOA_TRUSTED_PROXIES",
        "http.trusted_proxies: comma-separated addresses or CIDR blocks whose Forwarded / X-Forwarded-For is believed (default none)",
    ),
    ("KHOA_METRICS_LISTEN", "metrics.listen: serve /metrics on this address:port instead of the public listener"),
    (
        "KHOA_ADMIN_LISTEN",
        "admin.listen: the admin API's address:port, or off (default 127.0.0.1:8081)",
    ),
    ("KHOA_AUDIT_RETENTION", "audit.retention: how long audit events are kept (default 365d)"),
    (
        "KHOA_CLIENT_AUTH_FREE_FAILURES",
        "client_auth_throttle.free_failures: failed authentications per client before its failures get 429 (default 10)",
    ),
    ("KHOA_CLIENT_AUTH_BASE_DELAY", "client_auth_throttle.base_delay: first period, doubled per further failure (default 1s)"),
    ("KHOA_CLIENT_AUTH_MAX_DELAY", "client_auth_throttle.max_delay: longest period (default 5m)"),
    ("KHOA_CLIENT_AUTH_WINDOW", "client_auth_throttle.window: failures older than this are forgotten (default 1h)"),
    (
        "KHOA_OTLP_ENDPOINT",
        "otlp.endpoint: an OTLP/HTTP collector, e.g. http://127.0.0.1:4318: a trace span per request (default off)",
    ),
    ("KHOA_TLS_CERT", "tls.cert: PEM certificate chain; with tls.key, the listener speaks https (reloaded when the files change)"),
    ("KHOA_TLS_KEY", "tls.key: PEM private key of tls.cert (PKCS#8, PKCS#1 or SEC1)"),
    (
        "KHOA_TLS_REDIRECT_LISTEN",
        "tls.redirect_listen: a plain-http address:port (e.g. 0.0.0.0:80) that only redirects to the https issuer",
    ),
];

/// Variables that are not settings but are read by the command line itself.
const OTHER_VARIABLES: &[&str] = &["KHOA_CONFIG"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    issuer: Option<String>,
    listen: Option<String>,
    database_url: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    watch_interval: Option<String>,
    cleanup_interval: Option<String>,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    tokens: TokenSection,
    #[serde(default)]
    keys: KeySection,
    #[serde(default)]
    login_throttle: LoginThrottleSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    admin: MetricsSection,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    client_auth_throttle: ThrottleSection,
    #[serde(default)]
    backchannel: BackchannelSection,
    #[serde(default)]
    branding: BrandingSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    smtp: SmtpSection,
    #[serde(default)]
    accounts: AccountsSection,
    #[serde(default)]
    tls: TlsSection,
    #[serde(default)]
    otlp: OtlpSection,
    /// `[scopes.NAME] claims = ["attribute", …]`: the organisation's scopes.
    #[serde(default)]
    scopes: std::collections::BTreeMap<String, ScopeSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpSection {
    url: Option<String>,
    from: Option<String>,
}

/// `[otlp]`: OpenTelemetry traces.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OtlpSection {
    endpoint: Option<String>,
}

/// `[tls]`: https on the listener itself, for a deployment without a proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    redirect_listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsSection {
    self_registration: Option<bool>,
    require_mfa: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeSection {
    claims: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    request_timeout: Option<String>,
    header_read_timeout: Option<String>,
    trusted_proxies: Option<Vec<String>>,
}

/// `[metrics]` and `[admin]`: where a listener of their own binds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    retention: Option<String>,
}

/// The admin listener when nothing is configured (PRODUCT.md).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";

/// `[login_throttle]`: the per-account-and-address policy at the top level (the keys
/// of every throttle), and the looser per-address and per-account limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginThrottleSection {
    free_failures: Option<i64>,
    base_delay: Option<String>,
    max_delay: Option<String>,
    window: Option<String>,
    address_free_failures: Option<i64>,
    account_free_failures: Option<i64>,
    account_max_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandingSection {
    product_name: Option<String>,
    logo_url: Option<String>,
    primary_color: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackchannelSection {
    base_delay: Option<String>,
    max_attempts: Option<i64>,
    horizon: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleSection {
    free_failures: Option<i64>,
    base_delay: Option<String>,
    max_delay: Option<String>,
    window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    filter: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    authorization_code: Option<String>,
    access_token: Option<String>,
    id_token: Option<String>,
    refresh_token: Option<String>,
    session: Option<String>,
    refresh_grace: Option<String>,
    access_token_format: Option<String>,
    access_token_alg: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySection {
    algorithms: Option<Vec<String>>,
    prepublication: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Secret(String),
    File(PathBuf),
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub database_url: String,
    pub secret: SecretSource,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// `otlp.endpoint`: where traces go over OTLP/HTTP, when set.
    pub otlp_endpoint: Option<String>,
}

impl Config {
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

/// One setting: the environment variable wins over the file.
struct Value {
    key: String,
    raw: String,
}

fn pick(env: &dyn Fn(&str) -> Option<String>, var: &str, file_key: &str, file: Option<String>) -> Option<Value> {
    match env(var) {
        Some(raw) => Some(Value { key: var.to_string(), raw }),
        None => file.map(|raw| Value { key: file_key.to_string(), raw }),
    }
}

/// A throttling policy from `[section]` and `{var}_*` variables, over `default`.
fn throttle_policy(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    section: &str,
    th: ThrottleSection,
    default: khoa_core::throttle::ThrottlePolicy,
) -> Result<khoa_core::throttle::ThrottlePolicy, ConfigError> {
    let mut throttle = default;
    if let Some(v) = pick(
        env,
        &format!("{var}_FREE_FAILURES"),
        &format!("{section}.free_failures"),
        th.free_failures.map(|n| n.to_string()),
    ) {
        throttle.free_failures = whole_number(&v, 0, 1000)?;
    }
    for (suffix, name, value, target) in [
        ("BASE_DELAY", "base_delay", th.base_delay, &mut throttle.base_delay),
        ("MAX_DELAY", "max_delay", th.max_delay, &mut throttle.max_delay),
        ("WINDOW", "window", th.window, &mut throttle.window),
    ] {
        if let Some(v) = pick(env, &format!("{var}_{suffix}"), &format!("{section}.{name}"), value) {
            let secs = duration(&v)?.as_secs() as i64;
            if !(1..=7 * 86_400).contains(&secs) {
                return Err(invalid(&v.key, "must be between 1s and 7 days"));
            }
            *target = secs;
        }
    }
    Ok(throttle)
}

/// The login throttle: `login_throttle.*` for one account at one address (window and
/// delays shared by all three limits), `address_free_failures` for one address over
/// every account, `account_free_failures` and `account_max_delay` for one account over
/// every address.
fn login_throttle(
    env: &dyn Fn(&str) -> Option<String>,
    th: LoginThrottleSection,
    default: khoa_core::throttle::LoginThrottle,
) -> Result<khoa_core::throttle::LoginThrottle, ConfigError> {
    let base = ThrottleSection {
        free_failures: th.free_failures,
        base_delay: th.base_delay,
        max_delay: th.max_delay,
        window: th.window,
    };
    let pair = throttle_policy(env, "KHOA_LOGIN", "login_throttle", base, default.account_at_address)?;
    let mut t = khoa_core::throttle::LoginThrottle {
        account_at_address: pair,
        address: khoa_core::throttle::ThrottlePolicy { free_failures: default.address.free_failures, ..pair },
        account: khoa_core::throttle::ThrottlePolicy {
            free_failures: default.account.free_failures,
            max_delay: default.account.max_delay,
            ..pair
        },
    };
    let free = th.address_free_failures.map(|n| n.to_string());
    if let Some(v) = pick(env, "KHOA_LOGIN_ADDRESS_FREE_FAILURES", "login_throttle.address_free_failures", free) {
        t.address.free_failures = whole_number(&v, 1, 100_000)?;
    }
    let free = th.account_free_failures.map(|n| n.to_string());
    if let Some(v) = pick(env, "KHOA_LOGIN_ACCOUNT_FREE_FAILURES", "login_throttle.account_free_failures", free) {
        t.account.free_failures = whole_number(&v, 1, 100_000)?;
    }
    if let Some(v) = pick(env, "KHOA_LOGIN_ACCOUNT_MAX_DELAY", "login_throttle.account_max_delay", th.account_max_delay)
    {
        let secs = duration(&v)?.as_secs() as i64;
        if !(1..=300).contains(&secs) {
            return Err(invalid(&v.key, "must be between 1s and 5m (an attacked account is delayed, never locked)"));
        }
        t.account.max_delay = secs;
    }
    if t.address.free_failures < t.account_at_address.free_failures {
        return Err(invalid(
            "login_throttle.address_free_failures",
            "must not be below login_throttle.free_failures (many people share one address)",
        ));
    }
    Ok(t)
}

fn whole_number(v: &Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    v.raw
        .trim()
        .parse()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| invalid(&v.key, format!("{:?} is not a whole number from {min} to {max}", v.raw)))
}

fn duration(v: &Value) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.raw.trim())
        .map_err(|e| invalid(&v.key, format!("{:?} is not a duration such as 60s, 15m, 1h or 30days ({e})", v.raw)))
}

fn lifetime(v: Option<Value>, default: i64, bounds: (i64, i64), name: &'static str) -> Result<i64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let secs = duration(&v)?.as_secs() as i64;
    check_lifetime(name, secs, bounds).map_err(|e| invalid(&v.key, e.to_string()))?;
    Ok(secs)
}

fn validate_issuer(v: &Value) -> Result<(), ConfigError> {
    let url = url::Url::parse(&v.raw).map_err(|_| invalid(&v.key, format!("{:?} is not an absolute URL", v.raw)))?;
    if url.query().is_some() || url.fragment().is_some() || v.raw.contains('#') || v.raw.contains('?') {
        return Err(invalid(&v.key, "the issuer must not have a query or fragment (OpenID Connect Discovery §3)"));
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid(
            &v.key,
            "the issuer must use https (http is allowed only for localhost and loopback addresses)",
        )),
        _ => Err(invalid(&v.key, "the issuer must be an https URL")),
    }
}

/// Reads `path` (if given) and applies the environment.
pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let file: FileConfig = match path {
        None => FileConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: explain(&e, &text) })?
        }
    };

    let issuer = pick(env, "KHOA_ISSUER", "issuer", file.issuer)
        .unwrap_or(Value { key: "issuer".into(), raw: DEFAULT_ISSUER.into() });
    validate_issuer(&issuer)?;

    let listen = pick(env, "KHOA_LISTEN", "listen", file.listen)
        .unwrap_or(Value { key: "listen".into(), raw: DEFAULT_LISTEN.into() });
    let listen_addr: SocketAddr = listen.raw.parse().map_err(|_| {
        invalid(&listen.key, format!("{:?} is not an address:port such as 127.0.0.1:8080 or [::]:443", listen.raw))
    })?;

    let database = pick(env, "KHOA_DATABASE_URL", "database_url", file.database_url)
        .unwrap_or(Value { key: "database_url".into(), raw: DEFAULT_DATABASE_URL.into() });
    let db_ok = database.raw.starts_with("sqlite:")
        || database.raw.starts_with("postgres://")
        || database.raw.starts_with("postgresql://");
    if !db_ok {
        return Err(invalid(&database.key, "must start with sqlite:// or postgres://"));
    }

    let secret = match pick(env, "KHOA_SECRET", "secret", file.secret) {
        Some(v) => {
            khoa_core::sealing::MasterKey::from_secret(&v.raw).map_err(|e| invalid(&v.key, e.to_string()))?;
            SecretSource::Secret(v.raw)
        }
        None => SecretSource::File(
            env("KHOA_SECRET_FILE")
                .map(PathBuf::from)
                .or(file.secret_file)
                .unwrap_or_else(|| DEFAULT_SECRET_FILE.into()),
        ),
    };

    let log_filter = pick(env, "KHOA_LOG", "log.filter", file.log.filter)
        .unwrap_or(Value { key: "log.filter".into(), raw: "info".into() });
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_filter.raw) {
        return Err(invalid(&log_filter.key, format!("{:?} is not a log filter: {e}", log_filter.raw)));
    }
    let log_format = match pick(env, "KHOA_LOG_FORMAT", "log.format", file.log.format) {
        None => LogFormat::Text,
        Some(v) => match v.raw.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid(&v.key, format!("{other:?}: expected text or json"))),
        },
    };

    let algorithms = match env("KHOA_KEY_ALGORITHMS")
        .map(|raw| ("KHOA_KEY_ALGORITHMS", raw.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>()))
        .or(file.keys.algorithms.map(|a| ("keys.algorithms", a)))
    {
        None => SigningAlgorithm::ALL.to_vec(),
        Some((key, names)) => {
            let mut algs = names
                .iter()
                .map(|n| n.parse::<SigningAlgorithm>().map_err(|e| invalid(key, e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            algs.sort();
            algs.dedup();
            if !algs.contains(&SigningAlgorithm::RS256) {
                return Err(invalid(key, "RS256 is required (OpenID Connect Core §3.1.3.7 makes it the default)"));
            }
            algs
        }
    };
    let key_prepublication = match pick(env, "KHOA_KEY_PREPUBLICATION", "keys.prepublication", file.keys.prepublication)
    {
        None => 3600,
        Some(v) => {
            let secs = duration(&v)?.as_secs() as i64;
            if secs > 30 * 86_400 {
                return Err(invalid(&v.key, "at most 30 days"));
            }
            secs
        }
    };

    let defaults = Lifetimes::default();
    let t = file.tokens;
    let refresh_grace = t.refresh_grace.clone();
    let access_token_format = t.access_token_format.clone();
    let access_token_alg = t.access_token_alg.clone();
    let lifetimes = Lifetimes {
        authorization_code: lifetime(
            pick(env, "KHOA_AUTHORIZATION_CODE_LIFETIME", "tokens.authorization_code", t.authorization_code),
            defaults.authorization_code,
            lifetime_bounds::AUTHORIZATION_CODE,
            "authorization code",
        )?,
        access_token: lifetime(
            pick(env, "KHOA_ACCESS_TOKEN_LIFETIME", "tokens.access_token", t.access_token),
            defaults.access_token,
            lifetime_bounds::ACCESS_TOKEN,
            "access token",
        )?,
        id_token: lifetime(
            pick(env, "KHOA_ID_TOKEN_LIFETIME", "tokens.id_token", t.id_token),
            defaults.id_token,
            lifetime_bounds::ID_TOKEN,
            "ID token",
        )?,
        refresh_token: lifetime(
            pick(env, "KHOA_REFRESH_TOKEN_LIFETIME", "tokens.refresh_token", t.refresh_token),
            defaults.refresh_token,
            lifetime_bounds::REFRESH_TOKEN,
            "refresh token",
        )?,
        session: lifetime(
            pick(env, "KHOA_SESSION_LIFETIME", "tokens.session", t.session),
            defaults.session,
            lifetime_bounds::SESSION,
            "session",
        )?,
    };

    let mut settings = Settings::new(issuer.raw, listen_addr);
    settings.algorithms = algorithms;
    settings.lifetimes = lifetimes;
    settings.key_prepublication = key_prepublication;
    settings.metadata_max_age = settings.metadata_max_age.min(key_prepublication as u32);
    if let Some(v) = pick(env, "KHOA_WATCH_INTERVAL", "watch_interval", file.watch_interval) {
        let d = duration(&v)?;
        if d < Duration::from_millis(50) || d > Duration::from_secs(2) {
            return Err(invalid(&v.key, "must be between 50ms and 2s"));
        }
        settings.watch_interval = d;
    }

    settings.login_throttle = login_throttle(env, file.login_throttle, settings.login_throttle)?;
    settings.client_auth_throttle = throttle_policy(
        env,
        "KHOA_CLIENT_AUTH",
        "client_auth_throttle",
        file.client_auth_throttle,
        settings.client_auth_throttle,
    )?;
    if let Some(v) = pick(env, "KHOA_REFRESH_GRACE", "tokens.refresh_grace", refresh_grace) {
        let secs = duration(&v)?.as_secs() as i64;
        if secs > 60 {
            return Err(invalid(&v.key, "at most 60s"));
        }
        settings.refresh_grace = secs;
    }
    if let Some(v) = pick(env, "KHOA_ACCESS_TOKEN_FORMAT", "tokens.access_token_format", access_token_format) {
        settings.access_token_format = match v.raw.trim() {
            "jwt" => khoa_server::settings::AccessTokenFormat::Jwt,
            "opaque" => khoa_server::settings::AccessTokenFormat::Opaque,
            _ => return Err(invalid(&v.key, "jwt or opaque")),
        };
    }
    if let Some(v) = pick(env, "KHOA_ACCESS_TOKEN_ALG", "tokens.access_token_alg", access_token_alg) {
        let alg: SigningAlgorithm = v.raw.trim().parse().map_err(|_| invalid(&v.key, "RS256, ES256 or EdDSA"))?;
        if !settings.algorithms.contains(&alg) {
            return Err(invalid(&v.key, format!("{} is not among the key algorithms", alg.as_str())));
        }
        settings.access_token_alg = alg;
    }
    let br = file.branding;
    if let Some(v) = pick(env, "KHOA_BRAND_NAME", "branding.product_name", br.product_name) {
        let n = v.raw.trim();
        if n.is_empty() || n.chars().count() > 60 || n.chars().any(char::is_control) {
            return Err(invalid(&v.key, "must be 1 to 60 characters"));
        }
        settings.branding.product_name = n.to_string();
    }
    if let Some(v) = pick(env, "KHOA_BRAND_LOGO_URL", "branding.logo_url", br.logo_url) {
        khoa_core::redirect_uri::validate_link_uri(&v.raw).map_err(|e| invalid(&v.key, e.to_string()))?;
        settings.branding.logo_url = Some(v.raw);
    }
    if let Some(v) = pick(env, "KHOA_BRAND_COLOR", "branding.primary_color", br.primary_color) {
        let ok = v.raw.len() == 7 && v.raw.starts_with('#') && v.raw[1..].bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(invalid(&v.key, format!("{:?} is not a colour like #0b5fff", v.raw)));
        }
        settings.branding.primary_color = v.raw.to_ascii_lowercase();
    }
    settings.attribute_claims = attribute_claims(env, file.scopes)?;
    let url = pick(env, "KHOA_SMTP_URL", "smtp.url", file.smtp.url);
    let from = pick(env, "KHOA_SMTP_FROM", "smtp.from", file.smtp.from);
    settings.smtp = match (url, from) {
        (None, None) => None,
        (Some(url), None) => return Err(invalid(&url.key, "needs smtp.from (KHOA_SMTP_FROM) too")),
        (None, Some(from)) => return Err(invalid(&from.key, "needs smtp.url (KHOA_SMTP_URL) too")),
        (Some(url), Some(from)) => {
            let smtp =
                khoa_server::mail::SmtpSettings { url: url.raw.trim().to_string(), from: from.raw.trim().to_string() };
            match smtp.check() {
                Ok(_) => Some(smtp),
                Err(e @ khoa_server::mail::MailSettingsError::From(_)) => {
                    return Err(invalid(&from.key, e.to_string()))
                }
                Err(e) => return Err(invalid(&url.key, e.to_string())),
            }
        }
    };
    let self_registration = file.accounts.self_registration.map(|b| b.to_string());
    if let Some(v) = pick(env, "KHOA_SELF_REGISTRATION", "accounts.self_registration", self_registration) {
        settings.self_registration = match v.raw.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(invalid(&v.key, "true or false")),
        };
        if settings.self_registration && settings.smtp.is_none() {
            return Err(invalid(
                &v.key,
                "self-registration verifies addresses by mail: configure smtp.url and smtp.from",
            ));
        }
    }
    let require_mfa = file.accounts.require_mfa.map(|b| b.to_string());
    if let Some(v) = pick(env, "KHOA_REQUIRE_MFA", "accounts.require_mfa", require_mfa) {
        settings.require_mfa = match v.raw.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(invalid(&v.key, "true or false")),
        };
    }
    let bc = file.backchannel;
    if let Some(v) = pick(env, "KHOA_BACKCHANNEL_BASE_DELAY", "backchannel.base_delay", bc.base_delay) {
        let secs = duration(&v)?.as_secs() as i64;
        if !(1..=3600).contains(&secs) {
            return Err(invalid(&v.key, "must be between 1s and 1h"));
        }
        settings.backchannel.base_delay = secs;
    }
    if let Some(v) =
        pick(env, "KHOA_BACKCHANNEL_MAX_ATTEMPTS", "backchannel.max_attempts", bc.max_attempts.map(|n| n.to_string()))
    {
        settings.backchannel.max_attempts = whole_number(&v, 1, 1000)?;
    }
    if let Some(v) = pick(env, "KHOA_BACKCHANNEL_HORIZON", "backchannel.horizon", bc.horizon) {
        let secs = duration(&v)?.as_secs() as i64;
        if !(60..=30 * 86_400).contains(&secs) {
            return Err(invalid(&v.key, "must be between 1m and 30 days"));
        }
        settings.backchannel.horizon = secs;
    }
    if let Some(v) = pick(env, "KHOA_CLEANUP_INTERVAL", "cleanup_interval", file.cleanup_interval) {
        let d = duration(&v)?;
        if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
            return Err(invalid(&v.key, "must be between 1s and 1h"));
        }
        settings.cleanup_interval = d;
    }
    let http = file.http;
    if let Some(v) = pick(env, "KHOA_REQUEST_TIMEOUT", "http.request_timeout", http.request_timeout) {
        let d = duration(&v)?;
        if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
            return Err(invalid(&v.key, "must be between 1s and 5m"));
        }
        settings.request_timeout = d;
    }
    if let Some(v) = pick(env, "KHOA_HEADER_READ_TIMEOUT", "http.header_read_timeout", http.header_read_timeout) {
        let d = duration(&v)?;
        if d < Duration::from_secs(1) || d > Duration::from_secs(60) {
            return Err(invalid(&v.key, "must be between 1s and 60s"));
        }
        settings.header_read_timeout = d;
    }
    let proxies = match env("KHOA_TRUSTED_PROXIES") {
        Some(raw) => Some(("KHOA_TRUSTED_PROXIES".to_string(), raw.split(',').map(str::to_string).collect::<Vec<_>>())),
        None => http.trusted_proxies.map(|list| ("http.trusted_proxies".to_string(), list)),
    };
    if let Some((key, list)) = proxies {
        for item in list.iter().filter(|i| !i.trim().is_empty()) {
            let net = khoa_core::forwarded::parse_proxy(item).map_err(|e| invalid(&key, e))?;
            settings.trusted_proxies.push(net);
        }
    }
    if let Some(v) = pick(env, "KHOA_METRICS_LISTEN", "metrics.listen", file.metrics.listen) {
        let addr: SocketAddr = v
            .raw
            .parse()
            .map_err(|_| invalid(&v.key, format!("{:?} is not an address:port such as 127.0.0.1:9090", v.raw)))?;
        if addr.port() != 0 && addr == listen_addr {
            return Err(invalid(&v.key, "must differ from the public listen address"));
        }
        settings.metrics_listen = Some(addr);
    }
    let admin = pick(env, "KHOA_ADMIN_LISTEN", "admin.listen", file.admin.listen);
    settings.admin_listen = match admin {
        Some(v) if v.raw.eq_ignore_ascii_case("off") => None,
        Some(v) => {
            let addr: SocketAddr = v.raw.parse().map_err(|_| {
                invalid(&v.key, format!("{:?} is not an address:port such as 127.0.0.1:8081, nor off", v.raw))
            })?;
            // Port 0 asks the system for a free port: never the same as another's.
            if addr.port() != 0 && (addr == listen_addr || Some(addr) == settings.metrics_listen) {
                return Err(invalid(&v.key, "must differ from the public and metrics listen addresses"));
            }
            Some(addr)
        }
        None => DEFAULT_ADMIN_LISTEN.parse().ok().filter(|a| *a != listen_addr),
    };
    if let Some(v) = pick(env, "KHOA_AUDIT_RETENTION", "audit.retention", file.audit.retention) {
        let d = duration(&v)?;
        if d < Duration::from_secs(86_400) {
            return Err(invalid(&v.key, "must be at least 1d"));
        }
        settings.audit_retention = d.as_secs() as i64;
    }

    let cert = pick(env, "KHOA_TLS_CERT", "tls.cert", file.tls.cert.map(|p| p.display().to_string()));
    let key = pick(env, "KHOA_TLS_KEY", "tls.key", file.tls.key.map(|p| p.display().to_string()));
    settings.tls = match (cert, key) {
        (None, None) => None,
        (Some(cert), None) => return Err(invalid(&cert.key, "needs tls.key (KHOA_TLS_KEY) too")),
        (None, Some(key)) => return Err(invalid(&key.key, "needs tls.cert (KHOA_TLS_CERT) too")),
        (Some(cert), Some(key)) => {
            if !settings.secure_cookies() {
                return Err(invalid(&cert.key, "a listener speaking https needs an https issuer"));
            }
            Some(khoa_server::settings::TlsFiles { cert: cert.raw.into(), key: key.raw.into() })
        }
    };
    if let Some(v) = pick(env, "KHOA_TLS_REDIRECT_LISTEN", "tls.redirect_listen", file.tls.redirect_listen) {
        let addr: SocketAddr = v
            .raw
            .parse()
            .map_err(|_| invalid(&v.key, format!("{:?} is not an address:port such as 0.0.0.0:80", v.raw)))?;
        if !settings.secure_cookies() {
            return Err(invalid(&v.key, "redirects go to the issuer, which must be https"));
        }
        let taken = [Some(listen_addr), settings.metrics_listen, settings.admin_listen];
        if addr.port() != 0 && taken.contains(&Some(addr)) {
            return Err(invalid(&v.key, "must differ from the public, metrics and admin listen addresses"));
        }
        settings.redirect_listen = Some(addr);
    }

    let otlp_endpoint = match pick(env, "KHOA_OTLP_ENDPOINT", "otlp.endpoint", file.otlp.endpoint) {
        None => None,
        Some(v) => {
            let url = url::Url::parse(v.raw.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none())
                .ok_or_else(|| {
                    invalid(&v.key, format!("{:?} is not an http(s) URL such as http://127.0.0.1:4318", v.raw))
                })?;
            Some(url.as_str().trim_end_matches('/').to_string())
        }
    };

    settings.trace_requests = otlp_endpoint.is_some();
    Ok(Config { settings, database_url: database.raw, secret, log_filter: log_filter.raw, log_format, otlp_endpoint })
}

/// A TOML error as the operator should read it: an unknown setting is named with its
/// section and line, and the nearest known setting suggested.
fn explain(e: &toml::de::Error, text: &str) -> String {
    let message = e.message();
    let line =
        e.span().map(|span| text.as_bytes()[..span.start.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1);
    let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return format!("{}{at}", message.trim_end());
    };
    let Some((unknown, expected)) = rest.split_once('`') else { return format!("{}{at}", message.trim_end()) };
    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    // The section is the nearest `[header]` above the line; an unknown section is
    // reported on its own header line, inside its parent.
    let header = |t: &str| {
        let t = t.trim();
        t.strip_prefix('[').and_then(|t| t.strip_suffix(']')).map(|h| h.trim_matches(['[', ']', ' ']).to_string())
    };
    let lines: Vec<&str> = text.lines().take(line.unwrap_or(0)).collect();
    let section = match lines.split_last() {
        Some((last, _)) if header(last).is_some() => {
            header(last).and_then(|h| h.rsplit_once('.').map(|(parent, _)| parent.to_string()))
        }
        Some((_, above)) => above.iter().rev().find_map(|t| header(t)),
        None => None,
    }
    .map(|h| format!("{h}."))
    .unwrap_or_default();
    let mut out = format!("unknown setting `{section}{unknown}`{at}");
    match nearest(unknown, &known) {
        Some(n) => out.push_str(&format!("; did you mean `{section}{n}`?")),
        None if !known.is_empty() => out.push_str(&format!("; known here: {}", known.join(", "))),
        None => {}
    }
    out
}

/// The known name closest to `name` by edit distance, when it is close enough to be
/// a typo.
pub fn nearest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&name, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (names here are short: a quadratic table is fine).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// A duration in its largest whole unit (`365d`, `15m`, `500ms`), as the settings
/// are written.
fn short_duration(d: Duration) -> String {
    let (secs, millis) = (d.as_secs(), d.subsec_millis());
    if millis != 0 || secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// `KHOA_*` variables in `names` that are no setting, each with the nearest setting's
/// variable: a misspelt variable would otherwise be ignored without a word.
pub fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<(String, Option<&'static str>)> {
    let known: Vec<&'static str> = ENVIRONMENT.iter().map(|(v, _)| *v).chain(OTHER_VARIABLES.iter().copied()).collect();
    let mut unknown: Vec<_> = names
        .filter(|n| n.starts_with("KHOA_") && !known.contains(&n.as_str()))
        .map(|n| {
            let near = nearest(&n, &known);
            (n, near)
        })
        .collect();
    unknown.sort();
    unknown
}

impl Config {
    /// The settings in force, one `key = value` per line in TOML syntax, secrets
    /// masked: what `khoa config check` prints.
    pub fn effective(&self) -> String {
        let s = &self.settings;
        let q = |v: &str| format!("{v:?}");
        let secs = |n: i64| q(&short_duration(Duration::from_secs(n.max(0) as u64)));
        let dur = |d: Duration| q(&short_duration(d));
        let list = |items: Vec<String>| format!("[{}]", items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", "));
        let addr = |a: Option<SocketAddr>| a.map_or_else(|| q("off"), |a| q(&a.to_string()));
        let secret = match &self.secret {
            SecretSource::Secret(_) => ("secret", q("***")),
            SecretSource::File(p) => ("secret_file", q(&p.display().to_string())),
        };
        let throttle = |name: &str, t: &khoa_core::throttle::ThrottlePolicy| {
            vec![
                (format!("{name}.free_failures"), t.free_failures.to_string()),
                (format!("{name}.base_delay"), secs(t.base_delay)),
                (format!("{name}.max_delay"), secs(t.max_delay)),
                (format!("{name}.window"), secs(t.window)),
            ]
        };
        let mut lines: Vec<(String, String)> = vec![
            ("issuer".into(), q(&s.issuer)),
            ("listen".into(), q(&s.listen.to_string())),
            ("database_url".into(), q(&crate::commands::redact(&self.database_url))),
            (secret.0.into(), secret.1),
            ("watch_interval".into(), dur(s.watch_interval)),
            ("cleanup_interval".into(), dur(s.cleanup_interval)),
            ("log.filter".into(), q(&self.log_filter)),
            ("log.format".into(), q(if self.log_format == LogFormat::Json { "json" } else { "text" })),
            ("keys.algorithms".into(), list(s.algorithms.iter().map(|a| a.as_str().to_string()).collect())),
            ("keys.prepublication".into(), secs(s.key_prepublication)),
            ("tokens.authorization_code".into(), secs(s.lifetimes.authorization_code)),
            ("tokens.access_token".into(), secs(s.lifetimes.access_token)),
            ("tokens.id_token".into(), secs(s.lifetimes.id_token)),
            ("tokens.refresh_token".into(), secs(s.lifetimes.refresh_token)),
            ("tokens.session".into(), secs(s.lifetimes.session)),
            ("tokens.refresh_grace".into(), secs(s.refresh_grace)),
            (
                "tokens.access_token_format".into(),
                q(match s.access_token_format {
                    khoa_server::settings::AccessTokenFormat::Jwt => "jwt",
                    khoa_server::settings::AccessTokenFormat::Opaque => "opaque",
                }),
            ),
            ("tokens.access_token_alg".into(), q(s.access_token_alg.as_str())),
        ];
        let t = &s.login_throttle;
        lines.extend(throttle("login_throttle", &t.account_at_address));
        lines.push(("login_throttle.address_free_failures".into(), t.address.free_failures.to_string()));
        lines.push(("login_throttle.account_free_failures".into(), t.account.free_failures.to_string()));
        lines.push(("login_throttle.account_max_delay".into(), secs(t.account.max_delay)));
        lines.extend(throttle("client_auth_throttle", &s.client_auth_throttle));
        lines.extend([
            ("backchannel.base_delay".into(), secs(s.backchannel.base_delay)),
            ("backchannel.max_attempts".into(), s.backchannel.max_attempts.to_string()),
            ("backchannel.horizon".into(), secs(s.backchannel.horizon)),
            ("branding.product_name".into(), q(&s.branding.product_name)),
            ("branding.logo_url".into(), q(s.branding.logo_url.as_deref().unwrap_or(""))),
            ("branding.primary_color".into(), q(&s.branding.primary_color)),
            ("http.request_timeout".into(), dur(s.request_timeout)),
            ("http.header_read_timeout".into(), dur(s.header_read_timeout)),
            ("http.trusted_proxies".into(), list(s.trusted_proxies.iter().map(|p| p.to_string()).collect())),
            ("metrics.listen".into(), addr(s.metrics_listen)),
            ("admin.listen".into(), addr(s.admin_listen)),
            ("audit.retention".into(), secs(s.audit_retention)),
            ("accounts.self_registration".into(), s.self_registration.to_string()),
            ("accounts.require_mfa".into(), s.require_mfa.to_string()),
        ]);
        match &s.smtp {
            Some(smtp) => {
                lines.push(("smtp.url".into(), q(&crate::commands::redact(&smtp.url))));
                lines.push(("smtp.from".into(), q(&smtp.from)));
            }
            None => lines.push(("smtp.url".into(), q("off"))),
        }
        match &s.tls {
            Some(tls) => {
                lines.push(("tls.cert".into(), q(&tls.cert.display().to_string())));
                lines.push(("tls.key".into(), q(&tls.key.display().to_string())));
            }
            None => lines.push(("tls.cert".into(), q("off"))),
        }
        lines.push(("tls.redirect_listen".into(), addr(s.redirect_listen)));
        lines.push(("otlp.endpoint".into(), q(self.otlp_endpoint.as_deref().unwrap_or("off"))));
        for scope in s.attribute_claims.scopes() {
            let claims = s.attribute_claims.claims_of(scope).iter().map(|c| c.to_string()).collect();
            lines.push((format!("scopes.{scope}.claims"), list(claims)));
        }
        lines.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }
}

/// `KHOA_SCOPE_CLAIMS` (`scope=claim,claim;scope=claim`) or else `[scopes.NAME]`.
fn attribute_claims(
    env: &dyn Fn(&str) -> Option<String>,
    file: std::collections::BTreeMap<String, ScopeSection>,
) -> Result<khoa_core::tokens::AttributeClaims, ConfigError> {
    let (key, pairs): (&str, Vec<(String, Vec<String>)>) = match env("KHOA_SCOPE_CLAIMS") {
        Some(raw) => {
            let mut pairs = vec![];
            for part in raw.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((scope, claims)) = part.split_once('=') else {
                    return Err(invalid("KHOA_SCOPE_CLAIMS", format!("{part:?} is not scope=claim,claim")));
                };
                let claims = claims.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
                pairs.push((scope.trim().to_string(), claims));
            }
            ("KHOA_SCOPE_CLAIMS", pairs)
        }
        None => ("scopes", file.into_iter().map(|(scope, s)| (scope, s.claims)).collect()),
    };
    khoa_core::tokens::AttributeClaims::new(pairs).map_err(|e| invalid(key, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn err(path: Option<&Path>, env: &[(&str, &str)]) -> String {
        load(path, &env_of(env)).unwrap_err().to_string()
    }

    #[test]
    fn zero_configuration_defaults() {
        let c = load(None, &env_of(&[])).unwrap();
        assert_eq!(c.settings.issuer, "http://localhost:8080");
        assert_eq!(c.settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://khoa.db");
        assert_eq!(c.secret, SecretSource::File("khoa.key".into()));
        assert_eq!(c.settings.lifetimes, Lifetimes::default());
        assert_eq!(c.settings.algorithms, SigningAlgorithm::ALL);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_file() {
        let f = file(
            "issuer = \"https://sso.example.vn\"\nlisten = \"0.0.0.0:9000\"\n[tokens]\naccess_token = \"15m\"\n[log]\nformat = \"json\"\n",
        );
        let c = load(Some(f.path()), &env_of(&[("KHOA_LISTEN", "127.0.0.1:7000"), ("KHOA_ID_TOKEN_LIFETIME", "2h")]))
            .unwrap();
        assert_eq!(c.settings.issuer, "https://sso.example.vn");
        assert_eq!(c.settings.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.settings.lifetimes.access_token, 900);
        assert_eq!(c.settings.lifetimes.id_token, 7200);
        assert_eq!(c.log_format, LogFormat::Json);
        let f = file("[login_throttle]\nfree_failures = 3\nbase_delay = \"30s\"\n");
        let c = load(Some(f.path()), &env_of(&[("KHOA_LOGIN_WINDOW", "10m")])).unwrap();
        let t = c.settings.login_throttle;
        assert_eq!(
            t.account_at_address,
            khoa_core::throttle::ThrottlePolicy { free_failures: 3, base_delay: 30, max_delay: 900, window: 600 }
        );
        // The looser limits share the delays and the window.
        assert_eq!((t.address.free_failures, t.address.base_delay, t.address.window), (100, 30, 600));
        assert_eq!((t.account.free_failures, t.account.max_delay, t.account.window), (20, 60, 600));
        let env = [
            ("KHOA_LOGIN_ADDRESS_FREE_FAILURES", "500"),
            ("KHOA_LOGIN_ACCOUNT_FREE_FAILURES", "50"),
            ("KHOA_LOGIN_ACCOUNT_MAX_DELAY", "30s"),
            ("KHOA_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("KHOA_METRICS_LISTEN", "127.0.0.1:9090"),
        ];
        let c = load(None, &env_of(&env)).unwrap();
        let t = c.settings.login_throttle;
        assert_eq!((t.address.free_failures, t.account.free_failures, t.account.max_delay), (500, 50, 30));
        let proxies: Vec<String> = c.settings.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "::1/128"]);
        assert_eq!(c.settings.metrics_listen, Some("127.0.0.1:9090".parse().unwrap()));
        let f = file("[http]\ntrusted_proxies = [\"192.0.2.0/24\"]\n[metrics]\nlisten = \"127.0.0.1:9100\"\n");
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert_eq!(c.settings.trusted_proxies[0].to_string(), "192.0.2.0/24");
        assert_eq!(c.settings.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        // The issuer has one spelling: scheme and host in lower case.
        let c = load(None, &env_of(&[("KHOA_ISSUER", "HTTPS://SSO.Example.VN/Base")])).unwrap();
        assert_eq!(c.settings.issuer, "https://sso.example.vn/Base");
        assert!(c.settings.secure_cookies());
        let c = load(None, &env_of(&[("KHOA_SECRET", "0123456789abcdef0123456789abcdef")])).unwrap();
        assert!(matches!(c.secret, SecretSource::Secret(_)));
    }

    #[test]
    fn the_admin_listener_is_on_by_default_and_can_be_moved_or_turned_off() {
        let default = load(None, &env_of(&[])).unwrap().settings;
        assert_eq!(default.admin_listen, Some("127.0.0.1:8081".parse().unwrap()));
        assert_eq!(default.audit_retention, 365 * 86_400);
        let off = load(None, &env_of(&[("KHOA_ADMIN_LISTEN", "off")])).unwrap().settings;
        assert_eq!(off.admin_listen, None);
        let f = file("[admin]\nlisten = \"127.0.0.1:9443\"\n[audit]\nretention = \"30d\"\n");
        let moved = load(Some(f.path()), &env_of(&[])).unwrap().settings;
        assert_eq!(moved.admin_listen, Some("127.0.0.1:9443".parse().unwrap()));
        assert_eq!(moved.audit_retention, 30 * 86_400);
        assert!(err(None, &[("KHOA_ADMIN_LISTEN", "admin")]).starts_with("KHOA_ADMIN_LISTEN:"));
        assert!(err(None, &[("KHOA_ADMIN_LISTEN", "127.0.0.1:8080")]).contains("must differ"));
        let any = [("KHOA_LISTEN", "127.0.0.1:0"), ("KHOA_ADMIN_LISTEN", "127.0.0.1:0")];
        assert!(load(None, &env_of(&any)).is_ok(), "port 0 twice: two free ports");
        assert!(err(None, &[("KHOA_AUDIT_RETENTION", "1h")]).starts_with("KHOA_AUDIT_RETENTION:"));
    }

    #[test]
    fn an_unknown_setting_is_refused_by_name_with_the_nearest_known_one() {
        let cases = [
            ("isuer = \"https://sso.example.vn\"\n", "unknown setting `isuer` (line 1); did you mean `issuer`?"),
            (
                "issuer = \"https://sso.example.vn\"\n\n[tokens]\nacess_token = \"1h\"\n",
                "unknown setting `tokens.acess_token` (line 4); did you mean `tokens.access_token`?",
            ),
            (
                "[login_throttle]\nfree_failure = 3\n",
                "unknown setting `login_throttle.free_failure` (line 2); did you mean `login_throttle.free_failures`?",
            ),
            (
                "[tls]\ncertificate = \"a.pem\"\n",
                "unknown setting `tls.certificate` (line 2); known here: cert, key, redirect_listen",
            ),
            ("[smpt]\nurl = \"smtp://127.0.0.1\"\n", "unknown setting `smpt` (line 1); did you mean `smtp`?"),
        ];
        for (text, expected) in cases {
            let f = file(text);
            let e = err(Some(f.path()), &[]);
            assert!(e.starts_with("configuration file") && e.ends_with(expected), "{text:?}: {e}");
        }
        let vars = ["KHOA_ISUER", "KHOA_ISSUER", "KHOA_CONFIG", "PATH", "KHOA_TLS_CRT", "KHOA_WHATEVER_ELSE"];
        assert_eq!(
            unknown_variables(vars.iter().map(|v| v.to_string())),
            [
                ("KHOA_ISUER".to_string(), Some("KHOA_ISSUER")),
                ("KHOA_TLS_CRT".to_string(), Some("KHOA_TLS_CERT")),
                ("KHOA_WHATEVER_ELSE".to_string(), None),
            ]
        );
    }

    #[test]
    fn the_effective_settings_are_printed_with_secrets_masked_and_read_back() {
        let f = file(
            "issuer = \"https://sso.example.vn\"\nsecret = \"0123456789abcdef0123456789abcdef-s3cret\"\n\
             database_url = \"postgres://khoa:dbpass@db/khoa\"\n[smtp]\nurl = \"smtp://u:mailpass@mail:587\"\n\
             from = \"sso@example.vn\"\n[audit]\nretention = \"30d\"\n[scopes.student]\nclaims = [\"student_id\"]\n",
        );
        let c = load(Some(f.path()), &env_of(&[("KHOA_WATCH_INTERVAL", "250ms")])).unwrap();
        let shown = c.effective();
        for secret in ["s3cret", "dbpass", "mailpass"] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        for line in [
            "issuer = \"https://sso.example.vn\"",
            "secret = \"***\"",
            "database_url = \"postgres://khoa:***@db/khoa\"",
            "watch_interval = \"250ms\"",
            "audit.retention = \"30d\"",
            "tokens.refresh_token = \"30d\"",
            "scopes.student.claims = [\"student_id\"]",
            "admin.listen = \"127.0.0.1:8081\"",
        ] {
            assert!(shown.lines().any(|l| l == line), "{line} missing:\n{shown}");
        }
        // Every line is valid TOML, and the durations read back as what they say.
        let parsed: toml::Table = shown.parse().unwrap();
        let tokens = parsed["tokens"].as_table().unwrap();
        assert_eq!(humantime::parse_duration(tokens["session"].as_str().unwrap()).unwrap().as_secs(), 86_400);
    }

    #[test]
    fn errors_name_the_key() {
        let f = file("isuer = \"https://typo.example\"\n");
        assert!(err(Some(f.path()), &[]).contains("isuer"), "{}", err(Some(f.path()), &[]));
        let f = file("[tokens]\naccess_token = \"forever\"\n");
        assert!(err(Some(f.path()), &[]).starts_with("tokens.access_token:"));
        assert!(err(None, &[("KHOA_ISSUER", "http://sso.example.vn")])
            .starts_with("KHOA_ISSUER: the issuer must use https"));
        assert!(err(None, &[("KHOA_ISSUER", "https://sso.example.vn/?x=1")]).starts_with("KHOA_ISSUER:"));
        assert!(err(None, &[("KHOA_ISSUER", "not a url")]).starts_with("KHOA_ISSUER:"));
        assert!(err(None, &[("KHOA_LISTEN", "localhost")]).starts_with("KHOA_LISTEN:"));
        assert!(err(None, &[("KHOA_DATABASE_URL", "mysql://x")]).starts_with("KHOA_DATABASE_URL:"));
        assert!(err(None, &[("KHOA_SECRET", "short")]).starts_with("KHOA_SECRET:"));
        assert!(err(None, &[("KHOA_LOG_FORMAT", "xml")]).starts_with("KHOA_LOG_FORMAT:"));
        assert!(err(None, &[("KHOA_LOG", "info,[bad")]).starts_with("KHOA_LOG:"));
        assert!(err(None, &[("KHOA_KEY_ALGORITHMS", "ES256")]).contains("RS256 is required"));
        assert!(err(None, &[("KHOA_KEY_ALGORITHMS", "RS256,HS256")]).starts_with("KHOA_KEY_ALGORITHMS:"));
        assert!(
            err(None, &[("KHOA_AUTHORIZATION_CODE_LIFETIME", "1h")]).starts_with("KHOA_AUTHORIZATION_CODE_LIFETIME:")
        );
        assert!(err(None, &[("KHOA_WATCH_INTERVAL", "10s")]).starts_with("KHOA_WATCH_INTERVAL:"));
        assert!(err(None, &[("KHOA_LOGIN_FREE_FAILURES", "many")]).starts_with("KHOA_LOGIN_FREE_FAILURES:"));
        assert!(err(None, &[("KHOA_CLIENT_AUTH_WINDOW", "0s")]).starts_with("KHOA_CLIENT_AUTH_WINDOW:"));
        let f = file("[client_auth_throttle]\nfree_failures = 2\n");
        let c = load(Some(f.path()), &env_of(&[("KHOA_CLIENT_AUTH_MAX_DELAY", "1m")])).unwrap();
        let t = c.settings.client_auth_throttle;
        assert_eq!((t.free_failures, t.base_delay, t.max_delay, t.window), (2, 1, 60, 3600));
        assert_eq!(c.settings.login_throttle, khoa_core::throttle::LoginThrottle::default(), "separate policies");
        assert!(err(None, &[("KHOA_TRUSTED_PROXIES", "10.0.0.0/99")]).starts_with("KHOA_TRUSTED_PROXIES:"));
        assert!(err(None, &[("KHOA_METRICS_LISTEN", "metrics")]).starts_with("KHOA_METRICS_LISTEN:"));
        assert!(err(None, &[("KHOA_METRICS_LISTEN", "127.0.0.1:8080")]).contains("must differ"));
        assert!(err(None, &[("KHOA_LOGIN_ACCOUNT_MAX_DELAY", "1h")]).starts_with("KHOA_LOGIN_ACCOUNT_MAX_DELAY:"));
        assert!(err(None, &[("KHOA_LOGIN_ADDRESS_FREE_FAILURES", "2")]).contains("many people share one address"));
        assert!(err(None, &[("KHOA_REFRESH_GRACE", "2m")]).starts_with("KHOA_REFRESH_GRACE:"));
        assert!(err(None, &[("KHOA_CLEANUP_INTERVAL", "0s")]).starts_with("KHOA_CLEANUP_INTERVAL:"));
        assert!(err(None, &[("KHOA_ACCESS_TOKEN_FORMAT", "paseto")]).starts_with("KHOA_ACCESS_TOKEN_FORMAT:"));
        assert!(err(None, &[("KHOA_ACCESS_TOKEN_ALG", "HS256")]).starts_with("KHOA_ACCESS_TOKEN_ALG:"));
        assert!(err(None, &[("KHOA_KEY_ALGORITHMS", "RS256"), ("KHOA_ACCESS_TOKEN_ALG", "ES256")])
            .contains("not among the key algorithms"));
        let c =
            load(None, &env_of(&[("KHOA_ACCESS_TOKEN_FORMAT", "opaque"), ("KHOA_ACCESS_TOKEN_ALG", "ES256")])).unwrap();
        assert_eq!(
            (c.settings.access_token_format, c.settings.access_token_alg),
            (khoa_server::settings::AccessTokenFormat::Opaque, SigningAlgorithm::ES256)
        );
        let f = file("[tokens]\naccess_token_format = \"jwt\"\naccess_token_alg = \"EdDSA\"\n");
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert_eq!(c.settings.access_token_alg, SigningAlgorithm::EdDSA);
        assert!(err(None, &[("KHOA_BACKCHANNEL_MAX_ATTEMPTS", "0")]).starts_with("KHOA_BACKCHANNEL_MAX_ATTEMPTS:"));
        assert!(err(None, &[("KHOA_BACKCHANNEL_HORIZON", "1s")]).starts_with("KHOA_BACKCHANNEL_HORIZON:"));
        assert!(err(None, &[("KHOA_BRAND_COLOR", "red; } body { display:none")]).starts_with("KHOA_BRAND_COLOR:"));
        assert!(err(None, &[("KHOA_BRAND_LOGO_URL", "javascript:alert(1)")]).starts_with("KHOA_BRAND_LOGO_URL:"));
        let f = file("[branding]\nproduct_name = \"Cổng SSO HUTECH\"\nprimary_color = \"#C8102E\"\n");
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert_eq!(
            (c.settings.branding.product_name.as_str(), c.settings.branding.primary_color.as_str()),
            ("Cổng SSO HUTECH", "#c8102e")
        );
        let f = file("[backchannel]\nbase_delay = \"1s\"\nmax_attempts = 3\nhorizon = \"10m\"\n");
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert_eq!(
            c.settings.backchannel,
            khoa_core::logout::DeliveryPolicy { base_delay: 1, max_delay: 3600, max_attempts: 3, horizon: 600 }
        );
        let c = load(None, &env_of(&[("KHOA_REFRESH_GRACE", "0s"), ("KHOA_CLEANUP_INTERVAL", "10s")])).unwrap();
        assert_eq!((c.settings.refresh_grace, c.settings.cleanup_interval), (0, Duration::from_secs(10)));
        let c = load(None, &env_of(&[("KHOA_REQUEST_TIMEOUT", "5s"), ("KHOA_HEADER_READ_TIMEOUT", "2s")])).unwrap();
        assert_eq!(
            (c.settings.request_timeout, c.settings.header_read_timeout),
            (Duration::from_secs(5), Duration::from_secs(2))
        );
        assert!(err(None, &[("KHOA_HEADER_READ_TIMEOUT", "0s")]).starts_with("KHOA_HEADER_READ_TIMEOUT:"));
        assert!(err(None, &[("KHOA_REQUEST_TIMEOUT", "1h")]).starts_with("KHOA_REQUEST_TIMEOUT:"));
        assert!(err(None, &[("KHOA_LOGIN_BASE_DELAY", "0s")]).starts_with("KHOA_LOGIN_BASE_DELAY:"));
        let (cert, key) = (("KHOA_TLS_CERT", "/etc/khoa/cert.pem"), ("KHOA_TLS_KEY", "/etc/khoa/key.pem"));
        assert!(err(None, &[cert, key]).starts_with("KHOA_TLS_CERT: a listener speaking https needs an https issuer"));
        assert!(err(None, &[key]).starts_with("KHOA_TLS_KEY: needs tls.cert"));
        let https = ("KHOA_ISSUER", "https://sso.example.vn");
        let c = load(None, &env_of(&[https, cert, key, ("KHOA_TLS_REDIRECT_LISTEN", "0.0.0.0:80")])).unwrap();
        assert_eq!(c.settings.tls.unwrap().cert, Path::new("/etc/khoa/cert.pem"));
        assert_eq!(c.settings.redirect_listen, Some("0.0.0.0:80".parse().unwrap()));
        assert!(err(None, &[("KHOA_TLS_REDIRECT_LISTEN", "0.0.0.0:80")]).contains("must be https"));
        assert!(err(None, &[https, ("KHOA_TLS_REDIRECT_LISTEN", "127.0.0.1:8080")]).contains("must differ"));
        let missing = err(Some(Path::new("/nonexistent/khoa.toml")), &[]);
        assert!(missing.contains("/nonexistent/khoa.toml"), "{missing}");
        let f = file("issuer = [\n");
        assert!(err(Some(f.path()), &[]).starts_with("configuration file"));
    }

    #[test]
    fn scopes_release_attributes_as_claims() {
        let f =
            file("[scopes.student]\nclaims = [\"student_id\", \"class\"]\n[scopes.staff]\nclaims = [\"staff_no\"]\n");
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert_eq!(c.settings.attribute_claims.scopes().collect::<Vec<_>>(), ["staff", "student"]);
        assert_eq!(c.settings.attribute_claims.claims(), ["class", "staff_no", "student_id"]);
        // The variable wins over the file.
        let c =
            load(Some(f.path()), &env_of(&[("KHOA_SCOPE_CLAIMS", "student=student_id; lab = badge ,room")])).unwrap();
        assert_eq!(c.settings.attribute_claims.scopes().collect::<Vec<_>>(), ["lab", "student"]);
        assert_eq!(c.settings.attribute_claims.claims(), ["badge", "room", "student_id"]);
        let bad = file("[scopes.email]\nclaims = [\"student_id\"]\n");
        assert!(
            err(Some(bad.path()), &[]).starts_with("scopes: \"email\" is not a scope"),
            "{}",
            err(Some(bad.path()), &[])
        );
        assert!(err(None, &[("KHOA_SCOPE_CLAIMS", "student")])
            .starts_with("KHOA_SCOPE_CLAIMS: \"student\" is not scope=claim"));
        assert!(err(None, &[("KHOA_SCOPE_CLAIMS", "student=sub")])
            .starts_with("KHOA_SCOPE_CLAIMS: scope \"student\": \"sub\""));
        let typo = file("[scopes.student]\nclaim = [\"student_id\"]\n");
        assert!(
            err(Some(typo.path()), &[])
                .ends_with("unknown setting `scopes.student.claim` (line 2); did you mean `scopes.student.claims`?"),
            "{}",
            err(Some(typo.path()), &[])
        );
    }

    #[test]
    fn mail_settings_come_in_pairs_and_are_checked() {
        let url = ("KHOA_SMTP_URL", "smtp://khoa:s3cret@mail.example.vn:587?tls=required");
        let from = ("KHOA_SMTP_FROM", "Cổng SSO <sso@example.vn>");
        let c = load(None, &env_of(&[url, from])).unwrap();
        let smtp = c.settings.smtp.clone().unwrap();
        assert_eq!((smtp.url.as_str(), smtp.from.as_str()), (url.1, from.1));
        assert!(!format!("{:?}", c.settings).contains("s3cret"), "the password is never shown");
        assert!(load(None, &env_of(&[])).unwrap().settings.smtp.is_none());
        assert!(err(None, &[url]).starts_with("KHOA_SMTP_URL: needs smtp.from"));
        assert!(err(None, &[from]).starts_with("KHOA_SMTP_FROM: needs smtp.url"));
        assert!(err(None, &[("KHOA_SMTP_URL", "http://mail.example.vn"), from])
            .starts_with("KHOA_SMTP_URL: not an SMTP URL"));
        assert!(err(None, &[url, ("KHOA_SMTP_FROM", "nobody")]).starts_with("KHOA_SMTP_FROM: not a mailbox"));
        let f = file("[smtp]\nurl = \"smtp://127.0.0.1:2525\"\nfrom = \"sso@example.vn\"\n[accounts]\nself_registration = true\n");
        let c = load(Some(f.path()), &env_of(&[])).unwrap();
        assert!(c.settings.self_registration && c.settings.smtp.is_some());
        let e = err(None, &[("KHOA_SELF_REGISTRATION", "true")]);
        assert!(e.starts_with("KHOA_SELF_REGISTRATION: self-registration verifies addresses by mail"), "{e}");
        assert!(err(None, &[("KHOA_SELF_REGISTRATION", "yes")]).starts_with("KHOA_SELF_REGISTRATION: true or false"));
    }

    #[test]
    fn two_factors_for_everyone() {
        assert!(!load(None, &env_of(&[])).unwrap().settings.require_mfa);
        let f = file("[accounts]\nrequire_mfa = true\n");
        assert!(load(Some(f.path()), &env_of(&[])).unwrap().settings.require_mfa);
        assert!(!load(Some(f.path()), &env_of(&[("KHOA_REQUIRE_MFA", "false")])).unwrap().settings.require_mfa);
        assert!(err(None, &[("KHOA_REQUIRE_MFA", "1")]).starts_with("KHOA_REQUIRE_MFA: true or false"));
    }
}
