//! Images: the released templates, and snapshots of instances.

use std::collections::BTreeSet;

use vmw_govc::requests::{Find, ObjectType};
use vmw_govc::{Govc, GovcExt, VmRef};

use crate::cloud::Cloud;
use crate::launch::CloneFailure;
use crate::progress::Step;
use crate::settings::TEMPLATE_PREFIX;
use crate::tag::{Kind, new_launch_id};
use crate::{CloudError, Instance};

/// An image: a source VM that [`Cloud::launch`] can clone, at an exact
/// inventory path. [`Cloud::released_image`], [`Cloud::snapshot`] and
/// [`Cloud::image`] give one. Shown (`Display`) by its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Image {
    path: VmRef,
}

impl Image {
    /// The image at exactly `path`.
    pub fn at(path: VmRef) -> Self {
        Self { path }
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        self.path.name()
    }

    /// Its inventory path: what every govc call about it is given.
    pub fn path(&self) -> &VmRef {
        &self.path
    }
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl<G: Govc + 'static> Cloud<G> {
    /// The image a user means by `text`: an absolute inventory path, or the
    /// VM of that name in the cloud's folder (never a search; nothing is
    /// looked up: a launch from it checks it first). Glob characters and
    /// relative paths are refused.
    pub fn image(&self, text: &str) -> Result<Image, CloudError> {
        Ok(Image::at(self.inner.vm_ref(text)?))
    }

    /// Releases that have a `TEMPLATE-cloud-init-<release>` VM in the folder
    /// (found with one govc call, then cached until a release is asked for
    /// that the cache does not know, or a template is imported).
    pub async fn releases(&self) -> Result<Vec<String>, CloudError> {
        if let Some(known) = self.inner.releases() {
            return Ok(known);
        }
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
        let found: Vec<String> = set.into_iter().collect();
        self.inner.set_releases(Some(found.clone()));
        Ok(found)
    }

    /// The image of a release: `TEMPLATE-cloud-init-<release>`, when it
    /// exists; an unknown release is an error listing those available.
    /// A release the cache of [`Cloud::releases`] knows costs nothing;
    /// any other is looked up by its path (one `vm.info`, which a launch
    /// from it then reuses), so a template imported meanwhile, by this
    /// process or another, is found; the folder is searched only to list
    /// the releases when there is none.
    pub async fn released_image(&self, release: &str) -> Result<Image, CloudError> {
        let name = format!("{TEMPLATE_PREFIX}{release}");
        let unknown = |available: Vec<String>| CloudError::UnknownRelease {
            release: release.to_owned(),
            folder: self.inner.config.folder.clone(),
            available,
        };
        let path = match self.inner.vm_ref(&name) {
            Ok(path) if !release.is_empty() => path,
            _ => return Err(unknown(self.releases().await?)),
        };
        if self
            .inner
            .releases()
            .is_some_and(|known| known.iter().any(|r| r == release))
        {
            return Ok(Image::at(path));
        }
        match self.source_facts(&path, true).await {
            Ok(_) => {
                if let Some(mut known) = self.inner.releases() {
                    known.push(release.to_owned());
                    known.sort();
                    self.inner.set_releases(Some(known));
                }
                Ok(Image::at(path))
            }
            Err(CloudError::NoSuchVm { .. }) => {
                self.inner.set_releases(None);
                Err(unknown(self.releases().await?))
            }
            Err(e) => Err(e),
        }
    }

    /// Clones `instance` into the image `<name>-image` (powered off) in the
    /// cloud's folder, tracked for [`Cloud::clean`] and usable by
    /// [`Cloud::launch`]. With `clean`, the guest is cleaned first over SSH
    /// ([`Instance::clean_guest`]: cloud-init's state and logs, the machine
    /// id, the syslog; then flushed to disk), so instances launched from
    /// the image boot as new; without, a guest that answers is flushed to
    /// disk (`sync`) before its disks are copied.
    /// An existing VM of the image's name is never touched: the snapshot
    /// fails instead. With a cancellation token ([`Cloud::cancel_on`]), a
    /// clone in flight when it is cancelled is awaited for
    /// [`Settings::clone_grace`](crate::Settings::clone_grace) and removed.
    pub async fn snapshot(&self, instance: &Instance<G>, clean: bool) -> Result<Image, CloudError> {
        let inner = &self.inner;
        let name = format!("{}-image", instance.name());
        let target = VmRef::in_folder(&inner.config.folder, &name)?;
        let prepared = if clean {
            instance.clean_guest().await
        } else {
            instance.sync_if_reachable().await
        };
        prepared.map_err(|e| CloudError::Step {
            vm: target.to_string(),
            step: Step::CleanGuest,
            source: Box::new(e),
            removed: false,
            rollback: None,
        })?;
        let launch = new_launch_id();
        // The image carries the tag of the instance it is made from (when
        // vmw made it), so that `list` and `clean` of that tag cover both.
        let tag = instance.tag().unwrap_or(&inner.tag);
        let clone = inner.clone_request(instance.vm(), &target, tag, Kind::Image, &launch);
        match self
            .clone_tracked(&clone, Kind::Image, &launch, self.cancel.as_ref(), false)
            .await
        {
            Ok(()) => Ok(Image::at(target)),
            Err(CloneFailure::Duplicate(e) | CloneFailure::Failed(e)) => Err(e),
        }
    }
}
