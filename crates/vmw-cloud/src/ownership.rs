//! Which VMs are vmw's, and the one way vmw destroys a VM.
//!
//! Every destruction — delete, image delete, clean, sweep, a launch's
//! rollback, an import's replacement — goes through
//! [`Inner::destroy_checked`]: one `vm.info` of the exact inventory path
//! right before the `vm.destroy` of that same path, refusing templates
//! always, and refusing anything without vmw's marker (or with another
//! launch's marker, when a rollback asks for its own) unless forced. A
//! "not found" counts as "already gone" only when govc names our path and a
//! second lookup confirms it.
//!
//! The tracker is the list of VMs a [`crate::Cloud`] made and has not yet
//! removed, each with the launch id in its marker; an entry is made
//! *before* the clone request is sent (state "cloning"), so a cancelled or
//! dropped launch still knows what may appear.

use std::time::Duration;

use vmw_govc::requests::{VmChange, VmDestroy};
use vmw_govc::{ErrorKind, Govc, GovcExt, VmRef, parse};

use crate::CloudError;
use crate::inner::{Inner, Tracked};
use crate::settings::TEMPLATE_PREFIX;
use crate::tag::{Kind, parse_marker};

/// What a destruction insists on before it destroys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect<'a> {
    /// vmw's marker with exactly this launch id: a rollback, or a VM this
    /// cloud made.
    Launch(&'a str),
    /// vmw's marker of this tag, on the object with this managed object id
    /// (as listed before the user confirmed).
    Listed {
        /// The tag listed.
        tag: &'a str,
        /// The object listed.
        moref: &'a str,
    },
    /// vmw's marker, whatever its tag.
    Marker,
    /// No marker at all, on the object with this managed object id (an
    /// unmarked VM the user listed and confirmed, see
    /// [`crate::Cloud::unmarked`]).
    Unmarked {
        /// The object listed.
        moref: &'a str,
    },
    /// Anything but a template (the caller forced it).
    Forced,
    /// A source template being replaced by an import, or the template an
    /// import made: the one destruction of a template vmw does. With
    /// `launch`, it must carry that import's marker; else, unless
    /// `forced`, vmw's marker.
    Template {
        /// The import that made it.
        launch: Option<&'a str>,
        /// Whether a template without vmw's marker may go.
        forced: bool,
    },
}

/// What a failed clone may have left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloneFailureKind {
    /// Nothing: vCenter or govc refused it before cloning.
    Refused,
    /// Whatever is at the path now (govc reported the failure).
    Answered,
    /// Unknown: the clone task may still finish.
    Unknown,
}

/// How a destruction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The VM was destroyed now.
    Destroyed,
    /// There was no VM at that path.
    AlreadyGone,
}

/// Whether `info` is a template vmw must never destroy: a vSphere
/// template, a VM named `TEMPLATE-cloud-init-*`, or a source template vmw
/// imported.
pub(crate) fn is_protected(vm: &VmRef, info: &parse::VmInfo) -> bool {
    info.template
        || vm.name().starts_with(TEMPLATE_PREFIX)
        || parse_marker(&info.annotation).is_some_and(|m| m.kind == Kind::Template)
}

/// What a VM's SSH host key is pinned under: a VM vmw made by its launch
/// id, unique for every clone; any other by its path and managed object id.
/// Never by address: a new VM at a reused address is another machine.
pub(crate) fn host_key_identity(vm: &VmRef, launch: Option<&str>, moref: Option<&str>) -> String {
    match (launch, moref) {
        (Some(l), _) => format!("vmw-launch:{l}"),
        (None, Some(m)) => format!("vm:{vm}#{m}"),
        (None, None) => format!("vm:{vm}"),
    }
}

impl<G: Govc> Inner<G> {
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

    /// The VM at `vm`, if there is one, surely with its name, id, marker,
    /// template flag, power state and address (asked together with the
    /// lookups of other lanes waiting at the same time, see
    /// [`crate::lookups`]; the other fields may be empty).
    pub(crate) async fn lookup(&self, vm: &VmRef) -> Result<Option<parse::VmInfo>, CloudError> {
        self.lookups.lookup(&self.govc, vm).await
    }

    /// Everything `vm.info` tells of the VM at `vm` (its devices too), if
    /// there is one.
    pub(crate) async fn vm_info(&self, vm: &VmRef) -> Result<Option<parse::VmInfo>, CloudError> {
        crate::lookups::lookup_alone(&self.govc, vm).await
    }

    /// Checks, right before a change that cannot be undone (a revert, a
    /// snapshot's removal), that `vm` exists, is not a template and carries
    /// the marker `expect` asks for.
    pub(crate) async fn check_ours(
        &self,
        vm: &VmRef,
        expect: Expect<'_>,
    ) -> Result<(), CloudError> {
        let info = self.lookup(vm).await?.ok_or_else(|| CloudError::NoSuchVm {
            name: vm.to_string(),
        })?;
        if is_protected(vm, &info) {
            return Err(CloudError::TemplateProtected {
                name: vm.to_string(),
            });
        }
        check_marker(vm, &info, expect)
    }

    /// Destroys the VM at `vm` if it is what `expect` asks for: looked up
    /// right before, templates refused, vmw's marker checked; "already
    /// gone" is success, but only when confirmed by a lookup.
    pub(crate) async fn destroy_checked(
        &self,
        vm: &VmRef,
        expect: Expect<'_>,
    ) -> Result<Removal, CloudError> {
        let Some(info) = self.lookup(vm).await? else {
            return Ok(Removal::AlreadyGone);
        };
        if is_protected(vm, &info) && !matches!(expect, Expect::Template { .. }) {
            return Err(CloudError::TemplateProtected {
                name: vm.to_string(),
            });
        }
        check_marker(vm, &info, expect)?;
        match self.govc.exec(&VmDestroy::new(vm.clone())).await {
            Ok(()) => {
                self.forget_host_key(vm, &info).await;
                Ok(Removal::Destroyed)
            }
            Err(e) if e.is_vm_not_found(vm.as_str()) => match self.lookup(vm).await? {
                None => Ok(Removal::AlreadyGone),
                Some(_) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// After a clone that may have made a VM: looks for it at `t.vm` until
    /// `grace` has passed, and removes it when it is this launch's.
    ///
    /// govc's `vm.clone` writes the annotation (vmw's marker) with a second
    /// call once the clone is done, so a clone whose govc died or lost its
    /// connection in between leaves a VM without the marker. The path was
    /// free before the clone (vmw looked it up, or numbered the name above
    /// every one the folder's search found), and a clone onto a taken
    /// path fails, so a VM without any marker found there afterwards is this
    /// clone's: once it has stayed unmarked for `unmarked_for` (time enough
    /// for another vmw's govc to write its own marker, had it won the name),
    /// vmw writes this launch's marker on it and destroys it. A VM with
    /// another launch's marker is left alone.
    ///
    /// `answered`: govc reported how the clone ended, so what is there now
    /// is all there will be — nothing there means nothing was made.
    /// Otherwise the VM is looked for until `grace` has passed.
    ///
    /// `Ok(true)`: removed; `Ok(false)`: nothing of this launch's is there
    /// (another launch's VM, or, when `answered`, nothing at all); an error
    /// when it never appeared ([`CloudError::MayExist`]) or could not be
    /// removed.
    pub(crate) async fn settle_clone(
        &self,
        t: &Tracked,
        grace: Duration,
        answered: bool,
    ) -> Result<bool, CloudError> {
        let settle = self.settings.unmarked_settle;
        let started = tokio::time::Instant::now();
        let mut unmarked_since: Option<tokio::time::Instant> = None;
        let mut claimed = false;
        let mut last_error = None;
        loop {
            match self.lookup(&t.vm).await {
                Ok(Some(info)) => {
                    let marker = parse_marker(&info.annotation);
                    match marker.as_ref().map(|m| m.launch.as_deref()) {
                        Some(Some(l)) if l == t.launch => {
                            match self.destroy_checked(&t.vm, Expect::Launch(&t.launch)).await {
                                Ok(_) => return Ok(true),
                                // A VM still being made cannot be destroyed yet.
                                Err(e) => last_error = Some(e),
                            }
                        }
                        // Another launch's VM: this clone lost the race for
                        // the name; that VM is not ours to touch.
                        Some(_) => return Ok(false),
                        None if is_protected(&t.vm, &info) => return Ok(false),
                        None => {
                            let since =
                                *unmarked_since.get_or_insert_with(tokio::time::Instant::now);
                            if !claimed && since.elapsed() >= settle {
                                match self.claim(&t.vm, &t.marker).await {
                                    Ok(()) => claimed = true,
                                    Err(e) => last_error = Some(e),
                                }
                            }
                        }
                    }
                }
                Ok(None) => unmarked_since = None,
                Err(e) => last_error = Some(e),
            }
            let waited = started.elapsed();
            // An unmarked VM waiting to be claimed (or just claimed) is
            // seen through, whatever the grace.
            let pending_claim =
                unmarked_since.is_some_and(|s| s.elapsed() < settle + Duration::from_secs(5));
            if waited >= grace && !pending_claim {
                return match last_error {
                    Some(e) => Err(e),
                    None if answered && unmarked_since.is_none() => Ok(false),
                    None => Err(CloudError::MayExist {
                        vm: t.vm.to_string(),
                        waited: grace,
                    }),
                };
            }
            tokio::time::sleep(self.settings.clone_poll).await;
        }
    }

    /// Writes `marker` on the VM at `vm` (one `vm.change -annotation`).
    async fn claim(&self, vm: &VmRef, marker: &str) -> Result<(), CloudError> {
        tracing::info!(vm = %vm, "the clone left its VM without vmw's marker; marking it to remove it");
        self.annotate(vm, marker).await
    }

    /// Sets the annotation of the VM at `vm` (one `vm.change -annotation`).
    pub(crate) async fn annotate(&self, vm: &VmRef, annotation: &str) -> Result<(), CloudError> {
        let mut change = VmChange::new(vm.clone());
        change.annotation = Some(annotation.to_owned());
        Ok(self.govc.exec(&change).await?)
    }

    /// Removes the destroyed VM's pinned SSH host key (best effort).
    async fn forget_host_key(&self, vm: &VmRef, info: &parse::VmInfo) {
        let Some(store) = self.settings.known_hosts.clone() else {
            return;
        };
        let launch = parse_marker(&info.annotation).and_then(|m| m.launch);
        let identity = host_key_identity(vm, launch.as_deref(), Some(&info.moref));
        let forgot = tokio::task::spawn_blocking(move || store.forget(&identity)).await;
        if let Ok(Err(e)) = forgot {
            tracing::warn!(vm = %vm, error = %e, "could not forget the VM's SSH host key");
        }
    }

    /// What a failed `vm.clone` may have left.
    pub(crate) fn clone_failure(e: &vmw_govc::GovcError) -> CloneFailureKind {
        match e.kind() {
            // Refused before anything was made (a login or TLS failure
            // happens before the clone request).
            ErrorKind::DuplicateName
            | ErrorKind::AmbiguousResourcePool
            | ErrorKind::Usage
            | ErrorKind::Authentication
            | ErrorKind::Tls
            | ErrorKind::GovcMissing
            | ErrorKind::UnsupportedVersion => CloneFailureKind::Refused,
            // A VM still being created was met: the clone may go on.
            ErrorKind::InventoryChanged => CloneFailureKind::Unknown,
            // govc finished and reported: the clone, or the annotation
            // written after it, failed; the VM is there or not, now.
            _ if matches!(e, vmw_govc::GovcError::Failed(_))
                && e.kind() != ErrorKind::ConnectionLost =>
            {
                CloneFailureKind::Answered
            }
            // A lost connection, a stopped govc: the task may still run.
            _ => CloneFailureKind::Unknown,
        }
    }
}

fn check_marker(vm: &VmRef, info: &parse::VmInfo, expect: Expect<'_>) -> Result<(), CloudError> {
    let marker = parse_marker(&info.annotation);
    let refuse = |reason: String| {
        Err(CloudError::NotOurs {
            vm: vm.to_string(),
            reason,
        })
    };
    match (expect, &marker) {
        (Expect::Forced, _)
        | (
            Expect::Template {
                launch: None,
                forced: true,
            },
            _,
        ) => Ok(()),
        (
            Expect::Template {
                launch: None,
                forced: false,
            },
            Some(_),
        ) => Ok(()),
        (
            Expect::Template {
                launch: Some(id), ..
            },
            Some(m),
        ) => {
            if m.launch.as_deref() == Some(id) {
                Ok(())
            } else {
                refuse("it was not made by this import".to_owned())
            }
        }
        (Expect::Unmarked { moref }, None) => {
            if info.moref == moref {
                Ok(())
            } else {
                refuse(format!(
                    "it is another object ({}) than the one listed ({moref})",
                    info.moref
                ))
            }
        }
        (Expect::Unmarked { .. }, Some(_)) => {
            refuse("it carries vmw's marker now; `clean` of its tag removes it".to_owned())
        }
        (_, None) => refuse("it does not carry vmw's marker".to_owned()),
        (Expect::Marker, Some(_)) => Ok(()),
        (Expect::Launch(id), Some(m)) => {
            if m.launch.as_deref() == Some(id) {
                Ok(())
            } else {
                refuse(format!(
                    "it was made by another vmw launch (tag {}, launch {}), not by this one ({id})",
                    m.tag,
                    m.launch.as_deref().unwrap_or("unknown")
                ))
            }
        }
        (Expect::Listed { tag, moref }, Some(m)) => {
            if info.moref != moref {
                refuse(format!(
                    "it is another object ({}) than the one listed ({moref})",
                    info.moref
                ))
            } else if m.tag != tag {
                refuse(format!("its tag is now {} (listed: {tag})", m.tag))
            } else {
                Ok(())
            }
        }
    }
}
