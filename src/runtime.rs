//! Running compiled flows: expression evaluation, the per-contact
//! interpreter, and scenario tests. The interpreter asks for dials, keys and
//! transfers and is told what happened, so it knows nothing of clocks,
//! dialers or storage.

pub mod clock;
pub mod engine;
pub mod eval;
pub mod interpreter;
pub mod journal;
pub mod scenario;
pub mod simulate;
