//! The VMware vSphere instance lifecycle of vmw, generic over the
//! [`vmw_govc::Govc`] backend.
//!
//! A [`Cloud`] launches [`Instance`]s by cloning `TEMPLATE-cloud-init-<release>`
//! source VMs, with the user's data and the cloud's SSH key in guestinfo;
//! launches fleets concurrently ([`Cloud::launch_many`]); snapshots instances
//! into images; and cleans up everything it made ([`Cloud::clean`]), or
//! everything any vmw run left behind ([`Cloud::sweep`], by the annotation
//! vmw puts on its VMs).
//!
//! What it does better than pycloudlib's VMware backend:
//! - every launch option is checked, and the guestinfo encoded, before any VM
//!   is touched; a launch that fails after the clone destroys the VM before
//!   returning, and the error names the failed step;
//! - power operations and deletion are idempotent (govc's error text is
//!   actually read), so no VM is leaked because of its power state;
//! - each instance gets its own `instance-id`; the guest address is never a
//!   link-local IPv6 one;
//! - fleets launch and clean concurrently, with bounded concurrency;
//! - user data of any format keeps its text, and secrets never reach govc's
//!   command line;
//! - a resource pool can be configured, so multi-cluster vCenters work.
//!
//! ```no_run
//! use vmw_cloud::{CloudBuilder, LaunchOptions, WaitStage};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cloud = CloudBuilder::new("me").build().await?; // pycloudlib.toml + govc on PATH
//! let image = cloud.released_image("jammy").await?;
//! let options = LaunchOptions {
//!     user_data: Some(b"#cloud-config\npackages: [hello]\n".to_vec()),
//!     wait: WaitStage::Ip,
//!     instance_type: Some("2c4g".parse()?),
//!     ..LaunchOptions::default()
//! };
//! let instance = cloud.launch(&image, &options).await?;
//! println!("{} is at {}", instance.name(), instance.ip().await?);
//! cloud.clean().await?;
//! # Ok(()) }
//! ```
//!
//! Everything a user of this crate meets in its API is reachable from it:
//! the types of vmw-govc, vmw-config, vmw-ssh and vmw-userdata that its
//! signatures and errors show are re-exported here, so no other vmw crate
//! is needed. [`Cloud`] and [`Instance`] drive the real govc unless built
//! with another backend ([`CloudBuilder::build_with`], e.g. a mock in
//! tests). pycloudlib's names for its calls are in [`compat`]; every error
//! says what would fix it through [`Hints`].

mod builder;
mod checkpoints;
mod cloud;
pub mod compat;
mod error;
mod evidence;
mod images;
mod inner;
mod instance;
mod inventory;
mod journal;
mod keys;
mod launch;
mod lookups;
mod options;
mod ownership;
pub mod probe;
mod progress;
mod settings;
mod tag;
mod template;

pub use builder::CloudBuilder;
pub use checkpoints::Checkpoint;
pub use cloud::Cloud;
pub use error::{CleanError, CloudError, ErrorCategory};
pub use evidence::Evidence;
pub use images::Image;
pub use instance::{Instance, PowerOff, Restart};
pub use inventory::{Scope, UnmarkedVm, VmRecord};
pub use journal::{INTERRUPTED_NOTE, Recovery};
pub use keys::KeyPair;
pub use launch::{Fleet, LINKED_BASE};
pub use options::{InstanceType, LaunchOptions, WaitStage};
pub use ownership::Removal;
pub use progress::{Step, StepHook};
pub use settings::{Settings, TEMPLATE_PREFIX};
pub use tag::{Kind, MAX_TAG_LEN, Marker, Tag, annotation_glob, parse_marker};
pub use template::{
    Check, ImportedTemplate, Requirement, TemplateImport, TemplateReport, prepare_spec,
};

/// The cancellation token [`Cloud::cancel_on`] takes (from tokio-util).
pub use tokio_util::sync::CancellationToken;
/// What would fix an error (every error type of vmw implements it).
pub use vmw_hints::{Hints, render};

// What users of this crate meet in its signatures and errors, so that they
// need no other vmw crate.
/// The YAML mapping of [`LaunchOptions::metadata`] (serde_yaml_ng).
pub use serde_yaml_ng::Mapping;
/// The configuration and where it is read from (vmw-config).
pub use vmw_config::{ConfigError, Environment, Loader, Overrides, Secret, VmwareConfig, env};
/// govc: the backend trait, the real process backend, VM paths, errors
/// and the answers vmw reads (vmw-govc).
pub use vmw_govc::parse::{AboutInfo, ImportOptions, PowerState};
pub use vmw_govc::{
    ErrorKind, Govc, GovcError, GovcTarget, ProcessGovc, VmRef, VmRefError, find_govc,
};
/// Guest access over SSH (vmw-ssh).
pub use vmw_ssh::{
    CloudInitErrors, Cmd, ExecOptions, ExecResult, Guest, GuestExt, HostKeyPolicy, KnownHosts,
    KnownHostsError, ReadyTimeouts, SshConfig, SshError, SshGuest,
};
/// The public key of a [`KeyPair`] and user-data errors (vmw-userdata).
pub use vmw_userdata::{PublicKey, UserDataError};
