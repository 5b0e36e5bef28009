//! The benchmark's global allocator: mimalloc, as in `infrakit`, which the memory probes also
//! ask to count the bytes in use, so a report can tell the heap a group needs from what the
//! allocator keeps resident around it.
//!
//! Counting is off unless [`count`] is called: then every allocation costs one relaxed load
//! more, and the CPU and protocol measurements of the parent process are not disturbed by
//! threads contending for a shared counter. (Crates that count, such as `cap`, count always.)

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use mimalloc::MiMalloc;

/// mimalloc, with optional counting.
pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static IN_USE: AtomicIsize = AtomicIsize::new(0);

/// Starts counting. Bytes allocated before are not counted, and neither are their frees, so
/// call it first thing in a process whose heap is to be measured.
pub fn count() {
    ON.store(true, Ordering::SeqCst);
}

/// Bytes allocated and not freed since [`count`] (zero if it was not called).
pub fn in_use() -> u64 {
    IN_USE.load(Ordering::Relaxed).max(0) as u64
}

#[inline]
fn counted(delta: isize) {
    if ON.load(Ordering::Relaxed) {
        IN_USE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every call goes to mimalloc unchanged, with the caller's layout and pointer; the
// counting only reads sizes.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            counted(layout.size() as isize);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            counted(layout.size() as isize);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        counted(-(layout.size() as isize));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            counted(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_allocated_and_freed() {
        // Other tests allocate meanwhile: a block far larger than their noise.
        const BLOCK: u64 = 64 << 20;
        count();
        let before = in_use();
        let block = vec![1u8; BLOCK as usize];
        assert!(in_use() >= before + BLOCK / 2, "{} {before}", in_use());
        drop(block);
        assert!(in_use() < before + BLOCK / 2, "{} {before}", in_use());
    }
}
