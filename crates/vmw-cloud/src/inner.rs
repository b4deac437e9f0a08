//! The state a [`crate::Cloud`] and its [`crate::Instance`]s share, and
//! the tracking of every VM the cloud makes, from before the clone request
//! until it is removed.

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};

use vmw_config::VmwareConfig;
use vmw_govc::requests::VmClone;
use vmw_govc::{Govc, VmRef};
use vmw_ssh::Credentials;

use crate::settings::Settings;
use crate::tag::{Kind, annotation};
use crate::{CloudError, KeyPair, Tag};

/// One VM a cloud made (or is making) and has not removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tracked {
    pub(crate) vm: VmRef,
    pub(crate) kind: Kind,
    pub(crate) launch: String,
    /// The marker the clone writes.
    pub(crate) marker: String,
    /// The clone request was (or is about to be) sent and its outcome is
    /// not known yet.
    pub(crate) cloning: bool,
}

/// What a launch needs to know of its source VM (one `vm.info`, cached).
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceFacts {
    /// Its first serial port, which a clone has too.
    pub(crate) serial_port: Option<String>,
    /// Its first disk, which a clone has too.
    pub(crate) first_disk: Option<vmw_govc::parse::Disk>,
}

/// What a [`Cloud`](crate::Cloud) and its instances share: the backend,
/// the configuration, the tag and key, the settings, caches, and the
/// tracker of the VMs made.
pub(crate) struct Inner<G: Govc> {
    pub(crate) govc: G,
    pub(crate) config: VmwareConfig,
    pub(crate) tag: Tag,
    /// The key pair, and how SSH authenticates with it (the private key
    /// file is read on first use and kept); `Cloud::use_key` replaces both.
    pub(crate) keys: RwLock<(KeyPair, Credentials)>,
    /// The SSH agent's socket, if any.
    pub(crate) agent: Option<String>,
    pub(crate) settings: Settings,
    /// The releases that have a template, once searched (see
    /// [`crate::Cloud::releases`]); `None` until then, and again after an
    /// import.
    pub(crate) templates: Mutex<Option<Vec<String>>>,
    /// The snapshot id linked clones of each source are made from.
    pub(crate) linked_bases: tokio::sync::Mutex<BTreeMap<String, String>>,
    /// What launches need to know of each source VM, read once.
    pub(crate) sources: Mutex<BTreeMap<String, SourceFacts>>,
    pub(crate) tracker: Mutex<Vec<Tracked>>,
    /// Lookups of single VMs asked at the same time share one `vm.info`.
    pub(crate) lookups: crate::lookups::Lookups,
    /// The next instance number to try; found with one search of the
    /// folder on first use.
    pub(crate) next_number: tokio::sync::Mutex<Option<u64>>,
    /// When that search ran.
    pub(crate) searched_at: Mutex<Option<tokio::time::Instant>>,
    /// The tag was timestamped when the cloud was built: numbering starts
    /// at 1 without a search.
    pub(crate) tag_is_new: bool,
    /// Where clones are recorded before they are asked for.
    pub(crate) journal: Option<crate::journal::Journal>,
    /// The records open, by launch id.
    pub(crate) open_records: Mutex<BTreeMap<String, crate::journal::OpenRecord>>,
    /// The journal was looked at (see [`crate::Cloud::recover`]).
    pub(crate) recovered: tokio::sync::OnceCell<()>,
}

impl<G: Govc> Inner<G> {
    /// The key pair in use.
    pub(crate) fn key_pair(&self) -> KeyPair {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The releases known to have a template, if searched.
    pub(crate) fn releases(&self) -> Option<Vec<String>> {
        self.templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Remembers the releases that have a template (`None`: forget them).
    pub(crate) fn set_releases(&self, releases: Option<Vec<String>>) {
        *self.templates.lock().unwrap_or_else(|e| e.into_inner()) = releases;
    }

    /// How SSH authenticates now.
    pub(crate) fn credentials(&self) -> Credentials {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

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

    /// The VM a user means by `text`: an absolute inventory path, or else
    /// the VM of that name in the cloud's folder. Never a search.
    pub(crate) fn vm_ref(&self, text: &str) -> Result<VmRef, CloudError> {
        Ok(VmRef::resolve(&self.config.folder, text)?)
    }

    pub(crate) fn tracked(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
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

    /// Stops tracking what `launch` made at `vm` (its record goes).
    pub(crate) fn untrack(&self, vm: &VmRef, launch: &str) {
        self.tracked()
            .retain(|t| !(t.vm == *vm && t.launch == launch));
        self.close_record(launch);
    }

    /// Stops tracking whatever is tracked at `vm` (records included).
    pub(crate) fn untrack_path(&self, vm: &VmRef) {
        let launches: Vec<String> = {
            let mut tracked = self.tracked();
            let gone = tracked
                .iter()
                .filter(|t| t.vm == *vm)
                .map(|t| t.launch.clone())
                .collect();
            tracked.retain(|t| t.vm != *vm);
            gone
        };
        for launch in launches {
            self.close_record(&launch);
        }
    }

    /// The launch id this cloud used for the VM at `vm`, if it made it.
    pub(crate) fn launch_of(&self, vm: &VmRef) -> Option<String> {
        self.tracked()
            .iter()
            .find(|t| t.vm == *vm)
            .map(|t| t.launch.clone())
    }
}
