//! Where govc keeps vmw's logins: one directory per vCenter, user and
//! password under vmw's session root (`~/.cache/vmw/govmomi`, see
//! [`vmw_config::Environment::govc_session_dir`]).
//!
//! govc caches a session per URL and user, and reuses it without checking
//! the password: with one shared directory, a wrong password "works" as
//! long as an earlier good login lives. vmw therefore gives every
//! combination of server, user and password a directory of its own, named by
//! [`key`], so a wrong password never finds a session and is refused at
//! once. The name is a truncated SHA-256, so the password cannot be read
//! back from it.

use sha2::{Digest, Sha256};

use vmw_config::Secret;

/// Length of a [`key`]: 32 hexadecimal digits (128 bits).
pub const KEY_LEN: usize = 32;

/// Tells the inputs of [`key`] from any other SHA-256 input, and lets a
/// later layout use other names.
const DOMAIN: &[u8] = b"vmw govc session v1";

/// The name of the session directory of `server` (as handed to govc, without
/// user info), `username` and `password`: the first [`KEY_LEN`] hex digits
/// of SHA-256 over the three, each preceded by a NUL byte.
pub fn key(server: &str, username: &str, password: &Secret) -> String {
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    for part in [server, username, password.expose()] {
        hash.update([0u8]);
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut hex = String::with_capacity(KEY_LEN);
    for byte in digest.iter().take(KEY_LEN / 2) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// Whether `name` looks like a [`key`] (so a directory so named is one of
/// vmw's session directories).
pub fn is_key(name: &str) -> bool {
    name.len() == KEY_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_server_user_and_password_and_are_stable() {
        let pw = Secret::new("hunter2");
        let k = key("vc.example.com", "alice", &pw);
        assert_eq!(k.len(), KEY_LEN);
        assert!(is_key(&k), "{k}");
        assert_eq!(k, key("vc.example.com", "alice", &Secret::new("hunter2")));
        let others = [
            key("vc.example.com", "alice", &Secret::new("hunter3")),
            key("vc.example.com", "bob", &pw),
            key("vc2.example.com", "alice", &pw),
            // The separators keep the parts apart.
            key("vc.example.com", "alice\0hunter2", &Secret::new("")),
            key("vc.example.comalice", "", &pw),
        ];
        for o in &others {
            assert_ne!(&k, o);
        }
        assert!(!k.contains("hunter2"));
    }

    #[test]
    fn key_is_a_truncated_sha256_of_the_documented_input() {
        // sha256("vmw govc session v1\0s\0u\0p"), first 16 bytes, computed
        // independently with `printf 'vmw govc session v1\0s\0u\0p' | sha256sum`.
        assert_eq!(
            key("s", "u", &Secret::new("p")),
            EXPECTED_S_U_P,
            "the key derivation changed: existing session directories would be orphaned"
        );
    }

    const EXPECTED_S_U_P: &str = "32ec974961df9863b96bfe74d7cdc224";

    #[test]
    fn is_key_accepts_only_key_shaped_names() {
        assert!(is_key("0123456789abcdef0123456789abcdef"));
        for name in [
            "sessions",
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
            "",
        ] {
            assert!(!is_key(name), "{name}");
        }
    }
}
