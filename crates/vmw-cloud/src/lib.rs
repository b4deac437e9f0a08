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
//!     instance_type: Some("2c4g".into()),
//!     ..LaunchOptions::default()
//! };
//! let instance = cloud.launch(&image.name, &options).await?;
//! println!("{} is at {}", instance.name(), instance.ip().await?);
//! cloud.clean().await?;
//! # Ok(()) }
//! ```

mod builder;
mod checkpoints;
mod cloud;
mod error;
mod evidence;
mod images;
mod inner;
mod instance;
mod inventory;
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
pub use instance::{Instance, PowerOff, usable_address};
pub use inventory::{Scope, VmRecord};
pub use keys::{KeyPair, expand_home};
pub use launch::{Fleet, LINKED_BASE};
pub use options::{InstanceType, LaunchOptions, WaitStage, check_vm_name};
pub use ownership::Removal;
pub use progress::{Step, StepFn, StepHook};
pub use settings::{Settings, TEMPLATE_PREFIX};
pub use tag::{
    Kind, MAX_TAG_LEN, Marker, Tag, annotation, annotation_glob, annotation_prefix_for,
    new_launch_id, parse_annotation, parse_marker, tag_problems, timestamp_suffix,
};
pub use template::{
    Check, ImportedTemplate, OVF_ENV_KEY, Requirement, TemplateImport, TemplateReport, prepare_spec,
};
/// The cancellation token [`LaunchOptions::cancel`] takes (from tokio-util).
pub use tokio_util::sync::CancellationToken;
// What users of this crate meet in its API and its errors, so that they
// need no other vmw crate: govc's process backend, its target and error
// classes, the power state, and the SSH types of `Instance`.
pub use vmw_govc::parse::{AboutInfo, PowerState};
pub use vmw_govc::{ErrorKind, GovcError, GovcTarget, ProcessGovc, find_govc};
pub use vmw_ssh::{Cmd, ExecOptions, ExecResult, SshConfig, SshError};
