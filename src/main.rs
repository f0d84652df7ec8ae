//! The `weir` binary: everything lives in the library; see `weir::cli`.
//!
//! The binary allocates through jemalloc rather than glibc's malloc: its background
//! thread returns freed pages to the kernel, so RSS under long mixed traffic stays
//! flat (README "Memory"). The library keeps the system allocator, so tests and
//! embedders choose their own.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
