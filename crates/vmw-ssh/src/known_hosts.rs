//! [`KnownHosts`]: the host keys of instances, pinned across vmw runs.
//!
//! A VM's SSH host key is accepted the first time vmw meets the VM (trust
//! on first use: a new VM has a new key that nobody can know beforehand)
//! and recorded in vmw's own known-hosts file. From then on, every vmw
//! process that reaches the VM must be presented the same key, or the
//! connection is refused with [`KnownHostsError::Changed`].
//!
//! Entries are keyed by an *identity*, an opaque string chosen by the
//! caller that names one VM for its whole life (for example its inventory
//! path and instance UUID), not by address: addresses are reused when VMs
//! come and go, and a new VM at an old VM's address is a new identity with
//! its own entry. [`KnownHosts::forget`] removes the entry of a deleted VM.
//!
//! # The file
//!
//! The file is an OpenSSH `known_hosts` file, one line per identity:
//!
//! ```text
//! vmw-3b5d…  ssh-ed25519 AAAAC3Nz…  identity=/dc/vm/web-1%204215c8a2-…  address=10.0.0.5:22
//! ```
//!
//! The host field is an alias derived from the identity
//! ([`KnownHosts::host_key_alias`]); the identity (bytes other than
//! printable ASCII, and `%`, written as `%XX`) and the last address follow
//! as the line's comment, which OpenSSH ignores. So the file serves OpenSSH
//! as it is: `ssh` with the options of [`KnownHosts::openssh_options`]
//! (`UserKnownHostsFile`, `HostKeyAlias`, `StrictHostKeyChecking=yes`)
//! checks the VM's key strictly against the recorded one, whatever address
//! the VM has. [`KnownHosts::openssh_line`] gives the classic
//! address-keyed line (`[10.0.0.5]:2222 ssh-ed25519 …`) for a file of the
//! caller's own.
//!
//! Lines without an `identity=` field are not vmw's: they are ignored, and
//! dropped the next time the file is written. A line of vmw's that cannot
//! be read is an error naming the file and line, never silently dropped.
//!
//! # Several processes
//!
//! Every change happens under an exclusive advisory lock on a lock file
//! beside the store (`known_hosts.lock`), re-reads the file once locked,
//! and replaces it through a uniquely named temporary file and a rename, so
//! concurrent vmw processes lose no entries and readers (which take no
//! lock) always see a whole file.

use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;

use camino::{Utf8Path, Utf8PathBuf};
use russh::keys::ssh_key::sha2::{Digest, Sha256};
use russh::keys::{HashAlg, PublicKey};

/// The first line of every file written.
const HEADER: &str = "# vmw known hosts: the SSH host key of each vmw instance, recorded on first contact. OpenSSH reads it with HostKeyAlias.\n";

/// An error of the known-hosts store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KnownHostsError {
    /// Reading, locking or writing a file failed.
    #[error("known hosts {path}: {what}")]
    Io {
        /// The file.
        path: Utf8PathBuf,
        /// What vmw was doing.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },

    /// A line of the store cannot be read.
    #[error("known hosts {path}, line {line}: {problem}")]
    Corrupt {
        /// The file.
        path: Utf8PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },

    /// A key could not be written in OpenSSH form.
    #[error("host key of {identity}: cannot encode it: {problem}")]
    Encode {
        /// The identity whose key it is.
        identity: String,
        /// Why.
        problem: String,
    },

    /// The instance presented a host key other than the recorded one.
    #[error("{0}")]
    Changed(Box<HostKeyChange>),
}

/// A host key other than the recorded one ([`KnownHostsError::Changed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKeyChange {
    /// The identity.
    pub identity: String,
    /// Where the key was presented.
    pub address: SocketAddr,
    /// Where the recorded key was last seen.
    pub recorded_address: SocketAddr,
    /// The recorded key's SHA256 fingerprint.
    pub expected: String,
    /// The presented key's SHA256 fingerprint.
    pub presented: String,
    /// The store.
    pub path: Utf8PathBuf,
}

impl fmt::Display for HostKeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            identity,
            address,
            recorded_address,
            expected,
            presented,
            path,
        } = self;
        write!(
            f,
            "host key of {identity} at {address} has changed: expected {expected} (recorded at {recorded_address} in {path}), presented {presented}; refusing to connect"
        )
    }
}

impl KnownHostsError {
    /// What would fix this error, where that is known.
    pub(crate) fn hint_text(&self) -> Option<String> {
        match self {
            KnownHostsError::Corrupt { .. } => Some(
                "fix or delete that line; the instance's key is then recorded again on the next contact"
                    .to_owned(),
            ),
            KnownHostsError::Changed(c) => Some(format!(
                "if this VM's host keys were regenerated on purpose, delete its line (identity={}) from {}; otherwise another machine may be answering at {}",
                encode(&c.identity),
                c.path,
                c.address
            )),
            _ => None,
        }
    }
}

/// One pinned host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostKeyEntry {
    /// The instance's identity.
    pub identity: String,
    /// The address the key was last presented at.
    pub address: SocketAddr,
    /// The host key.
    pub key: PublicKey,
}

impl HostKeyEntry {
    /// The key's SHA256 fingerprint, `SHA256:…` as OpenSSH prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }
}

/// What [`KnownHosts::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The identity was new: its key is now recorded.
    Recorded,
    /// The key is the recorded one.
    Matched,
    /// The key is the recorded one, presented at a new address (now
    /// recorded instead of `from`).
    Moved {
        /// The address recorded before.
        from: SocketAddr,
    },
}

/// The SHA256 fingerprint of `key`, `SHA256:…` as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A known-hosts store: a file, which need not exist yet. Cheap to clone;
/// every call reads the file afresh, so every process sees the others'
/// entries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KnownHosts {
    path: Utf8PathBuf,
}

impl KnownHosts {
    /// The store at `path` (created, with its directory, on first record).
    pub fn new(path: impl Into<Utf8PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The usual place of the store: `$XDG_STATE_HOME/vmw/known_hosts`
    /// when `xdg_state_home` is an absolute path, else
    /// `~/.local/state/vmw/known_hosts`; `None` without either.
    pub fn default_path(
        xdg_state_home: Option<&Utf8Path>,
        home: Option<&Utf8Path>,
    ) -> Option<Utf8PathBuf> {
        let state = match xdg_state_home.filter(|p| p.is_absolute()) {
            Some(dir) => dir.to_owned(),
            None => home?.join(".local").join("state"),
        };
        Some(state.join("vmw").join("known_hosts"))
    }

    /// The store's file.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// The lock file beside the store.
    pub fn lock_path(&self) -> Utf8PathBuf {
        Utf8PathBuf::from(format!("{}.lock", self.path))
    }

    /// The name OpenSSH knows `identity`'s key by (its `HostKeyAlias`):
    /// `vmw-` and 32 hex digits of the identity's SHA-256.
    pub fn host_key_alias(identity: &str) -> String {
        let digest = Sha256::digest(identity.as_bytes());
        let mut alias = String::from("vmw-");
        for byte in &digest[..16] {
            let _ = write!(alias, "{byte:02x}");
        }
        alias
    }

    /// Every entry.
    pub fn entries(&self) -> Result<Vec<HostKeyEntry>, KnownHostsError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("reading", e)),
        };
        self.parse(&text)
    }

    /// The entry of `identity`, if one is recorded.
    pub fn get(&self, identity: &str) -> Result<Option<HostKeyEntry>, KnownHostsError> {
        Ok(self.entries()?.into_iter().find(|e| e.identity == identity))
    }

    /// Checks the key `presented` by `identity` at `address`: records it
    /// when the identity is new (trust on first use), accepts it when it is
    /// the recorded one (noting a new address), and refuses any other key
    /// with [`KnownHostsError::Changed`]. Blocks while another process
    /// changes the store.
    pub fn check(
        &self,
        identity: &str,
        address: SocketAddr,
        presented: &PublicKey,
    ) -> Result<HostKeyCheck, KnownHostsError> {
        // Known and unchanged: no lock and no write.
        if let Some(entry) = self.get(identity)? {
            if entry.key.key_data() != presented.key_data() {
                return Err(self.changed(&entry, address, presented));
            }
            if entry.address == address {
                return Ok(HostKeyCheck::Matched);
            }
        }
        self.update(
            |entries| match entries.iter_mut().find(|e| e.identity == identity) {
                Some(entry) if entry.key.key_data() != presented.key_data() => {
                    Err(self.changed(entry, address, presented))
                }
                Some(entry) if entry.address == address => Ok((HostKeyCheck::Matched, false)),
                Some(entry) => {
                    let from = entry.address;
                    entry.address = address;
                    Ok((HostKeyCheck::Moved { from }, true))
                }
                None => {
                    entries.push(HostKeyEntry {
                        identity: identity.to_owned(),
                        address,
                        key: PublicKey::from(presented.key_data().clone()),
                    });
                    Ok((HostKeyCheck::Recorded, true))
                }
            },
        )
    }

    /// Records `presented` as the key of `identity` at `address`, replacing
    /// the key recorded before: for a guest booted anew, which may have
    /// made new host keys (cloud-init does on the first boot of an
    /// instance, after `cloud-init clean` for one). Returns the fingerprint
    /// of the key replaced when it was another one.
    pub fn renew(
        &self,
        identity: &str,
        address: SocketAddr,
        presented: &PublicKey,
    ) -> Result<Option<String>, KnownHostsError> {
        if let Some(entry) = self.get(identity)?
            && entry.key.key_data() == presented.key_data()
            && entry.address == address
        {
            return Ok(None);
        }
        self.update(|entries| {
            let key = PublicKey::from(presented.key_data().clone());
            match entries.iter_mut().find(|e| e.identity == identity) {
                Some(entry) => {
                    let old =
                        (entry.key.key_data() != presented.key_data()).then(|| entry.fingerprint());
                    entry.key = key;
                    entry.address = address;
                    Ok((old, true))
                }
                None => {
                    entries.push(HostKeyEntry {
                        identity: identity.to_owned(),
                        address,
                        key,
                    });
                    Ok((None, true))
                }
            }
        })
    }

    /// Removes the entry of `identity` (a VM that was deleted); whether
    /// there was one.
    pub fn forget(&self, identity: &str) -> Result<bool, KnownHostsError> {
        self.update(|entries| {
            let before = entries.len();
            entries.retain(|e| e.identity != identity);
            let removed = entries.len() != before;
            Ok((removed, removed))
        })
    }

    /// The OpenSSH `known_hosts` line for `identity`'s recorded key at
    /// `address`: `10.0.0.5 ssh-ed25519 AAAA…` on port 22,
    /// `[10.0.0.5]:2222 ssh-ed25519 AAAA…` on any other. `None` when no key
    /// is recorded for `identity`.
    pub fn openssh_line(
        &self,
        identity: &str,
        address: SocketAddr,
    ) -> Result<Option<String>, KnownHostsError> {
        let Some(entry) = self.get(identity)? else {
            return Ok(None);
        };
        let key = key_text(&entry)?;
        Ok(Some(format!("{} {key}", openssh_host(address))))
    }

    /// The `ssh` arguments that make OpenSSH check `identity`'s host key
    /// strictly against this store: `-o UserKnownHostsFile=<store>`,
    /// `-o HostKeyAlias=<alias>`, `-o StrictHostKeyChecking=yes`,
    /// `-o CheckHostIP=no` and `-o UpdateHostKeys=no` (ssh never writes to
    /// the store). Each is one argument vector element: no shell involved.
    /// The key must have been recorded first (by a connection of vmw's),
    /// else ssh refuses the host.
    pub fn openssh_options(&self, identity: &str) -> Vec<String> {
        [
            format!("UserKnownHostsFile={}", openssh_quote_path(&self.path)),
            format!("HostKeyAlias={}", Self::host_key_alias(identity)),
            "StrictHostKeyChecking=yes".to_owned(),
            "CheckHostIP=no".to_owned(),
            "UpdateHostKeys=no".to_owned(),
        ]
        .into_iter()
        .flat_map(|option| ["-o".to_owned(), option])
        .collect()
    }

    /// Runs `change` on the entries under the lock, writing them back when
    /// it says they changed.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<HostKeyEntry>) -> Result<(T, bool), KnownHostsError>,
    ) -> Result<T, KnownHostsError> {
        let dir = self.dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| self.io(&format!("creating the directory {dir}"), e))?;
        let lock_path = self.lock_path();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| self.io(&format!("opening the lock file {lock_path}"), e))?;
        lock.lock()
            .map_err(|e| self.io(&format!("locking {lock_path}"), e))?;
        let mut entries = self.entries()?;
        let (out, changed) = change(&mut entries)?;
        if changed {
            self.write(&entries)?;
        }
        // Closing the lock file releases the lock.
        drop::<File>(lock);
        Ok(out)
    }

    /// Replaces the file with `entries`: a new file under a unique name in
    /// the same directory, synced, then renamed over the old one.
    fn write(&self, entries: &[HostKeyEntry]) -> Result<(), KnownHostsError> {
        let mut text = String::from(HEADER);
        for entry in entries {
            let _ = writeln!(
                text,
                "{} {} identity={} address={}",
                Self::host_key_alias(&entry.identity),
                key_text(entry)?,
                encode(&entry.identity),
                entry.address
            );
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".known_hosts.")
            .suffix(".tmp")
            .tempfile_in(self.dir())
            .map_err(|e| self.io("creating a temporary file beside it", e))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| self.io("writing a temporary file beside it", e))?;
        tmp.persist(&self.path)
            .map_err(|e| self.io("replacing it", e.error))?;
        Ok(())
    }

    fn parse(&self, text: &str) -> Result<Vec<HostKeyEntry>, KnownHostsError> {
        let mut entries: Vec<HostKeyEntry> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let corrupt = |problem: String| KnownHostsError::Corrupt {
                path: self.path.clone(),
                line: index + 1,
                problem,
            };
            let Some(entry) = parse_line(line).map_err(corrupt)? else {
                continue;
            };
            if entries.iter().any(|e| e.identity == entry.identity) {
                return Err(corrupt(format!(
                    "a second entry for the identity {}",
                    entry.identity
                )));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn changed(
        &self,
        entry: &HostKeyEntry,
        address: SocketAddr,
        presented: &PublicKey,
    ) -> KnownHostsError {
        KnownHostsError::Changed(Box::new(HostKeyChange {
            identity: entry.identity.clone(),
            address,
            recorded_address: entry.address,
            expected: entry.fingerprint(),
            presented: fingerprint(presented),
            path: self.path.clone(),
        }))
    }

    fn dir(&self) -> &Utf8Path {
        match self.path.parent() {
            Some(dir) if !dir.as_str().is_empty() => dir,
            _ => Utf8Path::new("."),
        }
    }

    fn io(&self, what: &str, source: std::io::Error) -> KnownHostsError {
        KnownHostsError::Io {
            path: self.path.clone(),
            what: what.to_owned(),
            source,
        }
    }
}

/// One line of the store: `None` for blank lines, comments and lines that
/// are not vmw's (no `identity=`).
fn parse_line(line: &str) -> Result<Option<HostKeyEntry>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    let Some(encoded) = fields.iter().find_map(|f| f.strip_prefix("identity=")) else {
        return Ok(None);
    };
    let identity = decode(encoded).ok_or_else(|| format!("bad identity {encoded:?}"))?;
    let [alias, kind, data, ..] = fields[..] else {
        return Err("expected: alias, key type, key, identity=…, address=…".to_owned());
    };
    if alias != KnownHosts::host_key_alias(&identity) {
        return Err(format!(
            "the host alias {alias} is not the one of the identity {identity}"
        ));
    }
    let key = PublicKey::from_openssh(&format!("{kind} {data}"))
        .map_err(|e| format!("bad {kind} key: {e}"))?;
    let address = fields
        .iter()
        .find_map(|f| f.strip_prefix("address="))
        .ok_or_else(|| "no address= field".to_owned())?;
    let address = address
        .parse()
        .map_err(|_| format!("bad address {address:?}"))?;
    Ok(Some(HostKeyEntry {
        identity,
        address,
        key,
    }))
}

/// `type base64` of an entry's key, without a comment.
fn key_text(entry: &HostKeyEntry) -> Result<String, KnownHostsError> {
    PublicKey::from(entry.key.key_data().clone())
        .to_openssh()
        .map(|text| text.trim().to_owned())
        .map_err(|e| KnownHostsError::Encode {
            identity: entry.identity.clone(),
            problem: e.to_string(),
        })
}

/// How OpenSSH names a host in `known_hosts`: the bare address on port 22,
/// `[address]:port` on any other.
fn openssh_host(address: SocketAddr) -> String {
    if address.port() == 22 {
        address.ip().to_string()
    } else {
        format!("[{}]:{}", address.ip(), address.port())
    }
}

/// A path as one value of an `ssh -o` option: in double quotes (ssh splits
/// option values at spaces), `\` and `"` escaped, and `%` doubled (ssh
/// expands `%` tokens in `UserKnownHostsFile`).
fn openssh_quote_path(path: &Utf8Path) -> String {
    let mut out = String::from("\"");
    for c in path.as_str().chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '%' => out.push_str("%%"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The identity as one whitespace-free field: bytes other than printable
/// ASCII, and `%`, become `%XX`.
fn encode(identity: &str) -> String {
    let mut out = String::with_capacity(identity.len());
    for byte in identity.bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The inverse of [`encode`]; `None` for a bad escape or bytes that are
/// not UTF-8.
fn decode(field: &str) -> Option<String> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl vmw_hints::Hints for KnownHostsError {
    fn hints(&self) -> Vec<String> {
        self.hint_text().into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAqk30vVOk9GiUyGgwUq1fJL5vST5V2IWT8TL/vOv5J3";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJS4tgg0EpiVWWIK8RUGznutDPTbCo8P6+MeDIYAP5qI";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).unwrap()
    }

    fn store() -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().join("state/vmw/known_hosts")).unwrap();
        (dir, KnownHosts::new(path))
    }

    #[test]
    fn identities_survive_encoding() {
        for identity in [
            "/DC/vm/My Folder/web-1 4215c8a2-0000-1111-2222-333344445555",
            "100% ünïcødé\ttab\nnewline",
            "",
            "plain",
        ] {
            let field = encode(identity);
            assert!(!field.contains(char::is_whitespace), "{field:?}");
            assert_eq!(decode(&field).as_deref(), Some(identity));
        }
        assert_eq!(decode("bad%4"), None);
        assert_eq!(decode("bad%zz"), None);
        assert_eq!(decode("%FF"), None, "not UTF-8");
    }

    #[test]
    fn addresses_are_written_as_openssh_writes_them() {
        assert_eq!(openssh_host("10.0.0.5:22".parse().unwrap()), "10.0.0.5");
        assert_eq!(
            openssh_host("127.0.0.1:2222".parse().unwrap()),
            "[127.0.0.1]:2222"
        );
        assert_eq!(openssh_host("[::1]:2222".parse().unwrap()), "[::1]:2222");
        assert_eq!(openssh_host("[fe80::1]:22".parse().unwrap()), "fe80::1");
    }

    #[test]
    fn aliases_are_stable_and_distinct() {
        let a = KnownHosts::host_key_alias("vm-a");
        assert_eq!(a, KnownHosts::host_key_alias("vm-a"));
        assert_eq!(a.len(), 4 + 32);
        assert!(a.starts_with("vmw-"));
        assert_ne!(a, KnownHosts::host_key_alias("VM-A"), "not case-folded");
        // SHA-256("abc") starts ba7816bf8f01cfea414140de5dae2223.
        assert_eq!(
            KnownHosts::host_key_alias("abc"),
            "vmw-ba7816bf8f01cfea414140de5dae2223"
        );
    }

    #[test]
    fn default_paths_follow_xdg() {
        let home = Utf8Path::new("/home/me");
        assert_eq!(
            KnownHosts::default_path(None, Some(home)).unwrap(),
            "/home/me/.local/state/vmw/known_hosts"
        );
        assert_eq!(
            KnownHosts::default_path(Some(Utf8Path::new("/xdg")), Some(home)).unwrap(),
            "/xdg/vmw/known_hosts"
        );
        assert_eq!(
            KnownHosts::default_path(Some(Utf8Path::new("relative")), Some(home)).unwrap(),
            "/home/me/.local/state/vmw/known_hosts",
            "a relative XDG_STATE_HOME is ignored"
        );
        assert_eq!(KnownHosts::default_path(None, None), None);
    }

    #[test]
    fn fingerprints_are_openssh_fingerprints() {
        // As `ssh-keygen -lf` prints it for KEY_A.
        assert_eq!(
            fingerprint(&key(KEY_A)),
            "SHA256:A1Vp4PadCtc0sZcM5nuRt+9sCBWeJvqtZbsohP9AL3w"
        );
    }

    #[test]
    fn first_use_records_then_matches_moves_and_refuses() {
        let (_dir, store) = store();
        let here: SocketAddr = "10.0.0.5:22".parse().unwrap();
        let there: SocketAddr = "10.0.0.6:22".parse().unwrap();
        assert_eq!(store.get("vm a").unwrap(), None);
        assert_eq!(
            store.check("vm a", here, &key(KEY_A)).unwrap(),
            HostKeyCheck::Recorded
        );
        assert_eq!(
            store.check("vm a", here, &key(KEY_A)).unwrap(),
            HostKeyCheck::Matched
        );
        assert_eq!(
            store.check("vm a", there, &key(KEY_A)).unwrap(),
            HostKeyCheck::Moved { from: here }
        );
        assert_eq!(store.get("vm a").unwrap().unwrap().address, there);

        let err = store.check("vm a", there, &key(KEY_B)).unwrap_err();
        let text = format!("{err}\n{}", err.hint_text().unwrap_or_default());
        for part in [
            "vm a",
            "10.0.0.6:22",
            &fingerprint(&key(KEY_A)),
            &fingerprint(&key(KEY_B)),
            store.path().as_str(),
            "identity=vm%20a",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
        // The refused key replaced nothing.
        assert_eq!(store.get("vm a").unwrap().unwrap().key, key(KEY_A));

        // A new identity at the same address has its own entry.
        assert_eq!(
            store.check("vm b", there, &key(KEY_B)).unwrap(),
            HostKeyCheck::Recorded
        );
        assert_eq!(store.entries().unwrap().len(), 2);

        assert!(store.forget("vm a").unwrap());
        assert!(!store.forget("vm a").unwrap());
        assert_eq!(
            store.check("vm a", there, &key(KEY_B)).unwrap(),
            HostKeyCheck::Recorded,
            "a forgotten identity starts over"
        );
    }

    #[test]
    fn the_file_is_openssh_shaped_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_dir, store) = store();
        store
            .check("id 1", "127.0.0.1:2222".parse().unwrap(), &key(KEY_A))
            .unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        let line = text.lines().nth(1).unwrap();
        assert_eq!(
            line,
            format!(
                "{} {KEY_A} identity=id%201 address=127.0.0.1:2222",
                KnownHosts::host_key_alias("id 1")
            )
        );
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        assert_eq!(
            store
                .openssh_line("id 1", "127.0.0.1:2222".parse().unwrap())
                .unwrap()
                .unwrap(),
            format!("[127.0.0.1]:2222 {KEY_A}")
        );
        assert_eq!(
            store
                .openssh_line("other", "127.0.0.1:22".parse().unwrap())
                .unwrap(),
            None
        );
    }

    #[test]
    fn foreign_lines_are_skipped_and_broken_ones_are_errors() {
        let (_dir, store) = store();
        fs::create_dir_all(store.dir()).unwrap();
        let ours = format!(
            "{} {KEY_A} identity=x address=10.0.0.1:22",
            KnownHosts::host_key_alias("x")
        );
        fs::write(
            store.path(),
            format!("# comment\n\n10.0.0.9 {KEY_B}\n{ours}\n"),
        )
        .unwrap();
        let entries = store.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].identity, "x");

        for (broken, problem) in [
            (ours.replace("10.0.0.1:22", "nowhere"), "bad address"),
            (ours.replace("AAAAC3", "BBBBC3"), "bad ssh-ed25519 key"),
            (ours.replace("identity=x", "identity=y"), "host alias"),
            (ours.replace(" address=10.0.0.1:22", ""), "no address"),
            (format!("{ours}\n{ours}"), "a second entry"),
        ] {
            fs::write(store.path(), format!("# c\n{broken}\n")).unwrap();
            let err = store.entries().unwrap_err();
            let text = err.to_string();
            assert!(text.contains(problem), "{problem}: {text}");
            assert!(text.contains("line 2") || text.contains("line 3"), "{text}");
            assert!(
                store
                    .check("x", "10.0.0.1:22".parse().unwrap(), &key(KEY_A))
                    .is_err(),
                "a broken store accepts nothing"
            );
        }
    }

    #[test]
    fn paths_are_quoted_for_ssh_options() {
        assert_eq!(
            openssh_quote_path(Utf8Path::new("/a b/100%/q\"\\")),
            r#""/a b/100%%/q\"\\""#
        );
        let store = KnownHosts::new("/s/known_hosts");
        let options = store.openssh_options("vm");
        assert_eq!(options.len(), 10);
        assert!(options.iter().step_by(2).all(|o| o == "-o"));
        assert_eq!(options[1], "UserKnownHostsFile=\"/s/known_hosts\"");
        assert_eq!(
            options[3],
            format!("HostKeyAlias={}", KnownHosts::host_key_alias("vm"))
        );
    }
}
