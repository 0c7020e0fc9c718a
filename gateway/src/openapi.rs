//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the HTTP API.
//!
//! The document is written by hand (`gateway/web/openapi.json`) and embedded in the binary, not
//! generated from the handlers: its prose (what a `resync` means, how to resume an event stream, why
//! a mailbox has an alias) is the part readers need most and no derive macro can write it, and the
//! handlers and store types stay free of documentation attributes. The price of writing it by hand
//! is drift, and the tests below pay it: every route that `routes/mod.rs` (and the compatibility
//! router) declares must be in the document, and every error code `ApiError` can answer must be in
//! its `Error` schema. Adding a route without documenting it fails `cargo test`.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../web/openapi.json");

/// `GET /api/openapi.json`
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::response::IntoResponse;
    use serde_json::Value;

    use super::*;

    const ROUTES: &str = include_str!("routes/mod.rs");
    const COMPAT: &str = include_str!("compat/mod.rs");
    const ERRORS: &str = include_str!("error.rs");

    /// The page's own routes: HTML and assets for browsers, not part of the API.
    const WEB_PAGE: [&str; 3] = ["/", "/inbox/", "/assets/"];

    fn document_json() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON")
    }

    /// `{mailbox}` and `{box}` name the same segment; compare shapes, not parameter names.
    fn shape(path: &str) -> String {
        let mut out = String::with_capacity(path.len());
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                c if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// Every path string passed to `.route(` in `source` (rustfmt may put it on the next line).
    fn declared_routes(source: &str) -> Vec<String> {
        source
            .split(".route(")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start().strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    }

    fn documented_paths() -> BTreeSet<String> {
        let doc = document_json();
        doc["paths"]
            .as_object()
            .expect("paths is an object")
            .keys()
            .map(|p| shape(p))
            .collect()
    }

    #[test]
    fn it_is_openapi_3_1() {
        let doc = document_json();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1."))
        );
        assert!(doc["info"]["title"].is_string());
    }

    #[test]
    fn every_route_is_documented() {
        let documented = documented_paths();
        let routes: Vec<String> = declared_routes(ROUTES)
            .into_iter()
            .chain(declared_routes(COMPAT))
            .collect();
        // Guards the parser itself: if the routes move elsewhere, this test must be pointed there.
        assert!(
            routes.len() >= 10,
            "found only {routes:?} in routes/mod.rs and compat/mod.rs"
        );
        let missing: Vec<&String> = routes
            .iter()
            .filter(|r| {
                !WEB_PAGE
                    .iter()
                    .any(|page| r.as_str() == *page || (page.len() > 1 && r.starts_with(page)))
            })
            // A route of the `/api` router is declared without its prefix.
            .filter(|r| {
                !documented.contains(&shape(r)) && !documented.contains(&shape(&format!("/api{r}")))
            })
            .collect();
        assert!(
            missing.is_empty(),
            "routes missing from gateway/web/openapi.json: {missing:?}"
        );
    }

    #[test]
    fn every_error_code_is_documented() {
        let doc = document_json();
        let documented: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]
            ["error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("Error.code has an enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let start = ERRORS.find("fn code(").expect("ApiError::code exists");
        let body = &ERRORS[start..];
        let body = &body[..body.find("\n    }\n").unwrap_or(body.len())];
        let codes: Vec<&str> = body
            .split("=> \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(codes.len() >= 6, "found only {codes:?} in error.rs");
        for code in codes {
            assert!(
                documented.contains(code),
                "error code {code} is missing from the Error schema"
            );
        }
    }

    #[test]
    fn references_resolve() {
        let doc = document_json();
        let mut stack = vec![&doc];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("local reference");
                        assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn it_is_served_as_json() {
        let response = document().await.into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn route_extraction_handles_rustfmt_layouts() {
        let src = ".route(\"/a\", get(x))\n.route(\n    \"/b/{id}\",\n    get(y),\n)";
        assert_eq!(declared_routes(src), ["/a", "/b/{id}"]);
        assert_eq!(shape("/mailboxes/{box}/x/{*rest}"), "/mailboxes/{}/x/{}");
    }
}
