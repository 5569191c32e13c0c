//! `token check`: whether a static token (a leaked one, say) is live, and
//! `--revoke` it if it is.

use stamps_core::{LookupKey, StaticToken, TOKEN_PREFIX, TokenId, check_imported_text};
use stamps_store::{Refusal, Store, TokenCheck};

use crate::error::AdminError;
use crate::outcome::{TokenState, TokenStatus};

/// `token check`: whether a static token is live, and `--revoke` it. An
/// issued token (`stmp_...`) is found by its id; any other text, as an
/// imported token, by its digest under `lookup` (none: it is unknown).
pub fn check_token(
    store: &dyn Store,
    text: &str,
    lookup: Option<&LookupKey>,
    revoke: bool,
) -> Result<TokenStatus, AdminError> {
    let malformed = TokenStatus {
        id: None,
        status: TokenState::Malformed,
        revoked_now: false,
    };
    let (check, id): (TokenCheck, Option<TokenId>) = if text.starts_with(TOKEN_PREFIX) {
        let Ok(token) = StaticToken::parse(text) else {
            return Ok(malformed);
        };
        (store.check_token(&token)?, Some(*token.id()))
    } else if check_imported_text(text).is_err() {
        return Ok(malformed);
    } else {
        match lookup {
            Some(key) => {
                let digest = key.digest(text);
                let check = store.check_imported(text, &digest)?;
                // The id of a stored one is public; a guess has none.
                let id = match &check {
                    TokenCheck::Live(record) => Some(record.id),
                    _ => store.imported_token(&digest)?.map(|r| r.id),
                };
                (check, id)
            }
            None => (TokenCheck::Refused(Refusal::Unknown), None),
        }
    };
    let status = match check {
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
    if let (true, Some(id)) = (revoked_now, &id) {
        store.revoke_token(id)?;
    }
    Ok(TokenStatus {
        id: id.map(|id| id.to_string()),
        status,
        revoked_now,
    })
}
