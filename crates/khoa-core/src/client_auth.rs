//! Client authentication at the token endpoint (RFC 6749 §2.3.1): `client_secret_basic`,
//! `client_secret_post`, or `none` for public clients. [`parse`] reads how the client
//! presented itself; [`verify`] accepts only the method the client registered (RFC 7591
//! §2 `token_endpoint_auth_method`) and checks the secret against the stored hash.

use crate::client::{Client, ClientType};
use crate::secret::verify_client_secret;
use crate::token_error::TokenEndpointError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// How the client presented itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCredentials {
    /// `Authorization: Basic` with form-urlencoded id and secret.
    Basic { client_id: String, secret: String },
    /// `client_id` and `client_secret` in the form body.
    Post { client_id: String, secret: String },
    /// Only `client_id` (public clients).
    None { client_id: String },
}

impl ClientCredentials {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. } | Self::Post { client_id, .. } | Self::None { client_id } => client_id,
        }
    }

    pub fn used_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }
}

fn form_decode(s: &str) -> Option<String> {
    // application/x-www-form-urlencoded: '+' is a space, then percent-decoding.
    let plus = s.replace('+', " ");
    percent_decode(&plus)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads the client's credentials from the `Authorization` header and the form.
/// RFC 6749 §2.3: a client must not use more than one method.
pub fn parse(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_client_secret: Option<&str>,
) -> Result<ClientCredentials, TokenEndpointError> {
    let basic = match authorization {
        None => None,
        Some(value) => {
            let Some((scheme, encoded)) = value.trim().split_once(' ') else {
                return Err(TokenEndpointError::invalid_client("malformed Authorization header", true));
            };
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(TokenEndpointError::invalid_client("only Basic client authentication is supported", true));
            }
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| TokenEndpointError::invalid_client("malformed Basic credentials", true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| TokenEndpointError::invalid_client("malformed Basic credentials", true))?;
            let (Some(id), Some(secret)) = (form_decode(id), form_decode(secret)) else {
                return Err(TokenEndpointError::invalid_client("malformed Basic credentials", true));
            };
            Some((id, secret))
        }
    };
    match (basic, form_client_id, form_client_secret) {
        (Some(_), _, Some(_)) => {
            Err(TokenEndpointError::InvalidRequest("use one client authentication method, not Basic and client_secret"))
        }
        (Some((id, _)), Some(form_id), None) if form_id != id => {
            Err(TokenEndpointError::InvalidRequest("client_id differs from the Basic credentials"))
        }
        (Some((client_id, secret)), _, None) => Ok(ClientCredentials::Basic { client_id, secret }),
        (None, Some(id), Some(secret)) => Ok(ClientCredentials::Post { client_id: id.into(), secret: secret.into() }),
        (None, Some(id), None) => Ok(ClientCredentials::None { client_id: id.into() }),
        (None, None, _) => Err(TokenEndpointError::invalid_client("client authentication is required", false)),
    }
}

/// Checks the credentials against the registered client (constant-time secret check)
/// at `now`: the current secret, or during a rotation's overlap the previous one.
pub fn verify(
    credentials: &ClientCredentials,
    client: Option<&Client>,
    now: crate::UnixTime,
) -> Result<(), TokenEndpointError> {
    let basic = credentials.used_basic();
    let fail = || TokenEndpointError::invalid_client("client authentication failed", basic);
    let client = client.filter(|c| c.client_id == credentials.client_id()).ok_or_else(fail)?;
    // A client holding a shared secret may present it either way (RFC 6749 §2.3.1
    // lets the server support both; the most used libraries send it in the body by
    // default). `parse` already refused both at once. A public client never presents
    // one, and a confidential client never goes without.
    let secret = match (credentials, client.client_type) {
        (
            ClientCredentials::Basic { secret, .. } | ClientCredentials::Post { secret, .. },
            ClientType::Confidential(_),
        ) => secret,
        (ClientCredentials::None { .. }, ClientType::Public) => return Ok(()),
        // Refused like a wrong secret, with what to send instead (client metadata, not
        // a secret).
        (_, ClientType::Confidential(_)) => {
            let description = "this client authenticates with its client_secret (the Authorization header, \
                               or client_id and client_secret in the body)";
            return Err(TokenEndpointError::invalid_client(description, basic));
        }
        (_, ClientType::Public) => {
            let description = "this client is public: it sends its client_id and no secret";
            return Err(TokenEndpointError::invalid_client(description, basic));
        }
    };
    // Every hash is checked, so the time taken does not tell which matched.
    let matched = client.secret_hashes(now).fold(false, |m, hash| verify_client_secret(secret, hash) | m);
    if matched {
        Ok(())
    } else {
        Err(fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientRegistration, SecretChoice, SecretMethod};

    fn basic(id: &str, secret: &str) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
    }

    const SECRET: &str = "a:b%c+d-0123456789-0123456789-0123456789";

    fn confidential() -> Client {
        registered(SecretMethod::ClientSecretBasic)
    }

    fn registered(method: SecretMethod) -> Client {
        let mut r = ClientRegistration::new("web.app");
        r.redirect_uris = vec!["https://a.example/cb".into()];
        r.secret = SecretChoice::Given(SECRET.into());
        r.secret_method = Some(method);
        r.register(0).unwrap().client
    }

    fn public() -> Client {
        let mut r = ClientRegistration::new("spa");
        r.redirect_uris = vec!["https://a.example/cb".into()];
        r.secret = SecretChoice::Public;
        r.register(0).unwrap().client
    }

    #[test]
    fn basic_with_colon_percent_and_plus_in_the_secret() {
        let creds = parse(Some(&basic("web.app", SECRET)), None, None).unwrap();
        assert_eq!(creds, ClientCredentials::Basic { client_id: "web.app".into(), secret: SECRET.into() });
        assert_eq!(verify(&creds, Some(&confidential()), 0), Ok(()));
        let wrong = parse(Some(&basic("web.app", "nope")), None, None).unwrap();
        assert_eq!(
            verify(&wrong, Some(&confidential()), 0),
            Err(TokenEndpointError::invalid_client("client authentication failed", true))
        );
    }

    /// A client with a shared secret presents it in the header or the body, whichever
    /// it was registered with (mozilla-django-oidc, django-allauth and flask-oidc send
    /// it in the body by default); never without it, and a wrong secret fails either way.
    #[test]
    fn a_shared_secret_in_the_header_or_the_body() {
        use SecretMethod::{ClientSecretBasic as B, ClientSecretPost as P};
        let presented = [
            ("basic", parse(Some(&basic("web.app", SECRET)), None, None).unwrap()),
            ("post", parse(None, Some("web.app"), Some(SECRET)).unwrap()),
            ("none", parse(None, Some("web.app"), None).unwrap()),
            ("wrong basic", parse(Some(&basic("web.app", "wrong")), None, None).unwrap()),
            ("wrong post", parse(None, Some("web.app"), Some("wrong")).unwrap()),
        ];
        let needs_secret = "this client authenticates with its client_secret (the Authorization header, \
                            or client_id and client_secret in the body)";
        let failed = "client authentication failed";
        let cases: [(SecretMethod, &str, Result<(), &str>); 10] = [
            (B, "basic", Ok(())),
            (B, "post", Ok(())),
            (B, "none", Err(needs_secret)),
            (B, "wrong basic", Err(failed)),
            (B, "wrong post", Err(failed)),
            (P, "post", Ok(())),
            (P, "basic", Ok(())),
            (P, "none", Err(needs_secret)),
            (P, "wrong basic", Err(failed)),
            (P, "wrong post", Err(failed)),
        ];
        for (method, how, expected) in cases {
            let creds = &presented.iter().find(|p| p.0 == how).unwrap().1;
            let got = verify(creds, Some(&registered(method)), 0);
            let want = expected.map_err(|d| TokenEndpointError::invalid_client(d, how.ends_with("basic")));
            assert_eq!(got, want, "{method:?} presented as {how}");
        }
        assert_eq!(
            verify(&presented[0].1, Some(&public_named("web.app")), 0),
            Err(TokenEndpointError::invalid_client(
                "this client is public: it sends its client_id and no secret",
                true
            ))
        );
    }

    fn public_named(id: &str) -> Client {
        let mut r = ClientRegistration::new(id);
        r.redirect_uris = vec!["https://a.example/cb".into()];
        r.secret = SecretChoice::Public;
        r.register(0).unwrap().client
    }

    #[test]
    fn post_and_none() {
        let post = parse(None, Some("web.app"), Some(SECRET)).unwrap();
        assert_eq!(verify(&post, Some(&registered(SecretMethod::ClientSecretPost)), 0), Ok(()));
        let none = parse(None, Some("spa"), None).unwrap();
        assert_eq!(verify(&none, Some(&public()), 0), Ok(()));
        // A confidential client cannot skip its secret; a public one has none to send.
        let none_conf = parse(None, Some("web.app"), None).unwrap();
        assert!(verify(&none_conf, Some(&confidential()), 0).is_err());
        let public_with_secret = parse(None, Some("spa"), Some("x")).unwrap();
        assert!(verify(&public_with_secret, Some(&public()), 0).is_err());
        assert!(verify(&none, None, 0).is_err(), "unknown client");
    }

    #[test]
    fn a_rotated_secret_overlaps_with_the_old_one_until_its_time() {
        let old = confidential();
        let (rotated, new_secret) = ClientRegistration::rotate_secret(&old, Some(1000), 10).unwrap();
        let with = |secret: &str| ClientCredentials::Basic { client_id: "web.app".into(), secret: secret.into() };
        let cases = [
            (SECRET, 999, true),
            (SECRET, 1000, false),
            (new_secret.as_str(), 999, true),
            (new_secret.as_str(), 5000, true),
            ("other", 500, false),
        ];
        for (secret, now, ok) in cases {
            assert_eq!(verify(&with(secret), Some(&rotated), now).is_ok(), ok, "{secret} at {now}");
        }
        // Without an overlap the old secret stops at once.
        let (abrupt, _) = ClientRegistration::rotate_secret(&old, None, 10).unwrap();
        assert!(verify(&with(SECRET), Some(&abrupt), 11).is_err());
        assert_eq!(
            ClientRegistration::rotate_secret(&public(), None, 10).unwrap_err(),
            crate::client::RegistrationError::PublicSecret
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse(Some(&basic("web.app", SECRET)), None, Some(SECRET)).unwrap_err(),
            TokenEndpointError::InvalidRequest("use one client authentication method, not Basic and client_secret")
        );
        assert!(matches!(
            parse(Some(&basic("web.app", SECRET)), Some("other"), None),
            Err(TokenEndpointError::InvalidRequest(_))
        ));
        assert!(parse(Some(&basic("web.app", SECRET)), Some("web.app"), None).is_ok());
        for bad in ["Basic", "Basic !!!", "Bearer abc", "Basic bm9jb2xvbg==", "Basic JXp6OnNlY3JldA=="] {
            let err = parse(Some(bad), None, None).unwrap_err();
            assert!(matches!(err, TokenEndpointError::InvalidClient { basic: true, .. }), "{bad}: {err:?}");
        }
        assert!(matches!(parse(None, None, None), Err(TokenEndpointError::InvalidClient { basic: false, .. })));
    }
}
