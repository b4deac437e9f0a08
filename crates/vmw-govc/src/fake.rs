//! A scripted govc for other crates' tests (feature `mock`): a small fake
//! vCenter inventory that answers the commands vmw sends like a healthy
//! vCenter would, a [`MockGovc`] whose every call is logged ([`Calls`]) and
//! then answered by a closure ([`scripted`]), and the answers a script
//! builds from ([`ok`], [`out`], [`fail`], [`not_found_at`], [`killed`],
//! ...).
//!
//! A test scripts the failures it is about and leaves the rest to
//! [`Inventory::happy`]:
//!
//! ```
//! use vmw_govc::fake::{Inventory, scripted, fail};
//!
//! let inv = Inventory::default();
//! inv.add("/DC0/vm/a", "");
//! let i = inv.clone();
//! let (govc, calls) = scripted(move |c| match c.name() {
//!     "vm.destroy" => fail(c, "govc: ServerFaultCode: denied"),
//!     _ => i.happy(c),
//! });
//! # let _ = (govc, calls);
//! ```
//!
//! Like mockall's mocks, the fake panics on what a test did not script: a
//! subcommand it does not know, or a command of a shape vmw never sends
//! (each such place says so under "Panics"). The panic fails the test that
//! made the call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Value, json};

use crate::{Command, GovcError, MockGovc, Output};

/// What a scripted call answers: govc's output or its error.
pub type Answer = Result<Output, GovcError>;

/// The resource pools `find -type=p` answers (the fixture of a vcsim with
/// one cluster and one standalone host).
pub const FIND_POOLS: &str = include_str!("../tests/fixtures/find_pools.txt");

/// govc's stderr when `vm.clone` targets a name that is taken.
pub const STDERR_DUPLICATE: &str = include_str!("../tests/fixtures/stderr_duplicate_name.txt");

/// One VM of the fake inventory.
#[derive(Clone, Debug)]
pub struct FakeVm {
    /// Its annotation (`config.annotation`).
    pub annotation: String,
    /// Whether it is a vSphere template.
    pub template: bool,
    /// Its managed object id (`vm-<n>`).
    pub moref: String,
    /// Its power state as vSphere names it (`poweredOn`, `poweredOff`).
    pub power: &'static str,
    /// When it can be seen: a clone still under way is invisible to lookups
    /// until then (but its name is taken).
    pub ready_at: Instant,
    /// Its `config.createDate` (RFC 3339), when set
    /// ([`Inventory::set_created`]).
    pub created: Option<String>,
}

impl FakeVm {
    /// Whether lookups see it yet.
    pub fn visible(&self) -> bool {
        Instant::now() >= self.ready_at
    }
}

#[derive(Debug, Default)]
struct InventoryState {
    vms: BTreeMap<String, FakeVm>,
    next_moref: u64,
    /// Snapshots by VM path: `(id, name)`, oldest first.
    snapshots: BTreeMap<String, Vec<(String, String)>>,
}

/// The VMs of the scripted vCenter, by inventory path. Clones share the
/// same inventory, so the mock's answers and the test see one state.
#[derive(Clone, Debug, Default)]
pub struct Inventory(Arc<Mutex<InventoryState>>);

impl Inventory {
    fn state(&self) -> MutexGuard<'_, InventoryState> {
        // A test that panicked while holding the lock has failed already;
        // the state is still worth reading.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a powered-off VM at `path`, visible now; returns its moref.
    pub fn add(&self, path: &str, annotation: &str) -> String {
        self.insert(path, annotation, false, Instant::now())
    }

    /// Adds a vSphere template at `path`, visible now.
    pub fn add_template(&self, path: &str, annotation: &str) {
        self.insert(path, annotation, true, Instant::now());
    }

    /// Adds (or replaces) a powered-off VM at `path` that becomes visible at
    /// `ready_at`; returns its moref.
    pub fn insert(
        &self,
        path: &str,
        annotation: &str,
        template: bool,
        ready_at: Instant,
    ) -> String {
        let mut st = self.state();
        st.next_moref += 1;
        let moref = format!("vm-{}", 100 + st.next_moref);
        st.vms.insert(
            path.to_owned(),
            FakeVm {
                annotation: annotation.to_owned(),
                template,
                moref: moref.clone(),
                power: "poweredOff",
                ready_at,
                created: None,
            },
        );
        moref
    }

    /// Sets the power state (as vSphere names it) of the VM at `path`;
    /// false when there is none.
    pub fn set_power(&self, path: &str, power: &'static str) -> bool {
        match self.state().vms.get_mut(path) {
            Some(vm) => {
                vm.power = power;
                true
            }
            None => false,
        }
    }

    /// The VM at `path`, if it can be seen.
    pub fn get(&self, path: &str) -> Option<FakeVm> {
        self.state().vms.get(path).filter(|v| v.visible()).cloned()
    }

    /// Whether a VM can be seen at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// The annotation of the VM at `path`, if it can be seen.
    pub fn annotation(&self, path: &str) -> Option<String> {
        self.get(path).map(|v| v.annotation)
    }

    /// Sets the annotation of the VM at `path` (seen yet or not); returns
    /// whether there was one.
    pub fn set_annotation(&self, path: &str, annotation: &str) -> bool {
        match self.state().vms.get_mut(path) {
            Some(vm) => {
                annotation.clone_into(&mut vm.annotation);
                true
            }
            None => false,
        }
    }

    /// Sets when vCenter made the VM at `path` (`config.createDate`,
    /// RFC 3339); returns whether there was one.
    pub fn set_created(&self, path: &str, created: &str) -> bool {
        match self.state().vms.get_mut(path) {
            Some(vm) => {
                vm.created = Some(created.to_owned());
                true
            }
            None => false,
        }
    }

    /// Removes the VM at `path` (seen yet or not); returns whether there was
    /// one.
    pub fn remove(&self, path: &str) -> bool {
        self.state().vms.remove(path).is_some()
    }

    /// The paths of the VMs that can be seen, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.state()
            .vms
            .iter()
            .filter(|(_, v)| v.visible())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `vm.clone`: the target (`-folder`/name) appears `takes` after the
    /// request (vCenter finishes it even when the client goes away),
    /// powered on with `-on=true`; a taken name is refused with govc's
    /// duplicate-name error. The source is not checked.
    ///
    /// # Panics
    ///
    /// On a `vm.clone` vmw never sends: without `-folder`, or without
    /// exactly one positional name, or with a path for a name.
    #[allow(clippy::panic, reason = "a mock fails the test on an unexpected call")]
    pub fn clone_vm(&self, c: &Command, takes: Duration) -> Answer {
        let Some(folder) = c.flag_value("folder") else {
            panic!("vm.clone without -folder: {c}")
        };
        let [name] = c.positional() else {
            panic!("vm.clone takes one positional name: {c}")
        };
        assert!(!name.contains('/'), "vm.clone of a path: {c}");
        let path = format!("{folder}/{name}");
        if self.state().vms.contains_key(&path) {
            return fail(c, STDERR_DUPLICATE);
        }
        let annotation = c.flag_value("annotation").unwrap_or_default();
        self.insert(&path, annotation, false, Instant::now() + takes);
        if c.flag_value("on") == Some("true")
            && let Some(vm) = self.state().vms.get_mut(&path)
        {
            vm.power = "poweredOn";
        }
        ok()
    }

    /// `vm.info -json` of `paths`: the VMs that can be seen, `null` when
    /// none.
    pub fn info_json(&self, paths: &[String]) -> String {
        let vms: Vec<Value> = paths
            .iter()
            .filter_map(|p| {
                let vm = self.get(p)?;
                Some(json!({
                    "name": p.rsplit('/').next().unwrap_or(p),
                    "self": {"type": "VirtualMachine", "value": vm.moref},
                    "config": {
                        "template": vm.template,
                        "annotation": vm.annotation,
                        "createDate": vm.created,
                        "uuid": format!("4200{}", vm.moref),
                        "guestId": "",
                        "hardware": {"numCPU": 1, "memoryMB": 1024},
                    },
                    "runtime": {"powerState": vm.power},
                    "guest": {},
                }))
            })
            .collect();
        let list = if vms.is_empty() {
            Value::Null
        } else {
            Value::Array(vms)
        };
        json!({ "virtualMachines": list }).to_string()
    }

    /// `object.collect -json -type m FOLDER` of the
    /// [`MARK_PROPERTIES`](crate::requests::MARK_PROPERTIES): the VMs that can
    /// be seen in `folder` and its subfolders, one JSON object each; a
    /// powered-on VM has the address `vm.ip` answers.
    pub fn marks_json(&self, folder: &str) -> String {
        let prefix = format!("{}/", folder.trim_end_matches('/'));
        self.paths()
            .iter()
            .filter(|p| p.starts_with(&prefix))
            .filter_map(|p| {
                let vm = self.get(p)?;
                let change = |name: &str, val: Value| json!({"name": name, "op": "assign", "val": val});
                Some(
                    json!({
                        "kind": "enter",
                        "obj": {"type": "VirtualMachine", "value": vm.moref},
                        "changeSet": [
                            change("name", json!(p.rsplit('/').next().unwrap_or(p))),
                            change("summary.vm", json!({"type": "VirtualMachine", "value": vm.moref})),
                            change("config.annotation", json!(vm.annotation)),
                            change("config.createDate", json!(vm.created)),
                            change("config.template", json!(vm.template)),
                            change("runtime.powerState", json!(vm.power)),
                            // A powered-on guest has the address `vm.ip` gives.
                            change(
                                "guest.ipAddress",
                                if vm.power == "poweredOn" { json!("10.0.0.10") } else { Value::Null },
                            ),
                        ],
                    })
                    .to_string(),
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `find`: VMs (`-type=m`) by root folder, `-maxdepth=1` or none,
    /// `-name` glob and `config.annotation` / `config.template` property
    /// filters; pools (`-type=p`) from [`FIND_POOLS`].
    ///
    /// # Panics
    ///
    /// On a `find` vmw never sends: another type, no root, another depth,
    /// another property filter, or a property without a value.
    #[allow(clippy::panic, reason = "a mock fails the test on an unexpected call")]
    pub fn find(&self, c: &Command) -> Answer {
        if c.flag_value("type") == Some("p") {
            return out(FIND_POOLS);
        }
        assert_eq!(c.flag_value("type"), Some("m"), "{c}");
        let Some((root, props)) = c.positional().split_first() else {
            panic!("find without a root: {c}")
        };
        let root = root.trim_end_matches('/');
        let props: Vec<(&str, &str)> = props
            .chunks(2)
            .map(|kv| match kv {
                [k, v] => (k.strip_prefix('-').unwrap_or(k), v.as_str()),
                _ => panic!("a find property without a value: {c}"),
            })
            .collect();
        let shallow = match c.flag_value("maxdepth") {
            Some("1") => true,
            None => false,
            Some(d) => panic!("unexpected -maxdepth={d}"),
        };
        let st = self.state();
        let found: String = st
            .vms
            .iter()
            .filter(|(_, vm)| vm.visible())
            .filter(|(path, vm)| {
                let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
                let placed = if shallow {
                    folder == root
                } else {
                    path.starts_with(&format!("{root}/"))
                };
                placed
                    && c.flag_value("name").is_none_or(|g| glob(g, name))
                    && props.iter().all(|(k, v)| match *k {
                        "config.annotation" => glob(v, &vm.annotation),
                        "config.template" => vm.template.to_string() == *v,
                        other => panic!("unexpected property filter {other}"),
                    })
            })
            .map(|(p, _)| format!("{p}\n"))
            .collect();
        out(&found)
    }

    /// What a healthy vCenter holding this inventory answers to `vm.clone`
    /// (done at once), `vm.change` (the annotation is kept), `vm.power`,
    /// `vm.ip` (always `10.0.0.10`), `object.collect` (the power state),
    /// `vm.destroy`, `vm.info`, `find`, `device.serial.add` (a port named
    /// `serialport-9000`), `device.serial.connect`, `vm.disk.change`,
    /// `snapshot.create` and `snapshot.tree` (the snapshots created, as
    /// roots); a missing VM is govc's not-found error naming it.
    ///
    /// # Panics
    ///
    /// On any other subcommand, on one of these without the argument it
    /// always has, and where [`Inventory::clone_vm`] and [`Inventory::find`]
    /// do.
    #[allow(clippy::panic, reason = "a mock fails the test on an unexpected call")]
    pub fn happy(&self, c: &Command) -> Answer {
        match c.name() {
            "vm.clone" => self.clone_vm(c, Duration::ZERO),
            "vm.change" => {
                let Some(path) = c.flag_value("vm") else {
                    panic!("vm.change without -vm: {c}")
                };
                if !self.contains(path) {
                    return not_found_at(c, path);
                }
                if let Some(annotation) = c.flag_value("annotation") {
                    self.set_annotation(path, annotation);
                }
                ok()
            }
            "vm.power" => {
                let state = if c.flag_value("on") == Some("true") {
                    "poweredOn"
                } else {
                    "poweredOff"
                };
                for path in c.positional() {
                    match self.state().vms.get_mut(path).filter(|v| v.visible()) {
                        Some(vm) => vm.power = state,
                        None => return not_found_at(c, path),
                    }
                }
                ok()
            }
            "vm.ip" => {
                let Some(path) = c.positional().last() else {
                    panic!("vm.ip without a VM: {c}")
                };
                if self.contains(path) {
                    out("10.0.0.10\n")
                } else {
                    not_found_at(c, path)
                }
            }
            "object.collect" if c.flag_value("type") == Some("m") => {
                let Some(folder) = c.positional().first() else {
                    panic!("object.collect -type m without a folder: {c}")
                };
                out(&self.marks_json(folder))
            }
            "object.collect" => {
                let Some(path) = c.positional().first() else {
                    panic!("object.collect without an object: {c}")
                };
                match self.get(path) {
                    Some(vm) => out(&power_state_json(vm.power)),
                    None => fail(c, &format!("govc: {path} not found\n")),
                }
            }
            "vm.destroy" => {
                for path in c.positional() {
                    if !self.contains(path) {
                        return not_found_at(c, path);
                    }
                    self.remove(path);
                }
                ok()
            }
            "vm.info" => out(&self.info_json(c.positional())),
            "find" => self.find(c),
            "snapshot.tree" => {
                let Some(path) = c.flag_value("vm") else {
                    panic!("snapshot.tree without -vm: {c}")
                };
                if !self.contains(path) {
                    return not_found_at(c, path);
                }
                let list: Vec<Value> = self
                    .state()
                    .snapshots
                    .get(path)
                    .map(|all| {
                        all.iter()
                            .map(|(id, name)| json!({"id": id, "name": name, "current": false}))
                            .collect()
                    })
                    .unwrap_or_default();
                if list.is_empty() {
                    out("")
                } else {
                    out(&Value::Array(list).to_string())
                }
            }
            "snapshot.create" => {
                let (Some(path), Some(name)) = (c.flag_value("vm"), c.positional().first()) else {
                    panic!("snapshot.create without -vm or a name: {c}")
                };
                if !self.contains(path) {
                    return not_found_at(c, path);
                }
                let mut st = self.state();
                st.next_moref += 1;
                let id = format!("snapshot-{}", st.next_moref);
                st.snapshots
                    .entry(path.to_owned())
                    .or_default()
                    .push((id, name.clone()));
                ok()
            }
            // A serial port, its file, a disk: the VM must exist.
            "device.serial.add" | "device.serial.connect" | "vm.disk.change" => {
                let Some(path) = c.flag_value("vm") else {
                    panic!("{} without -vm: {c}", c.name())
                };
                if !self.contains(path) {
                    not_found_at(c, path)
                } else if c.name() == "device.serial.add" {
                    out("serialport-9000\n")
                } else {
                    ok()
                }
            }
            _ => panic!("unexpected govc call: {c}"),
        }
    }
}

/// govc's glob: `*` and `?` (vmw never sends `[`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if p.get(pi).is_some_and(|&c| c == '?' || c == t[ti]) {
            pi += 1;
            ti += 1;
        } else if p.get(pi) == Some(&'*') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((s, m)) = star {
            pi = s + 1;
            ti = m + 1;
            star = Some((s, m + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The argv of every govc call a [`scripted`] mock received, in order.
/// Clones share one log.
#[derive(Clone, Debug, Default)]
pub struct Calls(Arc<Mutex<Vec<Vec<String>>>>);

impl Calls {
    fn log(&self) -> MutexGuard<'_, Vec<Vec<String>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a call.
    pub fn push(&self, c: &Command) {
        self.log().push(c.argv());
    }

    /// Every call as it was made.
    pub fn raw(&self) -> Vec<Vec<String>> {
        self.log().clone()
    }

    /// The subcommand of each call.
    pub fn names(&self) -> Vec<String> {
        self.log()
            .iter()
            .filter_map(|a| a.first().cloned())
            .collect()
    }

    /// How many calls were made.
    pub fn len(&self) -> usize {
        self.log().len()
    }

    /// Whether no call was made.
    pub fn is_empty(&self) -> bool {
        self.log().is_empty()
    }

    /// Forgets the calls made so far.
    pub fn clear(&self) {
        self.log().clear();
    }
}

/// A mock answering every call with `answer`, and the log of its calls
/// (each call is logged before it is answered).
pub fn scripted<F>(answer: F) -> (MockGovc, Calls)
where
    F: FnMut(&Command) -> Answer + Send + 'static,
{
    let calls = Calls::default();
    let log = calls.clone();
    let mut answer = answer;
    let mut mock = MockGovc::new();
    mock.expect_run().returning(move |c| {
        log.push(c);
        answer(c)
    });
    (mock, calls)
}

/// A mock answering like a healthy vCenter holding `inv`
/// ([`Inventory::happy`]).
pub fn healthy(inv: &Inventory) -> (MockGovc, Calls) {
    let inv = inv.clone();
    scripted(move |c| inv.happy(c))
}

/// A mock that fails the test on any call.
pub fn silent() -> MockGovc {
    let mut mock = MockGovc::new();
    mock.expect_run().times(0);
    mock
}

/// Success with no output.
pub fn ok() -> Answer {
    Ok(Output::default())
}

/// Success printing `stdout`.
pub fn out(stdout: &str) -> Answer {
    Ok(Output::stdout(stdout))
}

/// govc exiting 1 with `stderr`, classified like a real failure.
pub fn fail(c: &Command, stderr: &str) -> Answer {
    Err(GovcError::failed(c.clone(), Some(1), stderr))
}

/// govc's finder failing on `path`.
pub fn not_found_at(c: &Command, path: &str) -> Answer {
    fail(c, &format!("govc: vm '{path}' not found\n"))
}

/// govc's finder failing on the first positional argument.
pub fn vm_not_found(c: &Command) -> Answer {
    let path = c.positional().first().cloned().unwrap_or_default();
    not_found_at(c, &path)
}

/// The call killed at its deadline (an outcome vmw cannot know).
pub fn killed(c: &Command) -> Answer {
    Err(GovcError::Timeout {
        command: Box::new(c.clone()),
        after: Duration::from_secs(3600),
    })
}

/// What `object.collect -json <vm> runtime.powerState` prints for `state`.
pub fn power_state_json(state: &str) -> String {
    format!(r#"[{{"name":"runtime.powerState","op":"assign","val":"{state}"}}]"#)
}

/// The name of the VM a command is about (the last element of its path):
/// `-vm` of `vm.change`, the last positional argument of `vm.clone`,
/// `vm.power`, `vm.ip`, `vm.destroy` and `vm.info`; `None` for other
/// commands.
pub fn vm_name_of(c: &Command) -> Option<String> {
    let text = match c.name() {
        "vm.change" => c.flag_value("vm")?,
        "vm.clone" | "vm.power" | "vm.ip" | "vm.destroy" | "vm.info" => c.positional().last()?,
        _ => return None,
    };
    text.rsplit('/').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_govc() {
        assert!(glob("me-*", "me-12"));
        assert!(glob("made by vmw (*)", "made by vmw (tag: me)"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("me-*", "you-1"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
    }
}
