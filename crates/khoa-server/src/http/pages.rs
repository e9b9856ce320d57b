//! Server-rendered pages (askama templates in `templates/`, escaped by default) and the
//! headers every page carries.

use crate::http::i18n::{Locale, Texts};
use askama::Template;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub t: &'static Texts,
    pub client_name: &'a str,
    pub logo_uri: Option<&'a str>,
    pub error: Option<&'static str>,
    pub username: &'a str,
    pub interaction: &'a str,
    pub csrf_token: &'a str,
    pub a: &'static crate::http::account_texts::AccountTexts,
    /// Whether to offer "Forgot password?" (mail can be sent).
    pub forgot: bool,
    /// Whether to offer self-registration.
    pub register: bool,
    /// "Sign in with a passkey", where passkeys are offered.
    pub w: Option<WebauthnForm<'a>>,
}

/// The script of the pages that run a WebAuthn ceremony (a passkey) when its button is
/// pressed, allowed by its hash in their CSP (as `response_mode=form_post`'s is).
pub const WEBAUTHN_JS: &str = include_str!("../../assets/webauthn.js");

/// `'sha256-…'` of `script` (CSP Level 3 hash source), for `script-src`.
pub fn script_source(script: &str) -> String {
    use base64::Engine;
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(khoa_core::session::sha256(script.as_bytes()))
    )
}

/// [`script_source`] of [`WEBAUTHN_JS`], computed once.
pub fn webauthn_js_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| script_source(WEBAUTHN_JS))
}

/// A page's Content-Security-Policy: nothing loads but khoa's stylesheet and images;
/// forms post to `form_action`; `script` (a hash source) is the one script allowed;
/// `frames` may be framed (front-channel logout).
fn csp(script: Option<&str>, form_action: &str, frames: &[String]) -> String {
    let script_src = script.map(|s| format!("script-src {s}; ")).unwrap_or_default();
    let frame_src = if frames.is_empty() { String::new() } else { format!("; frame-src {}", frames.join(" ")) };
    format!(
        "default-src 'none'; {script_src}style-src 'self'; img-src 'self' https: data:; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'{frame_src}"
    )
}

/// `form-action` of a page whose forms post here, and to `form_target` when given.
fn form_action(form_target: Option<&str>) -> String {
    match form_target {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_string(),
    }
}

/// A form that runs a passkey ceremony (`webauthn.html`): the options for the browser
/// (JSON, made safe to sit in a page), where the answer goes, and the words.
pub struct WebauthnForm<'a> {
    pub action: &'a str,
    pub hidden: Vec<(&'a str, &'a str)>,
    pub options: String,
    pub button: &'static str,
    pub failed: &'static str,
    pub noscript: &'static str,
    /// A name field (registration), with its label.
    pub name_label: Option<&'static str>,
    pub default_name: &'static str,
    pub secondary: bool,
    pub script: &'static str,
}

impl<'a> WebauthnForm<'a> {
    pub fn new(
        action: &'a str,
        hidden: Vec<(&'a str, &'a str)>,
        options: &str,
        f: &'static crate::http::factor_texts::FactorTexts,
        button: &'static str,
    ) -> Self {
        // JSON in a script element: nothing in it may close the element.
        let options = options.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
        Self {
            action,
            hidden,
            options,
            button,
            failed: f.passkey_failed,
            noscript: f.passkey_noscript,
            name_label: None,
            default_name: "",
            secondary: false,
            script: WEBAUTHN_JS,
        }
    }
}

/// Adding a passkey: on the account page, or during a sign-in a policy asks it of.
#[derive(Template)]
#[template(path = "passkey_add.html")]
pub struct PasskeyAddPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub intro: &'a str,
    pub error: Option<&'static str>,
    pub w: Option<WebauthnForm<'a>>,
}

/// The second step of a sign-in: an app's code, or a recovery code.
#[derive(Template)]
#[template(path = "login_factor.html")]
pub struct FactorPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub t: &'static Texts,
    pub f: &'static crate::http::factor_texts::FactorTexts,
    pub client_name: &'a str,
    pub error: Option<&'static str>,
    pub interaction: &'a str,
    pub csrf_token: &'a str,
    pub totp: bool,
    pub recovery: bool,
    /// A passkey of the person's, when they have one.
    pub w: Option<WebauthnForm<'a>>,
}

/// Setting up an authenticator app: at sign-in (a policy asks for it) or on the account
/// page.
#[derive(Template)]
#[template(path = "totp_enrol.html")]
pub struct TotpEnrolPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub f: &'static crate::http::factor_texts::FactorTexts,
    pub intro: &'a str,
    pub error: Option<&'static str>,
    /// The `otpauth://` URI as a QR code (SVG made here, from our own URI).
    pub qr_svg: &'a str,
    pub otpauth: &'a str,
    /// The secret in groups of four, as people type it.
    pub secret: &'a str,
    pub action: &'a str,
    pub hidden: Vec<(&'a str, &'a str)>,
}

/// Recovery codes, shown once.
#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub f: &'static crate::http::factor_texts::FactorTexts,
    pub codes: &'a [String],
    pub next: &'a str,
}

/// `text` as a QR code in SVG (no XML declaration: it goes inside a page).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build();
    Some(match svg.find("<svg") {
        Some(at) => svg[at..].to_string(),
        None => svg,
    })
}

/// A TOTP secret in base32, in groups of four.
pub fn grouped(secret: &str) -> String {
    secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub t: &'static Texts,
    pub client_name: &'a str,
    pub logo_uri: Option<&'a str>,
    pub scopes: Vec<String>,
    pub interaction: &'a str,
    pub csrf_token: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub t: &'static Texts,
    pub intro: &'a str,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub t: &'static Texts,
    pub csrf_token: &'a str,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub ui_locales: Option<&'a str>,
}

/// The authorization response as a form the browser posts to the client (OAuth 2.0
/// Form Post Response Mode).
#[derive(Template)]
#[template(path = "form_post.html")]
pub struct FormPostPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub title: &'static str,
    pub t: &'static Texts,
    pub action: &'a str,
    pub params: &'a [(&'a str, &'a str)],
    pub script: &'static str,
}

/// What the form_post page runs: submit the one form. Its hash is the page's only
/// `script-src`.
pub const FORM_POST_SCRIPT: &str = "document.forms[0].submit();";

/// The authorization response (success or error) for `redirect_uri`, delivered as the
/// request asked: a 303 with the parameters in the query, or a form_post page whose
/// CSP allows that one script and a form to that one URI.
pub fn to_client(
    brand: &crate::app::settings::Branding,
    locale: Locale,
    redirect_uri: &str,
    mode: khoa_core::authorize::ResponseMode,
    params: &[(&str, &str)],
) -> Response {
    use khoa_core::authorize::ResponseMode;
    if mode == ResponseMode::Query {
        return axum::response::Redirect::to(&khoa_core::authorize::redirect_with(redirect_uri, params))
            .into_response();
    }
    let html = match render(&FormPostPage {
        brand,
        lang: locale.tag(),
        title: locale.texts().form_post_title,
        t: locale.texts(),
        action: redirect_uri,
        params,
        script: FORM_POST_SCRIPT,
    }) {
        Ok(html) => html,
        Err(e) => return e.into_response(),
    };
    // A CSP source matches the path exactly, and ignores the query; `;` and `,` would
    // end the directive or the source, so they are percent-encoded (as CSP matches).
    let target = redirect_uri.split(['?', '#']).next().unwrap_or(redirect_uri).replace(';', "%3B").replace(',', "%2C");
    let csp = csp(Some(&script_source(FORM_POST_SCRIPT)), &target, &[]);
    html_page(StatusCode::OK, html, &csp, vec![])
}

#[derive(Template)]
#[template(path = "logged_out.html")]
pub struct LoggedOutPage<'a> {
    pub brand: &'a crate::app::settings::Branding,
    pub lang: &'static str,
    pub t: &'static Texts,
    /// Front-channel logout iframes (OIDC Front-Channel Logout 1.0 §2).
    pub frames: &'a [String],
    pub redirect: Option<&'a str>,
    pub wait_seconds: u32,
}

/// A page response: `Content-Security-Policy` allowing only our stylesheet, images,
/// and forms to us (and to `form_target`, where a form's 303 leads), never framed.
pub fn page(status: StatusCode, html: String, form_target: Option<&str>, extra: Vec<(HeaderName, String)>) -> Response {
    page_with_frames(status, html, form_target, &[], extra)
}

/// A page that runs a passkey ceremony: as [`page`], with [`WEBAUTHN_JS`] allowed by
/// its hash (and nothing else that is a script).
pub fn page_with_script(
    status: StatusCode,
    html: String,
    form_target: Option<&str>,
    extra: Vec<(HeaderName, String)>,
) -> Response {
    let csp = csp(Some(webauthn_js_hash()), &form_action(form_target), &[]);
    html_page(status, html, &csp, extra)
}

/// [`page`] that may load exactly `frames` (URLs without their query) in iframes.
pub fn page_with_frames(
    status: StatusCode,
    html: String,
    form_target: Option<&str>,
    frames: &[String],
    extra: Vec<(HeaderName, String)>,
) -> Response {
    let csp = csp(None, &form_action(form_target), frames);
    html_page(status, html, &csp, extra)
}

/// An HTML page with the headers every page carries and its `csp`.
fn html_page(status: StatusCode, html: String, csp: &str, extra: Vec<(HeaderName, String)>) -> Response {
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    res
}

/// Renders a template; a template error (a bug, never input) becomes a plain 500.
pub fn render(t: &impl Template) -> Result<String, crate::http::error::ApiError> {
    t.render().map_err(|e| crate::http::error::ApiError::Internal(format!("template: {e}")))
}

/// The error page shown when a request cannot be returned to its client.
pub fn error_page(
    brand: &crate::app::settings::Branding,
    locale: Locale,
    status: StatusCode,
    message: &str,
) -> Response {
    let t = locale.texts();
    let html = ErrorPage { brand, lang: locale.tag(), title: t.error_title, t, intro: t.error_intro, message }
        .render()
        .unwrap_or_else(|_| "error".into());
    page(status, html, None, vec![])
}

/// The origin (`scheme://host[:port]`) of a URI, for `form-action`.
pub fn origin_of(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        // Private-use schemes (native apps): allow the scheme.
        url::Origin::Opaque(_) => Some(format!("{}:", url.scheme())),
    }
}
