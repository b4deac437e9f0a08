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

use vmw_govc::requests::{VmDestroy, VmInfo};
use vmw_govc::{ErrorKind, Govc, GovcExt, VmRef, parse};

use crate::CloudError;
use crate::cloud::{Inner, TEMPLATE_PREFIX};
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
    /// Anything but a template (the caller forced it).
    Forced,
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

/// One VM a cloud made (or is making) and has not removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tracked {
    pub(crate) vm: VmRef,
    pub(crate) kind: Kind,
    pub(crate) launch: String,
    /// The clone request was (or is about to be) sent and its outcome is
    /// not known yet.
    pub(crate) cloning: bool,
}

impl<G: Govc> Inner<G> {
    /// The VM at `vm`, if there is one.
    pub(crate) async fn lookup(&self, vm: &VmRef) -> Result<Option<parse::VmInfo>, CloudError> {
        Ok(self
            .govc
            .exec(&VmInfo::new(vm.clone()))
            .await?
            .into_iter()
            .next())
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
        if is_protected(vm, &info) {
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

    /// After a clone whose outcome is unknown: looks for the VM at `vm`
    /// until `grace` has passed, and removes it when it carries `launch`'s
    /// marker. `Ok(true)`: removed (or it appeared and was gone again);
    /// `Ok(false)`: a VM is there that this launch did not make (it is left
    /// alone); an error when it never appeared ([`CloudError::MayExist`]) or
    /// could not be removed.
    pub(crate) async fn settle_unknown_clone(
        &self,
        vm: &VmRef,
        launch: &str,
        grace: Duration,
    ) -> Result<bool, CloudError> {
        let started = tokio::time::Instant::now();
        let mut last_error = None;
        loop {
            match self.lookup(vm).await {
                Ok(Some(info)) => {
                    let ours = parse_marker(&info.annotation)
                        .and_then(|m| m.launch)
                        .is_some_and(|l| l == launch);
                    if !ours {
                        return Ok(false);
                    }
                    match self.destroy_checked(vm, Expect::Launch(launch)).await {
                        Ok(_) => return Ok(true),
                        // A VM still being made cannot be destroyed yet.
                        Err(e) => last_error = Some(e),
                    }
                }
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
            if started.elapsed() >= grace {
                return Err(last_error.unwrap_or(CloudError::MayExist {
                    vm: vm.to_string(),
                    waited: grace,
                }));
            }
            let pause = Duration::from_millis(500).min(grace.saturating_sub(started.elapsed()));
            tokio::time::sleep(pause).await;
        }
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

    /// Whether a failure of the clone may have left a VM: the request may
    /// have reached vCenter.
    pub(crate) fn clone_outcome_unknown(e: &vmw_govc::GovcError) -> bool {
        e.may_have_reached_server() || e.kind() == ErrorKind::InventoryChanged
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
        (Expect::Forced, _) => Ok(()),
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
