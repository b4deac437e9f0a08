//! [`Cloud`]: the handle users hold, its settings and accessors.
//!
//! What a cloud does is split by responsibility: [`crate::builder`] makes
//! one, [`crate::launch`] launches, [`crate::images`] finds and makes
//! images, [`crate::inventory`] finds, lists and removes VMs, and
//! [`crate::inner`] holds the state a cloud and its instances share,
//! with the tracking of every VM made.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;
use vmw_config::VmwareConfig;
use vmw_govc::{Govc, ProcessGovc, VmRef};

use crate::inner::Inner;
use crate::tag::Kind;
use crate::{CloudError, KeyPair, Tag};

/// A vSphere "cloud": a configuration, a tag naming what it makes, an SSH key
/// pair, and a govc backend (the real govc unless built with another, see
/// [`crate::CloudBuilder::build_with`]). Everything it creates is tracked
/// until deleted, and [`Cloud::clean`] removes what is left. Cloning a
/// `Cloud` gives another handle on the same state.
pub struct Cloud<G: Govc = ProcessGovc> {
    pub(crate) inner: Arc<Inner<G>>,
    /// What cancels the long operations of this handle.
    pub(crate) cancel: Option<CancellationToken>,
}

impl<G: Govc> Clone for Cloud<G> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

pub(crate) async fn bounded<T, F, Fut>(items: Vec<T>, limit: usize, f: F) -> Vec<Fut::Output>
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

impl<G: Govc> std::fmt::Debug for Cloud<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud")
            .field("tag", &self.inner.tag)
            .field("config", &self.inner.config)
            .field("key", &self.inner.key_pair().public_path)
            .finish()
    }
}

impl<G: Govc + 'static> Cloud<G> {
    /// A handle on the same cloud whose long operations stop when `token`
    /// is cancelled, each the same way: [`Cloud::launch`] and
    /// [`Cloud::launch_many`] start no more lanes, and every lane under way
    /// removes what it made (a clone in flight is awaited for
    /// [`Settings::clone_grace`](crate::Settings::clone_grace) first) and
    /// fails with [`CloudError::Cancelled`] as its cause;
    /// [`Cloud::snapshot`] removes the image it was making;
    /// [`Cloud::clean`], [`Cloud::sweep`] and [`Cloud::delete_listed`]
    /// start no more deletions and report what they left in
    /// [`CleanError::skipped`](crate::CleanError::skipped). The cloud
    /// itself, and other handles on it, are not affected.
    #[must_use]
    pub fn cancel_on(&self, token: &CancellationToken) -> Self {
        Self {
            inner: self.inner.clone(),
            cancel: Some(token.clone()),
        }
    }

    /// Whether this handle's cancellation token was cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
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
    pub fn key_pair(&self) -> KeyPair {
        self.inner.key_pair()
    }

    /// Uses `key` from now on (pycloudlib's `use_key`): instances launched
    /// later get its public key, and SSH connections made later
    /// authenticate with it (through the SSH agent when it holds it).
    /// Instances already running keep the key they were launched with.
    pub fn use_key(&self, key: KeyPair) {
        let credentials = crate::builder::credentials(&key, self.inner.agent.as_deref());
        *self.inner.keys.write().unwrap_or_else(|e| e.into_inner()) = (key, credentials);
    }

    /// The cloud's tuning.
    pub fn settings(&self) -> &crate::Settings {
        &self.inner.settings
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

    pub(crate) fn tracked_of(&self, kind: Kind) -> Vec<VmRef> {
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
}
