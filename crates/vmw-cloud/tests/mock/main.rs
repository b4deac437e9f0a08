//! The cloud layer against a scripted govc holding a small fake inventory
//! (`vmw_govc::fake`): the exact command line of every step, a failure
//! injected at each step of launch, snapshot and delete (with the rollback
//! calls and the errors returned), idempotent power and deletion, the
//! ownership checks before every destruction, clones of unknown outcome,
//! cancellation, cleanup, and names and ordering under concurrent launches.
//!
//! One test binary, one module a topic; [`support`] holds what they share.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

mod cancel;
mod cleanup;
mod clone_outcome;
mod concurrency;
mod console;
mod delete;
mod images;
mod ip;
mod journal;
mod launch;
mod names;
mod power;
mod rollback;
mod snapshot;
mod sources;
mod support;
mod validation;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vmw_cloud::{
    Cloud, CloudBuilder, CloudError, Hints, Image, KeyPair, Kind, LaunchOptions, Removal, Scope,
    Settings, Step, WaitStage, parse_marker,
};
use vmw_config::{Secret, VmwareConfig};
use vmw_govc::fake::{
    Answer, Calls, Inventory, fail, healthy, killed, out, power_state_json, scripted, silent,
    vm_name_of, vm_not_found,
};
use vmw_govc::{Command, ErrorKind, Govc, GovcError, MockGovc, VmRef};

use support::*;
