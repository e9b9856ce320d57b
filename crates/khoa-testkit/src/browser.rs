//! A minimal browser for driving khoa's HTML pages: a cookie jar, no automatic
//! redirects (each 303 is inspected), and form field extraction.

use std::collections::HashMap;

pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Self { http }
    }

    #[allow(clippy::expect_used)]
    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect("GET")
    }

    #[allow(clippy::expect_used)]
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.expect("POST")
    }
}

/// The `Location` of a redirect, resolved against `base`.
#[allow(clippy::expect_used)]
pub fn location(res: &reqwest::Response, base: &str) -> String {
    let raw = res.headers().get("location").expect("a Location header").to_str().expect("ASCII Location");
    url::Url::parse(base).expect("base URL").join(raw).expect("resolvable Location").to_string()
}

/// The query parameters of a URL.
#[allow(clippy::expect_used)]
pub fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).expect("URL").query_pairs().into_owned().collect()
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!("{name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// An HTML attribute value as the page wrote it (askama's escapes), unescaped.
pub fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#38;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `name → value` of every `<input … name="…" value="…">` in a page.
pub fn inputs(html: &str) -> HashMap<String, String> {
    html.split("<input")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
            Some((attr(tag, "name")?.to_string(), unescape(attr(tag, "value").unwrap_or(""))))
        })
        .collect()
}
