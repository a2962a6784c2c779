//! The C library's allocator settings (glibc's `mallopt`), for
//! [`crate::bench::steady_allocator`].

/// Sets glibc's mmap threshold to `mmap_threshold` bytes and its trim
/// threshold to the largest it takes (freed memory kept), which also stops
/// the mmap threshold moving with what the process frees. Returns whether
/// both were accepted (false off glibc).
pub fn keep_freed_memory(mmap_threshold: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let Ok(mmap) = libc::c_int::try_from(mmap_threshold) else {
            return false;
        };
        // SAFETY: mallopt only sets malloc's parameters; any value is
        // accepted or refused with 0.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = mmap_threshold;
        false
    }
}
