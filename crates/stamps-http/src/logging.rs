//! One log line per request: method, path, status, latency and a request
//! id (also sent back as `X-Request-Id`). Never a header or a body, so
//! never a secret.
//!
//! An app logs its requests as `tracing` events by default
//! ([`AccessLog::Tracing`]). The server writes each line itself instead
//! ([`AccessLog::Lines`]), in the same text or JSON shape, straight to its
//! log writer: a request then pays for a few small writes into a buffer,
//! not for `tracing`'s formatting of an event.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use rand::RngCore;

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Where a whole log line goes (the server's log writer).
pub trait LineSink: Send + Sync {
    /// Takes one line, its newline included.
    fn write_line(&self, line: Vec<u8>);
}

/// How request lines are made. Put it in the app's data (`app_data`);
/// without it, lines are `tracing` events.
#[derive(Clone)]
pub enum AccessLog {
    /// `tracing::info!` events (`message = "request"`, with the fields).
    Tracing,
    /// Lines made here and handed to `sink`: text in the shape of the
    /// `tracing` text format, or (`json`) one object per line.
    Lines {
        /// The writer.
        sink: Arc<dyn LineSink>,
        /// JSON lines rather than text.
        json: bool,
    },
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessLog::Tracing => f.write_str("AccessLog::Tracing"),
            AccessLog::Lines { json, .. } => write!(f, "AccessLog::Lines {{ json: {json} }}"),
        }
    }
}

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
    let access = req.app_data::<AccessLog>().cloned();
    let mut response = next.call(req).await?;
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let line = RequestLine {
        request_id: &request_id,
        method: method.as_str(),
        path: &path,
        status,
        latency_us: started.elapsed().as_micros() as u64,
    };
    match access {
        Some(AccessLog::Lines { sink, json }) => sink.write_line(line.render(json)),
        Some(AccessLog::Tracing) | None => tracing::info!(
            request_id = %line.request_id,
            method = %line.method,
            path = %line.path,
            status,
            latency_us = line.latency_us,
            "request"
        ),
    }
    Ok(response.map_into_right_body())
}

/// What a request line says.
struct RequestLine<'a> {
    request_id: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    latency_us: u64,
}

impl RequestLine<'_> {
    /// The line, as `tracing`'s formatter would write the event: text
    /// (`<time>  INFO request request_id=... ...`) or a JSON object.
    fn render(&self, json: bool) -> Vec<u8> {
        let time = humantime::format_rfc3339_micros(SystemTime::now());
        let mut line = String::with_capacity(160 + self.path.len());
        let Self {
            request_id,
            method,
            path,
            status,
            latency_us,
        } = self;
        // Writing to a String cannot fail.
        let _ = if json {
            let path = serde_json::to_string(path).unwrap_or_else(|_| "\"\"".to_owned());
            writeln!(
                line,
                r#"{{"timestamp":"{time}","level":"INFO","message":"request","request_id":"{request_id}","method":"{method}","path":{path},"status":{status},"latency_us":{latency_us}}}"#
            )
        } else {
            writeln!(
                line,
                "{time}  INFO request request_id={request_id} method={method} path={path} status={status} latency_us={latency_us}"
            )
        };
        line.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_are_text_or_json_in_the_shape_of_tracing_events() {
        let line = RequestLine {
            request_id: "5f0c2e9a7b1d4c3e",
            method: "POST",
            path: "/api/\"ping",
            status: 200,
            latency_us: 41,
        };
        let text = String::from_utf8(line.render(false)).unwrap();
        assert!(text.ends_with(
            "Z  INFO request request_id=5f0c2e9a7b1d4c3e method=POST path=/api/\"ping status=200 latency_us=41\n"
        ), "{text}");
        let json: serde_json::Value = serde_json::from_slice(&line.render(true)).unwrap();
        assert_eq!(json["message"], "request");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["path"], "/api/\"ping");
        assert_eq!(json["status"], 200);
        assert_eq!(json["latency_us"], 41);
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
