//! `jwt inspect`: a JWT decoded, then checked as the server would check
//! it, with the reason in words.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use stamps_auth::{JwtRefusal, LiveState, StaticTokenCache};
use stamps_config::existing_base_signing_key;
use stamps_core::{
    Claims, Clock, JwtCodec, RotatedKey, SystemClock, VerifyError, scheduled_key_set,
};
use stamps_store::{AccountKind, Store};

use crate::cli::StoreLocation;
use crate::error::AdminError;
use crate::outcome::Inspection;

/// `jwt inspect`: decodes the token, then checks it as the server would.
pub fn inspect(
    store: &dyn Store,
    location: &StoreLocation,
    token: &str,
) -> Result<Inspection, AdminError> {
    let mut parts = token.split('.');
    let decode = |part: Option<&str>| {
        part.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    };
    let header = decode(parts.next());
    let claims = decode(parts.next());
    let verdict = |valid: bool, reason: String| Inspection {
        valid,
        reason,
        header: header.clone(),
        claims: claims.clone(),
    };

    let settings = crate::location::settings(location)?;
    let configured = existing_base_signing_key(&settings)?.map(|resolved| resolved.key);
    let Some(configured) = configured else {
        return Ok(verdict(
            false,
            format!(
                "cannot check the signature: no jwt.secret is configured and there is no key file {}",
                settings.key_file_path().display()
            ),
        ));
    };
    let now = SystemClock.now();
    let rotated = store
        .signing_keys()?
        .into_iter()
        .map(RotatedKey::from)
        .collect();
    let rules = settings.jwt.rules;
    let (keys, _) = scheduled_key_set(configured, rotated, &rules, now);
    let codec = JwtCodec::new(keys, rules);
    let verified = match codec.verify(token, now) {
        Ok(claims) => claims,
        Err(VerifyError::Expired) => {
            return Ok(verdict(
                false,
                "expired (exp is past, beyond the leeway)".into(),
            ));
        }
        Err(VerifyError::Invalid(reason)) => return Ok(verdict(false, reason.to_string())),
    };
    let reason = why_refused(store, &verified)?;
    Ok(match reason {
        Some(reason) => verdict(false, reason),
        None => verdict(true, "valid".into()),
    })
}

/// Why the server would refuse verified claims, if it would: the server's
/// own rule ([`LiveState::jwt_refusal`], on the store's state now), then
/// the account or the revocation behind it, in words.
fn why_refused(store: &dyn Store, claims: &Claims) -> Result<Option<String>, AdminError> {
    // A cache is part of the state; one entry's worth, never used here.
    let live = LiveState::load(store, StaticTokenCache::new(1, Duration::from_secs(1)))?;
    match live.jwt_refusal(claims) {
        None => Ok(None),
        Some(JwtRefusal::Disabled) => {
            for (kind, id) in [
                (AccountKind::User, claims.user_id),
                (AccountKind::Merchant, claims.merchant_id),
            ] {
                match store.account(kind, id)? {
                    None => return Ok(Some(format!("{} {id} does not exist", kind.as_str()))),
                    Some(a) if !a.active => {
                        return Ok(Some(format!("{} {id} is disabled", kind.as_str())));
                    }
                    Some(_) => {}
                }
            }
            Ok(Some("its user or merchant is disabled".into()))
        }
        Some(JwtRefusal::Revoked) => Ok(Some(
            match store
                .jwt_revocations()?
                .into_iter()
                .find(|r| r.refuses(claims))
            {
                Some(revocation) => format!("revoked: {}", crate::output::describe(&revocation)),
                None => "revoked".into(),
            },
        )),
    }
}
