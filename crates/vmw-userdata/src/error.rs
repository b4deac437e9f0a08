//! The one error type of this crate.
//!
//! Every message names the input at fault and where in it the fault is;
//! [`UserDataError::hint`] says what would fix it.
//! No message quotes the user data itself beyond a line/column location: user data often
//! holds passwords and tokens, and error messages end up in logs.

/// What went wrong while preparing or reading guestinfo values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserDataError {
    /// The public key text is empty or only whitespace.
    #[error("the SSH public key is empty")]
    EmptyKey,

    /// The public key text spans several lines.
    #[error(
        "the SSH public key spans {lines} lines, but an OpenSSH public key is a single line `ALGORITHM BASE64 [COMMENT]`"
    )]
    MultiLineKey {
        /// How many non-empty lines the text has.
        lines: usize,
    },

    /// The text given as a public key is a private key.
    #[error("the text given as SSH public key is a private key")]
    PrivateKeyGiven,

    /// The first word of the key is not an OpenSSH public key algorithm.
    #[error(
        "the SSH public key starts with `{found}`, which is not an OpenSSH public key algorithm (expected one of: {expected})"
    )]
    UnknownKeyAlgorithm {
        /// The first word found (shortened to at most 40 characters).
        found: String,
        /// The algorithm names accepted, comma-separated.
        expected: &'static str,
    },

    /// The key line has an algorithm but no key data after it.
    #[error("the SSH public key has no key data after `{algorithm}`")]
    MissingKeyData {
        /// The algorithm name on the line.
        algorithm: String,
    },

    /// The key data is not valid base64 or is not an SSH key blob.
    #[error("the SSH public key's data after `{algorithm}` is malformed: {reason}")]
    MalformedKeyData {
        /// The algorithm name on the line.
        algorithm: String,
        /// What is wrong with the data.
        reason: String,
    },

    /// The algorithm inside the key data differs from the one written on the line.
    #[error("the SSH public key's line says `{algorithm}` but its data holds a `{embedded}` key")]
    KeyAlgorithmMismatch {
        /// The algorithm name on the line.
        algorithm: String,
        /// The algorithm name inside the data (shortened to at most 40 characters).
        embedded: String,
    },

    /// The key's comment holds a control character.
    #[error(
        "the SSH public key's comment holds a control character (at character {position} of the comment)"
    )]
    ControlCharacterInKey {
        /// Position (0-based, in characters) inside the comment.
        position: usize,
    },

    /// Text was required but the bytes are not UTF-8.
    #[error("{what} is not valid UTF-8 (first invalid byte at line {line}, column {column})")]
    NotUtf8 {
        /// What was being read, e.g. "the #cloud-config user data".
        what: &'static str,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based column (in bytes) of the first invalid byte.
        column: usize,
    },

    /// The user data starts with nothing that cloud-init recognises.
    #[error(
        "the user data's first line is not a header cloud-init recognises (#cloud-config, #!, #cloud-boothook, #include, #include-once, #part-handler, #cloud-config-archive, #cloud-config-jsonp, ## template: jinja), it is not MIME (no MIME-Version header) and not gzip-compressed, so cloud-init would ignore it"
    )]
    UnknownFormat,

    /// `#cloud-config` user data that is not valid YAML.
    #[error(
        "the #cloud-config user data is not valid YAML at line {line}, column {column}: {problem}"
    )]
    InvalidYaml {
        /// 1-based line of the fault (counted in the whole user data).
        line: usize,
        /// 1-based column of the fault.
        column: usize,
        /// The parser's description of the fault.
        problem: String,
    },

    /// `#cloud-config` user data whose top level is not a mapping.
    #[error(
        "the #cloud-config user data's top level is {found}, but cloud-init needs a mapping of `key: value` entries"
    )]
    NotAMapping {
        /// What the top level is instead (e.g. "a list").
        found: &'static str,
    },

    /// `ssh_authorized_keys` holds something other than a list.
    #[error(
        "`ssh_authorized_keys` in the #cloud-config user data (line {line}) is {found}, but must be a list"
    )]
    AuthorizedKeysNotAList {
        /// What it holds instead (e.g. "a string").
        found: &'static str,
        /// 1-based line of the `ssh_authorized_keys` entry (0 when it could not be found).
        line: usize,
    },

    /// An item of `ssh_authorized_keys` is not a string.
    #[error(
        "item {index} of `ssh_authorized_keys` in the #cloud-config user data is {found}, but each item must be a key as a string"
    )]
    AuthorizedKeyNotAString {
        /// 1-based position of the item.
        index: usize,
        /// What the item is instead.
        found: &'static str,
    },

    /// MIME multipart user data without a usable boundary.
    #[error(
        "the MIME multipart user data has no `boundary` parameter in its top-level Content-Type header"
    )]
    MultipartWithoutBoundary,

    /// Gzip-compressed user data that does not decompress.
    #[error("the user data starts like gzip but does not decompress ({reason})")]
    BadGzip {
        /// What the decompressor reported.
        reason: String,
    },

    /// Extra metadata tries to set a key that is derived from the VM.
    #[error("the extra metadata sets `{key}`, which is derived from the VM")]
    ReservedMetadataKey {
        /// The key (`instance-id` or `local-hostname`).
        key: &'static str,
        /// The builder method that sets it.
        setter: &'static str,
    },

    /// `instance-id` or `local-hostname` is empty.
    #[error(
        "the metadata's `{key}` is empty, and cloud-init would fall back to a value of its own"
    )]
    EmptyMetadataValue {
        /// The key (`instance-id` or `local-hostname`).
        key: &'static str,
        /// The builder method that sets it.
        setter: &'static str,
    },

    /// Metadata could not be written as YAML.
    #[error("the metadata cannot be written as YAML: {reason}")]
    MetadataYaml {
        /// What the YAML writer reported.
        reason: String,
    },

    /// A guestinfo value is too large for vSphere even after compression.
    #[error(
        "{key} would be {size} bytes even as gzip+base64, above the {limit}-byte limit for one guestinfo value (vSphere's guest/host message size)"
    )]
    ValueTooLarge {
        /// The guestinfo key, e.g. `guestinfo.userdata`.
        key: &'static str,
        /// The size of the smallest encoded form, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },

    /// An encoding name that cloud-init does not know.
    #[error("`{found}` is not a guestinfo encoding cloud-init knows")]
    UnknownEncoding {
        /// The encoding name found (shortened to at most 40 characters).
        found: String,
    },

    /// A guestinfo value that does not decode.
    #[error("the guestinfo value does not decode as {encoding}: {reason}")]
    Undecodable {
        /// The encoding that was applied.
        encoding: &'static str,
        /// What went wrong.
        reason: String,
    },
}

impl UserDataError {
    /// What would fix this error: data, for the caller to render (the
    /// message states only the fact).
    pub(crate) fn hint_text(&self) -> Option<String> {
        match self {
            UserDataError::EmptyKey => Some(
                "pass the contents of a `.pub` file, such as ~/.ssh/id_ed25519.pub".to_owned(),
            ),
            UserDataError::MultiLineKey { .. } => Some(
                "pass one key from a `.pub` file, not an authorized_keys file or a key in another format".to_owned(),
            ),
            UserDataError::PrivateKeyGiven => Some(
                "pass the `.pub` file next to it (or derive it with `ssh-keygen -y -f KEYFILE`), and never hand a private key to a VM's configuration".to_owned(),
            ),
            UserDataError::UnknownKeyAlgorithm { .. } => Some(
                "pass the line of a `.pub` file without authorized_keys options in front of it".to_owned(),
            ),
            UserDataError::MissingKeyData { algorithm, .. } => Some(format!(
                "the line must read `{algorithm} BASE64 [COMMENT]`"
            )),
            UserDataError::KeyAlgorithmMismatch { .. } => Some(
                "the line was probably edited by hand: copy it again from the `.pub` file".to_owned(),
            ),
            UserDataError::ControlCharacterInKey { .. } => Some(
                "remove it from the `.pub` file's comment".to_owned(),
            ),
            UserDataError::NotUtf8 { .. } => Some(
                "cloud-init reads this format as UTF-8 text: re-encode the file as UTF-8".to_owned(),
            ),
            UserDataError::UnknownFormat => Some(
                "if it is a cloud-config document, make `#cloud-config` its first line".to_owned(),
            ),
            UserDataError::InvalidYaml { .. } => Some(
                "check the indentation and quoting around that spot (e.g. with `cloud-init schema -c FILE`)".to_owned(),
            ),
            UserDataError::NotAMapping { .. } => Some(
                "write the settings as `key: value` lines starting at column 1".to_owned(),
            ),
            UserDataError::AuthorizedKeysNotAList { .. } => Some(
                "write each key as a `- KEY` item under it".to_owned(),
            ),
            UserDataError::AuthorizedKeyNotAString { .. } => Some(
                "quote the key".to_owned(),
            ),
            UserDataError::MultipartWithoutBoundary => Some(
                "produce the document with `cloud-init devel make-mime` or a mail library".to_owned(),
            ),
            UserDataError::BadGzip { .. } => Some(
                "compress it again with `gzip -c FILE`".to_owned(),
            ),
            UserDataError::ReservedMetadataKey { setter, .. } => Some(format!(
                "use Metadata::{setter} to choose it instead"
            )),
            UserDataError::EmptyMetadataValue { setter, .. } => Some(format!(
                "name the VM, or use Metadata::{setter}"
            )),
            UserDataError::ValueTooLarge { .. } => Some(
                "shrink the data, e.g. fetch large files at boot with `#include` or a script instead of embedding them".to_owned(),
            ),
            UserDataError::UnknownEncoding { .. } => Some(
                "use `base64`, `b64`, `gzip+base64` or `gz+b64`".to_owned(),
            ),
            _ => None,
        }
    }
}

/// Shortens an untrusted word for an error message: at most `max` characters.
pub(crate) fn shorten(word: &str, max: usize) -> String {
    let mut out: String = word.chars().take(max).collect();
    if word.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// The 1-based line and column of a byte offset in a byte string.
pub(crate) fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(newline) => offset - newline,
        None => offset + 1,
    };
    (line, column)
}

/// Requires UTF-8, reporting the location of the first invalid byte otherwise.
pub(crate) fn require_utf8<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<&'a str, UserDataError> {
    std::str::from_utf8(bytes).map_err(|err| {
        let (line, column) = line_column(bytes, err.valid_up_to());
        UserDataError::NotUtf8 { what, line, column }
    })
}

impl vmw_hints::Hints for UserDataError {
    fn hints(&self) -> Vec<String> {
        self.hint_text().into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = b"ab\ncd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 7), (3, 2));
    }

    #[test]
    fn shorten_marks_cut_words() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }

    #[test]
    fn utf8_error_names_location() {
        let err =
            require_utf8(b"#!/bin/sh\necho \xff\n", "the shell script user data").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("line 2, column 6"), "{text}");
        assert!(text.contains("shell script"), "{text}");
    }
}
