//! Saving and restoring `errno` around the handler, which must not
//! change it for the code it interrupted. On the Unix targets that
//! `location` does not list (Solaris and illumos, AIX, Haiku, ...),
//! `errno` is not preserved: a system call the handler makes (the
//! wake-up `write`) may change the interrupted code's `errno`; the
//! `signal` module's docs say so.

/// The calling thread's `errno`, on the platforms that say where
/// it is.
fn location() -> Option<*mut libc::c_int> {
    // SAFETY: these functions only return the address of the
    // calling thread's `errno`.
    #[cfg(any(target_os = "linux", target_os = "emscripten", target_os = "redox"))]
    return Some(unsafe { libc::__errno_location() });
    #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
    return Some(unsafe { libc::__errno() });
    #[cfg(any(
        target_vendor = "apple",
        target_os = "freebsd",
        target_os = "dragonfly"
    ))]
    return Some(unsafe { libc::__error() });
    #[allow(unreachable_code)]
    None
}

pub(super) fn save() -> libc::c_int {
    // SAFETY: the thread's `errno` location is valid for the
    // thread's life.
    location().map_or(0, |errno| unsafe { *errno })
}

pub(super) fn restore(value: libc::c_int) {
    if let Some(errno) = location() {
        // SAFETY: as above.
        unsafe { *errno = value }
    }
}
