//! The OpenAPI document, as `GET /api/openapi.json` serves it: OpenAPI
//! 3.1, every route and status of CONTRACT §1, the error body and its fixed
//! codes, the promised headers, and the security schemes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web};
use base64::Engine;
use serde_json::Value;
use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey, SystemClock};
use stamps_http::{Authenticator, ErrorCode, LiveState, StaticTokenCache};

/// CONTRACT §1.4's fixed `error_code`s, each with its status.
const CONTRACT_CODES: [(&str, u16); 13] = [
    ("invalid_request", 400),
    ("not_authenticated", 401),
    ("token_expired", 401),
    ("invalid_token", 401),
    ("merchant_forbidden", 403),
    ("https_required", 403),
    ("not_found", 404),
    ("method_not_allowed", 405),
    ("payload_too_large", 413),
    ("unsupported_media_type", 415),
    ("throttled", 429),
    ("store_unavailable", 503),
    ("internal_error", 500),
];

/// CONTRACT §1's routes as it writes them, and every status each can
/// answer: 200; 400 (a malformed body, or one that did not arrive in time);
/// 401; 403 (`https_required` on any route, `merchant_forbidden` on
/// get-access-token); 405; 413; 415 where a body is parsed; 429 where a
/// credential can be refused; 503 where the store is read (not for JWTs);
/// 500 anywhere.
const ROUTES: [(&str, &[u16]); 3] = [
    (
        "/api/auth/get-access-token/",
        &[200, 400, 401, 403, 405, 413, 415, 429, 500, 503],
    ),
    (
        "/api/auth/verify-token/",
        &[200, 400, 401, 403, 405, 413, 429, 500],
    ),
    ("/api/ping", &[200, 400, 401, 403, 405, 413, 429, 500, 503]),
];

/// The headers the contract promises with a status.
const HEADERS: [(u16, &str); 3] = [
    (401, "WWW-Authenticate"),
    (405, "Allow"),
    (429, "Retry-After"),
];

fn authenticator() -> web::Data<Authenticator> {
    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(vec![7; 32]).unwrap()),
        ExpiryRules::default(),
    );
    let live = Arc::new(LiveState::empty(StaticTokenCache::new(
        10,
        Duration::from_secs(60),
    )));
    web::Data::new(Authenticator::new(
        codec,
        Arc::new(SystemClock),
        live,
        None,
        1,
    ))
}

/// The document as the API serves it.
async fn served() -> Value {
    let app = test::init_service(stamps_http::app(
        stamps_http::AppState::new(authenticator()),
    ))
    .await;
    let response = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/openapi.json")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body = test::read_body(response).await;
    serde_json::from_slice(&body).unwrap()
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').unwrap();
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference}")),
            )
        }
        None => value,
    }
}

/// The `error_code`s an error response allows: its narrowed enum.
fn codes_of(response: &Value) -> BTreeSet<String> {
    let schema = &response["content"]["application/json"]["schema"];
    let parts = schema["allOf"].as_array().unwrap();
    assert_eq!(parts[0]["$ref"], "#/components/schemas/ErrorBody");
    parts[1]["properties"]["error_code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn the_document_is_openapi_3_1_with_every_route_and_status_of_the_contract() {
    let doc = served().await;
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3.1."), "{version}");

    for (path, statuses) in ROUTES {
        let operation = &doc["paths"][path]["post"];
        assert!(operation.is_object(), "no POST {path}");
        let documented: BTreeSet<u16> = operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            documented,
            statuses.iter().copied().collect(),
            "statuses of {path}"
        );
        for status in statuses.iter().filter(|s| **s != 200) {
            let response = resolve(&doc, &operation["responses"][status.to_string()]);
            let want: BTreeSet<String> = CONTRACT_CODES
                .iter()
                .filter(|(_, s)| s == status)
                .map(|(code, _)| (*code).to_owned())
                .collect();
            assert_eq!(codes_of(response), want, "codes of {status} on {path}");
            for (header_status, header) in HEADERS {
                if header_status == *status {
                    assert_eq!(
                        response["headers"][header]["required"], true,
                        "{header} with {status} on {path}"
                    );
                }
            }
        }
        let ok = &operation["responses"]["200"]["content"]["application/json"]["schema"];
        assert!(resolve(&doc, ok)["properties"].is_object(), "200 of {path}");
    }

    // 404 is for the paths not in the document: a reusable response.
    let not_found = &doc["components"]["responses"]["NotFound"];
    assert_eq!(
        codes_of(not_found),
        BTreeSet::from(["not_found".to_owned()])
    );
    // The document's own path.
    assert!(doc["paths"]["/api/openapi.json"]["get"]["responses"]["200"].is_object());
    assert!(doc["paths"]["/api/openapi.json"]["get"]["security"].is_null());
}

#[actix_web::test]
async fn every_status_of_the_contract_table_has_its_reusable_response() {
    let doc = served().await;
    let responses = doc["components"]["responses"].as_object().unwrap();
    let mut statuses: BTreeSet<u16> = CONTRACT_CODES.iter().map(|(_, s)| *s).collect();
    // When the contract is beside the repository (as in a checkout and in
    // CI), its table's statuses too.
    let contract = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/spec/CONTRACT.md"
    );
    if let Ok(text) = std::fs::read_to_string(contract) {
        let table = text.split("### 1.4 Errors").nth(1).unwrap();
        let from_table: BTreeSet<u16> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| "))
            .filter_map(|rest| rest.split(' ').next()?.parse().ok())
            .collect();
        assert_eq!(from_table.len(), 10, "{from_table:?}");
        statuses.extend(from_table);
    }
    for status in statuses {
        let want: BTreeSet<String> = CONTRACT_CODES
            .iter()
            .filter(|(_, s)| *s == status)
            .map(|(code, _)| (*code).to_owned())
            .collect();
        let found = responses
            .values()
            .find(|r| codes_of(r) == want)
            .unwrap_or_else(|| panic!("no response for {status}"));
        assert!(found["description"].as_str().unwrap().len() > 10);
    }
}

#[actix_web::test]
async fn the_error_code_enum_is_the_contracts_fixed_codes() {
    let doc = served().await;
    let schemas = &doc["components"]["schemas"];
    let enumerated: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let contract: Vec<&str> = CONTRACT_CODES.iter().map(|(code, _)| *code).collect();
    assert_eq!(enumerated, contract);
    // And the code behind it agrees, status by status.
    for (code, (word, status)) in ErrorCode::ALL.into_iter().zip(CONTRACT_CODES) {
        assert_eq!((code.as_str(), code.status().as_u16()), (word, status));
    }

    let body = &schemas["ErrorBody"];
    let required: BTreeSet<&str> = body["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["detail", "error_code", "error_message"])
    );
    assert_eq!(body["properties"]["errors"]["type"], "object");
    assert_eq!(
        body["properties"]["error_code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
}

#[actix_web::test]
async fn get_access_token_takes_json_or_form_and_the_others_name_their_schemes() {
    let doc = served().await;
    let body = &doc["paths"]["/api/auth/get-access-token/"]["post"]["requestBody"]["content"];
    for media_type in ["application/json", "application/x-www-form-urlencoded"] {
        let schema = resolve(&doc, &body[media_type]["schema"]);
        let mut fields: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["crm_merchant_id", "token"], "{media_type}");
    }
    assert!(doc["paths"]["/api/auth/get-access-token/"]["post"]["security"].is_null());

    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["jwt"]["type"], "http");
    assert_eq!(schemes["jwt"]["scheme"], "bearer");
    assert_eq!(schemes["jwt"]["bearerFormat"], "JWT");
    assert_eq!(schemes["static_token"]["type"], "apiKey");
    assert_eq!(schemes["static_token"]["in"], "header");
    assert_eq!(schemes["static_token"]["name"], "Authorization");

    let security = |path: &str| doc["paths"][path]["post"]["security"].clone();
    assert_eq!(
        security("/api/auth/verify-token/"),
        serde_json::json!([{"jwt": []}])
    );
    assert_eq!(
        security("/api/ping"),
        serde_json::json!([{"static_token": []}, {"jwt": []}])
    );
}

#[actix_web::test]
async fn the_verify_token_schema_is_the_minted_payload() {
    let doc = served().await;
    let schema = &doc["components"]["schemas"]["TokenPayload"];
    let documented: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(schema["additionalProperties"], false);

    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(vec![7; 32]).unwrap()),
        ExpiryRules::default(),
    );
    let minted = codec.mint(5870, 1, 1_700_000_000);
    let payload = minted.token.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let text = std::str::from_utf8(&payload).unwrap();
    let value: Value = serde_json::from_str(text).unwrap();
    // The same keys, in the token's order.
    let mut keys: Vec<(usize, &str)> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (text.find(&format!("\"{k}\"")).unwrap(), k.as_str()))
        .collect();
    keys.sort_unstable();
    let in_order: Vec<&str> = keys.into_iter().map(|(_, k)| k).collect();
    assert_eq!(in_order, documented);
    // Each value of the type the document says.
    for (key, property) in schema["properties"].as_object().unwrap() {
        let property = resolve(&doc, property);
        let got = &value[key];
        match property["type"].as_str().unwrap() {
            "integer" => assert!(got.is_u64(), "{key}: {got}"),
            "string" => {
                let got = got.as_str().unwrap();
                if let Some(allowed) = property["enum"].as_array() {
                    assert!(allowed.contains(&Value::from(got)), "{key}: {got}");
                }
                if key == "jti" {
                    assert_eq!(property["pattern"], "^[0-9a-f]{32}$");
                    assert!(got.len() == 32 && got.bytes().all(|b| b.is_ascii_hexdigit()));
                    assert_eq!(got, got.to_ascii_lowercase());
                }
            }
            other => panic!("{key}: {other}"),
        }
    }
}

#[actix_web::test]
async fn the_document_path_answers_get_head_and_options_and_refuses_the_rest() {
    let app = test::init_service(stamps_http::app(
        stamps_http::AppState::new(authenticator()),
    ))
    .await;
    let call = |method: &str, uri: &str| {
        let request = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .to_request();
        test::call_service(&app, request)
    };
    for uri in ["/api/openapi.json", "/api/openapi.json/"] {
        assert_eq!(call("GET", uri).await.status(), 200, "{uri}");
        assert_eq!(call("HEAD", uri).await.status(), 200, "{uri}");
        let options = call("OPTIONS", uri).await;
        assert_eq!(options.status(), 204);
        assert_eq!(
            options.headers().get("allow").unwrap(),
            "GET, HEAD, OPTIONS"
        );
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let refused = call(method, uri).await;
            assert_eq!(refused.status(), 405, "{method} {uri}");
            assert_eq!(
                refused.headers().get("allow").unwrap(),
                "GET, HEAD, OPTIONS"
            );
            let body: Value = serde_json::from_slice(&test::read_body(refused).await).unwrap();
            assert_eq!(body["error_code"], "method_not_allowed");
        }
    }
    // The API paths keep their own Allow.
    let refused = call("GET", "/api/ping").await;
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers().get("allow").unwrap(), "POST, OPTIONS");
}

#[actix_web::test]
async fn the_served_bytes_are_built_once() {
    let first = stamps_http::openapi::document_json().unwrap();
    let second = stamps_http::openapi::document_json().unwrap();
    // The same allocation, shared.
    assert_eq!(first.as_ptr(), second.as_ptr());
    let doc: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(
        doc,
        serde_json::to_value(stamps_http::openapi::document()).unwrap()
    );
}

#[actix_web::test]
async fn the_probes_and_metrics_are_documented_as_unauthenticated_gets() {
    let doc = served().await;
    for (path, statuses) in [
        ("/healthz", &[200, 405][..]),
        ("/readyz", &[200, 503, 405]),
        ("/metrics", &[200, 405, 500]),
    ] {
        let get = &doc["paths"][path]["get"];
        assert!(get.is_object(), "{path} has no GET");
        for status in statuses {
            assert!(
                get["responses"][status.to_string()].is_object(),
                "{path} lacks {status}"
            );
        }
        assert!(get.get("security").is_none(), "{path} asks for credentials");
    }
    let readyz = &doc["paths"]["/readyz"]["get"]["responses"]["503"];
    let schema = resolve(&doc, &readyz["content"]["application/json"]["schema"]);
    assert!(schema["properties"]["checks"].is_object(), "{schema}");
    assert!(
        doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain; version=0.0.4"]
            .is_object()
    );
}

#[actix_web::test]
async fn the_check_is_documented_for_every_method_with_unique_operation_ids() {
    let doc = served().await;
    let check = &doc["paths"]["/api/auth/check"];
    let methods = ["get", "post", "put", "patch", "delete", "head", "options"];
    for method in methods {
        let operation = &check[method];
        assert_eq!(operation["operationId"], format!("check_{method}"));
        let parameter = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "X-Stamps-Merchant")
            .unwrap_or_else(|| panic!("{method}: no X-Stamps-Merchant"));
        assert_eq!(parameter["in"], "header");
        assert_eq!(parameter["required"], false);
        // A header is never null: a plain integer (schemathesis sent
        // "null" for a nullable one).
        assert_eq!(parameter["schema"]["type"], "integer", "{parameter}");
        let ok = &operation["responses"]["200"]["headers"];
        for header in [
            "X-Stamps-User-Id",
            "X-Stamps-Merchant-Id",
            "X-Stamps-Token-Kind",
            "X-Stamps-Jti",
        ] {
            assert!(ok.get(header).is_some(), "{method}: 200 without {header}");
        }
    }
    // Operation ids are unique across the document.
    let mut ids = BTreeSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                assert!(ids.insert(id.to_owned()), "{id} twice");
            }
        }
    }
}
