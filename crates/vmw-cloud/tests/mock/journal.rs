//! The journal and `recover()`: every rule by which a killed run's record
//! resolves (nothing there, its own marker, an unmarked VM made after or
//! before the record, another marker, a template), records that are left
//! alone (live, another vCenter's, unreadable, a failed lookup), a launch
//! recording before its clone and closing after, and the listing and
//! removal of unmarked VMs named like vmw's.

use std::fs::File;

use crate::*;

const LAUNCH: &str = "00000000000000aa";

/// A cloud tagged `me` on `govc`, recording in `dir/journal`.
fn journaled<G: Govc + 'static>(govc: G, dir: &tempfile::TempDir) -> (Cloud<G>, tempfile::TempDir) {
    let s = Settings {
        journal: Some(journal_dir(dir)),
        // A record younger than this whose path holds nothing is kept.
        clone_grace: Duration::from_secs(60),
        ..settings(4)
    };
    cloud_with(govc, config(), s)
}

fn journal_dir(dir: &tempfile::TempDir) -> camino::Utf8PathBuf {
    camino::Utf8Path::from_path(dir.path())
        .unwrap()
        .join("journal")
}

/// Writes the record a killed run would have left for a clone to `name`
/// (launch [`LAUNCH`], made at `created`), on `server`.
fn write_record(
    dir: &tempfile::TempDir,
    name: &str,
    created: &str,
    server: &str,
) -> std::path::PathBuf {
    let journal = journal_dir(dir);
    std::fs::create_dir_all(&journal).unwrap();
    let path = journal.join(format!("{LAUNCH}.json"));
    let record = serde_json::json!({
        "version": 1,
        "server": server,
        "folder": FOLDER,
        "vm": at(name),
        "launch": LAUNCH,
        "marker": marker("instance", LAUNCH),
        "source": format!("{FOLDER}/{IMAGE}"),
        "created": created,
        "pid": 999_999,
        "host": "gone",
    });
    std::fs::write(&path, record.to_string()).unwrap();
    path.into()
}

fn server() -> String {
    config().server_display()
}

const RECORDED: &str = "2026-11-05T10:00:00.000Z";

#[tokio::test(start_paused = true)]
async fn nothing_at_the_path_keeps_a_young_record_until_its_clone_shows() {
    let dir = tempfile::tempdir().unwrap();
    // Made a moment ago: vCenter may still be cloning.
    let young = write_record(&dir, "me-7", &journal_now(), &server());
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = journaled(mock, &dir);
    let r = cloud.recover().await.unwrap();
    assert_eq!(
        (r.nothing_there, r.pending.clone()),
        (0, refs(&["me-7"])),
        "{r:?}"
    );
    assert!(young.exists());
    assert_eq!(calls.len(), 1);
    // The clone shows up: the next look marks it.
    inv.add(&at("me-7"), &marker("instance", LAUNCH));
    let r = cloud.recover().await.unwrap();
    assert_eq!(r.marked, refs(&["me-7"]), "{r:?}");
    assert!(!young.exists());
}

#[tokio::test(start_paused = true)]
async fn nothing_at_the_path_drops_an_old_record_after_one_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let record = write_record(&dir, "me-7", RECORDED, &server());
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = journaled(mock, &dir);
    let r = cloud.recover().await.unwrap();
    assert_eq!(
        (r.nothing_there, r.marked.len(), r.live),
        (1, 0, 0),
        "{r:?}"
    );
    assert!(!record.exists());
    let names: Vec<String> = calls.all().into_iter().map(|a| a[0].clone()).collect();
    assert_eq!(names, ["vm.info"], "one lookup of the path");
    // Nothing left to resolve: no govc call at all.
    let n = calls.len();
    let r = cloud.recover().await.unwrap();
    assert_eq!(r.nothing_there, 0);
    assert_eq!(calls.len(), n);
}

#[tokio::test(start_paused = true)]
async fn the_records_own_marker_is_noted_as_interrupted_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let record = write_record(&dir, "me-3", RECORDED, &server());
    let inv = Inventory::default();
    inv.add(&at("me-3"), &marker("instance", LAUNCH));
    let (mock, _calls) = healthy(&inv);
    let (cloud, _keys) = journaled(mock, &dir);
    // The first list of a cloud resolves the journal first.
    let listed = cloud.list(&Scope::ThisTag).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].interrupted, "{listed:?}");
    assert_eq!(listed[0].launch.as_deref(), Some(LAUNCH));
    assert!(!record.exists());
    let note = inv.annotation(&at("me-3")).unwrap();
    let mut lines = note.lines();
    assert_eq!(lines.next(), Some(marker("instance", LAUNCH).as_str()));
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with(vmw_cloud::INTERRUPTED_NOTE),
        "{note}"
    );
    assert_eq!(cloud.sweep(&Scope::ThisTag).await.unwrap(), refs(&["me-3"]));
    assert!(inv.paths().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_unmarked_vm_made_after_the_record_is_the_killed_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_record(&dir, "me-4", RECORDED, &server());
    let inv = Inventory::default();
    inv.add(&at("me-4"), "");
    // vCenter's clock, a few seconds after the record (another offset).
    inv.set_created(&at("me-4"), "2026-11-05T11:00:04.5+01:00");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = journaled(mock, &dir);
    let r = cloud.recover().await.unwrap();
    assert_eq!(r.marked, refs(&["me-4"]), "{r:?}");
    let annotation = inv.annotation(&at("me-4")).unwrap();
    let m = parse_marker(&annotation).unwrap();
    assert_eq!((m.tag.as_str(), m.launch.as_deref()), ("me", Some(LAUNCH)));
    assert!(
        annotation.contains("process 999999 on gone"),
        "{annotation}"
    );
    // Looked up, looked up again right before, then marked.
    let names: Vec<String> = calls.all().into_iter().map(|a| a[0].clone()).collect();
    assert_eq!(names, ["vm.info", "vm.info", "vm.change"]);
    let listed = cloud.list(&Scope::ThisTag).await.unwrap();
    assert!(listed[0].interrupted);
}

#[tokio::test(start_paused = true)]
async fn a_vm_made_before_the_record_or_of_unknown_age_is_never_touched() {
    for created in [Some("2026-11-05T09:59:59.999Z"), None] {
        let dir = tempfile::tempdir().unwrap();
        let record = write_record(&dir, "me-5", RECORDED, &server());
        let inv = Inventory::default();
        inv.add(&at("me-5"), "");
        if let Some(c) = created {
            inv.set_created(&at("me-5"), c);
        }
        let (mock, calls) = healthy(&inv);
        let (cloud, _keys) = journaled(mock, &dir);
        let r = cloud.recover().await.unwrap();
        assert_eq!(r.foreign, refs(&["me-5"]), "{created:?}: {r:?}");
        assert!(r.marked.is_empty());
        assert_eq!(inv.annotation(&at("me-5")).unwrap(), "");
        assert!(calls.of("vm.change").is_empty());
        assert!(calls.of("vm.destroy").is_empty());
        assert!(!record.exists());
    }
}

#[tokio::test(start_paused = true)]
async fn another_marker_or_a_template_is_never_touched() {
    for (template, annotation) in [
        (false, marker("instance", "00000000000000bb")),
        (
            false,
            "made by vmw (tag: you, kind: instance, launch: 00000000000000aa)".to_owned(),
        ),
        (true, String::new()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_record(&dir, "me-6", RECORDED, &server());
        let inv = Inventory::default();
        if template {
            inv.add_template(&at("me-6"), &annotation);
        } else {
            inv.add(&at("me-6"), &annotation);
        }
        inv.set_created(&at("me-6"), "2026-11-05T10:00:01Z");
        let (mock, calls) = healthy(&inv);
        let (cloud, _keys) = journaled(mock, &dir);
        let r = cloud.recover().await.unwrap();
        assert_eq!(r.foreign, refs(&["me-6"]), "{annotation:?}: {r:?}");
        assert!(calls.of("vm.change").is_empty());
        assert_eq!(inv.annotation(&at("me-6")).unwrap(), annotation);
    }
}

#[tokio::test(start_paused = true)]
async fn live_records_and_other_vcenters_records_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let live = write_record(&dir, "me-8", RECORDED, &server());
    // Its writer still runs: the lock is held.
    let holder = File::open(&live).unwrap();
    holder.try_lock().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = write_record(&other_dir, "me-9", RECORDED, "vc.elsewhere");
    let elsewhere = journal_dir(&dir).join("00000000000000cc.json");
    std::fs::rename(&other, &elsewhere).unwrap();
    let inv = Inventory::default();
    inv.add(&at("me-8"), "");
    inv.set_created(&at("me-8"), "2026-11-05T10:00:01Z");
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = journaled(mock, &dir);
    let r = cloud.recover().await.unwrap();
    assert_eq!(r.live, 1, "{r:?}");
    assert!(r.marked.is_empty() && r.foreign.is_empty() && r.nothing_there == 0);
    assert!(live.exists() && elsewhere.exists());
    assert_eq!(calls.len(), 0, "{:?}", calls.all());
    // Once its writer is gone, the record resolves.
    drop(holder);
    let r = cloud.recover().await.unwrap();
    assert_eq!(r.marked, refs(&["me-8"]));
    assert!(!live.exists() && elsewhere.exists());
}

#[tokio::test(start_paused = true)]
async fn a_failed_lookup_keeps_the_record_and_bad_records_are_left() {
    let dir = tempfile::tempdir().unwrap();
    let record = write_record(&dir, "me-2", RECORDED, &server());
    let journal = journal_dir(&dir);
    std::fs::write(journal.join("garbage.json"), "{not json").unwrap();
    std::fs::write(journal.join(".00000000000000dd.json.tmp"), "{\"vers").unwrap();
    let (mock, _calls) = scripted(|c| fail(c, STDERR_OTHER));
    let (cloud, _keys) = journaled(mock, &dir);
    let r = cloud.recover().await.unwrap();
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert!(record.exists());
    assert!(journal.join("garbage.json").exists());
    // Half-written (its writer died before the clone was asked for).
    assert!(!journal.join(".00000000000000dd.json.tmp").exists());
}

#[tokio::test(start_paused = true)]
async fn a_launch_records_its_clone_before_asking_and_closes_after() {
    let dir = tempfile::tempdir().unwrap();
    let journal = journal_dir(&dir);
    let inv = Inventory::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mock, calls) = {
        let (inv, seen, journal) = (inv.clone(), seen.clone(), journal.clone());
        scripted(move |c| {
            if c.name() == "vm.clone" {
                // The record is on disk, locked, naming this clone.
                for entry in std::fs::read_dir(&journal).unwrap() {
                    let path = entry.unwrap().path();
                    let text = std::fs::read_to_string(&path).unwrap();
                    let locked = matches!(
                        File::open(&path).unwrap().try_lock(),
                        Err(std::fs::TryLockError::WouldBlock)
                    );
                    seen.lock().unwrap().push((text, locked));
                }
            }
            inv.happy(c)
        })
    };
    let (cloud, _keys) = journaled(mock, &dir);
    let instance = cloud
        .launch(&image(), &options("me-1", WaitStage::None))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (text, locked) = &seen[0];
    assert!(locked);
    let record: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(record["vm"], at("me-1"));
    assert_eq!(record["server"], server());
    assert_eq!(record["launch"], instance.launch_id().unwrap());
    assert_eq!(record["pid"], std::process::id());
    assert_eq!(std::fs::read_dir(&journal).unwrap().count(), 0);
    // A snapshot too.
    let n = calls.len();
    cloud.snapshot(&instance, false).await.unwrap();
    assert!(calls.since(n).iter().any(|a| a[0] == "vm.clone"));
    assert_eq!(std::fs::read_dir(&journal).unwrap().count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_be_written_fails_before_any_clone() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    std::fs::write(journal_dir(&dir), "").unwrap();
    let inv = Inventory::default();
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = journaled(mock, &dir);
    let err = cloud
        .launch(&image(), &options("me-1", WaitStage::None))
        .await
        .unwrap_err();
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(chain.contains("journal"), "{chain}");
    assert!(calls.of("vm.clone").is_empty(), "{:?}", calls.all());
    assert!(inv.paths().is_empty());
}

#[tokio::test(start_paused = true)]
async fn unmarked_vms_named_like_vmws_are_listed_and_removed_only_as_listed() {
    let inv = Inventory::default();
    let recent = journal_now();
    for (name, annotation, created) in [
        ("me-1", "", Some(recent.as_str())),
        ("me-2-image", "", Some(recent.as_str())),
        ("me-3", "", Some("2020-01-01T00:00:00Z")),
        ("me-4", "", None),
        (
            "me-5",
            marker("instance", LAUNCH).leak() as &str,
            Some(recent.as_str()),
        ),
        ("you-1", "", Some(recent.as_str())),
        ("build-server", "", Some(recent.as_str())),
    ] {
        inv.add(&at(name), annotation);
        if let Some(c) = created {
            inv.set_created(&at(name), c);
        }
    }
    let (mock, calls) = healthy(&inv);
    let (cloud, _keys) = new_cloud(mock);
    let found = cloud
        .unmarked(&Scope::ThisTag, Duration::from_secs(3600))
        .await
        .unwrap();
    let names: Vec<&str> = found.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["me-1", "me-2-image"]);
    let all = cloud
        .unmarked(&Scope::AllTags, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(calls.of("vm.destroy").is_empty());
    // Marked meanwhile: refused; the other goes.
    inv.set_annotation(&at("me-1"), &marker("instance", LAUNCH));
    let err = cloud.delete_unmarked(&found).await.unwrap_err();
    assert_eq!(err.removed, refs(&["me-2-image"]));
    assert_eq!(err.errors.len(), 1);
    assert!(inv.contains(&at("me-1")));
}

/// Now, as vCenter's `config.createDate` would say it.
fn journal_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Days to a civil date, enough for a test: via the `date` command.
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
