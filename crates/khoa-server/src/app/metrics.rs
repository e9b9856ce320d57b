//! Prometheus metrics (OpenMetrics text at `GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub cache_reloads: Counter,
    pub watch_errors: Counter,
    pub published_keys: Gauge,
    pub login_failures: Counter,
    pub login_throttled: Counter,
    pub client_auth_failures: Counter,
    pub client_auth_throttled: Counter,
    pub tokens_issued: Counter,
    pub refresh_reuse: Counter,
    pub cleanup_deleted: Family<TableLabels, Counter>,
    pub cleanup_runs: Counter,
    pub cleanup_errors: Counter,
    /// Seconds since the oldest expired row still present expired (0 when none).
    pub cleanup_lag: Gauge,
    pub cleanup_duration: Histogram,
    pub logouts: Counter,
    /// Back-channel attempts by outcome: delivered, retry, failed.
    pub logout_deliveries: Family<OutcomeLabels, Counter>,
    /// Notifications in the outbox by status (read at scrape time).
    pub logout_outbox: Family<StatusLabels, Gauge>,
    /// SQL statements (BEGIN and COMMIT included) and transactions run by this
    /// process, copied from `khoa_store::statements()` at scrape time.
    pub sql_statements: Counter,
    pub sql_transactions: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("khoa");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let cache_reloads = Counter::default();
        let watch_errors = Counter::default();
        let published_keys = Gauge::default();
        let login_failures = Counter::default();
        let login_throttled = Counter::default();
        let client_auth_failures = Counter::default();
        let client_auth_throttled = Counter::default();
        let tokens_issued = Counter::default();
        let refresh_reuse = Counter::default();
        let cleanup_deleted = Family::<TableLabels, Counter>::default();
        let cleanup_runs = Counter::default();
        let cleanup_errors = Counter::default();
        let cleanup_lag = Gauge::default();
        let cleanup_duration = latency_histogram();
        let logouts = Counter::default();
        let logout_deliveries = Family::<OutcomeLabels, Counter>::default();
        let logout_outbox = Family::<StatusLabels, Gauge>::default();
        let sql_statements = Counter::default();
        let sql_transactions = Counter::default();
        registry.register("http_requests", "HTTP requests by method, route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register("cache_reloads", "Reloads of cached clients and keys after a change", cache_reloads.clone());
        registry.register("watch_errors", "Failed polls of the change epoch or key reloads", watch_errors.clone());
        registry.register("published_signing_keys", "Signing keys currently published in JWKS", published_keys.clone());
        registry.register("login_failures", "Failed password logins", login_failures.clone());
        registry.register("login_throttled", "Login attempts refused by throttling (429)", login_throttled.clone());
        registry.register(
            "client_auth_failures",
            "Failed client authentications at the token endpoint",
            client_auth_failures.clone(),
        );
        registry.register(
            "client_auth_throttled",
            "Failed client authentications answered 429 by throttling",
            client_auth_throttled.clone(),
        );
        registry.register("tokens_issued", "Token responses issued", tokens_issued.clone());
        registry.register(
            "refresh_token_reuse",
            "Rotated refresh tokens presented again (families revoked)",
            refresh_reuse.clone(),
        );
        registry.register(
            "cleanup_deleted_rows",
            "Expired rows deleted by the cleanup job, by table",
            cleanup_deleted.clone(),
        );
        registry.register("cleanup_runs", "Cleanup runs completed by this process", cleanup_runs.clone());
        registry.register("cleanup_errors", "Cleanup runs that failed", cleanup_errors.clone());
        registry.register("cleanup_lag_seconds", "Age of the oldest expired row not yet deleted", cleanup_lag.clone());
        registry.register("cleanup_duration_seconds", "Duration of cleanup runs", cleanup_duration.clone());
        registry.register("logouts", "SSO sessions ended by logout", logouts.clone());
        registry.register(
            "logout_delivery_attempts",
            "Back-channel logout attempts by outcome",
            logout_deliveries.clone(),
        );
        registry.register("logout_outbox", "Back-channel logout notifications by status", logout_outbox.clone());
        registry.register(
            "sql_statements",
            "SQL statements sent to the database by this process, BEGIN and COMMIT included",
            sql_statements.clone(),
        );
        registry.register("sql_transactions", "Database transactions begun by this process", sql_transactions.clone());
        Self {
            registry,
            requests,
            latency,
            cache_reloads,
            watch_errors,
            published_keys,
            login_failures,
            login_throttled,
            client_auth_failures,
            client_auth_throttled,
            tokens_issued,
            refresh_reuse,
            cleanup_deleted,
            cleanup_runs,
            cleanup_errors,
            cleanup_lag,
            cleanup_duration,
            logouts,
            logout_deliveries,
            logout_outbox,
            sql_statements,
            sql_transactions,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let sql = khoa_store::statements();
        self.sql_statements.inner().store(sql.statements, std::sync::atomic::Ordering::Relaxed);
        self.sql_transactions.inner().store(sql.transactions, std::sync::atomic::Ordering::Relaxed);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
