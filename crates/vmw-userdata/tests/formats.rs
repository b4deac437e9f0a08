//! Key injection into every user-data format, with real-world documents, and its errors.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write as _;

use vmw_userdata::{
    Format, Hints, KEY_PART_MERGE_TYPE, Outcome, PublicKey, UserDataError, detect_format,
    inject_key,
};

use common::{
    ECDSA, ED25519, JINJA, MULTIPART, NO_KEYS, RSA, SCRIPT, WEB_SERVER, key, plus_key, yaml,
};

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 output")
}

/// The parts of a multipart output, split the simple way (tests only).
fn parts(doc: &str) -> Vec<String> {
    let boundary = doc
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a boundary");
    let delimiter = format!("\n--{boundary}");
    let body_start = doc
        .find(&format!("--{boundary}\n"))
        .expect("first delimiter");
    let body = &doc[body_start + boundary.len() + 3..];
    let mut out: Vec<String> = body.split(&delimiter).map(str::to_owned).collect();
    assert_eq!(
        out.pop().as_deref(),
        Some("--\n"),
        "the close delimiter ends the document"
    );
    out.iter()
        .map(|p| p.trim_start_matches('\n').to_owned())
        .collect()
}

#[test]
fn real_keys_parse() {
    for line in [ED25519, RSA, ECDSA] {
        let key = PublicKey::parse(line).expect("a real key parses");
        assert_eq!(key.to_string(), line.trim_end());
    }
    assert_eq!(PublicKey::parse(ECDSA).expect("parses").comment(), None);
}

#[test]
fn no_user_data_gives_a_key_only_cloud_config() {
    for input in [None, Some(&b""[..]), Some(&b" \n\n"[..])] {
        let out = inject_key(input, &key()).expect("injects");
        assert_eq!(out.outcome(), Outcome::Created);
        assert_eq!(out.format(), None);
        let doc = text(out.bytes());
        assert!(doc.starts_with("#cloud-config\n"));
        assert_eq!(yaml(doc), plus_key(&serde_yaml_ng::Value::Null, &key()));
    }
}

#[test]
fn web_server_config_survives_byte_for_byte() {
    let out = inject_key(Some(WEB_SERVER.as_bytes()), &key()).expect("injects");
    assert_eq!(out.outcome(), Outcome::Appended);
    assert_eq!(out.format(), Some(Format::CloudConfig));
    let doc = text(out.bytes());
    // Only one line was added, right after the last existing key (before the blank line).
    let added = format!("  - \"{}\"\n", key());
    assert_eq!(doc.len(), WEB_SERVER.len() + added.len());
    assert_eq!(doc.replacen(&added, "", 1), WEB_SERVER);
    let anchor = "Backup backup\"\n";
    assert!(doc.contains(&format!("{anchor}{added}")), "{doc}");
    assert_eq!(yaml(doc), plus_key(&yaml(WEB_SERVER), &key()));
    // The per-user key list is not the one extended.
    assert_eq!(
        yaml(doc)["users"][1]["ssh_authorized_keys"]
            .as_sequence()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn missing_list_is_created_keeping_comments_and_order() {
    let out = inject_key(Some(NO_KEYS.as_bytes()), &key()).expect("injects");
    assert_eq!(out.outcome(), Outcome::ListAdded);
    let doc = text(out.bytes());
    assert!(doc.starts_with(NO_KEYS));
    let parsed = yaml(doc);
    let keys: Vec<&str> = parsed
        .as_mapping()
        .expect("mapping")
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        ["timezone", "packages", "bootcmd", "ssh_authorized_keys"]
    );
    assert_eq!(parsed, plus_key(&yaml(NO_KEYS), &key()));
}

#[test]
fn leading_blank_lines_and_header_case_are_tolerated() {
    let input = "\n\n#Cloud-Config\npackages: [htop]\n";
    let out = inject_key(Some(input.as_bytes()), &key()).expect("injects");
    assert!(text(out.bytes()).starts_with(input));
    assert_eq!(yaml(text(out.bytes())), plus_key(&yaml(input), &key()));
}

#[test]
fn jinja_cloud_config_keeps_its_header_first() {
    let out = inject_key(Some(JINJA.as_bytes()), &key()).expect("injects");
    assert_eq!(out.format(), Some(Format::JinjaCloudConfig));
    assert_eq!(out.outcome(), Outcome::Appended);
    let doc = text(out.bytes());
    assert!(doc.starts_with("## template: jinja\n#cloud-config\n"));
    assert_eq!(yaml(doc), plus_key(&yaml(JINJA), &key()));
}

#[test]
fn injection_is_idempotent_for_every_format() {
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(SCRIPT.as_bytes()).expect("compress");
        e.finish().expect("compress")
    };
    let inputs: Vec<Vec<u8>> = vec![
        WEB_SERVER.into(),
        NO_KEYS.into(),
        JINJA.into(),
        SCRIPT.into(),
        MULTIPART.into(),
        gz,
        b"#cloud-boothook\n#!/bin/sh\necho early\n".to_vec(),
        b"#include\nhttps://example.invalid/config.yaml\n".to_vec(),
    ];
    for input in inputs {
        let once = inject_key(Some(&input), &key()).expect("first injection");
        let twice = inject_key(Some(once.bytes()), &key()).expect("second injection");
        assert_eq!(
            twice.outcome(),
            Outcome::AlreadyPresent,
            "{:?}",
            once.format()
        );
        assert_eq!(twice.bytes(), once.bytes());
    }
    // Another comment on the same key still counts as the same key.
    let other_comment = format!("{} {} other comment", key().algorithm(), key().data());
    let input = format!("#cloud-config\nssh_authorized_keys:\n  - {other_comment}\n");
    let out = inject_key(Some(input.as_bytes()), &key()).expect("injects");
    assert_eq!(out.outcome(), Outcome::AlreadyPresent);
    assert_eq!(out.bytes(), input.as_bytes());
}

#[test]
fn a_second_key_is_appended_after_the_first() {
    let first = inject_key(Some(NO_KEYS.as_bytes()), &key()).expect("injects");
    let rsa = PublicKey::parse(RSA).expect("parses");
    let second = inject_key(Some(first.bytes()), &rsa).expect("injects");
    assert_eq!(second.outcome(), Outcome::Appended);
    let parsed = yaml(text(second.bytes()));
    let list: Vec<&str> = parsed["ssh_authorized_keys"]
        .as_sequence()
        .expect("list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(list, [ED25519, RSA]);
}

#[test]
fn scripts_and_other_formats_are_wrapped_untouched() {
    let cases: &[(&str, Format, &str)] = &[
        (SCRIPT, Format::ShellScript, "text/x-shellscript"),
        (
            "#cloud-boothook\n#!/bin/sh\necho early > /run/early\n",
            Format::CloudBoothook,
            "text/cloud-boothook",
        ),
        (
            "#include\nhttps://example.invalid/a.yaml\n",
            Format::Include,
            "text/x-include-url",
        ),
        (
            "#include-once\nhttps://example.invalid/b.yaml\n",
            Format::IncludeOnce,
            "text/x-include-once-url",
        ),
        (
            "#part-handler\ndef list_types():\n    return ['text/x-custom']\n",
            Format::PartHandler,
            "text/part-handler",
        ),
        (
            "#cloud-config-archive\n- type: text/cloud-config\n  content: 'a: 1'\n",
            Format::CloudConfigArchive,
            "text/cloud-config-archive",
        ),
        (
            "#cloud-config-jsonp\n[{\"op\": \"add\", \"path\": \"/a\", \"value\": 1}]\n",
            Format::CloudConfigJsonPatch,
            "text/cloud-config-jsonp",
        ),
        (
            "## template: jinja\n#!/bin/sh\necho {{ v1.instance_id }}\n",
            Format::JinjaOther,
            "text/jinja2",
        ),
    ];
    for (input, format, content_type) in cases {
        let out = inject_key(Some(input.as_bytes()), &key()).expect("injects");
        assert_eq!(out.format(), Some(*format));
        assert_eq!(out.outcome(), Outcome::Wrapped);
        let doc = text(out.bytes());
        assert!(
            doc.starts_with("Content-Type: multipart/mixed; boundary=\""),
            "{doc}"
        );
        assert!(!doc.contains("Date:") && !doc.contains("Message-ID"));
        let parts = parts(doc);
        assert_eq!(parts.len(), 2, "{doc}");
        let (user_headers, user_body) = parts[0].split_once("\n\n").expect("headers");
        assert!(
            user_headers.starts_with(&format!("Content-Type: {content_type};")),
            "{user_headers}"
        );
        if input.is_ascii() {
            assert_eq!(user_body, *input, "the user's part is untouched");
        }
        let (key_headers, key_body) = parts[1].split_once("\n\n").expect("headers");
        assert!(key_headers.contains("Content-Type: text/cloud-config"));
        assert!(key_headers.contains(&format!("Merge-Type: {KEY_PART_MERGE_TYPE}")));
        assert_eq!(
            yaml(key_body),
            plus_key(&serde_yaml_ng::Value::Null, &key())
        );
        // Deterministic: the same input gives the same bytes.
        let again = inject_key(Some(input.as_bytes()), &key()).expect("injects");
        assert_eq!(again.bytes(), out.bytes());
    }
}

#[test]
fn non_ascii_script_is_carried_in_base64() {
    let out = inject_key(Some(SCRIPT.as_bytes()), &key()).expect("injects");
    let parts = parts(text(out.bytes()));
    let (headers, body) = parts[0].split_once("\n\n").expect("headers");
    assert!(headers.contains("Content-Transfer-Encoding: base64"));
    use base64::Engine as _;
    let compact: String = body.split_whitespace().collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .expect("base64");
    assert_eq!(decoded, SCRIPT.as_bytes());
}

#[test]
fn existing_multipart_gets_exactly_one_more_part() {
    let out = inject_key(Some(MULTIPART.as_bytes()), &key()).expect("injects");
    assert_eq!(out.outcome(), Outcome::PartAdded);
    let doc = text(out.bytes());
    let close = "--===============4291038100093149247==--\n";
    let head = &MULTIPART[..MULTIPART.len() - close.len()];
    assert!(
        doc.starts_with(head),
        "everything before the close delimiter is kept"
    );
    assert!(doc.ends_with(close));
    let parts = parts(doc);
    assert_eq!(parts.len(), 3);
    assert!(parts[2].contains("Merge-Type: list(append)"));
}

#[test]
fn multipart_crlf_and_without_close_delimiter() {
    let crlf = MULTIPART.replace('\n', "\r\n");
    let out = inject_key(Some(crlf.as_bytes()), &key()).expect("injects");
    let doc = text(out.bytes());
    assert!(
        !doc.replace("\r\n", "").contains('\n'),
        "line ends stay CRLF"
    );
    assert_eq!(
        doc.matches("--===============4291038100093149247==\r\n")
            .count(),
        3
    );

    let open = MULTIPART.replace("--===============4291038100093149247==--\n", "");
    let out = inject_key(Some(open.as_bytes()), &key()).expect("injects");
    let doc = text(out.bytes());
    assert!(doc.starts_with(&open));
    assert!(doc.ends_with("--===============4291038100093149247==--\n"));
}

#[test]
fn single_part_mime_is_embedded_whole() {
    let input = "MIME-Version: 1.0\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho single\n";
    let out = inject_key(Some(input.as_bytes()), &key()).expect("injects");
    assert_eq!(out.format(), Some(Format::MimeSinglePart));
    let parts = parts(text(out.bytes()));
    assert_eq!(parts[0], input);
}

#[test]
fn gzip_input_is_carried_compressed() {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(WEB_SERVER.as_bytes()).expect("compress");
    let gz = e.finish().expect("compress");
    assert_eq!(detect_format(&gz), Some(Format::Gzip));
    let out = inject_key(Some(&gz), &key()).expect("injects");
    assert_eq!(out.outcome(), Outcome::Wrapped);
    let doc = text(out.bytes());
    assert!(doc.contains("Content-Type: application/gzip\n"), "{doc}");
    assert!(doc.contains("Content-Transfer-Encoding: base64"));
}

#[test]
fn gzip_of_multipart_is_opened() {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(MULTIPART.as_bytes()).expect("compress");
    let gz = e.finish().expect("compress");
    let out = inject_key(Some(&gz), &key()).expect("injects");
    assert_eq!(out.format(), Some(Format::Gzip));
    assert_eq!(out.outcome(), Outcome::PartAdded);
    assert!(text(out.bytes()).starts_with("Content-Type: multipart/mixed;"));
}

#[test]
fn cloud_config_that_cannot_be_edited_in_place_gets_a_part() {
    let input = "#cloud-config\nadmins: &k\n  - ssh-rsa AAAA a\nssh_authorized_keys: *k\n";
    let out = inject_key(Some(input.as_bytes()), &key()).expect("injects");
    assert_eq!(out.outcome(), Outcome::Wrapped);
    let parts = parts(text(out.bytes()));
    assert_eq!(parts[0].split_once("\n\n").map(|(_, b)| b), Some(input));
}

#[test]
fn errors_name_what_and_where_without_leaking_content() {
    let secret = "s3cr3t-Pa55";
    type Case = (String, fn(&UserDataError) -> bool, &'static str);
    let cases: Vec<Case> = vec![
        (
            format!("#cloud-config\nchpasswd:\n  list: |\n    root:{secret}\n   bad: [\n"),
            |e| {
                matches!(
                    e,
                    UserDataError::InvalidYaml {
                        line: 5,
                        column: 4,
                        ..
                    }
                )
            },
            "line 5, column 4",
        ),
        (
            format!("#cloud-config\n- {secret}\n"),
            |e| matches!(e, UserDataError::NotAMapping { found: "a list" }),
            "top level is a list",
        ),
        (
            format!("#cloud-config\npassword: {secret}\nssh_authorized_keys: {secret}\n"),
            |e| matches!(e, UserDataError::AuthorizedKeysNotAList { line: 3, .. }),
            "(line 3) is a string",
        ),
        (
            format!("#cloud-config\nssh_authorized_keys:\n  a: {secret}\n"),
            |e| {
                matches!(
                    e,
                    UserDataError::AuthorizedKeysNotAList {
                        found: "a mapping",
                        ..
                    }
                )
            },
            "must be a list",
        ),
        (
            format!("password: {secret}\n"),
            |e| matches!(e, UserDataError::UnknownFormat),
            "make `#cloud-config` its first line",
        ),
        (
            "Content-Type: multipart/mixed\nMIME-Version: 1.0\n\nbody\n".to_owned(),
            |e| matches!(e, UserDataError::MultipartWithoutBoundary),
            "boundary",
        ),
    ];
    for (input, is_expected, words) in cases {
        let err = inject_key(Some(input.as_bytes()), &key()).expect_err("refused");
        let message = err.to_string();
        assert!(is_expected(&err), "{message}");
        assert!(!message.contains("hint:"), "{message}");
        let hint = err.hints().into_iter().next().expect("a hint");
        // The words are the fact's, or the fix's.
        assert!(
            message.contains(words) || hint.contains(words),
            "{message}\n{hint}"
        );
        assert!(!message.contains(secret), "{message}");
        assert!(!hint.contains(secret), "{hint}");
    }
}

#[test]
fn non_utf8_text_is_refused_with_its_position() {
    let cases: &[(&[u8], &str)] = &[
        (b"#cloud-config\npackages: [caf\xe9]\n", "#cloud-config"),
        (b"#!/bin/sh\necho \xff\n", "shell script"),
        (b"\xff\xfe garbage", "user data"),
    ];
    for (input, what) in cases {
        let err = inject_key(Some(input), &key()).expect_err("refused");
        assert!(
            matches!(
                err,
                UserDataError::NotUtf8 { line: 2, .. } | UserDataError::NotUtf8 { line: 1, .. }
            ),
            "{err}"
        );
        let message = err.to_string();
        assert!(message.contains(what), "{message}");
        assert!(message.contains("line "), "{message}");
    }
}
