//! flowc: outbound call campaigns as code.

pub mod diagnostic;
pub mod source;
pub mod syntax;
