//! Which serving thread this is: its home. Work that keeps per-thread state (a plain-http
//! route's idle upstream connections) keys it by home, so a connection is used by the thread
//! whose runtime drives its I/O.
//!
//! The server sets each worker thread's home once, as the thread starts (`server::workers`);
//! every other thread (the first worker, tests, the writer) is home 0.

use std::cell::Cell;

/// Homes beyond this share slots (`get` wraps): threads that share a home share its finish
/// queue (driven by the first of them) and its idle upstream connections, correct but with
/// wakes across threads. Per home, a route keeps one cache line of idle stack and the app one
/// finish queue: 256 of each is a few tens of KiB.
pub const HOMES: usize = 256;

thread_local! {
    static HOME: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread home `index` (taken modulo [`HOMES`]).
pub fn set(index: usize) {
    HOME.with(|h| h.set(index % HOMES));
}

/// The calling thread's home, below [`HOMES`].
pub fn get() -> usize {
    HOME.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_is_home_0_until_set_and_homes_wrap() {
        std::thread::spawn(|| {
            assert_eq!(get(), 0);
            set(3);
            assert_eq!(get(), 3);
            set(HOMES + 2);
            assert_eq!(get(), 2);
        })
        .join()
        .map_err(|_| "the thread panicked")
        .unwrap();
        assert_eq!(get(), 0, "another thread's home is its own");
    }
}
