//! Errors of the HTTP layer and their responses, mapped in one place.
//!
//! Standard endpoints answer with the RFC 6749 §5.2 JSON shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the database is unreachable")]
    Unavailable,
    #[error("a parameter contains a NUL character")]
    NulInText,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid_request"),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "invalid_request"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            Self::NulInText => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

/// An unreachable database is 503 (retry later); any other store failure (a corrupt
/// or conflicting row, a refused statement) is 500, with its cause in the log only.
impl From<khoa_store::StoreError> for ApiError {
    fn from(e: khoa_store::StoreError) -> Self {
        if matches!(e, khoa_store::StoreError::NulInText) {
            return Self::NulInText;
        }
        if e.is_unavailable() {
            tracing::error!(error = %e, "database unavailable");
            Self::Unavailable
        } else {
            Self::Internal(format!("store: {e}"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let (status, code) = self.parts();
        let body = serde_json::json!({ "error": code, "error_description": self.to_string() });
        let mut res = (status, Json(body)).into_response();
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// Errors of the token endpoint: RFC 6749 §5.2 JSON, `no-store`, and
/// `WWW-Authenticate: Basic` when Basic client authentication failed.
#[derive(Debug)]
pub enum TokenError {
    Endpoint(khoa_core::token_error::TokenEndpointError),
    Api(ApiError),
    /// A failed client authentication while the client is throttled: 429 with
    /// `Retry-After` (seconds).
    Throttled {
        retry_after: i64,
    },
}

impl TokenError {
    pub fn internal(detail: &str) -> Self {
        Self::Api(ApiError::Internal(detail.to_string()))
    }
}

impl From<khoa_core::token_error::TokenEndpointError> for TokenError {
    fn from(e: khoa_core::token_error::TokenEndpointError) -> Self {
        Self::Endpoint(e)
    }
}

impl From<khoa_store::StoreError> for TokenError {
    fn from(e: khoa_store::StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let e = match self {
            Self::Api(e) => return e.into_response(),
            Self::Throttled { retry_after } => return throttled(retry_after),
            Self::Endpoint(e) => e,
        };
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::json!({ "error": e.code(), "error_description": e.to_string() });
        let mut res = (status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if matches!(e, khoa_core::token_error::TokenEndpointError::InvalidClient { basic: true, .. }) {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"khoa\""));
        }
        res
    }
}

/// 429 for a client whose authentications keep failing (`invalid_client`, since that is
/// what the request is; the status and `Retry-After` say when to try again).
fn throttled(retry_after: i64) -> Response {
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": "too many failed client authentications; retry later",
    });
    let mut res = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
        h.insert(header::RETRY_AFTER, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use khoa_store::StoreError;

    #[test]
    fn only_an_unreachable_database_is_503() {
        let cases = [
            (StoreError::Unavailable("connection refused".into()), 503),
            (StoreError::WriterStopped, 503),
            (StoreError::Database(sqlx::Error::PoolTimedOut), 503),
            (StoreError::Database(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into())), 503),
            (StoreError::Corrupt("redirect_uris: expected value".into()), 500),
            (StoreError::Conflict("client"), 500),
            (StoreError::Database(sqlx::Error::RowNotFound), 500),
            (StoreError::Database(sqlx::Error::ColumnNotFound("scope".into())), 500),
        ];
        for (e, status) in cases {
            let what = e.to_string();
            let res = ApiError::from(e).into_response();
            assert_eq!(res.status().as_u16(), status, "{what}");
        }
    }
}
