//! Recognising which of cloud-init's user-data formats a document is.
//!
//! The rules follow cloud-init's own: gzip is recognised by its magic bytes and looked
//! through; a `MIME-Version:` header within the first 4096 bytes makes a MIME document;
//! otherwise the first line after leading whitespace, compared case-insensitively, names the
//! format, the longest matching header winning (`#cloud-config-archive` over `#cloud-config`).

use std::fmt;

/// The user-data formats cloud-init accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `#cloud-config`: a YAML mapping of settings.
    CloudConfig,
    /// `## template: jinja` followed by a `#cloud-config` document.
    JinjaCloudConfig,
    /// `## template: jinja` followed by something other than `#cloud-config` (a script).
    JinjaOther,
    /// `#!`: a script run once per instance.
    ShellScript,
    /// `#cloud-boothook`: a script run early on every boot.
    CloudBoothook,
    /// `#include`: a list of URLs to fetch.
    Include,
    /// `#include-once`: a list of URLs fetched on first boot only.
    IncludeOnce,
    /// `#part-handler`: Python code that handles further parts.
    PartHandler,
    /// `#cloud-config-archive`: a YAML list of parts.
    CloudConfigArchive,
    /// `#cloud-config-jsonp`: a JSON patch applied to the merged cloud-config.
    CloudConfigJsonPatch,
    /// A MIME document whose top-level type is `multipart/*`.
    Multipart,
    /// A MIME document holding a single part.
    MimeSinglePart,
    /// Gzip-compressed user data (of any of the other formats).
    Gzip,
}

impl Format {
    /// The MIME content type cloud-init gives this format, as used for a part that holds it.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::CloudConfig => "text/cloud-config",
            Self::JinjaCloudConfig | Self::JinjaOther => "text/jinja2",
            Self::ShellScript => "text/x-shellscript",
            Self::CloudBoothook => "text/cloud-boothook",
            Self::Include => "text/x-include-url",
            Self::IncludeOnce => "text/x-include-once-url",
            Self::PartHandler => "text/part-handler",
            Self::CloudConfigArchive => "text/cloud-config-archive",
            Self::CloudConfigJsonPatch => "text/cloud-config-jsonp",
            Self::Multipart => "multipart/mixed",
            Self::MimeSinglePart => "message/rfc822",
            Self::Gzip => "application/gzip",
        }
    }

    /// Whether cloud-init reads this format as UTF-8 text.
    pub fn is_text(self) -> bool {
        !matches!(self, Self::Gzip)
    }

    /// A short human name, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::CloudConfig => "#cloud-config",
            Self::JinjaCloudConfig => "jinja-templated #cloud-config",
            Self::JinjaOther => "jinja-templated script",
            Self::ShellScript => "shell script",
            Self::CloudBoothook => "#cloud-boothook",
            Self::Include => "#include",
            Self::IncludeOnce => "#include-once",
            Self::PartHandler => "#part-handler",
            Self::CloudConfigArchive => "#cloud-config-archive",
            Self::CloudConfigJsonPatch => "#cloud-config-jsonp",
            Self::Multipart => "MIME multipart",
            Self::MimeSinglePart => "MIME single-part",
            Self::Gzip => "gzip-compressed",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The gzip magic bytes.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Text headers, longest first so that the longest match wins.
const HEADERS: &[(&str, Format)] = &[
    ("#cloud-config-archive", Format::CloudConfigArchive),
    ("#cloud-config-jsonp", Format::CloudConfigJsonPatch),
    ("## template: jinja", Format::JinjaOther),
    ("#cloud-boothook", Format::CloudBoothook),
    ("#include-once", Format::IncludeOnce),
    ("#part-handler", Format::PartHandler),
    ("#cloud-config", Format::CloudConfig),
    ("#include", Format::Include),
    ("#!", Format::ShellScript),
];

/// Detects the format of raw user data, or `None` when cloud-init would not recognise it.
///
/// Detection alone never fails: bytes that are not UTF-8 and carry no gzip magic are simply
/// unrecognised (cloud-init compares headers on text).
///
/// ```
/// use vmw_userdata::{Format, detect_format};
/// assert_eq!(detect_format(b"\n#cloud-config\npackages: [htop]\n"), Some(Format::CloudConfig));
/// assert_eq!(detect_format(b"#!/bin/sh\necho hi\n"), Some(Format::ShellScript));
/// assert_eq!(detect_format(b"packages: [htop]\n"), None);
/// ```
pub fn detect_format(user_data: &[u8]) -> Option<Format> {
    if user_data.starts_with(&GZIP_MAGIC) {
        return Some(Format::Gzip);
    }
    if let Some(format) = mime_format(user_data) {
        return Some(format);
    }
    let text = String::from_utf8_lossy(user_data);
    let start = text.trim_start();
    let format = header_format(start)?;
    if format == Format::JinjaOther {
        let body = start.split_once('\n').map_or("", |(_, rest)| rest);
        if header_format(body.trim_start()) == Some(Format::CloudConfig) {
            return Some(Format::JinjaCloudConfig);
        }
    }
    Some(format)
}

/// The format named by the start of `text` (already stripped of leading whitespace).
fn header_format(text: &str) -> Option<Format> {
    let head: String = text.chars().take(32).flat_map(char::to_lowercase).collect();
    HEADERS
        .iter()
        .find(|(header, _)| head.starts_with(header))
        .map(|&(_, format)| format)
}

/// Whether the document is MIME (cloud-init's test: `mime-version:` in the first 4096 bytes),
/// and if so whether it is multipart.
fn mime_format(user_data: &[u8]) -> Option<Format> {
    let head = &user_data[..user_data.len().min(4096)];
    let lower = head.to_ascii_lowercase();
    if !contains(&lower, b"mime-version:") {
        return None;
    }
    let headers = crate::mime::top_headers(user_data);
    let multipart = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
    });
    Some(if multipart {
        Format::Multipart
    } else {
        Format::MimeSinglePart
    })
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_header() {
        let cases: &[(&[u8], Format)] = &[
            (b"#cloud-config\na: 1\n", Format::CloudConfig),
            (b"\n\n  #cloud-config\n", Format::CloudConfig),
            (b"#Cloud-Config\n", Format::CloudConfig),
            (
                b"#cloud-config-archive\n- type: x\n",
                Format::CloudConfigArchive,
            ),
            (b"#cloud-config-jsonp\n[]\n", Format::CloudConfigJsonPatch),
            (b"#!/bin/bash\n", Format::ShellScript),
            (b"#cloud-boothook\n#!/bin/sh\n", Format::CloudBoothook),
            (b"#include\nhttp://x\n", Format::Include),
            (b"#include-once\nhttp://x\n", Format::IncludeOnce),
            (
                b"#part-handler\ndef list_types(): pass\n",
                Format::PartHandler,
            ),
            (
                b"## template: jinja\n#cloud-config\n",
                Format::JinjaCloudConfig,
            ),
            (
                b"## template: jinja\n\n#cloud-config\n",
                Format::JinjaCloudConfig,
            ),
            (b"## template: jinja\n#!/bin/sh\n", Format::JinjaOther),
            (b"\x1f\x8b\x08\x00", Format::Gzip),
        ];
        for (input, expected) in cases {
            assert_eq!(
                detect_format(input),
                Some(*expected),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn recognises_mime() {
        let multi =
            b"Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\n\n--b--\n";
        assert_eq!(detect_format(multi), Some(Format::Multipart));
        let single = b"MIME-Version: 1.0\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n";
        assert_eq!(detect_format(single), Some(Format::MimeSinglePart));
    }

    #[test]
    fn unrecognised_inputs() {
        assert_eq!(detect_format(b""), None);
        assert_eq!(detect_format(b"packages: [a]\n"), None);
        assert_eq!(detect_format(b"# cloud-config\n"), None);
        assert_eq!(detect_format(b"\xff\xfe"), None);
    }
}
