//! Callable time: when a dial may start, in the recipient's local time,
//! across daylight-saving changes and holidays; which zones a contact is in;
//! and when the next attempt of a contact may start under its retry rule and
//! its attempt limits. The campaign engine asks; this module answers.

pub mod holidays;
pub mod ics;
pub mod limits;
pub mod phone;
pub mod retry;
pub mod schedule;
pub mod zone;

pub use schedule::{Schedule, Stretch};
