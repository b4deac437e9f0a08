//! Source templates: the five requirements a source VM must meet, checked;
//! and importing one from an Ubuntu cloud image `.ova`/`.ovf`.

use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use vmw_govc::parse::{ImportOptions, PowerState};
use vmw_govc::requests::{Find, Import, ImportSpec, ObjectCollect, ObjectType, VmInfo, VmRename};
use vmw_govc::{Govc, GovcExt, VmRef};

use crate::CloudError;
use crate::cloud::Cloud;
use crate::ownership::Expect;
use crate::settings::TEMPLATE_PREFIX;
use crate::tag::{Kind, annotation, new_launch_id, parse_marker};

/// The extraConfig key an injected OVF environment leaves on a VM.
pub(crate) const OVF_ENV_KEY: &str = "guestinfo.ovfEnv";

/// One of the requirements on a source VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// 1. A standard VM, not a vSphere template.
    StandardVm,
    /// 2. Powered off.
    PoweredOff,
    /// 3. In the configured folder.
    InFolder,
    /// 4. No OVF environment injected.
    NoOvfEnvironment,
    /// 5. Named `TEMPLATE-cloud-init-<release>`.
    Named,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Requirement::StandardVm => "a standard VM, not a vSphere template",
            Requirement::PoweredOff => "powered off",
            Requirement::InFolder => "in the configured folder",
            Requirement::NoOvfEnvironment => "no OVF environment injected",
            Requirement::Named => "named TEMPLATE-cloud-init-<release>",
        })
    }
}

/// The result of one requirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Which requirement.
    pub requirement: Requirement,
    /// Whether it is met.
    pub passed: bool,
    /// What was observed.
    pub observed: String,
    /// How to fix it, when it is not met.
    pub fix: Option<String>,
    /// Something worth knowing even when it is met.
    pub warning: Option<String>,
}

/// The five checks of one source VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateReport {
    /// The VM's name.
    pub name: String,
    /// Its inventory path.
    pub path: String,
    /// One entry per requirement, in order.
    pub checks: Vec<Check>,
}

impl TemplateReport {
    /// Whether every requirement is met.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The requirements that are not met.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// Options of [`Cloud::import_template`].
#[derive(Clone, Debug, Default)]
pub struct TemplateImport {
    /// The release the template is for: it is named
    /// `TEMPLATE-cloud-init-<release>`.
    pub release: String,
    /// The vSphere network for every network of the OVF (default: the
    /// configured `network`, else the only network there is).
    pub network: Option<String>,
    /// Another name (it must still follow the naming rule to pass the check).
    pub name: Option<String>,
    /// Another datastore than the configured one.
    pub datastore: Option<String>,
    /// Another folder than the configured one.
    pub folder: Option<String>,
    /// Replace the existing template of that name in the target folder
    /// (only there): the new one is imported under a temporary name,
    /// checked, and only then swapped in.
    pub replace: bool,
    /// With `replace`: replace the old template even when vmw did not
    /// import it (it carries no vmw marker).
    pub force: bool,
}

/// What [`Cloud::import_template`] did.
#[derive(Clone, Debug)]
pub struct ImportedTemplate {
    /// The template's name.
    pub name: String,
    /// The import options given to govc.
    pub spec: ImportOptions,
    /// The check of the imported VM.
    pub report: TemplateReport,
    /// Whether an older template was replaced.
    pub replaced: bool,
}

fn check_release(release: &str) -> Result<(), CloudError> {
    let ok = !release.is_empty()
        && release
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(CloudError::InvalidOption {
            option: "release",
            value: release.to_owned(),
            problem: "use lowercase letters, digits, '.' and '-' (e.g. jammy, noble, 24.04)"
                .to_owned(),
        })
    }
}

/// The import options vmw uses: those the seed procedure prescribes.
pub fn prepare_spec(mut spec: ImportOptions, name: &str, network: &str) -> ImportOptions {
    spec.disk_provisioning = Some("thin".to_owned());
    spec.ip_allocation_policy = Some("dhcpPolicy".to_owned());
    spec.ip_protocol = Some("IPv4".to_owned());
    if let Some(props) = spec.property_mapping.as_mut() {
        for p in props {
            p.value.clear();
        }
    }
    if let Some(nets) = spec.network_mapping.as_mut() {
        for n in nets {
            n.network = network.to_owned();
        }
    }
    spec.mark_as_template = false;
    spec.power_on = false;
    spec.inject_ovf_env = false;
    spec.wait_for_ip = false;
    spec.name = Some(name.to_owned());
    spec
}

/// The last element of an inventory path.
fn last_element(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl<G: Govc + 'static> Cloud<G> {
    fn folder_path(&self) -> String {
        self.config().folder.trim_end_matches('/').to_owned()
    }

    /// Inventory paths of VMs matching the glob `pattern`, anywhere (a
    /// read: nothing found this way is ever changed).
    async fn find_vms(&self, pattern: &str) -> Result<Vec<VmRef>, CloudError> {
        Ok(self
            .govc()
            .exec(
                &Find::new("/")
                    .kind(ObjectType::VirtualMachine)
                    .name(pattern),
            )
            .await?
            .iter()
            .filter_map(|p| VmRef::parse(p).ok())
            .collect())
    }

    /// Checks the five requirements on the source VM `name`: an absolute
    /// path, or a name looked for in the whole inventory (so a VM in the
    /// wrong folder is reported as such).
    pub async fn check_template(&self, name: &str) -> Result<TemplateReport, CloudError> {
        let path = if name.starts_with('/') {
            VmRef::parse(name)?
        } else {
            vmw_govc::check_vm_name(name)?;
            let mut paths = self.find_vms(name).await?;
            paths.sort();
            match paths.into_iter().next() {
                Some(p) => p,
                None => {
                    return Err(CloudError::NoSuchVm {
                        name: name.to_owned(),
                    });
                }
            }
        };
        self.check_path(&path).await
    }

    /// Checks every `TEMPLATE-cloud-init-*` VM in the inventory.
    pub async fn check_templates(&self) -> Result<Vec<TemplateReport>, CloudError> {
        let mut paths = self.find_vms(&format!("{TEMPLATE_PREFIX}*")).await?;
        paths.sort();
        let mut reports = Vec::new();
        for p in paths {
            reports.push(self.check_path(&p).await?);
        }
        Ok(reports)
    }

    async fn check_path(&self, vm_ref: &VmRef) -> Result<TemplateReport, CloudError> {
        let path = vm_ref.as_str();
        let mut info = VmInfo::new(vm_ref.clone());
        info.extra_config = true;
        let vm = self
            .govc()
            .exec(&info)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| CloudError::NoSuchVm {
                name: path.to_owned(),
            })?;
        let transport = self
            .govc()
            .exec(&ObjectCollect::vm(
                vm_ref,
                ["config.vAppConfig.ovfEnvironmentTransport"],
            ))
            .await?;
        let transports: Vec<String> =
            match transport.get("config.vAppConfig.ovfEnvironmentTransport") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
        let (folder, name) = (vm_ref.folder(), vm_ref.name());
        let wanted_folder = self.folder_path();
        let mut checks = Vec::new();

        checks.push(Check {
            requirement: Requirement::StandardVm,
            passed: !vm.template,
            observed: format!("config.template = {}", vm.template),
            fix: vm.template.then(|| {
                format!("turn it back into a VM: govc vm.markasvm -pool <resource pool> {path}")
            }),
            warning: None,
        });
        let off = vm.power_state == PowerState::Off;
        checks.push(Check {
            requirement: Requirement::PoweredOff,
            passed: off,
            observed: format!("{:?}", vm.power_state),
            fix: (!off).then(|| format!("power it off: govc vm.power -off {path}")),
            warning: None,
        });
        let in_folder = folder == wanted_folder;
        checks.push(Check {
            requirement: Requirement::InFolder,
            passed: in_folder,
            observed: format!("in {folder} (configured: {wanted_folder})"),
            fix: (!in_folder).then(|| format!("move it: govc object.mv {path} {wanted_folder}")),
            warning: None,
        });
        let injected = vm.extra_config.contains_key(OVF_ENV_KEY);
        checks.push(Check {
            requirement: Requirement::NoOvfEnvironment,
            passed: !injected,
            observed: if injected {
                format!("{OVF_ENV_KEY} is set")
            } else {
                format!("no {OVF_ENV_KEY}")
            },
            fix: injected.then(|| {
                "import it again with InjectOvfEnv false (vmw image import does), or remove the key: govc vm.change -e guestinfo.ovfEnv= ...".to_owned()
            }),
            warning: (!transports.is_empty()).then(|| {
                format!(
                    "its vApp options use the OVF environment transport {}; cloud-init may prefer the OVF datasource",
                    transports.join(", ")
                )
            }),
        });
        let release = name.strip_prefix(TEMPLATE_PREFIX).filter(|r| !r.is_empty());
        checks.push(Check {
            requirement: Requirement::Named,
            passed: release.is_some(),
            observed: format!("named {name}"),
            fix: release.is_none().then(|| {
                format!("rename it: govc object.rename {path} {TEMPLATE_PREFIX}<release>")
            }),
            warning: None,
        });
        Ok(TemplateReport {
            name: name.to_owned(),
            path: path.to_owned(),
            checks,
        })
    }

    /// Destroys the template at exactly `vm` through the checked path
    /// ([`crate::ownership`]): the one this import made (`launch`: it must
    /// carry that launch's marker), or the old one being replaced (vmw's
    /// marker, unless `forced`). Absent is success.
    async fn remove_template(
        &self,
        vm: &VmRef,
        launch: Option<&str>,
        forced: bool,
    ) -> Result<(), CloudError> {
        self.inner
            .destroy_checked(vm, Expect::Template { launch, forced })
            .await
            .map(|_| ())
    }

    /// Removes what a failed import made, and returns the import's error,
    /// with the removal's error when that failed too.
    async fn roll_back_import(
        &self,
        imported: &VmRef,
        launch: &str,
        error: CloudError,
    ) -> CloudError {
        match self.remove_template(imported, Some(launch), false).await {
            Ok(()) => error,
            Err(rollback) => CloudError::Step {
                vm: imported.to_string(),
                step: crate::Step::Import,
                source: Box::new(error),
                removed: false,
                rollback: Some(Box::new(rollback)),
            },
        }
    }

    /// The network an import maps every OVF network to.
    async fn import_network(&self, asked: Option<&str>) -> Result<String, CloudError> {
        if let Some(n) = asked.or(self.config().network.as_deref()) {
            return Ok(n.to_owned());
        }
        let nets = self
            .govc()
            .exec(&Find::new("/").kind(ObjectType::Network))
            .await?;
        match nets.as_slice() {
            [only] => Ok(last_element(only).to_owned()),
            _ => Err(CloudError::InvalidOption {
                option: "network",
                value: String::new(),
                problem: format!(
                    "several networks exist, say which one the template uses: {}",
                    nets.iter()
                        .map(|n| last_element(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Imports an Ubuntu cloud image (`.ova` or `.ovf`) as the source
    /// template of `options.release`: `govc import.spec`, the options of the
    /// seed procedure (thin disks, DHCP, IPv4, blank OVF properties, the
    /// chosen network, no template, no power-on, no OVF environment), then
    /// `import.ova`/`import.ovf` and the check of the result. An existing
    /// template of that name is refused unless `replace`: then the new one is
    /// imported under a temporary name, checked, and only then swapped in,
    /// so a failed import never leaves the release without a template.
    pub async fn import_template(
        &self,
        file: &Utf8Path,
        options: &TemplateImport,
    ) -> Result<ImportedTemplate, CloudError> {
        check_release(&options.release)?;
        if !file.is_file() {
            return Err(CloudError::InvalidOption {
                option: "image file",
                value: file.to_string(),
                problem: "it does not exist".to_owned(),
            });
        }
        let name = options
            .name
            .clone()
            .unwrap_or_else(|| format!("{TEMPLATE_PREFIX}{}", options.release));
        let folder = options.folder.clone().unwrap_or_else(|| self.folder_path());
        let target = VmRef::in_folder(&folder, &name)?;
        // Only the template at exactly that path is ever replaced.
        let existing = self.inner.lookup(&target).await?;
        if let Some(old) = &existing {
            if !options.replace {
                return Err(CloudError::InvalidOption {
                    option: "template name",
                    value: name,
                    problem: format!(
                        "a VM of that name exists ({target}); pass replace (--replace) to swap in the new image"
                    ),
                });
            }
            if !options.force && parse_marker(&old.annotation).is_none() {
                return Err(CloudError::NotOurs {
                    vm: target.to_string(),
                    reason:
                        "the template to replace was not imported by vmw (it carries no vmw marker)"
                            .to_owned(),
                });
            }
        }
        let network = self.import_network(options.network.as_deref()).await?;
        let launch = new_launch_id();
        let import_name = if existing.is_none() {
            name.clone()
        } else {
            format!("{name}-vmw-import-{}", &launch[..8])
        };
        let imported = VmRef::in_folder(&folder, &import_name)?;
        if self.inner.lookup(&imported).await?.is_some() {
            return Err(CloudError::InvalidOption {
                option: "template name",
                value: import_name,
                problem: format!("{imported} exists already (a previous import?); remove it first"),
            });
        }

        let spec = self
            .govc()
            .exec(&ImportSpec {
                file: file.to_owned(),
            })
            .await?;
        let mut spec = prepare_spec(spec, &import_name, &network);
        spec.annotation = Some(annotation(self.tag(), Kind::Template, &launch));
        let dir = tempfile::Builder::new()
            .prefix("vmw-import-")
            .tempdir()
            .map_err(|source| CloudError::Io {
                what: "creating a temporary directory".to_owned(),
                source,
            })?;
        let spec_path =
            Utf8PathBuf::from_path_buf(dir.path().join("options.json")).map_err(|_| {
                CloudError::Io {
                    what: "temporary directory".to_owned(),
                    source: std::io::Error::other("path is not UTF-8"),
                }
            })?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| CloudError::Io {
            what: "encoding the import options".to_owned(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&spec_path, json).map_err(|source| CloudError::Io {
            what: format!("writing {spec_path}"),
            source,
        })?;

        let mut import = Import::new(file);
        import.options = Some(spec_path);
        import.datastore = Some(
            options
                .datastore
                .clone()
                .unwrap_or_else(|| self.config().datastore.clone()),
        );
        import.pool = self.config().resource_pool.clone();
        import.folder = Some(folder.clone());
        if let Err(e) = self.govc().exec(&import).await {
            // Remove whatever a half-done import left (only if this import
            // made it); the old template stays.
            return Err(self.roll_back_import(&imported, &launch, e.into()).await);
        }
        // A release imported here is known to the releases from now on.
        self.inner.set_releases(None);

        let mut report = self.check_path(&imported).await?;
        let naming_ok = report
            .checks
            .iter()
            .filter(|c| c.requirement != Requirement::Named)
            .all(|c| c.passed);
        if existing.is_none() {
            return Ok(ImportedTemplate {
                name,
                spec,
                report,
                replaced: false,
            });
        }
        if !naming_ok {
            let refused = CloudError::InvalidOption {
                option: "imported image",
                value: import_name,
                problem: format!(
                    "it does not meet the requirements ({}); the existing template was kept",
                    report
                        .failures()
                        .map(|c| c.requirement.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(self.roll_back_import(&imported, &launch, refused).await);
        }
        self.remove_template(&target, None, options.force).await?;
        self.govc()
            .exec(&VmRename {
                vm: imported.clone(),
                name: name.clone(),
            })
            .await?;
        report = self.check_path(&target).await?;
        Ok(ImportedTemplate {
            name,
            spec,
            report,
            replaced: true,
        })
    }
}
