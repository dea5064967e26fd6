//! Handing freed heap memory back to the system.
//!
//! glibc's allocator keeps one arena per thread that allocated, up to eight
//! per core, and returns to the system only what lies at the top of each.
//! After a burst (16 long sessions taking turns at once) the agent kept
//! about 10 MB of freed memory spread over its arenas. Capping the arenas
//! would cost throughput (measured: 2 arenas, −24 % turns/s), so instead a
//! service calls [`release_free_memory`] once it has gone idle, as the
//! gateway's jemalloc does by itself after a second.

/// Return the free pages of every malloc arena to the system
/// (`malloc_trim(0)`); `true` if any memory was released. A no-op returning
/// `false` where the allocator is not glibc's.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and is thread-safe (it locks
        // each arena while it trims it); any allocation may run meanwhile.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_goes_back_to_the_system() {
        let anonymous = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // Many small blocks, every other one kept: the freed ones cannot be
        // returned by shrinking the heap's top, only by a trim.
        let mut blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![i as u8; 1000]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter(|(i, _)| i % 8 == 0)
            .map(|(_, b)| b)
            .collect();
        let before = anonymous();
        assert!(release_free_memory(), "nothing was released");
        let after = anonymous();
        assert!(
            after + 10_000 < before,
            "RssAnon {before} kB before the trim, {after} kB after"
        );
        assert_eq!(kept.len(), 5_000);
    }
}
