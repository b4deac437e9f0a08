//! Putting an SSH public key into user data of any format cloud-init accepts.

use std::io::Read as _;

use crate::cloud_config::{self, AUTHORIZED_KEYS, Edit};
use crate::error::{UserDataError, require_utf8};
use crate::format::{Format, detect_format};
use crate::key::PublicKey;
use crate::mime::{self, Part};

/// The `Merge-Type` given to the part that carries the key: lists are appended to (so the
/// user's `ssh_authorized_keys` entries stay, ours comes after them), mappings are merged
/// recursively without replacing what the user set, and strings are left as the user set
/// them. See cloud-init's documentation on merging user-data sections.
pub const KEY_PART_MERGE_TYPE: &str = "list(append)+dict(recurse_array,no_replace)+str()";

/// The file name given to the part that carries the key.
pub const KEY_PART_FILENAME: &str = "vmw-ssh-key.cfg";

/// How the key was put into the user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// There was no user data: a `#cloud-config` document holding only the key was made.
    Created,
    /// The key was added as a new `ssh_authorized_keys` list to the user's `#cloud-config`.
    ListAdded,
    /// The key was appended to the user's `ssh_authorized_keys` list.
    Appended,
    /// The user data already authorizes this key: it is returned unchanged.
    AlreadyPresent,
    /// The user data was wrapped, untouched, into a MIME multipart document next to a
    /// `text/cloud-config` part carrying the key.
    Wrapped,
    /// A `text/cloud-config` part carrying the key was added to the user's multipart document.
    PartAdded,
}

/// User data with the key in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    bytes: Vec<u8>,
    format: Option<Format>,
    outcome: Outcome,
}

impl Injected {
    /// The resulting user data.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The resulting user data, taken out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The format detected in the input (`None` when there was no user data).
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// How the key was put in.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

/// Returns user data that authorizes `key` for the default user, keeping everything the user
/// data already says.
///
/// - No user data (or only whitespace): a `#cloud-config` document holding only
///   `ssh_authorized_keys` with the key.
/// - `#cloud-config` (also behind a `## template: jinja` line): the key is added to the text of
///   `ssh_authorized_keys` (created when absent); the user's bytes stay as they are, and the
///   result parses to the input plus the key. When no small textual edit keeps the meaning
///   exactly, the document is kept whole and the key travels in a part of its own, as below.
/// - Every other format cloud-init accepts (scripts, boothooks, includes, part handlers,
///   archives, JSON patches, MIME, gzip): a MIME multipart holding the user's data untouched
///   and a `text/cloud-config` part with the key and the merge settings
///   [`KEY_PART_MERGE_TYPE`]; a multipart document gets that part appended.
///
/// Injecting a key that is already there returns the input unchanged.
///
/// # Errors
/// [`UserDataError::InvalidYaml`], [`UserDataError::NotAMapping`],
/// [`UserDataError::AuthorizedKeysNotAList`], [`UserDataError::AuthorizedKeyNotAString`]
/// for `#cloud-config` documents; [`UserDataError::NotUtf8`] for text formats that are not
/// UTF-8; [`UserDataError::UnknownFormat`] when cloud-init would not recognise the data;
/// [`UserDataError::MultipartWithoutBoundary`] and [`UserDataError::BadGzip`].
///
/// ```
/// use vmw_userdata::{PublicKey, inject_key};
/// let key = PublicKey::parse(
///     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBvRNLZQfZdf1PhLV9m5MVDkCZvPx8hRwBbq1bHr7kX me@laptop",
/// )?;
/// let user_data = b"#cloud-config\n# install tools\npackages: [htop]\n";
/// let out = inject_key(Some(user_data), &key)?;
/// let text = std::str::from_utf8(out.bytes()).unwrap();
/// assert!(text.starts_with("#cloud-config\n# install tools\npackages: [htop]\n"));
/// assert!(text.contains("ssh_authorized_keys:\n- \"ssh-ed25519 AAAAC3"));
/// # Ok::<(), vmw_userdata::UserDataError>(())
/// ```
pub fn inject_key(user_data: Option<&[u8]>, key: &PublicKey) -> Result<Injected, UserDataError> {
    let Some(data) = user_data.filter(|d| !d.iter().all(u8::is_ascii_whitespace)) else {
        return Ok(Injected {
            bytes: cloud_config::fresh_document(key).into_bytes(),
            format: None,
            outcome: Outcome::Created,
        });
    };
    let Some(format) = detect_format(data) else {
        // Say "not UTF-8" rather than "unknown" when that is the likelier cause.
        require_utf8(data, "the user data")?;
        return Err(UserDataError::UnknownFormat);
    };
    let done = |bytes: Vec<u8>, outcome| Injected {
        bytes,
        format: Some(format),
        outcome,
    };
    match format {
        Format::CloudConfig | Format::JinjaCloudConfig => {
            let what = if format == Format::CloudConfig {
                "the #cloud-config user data"
            } else {
                "the jinja-templated #cloud-config user data"
            };
            let text = require_utf8(data, what)?;
            let jinja_unsafe = format == Format::JinjaCloudConfig && has_jinja_syntax(key);
            let edit = if jinja_unsafe {
                // Keep the key's text out of the template.
                match cloud_config::add_key(text, key) {
                    Ok(Edit::AlreadyPresent) => Edit::AlreadyPresent,
                    _ => Edit::NeedsSeparatePart,
                }
            } else {
                match cloud_config::add_key(text, key) {
                    Ok(edit) => edit,
                    // A template need not be YAML, nor have its final shape, before it is
                    // rendered: only cloud-init can judge it, in the guest.
                    Err(_) if format == Format::JinjaCloudConfig => Edit::NeedsSeparatePart,
                    Err(err) => return Err(err),
                }
            };
            Ok(match edit {
                Edit::AlreadyPresent => done(data.to_vec(), Outcome::AlreadyPresent),
                Edit::Edited(out, true) => done(out.into_bytes(), Outcome::ListAdded),
                Edit::Edited(out, false) => done(out.into_bytes(), Outcome::Appended),
                Edit::NeedsSeparatePart => done(wrap(data, format, key), Outcome::Wrapped),
            })
        }
        Format::Multipart => {
            require_utf8(data, "the MIME multipart user data")?;
            Ok(match add_part(data, key)? {
                Some(out) => done(out, Outcome::PartAdded),
                None => done(data.to_vec(), Outcome::AlreadyPresent),
            })
        }
        Format::Gzip => {
            let inner = gunzip(data)?;
            match detect_format(&inner) {
                // cloud-init does not look into MIME found inside a gzip part, so open the
                // document here and work on what it holds.
                Some(Format::Multipart | Format::MimeSinglePart) => {
                    let mut result = inject_key(Some(&inner), key)?;
                    result.format = Some(Format::Gzip);
                    if result.outcome == Outcome::AlreadyPresent {
                        // Nothing added: the input as it came, still compressed.
                        result.bytes = data.to_vec();
                    }
                    Ok(result)
                }
                _ => Ok(done(wrap(data, format, key), Outcome::Wrapped)),
            }
        }
        _ => {
            require_utf8(data, text_name(format))?;
            Ok(done(wrap(data, format, key), Outcome::Wrapped))
        }
    }
}

fn text_name(format: Format) -> &'static str {
    match format {
        Format::ShellScript => "the shell script user data",
        Format::CloudBoothook => "the #cloud-boothook user data",
        Format::JinjaOther => "the jinja-templated user data",
        Format::Include | Format::IncludeOnce => "the #include user data",
        Format::PartHandler => "the #part-handler user data",
        Format::CloudConfigArchive => "the #cloud-config-archive user data",
        Format::CloudConfigJsonPatch => "the #cloud-config-jsonp user data",
        _ => "the MIME user data",
    }
}

/// Whether the key's text could be read as jinja syntax.
fn has_jinja_syntax(key: &PublicKey) -> bool {
    let text = key.to_string();
    ["{{", "{%", "{#"].iter().any(|s| text.contains(s))
}

/// The `text/cloud-config` document carried in a part of its own.
fn key_part_body(key: &PublicKey) -> String {
    cloud_config::fresh_document(key)
}

fn key_part(body: &str) -> Part<'_> {
    Part {
        headers: vec![
            (
                "Content-Type",
                "text/cloud-config; charset=\"us-ascii\"".to_owned(),
            ),
            ("MIME-Version", "1.0".to_owned()),
            ("Merge-Type", KEY_PART_MERGE_TYPE.to_owned()),
            (
                "Content-Disposition",
                format!("attachment; filename=\"{KEY_PART_FILENAME}\""),
            ),
        ],
        body: body.as_bytes(),
        raw_entity: false,
    }
}

/// A new multipart document: the user's data untouched, then the key's part.
fn wrap(data: &[u8], format: Format, key: &PublicKey) -> Vec<u8> {
    let body = key_part_body(key);
    let user_part = if format == Format::MimeSinglePart {
        Part {
            headers: Vec::new(),
            body: data,
            raw_entity: true,
        }
    } else {
        let content_type = if format.is_text() {
            format!("{}; charset=\"utf-8\"", format.content_type())
        } else {
            format.content_type().to_owned()
        };
        Part {
            headers: vec![
                ("Content-Type", content_type),
                ("MIME-Version", "1.0".to_owned()),
            ],
            body: data,
            raw_entity: false,
        }
    };
    mime::write_multipart(&[user_part, key_part(&body)])
}

/// Adds the key's part before the close delimiter of a multipart document; `None` when a
/// cloud-config part of the document already lists the key.
fn add_part(doc: &[u8], key: &PublicKey) -> Result<Option<Vec<u8>>, UserDataError> {
    let boundary = mime::boundary_of(doc)?;
    for part in mime::split_parts(doc, &boundary) {
        let is_cloud_config = match part.content_type().as_str() {
            "text/cloud-config" => true,
            "text/plain" | "text/x-not-multipart" => {
                detect_format(&part.body) == Some(Format::CloudConfig)
            }
            _ => false,
        };
        if is_cloud_config && part_lists_key(&part.body, key) {
            return Ok(None);
        }
    }
    let eol: &[u8] = if doc.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let body = key_part_body(key);
    let mut rendered = mime::render_part(&key_part(&body));
    if eol == b"\r\n" {
        rendered = String::from_utf8_lossy(&rendered)
            .replace('\n', "\r\n")
            .into_bytes();
    }
    let mut out = Vec::with_capacity(doc.len() + rendered.len() + 2 * boundary.len() + 16);
    match mime::close_delimiter_offset(doc, &boundary) {
        Some(at) => {
            out.extend_from_slice(&doc[..at]);
            out.extend_from_slice(format!("--{boundary}").as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(&rendered);
            out.extend_from_slice(eol);
            out.extend_from_slice(&doc[at..]);
        }
        None => {
            // No close delimiter (mail parsers tolerate that): add the part and one.
            out.extend_from_slice(doc);
            if !doc.ends_with(b"\n") {
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(format!("--{boundary}").as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(&rendered);
            out.extend_from_slice(eol);
            out.extend_from_slice(format!("--{boundary}--").as_bytes());
            out.extend_from_slice(eol);
        }
    }
    Ok(Some(out))
}

/// Whether a cloud-config part's `ssh_authorized_keys` holds the key.
fn part_lists_key(body: &[u8], key: &PublicKey) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let Ok(value) = cloud_config::parse(text) else {
        return false;
    };
    value
        .get(AUTHORIZED_KEYS)
        .and_then(|v| v.as_sequence())
        .is_some_and(|items| {
            items
                .iter()
                .any(|i| i.as_str().is_some_and(|s| key.matches_line(s)))
        })
}

/// Decompresses gzip data, with a limit that keeps a hostile input from exhausting memory.
fn gunzip(data: &[u8]) -> Result<Vec<u8>, UserDataError> {
    const LIMIT: u64 = 64 * 1024 * 1024;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(LIMIT + 1)
        .read_to_end(&mut out)
        .map_err(|err| UserDataError::BadGzip {
            reason: err.to_string(),
        })?;
    if out.len() as u64 > LIMIT {
        return Err(UserDataError::BadGzip {
            reason: format!("it expands to more than {LIMIT} bytes"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBvRNLZQfZdf1PhLV9m5MVDkCZvPx8hRwBbq1bHr7kX k@h";

    fn key() -> PublicKey {
        PublicKey::parse(KEY).unwrap()
    }

    #[test]
    fn jinja_header_kept_in_place() {
        let text =
            "## template: jinja\n#cloud-config\nruncmd:\n  - echo \"{{ v1.local_hostname }}\"\n";
        let out = inject_key(Some(text.as_bytes()), &key()).unwrap();
        let body = std::str::from_utf8(out.bytes()).unwrap();
        assert!(body.starts_with(text), "{body}");
        assert_eq!(out.format(), Some(Format::JinjaCloudConfig));
        assert_eq!(out.outcome(), Outcome::ListAdded);
        // Template text that is not YAML before rendering travels untouched in its own part.
        let text = "## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}-x\n";
        let out = inject_key(Some(text.as_bytes()), &key()).unwrap();
        assert_eq!(out.outcome(), Outcome::Wrapped);
    }

    #[test]
    fn jinja_blocks_get_a_separate_part() {
        let text = "## template: jinja\n#cloud-config\n{% if v1.distro == 'debian' %}\npackages: [htop]\n{% endif %}\n";
        let out = inject_key(Some(text.as_bytes()), &key()).unwrap();
        assert_eq!(out.outcome(), Outcome::Wrapped);
        let doc = out.bytes();
        let boundary = mime::boundary_of(doc).unwrap();
        let parts = mime::split_parts(doc, &boundary);
        assert_eq!(parts[0].body, text.as_bytes());
        assert_eq!(parts[0].content_type(), "text/jinja2");
    }

    #[test]
    fn key_with_jinja_syntax_stays_out_of_templates() {
        let key = PublicKey::parse(&format!("{KEY} {{{{ x }}}}")).unwrap();
        let text = "## template: jinja\n#cloud-config\npackages: [htop]\n";
        let out = inject_key(Some(text.as_bytes()), &key).unwrap();
        assert_eq!(out.outcome(), Outcome::Wrapped);
    }

    #[test]
    fn gzip_is_checked() {
        let err = inject_key(Some(b"\x1f\x8bnot gzip at all"), &key()).unwrap_err();
        assert!(matches!(err, UserDataError::BadGzip { .. }), "{err}");
    }
}
