//! Template checks and imports against a real vcsim, with OVAs made by
//! qemu-img.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::cloud_on;

use camino::Utf8PathBuf;
use vmw_cloud::{
    Cloud, CloudError, Hints, LaunchOptions, Requirement, Settings, TemplateImport, WaitStage,
};
use vmw_govc::requests::{Import, ImportSpec, MarkAsTemplate, PowerOp, VmPower};
use vmw_govc::{Govc, GovcExt, ProcessGovc, VmRef};
use vmw_testbed::{Vcsim, VcsimOptions, ova};

struct Bed {
    sim: Vcsim,
    dir: tempfile::TempDir,
    cloud: Cloud<ProcessGovc>,
}

async fn bed() -> Bed {
    let sim = Vcsim::start_with(VcsimOptions::new().datastores(2))
        .await
        .unwrap();
    let (cloud, dir) = cloud_on(&sim, "tpl", Settings::default());
    Bed { sim, dir, cloud }
}

impl Bed {
    fn path(&self) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(self.dir.path().to_owned()).unwrap()
    }

    fn ova(&self, name: &str) -> Utf8PathBuf {
        ova::make_ova(&self.path(), name).unwrap()
    }

    fn import(release: &str) -> TemplateImport {
        TemplateImport {
            release: release.to_owned(),
            network: Some(vmw_testbed::NETWORK.to_owned()),
            ..TemplateImport::default()
        }
    }
}

fn failed(report: &vmw_cloud::TemplateReport) -> Vec<Requirement> {
    report.failures().map(|c| c.requirement).collect()
}

#[tokio::test]
async fn an_imported_ova_passes_every_check_is_found_and_launches() {
    let bed = bed().await;
    let ova = bed.ova("noble-server-cloudimg-amd64");
    let imported = bed
        .cloud
        .import_template(&ova, &Bed::import("noble"))
        .await
        .unwrap();
    assert_eq!(imported.name, "TEMPLATE-cloud-init-noble");
    assert!(imported.report.ok(), "{:?}", imported.report);
    assert_eq!(imported.report.path, "/DC0/vm/TEMPLATE-cloud-init-noble");
    let spec = &imported.spec;
    assert_eq!(spec.disk_provisioning.as_deref(), Some("thin"));
    assert_eq!(spec.ip_allocation_policy.as_deref(), Some("dhcpPolicy"));
    assert_eq!(spec.ip_protocol.as_deref(), Some("IPv4"));
    assert!(!spec.inject_ovf_env && !spec.power_on && !spec.mark_as_template && !spec.wait_for_ip);
    let props = spec.property_mapping.clone().unwrap();
    assert_eq!(props.len(), 6);
    assert!(props.iter().all(|p| p.value.is_empty()), "{props:?}");
    assert_eq!(
        spec.network_mapping.clone().unwrap()[0].network,
        "VM Network"
    );

    assert_eq!(
        bed.cloud.released_image("noble").await.unwrap().name(),
        "TEMPLATE-cloud-init-noble"
    );
    let inst = bed
        .cloud
        .launch(
            &common::img("TEMPLATE-cloud-init-noble"),
            &LaunchOptions {
                wait: WaitStage::None,
                ..LaunchOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        inst.power_state().await.unwrap(),
        vmw_govc::parse::PowerState::On
    );

    // The seeded templates pass too.
    let all = bed.cloud.check_templates().await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.ok()), "{all:?}");
}

#[tokio::test]
async fn each_violated_requirement_is_named() {
    let bed = bed().await;
    let govc = bed.sim.govc();

    // 1. A vSphere template.
    govc.exec(&MarkAsTemplate {
        vm: at("TEMPLATE-cloud-init-focal"),
    })
    .await
    .unwrap();
    let r = bed
        .cloud
        .check_template("TEMPLATE-cloud-init-focal")
        .await
        .unwrap();
    assert_eq!(failed(&r), [Requirement::StandardVm]);
    assert!(r.checks[0].fix.as_deref().unwrap().contains("vm.markasvm"));

    // 2. Powered on.
    govc.exec(&VmPower::new(at("TEMPLATE-cloud-init-jammy"), PowerOp::On))
        .await
        .unwrap();
    let r = bed
        .cloud
        .check_template("TEMPLATE-cloud-init-jammy")
        .await
        .unwrap();
    assert_eq!(failed(&r), [Requirement::PoweredOff]);
    assert_eq!(r.checks[1].observed, "On");

    // 3. In another folder; 5. wrongly named.
    let ova = bed.ova("plain");
    let spec = govc.exec(&ImportSpec { file: ova.clone() }).await.unwrap();
    let spec = vmw_cloud::prepare_spec(spec, "ubuntu-jammy", "VM Network");
    let options = bed.path().join("o.json");
    std::fs::write(&options, serde_json::to_vec(&spec).unwrap()).unwrap();
    let mut import = Import::new(ova.clone());
    import.options = Some(options.clone());
    import.folder = Some("/DC0/vm".into());
    govc.exec(&import).await.unwrap();
    let r = bed.cloud.check_template("ubuntu-jammy").await.unwrap();
    assert_eq!(failed(&r), [Requirement::Named]);

    govc.run(&vmw_govc::Command::new("folder.create").arg("/DC0/vm/elsewhere"))
        .await
        .unwrap();
    let spec = vmw_cloud::prepare_spec(
        govc.exec(&ImportSpec { file: ova.clone() }).await.unwrap(),
        "TEMPLATE-cloud-init-lunar",
        "VM Network",
    );
    std::fs::write(&options, serde_json::to_vec(&spec).unwrap()).unwrap();
    import.folder = Some("/DC0/vm/elsewhere".into());
    govc.exec(&import).await.unwrap();
    let r = bed
        .cloud
        .check_template("TEMPLATE-cloud-init-lunar")
        .await
        .unwrap();
    assert_eq!(failed(&r), [Requirement::InFolder]);
    assert!(
        r.checks[2].observed.contains("/DC0/vm/elsewhere"),
        "{:?}",
        r.checks[2]
    );

    // 4. Imported with InjectOvfEnv.
    let mut spec = vmw_cloud::prepare_spec(
        govc.exec(&ImportSpec { file: ova.clone() }).await.unwrap(),
        "TEMPLATE-cloud-init-mantic",
        "VM Network",
    );
    spec.inject_ovf_env = true;
    std::fs::write(&options, serde_json::to_vec(&spec).unwrap()).unwrap();
    import.folder = Some("/DC0/vm".into());
    govc.exec(&import).await.unwrap();
    let r = bed
        .cloud
        .check_template("TEMPLATE-cloud-init-mantic")
        .await
        .unwrap();
    assert_eq!(failed(&r), [Requirement::NoOvfEnvironment]);
    assert!(r.checks[3].observed.contains("guestinfo.ovfEnv"));

    // launch refuses the cheap violations before cloning anything.
    for image in ["TEMPLATE-cloud-init-mantic", "TEMPLATE-cloud-init-focal"] {
        let err = bed
            .cloud
            .launch(
                &common::img(image),
                &LaunchOptions {
                    wait: WaitStage::None,
                    ..LaunchOptions::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CloudError::BadSource { .. }), "{err}");
        assert!(
            err.hints().iter().any(|h| h.contains("check_template")),
            "{:?}",
            err.hints()
        );
    }
    assert!(bed.cloud.tracked_instances().is_empty());

    let err = bed.cloud.check_template("no-such-vm").await.unwrap_err();
    assert!(matches!(err, CloudError::NoSuchVm { .. }), "{err}");
}

#[tokio::test]
async fn an_existing_template_is_kept_unless_replaced_and_a_failed_replace_keeps_it() {
    let bed = bed().await;
    let ova = bed.ova("jammy-new");
    let err = bed
        .cloud
        .import_template(&ova, &Bed::import("jammy"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("replace"), "{err}");

    // A replacement that fails half-way: the descriptor is fine (import.spec
    // reads it, the VM is created) but the disk is missing from the archive,
    // so the upload fails. The old template stays, the half-made VM goes.
    let broken = bed.path().join("broken.ova");
    let status = std::process::Command::new("tar")
        .current_dir(bed.path())
        .args(["-cf", broken.as_str(), "jammy-new.ovf"])
        .status()
        .unwrap();
    assert!(status.success());
    // The seeded template was not imported by vmw: replacing it takes force.
    let unforced = TemplateImport {
        replace: true,
        ..Bed::import("jammy")
    };
    let err = bed
        .cloud
        .import_template(&ova, &unforced)
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NotOurs { .. }), "{err}");
    let replace = TemplateImport {
        replace: true,
        force: true,
        ..Bed::import("jammy")
    };
    let err = bed
        .cloud
        .import_template(&broken, &replace)
        .await
        .unwrap_err();
    assert!(
        err.govc()
            .is_some_and(|e| e.command().is_some_and(|c| c.name() == "import.ova")),
        "failed at the upload: {err}"
    );
    let r = bed
        .cloud
        .check_template("TEMPLATE-cloud-init-jammy")
        .await
        .unwrap();
    assert!(r.ok());
    assert_eq!(r.path, "/DC0/vm/TEMPLATE-cloud-init-jammy");
    let vms = bed
        .sim
        .govc()
        .exec(&vmw_govc::requests::Find::new("/DC0/vm").name("TEMPLATE-cloud-init-jammy*"))
        .await
        .unwrap();
    assert_eq!(
        vms,
        ["/DC0/vm/TEMPLATE-cloud-init-jammy"],
        "no half-imported VM left"
    );

    // A good replacement swaps in.
    let before = bed
        .sim
        .govc()
        .exec(&vmw_govc::requests::VmInfo::new(at(
            "TEMPLATE-cloud-init-jammy",
        )))
        .await
        .unwrap();
    let imported = bed.cloud.import_template(&ova, &replace).await.unwrap();
    assert!(imported.replaced && imported.report.ok(), "{imported:?}");
    let after = bed
        .sim
        .govc()
        .exec(&vmw_govc::requests::VmInfo::new(at(
            "TEMPLATE-cloud-init-jammy",
        )))
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_ne!(before[0].moref, after[0].moref, "a new VM");
    assert_eq!(after[0].memory_mb, 1024, "the OVA's hardware");

    // Imported by vmw, it carries vmw's marker: replacing it again needs no
    // force, and delete/clean never touch it.
    let again = bed.cloud.import_template(&ova, &unforced).await.unwrap();
    assert!(again.replaced);
    let err = bed
        .cloud
        .delete_vm_forced("TEMPLATE-cloud-init-jammy")
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::TemplateProtected { .. }), "{err}");
}

#[tokio::test]
async fn replace_touches_only_the_template_in_the_target_folder() {
    let bed = bed().await;
    let govc = bed.sim.govc();
    // A same-named VM in another folder, made by someone else.
    let theirs = "/DC0/vm/theirs";
    govc.run(&vmw_govc::Command::new("folder.create").arg(theirs))
        .await
        .unwrap();
    let mut other = vmw_govc::requests::VmCreate::new(
        VmRef::in_folder(theirs, "TEMPLATE-cloud-init-jammy").unwrap(),
    );
    other.pool = Some(vmw_testbed::CLUSTER_POOL.to_owned());
    other.datastore = Some("LocalDS_1".to_owned());
    other.network = Some(vmw_testbed::NETWORK.to_owned());
    govc.exec(&other).await.unwrap();
    let ova = bed.ova("jammy-new");
    let replace = TemplateImport {
        replace: true,
        force: true,
        ..Bed::import("jammy")
    };
    bed.cloud.import_template(&ova, &replace).await.unwrap();
    let left = govc
        .exec(&vmw_govc::requests::VmInfo::new(
            VmRef::in_folder(theirs, "TEMPLATE-cloud-init-jammy").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "the other folder's VM survives");
}

fn at(name: &str) -> VmRef {
    VmRef::in_folder("/DC0/vm", name).unwrap()
}
