//! The serving threads past the first: each runs a single-threaded runtime of its own and
//! accepts on its own copy of the proxy's listening socket, so a connection, its requests and
//! their upstream connections stay on the one thread that accepted it.
//!
//! Why not tokio's work-stealing runtime: on two cores shared with the load generator and the
//! upstream, its wake-ups and steals between workers cost more than aloud's own work (82 µs of
//! CPU per request against 54 with one thread, benches/README.md, "Results after the
//! header-name and path-check work"). nginx's workers, and pingora's and envoy's, are the same
//! shape: one event loop per thread, a connection owned by one loop.
//!
//! Each thread's copy of the socket is a duplicate of the one file description, so the kernel
//! wakes every thread on a new connection and one wins it: the busier a thread, the fewer
//! connections it wins. The first serving thread is the caller's (the server's main loop, which
//! also reloads and stops). Each thread here is named, joined at the end, and its runtime kept
//! until every tracked task has drained.

use super::accept::Serving;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The threads started by [`Workers::start`].
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Cancelled at the first stop: the threads stop accepting and close their sockets.
    accepting: CancellationToken,
    /// Cancelled once every tracked task has ended: the threads drop their runtimes and end.
    done: CancellationToken,
    /// Ends (every sender dropped) once every thread has closed its socket.
    closed: tokio::sync::mpsc::Receiver<()>,
}

impl Workers {
    /// Starts `extra` serving threads on duplicates of `listener`, each serving with `serving`
    /// and known by its home (`proxy::home`) 1, 2, …
    pub fn start(extra: usize, listener: &TcpListener, serving: &Arc<Serving>) -> io::Result<Self> {
        let (closing, closed) = tokio::sync::mpsc::channel(1);
        let mut workers = Workers {
            threads: Vec::with_capacity(extra),
            accepting: CancellationToken::new(),
            done: CancellationToken::new(),
            closed,
        };
        for home in 1..=extra {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let own = {
                use std::os::fd::AsFd;
                let fd = listener.as_fd().try_clone_to_owned()?;
                let _in = runtime.enter();
                TcpListener::from_std(std::net::TcpListener::from(fd))?
            };
            let serving = Arc::clone(serving);
            let (accepting, done) = (workers.accepting.clone(), workers.done.clone());
            let closing = closing.clone();
            let thread = std::thread::Builder::new()
                .name(format!("aloud-worker-{home}"))
                .spawn(move || {
                    crate::proxy::home::set(home);
                    runtime.block_on(async move {
                        serving.start_thread();
                        accept(own, &serving, &accepting).await;
                        drop(closing);
                        // Its tasks (connections, exchanges finishing) run on this runtime.
                        done.cancelled().await;
                    });
                });
            match thread {
                Ok(t) => workers.threads.push(t),
                // The ones started end at once (`Drop`), as on every `?` above.
                Err(e) => return Err(e),
            }
        }
        Ok(workers)
    }

    /// No thread accepts from now on: returns once each has closed its copy of the socket, so
    /// the socket is closed when the caller closes its own.
    pub async fn stop_accepting(&mut self) {
        self.accepting.cancel();
        while self.closed.recv().await.is_some() {}
    }

    /// Once every tracked task has ended: the threads end, and this waits for them.
    pub async fn join(mut self) {
        self.accepting.cancel();
        self.done.cancel();
        let threads = std::mem::take(&mut self.threads);
        if threads.is_empty() {
            return;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a serving thread panicked");
                }
            }
        });
        if let Err(e) = joined.await {
            tracing::error!(error = %e, "cannot wait for the serving threads");
        }
    }
}

impl Drop for Workers {
    /// However `Workers` goes (a `start` that failed part way, a server future dropped without
    /// a stop): the threads stop accepting and end, instead of serving on unseen.
    fn drop(&mut self) {
        self.accepting.cancel();
        self.done.cancel();
    }
}

/// Accepts on `listener` until `accepting` is cancelled, then closes it.
async fn accept(listener: TcpListener, serving: &Serving, accepting: &CancellationToken) {
    loop {
        tokio::select! {
            () = accepting.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serving.serve(stream, peer),
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::select! {
                        () = accepting.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
        }
    }
    drop(listener);
}
