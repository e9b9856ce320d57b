use super::*;
use crate::client::{ClientRegistration, SecretChoice};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn web() -> Client {
    let mut r = ClientRegistration::new("web");
    r.redirect_uris = vec!["https://app.example/cb".into(), "http://127.0.0.1:8765/cb".into()];
    r.register(0).unwrap().client
}

fn spa() -> Client {
    let mut r = ClientRegistration::new("spa");
    r.secret = SecretChoice::Public;
    r.redirect_uris = vec!["https://spa.example/cb".into()];
    r.register(0).unwrap().client
}

fn params(pairs: &[(&str, &str)]) -> Params {
    Params::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn base(extra: &[(&str, &str)]) -> Params {
    let mut all = vec![
        ("client_id", "web"),
        ("redirect_uri", "https://app.example/cb"),
        ("response_type", "code"),
        ("scope", "openid profile"),
        ("state", "s t&a=te"),
    ];
    all.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    all.extend(extra.iter().filter(|(_, v)| *v != "<omit>"));
    params(&all)
}

fn redirect_code(result: Result<AuthorizationRequest, AuthorizeError>) -> AuthorizeErrorCode {
    match result {
        Err(AuthorizeError::Redirect(e)) => {
            assert_eq!(e.state.as_deref(), Some("s t&a=te"), "state must be echoed exactly");
            e.code
        }
        other => panic!("expected an error redirect, got {other:?}"),
    }
}

fn untrusted(result: Result<AuthorizationRequest, AuthorizeError>) -> UntrustedRequest {
    match result {
        Err(AuthorizeError::Untrusted(e)) => e,
        other => panic!("expected an error page, got {other:?}"),
    }
}

#[test]
fn a_valid_request() {
    let r = validate(&base(&[("nonce", "n-0S6_WzA2Mj"), ("unknown_param", "ignored")]), Some(&web())).unwrap();
    assert_eq!(r.redirect_uri, "https://app.example/cb");
    assert!(r.redirect_uri_sent);
    assert_eq!(r.scope, ScopeSet::parse("profile openid").unwrap());
    assert_eq!(r.state.as_deref(), Some("s t&a=te"));
    assert_eq!(r.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    assert!(r.code_challenge.is_none(), "PKCE is optional for confidential clients");
}

#[test]
fn untrusted_client_or_redirect_uri_never_redirects() {
    let c = web();
    assert_eq!(untrusted(validate(&base(&[("client_id", "<omit>")]), Some(&c))), UntrustedRequest::MissingClientId);
    assert_eq!(untrusted(validate(&base(&[]), None)), UntrustedRequest::UnknownClient);
    assert_eq!(untrusted(validate(&base(&[("client_id", "other")]), Some(&c))), UntrustedRequest::UnknownClient);
    for bad in [
        "https://app.example/cb/extra",
        "https://app.example/cb?x=1",
        "https://app.example/CB",
        "https://app.example/cb#",
        "https://evil.example/cb",
        "http://app.example/cb",
        "https://app.example/cb/",
    ] {
        assert_eq!(
            untrusted(validate(&base(&[("redirect_uri", bad)]), Some(&c))),
            UntrustedRequest::UnregisteredRedirectUri,
            "{bad}"
        );
    }
    assert_eq!(
        untrusted(validate(&base(&[("redirect_uri", "<omit>")]), Some(&c))),
        UntrustedRequest::MissingRedirectUri
    );
    let repeated = params(&[("client_id", "web"), ("client_id", "web"), ("response_type", "code")]);
    assert_eq!(untrusted(validate(&repeated, Some(&c))), UntrustedRequest::Repeated("client_id"));
    let repeated = params(&[
        ("client_id", "web"),
        ("redirect_uri", "https://app.example/cb"),
        ("redirect_uri", "https://evil.example/cb"),
    ]);
    assert_eq!(untrusted(validate(&repeated, Some(&c))), UntrustedRequest::Repeated("redirect_uri"));
}

#[test]
fn the_only_registered_uri_is_used_when_none_is_sent() {
    let p = params(&[
        ("client_id", "spa"),
        ("response_type", "code"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    let r = validate(&p, Some(&spa())).unwrap();
    assert_eq!(r.redirect_uri, "https://spa.example/cb");
    assert!(!r.redirect_uri_sent);
}

#[test]
fn loopback_redirect_may_change_port_only() {
    assert!(redirect_uri_matches("http://127.0.0.1:8765/cb", "http://127.0.0.1:50123/cb"));
    assert!(redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:50123/cb"));
    assert!(redirect_uri_matches("http://[::1]:1/cb?x=1", "http://[::1]:2/cb?x=1"));
    assert!(redirect_uri_matches("http://localhost:3000/cb", "http://localhost:4000/cb"));
    assert!(!redirect_uri_matches("http://127.0.0.1:8765/cb", "http://127.0.0.1:50123/cb/x"));
    assert!(!redirect_uri_matches("http://127.0.0.1:8765/cb", "http://localhost:8765/cb"));
    assert!(!redirect_uri_matches("http://127.0.0.1:8765/cb", "https://127.0.0.1:8765/cb"));
    assert!(!redirect_uri_matches("http://127.0.0.1:8765/cb", "http://127.0.0.1:/cb"));
    assert!(!redirect_uri_matches("http://127.0.0.1:8765/cb", "http://127.0.0.1:8765@evil.example/cb"));
    assert!(!redirect_uri_matches("https://app.example:443/cb", "https://app.example/cb"));
    let r = validate(&base(&[("redirect_uri", "http://127.0.0.1:40000/cb")]), Some(&web())).unwrap();
    assert_eq!(r.redirect_uri, "http://127.0.0.1:40000/cb", "the presented URI is the one redirected to");
}

#[test]
fn response_type_rules() {
    let c = web();
    assert_eq!(
        redirect_code(validate(&base(&[("response_type", "<omit>")]), Some(&c))),
        AuthorizeErrorCode::InvalidRequest
    );
    for rt in ["token", "id_token", "code id_token", "code token"] {
        assert_eq!(
            redirect_code(validate(&base(&[("response_type", rt)]), Some(&c))),
            AuthorizeErrorCode::UnsupportedResponseType
        );
    }
    let mut m2m = web();
    m2m.grant_types = vec![GrantType::ClientCredentials];
    assert_eq!(redirect_code(validate(&base(&[]), Some(&m2m))), AuthorizeErrorCode::UnauthorizedClient);
    assert_eq!(
        redirect_code(validate(&base(&[("response_mode", "fragment")]), Some(&c))),
        AuthorizeErrorCode::InvalidRequest
    );
    assert!(validate(&base(&[("response_mode", "query")]), Some(&c)).is_ok());
}

#[test]
fn the_response_mode_is_read_first_and_carries_every_later_error() {
    let r = validate(&base(&[("response_mode", "form_post")]), Some(&web())).unwrap();
    assert_eq!(r.response_mode, ResponseMode::FormPost);
    assert_eq!(validate(&base(&[]), Some(&web())).unwrap().response_mode, ResponseMode::Query);
    // A later error goes back by form_post too; an unknown mode by the query.
    for (mode, sent_by) in
        [("form_post", ResponseMode::FormPost), ("fragment", ResponseMode::Query), ("", ResponseMode::Query)]
    {
        match validate(&base(&[("response_mode", mode), ("response_type", "token")]), Some(&web())) {
            Err(AuthorizeError::Redirect(e)) => assert_eq!(e.response_mode, sent_by, "{mode}"),
            other => panic!("{mode}: {other:?}"),
        }
    }
    match validate(&base(&[("response_mode", "fragment")]), Some(&web())) {
        Err(AuthorizeError::Redirect(e)) => assert_eq!(e.description, "response_mode must be query or form_post"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_objects_are_not_supported() {
    let c = web();
    assert_eq!(
        redirect_code(validate(&base(&[("request", "eyJ")]), Some(&c))),
        AuthorizeErrorCode::RequestNotSupported
    );
    assert_eq!(
        redirect_code(validate(&base(&[("request_uri", "https://x.example/r")]), Some(&c))),
        AuthorizeErrorCode::RequestUriNotSupported
    );
}

#[test]
fn pkce_rules() {
    let c = web();
    let p = params(&[("client_id", "spa"), ("response_type", "code"), ("state", "s t&a=te")]);
    assert_eq!(
        redirect_code(validate(&p, Some(&spa()))),
        AuthorizeErrorCode::InvalidRequest,
        "public client without PKCE"
    );
    let plain = base(&[("code_challenge", CHALLENGE), ("code_challenge_method", "plain")]);
    assert_eq!(redirect_code(validate(&plain, Some(&c))), AuthorizeErrorCode::InvalidRequest);
    let no_method = base(&[("code_challenge", CHALLENGE)]);
    assert_eq!(redirect_code(validate(&no_method, Some(&c))), AuthorizeErrorCode::InvalidRequest);
    let short = base(&[("code_challenge", &CHALLENGE[..42]), ("code_challenge_method", "S256")]);
    assert_eq!(redirect_code(validate(&short, Some(&c))), AuthorizeErrorCode::InvalidRequest);
    let method_only = base(&[("code_challenge_method", "S256")]);
    assert_eq!(redirect_code(validate(&method_only, Some(&c))), AuthorizeErrorCode::InvalidRequest);
    let ok = validate(&base(&[("code_challenge", CHALLENGE), ("code_challenge_method", "S256")]), Some(&c)).unwrap();
    assert_eq!(ok.code_challenge.unwrap().as_str(), CHALLENGE);
}

#[test]
fn prompt_max_age_scope_and_repeats() {
    let c = web();
    for bad in [
        ("prompt", "none login"),
        ("prompt", "none consent"),
        ("prompt", "sometimes"),
        ("max_age", "-1"),
        ("max_age", "soon"),
    ] {
        assert_eq!(redirect_code(validate(&base(&[bad]), Some(&c))), AuthorizeErrorCode::InvalidRequest, "{bad:?}");
    }
    let r = validate(&base(&[("prompt", "login consent"), ("max_age", "0")]), Some(&c)).unwrap();
    assert!(r.prompt.login && r.prompt.consent && !r.prompt.none);
    assert_eq!(r.max_age, Some(0));
    assert_eq!(
        redirect_code(validate(&base(&[("scope", "openid admin")]), Some(&c))),
        AuthorizeErrorCode::InvalidScope
    );
    assert_eq!(
        redirect_code(validate(&base(&[("scope", "openid \"x\"")]), Some(&c))),
        AuthorizeErrorCode::InvalidScope
    );
    let mut ps = vec![
        ("client_id", "web"),
        ("redirect_uri", "https://app.example/cb"),
        ("response_type", "code"),
        ("state", "s t&a=te"),
        ("scope", "openid"),
        ("scope", "email"),
    ];
    assert_eq!(redirect_code(validate(&params(&ps), Some(&c))), AuthorizeErrorCode::InvalidRequest);
    ps.truncate(5);
    let r = validate(
        &params(
            &[("ui_locales", "vi en"), ("login_hint", "sv01")].iter().chain(ps.iter()).cloned().collect::<Vec<_>>(),
        ),
        Some(&c),
    )
    .unwrap();
    assert_eq!(r.ui_locales, ["vi", "en"]);
    assert_eq!(r.login_hint.as_deref(), Some("sv01"));
}

#[test]
fn error_redirects_carry_state_and_iss() {
    let err = match validate(&base(&[("response_type", "token")]), Some(&web())) {
        Err(AuthorizeError::Redirect(e)) => e,
        other => panic!("{other:?}"),
    };
    let location = err.location("https://sso.example.vn");
    let url = url::Url::parse(&location).unwrap();
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "unsupported_response_type");
    assert_eq!(q["state"], "s t&a=te");
    assert_eq!(q["iss"], "https://sso.example.vn");
    // RFC 6749 §4.1.2.1: error_description is %x20-21 / %x23-5B / %x5D-7E.
    assert!(q["error_description"]
        .bytes()
        .all(|b| b == 0x20 || b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)));
    assert_eq!(redirect_with("https://a.example/cb?x=1", &[("code", "c")]), "https://a.example/cb?x=1&code=c");
}

#[test]
fn every_kept_parameter_has_a_cap() {
    let long = |n: usize| "x".repeat(n);
    let cases: [(&str, usize, &str); 6] = [
        ("nonce", MAX_ECHO_LEN, "nonce is too long"),
        ("login_hint", MAX_HINT_LEN, "login_hint is too long"),
        ("acr_values", MAX_HINT_LEN, "acr_values is too long"),
        ("ui_locales", MAX_HINT_LEN, "ui_locales is too long"),
        ("id_token_hint", MAX_ID_TOKEN_HINT_LEN, "id_token_hint is too long"),
        ("scope", MAX_SCOPE_LEN, "scope is too long"),
    ];
    for (name, max, description) in cases {
        let over = long(max + 1);
        match validate(&base(&[(name, over.as_str())]), Some(&web())) {
            Err(AuthorizeError::Redirect(e)) => {
                assert_eq!((e.code, e.description), (AuthorizeErrorCode::InvalidRequest, description), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        // At the cap, the parameter is accepted (scope: an unknown scope, refused as such).
        let at = long(max);
        let r = validate(&base(&[(name, at.as_str())]), Some(&web()));
        if name == "scope" {
            assert_eq!(redirect_code(r), AuthorizeErrorCode::InvalidScope);
        } else {
            assert!(r.is_ok(), "{name}: {r:?}");
        }
    }
}

#[test]
fn admin_scopes_are_never_granted_here() {
    // Even a client registered with khoa:admin (and the code grant) cannot get it for a user.
    let mut r = ClientRegistration::new("ops");
    r.redirect_uris = vec!["https://app.example/cb".into()];
    r.grant_types =
        Some(vec![crate::client::GrantType::AuthorizationCode, crate::client::GrantType::ClientCredentials]);
    r.scopes = Some("openid khoa:admin khoa:admin.read".into());
    let ops = r.register(0).unwrap().client;
    for scope in ["openid khoa:admin", "khoa:admin.read", "openid khoa:anything"] {
        let request = base(&[("client_id", "ops"), ("scope", scope)]);
        match validate(&request, Some(&ops)) {
            Err(AuthorizeError::Redirect(e)) => {
                assert_eq!(e.code, AuthorizeErrorCode::InvalidScope, "{scope}");
                assert_eq!(e.description, "the khoa: scopes are granted by client_credentials only");
            }
            other => panic!("{scope}: {other:?}"),
        }
    }
    assert!(validate(&base(&[("client_id", "ops"), ("scope", "openid")]), Some(&ops)).is_ok());
}
