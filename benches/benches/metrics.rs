//! What metrics cost a request: the recording alone (two clock reads, the
//! request counter and latency histogram, an authentication outcome), and
//! a request through an actix app with and without the `RequestMetrics`
//! middleware (the route found from the matched resource's name). The
//! budget is well under 0.2 µs a request (docs/PERFORMANCE.md).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use actix_web::{App, HttpResponse, test, web};
use criterion::{Criterion, criterion_group, criterion_main};
use stamps_http::{AuthReason, Metrics, RequestMetrics, Route, Scheme};

fn recording(c: &mut Criterion) {
    let metrics = Metrics::new();
    let mut group = c.benchmark_group("metrics");
    group.bench_function("record_request_and_auth", |b| {
        b.iter(|| {
            let started = Instant::now();
            metrics.record_auth(Scheme::Jwt, AuthReason::Ok);
            metrics.record_request(
                black_box(Route::VerifyToken),
                black_box(200),
                started.elapsed(),
            );
        })
    });
    group.finish();
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn middleware(c: &mut Criterion) {
    let rt = actix_web::rt::System::new();
    let path = Route::VerifyToken.pattern();
    let metrics = Arc::new(Metrics::new());
    let app = |recorder: RequestMetrics| {
        rt.block_on(test::init_service(
            App::new()
                .wrap(recorder)
                .service(web::resource(path).name(path).route(web::post().to(ok))),
        ))
    };
    let bare = app(RequestMetrics::new(None));
    let recorded = app(RequestMetrics::new(Some(metrics.clone())));
    let mut group = c.benchmark_group("metrics_middleware");
    group.bench_function("request_metrics_off", |b| {
        b.iter(|| {
            let req = test::TestRequest::post().uri(path).to_request();
            rt.block_on(test::call_service(&bare, req))
        })
    });
    group.bench_function("request_metrics_on", |b| {
        b.iter(|| {
            let req = test::TestRequest::post().uri(path).to_request();
            rt.block_on(test::call_service(&recorded, req))
        })
    });
    group.finish();
    let text = metrics.encode().unwrap();
    assert!(
        text.contains("stamps_http_requests_total{route=\"/api/auth/verify-token\",code=\"200\"}")
    );
}

criterion_group!(benches, recording, middleware);
criterion_main!(benches);
