//! RFC 9457 problem details: the admin API's errors, each naming what went wrong and,
//! for bad input, the field.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem, boxed: it travels as the error of every admin handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(Box<ProblemDocument>);

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDocument {
    /// A URI naming the kind of problem (`urn:khoa:problem:…`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The offending member of the request, as a path (`redirect_uris`, `lifetimes.access_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With 401 and 403: the RFC 6750 error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    www_authenticate: Option<String>,
}

impl Problem {
    fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self(Box::new(ProblemDocument {
            kind: format!("urn:khoa:problem:{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            error: None,
            www_authenticate: None,
        }))
    }

    /// 400: a member breaks a rule.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        let mut p = Self::new(StatusCode::BAD_REQUEST, "invalid-field", "A field is invalid", detail);
        p.0.field = Some(field.to_string()).filter(|f| !f.is_empty());
        p
    }

    /// 400: the body or query cannot be read at all.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-request", "The request cannot be read", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "No such resource", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "The resource exists", detail)
    }

    /// 412: If-Match named a revision that is no longer current (a lost update refused).
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, "precondition-failed", "The resource changed", detail)
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("the body must be {expected}"),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this resource does not take that method",
        )
    }

    pub fn no_such_endpoint() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "No such resource", "no admin endpoint has this path")
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Unavailable",
            "the database is unreachable; retry later",
        )
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "the error is in the server's log")
    }

    /// 401 (RFC 6750 §3): no token, or `invalid_token`.
    pub fn unauthorized(error: Option<&str>, detail: &str) -> Self {
        let mut p = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required", detail);
        p.0.www_authenticate = Some(match error {
            Some(code) => format!("Bearer realm=\"khoa-admin\", error=\"{code}\", error_description=\"{detail}\""),
            None => "Bearer realm=\"khoa-admin\"".to_string(),
        });
        p.0.error = error.map(str::to_string);
        p
    }

    /// 403 (RFC 6750 §3.1) `insufficient_scope`, naming the scope needed.
    pub fn insufficient_scope(scope: &str, detail: &str) -> Self {
        let mut p = Self::new(StatusCode::FORBIDDEN, "forbidden", "Insufficient scope", detail);
        p.0.www_authenticate = Some(format!(
            "Bearer realm=\"khoa-admin\", error=\"insufficient_scope\", error_description=\"{detail}\", scope=\"{scope}\""
        ));
        p.0.error = Some("insufficient_scope".into());
        p
    }

    /// A refusal made before any admin handler ran (the body limit, the URI limit, the
    /// request timeout), as a problem.
    pub fn of_status(status: StatusCode) -> Self {
        let detail = match status.as_u16() {
            413 => "the request body is larger than the server accepts",
            414 => "the request URI is too long",
            408 => "the request took too long",
            _ => "the request cannot be served",
        };
        let title = status.canonical_reason().unwrap_or("Error");
        Self::new(status, &format!("http-{}", status.as_u16()), title, detail)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<khoa_store::StoreError> for Problem {
    fn from(e: khoa_store::StoreError) -> Self {
        if matches!(e, khoa_store::StoreError::NulInText) {
            return Self::malformed("a parameter contains a NUL character");
        }
        if e.is_unavailable() {
            tracing::error!(error = %e, "database unavailable");
            Self::unavailable()
        } else {
            tracing::error!(error = %e, "store error");
            Self::internal()
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&*self.0).unwrap_or_default();
        let mut res = (self.status(), body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self.0.www_authenticate.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}
