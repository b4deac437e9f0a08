//! Encoding metadata and user data into guestinfo values, and reading them back.
//!
//! # Size limits
//!
//! cloud-init reads each value inside the guest through VMware Tools' guest RPC channel.
//! VMware's Guest SDK programming guide ("In-Guest Communication Limits") caps a message on
//! that channel at 64 KB including overhead and advises keeping values to about 63 KB per
//! message; open-vm-tools fixes the same cap as `GUESTMSG_MAX_IN_SIZE` (64 * 1024) in
//! `lib/include/guest_msg_def.h`, and VMware's own vm-operator rejects cloud-init user data
//! whose gzip+base64 form exceeds 64 KiB for that reason. The whole `.vmx` file that stores
//! these values is further capped at 1 MiB by default (`tools.setInfo.sizeLimit`), which the
//! at most six values written here stay well below. So one encoded value may be at most
//! [`MAX_VALUE_BYTES`] = 63 KiB.
//!
//! # How the encoding is chosen
//!
//! A value is base64 (readable back with `govc vm.info -e` and `base64 -d`) while that form
//! is at most [`GZIP_THRESHOLD_BYTES`] = 16 KiB; past that, gzip+base64 is used when it is
//! smaller. Above 16 KiB compression starts to pay (YAML and scripts typically shrink 3 to 5
//! times), the `.vmx` and every read of the VM's configuration stay small, and the data keeps
//! a wide margin to the limit. When even the smaller form is over [`MAX_VALUE_BYTES`],
//! encoding fails before any VM is touched.

use std::io::{Read as _, Write as _};
use std::str::FromStr;

use base64::Engine as _;

use crate::error::{UserDataError, shorten};
use crate::metadata::Metadata;

/// The guestinfo key of the metadata.
pub const METADATA_KEY: &str = "guestinfo.metadata";
/// The guestinfo key naming the metadata's encoding.
pub const METADATA_ENCODING_KEY: &str = "guestinfo.metadata.encoding";
/// The guestinfo key of the user data.
pub const USERDATA_KEY: &str = "guestinfo.userdata";
/// The guestinfo key naming the user data's encoding.
pub const USERDATA_ENCODING_KEY: &str = "guestinfo.userdata.encoding";
/// The guestinfo key of the vendor data.
pub const VENDORDATA_KEY: &str = "guestinfo.vendordata";
/// The guestinfo key naming the vendor data's encoding.
pub const VENDORDATA_ENCODING_KEY: &str = "guestinfo.vendordata.encoding";

/// The largest encoded guestinfo value written, in bytes: 63 KiB, the per-message size
/// VMware advises for its 64 KB guest RPC limit (see the module documentation).
pub const MAX_VALUE_BYTES: usize = 63 * 1024;

/// Above this many bytes of base64, a value is gzip-compressed when that makes it smaller.
pub const GZIP_THRESHOLD_BYTES: usize = 16 * 1024;

/// How a guestinfo value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Base64 of the raw bytes (cloud-init also accepts the spelling `b64`).
    Base64,
    /// Base64 of the gzip-compressed bytes (cloud-init also accepts `gz+b64`).
    GzipBase64,
}

impl Encoding {
    /// The name written into the `.encoding` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base64 => "base64",
            Self::GzipBase64 => "gzip+base64",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encoding {
    type Err = UserDataError;

    /// Accepts every spelling cloud-init accepts, ignoring surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "base64" | "b64" => Ok(Self::Base64),
            "gzip+base64" | "gz+b64" => Ok(Self::GzipBase64),
            other => Err(UserDataError::UnknownEncoding {
                found: shorten(other, 40),
            }),
        }
    }
}

/// The pieces of data the VMware datasource reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `guestinfo.metadata`.
    Metadata,
    /// `guestinfo.userdata`.
    UserData,
    /// `guestinfo.vendordata`.
    VendorData,
}

impl Field {
    /// The guestinfo key holding the value.
    pub fn key(self) -> &'static str {
        match self {
            Self::Metadata => METADATA_KEY,
            Self::UserData => USERDATA_KEY,
            Self::VendorData => VENDORDATA_KEY,
        }
    }

    /// The guestinfo key naming the value's encoding.
    pub fn encoding_key(self) -> &'static str {
        match self {
            Self::Metadata => METADATA_ENCODING_KEY,
            Self::UserData => USERDATA_ENCODING_KEY,
            Self::VendorData => VENDORDATA_ENCODING_KEY,
        }
    }
}

/// One guestinfo key and the bytes to store under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    key: &'static str,
    value: Vec<u8>,
}

impl Entry {
    /// The guestinfo key, e.g. `guestinfo.userdata`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// The value, exactly as it must be stored: ASCII, no trailing newline. Written to a file
    /// for `govc vm.change -f KEY=FILE`, which stores a file's bytes verbatim.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// The guestinfo entries of one VM, in the order they should be written: each value before
/// its encoding, metadata first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInfo {
    entries: Vec<Entry>,
}

impl GuestInfo {
    /// All entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_slice())
    }

    /// The encoding chosen for `field`, if the field is present.
    pub fn encoding(&self, field: Field) -> Option<Encoding> {
        let raw = self.get(field.encoding_key())?;
        std::str::from_utf8(raw).ok()?.parse().ok()
    }

    /// The decoded bytes of `field`, if present.
    ///
    /// # Errors
    /// As [`decode`].
    pub fn decode(&self, field: Field) -> Result<Option<Vec<u8>>, UserDataError> {
        let Some(value) = self.get(field.key()) else {
            return Ok(None);
        };
        let encoding = self.get(field.encoding_key()).unwrap_or_default();
        decode(value, &String::from_utf8_lossy(encoding)).map(Some)
    }
}

/// Encodes the metadata, the user data and optional vendor data into guestinfo entries.
///
/// # Errors
/// Metadata errors (see [`Metadata::to_yaml`]) and [`UserDataError::ValueTooLarge`].
///
/// ```
/// use vmw_userdata::{Field, Metadata, encode, USERDATA_KEY};
/// let info = encode(&Metadata::for_vm("vm-1"), b"#cloud-config\n{}\n", None)?;
/// let keys: Vec<&str> = info.entries().iter().map(|e| e.key()).collect();
/// assert_eq!(keys, [
///     "guestinfo.metadata", "guestinfo.metadata.encoding",
///     "guestinfo.userdata", "guestinfo.userdata.encoding",
/// ]);
/// assert_eq!(info.get(USERDATA_KEY), Some(&b"I2Nsb3VkLWNvbmZpZwp7fQo="[..]));
/// assert_eq!(info.decode(Field::UserData)?.as_deref(), Some(&b"#cloud-config\n{}\n"[..]));
/// # Ok::<(), vmw_userdata::UserDataError>(())
/// ```
pub fn encode(
    metadata: &Metadata,
    user_data: &[u8],
    vendor_data: Option<&[u8]>,
) -> Result<GuestInfo, UserDataError> {
    let metadata = metadata.to_yaml()?;
    let mut fields = vec![
        (Field::Metadata, metadata.as_bytes()),
        (Field::UserData, user_data),
    ];
    if let Some(vendor) = vendor_data {
        fields.push((Field::VendorData, vendor));
    }
    let mut entries = Vec::with_capacity(fields.len() * 2);
    for (field, data) in fields {
        let (encoding, value) = encode_value(field, data)?;
        entries.push(Entry {
            key: field.key(),
            value: value.into_bytes(),
        });
        entries.push(Entry {
            key: field.encoding_key(),
            value: encoding.as_str().as_bytes().to_vec(),
        });
    }
    Ok(GuestInfo { entries })
}

/// Encodes one value, choosing the encoding as the module documentation describes.
///
/// # Errors
/// [`UserDataError::ValueTooLarge`] when even the smaller encoding exceeds
/// [`MAX_VALUE_BYTES`].
pub fn encode_value(field: Field, data: &[u8]) -> Result<(Encoding, String), UserDataError> {
    let plain = base64::engine::general_purpose::STANDARD.encode(data);
    let chosen = if plain.len() <= GZIP_THRESHOLD_BYTES {
        (Encoding::Base64, plain)
    } else {
        let compressed = base64::engine::general_purpose::STANDARD.encode(gzip(data));
        if compressed.len() < plain.len() {
            (Encoding::GzipBase64, compressed)
        } else {
            (Encoding::Base64, plain)
        }
    };
    if chosen.1.len() > MAX_VALUE_BYTES {
        return Err(UserDataError::ValueTooLarge {
            key: field.key(),
            size: chosen.1.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(chosen)
}

/// Gzip with a fixed header (no name, no timestamp), so equal input gives equal output.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let written = encoder.write_all(data).and_then(|()| encoder.finish());
    written.unwrap_or_default()
}

/// Decodes a guestinfo value as cloud-init does: `encoding` is `base64`/`b64`,
/// `gzip+base64`/`gz+b64`, or empty for a value stored as plain text. Whitespace in base64
/// (a trailing newline, line wrapping) is ignored.
///
/// # Errors
/// [`UserDataError::UnknownEncoding`] and [`UserDataError::Undecodable`].
pub fn decode(value: &[u8], encoding: &str) -> Result<Vec<u8>, UserDataError> {
    if encoding.trim().is_empty() {
        return Ok(value.to_vec());
    }
    let encoding: Encoding = encoding.parse()?;
    let compact: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|err| UserDataError::Undecodable {
            encoding: encoding.as_str(),
            reason: format!("not valid base64 ({err})"),
        })?;
    match encoding {
        Encoding::Base64 => Ok(raw),
        Encoding::GzipBase64 => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .map_err(|err| UserDataError::Undecodable {
                    encoding: encoding.as_str(),
                    reason: format!("not valid gzip ({err})"),
                })?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic data that compresses poorly (a simple xorshift stream).
    fn noise(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn small_values_are_base64_without_newline() {
        let (encoding, value) = encode_value(Field::UserData, b"#cloud-config\n").unwrap();
        assert_eq!(encoding, Encoding::Base64);
        assert_eq!(value, "I2Nsb3VkLWNvbmZpZwo=");
        assert!(!value.ends_with('\n'));
    }

    #[test]
    fn threshold_switches_to_gzip() {
        // Exactly at the threshold: 12 KiB of input is 16 KiB of base64.
        let at = vec![b'a'; GZIP_THRESHOLD_BYTES / 4 * 3];
        assert_eq!(
            encode_value(Field::UserData, &at).unwrap().0,
            Encoding::Base64
        );
        let above = vec![b'a'; GZIP_THRESHOLD_BYTES / 4 * 3 + 3];
        let (encoding, value) = encode_value(Field::UserData, &above).unwrap();
        assert_eq!(encoding, Encoding::GzipBase64);
        assert_eq!(decode(value.as_bytes(), "gzip+base64").unwrap(), above);
    }

    #[test]
    fn large_compressible_data_fits() {
        let text = "runcmd:\n  - echo hello world from a long script line\n".repeat(4000);
        assert!(text.len() > 3 * MAX_VALUE_BYTES);
        let (encoding, value) = encode_value(Field::UserData, text.as_bytes()).unwrap();
        assert_eq!(encoding, Encoding::GzipBase64);
        assert!(value.len() <= MAX_VALUE_BYTES);
        assert_eq!(decode(value.as_bytes(), "gz+b64").unwrap(), text.as_bytes());
    }

    #[test]
    fn incompressible_data_stays_base64_and_too_large_fails() {
        let data = noise(40 * 1024);
        let (encoding, value) = encode_value(Field::UserData, &data).unwrap();
        assert_eq!(encoding, Encoding::Base64);
        assert_eq!(decode(value.as_bytes(), "b64").unwrap(), data);

        let too_big = noise(MAX_VALUE_BYTES);
        let err = encode_value(Field::VendorData, &too_big).unwrap_err();
        match &err {
            UserDataError::ValueTooLarge { key, size, limit } => {
                assert_eq!(*key, VENDORDATA_KEY);
                assert!(size > limit);
                assert_eq!(*limit, MAX_VALUE_BYTES);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("guestinfo.vendordata"));
    }

    #[test]
    fn encode_orders_entries_and_round_trips() {
        let info = encode(
            &Metadata::for_vm("vm-9"),
            b"#!/bin/sh\n",
            Some(b"#cloud-config\n"),
        )
        .unwrap();
        let keys: Vec<&str> = info.entries().iter().map(Entry::key).collect();
        assert_eq!(
            keys,
            [
                METADATA_KEY,
                METADATA_ENCODING_KEY,
                USERDATA_KEY,
                USERDATA_ENCODING_KEY,
                VENDORDATA_KEY,
                VENDORDATA_ENCODING_KEY
            ]
        );
        assert_eq!(
            info.decode(Field::Metadata).unwrap().unwrap(),
            b"instance-id: vm-9\nlocal-hostname: vm-9\n"
        );
        assert_eq!(
            info.decode(Field::VendorData).unwrap().unwrap(),
            b"#cloud-config\n"
        );
        assert_eq!(info.encoding(Field::UserData), Some(Encoding::Base64));
        assert!(
            info.entries()
                .iter()
                .all(|e| e.value().is_ascii() && !e.value().ends_with(b"\n"))
        );
    }

    #[test]
    fn decode_accepts_cloud_init_spellings_and_refuses_others() {
        assert_eq!(decode(b"aGk=\n", "base64").unwrap(), b"hi");
        assert_eq!(decode(b"aGk=", " b64 ").unwrap(), b"hi");
        assert_eq!(decode(b"plain", "").unwrap(), b"plain");
        assert!(matches!(
            decode(b"aGk=", "rot13"),
            Err(UserDataError::UnknownEncoding { .. })
        ));
        assert!(matches!(
            decode(b"!!", "base64"),
            Err(UserDataError::Undecodable { .. })
        ));
        assert!(matches!(
            decode(b"aGk=", "gzip+base64"),
            Err(UserDataError::Undecodable { .. })
        ));
    }

    #[test]
    fn gzip_output_is_deterministic() {
        assert_eq!(gzip(b"same"), gzip(b"same"));
    }
}
