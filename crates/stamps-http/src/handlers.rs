//! The three endpoints. Thin: extract, call one thing, respond.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::audit::{AuditTrail, JwtIssued};
use crate::auth::{Authenticated, Authenticator, BearerClaims};
use crate::body::{AccessTokenRequest, LimitedBody};
use crate::error::ApiError;

#[derive(Serialize)]
struct AccessTokenResponse {
    access_token: String,
}

impl AccessTokenResponse {
    /// The body, byte for byte what `serde_json` writes, without its
    /// escaping scan: a JWT is base64url and dots, nothing to escape.
    fn into_json(self) -> Vec<u8> {
        const OPEN: &[u8] = br#"{"access_token":""#;
        const CLOSE: &[u8] = br#""}"#;
        let mut body = Vec::with_capacity(OPEN.len() + self.access_token.len() + CLOSE.len());
        body.extend_from_slice(OPEN);
        body.extend_from_slice(self.access_token.as_bytes());
        body.extend_from_slice(CLOSE);
        body
    }
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
        trail.record_jwt_issued(JwtIssued {
            at: iat,
            client,
            jti: minted.claims.jti,
            user_id: known.user_id,
            merchant_id: known.merchant_id,
            token_id: known.token_id,
        });
    }
    let response = AccessTokenResponse {
        access_token: minted.token,
    };
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(response.into_json()))
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

/// Any unknown path.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey};

    #[test]
    fn the_access_token_body_is_what_serde_json_writes() {
        let codec = JwtCodec::new(
            KeySet::new(SigningKey::new(vec![7; 32]).unwrap()),
            ExpiryRules::default(),
        );
        let response = AccessTokenResponse {
            access_token: codec.mint(5870, 1, 1_657_246_216).token,
        };
        let expected = serde_json::to_vec(&response).unwrap();
        assert_eq!(response.into_json(), expected);
    }
}
