//! The command line, as clap derive types.

use std::time::Duration;

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};
use vmw_cloud::WaitStage;
use vmw_config::env;

/// Launch, use, snapshot and delete VMs on VMware vSphere through govc.
///
/// Configuration: the [vmware] section of pycloudlib.toml (--config, else
/// $PYCLOUDLIB_CONFIG, ~/.config/pycloudlib.toml, /etc/pycloudlib.toml), with
/// govc's GOVC_* variables filling what is missing.
///
/// Exit status: 0 success, 1 the operation failed, 2 usage or configuration
/// error, 128 + the signal when stopped by SIGINT (130), SIGTERM (143) or
/// SIGHUP (129) (a launch or snapshot removes what it had made first);
/// `exec` exits with the remote command's status.
#[derive(Debug, Parser)]
#[command(name = "vmw", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub(crate) global: Global,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// pycloudlib.toml to read (default: $PYCLOUDLIB_CONFIG,
    /// ~/.config/pycloudlib.toml, /etc/pycloudlib.toml, then GOVC_*).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<Utf8PathBuf>,

    /// Tag naming the VMs made (default: your login name). Launches add
    /// -MMDD-HHMMSS; `list` and `clean` cover the tag and its timestamped
    /// forms.
    #[arg(long, global = true, env = env::VMW_TAG, value_name = "TAG")]
    pub(crate) tag: Option<String>,

    /// Use the tag as it is: no timestamp suffix on launches, and only that
    /// exact tag for `list` and `clean`.
    #[arg(long, global = true)]
    pub(crate) no_timestamp: bool,

    /// More logging on stderr (-v: info of every layer, -vv: debug, govc
    /// commands included).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,

    /// Only errors on stderr, no progress.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,

    /// Print the result as one JSON document on stdout (logs stay on
    /// stderr, progress is off).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// SSH user of the instances.
    #[arg(
        long,
        global = true,
        env = env::VMW_SSH_USER,
        default_value = "ubuntu",
        value_name = "USER"
    )]
    pub(crate) ssh_user: String,

    /// How many VMs a command works on at once: launches, deletions,
    /// power operations, clean (default 10: enough to overlap the waits,
    /// few enough not to flood a shared vCenter's task queue).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) concurrency: Option<u32>,

    /// SSH port of the instances.
    #[arg(
        long,
        global = true,
        env = env::VMW_SSH_PORT,
        default_value_t = 22,
        value_name = "PORT"
    )]
    pub(crate) ssh_port: u16,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Launch instances from a release's template or an image; prints each
    /// name and IP address.
    Launch(LaunchArgs),
    /// List the instances and images vmw made, with power state and IP.
    List {
        /// Every tag's VMs, not only yours.
        #[arg(long)]
        all_tags: bool,
    },
    /// Print an instance's IP address (waiting for one).
    Ip {
        /// The instance.
        name: String,
    },
    /// Power instances on (already on is fine).
    Start {
        /// The instances.
        #[arg(required = true)]
        names: Vec<String>,
        /// How far to wait after the power-on (with `ip` or more, prints
        /// each name and address).
        #[arg(long, value_enum, default_value_t = Wait::None)]
        wait: Wait,
    },
    /// Power instances off hard (already off is fine); a guest that answers
    /// over SSH flushes its disks first (`sync`), so nothing it wrote is
    /// lost.
    Stop {
        /// The instances.
        #[arg(required = true)]
        names: Vec<String>,
        /// Ask the guest to shut down (VMware Tools) and power off hard only
        /// if it has not within --timeout.
        #[arg(long)]
        graceful: bool,
        /// How long --graceful waits for the guest, e.g. 60s.
        #[arg(long, value_parser = parse_duration, value_name = "DUR", default_value = "60s", requires = "graceful")]
        timeout: Duration,
    },
    /// Power-cycle instances and wait for them.
    Restart {
        /// The instances.
        #[arg(required = true)]
        names: Vec<String>,
        /// How far to wait after the power-on.
        #[arg(long, value_enum, default_value_t = Wait::Ready)]
        wait: Wait,
        /// Longest wait for each stage, e.g. 90s or 10m.
        #[arg(long, value_parser = parse_duration, value_name = "DUR")]
        wait_timeout: Option<Duration>,
        /// Ask the guest to reboot (VMware Tools) and power-cycle hard only
        /// if it cannot be asked or has not rebooted within --timeout.
        #[arg(long)]
        graceful: bool,
        /// How long --graceful waits for the guest, e.g. 60s.
        #[arg(long, value_parser = parse_duration, value_name = "DUR", default_value = "60s", requires = "graceful")]
        timeout: Duration,
    },
    /// Delete VMs: names in the configured folder, or absolute inventory
    /// paths. Only VMs carrying vmw's marker, unless --force; templates
    /// never. Already gone is fine.
    Delete {
        /// The VMs (a name means the VM of that name in the configured
        /// folder, never a search).
        #[arg(required = true)]
        names: Vec<String>,
        /// Also delete VMs that vmw did not make (without vmw's marker).
        #[arg(long)]
        force: bool,
    },
    /// Run a command on an instance over SSH; exits with its status.
    ///
    /// One argument runs as a shell line (`sh -c`); several are passed as
    /// an argument vector, each quoted.
    Exec {
        /// The instance.
        name: String,
        /// Send this program's standard input to the command.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Run it with sudo.
        #[arg(long)]
        sudo: bool,
        /// The command and its arguments (after `--`).
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Open an interactive SSH session (runs the system's ssh with vmw's
    /// key, user and port).
    Ssh {
        /// The instance.
        name: String,
        /// Extra arguments for ssh (after `--`), e.g. a remote command.
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Print an instance's console log (what the guest wrote to its serial
    /// port).
    Console {
        /// The instance.
        name: String,
        /// Keep printing what the guest writes, until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// Collect what explains an instance's state into a directory: console
    /// log, and over SSH cloud-init's status and logs and the journal.
    Logs {
        /// The instance.
        name: String,
        /// Where (a folder named after the instance is made in it).
        #[arg(long, value_name = "DIR", default_value = "vmw-logs")]
        dir: Utf8PathBuf,
    },
    /// Copy a local file to an instance over SFTP.
    Push {
        /// The instance.
        name: String,
        /// The local file.
        local: Utf8PathBuf,
        /// The path on the instance.
        remote: String,
    },
    /// Copy a file of an instance to a local path over SFTP.
    Pull {
        /// The instance.
        name: String,
        /// The path on the instance.
        remote: String,
        /// The local file.
        local: Utf8PathBuf,
    },
    /// Clone an instance into an image (`NAME-image`) that `launch
    /// --image` accepts; prints the image name. The image carries the
    /// instance's tag unless --tag is given.
    Snapshot {
        /// The instance.
        name: String,
        /// Do not clean the guest first (cloud-init state, machine id,
        /// syslog; needs SSH).
        #[arg(long)]
        no_clean: bool,
    },
    /// Checkpoints of an instance: snapshots of its disks, to put a test VM
    /// back to a known state in seconds.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Images: the source templates and the images vmw made.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Delete the instances and images vmw made for your tag (or every
    /// tag), after listing them and asking.
    Clean {
        /// Every tag's VMs, not only yours.
        #[arg(long)]
        all_tags: bool,
        /// Do not ask (required when standard input is not a terminal).
        #[arg(short, long)]
        yes: bool,
        /// Instead, VMs *without* vmw's marker named like vmw's
        /// (`<tag>-<n>`) that vCenter made within `--within`: what a run
        /// whose machine never came back may have left before marking its
        /// clones. They may be someone else's: read the list before you
        /// confirm.
        #[arg(long)]
        unmarked: bool,
        /// With --unmarked: how recent (e.g. 2h, 1d).
        #[arg(long, value_parser = parse_duration, value_name = "DUR", default_value = "24h", requires = "unmarked")]
        within: Duration,
    },
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the completion script for a shell on stdout (no configuration
    /// needed), e.g. `vmw completions bash >
    /// ~/.local/share/bash-completion/completions/vmw`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages, vmw.1 and one per command (vmw-launch.1, ...),
    /// into a directory (no configuration needed).
    Man {
        /// The directory (made when missing).
        #[arg(long, value_name = "DIR")]
        out: Utf8PathBuf,
    },
}

/// `vmw image ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// List the source templates and the images vmw made.
    List {
        /// Every tag's images, not only yours.
        #[arg(long)]
        all_tags: bool,
    },
    /// Delete an image (already gone is fine; templates are refused; only
    /// images carrying vmw's marker, unless --force).
    Delete {
        /// The image: a name in the configured folder, or an absolute path.
        name: String,
        /// Also delete a VM that vmw did not make.
        #[arg(long)]
        force: bool,
    },
    /// Import an Ubuntu cloud image (.ova or .ovf) as the source template
    /// TEMPLATE-cloud-init-RELEASE, with the import options the templates
    /// need, then check it.
    Import(ImportArgs),
    /// Check the five requirements of source VMs; exit 0 only when all pass.
    Check {
        /// The source VMs to check.
        names: Vec<String>,
        /// Every TEMPLATE-cloud-init-* VM of the inventory.
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
}

/// `vmw image import` options.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The .ova or .ovf file.
    pub(crate) file: camino::Utf8PathBuf,
    /// The release the template is for (e.g. noble).
    #[arg(long)]
    pub(crate) release: String,
    /// The vSphere network for the image's networks (default: the
    /// configured one, else the only one there is).
    #[arg(long)]
    pub(crate) network: Option<String>,
    /// Another name for the template.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Another datastore than the configured one.
    #[arg(long)]
    pub(crate) datastore: Option<String>,
    /// Another folder than the configured one.
    #[arg(long)]
    pub(crate) folder: Option<String>,
    /// Replace the existing template of that name in the target folder
    /// (the new one is imported, checked, then swapped in).
    #[arg(long)]
    pub(crate) replace: bool,
    /// With --replace: replace a template vmw did not import.
    #[arg(long, requires = "replace")]
    pub(crate) force: bool,
    /// Save the import options used to this file (-v prints them).
    #[arg(long, value_name = "FILE")]
    pub(crate) save_spec: Option<camino::Utf8PathBuf>,
}

/// `vmw checkpoint ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointCommand {
    /// Take a checkpoint (of the disks; a revert leaves the VM off).
    Create {
        /// The instance.
        name: String,
        /// The checkpoint's name (unique on the instance).
        checkpoint: String,
    },
    /// Put the instance back to a checkpoint (by name or id).
    Revert {
        /// The instance.
        name: String,
        /// The checkpoint.
        checkpoint: String,
    },
    /// List the instance's checkpoints.
    List {
        /// The instance.
        name: String,
    },
    /// Remove a checkpoint (by name or id; already gone is fine).
    Delete {
        /// The instance.
        name: String,
        /// The checkpoint.
        checkpoint: String,
    },
}

/// `vmw config ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Show the resolved configuration and where each value came from,
    /// check govc and log in.
    Check,
}

/// `vmw launch` options.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(false))]
pub(crate) struct LaunchArgs {
    /// Release whose template to launch (TEMPLATE-cloud-init-<R>).
    #[arg(long, value_name = "R", group = "source")]
    pub(crate) release: Option<String>,
    /// Image (or template) to launch, by name.
    #[arg(long, value_name = "NAME", group = "source")]
    pub(crate) image: Option<String>,
    /// User data file, `-` for standard input (any format cloud-init
    /// reads; vmw adds its SSH key).
    #[arg(long, value_name = "FILE|-")]
    pub(crate) user_data: Option<String>,
    /// How many instances.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) count: u32,
    /// Vendor data file (passed to cloud-init as it is).
    #[arg(long, value_name = "FILE")]
    pub(crate) vendor_data: Option<Utf8PathBuf>,
    /// Metadata file: a YAML mapping merged into vmw's metadata (e.g. a
    /// `network` section).
    #[arg(long, value_name = "FILE")]
    pub(crate) metadata: Option<Utf8PathBuf>,
    /// The VM's name, instead of TAG-N (one instance only).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// CPUs and memory as an instance type, e.g. 2c4g or 1c512m.
    #[arg(long, value_name = "NcMg", conflicts_with_all = ["cpus", "memory"])]
    pub(crate) instance_type: Option<String>,
    /// Virtual CPUs.
    #[arg(long, value_name = "N")]
    pub(crate) cpus: Option<u32>,
    /// Memory in MiB.
    #[arg(long, value_name = "MB")]
    pub(crate) memory: Option<u64>,
    /// The vSphere network of the first NIC (default: the configured
    /// `network`, else the image's).
    #[arg(long, value_name = "NAME")]
    pub(crate) network: Option<String>,
    /// Grow the first disk to this many GiB before the power-on.
    #[arg(long, value_name = "GiB")]
    pub(crate) disk_size: Option<u64>,
    /// A console log: the VM's serial port writes to a file in its
    /// datastore folder, which `vmw console` reads (off by default: two more
    /// reconfigure tasks per VM; on with --keep-on-failure).
    #[arg(long, conflicts_with = "no_console")]
    pub(crate) console: bool,
    /// No console log, even with --keep-on-failure.
    #[arg(long)]
    pub(crate) no_console: bool,
    /// When a wait fails, keep the VM, say how to reach and delete it, and
    /// collect the evidence (console log, cloud-init status and logs, the
    /// journal) into DIR/NAME (default DIR: vmw-logs).
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "vmw-logs")]
    pub(crate) keep_on_failure: Option<Utf8PathBuf>,
    /// Linked clones (fast; they share the image's disks).
    #[arg(long)]
    pub(crate) linked: bool,
    /// Extra extraConfig entry (repeatable).
    #[arg(long = "extra-config", value_name = "K=V", value_parser = parse_key_value)]
    pub(crate) extra_config: Vec<(String, String)>,
    /// How far to wait: none, ip, ssh, or ready (SSH answers and cloud-init
    /// is done).
    #[arg(long, value_enum, default_value_t = Wait::Ready)]
    pub(crate) wait: Wait,
    /// Same as --wait none.
    #[arg(long, conflicts_with = "wait")]
    pub(crate) no_wait: bool,
    /// Longest wait for the IP address, and for SSH and cloud-init, e.g.
    /// 90s or 10m.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub(crate) wait_timeout: Option<Duration>,
    /// Longest wait for the IP address (overrides --wait-timeout).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub(crate) ip_timeout: Option<Duration>,
    /// Longest wait for SSH and for cloud-init (overrides --wait-timeout).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub(crate) ready_timeout: Option<Duration>,
    /// When interrupted (Ctrl-C, SIGTERM, SIGHUP): how long to wait for
    /// clones under way before removing them, e.g. 90s or 10m (vCenter
    /// finishes a clone it received even when vmw is gone).
    #[arg(long, value_parser = parse_duration, value_name = "DUR", env = env::VMW_CLONE_GRACE)]
    pub(crate) clone_grace: Option<Duration>,
}

impl LaunchArgs {
    /// The wait stage asked for.
    pub(crate) fn wait_stage(&self) -> WaitStage {
        if self.no_wait {
            WaitStage::None
        } else {
            self.wait.into()
        }
    }
}

/// How far to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Wait {
    /// Not at all: return once powered on.
    None,
    /// Until the guest reports an IP address.
    Ip,
    /// Until SSH accepts vmw's key.
    Ssh,
    /// Until cloud-init has finished.
    Ready,
}

impl From<Wait> for WaitStage {
    fn from(w: Wait) -> Self {
        match w {
            Wait::None => WaitStage::None,
            Wait::Ip => WaitStage::Ip,
            Wait::Ssh => WaitStage::Ssh,
            Wait::Ready => WaitStage::Ready,
        }
    }
}

/// Reads `K=V`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Reads a duration: a number with a unit `ms`, `s`, `m`, `h` or `d` (`90s`,
/// `10m`, `1h`, `1m30s`); a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; write e.g. 90s, 10m, 1h or 1m30s");
    let text = s.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("{s:?}: the duration must be more than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in ["", "s", "10x", "m10", "0s", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("disk.EnableUUID=TRUE").unwrap(),
            ("disk.EnableUUID".to_owned(), "TRUE".to_owned())
        );
        assert_eq!(parse_key_value("a=b=c").unwrap().1, "b=c");
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
