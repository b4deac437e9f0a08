//! [`VmRef`]: a reference to exactly one VM.
//!
//! govc resolves a VM argument without a `/` by searching the whole
//! datacenter recursively, and reads every argument as a glob pattern
//! (`*`, `?`, `[...]`): `govc vm.destroy web-1` destroys every VM named
//! `web-1` in every folder, and `vm.destroy 'web-*'` every VM whose name
//! starts with `web-`. vSphere keeps VM names unique within one folder, so
//! an absolute inventory path without glob characters names exactly one VM.
//!
//! A `VmRef` can only hold such a path: every request that reads or changes
//! a VM takes a `VmRef`, so a bare name or a pattern cannot reach govc.

use std::fmt;

/// Characters govc reads as glob syntax in a path or name.
pub const GLOB_CHARS: [char; 4] = ['*', '?', '[', ']'];

/// The longest VM name vSphere accepts.
pub const MAX_VM_NAME_LEN: usize = 80;

/// Why a name or a path cannot address exactly one VM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} {problem}")]
pub struct VmRefError {
    /// "VM name", "VM path" or "folder".
    pub what: &'static str,
    /// The text given.
    pub value: String,
    /// What is wrong with it, and what to give instead.
    pub problem: String,
}

impl vmw_hints::Hints for VmRefError {
    fn hints(&self) -> Vec<String> {
        vec![
            "vmw never searches for a VM: give a name in the configured folder, or an absolute inventory path such as /DC0/vm/NAME"
                .to_owned(),
        ]
    }
}

/// Checks one VM name (the last element of its inventory path).
pub fn check_vm_name(name: &str) -> Result<(), VmRefError> {
    let bad = |problem: &str| VmRefError {
        what: "VM name",
        value: name.to_owned(),
        problem: problem.to_owned(),
    };
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.chars().count() > MAX_VM_NAME_LEN {
        return Err(bad("is longer than the 80 characters vSphere allows"));
    }
    if name.contains('/') || name.contains('\\') || name.contains('%') {
        return Err(bad(
            "holds '/', '\\' or '%', which vSphere does not allow in a VM name",
        ));
    }
    if name.contains(GLOB_CHARS) {
        return Err(bad(
            "holds '*', '?', '[' or ']': govc reads those as a pattern that can match other VMs; rename the VM without them",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("holds control characters"));
    }
    if name.trim() != name {
        return Err(bad("starts or ends with white space"));
    }
    Ok(())
}

/// Checks an inventory folder path: absolute, no empty elements, no glob
/// characters.
pub fn check_folder(folder: &str) -> Result<(), VmRefError> {
    let bad = |problem: &str| VmRefError {
        what: "folder",
        value: folder.to_owned(),
        problem: problem.to_owned(),
    };
    let Some(rest) = folder.strip_prefix('/') else {
        return Err(bad(
            "is not an absolute inventory path; give one such as /DC0/vm or /DC0/vm/ci",
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.split('/').any(str::is_empty) {
        return Err(bad(
            "has an empty path element; give one such as /DC0/vm/ci",
        ));
    }
    if folder.contains(GLOB_CHARS) {
        return Err(bad(
            "holds '*', '?', '[' or ']', which govc reads as a pattern",
        ));
    }
    if folder.chars().any(char::is_control) {
        return Err(bad("holds control characters"));
    }
    Ok(())
}

/// Exactly one VM, by its absolute inventory path (`/DC0/vm/ci/web-1`).
///
/// Built from a folder and a name ([`VmRef::in_folder`]) or from a path
/// ([`VmRef::parse`]); both refuse relative paths and glob characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmRef(String);

impl VmRef {
    /// The VM `name` in `folder`.
    pub fn in_folder(folder: &str, name: &str) -> Result<Self, VmRefError> {
        check_folder(folder)?;
        check_vm_name(name)?;
        Ok(VmRef(format!("{}/{name}", folder.trim_end_matches('/'))))
    }

    /// An absolute inventory path, as `govc find` prints it.
    pub fn parse(path: &str) -> Result<Self, VmRefError> {
        let bad = |problem: &str| VmRefError {
            what: "VM path",
            value: path.to_owned(),
            problem: problem.to_owned(),
        };
        if !path.starts_with('/') {
            return Err(bad(
                "is not an absolute inventory path; give a name in the configured folder, or a path such as /DC0/vm/ci/web-1",
            ));
        }
        let Some((folder, name)) = path.rsplit_once('/') else {
            return Err(bad("has no VM name"));
        };
        if folder.is_empty() || folder.ends_with('/') {
            return Err(bad(
                "has no folder or an empty path element; give a path such as /DC0/vm/ci/web-1",
            ));
        }
        check_folder(folder).map_err(|e| bad(&e.problem))?;
        check_vm_name(name).map_err(|e| bad(&e.problem))?;
        Ok(VmRef(path.to_owned()))
    }

    /// The VM a user means by `text`: an absolute path as it is, or else
    /// the VM of that name in `folder` (never a search).
    pub fn resolve(folder: &str, text: &str) -> Result<Self, VmRefError> {
        if text.starts_with('/') {
            Self::parse(text)
        } else {
            Self::in_folder(folder, text)
        }
    }

    /// The inventory path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The VM's name: the last element of the path.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The folder holding the VM.
    pub fn folder(&self) -> &str {
        self.0.rsplit_once('/').map_or("/", |(f, _)| f)
    }

    /// The VM named `name` in the same folder.
    pub fn sibling(&self, name: &str) -> Result<Self, VmRefError> {
        Self::in_folder(self.folder(), name)
    }
}

impl fmt::Display for VmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VmRef({})", self.0)
    }
}

impl AsRef<str> for VmRef {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for VmRef {
    type Err = VmRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for VmRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_in_a_folder_is_an_absolute_path() {
        let r = VmRef::in_folder("/DC0/vm/mine/", "web-1").unwrap();
        assert_eq!(r.as_str(), "/DC0/vm/mine/web-1");
        assert_eq!(r.name(), "web-1");
        assert_eq!(r.folder(), "/DC0/vm/mine");
        assert_eq!(r.sibling("web-2").unwrap().as_str(), "/DC0/vm/mine/web-2");
        assert_eq!(
            VmRef::resolve("/DC0/vm/mine", "web 1").unwrap().as_str(),
            "/DC0/vm/mine/web 1"
        );
        assert_eq!(
            VmRef::resolve("/DC0/vm/mine", "/DC0/vm/theirs/x")
                .unwrap()
                .as_str(),
            "/DC0/vm/theirs/x"
        );
    }

    #[test]
    fn globs_relative_paths_and_bad_names_are_refused() {
        for name in ["web-*", "a?", "[ab]", "x]", "", "a/b", "tab\there", " pad"] {
            let e = VmRef::in_folder("/DC0/vm", name).unwrap_err();
            assert_eq!(e.what, "VM name", "{name}");
        }
        let e = VmRef::in_folder("/DC0/vm", "web-*").unwrap_err();
        assert!(e.to_string().contains("pattern"), "{e}");
        for folder in ["DC0/vm", "", "/", "/DC0//vm", "/DC0/vm*"] {
            assert!(VmRef::in_folder(folder, "a").is_err(), "{folder}");
        }
        for path in [
            "web-1",
            "vm/web-1",
            "/web-1",
            "/DC0/vm/web-*",
            "/DC0//x",
            "/DC0/vm/",
        ] {
            assert!(VmRef::parse(path).is_err(), "{path}");
        }
        let e = VmRef::parse("web-1").unwrap_err().to_string();
        assert!(e.contains("absolute inventory path"), "{e}");
        assert!(VmRef::parse(&format!("/DC0/vm/{}", "x".repeat(81))).is_err());
        assert!(VmRef::parse("/DC0/vm/x").is_ok());
    }
}
