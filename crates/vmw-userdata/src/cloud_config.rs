//! Adding a key to `#cloud-config` text without re-serialising it.
//!
//! The document is parsed once to learn its shape and to compute the expected result (the
//! parsed input with the key appended to `ssh_authorized_keys`). Then a few textual edits are
//! tried, each a small insertion that leaves every byte of the user's text in place; an edit
//! is kept only when the edited text parses to exactly the expected value. When no edit
//! passes (flow-style top level, aliases, block scalars at the very end without a newline,
//! template syntax that is not YAML, ...), the caller falls back to a MIME multipart that
//! carries the key in a part of its own.

use serde_yaml_ng::{Mapping, Value};

use crate::error::UserDataError;
use crate::key::PublicKey;

/// The cloud-config key that lists authorized SSH keys for the default user.
pub const AUTHORIZED_KEYS: &str = "ssh_authorized_keys";

/// How many `]` positions are tried for a flow-style list before giving up.
const MAX_FLOW_CANDIDATES: usize = 8;

/// The outcome of trying to edit the text.
#[derive(Debug)]
pub(crate) enum Edit {
    /// The key is already listed: the text is fine as it is.
    AlreadyPresent,
    /// The edited text, and whether the list was created (`true`) or extended.
    Edited(String, bool),
    /// The document is valid, but no textual edit kept its meaning: use a separate part.
    NeedsSeparatePart,
}

/// Parses cloud-config YAML, mapping parse errors onto [`UserDataError::InvalidYaml`].
pub(crate) fn parse(text: &str) -> Result<Value, UserDataError> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map_or((0, 0), |loc| (loc.line(), loc.column()));
        UserDataError::InvalidYaml {
            line,
            column,
            problem: strip_location(&err.to_string()),
        }
    })
}

/// Removes the parser's own " at line X column Y" suffix (the location is reported apart).
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(pos) => message[..pos].to_owned(),
        None => message.to_owned(),
    }
}

/// A word for the kind of a YAML value, as used in messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Checks the document's shape and, when possible, adds `key` to its text.
pub(crate) fn add_key(text: &str, key: &PublicKey) -> Result<Edit, UserDataError> {
    let parsed = parse(text)?;
    let mut mapping = match parsed {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        other => {
            return Err(UserDataError::NotAMapping {
                found: kind(&other),
            });
        }
    };
    let key_line = find_top_level_key(text);
    let existing = mapping.get(AUTHORIZED_KEYS).cloned();
    let quoted = key.yaml_quoted();
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };

    let (candidates, created) = match existing {
        None => {
            mapping.insert(
                Value::from(AUTHORIZED_KEYS),
                Value::Sequence(vec![Value::from(key.to_string())]),
            );
            let mut candidates = append_new_key(text, &quoted, eol);
            candidates.extend(append_flow_entry(text, &quoted, mapping.len() == 1));
            (candidates, true)
        }
        Some(Value::Null) => {
            mapping.insert(
                Value::from(AUTHORIZED_KEYS),
                Value::Sequence(vec![Value::from(key.to_string())]),
            );
            let found = key_line.map(|l| items_after_null(text, l, &quoted, eol));
            (found.into_iter().flatten().collect(), false)
        }
        Some(Value::Sequence(items)) => {
            for (index, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if key.matches_line(s) => return Ok(Edit::AlreadyPresent),
                    Value::String(_) => {}
                    other => {
                        return Err(UserDataError::AuthorizedKeyNotAString {
                            index: index + 1,
                            found: kind(other),
                        });
                    }
                }
            }
            let empty = items.is_empty();
            let mut items = items;
            items.push(Value::from(key.to_string()));
            mapping.insert(Value::from(AUTHORIZED_KEYS), Value::Sequence(items));
            let mut candidates = Vec::new();
            if let Some(line) = key_line {
                candidates.extend(append_block_item(text, line, &quoted, eol));
                candidates.extend(append_flow_item(text, line, &quoted, empty));
            }
            (candidates, false)
        }
        Some(other) => {
            return Err(UserDataError::AuthorizedKeysNotAList {
                found: kind(&other),
                line: key_line.map_or(0, |l| l.index + 1),
            });
        }
    };

    let expected = Value::Mapping(mapping);
    for candidate in candidates {
        if serde_yaml_ng::from_str::<Value>(&candidate).is_ok_and(|v| v == expected) {
            return Ok(Edit::Edited(candidate, created));
        }
    }
    Ok(Edit::NeedsSeparatePart)
}

/// A `#cloud-config` document that holds nothing but `key`.
pub(crate) fn fresh_document(key: &PublicKey) -> String {
    format!(
        "#cloud-config\n{AUTHORIZED_KEYS}:\n- {}\n",
        key.yaml_quoted()
    )
}

/// Where the top-level `ssh_authorized_keys:` line is.
#[derive(Debug, Clone, Copy)]
struct KeyLine {
    /// 0-based line number.
    index: usize,
    /// Byte offset just after the line's end (after its line break, if any).
    end: usize,
    /// Byte offset just after the `:`.
    after_colon: usize,
}

/// Lines of `text` with their start and end offsets (end includes the line break).
fn lines_with_offsets(text: &str) -> impl Iterator<Item = (usize, usize, &str)> + '_ {
    text.split_inclusive('\n').scan(0, |offset, line| {
        let start = *offset;
        *offset += line.len();
        Some((start, *offset, line))
    })
}

fn find_top_level_key(text: &str) -> Option<KeyLine> {
    let names = [
        AUTHORIZED_KEYS.to_owned(),
        format!("\"{AUTHORIZED_KEYS}\""),
        format!("'{AUTHORIZED_KEYS}'"),
    ];
    lines_with_offsets(text)
        .enumerate()
        .find_map(|(index, (start, end, line))| {
            let name = names.iter().find(|n| line.starts_with(n.as_str()))?;
            let rest = &line[name.len()..];
            let colon = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            rest[colon..].starts_with(':').then_some(KeyLine {
                index,
                end,
                after_colon: start + name.len() + colon + 1,
            })
        })
}

/// Candidates that add a new top-level `ssh_authorized_keys` entry: at the end of the
/// document, or right after its leading comment lines.
fn append_new_key(text: &str, quoted: &str, eol: &str) -> Vec<String> {
    let block = format!("{AUTHORIZED_KEYS}:{eol}- {quoted}{eol}");
    let mut candidates = Vec::new();
    let mut at_end = text.to_owned();
    if !at_end.is_empty() && !at_end.ends_with('\n') {
        at_end.push_str(eol);
    }
    at_end.push_str(&block);
    candidates.push(at_end);

    let header_end = lines_with_offsets(text)
        .take_while(|(_, _, line)| {
            let t = line.trim();
            t.is_empty() || t.starts_with('#')
        })
        .last()
        .map_or(0, |(_, end, _)| end);
    let mut after_header = text[..header_end].to_owned();
    if !after_header.is_empty() && !after_header.ends_with('\n') {
        after_header.push_str(eol);
    }
    after_header.push_str(&block);
    after_header.push_str(&text[header_end..]);
    candidates.push(after_header);
    candidates
}

/// Candidates that add the entry to a top-level flow mapping (`{...}`), before one of its
/// last `}`.
fn append_flow_entry(text: &str, quoted: &str, empty: bool) -> Vec<String> {
    let entry = if empty {
        format!("{AUTHORIZED_KEYS}: [{quoted}]")
    } else {
        format!(", {AUTHORIZED_KEYS}: [{quoted}]")
    };
    text.rmatch_indices('}')
        .take(MAX_FLOW_CANDIDATES)
        .map(|(at, _)| {
            let mut candidate = String::with_capacity(text.len() + entry.len());
            candidate.push_str(&text[..at]);
            candidate.push_str(&entry);
            candidate.push_str(&text[at..]);
            candidate
        })
        .collect()
}

/// Candidates for `ssh_authorized_keys:` with an empty value: an item on the next line.
fn items_after_null(text: &str, line: KeyLine, quoted: &str, eol: &str) -> Vec<String> {
    let mut candidate = text[..line.end].to_owned();
    if !candidate.ends_with('\n') {
        candidate.push_str(eol);
    }
    candidate.push_str(&format!("- {quoted}{eol}"));
    candidate.push_str(&text[line.end..]);
    vec![candidate]
}

/// The candidate that adds an item after the last item of a block sequence.
fn append_block_item(text: &str, line: KeyLine, quoted: &str, eol: &str) -> Option<String> {
    let mut last_content_end = None;
    let mut indent: Option<String> = None;
    for (_, end, raw) in lines_with_offsets(&text[line.end..]) {
        let content = raw.trim_end_matches(['\n', '\r']);
        let trimmed = content.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = content.starts_with([' ', '\t']);
        let dash_item = content.starts_with('-')
            && (content.len() == 1 || content[1..].starts_with([' ', '\t']));
        if !indented && !dash_item {
            break;
        }
        if indent.is_none() {
            if !trimmed.starts_with('-') {
                return None;
            }
            indent = Some(content[..content.len() - trimmed.len()].to_owned());
        }
        last_content_end = Some(line.end + end);
    }
    let insert_at = last_content_end?;
    let indent = indent?;
    let mut candidate = text[..insert_at].to_owned();
    if !candidate.ends_with('\n') {
        candidate.push_str(eol);
    }
    candidate.push_str(&format!("{indent}- {quoted}{eol}"));
    candidate.push_str(&text[insert_at..]);
    Some(candidate)
}

/// Candidates that add an item before one of the `]` following the `[` of a flow sequence.
fn append_flow_item(text: &str, line: KeyLine, quoted: &str, empty: bool) -> Vec<String> {
    let after = &text[line.after_colon..];
    let trimmed = after.trim_start_matches([' ', '\t', '\r', '\n']);
    if !trimmed.starts_with('[') {
        return Vec::new();
    }
    let open = line.after_colon + (after.len() - trimmed.len());
    let insertion = if empty {
        quoted.to_owned()
    } else {
        format!(", {quoted}")
    };
    text[open..]
        .match_indices(']')
        .take(MAX_FLOW_CANDIDATES)
        .map(|(pos, _)| {
            let at = open + pos;
            // Keep a trailing comma's meaning: insert after it rather than doubling it.
            let before = text[..at].trim_end();
            let (at, insertion) = if !empty && before.ends_with(',') {
                (before.len(), format!(" {quoted}"))
            } else {
                (at, insertion.clone())
            };
            let mut candidate = String::with_capacity(text.len() + insertion.len());
            candidate.push_str(&text[..at]);
            candidate.push_str(&insertion);
            candidate.push_str(&text[at..]);
            candidate
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PublicKey {
        PublicKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBvRNLZQfZdf1PhLV9m5MVDkCZvPx8hRwBbq1bHr7kX k@h",
        )
        .unwrap()
    }

    fn edited(text: &str) -> String {
        match add_key(text, &key()).unwrap() {
            Edit::Edited(out, _) => out,
            other => panic!("expected an edit, got {other:?}"),
        }
    }

    #[test]
    fn appends_to_block_list_keeping_indent() {
        let text = "#cloud-config\nssh_authorized_keys:\n  - ssh-rsa AAAA a\n  # note\n# top comment\nruncmd: [ls]\n";
        let out = edited(text);
        assert_eq!(
            out,
            format!(
                "#cloud-config\nssh_authorized_keys:\n  - ssh-rsa AAAA a\n  - {}\n  # note\n# top comment\nruncmd: [ls]\n",
                key().yaml_quoted()
            )
        );
    }

    #[test]
    fn appends_to_zero_indented_list_at_end_without_newline() {
        let text = "#cloud-config\nssh_authorized_keys:\n- ssh-rsa AAAA a";
        let out = edited(text);
        assert!(out.starts_with(text), "{out}");
        assert!(
            out.ends_with(&format!("\n- {}\n", key().yaml_quoted())),
            "{out}"
        );
    }

    #[test]
    fn appends_to_flow_lists() {
        let out = edited("#cloud-config\nssh_authorized_keys: [ssh-rsa AAAA a] # keys\n");
        assert!(
            out.contains(&format!("[ssh-rsa AAAA a, {}] # keys", key().yaml_quoted())),
            "{out}"
        );
        let out = edited("#cloud-config\nssh_authorized_keys: []\n");
        assert!(out.contains(&format!("[{}]", key().yaml_quoted())), "{out}");
        let out = edited("#cloud-config\nssh_authorized_keys: [\n  a,\n  b,\n]\n");
        let value = parse(&out).unwrap();
        assert_eq!(value[AUTHORIZED_KEYS].as_sequence().unwrap().len(), 3);
    }

    #[test]
    fn fills_empty_value() {
        let out = edited("#cloud-config\nssh_authorized_keys:\npackages: [a]\n");
        let value = parse(&out).unwrap();
        assert_eq!(
            value[AUTHORIZED_KEYS][0].as_str(),
            Some(key().to_string().as_str())
        );
        assert_eq!(value["packages"][0].as_str(), Some("a"));
    }

    #[test]
    fn adds_missing_list_at_end() {
        let text = "#cloud-config\n# comment kept\npackages:\n  - htop\n";
        let out = edited(text);
        assert!(out.starts_with(text));
        assert!(matches!(
            add_key(text, &key()).unwrap(),
            Edit::Edited(_, true)
        ));
    }

    #[test]
    fn adds_list_after_header_when_end_is_unusable() {
        // A block scalar at the very end without a final line break: adding one would
        // change its value.
        let text = "#cloud-config\nwrite_files:\n- path: /x\n  content: |\n    a";
        let out = edited(text);
        assert!(
            out.starts_with(&format!("#cloud-config\n{AUTHORIZED_KEYS}:\n")),
            "{out}"
        );
        assert!(out.ends_with("write_files:\n- path: /x\n  content: |\n    a"));
    }

    #[test]
    fn already_present_key_is_left_alone() {
        let text = format!(
            "#cloud-config\nssh_authorized_keys:\n  - {} other comment\n",
            {
                let k = key();
                format!("{} {}", k.algorithm(), k.data())
            }
        );
        assert!(matches!(
            add_key(&text, &key()).unwrap(),
            Edit::AlreadyPresent
        ));
    }

    #[test]
    fn crlf_documents_stay_crlf() {
        let out = edited("#cloud-config\r\npackages:\r\n  - htop\r\n");
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    }

    #[test]
    fn flow_mappings_get_an_entry() {
        let out = edited("#cloud-config\n{packages: [htop]}  # end\n");
        let expected = format!(
            "#cloud-config\n{{packages: [htop], {AUTHORIZED_KEYS}: [{}]}}  # end\n",
            key().yaml_quoted()
        );
        assert_eq!(out, expected);
        let out = edited("#cloud-config\n{}\n");
        assert_eq!(
            out,
            format!(
                "#cloud-config\n{{{AUTHORIZED_KEYS}: [{}]}}\n",
                key().yaml_quoted()
            )
        );
    }

    #[test]
    fn alias_list_needs_separate_part() {
        let text = "#cloud-config\nkeys: &k\n  - ssh-rsa AAAA a\nssh_authorized_keys: *k\n";
        let result = add_key(text, &key()).unwrap();
        assert!(matches!(result, Edit::NeedsSeparatePart), "{result:?}");
    }

    #[test]
    fn errors_name_the_problem_and_place() {
        let err = add_key("#cloud-config\npackages:\n  - a\n - b\n", &key()).unwrap_err();
        match &err {
            UserDataError::InvalidYaml { line, column, .. } => {
                assert_eq!((*line, *column), (4, 2), "{err}");
            }
            other => panic!("unexpected {other}"),
        }
        let err = add_key("#cloud-config\n- a\n", &key()).unwrap_err();
        assert!(
            matches!(err, UserDataError::NotAMapping { found: "a list" }),
            "{err}"
        );
        let err = add_key(
            "#cloud-config\na: 1\nssh_authorized_keys: ssh-rsa AAAA\n",
            &key(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                UserDataError::AuthorizedKeysNotAList {
                    found: "a string",
                    line: 3
                }
            ),
            "{err}"
        );
        let err = add_key("#cloud-config\nssh_authorized_keys:\n  - [a]\n", &key()).unwrap_err();
        assert!(
            matches!(err, UserDataError::AuthorizedKeyNotAString { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn yaml_error_does_not_quote_secret_values() {
        let err = add_key("#cloud-config\npassword: \"hunter2\n", &key()).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
