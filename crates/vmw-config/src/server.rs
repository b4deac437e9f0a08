//! The `server` value: a vCenter host name or URL in any form govc accepts
//! as `GOVC_URL`, which may carry a user name and password
//! (`https://user:password@host/sdk`, the form vcsim prints).
//!
//! [`ServerUrl::parse`] splits such a value into the address without the
//! user info, the user name and the password, percent-decoded. vmw shows
//! and hands govc only the address; the user name and password travel as
//! `GOVC_USERNAME` and `GOVC_PASSWORD`, so neither vmw's output nor govc's
//! own error messages can echo them. [`redact`] gives a printable form of
//! any value, even one that does not parse.
//!
//! The rules follow Go's `net/url`, which govc uses: an optional
//! `scheme://` (without one, govc assumes `https://`); the authority ends at
//! the first `/`, `?` or `#`; the user info is everything before the
//! *last* `@` of the authority (so a password may hold a plain `@`); the
//! user name ends at the first `:`. `%XX` escapes are decoded, and an
//! invalid escape is an error, as in Go. A password holding `/`, `?` or `#`
//! must be written `%2F`, `%3F`, `%23`: otherwise the URL would name
//! another host, and vmw refuses a `server` with an `@` after its host
//! rather than guess.

use std::fmt;

use crate::Secret;

/// A `server` value split into the address and the credentials it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl {
    address: String,
    username: Option<String>,
    password: Option<Secret>,
}

/// Why a `server` value cannot be used. The message never holds any part
/// of the value: it may be a password.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerUrlError {
    /// The user info holds a `%` not followed by two hexadecimal digits.
    #[error("its {0} (before the `@`) holds a `%` that is not a %XX escape")]
    BadEscape(Part),
    /// The decoded user info is not UTF-8.
    #[error("its {0} (before the `@`) decodes to bytes that are not UTF-8")]
    NotUtf8(Part),
    /// An `@` comes after the end of the host: most likely a password
    /// holding `/`, `?` or `#` without escaping.
    #[error("it holds an `@` after the host name")]
    AtAfterHost,
}

impl ServerUrlError {
    /// What would fix it, where that is known.
    pub(crate) fn hint_text(&self) -> Option<String> {
        match self {
            ServerUrlError::BadEscape(_) => Some("write a literal `%` as %25".to_owned()),
            ServerUrlError::NotUtf8(_) => None,
            ServerUrlError::AtAfterHost => Some(
                "in a password inside the URL, write `/` as %2F, `?` as %3F, `#` as %23 and `@` as %40; or set `username` and `password` instead"
                    .to_owned(),
            ),
        }
    }
}

/// Which part of the user info a [`ServerUrlError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The user name.
    Username,
    /// The password.
    Password,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Username => "user name",
            Part::Password => "password",
        })
    }
}

impl ServerUrl {
    /// Splits `raw` (see the module docs). A value without user info is
    /// kept exactly as it is.
    pub fn parse(raw: &str) -> Result<Self, ServerUrlError> {
        let (scheme_end, authority_end) = bounds(raw);
        let authority = &raw[scheme_end..authority_end];
        let Some(at) = authority.rfind('@') else {
            if raw[scheme_end..].contains('@') {
                return Err(ServerUrlError::AtAfterHost);
            }
            return Ok(Self {
                address: raw.to_owned(),
                username: None,
                password: None,
            });
        };
        let userinfo = &authority[..at];
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let user = decode(user).map_err(|e| e.of(Part::Username))?;
        let password = password
            .map(decode)
            .transpose()
            .map_err(|e| e.of(Part::Password))?;
        let mut address = String::with_capacity(raw.len() - at - 1);
        address.push_str(&raw[..scheme_end]);
        address.push_str(&raw[scheme_end + at + 1..]);
        Ok(Self {
            address,
            username: Some(user).filter(|u| !u.is_empty()),
            password: password.filter(|p| !p.is_empty()).map(Secret::new),
        })
    }

    /// The value without its user info: what vmw shows and hands govc.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The user name in the URL, percent-decoded (`None` when absent or
    /// empty).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password in the URL, percent-decoded (`None` when absent or
    /// empty).
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerUrl")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// `raw` without anything that could be user info, for display: the scheme
/// and whatever follows the last `@`. Unlike [`ServerUrl::parse`] this
/// never fails, and it errs on the side of hiding: a value with an `@`
/// anywhere after the scheme loses everything up to that `@`.
pub fn redact(raw: &str) -> String {
    let (scheme_end, _) = bounds(raw);
    match raw[scheme_end..].rfind('@') {
        Some(at) => format!("{}{}", &raw[..scheme_end], &raw[scheme_end + at + 1..]),
        None => raw.to_owned(),
    }
}

/// Where the authority of `raw` starts (after `scheme://`, if any) and
/// ends (at the first `/`, `?` or `#`, else the end).
fn bounds(raw: &str) -> (usize, usize) {
    // govc's rule for "has a scheme": `^\w+://`.
    let scheme_end = raw
        .find("://")
        .filter(|&i| {
            i > 0
                && raw[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .map_or(0, |i| i + 3);
    let authority_end = raw[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| scheme_end + i);
    (scheme_end, authority_end)
}

/// A decoding failure, before it is known which part it is in.
enum DecodeError {
    BadEscape,
    NotUtf8,
}

impl DecodeError {
    fn of(self, part: Part) -> ServerUrlError {
        match self {
            DecodeError::BadEscape => ServerUrlError::BadEscape(part),
            DecodeError::NotUtf8 => ServerUrlError::NotUtf8(part),
        }
    }
}

/// Decodes `%XX` escapes; `+` stays `+`, as in the user info of a Go URL.
fn decode(s: &str) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |j: usize| {
                bytes
                    .get(j)
                    .and_then(|b| char::from(*b).to_digit(16))
                    .ok_or(DecodeError::BadEscape)
            };
            let value = hex(i + 1)? * 16 + hex(i + 2)?;
            out.push(u8::try_from(value).map_err(|_| DecodeError::BadEscape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

impl vmw_hints::Hints for ServerUrlError {
    fn hints(&self) -> Vec<String> {
        self.hint_text().into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &str) -> (String, Option<String>, Option<String>) {
        let u = ServerUrl::parse(raw).unwrap();
        (
            u.address().to_owned(),
            u.username().map(str::to_owned),
            u.password().map(|p| p.expose().to_owned()),
        )
    }

    fn owned(
        a: &str,
        u: Option<&str>,
        p: Option<&str>,
    ) -> (String, Option<String>, Option<String>) {
        (a.to_owned(), u.map(str::to_owned), p.map(str::to_owned))
    }

    #[test]
    fn values_without_user_info_are_kept_as_they_are() {
        for raw in [
            "vcenter.example.com",
            "127.0.0.1:8989",
            "https://vc.example.com/sdk",
            "https://[::1]:443/sdk",
            "http://vc",
            "",
        ] {
            assert_eq!(parts(raw), owned(raw, None, None), "{raw}");
            assert_eq!(redact(raw), raw);
        }
    }

    #[test]
    fn user_and_password_are_taken_out_and_decoded() {
        assert_eq!(
            parts("https://alice:s3cret@vc.example.com/sdk"),
            owned("https://vc.example.com/sdk", Some("alice"), Some("s3cret"))
        );
        // No scheme: govc assumes https, the user info is still user info.
        assert_eq!(
            parts("alice:pw@127.0.0.1:8989"),
            owned("127.0.0.1:8989", Some("alice"), Some("pw"))
        );
        // vcsim's own output for -username alice -password 'p@ss:w/rd%x'.
        assert_eq!(
            parts("https://alice:p%40ss%3Aw%2Frd%25x@127.0.0.1:46329/sdk"),
            owned(
                "https://127.0.0.1:46329/sdk",
                Some("alice"),
                Some("p@ss:w/rd%x")
            )
        );
        // The last `@` ends the user info; the first `:` ends the user name.
        assert_eq!(
            parts("https://administrator%40vsphere.local:a@b:c@vc/sdk"),
            owned(
                "https://vc/sdk",
                Some("administrator@vsphere.local"),
                Some("a@b:c")
            )
        );
        // `+` is not a space in user info; UTF-8 escapes decode.
        assert_eq!(
            parts("https://u:a+b%C3%BC@vc"),
            owned("https://vc", Some("u"), Some("a+bü"))
        );
        // User without password, password without user, empty both.
        assert_eq!(
            parts("https://alice@vc/sdk"),
            owned("https://vc/sdk", Some("alice"), None)
        );
        assert_eq!(
            parts("https://:pw@vc/sdk"),
            owned("https://vc/sdk", None, Some("pw"))
        );
        assert_eq!(parts("https://:@vc"), owned("https://vc", None, None));
        // Query and fragment stay with the address.
        assert_eq!(
            parts("https://u:p@vc:443/sdk?x=1#y"),
            owned("https://vc:443/sdk?x=1#y", Some("u"), Some("p"))
        );
    }

    #[test]
    fn bad_escapes_and_stray_at_signs_are_errors_that_show_nothing() {
        let cases = [
            (
                "https://u:50%off@vc",
                ServerUrlError::BadEscape(Part::Password),
            ),
            (
                "https://u%zz:p@vc",
                ServerUrlError::BadEscape(Part::Username),
            ),
            (
                "https://u:p%4@vc",
                ServerUrlError::BadEscape(Part::Password),
            ),
            (
                "https://u:%ff%fe@vc",
                ServerUrlError::NotUtf8(Part::Password),
            ),
            ("https://u:pa/ss@vc/sdk", ServerUrlError::AtAfterHost),
            ("https://u:pa#ss@vc", ServerUrlError::AtAfterHost),
            ("u:pa?ss@vc", ServerUrlError::AtAfterHost),
        ];
        for (raw, want) in cases {
            let err = ServerUrl::parse(raw).unwrap_err();
            assert_eq!(err, want, "{raw}");
            let shown = format!("{err} {err:?}");
            for secret in ["50%off", "u%zz", "p%4", "pa/ss", "pa#ss", "pa?ss", "%ff"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[test]
    fn redact_hides_everything_before_the_last_at() {
        assert_eq!(
            redact("https://alice:p%40ss@127.0.0.1:1/sdk"),
            "https://127.0.0.1:1/sdk"
        );
        assert_eq!(redact("alice:pw@vc"), "vc");
        // Values that do not parse are hidden as well.
        assert_eq!(redact("https://u:pa/ss@vc/sdk"), "https://vc/sdk");
        assert_eq!(redact("https://u:pa#ss@vc"), "https://vc");
        assert_eq!(redact("u:50%off@vc"), "vc");
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let u = ServerUrl::parse("https://alice:hunter2@vc/sdk").unwrap();
        let shown = format!("{u} {u:?} {u:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(u.to_string(), "https://vc/sdk");
        assert!(shown.contains("alice"), "{shown}");
    }
}
