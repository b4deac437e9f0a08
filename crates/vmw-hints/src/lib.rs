//! The one trait vmw's errors share, [`Hints`], and [`render`], which
//! prints an error with its causes once each.
//!
//! vmw's error types state a fact in their message and keep the error that
//! caused it as their `source()`, never in the message too; what would fix
//! the error is not part of the message either, but data a caller renders
//! as it likes (a command line prints it under the error, a library user
//! may show it in a dialog or ignore it). Every error type of vmw's crates
//! implements [`Hints`], and those that wrap another error include the
//! wrapped error's hints.
//!
//! ```
//! use vmw_hints::{Hints, render};
//!
//! #[derive(Debug)]
//! struct Outer(std::io::Error);
//! impl std::fmt::Display for Outer {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("reading the key failed")
//!     }
//! }
//! impl std::error::Error for Outer {
//!     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
//!         Some(&self.0)
//!     }
//! }
//! impl Hints for Outer {
//!     fn hints(&self) -> Vec<String> {
//!         vec!["check the file's permissions".to_owned()]
//!     }
//! }
//!
//! let e = Outer(std::io::Error::other("permission denied"));
//! assert_eq!(render(&e), "reading the key failed: permission denied");
//! assert_eq!(e.hints(), ["check the file's permissions"]);
//! ```

use std::error::Error;

/// What would fix an error, where that is known.
pub trait Hints {
    /// One sentence per way to fix the error, most useful first; empty when
    /// nothing useful is known. The hints of a wrapped error are included.
    fn hints(&self) -> Vec<String>;
}

impl<T: Hints + ?Sized> Hints for Box<T> {
    fn hints(&self) -> Vec<String> {
        (**self).hints()
    }
}

/// The error's message followed by each of its causes (`source()` chain),
/// joined by `": "`, or by a new line when a message spans several lines.
/// A cause whose message is already contained in what came before (an
/// error type outside vmw that repeats its source) is left out.
pub fn render(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !message.is_empty() && !text.contains(&message) {
            let separator = if text.contains('\n') || message.contains('\n') {
                "\n"
            } else {
                ": "
            };
            text.push_str(separator);
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    #[test]
    fn each_cause_once_in_order() {
        let e = Layer(
            "launch failed",
            Some(Box::new(Layer(
                "clone failed",
                Some(Box::new(Layer("connection reset", None))),
            ))),
        );
        assert_eq!(render(&e), "launch failed: clone failed: connection reset");
    }

    #[test]
    fn a_cause_repeated_by_its_wrapper_is_left_out() {
        let e = Layer(
            "user data: not valid YAML",
            Some(Box::new(Layer("not valid YAML", None))),
        );
        assert_eq!(render(&e), "user data: not valid YAML");
    }

    #[test]
    fn multi_line_messages_go_on_their_own_lines() {
        let e = Layer(
            "2 of the cleanup failed:\n  - a\n  - b",
            Some(Box::new(Layer("first cause", None))),
        );
        assert_eq!(
            render(&e),
            "2 of the cleanup failed:\n  - a\n  - b\nfirst cause"
        );
    }
}
