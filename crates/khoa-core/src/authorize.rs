//! The authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1), validated
//! as a sequence of small named checks.
//!
//! RFC 6749 §4.1.2.1: when the client or the redirect URI cannot be trusted the user
//! sees an error page and is never redirected; every later error is returned to the
//! client at its redirect URI, with `state` and `iss` (RFC 9207).

use crate::client::{Client, GrantType};
use crate::pkce::CodeChallenge;
use crate::scope::ScopeSet;
use std::collections::HashMap;

/// Longest `state` and `nonce` accepted (they are echoed and stored).
pub const MAX_ECHO_LEN: usize = 2048;
/// Longest `login_hint`, `acr_values` and `ui_locales` accepted.
pub const MAX_HINT_LEN: usize = 256;
/// Longest `id_token_hint` accepted (our ID tokens are about a kilobyte).
pub const MAX_ID_TOKEN_HINT_LEN: usize = 4096;
/// Longest `scope` accepted.
pub const MAX_SCOPE_LEN: usize = 1024;

/// OAuth 2.0 error codes an authorization request can end with (RFC 6749 §4.1.2.1,
/// OIDC Core §3.1.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeErrorCode {
    InvalidRequest,
    UnauthorizedClient,
    AccessDenied,
    UnsupportedResponseType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    RequestNotSupported,
    RequestUriNotSupported,
}

impl AuthorizeErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InteractionRequired => "interaction_required",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
        }
    }
}

/// Why a request cannot even be answered at a redirect URI: shown as an error page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UntrustedRequest {
    #[error("the request has no client_id")]
    MissingClientId,
    #[error("the parameter {0} appears more than once")]
    Repeated(&'static str),
    #[error("unknown client")]
    UnknownClient,
    #[error("the request has no redirect_uri and the client registered several")]
    MissingRedirectUri,
    #[error("the redirect_uri is not registered for this client")]
    UnregisteredRedirectUri,
}

/// How the authorization response reaches the client (OAuth 2.0 Multiple Response
/// Type Encoding Practices §2.1, OAuth 2.0 Form Post Response Mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// In the redirect URI's query (a 303).
    #[default]
    Query,
    /// As an HTML form the browser posts to the redirect URI.
    FormPost,
}

impl ResponseMode {
    pub const SUPPORTED: [&'static str; 2] = ["query", "form_post"];
}

/// An error to send back to the client at its redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub code: AuthorizeErrorCode,
    /// RFC 6749 §4.1.2.1: printable ASCII without `"` and `\`.
    pub description: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    Untrusted(UntrustedRequest),
    Redirect(RedirectError),
}

/// `prompt` (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// The redirect URI exactly as the client sent it (or the single registered one).
    pub redirect_uri: String,
    /// Whether the client sent `redirect_uri` (RFC 6749 §4.1.3: then the token request
    /// must repeat it).
    pub redirect_uri_sent: bool,
    pub scope: ScopeSet,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    pub ui_locales: Vec<String>,
    pub acr_values: Option<String>,
    #[serde(default)]
    pub response_mode: ResponseMode,
}

/// Request parameters, from the query string (GET) or the form body (POST).
pub struct Params(HashMap<String, Vec<String>>);

impl Params {
    pub fn new<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            map.entry(k).or_default().push(v);
        }
        Self(map)
    }

    /// RFC 6749 §3.1: parameters sent without a value are treated as omitted.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.first()).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn repeated(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| v.len() > 1)
    }

    /// The client_id, for looking the client up before [`validate`].
    pub fn client_id(&self) -> Option<&str> {
        self.get("client_id")
    }
}

/// Parameters that must not repeat (RFC 6749 §3.1); the first two are checked before
/// anything can be redirected.
const SINGLE: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "response_mode",
];

/// Splits `http://host[:port]rest` into (host, rest) for loopback comparison.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let host = if authority.starts_with('[') {
        &authority[..authority.find(']')? + 1]
    } else {
        authority.split(':').next()?
    };
    let port = &authority[host.len()..];
    if !(port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    {
        return None;
    }
    matches!(host, "127.0.0.1" | "[::1]" | "localhost").then_some((host, rest))
}

/// RFC 6749 §3.1.2.3 / RFC 9700 §2.1: exact string match; RFC 8252 §7.3: a loopback
/// redirect URI may differ in port only.
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(presented)) {
        (Some((h1, r1)), Some((h2, r2))) => h1 == h2 && r1 == r2,
        _ => false,
    }
}

type Check = fn(&Params, &Client, &mut AuthorizationRequest) -> Result<(), (AuthorizeErrorCode, &'static str)>;

fn check_repeats(
    p: &Params,
    _: &Client,
    _: &mut AuthorizationRequest,
) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    if SINGLE.iter().any(|n| p.repeated(n)) {
        return Err((AuthorizeErrorCode::InvalidRequest, "a parameter appears more than once"));
    }
    Ok(())
}

fn check_request_objects(
    p: &Params,
    _: &Client,
    _: &mut AuthorizationRequest,
) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    if p.get("request").is_some() {
        return Err((AuthorizeErrorCode::RequestNotSupported, "request objects are not supported"));
    }
    if p.get("request_uri").is_some() {
        return Err((AuthorizeErrorCode::RequestUriNotSupported, "request_uri is not supported"));
    }
    Ok(())
}

fn check_response_type(
    p: &Params,
    c: &Client,
    _: &mut AuthorizationRequest,
) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    match p.get("response_type") {
        None => Err((AuthorizeErrorCode::InvalidRequest, "response_type is required")),
        Some("code") if c.allows_grant(GrantType::AuthorizationCode) => Ok(()),
        Some("code") => {
            Err((AuthorizeErrorCode::UnauthorizedClient, "the client may not use the authorization code flow"))
        }
        Some(_) => Err((AuthorizeErrorCode::UnsupportedResponseType, "only response_type=code is supported")),
    }
}

/// The response mode, read before any other check so that their errors travel by it
/// too; an unknown one is an error sent in the query.
fn response_mode(p: &Params) -> Result<ResponseMode, &'static str> {
    match p.get("response_mode") {
        None | Some("query") => Ok(ResponseMode::Query),
        Some("form_post") => Ok(ResponseMode::FormPost),
        Some(_) => Err("response_mode must be query or form_post"),
    }
}

fn check_scope(p: &Params, c: &Client, r: &mut AuthorizationRequest) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    if p.get("scope").is_some_and(|s| s.len() > MAX_SCOPE_LEN) {
        return Err((AuthorizeErrorCode::InvalidRequest, "scope is too long"));
    }
    let scope = ScopeSet::parse(p.get("scope").unwrap_or(""))
        .map_err(|_| (AuthorizeErrorCode::InvalidScope, "scope contains invalid characters"))?;
    // The admin scopes are granted by client_credentials alone: a user's consent never
    // hands the admin API to an application.
    if scope.iter().any(crate::scope::is_reserved) {
        return Err((AuthorizeErrorCode::InvalidScope, "the khoa: scopes are granted by client_credentials only"));
    }
    if !scope.iter().all(|s| c.scopes.iter().any(|allowed| allowed == s)) {
        return Err((AuthorizeErrorCode::InvalidScope, "the client may not request one of the scopes"));
    }
    r.scope = scope;
    Ok(())
}

fn check_pkce(p: &Params, c: &Client, r: &mut AuthorizationRequest) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, None) if c.is_public() => {
            Err((AuthorizeErrorCode::InvalidRequest, "public clients must send a PKCE code_challenge (S256)"))
        }
        (None, None) => Ok(()),
        (None, Some(_)) => Err((AuthorizeErrorCode::InvalidRequest, "code_challenge_method without code_challenge")),
        (Some(challenge), method) => {
            r.code_challenge = Some(CodeChallenge::parse(challenge, method).map_err(|e| match e {
                crate::pkce::PkceError::UnsupportedMethod => {
                    (AuthorizeErrorCode::InvalidRequest, "code_challenge_method must be S256")
                }
                _ => (AuthorizeErrorCode::InvalidRequest, "code_challenge must be 43 base64url characters"),
            })?);
            Ok(())
        }
    }
}

fn check_prompt(
    p: &Params,
    _: &Client,
    r: &mut AuthorizationRequest,
) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    let mut prompt = Prompt::default();
    for value in p.get("prompt").unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
        match value {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            "select_account" => prompt.select_account = true,
            _ => return Err((AuthorizeErrorCode::InvalidRequest, "unknown prompt value")),
        }
    }
    // OIDC Core §3.1.2.1: none with any other value is an error.
    if prompt.none && (prompt.login || prompt.consent || prompt.select_account) {
        return Err((AuthorizeErrorCode::InvalidRequest, "prompt=none cannot be combined with other values"));
    }
    r.prompt = prompt;
    Ok(())
}

fn check_max_age(
    p: &Params,
    _: &Client,
    r: &mut AuthorizationRequest,
) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    if let Some(v) = p.get("max_age") {
        let age: i64 =
            v.parse().map_err(|_| (AuthorizeErrorCode::InvalidRequest, "max_age must be a non-negative integer"))?;
        if age < 0 {
            return Err((AuthorizeErrorCode::InvalidRequest, "max_age must be a non-negative integer"));
        }
        r.max_age = Some(age);
    }
    Ok(())
}

fn check_echoed(
    p: &Params,
    _: &Client,
    r: &mut AuthorizationRequest,
) -> Result<(), (AuthorizeErrorCode, &'static str)> {
    // Every value that is kept with the pending request has a cap (RFC 6749 §4.1.2.1:
    // an invalid parameter value is invalid_request).
    let capped = |name: &str, max: usize, error: &'static str| match p.get(name) {
        Some(v) if v.len() > max => Err((AuthorizeErrorCode::InvalidRequest, error)),
        v => Ok(v.map(str::to_string)),
    };
    r.nonce = capped("nonce", MAX_ECHO_LEN, "nonce is too long")?;
    r.login_hint = capped("login_hint", MAX_HINT_LEN, "login_hint is too long")?;
    r.id_token_hint = capped("id_token_hint", MAX_ID_TOKEN_HINT_LEN, "id_token_hint is too long")?;
    r.acr_values = capped("acr_values", MAX_HINT_LEN, "acr_values is too long")?;
    let ui_locales = capped("ui_locales", MAX_HINT_LEN, "ui_locales is too long")?.unwrap_or_default();
    r.ui_locales = ui_locales.split(' ').filter(|l| !l.is_empty()).map(str::to_string).collect();
    Ok(())
}

/// Every check after the client and redirect URI are trusted, in order.
const CHECKS: &[Check] = &[
    check_repeats,
    check_request_objects,
    check_response_type,
    check_scope,
    check_pkce,
    check_prompt,
    check_max_age,
    check_echoed,
];

/// Validates an authorization request for `client` (looked up by the caller from
/// [`Params::client_id`]; `None` when unknown).
pub fn validate(params: &Params, client: Option<&Client>) -> Result<AuthorizationRequest, AuthorizeError> {
    let untrusted = |e| Err(AuthorizeError::Untrusted(e));
    if params.repeated("client_id") {
        return untrusted(UntrustedRequest::Repeated("client_id"));
    }
    if params.repeated("redirect_uri") {
        return untrusted(UntrustedRequest::Repeated("redirect_uri"));
    }
    if params.client_id().is_none() {
        return untrusted(UntrustedRequest::MissingClientId);
    }
    let Some(client) = client.filter(|c| Some(c.client_id.as_str()) == params.client_id()) else {
        return untrusted(UntrustedRequest::UnknownClient);
    };
    let (redirect_uri, sent) = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| redirect_uri_matches(r, uri)) => (uri.to_string(), true),
        Some(_) => return untrusted(UntrustedRequest::UnregisteredRedirectUri),
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => return untrusted(UntrustedRequest::MissingRedirectUri),
        },
    };
    // From here on, errors go back to the client; `state` goes with them (if sane).
    let state = params.get("state").filter(|s| s.len() <= MAX_ECHO_LEN).map(str::to_string);
    let mut request = AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        redirect_uri_sent: sent,
        scope: ScopeSet::default(),
        state: state.clone(),
        nonce: None,
        code_challenge: None,
        prompt: Prompt::default(),
        max_age: None,
        login_hint: None,
        id_token_hint: None,
        ui_locales: vec![],
        acr_values: None,
        response_mode: ResponseMode::Query,
    };
    match response_mode(params) {
        Ok(mode) => request.response_mode = mode,
        Err(description) => return Err(redirect_error(&request, AuthorizeErrorCode::InvalidRequest, description)),
    }
    if params.get("state").is_some_and(|s| s.len() > MAX_ECHO_LEN) {
        return Err(redirect_error(&request, AuthorizeErrorCode::InvalidRequest, "state is too long"));
    }
    for check in CHECKS {
        if let Err((code, description)) = check(params, client, &mut request) {
            return Err(redirect_error(&request, code, description));
        }
    }
    Ok(request)
}

fn redirect_error(r: &AuthorizationRequest, code: AuthorizeErrorCode, description: &'static str) -> AuthorizeError {
    AuthorizeError::Redirect(RedirectError {
        redirect_uri: r.redirect_uri.clone(),
        response_mode: r.response_mode,
        state: r.state.clone(),
        code,
        description,
    })
}

/// `redirect_uri` with `params` added to its query (keeping the query it has).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = redirect_uri.to_string();
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let query = ser.finish();
    if query.is_empty() {
        return out;
    }
    out.push(if redirect_uri.contains('?') { '&' } else { '?' });
    out.push_str(&query);
    out
}

impl RedirectError {
    /// The error response's parameters (RFC 6749 §4.1.2.1, RFC 9207 `iss`).
    pub fn params<'a>(&'a self, issuer: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut params = vec![("error", self.code.as_str()), ("error_description", self.description)];
        if let Some(state) = &self.state {
            params.push(("state", state));
        }
        params.push(("iss", issuer));
        params
    }

    /// The error redirect in the query.
    pub fn location(&self, issuer: &str) -> String {
        redirect_with(&self.redirect_uri, &self.params(issuer))
    }
}

pub mod step;

#[cfg(test)]
mod tests;
