//! get-access-token's one call: a static token and the merchant it was
//! issued for, exchanged for a fresh JWT.

use std::net::IpAddr;

use stamps_core::Minted;

use super::Authenticator;
use crate::audit::JwtIssued;
use crate::error::AuthError;

/// What a client asks get-access-token for: the JWT of a static token at
/// a merchant. Its `Debug` never shows the token.
#[derive(Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The static token presented, as sent.
    pub token: &'a str,
    /// The merchant asked for (`crm_merchant_id`).
    pub merchant_id: u64,
}

impl std::fmt::Debug for AccessRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessRequest")
            .field("token", &"[redacted]")
            .field("merchant_id", &self.merchant_id)
            .finish()
    }
}

impl Authenticator {
    /// Exchanges `request`'s static token, presented by `client`, for a
    /// JWT: the token verified ([`Authenticator::verify_static`]:
    /// `InvalidToken` when it grants nothing), issued for the merchant asked
    /// for (`MerchantForbidden` otherwise), one JWT of its issuance quota
    /// spent (`Throttled` beyond it), a JWT minted that this server accepts
    /// at once ([`Authenticator::mint`]), and its issuance queued for the
    /// audit trail (off the request path), when there are a quota and a
    /// trail.
    pub async fn exchange(
        &self,
        request: AccessRequest<'_>,
        client: IpAddr,
    ) -> Result<Minted, AuthError> {
        let known = self.verify_static(request.token, Some(client)).await?;
        if known.merchant_id != request.merchant_id {
            return Err(AuthError::MerchantForbidden);
        }
        if let Some(quota) = &self.quota {
            quota.spend(&known.token_id)?;
        }
        let minted = self.mint(known.user_id, known.merchant_id).await?;
        if let Some(trail) = &self.trail {
            // The client as trusted proxies report it, like the throttle
            // sees it.
            trail.record_jwt_issued(JwtIssued {
                at: minted.claims.iat,
                client,
                jti: minted.claims.jti,
                user_id: known.user_id,
                merchant_id: known.merchant_id,
                token_id: known.token_id,
            });
        }
        Ok(minted)
    }
}
