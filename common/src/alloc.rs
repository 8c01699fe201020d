//! glibc malloc settings for processes that move large messages (the broker, the CLI).
//!
//! Fetch responses and produce requests are megabytes each. With glibc's defaults every such
//! buffer was `mmap`ed and unmapped again, or the heap top trimmed and grown back, so each
//! message paid page faults and zeroing of fresh pages: `weir bench consume` spent more time in
//! the kernel's page-fault and unmap paths than in decoding records. Keeping buffers up to
//! [`MMAP_THRESHOLD_BYTES`] in the heap and trimming it only past [`TRIM_THRESHOLD_BYTES`]
//! took consume from 4.3–5.2 to 6.3–7.2 M rec/s and produce over 1000 partitions from 2.25 to
//! 3.0 M rec/s (docs/benchmarks.md), for a few tens of MB more resident memory after a burst.

/// Allocations below this come from the heap, not from their own `mmap`.
pub const MMAP_THRESHOLD_BYTES: i32 = 32 * 1024 * 1024;

/// Free memory at the top of a heap beyond this is given back to the system.
pub const TRIM_THRESHOLD_BYTES: i32 = 64 * 1024 * 1024;

/// Applies the settings above (glibc on Linux; elsewhere nothing). Call first in `main`.
pub fn tune_for_large_messages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes plain integers and only changes allocator parameters; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
