//! flowc: outbound call campaigns as code.

pub mod diagnostic;
pub mod source;
pub mod syntax;
pub mod check;
pub mod ir;
pub mod cli;
