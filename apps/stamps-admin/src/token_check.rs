//! `token check`: whether a static token (a leaked one, say) is live, and
//! `--revoke` it if it is.

use stamps_core::StaticToken;
use stamps_store::{Refusal, Store, TokenCheck};

use crate::error::AdminError;
use crate::outcome::{TokenState, TokenStatus};

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
        TokenCheck::Refused(Refusal::Expired) => TokenState::Expired,
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
