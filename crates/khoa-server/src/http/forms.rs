//! Form bodies and query strings (`application/x-www-form-urlencoded`).

use axum::http::{header, HeaderMap};
use khoa_core::token_error::TokenEndpointError;
use std::collections::HashMap;

/// The token request's form (duplicates already refused).
pub type Form = HashMap<String, String>;

/// A non-empty form field.
pub fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Pairs of an `application/x-www-form-urlencoded` body. Invalid UTF-8 is replaced
/// (U+FFFD), so it can only fail to match, never crash.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Pairs of the query string.
pub(crate) fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    form_pairs(uri.query().unwrap_or("").as_bytes())
}

/// The form of an `application/x-www-form-urlencoded` body, refusing repeated
/// parameters (RFC 6749 §3.2).
pub fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<Form, TokenEndpointError> {
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    });
    if !form_type {
        return Err(TokenEndpointError::InvalidRequest("the body must be application/x-www-form-urlencoded"));
    }
    let mut form = HashMap::new();
    for (k, v) in form_pairs(body) {
        if form.insert(k, v).is_some() {
            return Err(TokenEndpointError::InvalidRequest("a parameter appears more than once"));
        }
    }
    Ok(form)
}

/// The headers, the peer and the form fields of a POST.
pub(crate) async fn read_post(
    req: axum::extract::Request,
) -> Result<
    (axum::http::HeaderMap, std::net::SocketAddr, std::collections::HashMap<String, String>),
    axum::response::Response,
> {
    use axum::response::IntoResponse;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let (parts, body) = req.into_parts();
    // The body limit layer has bounded it already.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| (axum::http::StatusCode::BAD_REQUEST, "the request body could not be read").into_response())?;
    Ok((parts.headers, peer, form_pairs(&body).into_iter().collect()))
}
