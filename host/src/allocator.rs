//! The process's global allocator (binary only, beneath every phase of the
//! request pipeline): mimalloc, entered through its plain `malloc` for
//! the alignments that `malloc` already gives, as Rust's own `System`
//! allocator does with glibc.
//!
//! The `mimalloc` crate's `MiMalloc` passes every allocation to
//! `mi_malloc_aligned`. Its fast path only serves a block of up to 1 KiB
//! whose free list happens to start aligned; anything larger (hyper's read
//! and write buffers, a request's boxed future, log lines) takes the
//! generic path and, unless the size is a power of two, over-allocates:
//! ~300 instructions against mimalloc's ~30 (callgrind, six such blocks per
//! plain pass-through request; docs/performance-passes-3.md section 18).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment mimalloc's `malloc` gives every block of at least this
/// many bytes (`MI_MAX_ALIGN_SIZE`, C's `max_align_t`; smaller blocks are
/// aligned to their size class, a multiple of 8).
const MALLOC_ALIGN: usize = 16;

/// mimalloc, as described in the module documentation.
pub struct Mimalloc;

/// Whether plain `malloc` gives `layout`'s alignment. Rust sizes are
/// multiples of their alignment, so `align <= size` rules out only the
/// blocks smaller than their alignment.
fn plain(layout: Layout) -> bool {
    layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size()
}

fn is_aligned(p: *mut c_void, align: usize) -> bool {
    (p as usize) & (align - 1) == 0
}

/// A block for `layout` from `plain` when that gives the alignment, else
/// from `aligned` (the plain and aligned forms of one mimalloc entry).
///
/// # Safety
/// `layout` has a non-zero size.
#[allow(unsafe_code)]
unsafe fn allocate(
    layout: Layout,
    plain_entry: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_entry: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    if plain(layout) {
        // SAFETY: a size of at least 1 (align <= size).
        let p = unsafe { plain_entry(layout.size()) };
        if p.is_null() || is_aligned(p, layout.align()) {
            return p.cast();
        }
        // SAFETY: `p` came from mimalloc just now.
        unsafe { mi::mi_free(p) };
    }
    // SAFETY: a power-of-two alignment (Layout's invariant).
    unsafe { aligned_entry(layout.size(), layout.align()).cast() }
}

// SAFETY (for the impl): every block comes from mimalloc and goes back to
// it through `mi_free`, which takes blocks of all of its entry points; a
// block from `mi_malloc`/`mi_zalloc`/`mi_realloc` is returned only when its
// address has the layout's alignment (checked, not assumed: otherwise it
// is freed and the aligned entry point serves the request).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: a non-zero size (GlobalAlloc's contract).
        unsafe { allocate(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { allocate(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (GlobalAlloc's
        // contract), so by mimalloc.
        unsafe { mi::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        if align <= MALLOC_ALIGN && align <= new_size {
            // SAFETY: `ptr` is a live block of this allocator.
            let p = unsafe { mi::mi_realloc(ptr.cast(), new_size) };
            if p.is_null() || is_aligned(p, align) {
                return p.cast();
            }
            // Moved to a block without the alignment (`ptr` is gone now):
            // move it once more, to an aligned one.
            // SAFETY: `p` holds `new_size` bytes of the contents; the new
            // block is as large and does not overlap it.
            unsafe {
                let q = mi::mi_malloc_aligned(new_size, align);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p.cast::<u8>(), q.cast::<u8>(), new_size);
                }
                mi::mi_free(p);
                return q.cast();
            }
        }
        // SAFETY: `ptr` is a live block of this allocator with `align`.
        unsafe { mi::mi_realloc_aligned(ptr.cast(), new_size, align).cast() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of small and large sizes, at every alignment up to a page,
    /// are aligned and usable, start zeroed when asked, and keep their
    /// contents through growing and shrinking.
    #[test]
    #[allow(unsafe_code)]
    fn blocks_are_aligned_and_keep_their_contents() {
        let a = Mimalloc;
        let sizes = [
            1usize, 7, 8, 15, 16, 24, 48, 100, 1024, 1100, 5640, 8192, 70_000,
        ];
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for &size in &sizes {
                let size = size.next_multiple_of(align);
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero sizes; each block is used within its
                // size and freed once, with the layout it has then.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert!(
                        !z.is_null() && (z as usize).is_multiple_of(align),
                        "zeroed {size}/{align}"
                    );
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);

                    let mut p = a.alloc(layout);
                    assert!(
                        !p.is_null() && (p as usize).is_multiple_of(align),
                        "{size}/{align}"
                    );
                    p.write_bytes(0xA5, size);
                    let mut now = size;
                    for new_size in [size * 3, (size / 2).max(align)] {
                        let old = Layout::from_size_align(now, align).expect("layout");
                        p = a.realloc(p, old, new_size);
                        assert!(
                            (p as usize).is_multiple_of(align),
                            "realloc {now}->{new_size}/{align}"
                        );
                        let kept = now.min(new_size);
                        let bytes = std::slice::from_raw_parts(p, kept);
                        assert!(bytes.iter().all(|&b| b == 0xA5), "{now}->{new_size}");
                        p.add(kept).write_bytes(0xA5, new_size - kept);
                        now = new_size;
                    }
                    a.dealloc(p, Layout::from_size_align(now, align).expect("layout"));
                }
            }
        }
    }
}
