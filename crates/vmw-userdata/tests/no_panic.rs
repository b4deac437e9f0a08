//! User data shaped like what users write, and often slightly wrong, never
//! panics vmw-userdata and always comes out keyed: MIME multipart documents
//! (any boundary, folded headers, base64 parts, CRLF, missing or repeated
//! close delimiters), `#cloud-config` text built from YAML's syntax pieces
//! around `ssh_authorized_keys`, gzip (whole, truncated, of any content),
//! keys with any comment, metadata of any names, and guestinfo values of
//! any encoding. Whatever is accepted takes the key once: injecting again
//! changes nothing, and edited cloud-configs list the key.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write as _;

use base64::Engine as _;
use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};
use vmw_userdata::{
    AUTHORIZED_KEYS, Field, Format, Metadata, Outcome, PublicKey, UserDataError, decode,
    detect_format, encode, inject_key,
};

use common::{ECDSA, ED25519, RSA};

/// Text of every kind: any Unicode (control characters and multibyte
/// characters included), and the empty string.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[\\x00-\\x1f\\x7f ]{0,8}",
        Just(String::new()),
    ]
}

/// Keys of every algorithm with comments that YAML, jinja and MIME could
/// misread.
fn key() -> impl Strategy<Value = PublicKey> {
    (
        prop::sample::select(vec![ED25519, RSA, ECDSA]),
        prop_oneof![
            Just(String::new()),
            "[ -~]{0,12}",
            "\\PC{0,8}",
            prop::sample::select(vec![
                "{{ name }}",
                "{% if x %}",
                "{#",
                "\"quoted\"",
                "'single'",
                "a: b",
                "# not a comment",
                "- item",
                "--boundary",
                "é€😀",
                "\\\\back",
                "[list]",
                "&anchor *alias",
            ])
            .prop_map(str::to_owned),
        ],
    )
        .prop_filter_map("the key parses", |(line, comment)| {
            let mut words = line.split(' ');
            let (algorithm, data) = (words.next()?, words.next()?);
            PublicKey::parse(&format!("{algorithm} {data} {comment}")).ok()
        })
}

fn eol() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["\n", "\n", "\r\n"])
}

// ----- #cloud-config -------------------------------------------------------

/// Lines of `#cloud-config` documents: YAML's syntax pieces around
/// `ssh_authorized_keys`, with other keys' lines and items.
fn cloud_config_line(key: String) -> impl Strategy<Value = String> {
    let listed = format!("  - {key}");
    prop_oneof![
        4 => prop::sample::select(vec![
            "ssh_authorized_keys:",
            "ssh_authorized_keys: []",
            "ssh_authorized_keys: [\"ssh-rsa AAAAB3 x@y\"]",
            "ssh_authorized_keys: [\"ssh-rsa AAAAB3 x@y\",]",
            "ssh_authorized_keys: [",
            "  \"ssh-rsa AAAAB3 w@z\"]",
            "ssh_authorized_keys: ~",
            "ssh_authorized_keys: null",
            "ssh_authorized_keys: key",
            "ssh_authorized_keys: {a: 1}",
            "ssh_authorized_keys: [1, 2]",
            "'ssh_authorized_keys':",
            "\"ssh_authorized_keys\" :",
            "ssh_authorized_keys: &k",
            "ssh_authorized_keys: *k",
            "ssh_authorized_keys:\t# keys",
            "  - ssh-rsa AAAAB3 a@b",
            "- ssh-rsa AAAAB3 c@d",
            "  -",
            "    - nested",
            "\t- tab",
        ])
        .prop_map(str::to_owned),
        3 => prop::sample::select(vec![
            "packages: [htop, git]",
            "runcmd:",
            "  - echo hi",
            "  - [sh, -c, 'echo {{ x }}']",
            "write_files:",
            "  - path: /etc/x",
            "    content: |",
            "      text",
            "    content: >-",
            "users:",
            "  - default",
            "  - name: me",
            "    ssh_authorized_keys:",
            "      - ssh-rsa AAAAB3 inner@user",
            "hostname: h",
            "{a: 1}",
            "{ssh_authorized_keys: [\"ssh-rsa AAAAB3 f@g\"]}",
            "{",
            "}",
            "[1, 2]",
            "# a comment é",
            "---",
            "...",
            "%YAML 1.1",
            "anchor: &a {x: 1}",
            "merged: {<<: *a}",
            "key: 'unterminated",
            "key: \"esc \\u00e9\"",
            "é: ü",
            "",
            " ",
        ])
        .prop_map(str::to_owned),
        1 => Just(listed),
        1 => "\\PC{0,12}",
    ]
}

/// A `#cloud-config` document (sometimes a jinja template of one).
fn cloud_config(key: String) -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "#cloud-config",
            "#cloud-config",
            "## template: jinja\n#cloud-config",
            "#Cloud-Config",
            "\n  #cloud-config",
        ]),
        prop::collection::vec(cloud_config_line(key), 0..8),
        eol(),
        prop::sample::select(vec!["", "\n", "\r\n", "\n\n"]),
    )
        .prop_map(|(head, lines, eol, end)| {
            let mut text = head.replace('\n', eol);
            for line in lines {
                text.push_str(eol);
                text.push_str(&line);
            }
            text.push_str(end);
            text
        })
}

// ----- MIME multipart ------------------------------------------------------

/// A boundary: MIME's characters, and some that are not.
fn boundary() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9'()+_,./:=?-]{1,20}",
        1 => "[A-Za-z0-9 ;\"é=-]{0,12}",
        1 => Just("==vmw-0000000000000000==".to_owned()),
    ]
}

/// One part: headers, a blank line, a body (base64-encoded when its
/// headers say so, sometimes badly).
fn part(key: String, inner_boundary: String) -> impl Strategy<Value = String> {
    let content_type = prop::sample::select(vec![
        Some("text/cloud-config"),
        Some("text/x-shellscript"),
        Some("text/plain"),
        Some("text/x-not-multipart"),
        Some("text/cloud-boothook"),
        Some("application/octet-stream"),
        Some("multipart/mixed"),
        Some("TEXT/Cloud-Config; charset=\"utf-8\""),
        None,
    ]);
    let encoding = prop::sample::select(vec![
        None,
        Some("7bit"),
        Some("base64"),
        Some("BASE64"),
        Some("quoted-printable"),
    ]);
    let body = prop_oneof![
        cloud_config(key.clone()),
        Just(format!("#cloud-config\nssh_authorized_keys:\n  - {key}\n")),
        Just("#!/bin/sh\necho hi\n".to_owned()),
        Just(format!("--{inner_boundary}\n\n--{inner_boundary}--\n")),
        any_text(),
    ];
    (content_type, encoding, body, any::<bool>(), any::<bool>()).prop_map(
        move |(content_type, encoding, body, fold, bad_base64)| {
            let inner = &inner_boundary;
            let mut headers = String::new();
            if let Some(ct) = content_type {
                if ct == "multipart/mixed" {
                    headers.push_str(&format!("Content-Type: {ct}; boundary=\"{inner}\"\n"));
                } else if fold {
                    headers.push_str(&format!("Content-Type:\n {ct}\n"));
                } else {
                    headers.push_str(&format!("Content-Type: {ct}\n"));
                }
            }
            let body = match encoding {
                Some(e) => {
                    headers.push_str(&format!("Content-Transfer-Encoding: {e}\n"));
                    if e.eq_ignore_ascii_case("base64") {
                        let mut b =
                            base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
                        if bad_base64 {
                            b.insert(b.len() / 2, '!');
                        }
                        b.as_bytes()
                            .chunks(76)
                            .map(|c| String::from_utf8_lossy(c).into_owned())
                            .collect::<Vec<_>>()
                            .join("\n")
                    } else {
                        body
                    }
                }
                None => body,
            };
            format!("{headers}\n{body}")
        },
    )
}

/// A multipart document: top headers (in any order, sometimes folded or
/// without a boundary), a preamble, parts, and close delimiters.
fn multipart(key: String) -> impl Strategy<Value = String> {
    (boundary(), boundary()).prop_flat_map(move |(b, inner)| {
        (
            prop::sample::select(vec![
                format!("Content-Type: multipart/mixed; boundary=\"{b}\""),
                format!("Content-Type: multipart/mixed; boundary={b}"),
                format!("Content-Type: multipart/mixed;\n boundary=\"{b}\""),
                format!("content-type: Multipart/Alternative; charset=x; BOUNDARY=\"{b}\"; y"),
                "Content-Type: multipart/mixed".to_owned(),
                format!("Content-Type: multipart/mixed; boundary=\"{b}"),
            ]),
            any::<bool>(),
            prop_oneof![Just(String::new()), "[a-z ]{0,10}\n"],
            prop::collection::vec(part(key.clone(), inner.clone()), 0..4),
            prop::sample::select(vec![0usize, 1, 1, 1, 2]),
            prop_oneof![Just(String::new()), "[a-z\n-]{0,10}"],
            eol(),
            Just(b.clone()),
        )
            .prop_map(
                |(content_type, version_first, preamble, parts, closes, epilogue, eol, b)| {
                    let mut doc = String::new();
                    if version_first {
                        doc.push_str("MIME-Version: 1.0\n");
                        doc.push_str(&content_type);
                        doc.push('\n');
                    } else {
                        doc.push_str(&content_type);
                        doc.push_str("\nMIME-Version: 1.0\n");
                    }
                    doc.push('\n');
                    doc.push_str(&preamble);
                    for p in parts {
                        doc.push_str(&format!("--{b}\n{p}\n"));
                    }
                    for _ in 0..closes {
                        doc.push_str(&format!("--{b}--\n"));
                    }
                    doc.push_str(&epilogue);
                    doc.replace('\n', eol)
                },
            )
    })
}

// ----- gzip ----------------------------------------------------------------

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Any user data: the shapes above, other formats, gzip of them (whole or
/// cut short), and random bytes.
fn user_data(key: String) -> impl Strategy<Value = Vec<u8>> {
    let plain = prop_oneof![
        3 => cloud_config(key.clone()).prop_map(String::into_bytes),
        3 => multipart(key.clone()).prop_map(String::into_bytes),
        1 => (
            prop::sample::select(vec![
                "#!/bin/sh\n", "#cloud-boothook\n", "#include\n", "#include-once\n",
                "#part-handler\n", "#cloud-config-archive\n", "#cloud-config-jsonp\n",
                "## template: jinja\n#!/bin/sh\n", "MIME-Version: 1.0\nContent-Type: text/x-shellscript\n\n",
                "", " \n\t",
            ]),
            any_text(),
        )
            .prop_map(|(head, body)| format!("{head}{body}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ];
    (
        plain,
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2, 3]),
        any::<usize>(),
    )
        .prop_map(|(data, gz, cut)| match gz {
            1 => gzip(&data),
            2 => {
                let mut z = gzip(&data);
                z.truncate(cut % (z.len() + 1));
                z
            }
            3 => {
                let mut z = gzip(&data);
                z.extend(gzip(b"#!/bin/sh\n"));
                z
            }
            _ => data,
        })
}

/// A key and user data holding it in some places.
fn key_and_user_data() -> impl Strategy<Value = (PublicKey, Vec<u8>)> {
    key().prop_flat_map(|key| {
        let text = key.to_string();
        (Just(key), user_data(text))
    })
}

/// The keys listed by a cloud-config's top-level `ssh_authorized_keys`.
fn listed_keys(text: &str) -> Vec<String> {
    let value: Value = serde_yaml_ng::from_str(text).unwrap();
    value
        .get(AUTHORIZED_KEYS)
        .and_then(Value::as_sequence)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ----- metadata ------------------------------------------------------------

fn yaml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Sequence),
            prop::collection::vec((any_text(), inner), 0..3).prop_map(|entries| {
                Value::Mapping(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
            }),
        ]
    })
}

fn metadata() -> impl Strategy<Value = Metadata> {
    (
        any_text(),
        prop::option::of(any_text()),
        prop::option::of(any_text()),
        prop::collection::vec(
            (
                prop_oneof![
                    any_text().prop_map(Value::from),
                    prop::sample::select(vec!["instance-id", "local-hostname", "network"])
                        .prop_map(Value::from),
                    any::<i64>().prop_map(Value::from),
                ],
                yaml_value(),
            ),
            0..3,
        ),
    )
        .prop_map(|(name, id, host, extra)| {
            let mut m = Metadata::for_vm(&name);
            if let Some(id) = id {
                m = m.with_instance_id(id);
            }
            if let Some(host) = host {
                m = m.with_local_hostname(host);
            }
            m.extra(extra.into_iter().collect::<Mapping>())
        })
}

#[test]
fn the_key_part_goes_before_the_first_close_delimiter() {
    let key = PublicKey::parse(ED25519).unwrap();
    let doc = b"Content-Type: multipart/mixed; boundary=\"A\"\nMIME-Version: 1.0\n\n--A--\n--A--\n";
    let injected = inject_key(Some(doc), &key).unwrap();
    assert_eq!(injected.outcome(), Outcome::PartAdded);
    let text = std::str::from_utf8(injected.bytes()).unwrap();
    let part = text.find("text/cloud-config").unwrap();
    assert!(
        part < text.find("--A--").unwrap(),
        "the part is in the epilogue:\n{text}"
    );
    let again = inject_key(Some(injected.bytes()), &key).unwrap();
    assert_eq!(again.outcome(), Outcome::AlreadyPresent);
}

#[test]
fn gzip_that_already_holds_the_key_comes_back_unchanged() {
    let key = PublicKey::parse(ED25519).unwrap();
    let doc = format!(
        "Content-Type: multipart/mixed; boundary=\"A\"\nMIME-Version: 1.0\n\n--A\nContent-Type: text/cloud-config\n\n#cloud-config\nssh_authorized_keys:\n  - {key}\n--A--\n"
    );
    let compressed = gzip(doc.as_bytes());
    let injected = inject_key(Some(&compressed), &key).unwrap();
    assert_eq!(injected.outcome(), Outcome::AlreadyPresent);
    assert_eq!(injected.format(), Some(Format::Gzip));
    assert_eq!(injected.bytes(), &compressed[..]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn user_data_of_any_shape_takes_the_key_once((key, data) in key_and_user_data()) {
        let Ok(injected) = inject_key(Some(&data), &key) else {
            return Ok(());
        };
        if !data.iter().all(u8::is_ascii_whitespace) {
            prop_assert!(detect_format(&data).is_some());
        }
        let again = inject_key(Some(injected.bytes()), &key).expect("own output is accepted");
        prop_assert_eq!(again.outcome(), Outcome::AlreadyPresent, "{}", String::from_utf8_lossy(injected.bytes()));
        prop_assert_eq!(again.bytes(), injected.bytes());
        match injected.outcome() {
            Outcome::Appended | Outcome::ListAdded => {
                let text = std::str::from_utf8(injected.bytes()).unwrap();
                let listed = listed_keys(text);
                prop_assert!(listed.iter().any(|l| key.matches_line(l)), "{text}");
            }
            Outcome::Wrapped | Outcome::PartAdded => {
                let format = detect_format(injected.bytes());
                prop_assert!(
                    matches!(format, Some(Format::Multipart | Format::Gzip)),
                    "{format:?}"
                );
            }
            Outcome::AlreadyPresent => prop_assert_eq!(injected.bytes(), &data[..]),
            Outcome::Created => prop_assert!(data.iter().all(u8::is_ascii_whitespace)),
            other => prop_assert!(false, "a new outcome: {other:?}"),
        }
    }

    #[test]
    fn bytes_of_any_kind_are_detected_without_panicking(
        data in prop_oneof![prop::collection::vec(any::<u8>(), 0..400), any_text().prop_map(String::into_bytes)],
    ) {
        let format = detect_format(&data);
        if let Some(f) = format {
            let _ = (f.content_type(), f.is_text(), f.name());
        }
    }

    #[test]
    fn metadata_of_any_names_encodes_and_decodes(
        metadata in metadata(),
        user in prop::collection::vec(any::<u8>(), 0..300),
        vendor in prop::option::of(prop::collection::vec(any::<u8>(), 0..100)),
    ) {
        match encode(&metadata, &user, vendor.as_deref()) {
            Ok(info) => {
                prop_assert_eq!(info.decode(Field::UserData).unwrap(), Some(user));
                prop_assert_eq!(info.decode(Field::VendorData).unwrap(), vendor);
                let yaml = info.decode(Field::Metadata).unwrap().unwrap();
                let back: Value = serde_yaml_ng::from_slice(&yaml).unwrap();
                prop_assert_eq!(back.get("instance-id").and_then(Value::as_str), Some(metadata.instance_id()));
                prop_assert_eq!(back.get("local-hostname").and_then(Value::as_str), Some(metadata.local_hostname()));
                for field in [Field::Metadata, Field::UserData, Field::VendorData] {
                    let _ = info.encoding(field);
                }
            }
            Err(e) => prop_assert!(
                matches!(
                    e,
                    UserDataError::ReservedMetadataKey { .. }
                        | UserDataError::EmptyMetadataValue { .. }
                        | UserDataError::MetadataYaml { .. }
                ),
                "{e:?}"
            ),
        }
    }

    #[test]
    fn guestinfo_values_of_any_encoding_decode_or_explain(
        value in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|d| base64::engine::general_purpose::STANDARD.encode(d).into_bytes()),
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|d| base64::engine::general_purpose::STANDARD.encode(gzip(&d)).into_bytes()),
            (prop::collection::vec(any::<u8>(), 1..200), any::<usize>()).prop_map(|(d, cut)| {
                let mut z = gzip(&d);
                z.truncate(cut % z.len());
                let mut b = base64::engine::general_purpose::STANDARD.encode(z).into_bytes();
                b.insert(b.len() / 2, b'\n');
                b
            }),
        ],
        encoding in prop_oneof![
            prop::sample::select(vec!["", " ", "base64", "b64", "gzip+base64", "gz+b64", " base64\n", "GZIP", "gzip"]).prop_map(str::to_owned),
            any_text(),
        ],
    ) {
        match decode(&value, &encoding) {
            Ok(out) => {
                if encoding.trim().is_empty() {
                    prop_assert_eq!(out, value);
                }
            }
            Err(e) => prop_assert!(
                matches!(e, UserDataError::UnknownEncoding { .. } | UserDataError::Undecodable { .. }),
                "{e:?}"
            ),
        }
    }
}
