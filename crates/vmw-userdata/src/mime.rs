//! A small, deterministic MIME multipart writer, and just enough reading of MIME to add a
//! part to an existing multipart document.
//!
//! The output carries no Date or Message-ID header and its boundary is derived from the
//! content, so the same input always yields the same bytes. Parts that are plain ASCII are
//! written as they are (7bit); any other part is base64-encoded, because cloud-init reads
//! 8-bit text parts through Python's mail parser, which does not return non-ASCII bytes
//! unchanged.

use base64::Engine as _;

use crate::error::UserDataError;

/// One part of a multipart document.
#[derive(Debug, Clone)]
pub(crate) struct Part<'a> {
    /// The part's headers, written before its body, in order.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The part's body, written untouched when ASCII, base64-encoded otherwise.
    pub(crate) body: &'a [u8],
    /// When true, `body` is a complete MIME entity (headers, blank line, body) written as is,
    /// and `headers` are ignored.
    pub(crate) raw_entity: bool,
}

/// Writes a `multipart/mixed` document holding `parts`.
pub(crate) fn write_multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let rendered: Vec<Vec<u8>> = parts.iter().map(render_part).collect();
    let boundary = pick_boundary(&rendered);
    let mut out = Vec::new();
    out.extend_from_slice(
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n")
            .as_bytes(),
    );
    for part in &rendered {
        out.extend_from_slice(format!("--{boundary}\n").as_bytes());
        out.extend_from_slice(part);
        // This line break belongs to the delimiter that follows, not to the part.
        out.push(b'\n');
    }
    out.extend_from_slice(format!("--{boundary}--\n").as_bytes());
    out
}

/// Renders one part: headers, a blank line and the body (without a final delimiter break).
pub(crate) fn render_part(part: &Part<'_>) -> Vec<u8> {
    if part.raw_entity {
        return part.body.to_vec();
    }
    let mut out = Vec::new();
    for (name, value) in &part.headers {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    if part.body.is_ascii() {
        out.extend_from_slice(b"Content-Transfer-Encoding: 7bit\n\n");
        out.extend_from_slice(part.body);
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\n\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(part.body);
        let lines: Vec<&str> = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        out.extend_from_slice(lines.join("\n").as_bytes());
    }
    out
}

/// A boundary derived from the parts' content that occurs in none of them.
fn pick_boundary(parts: &[Vec<u8>]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    loop {
        let boundary = format!("==vmw-{hash:016x}==");
        if !parts
            .iter()
            .any(|p| crate::format::contains(p, boundary.as_bytes()))
        {
            return boundary;
        }
        hash = hash.wrapping_add(1);
    }
}

/// The top-level headers of a MIME document (unfolded), up to the first blank line.
pub(crate) fn top_headers(doc: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(doc);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    headers
}

/// The value of a `name=value` parameter of a header value (quotes removed).
pub(crate) fn header_param(value: &str, param: &str) -> Option<String> {
    for piece in value.split(';').skip(1) {
        let Some((name, val)) = piece.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case(param) {
            let val = val.trim();
            let val = val
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(val);
            return Some(val.to_owned());
        }
    }
    None
}

/// The boundary of a multipart document.
pub(crate) fn boundary_of(doc: &[u8]) -> Result<String, UserDataError> {
    top_headers(doc)
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, value)| header_param(value, "boundary"))
        .filter(|b| !b.is_empty())
        .ok_or(UserDataError::MultipartWithoutBoundary)
}

/// A part of an existing multipart document, as found by [`split_parts`].
#[derive(Debug)]
pub(crate) struct FoundPart {
    /// The part's headers (unfolded).
    pub(crate) headers: Vec<(String, String)>,
    /// The part's body with its transfer encoding undone when it is base64.
    pub(crate) body: Vec<u8>,
}

impl FoundPart {
    /// The value of a header, compared case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The bare content type (lowercase, parameters dropped), `text/plain` when absent.
    pub(crate) fn content_type(&self) -> String {
        self.header("content-type")
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|| "text/plain".to_owned())
    }
}

/// Where the close delimiter of a multipart document starts, if it has one: the offset of the
/// first line `--BOUNDARY--`. It ends the document; what follows is the epilogue, which MIME
/// readers (and [`split_parts`]) ignore, so a part added after it would be lost.
pub(crate) fn close_delimiter_offset(doc: &[u8], boundary: &str) -> Option<usize> {
    let close = format!("--{boundary}--");
    line_starts(doc).find(|&start| doc[start..].starts_with(close.as_bytes()))
}

/// Splits a multipart document into its direct parts (nested multiparts are not opened).
pub(crate) fn split_parts(doc: &[u8], boundary: &str) -> Vec<FoundPart> {
    let delimiter = format!("--{boundary}");
    let mut bounds: Vec<(usize, usize, bool)> = Vec::new();
    for start in line_starts(doc) {
        let rest = &doc[start..];
        if rest.starts_with(delimiter.as_bytes()) {
            let after = &rest[delimiter.len()..];
            let end_of_line = after
                .iter()
                .position(|&b| b == b'\n')
                .map_or(doc.len(), |p| start + delimiter.len() + p + 1);
            bounds.push((start, end_of_line, after.starts_with(b"--")));
        }
    }
    let mut parts = Vec::new();
    for window in bounds.windows(2) {
        let (_, body_start, closing) = window[0];
        let (next_start, _, _) = window[1];
        if closing {
            break;
        }
        let mut entity = &doc[body_start..next_start];
        // The line break before a delimiter belongs to the delimiter.
        entity = entity.strip_suffix(b"\n").unwrap_or(entity);
        entity = entity.strip_suffix(b"\r").unwrap_or(entity);
        parts.push(parse_entity(entity));
    }
    parts
}

fn parse_entity(entity: &[u8]) -> FoundPart {
    let headers = top_headers(entity);
    let body_start = find_blank_line(entity).unwrap_or(entity.len());
    let raw = &entity[body_start..];
    let base64_encoded = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("content-transfer-encoding") && v.eq_ignore_ascii_case("base64")
    });
    let body = if base64_encoded {
        let compact: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .unwrap_or_default()
    } else {
        raw.to_vec()
    };
    FoundPart { headers, body }
}

/// The offset just after the first empty line (the end of a header block).
fn find_blank_line(entity: &[u8]) -> Option<usize> {
    if entity.starts_with(b"\n") {
        return Some(1);
    }
    if entity.starts_with(b"\r\n") {
        return Some(2);
    }
    let lf = entity.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = entity
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Offsets at which lines start.
fn line_starts(doc: &[u8]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        doc.iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && i + 1 < doc.len())
            .map(|(i, _)| i + 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_part(body: &[u8]) -> Part<'_> {
        Part {
            headers: vec![("Content-Type", "text/x-shellscript".to_owned())],
            body,
            raw_entity: false,
        }
    }

    #[test]
    fn writes_deterministic_multipart_and_reads_it_back() {
        let script = b"#!/bin/sh\necho hi\n";
        let doc = write_multipart(&[
            text_part(script),
            text_part("#!/bin/sh\necho é\n".as_bytes()),
        ]);
        assert_eq!(
            doc,
            write_multipart(&[
                text_part(script),
                text_part("#!/bin/sh\necho é\n".as_bytes())
            ])
        );
        let boundary = boundary_of(&doc).unwrap();
        assert!(boundary.starts_with("==vmw-"));
        let parts = split_parts(&doc, &boundary);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].body, script);
        assert_eq!(parts[0].content_type(), "text/x-shellscript");
        assert_eq!(parts[1].body, "#!/bin/sh\necho é\n".as_bytes());
        assert_eq!(parts[1].header("content-transfer-encoding"), Some("base64"));
        let text = String::from_utf8(doc.clone()).unwrap();
        assert!(!text.to_ascii_lowercase().contains("date:"));
        assert!(!text.to_ascii_lowercase().contains("message-id"));
        assert!(close_delimiter_offset(&doc, &boundary).is_some());
    }

    #[test]
    fn boundary_avoids_content() {
        let first = write_multipart(&[text_part(b"x")]);
        let boundary = boundary_of(&first).unwrap();
        // A part that holds the boundary the first document used gets another boundary.
        let tricky = format!("--{boundary}\n");
        let doc = write_multipart(&[text_part(b"x"), text_part(tricky.as_bytes())]);
        let chosen = boundary_of(&doc).unwrap();
        assert!(!tricky.contains(&chosen));
        assert_eq!(split_parts(&doc, &chosen).len(), 2);
    }

    #[test]
    fn reads_folded_headers_and_params() {
        let doc = b"Content-Type: multipart/mixed;\n boundary=\"abc\"\nMIME-Version: 1.0\n\n--abc\n\nbody\n--abc--\n";
        assert_eq!(boundary_of(doc).unwrap(), "abc");
        let parts = split_parts(doc, "abc");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].body, b"body");
        assert_eq!(parts[0].content_type(), "text/plain");
        let none = b"Content-Type: multipart/mixed\nMIME-Version: 1.0\n\n";
        assert!(matches!(
            boundary_of(none),
            Err(UserDataError::MultipartWithoutBoundary)
        ));
    }
}
