//! Launching: options checked and guestinfo encoded before anything is
//! touched, then clone, configure, power on and wait, one lane per
//! instance; tracking from before the clone request, rollback of what the
//! call made, cancellation and dropped launches.

use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use tokio_util::sync::CancellationToken;
use vmw_govc::parse::Disk;
use vmw_govc::requests::{
    DiskResize, Find, ObjectType, SerialAdd, SerialConnect, SnapshotCreate, SnapshotTree, VmChange,
    VmClone, VmInfo,
};
use vmw_govc::{ErrorKind, Govc, GovcExt, VmRef, ops};
use vmw_userdata::{GuestInfo, Metadata, encode, inject_key};

use crate::cloud::{Cloud, bounded};
use crate::inner::Tracked;
use crate::inner::{Inner, SourceFacts};
use crate::ownership::{CloneFailureKind, Expect, Removal};
use crate::progress::Step;
use crate::progress::StepHook;
use crate::tag::{Kind, new_launch_id};
use crate::{CloudError, Image, Instance, LaunchOptions, WaitStage};

/// The result of [`Cloud::launch_many`]: the instances launched, in order,
/// and the failures. A failed launch left nothing behind (or its error says
/// that the rollback failed too).
#[derive(Debug)]
pub struct Fleet<G: Govc = vmw_govc::ProcessGovc> {
    /// The instances that launched, in the order asked.
    pub instances: Vec<Instance<G>>,
    /// `(index, error)` of each launch that failed.
    pub failures: Vec<(usize, CloudError)>,
}

/// Everything [`Cloud::launch`] checked and computed before touching a VM.
#[derive(Clone)]
pub(crate) struct Prepared {
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
    console_log: bool,
    network: Option<String>,
    disk_gib: Option<u64>,
    ip_timeout: Option<Duration>,
    ready_timeout: Option<Duration>,
    keep_on_failure: Option<Utf8PathBuf>,
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

/// Connects the VM's serial port (its source's, which a clone has, or a
/// new one) to `<port>.log` in the VM's own log directory.
async fn attach_console<G: Govc>(
    govc: &G,
    vm: &VmRef,
    port: Option<String>,
) -> Result<(), CloudError> {
    let device = match port {
        Some(name) => name,
        None => govc.exec(&SerialAdd { vm: vm.clone() }).await?,
    };
    govc.exec(&SerialConnect {
        vm: vm.clone(),
        device: Some(device),
        file: "-".to_owned(),
    })
    .await?;
    Ok(())
}

/// The first disk of a clone of `source`, when it is to grow to `gib`
/// (`None` when it has that size already); a disk that would shrink, or
/// none at all, is an error before anything is touched.
fn grown_disk(source: &VmRef, disk: Option<Disk>, gib: u64) -> Result<Option<Disk>, CloudError> {
    let bad = |problem: String| CloudError::InvalidOption {
        option: "disk size",
        value: format!("{gib} GiB"),
        problem,
    };
    let disk = disk.ok_or_else(|| bad(format!("{source} has no disk to grow")))?;
    let wanted = gib.saturating_mul(1 << 30);
    if wanted < disk.capacity_bytes {
        return Err(bad(format!(
            "the first disk of {source} is {:.1} GiB already; vmw grows disks, never shrinks them",
            disk.capacity_bytes as f64 / f64::from(1u32 << 30)
        )));
    }
    Ok((wanted > disk.capacity_bytes).then_some(disk))
}

/// The name of the snapshot of an image that linked clones are made from.
pub const LINKED_BASE: &str = "vmw-linked-clone-base";

/// How many taken names a launch skips before it gives up.
pub(crate) const MAX_NAME_ATTEMPTS: u32 = 100;

/// How long the folder's search counts as the lookup of the paths it
/// shows free (see [`Cloud::clone_tracked`]); later lanes look their path
/// up right before the clone (shared, [`crate::lookups`]).
pub(crate) const SEARCH_FRESH: Duration = Duration::from_secs(10);

/// Why [`Cloud::clone_tracked`] failed.
pub(crate) enum CloneFailure {
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
pub(crate) struct LaunchGuard<G: Govc + 'static> {
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

/// The guestinfo values written as files for `vm.change -f`, in a private
/// temporary directory that disappears with this value.
pub(crate) struct GuestinfoFiles {
    _dir: tempfile::TempDir,
    paths: Vec<(&'static str, Utf8PathBuf)>,
}

/// Writes the data values (not the short `.encoding` ones) to 0600 files:
/// user data often holds secrets, and every user of the machine can read a
/// process's command line.
pub(crate) fn write_guestinfo(info: &GuestInfo) -> Result<GuestinfoFiles, CloudError> {
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

impl<G: Govc + 'static> Cloud<G> {
    /// The next free instance number: on first use, one search of the
    /// folder for `<tag>-<n>` finds the highest number taken; after that
    /// numbers are counted up (a clone that meets an existing name moves
    /// on to the next number).
    pub(crate) async fn take_number(&self) -> Result<u64, CloudError> {
        let inner = &self.inner;
        let mut next = inner.next_number.lock().await;
        let n = match *next {
            Some(n) => n,
            // A tag timestamped now names no VM yet (another run of the
            // same tag in the same second meets a refused clone and moves
            // on): no search.
            None if inner.tag_is_new => {
                if let Ok(mut at) = inner.searched_at.lock() {
                    *at = Some(Instant::now());
                }
                1
            }
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
                if let Ok(mut at) = inner.searched_at.lock() {
                    *at = Some(Instant::now());
                }
                taken + 1
            }
        };
        *next = Some(n + 1);
        Ok(n)
    }

    /// Whether the folder's search for free numbers ran within
    /// [`SEARCH_FRESH`]: long enough for the lanes of a fleet that start
    /// together, short next to the clone itself, during which a path can
    /// be taken too.
    fn searched_lately(&self) -> bool {
        self.inner
            .searched_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < SEARCH_FRESH)
    }

    /// Checks `options` and computes everything a launch needs, before any
    /// VM is touched.
    pub(crate) fn prepare(&self, options: &LaunchOptions) -> Result<Prepared, CloudError> {
        let (cpus, memory_mb) = options.hardware()?;
        options.check_extra_config()?;
        options.check_values()?;
        if let Some(n) = &options.name {
            VmRef::in_folder(&self.inner.config.folder, n)?;
        }
        let user_data = inject_key(
            options.user_data.as_deref(),
            &self.inner.key_pair().public_key,
        )?;
        let p = Prepared {
            fixed_name: options.name.clone(),
            number: None,
            on_step: options.on_step.clone(),
            cancel: self.cancel.clone(),
            cpus,
            memory_mb,
            user_data: user_data.bytes().to_vec(),
            metadata: options.metadata.clone(),
            vendor_data: options.vendor_data.clone(),
            extra_config: options.extra_config.clone(),
            linked: options.linked_clone,
            wait: options.wait,
            console_log: options
                .console_log
                .unwrap_or(self.inner.settings.console_log || options.keep_on_failure.is_some()),
            network: options.network.clone(),
            disk_gib: options.disk_gib,
            ip_timeout: options.ip_timeout,
            ready_timeout: options.ready_timeout,
            keep_on_failure: options.keep_on_failure.clone(),
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

    /// Launches one instance from `image`: clone (powered off) into the folder as
    /// `<tag>-<n>` (the next free number), one `vm.change` setting the
    /// guestinfo (from 0600 files, never on the command line) and extra
    /// config, power on, then wait as asked. If a step after the clone
    /// fails, or the cloud's cancellation token ([`Cloud::cancel_on`]) is
    /// cancelled, the VM this call
    /// made is destroyed before the error is returned; a clone in flight
    /// when the cancellation comes is awaited for
    /// [`Settings::clone_grace`](crate::Settings::clone_grace) and removed too.
    /// A launch's future that is dropped half-way removes its VM in the
    /// background.
    pub async fn launch(
        &self,
        image: &Image,
        options: &LaunchOptions,
    ) -> Result<Instance<G>, CloudError> {
        let source = image.path().clone();
        let mut prepared = self.prepare(options)?;
        self.recover_once().await;
        prepared.number = self.warm_up(&source, &prepared, 1).await?;
        self.launch_prepared(&source, prepared).await
    }

    /// What every lane of a launch needs first, asked at the same time:
    /// the source's facts (cached for the lanes) and, for numbered names,
    /// the first free number (one search of the folder, once per cloud).
    async fn warm_up(
        &self,
        source: &VmRef,
        p: &Prepared,
        count: usize,
    ) -> Result<Option<u64>, CloudError> {
        let numbered = p.fixed_name.is_none() && !p.is_cancelled() && count > 0;
        let facts = self.source_facts(source, p.console_log || p.disk_gib.is_some());
        let number = async {
            if numbered {
                self.take_number().await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (facts, number) = tokio::join!(facts, number);
        facts?;
        number
    }

    /// Launches `count` instances, each in its own lane (clone, configure,
    /// power on, wait), at most
    /// [`Settings::concurrency`](crate::Settings::concurrency) at a time. Every
    /// option is checked for all of them before any VM is touched. When the
    /// cloud's cancellation token ([`Cloud::cancel_on`]) is cancelled, lanes
    /// not started yet never start, and every lane under way removes what
    /// it made.
    pub async fn launch_many(
        &self,
        image: &Image,
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
        let source = image.path().clone();
        let prepared = self.prepare(options)?;
        self.recover_once().await;
        let mut first = self.warm_up(&source, &prepared, count).await?;
        let mut lanes = Vec::with_capacity(count);
        for _ in 0..count {
            let mut lane = prepared.clone();
            if lane.fixed_name.is_none() && !lane.is_cancelled() {
                lane.number = match first.take() {
                    Some(n) => Some(n),
                    None => Some(self.take_number().await?),
                };
            }
            lanes.push(lane);
        }
        let lanes_at_once = options
            .concurrency
            .unwrap_or(self.inner.settings.concurrency);
        let results = bounded(lanes, lanes_at_once, |p| self.launch_prepared(&source, p)).await;
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

    pub(crate) async fn launch_prepared(
        &self,
        source: &VmRef,
        p: Prepared,
    ) -> Result<Instance<G>, CloudError> {
        let inner = &self.inner;
        if p.is_cancelled() {
            return Err(CloudError::Cancelled);
        }
        let facts = self
            .source_facts(source, p.console_log || p.disk_gib.is_some())
            .await?
            .unwrap_or_default();
        let first_disk = match p.disk_gib {
            Some(gib) => grown_disk(source, facts.first_disk, gib)?,
            None => None,
        };
        let linked_base = if p.linked {
            Some(self.linked_base(source).await?)
        } else {
            None
        };
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
            let base = inner.clone_request(source, &target, &inner.tag, Kind::Instance, &launch);
            let clone = VmClone {
                cpus: p.cpus,
                memory_mb: p.memory_mb,
                linked: p.linked,
                snapshot: linked_base.clone(),
                network: p.network.clone().or(base.network.clone()),
                ..base
            };
            match self
                .clone_tracked(
                    &clone,
                    Kind::Instance,
                    &launch,
                    p.cancel.as_ref(),
                    // A number above every one the folder's search found,
                    // moments ago, is a path known to be free.
                    p.fixed_name.is_none() && self.searched_lately(),
                )
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
        )
        .with_timeouts(p.ip_timeout, p.ready_timeout);
        let instance = match &p.on_step {
            Some(hook) => instance.with_progress(hook.clone()),
            None => instance,
        };
        let guard = LaunchGuard::new(inner.clone(), target.clone(), launch.clone());

        let current = Mutex::new(Step::WriteGuestinfo);
        let finish = self.finish_launch(&instance, &p, facts.serial_port, first_disk, &current);
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
                inner.close_record(&launch);
                Ok(instance)
            }
            Err((step, source)) if p.keep_on_failure.is_some() && step.is_wait() => {
                // Kept for inspection: no longer ours to remove.
                guard.disarm();
                inner.untrack(&target, &launch);
                let dir = p.keep_on_failure.clone().unwrap_or_default();
                let evidence = instance
                    .collect_evidence_with(&dir.join(instance.name()), step != Step::WaitIp)
                    .await;
                Err(CloudError::Kept {
                    vm: target.to_string(),
                    step,
                    source: Box::new(source),
                    evidence: evidence.map_err(Box::new),
                })
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

    /// The snapshot of `source` that linked clones are made from, so that
    /// they share its disks: vmw's ([`LINKED_BASE`]), taken once when the
    /// image has none (of its disks only), then reused by every launch.
    pub(crate) async fn linked_base(&self, source: &VmRef) -> Result<String, CloudError> {
        let inner = &self.inner;
        let mut known = inner.linked_bases.lock().await;
        if let Some(id) = known.get(source.as_str()) {
            return Ok(id.clone());
        }
        let find = |tree: Vec<vmw_govc::parse::Snapshot>| {
            tree.into_iter()
                .find(|s| s.name == LINKED_BASE)
                .map(|s| s.id)
        };
        let tree = SnapshotTree { vm: source.clone() };
        let id = match find(inner.govc.exec(&tree).await?) {
            Some(id) => id,
            None => {
                tracing::info!(image = %source, "taking the snapshot linked clones share");
                inner
                    .govc
                    .exec(&SnapshotCreate {
                        vm: source.clone(),
                        name: LINKED_BASE.to_owned(),
                        description: Some("the disks vmw's linked clones share".to_owned()),
                    })
                    .await?;
                // The oldest of that name, should another process have
                // taken one at the same time.
                find(inner.govc.exec(&tree).await?).ok_or_else(|| CloudError::NoSuchCheckpoint {
                    vm: source.to_string(),
                    checkpoint: LINKED_BASE.to_owned(),
                    known: Vec::new(),
                })?
            }
        };
        known.insert(source.to_string(), id.clone());
        Ok(id)
    }

    /// What a launch needs to know of its source, read once per image
    /// (one `vm.info`) when `needed` or when sources are checked; with
    /// [`Settings::check_sources`](crate::Settings::check_sources), the
    /// cheap part of the source-VM requirements is checked on the way: not
    /// a vSphere template, no injected OVF environment.
    pub(crate) async fn source_facts(
        &self,
        source: &VmRef,
        needed: bool,
    ) -> Result<Option<SourceFacts>, CloudError> {
        let inner = &self.inner;
        let check = inner.settings.check_sources;
        if !check && !needed {
            return Ok(None);
        }
        let known = inner
            .sources
            .lock()
            .ok()
            .and_then(|c| c.get(source.as_str()).cloned());
        if known.is_some() {
            return Ok(known);
        }
        let mut request = VmInfo::new(source.clone());
        request.extra_config = check;
        let vm = inner
            .govc
            .exec(&request)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::NoSuchVm {
                name: source.to_string(),
            })?;
        if check {
            let mut problems = Vec::new();
            if vm.template {
                problems.push("it is a vSphere template, not a standard VM".to_owned());
            }
            if vm.extra_config.contains_key(crate::template::OVF_ENV_KEY) {
                problems.push(format!(
                    "it carries an injected OVF environment ({}), so cloud-init would use the OVF datasource",
                    crate::template::OVF_ENV_KEY
                ));
            }
            if !problems.is_empty() {
                return Err(CloudError::BadSource {
                    image: source.name().to_owned(),
                    problems,
                });
            }
        }
        let facts = SourceFacts {
            serial_port: vm.serial_ports.first().map(|p| p.name.clone()),
            first_disk: vm.disks.first().copied(),
        };
        if let Ok(mut c) = inner.sources.lock() {
            c.insert(source.to_string(), facts.clone());
        }
        Ok(Some(facts))
    }

    /// Clones, tracked from before the request is sent. On a failure that
    /// may have left a VM (lost connection, govc stopped) and on
    /// cancellation (the clone in flight is awaited for the grace period
    /// first), whatever appears at the target with this launch's marker is
    /// removed. A clone vCenter refused made nothing; a duplicate name
    /// means the VM there belongs to someone else, and it is never touched.
    /// The path is looked up first, unless `known_free`: a name numbered
    /// above every one the folder's search found moments ago (the search
    /// is the lookup, and no other lane of this cloud takes that number).
    pub(crate) async fn clone_tracked(
        &self,
        clone: &VmClone,
        kind: Kind,
        launch: &str,
        cancel: Option<&CancellationToken>,
        known_free: bool,
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
        let lookup = if known_free {
            Ok(None)
        } else {
            inner.lookup(target).await
        };
        match lookup {
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
        // Recorded on disk before vCenter is asked: a run killed from now
        // on leaves a record the next one resolves (see crate::journal).
        let record = inner.record_of(target, launch, &tracked.marker, &clone.source);
        if let Err(e) = inner.open_record(record).await {
            return Err(CloneFailure::Failed(failure(e, false, None)));
        }
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
                // An image is done once made; an instance's record stays
                // open until its launch ends.
                if kind != Kind::Instance {
                    inner.close_record(launch);
                }
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

    pub(crate) async fn finish_launch(
        &self,
        instance: &Instance<G>,
        p: &Prepared,
        serial_port: Option<String>,
        first_disk: Option<Disk>,
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
        if p.console_log {
            step(Step::Console);
            attach_console(&inner.govc, instance.vm(), serial_port)
                .await
                .map_err(|e| (Step::Console, e))?;
        }
        if let (Some(disk), Some(gib)) = (first_disk, p.disk_gib) {
            step(Step::Disk);
            inner
                .govc
                .exec(&DiskResize {
                    vm: instance.vm().clone(),
                    key: disk.key,
                    gib,
                })
                .await
                .map_err(|e| (Step::Disk, e.into()))?;
        }
        step(Step::PowerOn);
        instance.switch_on().await.map_err(|e| (Step::PowerOn, e))?;
        instance.wait_stages(p.wait, &step, p.console_log).await?;
        Ok(())
    }
}
