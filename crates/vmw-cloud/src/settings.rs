//! [`Settings`]: the tuning of a cloud (concurrency, waits, SSH, host
//! keys), and the naming of the source templates.

use std::time::Duration;

use vmw_ssh::{ReadyTimeouts, SshConfig};

/// Source VMs vmw launches from are named `TEMPLATE-cloud-init-<release>`.
pub const TEMPLATE_PREFIX: &str = "TEMPLATE-cloud-init-";

/// Tuning of a [`Cloud`](crate::Cloud).
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many VMs [`Cloud::launch_many`](crate::Cloud::launch_many),
    /// [`Cloud::clean`](crate::Cloud::clean) and
    /// [`Cloud::sweep`](crate::Cloud::sweep) work on at once.
    pub concurrency: usize,
    /// How long [`Instance::ip`](crate::Instance::ip) waits for a usable
    /// address.
    pub ip_wait: Duration,
    /// Pause between address queries while the guest reports only unusable
    /// (link-local) addresses.
    pub ip_poll: Duration,
    /// How instances are reached over SSH (user `ubuntu`, port 22 by default);
    /// [`Instance::set_ssh_config`](crate::Instance::set_ssh_config) changes it
    /// for one instance.
    pub ssh: SshConfig,
    /// How long [`Instance::wait`](crate::Instance::wait) waits for SSH and
    /// cloud-init (10 minutes by default), and how often it retries.
    pub ready: ReadyTimeouts,
    /// Before the first launch from an image, check (one `vm.info`, then
    /// cached) that it is not a vSphere template and carries no OVF
    /// environment, and fail early if it does. On by default.
    pub check_sources: bool,
    /// How long a clone whose outcome is unknown is waited for, so that it
    /// can be removed: after a cancellation (the clone in flight is awaited
    /// this long), after a lost connection or a stopped govc (the VM is
    /// looked for this long). vCenter finishes a clone it received even
    /// when its client is gone; real clones take minutes. Default: 10
    /// minutes.
    pub clone_grace: Duration,
    /// Where the SSH host keys of instances are pinned across invocations,
    /// keyed by each VM's identity (not its address). `None` when building a
    /// [`Cloud`](crate::Cloud) means vmw's default,
    /// `$XDG_STATE_HOME/vmw/known_hosts` (else
    /// `~/.local/state/vmw/known_hosts`); without a home directory, keys are
    /// pinned per connection only.
    pub known_hosts: Option<vmw_ssh::KnownHosts>,
    /// Give every launched VM a serial port writing to a file in its own
    /// datastore folder, its console log
    /// ([`Instance::console_log`](crate::Instance::console_log)), unless a
    /// launch says otherwise. Off by default: the port costs two more
    /// reconfigure tasks per VM (two govc calls) on a vCenter shared with
    /// others; a launch that keeps its failures
    /// ([`LaunchOptions::keep_on_failure`](crate::LaunchOptions::keep_on_failure))
    /// has one anyway, since the console is where a guest that never gets
    /// an address says why.
    pub console_log: bool,
    /// Pause between the queries of a wait for a VM's state: powered off
    /// or deleted (a new boot id is asked for every
    /// [`ReadyTimeouts::poll`]). Default: 1 second.
    pub poll: Duration,
    /// Pause between the lookups of a clone whose outcome is unknown
    /// (see [`Settings::clone_grace`]). Default: 500 ms.
    pub clone_poll: Duration,
    /// How long a VM without a marker, found where a clone of unknown
    /// outcome was going, must stay unmarked before vmw takes it for that
    /// clone's (another vmw's govc that won the name writes its marker
    /// right after its clone). Default: 3 seconds.
    pub unmarked_settle: Duration,
    /// How long a `sync` over SSH may take before a hard power-off or a
    /// snapshot; a guest that does not answer is not waited for longer.
    /// Default: 10 seconds.
    pub sync_wait: Duration,
    /// How long a running VM whose address vmw has not looked at yet
    /// (one from [`Cloud::get_instance`](crate::Cloud::get_instance)) gets
    /// to show one before a hard power-off or a restart goes ahead without
    /// the guest's help (no `sync`, no boot-id check). Default: 10 seconds.
    pub address_probe: Duration,
    /// Where every clone is recorded before it is asked for, so that what
    /// a run killed outright made is found by the next one (see
    /// [`Cloud::recover`](crate::Cloud::recover)). `None` when building a
    /// [`Cloud`](crate::Cloud) means vmw's default,
    /// `$XDG_STATE_HOME/vmw/journal` (else `~/.local/state/vmw/journal`);
    /// without a home directory, nothing is recorded. A journal that
    /// cannot be written fails the launch before any VM is touched.
    pub journal: Option<camino::Utf8PathBuf>,
    /// Resolve the records killed runs left on the first launch, list,
    /// sweep or delete of a cloud. On by default.
    pub recover: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // Like terraform's default parallelism: enough to overlap the
            // waits, few enough not to flood a shared vCenter's task queue.
            concurrency: 10,
            ip_wait: Duration::from_secs(5 * 60),
            ip_poll: Duration::from_secs(1),
            ssh: SshConfig::default(),
            ready: ReadyTimeouts::default(),
            check_sources: true,
            clone_grace: Duration::from_secs(10 * 60),
            known_hosts: None,
            console_log: false,
            poll: Duration::from_secs(1),
            clone_poll: Duration::from_millis(500),
            unmarked_settle: Duration::from_secs(3),
            sync_wait: Duration::from_secs(10),
            address_probe: Duration::from_secs(10),
            journal: None,
            recover: true,
        }
    }
}
