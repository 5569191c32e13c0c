//! The floor of the HTTP benchmark: actix-web, configured like
//! stamps-server, answering every POST with a fixed JSON body (the seed
//! document's payload) without looking at the request. What the framework,
//! the loopback and the load generator cost, and nothing else.
//!
//! `stamps-floor ADDR` listens on ADDR (127.0.0.1:0 picks a port) and prints
//! `listening on http://ADDR` on stderr.

use actix_web::{App, HttpResponse, HttpServer, web};

const FIXED_PAYLOAD: &str = r#"{"token_type":"access","exp":1657332616,"iat":1657246216,"jti":"4eadc4014d0d4d778691b84d570a6daf","user_id":5870,"merchant_id":1}"#;

async fn fixed() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(FIXED_PAYLOAD)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| App::new().default_service(web::to(fixed))).bind(addr)?;
        for addr in server.addrs() {
            eprintln!("listening on http://{addr}");
        }
        server.run().await
    })
}
