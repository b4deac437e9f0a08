//! Black-box tests of the `vmw` binary against a real vcsim per test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Run, Running, bed, bed_with, vmw_command};
use serde_json::Value;
use vmw_testbed::VcsimOptions;

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_list_ip_power_and_delete() {
    let b = bed().await;
    let launched = b
        .vmw(&[
            "launch",
            "--release",
            "jammy",
            "--count",
            "2",
            "--wait",
            "ip",
            "--json",
        ])
        .await;
    let doc = launched.ok().json();
    let list = doc.as_array().unwrap();
    assert_eq!(list.len(), 2, "{doc}");
    for o in list {
        assert!(o["name"].as_str().unwrap().starts_with("tester-"), "{o}");
        assert_eq!(o["ip"], "127.0.0.1", "{o}");
        assert_eq!(o["image"], "TEMPLATE-cloud-init-jammy");
    }
    let vms = names(&doc);
    assert_eq!(b.vms().await, vms);

    let listed = b.vmw(&["list", "--json"]).await.ok().json();
    assert_eq!(names(&listed), vms, "{listed}");
    for o in listed.as_array().unwrap() {
        assert_eq!(o["kind"], "instance");
        assert_eq!(o["power_state"], "on");
        assert!(o["tag"].as_str().unwrap().starts_with("tester-"));
    }
    let table = b.vmw(&["list"]).await;
    table.ok();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);
    assert!(table.stdout.contains(&vms[0]));

    let ip = b.vmw(&["ip", &vms[0]]).await;
    assert_eq!(ip.ok().stdout, "127.0.0.1\n");
    let ip = b.vmw(&["ip", &vms[0], "--json"]).await.ok().json();
    assert_eq!(ip["ip"], "127.0.0.1");

    b.vmw(&["stop", &vms[0]]).await.ok();
    b.vmw(&["stop", &vms[0]]).await.ok(); // already off is fine
    let listed = b.vmw(&["list", "--json"]).await.ok().json();
    assert_eq!(listed[0]["power_state"], "off", "{listed}");
    let off = b.vmw(&["ip", &vms[0]]).await;
    off.expect_code(1);
    assert!(
        off.stderr.contains("hint: start it with `vmw start"),
        "{}",
        off.stderr
    );
    b.vmw(&["start", &vms[0]]).await.ok();
    let restarted = b
        .vmw(&["restart", &vms[0], "--wait", "ip", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(restarted[0]["result"], "restarted", "{restarted}");
    // The library's steps, announced in order; the address on stdout.
    let restarted = b.vmw(&["restart", &vms[0], "--wait", "ip"]).await;
    let restarted = restarted.ok();
    assert_eq!(restarted.stdout, format!("{} 127.0.0.1\n", vms[0]));
    let at = |step: &str| {
        restarted
            .stderr
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} in {}", restarted.stderr))
    };
    assert!(at("powering off") < at("powering on"));
    assert!(at("powering on") < at("waiting for an IP address"));
    b.vmw(&["stop", &vms[0]]).await.ok();
    let started = b.vmw(&["start", &vms[0], "--wait", "ip"]).await;
    let started = started.ok();
    assert_eq!(started.stdout, format!("{} 127.0.0.1\n", vms[0]));
    assert!(
        started.stderr.contains("waiting for an IP address"),
        "{}",
        started.stderr
    );

    let missing = b.vmw(&["start", "no-such-vm"]).await;
    missing.expect_code(1);
    assert!(missing.stderr.contains("hint:"), "{}", missing.stderr);

    let zero = b.vmw(&["delete", &vms[0], "--concurrency", "0"]).await;
    zero.expect_code(2);
    let deleted = b
        .vmw(&["delete", &vms[0], &vms[1], "--json", "--concurrency", "1"])
        .await
        .ok()
        .json();
    assert_eq!(deleted[0]["result"], "deleted", "{deleted}");
    assert!(b.vms().await.is_empty());
    let again = b.vmw(&["delete", &vms[0], "--json"]).await.ok().json();
    assert_eq!(again[0]["result"], "already gone", "{again}");
    let template = b.vmw(&["delete", "TEMPLATE-cloud-init-jammy"]).await;
    template.expect_code(1);
    assert!(template.stderr.contains("hint:"), "{}", template.stderr);
    assert_eq!(
        b.vmw(&["list", "--json"]).await.ok().json(),
        Value::Array(vec![])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_prints_names_and_ips_and_takes_user_data() {
    let b = bed().await;
    let user_data = b.home.join("user-data.yaml");
    std::fs::write(&user_data, "#cloud-config\nruncmd: [echo hi]\n").unwrap();
    let run = b
        .vmw(&[
            "--tag",
            "ud",
            "--no-timestamp",
            "launch",
            "--image",
            "TEMPLATE-cloud-init-focal",
            "--user-data",
            user_data.as_str(),
            "--cpus",
            "2",
            "--memory",
            "1024",
            "--extra-config",
            "disk.EnableUUID=TRUE",
            "--wait",
            "ip",
        ])
        .await;
    run.ok();
    assert_eq!(run.stdout, "ud-1 127.0.0.1\n", "{}", run.stderr);

    // --no-wait prints no address.
    let run = b
        .vmw(&[
            "--tag",
            "nw",
            "--no-timestamp",
            "launch",
            "--release",
            "focal",
            "--no-wait",
        ])
        .await;
    assert_eq!(run.ok().stdout, "nw-1 -\n");
    let json = b
        .vmw(&[
            "--tag",
            "nw2",
            "--no-timestamp",
            "launch",
            "--release",
            "focal",
            "--no-wait",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(json[0]["ip"], Value::Null, "{json}");

    // Options are checked before anything is made.
    let before = b.vms().await;
    let bad = b
        .vmw(&[
            "launch",
            "--release",
            "focal",
            "--extra-config",
            "guestinfo.userdata=x",
        ])
        .await;
    bad.expect_code(2);
    let missing = b
        .vmw(&[
            "launch",
            "--release",
            "focal",
            "--user-data",
            "/nonexistent/ud",
        ])
        .await;
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("/nonexistent/ud"),
        "{}",
        missing.stderr
    );
    let unknown = b.vmw(&["launch", "--release", "hirsute"]).await;
    unknown.expect_code(2);
    assert!(
        unknown.stderr.contains("focal, jammy"),
        "{}",
        unknown.stderr
    );
    assert!(unknown.stderr.contains("hint:"), "{}", unknown.stderr);
    assert_eq!(b.vms().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_images_and_launch_from_an_image() {
    let b = bed().await;
    let run = b
        .vmw(&[
            "--tag",
            "snap",
            "--no-timestamp",
            "launch",
            "--release",
            "jammy",
            "--wait",
            "ip",
        ])
        .await;
    run.ok();
    let image = b.vmw(&["snapshot", "snap-1", "--no-clean"]).await;
    assert_eq!(image.ok().stdout, "snap-1-image\n", "{}", image.stderr);

    let images = b
        .vmw(&["image", "list", "--all-tags", "--json"])
        .await
        .ok()
        .json();
    let kinds: Vec<(String, String)> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().to_owned(),
                o["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("TEMPLATE-cloud-init-jammy".into(), "template".into())),
        "{images}"
    );
    assert!(
        kinds.contains(&("snap-1-image".into(), "image".into())),
        "{images}"
    );
    let human = b.vmw(&["image", "list", "--all-tags"]).await;
    assert!(human.ok().stdout.contains("snap-1-image"));

    let from_image = b
        .vmw(&[
            "--tag",
            "fromimg",
            "--no-timestamp",
            "launch",
            "--image",
            "snap-1-image",
            "--linked",
            "--wait",
            "ip",
            "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(from_image[0]["name"], "fromimg-1");
    assert_eq!(from_image[0]["image"], "snap-1-image");

    let refused = b
        .vmw(&["image", "delete", "TEMPLATE-cloud-init-jammy"])
        .await;
    refused.expect_code(1);
    assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);
    b.vmw(&["delete", "fromimg-1"]).await.ok();
    b.vmw(&["image", "delete", "snap-1-image"]).await.ok();
    b.vmw(&["image", "delete", "snap-1-image"]).await.ok();
    assert_eq!(b.vms().await, ["snap-1"]);
    let snap_json = b
        .vmw(&["snapshot", "snap-1", "--no-clean", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(snap_json["image"], "snap-1-image");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_asks_and_refuses_off_terminal_without_yes() {
    let b = bed().await;
    b.vmw(&[
        "launch",
        "--release",
        "focal",
        "--count",
        "2",
        "--wait",
        "none",
    ])
    .await
    .ok();
    b.vmw(&[
        "--tag",
        "other",
        "launch",
        "--release",
        "focal",
        "--wait",
        "none",
    ])
    .await
    .ok();
    assert_eq!(b.vms().await.len(), 3);

    let refused = b.vmw(&["clean"]).await;
    refused.expect_code(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    assert_eq!(b.vms().await.len(), 3, "nothing deleted");

    let cleaned = b.vmw(&["clean", "--yes", "--json"]).await.ok().json();
    let removed = cleaned["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 2, "{cleaned}");
    let left = b.vms().await;
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with("other-"), "{left:?}");

    let nothing = b.vmw(&["clean", "--yes"]).await;
    assert_eq!(nothing.ok().stdout, "");
    let all = b.vmw(&["clean", "--all-tags", "--yes"]).await;
    assert_eq!(all.ok().stdout, format!("{}\n", left[0]));
    assert!(b.vms().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_shows_sources_govc_and_login() {
    let b = bed().await;
    let password = b.sim.config().password.expose().to_owned();
    let doc = b.vmw(&["config", "check", "--json"]).await.ok().json();
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["config"]["file"], b.config.as_str());
    let values = doc["config"]["values"].as_array().unwrap();
    let server = values.iter().find(|v| v["key"] == "server").unwrap();
    assert_eq!(server["value"], b.sim.address());
    assert_eq!(server["origin"], b.config.as_str());
    let pw = values.iter().find(|v| v["key"] == "password").unwrap();
    assert_eq!(pw["value"], "<redacted>");
    assert_eq!(doc["govc"]["version"], "0.56.0");
    assert_eq!(doc["govc"]["found_by"], "VMW_GOVC");
    assert_eq!(doc["login"]["username"], "vmw");
    assert_eq!(doc["templates"], serde_json::json!(["focal", "jammy"]));
    assert_eq!(doc["ssh_key"]["generated"], true);
    assert!(b.home.join(".cache/vmw/ssh/id_ed25519.pub").is_file());

    let human = b.vmw(&["config", "check"]).await;
    human.ok();
    assert!(!human.stdout.contains(&password), "{}", human.stdout);
    assert!(!human.stderr.contains(&password));
    assert!(human.stdout.contains("<redacted>"), "{}", human.stdout);
    assert!(human.stdout.contains("login: ok"), "{}", human.stdout);

    // A value from the environment says so.
    let mut cmd = vmw_command(&b.home, &b.govc);
    let partial = b.dir.path().join("partial.toml");
    std::fs::write(
        &partial,
        vmw_testbed::config_toml(&b.sim.config()).replace("datastore = \"LocalDS_0\"\n", ""),
    )
    .unwrap();
    cmd.arg("--config")
        .arg(&partial)
        .args(["config", "check", "--json"])
        .env("GOVC_DATASTORE", "LocalDS_0");
    let doc = Run::from_output(cmd.output().await.unwrap()).ok().json();
    let ds = doc["config"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"] == "datastore")
        .unwrap()
        .clone();
    assert_eq!(ds["origin"], "environment variable GOVC_DATASTORE", "{ds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_names_the_user_and_the_vcenter() {
    let b = bed_with(VcsimOptions::new().credentials("alice", "right")).await;
    let mut config = b.sim.config();
    config.password = vmw_config::Secret::new("wrong");
    std::fs::write(&b.config, vmw_testbed::config_toml(&config)).unwrap();
    for args in [&["list"][..], &["config", "check"][..]] {
        let run = b.vmw(args).await;
        run.expect_code(1);
        assert!(!run.stderr.contains("wrong"), "{}", run.stderr);
        let hint = run
            .stderr
            .lines()
            .find(|l| l.starts_with("hint:"))
            .unwrap_or_else(|| panic!("no hint: {}", run.stderr));
        assert!(hint.contains("\"alice\""), "{hint}");
        assert!(hint.contains(b.sim.address()), "{hint}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_takes_credentials_from_the_server_url_and_never_shows_them() {
    let password = "p@ss:w/rd%x #1";
    let b = bed_with(VcsimOptions::new().credentials("alice@vsphere.local", password)).await;
    let url = b.sim.url().to_owned();
    let userinfo = url.split('@').next().unwrap().to_owned();
    let bare = format!("https://{}/sdk", b.sim.address());
    let config = b.sim.config();
    // The credentials come from the server URL alone.
    let write = |server: &str| {
        let config = vmw_config::VmwareConfig {
            server: server.to_owned(),
            username: String::new(),
            password: vmw_config::Secret::new(""),
            ..config.clone()
        };
        std::fs::write(&b.config, vmw_testbed::config_toml(&config)).unwrap();
    };
    let never_shown = |run: &Run| {
        for text in [&run.stdout, &run.stderr] {
            for secret in [password, "p%40ss", userinfo.as_str()] {
                assert!(!text.contains(secret), "{secret:?} shown:\n{text}");
            }
        }
    };

    write(&url);
    let run = b.vmw(&["config", "check", "--json"]).await;
    never_shown(&run);
    let doc = run.ok().json();
    assert_eq!(doc["ok"], true, "{doc}");
    let values = doc["config"]["values"].as_array().unwrap();
    let value = |key: &str| values.iter().find(|v| v["key"] == key).unwrap().clone();
    assert_eq!(value("server")["value"], bare.as_str());
    assert_eq!(value("username")["value"], "alice@vsphere.local");
    let from_url = format!("the URL in `server` ({})", b.config);
    assert_eq!(value("username")["origin"], from_url.as_str());
    assert_eq!(value("password")["origin"], from_url.as_str());
    assert_eq!(value("password")["value"], "<redacted>");
    assert_eq!(doc["login"]["server"], bare.as_str());
    assert_eq!(doc["login"]["username"], "alice@vsphere.local");

    let run = b.vmw(&["config", "check"]).await;
    never_shown(&run);
    assert!(run.ok().stdout.contains("login: ok"), "{}", run.stdout);

    // A wrong password inside the URL: refused, with a hint, never shown.
    write(&url.replacen("p%40ss", "wr0ng", 1));
    for args in [
        &["list"][..],
        &["config", "check"][..],
        &["config", "check", "--json"][..],
    ] {
        let run = b.vmw(args).await;
        run.expect_code(1);
        never_shown(&run);
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains("wr0ng"), "{text}");
        }
        assert!(run.stderr.contains(b.sim.address()), "{}", run.stderr);
    }

    // A password holding `/` without escaping: a config error that shows none of it.
    write(&format!("https://alice:se/cret@{}/sdk", b.sim.address()));
    let run = b.vmw(&["config", "check"]).await;
    run.expect_code(2);
    assert!(!run.stdout.contains("se/cret") && !run.stderr.contains("se/cret"));
    assert!(run.stderr.contains("%2F"), "{}", run.stderr);
}

#[tokio::test]
async fn config_and_govc_errors_have_hints() {
    let home = tempfile::tempdir().unwrap();
    let home = camino::Utf8Path::from_path(home.path()).unwrap().to_owned();
    let govc = vmw_testbed::tools::locate(vmw_testbed::Tool::Govc).unwrap();

    // No config anywhere: exit 2, the paths tried and a template.
    let mut cmd = vmw_command(&home, &govc);
    cmd.args(["list"]);
    let run = Run::from_output(cmd.output().await.unwrap());
    run.expect_code(2);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{home}/.config/pycloudlib.toml")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("GOVC_URL"), "{}", run.stderr);
    assert!(run.stderr.contains("[vmware]"), "{}", run.stderr);
    assert!(run.stderr.contains("server = "), "{}", run.stderr);

    // A named file that does not exist.
    let mut cmd = vmw_command(&home, &govc);
    cmd.args([
        "--config",
        "/nonexistent/pycloudlib.toml",
        "config",
        "check",
    ]);
    let run = Run::from_output(cmd.output().await.unwrap());
    run.expect_code(2);
    assert!(
        run.stderr.contains("/nonexistent/pycloudlib.toml"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);

    // A broken file: file:line:column.
    let bad = home.join("bad.toml");
    std::fs::write(&bad, "[vmware]\nserver = \n").unwrap();
    let mut cmd = vmw_command(&home, &govc);
    cmd.args(["--config", bad.as_str(), "list"]);
    let run = Run::from_output(cmd.output().await.unwrap());
    run.expect_code(2);
    assert!(run.stderr.contains(&format!("{bad}:2:")), "{}", run.stderr);

    // No govc: how to get it.
    let good = home.join("good.toml");
    std::fs::write(
        &good,
        "[vmware]\nserver = \"127.0.0.1:1\"\nusername = \"u\"\npassword = \"p\"\ndatacenter = \"DC0\"\ndatastore = \"LocalDS_0\"\nfolder = \"/DC0/vm\"\n",
    )
    .unwrap();
    for args in [&["list"][..], &["config", "check"][..]] {
        let mut cmd = vmw_command(&home, &govc);
        cmd.env("VMW_GOVC", "/nonexistent/govc")
            .args(["--config", good.as_str()])
            .args(args);
        let run = Run::from_output(cmd.output().await.unwrap());
        run.expect_code(1);
        assert!(run.stderr.contains("/nonexistent/govc"), "{}", run.stderr);
        assert!(run.stderr.contains("hint:"), "{}", run.stderr);
        assert!(run.stderr.contains("VMW_GOVC"), "{}", run.stderr);
    }

    // Nothing answers: the URL in the hint.
    let mut cmd = vmw_command(&home, &govc);
    cmd.args(["--config", good.as_str(), "list"]);
    let run = Run::from_output(cmd.output().await.unwrap());
    run.expect_code(1);
    assert!(
        run.stderr.contains("hint: nothing answers at 127.0.0.1:1"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_passphrase_protected_key_is_read_only_for_ssh() {
    let b = bed().await;
    let keys = b.home.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let private = keys.join("id_ed25519");
    vmw_testbed::sshd::keygen_with_passphrase(&private, "locked", "secret").unwrap();
    let mut config = b.sim.config();
    config.public_key_path = Some(format!("{private}.pub").into());
    config.private_key_path = Some(private.clone());
    vmw_testbed::write_config(&config, b.config.parent().unwrap()).unwrap();

    b.vmw(&["list"]).await.ok();
    let launched = b
        .vmw(&[
            "--tag",
            "locked",
            "--no-timestamp",
            "launch",
            "--release",
            "jammy",
            "--wait",
            "ip",
        ])
        .await;
    assert_eq!(launched.ok().stdout, "locked-1 127.0.0.1\n");
    b.vmw(&["--tag", "locked", "list"]).await.ok();

    // SSH needs the key: the error starts with the file and says why.
    let run = b
        .vmw(&["--tag", "locked", "exec", "locked-1", "--", "true"])
        .await;
    run.expect_code(1);
    assert!(
        run.stderr
            .starts_with(&format!("error: private key {private}: ")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("passphrase"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(run.stderr.contains("SSH agent"), "{}", run.stderr);
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let home = camino::Utf8Path::from_path(home.path()).unwrap().to_owned();
    let govc = vmw_testbed::tools::locate(vmw_testbed::Tool::Govc).unwrap();
    for args in [
        &["launch"][..],
        &["launch", "--release", "a", "--image", "b"],
        &["launch", "--release", "a", "--wait", "later"],
        &["launch", "--release", "a", "--wait-timeout", "soon"],
        &["launch", "--release", "a", "--count", "0"],
        &["launch", "--release", "a", "--no-wait", "--wait", "ip"],
        &["exec", "vm"],
        &["start"],
        &["frobnicate"],
        &["--tag", "Bad_Tag", "list"],
    ] {
        let mut cmd = vmw_command(&home, &govc);
        cmd.args(args);
        let run = Run::from_output(cmd.output().await.unwrap());
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    let mut cmd = vmw_command(&home, &govc);
    cmd.arg("--help");
    let run = Run::from_output(cmd.output().await.unwrap());
    run.ok();
    assert!(run.stdout.contains("Exit status"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_launch_rolls_back_and_exits_130() {
    let b = bed_with(VcsimOptions::new().method_delay("CloneVM_Task", 3000)).await;
    let mut run = Running::spawn(b.command(&[
        "launch",
        "--release",
        "jammy",
        "--count",
        "2",
        "--wait",
        "ip",
    ]));
    run.wait_for("cloning").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    run.signal("INT");
    let (status, seen, rest) = run.finish().await;
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    assert!(b.vms().await.is_empty(), "{:?}\n{rest}", b.vms().await);
    // The delayed clones were awaited: nothing shows up later either.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(b.vms().await.is_empty(), "{:?}\n{rest}", b.vms().await);
}

/// The SSH commands against a real sshd (the guest agent reports
/// 127.0.0.1 for every VM). A machine where the SSH test peer cannot run
/// fails this test: `cargo xtask tools` installs what it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_ssh_push_pull_and_a_cleaned_snapshot_over_ssh() {
    let sshd = vmw_testbed::Sshd::start().unwrap();
    let b = bed().await;
    b.vmw(&["config", "check"]).await.ok();
    let key = std::fs::read_to_string(b.home.join(".cache/vmw/ssh/id_ed25519.pub")).unwrap();
    sshd.authorize(&key).unwrap();
    let port = sshd.port().to_string();
    let user = sshd.user();
    let ssh_args = ["--ssh-user", user.as_str(), "--ssh-port", port.as_str()];
    let with_ssh = |args: &[&str]| -> Vec<String> {
        ssh_args
            .iter()
            .chain(args)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let run = |args: Vec<String>| {
        let b = &b;
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            b.vmw(&refs).await
        }
    };

    let launched = run(with_ssh(&[
        "--tag",
        "ssh",
        "--no-timestamp",
        "launch",
        "--release",
        "jammy",
        "--wait-timeout",
        "60s",
    ]))
    .await;
    assert_eq!(
        launched.ok().stdout,
        "ssh-1 127.0.0.1\n",
        "{}",
        launched.stderr
    );
    assert!(
        sshd.cloud_init_calls().iter().any(|c| c.contains("status")),
        "{:?}",
        sshd.cloud_init_calls()
    );

    let status = run(with_ssh(&[
        "exec",
        "ssh-1",
        "--",
        "cloud-init status --long",
    ]))
    .await;
    assert!(
        status.ok().stdout.contains("status: done"),
        "{}",
        status.stdout
    );
    let argv = run(with_ssh(&[
        "exec", "ssh-1", "--", "printf", "%s", "a b 'c'",
    ]))
    .await;
    // Streamed byte for byte: printf wrote no newline.
    assert_eq!(argv.ok().stdout, "a b 'c'");
    let failing = run(with_ssh(&["exec", "ssh-1", "--", "echo oops >&2; exit 3"])).await;
    failing.expect_code(3);
    assert_eq!(failing.stderr, "oops\n");
    let json = run(with_ssh(&[
        "exec",
        "ssh-1",
        "--json",
        "--",
        "echo out; exit 4",
    ]))
    .await;
    json.expect_code(4);
    let doc = json.json();
    assert_eq!(doc["exit_status"], 4);
    assert_eq!(doc["stdout"], "out");

    let local = b.home.join("payload.txt");
    std::fs::write(&local, "payload ✓\n").unwrap();
    let remote = format!("{}/payload.txt", sshd.dir());
    run(with_ssh(&["push", "ssh-1", local.as_str(), &remote]))
        .await
        .ok();
    let back = b.home.join("back.txt");
    run(with_ssh(&["pull", "ssh-1", &remote, back.as_str()]))
        .await
        .ok();
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "payload ✓\n");

    // openssh-server brings the ssh client along.
    let ssh = run(with_ssh(&["ssh", "ssh-1", "--", "echo", "via-system-ssh"])).await;
    assert_eq!(ssh.ok().stdout, "via-system-ssh\n", "{}", ssh.stderr);

    // A restart waits for a new boot id; the simulated guest (this machine)
    // keeps its own, so the restart must time out rather than pass.
    let restart = run(with_ssh(&["restart", "ssh-1", "--wait-timeout", "3s"])).await;
    restart.expect_code(1);
    assert!(restart.stderr.contains("new boot id"), "{}", restart.stderr);

    let image = run(with_ssh(&["snapshot", "ssh-1"])).await;
    assert_eq!(image.ok().stdout, "ssh-1-image\n", "{}", image.stderr);
    assert!(
        sshd.cloud_init_calls()
            .iter()
            .any(|c| c.contains("clean --logs")),
        "{:?}",
        sshd.cloud_init_calls()
    );
    assert_eq!(sshd.machine_id(), "");

    b.vmw(&["clean", "--tag", "ssh", "--no-timestamp", "--yes"])
        .await
        .ok();
    assert!(b.vms().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_import_and_check() {
    let b = bed().await;
    let dir = tempfile::tempdir().unwrap();
    let d = camino::Utf8Path::from_path(dir.path()).unwrap();
    let ova = vmw_testbed::ova::make_ova(d, "noble-server-cloudimg-amd64").unwrap();
    let spec_file = d.join("spec.json");

    let imported = b
        .vmw(&[
            "image",
            "import",
            ova.as_str(),
            "--release",
            "noble",
            "--network",
            "VM Network",
            "--save-spec",
            spec_file.as_str(),
            "--json",
        ])
        .await;
    let doc = imported.ok().json();
    assert_eq!(doc["name"], "TEMPLATE-cloud-init-noble");
    assert_eq!(doc["check"]["ok"], true, "{doc}");
    assert_eq!(doc["spec"]["DiskProvisioning"], "thin");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&spec_file).unwrap()).unwrap();
    assert_eq!(saved["InjectOvfEnv"], false);
    assert_eq!(saved["Name"], "TEMPLATE-cloud-init-noble");

    // Importing again without --replace is refused, with a hint.
    let again = b
        .vmw(&[
            "image",
            "import",
            ova.as_str(),
            "--release",
            "noble",
            "--network",
            "VM Network",
        ])
        .await;
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("replace"), "{}", again.stderr);

    // Every template passes; then one violates a requirement.
    let all = b.vmw(&["image", "check", "--all", "--json"]).await;
    let reports = all.ok().json();
    assert_eq!(reports.as_array().unwrap().len(), 3, "{reports}");
    b.vmw(&["start", "TEMPLATE-cloud-init-focal"]).await.ok();
    let one = b
        .vmw(&["image", "check", "TEMPLATE-cloud-init-focal"])
        .await;
    one.expect_code(1);
    assert!(one.stdout.contains("FAIL 2. powered off"), "{}", one.stdout);
    assert!(one.stdout.contains("fix: power it off"), "{}", one.stdout);
    assert!(
        one.stdout.contains("pass 1. a standard VM"),
        "{}",
        one.stdout
    );

    // Nothing named: a usage error.
    b.vmw(&["image", "check"]).await.expect_code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_options_console_and_a_kept_failure() {
    use vmw_govc::GovcExt;
    let b = bed().await;
    let dir = tempfile::tempdir().unwrap();
    let files = camino::Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    std::fs::write(files.join("md.yaml"), "network:\n  version: 2\n").unwrap();
    std::fs::write(files.join("vendor"), "#cloud-config\npackages: [jq]\n").unwrap();
    let launched = b
        .vmw(&[
            "launch",
            "--release",
            "jammy",
            "--name",
            "opt-1",
            "--instance-type",
            "2c4g",
            "--disk-size",
            "20",
            "--network",
            "VM Network",
            "--metadata",
            files.join("md.yaml").as_str(),
            "--vendor-data",
            files.join("vendor").as_str(),
            "--wait",
            "none",
            "--console",
            "--json",
        ])
        .await;
    assert_eq!(launched.ok().json()[0]["name"], "opt-1");
    let mut info =
        vmw_govc::requests::VmInfo::new(vmw_govc::VmRef::parse("/DC0/vm/opt-1").unwrap());
    info.extra_config = true;
    let vm = b.sim.govc().exec(&info).await.unwrap().remove(0);
    assert_eq!((vm.cpus, vm.memory_mb), (2, 4096));
    assert_eq!(vm.disks[0].capacity_bytes, 20 << 30);
    assert!(vm.extra_config.contains_key("guestinfo.vendordata"));
    let metadata = vmw_userdata::decode(
        vm.extra_config["guestinfo.metadata"].as_bytes(),
        &vm.extra_config["guestinfo.metadata.encoding"],
    )
    .unwrap();
    assert!(
        String::from_utf8(metadata).unwrap().contains("network:"),
        "the metadata file is merged"
    );

    // The console log: empty, then what the guest wrote.
    let console = b.vmw(&["console", "opt-1"]).await;
    assert_eq!(console.ok().stdout, "");
    let file = vm.serial_ports[0].file.clone().unwrap();
    let (ds, path) = vmw_govc::parse::datastore_path(&file).unwrap();
    let url = b
        .sim
        .govc()
        .exec(&vmw_govc::requests::ObjectCollect::new(
            format!("/DC0/datastore/{ds}"),
            ["info.url"],
        ))
        .await
        .unwrap();
    let local = camino::Utf8PathBuf::from(url.str("info.url").unwrap()).join(path);
    std::fs::write(&local, "Booting Linux\n").unwrap();
    assert_eq!(
        b.vmw(&["console", "opt-1"]).await.ok().stdout,
        "Booting Linux\n"
    );
    let logs = b
        .vmw(&[
            "logs",
            "opt-1",
            "--dir",
            files.join("logs").as_str(),
            "--ssh-port",
            "1",
        ])
        .await;
    logs.ok();
    assert_eq!(
        std::fs::read_to_string(files.join("logs/opt-1/console.log")).unwrap(),
        "Booting Linux\n"
    );
    assert!(logs.stdout.contains("console.log"), "{}", logs.stdout);

    // SSH never answers: kept, with how to reach and delete it.
    let kept = b
        .vmw(&[
            "launch",
            "--release",
            "jammy",
            "--name",
            "broken-1",
            "--wait",
            "ssh",
            "--ssh-port",
            "1",
            "--ready-timeout",
            "2s",
            "--keep-on-failure",
            files.join("kept").as_str(),
        ])
        .await;
    kept.expect_code(1);
    assert!(
        kept.stderr.contains("kept for inspection"),
        "{}",
        kept.stderr
    );
    assert!(
        kept.stderr.contains("`vmw delete broken-1`"),
        "{}",
        kept.stderr
    );
    assert!(files.join("kept/broken-1").is_dir());
    assert!(b.vms().await.contains(&"broken-1".to_owned()));
    b.vmw(&["delete", "broken-1", "opt-1"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_from_the_command_line() {
    let b = bed().await;
    b.vmw(&[
        "launch",
        "--release",
        "jammy",
        "--name",
        "cp-1",
        "--wait",
        "none",
    ])
    .await
    .ok();
    let made = b
        .vmw(&["checkpoint", "create", "cp-1", "clean", "--json"])
        .await;
    let made = made.ok().json();
    assert_eq!(made["name"], "clean");
    let id = made["id"].as_str().unwrap().to_owned();
    let listed = b.vmw(&["checkpoint", "list", "cp-1"]).await;
    assert!(listed.ok().stdout.starts_with("NAME"), "{}", listed.stdout);
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    b.vmw(&["checkpoint", "revert", "cp-1", "clean"]).await.ok();
    let missing = b.vmw(&["checkpoint", "revert", "cp-1", "nope"]).await;
    missing.expect_code(1);
    assert!(missing.stderr.contains("clean"), "{}", missing.stderr);
    let gone = b
        .vmw(&["checkpoint", "delete", "cp-1", &id, "--json"])
        .await;
    assert_eq!(gone.ok().json()["result"], "deleted");
    assert_eq!(
        b.vmw(&["checkpoint", "list", "cp-1", "--json"])
            .await
            .ok()
            .json(),
        serde_json::json!([])
    );
    let template = b
        .vmw(&["checkpoint", "create", "TEMPLATE-cloud-init-jammy", "x"])
        .await;
    template.expect_code(1);
    assert!(template.stderr.contains("template"), "{}", template.stderr);
    b.vmw(&["delete", "cp-1"]).await.ok();
}
