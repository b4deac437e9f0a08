//! Turns (user data, SSH public key, VM name) into the guestinfo values that cloud-init's
//! VMware datasource reads.
//!
//! This crate is pure: no processes, no network, no files. It hands back bytes; writing them
//! where govc can read them (`govc vm.change -f KEY=FILE`) is the caller's business.
//!
//! Three steps, each usable alone:
//!
//! 1. [`PublicKey::parse`] checks the key: one line of a `.pub` file, a known algorithm, data
//!    that decodes and names the same algorithm.
//! 2. [`inject_key`] puts the key into the user data, whatever its format. `#cloud-config`
//!    text is edited in place (comments, order and spelling of the user's text survive) and
//!    every other format cloud-init accepts (scripts, boothooks, includes, MIME multipart,
//!    gzip, ...) is kept untouched in a MIME multipart next to a small cloud-config part that
//!    carries the key, with merge settings that append it to the user's list.
//! 3. [`encode`] turns [`Metadata`] (a unique `instance-id` and `local-hostname` per VM, plus
//!    any extra entries) and the user data into ordered guestinfo entries, choosing `base64`
//!    or `gzip+base64` and refusing values that vSphere could not carry; see [`guestinfo`]
//!    for the limits. [`decode`] reads such values back.
//!
//! ```
//! use vmw_userdata::{Field, Metadata, PublicKey, encode, inject_key};
//!
//! let key = PublicKey::parse(
//!     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBvRNLZQfZdf1PhLV9m5MVDkCZvPx8hRwBbq1bHr7kX me@laptop\n",
//! )?;
//! let user_data = b"#!/bin/sh\necho 'hello from the first boot' > /etc/motd\n";
//! let with_key = inject_key(Some(user_data), &key)?;
//! let info = encode(&Metadata::for_vm("ci-0612-1"), with_key.bytes(), None)?;
//!
//! for entry in info.entries() {
//!     // Each value goes to govc as a file: `govc vm.change -vm NAME -f KEY=PATH`.
//!     assert!(!entry.value().ends_with(b"\n"));
//! }
//! let user_data_back = info.decode(Field::UserData)?.unwrap_or_default();
//! assert_eq!(user_data_back, with_key.bytes());
//! # Ok::<(), vmw_userdata::UserDataError>(())
//! ```

mod cloud_config;
mod error;
mod format;
pub mod guestinfo;
mod inject;
mod key;
mod metadata;
mod mime;

pub use cloud_config::AUTHORIZED_KEYS;
pub use error::UserDataError;
pub use format::{Format, detect_format};
pub use guestinfo::{
    Encoding, Entry, Field, GZIP_THRESHOLD_BYTES, GuestInfo, MAX_VALUE_BYTES,
    METADATA_ENCODING_KEY, METADATA_KEY, USERDATA_ENCODING_KEY, USERDATA_KEY,
    VENDORDATA_ENCODING_KEY, VENDORDATA_KEY, decode, encode, encode_value,
};
pub use inject::{Injected, KEY_PART_FILENAME, KEY_PART_MERGE_TYPE, Outcome, inject_key};
pub use key::{KEY_ALGORITHMS, PublicKey};
pub use metadata::{INSTANCE_ID, LOCAL_HOSTNAME, Metadata};
/// What would fix an error of this crate (the trait every vmw error implements).
pub use vmw_hints::Hints;

/// The README's example, compiled and run as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
