//! The OpenAPI 3.1 document of the admin API, generated from its handlers and types.

use super::{audit, clients, deliveries, keys, partners, users};
use crate::http::problem::ProblemDocument;
use crate::service::admin::clients::{ClientDocument, ClientSettings, LifetimeSettings};
use crate::service::admin::users::{ImportLine, ImportReport, ImportedUser, UserDocument, UserSettings};
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
        users::import, users::disable, users::enable, users::set_password, users::revoke_sessions, users::sessions, users::consents,
        users::methods, users::reset_mfa,
        keys::list, keys::rotate_keys, partners::list, partners::create, partners::show, partners::delete,
        deliveries::list, deliveries::retry, audit::list,
    ),
    components(schemas(
        ClientDocument, ClientSettings, LifetimeSettings, clients::NewClient, clients::SecretRotation,
        UserDocument, UserSettings, ImportedUser, ImportReport, ImportLine, users::NewUser, users::NewPassword, users::Ended,
        users::SessionDocument, users::ConsentDocument, users::Reset, crate::service::admin::users::MethodDocument,
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
    authentication_refusals(&mut doc);
    doc
}

/// The answers every operation can give from the layers it shares, stated once here
/// rather than beside each handler: the authentication layer's (`super::authenticate`)
/// for all, and the JSON reader's (`super::json_object`: a body that is not JSON, or
/// not the media type) for those that take a body.
fn authentication_refusals(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Content, Ref, ResponseBuilder};
    let problem = |description: &str| {
        let schema = Ref::from_schema_name(<ProblemDocument as utoipa::ToSchema>::name());
        ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", Content::new(Some(schema)))
            .build()
    };
    let refusals = [
        ("401", "No token, or one that is unknown, expired or revoked, a user's, or whose client no longer holds an admin scope (RFC 6750 invalid_token)"),
        ("403", "The token lacks the scope this operation needs (RFC 6750 insufficient_scope)"),
    ];
    let body_refusals = [
        ("400", "The request cannot be read, or a member breaks a rule (named in `field`)"),
        ("415", "The body is not of the media type this operation takes"),
    ];
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let takes_body = operation.request_body.is_some();
            let shared = refusals.iter().chain(body_refusals.iter().filter(|_| takes_body));
            for (status, description) in shared {
                operation.responses.responses.entry(status.to_string()).or_insert_with(|| problem(description).into());
            }
        }
    }
}

/// The answer of `GET /admin/openapi.json`: the document as JSON (`Response` is
/// cloned per request, so its parts are).
#[derive(Clone)]
pub(crate) struct DocumentResponse(axum::body::Bytes);

impl IntoResponse for DocumentResponse {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.0).into_response()
    }
}

pub(crate) fn response(issuer: &str) -> DocumentResponse {
    DocumentResponse(build(issuer).to_json().unwrap_or_default().into())
}
