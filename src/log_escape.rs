//! Log lines that cannot be forged: whatever a value from outside holds (a webhook
//! receiver's error body, an operator's reason, a receipt's fields), control characters
//! in a written log line are escaped, so a newline, an escape sequence or a NUL cannot start
//! a fake line or repaint the terminal. Each event is written in one piece; only its final
//! newline is kept as it is.

use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Escapes control characters (but the line's final `\n`) as `\n`, `\r`, `\t` or `\u{…}`.
pub fn escape_line(line: &str) -> std::borrow::Cow<'_, str> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    if !body.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in body.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    if line.ends_with('\n') {
        out.push('\n');
    }
    std::borrow::Cow::Owned(out)
}

/// A writer for `tracing_subscriber::fmt` that escapes each event before it reaches `W`.
pub struct Escaping<W>(pub W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(escape_line(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Makes an [`Escaping`] standard-error writer per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedStderr;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = Escaping<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        Escaping(io::stderr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_final_newline_kept() {
        assert_eq!(escape_line("plain line\n"), "plain line\n");
        assert_eq!(
            escape_line("error=ok\n2026-01-01 INFO forged\n"),
            "error=ok\\n2026-01-01 INFO forged\n"
        );
        assert_eq!(
            escape_line("a\u{1b}[31mred\0\r\tb\n"),
            "a\\u{1b}[31mred\\u{0}\\r\\tb\n"
        );
        assert_eq!(escape_line("no newline\u{7}"), "no newline\\u{7}");
    }

    #[test]
    fn one_event_is_one_line_through_the_writer() {
        let mut w = Escaping(Vec::new());
        w.write_all(b"x=\"1\nFAKE\"\n").unwrap();
        let s = String::from_utf8(w.0).unwrap();
        assert_eq!(s.lines().count(), 1, "{s}");
    }
}
