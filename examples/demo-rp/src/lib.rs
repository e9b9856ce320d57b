//! A demo relying party for khoa, built with the `openidconnect` crate: "Log in with
//! khoa" (authorization code + PKCE), the user's name and claims, "Log out" through
//! RP-initiated logout, and a front-channel logout endpoint that ends its own session.
//!
//! It keeps its sessions in memory, keyed by a cookie, and is meant for trying khoa
//! out and for khoa's browser tests, not for production.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

type OidcClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

#[derive(Debug, Clone)]
pub struct Config {
    /// khoa's issuer URL.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Where this app listens, e.g. 127.0.0.1:3000.
    pub listen: SocketAddr,
    /// This app's own base URL, e.g. http://127.0.0.1:3000.
    pub base_url: String,
    /// The title shown on its pages.
    pub name: String,
}

struct Pending {
    csrf: String,
    nonce: String,
    verifier: String,
}

struct SignedIn {
    name: String,
    sid: Option<String>,
    id_token: String,
    claims: serde_json::Value,
}

#[derive(Default)]
struct Sessions {
    pending: HashMap<String, Pending>,
    signed_in: HashMap<String, SignedIn>,
}

#[derive(Clone)]
struct App {
    config: Arc<Config>,
    client: Arc<OidcClient>,
    http: openidconnect::reqwest::Client,
    end_session: String,
    sessions: Arc<Mutex<Sessions>>,
}

const COOKIE: &str = "demo_rp";

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::COOKIE)?
        .to_str()
        .ok()?
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t}</title></head><body style=\"font-family:system-ui;max-width:40rem;margin:2rem auto\"><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    ))
}

async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    let sessions = app.sessions.lock().unwrap_or_else(|p| p.into_inner());
    let signed_in = cookie(&headers).and_then(|c| sessions.signed_in.get(&c));
    let body = match signed_in {
        Some(s) => format!(
            "<p id=\"user\">Signed in as <strong>{}</strong></p><pre id=\"claims\">{}</pre><p><a id=\"logout\" href=\"/logout\">Log out</a></p>",
            escape(&s.name),
            escape(&serde_json::to_string_pretty(&s.claims).unwrap_or_default())
        ),
        None => "<p id=\"anonymous\">Not signed in.</p><p><a id=\"login\" href=\"/login\">Log in with khoa</a></p>".to_string(),
    };
    page(&app.config.name, &body).into_response()
}

async fn login(State(app): State<App>, headers: HeaderMap) -> Response {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = app
        .client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let id = cookie(&headers).unwrap_or_else(|| CsrfToken::new_random().secret().clone());
    let pending =
        Pending { csrf: csrf.secret().clone(), nonce: nonce.secret().clone(), verifier: verifier.secret().clone() };
    app.sessions.lock().unwrap_or_else(|p| p.into_inner()).pending.insert(id.clone(), pending);
    let mut res = Redirect::to(url.as_str()).into_response();
    if let Ok(v) = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax").parse() {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn callback(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(id) = cookie(&headers) else { return (StatusCode::BAD_REQUEST, "no session").into_response() };
    let pending = app.sessions.lock().unwrap_or_else(|p| p.into_inner()).pending.remove(&id);
    let Some(pending) = pending else { return (StatusCode::BAD_REQUEST, "no sign-in in progress").into_response() };
    if let Some(error) = q.get("error") {
        return page(&app.config.name, &format!("<p id=\"error\">khoa said: {}</p>", escape(error))).into_response();
    }
    if q.get("state") != Some(&pending.csrf) {
        return (StatusCode::BAD_REQUEST, "state mismatch").into_response();
    }
    let Some(code) = q.get("code") else { return (StatusCode::BAD_REQUEST, "no code").into_response() };
    let exchange = match app.client.exchange_code(AuthorizationCode::new(code.clone())) {
        Ok(e) => e,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let tokens =
        match exchange.set_pkce_verifier(PkceCodeVerifier::new(pending.verifier)).request_async(&app.http).await {
            Ok(t) => t,
            Err(e) => return (StatusCode::BAD_GATEWAY, format!("token request failed: {e}")).into_response(),
        };
    let Some(id_token) = tokens.id_token() else { return (StatusCode::BAD_GATEWAY, "no ID token").into_response() };
    let verifier = app.client.id_token_verifier();
    if let Err(e) = id_token.claims(&verifier, &Nonce::new(pending.nonce)) {
        return (StatusCode::BAD_GATEWAY, format!("invalid ID token: {e}")).into_response();
    }
    let raw = id_token.to_string();
    let sid = raw
        .split('.')
        .nth(1)
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&base64_decode(p)?).ok())
        .and_then(|c| c["sid"].as_str().map(str::to_string));
    let info: Result<CoreUserInfoClaims, _> = match app.client.user_info(tokens.access_token().clone(), None) {
        Ok(req) => req.request_async(&app.http).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let claims = match info {
        Ok(info) => serde_json::to_value(&info).unwrap_or_default(),
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("userinfo failed: {e}")).into_response(),
    };
    let name = claims["name"].as_str().or(claims["preferred_username"].as_str()).unwrap_or("?").to_string();
    let signed_in = SignedIn { name, sid, id_token: raw, claims };
    app.sessions.lock().unwrap_or_else(|p| p.into_inner()).signed_in.insert(id, signed_in);
    Redirect::to("/").into_response()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    // base64url without padding, decoded by hand to keep the demo's dependencies few.
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// RP-Initiated Logout: forget the local session and send the browser to khoa.
async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    let removed =
        cookie(&headers).and_then(|c| app.sessions.lock().unwrap_or_else(|p| p.into_inner()).signed_in.remove(&c));
    let mut url = match url::Url::parse(&app.end_session) {
        Ok(u) => u,
        Err(_) => return Redirect::to("/").into_response(),
    };
    url.query_pairs_mut().append_pair("post_logout_redirect_uri", &format!("{}/", app.config.base_url));
    url.query_pairs_mut().append_pair("state", "demo");
    if let Some(s) = removed {
        url.query_pairs_mut().append_pair("id_token_hint", &s.id_token);
    } else {
        url.query_pairs_mut().append_pair("client_id", &app.config.client_id);
    }
    Redirect::to(url.as_str()).into_response()
}

/// Front-Channel Logout: khoa's logged-out page loads this in an iframe.
async fn frontchannel(State(app): State<App>, Query(q): Query<HashMap<String, String>>) -> Response {
    if q.get("iss") == Some(&app.config.issuer) {
        if let Some(sid) = q.get("sid") {
            let mut sessions = app.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.signed_in.retain(|_, s| s.sid.as_deref() != Some(sid.as_str()));
        }
    }
    ([(header::CACHE_CONTROL, "no-store")], "signed out").into_response()
}

/// A running demo RP; dropping the handle does not stop it, `shutdown` does.
pub struct RunningRp {
    pub local_addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl RunningRp {
    pub fn shutdown(self) {
        let _ = self.stop.send(());
    }
}

/// Discovers khoa and serves the app.
pub async fn start(config: Config) -> Result<RunningRp, String> {
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let issuer = IssuerUrl::new(config.issuer.clone()).map_err(|e| e.to_string())?;
    let metadata =
        CoreProviderMetadata::discover_async(issuer, &http).await.map_err(|e| format!("discovery failed: {e}"))?;
    let discovery: serde_json::Value = http
        .get(format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/')))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))?;
    let end_session = discovery["end_session_endpoint"].as_str().unwrap_or_default().to_string();
    let redirect = RedirectUrl::new(format!("{}/callback", config.base_url)).map_err(|e| e.to_string())?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        Some(ClientSecret::new(config.client_secret.clone())),
    )
    .set_redirect_uri(redirect);
    let app =
        App { config: Arc::new(config.clone()), client: Arc::new(client), http, end_session, sessions: Arc::default() };
    let router = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", get(logout))
        .route("/frontchannel-logout", get(frontchannel))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| e.to_string())?;
    let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(RunningRp { local_addr, stop: tx })
}
