//! The WebAuthn relying party (`webauthn-rs`): khoa's issuer host is the relying
//! party id and its origin the one origin ceremonies may come from. Browsers refuse
//! WebAuthn on an IP-address origin, so an issuer such as `http://127.0.0.1:8080`
//! offers no passkeys, and the server says why when it starts.

use webauthn_rs::prelude::{Url, Webauthn, WebauthnBuilder};

/// The relying party of `issuer`, named `name` in the browser's prompts; `Err` with why
/// passkeys cannot be offered.
pub fn relying_party(issuer: &str, name: &str) -> Result<Webauthn, String> {
    let url = Url::parse(issuer).map_err(|e| format!("the issuer {issuer} is not a URL: {e}"))?;
    let origin = Url::parse(&url.origin().ascii_serialization()).map_err(|e| e.to_string())?;
    let Some(host) = url.domain() else {
        return Err(format!(
            "the issuer {issuer} is an IP address, and browsers allow passkeys only on a domain name \
             (for a test on this machine, use http://localhost:{})",
            url.port_or_known_default().unwrap_or(80)
        ));
    };
    let builder = WebauthnBuilder::new(host, &origin).map_err(|e| format!("WebAuthn for {issuer}: {e}"))?;
    builder.rp_name(name).build().map_err(|e| format!("WebAuthn for {issuer}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::relying_party;

    #[test]
    fn passkeys_need_a_domain_name() {
        assert!(relying_party("https://sso.example.vn", "khoa").is_ok());
        assert!(relying_party("http://localhost:8080", "khoa").is_ok());
        let refused = relying_party("http://127.0.0.1:8080", "khoa").unwrap_err();
        assert!(refused.contains("IP address") && refused.contains("http://localhost:8080"), "{refused}");
        assert!(relying_party("http://[::1]:9000", "khoa").unwrap_err().contains("localhost:9000"));
    }
}
