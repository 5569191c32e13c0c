//! get-access-token's one call: a static token and the merchant it was
//! issued for, exchanged for a fresh JWT.

use std::net::IpAddr;

use stamps_auth::{AuditTrail, IssueQuota, JwtIssued};
use stamps_core::Minted;

use crate::auth::Authenticator;
use crate::body::AccessTokenRequest;
use crate::error::ApiError;

/// Exchanges `request`'s static token, presented by `client`, for a JWT:
/// the token verified ([`Authenticator::verify_static`]: 401 when it grants
/// nothing), issued for the merchant asked for (403 otherwise), one JWT of
/// its issuance quota spent (429 beyond it), a JWT minted that this server
/// accepts at once ([`Authenticator::mint`]), and its issuance queued for
/// the audit trail (off the request path). `quota` and `trail` are the
/// server's, when it keeps them.
pub(crate) async fn exchange(
    auth: &Authenticator,
    request: &AccessTokenRequest,
    client: IpAddr,
    quota: Option<&IssueQuota>,
    trail: Option<&AuditTrail>,
) -> Result<Minted, ApiError> {
    let known = auth.verify_static(&request.token, Some(client)).await?;
    if known.merchant_id != request.crm_merchant_id {
        return Err(ApiError::MerchantForbidden);
    }
    if let Some(quota) = quota {
        quota.spend(&known.token_id)?;
    }
    let minted = auth.mint(known.user_id, known.merchant_id).await?;
    if let Some(trail) = trail {
        // The client as trusted proxies report it, like the throttle sees it.
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
