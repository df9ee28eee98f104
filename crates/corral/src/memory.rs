//! Freed memory given back to the system when the proxy asks: after a proxy thread has
//! parked a burst of idle connections (`corral_proxy::set_memory_release`), whose tasks and
//! streams it freed together. mimalloc purges a free page's memory only when its segment is
//! next touched, so without this a burst stays resident until traffic returns.
#![allow(unsafe_code)] // one call into the allocator

/// Collects the calling thread's mimalloc heap: pages with nothing left in them are freed
/// and their memory returned to the system (`MADV_DONTNEED`, which lowers RSS at once).
pub fn release() {
    // SAFETY: `mi_collect` has no preconditions: any thread may call it at any time, and it
    // touches only memory nothing references (the free pages of the caller's heap).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
