//! The VMs vmw made: looking one up, listing by marker, deleting,
//! cleaning what a cloud made and sweeping a tag.

use std::time::Duration;

use vmw_govc::parse::PowerState;
use vmw_govc::requests::{Find, ObjectType, VmInfo, VmMarks};
use vmw_govc::{Govc, GovcExt, VmRef};

use crate::cloud::{Cloud, bounded};
use crate::error::CleanError;
use crate::ownership::{Expect, Removal};
use crate::tag::{Kind, annotation_glob, annotation_prefix_for, parse_marker};
use crate::{CloudError, Instance, Tag};

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
pub(crate) fn is_timestamp(s: &str) -> bool {
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
    /// A run killed outright left it (found by [`Cloud::recover`]): a
    /// launch that never finished, or a snapshot that did not return.
    pub interrupted: bool,
    /// Its power state.
    pub power_state: PowerState,
    /// Its guest address, when VMware Tools reports one.
    pub ip: Option<String>,
}

/// A VM without vmw's marker that is named like one of vmw's
/// (`<tag>-<n>` or `<tag>-<n>-image`), as found by [`Cloud::unmarked`]:
/// perhaps a clone whose run died with its machine before the marker was
/// written, perhaps someone else's VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmarkedVm {
    /// Its name.
    pub name: String,
    /// Its inventory path.
    pub path: VmRef,
    /// Its managed object id: [`Cloud::delete_unmarked`] destroys exactly
    /// this object.
    pub moref: String,
    /// The tag its name carries.
    pub tag: String,
    /// When vCenter made it (RFC 3339).
    pub created: String,
    /// Its power state.
    pub power_state: PowerState,
}

/// The tag of a name vmw gives (`<tag>-<n>`, `<tag>-<n>-image`), if it is one.
pub(crate) fn tag_of_name(name: &str) -> Option<&str> {
    let base = name.strip_suffix("-image").unwrap_or(name);
    let (tag, n) = base.rsplit_once('-')?;
    let numbered = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    (numbered && Tag::parse(tag).is_ok()).then_some(tag)
}

impl<G: Govc + 'static> Cloud<G> {
    /// VMs in the folder without vmw's marker, named like vmw's VMs of
    /// `scope`, that vCenter made within `within` of now: what runs whose
    /// machine never came back may have left (a clone finished by vCenter
    /// after its govc died, before the marker was written). They may as
    /// well be someone else's: vmw never removes them by itself; show them
    /// and let the user confirm [`Cloud::delete_unmarked`]. Templates and
    /// VMs vCenter gives no creation time are never listed. Two govc calls.
    pub async fn unmarked(
        &self,
        scope: &Scope,
        within: Duration,
    ) -> Result<Vec<UnmarkedVm>, CloudError> {
        let folder = &self.inner.config.folder;
        let paths = self
            .inner
            .govc
            .exec(
                &Find::new(folder.clone())
                    .kind(ObjectType::VirtualMachine)
                    .max_depth(1),
            )
            .await?;
        let refs: Vec<VmRef> = paths
            .iter()
            .filter_map(|p| VmRef::parse(p).ok())
            .filter(|r| tag_of_name(r.name()).is_some_and(|t| scope.matches(t, &self.inner.tag)))
            .collect();
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let infos = self
            .inner
            .govc
            .exec(&VmMarks {
                folder: folder.clone(),
            })
            .await?;
        let now = crate::journal::now_nanos();
        let mut found: Vec<UnmarkedVm> = refs
            .into_iter()
            .filter_map(|path| {
                let mut same = infos.iter().filter(|i| i.name == path.name());
                let info = same.next()?;
                if same.next().is_some()
                    || parse_marker(&info.annotation).is_some()
                    || crate::ownership::is_protected(&path, info)
                {
                    return None;
                }
                let created = info.create_date.clone()?;
                let made = crate::journal::parse_rfc3339(&created)?;
                if now.saturating_sub(made) > within.as_nanos() as i128 {
                    return None;
                }
                Some(UnmarkedVm {
                    name: info.name.clone(),
                    tag: tag_of_name(&info.name)?.to_owned(),
                    path,
                    moref: info.moref.clone(),
                    created,
                    power_state: info.power_state.clone(),
                })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// Deletes exactly the VMs of `vms` (as [`Cloud::unmarked`] listed them
    /// and the user confirmed): each only if it is still the object listed,
    /// still without any marker, and not a template. Returns the paths
    /// removed; every deletion is tried, and an error keeps what was
    /// removed.
    pub async fn delete_unmarked(&self, vms: &[UnmarkedVm]) -> Result<Vec<VmRef>, CleanError> {
        self.remove_each(
            vms.iter().collect(),
            |v| v.path.clone(),
            |v| async move {
                self.inner
                    .destroy_checked(&v.path, Expect::Unmarked { moref: &v.moref })
                    .await?;
                self.inner.untrack_path(&v.path);
                Ok(())
            },
        )
        .await
        .into_result()
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

    /// Deletes the VM `name` (in the folder, or at an absolute path),
    /// checked right before: it must carry vmw's marker (the marker of the
    /// launch that made it, when this cloud made it); vSphere templates and
    /// `TEMPLATE-cloud-init-*` VMs are never deleted. An absent VM is
    /// success. [`Cloud::delete_vm_forced`] deletes a VM without the marker.
    pub async fn delete_vm(&self, name: &str) -> Result<Removal, CloudError> {
        let vm = self.inner.vm_ref(name)?;
        self.recover_once().await;
        let launch = self.inner.launch_of(&vm);
        let expect = match &launch {
            Some(l) => Expect::Launch(l),
            None => Expect::Marker,
        };
        self.delete_expecting(&vm, expect).await
    }

    /// [`Cloud::delete_vm`] even when the VM does not carry vmw's marker
    /// (never a template).
    pub async fn delete_vm_forced(&self, name: &str) -> Result<Removal, CloudError> {
        let vm = self.inner.vm_ref(name)?;
        self.delete_expecting(&vm, Expect::Forced).await
    }

    async fn delete_expecting(
        &self,
        vm: &VmRef,
        expect: Expect<'_>,
    ) -> Result<Removal, CloudError> {
        let removal = self.inner.destroy_checked(vm, expect).await?;
        self.inner.untrack_path(vm);
        Ok(removal)
    }

    /// Runs `remove` on each of `items` (at most
    /// [`Settings::concurrency`](crate::Settings::concurrency) at a time),
    /// except once this handle is cancelled: what was removed, the errors,
    /// and what was not tried.
    async fn remove_each<'a, T, F, Fut>(
        &'a self,
        items: Vec<T>,
        path: fn(&T) -> VmRef,
        remove: F,
    ) -> Outcome
    where
        F: Fn(T) -> Fut,
        Fut: std::future::Future<Output = Result<(), CloudError>> + 'a,
    {
        let results = bounded(items, self.inner.settings.concurrency, |item| {
            let vm = path(&item);
            let run = (!self.is_cancelled()).then(|| remove(item));
            async move {
                match run {
                    Some(f) => (vm, Some(f.await)),
                    None => (vm, None),
                }
            }
        })
        .await;
        let mut outcome = Outcome::default();
        for (vm, result) in results {
            match result {
                Some(Ok(())) => outcome.removed.push(vm),
                Some(Err(e)) => outcome.errors.push(e),
                None => outcome.skipped.push(vm),
            }
        }
        outcome
    }

    /// Deletes every tracked instance, then every tracked image, several at
    /// a time, trying all of them and returning what was removed, or every
    /// error with what was removed all the same. Each VM is destroyed only
    /// if it still carries the marker of the launch that made it; a clone
    /// whose outcome is unknown is looked for first. What could not be
    /// deleted stays tracked; a second `clean` after a successful one does
    /// nothing. With a cancellation token ([`Cloud::cancel_on`]), no
    /// deletion starts once it is cancelled.
    pub async fn clean(&self) -> Result<Vec<VmRef>, CleanError> {
        let tracked = self.inner.tracked().clone();
        let (instances, images): (Vec<_>, Vec<_>) =
            tracked.into_iter().partition(|t| t.kind == Kind::Instance);
        let mut all = Outcome::default();
        for group in [instances, images] {
            let outcome = self
                .remove_each(
                    group,
                    |t| t.vm.clone(),
                    |t| async move {
                        // A clone still unaccounted for after its launch ended
                        // is looked for once, not waited for.
                        self.inner.remove_tracked(&t, Duration::ZERO).await
                    },
                )
                .await;
            all.extend(outcome);
        }
        all.into_result()
    }

    /// The annotation glob that finds the VMs of `scope` (a superset for
    /// `Family`, narrowed by [`Scope::matches`]).
    pub(crate) fn scope_glob(&self, scope: &Scope) -> String {
        match scope {
            Scope::ThisTag => annotation_glob(Some(&self.inner.tag)),
            Scope::Tag(t) => annotation_glob(Some(t)),
            Scope::Family(base) => format!("{}*", annotation_prefix_for(base)),
            Scope::AllTags => annotation_glob(None),
        }
    }

    /// vmw's VMs in the folder (found by their marker; not in subfolders),
    /// with power state and address: two govc calls however many there
    /// are (`find`, then one `object.collect` of the folder).
    pub async fn list(&self, scope: &Scope) -> Result<Vec<VmRecord>, CloudError> {
        self.recover_once().await;
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
        // One collect of the folder (its subfolders too) gives what a
        // record shows; a name found there more than once is read by its
        // path.
        let mut infos = self
            .inner
            .govc
            .exec(&VmMarks {
                folder: folder.clone(),
            })
            .await?;
        let twice: Vec<VmRef> = refs
            .iter()
            .filter(|r| infos.iter().filter(|i| i.name == r.name()).count() > 1)
            .cloned()
            .collect();
        if !twice.is_empty() {
            infos.retain(|i| twice.iter().all(|r| r.name() != i.name));
            infos.extend(
                self.inner
                    .govc
                    .exec(&VmInfo {
                        vms: twice,
                        extra_config: false,
                    })
                    .await?,
            );
        }
        let infos: Vec<_> = infos
            .into_iter()
            .filter(|i| refs.iter().any(|r| r.name() == i.name))
            .collect();
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
                    interrupted: crate::journal::is_interrupted(&vm.annotation),
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
    /// Returns the paths removed; every deletion is tried (unless the
    /// handle is cancelled, see [`Cloud::cancel_on`]), and an error keeps
    /// what was removed.
    pub async fn delete_listed(&self, records: &[VmRecord]) -> Result<Vec<VmRef>, CleanError> {
        let (images, instances): (Vec<_>, Vec<_>) =
            records.iter().partition(|r| r.kind == Kind::Image);
        let mut all = Outcome::default();
        for group in [instances, images] {
            let outcome = self
                .remove_each(
                    group,
                    |r| r.path.clone(),
                    |r| async move {
                        let expect = Expect::Listed {
                            tag: &r.tag,
                            moref: &r.moref,
                        };
                        self.inner.destroy_checked(&r.path, expect).await?;
                        self.inner.untrack_path(&r.path);
                        Ok(())
                    },
                )
                .await;
            all.extend(outcome);
        }
        all.into_result()
    }

    /// Deletes vmw's VMs of `scope` (instances first, then images), whether
    /// or not this process made them: the way to remove what a crashed run
    /// left behind. Lists them, then deletes exactly those listed. Returns
    /// the paths removed; every deletion is tried, and an error keeps what
    /// was removed.
    pub async fn sweep(&self, scope: &Scope) -> Result<Vec<VmRef>, CleanError> {
        let records = self
            .list(scope)
            .await
            .map_err(|e| CleanError::new(Vec::new(), vec![e], Vec::new()))?;
        self.delete_listed(&records).await
    }
}

impl<G: Govc + 'static> Cloud<G> {
    /// Finds what runs killed outright (SIGKILL, OOM, a reboot) were making
    /// on this cloud's vCenter and folder, from the records they left in
    /// the journal ([`Settings::journal`](crate::Settings::journal)), and
    /// marks it so that [`Cloud::list`] shows it
    /// ([`VmRecord::interrupted`](crate::VmRecord::interrupted)) and
    /// [`Cloud::sweep`] and `clean` of its tag remove it. Records of runs
    /// still going are left alone; a VM that carries another marker, is a
    /// template, or was made before the record is never touched. Costs no
    /// govc call when there is nothing to resolve.
    ///
    /// [`Cloud::launch`], [`Cloud::launch_many`], [`Cloud::list`],
    /// [`Cloud::sweep`] and [`Cloud::delete_vm`] run it once per cloud
    /// (unless [`Settings::recover`](crate::Settings::recover) is off),
    /// logging what it did.
    pub async fn recover(&self) -> Result<crate::Recovery, CloudError> {
        let inner = &self.inner;
        let Some(journal) = inner.journal.clone() else {
            return Ok(crate::journal::Recovery::default());
        };
        let (stale, live) = tokio::task::spawn_blocking(move || journal.stale())
            .await
            .map_err(|e| CloudError::Io {
                what: "reading the journal".to_owned(),
                source: std::io::Error::other(e),
            })??;
        let server = inner.config.server_display();
        let (mine, others): (Vec<_>, Vec<_>) = stale
            .into_iter()
            .partition(|s| s.record.server == server && s.record.folder == inner.config.folder);
        drop(others);
        let results = bounded(mine, inner.settings.concurrency, |s| async move {
            let r = inner.resolve(&s.record).await;
            (s, r)
        })
        .await;
        let mut recovery = crate::journal::Recovery {
            live,
            ..crate::journal::Recovery::default()
        };
        for (stale, result) in results {
            match result {
                Ok(crate::journal::Resolution::Pending(vm)) => recovery.pending.push(vm),
                Ok(r) => {
                    match r {
                        crate::journal::Resolution::Marked(vm) => recovery.marked.push(vm),
                        crate::journal::Resolution::Foreign(vm) => recovery.foreign.push(vm),
                        crate::journal::Resolution::Nothing
                        | crate::journal::Resolution::Pending(_) => {
                            recovery.nothing_there += 1;
                        }
                    }
                    stale.remove();
                }
                Err(e) => recovery.errors.push(e),
            }
        }
        Ok(recovery)
    }

    /// [`Cloud::recover`], once per cloud, its outcome logged.
    pub(crate) async fn recover_once(&self) {
        let inner = &self.inner;
        if !inner.settings.recover || inner.journal.is_none() {
            return;
        }
        inner
            .recovered
            .get_or_init(|| async {
                match self.recover().await {
                    Ok(r) => log_recovery(&r),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look for what interrupted runs left");
                    }
                }
            })
            .await;
    }
}

/// Logs what a recovery did.
fn log_recovery(r: &crate::journal::Recovery) {
    for vm in &r.marked {
        tracing::warn!(vm = %vm, "found a VM an interrupted vmw run left; it is marked so that `clean` of its tag removes it");
    }
    for vm in &r.pending {
        tracing::info!(vm = %vm, "an interrupted run asked for this VM; vCenter may still be making it (looked at again next time)");
    }
    for vm in &r.foreign {
        tracing::info!(vm = %vm, "an interrupted run's record names a VM that is not its own: left alone");
    }
    for e in &r.errors {
        tracing::warn!(error = %e, "could not resolve a record an interrupted run left (tried again next time)");
    }
}

/// What a run of deletions did.
#[derive(Default)]
struct Outcome {
    removed: Vec<VmRef>,
    errors: Vec<CloudError>,
    skipped: Vec<VmRef>,
}

impl Outcome {
    fn extend(&mut self, other: Outcome) {
        self.removed.extend(other.removed);
        self.errors.extend(other.errors);
        self.skipped.extend(other.skipped);
    }

    fn into_result(self) -> Result<Vec<VmRef>, CleanError> {
        if self.errors.is_empty() && self.skipped.is_empty() {
            Ok(self.removed)
        } else {
            Err(CleanError::new(self.removed, self.errors, self.skipped))
        }
    }
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
