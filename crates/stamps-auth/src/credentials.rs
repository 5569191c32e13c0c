//! Reading an `Authorization` header: which scheme it names, and the
//! credential it carries, or why it carries none that can be read. Bytes
//! in, so that any web framework can hand its header over.

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

impl<'a> Credentials<'a> {
    /// Reads an `Authorization` header's value, as bytes (any web
    /// framework has them). `Ok(None)`: no usable scheme (no header, or
    /// another scheme such as `Basic`). `Err`: a known scheme with no or
    /// unreadable credentials.
    ///
    /// ```
    /// use stamps_auth::{Credentials, Scheme};
    ///
    /// assert_eq!(Credentials::parse(Some(b"Bearer abc")), Ok(Some(Credentials::Bearer("abc"))));
    /// assert_eq!(Credentials::parse(Some(b"token xyz")), Ok(Some(Credentials::Token("xyz"))));
    /// assert_eq!(Credentials::parse(Some(b"Basic dXNlcg==")), Ok(None));
    /// assert_eq!(Credentials::parse(Some(b"Bearer")).map_err(|e| e.scheme), Err(Scheme::Jwt));
    /// ```
    pub fn parse(header: Option<&'a [u8]>) -> Result<Option<Self>, MalformedCredentials> {
        let Some(value) = header else {
            return Ok(None);
        };
        // UTF-8 validation is vectorised, unlike `HeaderValue::to_str`'s
        // byte-by-byte check; the verifiers refuse anything outside their
        // alphabets anyway.
        let Ok(text) = std::str::from_utf8(value) else {
            return Err(MalformedCredentials {
                scheme: Scheme::of_bytes(value),
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
        // memchr's search is vectorised; `str::contains` goes a word at a
        // time over the whole credential.
        if credential.is_empty() || memchr::memchr(b' ', credential.as_bytes()).is_some() {
            return Err(MalformedCredentials { scheme });
        }
        Ok(Some(make(credential)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Option<Credentials<'_>>, MalformedCredentials> {
        Credentials::parse(Some(value.as_bytes()))
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
        assert_eq!(
            Credentials::parse(Some(b"Bearer \xff")),
            malformed(Scheme::Jwt)
        );
    }
}
