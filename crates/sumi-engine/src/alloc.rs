//! Tuning of the C allocator for diffusion's large, short-lived buffers.
//!
//! glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap`
//! and returns it on free, so each VAE activation (up to 128 MiB at 512x512) and many
//! convolution buffers are faulted in and zeroed by the kernel page by page on every use. That
//! cost 15% of a VAE decode here (`sumi bench`: 39.4 -> 33.0 CPU s). Keeping freed memory in the
//! heap lets the next buffer of the same size reuse it; [`release_free`] hands it back to the
//! system when a model is unloaded.

/// Makes glibc keep freed memory for reuse: no `mmap` per large allocation and no trimming of
/// the heap on free. Call once at start, before the model loads. A no-op on other platforms.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Returns the heap's free pages to the system (after a model is dropped).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds unused.
    unsafe {
        libc::malloc_trim(0);
    }
}
