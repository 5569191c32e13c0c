//! Mint and verify Stamps access tokens with stamps-core alone: no server,
//! no I/O. Run with `cargo run -p stamps-core --example mint_and_verify`.
//!
//! This is what a Rust service does to check the JWTs stamps issues, in
//! process: share the secret, build a codec, verify.

use std::process::ExitCode;

use stamps_core::{Clock, ExpiryRules, JwtCodec, KeySet, SigningKey, SystemClock, VerifyError};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The same secret the stamps server signs with (jwt.secret, or the
    // content of <data_dir>/jwt-secret).
    let secret = std::env::var("STAMPS_JWT__SECRET")
        .unwrap_or_else(|_| "an example secret of at least 32 bytes".to_owned());
    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(secret.into_bytes())?),
        ExpiryRules::default(),
    );
    let now = SystemClock.now();

    let minted = codec.mint(5870, 1, now);
    println!("minted:   {}", minted.token);

    let claims = codec.verify(&minted.token, now)?;
    println!(
        "verified: user {} at merchant {}, jti {}, expires at {}",
        claims.user_id, claims.merchant_id, claims.jti, claims.exp
    );

    // A day and a bit later the same token has expired...
    let later = now + 24 * 60 * 60 + 31;
    if codec.verify(&minted.token, later) != Err(VerifyError::Expired) {
        return Err("the token should have expired".into());
    }
    // ...and a tampered one never verifies.
    let tampered = format!("{}x", minted.token);
    if codec.verify(&tampered, now).is_ok() {
        return Err("a tampered token verified".into());
    }
    println!("expired and tampered tokens are refused");
    Ok(())
}
