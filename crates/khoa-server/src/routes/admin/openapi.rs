//! The OpenAPI 3.1 document of the admin API, generated from its handlers and types.

use super::{audit, clients, deliveries, keys, partners, users};
use crate::app::state::AppState;
use crate::http::problem::ProblemDocument;
use crate::service::admin::clients::{ClientDocument, ClientSettings, LifetimeSettings};
use crate::service::admin::users::{UserDocument, UserSettings};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ClientCredentials, Flow, OAuth2, Scopes, SecurityScheme};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "khoa admin API", description = "Clients, users, keys, partners and the audit trail of a khoa server. \
        Authenticate with an access token from khoa's own token endpoint (client_credentials, scope khoa:admin or khoa:admin.read)."),
    paths(
        clients::list, clients::create, clients::show, clients::replace, clients::patch, clients::delete,
        clients::rotate_secret, users::list, users::create, users::show, users::patch, users::delete,
        users::disable, users::enable, users::set_password, users::revoke_sessions, users::sessions, users::consents,
        keys::list, keys::rotate_keys, partners::list, partners::create, partners::show, partners::delete,
        deliveries::list, deliveries::retry, audit::list,
    ),
    components(schemas(
        ClientDocument, ClientSettings, LifetimeSettings, clients::NewClient, clients::SecretRotation,
        UserDocument, UserSettings, users::NewUser, users::NewPassword, users::Ended,
        users::SessionDocument, users::ConsentDocument,
        keys::KeyDocument, keys::KeyRotation, partners::PartnerDocument,
        partners::PartnerInput, deliveries::DeliveryDocument,
        audit::AuditEventDocument, ProblemDocument,
    )),
    tags((name = "clients", description = "OAuth 2.0 clients (RFC 7591 metadata names)"),
         (name = "users", description = "Accounts, their sessions and consents"),
         (name = "keys", description = "Signing keys"),
         (name = "partners", description = "TCONNECT partners"),
         (name = "backchannel", description = "Back-channel logout deliveries"),
         (name = "audit", description = "The audit trail"))
)]
struct AdminApi;

/// The document for this server: its token endpoint in the security scheme.
pub(crate) fn build(issuer: &str) -> utoipa::openapi::OpenApi {
    let mut doc = AdminApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let scopes = Scopes::from_iter([("khoa:admin", "everything"), ("khoa:admin.read", "reading only")]);
    let flow = Flow::ClientCredentials(ClientCredentials::new(format!("{issuer}/oauth2/token"), scopes));
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("admin", SecurityScheme::OAuth2(OAuth2::new([flow])));
    doc
}

pub(crate) async fn document(State(state): State<AppState>) -> Response {
    let body = build(&state.settings.issuer).to_json().unwrap_or_default();
    let mut res = body.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Every answer the tests receive from the admin API, checked against the document:
/// its status is documented for the operation, with the media type documented, and a
/// JSON body validates against the documented schema (JSON Schema 2020-12, as OpenAPI
/// 3.1 has it).
#[cfg(test)]
pub(crate) fn check_response(method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
    use std::sync::OnceLock;
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    let doc = DOC.get_or_init(|| serde_json::to_value(build("https://sso.example.vn")).expect("the document"));
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let Some((template, item)) = doc["paths"].as_object().expect("paths").iter().find(|(template, _)| {
        let t: Vec<&str> = template.split('/').collect();
        t.len() == segments.len() && t.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
    }) else {
        return; // not an operation of the document (the fallback's 404, the document itself)
    };
    let Some(operation) = item.get(method.to_ascii_lowercase()) else {
        assert_eq!(status, 405, "{method} {template} is not in the document but answered {status}");
        return;
    };
    // The body limit and the request timeout answer before any handler.
    if matches!(status, 408 | 413) {
        return;
    }
    let Some(response) = operation["responses"].get(status.to_string()) else {
        panic!("{method} {template} answered {status}, which the document does not list");
    };
    let Some(content) = response.get("content").and_then(|c| c.as_object()) else {
        assert!(body.is_empty(), "{method} {template} {status}: a body the document does not describe");
        return;
    };
    let media = content_type.split(';').next().unwrap_or("").trim();
    let Some(schema) = content.get(media).map(|m| &m["schema"]) else {
        panic!("{method} {template} {status}: {media:?}, not one of {:?}", content.keys().collect::<Vec<_>>());
    };
    let instance: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    // The schema, with the document's components beside it for its references.
    let mut root = serde_json::json!({ "components": doc["components"] });
    if let (Some(root), Some(schema)) = (root.as_object_mut(), schema.as_object()) {
        root.extend(schema.clone());
    }
    let validator = jsonschema::draft202012::new(&root).expect("a valid schema");
    let errors: Vec<String> =
        validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{method} {template} {status} does not match the document: {errors:?}\n{instance}");
}
