//! Running one measured process: its wall time, the CPU time of it and of
//! every process it waited for (govc), and its own peak resident memory.
//!
//! CPU comes from `getrusage(RUSAGE_CHILDREN)` of this process before and
//! after the measured child is reaped: the kernel adds to it the child's
//! CPU and that of the descendants the child reaped. The bench reaps no
//! other process while one is measured (the simulator and the address
//! agent live until the end), so the difference is the child's alone.
//! Peak memory is the child's own `VmHWM`, read from `/proc` until it
//! exits (its children's memory is not counted).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::resource::{UsageWho, getrusage};

/// What one measured process took.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Taken {
    /// From spawn to exit.
    pub(crate) wall: Duration,
    /// User plus system CPU of the process and of what it reaped.
    pub(crate) cpu: Duration,
    /// The process's own peak resident set, in KiB.
    pub(crate) peak_rss_kib: u64,
}

fn children_cpu() -> Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(tv(usage.user_time()) + tv(usage.system_time()))
}

/// `VmHWM` of process `pid`, in KiB (0 once it has exited).
fn high_water_mark(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `cmd` to its end (stdout kept, stderr kept for the error) and
/// measures it; fails when it fails.
pub(crate) fn measure(cmd: &mut Command, what: &str) -> Result<(Taken, String)> {
    let before = children_cpu()?;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {what}"))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().context("no stdout")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut peak = 0;
    let status = loop {
        peak = peak.max(high_water_mark(pid));
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let wall = started.elapsed();
    let cpu = children_cpu()?.saturating_sub(before);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        bail!("{what} failed ({status}):\n{stderr}");
    }
    Ok((
        Taken {
            wall,
            cpu,
            peak_rss_kib: peak,
        },
        stdout,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_and_what_it_reaps_are_counted() -> Result<()> {
        // A shell that runs a busy child: both are in the CPU measured.
        let (taken, out) = measure(
            Command::new("sh").args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done",
            ]),
            "a busy shell",
        )?;
        assert_eq!(out.trim(), "done");
        assert!(taken.cpu > Duration::from_millis(20), "{taken:?}");
        assert!(taken.wall >= taken.cpu / 2, "{taken:?}");
        assert!(taken.peak_rss_kib > 0, "{taken:?}");
        Ok(())
    }

    #[test]
    fn a_failing_child_is_an_error_with_its_stderr() {
        let e = measure(
            Command::new("sh").args(["-c", "echo broken >&2; exit 3"]),
            "a failing shell",
        )
        .unwrap_err();
        assert!(e.to_string().contains("broken"), "{e}");
    }
}
