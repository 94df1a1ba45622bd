//! flowc: outbound call campaigns as code.

pub mod calendar;
pub mod check;
pub mod cli;
pub mod contacts;
pub mod diagnostic;
pub mod dialer;
pub mod graph;
pub mod ir;
pub mod lsp;
pub mod messaging;
pub mod plan;
pub mod report;
pub mod runtime;
pub mod server;
pub mod source;
pub mod store;
pub mod syntax;
