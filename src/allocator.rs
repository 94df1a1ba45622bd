//! The allocator's settings. The `flowc` binary and the benchmarks allocate
//! through mimalloc (see `main.rs`); by default it keeps freed pages for a
//! while and commits its arenas up front, which a million-contact
//! simulation paid with about 60 MiB more at its peak (BENCHMARKS.md).

use libmimalloc_sys::{mi_option_set, mi_option_t};

// The options' places in `mi_option_e` of mimalloc.h (the same in the v2
// and v3 sources that libmimalloc-sys 0.1.49, pinned, builds).
const ARENA_EAGER_COMMIT: mi_option_t = 4;
const PURGE_DELAY: mi_option_t = 15;

/// Freed memory goes back to the system after 100 ms (at once, the
/// kernel's zeroing of the pages taken again cost a million-contact
/// simulation 0.7-1.4 s of system time; 100 ms keeps 15 MiB more at its
/// peak), and arenas are committed as they are used. Call first thing in
/// `main`: an arena made before keeps the default.
pub fn return_freed_memory() {
    // SAFETY: mi_option_set only stores the value, for any option number
    // below mimalloc's last; both are (see above).
    unsafe {
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(PURGE_DELAY, 100);
    }
}

/// Gives back what this thread's heap holds of memory freed by other
/// threads (mimalloc collects a thread's heap only as the thread
/// allocates: an idle thread's would stay).
pub fn collect() {
    // SAFETY: mi_collect only walks the calling thread's heap.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
