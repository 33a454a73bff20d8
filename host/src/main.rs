//! The `tailgate` binary: the command line in `tailgate::cli`.

mod allocator;

/// mimalloc instead of glibc's malloc: a request makes and frees many small
/// blocks (header maps, strings, buffers); glibc's `malloc`/`free`/
/// `malloc_consolidate` were ~15 % of the proxy's CPU (docs/performance-passes.md).
#[global_allocator]
static GLOBAL: allocator::Mimalloc = allocator::Mimalloc;

/// mimalloc's `arena_eager_commit` option (`mi_option_arena_eager_commit`
/// in `mimalloc.h`; the sys crate has no constant for it).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// On Linux (overcommit) mimalloc commits whole arenas eagerly by default,
/// which kept ~20 MiB more resident than glibc: commit on demand instead
/// (what `MIMALLOC_ARENA_EAGER_COMMIT=0` does). Runs as an ELF constructor,
/// before the Rust runtime's first allocation reserves the first arena
/// (setting it at the start of `main` is too late).
extern "C" fn commit_arenas_on_demand() {
    // SAFETY: sets a plain integer option; nothing else runs yet.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
    }
}

#[allow(unsafe_code)]
#[used]
#[cfg_attr(target_os = "linux", link_section = ".init_array")]
static COMMIT_ARENAS_ON_DEMAND: extern "C" fn() = commit_arenas_on_demand;

/// Give the memory the calling thread freed back to the system (the proxy
/// calls it as a worker goes idle, at most once a second per thread).
fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any
    // thread at any time; it only returns free pages of mimalloc's heaps.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

fn main() -> std::process::ExitCode {
    tailgate::cli::main_with(Some(release_free_memory))
}
