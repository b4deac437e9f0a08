//! Images: the released templates, and snapshots of instances.

use std::collections::BTreeSet;

use tokio_util::sync::CancellationToken;
use vmw_govc::requests::{Find, ObjectType};
use vmw_govc::{Govc, GovcExt, VmRef};

use crate::cloud::Cloud;
use crate::launch::CloneFailure;
use crate::ownership::Removal;
use crate::progress::Step;
use crate::settings::TEMPLATE_PREFIX;
use crate::tag::{Kind, new_launch_id};
use crate::{CloudError, Instance};

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

impl<G: Govc + 'static> Cloud<G> {
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
    /// The template is looked up by its path (one `vm.info`, which a launch
    /// from it then reuses); the folder is searched only to list the
    /// releases when there is none.
    pub async fn released_image(&self, release: &str) -> Result<Image, CloudError> {
        let name = format!("{TEMPLATE_PREFIX}{release}");
        let unknown = |available: Vec<String>| CloudError::UnknownRelease {
            release: release.to_owned(),
            folder: self.inner.config.folder.clone(),
            available,
        };
        if let Some(releases) = self.inner.templates.get() {
            if releases.iter().any(|r| r == release) {
                return Ok(Image {
                    path: self.inner.vm_ref(&name)?,
                    name,
                });
            }
            return Err(unknown(releases.clone()));
        }
        let path = match self.inner.vm_ref(&name) {
            Ok(path) if !release.is_empty() => path,
            _ => return Err(unknown(self.releases().await?)),
        };
        match self.source_facts(&path, true).await {
            Ok(_) => Ok(Image { path, name }),
            Err(CloudError::NoSuchVm { .. }) => Err(unknown(self.releases().await?)),
            Err(e) => Err(e),
        }
    }

    /// The same as [`Cloud::released_image`]: vSphere has no daily images.
    pub async fn daily_image(&self, release: &str) -> Result<Image, CloudError> {
        self.released_image(release).await
    }

    /// The image a name means (pycloudlib's `get_image_id_from_name`): the
    /// source template or vmw image of exactly that name in the folder,
    /// else the first, in name order, whose name contains `name`.
    pub async fn image_by_name(&self, name: &str) -> Result<Image, CloudError> {
        let mut names: Vec<String> = self
            .releases()
            .await?
            .into_iter()
            .map(|r| format!("{TEMPLATE_PREFIX}{r}"))
            .collect();
        names.extend(
            self.list(&crate::Scope::AllTags)
                .await?
                .into_iter()
                .filter(|r| r.kind == crate::Kind::Image)
                .map(|r| r.name),
        );
        names.sort();
        let found = names
            .iter()
            .find(|n| *n == name)
            .or_else(|| names.iter().find(|n| n.contains(name)))
            .ok_or_else(|| CloudError::NoSuchVm {
                name: format!("an image whose name contains {name:?}"),
            })?;
        Ok(Image {
            path: self.inner.vm_ref(found)?,
            name: found.clone(),
        })
    }

    /// Image serials do not exist on vSphere.
    pub fn image_serial(&self, image: &str) -> Result<String, CloudError> {
        Err(CloudError::NotSupported {
            what: format!("an image serial (asked for {image}) on VMware"),
            hint: Some("vSphere templates carry no serial; use the template name".to_owned()),
        })
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

    /// [`Cloud::snapshot`], cancellable: on cancellation the clone in flight is
    /// awaited for [`Settings::clone_grace`](crate::Settings::clone_grace) and
    /// removed.
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
            .clone_tracked(&clone, Kind::Image, &launch, cancel, false)
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
}
