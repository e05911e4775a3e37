//! Learner text made harmless to show: whatever a program printed, a file
//! it named, a build's error line, a learner id. Control characters would
//! repaint a terminal (`ESC[2J`), set its title (OSC) or hide text
//! (`ESC[8m`); XML 1.0 forbids most of them; bidirectional overrides
//! reorder what a reader sees. Each is shown as an escape instead
//! (`\x1b`, `\u{202e}`), so the text stays readable and inert. Every output
//! format applies this at its boundary, then its own escaping (HTML and
//! Markdown, CSV formulas) on top.

use std::ffi::OsStr;

/// `text` with every character that could act on a display shown as an
/// escape; newlines and tabs kept (a program's output is lines).
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\n' | '\t' => out.push(ch),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            // C1 controls, and the characters that reorder or hide text.
            c if (0x80..=0x9f).contains(&(c as u32))
                || matches!(c as u32, 0x200b..=0x200f | 0x202a..=0x202e | 0x2066..=0x2069 | 0xfeff) =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `text` needs [`visible`] at all (most does not).
pub fn is_plain(text: &str) -> bool {
    text.chars().all(|c| {
        c == '\n'
            || c == '\t'
            || !((c as u32) < 0x20
                || c as u32 == 0x7f
                || (0x80..=0x9f).contains(&(c as u32))
                || matches!(c as u32, 0x200b..=0x200f | 0x202a..=0x202e | 0x2066..=0x2069 | 0xfeff))
    })
}

/// A file name as text: valid UTF-8 shown with [`visible`], any other byte
/// as `\xNN` (names made on Windows, or on purpose).
pub fn name(name: &OsStr) -> String {
    let bytes = name.as_encoded_bytes();
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(
            &visible(chunk.valid())
                .replace('\n', "\\x0a")
                .replace('\t', "\\x09"),
        );
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn control_characters_become_escapes_and_lines_stay_lines() {
        assert_eq!(
            visible("a\x1b[2Jb\x07\nc\u{202e}d"),
            "a\\x1b[2Jb\\x07\nc\\u{202e}d"
        );
        assert_eq!(visible("plain ✓ text\tok"), "plain ✓ text\tok");
        assert!(is_plain("plain ✓ text"));
        assert!(!is_plain("\x1b]0;title\x07"));
    }

    #[test]
    fn names_that_are_not_utf8_are_shown_byte_by_byte() {
        assert_eq!(name(OsStr::from_bytes(b"caf\xe9.c")), "caf\\xe9.c");
        assert_eq!(name(OsStr::from_bytes(b"a\nb")), "a\\x0ab");
    }
}
