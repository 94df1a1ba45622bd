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
///
/// The process also takes no transparent huge pages (mimalloc asks for
/// them): the kernel zeroes 2 MiB at the first touch of each, most of it
/// for memory never used. Without them a `flowc run` of 10,000 SIP calls
/// peaked 14-25 MiB lower, with a quarter less system time at 1,000 calls
/// at once, and a million-contact simulation 10-30 MiB lower, no slower
/// (BENCHMARKS.md).
pub fn return_freed_memory() {
    // SAFETY: mi_option_set only stores the value, for any option number
    // below mimalloc's last; both are (see above).
    unsafe {
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(PURGE_DELAY, 100);
    }
    // SAFETY: PR_SET_THP_DISABLE takes an integer and sets a flag of the
    // process; a kernel without it answers EINVAL, and huge pages stay.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Gives back what this thread's heap holds of memory freed by other
/// threads (mimalloc collects a thread's heap only as the thread
/// allocates: an idle thread's would stay).
pub fn collect() {
    // SAFETY: mi_collect only walks the calling thread's heap.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_process_takes_no_transparent_huge_pages() {
        super::return_freed_memory();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        // Kernels before 5.0 do not show the flag.
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
        }
    }
}
