//! The guest's memory allocator: power-of-two size classes with free lists,
//! in front of the system allocator (dlmalloc on wasm32-wasip2). It sits
//! under every hook: each string and list the host lowers into a hook
//! (`cabi_realloc`) and each one the hook returns is allocated here and
//! freed in the post-return, ~50 times per request for a three-plugin
//! chain. dlmalloc spends ~350 instructions per malloc/free pair there and
//! talc ~450 (callgrind, docs/performance-passes.md); a free-list pop or push is a
//! few dozen.
//!
//! Blocks of 16 B to 4 KiB are carved from 64 KiB chunks and go back to
//! their class's free list, never to the system allocator: an instance's
//! memory stays at its peak per class, which the host bounds by recycling
//! instances (after `max_calls_per_instance` calls or when memory grew).
//! Larger blocks, and the rare alignment above 16, go to the system
//! allocator directly.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// The smallest class is 2^4 = 16 bytes, the largest 2^12 = 4 KiB.
const MIN_SHIFT: u32 = 4;
const MAX_SHIFT: u32 = 12;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Every block is aligned to this; larger alignments use the fallback.
const BLOCK_ALIGN: usize = 1 << MIN_SHIFT;
/// Size of the chunks blocks are carved from.
const CHUNK: usize = 64 * 1024;

/// Size-class allocator over `fallback`. Not thread-safe: the global
/// instance exists only on single-threaded wasm targets.
pub struct SizeClasses<A> {
    fallback: A,
    state: UnsafeCell<State>,
}

struct State {
    /// Per class, the first free block; a free block's first word points to
    /// the next one.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    bump: *mut u8,
    end: *mut u8,
}

impl<A: GlobalAlloc> SizeClasses<A> {
    pub const fn new(fallback: A) -> Self {
        SizeClasses {
            fallback,
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }

    /// A block from the class's free list, or carved from the chunk.
    ///
    /// # Safety
    /// No other call on `self` may run at the same time.
    unsafe fn take(&self, class: usize) -> *mut u8 {
        // SAFETY: the caller guarantees exclusive access to the state.
        let state = unsafe { &mut *self.state.get() };
        let head = state.free[class];
        if !head.is_null() {
            // SAFETY: `head` is a free block of this class; its first word
            // (16-byte aligned, so aligned for a pointer) links the next.
            state.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = class_size(class);
        if (state.end as usize) - (state.bump as usize) < size && !self.refill(state) {
            return ptr::null_mut();
        }
        let block = state.bump;
        // SAFETY: `size` bytes remain in the chunk (checked above).
        state.bump = unsafe { block.add(size) };
        block
    }

    /// Starts a new chunk; the old one's unused rest (< 4 KiB) is left
    /// behind. Out of line: once per 64 KiB, not on the hot path.
    #[cold]
    #[inline(never)]
    fn refill(&self, state: &mut State) -> bool {
        let Ok(layout) = Layout::from_size_align(CHUNK, BLOCK_ALIGN) else {
            return false;
        };
        // SAFETY: `layout` has a non-zero size.
        let chunk = unsafe { self.fallback.alloc(layout) };
        if chunk.is_null() {
            return false;
        }
        state.bump = chunk;
        // SAFETY: the chunk is CHUNK bytes long.
        state.end = unsafe { chunk.add(CHUNK) };
        true
    }

    /// Puts a block back on its class's free list.
    ///
    /// # Safety
    /// `block` came from [`Self::take`] for `class` and is no longer used;
    /// no other call on `self` may run at the same time.
    unsafe fn give(&self, block: *mut u8, class: usize) {
        // SAFETY: the caller guarantees exclusive access to the state.
        let state = unsafe { &mut *self.state.get() };
        // SAFETY: the block is at least 16 bytes and 16-byte aligned.
        unsafe { block.cast::<*mut u8>().write(state.free[class]) };
        state.free[class] = block;
    }
}

/// The class serving `layout`, or `None` for the fallback.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > BLOCK_ALIGN || layout.size() > class_size(CLASSES - 1) {
        return None;
    }
    let size = layout.size().max(BLOCK_ALIGN);
    // The power of two at or above `size`, as a shift.
    let shift = usize::BITS - (size - 1).leading_zeros();
    Some((shift - MIN_SHIFT) as usize)
}

const fn class_size(class: usize) -> usize {
    1 << (class + MIN_SHIFT as usize)
}

// SAFETY: the layout decides the class the same way in `alloc`, `dealloc`
// and `realloc`, so a block always returns to the list it came from; every
// block is a distinct, 16-byte aligned range of a live chunk at least
// `layout.size()` long; the fallback gets exactly the layouts it handed out.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SizeClasses<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            // SAFETY: exclusive access is the contract of this type.
            Some(class) => unsafe { self.take(class) },
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { self.fallback.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            // SAFETY: `block` was allocated with `layout`, so from `class`.
            Some(class) => unsafe { self.give(block, class) },
            // SAFETY: `block` came from the fallback with `layout`.
            None => unsafe { self.fallback.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid size for `layout.align()`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: `block` came from the fallback with `layout`.
            (None, None) => unsafe { self.fallback.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a fresh allocation, then a copy of the bytes both
                // blocks hold, then `block` freed with its own layout.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
// SAFETY: without the atomics feature a wasm module has one thread, so no
// two calls on the allocator ever overlap.
unsafe impl<A> Sync for SizeClasses<A> {}

#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: SizeClasses<System> = SizeClasses::new(System);

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn sizes_map_to_the_power_of_two_at_or_above_them() {
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(16, 8)), Some(0));
        assert_eq!(class_of(layout(17, 1)), Some(1));
        assert_eq!(class_of(layout(4096, 1)), Some(CLASSES - 1));
        assert_eq!(
            class_of(layout(4097, 1)),
            None,
            "large blocks use the fallback"
        );
        assert_eq!(
            class_of(layout(8, 32)),
            None,
            "alignment above 16 uses the fallback"
        );
    }

    #[test]
    fn blocks_are_aligned_distinct_and_reused_after_free() {
        let alloc = SizeClasses::new(System);
        unsafe {
            let blocks: Vec<*mut u8> = (0..5000).map(|_| alloc.alloc(layout(24, 8))).collect();
            for (i, &block) in blocks.iter().enumerate() {
                assert_eq!(block as usize % BLOCK_ALIGN, 0);
                block.write_bytes(i as u8, 24);
            }
            for (i, &block) in blocks.iter().enumerate() {
                assert!(std::slice::from_raw_parts(block, 24)
                    .iter()
                    .all(|&b| b == i as u8));
            }
            let freed = blocks[77];
            alloc.dealloc(freed, layout(24, 8));
            assert_eq!(
                alloc.alloc(layout(30, 4)),
                freed,
                "same class: the freed block"
            );
            assert_ne!(alloc.alloc(layout(24, 8)), freed);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_the_fallback() {
        let alloc = SizeClasses::new(System);
        unsafe {
            let mut block = alloc.alloc(layout(10, 1));
            let bytes: Vec<u8> = (0..10).collect();
            block.copy_from_nonoverlapping(bytes.as_ptr(), 10);
            let same = alloc.realloc(block, layout(10, 1), 16);
            assert_eq!(same, block, "growing within the class keeps the block");
            let mut size = 16;
            for new_size in [100, 3000, 10_000, 70_000, 200] {
                block = alloc.realloc(block, layout(size, 1), new_size);
                assert!(!block.is_null());
                assert_eq!(std::slice::from_raw_parts(block, 10), &bytes[..]);
                size = new_size;
            }
            alloc.dealloc(block, layout(size, 1));
        }
    }

    #[test]
    fn large_and_overaligned_blocks_come_from_the_fallback() {
        let alloc = SizeClasses::new(System);
        unsafe {
            let big = alloc.alloc(layout(100_000, 8));
            big.write_bytes(7, 100_000);
            alloc.dealloc(big, layout(100_000, 8));
            let aligned = alloc.alloc(layout(64, 64));
            assert_eq!(aligned as usize % 64, 0);
            alloc.dealloc(aligned, layout(64, 64));
        }
    }
}
