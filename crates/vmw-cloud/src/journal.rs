//! The journal: every VM a cloud is about to create, recorded on disk
//! before vCenter is asked for it, so that what a killed run made is found
//! by the next one.
//!
//! A clone's record (server, folder, exact path, launch id, marker, source,
//! time, process) is written to `<dir>/<launch>.json` through a locked
//! temporary file, flushed and renamed into place, before the clone
//! request; it is removed once the launch (or snapshot) has ended or what
//! it made is removed. While it is open, its writer holds an exclusive
//! `flock` on it, and the lock's file descriptor is inherited by every
//! govc process the writer starts meanwhile: a record is *live* while its
//! writer or any of those govc processes runs (govc finishes a clone vCenter
//! received even when vmw is killed; see `vmw_govc::ProcessGovc`), and
//! *stale* once the lock can be taken, whatever happened to the writer
//! (SIGKILL, OOM, a reboot).
//!
//! [`crate::Cloud::recover`] (in `inventory`) resolves the stale records of its server and folder,
//! never live ones: a VM at the record's exact path that carries the
//! record's marker, or no marker and was created after the record (by
//! vCenter's `config.createDate`), is the killed run's: it is marked (the
//! marker, plus a note that an interrupted run left it) so that `list`
//! shows it and `clean` removes it. A VM with another marker, a template,
//! or one created before the record is never touched. Nothing there: the
//! record goes once older than the clone grace (vCenter finishes a clone
//! it received, even when every client is gone; until then, the next
//! command looks again).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::time::{SystemTime, UNIX_EPOCH};

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use vmw_govc::{Govc, VmRef};

use crate::CloudError;
use crate::inner::Inner;
use crate::ownership::is_protected;
use crate::tag::parse_marker;

/// The line vmw adds below its marker on a VM an interrupted run left.
pub const INTERRUPTED_NOTE: &str = "left by an interrupted vmw run";

/// The record format's version.
const VERSION: u32 = 1;

/// One clone about to be made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) version: u32,
    /// The vCenter (`server` without user info).
    pub(crate) server: String,
    /// The cloud's folder.
    pub(crate) folder: String,
    /// The exact path of the VM to be made.
    pub(crate) vm: String,
    /// The clone's launch id.
    pub(crate) launch: String,
    /// The marker the clone writes.
    pub(crate) marker: String,
    /// What is cloned.
    pub(crate) source: String,
    /// When the record was made (RFC 3339, UTC).
    pub(crate) created: String,
    /// The process that made it, and its machine.
    pub(crate) pid: u32,
    pub(crate) host: String,
}

/// An open record: its file, locked, and where it lives.
#[derive(Debug)]
pub(crate) struct OpenRecord {
    path: Utf8PathBuf,
    _file: File,
}

impl OpenRecord {
    /// The launch is over, or what it made is gone: the record goes (its
    /// lock with it, once govc processes that inherited it end).
    pub(crate) fn close(self) {
        remove_record(&self.path);
    }
}

/// Removes the record file at `path` (already gone is fine); its lock goes
/// with the handle that holds it.
fn remove_record(path: &Utf8Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(record = %path, error = %e, "could not remove a journal record");
    }
}

/// The directory of records.
#[derive(Clone, Debug)]
pub(crate) struct Journal {
    dir: Utf8PathBuf,
}

/// What [`Journal::open`] failed at.
fn io(what: String) -> impl FnOnce(std::io::Error) -> CloudError {
    move |source| CloudError::Io { what, source }
}

impl Journal {
    pub(crate) fn new(dir: Utf8PathBuf) -> Self {
        Self { dir }
    }

    /// Writes `record` durably and keeps it locked (see the module).
    pub(crate) fn open(&self, record: &Record) -> Result<OpenRecord, CloudError> {
        let dir = &self.dir;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("creating the journal directory {dir}")))?;
        let name = format!("{}.json", record.launch);
        let temp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(&name);
        let what = || format!("recording the clone of {} in {path}", record.vm);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io(what()))?;
        file.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => io(what())(e),
            TryLockError::WouldBlock => io(what())(std::io::Error::other("locked by another")),
        })?;
        let text = serde_json::to_vec_pretty(record).map_err(|e| io(what())(e.into()))?;
        let written = file
            .write_all(&text)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&temp, &path))
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io(what())(e));
        }
        inherit(&file);
        Ok(OpenRecord { path, _file: file })
    }

    /// The stale records (their locks taken), and how many are live.
    pub(crate) fn stale(&self) -> Result<(Vec<Stale>, usize), CloudError> {
        let dir = &self.dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(io(format!("reading the journal {dir}"))(e)),
        };
        let mut stale = Vec::new();
        let mut live = 0;
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let temp = name.starts_with('.') && name.ends_with(".tmp");
            if !temp && !name.ends_with(".json") {
                continue;
            }
            let path = dir.join(&name);
            let Ok(file) = File::open(&path) else {
                continue;
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    live += 1;
                    continue;
                }
                Err(TryLockError::Error(e)) => {
                    tracing::warn!(record = %path, error = %e, "could not lock a journal record");
                    continue;
                }
            }
            // Still the file that was locked (not removed meanwhile by
            // another process's recovery)?
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            if temp {
                // Killed while writing: no clone was asked for.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let record = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            match record {
                Some(record) if record.version == VERSION => stale.push(Stale {
                    record,
                    path,
                    _file: file,
                }),
                _ => tracing::warn!(record = %path, "a journal record vmw cannot read; left alone"),
            }
        }
        Ok((stale, live))
    }
}

/// Lets every child process started from now on inherit the lock.
fn inherit(file: &File) {
    use nix::fcntl::{F_SETFD, FdFlag, fcntl};
    if let Err(e) = fcntl(file, F_SETFD(FdFlag::empty())) {
        tracing::debug!(error = %e, "journal: the record's lock stays with vmw alone");
    }
}

/// A stale record, locked by this process while it is resolved.
pub(crate) struct Stale {
    pub(crate) record: Record,
    path: Utf8PathBuf,
    _file: File,
}

impl Stale {
    pub(crate) fn remove(self) {
        remove_record(&self.path);
    }
}

/// What [`crate::Cloud::recover`] found and did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// VMs left by interrupted runs, now marked as such (and removable
    /// by `clean` of their tag).
    pub marked: Vec<VmRef>,
    /// Records whose path held nothing, older than
    /// [`Settings::clone_grace`](crate::Settings::clone_grace): the clone
    /// never happened (the record goes).
    pub nothing_there: usize,
    /// Records whose path holds nothing yet, younger than the clone grace:
    /// vCenter may still be making what a killed run asked for (kept, and
    /// looked at again by the next command).
    pub pending: Vec<VmRef>,
    /// Records whose path holds a VM that is not the killed run's
    /// (another marker, a template, or made before the record): never
    /// touched.
    pub foreign: Vec<VmRef>,
    /// Records of runs still going (this process's included): left alone.
    pub live: usize,
    /// Records that could not be resolved now (kept for the next try).
    pub errors: Vec<CloudError>,
}

/// How one stale record resolves.
#[derive(Debug)]
pub(crate) enum Resolution {
    Marked(VmRef),
    Nothing,
    Pending(VmRef),
    Foreign(VmRef),
}

/// `t` as RFC 3339 in UTC, to the millisecond.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = crate::tag::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Nanoseconds since 1970, now.
pub(crate) fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

/// Nanoseconds since 1970 of an RFC 3339 time (`Z` or `±hh:mm`, any
/// fraction); `None` when it is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = std::str::from_utf8(b.get(r)?).ok()?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = std::str::from_utf8(&b[start..i.min(start + 9)]).ok()?;
        nanos = i128::from(digits.parse::<u32>().ok()?) * 10i128.pow(9 - digits.len() as u32);
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let h = i64::from(digits[0] - b'0') * 10 + i64::from(digits[1] - b'0');
            let m = i64::from(digits[2] - b'0') * 10 + i64::from(digits[3] - b'0');
            let s = (h * 60 + m) * 60;
            if *sign == b'+' { s } else { -s }
        }
        _ => return None,
    };
    let days = crate::tag::days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// The annotation of a VM an interrupted run left: its marker, and the
/// note below it (no `/`, which govc's property globs do not match).
pub(crate) fn interrupted_annotation(marker: &str, record: &Record) -> String {
    format!(
        "{marker}\n{INTERRUPTED_NOTE} (process {} on {}, recorded {})",
        record.pid,
        record.host.replace('/', "-"),
        record.created
    )
}

/// Whether an annotation says that an interrupted run left the VM.
pub(crate) fn is_interrupted(annotation: &str) -> bool {
    annotation
        .lines()
        .nth(1)
        .is_some_and(|l| l.starts_with(INTERRUPTED_NOTE))
}

/// The name of this machine, for records (best effort).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl<G: Govc> Inner<G> {
    /// The record of a clone of `source` to `vm` by `launch` with
    /// `marker`, made now.
    pub(crate) fn record_of(
        &self,
        vm: &VmRef,
        launch: &str,
        marker: &str,
        source: &VmRef,
    ) -> Record {
        Record {
            version: VERSION,
            server: self.config.server_display(),
            folder: self.config.folder.clone(),
            vm: vm.to_string(),
            launch: launch.to_owned(),
            marker: marker.to_owned(),
            source: source.to_string(),
            created: rfc3339(SystemTime::now()),
            pid: std::process::id(),
            host: host_name(),
        }
    }

    /// Records a clone about to be asked for (nothing without a journal).
    pub(crate) async fn open_record(&self, record: Record) -> Result<(), CloudError> {
        let Some(journal) = self.journal.clone() else {
            return Ok(());
        };
        let launch = record.launch.clone();
        let open = tokio::task::spawn_blocking(move || journal.open(&record))
            .await
            .map_err(|e| CloudError::Io {
                what: "recording a clone in the journal".to_owned(),
                source: std::io::Error::other(e),
            })??;
        self.records().insert(launch, open);
        Ok(())
    }

    /// Closes the record of `launch`, if open.
    pub(crate) fn close_record(&self, launch: &str) {
        let open = self.records().remove(launch);
        if let Some(open) = open {
            open.close();
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, OpenRecord>> {
        self.open_records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves one stale record (see the module).
    pub(crate) async fn resolve(&self, record: &Record) -> Result<Resolution, CloudError> {
        let vm = VmRef::parse(&record.vm)?;
        let Some(info) = self.lookup(&vm).await? else {
            let now = now_nanos();
            let young = parse_rfc3339(&record.created).is_some_and(|at| {
                now.saturating_sub(at) < self.settings.clone_grace.as_nanos() as i128
            });
            return Ok(if young {
                Resolution::Pending(vm)
            } else {
                Resolution::Nothing
            });
        };
        if is_protected(&vm, &info) {
            return Ok(Resolution::Foreign(vm));
        }
        let own =
            |annotation: &str| annotation.trim().lines().next() == Some(record.marker.as_str());
        match parse_marker(&info.annotation) {
            Some(_) if own(&info.annotation) => {
                if !is_interrupted(&info.annotation) {
                    self.annotate(&vm, &interrupted_annotation(&info.annotation, record))
                        .await?;
                }
                Ok(Resolution::Marked(vm))
            }
            Some(_) => Ok(Resolution::Foreign(vm)),
            None => {
                let made = info.create_date.as_deref().and_then(parse_rfc3339);
                let recorded = parse_rfc3339(&record.created);
                match (made, recorded) {
                    (Some(made), Some(recorded)) if made >= recorded => {
                        // Looked up again right before: still unmarked?
                        let again = self.lookup(&vm).await?;
                        match again {
                            Some(now)
                                if now.moref == info.moref
                                    && parse_marker(&now.annotation).is_none() =>
                            {
                                tracing::info!(vm = %vm, "a VM an interrupted run made, without vmw's marker: marking it");
                                self.annotate(&vm, &interrupted_annotation(&record.marker, record))
                                    .await?;
                                Ok(Resolution::Marked(vm))
                            }
                            Some(now) if own(&now.annotation) => {
                                self.annotate(
                                    &vm,
                                    &interrupted_annotation(&now.annotation, record),
                                )
                                .await?;
                                Ok(Resolution::Marked(vm))
                            }
                            Some(_) => Ok(Resolution::Foreign(vm)),
                            None => Ok(Resolution::Nothing),
                        }
                    }
                    _ => Ok(Resolution::Foreign(vm)),
                }
            }
        }
    }
}

/// The default journal directory: `$XDG_STATE_HOME/vmw/journal`, else
/// `~/.local/state/vmw/journal`; `None` without either.
pub(crate) fn default_dir(
    state_home: Option<&Utf8Path>,
    home: Option<&Utf8Path>,
) -> Option<Utf8PathBuf> {
    match (state_home.filter(|p| p.is_absolute()), home) {
        (Some(state), _) => Some(state.join("vmw/journal")),
        (None, Some(home)) => Some(home.join(".local/state/vmw/journal")),
        (None, None) => None,
    }
}
