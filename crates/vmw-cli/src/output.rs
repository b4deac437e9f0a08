//! Data on stdout: plain lines and tables, or one JSON document.

use std::io::Write;

use serde::Serialize;
use vmw_cloud::Kind;
use vmw_cloud::PowerState;

/// Writes `text` to stdout; a closed pipe (`vmw list | head`) is not an
/// error.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("writing to standard output: {e}")),
    }
}

/// Writes `text` and a newline to stdout.
pub(crate) fn line(text: &str) -> anyhow::Result<()> {
    print(&format!("{text}\n"))
}

/// Writes `value` as one pretty-printed JSON document to stdout.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    line(&text)
}

/// Rows as aligned columns, with a header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let render = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.push_str(cell);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = render(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A power state as a word: `on`, `off`, `suspended`, or vSphere's own.
pub(crate) fn power_word(state: &PowerState) -> String {
    match state {
        PowerState::On => "on".to_owned(),
        PowerState::Off => "off".to_owned(),
        PowerState::Suspended => "suspended".to_owned(),
        PowerState::Other(s) => s.clone(),
    }
}

/// `instance`, `image` or `template`.
pub(crate) fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Instance => "instance",
        Kind::Image => "image",
        Kind::Template => "template",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["NAME", "IP"],
            &[
                vec!["a".into(), "1.2.3.4".into()],
                vec!["longer".into(), "-".into()],
            ],
        );
        assert_eq!(t, "NAME    IP\na       1.2.3.4\nlonger  -\n");
    }
}
