//! [`Cloud`]: launching, snapshots, images, and cleaning up.

use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use futures_util::stream::{self, StreamExt};
use vmw_config::{Environment, VmwareConfig};
use vmw_govc::parse::PowerState;
use vmw_govc::requests::{Find, ObjectType, VmChange, VmClone, VmInfo};
use vmw_govc::{ErrorKind, Govc, GovcExt, ProcessGovc, ops};
use vmw_ssh::{PrivateKey, ReadyTimeouts, SshConfig};
use vmw_userdata::{GuestInfo, Metadata, encode, inject_key};

use crate::error::{CleanError, Step};
use crate::options::{StepHook, check_vm_name};
use crate::tag::{Kind, annotation, annotation_glob, annotation_prefix_for, parse_annotation};
use crate::{CloudError, Instance, KeyPair, LaunchOptions, Tag, WaitStage};

/// Source VMs vmw launches from are named `TEMPLATE-cloud-init-<release>`.
pub const TEMPLATE_PREFIX: &str = "TEMPLATE-cloud-init-";

/// Tuning of a [`Cloud`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many VMs [`Cloud::launch_many`], [`Cloud::clean`] and
    /// [`Cloud::sweep`] work on at once.
    pub concurrency: usize,
    /// How long [`Instance::ip`] waits for a usable address.
    pub ip_wait: Duration,
    /// Pause between address queries while the guest reports only unusable
    /// (link-local) addresses.
    pub ip_poll: Duration,
    /// How instances are reached over SSH (user `ubuntu`, port 22 by
    /// default); [`Instance::set_ssh_config`] changes it for one instance.
    pub ssh: SshConfig,
    /// How long [`Instance::wait`] waits for SSH and cloud-init (10 minutes
    /// by default), and how often it retries.
    pub ready: ReadyTimeouts,
    /// Before the first launch from an image, check (one `vm.info`, then
    /// cached) that it is not a vSphere template and carries no OVF
    /// environment, and fail early if it does. On by default.
    pub check_sources: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // Like terraform's default parallelism: enough to overlap the
            // waits, few enough not to flood a shared vCenter's task queue.
            concurrency: 10,
            ip_wait: Duration::from_secs(5 * 60),
            ip_poll: Duration::from_secs(1),
            ssh: SshConfig::default(),
            ready: ReadyTimeouts::default(),
            check_sources: true,
        }
    }
}

/// An image: a source VM that [`Cloud::launch`] can clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Image {
    /// The VM's name in the cloud's folder.
    pub name: String,
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for Image {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// Which of vmw's VMs [`Cloud::list`] and [`Cloud::sweep`] look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Those of this cloud's tag.
    ThisTag,
    /// Those of another tag.
    Tag(Tag),
    /// Those of a tag and of every timestamped tag made from it: `me`
    /// covers `me` and `me-1123-211405`, not `me-too`.
    Family(String),
    /// Those of every tag.
    AllTags,
}

impl Scope {
    /// Whether a VM of `tag` is in this scope (for `ThisTag`, `own` is the
    /// cloud's tag).
    pub fn matches(&self, tag: &str, own: &Tag) -> bool {
        match self {
            Scope::ThisTag => tag == own.as_str(),
            Scope::Tag(t) => tag == t.as_str(),
            Scope::Family(base) => {
                tag == base
                    || tag
                        .strip_prefix(base.as_str())
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(is_timestamp)
            }
            Scope::AllTags => true,
        }
    }
}

/// `MMDD-HHMMSS`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
}

/// A VM made by vmw, as found by [`Cloud::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmRecord {
    /// Its name.
    pub name: String,
    /// The tag of the cloud that made it.
    pub tag: String,
    /// Instance or image.
    pub kind: Kind,
    /// Its power state.
    pub power_state: PowerState,
    /// Its guest address, when VMware Tools reports one.
    pub ip: Option<String>,
}

/// The result of [`Cloud::launch_many`]: the instances launched, in order,
/// and the failures. A failed launch left nothing behind (or its error says
/// that the rollback failed too).
#[derive(Debug)]
pub struct Fleet<G: Govc> {
    /// The instances that launched, in the order asked.
    pub instances: Vec<Instance<G>>,
    /// `(index, error)` of each launch that failed.
    pub failures: Vec<(usize, CloudError)>,
}

#[derive(Default)]
struct Tracker {
    instances: Vec<String>,
    images: Vec<String>,
}

pub(crate) struct Inner<G: Govc> {
    pub(crate) govc: G,
    pub(crate) config: VmwareConfig,
    pub(crate) tag: Tag,
    pub(crate) key: KeyPair,
    pub(crate) private_key: Arc<PrivateKey>,
    pub(crate) settings: Settings,
    templates: tokio::sync::OnceCell<Vec<String>>,
    checked_sources: Mutex<BTreeSet<String>>,
    tracker: Mutex<Tracker>,
}

impl<G: Govc> Inner<G> {
    /// Inventory path of a VM in the cloud's folder.
    pub(crate) fn vm_path(&self, name: &str) -> String {
        if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("{}/{name}", self.config.folder.trim_end_matches('/'))
        }
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track_instance(&self, name: &str) {
        self.tracked().instances.push(name.to_owned());
    }

    pub(crate) fn untrack_instance(&self, name: &str) {
        self.tracked().instances.retain(|n| n != name);
    }

    fn track_image(&self, name: &str) {
        self.tracked().images.push(name.to_owned());
    }

    fn untrack_image(&self, name: &str) {
        self.tracked().images.retain(|n| n != name);
    }
}

/// Instance numbers, unique in the process: two clouds with the same tag,
/// or many tasks launching at once, never pick the same name.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// A vSphere "cloud": a configuration, a tag naming what it makes, an SSH key
/// pair, and a govc backend. Everything it creates is tracked until deleted,
/// and [`Cloud::clean`] removes what is left.
pub struct Cloud<G: Govc> {
    pub(crate) inner: Arc<Inner<G>>,
}

impl<G: Govc> Clone for Cloud<G> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// Everything [`Cloud::launch`] checked and computed before touching a VM.
struct Prepared {
    name: String,
    on_step: Option<StepHook>,
    cpus: Option<u32>,
    memory_mb: Option<u64>,
    guestinfo: GuestInfo,
    extra_config: Vec<(String, String)>,
    linked: bool,
    wait: WaitStage,
}

/// What a [`CloudBuilder`] resolved.
struct Resolved {
    tag: Tag,
    config: VmwareConfig,
    key: KeyPair,
    private_key: Arc<PrivateKey>,
    env: Environment,
    settings: Settings,
    govc_path: Option<Utf8PathBuf>,
}

/// Builds a [`Cloud`].
#[derive(Clone, Debug)]
pub struct CloudBuilder {
    tag: String,
    timestamp: bool,
    config: Option<VmwareConfig>,
    env: Option<Environment>,
    govc_path: Option<Utf8PathBuf>,
    key: Option<KeyPair>,
    settings: Settings,
}

impl CloudBuilder {
    /// A cloud whose VMs are named after `tag` (with a `-MMDD-HHMMSS`
    /// suffix unless [`CloudBuilder::timestamp`] turns it off).
    pub fn new(tag: impl Into<String>) -> Self {
        Self {
            tag: tag.into(),
            timestamp: true,
            config: None,
            env: None,
            govc_path: None,
            key: None,
            settings: Settings::default(),
        }
    }

    /// Whether to append `-MMDD-HHMMSS` to the tag.
    #[must_use]
    pub fn timestamp(mut self, on: bool) -> Self {
        self.timestamp = on;
        self
    }

    /// The configuration (default: `vmw_config::Loader::new().load()`).
    #[must_use]
    pub fn config(mut self, config: VmwareConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The environment (default: the process's).
    #[must_use]
    pub fn environment(mut self, env: Environment) -> Self {
        self.env = Some(env);
        self
    }

    /// The govc binary (default: `VMW_GOVC`, else `PATH`).
    #[must_use]
    pub fn govc_path(mut self, path: impl Into<Utf8PathBuf>) -> Self {
        self.govc_path = Some(path.into());
        self
    }

    /// The key pair (default: see [`KeyPair::resolve`]).
    #[must_use]
    pub fn key_pair(mut self, key: KeyPair) -> Self {
        self.key = Some(key);
        self
    }

    /// Tuning.
    #[must_use]
    pub fn settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    fn resolve(self) -> Result<Resolved, CloudError> {
        let tag = Tag::new(&self.tag, self.timestamp)?;
        let env = self.env.unwrap_or_else(Environment::from_process);
        let config = match self.config {
            Some(c) => c,
            None => {
                vmw_config::Loader::with_environment(env.clone())
                    .load()?
                    .config
            }
        };
        let key = match self.key {
            Some(k) => k,
            None => KeyPair::resolve(&config, &env)?,
        };
        let private_key = vmw_ssh::load_private_key(&key.private_path)?;
        if self.settings.concurrency == 0 {
            return Err(CloudError::InvalidOption {
                option: "concurrency",
                value: "0".to_owned(),
                problem: "at least 1 is needed".to_owned(),
            });
        }
        Ok(Resolved {
            tag,
            config,
            key,
            private_key,
            env,
            settings: self.settings,
            govc_path: self.govc_path,
        })
    }

    /// A cloud driving the real govc, found and version-checked now.
    pub async fn build(self) -> Result<Cloud<ProcessGovc>, CloudError> {
        let r = self.resolve()?;
        let govc = ProcessGovc::discover(&r.config, r.govc_path.as_deref(), &r.env).await?;
        Ok(Cloud::from_parts(govc, r))
    }

    /// A cloud driving `govc` (another backend, or a mock).
    pub fn build_with<G: Govc>(self, govc: G) -> Result<Cloud<G>, CloudError> {
        let r = self.resolve()?;
        Ok(Cloud::from_parts(govc, r))
    }
}

async fn bounded<T, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<Fut::Output>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future,
{
    stream::iter(items)
        .map(f)
        .buffered(limit.max(1))
        .collect()
        .await
}

impl<G: Govc> Cloud<G> {
    fn from_parts(govc: G, r: Resolved) -> Self {
        Self {
            inner: Arc::new(Inner {
                govc,
                config: r.config,
                tag: r.tag,
                key: r.key,
                private_key: r.private_key,
                settings: r.settings,
                templates: tokio::sync::OnceCell::new(),
                checked_sources: Mutex::new(BTreeSet::new()),
                tracker: Mutex::new(Tracker::default()),
            }),
        }
    }

    /// The cloud's tag.
    pub fn tag(&self) -> &Tag {
        &self.inner.tag
    }

    /// The configuration.
    pub fn config(&self) -> &VmwareConfig {
        &self.inner.config
    }

    /// The SSH key pair injected into instances.
    pub fn key_pair(&self) -> &KeyPair {
        &self.inner.key
    }

    /// The govc backend.
    pub fn govc(&self) -> &G {
        &self.inner.govc
    }

    /// Names of the instances this cloud made and has not deleted.
    pub fn tracked_instances(&self) -> Vec<String> {
        self.inner.tracked().instances.clone()
    }

    /// Names of the images this cloud made and has not deleted.
    pub fn tracked_images(&self) -> Vec<String> {
        self.inner.tracked().images.clone()
    }

    /// Releases that have a `TEMPLATE-cloud-init-<release>` VM in the folder
    /// (found with one govc call, then cached).
    pub async fn releases(&self) -> Result<Vec<String>, CloudError> {
        let names = self
            .inner
            .templates
            .get_or_try_init(|| async {
                let paths = self
                    .inner
                    .govc
                    .exec(
                        &Find::new(self.inner.config.folder.clone())
                            .kind(ObjectType::VirtualMachine)
                            .name(format!("{TEMPLATE_PREFIX}*")),
                    )
                    .await?;
                let set: BTreeSet<String> = paths
                    .iter()
                    .filter_map(|p| p.rsplit('/').next())
                    .filter_map(|n| n.strip_prefix(TEMPLATE_PREFIX))
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect();
                Ok::<_, CloudError>(set.into_iter().collect())
            })
            .await?;
        Ok(names.clone())
    }

    /// The image of a release: `TEMPLATE-cloud-init-<release>`, when it
    /// exists; an unknown release is an error listing those available.
    pub async fn released_image(&self, release: &str) -> Result<Image, CloudError> {
        let releases = self.releases().await?;
        if releases.iter().any(|r| r == release) {
            Ok(Image {
                name: format!("{TEMPLATE_PREFIX}{release}"),
            })
        } else {
            Err(CloudError::UnknownRelease {
                release: release.to_owned(),
                folder: self.inner.config.folder.clone(),
                available: releases,
            })
        }
    }

    /// The same as [`Cloud::released_image`]: vSphere has no daily images.
    pub async fn daily_image(&self, release: &str) -> Result<Image, CloudError> {
        self.released_image(release).await
    }

    /// Image serials do not exist on vSphere.
    pub fn image_serial(&self, image: &str) -> Result<String, CloudError> {
        Err(CloudError::NotSupported {
            what: format!("an image serial (asked for {image}) on VMware"),
            hint: Some("vSphere templates carry no serial; use the template name".to_owned()),
        })
    }

    fn next_name(&self) -> String {
        let n = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.tag)
    }

    /// Checks `options` and computes everything a launch needs, before any
    /// VM is touched.
    fn prepare(
        &self,
        options: &LaunchOptions,
        name: Option<String>,
    ) -> Result<Prepared, CloudError> {
        let (cpus, memory_mb) = options.hardware()?;
        options.check_extra_config()?;
        let name = match name {
            Some(n) => {
                check_vm_name(&n)?;
                n
            }
            None => self.next_name(),
        };
        let user_data = inject_key(options.user_data.as_deref(), &self.inner.key.public_key)?;
        let mut metadata = Metadata::for_vm(&name);
        if let Some(extra) = &options.metadata {
            metadata = metadata.extra(extra.clone());
        }
        let guestinfo = encode(&metadata, user_data.bytes(), options.vendor_data.as_deref())?;
        Ok(Prepared {
            name,
            on_step: options.on_step.clone(),
            cpus,
            memory_mb,
            guestinfo,
            extra_config: options.extra_config.clone(),
            linked: options.linked_clone,
            wait: options.wait,
        })
    }

    /// Launches one instance from `image` (a name in the cloud's folder, or
    /// an inventory path): clone (powered off), one `vm.change` setting the
    /// guestinfo (from 0600 files, never on the command line) and extra
    /// config, power on, then wait as asked. If a step after the clone
    /// fails, the VM is destroyed before the error is returned.
    pub async fn launch(
        &self,
        image: &str,
        options: &LaunchOptions,
    ) -> Result<Instance<G>, CloudError> {
        let prepared = self.prepare(options, options.name.clone())?;
        self.launch_prepared(image, prepared).await
    }

    /// Launches `count` instances, each in its own lane (clone, configure,
    /// power on, wait), at most [`Settings::concurrency`] at a time. Every
    /// option is checked for all of them before any VM is touched.
    pub async fn launch_many(
        &self,
        image: &str,
        count: usize,
        options: &LaunchOptions,
    ) -> Result<Fleet<G>, CloudError> {
        if options.name.is_some() && count > 1 {
            return Err(CloudError::InvalidOption {
                option: "name",
                value: options.name.clone().unwrap_or_default(),
                problem: "a name can only be given to a single instance".to_owned(),
            });
        }
        let prepared = (0..count)
            .map(|_| self.prepare(options, options.name.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let results = bounded(prepared, self.inner.settings.concurrency, |p| {
            self.launch_prepared(image, p)
        })
        .await;
        let mut fleet = Fleet {
            instances: Vec::new(),
            failures: Vec::new(),
        };
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(instance) => fleet.instances.push(instance),
                Err(e) => fleet.failures.push((i, e)),
            }
        }
        Ok(fleet)
    }

    async fn launch_prepared(&self, image: &str, p: Prepared) -> Result<Instance<G>, CloudError> {
        let inner = &self.inner;
        let clone = VmClone {
            source: inner.vm_path(image),
            name: p.name.clone(),
            power_on: false,
            datastore: Some(inner.config.datastore.clone()),
            pool: inner.config.resource_pool.clone(),
            folder: Some(inner.config.folder.clone()),
            host: None,
            network: inner.config.network.clone(),
            annotation: Some(annotation(&inner.tag, Kind::Instance)),
            cpus: p.cpus,
            memory_mb: p.memory_mb,
            linked: p.linked,
            snapshot: None,
            timeout: vmw_govc::requests::SLOW,
        };
        tracing::info!(vm = %p.name, image, "launching");
        self.check_source(image).await?;
        StepHook::call(p.on_step.as_ref(), &p.name, Step::Clone);
        self.clone_vm(&clone, Kind::Instance).await?;
        inner.track_instance(&p.name);
        let instance = Instance::new(p.name.clone(), self.inner.clone());

        let result = self.finish_launch(&instance, &p).await;
        match result {
            Ok(()) => Ok(instance),
            Err((step, source)) => {
                let rollback = match inner.destroy(&p.name).await {
                    Ok(()) => {
                        inner.untrack_instance(&p.name);
                        None
                    }
                    Err(e) => Some(Box::new(e)),
                };
                Err(CloudError::Step {
                    vm: p.name,
                    step,
                    source: Box::new(source),
                    removed: rollback.is_none(),
                    rollback,
                })
            }
        }
    }

    /// The cheap part of the source-VM requirements, once per image: not a
    /// vSphere template, no injected OVF environment.
    async fn check_source(&self, image: &str) -> Result<(), CloudError> {
        let inner = &self.inner;
        if !inner.settings.check_sources {
            return Ok(());
        }
        let path = inner.vm_path(image);
        let known = inner
            .checked_sources
            .lock()
            .map(|c| c.contains(&path))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let mut request = VmInfo::new(path.clone());
        request.extra_config = true;
        let vm = inner
            .govc
            .exec(&request)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::NoSuchVm { name: path.clone() })?;
        let mut problems = Vec::new();
        if vm.template {
            problems.push("it is a vSphere template, not a standard VM".to_owned());
        }
        if vm.extra_config.contains_key(crate::OVF_ENV_KEY) {
            problems.push(format!(
                "it carries an injected OVF environment ({}), so cloud-init would use the OVF datasource",
                crate::OVF_ENV_KEY
            ));
        }
        if !problems.is_empty() {
            return Err(CloudError::BadSource {
                image: image.to_owned(),
                problems,
            });
        }
        if let Ok(mut c) = inner.checked_sources.lock() {
            c.insert(path);
        }
        Ok(())
    }

    /// Clones; on failure removes whatever the clone may have left.
    async fn clone_vm(&self, clone: &VmClone, kind: Kind) -> Result<(), CloudError> {
        let inner = &self.inner;
        match inner.govc.exec(clone).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = ops::explain_ambiguous_pool(&inner.govc, e).await;
                // When govc was stopped (our deadline) the clone task may
                // still finish on vCenter; remove the VM if it is there, and
                // if that fails keep it tracked so clean() tries again. A
                // clone that failed outright made nothing, and a duplicate
                // name means the VM there is not ours: never touch it.
                let (removed, rollback) = if matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Io)
                {
                    match inner.destroy(&clone.name).await {
                        Ok(()) => (true, None),
                        Err(r) => {
                            match kind {
                                Kind::Instance => inner.track_instance(&clone.name),
                                Kind::Image => inner.track_image(&clone.name),
                            }
                            (false, Some(Box::new(r)))
                        }
                    }
                } else {
                    (false, None)
                };
                Err(CloudError::Step {
                    vm: clone.name.clone(),
                    step: Step::Clone,
                    source: Box::new(e.into()),
                    removed,
                    rollback,
                })
            }
        }
    }

    async fn finish_launch(
        &self,
        instance: &Instance<G>,
        p: &Prepared,
    ) -> Result<(), (Step, CloudError)> {
        let inner = &self.inner;
        let step = |s: Step| StepHook::call(p.on_step.as_ref(), &p.name, s);
        step(Step::WriteGuestinfo);
        let files = write_guestinfo(&p.guestinfo).map_err(|e| (Step::WriteGuestinfo, e))?;
        let mut change = VmChange::new(&p.name);
        for entry in p.guestinfo.entries() {
            match files.paths.iter().find(|(k, _)| *k == entry.key()) {
                Some((_, path)) => change = change.extra_file(entry.key(), path.clone()),
                None => change = change.extra(entry.key(), String::from_utf8_lossy(entry.value())),
            }
        }
        for (k, v) in &p.extra_config {
            change = change.extra(k.clone(), v.clone());
        }
        step(Step::Configure);
        inner
            .govc
            .exec(&change)
            .await
            .map_err(|e| (Step::Configure, e.into()))?;
        drop(files);
        step(Step::PowerOn);
        instance.start().await.map_err(|e| (Step::PowerOn, e))?;
        if p.wait >= WaitStage::Ip {
            step(Step::WaitIp);
            instance.ip().await.map_err(|e| (Step::WaitIp, e))?;
        }
        if p.wait == WaitStage::Ssh {
            step(Step::WaitSsh);
            instance
                .wait_for(WaitStage::Ssh)
                .await
                .map_err(|e| (Step::WaitSsh, e))?;
        }
        if p.wait == WaitStage::Ready {
            step(Step::WaitReady);
            instance
                .wait_for(WaitStage::Ready)
                .await
                .map_err(|e| (Step::WaitReady, e))?;
        }
        Ok(())
    }

    /// The VM `name` as an instance (not tracked: this cloud did not make
    /// it); an error if it does not exist.
    pub async fn get_instance(&self, name: &str) -> Result<Instance<G>, CloudError> {
        let found = self
            .inner
            .govc
            .exec(&VmInfo::new(self.inner.vm_path(name)))
            .await?;
        if found.is_empty() {
            return Err(CloudError::NoSuchVm {
                name: name.to_owned(),
            });
        }
        Ok(Instance::new(name.to_owned(), self.inner.clone()))
    }

    /// Clones `instance` into the image `<name>-image` (powered off),
    /// tracked for [`Cloud::clean`] and usable by [`Cloud::launch`]. With
    /// `clean`, the guest is cleaned first over SSH
    /// ([`Instance::clean_guest`]: cloud-init's state and logs, the machine
    /// id, the syslog), so instances launched from the image boot as new.
    pub async fn snapshot(&self, instance: &Instance<G>, clean: bool) -> Result<Image, CloudError> {
        if clean {
            instance.clean_guest().await.map_err(|e| CloudError::Step {
                vm: format!("{}-image", instance.name()),
                step: Step::CleanGuest,
                source: Box::new(e),
                removed: false,
                rollback: None,
            })?;
        }
        let inner = &self.inner;
        let name = format!("{}-image", instance.name());
        let clone = VmClone {
            source: inner.vm_path(instance.name()),
            name: name.clone(),
            power_on: false,
            datastore: Some(inner.config.datastore.clone()),
            pool: inner.config.resource_pool.clone(),
            folder: Some(inner.config.folder.clone()),
            host: None,
            network: None,
            annotation: Some(annotation(&inner.tag, Kind::Image)),
            cpus: None,
            memory_mb: None,
            linked: false,
            snapshot: None,
            timeout: vmw_govc::requests::SLOW,
        };
        self.clone_vm(&clone, Kind::Image).await?;
        inner.track_image(&name);
        Ok(Image { name })
    }

    /// Deletes an image; an absent image is success. Source templates
    /// (`TEMPLATE-cloud-init-*`) are refused.
    pub async fn delete_image(&self, name: &str) -> Result<(), CloudError> {
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.starts_with(TEMPLATE_PREFIX) {
            return Err(CloudError::TemplateProtected {
                name: name.to_owned(),
            });
        }
        self.inner.destroy(name).await?;
        self.inner.untrack_image(name);
        Ok(())
    }

    /// Deletes every tracked instance, then every tracked image, several at
    /// a time, trying all of them and returning every error. What could not
    /// be deleted stays tracked; a second `clean` after a successful one
    /// does nothing.
    pub async fn clean(&self) -> Result<(), CleanError> {
        let (instances, images) = {
            let t = self.inner.tracked();
            (t.instances.clone(), t.images.clone())
        };
        let (_, errors) = self.destroy_in_order([instances, images]).await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CleanError { errors })
        }
    }

    /// Destroys the VMs of each group, a group after the other (instances
    /// before the images they may come from), several at a time within a
    /// group, trying every one. What is gone is no longer tracked. Returns
    /// the names removed and the errors.
    async fn destroy_in_order(&self, groups: [Vec<String>; 2]) -> (Vec<String>, Vec<CloudError>) {
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for names in groups {
            let results = bounded(names, self.inner.settings.concurrency, |name| async move {
                let r = self.inner.destroy(&name).await;
                (name, r)
            })
            .await;
            for (name, r) in results {
                match r {
                    Ok(()) => {
                        self.inner.untrack_instance(&name);
                        self.inner.untrack_image(&name);
                        removed.push(name);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        (removed, errors)
    }

    /// The annotation glob that finds the VMs of `scope` (a superset for
    /// `Family`, narrowed by [`Scope::matches`]).
    fn scope_glob(&self, scope: &Scope) -> String {
        match scope {
            Scope::ThisTag => annotation_glob(Some(&self.inner.tag)),
            Scope::Tag(t) => annotation_glob(Some(t)),
            Scope::Family(base) => format!("{}*", annotation_prefix_for(base)),
            Scope::AllTags => annotation_glob(None),
        }
    }

    /// vmw's VMs in the folder (found by their annotation), with power state
    /// and address: two govc calls however many there are.
    pub async fn list(&self, scope: &Scope) -> Result<Vec<VmRecord>, CloudError> {
        let paths = self
            .inner
            .govc
            .exec(
                &Find::new(self.inner.config.folder.clone())
                    .kind(ObjectType::VirtualMachine)
                    .property("config.annotation", self.scope_glob(scope)),
            )
            .await?;
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let infos = self
            .inner
            .govc
            .exec(&VmInfo {
                vms: paths,
                extra_config: false,
            })
            .await?;
        let mut records: Vec<VmRecord> = infos
            .into_iter()
            .filter_map(|vm| {
                let (tag, kind) = parse_annotation(&vm.annotation)?;
                if !scope.matches(&tag, &self.inner.tag) {
                    return None;
                }
                Some(VmRecord {
                    name: vm.name,
                    tag,
                    kind,
                    power_state: vm.power_state,
                    ip: vm.ip_address,
                })
            })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Deletes vmw's VMs of `scope` (instances first, then images), whether
    /// or not this process made them: the way to remove what a crashed run
    /// left behind. Returns the names removed; every deletion is tried.
    pub async fn sweep(&self, scope: &Scope) -> Result<Vec<String>, CleanError> {
        let records = self
            .list(scope)
            .await
            .map_err(|e| CleanError { errors: vec![e] })?;
        let (images, instances): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|r| r.kind == Kind::Image);
        let names = |group: Vec<VmRecord>| group.into_iter().map(|r| r.name).collect();
        let (removed, errors) = self
            .destroy_in_order([names(instances), names(images)])
            .await;
        if errors.is_empty() {
            Ok(removed)
        } else {
            Err(CleanError { errors })
        }
    }
}

impl<G: Govc> std::fmt::Debug for Cloud<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("tag", &self.inner.tag)
            .field("config", &self.inner.config)
            .field("key", &self.inner.key.public_path)
            .finish()
    }
}

/// The guestinfo values written as files for `vm.change -f`, in a private
/// temporary directory that disappears with this value.
struct GuestinfoFiles {
    _dir: tempfile::TempDir,
    paths: Vec<(&'static str, Utf8PathBuf)>,
}

/// Writes the data values (not the short `.encoding` ones) to 0600 files:
/// user data often holds secrets, and every user of the machine can read a
/// process's command line.
fn write_guestinfo(info: &GuestInfo) -> Result<GuestinfoFiles, CloudError> {
    let io = |source| CloudError::Io {
        what: "writing guestinfo to a temporary file".to_owned(),
        source,
    };
    let dir = tempfile::Builder::new()
        .prefix("vmw-guestinfo-")
        .tempdir()
        .map_err(io)?;
    let base = Utf8Path::from_path(dir.path())
        .ok_or_else(|| {
            io(std::io::Error::other(
                "temporary directory path is not UTF-8",
            ))
        })?
        .to_owned();
    let mut paths = Vec::new();
    for entry in info.entries() {
        if entry.key().ends_with(".encoding") {
            continue;
        }
        let path = base.join(entry.key());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        std::io::Write::write_all(&mut f, entry.value()).map_err(io)?;
        paths.push((entry.key(), path));
    }
    Ok(GuestinfoFiles { _dir: dir, paths })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_scope_takes_the_base_and_its_timestamped_tags() {
        let own = Tag::parse("me-1123-211405").unwrap();
        let family = Scope::Family("me".into());
        assert!(family.matches("me", &own));
        assert!(family.matches("me-1123-211405", &own));
        assert!(family.matches("me-0101-000000", &own));
        assert!(!family.matches("me-too", &own));
        assert!(!family.matches("mediocre-1123-211405", &own));
        assert!(!family.matches("me-1123-21140", &own));
        assert!(Scope::ThisTag.matches("me-1123-211405", &own));
        assert!(!Scope::ThisTag.matches("me", &own));
        assert!(Scope::AllTags.matches("anything", &own));
    }
}
