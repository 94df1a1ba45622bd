//! Limits on the size and nesting of a source file, checked before parsing.
//! The parser, the checker and the IR are recursive; bounding nesting here
//! keeps every one of them far from the end of the stack, whatever the input.

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{FileId, Span};

/// Brackets, braces and `{…}` interpolations nested inside each other.
pub const MAX_NESTING: usize = 64;
/// A flow of 10,000 lines is about 400 KB; this leaves room for forty times more.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Code,
    Text,
}

/// A file over the size limit, as a diagnostic.
pub fn size(file: FileId, text: &str) -> Option<Diagnostic> {
    (text.len() > MAX_BYTES).then(|| {
        Diagnostic::new(
            Code::Syntax,
            format!("this file is too large ({} bytes)", text.len()),
        )
        .primary(
            Span::new(file, 0, 0),
            format!("flow files are limited to {MAX_BYTES} bytes"),
        )
        .help("split the campaign into files joined with `use`")
    })
}

/// The first place a piece of text (starting at `offset` in its file) nests
/// deeper than the limit, as a diagnostic.
pub fn nesting(file: FileId, text: &str, offset: usize) -> Option<Diagnostic> {
    let bytes = text.as_bytes();
    let mut stack: Vec<Mode> = vec![Mode::Code];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let mode = *stack.last().unwrap_or(&Mode::Code);
        match (mode, b) {
            (Mode::Code, b'/') if next == Some(b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            (Mode::Code, b'/') if next == Some(b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
                continue;
            }
            (Mode::Code, b'"') => stack.push(Mode::Text),
            (Mode::Code, b'{' | b'(' | b'[') => stack.push(Mode::Code),
            (Mode::Code, b'}' | b')' | b']') if stack.len() > 1 => {
                stack.pop();
            }
            (Mode::Text, b'\\') => i += 1,
            (Mode::Text, b'{' | b'}') if next == Some(b) => i += 1,
            (Mode::Text, b'{') => stack.push(Mode::Code),
            (Mode::Text, b'"' | b'\n') => {
                stack.pop();
            }
            _ => {}
        }
        if stack.len() > MAX_NESTING {
            let end = i + text[i..].chars().next().map_or(0, char::len_utf8);
            return Some(
                Diagnostic::new(Code::Syntax, "this is nested too deeply")
                    .primary(
                        Span::new(file, offset + i, offset + end),
                        format!("more than {MAX_NESTING} levels of brackets"),
                    )
                    .help("move the inner part into a step of its own and `goto` it"),
            );
        }
        i += 1;
    }
    None
}
