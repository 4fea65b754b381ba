//! The process's allocator: glibc malloc's settings, set once at the start of `paxosd`
//! before any thread exists ([`tune`]), and giving its free pages back once a busy
//! period ends ([`trim`], called by the flusher thread after its idle checkpoint).
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

/// Hands the free memory of every malloc arena back to the kernel (glibc `malloc_trim`:
/// whole free pages inside the heaps, not only their tops) and returns how long it took.
///
/// Under load a replica's heaps fill with freed buffers (client connections, batches,
/// chunks): measured on the leader of a 3-replica cluster after 256-client runs, ~3-7 MiB
/// in use, 25-30 MiB free, and RSS 40-44 MiB; trimmed every second, 19-24 MiB; after the
/// idle checkpoint and one trim, 17.6-19.2 MiB. One trim took 0.5 ms (median) to 5 ms
/// and holds each arena's lock meanwhile, so the flusher runs it once when a burst of
/// writes ends (after the idle checkpoint, see `node::IDLE_SWEEPS`).
pub fn trim() -> std::time::Duration {
    let started = std::time::Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe (it takes each arena's lock in turn).
    unsafe {
        libc::malloc_trim(0);
    }
    started.elapsed()
}
