//! The cookies khoa sets: the SSO session, and one anti-forgery cookie per pending
//! interaction (so several sign-ins in different tabs of one browser do not collide).

use axum::http::HeaderMap;

pub const SESSION_COOKIE: &str = "khoa_session";

/// The value of cookie `name` in the request, if present.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
}

/// `Set-Cookie` for an HttpOnly, SameSite=Lax cookie (`Secure` when the issuer is https).
pub fn set(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The anti-forgery cookie of the interaction whose id hash is `id_hash`.
pub fn interaction_cookie_name(id_hash: &str) -> String {
    format!("khoa_csrf_{}", &id_hash[..id_hash.len().min(16)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes() {
        assert_eq!(set("a", "v", "/", 60, false), "a=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax");
        assert_eq!(set("a", "v", "/", 60, true), "a=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure");
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, "x=1; khoa_session=abc; y=\"2\"".parse().unwrap());
        assert_eq!(get(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(get(&h, "y").as_deref(), Some("2"));
        assert_eq!(get(&h, "z"), None);
    }
}
