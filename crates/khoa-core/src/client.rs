//! OAuth 2.0 clients (relying parties): the registration rules and the stored shape.

use crate::jose::SigningAlgorithm;
use crate::redirect_uri::{
    origin_of, validate_link_uri, validate_origin, validate_redirect_uri, validate_web_uri, UriError,
};
use crate::scope::{is_reserved, ScopeError, ScopeSet, ADMIN_SCOPES, DEFAULT_CLIENT_SCOPES};
use crate::secret::{generate_client_secret, hash_client_secret, validate_client_secret, SecretError};
use crate::UnixTime;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

pub const MAX_CLIENT_ID_LEN: usize = 128;

/// RFC 6749 §2.1, with how a confidential client presents its secret at the token
/// endpoint: a public client has no secret and authenticates with `none`, so a public
/// client with a secret method cannot be written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    Confidential(SecretMethod),
    Public,
}

/// RFC 7591 §2 `token_endpoint_auth_method` of a confidential client (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretMethod {
    /// `Authorization: Basic` (the RFC 7591 default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

impl SecretMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

impl std::str::FromStr for SecretMethod {
    type Err = RegistrationError;

    fn from_str(s: &str) -> Result<Self, RegistrationError> {
        match s {
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            _ => Err(RegistrationError::SecretMethod(s.to_string())),
        }
    }
}

impl ClientType {
    /// The RFC 7591 `token_endpoint_auth_method`.
    pub fn token_endpoint_auth_method(self) -> &'static str {
        match self {
            Self::Confidential(method) => method.as_str(),
            Self::Public => "none",
        }
    }

    /// From the stored type and method; `None` when they contradict each other.
    pub fn from_parts(is_public: bool, token_endpoint_auth_method: &str) -> Option<Self> {
        match (is_public, token_endpoint_auth_method) {
            (true, "none") => Some(Self::Public),
            (false, method) => method.parse().ok().map(Self::Confidential),
            _ => None,
        }
    }
}

impl Serialize for ClientType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            Self::Confidential(_) => "confidential",
            Self::Public => "public",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const DEFAULT: [GrantType; 2] = [Self::AuthorizationCode, Self::RefreshToken];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantType {
    type Err = RegistrationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "authorization_code" => Ok(Self::AuthorizationCode),
            "refresh_token" => Ok(Self::RefreshToken),
            "client_credentials" => Ok(Self::ClientCredentials),
            other => Err(RegistrationError::UnknownGrantType(other.into())),
        }
    }
}

/// Per-client token lifetimes in seconds; `None` means the server default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientLifetimes {
    pub authorization_code: Option<i64>,
    pub access_token: Option<i64>,
    pub id_token: Option<i64>,
    pub refresh_token: Option<i64>,
}

/// The server's default lifetimes in seconds (PRODUCT.md), which a client may override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub authorization_code: i64,
    pub access_token: i64,
    pub id_token: i64,
    pub refresh_token: i64,
    pub session: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self { authorization_code: 60, access_token: 3600, id_token: 3600, refresh_token: 30 * 86_400, session: 86_400 }
    }
}

/// What a lifetime is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    AuthorizationCode,
    AccessToken,
    IdToken,
    RefreshToken,
}

impl ClientLifetimes {
    /// The one lifetime rule: the client's own lifetime for `kind`, else the server's.
    pub fn effective(&self, kind: TokenKind, defaults: &Lifetimes) -> i64 {
        let (own, default) = match kind {
            TokenKind::AuthorizationCode => (self.authorization_code, defaults.authorization_code),
            TokenKind::AccessToken => (self.access_token, defaults.access_token),
            TokenKind::IdToken => (self.id_token, defaults.id_token),
            TokenKind::RefreshToken => (self.refresh_token, defaults.refresh_token),
        };
        own.unwrap_or(default)
    }
}

/// Bounds on every lifetime, globally and per client (seconds).
pub mod lifetime_bounds {
    /// RFC 6749 §4.1.2: a maximum authorization code lifetime of 10 minutes is recommended.
    pub const AUTHORIZATION_CODE: (i64, i64) = (1, 600);
    pub const ACCESS_TOKEN: (i64, i64) = (1, 7 * 86_400);
    pub const ID_TOKEN: (i64, i64) = (1, 7 * 86_400);
    pub const REFRESH_TOKEN: (i64, i64) = (1, 365 * 86_400);
    pub const SESSION: (i64, i64) = (60, 365 * 86_400);
}

/// Checks one lifetime against its bounds.
pub fn check_lifetime(name: &'static str, seconds: i64, (min, max): (i64, i64)) -> Result<(), RegistrationError> {
    if (min..=max).contains(&seconds) {
        Ok(())
    } else {
        Err(RegistrationError::Lifetime { name, seconds, min, max })
    }
}

impl ClientLifetimes {
    pub fn validate(&self) -> Result<(), RegistrationError> {
        use lifetime_bounds::*;
        for (name, value, bounds) in [
            ("authorization code", self.authorization_code, AUTHORIZATION_CODE),
            ("access token", self.access_token, ACCESS_TOKEN),
            ("ID token", self.id_token, ID_TOKEN),
            ("refresh token", self.refresh_token, REFRESH_TOKEN),
        ] {
            if let Some(v) = value {
                check_lifetime(name, v, bounds)?;
            }
        }
        Ok(())
    }
}

/// A registered client as stored. The secret exists only as a hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Client {
    pub client_id: String,
    #[serde(skip_serializing)]
    pub client_secret_hash: Option<String>,
    /// The secret before the last rotation, accepted too until `previous_secret_expires_at`.
    #[serde(skip_serializing)]
    pub previous_secret_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<UnixTime>,
    pub client_type: ClientType,
    pub redirect_uris: Vec<String>,
    /// Browser origins allowed beyond those of the redirect URIs (CORS at the token,
    /// userinfo and revocation endpoints).
    pub allowed_origins: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub backchannel_logout_uri: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub skip_consent: bool,
    /// Issue a refresh token at every code exchange, even without `offline_access`.
    pub always_issue_refresh_token: bool,
    /// A resource server: may introspect access tokens issued to other clients (RFC
    /// 7662 §2.2); refresh tokens only ever by the client they were issued to.
    pub resource_server: bool,
    /// This client's users sign in with two factors (`khoa_core::authn`).
    pub require_mfa: bool,
    pub client_name: Option<String>,
    pub logo_uri: Option<String>,
    pub client_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub owner: Option<String>,
    pub contacts: Vec<String>,
    pub metadata: serde_json::Value,
    pub id_token_signed_response_alg: SigningAlgorithm,
    /// The algorithm of this client's JWT access tokens; `None`: the server's
    /// (`tokens.access_token_alg`). An ES256 or EdDSA client costs one RSA signature
    /// less per sign-in, for resource servers that accept them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_signed_response_alg: Option<SigningAlgorithm>,
    pub lifetimes: ClientLifetimes,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    /// Raised by the store at every change (the admin API's ETag); 0 before storing.
    #[serde(skip)]
    pub revision: i64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.client_type == ClientType::Public
    }

    /// How this client must authenticate at the token endpoint (RFC 7591 §2).
    pub fn token_endpoint_auth_method(&self) -> &'static str {
        self.client_type.token_endpoint_auth_method()
    }

    /// The origins a browser app of this client may call the token, userinfo and
    /// revocation endpoints from: those of its http(s) redirect URIs, and the
    /// `allowed_origins` registered beyond them.
    pub fn origins(&self) -> Vec<String> {
        dedup(self.redirect_origins().chain(self.allowed_origins.iter().cloned()).collect())
    }

    /// Whether a request with this `Origin` header may speak for this client (one of
    /// [`Client::origins`], found without collecting them).
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin) || self.redirect_origins().any(|o| o == origin)
    }

    fn redirect_origins(&self) -> impl Iterator<Item = String> + '_ {
        self.redirect_uris.iter().filter_map(|u| origin_of(u))
    }

    /// The secret hashes that authenticate the client at `now`: the current one, and
    /// during a rotation's overlap the previous one.
    pub fn secret_hashes(&self, now: UnixTime) -> impl Iterator<Item = &str> {
        let previous =
            self.previous_secret_hash.as_deref().filter(|_| self.previous_secret_expires_at.is_some_and(|t| now < t));
        self.client_secret_hash.as_deref().into_iter().chain(previous)
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// How a client's secret is set at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChoice {
    /// Public client (RFC 6749 §2.1): no secret.
    Public,
    /// A 256-bit secret is generated and shown once.
    Generate,
    /// The operator's own secret (at least 32 characters).
    Given(String),
    /// An update of a confidential client: its secret (and a rotation's overlap) stay.
    Keep { hash: String, previous: Option<(String, UnixTime)> },
}

/// Everything an operator can say when registering a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRegistration {
    pub client_id: String,
    pub secret: SecretChoice,
    /// How a confidential client presents its secret; `None`: client_secret_basic.
    pub secret_method: Option<SecretMethod>,
    pub redirect_uris: Vec<String>,
    /// Browser origins beyond those of the redirect URIs (`validate_origin`).
    pub allowed_origins: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub backchannel_logout_uri: Option<String>,
    /// `None`: authorization_code and refresh_token.
    pub grant_types: Option<Vec<GrantType>>,
    /// `None`: openid profile email phone offline_access.
    pub scopes: Option<String>,
    pub skip_consent: bool,
    pub always_issue_refresh_token: bool,
    pub resource_server: bool,
    /// This client's users sign in with two factors (`khoa_core::authn`).
    pub require_mfa: bool,
    pub client_name: Option<String>,
    pub logo_uri: Option<String>,
    pub client_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub owner: Option<String>,
    pub contacts: Vec<String>,
    pub metadata: Option<serde_json::Value>,
    /// `None`: RS256.
    pub id_token_signed_response_alg: Option<SigningAlgorithm>,
    /// `None`: the server's access token algorithm.
    pub access_token_signed_response_alg: Option<SigningAlgorithm>,
    pub lifetimes: ClientLifetimes,
}

impl ClientRegistration {
    /// A registration with only an id and the defaults everywhere else.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: SecretChoice::Generate,
            secret_method: None,
            redirect_uris: vec![],
            allowed_origins: vec![],
            post_logout_redirect_uris: vec![],
            frontchannel_logout_uri: None,
            backchannel_logout_uri: None,
            grant_types: None,
            scopes: None,
            skip_consent: false,
            always_issue_refresh_token: false,
            resource_server: false,
            require_mfa: false,
            client_name: None,
            logo_uri: None,
            client_uri: None,
            policy_uri: None,
            tos_uri: None,
            owner: None,
            contacts: vec![],
            metadata: None,
            id_token_signed_response_alg: None,
            access_token_signed_response_alg: None,
            lifetimes: ClientLifetimes::default(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistrationError {
    #[error("client_id must be 1 to {MAX_CLIENT_ID_LEN} characters of A-Z a-z 0-9 . _ ~ -, not only digits")]
    ClientId,
    #[error("invalid redirect_uri: {0}")]
    RedirectUri(UriError),
    #[error("invalid post_logout_redirect_uri: {0}")]
    PostLogoutRedirectUri(UriError),
    #[error("invalid allowed origin: {0}")]
    Origin(UriError),
    #[error("invalid {0}: {1}")]
    Uri(&'static str, UriError),
    #[error("invalid client secret: {0}")]
    Secret(#[from] SecretError),
    #[error("unknown grant type {0:?} (supported: authorization_code, refresh_token, client_credentials)")]
    UnknownGrantType(String),
    #[error("at least one grant type is required")]
    NoGrantTypes,
    #[error("a public client cannot use the client_credentials grant (it has no secret)")]
    PublicClientCredentials,
    #[error("a resource server must be a confidential client (it authenticates to introspect)")]
    PublicResourceServer,
    #[error("the authorization_code grant needs at least one redirect URI")]
    NoRedirectUri,
    #[error("{0}")]
    Scope(#[from] ScopeError),
    #[error("metadata must be a JSON object")]
    Metadata,
    #[error("invalid contact {0:?}")]
    Contact(String),
    #[error("{name} lifetime {seconds}s is outside {min}s..={max}s")]
    Lifetime { name: &'static str, seconds: i64, min: i64, max: i64 },
    #[error("{0} must not be empty and at most 200 characters")]
    Text(&'static str),
    #[error("a public client has no secret to rotate")]
    PublicSecret,
    #[error("token_endpoint_auth_method must be client_secret_basic or client_secret_post, not {0:?} (a public client uses none)")]
    SecretMethod(String),
    #[error("a public client authenticates with none: it has no secret to present")]
    PublicSecretMethod,
    #[error("always issuing refresh tokens needs the refresh_token grant")]
    AlwaysRefreshWithoutGrant,
    #[error("scope {0:?} is reserved: the scopes beginning with khoa: are khoa:admin and khoa:admin.read")]
    ReservedScope(String),
    #[error("the admin scopes are for confidential clients with the client_credentials grant")]
    AdminScopeWithoutClientCredentials,
}

impl RegistrationError {
    /// The registration field (RFC 7591 metadata name) the error is about, for a
    /// problem document that names it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::ClientId => "client_id",
            Self::RedirectUri(_) | Self::NoRedirectUri => "redirect_uris",
            Self::PostLogoutRedirectUri(_) => "post_logout_redirect_uris",
            Self::Origin(_) => "allowed_origins",
            Self::Uri(name, _) | Self::Text(name) => name,
            Self::Secret(_) | Self::PublicSecret => "client_secret",
            Self::UnknownGrantType(_) | Self::NoGrantTypes | Self::PublicClientCredentials => "grant_types",
            Self::PublicResourceServer => "resource_server",
            Self::Scope(_) | Self::ReservedScope(_) | Self::AdminScopeWithoutClientCredentials => "scope",
            Self::Metadata => "metadata",
            Self::Contact(_) => "contacts",
            Self::Lifetime { name, .. } => match *name {
                "authorization code" => "lifetimes.authorization_code",
                "access token" => "lifetimes.access_token",
                "ID token" => "lifetimes.id_token",
                _ => "lifetimes.refresh_token",
            },
            Self::SecretMethod(_) | Self::PublicSecretMethod => "token_endpoint_auth_method",
            Self::AlwaysRefreshWithoutGrant => "always_issue_refresh_token",
        }
    }
}

fn check_text(name: &'static str, v: &Option<String>) -> Result<(), RegistrationError> {
    match v {
        Some(s) if s.trim().is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) => {
            Err(RegistrationError::Text(name))
        }
        _ => Ok(()),
    }
}

fn check_optional_uri(
    name: &'static str,
    v: &Option<String>,
    rule: fn(&str) -> Result<(), UriError>,
) -> Result<(), RegistrationError> {
    match v {
        Some(uri) => rule(uri).map_err(|e| RegistrationError::Uri(name, e)),
        None => Ok(()),
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
    v
}

impl ClientRegistration {
    /// The registration that would make `client` again (its secret kept): the start of
    /// an update, which changes some fields and registers it anew, so that an updated
    /// client meets every rule a new one does.
    pub fn from_client(client: &Client) -> Self {
        let secret = match (&client.client_secret_hash, client.client_type) {
            (Some(hash), ClientType::Confidential(_)) => SecretChoice::Keep {
                hash: hash.clone(),
                previous: client.previous_secret_hash.clone().zip(client.previous_secret_expires_at),
            },
            _ => SecretChoice::Public,
        };
        Self {
            client_id: client.client_id.clone(),
            secret,
            secret_method: match client.client_type {
                ClientType::Confidential(method) => Some(method),
                ClientType::Public => None,
            },
            redirect_uris: client.redirect_uris.clone(),
            allowed_origins: client.allowed_origins.clone(),
            post_logout_redirect_uris: client.post_logout_redirect_uris.clone(),
            frontchannel_logout_uri: client.frontchannel_logout_uri.clone(),
            backchannel_logout_uri: client.backchannel_logout_uri.clone(),
            grant_types: Some(client.grant_types.clone()),
            scopes: Some(client.scopes.join(" ")),
            skip_consent: client.skip_consent,
            always_issue_refresh_token: client.always_issue_refresh_token,
            resource_server: client.resource_server,
            require_mfa: client.require_mfa,
            client_name: client.client_name.clone(),
            logo_uri: client.logo_uri.clone(),
            client_uri: client.client_uri.clone(),
            policy_uri: client.policy_uri.clone(),
            tos_uri: client.tos_uri.clone(),
            owner: client.owner.clone(),
            contacts: client.contacts.clone(),
            metadata: Some(client.metadata.clone()),
            id_token_signed_response_alg: Some(client.id_token_signed_response_alg),
            access_token_signed_response_alg: client.access_token_signed_response_alg,
            lifetimes: client.lifetimes,
        }
    }

    /// Registers an update of `existing`: every rule applies again; the id, creation
    /// time and revision stay. A secret is generated (and returned) only when asked for:
    /// a public client becoming confidential.
    pub fn register_update(self, existing: &Client, now: UnixTime) -> Result<Registered, RegistrationError> {
        if self.client_id != existing.client_id {
            return Err(RegistrationError::ClientId);
        }
        let mut registered = self.register(now)?;
        registered.client.created_at = existing.created_at;
        registered.client.revision = existing.revision;
        Ok(registered)
    }

    /// `existing` with a new secret (returned in plain text, shown once); the old one
    /// keeps working until `keep_old_until` (none: not at all).
    pub fn rotate_secret(
        existing: &Client,
        keep_old_until: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<(Client, String), RegistrationError> {
        if existing.is_public() {
            return Err(RegistrationError::PublicSecret);
        }
        let secret = generate_client_secret();
        let mut client = existing.clone();
        client.client_secret_hash = Some(hash_client_secret(&secret));
        (client.previous_secret_hash, client.previous_secret_expires_at) = match keep_old_until {
            Some(until) if until > now => (existing.client_secret_hash.clone(), Some(until)),
            _ => (None, None),
        };
        client.updated_at = now;
        Ok((client, secret))
    }
}

/// A validated client and, when one was generated, its plaintext secret (shown once).
#[derive(Debug)]
pub struct Registered {
    pub client: Client,
    pub plaintext_secret: Option<String>,
}

impl ClientRegistration {
    /// Applies every registration rule and produces the client to store.
    pub fn register(self, now: UnixTime) -> Result<Registered, RegistrationError> {
        let id_ok = !self.client_id.is_empty()
            && self.client_id.len() <= MAX_CLIENT_ID_LEN
            && self.client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
            // RFC 9700 §4.15: a client_credentials token's `sub` is the client_id; users'
            // subjects are numbers, so an all-digit client_id could pass for a user.
            && !self.client_id.bytes().all(|b| b.is_ascii_digit());
        if !id_ok {
            return Err(RegistrationError::ClientId);
        }
        for uri in &self.redirect_uris {
            validate_redirect_uri(uri).map_err(RegistrationError::RedirectUri)?;
        }
        for uri in &self.post_logout_redirect_uris {
            validate_redirect_uri(uri).map_err(RegistrationError::PostLogoutRedirectUri)?;
        }
        for origin in &self.allowed_origins {
            validate_origin(origin).map_err(RegistrationError::Origin)?;
        }
        check_optional_uri("frontchannel_logout_uri", &self.frontchannel_logout_uri, validate_web_uri)?;
        check_optional_uri("backchannel_logout_uri", &self.backchannel_logout_uri, validate_web_uri)?;
        check_optional_uri("logo_uri", &self.logo_uri, validate_link_uri)?;
        check_optional_uri("client_uri", &self.client_uri, validate_link_uri)?;
        check_optional_uri("policy_uri", &self.policy_uri, validate_link_uri)?;
        check_optional_uri("tos_uri", &self.tos_uri, validate_link_uri)?;
        check_text("client_name", &self.client_name)?;
        check_text("owner", &self.owner)?;
        for c in &self.contacts {
            if c.trim().is_empty() || c.len() > 254 || c.chars().any(char::is_control) {
                return Err(RegistrationError::Contact(c.clone()));
            }
        }

        let mut grant_types = self.grant_types.unwrap_or_else(|| GrantType::DEFAULT.to_vec());
        grant_types.sort();
        grant_types.dedup();
        if grant_types.is_empty() {
            return Err(RegistrationError::NoGrantTypes);
        }
        let client_type = match (&self.secret, self.secret_method) {
            (SecretChoice::Public, None) => ClientType::Public,
            (SecretChoice::Public, Some(_)) => return Err(RegistrationError::PublicSecretMethod),
            (_, method) => ClientType::Confidential(method.unwrap_or_default()),
        };
        if client_type == ClientType::Public && grant_types.contains(&GrantType::ClientCredentials) {
            return Err(RegistrationError::PublicClientCredentials);
        }
        if grant_types.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty() {
            return Err(RegistrationError::NoRedirectUri);
        }
        if client_type == ClientType::Public && self.resource_server {
            return Err(RegistrationError::PublicResourceServer);
        }
        if self.always_issue_refresh_token && !grant_types.contains(&GrantType::RefreshToken) {
            return Err(RegistrationError::AlwaysRefreshWithoutGrant);
        }

        let scopes = ScopeSet::parse(self.scopes.as_deref().unwrap_or(&DEFAULT_CLIENT_SCOPES.join(" ")))?.to_vec();
        if let Some(reserved) = scopes.iter().find(|s| is_reserved(s) && !ADMIN_SCOPES.contains(&s.as_str())) {
            return Err(RegistrationError::ReservedScope(reserved.clone()));
        }
        let admin = scopes.iter().any(|s| ADMIN_SCOPES.contains(&s.as_str()));
        if admin && (client_type == ClientType::Public || !grant_types.contains(&GrantType::ClientCredentials)) {
            return Err(RegistrationError::AdminScopeWithoutClientCredentials);
        }
        let metadata = match self.metadata {
            None => serde_json::Value::Object(Default::default()),
            Some(v @ serde_json::Value::Object(_)) => v,
            Some(_) => return Err(RegistrationError::Metadata),
        };
        self.lifetimes.validate()?;

        let mut previous = None;
        let (client_secret_hash, plaintext_secret) = match self.secret {
            SecretChoice::Public => (None, None),
            SecretChoice::Generate => {
                let s = generate_client_secret();
                (Some(hash_client_secret(&s)), Some(s))
            }
            SecretChoice::Given(s) => {
                validate_client_secret(&s)?;
                (Some(hash_client_secret(&s)), None)
            }
            SecretChoice::Keep { hash, previous: kept } => {
                previous = kept;
                (Some(hash), None)
            }
        };
        let (previous_secret_hash, previous_secret_expires_at) = previous.unzip();

        Ok(Registered {
            client: Client {
                client_id: self.client_id,
                client_secret_hash,
                previous_secret_hash,
                previous_secret_expires_at,
                client_type,
                redirect_uris: dedup(self.redirect_uris),
                allowed_origins: dedup(self.allowed_origins),
                post_logout_redirect_uris: dedup(self.post_logout_redirect_uris),
                frontchannel_logout_uri: self.frontchannel_logout_uri,
                backchannel_logout_uri: self.backchannel_logout_uri,
                grant_types,
                scopes,
                skip_consent: self.skip_consent,
                always_issue_refresh_token: self.always_issue_refresh_token,
                resource_server: self.resource_server,
                require_mfa: self.require_mfa,
                client_name: self.client_name,
                logo_uri: self.logo_uri,
                client_uri: self.client_uri,
                policy_uri: self.policy_uri,
                tos_uri: self.tos_uri,
                owner: self.owner,
                contacts: self.contacts,
                metadata,
                id_token_signed_response_alg: self.id_token_signed_response_alg.unwrap_or(SigningAlgorithm::RS256),
                access_token_signed_response_alg: self.access_token_signed_response_alg,
                lifetimes: self.lifetimes,
                created_at: now,
                updated_at: now,
                revision: 0,
            },
            plaintext_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_method_is_registered_with_the_client() {
        let mut r = ClientRegistration::new("web");
        r.redirect_uris = vec!["https://a.example/cb".into()];
        let default = r.clone().register(0).unwrap().client;
        assert_eq!(default.token_endpoint_auth_method(), "client_secret_basic", "RFC 7591 §2 default");
        r.secret_method = Some(SecretMethod::ClientSecretPost);
        let post = r.clone().register(0).unwrap().client;
        assert_eq!(post.token_endpoint_auth_method(), "client_secret_post");
        assert_eq!(
            ClientRegistration::from_client(&post).register_update(&post, 5).unwrap().client.client_type,
            post.client_type
        );
        r.secret = SecretChoice::Public;
        assert_eq!(r.clone().register(0).unwrap_err(), RegistrationError::PublicSecretMethod);
        r.secret_method = None;
        assert_eq!(r.register(0).unwrap().client.token_endpoint_auth_method(), "none");
        assert_eq!(
            "private_key_jwt".parse::<SecretMethod>(),
            Err(RegistrationError::SecretMethod("private_key_jwt".into()))
        );
        assert_eq!(ClientType::from_parts(true, "client_secret_basic"), None, "a public client with a secret method");
        assert_eq!(ClientType::from_parts(false, "none"), None, "a confidential client without one");
    }

    #[test]
    fn a_clients_lifetime_overrides_the_servers() {
        let defaults = Lifetimes::default();
        let own = ClientLifetimes {
            authorization_code: Some(30),
            access_token: None,
            id_token: Some(600),
            refresh_token: None,
        };
        let cases = [
            (TokenKind::AuthorizationCode, 30),
            (TokenKind::AccessToken, 3600),
            (TokenKind::IdToken, 600),
            (TokenKind::RefreshToken, 30 * 86_400),
        ];
        for (kind, expected) in cases {
            assert_eq!(own.effective(kind, &defaults), expected, "{kind:?}");
        }
        assert_eq!(
            ClientLifetimes::default().effective(TokenKind::AccessToken, &Lifetimes { access_token: 90, ..defaults }),
            90
        );
    }
    use crate::secret::verify_client_secret;

    fn reg() -> ClientRegistration {
        let mut r = ClientRegistration::new("web-app");
        r.redirect_uris = vec!["https://app.example/cb".into()];
        r
    }

    #[test]
    fn an_update_meets_every_rule_and_keeps_the_secret() {
        let out = reg().register(10).unwrap();
        let client = out.client;
        let mut update = ClientRegistration::from_client(&client);
        assert_eq!(update.clone().register_update(&client, 10).unwrap().client, client, "a round trip changes nothing");
        update.client_name = Some("Cổng mới".into());
        update.allowed_origins = vec!["https://spa.example".into()];
        let updated = update.clone().register_update(&client, 20).unwrap().client;
        assert_eq!(updated.client_secret_hash, client.client_secret_hash, "the secret is untouched");
        assert_eq!((updated.created_at, updated.updated_at), (10, 20));
        assert_eq!(updated.origins(), ["https://app.example", "https://spa.example"]);
        assert!(updated.allows_origin("https://spa.example") && updated.allows_origin("https://app.example"));
        assert!(!updated.allows_origin("https://evil.example") && !updated.allows_origin("https://app.example:8443"));
        update.allowed_origins = vec!["https://spa.example/app".into()];
        assert!(matches!(
            update.clone().register_update(&client, 20).map(|r| r.client),
            Err(RegistrationError::Origin(_))
        ));
        update.allowed_origins = vec![];
        update.client_id = "another".into();
        assert_eq!(update.register_update(&client, 20).map(|r| r.client), Err(RegistrationError::ClientId));
    }

    #[test]
    fn defaults_generate_a_hashed_secret() {
        let out = reg().register(10).unwrap();
        let secret = out.plaintext_secret.unwrap();
        let hash = out.client.client_secret_hash.as_deref().unwrap();
        assert!(verify_client_secret(&secret, hash));
        assert_eq!(out.client.client_type, ClientType::Confidential(SecretMethod::ClientSecretBasic));
        assert_eq!(out.client.grant_types, GrantType::DEFAULT);
        assert_eq!(out.client.scopes, ["email", "offline_access", "openid", "phone", "profile"]);
        assert_eq!(out.client.id_token_signed_response_alg, SigningAlgorithm::RS256);
        assert_eq!(out.client.metadata, serde_json::json!({}));
        // The secret hash never appears in the client's JSON.
        assert!(!serde_json::to_string(&out.client).unwrap().contains("sha256$"));
    }

    #[test]
    fn given_secret_is_checked_and_not_echoed() {
        let mut r = reg();
        r.secret = SecretChoice::Given("too-short".into());
        assert_eq!(r.clone().register(0).unwrap_err(), RegistrationError::Secret(SecretError::TooShort));
        r.secret = SecretChoice::Given("0123456789abcdef0123456789abcdef".into());
        let out = r.register(0).unwrap();
        assert!(out.plaintext_secret.is_none());
        assert!(verify_client_secret(
            "0123456789abcdef0123456789abcdef",
            out.client.client_secret_hash.as_deref().unwrap()
        ));
    }

    #[test]
    fn registration_rules() {
        let mut r = reg();
        r.client_id = "bad id".into();
        assert_eq!(r.register(0).unwrap_err(), RegistrationError::ClientId);
        let mut r = reg();
        r.client_id = "12345".into();
        assert_eq!(r.register(0).unwrap_err(), RegistrationError::ClientId, "could collide with a user's sub");
        let mut r = reg();
        r.client_id = "1mg".into();
        assert!(r.register(0).is_ok(), "digits with letters are fine");

        let mut r = reg();
        r.redirect_uris = vec!["http://evil.example/cb".into()];
        assert!(matches!(r.register(0).unwrap_err(), RegistrationError::RedirectUri(UriError::InsecureHttp(_))));

        let mut r = reg();
        r.secret = SecretChoice::Public;
        r.grant_types = Some(vec![GrantType::ClientCredentials]);
        assert_eq!(r.register(0).unwrap_err(), RegistrationError::PublicClientCredentials);

        let mut r = ClientRegistration::new("m2m");
        assert_eq!(r.clone().register(0).unwrap_err(), RegistrationError::NoRedirectUri);
        r.grant_types = Some(vec![GrantType::ClientCredentials]);
        assert!(r.register(0).is_ok());

        let mut r = reg();
        r.grant_types = Some(vec![]);
        assert_eq!(r.register(0).unwrap_err(), RegistrationError::NoGrantTypes);

        let mut r = reg();
        r.metadata = Some(serde_json::json!([1]));
        assert_eq!(r.register(0).unwrap_err(), RegistrationError::Metadata);

        let mut r = reg();
        r.lifetimes.authorization_code = Some(3600);
        assert!(matches!(r.register(0).unwrap_err(), RegistrationError::Lifetime { .. }));

        let mut r = reg();
        r.backchannel_logout_uri = Some("https://rp.example/bc#frag".into());
        assert!(matches!(
            r.register(0).unwrap_err(),
            RegistrationError::Uri("backchannel_logout_uri", UriError::Fragment(_))
        ));

        let mut r = reg();
        r.scopes = Some("openid bad\"scope".into());
        assert!(matches!(r.register(0).unwrap_err(), RegistrationError::Scope(_)));

        assert!("password".parse::<GrantType>().is_err());
    }

    #[test]
    fn public_client_has_no_secret() {
        let mut r = reg();
        r.secret = SecretChoice::Public;
        let out = r.register(0).unwrap();
        assert!(out.client.is_public());
        assert!(out.client.client_secret_hash.is_none() && out.plaintext_secret.is_none());
    }

    #[test]
    fn admin_scopes_are_for_confidential_client_credentials_clients() {
        let service = |scopes: &str, grants: Vec<GrantType>, secret: SecretChoice| {
            let mut r = ClientRegistration::new("ops");
            r.redirect_uris = vec!["https://ops.example/cb".into()];
            r.scopes = Some(scopes.into());
            r.grant_types = Some(grants);
            r.secret = secret;
            r.register(0).map(|out| out.client.scopes)
        };
        let cc = || vec![GrantType::ClientCredentials];
        assert_eq!(service("khoa:admin", cc(), SecretChoice::Generate).unwrap(), ["khoa:admin"]);
        assert!(service("khoa:admin.read api:x", cc(), SecretChoice::Generate).is_ok());
        let refused = [
            (service("khoa:root", cc(), SecretChoice::Generate), RegistrationError::ReservedScope("khoa:root".into())),
            (
                service("khoa:admin", GrantType::DEFAULT.to_vec(), SecretChoice::Generate),
                RegistrationError::AdminScopeWithoutClientCredentials,
            ),
            (
                service("khoa:admin.read", vec![GrantType::AuthorizationCode], SecretChoice::Public),
                RegistrationError::AdminScopeWithoutClientCredentials,
            ),
        ];
        for (outcome, expected) in refused {
            let error = outcome.unwrap_err();
            assert_eq!(error, expected);
            assert_eq!(error.field(), "scope");
        }
    }

    #[test]
    fn every_error_names_its_field() {
        let mut r = ClientRegistration::new("web");
        r.redirect_uris = vec!["https://a.example/cb".into()];
        r.lifetimes.refresh_token = Some(0);
        assert_eq!(r.clone().register(0).unwrap_err().field(), "lifetimes.refresh_token");
        r.lifetimes = ClientLifetimes::default();
        r.client_name = Some(" ".into());
        assert_eq!(r.clone().register(0).unwrap_err().field(), "client_name");
        r.client_name = None;
        r.redirect_uris = vec![];
        assert_eq!(r.register(0).unwrap_err().field(), "redirect_uris");
    }
}
