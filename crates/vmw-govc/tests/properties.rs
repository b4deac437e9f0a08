//! No input panics vmw-govc: VM names, folders and inventory paths of any
//! text are accepted exactly when they name one VM (and read back the same),
//! every parser of govc's output takes any text and JSON shaped like govc's
//! answers with wrong types, missing fields and huge numbers, and the
//! classification of govc's stderr reads any text. Refusals name the value.

// Test helpers outside #[test] functions may panic too: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use vmw_govc::parse::{self, VmInfo};
use vmw_govc::requests::{self, Request};
use vmw_govc::{
    Command, ErrorKind, GLOB_CHARS, GovcError, MAX_VM_NAME_LEN, Version, VmRef, check_folder,
    check_vm_name, classify, govc_message, parse_version_output,
};

/// Text of every kind: any Unicode (control characters and multibyte
/// characters included), and the empty string.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[\\x00-\\x1f\\x7f ]{0,8}",
        Just(String::new()),
    ]
}

// ----- names and paths -----------------------------------------------------

/// The VM name rules, written independently of the library.
fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_VM_NAME_LEN
        && !name.contains(['/', '\\', '%'])
        && !name.contains(GLOB_CHARS)
        && !name.chars().any(char::is_control)
        && name.trim() == name
}

/// The folder rules, written independently of the library.
fn folder_ok(folder: &str) -> bool {
    let Some(rest) = folder.strip_prefix('/') else {
        return false;
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    !rest.is_empty()
        && rest.split('/').all(|e| !e.is_empty())
        && !folder.contains(GLOB_CHARS)
        && !folder.chars().any(char::is_control)
}

/// Text shaped like a VM name, often almost one.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._-][a-zA-Z0-9 ._é-]{0,20}[a-zA-Z0-9]",
        "[a-zA-Z0-9 ._*?/\\[\\]%\\\\\t-]{0,12}",
        "[a-zé😀]{75,85}",
        any_text(),
    ]
}

/// Text shaped like an inventory folder, often almost one.
fn folder_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "(/[a-zA-Z0-9 _é-]{1,8}){1,4}/?",
        "/?([a-zA-Z0-9*?\\[\\]_-]{0,4}/){0,4}[a-z]{0,3}",
        Just("/".to_owned()),
        any_text(),
    ]
}

// ----- govc's JSON answers -------------------------------------------------

/// A number that stands for one JSON cannot hold in a `Value`: replaced in
/// the text after serialisation.
const HUGE: &str = "\u{1}HUGE";

/// Any JSON leaf, including numbers at and past the limits of the types
/// govc's answers are read into.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e300f64..1.0e300).prop_map(Value::from),
        prop::sample::select(vec![
            json!(u64::MAX),
            json!(i64::MIN),
            json!(4_294_967_296u64),
            json!(-1),
            json!(0),
            json!(1.5),
            json!(HUGE),
        ]),
        any_text().prop_map(Value::from),
        prop::sample::select(vec![
            "poweredOn",
            "poweredOff",
            "suspended",
            "serialport-9000",
            "[ds] a/b.log",
            "vm-1",
            "snapshot-1",
            "",
            "_value",
        ])
        .prop_map(Value::from),
    ]
}

/// Keys that govc's answers use, so that a random object often looks right.
const KEYS: &[&str] = &[
    "key",
    "capacityInBytes",
    "yieldOnPoll",
    "backing",
    "fileName",
    "value",
    "_value",
    "name",
    "val",
    "op",
    "id",
    "createTime",
    "current",
    "childSnapshotList",
    "obj",
    "changeSet",
    "about",
    "virtualMachines",
    "config",
    "hardware",
    "device",
    "numCPU",
    "memoryMB",
    "extraConfig",
    "runtime",
    "powerState",
    "bootTime",
    "guest",
    "ipAddress",
    "self",
    "summary",
    "files",
    "vmPathName",
    "logDirectory",
    "template",
    "annotation",
];

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<String, Value>>(),
                )
            }),
        ]
    })
}

/// A change to one node of a JSON tree.
#[derive(Clone, Debug)]
enum Mutation {
    /// The node becomes this value (often of the wrong type).
    Set(Value),
    /// An object loses a key; an array an element.
    Drop(usize),
    /// An array's element is repeated.
    Repeat(usize),
}

fn mutation() -> impl Strategy<Value = (usize, Mutation)> {
    (
        any::<usize>(),
        prop_oneof![
            3 => json_value().prop_map(Mutation::Set),
            2 => any::<usize>().prop_map(Mutation::Drop),
            1 => any::<usize>().prop_map(Mutation::Repeat),
        ],
    )
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count_nodes).sum(),
        Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `m` to the node numbered `target` in pre-order; returns whether
/// it was reached.
fn apply(v: &mut Value, target: usize, seen: &mut usize, m: &Mutation) -> bool {
    if *seen == target {
        match (m, &mut *v) {
            (Mutation::Set(new), _) => *v = new.clone(),
            (Mutation::Drop(i), Value::Object(o)) if !o.is_empty() => {
                let key = o.keys().nth(i % o.len()).cloned().unwrap();
                o.remove(&key);
            }
            (Mutation::Drop(i), Value::Array(a)) if !a.is_empty() => {
                a.remove(i % a.len());
            }
            (Mutation::Repeat(i), Value::Array(a)) if !a.is_empty() => {
                let item = a[i % a.len()].clone();
                a.push(item);
            }
            _ => {}
        }
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|c| apply(c, target, seen, m)),
        Value::Object(o) => o.values_mut().any(|c| apply(c, target, seen, m)),
        _ => false,
    }
}

/// How the serialised text is spoiled after the mutations.
#[derive(Clone, Debug)]
enum Spoil {
    None,
    Cut(usize),
    Append(String),
    Huge(&'static str),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        4 => Just(Spoil::None),
        1 => any::<usize>().prop_map(Spoil::Cut),
        1 => prop_oneof![any_text(), Just("}".to_owned()), Just("\n{}".to_owned())].prop_map(Spoil::Append),
        1 => prop::sample::select(vec![
            "123456789012345678901234567890",
            "1e400",
            "-1e400",
            "-0",
            "18446744073709551616",
        ]).prop_map(Spoil::Huge),
    ]
}

/// `template` with the mutations applied, serialised and spoiled.
fn mutated(template: &Value, mutations: &[(usize, Mutation)], spoil: &Spoil) -> String {
    let mut v = template.clone();
    for (at, m) in mutations {
        let target = at % count_nodes(&v);
        apply(&mut v, target, &mut 0, m);
    }
    let mut text = if matches!(spoil, Spoil::Cut(_)) {
        serde_json::to_string_pretty(&v).unwrap()
    } else {
        serde_json::to_string(&v).unwrap()
    };
    match spoil {
        Spoil::None => {}
        Spoil::Cut(at) => {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.truncate(at);
        }
        Spoil::Append(tail) => text.push_str(tail),
        Spoil::Huge(number) => text = text.replace("\"\\u0001HUGE\"", number),
    }
    text = text.replace("\"\\u0001HUGE\"", "18446744073709551616");
    text
}

/// One of govc's answers, mutated: the template it came from and the text.
fn govc_json(template: Value) -> impl Strategy<Value = String> {
    (prop::collection::vec(mutation(), 0..4), spoil())
        .prop_map(move |(mutations, spoil)| mutated(&template, &mutations, &spoil))
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// `vm.info -json` as govc prints it, with a serial port and a disk added.
fn vm_info_template() -> Value {
    let mut v = fixture(include_str!("fixtures/vm_info.json"));
    let devices = v["virtualMachines"][0]["config"]["hardware"]["device"]
        .as_array_mut()
        .unwrap();
    devices.push(json!({"key": 9000, "yieldOnPoll": true,
        "backing": {"fileName": "[LocalDS_0] me-1/serial.log"}}));
    devices.push(json!({"key": 2001, "capacityInBytes": 10_737_418_240u64}));
    v
}

fn snapshot_template() -> Value {
    json!([{"createTime": "2026-11-24T23:25:02Z", "id": "snapshot-95", "name": "base",
        "current": false, "childSnapshotList": [
            {"id": "snapshot-97", "name": "two", "current": true, "childSnapshotList": null},
            {"id": "snapshot-98", "name": "three", "current": false,
             "childSnapshotList": [{"id": "snapshot-99", "name": "four"}]}]}])
}

fn marks_template() -> Value {
    json!({"kind": "enter", "obj": {"type": "VirtualMachine", "value": "vm-70"},
        "changeSet": [
            {"name": "name", "op": "assign", "val": "me-1"},
            {"name": "summary.vm", "op": "assign", "val": {"type": "VirtualMachine", "value": "vm-70"}},
            {"name": "config.annotation", "op": "assign", "val": "made by vmw (tag: me, kind: instance)"},
            {"name": "config.template", "op": "assign", "val": true},
            {"name": "runtime.powerState", "op": "assign", "val": "poweredOff"},
            {"name": "guest.ipAddress", "op": "assign", "val": {"_value": ["10.0.0.7"]}}]})
}

/// `object.collect -json -type m` output: several objects one after another.
fn marks_stream() -> impl Strategy<Value = String> {
    prop::collection::vec(govc_json(marks_template()), 0..4).prop_map(|docs| docs.join("\n"))
}

// ----- govc's text answers and stderr --------------------------------------

fn ip_like() -> impl Strategy<Value = String> {
    let item = prop_oneof![
        any::<IpAddr>().prop_map(|ip| ip.to_string()),
        Just("fe80::1%eth0".to_owned()),
        Just("::".to_owned()),
        Just(" ".to_owned()),
        Just(String::new()),
        "[0-9a-f:.]{0,16}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(
        (
            prop::collection::vec(item, 0..4),
            prop::sample::select(vec!["\n", "\r\n", ""]),
        ),
        0..4,
    )
    .prop_map(|lines| {
        lines
            .into_iter()
            .map(|(items, end)| format!("{}{end}", items.join(",")))
            .collect()
    })
}

fn version_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "v?[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,12}(-rc1|\\+dev|-)?",
        "[ v]{0,2}[0-9.+-]{0,12}[é ]{0,1}",
        any::<(u32, u32, u32)>().prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        any_text(),
    ]
}

/// What govc prints on stderr when it fails, and text close to it.
fn stderr_like() -> impl Strategy<Value = String> {
    let message = prop_oneof![
        Just("*types.InvalidPowerState".to_owned()),
        Just("ServerFaultCode: Login failure".to_owned()),
        Just("default resource pool resolves to multiple instances, please specify".to_owned()),
        Just("file [LocalDS_0] me-1/me-1.vmx already exists".to_owned()),
        Just(
            "Post \"https://h/sdk\": dial tcp 127.0.0.1:1: connect: connection refused".to_owned()
        ),
        Just(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .to_owned()
        ),
        Just("flag provided but not defined: -x".to_owned()),
        Just("EOF".to_owned()),
        Just("ManagedObjectNotFound".to_owned()),
        "(vm|object|host|datastore|) ?'[^'\n]{0,20}'? not found",
        "/[a-zé/ ]{0,12} not found",
        any_text(),
    ];
    let program =
        prop::sample::select(vec!["govc: ", "/usr/local/bin/govc: ", "", "gov c: ", ": "]);
    let usage = prop::sample::select(vec![
        "",
        "\nUsage: govc vm.info [OPTIONS]\n  -json",
        "Usage: ",
    ]);
    (
        prop::collection::vec((program, message), 0..3),
        usage,
        "[ \n]{0,2}",
    )
        .prop_map(|(lines, usage, end)| {
            let body: Vec<String> = lines.into_iter().map(|(p, m)| format!("{p}{m}")).collect();
            format!("{}{usage}{end}", body.join("\n"))
        })
}

fn vm() -> VmRef {
    VmRef::parse("/DC0/vm/ci/web-1").unwrap()
}

/// Runs every output-parsing request on `stdout`; none may panic, and a
/// parse error keeps at most 4 KiB of the output, cut at a character.
fn every_request_parses(stdout: &str) -> Result<(), TestCaseError> {
    fn check<R: Request>(r: &R, stdout: &str) -> Result<(), TestCaseError> {
        let command = r.command();
        if let Err(GovcError::Parse { output, reason, .. }) = r.parse(&command, stdout) {
            prop_assert!(output.len() <= 4096, "{} bytes kept", output.len());
            prop_assert!(stdout.starts_with(&output));
            prop_assert!(!reason.is_empty());
        }
        Ok(())
    }
    check(&requests::About, stdout)?;
    check(&requests::GovcVersion, stdout)?;
    check(&requests::VmIp::new(vm(), Duration::from_secs(1)), stdout)?;
    check(&requests::SerialAdd { vm: vm() }, stdout)?;
    check(&requests::SnapshotTree { vm: vm() }, stdout)?;
    check(&requests::VmInfo::new(vm()), stdout)?;
    check(&requests::Find::new("/DC0/vm"), stdout)?;
    check(&requests::ObjectCollect::new("/DC0/vm/x", ["name"]), stdout)?;
    check(
        &requests::VmMarks {
            folder: "/DC0/vm".to_owned(),
        },
        stdout,
    )?;
    check(
        &requests::ImportSpec {
            file: "x.ova".into(),
        },
        stdout,
    )?;
    check(
        &requests::DatastoreDownload {
            datastore: "ds".to_owned(),
            path: "a".to_owned(),
        },
        stdout,
    )?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn vm_names_are_accepted_exactly_when_valid(name in name_like()) {
        match check_vm_name(&name) {
            Ok(()) => prop_assert!(name_ok(&name), "{name:?} accepted"),
            Err(e) => {
                prop_assert!(!name_ok(&name), "{name:?} refused: {e}");
                prop_assert_eq!(&e.value, &name);
                prop_assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
            }
        }
    }

    #[test]
    fn folders_are_accepted_exactly_when_valid(folder in folder_like()) {
        match check_folder(&folder) {
            Ok(()) => prop_assert!(folder_ok(&folder), "{folder:?} accepted"),
            Err(e) => {
                prop_assert!(!folder_ok(&folder), "{folder:?} refused: {e}");
                prop_assert!(e.to_string().contains(&format!("{folder:?}")), "{e}");
            }
        }
    }

    #[test]
    fn a_name_in_a_folder_reads_back_as_a_path(folder in folder_like(), name in name_like()) {
        match VmRef::in_folder(&folder, &name) {
            Ok(r) => {
                prop_assert!(folder_ok(&folder) && name_ok(&name));
                prop_assert_eq!(r.name(), name.as_str());
                prop_assert_eq!(r.folder(), folder.strip_suffix('/').unwrap_or(&folder));
                prop_assert_eq!(VmRef::parse(r.as_str()).unwrap(), r.clone());
                prop_assert_eq!(VmRef::resolve(&folder, &name).unwrap(), r.clone());
                prop_assert_eq!(r.sibling(&name).unwrap(), r);
            }
            Err(e) => {
                prop_assert!(!(folder_ok(&folder) && name_ok(&name)), "{e}");
                prop_assert!(e.value == folder || e.value == name, "{e}");
            }
        }
    }

    #[test]
    fn any_path_parses_to_one_vm_or_is_refused(
        path in prop_oneof![
            any_text(),
            (folder_like(), name_like()).prop_map(|(f, n)| format!("{f}/{n}")),
            "/[a-zA-Z0-9 /*?é-]{0,20}",
        ],
        folder in folder_like(),
    ) {
        match VmRef::parse(&path) {
            Ok(r) => {
                prop_assert_eq!(r.as_str(), path.as_str());
                prop_assert!(name_ok(r.name()), "{r:?}");
                prop_assert!(folder_ok(r.folder()), "{r:?}");
                prop_assert_eq!(VmRef::in_folder(r.folder(), r.name()).unwrap(), r.clone());
                prop_assert_eq!(path.parse::<VmRef>().unwrap(), r);
            }
            Err(e) => {
                prop_assert_eq!(e.what, "VM path");
                prop_assert!(e.to_string().contains(&format!("{path:?}")), "{e}");
            }
        }
        let resolved = VmRef::resolve(&folder, &path);
        if path.starts_with('/') {
            prop_assert_eq!(resolved, VmRef::parse(&path));
        } else {
            prop_assert_eq!(resolved, VmRef::in_folder(&folder, &path));
        }
    }

    #[test]
    fn extra_config_keys_are_one_line_without_equals(key in prop_oneof![any_text(), "[a-z.=\r\n]{0,6}"]) {
        let ok = !key.is_empty() && !key.contains(['=', '\n', '\r']);
        prop_assert_eq!(requests::check_extra_config_key(&key).is_ok(), ok);
    }

    #[test]
    fn text_outputs_parse_without_panicking(text in prop_oneof![any_text(), ip_like()]) {
        for line in parse::lines(&text) {
            prop_assert!(!line.is_empty() && line.trim() == line);
        }
        match parse::ip_list(&text) {
            Ok(ips) => {
                let items = text
                    .lines()
                    .flat_map(|l| l.split(','))
                    .filter(|i| !i.trim().is_empty())
                    .count();
                prop_assert_eq!(ips.len(), items);
                for ip in &ips {
                    prop_assert_eq!(ip.to_string().parse::<IpAddr>().unwrap(), *ip);
                    let _ = parse::is_link_local_v6(ip);
                }
            }
            Err(e) => prop_assert!(e.contains("is not an IP address"), "{e}"),
        }
        if let Some((ds, path)) = parse::datastore_path(&text) {
            prop_assert!(!ds.is_empty() && !path.is_empty());
            prop_assert!(text.starts_with(&format!("[{ds}]")), "{text:?}");
            prop_assert!(text.ends_with(path));
        }
        every_request_parses(&text)?;
    }

    #[test]
    fn versions_parse_back(text in version_like()) {
        if let Ok(v) = text.parse::<Version>() {
            prop_assert_eq!(v.to_string().parse::<Version>().unwrap(), v);
        }
        if !text.contains(['\n', '\r']) {
            for output in [format!("govc {text}\n"), format!("\n  govc {text}")] {
                prop_assert_eq!(parse_version_output(&output), text.parse::<Version>().ok());
            }
        }
        let _ = parse_version_output(&text);
        every_request_parses(&format!("govc {text}"))?;
    }

    #[test]
    fn stderr_of_any_text_is_classified(stderr in prop_oneof![any_text(), stderr_like()]) {
        let kind = classify(&stderr);
        let _ = govc_message(&stderr);
        let e = GovcError::failed(Command::new("vm.info").arg("/DC0/vm/x"), Some(1), stderr.clone());
        prop_assert_eq!(e.kind(), kind);
        prop_assert_eq!(e.stderr(), Some(stderr.as_str()));
        prop_assert!(!e.to_string().is_empty());
        let _ = e.may_have_reached_server();
        match e.not_found_path() {
            Some((object, path)) => {
                prop_assert_eq!(kind, ErrorKind::NotFound);
                prop_assert!(!object.is_empty());
                prop_assert!(e.is_vm_not_found(&path) == (object == "vm"));
            }
            None => prop_assert_ne!(kind, ErrorKind::NotFound),
        }
    }

    #[test]
    fn not_found_names_the_path(
        object in "vm|host|datastore|network",
        path in "/[A-Za-z0-9_./-]{0,30}",
        program in prop::sample::select(vec!["govc", "/usr/bin/govc"]),
    ) {
        let e = GovcError::failed(
            Command::new("vm.info"),
            Some(1),
            format!("{program}: {object} '{path}' not found\n"),
        );
        prop_assert_eq!(govc_message(e.stderr().unwrap()), format!("{object} '{path}' not found"));
        prop_assert_eq!(e.kind(), ErrorKind::NotFound);
        prop_assert_eq!(e.not_found_path(), Some((object.clone(), path.clone())));
        prop_assert_eq!(e.is_vm_not_found(&path), object == "vm");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn vm_info_of_any_shape_parses_or_explains(text in prop_oneof![
        4 => govc_json(vm_info_template()),
        1 => govc_json(fixture(include_str!("fixtures/vm_info_none.json"))),
        1 => json_value().prop_map(|v| v.to_string()),
    ]) {
        match parse::vm_info(&text) {
            Ok(vms) => {
                for vm in &vms {
                    prop_assert!(vm.serial_ports.iter().all(|p| p.name.starts_with("serialport-")));
                    prop_assert!(vm.ip_address.as_deref() != Some(""));
                }
            }
            Err(e) => prop_assert!(e.starts_with("invalid vm.info JSON"), "{e}"),
        }
        every_request_parses(&text)?;
    }

    #[test]
    fn other_json_answers_of_any_shape_parse_or_explain(
        about in govc_json(fixture(include_str!("fixtures/about.json"))),
        snapshots in govc_json(snapshot_template()),
        collected in prop_oneof![
            govc_json(fixture(include_str!("fixtures/object_collect.json"))),
            govc_json(fixture(include_str!("fixtures/object_collect_unset.json"))),
        ],
        marks in marks_stream(),
        spec in govc_json(fixture(include_str!("fixtures/import_spec.json"))),
    ) {
        if let Err(e) = parse::about(&about) {
            prop_assert!(e.starts_with("invalid about JSON"), "{e}");
        }
        if let Ok(all) = parse::snapshot_tree(&snapshots) {
            for (i, s) in all.iter().enumerate() {
                if let Some(parent) = &s.parent {
                    prop_assert!(all[..i].iter().any(|p| &p.id == parent), "{all:?}");
                }
            }
        }
        if let Ok(p) = parse::properties(&collected) {
            for name in p.names() {
                prop_assert!(p.get(name).is_some());
            }
            let _ = (p.power_state(), p.str("guest.ipAddress"), p.bool("config.template"));
            if let Some(vm) = VmInfo::from_marks("vm-1".to_owned(), &p) {
                prop_assert_eq!(vm.moref, "vm-1");
            }
        }
        if let Ok(vms) = parse::vm_marks(&marks) {
            for (i, vm) in vms.iter().enumerate() {
                prop_assert!(!vm.moref.is_empty());
                prop_assert!(vms[..i].iter().all(|v| v.moref != vm.moref), "{vms:?}");
            }
        }
        if let Ok(options) = parse::import_options(&spec) {
            let written = serde_json::to_string(&options).unwrap();
            let back = parse::import_options(&written).unwrap();
            // Everything vmw reads comes back exactly; the unknown keys come
            // back all, though a float among their values may move in its
            // last digit (serde_json reads floats fast, not exactly).
            let (mut exact, mut again) = (options.clone(), back.clone());
            exact.other = Default::default();
            again.other = Default::default();
            prop_assert_eq!(again, exact);
            prop_assert_eq!(
                back.other.keys().collect::<Vec<_>>(),
                options.other.keys().collect::<Vec<_>>()
            );
        }
        for text in [&about, &snapshots, &collected, &marks, &spec] {
            every_request_parses(text)?;
        }
    }

    #[test]
    fn long_multibyte_output_is_cut_at_a_character(
        fill in "[aé€😀]{1,3}",
        repeat in 1000usize..2100,
    ) {
        let text = fill.repeat(repeat);
        every_request_parses(&text)?;
    }
}
