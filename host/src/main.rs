//! The `tailgate` binary: the command line in `tailgate::cli`.

/// mimalloc instead of glibc's malloc: a request makes and frees many small
/// blocks (header maps, strings, buffers); glibc's `malloc`/`free`/
/// `malloc_consolidate` were ~15 % of the proxy's CPU (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tailgate::cli::main()
}
