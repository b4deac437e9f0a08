//! The public API of vmw-cloud, as a committed listing (`api.txt` beside
//! this crate's `Cargo.toml`): every `pub` item of `src/` — re-exports,
//! types, their public fields and variants, functions and methods with
//! their signatures — one line each, in file order. This test reads the
//! sources, makes the listing again and fails when it differs from the
//! committed one, so that every change to the API shows in review as a
//! change to `api.txt`. After a deliberate change, write the listing anew:
//!
//! ```sh
//! VMW_BLESS_API=1 cargo test -p vmw-cloud --test public_api
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// The signature starting at line `i`: the lines joined up to the first
/// `{` or `;` that ends it (or a `where` clause), whitespace collapsed.
fn signature(lines: &[&str], i: usize) -> String {
    let mut text = String::new();
    let mut depth = 0i32;
    for line in &lines[i..] {
        let mut previous = ' ';
        for c in line.trim().chars() {
            match c {
                '(' | '<' | '[' => depth += 1,
                // `->` closes nothing.
                '>' if previous == '-' => {}
                ')' | '>' | ']' => depth -= 1,
                '{' | ';' if depth <= 0 => return collapse(&text),
                _ => {}
            }
            text.push(c);
            previous = c;
        }
        if depth <= 0 && line.trim_start().starts_with("where") {
            break;
        }
        text.push(' ');
    }
    collapse(&text)
}

fn collapse(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut s = words.join(" ");
    for (from, to) in [
        ("( ", "("),
        (" )", ")"),
        ("< ", "<"),
        (" >", ">"),
        (",)", ")"),
        (", )", ")"),
    ] {
        s = s.replace(from, to);
    }
    s.trim_end_matches(" where").to_owned()
}

/// The paths a `pub use` starting at line `i` re-exports, one each:
/// `a::{B, C}` is `a::B` and `a::C`.
fn reexports(lines: &[&str], i: usize) -> Vec<String> {
    let mut text = String::new();
    for line in &lines[i..] {
        text.push_str(line.trim());
        text.push(' ');
        if line.contains(';') {
            break;
        }
    }
    let text = text
        .trim()
        .trim_start_matches("pub use ")
        .trim_end_matches(';');
    let text = collapse(text);
    match text.split_once('{') {
        Some((prefix, rest)) => rest
            .trim_end_matches('}')
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| format!("{prefix}{item}"))
            .collect(),
        None => vec![text],
    }
}

/// The name of the type a signature is about: what follows ` for ` in a
/// trait impl, else the first name after the keyword and its generics.
fn type_name(sig: &str) -> String {
    let rest = match sig.split_once(" for ") {
        Some((_, t)) => t,
        None => {
            let after = sig.split_once(' ').map_or("", |(_, r)| r);
            // `impl<G: Govc> Cloud<G>`: skip the impl's generics.
            if sig.starts_with("impl<") {
                let mut depth = 0;
                let mut end = 0;
                for (i, c) in sig.char_indices() {
                    match c {
                        '<' => depth += 1,
                        '>' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                sig[end..].trim_start()
            } else {
                after
                    .trim_start_matches("struct ")
                    .trim_start_matches("enum ")
                    .trim_start_matches("trait ")
            }
        }
    };
    rest.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The public items of one source file; `public_types` are the names of
/// the crate's public structs and enums (their trait impls are listed).
fn items(file: &str, text: &str, public_types: &[String]) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    // The item whose body we are in at column 0, and whether its public
    // members are API: an inherent impl of a public type, a public struct
    // or enum.
    let mut context: Option<(String, bool)> = None;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        if line.starts_with('}') {
            context = None;
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent == 0 {
            if trimmed.starts_with("impl") {
                let sig = signature(&lines, i);
                let public = public_types.contains(&type_name(&sig));
                if sig.contains(" for ") {
                    // Trait impls are listed with their trait, not their
                    // methods.
                    if public {
                        out.push(format!("{file}: {sig}"));
                    }
                    context = Some((sig, false));
                } else {
                    context = Some((sig, public));
                }
            } else if trimmed.starts_with("pub use ") {
                out.extend(
                    reexports(&lines, i)
                        .into_iter()
                        .map(|r| format!("{file}: pub use {r}")),
                );
            } else if trimmed.starts_with("pub ") {
                let sig = signature(&lines, i);
                out.push(format!("{file}: {sig}"));
                let is_type =
                    trimmed.starts_with("pub struct ") || trimmed.starts_with("pub enum ");
                context = is_type.then(|| (sig.clone(), true));
            } else if !(trimmed.is_empty() || trimmed.starts_with("//") || trimmed.starts_with('#'))
            {
                context = None;
            }
            continue;
        }
        let Some((owner, true)) = &context else {
            continue;
        };
        if indent != 4 {
            continue;
        }
        if trimmed.starts_with("pub fn ")
            || trimmed.starts_with("pub async fn ")
            || trimmed.starts_with("pub const ")
        {
            out.push(format!("{file}: {owner} :: {}", signature(&lines, i)));
        } else if owner.starts_with("pub struct ") && trimmed.starts_with("pub ") {
            out.push(format!(
                "{file}: {owner} . {}",
                trimmed.trim_end_matches(',')
            ));
        } else if owner.starts_with("pub enum ")
            && trimmed.chars().next().is_some_and(char::is_uppercase)
        {
            let variant: String = trimmed
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(format!("{file}: {owner} :: {variant}"));
        }
    }
    out
}

fn listing(src: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    // lib.rs first: the re-exports are the front door.
    files.sort_by_key(|p| p.file_name().is_none_or(|n| n != "lib.rs"));
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    let public_types: Vec<String> = texts
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter(|l| l.starts_with("pub struct ") || l.starts_with("pub enum "))
        .map(type_name)
        .collect();
    let mut out = String::new();
    for (name, text) in &texts {
        for item in items(name, text, &public_types) {
            out.push_str(&item);
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_public_api_is_the_committed_listing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let made = listing(&root.join("src"));
    let committed_path = root.join("api.txt");
    if std::env::var_os("VMW_BLESS_API").is_some() {
        std::fs::write(&committed_path, &made).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if made != committed {
        let gone: Vec<&str> = committed
            .lines()
            .filter(|l| !made.lines().any(|m| m == *l))
            .collect();
        let new: Vec<&str> = made
            .lines()
            .filter(|l| !committed.lines().any(|c| c == *l))
            .collect();
        panic!(
            "the public API changed; if that is meant, run\n  VMW_BLESS_API=1 cargo test -p vmw-cloud --test public_api\nand commit api.txt\n\nno longer there:\n  {}\n\nnew:\n  {}",
            gone.join("\n  "),
            new.join("\n  ")
        );
    }
}

#[test]
fn the_listing_sees_items_fields_variants_and_methods() {
    let text = "\
pub use a::B;
pub use c::{
    D, E as F,
};
/// A type.
pub struct S {
    /// A field.
    pub field: u32,
    hidden: u8,
}
pub enum E {
    /// One.
    One,
    Two { x: u8 },
}
impl S {
    pub fn new(
        field: u32,
    ) -> Self {
        todo!()
    }
    pub(crate) fn inner(&self) {}
    fn private(&self) {}
}
impl std::fmt::Display for S {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { todo!() }
}
pub(crate) fn helper() {}
#[cfg(test)]
mod tests {
    pub fn in_tests() {}
}
";
    assert_eq!(
        items("x.rs", text, &["S".to_owned(), "E".to_owned()]),
        [
            "x.rs: pub use a::B",
            "x.rs: pub use c::D",
            "x.rs: pub use c::E as F",
            "x.rs: pub struct S",
            "x.rs: pub struct S . pub field: u32",
            "x.rs: pub enum E",
            "x.rs: pub enum E :: One",
            "x.rs: pub enum E :: Two",
            "x.rs: impl S :: pub fn new(field: u32) -> Self",
            "x.rs: impl std::fmt::Display for S",
        ]
    );
}
