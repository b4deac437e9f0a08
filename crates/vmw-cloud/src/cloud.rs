//! [`Cloud`]: launching, snapshots, images, and cleaning up.

use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;
use vmw_config::{Environment, VmwareConfig};
use vmw_govc::parse::PowerState;
use vmw_govc::requests::{Find, ObjectType, VmChange, VmClone, VmInfo};
use vmw_govc::{ErrorKind, Govc, GovcExt, ProcessGovc, VmRef, ops};
use vmw_ssh::{PrivateKey, ReadyTimeouts, SshConfig};
use vmw_userdata::{GuestInfo, Metadata, encode, inject_key};

use crate::error::{CleanError, Step};
use crate::options::StepHook;
use crate::ownership::{CloneFailureKind, Expect, Removal, Tracked};
use crate::tag::{
    Kind, annotation, annotation_glob, annotation_prefix_for, new_launch_id, parse_marker,
};
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
    /// How long a clone whose outcome is unknown is waited for, so that it
    /// can be removed: after a cancellation (the clone in flight is awaited
    /// this long), after a lost connection or a stopped govc (the VM is
    /// looked for this long). vCenter finishes a clone it received even
    /// when its client is gone; real clones take minutes. Default: 10
    /// minutes.
    pub clone_grace: Duration,
    /// Where the SSH host keys of instances are pinned across invocations,
    /// keyed by each VM's identity (not its address). `None` when building
    /// a [`Cloud`] means vmw's default, `$XDG_STATE_HOME/vmw/known_hosts`
    /// (else `~/.local/state/vmw/known_hosts`); without a home directory,
    /// keys are pinned per connection only.
    pub known_hosts: Option<vmw_ssh::KnownHosts>,
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
            clone_grace: Duration::from_secs(10 * 60),
            known_hosts: None,
        }
    }
}

/// An image: a source VM that [`Cloud::launch`] can clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Image {
    /// The VM's name.
    pub name: String,
    /// Its inventory path.
    pub path: VmRef,
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl AsRef<str> for Image {
    /// The inventory path: what [`Cloud::launch`] takes.
    fn as_ref(&self) -> &str {
        self.path.as_str()
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
    /// Its inventory path.
    pub path: VmRef,
    /// Its managed object id (e.g. `vm-42`): [`Cloud::delete_listed`]
    /// destroys exactly this object.
    pub moref: String,
    /// The tag of the cloud that made it.
    pub tag: String,
    /// Instance or image.
    pub kind: Kind,
    /// The id of the launch that made it, from its marker.
    pub launch: Option<String>,
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

pub(crate) struct Inner<G: Govc> {
    pub(crate) govc: G,
    pub(crate) config: VmwareConfig,
    pub(crate) tag: Tag,
    pub(crate) key: KeyPair,
    pub(crate) private_key: Arc<PrivateKey>,
    pub(crate) settings: Settings,
    templates: tokio::sync::OnceCell<Vec<String>>,
    checked_sources: Mutex<BTreeSet<String>>,
    tracker: Mutex<Vec<Tracked>>,
    /// The next instance number to try; found with one search of the
    /// folder on first use.
    next_number: tokio::sync::Mutex<Option<u64>>,
}

impl<G: Govc> Inner<G> {
    /// The VM a user means by `text`: an absolute inventory path, or else
    /// the VM of that name in the cloud's folder. Never a search.
    /// The one place a clone request is built: `source` cloned to
    /// `target` powered off, on the configured datastore and pool, marked
    /// with `tag`, `kind` and `launch`. An instance goes on the
    /// configured network; an image keeps its source's.
    pub(crate) fn clone_request(
        &self,
        source: &VmRef,
        target: &VmRef,
        tag: &Tag,
        kind: Kind,
        launch: &str,
    ) -> VmClone {
        VmClone {
            source: source.clone(),
            target: target.clone(),
            power_on: false,
            datastore: Some(self.config.datastore.clone()),
            pool: self.config.resource_pool.clone(),
            host: None,
            network: match kind {
                Kind::Instance => self.config.network.clone(),
                Kind::Image | Kind::Template => None,
            },
            annotation: Some(annotation(tag, kind, launch)),
            cpus: None,
            memory_mb: None,
            linked: false,
            snapshot: None,
            timeout: vmw_govc::requests::SLOW,
        }
    }

    pub(crate) fn vm_ref(&self, text: &str) -> Result<VmRef, CloudError> {
        Ok(VmRef::resolve(&self.config.folder, text)?)
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking a VM about to be cloned.
    pub(crate) fn track(&self, t: Tracked) {
        self.tracked().push(t);
    }

    /// The clone of `vm` by `launch` is known to have finished.
    pub(crate) fn mark_made(&self, vm: &VmRef, launch: &str) {
        for t in self.tracked().iter_mut() {
            if t.vm == *vm && t.launch == launch {
                t.cloning = false;
            }
        }
    }

    /// Stops tracking what `launch` made at `vm`.
    pub(crate) fn untrack(&self, vm: &VmRef, launch: &str) {
        self.tracked()
            .retain(|t| !(t.vm == *vm && t.launch == launch));
    }

    /// Stops tracking whatever is tracked at `vm`.
    pub(crate) fn untrack_path(&self, vm: &VmRef) {
        self.tracked().retain(|t| t.vm != *vm);
    }

    /// The launch id this cloud used for the VM at `vm`, if it made it.
    pub(crate) fn launch_of(&self, vm: &VmRef) -> Option<String> {
        self.tracked()
            .iter()
            .find(|t| t.vm == *vm)
            .map(|t| t.launch.clone())
    }

    /// Removes a tracked VM: destroyed when it carries the launch's
    /// marker; a clone that may still be under way is looked for up to
    /// `grace`. Untracked once gone, and also when what is there turns out
    /// not to be this launch's (it is reported, never destroyed).
    pub(crate) async fn remove_tracked(
        &self,
        t: &Tracked,
        grace: Duration,
    ) -> Result<(), CloudError> {
        let result = if t.cloning {
            self.settle_clone(t, grace, false).await.map(|_| ())
        } else {
            self.destroy_checked(&t.vm, Expect::Launch(&t.launch))
                .await
                .map(|_| ())
        };
        if matches!(
            result,
            Ok(()) | Err(CloudError::NotOurs { .. } | CloudError::TemplateProtected { .. })
        ) {
            self.untrack(&t.vm, &t.launch);
        }
        result
    }
}

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
#[derive(Clone)]
struct Prepared {
    fixed_name: Option<String>,
    /// The instance number reserved for this lane (a fleet numbers its
    /// instances in order).
    number: Option<u64>,
    on_step: Option<StepHook>,
    cancel: Option<CancellationToken>,
    cpus: Option<u32>,
    memory_mb: Option<u64>,
    /// The user data with the key injected.
    user_data: Vec<u8>,
    metadata: Option<serde_yaml_ng::Mapping>,
    vendor_data: Option<Vec<u8>>,
    extra_config: Vec<(String, String)>,
    linked: bool,
    wait: WaitStage,
}

impl Prepared {
    /// The guestinfo values of the VM `name`.
    fn guestinfo(&self, name: &str) -> Result<GuestInfo, CloudError> {
        let mut metadata = Metadata::for_vm(name);
        if let Some(extra) = &self.metadata {
            metadata = metadata.extra(extra.clone());
        }
        Ok(encode(
            &metadata,
            &self.user_data,
            self.vendor_data.as_deref(),
        )?)
    }

    fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }
}

/// How many taken names a launch skips before it gives up.
const MAX_NAME_ATTEMPTS: u32 = 100;

/// Why [`Cloud::clone_tracked`] failed.
enum CloneFailure {
    /// The name is taken: nothing was made, the VM there is not ours.
    Duplicate(CloudError),
    /// Anything else (with the rollback's outcome in the error).
    Failed(CloudError),
}

/// Removes a launch's VM when the launch's future is dropped half-way
/// (neither finished nor rolled back): a task on the current tokio runtime
/// waits out the clone grace and destroys what carries the launch's
/// marker. The VM stays tracked until then, so [`Cloud::clean`] finds it
/// too.
struct LaunchGuard<G: Govc + 'static> {
    inner: Arc<Inner<G>>,
    vm: VmRef,
    launch: String,
    armed: std::sync::atomic::AtomicBool,
}

impl<G: Govc + 'static> LaunchGuard<G> {
    fn new(inner: Arc<Inner<G>>, vm: VmRef, launch: String) -> Self {
        Self {
            inner,
            vm,
            launch,
            armed: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

impl<G: Govc + 'static> Drop for LaunchGuard<G> {
    fn drop(&mut self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let Some(t) = self
            .inner
            .tracked()
            .iter()
            .find(|t| t.vm == self.vm && t.launch == self.launch)
            .cloned()
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(vm = %self.vm, "launch dropped outside a runtime; the VM stays tracked for clean()");
            return;
        };
        let inner = self.inner.clone();
        tracing::info!(vm = %self.vm, "launch dropped half-way; removing its VM in the background");
        runtime.spawn(async move {
            let grace = inner.settings.clone_grace;
            if let Err(e) = inner.remove_tracked(&t, grace).await {
                tracing::warn!(vm = %t.vm, error = %e, "could not remove the VM of a dropped launch");
            }
        });
    }
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
        vmw_govc::check_folder(&config.folder)?;
        let private_key = vmw_ssh::load_private_key(&key.private_path)?;
        let mut settings = self.settings;
        if settings.known_hosts.is_none() {
            settings.known_hosts = vmw_ssh::KnownHosts::default_path(
                env.get(vmw_config::env::XDG_STATE_HOME).map(Utf8Path::new),
                env.home(),
            )
            .map(vmw_ssh::KnownHosts::new);
        }
        if settings.concurrency == 0 {
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
            settings,
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
    pub fn build_with<G: Govc + 'static>(self, govc: G) -> Result<Cloud<G>, CloudError> {
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

impl<G: Govc + 'static> Cloud<G> {
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
                tracker: Mutex::new(Vec::new()),
                next_number: tokio::sync::Mutex::new(None),
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

    /// Inventory paths of the instances this cloud made (or is making)
    /// and has not deleted.
    pub fn tracked_instances(&self) -> Vec<VmRef> {
        self.tracked_of(Kind::Instance)
    }

    /// Inventory paths of the images this cloud made and has not deleted.
    pub fn tracked_images(&self) -> Vec<VmRef> {
        self.tracked_of(Kind::Image)
    }

    fn tracked_of(&self, kind: Kind) -> Vec<VmRef> {
        self.inner
            .tracked()
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.vm.clone())
            .collect()
    }

    /// The VM a user means by `text`: an absolute inventory path, or the
    /// VM of that name in the cloud's folder (never a search). Glob
    /// characters and relative paths are refused.
    pub fn vm_ref(&self, text: &str) -> Result<VmRef, CloudError> {
        self.inner.vm_ref(text)
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
                            .max_depth(1)
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
            let name = format!("{TEMPLATE_PREFIX}{release}");
            Ok(Image {
                path: self.inner.vm_ref(&name)?,
                name,
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

    /// The next free instance number: on first use, one search of the
    /// folder for `<tag>-<n>` finds the highest number taken; after that
    /// numbers are counted up (a clone that meets an existing name moves
    /// on to the next number).
    async fn take_number(&self) -> Result<u64, CloudError> {
        let inner = &self.inner;
        let mut next = inner.next_number.lock().await;
        let n = match *next {
            Some(n) => n,
            None => {
                let prefix = format!("{}-", inner.tag);
                let taken = inner
                    .govc
                    .exec(
                        &Find::new(inner.config.folder.clone())
                            .kind(ObjectType::VirtualMachine)
                            .max_depth(1)
                            .name(format!("{prefix}*")),
                    )
                    .await?
                    .iter()
                    .filter_map(|p| p.rsplit('/').next())
                    .filter_map(|name| name.strip_prefix(&prefix))
                    .filter_map(|n| n.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                taken + 1
            }
        };
        *next = Some(n + 1);
        Ok(n)
    }

    /// Checks `options` and computes everything a launch needs, before any
    /// VM is touched.
    fn prepare(&self, options: &LaunchOptions) -> Result<Prepared, CloudError> {
        let (cpus, memory_mb) = options.hardware()?;
        options.check_extra_config()?;
        if let Some(n) = &options.name {
            VmRef::in_folder(&self.inner.config.folder, n)?;
        }
        let user_data = inject_key(options.user_data.as_deref(), &self.inner.key.public_key)?;
        let p = Prepared {
            fixed_name: options.name.clone(),
            number: None,
            on_step: options.on_step.clone(),
            cancel: options.cancel.clone(),
            cpus,
            memory_mb,
            user_data: user_data.bytes().to_vec(),
            metadata: options.metadata.clone(),
            vendor_data: options.vendor_data.clone(),
            extra_config: options.extra_config.clone(),
            linked: options.linked_clone,
            wait: options.wait,
        };
        // The guestinfo of a name as long as any this launch will use:
        // size limits fail now, before anything is touched.
        let sample = options
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.inner.tag, u64::MAX));
        p.guestinfo(&sample)?;
        Ok(p)
    }

    /// Launches one instance from `image` (a name in the cloud's folder, or
    /// an absolute inventory path): clone (powered off) into the folder as
    /// `<tag>-<n>` (the next free number), one `vm.change` setting the
    /// guestinfo (from 0600 files, never on the command line) and extra
    /// config, power on, then wait as asked. If a step after the clone
    /// fails, or [`LaunchOptions::cancel`] is cancelled, the VM this call
    /// made is destroyed before the error is returned; a clone in flight
    /// when the cancellation comes is awaited for
    /// [`Settings::clone_grace`] and removed too.
    pub async fn launch(
        &self,
        image: &str,
        options: &LaunchOptions,
    ) -> Result<Instance<G>, CloudError> {
        let source = self.inner.vm_ref(image)?;
        let prepared = self.prepare(options)?;
        self.launch_prepared(&source, prepared).await
    }

    /// Launches `count` instances, each in its own lane (clone, configure,
    /// power on, wait), at most [`Settings::concurrency`] at a time. Every
    /// option is checked for all of them before any VM is touched. When
    /// [`LaunchOptions::cancel`] is cancelled, lanes not started yet never
    /// start, and every lane under way removes what it made.
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
        let source = self.inner.vm_ref(image)?;
        let prepared = self.prepare(options)?;
        let mut lanes = Vec::with_capacity(count);
        for _ in 0..count {
            let mut lane = prepared.clone();
            if lane.fixed_name.is_none() && count > 1 && !lane.is_cancelled() {
                lane.number = Some(self.take_number().await?);
            }
            lanes.push(lane);
        }
        let results = bounded(lanes, self.inner.settings.concurrency, |p| {
            self.launch_prepared(&source, p)
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

    async fn launch_prepared(
        &self,
        source: &VmRef,
        p: Prepared,
    ) -> Result<Instance<G>, CloudError> {
        let inner = &self.inner;
        if p.is_cancelled() {
            return Err(CloudError::Cancelled);
        }
        self.check_source(source).await?;
        // Names already taken (by another process, another machine) are
        // skipped; a name given by the caller is used as it is.
        let mut attempts = 0;
        let mut reserved = p.number;
        let (target, launch) = loop {
            attempts += 1;
            let name = match (&p.fixed_name, reserved.take()) {
                (Some(n), _) => n.clone(),
                (None, Some(n)) => format!("{}-{n}", inner.tag),
                (None, None) => format!("{}-{}", inner.tag, self.take_number().await?),
            };
            let target = VmRef::in_folder(&inner.config.folder, &name)?;
            let launch = new_launch_id();
            tracing::info!(vm = %target, image = %source, "launching");
            StepHook::call(p.on_step.as_ref(), &name, Step::Clone);
            let clone = VmClone {
                cpus: p.cpus,
                memory_mb: p.memory_mb,
                linked: p.linked,
                ..inner.clone_request(source, &target, &inner.tag, Kind::Instance, &launch)
            };
            match self
                .clone_tracked(&clone, Kind::Instance, &launch, p.cancel.as_ref())
                .await
            {
                Ok(()) => break (target, launch),
                Err(CloneFailure::Duplicate(_))
                    if p.fixed_name.is_none() && attempts < MAX_NAME_ATTEMPTS =>
                {
                    tracing::info!(vm = %target, "name taken meanwhile; trying the next number");
                }
                Err(CloneFailure::Duplicate(e)) | Err(CloneFailure::Failed(e)) => return Err(e),
            }
        };
        let instance = Instance::new(
            target.clone(),
            Some(launch.clone()),
            Some(self.inner.tag.clone()),
            None,
            self.inner.clone(),
        );
        let guard = LaunchGuard::new(inner.clone(), target.clone(), launch.clone());

        let current = Mutex::new(Step::WriteGuestinfo);
        let finish = self.finish_launch(&instance, &p, &current);
        let result = match &p.cancel {
            Some(token) => tokio::select! {
                r = finish => r,
                () = token.cancelled() => {
                    let step = *current.lock().unwrap_or_else(|e| e.into_inner());
                    Err((step, CloudError::Cancelled))
                }
            },
            None => finish.await,
        };
        match result {
            Ok(()) => {
                guard.disarm();
                Ok(instance)
            }
            Err((step, source)) => {
                let rollback = inner
                    .destroy_checked(&target, Expect::Launch(&launch))
                    .await;
                guard.disarm();
                let rollback = match rollback {
                    Ok(_) => {
                        inner.untrack(&target, &launch);
                        None
                    }
                    Err(e) => Some(Box::new(e)),
                };
                Err(CloudError::Step {
                    vm: target.to_string(),
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
    async fn check_source(&self, source: &VmRef) -> Result<(), CloudError> {
        let inner = &self.inner;
        if !inner.settings.check_sources {
            return Ok(());
        }
        let known = inner
            .checked_sources
            .lock()
            .map(|c| c.contains(source.as_str()))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let mut request = VmInfo::new(source.clone());
        request.extra_config = true;
        let vm = inner
            .govc
            .exec(&request)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::NoSuchVm {
                name: source.to_string(),
            })?;
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
                image: source.name().to_owned(),
                problems,
            });
        }
        if let Ok(mut c) = inner.checked_sources.lock() {
            c.insert(source.to_string());
        }
        Ok(())
    }

    /// Clones, tracked from before the request is sent. On a failure that
    /// may have left a VM (lost connection, govc stopped) and on
    /// cancellation (the clone in flight is awaited for the grace period
    /// first), whatever appears at the target with this launch's marker is
    /// removed. A clone vCenter refused made nothing; a duplicate name
    /// means the VM there belongs to someone else, and it is never touched.
    async fn clone_tracked(
        &self,
        clone: &VmClone,
        kind: Kind,
        launch: &str,
        cancel: Option<&CancellationToken>,
    ) -> Result<(), CloneFailure> {
        let inner = &self.inner;
        let target = &clone.target;
        let grace = inner.settings.clone_grace;
        let failure =
            |source: CloudError, removed: bool, rollback: Option<CloudError>| CloudError::Step {
                vm: target.to_string(),
                step: Step::Clone,
                source: Box::new(source),
                removed,
                rollback: rollback.map(Box::new),
            };
        // The path must be free: a VM there is someone else's, and knowing
        // it was free tells, after a clone of unknown outcome, that a VM
        // found there is this clone's.
        match inner.lookup(target).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err(CloneFailure::Duplicate(failure(
                    CloudError::NameTaken {
                        vm: target.to_string(),
                    },
                    false,
                    None,
                )));
            }
            Err(e) => return Err(CloneFailure::Failed(failure(e, false, None))),
        }
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return Err(CloneFailure::Failed(failure(
                CloudError::Cancelled,
                false,
                None,
            )));
        }
        let tracked = Tracked {
            vm: target.clone(),
            kind,
            launch: launch.to_owned(),
            marker: clone.annotation.clone().unwrap_or_default(),
            cloning: true,
        };
        inner.track(tracked.clone());
        let guard = LaunchGuard::new(inner.clone(), target.clone(), launch.to_owned());
        let request = inner.govc.exec(clone);
        tokio::pin!(request);
        let (result, cancelled) = match cancel {
            Some(token) => tokio::select! {
                biased;
                r = &mut request => (Some(r), false),
                () = token.cancelled() => {
                    // vCenter goes on with a clone it received: wait for it
                    // (up to the grace period), then remove what it made.
                    match tokio::time::timeout(grace, &mut request).await {
                        Ok(r) => (Some(r), true),
                        Err(_) => (None, true),
                    }
                }
            },
            None => (Some(request.await), false),
        };
        let (settled, source) = match result {
            Some(Ok(())) if !cancelled => {
                inner.mark_made(target, launch);
                guard.disarm();
                return Ok(());
            }
            Some(Ok(())) => {
                // Made, then cancelled: it carries this launch's marker.
                inner.mark_made(target, launch);
                let removed = inner
                    .destroy_checked(target, Expect::Launch(launch))
                    .await
                    .map(|r| r == Removal::Destroyed);
                (removed, CloudError::Cancelled)
            }
            Some(Err(e)) => match Inner::<G>::clone_failure(&e) {
                CloneFailureKind::Refused => {
                    inner.untrack(target, launch);
                    guard.disarm();
                    let duplicate = e.kind() == ErrorKind::DuplicateName;
                    let e = ops::explain_ambiguous_pool(&inner.govc, e).await;
                    let source = if cancelled {
                        CloudError::Cancelled
                    } else {
                        e.into()
                    };
                    let err = failure(source, false, None);
                    return Err(if duplicate && !cancelled {
                        CloneFailure::Duplicate(err)
                    } else {
                        CloneFailure::Failed(err)
                    });
                }
                // govc reported a failure: the clone (or the annotation
                // written after it) failed; whatever is there is there now.
                CloneFailureKind::Answered => (
                    inner.settle_clone(&tracked, Duration::ZERO, true).await,
                    if cancelled {
                        CloudError::Cancelled
                    } else {
                        e.into()
                    },
                ),
                CloneFailureKind::Unknown => (
                    inner.settle_clone(&tracked, grace, false).await,
                    if cancelled {
                        CloudError::Cancelled
                    } else {
                        e.into()
                    },
                ),
            },
            None => (
                inner.settle_clone(&tracked, grace, false).await,
                CloudError::Cancelled,
            ),
        };
        guard.disarm();
        Err(CloneFailure::Failed(match settled {
            Ok(removed) => {
                inner.untrack(target, launch);
                failure(source, removed, None)
            }
            // Still tracked: clean() tries again.
            Err(e) => failure(source, false, Some(e)),
        }))
    }

    async fn finish_launch(
        &self,
        instance: &Instance<G>,
        p: &Prepared,
        current: &Mutex<Step>,
    ) -> Result<(), (Step, CloudError)> {
        let inner = &self.inner;
        let name = instance.name().to_owned();
        let step = |s: Step| {
            *current.lock().unwrap_or_else(|e| e.into_inner()) = s;
            StepHook::call(p.on_step.as_ref(), &name, s);
        };
        step(Step::WriteGuestinfo);
        let guestinfo = p.guestinfo(&name).map_err(|e| (Step::WriteGuestinfo, e))?;
        let files = write_guestinfo(&guestinfo).map_err(|e| (Step::WriteGuestinfo, e))?;
        let mut change = VmChange::new(instance.vm().clone());
        for entry in guestinfo.entries() {
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
            // SSH first, then cloud-init, each announced as it begins.
            step(Step::WaitSsh);
            let announced = std::sync::atomic::AtomicBool::new(false);
            let on_ssh = || {
                if !announced.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    step(Step::WaitReady);
                }
            };
            instance
                .wait_for_with(WaitStage::Ready, &on_ssh)
                .await
                .map_err(|e| {
                    let reached = *current.lock().unwrap_or_else(|e| e.into_inner());
                    (reached, e)
                })?;
        }
        Ok(())
    }

    /// The VM `name` (a name in the cloud's folder, or an absolute
    /// inventory path) as an instance; an error if it does not exist.
    /// When this cloud made it, the instance knows its launch id.
    pub async fn get_instance(&self, name: &str) -> Result<Instance<G>, CloudError> {
        let vm = self.inner.vm_ref(name)?;
        let Some(info) = self.inner.lookup(&vm).await? else {
            return Err(CloudError::NoSuchVm {
                name: vm.to_string(),
            });
        };
        let marker = parse_marker(&info.annotation);
        let launch = self
            .inner
            .launch_of(&vm)
            .or_else(|| marker.as_ref().and_then(|m| m.launch.clone()));
        let tag = marker.and_then(|m| Tag::new(&m.tag, false).ok());
        Ok(Instance::new(
            vm,
            launch,
            tag,
            Some(info.moref),
            self.inner.clone(),
        ))
    }

    /// Clones `instance` into the image `<name>-image` (powered off) in the
    /// cloud's folder, tracked for [`Cloud::clean`] and usable by
    /// [`Cloud::launch`]. With `clean`, the guest is cleaned first over SSH
    /// ([`Instance::clean_guest`]: cloud-init's state and logs, the machine
    /// id, the syslog; then flushed to disk), so instances launched from
    /// the image boot as new.
    /// An existing VM of the image's name is never touched: the snapshot
    /// fails instead.
    pub async fn snapshot(&self, instance: &Instance<G>, clean: bool) -> Result<Image, CloudError> {
        self.snapshot_with(instance, clean, None).await
    }

    /// [`Cloud::snapshot`], cancellable: on cancellation the clone in
    /// flight is awaited for [`Settings::clone_grace`] and removed.
    pub async fn snapshot_with(
        &self,
        instance: &Instance<G>,
        clean: bool,
        cancel: Option<&CancellationToken>,
    ) -> Result<Image, CloudError> {
        let inner = &self.inner;
        let name = format!("{}-image", instance.name());
        let target = VmRef::in_folder(&inner.config.folder, &name)?;
        if clean {
            instance.clean_guest().await.map_err(|e| CloudError::Step {
                vm: target.to_string(),
                step: Step::CleanGuest,
                source: Box::new(e),
                removed: false,
                rollback: None,
            })?;
        }
        let launch = new_launch_id();
        // The image carries the tag of the instance it is made from (when
        // vmw made it), so that `list` and `clean` of that tag cover both.
        let tag = instance.tag().unwrap_or(&inner.tag);
        let clone = inner.clone_request(instance.vm(), &target, tag, Kind::Image, &launch);
        match self
            .clone_tracked(&clone, Kind::Image, &launch, cancel)
            .await
        {
            Ok(()) => Ok(Image { name, path: target }),
            Err(CloneFailure::Duplicate(e) | CloneFailure::Failed(e)) => Err(e),
        }
    }

    /// Deletes an image: the VM of that name in the folder, or at that
    /// absolute path. It must carry vmw's marker unless `force`; templates
    /// are refused whatever the path. An absent image is success.
    pub async fn delete_image(&self, name: &str, force: bool) -> Result<Removal, CloudError> {
        self.delete_vm(name, force).await
    }

    /// Deletes the VM `name` (in the folder, or at an absolute path),
    /// checked right before: vSphere templates and `TEMPLATE-cloud-init-*`
    /// VMs are never deleted; a VM without vmw's marker only with `force`.
    /// An absent VM is success.
    pub async fn delete_vm(&self, name: &str, force: bool) -> Result<Removal, CloudError> {
        let vm = self.inner.vm_ref(name)?;
        let launch = self.inner.launch_of(&vm);
        let expect = match (&launch, force) {
            (_, true) => Expect::Forced,
            (Some(l), false) => Expect::Launch(l),
            (None, false) => Expect::Marker,
        };
        let removal = self.inner.destroy_checked(&vm, expect).await?;
        self.inner.untrack_path(&vm);
        Ok(removal)
    }

    /// Deletes every tracked instance, then every tracked image, several at
    /// a time, trying all of them and returning every error. Each VM is
    /// destroyed only if it still carries the marker of the launch that
    /// made it; a clone whose outcome is unknown is looked for first. What
    /// could not be deleted stays tracked; a second `clean` after a
    /// successful one does nothing.
    pub async fn clean(&self) -> Result<(), CleanError> {
        let tracked = self.inner.tracked().clone();
        let (instances, images): (Vec<_>, Vec<_>) =
            tracked.into_iter().partition(|t| t.kind == Kind::Instance);
        let mut errors = Vec::new();
        for group in [instances, images] {
            let results = bounded(group, self.inner.settings.concurrency, |t| async move {
                // A clone still unaccounted for after its launch ended is
                // looked for once, not waited for.
                self.inner.remove_tracked(&t, Duration::ZERO).await
            })
            .await;
            errors.extend(results.into_iter().filter_map(Result::err));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CleanError { errors })
        }
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

    /// vmw's VMs in the folder (found by their marker; not in subfolders),
    /// with power state and address: two govc calls however many there
    /// are.
    pub async fn list(&self, scope: &Scope) -> Result<Vec<VmRecord>, CloudError> {
        let folder = &self.inner.config.folder;
        let paths = self
            .inner
            .govc
            .exec(
                &Find::new(folder.clone())
                    .kind(ObjectType::VirtualMachine)
                    .max_depth(1)
                    .property("config.annotation", self.scope_glob(scope)),
            )
            .await?;
        let refs: Vec<VmRef> = paths
            .iter()
            .filter_map(|p| match VmRef::parse(p) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("skipping {p}: {e}");
                    None
                }
            })
            .collect();
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let infos = self
            .inner
            .govc
            .exec(&VmInfo {
                vms: refs.clone(),
                extra_config: false,
            })
            .await?;
        let mut records: Vec<VmRecord> = infos
            .into_iter()
            .filter_map(|vm| {
                let marker = parse_marker(&vm.annotation)?;
                if !scope.matches(&marker.tag, &self.inner.tag) {
                    return None;
                }
                // Names are unique within the folder searched.
                let path = refs.iter().find(|r| r.name() == vm.name)?.clone();
                if crate::ownership::is_protected(&path, &vm) {
                    return None;
                }
                Some(VmRecord {
                    name: vm.name,
                    path,
                    moref: vm.moref,
                    tag: marker.tag,
                    kind: marker.kind,
                    launch: marker.launch,
                    power_state: vm.power_state,
                    ip: vm.ip_address,
                })
            })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Deletes exactly the VMs of `records` (as [`Cloud::list`] gave them
    /// and the user confirmed): instances first, then images; each only if
    /// it is still the object listed, with vmw's marker of the tag listed.
    /// Returns the paths removed; every deletion is tried.
    pub async fn delete_listed(&self, records: &[VmRecord]) -> Result<Vec<VmRef>, CleanError> {
        let (images, instances): (Vec<_>, Vec<_>) =
            records.iter().partition(|r| r.kind == Kind::Image);
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for group in [instances, images] {
            let results = bounded(group, self.inner.settings.concurrency, |r| async move {
                let expect = Expect::Listed {
                    tag: &r.tag,
                    moref: &r.moref,
                };
                (r, self.inner.destroy_checked(&r.path, expect).await)
            })
            .await;
            for (r, result) in results {
                match result {
                    Ok(_) => {
                        self.inner.untrack_path(&r.path);
                        removed.push(r.path.clone());
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Ok(removed)
        } else {
            Err(CleanError { errors })
        }
    }

    /// Deletes vmw's VMs of `scope` (instances first, then images), whether
    /// or not this process made them: the way to remove what a crashed run
    /// left behind. Lists them, then deletes exactly those listed. Returns
    /// the paths removed; every deletion is tried.
    pub async fn sweep(&self, scope: &Scope) -> Result<Vec<VmRef>, CleanError> {
        let records = self
            .list(scope)
            .await
            .map_err(|e| CleanError { errors: vec![e] })?;
        self.delete_listed(&records).await
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
