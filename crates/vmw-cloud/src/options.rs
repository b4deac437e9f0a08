//! What [`crate::Cloud::launch`] accepts, and its checks.

use std::str::FromStr;
use std::time::Duration;

use camino::Utf8PathBuf;
use serde_yaml_ng::Mapping;

use crate::CloudError;
use crate::progress::StepHook;

/// How far [`crate::Cloud::launch`] waits before returning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WaitStage {
    /// Return as soon as the VM is powered on.
    None,
    /// Until the guest reports an IP address.
    Ip,
    /// Until SSH accepts the key.
    Ssh,
    /// Until cloud-init has finished (pycloudlib always waits this far).
    #[default]
    Ready,
}

impl FromStr for WaitStage {
    type Err = CloudError;
    fn from_str(s: &str) -> Result<Self, CloudError> {
        match s {
            "none" => Ok(WaitStage::None),
            "ip" => Ok(WaitStage::Ip),
            "ssh" => Ok(WaitStage::Ssh),
            "ready" => Ok(WaitStage::Ready),
            _ => Err(CloudError::InvalidOption {
                option: "wait stage",
                value: s.to_owned(),
                problem: "use none, ip, ssh or ready".to_owned(),
            }),
        }
    }
}

/// CPUs and memory of an instance, from an instance type such as `2c4g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceType {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mb: u64,
}

impl std::fmt::Display for InstanceType {
    /// `2c4g` when the memory is whole GiB, else `1c512m`: what
    /// [`InstanceType::from_str`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.memory_mb.is_multiple_of(1024) {
            write!(f, "{}c{}g", self.cpus, self.memory_mb / 1024)
        } else {
            write!(f, "{}c{}m", self.cpus, self.memory_mb)
        }
    }
}

impl FromStr for InstanceType {
    type Err = CloudError;

    /// `<cpus>c<memory>g` or `<cpus>c<memory>m`: `2c4g` is 2 CPUs and 4 GiB,
    /// `1c512m` is 1 CPU and 512 MiB.
    fn from_str(s: &str) -> Result<Self, CloudError> {
        let bad = |problem: &str| CloudError::InvalidOption {
            option: "instance type",
            value: s.to_owned(),
            problem: format!(
                "{problem}; write <cpus>c<memory>g or <cpus>c<memory>m, e.g. 2c4g or 1c512m"
            ),
        };
        let lower = s.trim().to_ascii_lowercase();
        let (cpus, memory) = lower
            .split_once('c')
            .ok_or_else(|| bad("no 'c' after the CPU count"))?;
        let cpus: u32 = cpus
            .parse()
            .map_err(|_| bad("the CPU count is not a number"))?;
        // The unit is the last character, whatever its width in bytes.
        let (amount, unit) = match memory.char_indices().next_back() {
            Some((last, _)) => memory.split_at(last),
            None => ("", ""),
        };
        let amount: u64 = amount
            .parse()
            .map_err(|_| bad("the memory size is not a number"))?;
        let memory_mb = match unit {
            "g" => amount
                .checked_mul(1024)
                .ok_or_else(|| bad("the memory size is too large"))?,
            "m" => amount,
            _ => return Err(bad("the memory unit must be g or m")),
        };
        if cpus == 0 {
            return Err(bad("at least 1 CPU is needed"));
        }
        if memory_mb < 4 {
            return Err(bad("at least 4 MiB of memory is needed"));
        }
        Ok(InstanceType { cpus, memory_mb })
    }
}

/// Options of [`crate::Cloud::launch`]. `LaunchOptions::default()` launches
/// with the template's CPUs and memory, the key-only user data, and waits
/// until the instance is ready.
#[derive(Clone, Debug, Default)]
pub struct LaunchOptions {
    /// User data in any format cloud-init accepts; the cloud's SSH key is
    /// added to it.
    pub user_data: Option<Vec<u8>>,
    /// Vendor data, passed as it is.
    pub vendor_data: Option<Vec<u8>>,
    /// Extra metadata entries (e.g. a `network` section).
    pub metadata: Option<Mapping>,
    /// How far to wait.
    pub wait: WaitStage,
    /// Virtual CPUs.
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub memory_mb: Option<u64>,
    /// CPUs and memory as an instance type (`"2c4g".parse()?`); excludes
    /// `cpus` and `memory_mb`.
    pub instance_type: Option<InstanceType>,
    /// Extra extraConfig key/value pairs.
    pub extra_config: Vec<(String, String)>,
    /// Make a linked clone (fast, shares the image's disks).
    pub linked_clone: bool,
    /// The VM name, instead of `<tag>-<n>`.
    pub name: Option<String>,
    /// Called with the VM's name as each step of the launch begins (for
    /// progress displays); the instance launched keeps telling it of its
    /// power operations and waits (see
    /// [`crate::Instance::with_progress`]). A launch is cancelled through
    /// its cloud's token ([`crate::Cloud::cancel_on`]).
    pub on_step: Option<StepHook>,
    /// Give the VM a serial port writing to a file in its own datastore
    /// folder: its console log ([`crate::Instance::console_log`]). `None`
    /// means the cloud's [`crate::Settings::console_log`] (off by default),
    /// or on when failures are kept ([`LaunchOptions::keep_on_failure`]).
    pub console_log: Option<bool>,
    /// The network of the first NIC, instead of the configuration's
    /// `network` (or the image's own).
    pub network: Option<String>,
    /// Grow the first disk to this many GiB before the power-on (never
    /// shrink it).
    pub disk_gib: Option<u64>,
    /// How long this launch waits for an address, instead of
    /// [`crate::Settings::ip_wait`].
    pub ip_timeout: Option<Duration>,
    /// How long this launch waits for SSH and for cloud-init, instead of
    /// [`crate::Settings::ready`].
    pub ready_timeout: Option<Duration>,
    /// When a wait fails (no address, no SSH, cloud-init failed), keep the
    /// VM instead of removing it, collect the evidence into this directory
    /// (a folder per VM: console log, `cloud-init status --long`, the
    /// `cloud-init collect-logs` tarball and `journalctl -b` when SSH
    /// answers), and fail with [`crate::CloudError::Kept`]. A kept VM is
    /// no longer tracked: [`crate::Cloud::clean`] leaves it; delete it
    /// yourself.
    pub keep_on_failure: Option<Utf8PathBuf>,
    /// How many lanes [`crate::Cloud::launch_many`] runs at once, instead
    /// of [`crate::Settings::concurrency`].
    pub concurrency: Option<usize>,
}

impl LaunchOptions {
    /// Options that wait only for the IP address.
    pub fn wait_for_ip() -> Self {
        Self {
            wait: WaitStage::Ip,
            ..Self::default()
        }
    }

    /// The CPUs and memory asked for, checked.
    pub fn hardware(&self) -> Result<(Option<u32>, Option<u64>), CloudError> {
        if let Some(t) = &self.instance_type {
            if self.cpus.is_some() || self.memory_mb.is_some() {
                return Err(CloudError::InvalidOption {
                    option: "instance type",
                    value: t.to_string(),
                    problem: "give either an instance type or CPUs and memory, not both".to_owned(),
                });
            }
            return Ok((Some(t.cpus), Some(t.memory_mb)));
        }
        if self.cpus == Some(0) {
            return Err(CloudError::InvalidOption {
                option: "CPU count",
                value: "0".to_owned(),
                problem: "at least 1 CPU is needed".to_owned(),
            });
        }
        if self.memory_mb.is_some_and(|m| m < 4) {
            return Err(CloudError::InvalidOption {
                option: "memory",
                value: format!("{} MiB", self.memory_mb.unwrap_or_default()),
                problem: "at least 4 MiB is needed".to_owned(),
            });
        }
        Ok((self.cpus, self.memory_mb))
    }

    /// Metadata entries from a YAML mapping (e.g. a `network` section
    /// for [`LaunchOptions::metadata`]); `what` names the input in errors.
    pub fn metadata_from_yaml(text: &str, what: &str) -> Result<Mapping, CloudError> {
        let bad = |problem: String| CloudError::InvalidOption {
            option: "metadata",
            value: what.to_owned(),
            problem,
        };
        match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
            Ok(serde_yaml_ng::Value::Mapping(m)) => Ok(m),
            Ok(serde_yaml_ng::Value::Null) => Ok(Mapping::new()),
            Ok(_) => Err(bad(
                "it must be a YAML mapping of `key: value` entries".to_owned()
            )),
            Err(e) => Err(bad(match e.location() {
                Some(l) => format!("not valid YAML at line {}, column {}", l.line(), l.column()),
                None => "not valid YAML".to_owned(),
            })),
        }
    }

    /// Checks the options that are plain values: disk size, network name,
    /// timeouts and concurrency.
    pub fn check_values(&self) -> Result<(), CloudError> {
        let bad = |option: &'static str, value: String, problem: &str| {
            Err(CloudError::InvalidOption {
                option,
                value,
                problem: problem.to_owned(),
            })
        };
        if self.disk_gib == Some(0) {
            return bad(
                "disk size",
                "0 GiB".to_owned(),
                "give the size in GiB, at least 1",
            );
        }
        if let Some(n) = &self.network
            && n.trim().is_empty()
        {
            return bad("network", n.clone(), "name a vSphere network");
        }
        for (option, t) in [
            ("IP timeout", self.ip_timeout),
            ("readiness timeout", self.ready_timeout),
        ] {
            if t.is_some_and(|t| t.is_zero()) {
                return bad(
                    option,
                    "0s".to_owned(),
                    "give a duration above zero, e.g. 90s",
                );
            }
        }
        if self.concurrency == Some(0) {
            return bad("concurrency", "0".to_owned(), "at least 1 is needed");
        }
        Ok(())
    }

    /// Checks the extraConfig pairs: keys govc can pass, and none that vmw
    /// sets itself.
    pub fn check_extra_config(&self) -> Result<(), CloudError> {
        for (key, _) in &self.extra_config {
            vmw_govc::requests::check_extra_config_key(key).map_err(|problem| {
                CloudError::InvalidOption {
                    option: "extraConfig key",
                    value: key.clone(),
                    problem,
                }
            })?;
            if key.starts_with("guestinfo.metadata")
                || key.starts_with("guestinfo.userdata")
                || key.starts_with("guestinfo.vendordata")
            {
                return Err(CloudError::InvalidOption {
                    option: "extraConfig key",
                    value: key.clone(),
                    problem: "vmw sets the guestinfo metadata, user data and vendor data itself; pass user data, vendor data or metadata instead".to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_types() {
        assert_eq!(
            "2c4g".parse::<InstanceType>().unwrap(),
            InstanceType {
                cpus: 2,
                memory_mb: 4096
            }
        );
        assert_eq!(
            "1C512M".parse::<InstanceType>().unwrap(),
            InstanceType {
                cpus: 1,
                memory_mb: 512
            }
        );
        for bad in ["t2.micro", "2c", "c4g", "0c4g", "2c4t", "2c0g", ""] {
            let err = bad.parse::<InstanceType>().unwrap_err().to_string();
            assert!(err.contains("e.g. 2c4g"), "{bad}: {err}");
        }
    }

    #[test]
    fn hardware_rules() {
        let both = LaunchOptions {
            instance_type: Some("2c4g".parse().unwrap()),
            cpus: Some(2),
            ..LaunchOptions::default()
        };
        assert!(
            both.hardware()
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let t = LaunchOptions {
            instance_type: Some("4c8g".parse().unwrap()),
            ..LaunchOptions::default()
        };
        assert_eq!(t.hardware().unwrap(), (Some(4), Some(8192)));
        assert!(
            LaunchOptions {
                cpus: Some(0),
                ..LaunchOptions::default()
            }
            .hardware()
            .is_err()
        );
    }

    #[test]
    fn metadata_files_are_mappings() {
        let m = LaunchOptions::metadata_from_yaml("network:\n  version: 2\n", "m.yaml").unwrap();
        assert!(m.contains_key("network"));
        assert!(
            LaunchOptions::metadata_from_yaml("", "m.yaml")
                .unwrap()
                .is_empty()
        );
        let err = LaunchOptions::metadata_from_yaml("- a\n", "m.yaml").unwrap_err();
        assert!(err.to_string().contains("m.yaml"), "{err}");
        let err = LaunchOptions::metadata_from_yaml("a: [\n", "m.yaml").unwrap_err();
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn plain_values_are_checked() {
        for bad in [
            LaunchOptions {
                disk_gib: Some(0),
                ..LaunchOptions::default()
            },
            LaunchOptions {
                network: Some(" ".into()),
                ..LaunchOptions::default()
            },
            LaunchOptions {
                ip_timeout: Some(Duration::ZERO),
                ..LaunchOptions::default()
            },
            LaunchOptions {
                concurrency: Some(0),
                ..LaunchOptions::default()
            },
        ] {
            assert!(bad.check_values().is_err(), "{bad:?}");
        }
        assert!(LaunchOptions::default().check_values().is_ok());
    }

    #[test]
    fn extra_config_and_names() {
        let ok = LaunchOptions {
            extra_config: vec![("disk.EnableUUID".into(), "TRUE".into())],
            ..LaunchOptions::default()
        };
        assert!(ok.check_extra_config().is_ok());
        for key in [
            "a=b",
            "",
            "guestinfo.userdata",
            "guestinfo.metadata.encoding",
        ] {
            let o = LaunchOptions {
                extra_config: vec![(key.into(), "x".into())],
                ..LaunchOptions::default()
            };
            assert!(o.check_extra_config().is_err(), "{key}");
        }
        let check_vm_name = vmw_govc::check_vm_name;
        assert!(check_vm_name("ok-name 1").is_ok());
        for bad in [
            "",
            "a/b",
            &"x".repeat(81),
            "tab\there",
            "web-*",
            "a?",
            "[x]",
        ] {
            assert!(check_vm_name(bad).is_err(), "{bad}");
        }
        assert_eq!("ip".parse::<WaitStage>().unwrap(), WaitStage::Ip);
        assert!("later".parse::<WaitStage>().is_err());
    }
}
