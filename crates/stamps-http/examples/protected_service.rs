//! A small actix-web service that protects its own route with stamps'
//! extractor: JWTs issued by a stamps server are verified in process, with
//! no round trip to the server.
//!
//! ```sh
//! STAMPS_JWT__SECRET='the secret stamps-server signs with' \
//!   cargo run -p stamps-http --example protected_service -- 127.0.0.1:8081
//! curl -X POST -H "Authorization: Bearer $JWT" http://127.0.0.1:8081/whoami
//! ```
//!
//! With `--self-test` it checks itself in process and exits (CI runs that).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, test, web};
use stamps_core::{Clock, ExpiryRules, JwtCodec, KeySet, SigningKey, SystemClock};
use stamps_http::{Authenticated, Authenticator, LiveState, StaticTokenCache};
use stamps_store::{Account, AccountKind};

/// The protected route: only a valid stamps JWT gets here.
async fn whoami(who: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user_id": who.0.user_id,
        "merchant_id": who.0.merchant_id,
    }))
}

fn authenticator(secret: &str) -> Result<web::Data<Authenticator>, Box<dyn std::error::Error>> {
    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(secret.as_bytes().to_vec())?),
        ExpiryRules::default(),
    );
    // Which users and merchants are active: here, fixed. A service that
    // shares the stamps store would load them with `LiveState::load`.
    let live = LiveState::empty(StaticTokenCache::new(1, Duration::from_secs(1)));
    for (kind, id, name) in [
        (AccountKind::Merchant, 1, "My Merchant"),
        (AccountKind::User, 5870, "user5870"),
    ] {
        let account = Account {
            id,
            name: name.to_owned(),
            active: true,
            created_at: 0,
        };
        live.apply_account(kind, &account);
    }
    // No store: JWTs only (a static token is refused).
    Ok(web::Data::new(Authenticator::new(
        codec,
        Arc::new(SystemClock),
        Arc::new(live),
        None,
        1,
    )))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("STAMPS_JWT__SECRET")
        .unwrap_or_else(|_| "an example secret of at least 32 bytes".to_owned());
    let auth = authenticator(&secret)?;
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    if arg == "--self-test" {
        return self_test(auth).await;
    }
    println!("listening on http://{arg}");
    HttpServer::new(move || {
        App::new()
            .app_data(auth.clone())
            .route("/whoami", web::post().to(whoami))
    })
    .bind(arg)?
    .run()
    .await?;
    Ok(())
}

/// Calls the service in process: a valid JWT passes, anything else is a 401.
async fn self_test(auth: web::Data<Authenticator>) -> Result<(), Box<dyn std::error::Error>> {
    let jwt = auth.codec().mint(5870, 1, SystemClock.now()).token;
    let app = test::init_service(
        App::new()
            .app_data(auth.clone())
            .route("/whoami", web::post().to(whoami)),
    )
    .await;
    let call = |header: Option<String>| {
        let mut req = test::TestRequest::post().uri("/whoami");
        if let Some(value) = header {
            req = req.insert_header(("Authorization", value));
        }
        req.to_request()
    };
    let ok = test::call_service(&app, call(Some(format!("Bearer {jwt}")))).await;
    let body: serde_json::Value = test::read_body_json(ok).await;
    if body != serde_json::json!({"user_id": 5870, "merchant_id": 1}) {
        return Err(format!("unexpected body {body}").into());
    }
    for refused in [None, Some("Bearer not.a.jwt".to_owned())] {
        let status = test::call_service(&app, call(refused.clone()))
            .await
            .status();
        if status != 401 {
            return Err(format!("{refused:?} got {status}, not 401").into());
        }
    }
    println!("self-test passed: a valid JWT gets in, no or a bad one gets 401");
    Ok(())
}
