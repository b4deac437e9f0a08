//! What can go wrong while resolving the configuration.

use std::fmt;

use camino::Utf8PathBuf;

/// A configuration error. Every variant names the file or variable
/// involved; [`ConfigError::hints`] says what would fix it, where that is
/// known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file the caller named (argument or `PYCLOUDLIB_CONFIG`) does not exist.
    #[error("config file {path} ({named_by}) does not exist")]
    NamedFileMissing {
        /// The path that was named.
        path: Utf8PathBuf,
        /// Who named it: "given by the caller" or `PYCLOUDLIB_CONFIG`.
        named_by: String,
        /// The default locations, for the hint.
        defaults: PathList,
    },

    /// A config file exists but could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: Utf8PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// A config file is not valid TOML.
    #[error("{path}:{line}:{column}: invalid TOML: {message}")]
    Toml {
        /// The file.
        path: Utf8PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        message: String,
    },

    /// Values of the wrong type (all of them, in one error).
    #[error("{path}: wrong value type in [vmware]:\n{problems}")]
    WrongTypes {
        /// The file.
        path: Utf8PathBuf,
        /// One entry per bad key.
        problems: ProblemList,
    },

    /// An environment variable holds a value that cannot be used.
    #[error("environment variable {var}={value:?} is not valid: {expected}")]
    BadEnv {
        /// The variable.
        var: &'static str,
        /// Its value (never the password's).
        value: String,
        /// What it should look like.
        expected: &'static str,
    },

    /// `server` holds user info that cannot be read. The message names where
    /// the value came from and never shows it.
    #[error("`server` ({origin}) cannot be used: {problem}")]
    BadServer {
        /// Where the value came from.
        origin: crate::Origin,
        /// What is wrong with it.
        problem: crate::ServerUrlError,
    },

    /// Required values are missing (all of them, in one error).
    #[error("{}", missing_message(.keys, .file.as_ref(), .tried))]
    Missing {
        /// The missing keys, each with the variable that could also give it.
        keys: Vec<MissingKey>,
        /// The file they were looked for in, if one was found.
        file: Option<Utf8PathBuf>,
        /// The paths searched when no file was found.
        tried: Vec<Utf8PathBuf>,
    },
}

/// A required key that no source gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    /// The key in `[vmware]`.
    pub key: &'static str,
    /// The environment variable that could also give it.
    pub env: &'static str,
}

/// A list of paths, displayed comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathList(pub Vec<Utf8PathBuf>);

impl fmt::Display for PathList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A list of problems, displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemList(pub Vec<String>);

impl fmt::Display for ProblemList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

fn missing_message(
    keys: &[MissingKey],
    file: Option<&Utf8PathBuf>,
    tried: &[Utf8PathBuf],
) -> String {
    let names: Vec<&str> = keys.iter().map(|k| k.key).collect();
    match file {
        Some(path) => format!(
            "missing required key(s) in the [vmware] section of {path}: {}",
            names.join(", ")
        ),
        None => format!(
            "no config file found (tried: {}) and required value(s) missing: {}",
            PathList(tried.to_vec()),
            names.join(", ")
        ),
    }
}

impl ConfigError {
    /// What would fix this error, where that is known: data, for the
    /// caller to render (the message states only the fact).
    pub(crate) fn hint_list(&self) -> Vec<String> {
        match self {
            ConfigError::NamedFileMissing { defaults, .. } => {
                vec![format!("fix the path, or unset it to search {defaults}")]
            }
            ConfigError::BadServer { problem, .. } => vmw_hints::Hints::hints(problem),
            ConfigError::Missing { keys, .. } => {
                let vars: Vec<&str> = keys.iter().map(|k| k.env).collect();
                vec![format!(
                    "set them under [vmware] in the config file, or in the environment as {}",
                    vars.join(", ")
                )]
            }
            _ => Vec::new(),
        }
    }
}

impl vmw_hints::Hints for ConfigError {
    fn hints(&self) -> Vec<String> {
        self.hint_list()
    }
}
