//! cloud-init itself judges what this crate produces.
//!
//! Each test encodes metadata and user data exactly as they would be written to guestinfo,
//! hands them to Debian's cloud-init through the environment-variable transport of its VMware
//! datasource (`VMX_GUESTINFO=1`, `VMX_GUESTINFO_METADATA`, ...), lets cloud-init run its
//! init-stage user-data processing and cloud-config merging (`tests/judge/judge.py`), and
//! checks what cloud-init ended up with.
//!
//! Where cloud-init is found:
//! - `VMW_JUDGE_PYTHON`: the interpreter, default `/usr/bin/python3` (Debian's, which has
//!   the python3-* packages cloud-init needs).
//! - `VMW_CLOUD_INIT_ROOT`: a folder into which Debian's `cloud-init` package was unpacked
//!   with `dpkg -x`, default `.tools/cloud-init` in the workspace, where `cargo xtask tools`
//!   puts it. When it holds no cloud-init, a cloud-init installed system-wide
//!   (`apt-get install cloud-init`) is used.
//!
//! A missing cloud-init fails these tests with the command that installs it.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml_ng::Value;
use vmw_userdata::{Encoding, Field, GuestInfo, Metadata, Outcome, PublicKey, encode, inject_key};

use common::{JINJA, JINJA_BLOCKS, MULTIPART, NO_KEYS, SCRIPT, WEB_SERVER, key, plus_key, yaml};

/// `.tools/cloud-init` of the workspace.
fn default_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/cloud-init")
}
const DEFAULT_PYTHON: &str = "/usr/bin/python3";
const DIST_PACKAGES: &str = "usr/lib/python3/dist-packages";

const INSTALL_HINT: &str = "install the cloud-init judge with `cargo xtask tools` (it unpacks \
    Debian's cloud-init into .tools/cloud-init and installs the python3 packages it needs), \
    or point VMW_CLOUD_INIT_ROOT at another unpacked copy and VMW_JUDGE_PYTHON at another \
    python3";

/// The interpreter and the PYTHONPATH (if any) under which cloud-init imports.
fn locate_cloud_init() -> (PathBuf, Option<PathBuf>) {
    let python = std::env::var_os("VMW_JUDGE_PYTHON")
        .map_or_else(|| PathBuf::from(DEFAULT_PYTHON), PathBuf::from);
    let root = std::env::var_os("VMW_CLOUD_INIT_ROOT").map_or_else(default_root, PathBuf::from);
    assert!(
        python.is_file(),
        "the Python interpreter for the cloud-init judge, {}, does not exist; {INSTALL_HINT}",
        python.display()
    );
    let unpacked = root.join(DIST_PACKAGES);
    let pythonpath = unpacked.join("cloudinit").is_dir().then_some(unpacked);
    let probe = run_python(
        &python,
        pythonpath.as_deref(),
        &[
            "-c",
            "import cloudinit.sources.DataSourceVMware, cloudinit.stages",
        ],
        &[],
    );
    assert!(
        probe.status.success(),
        "cloud-init cannot be imported by {} (looked in {} and system-wide): {}\n{INSTALL_HINT}",
        python.display(),
        root.join(DIST_PACKAGES).display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    (python, pythonpath)
}

fn run_python(
    python: &Path,
    pythonpath: Option<&Path>,
    args: &[&str],
    env: &[(String, String)],
) -> std::process::Output {
    let mut command = Command::new(python);
    command.args(args).env_clear();
    command.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    command.env("LANG", "C.UTF-8");
    if let Some(path) = pythonpath {
        command.env("PYTHONPATH", path);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", python.display()))
}

/// The environment variable cloud-init's VMware datasource reads for a guestinfo key.
fn env_name(guestinfo_key: &str) -> String {
    format!("vmx.{guestinfo_key}")
        .to_ascii_uppercase()
        .replace('.', "_")
}

/// Runs cloud-init on these guestinfo values and returns its report.
fn judge(info: &GuestInfo) -> Json {
    let (python, pythonpath) = locate_cloud_init();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/judge/judge.py");
    let work = tempfile::tempdir().expect("scratch folder");
    // The values travel as govc would store them: written to files, read back verbatim.
    let mut env = vec![("VMX_GUESTINFO".to_owned(), "1".to_owned())];
    for entry in info.entries() {
        let file = work.path().join(entry.key());
        std::fs::write(&file, entry.value()).expect("write value file");
        let stored = std::fs::read(&file).expect("read value file");
        env.push((
            env_name(entry.key()),
            String::from_utf8(stored).expect("guestinfo values are ASCII"),
        ));
    }
    let state = work.path().join("state");
    std::fs::create_dir(&state).expect("state folder");
    let output = run_python(
        &python,
        pythonpath.as_deref(),
        &[
            script.to_str().expect("UTF-8 path"),
            state.to_str().expect("UTF-8 path"),
        ],
        &env,
    );
    assert!(
        output.status.success(),
        "the judge failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "the judge printed no JSON ({err}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn to_json(value: &Value) -> Json {
    serde_json::to_value(value).expect("YAML value converts to JSON")
}

/// What every run must show: the VMware datasource read our data through the environment,
/// the instance is named after the VM, the user data arrived byte for byte, and cloud-init
/// warned about nothing.
fn assert_common(report: &Json, vm: &str, user_data: &[u8]) {
    assert_eq!(report["datasource"], "DataSourceVMware", "{report:#}");
    assert_eq!(report["data_access_method"], "envvar", "{report:#}");
    assert_eq!(report["instance_id"], vm, "{report:#}");
    assert_eq!(report["local_hostname"], vm, "{report:#}");
    assert_eq!(report["metadata"]["instance-id"], vm);
    assert_eq!(report["metadata"]["local-hostname"], vm);
    assert_eq!(
        report["userdata_raw"].as_str().map(str::as_bytes),
        Some(user_data),
        "cloud-init decoded other user data than was encoded"
    );
    assert_eq!(report["warnings"], Json::Array(Vec::new()), "{report:#}");
}

/// Injects, encodes, runs cloud-init; returns the report and the user data given.
fn launch(vm: &str, user_data: Option<&[u8]>, key: &PublicKey) -> (Json, Vec<u8>, GuestInfo) {
    let injected = inject_key(user_data, key).expect("injection succeeds");
    let info = encode(&Metadata::for_vm(vm), injected.bytes(), None).expect("encoding succeeds");
    let report = judge(&info);
    let bytes = injected.into_bytes();
    assert_common(&report, vm, &bytes);
    (report, bytes, info)
}

#[test]
fn no_user_data_gives_only_the_key() {
    let (report, _, _) = launch("judge-empty-1", None, &key());
    assert_eq!(
        report["cloud_config"],
        serde_json::json!({ "ssh_authorized_keys": [key().to_string()] })
    );
}

#[test]
fn cloud_config_keeps_every_key_and_adds_ours_last() {
    let (report, bytes, _) = launch("judge-web-1", Some(WEB_SERVER.as_bytes()), &key());
    assert!(bytes.starts_with(b"#cloud-config\n# Web server bootstrap: keep these comments!\n"));
    let expected = plus_key(&yaml(WEB_SERVER), &key());
    assert_eq!(report["cloud_config"], to_json(&expected), "{report:#}");
    let keys = report["cloud_config"]["ssh_authorized_keys"]
        .as_array()
        .expect("a list");
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[2], key().to_string());
}

#[test]
fn cloud_config_without_keys_gets_a_list() {
    let (report, _, _) = launch("judge-nokeys-1", Some(NO_KEYS.as_bytes()), &key());
    assert_eq!(
        report["cloud_config"],
        to_json(&plus_key(&yaml(NO_KEYS), &key()))
    );
}

#[test]
fn jinja_template_is_rendered_with_the_key_added() {
    let vm = "judge-jinja-1";
    let (report, bytes, _) = launch(vm, Some(JINJA.as_bytes()), &key());
    assert!(bytes.starts_with(b"## template: jinja\n#cloud-config\n"));
    let rendered = JINJA
        .replace("{{ v1.local_hostname }}", vm)
        .replace("{{ v1.cloud_name }}", "vmware");
    assert_eq!(
        report["cloud_config"],
        to_json(&plus_key(&yaml(&rendered), &key())),
        "{report:#}"
    );
}

#[test]
fn jinja_template_with_blocks_travels_in_its_own_part() {
    let vm = "judge-jinja-2";
    let injected = inject_key(Some(JINJA_BLOCKS.as_bytes()), &key()).expect("injects");
    assert_eq!(injected.outcome(), Outcome::Wrapped);
    let (report, _, _) = launch(vm, Some(JINJA_BLOCKS.as_bytes()), &key());
    assert_eq!(
        report["cloud_config"],
        serde_json::json!({
            "packages": ["jq"],
            "write_files": [{ "path": "/run/name", "content": vm }],
            "ssh_authorized_keys": [key().to_string()],
        }),
        "{report:#}"
    );
}

#[test]
fn shell_script_is_kept_byte_for_byte() {
    let (report, bytes, _) = launch("judge-script-1", Some(SCRIPT.as_bytes()), &key());
    assert!(bytes.starts_with(b"Content-Type: multipart/mixed"));
    assert_eq!(
        report["cloud_config"],
        serde_json::json!({ "ssh_authorized_keys": [key().to_string()] })
    );
    let scripts = report["scripts"].as_object().expect("scripts");
    assert_eq!(scripts.len(), 1, "{report:#}");
    let stored = scripts.values().next().and_then(Json::as_str);
    assert_eq!(stored, Some(SCRIPT));
}

#[test]
fn existing_multipart_gets_one_more_part() {
    let (report, bytes, _) = launch("judge-mime-1", Some(MULTIPART.as_bytes()), &key());
    let text = String::from_utf8(bytes).expect("UTF-8");
    assert_eq!(
        text.matches("--===============4291038100093149247==\n")
            .count(),
        3
    );
    assert!(text.ends_with("--===============4291038100093149247==--\n"));
    assert_eq!(
        report["cloud_config"],
        serde_json::json!({
            "packages": ["git"],
            "ssh_authorized_keys": [
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQExistingExistingExistingExisting ops@bastion",
                key().to_string(),
            ],
        }),
        "{report:#}"
    );
    assert_eq!(
        report["scripts"]["setup.sh"],
        "#!/bin/sh\necho multipart > /run/multipart\n"
    );
}

#[test]
fn gzip_user_data_is_wrapped_and_still_read() {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(NO_KEYS.as_bytes()).expect("compress");
    let compressed = encoder.finish().expect("compress");
    let injected = inject_key(Some(&compressed), &key()).expect("injects");
    assert_eq!(injected.outcome(), Outcome::Wrapped);
    let info = encode(&Metadata::for_vm("judge-gzip-1"), injected.bytes(), None).expect("encodes");
    let report = judge(&info);
    assert_eq!(report["data_access_method"], "envvar");
    assert_eq!(
        report["cloud_config"],
        to_json(&plus_key(&yaml(NO_KEYS), &key())),
        "{report:#}"
    );
}

#[test]
fn large_user_data_travels_as_gzip_base64() {
    let big_file: String = (0..1500)
        .map(|i| format!("      line {i:05}: the quick brown fox jumps over the lazy dog\n"))
        .collect();
    let user_data = format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/big.txt\n    content: |\n{big_file}runcmd:\n  - [wc, -l, /etc/big.txt]\n"
    );
    let (report, _, info) = launch("judge-big-1", Some(user_data.as_bytes()), &key());
    assert_eq!(info.encoding(Field::UserData), Some(Encoding::GzipBase64));
    assert_eq!(info.encoding(Field::Metadata), Some(Encoding::Base64));
    assert_eq!(
        report["cloud_config"],
        to_json(&plus_key(&yaml(&user_data), &key()))
    );
}

#[test]
fn extra_metadata_and_vendor_data_arrive() {
    let network: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(
        "network:\n  version: 2\n  ethernets:\n    nics:\n      match: {name: ens*}\n      dhcp4: true\n",
    )
    .expect("network YAML");
    let metadata = Metadata::for_vm("judge-meta-1").extra(network);
    let injected = inject_key(Some(NO_KEYS.as_bytes()), &key()).expect("injects");
    let vendor = b"#cloud-config\nntp:\n  enabled: true\n";
    let info = encode(&metadata, injected.bytes(), Some(vendor)).expect("encodes");
    let report = judge(&info);
    assert_common(&report, "judge-meta-1", injected.bytes());
    // The datasource files the network section under `config`.
    let network = &report["metadata"]["network"]["config"];
    assert_eq!(network["version"], 2, "{report:#}");
    assert_eq!(network["ethernets"]["nics"]["dhcp4"], true, "{report:#}");
    assert_eq!(network["ethernets"]["nics"]["match"]["name"], "ens*");
    assert_eq!(
        report["vendor_cloud_config"],
        serde_json::json!({ "ntp": { "enabled": true } }),
        "{report:#}"
    );
}
