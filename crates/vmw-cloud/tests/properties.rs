//! Every parser of user input in vmw-cloud accepts any text without
//! panicking, and means what it says: instance types round-trip, valid tags
//! are accepted and invalid ones refused with every rule named, markers in
//! the form vmw writes read back, wait stages, metadata YAML, extraConfig
//! keys, the hardware and plain-value checks, and public key files of any
//! content. Errors name the value they refuse.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use camino::Utf8PathBuf;
use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};
use vmw_cloud::{
    CloudError, InstanceType, KeyPair, Kind, LaunchOptions, MAX_TAG_LEN, Marker, Tag, WaitStage,
    parse_marker,
};

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

/// A character that is sometimes ASCII, sometimes several bytes long.
fn odd_char() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("é".to_owned()),
        Just("ß".to_owned()),
        Just("€".to_owned()),
        Just("😀".to_owned()),
        Just("\u{0301}".to_owned()),
        Just("\u{0}".to_owned()),
        Just("\t".to_owned()),
        Just("\n".to_owned()),
        Just(" ".to_owned()),
    ]
}

// ----- instance types ------------------------------------------------------

/// Text shaped like an instance type, often almost one.
fn instance_type_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,3}[cC][0-9]{0,6}[gGmMé]?",
        "[ \t]{0,2}[+-]?[0-9]{0,12}[cCé]{0,2}[+-]?[0-9]{0,22}[gGmMtTé€😀]{0,2}[ \n]{0,2}",
        (
            odd_char(),
            "[0-9]{1,3}",
            odd_char(),
            "[0-9]{1,5}",
            odd_char()
        )
            .prop_map(|(a, c, b, m, d)| format!("{a}{c}{b}c{m}{d}")),
        ("[0-9]{1,3}c[0-9]{1,5}", odd_char()).prop_map(|(t, u)| format!("{t}{u}")),
    ]
}

/// An instance type as written, and the value it must parse to.
fn instance_type_case() -> impl Strategy<Value = (String, Option<InstanceType>)> {
    (
        prop_oneof![0u64..=64, any::<u32>().prop_map(u64::from), any::<u64>()],
        prop_oneof![0u64..=70_000, any::<u64>()],
        prop::sample::select(vec!["g", "G", "m", "M", "t", "é", "", "gb", "k"]),
        any::<bool>(),
        "[ \t\n]{0,2}",
        "[ \t\n]{0,2}",
    )
        .prop_map(|(cpus, amount, unit, upper_c, lead, trail)| {
            let c = if upper_c { "C" } else { "c" };
            let text = format!("{lead}{cpus}{c}{amount}{unit}{trail}");
            let memory_mb = match unit {
                "g" | "G" => amount.checked_mul(1024),
                "m" | "M" => Some(amount),
                _ => None,
            };
            let expected = match (u32::try_from(cpus), memory_mb) {
                (Ok(cpus), Some(memory_mb)) if cpus >= 1 && memory_mb >= 4 => {
                    Some(InstanceType { cpus, memory_mb })
                }
                _ => None,
            };
            (text, expected)
        })
}

#[test]
fn a_multibyte_memory_unit_is_an_error_not_a_panic() {
    for text in ["2c4é", "2cé", "é", "2c€", "1c512😀", "2c4\u{0301}"] {
        let err = text.parse::<InstanceType>().unwrap_err().to_string();
        assert!(err.contains("e.g. 2c4g"), "{text}: {err}");
        assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
    }
}

// ----- tags ----------------------------------------------------------------

/// The tag rules, written independently of the library.
fn is_valid_tag(tag: &str) -> bool {
    let len = tag.chars().count();
    (1..=MAX_TAG_LEN).contains(&len)
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !tag.starts_with('-')
        && !tag.ends_with('-')
}

fn valid_tag() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
}

/// Text shaped like a tag, often almost one.
fn tag_like() -> impl Strategy<Value = String> {
    prop_oneof![
        valid_tag(),
        "[a-zA-Z0-9_. -]{0,70}",
        "-?[a-z0-9]{0,62}-?",
        (valid_tag(), odd_char(), valid_tag()).prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        "[a-zé-]{60,66}",
        any_text(),
    ]
}

// ----- markers -------------------------------------------------------------

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(vec![Kind::Instance, Kind::Image, Kind::Template])
}

/// How vmw's annotation spells a kind.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Instance => "instance",
        Kind::Image => "image",
        Kind::Template => "template",
    }
}

/// Text shaped like vmw's annotation, often almost one.
fn annotation_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![tag_like(), Just(String::new()), "[,) ]{0,3}", any_text()];
    (
        prop::sample::select(vec![
            "made by vmw (tag: ",
            " made by vmw (tag: ",
            "made by vmw (tag:",
            "Made by vmw (tag: ",
            "",
        ]),
        piece.clone(),
        prop::sample::select(vec![", kind: ", ",kind: ", ", kind:", ""]),
        prop::sample::select(vec![
            "instance", "image", "template", "vm", "", "Image", "imagé",
        ]),
        prop::option::of((
            prop::sample::select(vec![", launch: ", ", launch:", ",launch: "]),
            prop_oneof!["[0-9a-f]{0,16}", piece],
        )),
        prop::sample::select(vec![")", "", "))", ") ", ")\n", ")é"]),
    )
        .prop_map(|(prefix, tag, sep, kind, launch, close)| {
            let launch = launch.map_or_else(String::new, |(s, l)| format!("{s}{l}"));
            format!("{prefix}{tag}{sep}{kind}{launch}{close}")
        })
}

// ----- metadata ------------------------------------------------------------

/// YAML-ish text: lines of YAML's syntax pieces at random indentations, so
/// that the parser meets anchors, tags, flow collections, block scalars,
/// directives and broken quoting.
fn yaml_like() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "a:",
        "b: 1",
        "network:",
        "version: 2",
        "ethernets:",
        "- x",
        "-",
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        "&a",
        "*a",
        "<<: *a",
        "!!str",
        "!!binary",
        "!!map",
        "!local",
        "? ",
        "|",
        ">-",
        "|+2",
        "'",
        "\"",
        "\\u00e9",
        "\\",
        "#",
        "---",
        "...",
        "%YAML 1.1",
        "%TAG ! tag:x,2000:",
        "é",
        "😀",
        "\t",
        "0x1F",
        "1e400",
        "-.inf",
        ".nan",
        "~",
        "null",
        "2001-12-14t21:59:43.10-05:00",
        "\u{0}",
        "\u{feff}",
        "\r",
    ]);
    let line = (0usize..6, prop::collection::vec(token, 0..5))
        .prop_map(|(indent, tokens)| format!("{}{}", " ".repeat(indent), tokens.join(" ")));
    prop::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n"))
}

/// Mappings of the kinds metadata files hold.
fn metadata_mapping() -> impl Strategy<Value = Mapping> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec(("[a-z][a-z0-9_-]{0,8}", inner), 0..4).prop_map(|entries| {
                Value::Mapping(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
            }),
        ]
    });
    prop::collection::vec(("[a-z][a-z0-9_-]{0,8}", value), 0..5)
        .prop_map(|entries| entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

// ----- extraConfig keys ----------------------------------------------------

fn extra_config_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._]{1,20}",
        "(guestinfo\\.)(metadata|userdata|vendordata|other)(\\.encoding)?",
        "[a-z.=\n\r ]{0,12}",
        any_text(),
    ]
}

/// The rules of extraConfig keys, written independently of the library.
fn extra_config_key_ok(key: &str) -> bool {
    !key.is_empty()
        && !key.contains(['=', '\n', '\r'])
        && ![
            "guestinfo.metadata",
            "guestinfo.userdata",
            "guestinfo.vendordata",
        ]
        .iter()
        .any(|p| key.starts_with(p))
}

// ----- public key files ----------------------------------------------------

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO6zb9yfhE9uGj1F+yXMGYabYEWN1pRUMCvO5vbVl4a8 judge@vmw";

/// The content of a `.pub` file: random bytes, random text, key-shaped
/// lines, and a real key mangled in its text or in its decoded blob.
fn key_file_content() -> impl Strategy<Value = Vec<u8>> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(ED25519.split(' ').nth(1).unwrap())
        .unwrap();
    let blob_len = blob.len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        any_text().prop_map(String::into_bytes),
        "(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|sk-ssh-ed25519@openssh.com|ssh-dss|ssh-foo) [A-Za-z0-9+/=]{0,80}( [a-zé@.\t]{0,12})?\n?"
            .prop_map(String::into_bytes),
        (
            prop::collection::vec((0..blob_len, any::<u8>()), 0..3),
            0..=blob_len,
            "( [ -~é]{0,12})?",
        )
            .prop_map(move |(flips, keep, comment)| {
                let mut b = blob.clone();
                for (i, v) in flips {
                    b[i] = v;
                }
                b.truncate(keep);
                let data = base64::engine::general_purpose::STANDARD.encode(&b);
                format!("ssh-ed25519 {data}{comment}\n").into_bytes()
            }),
        (
            prop::sample::select(vec![
                "",
                "\u{feff}",
                "command=\"x\" ",
                " \n",
                "-----BEGIN OPENSSH PRIVATE KEY-----\n",
            ]),
            prop::sample::select(vec!["", "\n", "\r\n", "\n\n", "\nssh-rsa AAAA x\n", "\u{0}"]),
        )
            .prop_map(|(before, after)| format!("{before}{ED25519}{after}").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn instance_types_of_any_text_parse_or_explain(
        text in prop_oneof![any_text(), instance_type_like()],
    ) {
        match text.parse::<InstanceType>() {
            Ok(t) => {
                prop_assert!(t.cpus >= 1 && t.memory_mb >= 4, "{text:?}: {t:?}");
                let again: InstanceType = format!("{}c{}m", t.cpus, t.memory_mb).parse().unwrap();
                prop_assert_eq!(again, t);
                prop_assert_eq!(t.to_string().parse::<InstanceType>().unwrap(), t);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("e.g. 2c4g"), "{msg}");
                prop_assert!(msg.contains(&format!("{text:?}")), "{msg}");
            }
        }
    }

    #[test]
    fn instance_types_mean_cpus_and_memory((text, expected) in instance_type_case()) {
        prop_assert_eq!(text.parse::<InstanceType>().ok(), expected, "{:?}", text);
    }

    #[test]
    fn wait_stages_are_the_four_words(text in prop_oneof![
        any_text(),
        prop::sample::select(vec!["none", "ip", "ssh", "ready", "Ready", " ip", "ssh\n", "réady"])
            .prop_map(str::to_owned),
    ]) {
        let expected = match text.as_str() {
            "none" => Some(WaitStage::None),
            "ip" => Some(WaitStage::Ip),
            "ssh" => Some(WaitStage::Ssh),
            "ready" => Some(WaitStage::Ready),
            _ => None,
        };
        match text.parse::<WaitStage>() {
            Ok(stage) => prop_assert_eq!(Some(stage), expected),
            Err(e) => {
                prop_assert_eq!(expected, None);
                prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
            }
        }
    }

    #[test]
    fn tags_are_accepted_exactly_when_valid(text in tag_like()) {
        match Tag::parse(&text) {
            Ok(tag) => {
                prop_assert!(is_valid_tag(&text), "{text:?} accepted");
                prop_assert_eq!(tag.as_str(), text.as_str());
                prop_assert_eq!(tag.to_string(), text);
            }
            Err(e) => {
                prop_assert!(!is_valid_tag(&text), "{text:?} refused: {e}");
                let CloudError::InvalidTag { tag, problems } = &e else {
                    panic!("{e:?}")
                };
                prop_assert_eq!(tag, &text);
                prop_assert!(!problems.is_empty());
                prop_assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
            }
        }
    }

    #[test]
    fn timestamped_tags_are_valid_when_the_base_allows(base in tag_like()) {
        let stamped_ok = is_valid_tag(&format!("{base}-0000-000000"));
        match Tag::new(&base, true) {
            Ok(tag) => {
                prop_assert!(stamped_ok, "{base:?}");
                prop_assert!(tag.as_str().starts_with(&format!("{base}-")), "{tag}");
                prop_assert_eq!(tag.as_str().len(), base.len() + 12);
            }
            Err(_) => prop_assert!(!stamped_ok, "{base:?}"),
        }
        prop_assert_eq!(Tag::new(&base, false).is_ok(), is_valid_tag(&base));
    }

    #[test]
    fn markers_in_vmw_s_form_read_back(
        tag in valid_tag(),
        kind in kind(),
        launch in prop::option::of("[0-9a-f]{1,16}"),
    ) {
        let text = match &launch {
            Some(l) => format!("made by vmw (tag: {tag}, kind: {}, launch: {l})", kind_name(kind)),
            None => format!("made by vmw (tag: {tag}, kind: {})", kind_name(kind)),
        };
        let expected = Marker { tag: tag.clone(), kind, launch };
        prop_assert_eq!(parse_marker(&text), Some(expected.clone()));
        prop_assert_eq!(parse_marker(&format!("  {text}\n")), Some(expected));
    }

    #[test]
    fn any_annotation_reads_without_panicking(text in prop_oneof![any_text(), annotation_like()]) {
        let marker = parse_marker(&text);
        if let Some(m) = &marker {
            prop_assert!(!m.tag.is_empty());
            prop_assert!(text.contains(&m.tag));
            if let Some(l) = &m.launch {
                prop_assert!(!l.is_empty() && !l.contains([',', ')']), "{l:?}");
            }
        }
    }

    #[test]
    fn metadata_yaml_of_any_text_parses_or_names_the_file(
        text in prop_oneof![any_text(), yaml_like()],
        what in prop_oneof![Just("meta.yaml".to_owned()), "\\PC{1,12}"],
    ) {
        if let Err(e) = LaunchOptions::metadata_from_yaml(&text, &what) {
            prop_assert!(e.to_string().contains(&format!("{what:?}")), "{e}");
        }
    }

    #[test]
    fn metadata_mappings_read_back(mapping in metadata_mapping()) {
        let text = serde_yaml_ng::to_string(&mapping).unwrap();
        prop_assume!(serde_yaml_ng::from_str::<Value>(&text).ok() == Some(Value::Mapping(mapping.clone())));
        prop_assert_eq!(LaunchOptions::metadata_from_yaml(&text, "m.yaml").unwrap(), mapping);
    }

    #[test]
    fn extra_config_keys_follow_the_rules(
        keys in prop::collection::vec(extra_config_key(), 0..4),
        value in any_text(),
    ) {
        let options = LaunchOptions {
            extra_config: keys.iter().map(|k| (k.clone(), value.clone())).collect(),
            ..LaunchOptions::default()
        };
        let first_bad = keys.iter().find(|k| !extra_config_key_ok(k));
        match (options.check_extra_config(), first_bad) {
            (Ok(()), None) => {}
            (Err(e), Some(bad)) => {
                prop_assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
            }
            (got, bad) => prop_assert!(false, "{keys:?}: {got:?}, first bad {bad:?}"),
        }
    }

    #[test]
    fn hardware_is_an_instance_type_or_cpus_and_memory(
        instance_type in prop::option::of(instance_type_like()),
        cpus in prop::option::of(prop_oneof![0u32..4, any::<u32>()]),
        memory_mb in prop::option::of(prop_oneof![0u64..8, any::<u64>()]),
    ) {
        let instance_type = instance_type.and_then(|t| t.parse::<InstanceType>().ok());
        let options = LaunchOptions { instance_type, cpus, memory_mb, ..LaunchOptions::default() };
        let got = options.hardware();
        match instance_type {
            Some(t) if cpus.is_some() || memory_mb.is_some() => {
                let msg = got.unwrap_err().to_string();
                prop_assert!(msg.contains("not both") && msg.contains(&t.to_string()), "{msg}");
            }
            Some(t) => prop_assert_eq!(got.ok(), Some((Some(t.cpus), Some(t.memory_mb)))),
            None => {
                let ok = cpus != Some(0) && memory_mb.is_none_or(|m| m >= 4);
                prop_assert_eq!(got.ok(), ok.then_some((cpus, memory_mb)));
            }
        }
    }

    #[test]
    fn plain_values_are_checked(
        network in prop::option::of(any_text()),
        disk_gib in prop::option::of(prop_oneof![Just(0u64), any::<u64>()]),
        ip_ms in prop::option::of(prop_oneof![Just(0u64), any::<u64>()]),
        ready_ms in prop::option::of(prop_oneof![Just(0u64), any::<u64>()]),
        concurrency in prop::option::of(prop_oneof![Just(0usize), any::<usize>()]),
    ) {
        let options = LaunchOptions {
            network: network.clone(),
            disk_gib,
            ip_timeout: ip_ms.map(Duration::from_millis),
            ready_timeout: ready_ms.map(Duration::from_millis),
            concurrency,
            ..LaunchOptions::default()
        };
        let ok = disk_gib != Some(0)
            && network.as_ref().is_none_or(|n| !n.trim().is_empty())
            && ip_ms != Some(0)
            && ready_ms != Some(0)
            && concurrency != Some(0);
        prop_assert_eq!(options.check_values().is_ok(), ok);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn key_files_of_any_content_load_or_name_the_file(
        content in key_file_content(),
        public_name in prop::sample::select(vec!["id.pub", "id", "key é.pub"]),
        private_exists in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
        let public = dir.join(public_name);
        std::fs::write(&public, &content).unwrap();
        let stem = public.as_str().strip_suffix(".pub").map(Utf8PathBuf::from);
        if let Some(private) = stem.as_ref().filter(|_| private_exists) {
            std::fs::write(private, "private").unwrap();
        }
        match KeyPair::from_files(&public, None, "me".to_owned()) {
            Ok(pair) => {
                let text = String::from_utf8(content).unwrap();
                let parsed = vmw_userdata::PublicKey::parse(&text).unwrap();
                prop_assert_eq!(pair.public_key, parsed);
                prop_assert_eq!(Some(pair.private_path), stem);
                prop_assert!(!pair.generated);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(dir.as_str()), "{msg}");
            }
        }
    }
}
