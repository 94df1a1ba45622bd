//! Syntax: the pest grammar, turned into an owned AST with spans. Only
//! `syntax::lower` and `syntax::parser` see pest types.

pub mod ast;
pub mod fmt;
mod limits;
mod lower;
mod parser;

use crate::diagnostic::Diagnostic;
use crate::source::FileId;

/// Parses one file. Always returns a tree (possibly partial) and every
/// syntax diagnostic found; the parser recovers at item boundaries.
pub fn parse(file: FileId, text: &str) -> (ast::File, Vec<Diagnostic>) {
    if let Some(diag) = limits::size(file, text) {
        return (ast::File::default(), vec![diag]);
    }
    parser::parse_file(file, text)
}

/// Parses with the grammar only, without building the tree: what the
/// benchmark compares the whole check against.
pub(crate) use lower::parse_duration;

pub fn parse_only(text: &str) -> bool {
    parser::grammar_accepts(text)
}
