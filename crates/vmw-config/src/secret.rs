//! A string that must not be shown: the vCenter password.

use std::fmt;

/// A secret string, such as the vCenter password.
///
/// `Debug` and `Display` print `<redacted>`; the value is only reachable
/// through [`Secret::expose`], which vmw calls in one place: when it builds
/// the environment of a govc process. It is not `Serialize`, so it cannot
/// end up in JSON output by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value itself. Call this only to hand the value to the
    /// process that needs it, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.to_string(), "<redacted>");
        assert!(!format!("{s:?}{s}{s:#?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
