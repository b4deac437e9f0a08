//! [`Command`]: one govc invocation as an argument vector, never a shell
//! string.
//!
//! Flags are always written as a single `-name=value` argument, so a value
//! that starts with `-`, holds spaces, quotes or any Unicode reaches govc
//! as it is. Positional arguments (VM names, paths) come after `--`, which
//! ends flag parsing in govc (Go's `flag` package), so a VM named `-on` is a
//! VM name, not a flag.

use std::fmt;
use std::time::Duration;

/// One govc invocation: the subcommand, its flags and positional arguments,
/// plus how long the backend may let it run.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    name: String,
    flags: Vec<String>,
    positional: Vec<String>,
    timeout: Option<Duration>,
}

impl Command {
    /// A command running the govc subcommand `name` (e.g. `vm.clone`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            flags: Vec::new(),
            positional: Vec::new(),
            timeout: None,
        }
    }

    /// Adds `-name=value`.
    #[must_use]
    pub fn flag(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.flags.push(format!("-{name}={value}"));
        self
    }

    /// Adds `-name=value` when `value` is `Some`.
    #[must_use]
    pub fn flag_opt(self, name: &str, value: Option<impl fmt::Display>) -> Self {
        match value {
            Some(v) => self.flag(name, v),
            None => self,
        }
    }

    /// Adds `-name=true` or `-name=false`.
    #[must_use]
    pub fn switch(self, name: &str, on: bool) -> Self {
        self.flag(name, on)
    }

    /// Adds a positional argument; positionals follow a `--`.
    #[must_use]
    pub fn arg(mut self, value: impl Into<String>) -> Self {
        self.positional.push(value.into());
        self
    }

    /// Adds several positional arguments.
    #[must_use]
    pub fn args<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.positional.extend(values.into_iter().map(Into::into));
        self
    }

    /// Sets how long the backend lets this command run before it kills govc.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The govc subcommand, e.g. `vm.clone`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments passed to govc: subcommand, flags, then `--` and the
    /// positional arguments when there are any.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(2 + self.flags.len() + self.positional.len());
        argv.push(self.name.clone());
        argv.extend(self.flags.iter().cloned());
        if !self.positional.is_empty() {
            argv.push("--".to_owned());
            argv.extend(self.positional.iter().cloned());
        }
        argv
    }

    /// The positional arguments.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }

    /// The value of flag `-name`, if set (the last one when set twice).
    pub fn flag_value(&self, name: &str) -> Option<&str> {
        let prefix = format!("-{name}=");
        self.flags
            .iter()
            .rev()
            .find_map(|a| a.strip_prefix(&prefix))
    }

    /// The timeout set on this command, if any.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout
    }
}

/// Shows the command as a user could type it: `govc vm.power -on=true -- 'my vm'`.
/// For humans and logs only; nothing ever runs this text through a shell.
/// It holds no password: the password travels in the environment.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("govc")?;
        for a in &self.argv() {
            f.write_str(" ")?;
            write_quoted(f, a)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Command({self})")
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '=' | ':' | ',' | '@' | '+')
        });
    if plain {
        return f.write_str(s);
    }
    f.write_str("'")?;
    f.write_str(&s.replace('\'', r"'\''"))?;
    f.write_str("'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_single_arguments_and_positionals_follow_double_dash() {
        let c = Command::new("vm.power")
            .switch("on", true)
            .flag("annotation", "-starts with dash 'and' \"quotes\" ü")
            .arg("-on")
            .arg("my vm");
        assert_eq!(
            c.argv(),
            [
                "vm.power",
                "-on=true",
                "-annotation=-starts with dash 'and' \"quotes\" ü",
                "--",
                "-on",
                "my vm"
            ]
        );
        assert_eq!(c.positional(), ["-on", "my vm"]);
        assert_eq!(c.flag_value("on"), Some("true"));
        assert_eq!(c.flag_value("missing"), None);
        assert_eq!(
            c.to_string(),
            r#"govc vm.power -on=true '-annotation=-starts with dash '\''and'\'' "quotes" ü' -- -on 'my vm'"#
        );
    }

    #[test]
    fn a_command_without_positionals_has_no_double_dash() {
        let c = Command::new("about").switch("json", true);
        assert_eq!(c.argv(), ["about", "-json=true"]);
        assert!(c.positional().is_empty());
    }
}
