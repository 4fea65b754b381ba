//! The process's allocator settings (glibc malloc), set once at the start of `paxosd`
//! before any thread exists.
//!
//! glibc raises its mmap threshold every time a large block served by mmap is freed (up to
//! 32 MiB), after which blocks of that size come from the heap arenas and stay there once
//! freed. A replica allocates such blocks in bursts: catch-up chunks and log pages
//! (~100 KiB-1 MiB each), segment blocks, write-ahead-log frames. With the dynamic
//! threshold each burst left a follower 10-25 MiB larger for good (`bench/growth.sh`:
//! a restarted follower 50 MiB after catching up 300k slots, 37 MiB with the threshold
//! fixed). Fixing the threshold at [`MMAP_THRESHOLD_BYTES`] hands every such block back
//! to the kernel when it is freed, and [`TRIM_THRESHOLD_BYTES`] returns a heap's free top
//! once it exceeds that much. Small allocations (messages, entries) are unaffected.

/// Allocations at least this large are served by mmap and unmapped when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;
/// A heap's free top above this much is returned to the kernel.
pub const TRIM_THRESHOLD_BYTES: i32 = 1024 * 1024;

/// Applies the settings above (glibc only; elsewhere the allocator's defaults stand).
/// Returns false if glibc refused one of them.
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes malloc's parameters; it is called before any
        // other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}
