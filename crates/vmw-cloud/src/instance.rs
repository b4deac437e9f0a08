//! [`Instance`]: one VM, with its address, waits, power and deletion.
//!
//! The verbs follow vSphere's power menu: [`Instance::power_on`],
//! [`Instance::power_off`] (hard, like pulling the plug, after a `sync` in
//! the guest when it answers), [`Instance::shutdown_guest`] (through
//! VMware Tools, hard when the guest does not comply) and
//! [`Instance::restart`] (a power cycle or a guest reboot, told apart from
//! a guest that never went down by its boot id). Waiting is
//! [`Instance::wait`] (until ready) or [`Instance::wait_until`] a
//! [`WaitStage`]. pycloudlib's names for these are in [`crate::compat`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use camino::Utf8Path;
use tokio::time::Instant;
use vmw_govc::parse::{PowerState, is_link_local_v6};
use vmw_govc::requests::{ObjectCollect, PowerOp, VmIp, VmPower};
use vmw_govc::{ErrorKind, Govc, GovcError, GovcExt, ProcessGovc, VmRef};
use vmw_ssh::{
    Cmd, ExecOptions, ExecResult, Guest, GuestExt, ReadyTimeouts, SshConfig, SshError, SshGuest,
};

use crate::inner::Inner;
use crate::ownership::{Expect, Removal, host_key_identity};
use crate::progress::{Step, StepHook};
use crate::{CloudError, Tag, WaitStage};

/// How [`Instance::shutdown_guest`] found or left the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOff {
    /// The guest shut down when asked.
    Graceful,
    /// It was powered off hard (no VMware Tools, or not in time).
    Forced,
    /// It was off already.
    AlreadyOff,
}

/// How [`Instance::restart`] restarts the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Power off (hard, after a `sync` when the guest answers), then on:
    /// what pycloudlib's `restart` does on vSphere.
    PowerCycle,
    /// Ask the guest to reboot through VMware Tools (vSphere's "Restart
    /// Guest OS"); when it cannot be asked, or its boot id has not changed
    /// within `timeout`, power-cycle it instead.
    Guest {
        /// How long the guest gets to reboot by itself.
        timeout: Duration,
    },
}

/// Whether the guest answers, as a hard power operation finds it.
enum Reach {
    /// Over SSH, at its address.
    Answers(Arc<SshGuest>),
    /// Running, but with no address (yet) or not answering.
    Silent,
    /// Powered off.
    Off,
}

/// A VM of the cloud: launched by it, or found with
/// [`crate::Cloud::get_instance`]. Cloning an `Instance` gives another handle
/// on the same VM (sharing the cached address).
pub struct Instance<G: Govc = ProcessGovc> {
    vm: VmRef,
    /// The launch id in vmw's marker, when vmw made the VM.
    launch: Option<String>,
    /// The tag in vmw's marker, when vmw made the VM.
    tag: Option<Tag>,
    /// What the VM's SSH host key is pinned under.
    identity: String,
    cloud: Arc<Inner<G>>,
    ip: Arc<Mutex<Option<IpAddr>>>,
    ssh: Arc<Mutex<Option<SshConfig>>>,
    guest: Arc<tokio::sync::Mutex<Option<Arc<SshGuest>>>>,
    /// Set when vmw boots the guest anew: the next SSH connection made may
    /// meet new host keys, and records them ([`SshGuest::renew_host_key`]).
    booted: Arc<AtomicBool>,
    /// How long [`Instance::ip`] waits (the cloud's unless a launch said
    /// otherwise).
    ip_wait: Duration,
    /// How long the SSH and cloud-init waits last.
    ready: ReadyTimeouts,
    /// Told of each power and wait step as it begins.
    progress: Option<StepHook>,
}

impl<G: Govc> Clone for Instance<G> {
    fn clone(&self) -> Self {
        Self {
            vm: self.vm.clone(),
            launch: self.launch.clone(),
            tag: self.tag.clone(),
            identity: self.identity.clone(),
            cloud: self.cloud.clone(),
            ip: self.ip.clone(),
            ssh: self.ssh.clone(),
            guest: self.guest.clone(),
            booted: self.booted.clone(),
            ip_wait: self.ip_wait,
            ready: self.ready,
            progress: self.progress.clone(),
        }
    }
}

impl<G: Govc> std::fmt::Debug for Instance<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("vm", &self.vm)
            .field("ip", &self.cached_ip())
            .finish()
    }
}

/// The address to use among those a VM reports: the first IPv4 address,
/// else the first IPv6 address that is not link-local (`fe80::/10`, which
/// needs an interface scope and is useless for SSH from elsewhere).
pub(crate) fn usable_address(ips: &[IpAddr]) -> Option<IpAddr> {
    ips.iter()
        .find(|ip| ip.is_ipv4() && !ip.is_unspecified())
        .or_else(|| {
            ips.iter()
                .find(|ip| ip.is_ipv6() && !ip.is_unspecified() && !is_link_local_v6(ip))
        })
        .copied()
}

/// Whether a wait's error means the guest did not answer in time (rather
/// than answering with a failure).
fn is_silence(e: &CloudError) -> bool {
    matches!(
        e,
        CloudError::IpTimeout { .. } | CloudError::Ssh(SshError::Timeout { .. })
    )
}

impl<G: Govc> Instance<G> {
    pub(crate) fn new(
        vm: VmRef,
        launch: Option<String>,
        tag: Option<Tag>,
        moref: Option<String>,
        cloud: Arc<Inner<G>>,
    ) -> Self {
        let identity = host_key_identity(&vm, launch.as_deref(), moref.as_deref());
        let (ip_wait, ready) = (cloud.settings.ip_wait, cloud.settings.ready);
        Self {
            vm,
            launch,
            tag,
            identity,
            cloud,
            ip: Arc::new(Mutex::new(None)),
            ssh: Arc::new(Mutex::new(None)),
            guest: Arc::new(tokio::sync::Mutex::new(None)),
            booted: Arc::new(AtomicBool::new(false)),
            ip_wait,
            ready,
            progress: None,
        }
    }

    /// This instance with other limits for the address wait and for the
    /// SSH and cloud-init waits (`None` keeps the cloud's).
    #[must_use]
    pub fn with_timeouts(mut self, ip: Option<Duration>, ready: Option<Duration>) -> Self {
        if let Some(ip) = ip {
            self.ip_wait = ip;
        }
        if let Some(ready) = ready {
            self.ready.ready = ready;
        }
        self
    }

    /// This instance telling `hook` of each step of its power operations
    /// and waits as it begins ([`Step::PowerOff`], [`Step::PowerOn`],
    /// [`Step::WaitIp`], [`Step::WaitSsh`], [`Step::WaitReady`]), for a
    /// progress display. An instance launched with
    /// [`LaunchOptions::on_step`](crate::LaunchOptions::on_step) has that
    /// hook already.
    #[must_use]
    pub fn with_progress(mut self, hook: StepHook) -> Self {
        self.progress = Some(hook);
        self
    }

    /// How long the SSH and cloud-init waits last.
    pub(crate) fn ready_wait(&self) -> Duration {
        self.ready.ready
    }

    fn announce(&self, step: Step) {
        StepHook::call(self.progress.as_ref(), self.vm.name(), step);
    }

    /// The tag in vmw's marker, when vmw made the VM (a snapshot's image
    /// gets it).
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The state this instance shares with its cloud.
    pub(crate) fn cloud(&self) -> &Inner<G> {
        &self.cloud
    }

    /// Forgets the address and the SSH connection: the guest was reset.
    pub(crate) async fn forget_guest(&self) {
        self.forget_ip();
        self.drop_guest().await;
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        self.vm.name()
    }

    /// The VM's inventory path: what every govc call about it is given.
    pub fn vm(&self) -> &VmRef {
        &self.vm
    }

    /// The launch id in the VM's marker, when vmw made the VM.
    pub fn launch_id(&self) -> Option<&str> {
        self.launch.as_deref()
    }

    /// The identity the VM's SSH host key is pinned under in the cloud's
    /// known-hosts store.
    pub fn host_key_identity(&self) -> &str {
        &self.identity
    }

    /// The cloud's known-hosts store, if it keeps one.
    pub fn known_hosts(&self) -> Option<&vmw_ssh::KnownHosts> {
        self.cloud.settings.known_hosts.as_ref()
    }

    /// The address found by the last successful [`Instance::ip`], if any.
    pub fn cached_ip(&self) -> Option<IpAddr> {
        self.ip.lock().ok().and_then(|g| *g)
    }

    fn forget_ip(&self) {
        if let Ok(mut g) = self.ip.lock() {
            *g = None;
        }
    }

    /// The guest's address, waiting up to the cloud's IP wait for one.
    /// IPv4 is preferred; a link-local IPv6 address is never returned: vmw
    /// keeps waiting for a usable one. The address is cached until the VM
    /// is shut down or restarted.
    pub async fn ip(&self) -> Result<IpAddr, CloudError> {
        if let Some(ip) = self.cached_ip() {
            return Ok(ip);
        }
        let settings = &self.cloud.settings;
        let started = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            let remaining = self.ip_wait.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(self.ip_timeout(seen));
            }
            let wait = remaining.max(Duration::from_millis(100));
            match self
                .cloud
                .govc
                .exec(&VmIp::new(self.vm.clone(), wait))
                .await
            {
                Ok(ips) => {
                    if let Some(ip) = usable_address(&ips) {
                        if let Ok(mut g) = self.ip.lock() {
                            *g = Some(ip);
                        }
                        return Ok(ip);
                    }
                    seen = ips.iter().map(IpAddr::to_string).collect();
                    tracing::debug!(vm = %self.vm, ?ips, "only unusable addresses so far");
                    tokio::time::sleep(settings.ip_poll.min(remaining)).await;
                }
                Err(GovcError::NoIp { .. }) => return Err(self.ip_timeout(seen)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn ip_timeout(&self, seen: Vec<String>) -> CloudError {
        CloudError::IpTimeout {
            vm: self.vm.to_string(),
            waited: self.ip_wait,
            seen,
        }
    }

    /// Waits until the instance is ready: it has an address, SSH accepts
    /// a command, and cloud-init has finished; returns the address. A
    /// timeout says which of these did not happen, and what the VM's
    /// console showed last when it has one ([`CloudError::NoAnswer`]).
    pub async fn wait(&self) -> Result<IpAddr, CloudError> {
        match self.wait_until(WaitStage::Ready).await? {
            Some(ip) => Ok(ip),
            None => self.ip().await,
        }
    }

    /// Waits until `stage`: an address ([`WaitStage::Ip`]), then SSH
    /// ([`WaitStage::Ssh`]), then cloud-init done ([`WaitStage::Ready`]),
    /// announcing each as it begins (see [`Instance::with_progress`]).
    /// Returns the address; for [`WaitStage::None`], at once, the cached
    /// one if any. A guest that does not answer in time fails with
    /// [`CloudError::NoAnswer`], showing the end of its console log.
    pub async fn wait_until(&self, stage: WaitStage) -> Result<Option<IpAddr>, CloudError> {
        self.wait_stages(stage, &|s| self.announce(s), true)
            .await
            .map_err(|(_, e)| e)
    }

    /// [`Instance::wait_until`] with the stage a failure happened at; the
    /// console log is read for [`CloudError::NoAnswer`] only when the VM
    /// may have one (`console`).
    pub(crate) async fn wait_stages(
        &self,
        stage: WaitStage,
        step: &(dyn Fn(Step) + Send + Sync),
        console: bool,
    ) -> Result<Option<IpAddr>, (Step, CloudError)> {
        match self.wait_plain(stage, step).await {
            Ok(ip) => Ok(ip),
            Err((step, e)) if is_silence(&e) => {
                let console = if console {
                    self.console_tail().await
                } else {
                    None
                };
                Err((
                    step,
                    CloudError::NoAnswer {
                        vm: self.vm.to_string(),
                        step,
                        source: Box::new(e),
                        console,
                    },
                ))
            }
            Err(failed) => Err(failed),
        }
    }

    /// The last lines of the console log, if the VM has one and it can be
    /// read within a few seconds.
    async fn console_tail(&self) -> Option<String> {
        let log = tokio::time::timeout(Duration::from_secs(30), self.console_log()).await;
        match log {
            Ok(Ok(text)) => {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(crate::error::CONSOLE_LINES);
                Some(lines[from..].join("\n"))
            }
            Ok(Err(e)) => {
                tracing::debug!(vm = %self.vm, error = %e, "no console log to show");
                None
            }
            Err(_) => None,
        }
    }

    async fn wait_plain(
        &self,
        stage: WaitStage,
        step: &(dyn Fn(Step) + Send + Sync),
    ) -> Result<Option<IpAddr>, (Step, CloudError)> {
        if stage == WaitStage::None {
            return Ok(self.cached_ip());
        }
        step(Step::WaitIp);
        let ip = self.ip().await.map_err(|e| (Step::WaitIp, e))?;
        let timeouts = self.ready;
        match stage {
            WaitStage::None | WaitStage::Ip => {}
            WaitStage::Ssh => {
                step(Step::WaitSsh);
                let guest = self.guest().await.map_err(|e| (Step::WaitSsh, e))?;
                guest
                    .wait_ssh(timeouts)
                    .await
                    .map_err(|e| (Step::WaitSsh, e.into()))?;
            }
            WaitStage::Ready => {
                // SSH first, then cloud-init, each announced as it begins.
                step(Step::WaitSsh);
                let answered = AtomicBool::new(false);
                let on_ssh = || {
                    if !answered.swap(true, Ordering::SeqCst) {
                        step(Step::WaitReady);
                    }
                };
                let reached = |answered: &AtomicBool| {
                    if answered.load(Ordering::SeqCst) {
                        Step::WaitReady
                    } else {
                        Step::WaitSsh
                    }
                };
                let guest = self.guest().await.map_err(|e| (Step::WaitSsh, e))?;
                guest
                    .wait_ready_with(timeouts, &on_ssh)
                    .await
                    .map_err(|e| (reached(&answered), e.into()))?;
            }
        }
        Ok(Some(ip))
    }

    /// The SSH settings of this instance (the cloud's unless changed).
    pub fn ssh_config(&self) -> SshConfig {
        self.ssh
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or_else(|| self.cloud.settings.ssh.clone())
    }

    /// Changes the SSH user, port or timeouts of this instance; the next
    /// guest access connects with them.
    pub async fn set_ssh_config(&self, config: SshConfig) {
        if let Ok(mut c) = self.ssh.lock() {
            *c = Some(config);
        }
        self.drop_guest().await;
    }

    async fn drop_guest(&self) {
        if let Some(g) = self.guest.lock().await.take() {
            g.disconnect().await;
        }
    }

    /// The guest over SSH, at the instance's address (waiting for one), with
    /// the cloud's key. The connection is made on first use and reused.
    pub async fn guest(&self) -> Result<Arc<SshGuest>, CloudError> {
        let ip = self.ip().await?;
        let mut slot = self.guest.lock().await;
        if let Some(g) = slot.as_ref()
            && g.address() == std::net::SocketAddr::new(ip, self.ssh_config().port).to_string()
        {
            return Ok(g.clone());
        }
        let mut config = self.ssh_config();
        if let Some(store) = &self.cloud.settings.known_hosts
            && matches!(config.host_key, vmw_ssh::HostKeyPolicy::Session)
        {
            config.host_key = vmw_ssh::HostKeyPolicy::known(store.clone(), self.identity.clone());
        }
        let g = Arc::new(SshGuest::new(
            self.vm.name().to_owned(),
            ip,
            config,
            self.cloud.credentials(),
        ));
        if self.booted.swap(false, Ordering::SeqCst) {
            g.renew_host_key();
        }
        *slot = Some(g.clone());
        Ok(g)
    }

    /// Runs a command in the guest: a string runs as `sh -c`, an argument
    /// vector is passed as it is. A non-zero exit is a result, not an error.
    pub async fn execute(&self, cmd: impl Into<Cmd>) -> Result<ExecResult, CloudError> {
        self.execute_with(cmd, &ExecOptions::default()).await
    }

    /// Runs a command in the guest, writing its output to `stdout` and
    /// `stderr` as it comes; returns its exit status, or the signal that
    /// killed it.
    pub async fn execute_streaming(
        &self,
        cmd: impl Into<Cmd>,
        options: &ExecOptions,
        stdout: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        stderr: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<(Option<u32>, Option<String>), CloudError> {
        Ok(self
            .guest()
            .await?
            .execute_streaming(&cmd.into(), options, stdout, stderr)
            .await?)
    }

    /// [`Instance::execute`] with sudo and/or standard input.
    pub async fn execute_with(
        &self,
        cmd: impl Into<Cmd>,
        options: &ExecOptions,
    ) -> Result<ExecResult, CloudError> {
        Ok(self.guest().await?.execute(&cmd.into(), options).await?)
    }

    /// Runs a script (its `#!` interpreter, else `sh`) in the guest.
    pub async fn run_script(&self, script: &str) -> Result<ExecResult, CloudError> {
        Ok(self.guest().await?.run_script(script, false).await?)
    }

    /// Copies a local file into the guest over SFTP, streaming it.
    pub async fn push_file(&self, local: &Utf8Path, remote: &str) -> Result<(), CloudError> {
        Ok(self.guest().await?.push_file(local, remote).await?)
    }

    /// Copies a guest file to a local path over SFTP, streaming it.
    pub async fn pull_file(&self, remote: &str, local: &Utf8Path) -> Result<(), CloudError> {
        Ok(self.guest().await?.pull_file(remote, local).await?)
    }

    /// Installs packages with apt-get, as root.
    pub async fn install(&self, packages: &[&str]) -> Result<ExecResult, CloudError> {
        Ok(self.guest().await?.install(packages).await?)
    }

    /// Refreshes the package index and upgrades, as root.
    pub async fn update(&self) -> Result<ExecResult, CloudError> {
        Ok(self.guest().await?.update().await?)
    }

    /// The id of the guest's current boot.
    pub async fn boot_id(&self) -> Result<String, CloudError> {
        Ok(self.guest().await?.boot_id().await?)
    }

    /// Prepares the guest for a snapshot, as root: `cloud-init clean
    /// --logs`, the machine id emptied, the syslog removed,
    /// the writes flushed to disk (`sync`); each step checked.
    pub async fn clean_guest(&self) -> Result<(), CloudError> {
        Ok(self.guest().await?.clean().await?)
    }

    /// The VM's power state.
    pub async fn power_state(&self) -> Result<PowerState, CloudError> {
        let request = ObjectCollect::vm(&self.vm, ["runtime.powerState"]);
        let props = self.cloud.govc.exec(&request).await?;
        props.power_state().ok_or_else(|| {
            GovcError::parse(
                &vmw_govc::Request::command(&request),
                "no runtime.powerState in the answer",
                "",
            )
            .into()
        })
    }

    /// Powers the VM on (vSphere's "Power On"); already on is success.
    /// Returns at once: [`Instance::wait`] or [`Instance::wait_until`]
    /// waits for the guest.
    pub async fn power_on(&self) -> Result<(), CloudError> {
        self.announce(Step::PowerOn);
        self.switch_on().await
    }

    /// Powers on without announcing it.
    pub(crate) async fn switch_on(&self) -> Result<(), CloudError> {
        self.forget_ip();
        self.power(PowerOp::On, PowerState::On, "powered on")
            .await?;
        self.booted_anew(None);
        Ok(())
    }

    /// vmw booted the guest anew: it may present new SSH host keys (its
    /// cloud-init makes them on an instance's first boot, after a
    /// `cloud-init clean` say), so the next connection to this VM, the one
    /// vSphere names, records the key it meets instead of refusing it; the
    /// connection `old` still open to the guest as well.
    fn booted_anew(&self, old: Option<&SshGuest>) {
        self.booted.store(true, Ordering::SeqCst);
        if let Some(g) = old {
            g.renew_host_key();
        }
    }

    /// Powers the VM off hard (vSphere's "Power Off", what pycloudlib's
    /// `shutdown` does): the guest gets no say, as with a pulled plug.
    /// When the guest answers over SSH, its writes are flushed first
    /// (`sync`, within [`Settings::sync_wait`](crate::Settings::sync_wait)):
    /// a guest powered off moments after its first boot would otherwise
    /// lose what it had not written to disk yet, such as the SSH host keys
    /// cloud-init just made. Already off is success.
    pub async fn power_off(&self) -> Result<(), CloudError> {
        self.announce(Step::PowerOff);
        match self.reach().await? {
            Reach::Off => {
                self.forget_guest().await;
                return Ok(());
            }
            Reach::Answers(guest) => self.sync(&guest).await,
            Reach::Silent => {}
        }
        self.switch_off().await
    }

    /// Powers off hard without announcing it or syncing.
    async fn switch_off(&self) -> Result<(), CloudError> {
        self.forget_guest().await;
        self.power(PowerOp::Off, PowerState::Off, "powered off")
            .await
    }

    /// Shuts the guest down through VMware Tools (vSphere's "Shut Down
    /// Guest OS") and waits up to `timeout` for the VM to be off; when the
    /// guest cannot be asked (no Tools) or does not stop in time, the VM is
    /// powered off hard ([`Instance::power_off`], which syncs first). Says
    /// which way the VM went off; already off is success.
    pub async fn shutdown_guest(&self, timeout: Duration) -> Result<PowerOff, CloudError> {
        self.announce(Step::PowerOff);
        self.forget_ip();
        let asked = self
            .cloud
            .govc
            .exec(&VmPower::new(self.vm.clone(), PowerOp::Shutdown))
            .await;
        match asked {
            Ok(()) => {
                if self.wait_for_state(PowerState::Off, timeout).await? {
                    self.forget_guest().await;
                    return Ok(PowerOff::Graceful);
                }
                tracing::info!(vm = %self.vm, ?timeout, "the guest did not shut down in time; powering off");
            }
            Err(e) if e.kind() == ErrorKind::InvalidPowerState => {
                if self.power_state().await? == PowerState::Off {
                    self.forget_guest().await;
                    return Ok(PowerOff::AlreadyOff);
                }
            }
            Err(e) => {
                tracing::info!(vm = %self.vm, error = %e, "the guest cannot be asked to shut down; powering off");
            }
        }
        if let Reach::Answers(guest) = self.reach().await? {
            self.sync(&guest).await;
        }
        self.switch_off().await?;
        Ok(PowerOff::Forced)
    }

    /// Restarts the VM, `how` says which way, and waits until `wait`
    /// (announcing each step, see [`Instance::with_progress`]). When the
    /// guest answers over SSH before, its writes are flushed and its boot
    /// id read, and [`WaitStage::Ready`] lasts until the guest reports
    /// another boot id, so an old connection or a guest that never went
    /// down is not mistaken for a restarted one; when it does not answer,
    /// the VM is restarted and waited for plainly.
    pub async fn restart(
        &self,
        how: Restart,
        wait: WaitStage,
    ) -> Result<Option<IpAddr>, CloudError> {
        match how {
            Restart::PowerCycle => self.power_cycle(wait).await,
            Restart::Guest { timeout } => self.reboot_guest(wait, timeout).await,
        }
    }

    async fn reboot_guest(
        &self,
        stage: WaitStage,
        timeout: Duration,
    ) -> Result<Option<IpAddr>, CloudError> {
        let guest = match self.reach().await? {
            Reach::Answers(g) => Some(g),
            Reach::Silent | Reach::Off => None,
        };
        let before = match &guest {
            Some(g) => g.boot_id().await.ok(),
            None => None,
        };
        let asked = self
            .cloud
            .govc
            .exec(&VmPower::new(self.vm.clone(), PowerOp::Reboot))
            .await;
        if let Err(e) = asked {
            tracing::info!(vm = %self.vm, error = %e, "the guest cannot be asked to reboot; power-cycling");
            return self.power_cycle(stage).await;
        }
        self.booted_anew(guest.as_deref());
        self.forget_ip();
        if let (Some(guest), Some(before)) = (guest, before) {
            guest.disconnect().await;
            if !self.new_boot_within(&before, timeout).await {
                tracing::info!(vm = %self.vm, ?timeout, "the guest did not reboot in time; power-cycling");
                return self.power_cycle(stage).await;
            }
        }
        self.wait_until(stage).await
    }

    async fn power_cycle(&self, stage: WaitStage) -> Result<Option<IpAddr>, CloudError> {
        let cycle = || async {
            self.announce(Step::PowerOff);
            self.switch_off().await?;
            self.announce(Step::PowerOn);
            self.switch_on().await
        };
        let guest = match self.reach().await? {
            Reach::Answers(guest) if stage == WaitStage::Ready => guest,
            Reach::Answers(guest) => {
                self.sync(&guest).await;
                cycle().await?;
                return self.wait_until(stage).await;
            }
            Reach::Silent | Reach::Off => {
                cycle().await?;
                return self.wait_until(stage).await;
            }
        };
        self.sync(&guest).await;
        let waited = guest
            .restart_with(
                || async {
                    cycle().await?;
                    self.booted_anew(Some(&guest));
                    self.announce(Step::WaitIp);
                    self.ip().await?;
                    // The guest answers again with a new boot id, then
                    // cloud-init finishes.
                    self.announce(Step::WaitSsh);
                    Ok::<_, CloudError>(())
                },
                self.ready,
            )
            .await;
        match waited {
            Ok(()) => self.ip().await.map(Some),
            Err(e) if is_silence(&e) => Err(CloudError::NoAnswer {
                vm: self.vm.to_string(),
                step: Step::WaitSsh,
                console: self.console_tail().await,
                source: Box::new(e),
            }),
            Err(e) => Err(e),
        }
    }

    /// Waits until the guest reports a boot id other than `old` within
    /// `timeout` (asked over SSH every poll interval; a connection that
    /// fails is made again).
    pub(crate) async fn new_boot_within(&self, old: &str, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let now = tokio::time::timeout(Duration::from_secs(10), async {
                self.guest()
                    .await?
                    .boot_id()
                    .await
                    .map_err(CloudError::from)
            })
            .await;
            match now {
                Ok(Ok(id)) if id != old => return true,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(vm = %self.vm, error = %e, "no boot id yet");
                    self.drop_guest().await;
                }
                Err(_) => self.drop_guest().await,
            }
            tokio::time::sleep(self.ready.poll.min(timeout)).await;
        }
        false
    }

    /// Polls the power state until it is `wanted` or `timeout` passed.
    pub(crate) async fn wait_for_state(
        &self,
        wanted: PowerState,
        timeout: Duration,
    ) -> Result<bool, CloudError> {
        let started = Instant::now();
        loop {
            if self.power_state().await? == wanted {
                return Ok(true);
            }
            if started.elapsed() >= timeout {
                return Ok(false);
            }
            tokio::time::sleep(self.cloud.settings.poll.min(timeout)).await;
        }
    }

    /// Whether the guest answers now, for a hard power operation: at its
    /// cached address, or, for a running VM whose address was not looked
    /// at yet (e.g. from `get_instance`), at the one it shows within
    /// [`Settings::address_probe`](crate::Settings::address_probe).
    async fn reach(&self) -> Result<Reach, CloudError> {
        if self.cached_ip().is_some() {
            return Ok(match self.guest().await {
                Ok(g) => Reach::Answers(g),
                Err(_) => Reach::Silent,
            });
        }
        Ok(match self.power_state().await? {
            PowerState::Off => Reach::Off,
            PowerState::On => {
                match tokio::time::timeout(self.cloud.settings.address_probe, self.ip()).await {
                    Ok(Ok(_)) => match self.guest().await {
                        Ok(g) => Reach::Answers(g),
                        Err(_) => Reach::Silent,
                    },
                    _ => Reach::Silent,
                }
            }
            _ => Reach::Silent,
        })
    }

    /// Flushes the guest's writes to disk (`sync` over SSH), within
    /// [`Settings::sync_wait`](crate::Settings::sync_wait); a guest that
    /// does not answer is not waited for longer.
    async fn sync(&self, guest: &SshGuest) {
        let synced = tokio::time::timeout(
            self.cloud.settings.sync_wait,
            guest.execute(&Cmd::from("sync"), &ExecOptions::default()),
        )
        .await;
        match synced {
            Ok(Ok(r)) if r.ok() => tracing::debug!(vm = %self.vm, "synced"),
            Ok(Ok(r)) => {
                tracing::info!(vm = %self.vm, status = ?r.exit_status, "sync failed in the guest")
            }
            Ok(Err(e)) => tracing::info!(vm = %self.vm, error = %e, "could not sync the guest"),
            Err(_) => tracing::info!(vm = %self.vm, "the guest's sync did not finish in time"),
        }
    }

    /// Flushes the guest's writes when it answers (see
    /// [`Instance::power_off`]); used before a snapshot of a running VM.
    pub(crate) async fn sync_if_reachable(&self) -> Result<(), CloudError> {
        if let Reach::Answers(guest) = self.reach().await? {
            self.sync(&guest).await;
        }
        Ok(())
    }

    async fn power(
        &self,
        op: PowerOp,
        wanted: PowerState,
        wanted_text: &'static str,
    ) -> Result<(), CloudError> {
        match self
            .cloud
            .govc
            .exec(&VmPower::new(self.vm.clone(), op))
            .await
        {
            Ok(()) => Ok(()),
            // vCenter says the state is wrong for the operation; vcsim does
            // not say which state it is, so ask.
            Err(e) if e.kind() == ErrorKind::InvalidPowerState => {
                let found = self.power_state().await?;
                if found == wanted {
                    Ok(())
                } else {
                    Err(CloudError::PowerState {
                        vm: self.vm.to_string(),
                        wanted: wanted_text,
                        found: format!("{found:?}"),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the VM (govc powers a running VM off first); a VM that is
    /// already gone is success. Whatever its power state, the VM is not left
    /// behind. Checked right before: a VM this cloud made must still carry
    /// its launch's marker, any other VM vmw's marker; templates are never
    /// deleted. [`Instance::delete_forced`] deletes a VM without the marker.
    pub async fn delete(&self) -> Result<Removal, CloudError> {
        self.delete_expecting(self.expect()).await
    }

    /// Deletes the VM even when it does not carry vmw's marker (never a
    /// template).
    pub async fn delete_forced(&self) -> Result<Removal, CloudError> {
        self.delete_expecting(Expect::Forced).await
    }

    /// What this instance's destructive operations insist on: its launch's
    /// marker when this cloud made it, else vmw's.
    pub(crate) fn expect(&self) -> Expect<'_> {
        match &self.launch {
            Some(l) => Expect::Launch(l),
            None => Expect::Marker,
        }
    }

    async fn delete_expecting(&self, expect: Expect<'_>) -> Result<Removal, CloudError> {
        let removal = self.cloud.destroy_checked(&self.vm, expect).await?;
        self.cloud.untrack_path(&self.vm);
        self.forget_guest().await;
        Ok(removal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_choice() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            usable_address(&[ip("fe80::1"), ip("10.0.0.5")]),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            usable_address(&[ip("2001:db8::5"), ip("10.0.0.5")]),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(
            usable_address(&[ip("fe80::1"), ip("2001:db8::5")]),
            Some(ip("2001:db8::5"))
        );
        assert_eq!(usable_address(&[ip("fe80::1")]), None);
        assert_eq!(usable_address(&[]), None);
    }
}
