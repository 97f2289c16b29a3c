//! Settings of the whole process, applied by every binary (the Lambda
//! functions and `tokenfn`) before it serves.

/// Keeps argon2id's working memory from staying resident.
///
/// Each password check takes 19 MiB (m=19456 KiB) and frees it. glibc gives
/// a block that large its own mapping and unmaps it on free, but after the
/// first such free it raises its mmap threshold to that size, so every later
/// check is served from the calling thread's arena, whose pages it keeps: a
/// few sign-ins on the blocking pool's threads left the local server holding
/// over 150 MiB. Setting the threshold explicitly turns that adjustment off,
/// and each check's memory goes back to the system when it ends.
pub fn release_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, under glibc's own
    // arena lock; it reads and writes no memory of ours.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
