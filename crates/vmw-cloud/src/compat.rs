//! pycloudlib's names, for those who know its API: the waits and image
//! calls of pycloudlib's `BaseInstance` and `BaseCloud` that have no
//! vSphere name of their own. The rest of pycloudlib's API maps onto vmw's
//! own verbs:
//!
//! | pycloudlib | vmw |
//! |---|---|
//! | `instance.start()` | [`Instance::power_on`] + [`Instance::wait`] |
//! | `instance.shutdown()` | [`Instance::power_off`] (hard; vmw syncs first) |
//! | `instance.restart()` | [`Instance::restart`]`(Restart::PowerCycle, WaitStage::Ready)` |
//! | `instance.wait()` | [`Instance::wait`] |
//! | `instance.get_boot_id()` | [`Instance::boot_id`] |
//! | `instance.clean()` | [`Instance::clean_guest`] |
//! | `instance.delete()` | [`Instance::delete`] |
//! | `cloud.launch(image_id, ...)` | [`Cloud::launch`] with an [`Image`] |
//! | `cloud.snapshot(instance, clean)` | [`Cloud::snapshot`] |
//! | `cloud.clean()` | [`Cloud::clean`] |
//!
//! [`Restart`]: crate::Restart

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;
use vmw_govc::Govc;
use vmw_govc::parse::PowerState;

use crate::settings::TEMPLATE_PREFIX;
use crate::{Cloud, CloudError, Image, Instance, Removal};

impl<G: Govc> Instance<G> {
    /// Waits until the guest reports a boot id other than `old_boot_id`
    /// (read with [`Instance::boot_id`] before a restart vmw did not make),
    /// then until it is ready; both within the readiness wait.
    pub async fn wait_for_restart(&self, old_boot_id: &str) -> Result<IpAddr, CloudError> {
        if !self.new_boot_within(old_boot_id, self.ready_wait()).await {
            return Err(CloudError::TimedOut {
                vm: self.vm().to_string(),
                what: "to report a new boot id",
                waited: self.ready_wait(),
            });
        }
        self.wait().await
    }

    /// Waits until the VM is off, up to `timeout`.
    pub async fn wait_for_stop(&self, timeout: Duration) -> Result<(), CloudError> {
        if self.wait_for_state(PowerState::Off, timeout).await? {
            Ok(())
        } else {
            Err(CloudError::TimedOut {
                vm: self.vm().to_string(),
                what: "to be powered off",
                waited: timeout,
            })
        }
    }

    /// Waits until the VM is gone from the inventory, up to `timeout`.
    pub async fn wait_for_delete(&self, timeout: Duration) -> Result<(), CloudError> {
        let started = Instant::now();
        let poll = self.cloud().settings.poll;
        loop {
            if self.cloud().lookup(self.vm()).await?.is_none() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(CloudError::TimedOut {
                    vm: self.vm().to_string(),
                    what: "to be deleted",
                    waited: timeout,
                });
            }
            tokio::time::sleep(poll.min(timeout)).await;
        }
    }
}

impl<G: Govc + 'static> Cloud<G> {
    /// The same as [`Cloud::released_image`]: vSphere has no daily images.
    pub async fn daily_image(&self, release: &str) -> Result<Image, CloudError> {
        self.released_image(release).await
    }

    /// Image serials do not exist on vSphere: always
    /// [`CloudError::NotSupported`].
    pub fn image_serial(&self, image: &str) -> Result<String, CloudError> {
        Err(CloudError::NotSupported {
            what: format!("an image serial (asked for {image}) on VMware"),
            hint: Some("vSphere templates carry no serial; use the template name".to_owned()),
        })
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
        self.image(found)
    }

    /// Deletes an image ([`Cloud::delete_vm`] of its path): it must carry
    /// vmw's marker; templates are refused; an absent image is success.
    pub async fn delete_image(&self, image: &Image) -> Result<Removal, CloudError> {
        self.delete_vm(image.path().as_str()).await
    }
}
