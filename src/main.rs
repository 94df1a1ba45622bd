use std::process::ExitCode;

/// mimalloc: the engine allocates and frees per call on one thread while the
/// store's writer frees those writes on another; the system allocator's
/// arena lock made the two wait on each other (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    flowc::allocator::return_freed_memory();
    flowc::cli::main()
}
