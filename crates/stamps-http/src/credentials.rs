//! Reading an `Authorization` header: which scheme it names, and the
//! credential it carries, or why it carries none that can be read.

use actix_web::http::header;

use crate::error::ApiError;
use crate::outcome::Scheme;

/// The credentials of an `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// `Bearer <jwt>`.
    Bearer(&'a str),
    /// `Token <static token>`.
    Token(&'a str),
}

/// An `Authorization` header naming a known scheme with no or unreadable
/// credentials (401 `invalid_token`), and which scheme it named (for the
/// metrics: a header that is not UTF-8 counts by its first word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed credentials")]
pub struct MalformedCredentials {
    /// The scheme the header named.
    pub scheme: Scheme,
}

impl From<MalformedCredentials> for ApiError {
    fn from(_: MalformedCredentials) -> Self {
        ApiError::InvalidToken
    }
}

impl<'a> Credentials<'a> {
    /// Reads an `Authorization` header value. `Ok(None)`: no usable scheme
    /// (no header, or another scheme such as `Basic`). `Err`: a known scheme
    /// with no or unreadable credentials.
    pub fn parse(
        header: Option<&'a header::HeaderValue>,
    ) -> Result<Option<Self>, MalformedCredentials> {
        let Some(value) = header else {
            return Ok(None);
        };
        // UTF-8 validation is vectorised, unlike `HeaderValue::to_str`'s
        // byte-by-byte check; the verifiers refuse anything outside their
        // alphabets anyway.
        let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
            return Err(MalformedCredentials {
                scheme: Scheme::of_bytes(value.as_bytes()),
            });
        };
        let (scheme, rest) = text
            .trim_start()
            .split_once(' ')
            .unwrap_or((text.trim(), ""));
        let credential = rest.trim();
        let (make, scheme) = if scheme.eq_ignore_ascii_case("bearer") {
            (Credentials::Bearer as fn(&'a str) -> Self, Scheme::Jwt)
        } else if scheme.eq_ignore_ascii_case("token") {
            (Credentials::Token as fn(&'a str) -> Self, Scheme::Static)
        } else {
            return Ok(None);
        };
        if credential.is_empty() || credential.contains(' ') {
            return Err(MalformedCredentials { scheme });
        }
        Ok(Some(make(credential)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn parse(value: &str) -> Result<Option<Credentials<'static>>, MalformedCredentials> {
        let value: &'static HeaderValue =
            Box::leak(Box::new(HeaderValue::from_str(value).unwrap()));
        Credentials::parse(Some(value))
    }

    #[test]
    fn scheme_words_are_case_insensitive() {
        assert_eq!(
            parse("Bearer abc").unwrap(),
            Some(Credentials::Bearer("abc"))
        );
        assert_eq!(
            parse("bEaReR abc").unwrap(),
            Some(Credentials::Bearer("abc"))
        );
        assert_eq!(parse("TOKEN xyz").unwrap(), Some(Credentials::Token("xyz")));
        assert_eq!(
            parse("token   xyz  ").unwrap(),
            Some(Credentials::Token("xyz"))
        );
    }

    #[test]
    fn other_schemes_are_no_credentials_and_empty_ones_are_invalid() {
        assert_eq!(parse("Basic dXNlcjpwYXNz").unwrap(), None);
        assert_eq!(Credentials::parse(None).unwrap(), None);
        let malformed = |scheme| Err(MalformedCredentials { scheme });
        assert_eq!(parse("Bearer"), malformed(Scheme::Jwt));
        assert_eq!(parse("Bearer   "), malformed(Scheme::Jwt));
        assert_eq!(parse("Token a b"), malformed(Scheme::Static));
        assert_eq!(parse("tOkEn"), malformed(Scheme::Static));
        let not_utf8 = HeaderValue::from_bytes(b"Bearer \xff").unwrap();
        assert_eq!(Credentials::parse(Some(&not_utf8)), malformed(Scheme::Jwt));
    }
}
