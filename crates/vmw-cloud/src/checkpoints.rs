//! Checkpoints: vSphere snapshots of an instance's disks, to reset a test
//! VM to a known state in seconds instead of launching a new one
//! ([`Instance::checkpoint`], [`Instance::revert`]). Taking, reverting and
//! removing are checked like a deletion: only a VM with vmw's marker, never
//! a template.

use vmw_govc::parse::Snapshot;
use vmw_govc::requests::{SnapshotCreate, SnapshotRemove, SnapshotRevert, SnapshotTree};
use vmw_govc::{Govc, GovcExt};

use crate::{CloudError, Instance, Removal};

/// A checkpoint of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its id (`snapshot-42`): what names it exactly.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub created: Option<String>,
    /// Whether the VM runs on it now (the last one taken or reverted to).
    pub current: bool,
}

impl From<Snapshot> for Checkpoint {
    fn from(s: Snapshot) -> Self {
        Self {
            id: s.id,
            name: s.name,
            created: s.created,
            current: s.current,
        }
    }
}

impl<G: Govc> Instance<G> {
    /// The instance's checkpoints, oldest first along each branch.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, CloudError> {
        let tree = self
            .cloud()
            .govc
            .exec(&SnapshotTree {
                vm: self.vm().clone(),
            })
            .await?;
        Ok(tree.into_iter().map(Checkpoint::from).collect())
    }

    /// Takes a checkpoint named `name` (of the disks; a running guest's
    /// memory is not kept, so a revert leaves the VM off). A name this
    /// instance has already is refused: names pick checkpoints. Only on a
    /// VM carrying vmw's marker.
    pub async fn checkpoint(&self, name: &str) -> Result<Checkpoint, CloudError> {
        if name.trim().is_empty() {
            return Err(CloudError::InvalidOption {
                option: "checkpoint name",
                value: name.to_owned(),
                problem: "give a name".to_owned(),
            });
        }
        if self.checkpoints().await?.iter().any(|c| c.name == name) {
            return Err(CloudError::InvalidOption {
                option: "checkpoint name",
                value: name.to_owned(),
                problem: format!("{} has a checkpoint of that name already", self.name()),
            });
        }
        self.cloud().check_ours(self.vm(), self.expect()).await?;
        self.cloud()
            .govc
            .exec(&SnapshotCreate {
                vm: self.vm().clone(),
                name: name.to_owned(),
                description: Some("checkpoint made by vmw".to_owned()),
            })
            .await?;
        self.checkpoints()
            .await?
            .into_iter()
            .rfind(|c| c.name == name)
            .ok_or_else(|| CloudError::NoSuchCheckpoint {
                vm: self.vm().to_string(),
                checkpoint: name.to_owned(),
                known: Vec::new(),
            })
    }

    /// The checkpoint `which` (an id, or a name that only one has).
    async fn find_checkpoint(&self, which: &str) -> Result<Option<Checkpoint>, CloudError> {
        let all = self.checkpoints().await?;
        if let Some(c) = all.iter().find(|c| c.id == which) {
            return Ok(Some(c.clone()));
        }
        let named: Vec<&Checkpoint> = all.iter().filter(|c| c.name == which).collect();
        match named.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            several => Err(CloudError::InvalidOption {
                option: "checkpoint",
                value: which.to_owned(),
                problem: format!(
                    "{} checkpoints of {} have that name; name one by its id: {}",
                    several.len(),
                    self.name(),
                    several
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Puts the VM back to the checkpoint `which` (an id or a unique name):
    /// its disks as they were, and off (checkpoints keep no memory). Only a
    /// VM carrying vmw's marker, checked right before.
    pub async fn revert(&self, which: &str) -> Result<Checkpoint, CloudError> {
        let Some(c) = self.find_checkpoint(which).await? else {
            return Err(self.no_such_checkpoint(which).await);
        };
        self.cloud().check_ours(self.vm(), self.expect()).await?;
        self.cloud()
            .govc
            .exec(&SnapshotRevert {
                vm: self.vm().clone(),
                snapshot: c.id.clone(),
            })
            .await?;
        self.forget_guest().await;
        Ok(c)
    }

    /// Removes the checkpoint `which` (an id or a unique name); its
    /// children stay. One that is not there is success. Only on a VM
    /// carrying vmw's marker, checked right before.
    pub async fn delete_checkpoint(&self, which: &str) -> Result<Removal, CloudError> {
        let Some(c) = self.find_checkpoint(which).await? else {
            return Ok(Removal::AlreadyGone);
        };
        self.cloud().check_ours(self.vm(), self.expect()).await?;
        self.cloud()
            .govc
            .exec(&SnapshotRemove {
                vm: self.vm().clone(),
                snapshot: c.id,
            })
            .await?;
        Ok(Removal::Destroyed)
    }

    async fn no_such_checkpoint(&self, which: &str) -> CloudError {
        CloudError::NoSuchCheckpoint {
            vm: self.vm().to_string(),
            checkpoint: which.to_owned(),
            known: self
                .checkpoints()
                .await
                .map(|all| all.into_iter().map(|c| c.name).collect())
                .unwrap_or_default(),
        }
    }
}
