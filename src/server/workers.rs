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
//! wakes every thread on a new connection and one wins it; a thread that wins a connection
//! while another holds fewer hands it over (`spread`). The first serving thread is the
//! caller's (the server's main loop, which also reloads and stops). Each thread here is named,
//! joined at the end, and its runtime kept until every tracked task has drained. A panic in a
//! thread's accept loop stops the server (`Serving::failed`): that thread's runtime runs on,
//! so its connections drain with the others', and the process exits with an error rather than
//! serve on with a share of its threads gone and nobody told. (A task's panic ends that task
//! only.)

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
        if let Some(limit) = open_file_limit().filter(|_| extra > 0) {
            let max_connections = serving.max_connections();
            match check_files(extra, max_connections, limit) {
                Ok(None) => {}
                Ok(Some(warning)) => tracing::warn!("{warning}"),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let (closing, closed) = tokio::sync::mpsc::channel(1);
        let mut workers = Workers {
            threads: Vec::with_capacity(extra),
            accepting: CancellationToken::new(),
            done: CancellationToken::new(),
            closed,
        };
        for home in 1..=extra {
            // The ones started end at once (`Drop`) on an error.
            let context = |e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "starting serving thread {} of {} (server.workers; each takes {FILES_PER_THREAD} open files): {e}",
                        home + 1,
                        extra + 1
                    ),
                )
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(context)?;
            let own = {
                use std::os::fd::AsFd;
                let fd = listener.as_fd().try_clone_to_owned().map_err(context)?;
                let _in = runtime.enter();
                TcpListener::from_std(std::net::TcpListener::from(fd)).map_err(context)?
            };
            let serving = Arc::clone(serving);
            // Taken here and kept outside the accept loop, so a thread whose loop failed still
            // serves what was handed to it, and a hand-over after that comes back.
            let inbox = std::cell::RefCell::new(serving.inbox(home));
            let (accepting, done) = (workers.accepting.clone(), workers.done.clone());
            let closing = closing.clone();
            let thread = std::thread::Builder::new()
                .name(format!("aloud-worker-{home}"))
                .spawn(move || {
                    crate::proxy::home::set(home);
                    let serve = async {
                        serving.start_thread();
                        accept(home, own, &inbox, &serving, &accepting).await;
                        drop(closing);
                    };
                    run_guarded(&runtime, serve, &done, || {
                        serving.failed.cancel();
                        tracing::error!(
                            thread = home,
                            "a serving thread panicked; stopping the server"
                        );
                        serving.close_inbox(inbox.borrow_mut().take())
                    });
                })
                .map_err(context)?;
            workers.threads.push(thread);
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

/// Runs `serve` (a thread's accept loop) on `runtime`, then keeps the runtime running its
/// tasks (connections, exchanges finishing) until `done`. When `serve` panics (a task's panic
/// is caught by its task), `failed` is called and what it returns is run, and the runtime
/// still runs until `done`: its connections, exchanges finishing and the upstream connections
/// shared with other threads drain as on any stop, instead of being cut with the runtime.
fn run_guarded<F: std::future::Future<Output = ()>>(
    runtime: &tokio::runtime::Runtime,
    serve: impl std::future::Future<Output = ()>,
    done: &CancellationToken,
    failed: impl FnOnce() -> F,
) {
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async {
            serve.await;
            done.cancelled().await;
        });
    }));
    if served.is_err() {
        let after = failed();
        let drained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                after.await;
                done.cancelled().await;
            });
        }));
        if drained.is_err() {
            tracing::error!("a serving thread panicked again while draining");
        }
    }
}

/// Open files each serving thread past the first takes: its runtime's epoll descriptor and
/// tokio's copy of it, its wake-up eventfd, its copy of tokio's signal socket (tokio makes one
/// with every I/O driver), and its copy of the listening socket (counted in /proc/PID/fd).
pub const FILES_PER_THREAD: usize = 5;

/// Files kept free for everything but client connections when checking the limit: the
/// listening sockets, the capture database, its spill, logs, a few upstream connections.
const FILES_RESERVED: usize = 64;

/// Whether `extra` serving threads fit under the open-file limit `limit`: an error when the
/// threads would leave less than [`FILES_RESERVED`] files, a warning when `max_connections`
/// connections would fit without the threads but not with them. Pure.
pub fn check_files(
    extra: usize,
    max_connections: usize,
    limit: u64,
) -> Result<Option<String>, String> {
    let threads = (extra * FILES_PER_THREAD) as u64;
    let workers = extra + 1;
    if threads + FILES_RESERVED as u64 > limit {
        return Err(format!(
            "server.workers = {workers} needs {threads} open files for its threads \
             ({FILES_PER_THREAD} each past the first), too many for the open-file limit of \
             {limit} (ulimit -n): raise the limit or lower workers"
        ));
    }
    let others = (max_connections + FILES_RESERVED) as u64;
    Ok((others <= limit && threads + others > limit).then(|| {
        format!(
            "server.workers = {workers} takes {threads} open files and server.max_connections \
             = {max_connections} up to as many more, past the open-file limit of {limit} \
             (ulimit -n): connections past it are refused by the system, not with aloud's 503"
        )
    }))
}

/// The process's soft limit on open files, from /proc/self/limits; `None` when unlimited or
/// unknown (not Linux).
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serving thread `me` accepts on `listener`, and takes the connections other threads hand
/// it, until `accepting` is cancelled; then it closes the socket and serves what was handed.
async fn accept(
    me: usize,
    listener: TcpListener,
    inbox: &std::cell::RefCell<Option<super::spread::Inbox>>,
    serving: &Serving,
    accepting: &CancellationToken,
) {
    // Put back if the loop panics, for the failure's drain to serve what it holds.
    struct PutBack<'a> {
        slot: &'a std::cell::RefCell<Option<super::spread::Inbox>>,
        inbox: Option<super::spread::Inbox>,
    }
    impl Drop for PutBack<'_> {
        fn drop(&mut self) {
            if let Some(inbox) = self.inbox.take() {
                *self.slot.borrow_mut() = Some(inbox);
            }
        }
    }
    let mut held = PutBack {
        slot: inbox,
        inbox: inbox.borrow_mut().take(),
    };
    let inbox = &mut held.inbox;
    loop {
        tokio::select! {
            () = accepting.cancelled() => break,
            Some(handed) = super::accept::next_handed(inbox) => serving.take_handed(handed),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serving.accepted(me, stream, peer),
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    serving.accept_failed(&e);
                    tokio::select! {
                        () = accepting.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            },
        }
    }
    serving.close_inbox(inbox.take()).await;
    drop(listener);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_that_leave_too_few_files_are_refused_and_a_tight_fit_is_warned() {
        assert_eq!(check_files(0, 4096, 1 << 20), Ok(None));
        assert_eq!(check_files(7, 4096, 1 << 20), Ok(None));
        // 219 threads past the first take 1,095 files: over a limit of 1,024.
        let refused = check_files(219, 4096, 1024).unwrap_err();
        assert!(refused.contains("server.workers = 220"), "{refused}");
        assert!(refused.contains("1024"), "{refused}");
        // They fit, but not with 4,000 connections as well.
        let warned = check_files(15, 4000, 4096).unwrap().expect("a warning");
        assert!(warned.contains("server.max_connections = 4000"), "{warned}");
        // Connections past the limit without any thread are the operator's choice.
        assert_eq!(check_files(15, 8000, 4096), Ok(None));
    }

    #[test]
    fn a_thread_whose_accept_loop_panics_reports_it_and_still_runs_its_tasks_until_done() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (finished, ended) = std::sync::mpsc::channel();
        // A connection's task, mid-exchange when the accept loop panics.
        runtime.spawn(async move {
            let _ = wait.await;
            finished.send("finished").unwrap();
        });
        let done = CancellationToken::new();
        let failed = CancellationToken::new();
        let thread = {
            let (done, failed) = (done.clone(), failed.clone());
            std::thread::spawn(move || {
                let serve = async { panic!("the accept loop panics") };
                run_guarded(&runtime, serve, &done, || {
                    failed.cancel();
                    std::future::ready(())
                });
            })
        };
        // The failure is reported while the thread runs on: the task is not cut.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !failed.is_cancelled() {
            assert!(std::time::Instant::now() < deadline, "no failure reported");
            std::thread::yield_now();
        }
        go.send(()).unwrap();
        assert_eq!(
            ended.recv_timeout(Duration::from_secs(10)),
            Ok("finished"),
            "the task ran on after the panic"
        );
        done.cancel();
        thread.join().expect("the thread ends without a panic");
    }

    #[test]
    fn the_open_file_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_file_limit().is_some_and(|n| n > 0));
        }
    }
}
