//! OpenSSH public keys, as found in `.pub` files.
//!
//! A key is checked before it goes anywhere near a VM: a private key, a multi-line file or a
//! hand-mangled line would otherwise only show up as a failed SSH login minutes later.

use std::fmt;

use base64::Engine as _;

use crate::error::{UserDataError, shorten};

/// The public key algorithms accepted, as OpenSSH names them.
pub const KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
];

const EXPECTED: &str = "ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, \
                        ecdsa-sha2-nistp521, sk-ssh-ed25519@openssh.com, \
                        sk-ecdsa-sha2-nistp256@openssh.com, ssh-dss";

/// A validated single-line OpenSSH public key: `ALGORITHM BASE64 [COMMENT]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    algorithm: String,
    data: String,
    comment: Option<String>,
}

impl PublicKey {
    /// Parses the text of a `.pub` file.
    ///
    /// Accepted: one line `ALGORITHM BASE64 [COMMENT]`, surrounding whitespace and a trailing
    /// newline tolerated. The algorithm must be one of [`KEY_ALGORITHMS`], the data must be
    /// base64 that decodes to an SSH key blob naming the same algorithm, and the comment may
    /// hold spaces but no control characters.
    ///
    /// # Errors
    /// [`UserDataError::EmptyKey`], [`UserDataError::MultiLineKey`],
    /// [`UserDataError::PrivateKeyGiven`], [`UserDataError::UnknownKeyAlgorithm`],
    /// [`UserDataError::MissingKeyData`], [`UserDataError::MalformedKeyData`],
    /// [`UserDataError::KeyAlgorithmMismatch`] or [`UserDataError::ControlCharacterInKey`].
    ///
    /// ```
    /// let key = vmw_userdata::PublicKey::parse(
    ///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBvRNLZQfZdf1PhLV9m5MVDkCZvPx8hRwBbq1bHr7kX me@laptop\n",
    /// )?;
    /// assert_eq!(key.algorithm(), "ssh-ed25519");
    /// assert_eq!(key.comment(), Some("me@laptop"));
    /// # Ok::<(), vmw_userdata::UserDataError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, UserDataError> {
        if text.contains("PRIVATE KEY-----") {
            return Err(UserDataError::PrivateKeyGiven);
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(UserDataError::EmptyKey);
        }
        if trimmed.contains(['\n', '\r']) {
            let lines = trimmed.lines().filter(|l| !l.trim().is_empty()).count();
            return Err(UserDataError::MultiLineKey { lines });
        }
        let (algorithm, rest) = split_word(trimmed);
        if !KEY_ALGORITHMS.contains(&algorithm) {
            return Err(UserDataError::UnknownKeyAlgorithm {
                found: shorten(algorithm, 40),
                expected: EXPECTED,
            });
        }
        let (data, comment) = split_word(rest);
        if data.is_empty() {
            return Err(UserDataError::MissingKeyData {
                algorithm: algorithm.to_owned(),
            });
        }
        check_blob(algorithm, data)?;
        let comment = comment.trim();
        if let Some(position) = comment.chars().position(char::is_control) {
            return Err(UserDataError::ControlCharacterInKey { position });
        }
        Ok(Self {
            algorithm: algorithm.to_owned(),
            data: data.to_owned(),
            comment: (!comment.is_empty()).then(|| comment.to_owned()),
        })
    }

    /// The algorithm name, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The base64 key data (the second word of the line).
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The comment, if the line has one.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Whether an `authorized_keys`-style line holds this key (same algorithm and data),
    /// whatever its comment or options.
    pub fn matches_line(&self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let mut previous = words.next();
        for word in words {
            if word == self.data && previous == Some(self.algorithm.as_str()) {
                return true;
            }
            previous = Some(word);
        }
        false
    }

    /// The key as a YAML double-quoted scalar holding only ASCII characters (non-ASCII
    /// characters of the comment become `\u` escapes), safe in block and flow context.
    pub(crate) fn yaml_quoted(&self) -> String {
        let line = self.to_string();
        let mut out = String::with_capacity(line.len() + 2);
        out.push('"');
        for c in line.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                ' '..='~' => out.push(c),
                c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
                c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
            }
        }
        out.push('"');
        out
    }
}

impl fmt::Display for PublicKey {
    /// Writes the key as one line, `ALGORITHM BASE64 [COMMENT]`, without a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm, self.data)?;
        if let Some(comment) = &self.comment {
            write!(f, " {comment}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = UserDataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits off the first whitespace-separated word; the rest keeps its inner spacing.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

/// Checks that `data` is base64 of an SSH wire-format key blob whose leading string names
/// `algorithm` and that carries key material after it.
fn check_blob(algorithm: &str, data: &str) -> Result<(), UserDataError> {
    let malformed = |reason: String| UserDataError::MalformedKeyData {
        algorithm: algorithm.to_owned(),
        reason,
    };
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|err| malformed(format!("not valid base64 ({err})")))?;
    let (len_bytes, rest) = blob
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("too short to be an SSH key".to_owned()))?;
    let name_len = usize::try_from(u32::from_be_bytes(*len_bytes)).unwrap_or(usize::MAX);
    let name = rest
        .get(..name_len)
        .ok_or_else(|| malformed("its length field runs past its end".to_owned()))?;
    let name = String::from_utf8_lossy(name);
    if name != algorithm {
        return Err(UserDataError::KeyAlgorithmMismatch {
            algorithm: algorithm.to_owned(),
            embedded: shorten(&name, 40),
        });
    }
    if rest.len() <= name_len {
        return Err(malformed(
            "it holds no key material after the algorithm name".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBvRNLZQfZdf1PhLV9m5MVDkCZvPx8hRwBbq1bHr7kX";

    fn blob_for(name: &str, material: &[u8]) -> String {
        let mut blob = Vec::new();
        blob.extend_from_slice(&u32::try_from(name.len()).unwrap().to_be_bytes());
        blob.extend_from_slice(name.as_bytes());
        blob.extend_from_slice(material);
        base64::engine::general_purpose::STANDARD.encode(blob)
    }

    #[test]
    fn parses_every_known_algorithm() {
        for alg in KEY_ALGORITHMS {
            let line = format!("{alg} {} c", blob_for(alg, &[0, 0, 0, 1, 7]));
            let key = PublicKey::parse(&line).unwrap();
            assert_eq!(key.algorithm(), *alg);
            assert_eq!(key.to_string(), line);
        }
    }

    #[test]
    fn keeps_comment_with_spaces_and_trims_newline() {
        let key = PublicKey::parse(&format!("  {ED25519}  my laptop key \n")).unwrap();
        assert_eq!(key.comment(), Some("my laptop key"));
        assert_eq!(key.to_string(), format!("{ED25519} my laptop key"));
        let key = PublicKey::parse(&format!("{ED25519}\r\n")).unwrap();
        assert_eq!(key.comment(), None);
    }

    #[test]
    fn refuses_empty_and_multi_line() {
        assert!(matches!(
            PublicKey::parse(" \n"),
            Err(UserDataError::EmptyKey)
        ));
        let two = format!("{ED25519} a\n{ED25519} b\n");
        assert!(matches!(
            PublicKey::parse(&two),
            Err(UserDataError::MultiLineKey { lines: 2 })
        ));
    }

    #[test]
    fn refuses_private_key() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let err = PublicKey::parse(text).unwrap_err();
        assert!(matches!(err, UserDataError::PrivateKeyGiven));
        assert!(!err.to_string().contains("b3Blbn"));
    }

    #[test]
    fn refuses_options_and_unknown_algorithms() {
        let err = PublicKey::parse(&format!("no-pty,from=\"10.0.0.1\" {ED25519}")).unwrap_err();
        assert!(
            matches!(err, UserDataError::UnknownKeyAlgorithm { .. }),
            "{err}"
        );
        let err = PublicKey::parse("ssh-foo AAAA").unwrap_err();
        assert!(err.to_string().contains("`ssh-foo`"), "{err}");
        assert!(err.to_string().contains("ssh-ed25519"), "{err}");
    }

    #[test]
    fn refuses_bad_data() {
        assert!(matches!(
            PublicKey::parse("ssh-ed25519"),
            Err(UserDataError::MissingKeyData { .. })
        ));
        assert!(matches!(
            PublicKey::parse("ssh-ed25519 not!base64"),
            Err(UserDataError::MalformedKeyData { .. })
        ));
        assert!(matches!(
            PublicKey::parse("ssh-ed25519 AAAA"),
            Err(UserDataError::MalformedKeyData { .. })
        ));
        let only_name = blob_for("ssh-ed25519", &[]);
        assert!(matches!(
            PublicKey::parse(&format!("ssh-ed25519 {only_name}")),
            Err(UserDataError::MalformedKeyData { .. })
        ));
    }

    #[test]
    fn refuses_algorithm_mismatch() {
        let rsa_blob = blob_for("ssh-rsa", &[0, 0, 0, 1, 3]);
        let err = PublicKey::parse(&format!("ssh-ed25519 {rsa_blob} x")).unwrap_err();
        match err {
            UserDataError::KeyAlgorithmMismatch {
                algorithm,
                embedded,
            } => {
                assert_eq!(algorithm, "ssh-ed25519");
                assert_eq!(embedded, "ssh-rsa");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn refuses_control_characters_in_comment() {
        let err = PublicKey::parse(&format!("{ED25519} a\u{7}b")).unwrap_err();
        assert!(matches!(
            err,
            UserDataError::ControlCharacterInKey { position: 1 }
        ));
    }

    #[test]
    fn matches_lines_with_other_comments_and_options() {
        let key = PublicKey::parse(&format!("{ED25519} mine")).unwrap();
        assert!(key.matches_line(&format!("{ED25519} other comment")));
        assert!(key.matches_line(&format!("no-pty {ED25519}")));
        assert!(!key.matches_line("ssh-ed25519 AAAAother"));
        let data_only = ED25519.split(' ').nth(1).unwrap();
        assert!(!key.matches_line(data_only));
    }

    #[test]
    fn yaml_quoting_is_ascii_and_round_trips() {
        let key = PublicKey::parse(&format!("{ED25519} josé \"quoted\" \\ 🔑")).unwrap();
        let quoted = key.yaml_quoted();
        assert!(quoted.is_ascii(), "{quoted}");
        let back: String = serde_yaml_ng::from_str(&quoted).unwrap();
        assert_eq!(back, key.to_string());
    }
}
