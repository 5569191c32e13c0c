//! The extractors that hand handlers a proven credential: [`Authenticated`]
//! (either scheme) and [`BearerClaims`] (a JWT, for verify-token). Each is
//! one call to the [`Authenticator`] of the app, with the request's
//! `Authorization` header and client address; the decision is
//! stamps-auth's.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use stamps_auth::{Authenticator, Principal};
use stamps_core::Claims;

use crate::client_info::ClientInfo;
use crate::error::ApiError;

fn authenticator(req: &HttpRequest) -> Result<web::Data<Authenticator>, ApiError> {
    req.app_data::<web::Data<Authenticator>>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("no Authenticator registered with app_data");
            ApiError::Internal
        })
}

/// Extracts the [`Principal`] of a request authenticated by either scheme;
/// rejects it with the right 401 otherwise.
///
/// Register a `web::Data<Authenticator>` on the app, then take
/// `Authenticated` as a handler argument:
///
/// ```no_run
/// use actix_web::{App, HttpResponse, web};
/// use stamps_http::{Authenticated, Authenticator};
///
/// async fn whoami(who: Authenticated) -> HttpResponse {
///     HttpResponse::Ok().body(format!("user {} at merchant {}", who.0.user_id, who.0.merchant_id))
/// }
///
/// fn app(auth: web::Data<Authenticator>) -> App<impl actix_web::dev::ServiceFactory<
///     actix_web::dev::ServiceRequest, Config = (), Response = actix_web::dev::ServiceResponse,
///     Error = actix_web::Error, InitError = ()>> {
///     App::new().app_data(auth).route("/whoami", web::get().to(whoami))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = authenticator(req);
        let header = req.headers().get(header::AUTHORIZATION).cloned();
        let client = ClientInfo::of(req).ip;
        Box::pin(async move {
            let header = header.as_ref().map(header::HeaderValue::as_bytes);
            let principal = auth?.authenticate(header, Some(client)).await?;
            Ok(Authenticated(principal))
        })
    }
}

/// Extracts the verified claims of a request authenticated with
/// `Authorization: Bearer <JWT>` (verify-token): any other credential is
/// `not_authenticated`. Also keeps the payload's JSON exactly as it is in
/// the token ([`BearerClaims::payload_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerClaims {
    /// The verified claims.
    pub claims: Claims,
    payload: Vec<u8>,
}

impl BearerClaims {
    /// The token's payload, byte for byte: the same keys and values as the
    /// claims, in the token's own order and spacing.
    pub fn payload_json(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload out.
    pub fn into_payload_json(self) -> Vec<u8> {
        self.payload
    }
}

impl FromRequest for BearerClaims {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(header::HeaderValue::as_bytes);
        ready(authenticator(req).and_then(|auth| {
            // The client's address is worked out only for a refusal.
            let (claims, payload) = auth.verify_bearer(header, || Some(ClientInfo::of(req).ip))?;
            Ok(BearerClaims { claims, payload })
        }))
    }
}
