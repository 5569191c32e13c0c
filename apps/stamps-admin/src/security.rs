//! The hardening commands: JWT revocation and inspection, key rotation,
//! checking a leaked static token, the audit trail; and the audit events
//! every changing command records.

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use stamps_auth::{JwtRefusal, LiveState, StaticTokenCache};
use stamps_config::{Settings, StoreSettings, existing_base_signing_key};
use stamps_core::{
    Claims, Clock, Jti, JwtCodec, RotatedKey, StaticToken, SystemClock, UnixTime, VerifyError,
    scheduled_key_set,
};
use stamps_store::{AccountKind, AuditEvent, Refusal, Store, TokenCheck};

use crate::cli::StoreLocation;
use crate::error::AdminError;
use crate::outcome::{Inspection, TokenState, TokenStatus};

/// Reads a token argument: the text itself, or stdin for `-`.
pub fn read_token_arg(arg: &str) -> Result<String, AdminError> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(AdminError::io("cannot read the token from stdin"))?;
    Ok(text.trim().to_owned())
}

/// Parses a `jti` given on the command line.
pub fn parse_jti(text: &str) -> Result<Jti, AdminError> {
    text.parse()
        .map_err(|_| AdminError::Invalid("a jti is 32 lowercase hexadecimal characters".into()))
}

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

    let settings = settings_for(location)?;
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
    let now = now();
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

/// `token check`: whether a static token is live, and `--revoke` it.
pub fn check_token(store: &dyn Store, text: &str, revoke: bool) -> Result<TokenStatus, AdminError> {
    let Ok(token) = StaticToken::parse(text) else {
        return Ok(TokenStatus {
            id: None,
            status: TokenState::Malformed,
            revoked_now: false,
        });
    };
    let id = Some(token.id().to_string());
    let status = match store.check_token(&token)? {
        TokenCheck::Live(_) => TokenState::Live,
        TokenCheck::Refused(Refusal::Unknown) => TokenState::Unknown,
        TokenCheck::Refused(Refusal::WrongSecret) => TokenState::WrongSecret,
        TokenCheck::Refused(Refusal::Revoked) => TokenState::Revoked,
        TokenCheck::Refused(Refusal::UserDisabled) => TokenState::UserDisabled,
        TokenCheck::Refused(Refusal::MerchantDisabled) => TokenState::MerchantDisabled,
    };
    // Only a token proven by its secret is revoked: an id alone is public.
    let revoked_now = revoke && status == TokenState::Live;
    if revoked_now {
        store.revoke_token(token.id())?;
    }
    Ok(TokenStatus {
        id,
        status,
        revoked_now,
    })
}

/// Parses `--since`: an RFC 3339 time, or a duration back from now.
pub fn parse_since(text: &str) -> Result<UnixTime, AdminError> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now().saturating_sub(ago.as_secs()));
    }
    Err(AdminError::Invalid(format!(
        "--since {text:?}: give an RFC 3339 time (2026-11-28T09:00:00Z) or a duration (30m, 1h, 7d)"
    )))
}

/// The settings of the store location: the configuration file's, or the
/// defaults (and STAMPS_... variables) with the given data directory.
fn settings_for(location: &StoreLocation) -> Result<Settings, AdminError> {
    Ok(match location {
        StoreLocation::Config(file) => Settings::load(Some(file))?,
        StoreLocation::Postgres(url) => {
            let mut settings = Settings::load(None)?;
            settings.store = StoreSettings::Postgres {
                url: url.0.clone().into(),
            };
            settings
        }
        StoreLocation::DataDir(dir) => {
            let mut settings = Settings::load(None)?;
            settings.data_dir = dir.clone();
            settings
        }
    })
}

fn now() -> UnixTime {
    SystemClock.now()
}

/// Who runs this command, for the audit trail: the uid (which the kernel
/// vouches for) and, if set, the login name.
pub fn actor() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid());
    let uid = uid.map_or_else(|_| "?".to_owned(), |u| u.to_string());
    match std::env::var("USER") {
        Ok(name) if !name.is_empty() && name.len() <= 64 && !name.contains(char::is_control) => {
            format!("stamps-admin uid={uid} ({name})")
        }
        _ => format!("stamps-admin uid={uid}"),
    }
}

/// Records one admin change in the audit trail. The change is made
/// already, so a failure here is a warning, not a failed command.
pub fn audit(store: &dyn Store, action: &str, subject: String) {
    let event = AuditEvent::new(now(), actor(), action, subject);
    if let Err(e) = store.append_audit(&[event]) {
        eprintln!("warning: the change was made but not recorded in the audit trail: {e}");
    }
}
