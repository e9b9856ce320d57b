//! The admin API's answers against its OpenAPI document.

/// Every answer the tests receive from the admin API, checked against the document:
/// its status is documented for the operation, with the media type documented, and a
/// JSON body validates against the documented schema (JSON Schema 2020-12, as OpenAPI
/// 3.1 has it).
#[allow(clippy::expect_used, clippy::panic)]
pub fn check_response(doc: &serde_json::Value, method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) {
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
    // The shared limits (body, URI, time) answer before any handler.
    if matches!(status, 408 | 413 | 414) {
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
