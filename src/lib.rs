//! flowc: outbound call campaigns as code.

pub mod allocator;
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
pub mod record;
pub mod report;
pub mod runtime;
pub mod server;
pub mod source;
pub mod store;
pub mod syntax;

/// `f` over the two halves of `items` at once, one on another thread, the
/// results in order; `f` gets each half's offset in `items`. For the work
/// of a large report that is the same for every contact.
pub(crate) fn on_two_threads<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(usize, &[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    let half = items.len() / 2;
    std::thread::scope(|s| {
        let second = s.spawn(|| f(half, &items[half..]));
        let mut out = f(0, &items[..half]);
        out.extend(second.join().expect("the other half does not panic"));
        out
    })
}
