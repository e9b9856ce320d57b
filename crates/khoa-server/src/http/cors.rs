//! CORS for browser apps at the token, userinfo and revocation endpoints (the Fetch
//! standard's CORS protocol): only the origins a client allows
//! (`Client::allows_origin`: those of its redirect URIs and its `allowed_origins`),
//! never `*`. Discovery and JWKS are public documents and keep `*`; introspection is
//! for servers and answers no CORS at all.
//!
//! A request whose `Origin` the client does not allow is refused before anything
//! happens (no code spent, no refresh token rotated): a browser would hide the answer
//! from the app, so carrying it out would only lose what it gave. Requests without
//! `Origin` (servers, native apps) are untouched.

use crate::app::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use khoa_core::client::Client;

/// Request headers a browser app may send (RFC 6750 Bearer, form bodies, DPoP).
const ALLOWED_HEADERS: &str = "authorization, content-type, dpop";
/// How long a browser may cache a preflight's answer (seconds).
const MAX_AGE: &str = "600";

/// The request's `Origin`, if it sent one we can read.
pub fn origin(headers: &HeaderMap) -> Option<String> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// What the endpoint decided about the request's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No `Origin`: not a browser's cross-origin request.
    NoOrigin,
    /// The request's client allows the origin.
    Allowed(String),
    /// The request's client does not: refused, with no CORS headers.
    Refused(String),
    /// The request names no client we know (an error follows): the origin gets CORS
    /// headers when some client allows it, so the app can read the error.
    NoClient(String),
}

impl Verdict {
    /// The verdict of `client` (the one the request speaks for) on `headers`' origin.
    pub fn of(headers: &HeaderMap, client: Option<&Client>) -> Self {
        match (origin(headers), client) {
            (None, _) => Self::NoOrigin,
            (Some(o), Some(c)) if c.allows_origin(&o) => Self::Allowed(o),
            (Some(o), Some(_)) => Self::Refused(o),
            (Some(o), None) => Self::NoClient(o),
        }
    }

    pub fn refused(&self) -> bool {
        matches!(self, Self::Refused(_))
    }

    /// The endpoint's answer (or its error's) with the CORS headers this verdict calls for.
    pub async fn respond<E: IntoResponse>(
        self,
        state: &AppState,
        result: Result<Response, E>,
        expose: Option<&'static str>,
    ) -> Response {
        let mut res = result.unwrap_or_else(IntoResponse::into_response);
        self.apply(state, &mut res, expose).await;
        res
    }

    /// Adds the CORS headers this verdict calls for to the endpoint's answer
    /// (`expose`: response headers the app may read, e.g. `WWW-Authenticate`).
    pub async fn apply(self, state: &AppState, res: &mut Response, expose: Option<&'static str>) {
        let allowed = match self {
            Self::NoOrigin => return,
            Self::Allowed(o) => Some(o),
            Self::Refused(_) => None,
            Self::NoClient(o) => match state.origins.contains(state.store.as_ref(), &o).await {
                Ok(true) => Some(o),
                _ => None,
            },
        };
        let h = res.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(v) = allowed.and_then(|o| HeaderValue::from_str(&o).ok()) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            if let Some(expose) = expose {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(expose));
            }
        }
    }
}

/// The answer to a preflight (`OPTIONS` with `Origin`) for an endpoint that takes
/// `methods`: 204 with the CORS headers when some client allows the origin; 403
/// without them otherwise (the browser then sends nothing).
pub async fn preflight(state: &AppState, headers: &HeaderMap, methods: &'static str) -> Response {
    let Some(origin) = origin(headers) else {
        // Not a CORS preflight: say what the endpoint allows.
        let allow = format!("OPTIONS, {methods}");
        let mut res = StatusCode::NO_CONTENT.into_response();
        if let Ok(v) = HeaderValue::from_str(&allow) {
            res.headers_mut().insert(header::ALLOW, v);
        }
        return res;
    };
    let allowed = match state.origins.contains(state.store.as_ref(), &origin).await {
        Ok(allowed) => allowed,
        Err(e) => return crate::http::error::ApiError::from(e).into_response(),
    };
    let mut res = if allowed { StatusCode::NO_CONTENT.into_response() } else { StatusCode::FORBIDDEN.into_response() };
    let h = res.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let (true, Ok(v)) = (allowed, HeaderValue::from_str(&origin)) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    }
    res
}
