//! Finding the govc binary and checking its version.

use std::fmt;
use std::str::FromStr;

use camino::{Utf8Path, Utf8PathBuf};
use vmw_config::{Environment, env};

use crate::{Command, GovcError};

/// A `major.minor.patch` version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = String;

    /// Reads `0.56.0`, `v0.56.0` or `0.56.0-rc1` (the suffix is ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let core = s.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => {
                Ok(Version::new(major, minor, patch))
            }
            _ => Err(format!("{s:?} is not a version of the form X.Y.Z")),
        }
    }
}

/// The govc version vmw is developed and tested against.
pub const TESTED_VERSION: Version = Version::new(0, 56, 0);

/// The oldest govc vmw accepts. The JSON that `vm.info -json`,
/// `object.collect -json` and `about -json` print has changed shape across
/// govc releases; vmw reads the shape of the version it is tested with.
pub const MIN_VERSION: Version = TESTED_VERSION;

/// Reads the output of `govc version` (`govc 0.56.0`).
pub fn parse_version_output(stdout: &str) -> Option<Version> {
    let line = stdout.lines().find(|l| !l.trim().is_empty())?;
    let rest = line.trim().strip_prefix("govc ")?;
    rest.trim().parse().ok()
}

/// The `govc version` command.
pub fn version_command() -> Command {
    Command::new("version").timeout(std::time::Duration::from_secs(30))
}

/// Finds the govc binary: `explicit` if given (it must exist), else the
/// path in `VMW_GOVC` (it must exist), else `govc` on `PATH`.
pub fn find_govc(explicit: Option<&Utf8Path>, env: &Environment) -> Result<Utf8PathBuf, GovcError> {
    if let Some(p) = explicit {
        return existing(p, format!("{p} (given by the caller)"));
    }
    if let Some(p) = env.get(env::VMW_GOVC) {
        let p = Utf8Path::new(p);
        return existing(p, format!("{p} (from {})", env::VMW_GOVC));
    }
    let mut searched = Vec::new();
    for dir in env.get(env::PATH).unwrap_or_default().split(':') {
        if dir.is_empty() {
            continue;
        }
        let candidate = Utf8Path::new(dir).join("govc");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(dir.to_owned());
    }
    Err(GovcError::GovcMissing {
        searched: if searched.is_empty() {
            vec!["PATH (empty)".to_owned()]
        } else {
            vec![format!("PATH: {}", searched.join(":"))]
        },
    })
}

fn existing(p: &Utf8Path, described: String) -> Result<Utf8PathBuf, GovcError> {
    if is_executable(p) {
        Ok(p.to_owned())
    } else {
        Err(GovcError::GovcMissing {
            searched: vec![described],
        })
    }
}

fn is_executable(p: &Utf8Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmw_hints::Hints;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(
            parse_version_output("govc 0.56.0\n"),
            Some(Version::new(0, 56, 0))
        );
        assert_eq!(
            parse_version_output("govc 0.57.1-rc.1\n"),
            Some(Version::new(0, 57, 1))
        );
        assert_eq!(parse_version_output("Build Version: v0.56.0"), None);
        assert_eq!(parse_version_output("govc dev"), None);
        assert!("v1.2".parse::<Version>().is_err());
        assert!(Version::new(0, 55, 9) < MIN_VERSION);
        assert!(Version::new(1, 0, 0) > MIN_VERSION);
    }

    #[test]
    fn find_govc_reports_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let d = Utf8Path::from_path(dir.path()).unwrap();
        let env = Environment::from_pairs([("PATH", format!("{d}:/nonexistent"))]);
        let err = find_govc(None, &env).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::GovcMissing);
        assert!(err.to_string().contains(d.as_str()), "{err}");
        assert!(!err.to_string().contains("hint:"), "{err}");
        assert!(err.hints()[0].contains("VMW_GOVC"), "{:?}", err.hints());

        let govc = d.join("govc");
        std::fs::write(&govc, "#!/bin/sh\n").unwrap();
        // Not executable yet: not a candidate.
        assert!(find_govc(None, &env).is_err());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&govc, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_govc(None, &env).unwrap(), govc);

        let err = find_govc(None, &env.clone().with("VMW_GOVC", "/nope/govc")).unwrap_err();
        assert!(
            err.to_string().contains("/nope/govc (from VMW_GOVC)"),
            "{err}"
        );
        let err = find_govc(Some(Utf8Path::new("/x/govc")), &env).unwrap_err();
        assert!(
            err.to_string().contains("/x/govc (given by the caller)"),
            "{err}"
        );
    }
}
