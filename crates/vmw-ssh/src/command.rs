//! Commands to run in a guest, and their results.

use std::fmt;

/// A command for [`crate::Guest::execute`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// A shell command line, run as `sh -c <line>`.
    Shell(String),
    /// A program and its arguments, each passed as it is (quoted for the
    /// remote shell, so spaces, quotes and Unicode survive).
    Argv(Vec<String>),
}

impl From<&str> for Cmd {
    fn from(s: &str) -> Self {
        Cmd::Shell(s.to_owned())
    }
}

impl From<String> for Cmd {
    fn from(s: String) -> Self {
        Cmd::Shell(s)
    }
}

impl<S: Into<String>> From<Vec<S>> for Cmd {
    fn from(v: Vec<S>) -> Self {
        Cmd::Argv(v.into_iter().map(Into::into).collect())
    }
}

impl<S: Into<String> + Clone, const N: usize> From<[S; N]> for Cmd {
    fn from(v: [S; N]) -> Self {
        Cmd::Argv(v.into_iter().map(Into::into).collect())
    }
}

/// Quotes `s` for a POSIX shell: `'...'`, with each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

impl Cmd {
    /// The line sent to the SSH server (which hands it to the user's login
    /// shell). With `sudo`, the command runs under `sudo -n` (never prompts:
    /// a password requirement is a failed command, not a hang).
    pub fn remote_line(&self, sudo: bool) -> String {
        let body = match self {
            Cmd::Shell(line) => format!("sh -c {}", shell_quote(line)),
            Cmd::Argv(argv) => argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        };
        if sudo {
            format!("sudo -n -- {body}")
        } else {
            body
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cmd::Shell(line) => f.write_str(line),
            Cmd::Argv(argv) => f.write_str(
                &argv
                    .iter()
                    .map(|a| {
                        if !a.is_empty()
                            && a.chars()
                                .all(|c| c.is_alphanumeric() || "-_./=:,@+".contains(c))
                        {
                            a.clone()
                        } else {
                            shell_quote(a)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    }
}

/// How to run a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Run it with `sudo -n`.
    pub sudo: bool,
    /// Bytes to feed to its standard input (then end of input). Without,
    /// standard input is empty.
    pub stdin: Option<Vec<u8>>,
}

impl ExecOptions {
    /// With sudo.
    pub fn sudo() -> Self {
        Self {
            sudo: true,
            stdin: None,
        }
    }
}

/// What a command did. A non-zero exit is a result, not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// Standard output as text, without its trailing newline.
    pub stdout: String,
    /// Standard error as text, without its trailing newline.
    pub stderr: String,
    /// The exit status (`None` when the command was killed by a signal).
    pub exit_status: Option<u32>,
    /// The signal that killed the command, if one did.
    pub signal: Option<String>,
}

impl ExecResult {
    /// Builds a result from raw output, trimming one trailing newline.
    pub fn from_raw(
        stdout: &[u8],
        stderr: &[u8],
        exit_status: Option<u32>,
        signal: Option<String>,
    ) -> Self {
        Self {
            stdout: trim_newline(String::from_utf8_lossy(stdout).into_owned()),
            stderr: trim_newline(String::from_utf8_lossy(stderr).into_owned()),
            exit_status,
            signal,
        }
    }

    /// Whether the command exited 0.
    pub fn ok(&self) -> bool {
        self.exit_status == Some(0)
    }

    /// Whether it did not.
    pub fn failed(&self) -> bool {
        !self.ok()
    }

    /// A one-line account of a failure: status and the end of stderr.
    pub fn describe(&self) -> String {
        let status = match (&self.exit_status, &self.signal) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_owned(),
        };
        let tail: String = self
            .stderr
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" / ");
        if tail.is_empty() {
            status
        } else {
            format!("{status}: {tail}")
        }
    }
}

fn trim_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_lines_quote_everything() {
        assert_eq!(
            Cmd::from("echo $HOME | wc -c").remote_line(false),
            "sh -c 'echo $HOME | wc -c'"
        );
        assert_eq!(
            Cmd::from(["printf", "%s", "it's a \"test\" ü"]).remote_line(false),
            r#"'printf' '%s' 'it'\''s a "test" ü'"#
        );
        assert_eq!(
            Cmd::from("id -u").remote_line(true),
            "sudo -n -- sh -c 'id -u'"
        );
        assert_eq!(Cmd::from(["ls", "a b"]).to_string(), "ls 'a b'");
    }

    #[test]
    fn results_trim_one_newline() {
        let r = ExecResult::from_raw(b"out\n\n", b"err\n", Some(0), None);
        assert_eq!(r.stdout, "out\n");
        assert_eq!(r.stderr, "err");
        assert!(r.ok() && !r.failed());
        let r = ExecResult::from_raw(b"", b"a\nb\nc\nd\n", Some(2), None);
        assert!(r.failed());
        assert_eq!(r.describe(), "exit status 2: b / c / d");
        let r = ExecResult::from_raw(b"", b"", None, Some("KILL".into()));
        assert_eq!(r.describe(), "killed by signal KILL");
    }
}
