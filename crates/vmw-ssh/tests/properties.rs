//! No input panics vmw-ssh: a known-hosts store of any content (random
//! text, and files vmw wrote with fields mangled) is read or refused with
//! the line named; identities of any text and addresses of any kind
//! round-trip through the store; private key files of any content are
//! loaded or refused with the file named; shell quoting gives any argument
//! back to the shell as it was; command output of any bytes is reported.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, PrivateKey};
use russh::keys::ssh_key::public::{Ed25519PublicKey, KeyData};
use vmw_ssh::{
    Cmd, ExecResult, HostKeyCheck, KnownHosts, KnownHostsError, PublicKey, SshError, fingerprint,
    load_private_key, shell_quote,
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

/// An address as vmw makes them: an IP address and a port.
fn address() -> impl Strategy<Value = SocketAddr> {
    (any::<std::net::IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn host_key(bytes: [u8; 32]) -> PublicKey {
    PublicKey::from(KeyData::Ed25519(Ed25519PublicKey(bytes)))
}

fn store_in(dir: &tempfile::TempDir) -> KnownHosts {
    let root = Utf8Path::from_path(dir.path()).unwrap();
    KnownHosts::new(root.join("state dir").join("known_hosts"))
}

/// A change to the text of a store vmw wrote.
#[derive(Clone, Debug)]
enum Edit {
    /// A character is inserted at a byte position (moved to a boundary).
    Insert(usize, char),
    /// A byte range is removed (moved to boundaries).
    Cut(usize, usize),
    /// A line is repeated.
    RepeatLine(usize),
    /// A line gets one of the tokens a store line holds.
    AddToken(usize, &'static str),
    /// Two whitespace-separated fields of a line change places.
    Swap(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<usize>(), 0usize..8).prop_map(|(at, len)| Edit::Cut(at, len)),
        any::<usize>().prop_map(Edit::RepeatLine),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "identity=",
                "identity=%",
                "identity=%zz",
                "identity=%C3",
                "address=",
                "address=1.2.3.4",
                "address=[::1]:22",
                "ssh-ed25519",
                "AAAA",
                "#",
                "vmw-00",
            ]),
        )
            .prop_map(|(line, token)| Edit::AddToken(line, token)),
        (any::<usize>(), 0usize..6, 0usize..6).prop_map(|(l, a, b)| Edit::Swap(l, a, b)),
    ]
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, edit: &Edit) {
    let line_count = text.lines().count().max(1);
    match edit {
        Edit::Insert(at, c) => {
            let at = floor_boundary(text, *at);
            text.insert(at, *c);
        }
        Edit::Cut(at, len) => {
            let start = floor_boundary(text, *at);
            let end = floor_boundary(text, start.saturating_add(*len).min(text.len()));
            if end > start {
                text.replace_range(start..end, "");
            }
        }
        Edit::RepeatLine(n) => {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if !lines.is_empty() {
                let line = lines[n % lines.len()].clone();
                lines.push(line);
            }
            *text = lines.join("\n");
        }
        Edit::AddToken(n, token) => {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if let Some(line) = lines.get_mut(n % line_count) {
                line.push(' ');
                line.push_str(token);
            }
            *text = lines.join("\n");
        }
        Edit::Swap(n, a, b) => {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if let Some(line) = lines.get_mut(n % line_count) {
                let mut fields: Vec<&str> = line.split_whitespace().collect();
                if *a < fields.len() && *b < fields.len() {
                    fields.swap(*a, *b);
                }
                *line = fields.join(" ");
            }
            *text = lines.join("\n");
        }
    }
}

/// The content of a private key file: random bytes, random text, PEM
/// armour around random data, and a real key mangled.
fn private_key_file() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        any_text().prop_map(String::into_bytes),
        (
            prop::sample::select(vec![
                "OPENSSH PRIVATE KEY",
                "RSA PRIVATE KEY",
                "PRIVATE KEY",
                "EC PRIVATE KEY"
            ]),
            "[A-Za-z0-9+/=\n]{0,200}",
        )
            .prop_map(|(kind, body)| {
                format!("-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n").into_bytes()
            }),
        (
            any::<[u8; 32]>(),
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
            any::<usize>(),
            any::<bool>()
        )
            .prop_map(|(seed, flips, cut, crlf)| {
                let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
                let ending = if crlf {
                    LineEnding::CRLF
                } else {
                    LineEnding::LF
                };
                let mut bytes = key.to_openssh(ending).unwrap().as_bytes().to_vec();
                for (at, value) in flips {
                    let at = at % bytes.len();
                    bytes[at] = value;
                }
                if cut % 3 == 0 {
                    bytes.truncate(cut % (bytes.len() + 1));
                }
                bytes
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn identities_and_addresses_of_any_kind_round_trip_through_the_store(
        records in prop::collection::vec((any_text(), address(), any::<[u8; 32]>()), 1..4),
        other_key in any::<[u8; 32]>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let mut expected: Vec<(String, SocketAddr, PublicKey)> = Vec::new();
        for (identity, address, key) in &records {
            let key = host_key(*key);
            let known = expected.iter().find(|(i, _, _)| i == identity).cloned();
            let got = store.check(identity, *address, &key);
            match known {
                None => {
                    prop_assert_eq!(got.unwrap(), HostKeyCheck::Recorded);
                    expected.push((identity.clone(), *address, key));
                }
                Some((_, _, recorded)) if recorded.key_data() != key.key_data() => {
                    let is_changed = matches!(got, Err(KnownHostsError::Changed(_)));
                    prop_assert!(is_changed, "{got:?}");
                }
                Some(_) => {
                    prop_assert!(got.is_ok(), "{got:?}");
                    if let Some(e) = expected.iter_mut().find(|(i, _, _)| i == identity) {
                        e.1 = *address;
                    }
                }
            }
        }
        let entries = store.entries().unwrap();
        prop_assert_eq!(entries.len(), expected.len());
        for (identity, address, key) in &expected {
            let entry = store.get(identity).unwrap().unwrap();
            prop_assert_eq!(&entry.identity, identity);
            prop_assert_eq!(entry.address, *address);
            prop_assert_eq!(entry.key.key_data(), key.key_data());
            prop_assert_eq!(entry.fingerprint(), fingerprint(key));
            prop_assert_eq!(store.check(identity, *address, key).unwrap(), HostKeyCheck::Matched);
            let line = store.openssh_line(identity, *address).unwrap().unwrap();
            prop_assert!(line.contains("ssh-ed25519 "), "{line}");
            let alias = KnownHosts::host_key_alias(identity);
            prop_assert!(alias.starts_with("vmw-") && alias.len() == 36, "{alias}");
            let options = store.openssh_options(identity);
            prop_assert!(options.contains(&format!("HostKeyAlias={alias}")), "{options:?}");
            let other = host_key(other_key);
            if other.key_data() != key.key_data() {
                let refused = store.check(identity, *address, &other);
                let is_changed = matches!(refused, Err(KnownHostsError::Changed(_)));
                prop_assert!(is_changed, "{refused:?}");
            }
        }
        let (first, _, _) = &expected[0];
        prop_assert!(store.forget(first).unwrap());
        prop_assert!(store.get(first).unwrap().is_none());
        prop_assert!(!store.forget(first).unwrap());
    }

    #[test]
    fn a_store_of_any_content_is_read_or_names_the_line(
        records in prop::collection::vec(("\\PC{0,12}", address(), any::<[u8; 32]>()), 0..3),
        edits in prop::collection::vec(edit(), 0..4),
        random in prop::option::weighted(0.25, any_text()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        for (identity, address, key) in &records {
            let _ = store.check(identity, *address, &host_key(*key));
        }
        let mut text = std::fs::read_to_string(store.path()).unwrap_or_default();
        for e in &edits {
            apply(&mut text, e);
        }
        if let Some(random) = random {
            text = random;
        }
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(store.path(), &text).unwrap();
        match store.entries() {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    prop_assert!(entries[..i].iter().all(|o| o.identity != e.identity));
                }
                // Recording another identity writes back every entry read.
                let address: SocketAddr = "192.0.2.1:22".parse().unwrap();
                let key = host_key([7; 32]);
                let new = "\u{1}another identity";
                prop_assume!(entries.iter().all(|e| e.identity != new));
                prop_assert_eq!(store.check(new, address, &key).unwrap(), HostKeyCheck::Recorded);
                let mut after = store.entries().unwrap();
                let added = after.pop().unwrap();
                prop_assert_eq!(after, entries);
                prop_assert_eq!(added.identity, new);
            }
            Err(KnownHostsError::Corrupt { path, line, problem }) => {
                prop_assert_eq!(path.as_path(), store.path());
                prop_assert!(line >= 1 && line <= text.lines().count(), "line {line}");
                prop_assert!(!problem.is_empty());
            }
            Err(e) => prop_assert!(false, "{e}"),
        }
    }

    #[test]
    fn private_key_files_of_any_content_load_or_name_the_file(content in private_key_file()) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("id é")).unwrap();
        std::fs::write(&path, &content).unwrap();
        match load_private_key(&path) {
            Ok(key) => prop_assert!(!key.public_key().to_openssh().unwrap().is_empty()),
            Err(e) => {
                let is_key = matches!(&e, SshError::Key { path: p, .. } if p == &path);
                prop_assert!(is_key, "{e:?}");
                prop_assert!(e.to_string().contains(path.as_str()), "{e}");
            }
        }
    }

    #[test]
    fn output_of_any_bytes_is_reported(
        stdout in prop::collection::vec(any::<u8>(), 0..200),
        stderr in prop_oneof![prop::collection::vec(any::<u8>(), 0..200), any_text().prop_map(String::into_bytes)],
        status in prop::option::of(any::<u32>()),
        signal in prop::option::of(any_text()),
    ) {
        let r = ExecResult::from_raw(&stdout, &stderr, status, signal);
        prop_assert_eq!(r.ok(), status == Some(0));
        prop_assert_eq!(r.failed(), status != Some(0));
        prop_assert!(!r.describe().is_empty());
    }
}

proptest! {
    // Each case runs a shell.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn quoted_arguments_reach_the_shell_unchanged(
        args in prop::collection::vec(
            prop_oneof![any_text(), "['\"\\\\$`!*?~#;&|<> \t\n{}()\\[\\]-]{0,10}"]
                .prop_map(|s| s.replace('\0', "")),
            1..4,
        ),
        sudo in any::<bool>(),
    ) {
        let line = Cmd::Argv(
            ["printf", "%s\\0"].iter().map(|s| (*s).to_owned()).chain(args.iter().cloned()).collect(),
        )
        .remote_line(false);
        let out = std::process::Command::new("sh").arg("-c").arg(&line).output().unwrap();
        prop_assert!(out.status.success(), "{line}");
        let expected: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
        prop_assert_eq!(out.stdout, expected, "{}", line);
        let single = &args[0];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(single)))
            .output()
            .unwrap();
        prop_assert_eq!(String::from_utf8(out.stdout).unwrap(), single.clone());
        let shell = Cmd::Shell(single.clone()).remote_line(sudo);
        prop_assert!(shell.contains(&shell_quote(single)));
        let _ = Cmd::Argv(args.clone()).to_string();
    }
}
