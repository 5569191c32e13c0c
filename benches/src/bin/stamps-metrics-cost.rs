//! `stamps-metrics-cost MODE N`: N requests through an actix app (a POST to
//! a resource named like verify-token, answered 200), with the
//! `RequestMetrics` middleware recording (`on`) or not (`off`), plus an
//! authentication outcome per request when on, as the server does. Run
//! under `valgrind --tool=callgrind` with two values of N
//! (`scripts/bench_callgrind.py --in-process`): the difference of the
//! instruction counts per request is what metrics cost, free of the
//! machine's load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use actix_web::{App, HttpResponse, test, web};
use stamps_http::{AuthReason, Metrics, RequestMetrics, Route, Scheme};

async fn ok() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|n| n.parse().ok()).expect("MODE N");
    let metrics = match mode.as_str() {
        "on" => Some(Arc::new(Metrics::new())),
        "off" => None,
        other => panic!("mode {other:?}: expected on or off"),
    };
    let path = Route::VerifyToken.pattern();
    actix_web::rt::System::new().block_on(async move {
        let recorder = RequestMetrics::new(metrics.clone());
        let app = test::init_service(
            App::new()
                .wrap(recorder)
                .service(web::resource(path).name(path).route(web::post().to(ok))),
        )
        .await;
        for _ in 0..n {
            let req = test::TestRequest::post().uri(path).to_request();
            let response = test::call_service(&app, req).await;
            assert!(response.status().is_success());
            if let Some(metrics) = &metrics {
                metrics.record_auth(Scheme::Jwt, AuthReason::Ok);
            }
        }
        if let Some(metrics) = metrics {
            let text = metrics.encode().unwrap();
            let line = format!("stamps_http_requests_total{{route=\"{path}\",code=\"200\"}} {n}");
            assert!(text.contains(&line), "{text}");
        }
    });
}
