//! One log line per request: method, path, status, latency and a request
//! id (also sent back as `X-Request-Id`). Never a header or a body, so
//! never a secret.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use rand::RngCore;

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Middleware (use with `actix_web::middleware::from_fn`).
pub async fn log_request<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B, B>>, actix_web::Error> {
    // With request logging off, do none of its work.
    if !tracing::enabled!(tracing::Level::INFO) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let started = Instant::now();
    let request_id = format!("{:016x}", rand::rng().next_u64());
    let method = req.method().clone();
    // The path only: a query string is not ours to log.
    let path = req.path().to_owned();
    let mut response = next.call(req).await?;
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        status,
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(response.map_into_right_body())
}
