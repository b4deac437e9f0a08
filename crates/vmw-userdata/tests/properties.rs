//! Properties that must hold for any input.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};
use vmw_userdata::{Field, Metadata, Outcome, PublicKey, decode, encode, encode_value, inject_key};

use common::{key, plus_key};

/// Scalars of the kinds cloud-configs hold (no NaN: it is not equal to itself).
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(Value::from),
        "[a-zA-Z0-9 _./:-]{0,20}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        "(\\PC{0,12}\n){1,4}\\PC{0,12}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec(("[a-z_][a-z0-9_-]{0,8}", inner), 0..4).prop_map(|entries| {
                Value::Mapping(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Value::from(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// Top-level cloud-config mappings, sometimes with an `ssh_authorized_keys` list already.
fn cloud_config() -> impl Strategy<Value = Mapping> {
    (
        prop::collection::vec(("[a-z_][a-z0-9_-]{0,10}", value()), 0..6),
        prop::option::of(prop::collection::vec(
            "ssh-rsa AAAA[A-Za-z0-9+/]{4,20}( [a-z@.]{1,10})?",
            0..3,
        )),
        0usize..7,
    )
        .prop_map(|(entries, keys, position)| {
            let mut entries: Vec<(Value, Value)> = entries
                .into_iter()
                .filter(|(k, _)| k != "ssh_authorized_keys")
                .map(|(k, v)| (Value::from(k), v))
                .collect();
            if let Some(keys) = keys {
                let list = Value::Sequence(keys.into_iter().map(Value::from).collect());
                let at = position.min(entries.len());
                entries.insert(at, (Value::from("ssh_authorized_keys"), list));
            }
            entries.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_mapping_round_trips_with_the_key(mapping in cloud_config(), comment in "(# [a-z ]{0,10}\n)?") {
        let body = serde_yaml_ng::to_string(&mapping).expect("serialises");
        // Only documents that the YAML library itself reads back the same are meaningful.
        let original = Value::Mapping(mapping);
        prop_assume!(serde_yaml_ng::from_str::<Value>(&body).ok() == Some(original.clone()));
        let input = format!("#cloud-config\n{comment}{body}");

        let injected = inject_key(Some(input.as_bytes()), &key()).expect("injects");
        prop_assert!(
            matches!(injected.outcome(), Outcome::Appended | Outcome::ListAdded),
            "not edited in place: {:?}\n{input}", injected.outcome()
        );
        let info = encode(&Metadata::for_vm("prop-vm"), injected.bytes(), None).expect("encodes");
        let back = info.decode(Field::UserData).expect("decodes").expect("present");
        prop_assert_eq!(&back, injected.bytes());
        let text = String::from_utf8(back).expect("UTF-8");
        let head = format!("#cloud-config\n{comment}");
        prop_assert!(text.starts_with(&head));
        let parsed: Value = serde_yaml_ng::from_str(&text).expect("output parses");
        prop_assert_eq!(parsed, plus_key(&original, &key()));

        // The user's text is kept byte for byte: the output is the input with one insertion.
        let (a, b) = (input.as_bytes(), text.as_bytes());
        let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let suffix = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
        prop_assert!(prefix + suffix >= a.len(), "not a single insertion:\n{input}\n---\n{text}");

        let again = inject_key(Some(injected.bytes()), &key()).expect("injects again");
        prop_assert_eq!(again.outcome(), Outcome::AlreadyPresent);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop_oneof![
            Just(Vec::new()),
            Just(b"#cloud-config\n".to_vec()),
            Just(b"## template: jinja\n#cloud-config\n".to_vec()),
            Just(b"#!/bin/sh\n".to_vec()),
            Just(b"Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\n".to_vec()),
            Just(b"MIME-Version: 1.0\n".to_vec()),
            Just(vec![0x1f, 0x8b]),
        ],
        tail in prop::collection::vec(any::<u8>(), 0..300),
        text_tail in "\\PC{0,200}",
        use_text in any::<bool>(),
    ) {
        let mut input = prefix;
        if use_text {
            input.extend_from_slice(text_tail.as_bytes());
        } else {
            input.extend_from_slice(&tail);
        }
        if let Ok(injected) = inject_key(Some(&input), &key()) {
            let again = inject_key(Some(injected.bytes()), &key()).expect("own output is accepted");
            prop_assert_eq!(again.outcome(), Outcome::AlreadyPresent);
            prop_assert_eq!(again.bytes(), injected.bytes());
        }
    }

    #[test]
    fn key_parsing_never_panics(text in "\\PC{0,120}", bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = PublicKey::parse(&text);
        let _ = PublicKey::parse(&String::from_utf8_lossy(&bytes));
        let _ = PublicKey::parse(&format!("ssh-ed25519 {text}"));
    }

    #[test]
    fn values_round_trip(data in prop::collection::vec(any::<u8>(), 0..20_000), repeat in 1usize..6) {
        let data: Vec<u8> = data.iter().copied().cycle().take(data.len() * repeat).collect();
        let (encoding, value) = encode_value(Field::UserData, &data).expect("fits");
        prop_assert!(value.is_ascii() && !value.ends_with('\n'));
        prop_assert_eq!(decode(value.as_bytes(), encoding.as_str()).expect("decodes"), data);
    }
}
