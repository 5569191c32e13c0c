//! The three endpoints. Thin: extract, call one thing, respond.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use stamps_store::AuditEvent;

use crate::audit::AuditTrail;
use crate::auth::{Authenticated, Authenticator, BearerClaims};
use crate::body::{AccessTokenRequest, LimitedBody};
use crate::error::ApiError;

#[derive(Serialize)]
struct AccessTokenResponse {
    access_token: String,
}

/// `POST /api/auth/get-access-token/`: a live static token and the merchant
/// it was issued for buy a fresh JWT.
pub async fn get_access_token(
    body: LimitedBody,
    req: HttpRequest,
    auth: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    let request = AccessTokenRequest::parse(&req, &body.0)?;
    let client = crate::client::ClientInfo::of(&req).ip;
    let known = auth.verify_static(&request.token, Some(client)).await?;
    if known.merchant_id != request.crm_merchant_id {
        return Err(ApiError::MerchantForbidden);
    }
    let iat = auth.issue_time(known.user_id, known.merchant_id).await;
    let minted = auth.codec().mint(known.user_id, known.merchant_id, iat);
    if let Some(trail) = req.app_data::<web::Data<AuditTrail>>() {
        // The client as trusted proxies report it, like the throttle sees it.
        trail.record(AuditEvent::new(
            iat,
            format!("api {client}"),
            "jwt.issue",
            format!(
                "jti {} user {} merchant {} token {}",
                minted.claims.jti, known.user_id, known.merchant_id, known.token_id
            ),
        ));
    }
    Ok(HttpResponse::Ok().json(AccessTokenResponse {
        access_token: minted.token,
    }))
}

/// `POST /api/auth/verify-token/`: the payload of a valid Bearer JWT, the
/// same keys and values as inside the token.
pub async fn verify_token(
    _body: LimitedBody,
    claims: BearerClaims,
) -> Result<HttpResponse, ApiError> {
    // The payload as it is in the token: the same keys and values, with no
    // second serialisation.
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(claims.into_payload_json()))
}

#[derive(Serialize)]
struct Pong {
    pong: PongMerchant,
}

#[derive(Serialize)]
struct PongMerchant {
    merchant: String,
    merchant_id: u64,
}

/// `POST /api/ping`: any authenticated request; names the merchant.
pub async fn ping(
    _body: LimitedBody,
    who: Authenticated,
    auth: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    let merchant = auth
        .live()
        .merchant(who.0.merchant_id)
        .ok_or(ApiError::InvalidToken)?;
    Ok(HttpResponse::Ok().json(Pong {
        pong: PongMerchant {
            merchant: merchant.name.to_string(),
            merchant_id: who.0.merchant_id,
        },
    }))
}

/// `OPTIONS` on an API path: the allowed methods.
pub async fn options() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((actix_web::http::header::ALLOW, crate::ALLOWED_METHODS))
        .finish()
}

/// Any other method on an API path.
pub async fn method_not_allowed() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed)
}

/// A method other than GET or HEAD on a probe or `/metrics`: the API's
/// 405, with their `Allow`.
pub async fn read_only_method_not_allowed() -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(crate::READ_ONLY_METHODS),
    );
    response
}

/// Any unknown path.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}
