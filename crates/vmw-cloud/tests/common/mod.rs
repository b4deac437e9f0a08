//! What the vmw-cloud test binaries share: a cloud built for a test on any
//! govc (a simulator's or a scripted one), with a fresh key pair and an SSH
//! host key store in a temporary directory (never the user's), and the
//! guestinfo values a simulator's VM carries, decoded.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use camino::Utf8Path;
use vmw_cloud::{Cloud, CloudBuilder, KeyPair, Settings};
use vmw_config::VmwareConfig;
use vmw_govc::{Govc, ProcessGovc};
use vmw_testbed::Vcsim;
use vmw_userdata::{Field, decode};

/// A cloud tagged `tag` on `govc`, without timestamps in its names: its key
/// pair (named `tag`) is generated in `dir/keys` (or reused from there),
/// and its SSH host keys are pinned in `dir/known_hosts` unless `settings`
/// name a store. The environment is empty: no SSH agent of whoever runs
/// the tests takes part.
pub fn cloud_in<G: Govc + 'static>(
    govc: G,
    config: VmwareConfig,
    tag: &str,
    mut settings: Settings,
    dir: &Utf8Path,
) -> Cloud<G> {
    let key = KeyPair::generated_in(&dir.join("keys"), tag.into()).unwrap();
    if settings.known_hosts.is_none() {
        settings.known_hosts = Some(vmw_ssh::KnownHosts::new(dir.join("known_hosts")));
    }
    CloudBuilder::new(tag)
        .timestamp(false)
        .config(config)
        .key_pair(key)
        .environment(vmw_config::Environment::default())
        .settings(settings)
        .build_with(govc)
        .unwrap()
}

/// [`cloud_in`] a new temporary directory, which must outlive the cloud.
pub fn cloud_with<G: Govc + 'static>(
    govc: G,
    config: VmwareConfig,
    tag: &str,
    settings: Settings,
) -> (Cloud<G>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cloud = cloud_in(govc, config, tag, settings, utf8(&dir));
    (cloud, dir)
}

/// [`cloud_with`] on a simulator, with its configuration.
pub fn cloud_on(
    sim: &Vcsim,
    tag: &str,
    settings: Settings,
) -> (Cloud<ProcessGovc>, tempfile::TempDir) {
    cloud_with(sim.govc(), sim.config(), tag, settings)
}

/// The path of a temporary directory.
pub fn utf8(dir: &tempfile::TempDir) -> &Utf8Path {
    Utf8Path::from_path(dir.path()).unwrap()
}

/// The decoded guestinfo value of `field` on a VM.
pub fn guestinfo(vm: &vmw_govc::parse::VmInfo, field: Field) -> Vec<u8> {
    let value = &vm.extra_config[field.key()];
    let encoding = &vm.extra_config[field.encoding_key()];
    decode(value.as_bytes(), encoding).unwrap()
}

/// The image of that name in `/DC0/vm` (the simulator's folder), or at
/// that absolute path.
#[allow(dead_code)]
pub fn img(text: &str) -> vmw_cloud::Image {
    vmw_cloud::Image::at(vmw_govc::VmRef::resolve("/DC0/vm", text).unwrap())
}
