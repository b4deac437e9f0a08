//! Where the test bed finds govc and vcsim.
//!
//! In order: the path in `VMW_GOVC` / `VMW_VCSIM`; the workspace's own
//! `.tools/bin` (filled by `cargo xtask tools`); then `PATH`, if the binary
//! there is govmomi v0.56.0.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};

use crate::TestbedError;

/// The govmomi release the test bed runs.
pub const GOVMOMI_VERSION: &str = "v0.56.0";

/// The revision of vmw's vcsim front end (`xtask/govmomi/vcsim`) the test
/// bed needs: 2 added `-session-idle-timeout`. `vcsim version` prints it as
/// `vmw front end: N`; upstream vcsim prints no such line.
pub const VCSIM_FRONT_END: u32 = 2;

/// Variable naming the vcsim binary to use.
pub const VMW_VCSIM: &str = "VMW_VCSIM";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> Utf8PathBuf {
    let manifest = Utf8Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Utf8Path::parent)
        .map_or_else(|| manifest.to_owned(), Utf8Path::to_owned)
}

/// `.tools/bin` of the workspace, where `cargo xtask tools` installs.
pub fn tools_bin_dir() -> Utf8PathBuf {
    workspace_root().join(".tools").join("bin")
}

/// A tool the test bed needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// VMware's govc.
    Govc,
    /// VMware's vCenter simulator.
    Vcsim,
}

impl Tool {
    /// The binary name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Govc => "govc",
            Tool::Vcsim => "vcsim",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Tool::Govc => vmw_config::env::VMW_GOVC,
            Tool::Vcsim => VMW_VCSIM,
        }
    }
}

/// The version a binary reports, normalised to `vX.Y.Z` (`None` when it
/// does not run or says nothing recognisable).
pub fn reported_version(tool: Tool, path: &Utf8Path) -> Option<String> {
    let out = Command::new(path).arg("version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    let version = match tool {
        Tool::Govc => line.strip_prefix("govc ")?,
        Tool::Vcsim => line.strip_prefix("Build Version: ")?,
    };
    let version = version.trim();
    Some(if version.starts_with('v') {
        version.to_owned()
    } else {
        format!("v{version}")
    })
}

/// The front end revision a vcsim binary reports (`None` for upstream vcsim
/// and for builds older than revision 2, which printed none).
pub fn vcsim_front_end(path: &Utf8Path) -> Option<u32> {
    let out = Command::new(path).arg("version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("vmw front end: ")?.parse().ok())
}

/// Finds `tool` (see the module docs); an error says how to install it.
pub fn locate(tool: Tool) -> Result<Utf8PathBuf, TestbedError> {
    if let Ok(p) = std::env::var(tool.env_var())
        && !p.is_empty()
    {
        let p = Utf8PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(TestbedError::ToolMissing {
                tool: tool.name(),
                detail: format!("{} points to {p}, which does not exist", tool.env_var()),
            })
        };
    }
    let local = tools_bin_dir().join(tool.name());
    if local.is_file() {
        return Ok(local);
    }
    let path_var = std::env::var("PATH").unwrap_or_default();
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Utf8Path::new(dir).join(tool.name());
        if candidate.is_file() {
            match reported_version(tool, &candidate) {
                Some(v) if v == GOVMOMI_VERSION => return Ok(candidate),
                found => {
                    return Err(TestbedError::ToolMissing {
                        tool: tool.name(),
                        detail: format!(
                            "{candidate} on PATH is {}, not {GOVMOMI_VERSION}",
                            found.as_deref().unwrap_or("of unknown version")
                        ),
                    });
                }
            }
        }
    }
    Err(TestbedError::ToolMissing {
        tool: tool.name(),
        detail: format!("not in {}, not on PATH", tools_bin_dir()),
    })
}
