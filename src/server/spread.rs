//! Spreads client connections over the serving threads: a thread that accepts a connection
//! while another thread holds fewer open ones hands it to that thread, so connections opened
//! together (an SDK's or a gateway's keep-alive pool) do not all stay on the thread that woke
//! first.
//!
//! Why by hand: every serving thread accepts on a copy of one socket, the kernel wakes them all
//! on a new connection, and the first awake takes the whole backlog (a burst of 8 connections
//! landed on one of 2 threads in 5 runs of 6). `SO_REUSEPORT` sockets would spread by a hash of
//! the client's address, blind to how many connections each thread holds, and the connections
//! queued on one thread's socket would be reset when it closed. Counting each thread's open
//! connections sends each new one to a thread holding the fewest, whichever thread woke: a
//! burst opened together ends about even (two threads accepting at the same instant may both
//! pick the same emptiest thread: the counts are read, then one is raised). Connections that
//! end do not move, so threads can drift apart again until new ones arrive (each goes to the
//! emptiest).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// One thread's count of open connections, on a cache line of its own (each thread updates
/// its own as connections open and end).
#[derive(Default)]
#[repr(align(64))]
struct Count(AtomicUsize);

/// Every serving thread's open connections, and a way to hand one a connection.
pub struct Spread {
    open: Box<[Count]>,
    inboxes: Box<[mpsc::UnboundedSender<Handed>]>,
}

/// A connection accepted by one thread for another, with its place counted there and its
/// permit under `max_connections` (admitted by the thread that accepted it).
pub struct Handed {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub seat: Seat,
    pub permit: OwnedSemaphorePermit,
}

/// What a thread receives handed connections on.
pub type Inbox = mpsc::UnboundedReceiver<Handed>;

/// A connection's place in its thread's count, given back when the connection ends.
pub struct Seat {
    spread: Arc<Spread>,
    thread: usize,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.spread.open[self.thread]
            .0
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The thread a connection accepted by `me` goes to, given every thread's open connections:
/// `me`, unless another thread holds fewer than `me` does (then the first with the fewest).
/// Pure: the decision, apart from the counts it reads (one pass, no allocation per accept).
pub fn choose(open: impl IntoIterator<Item = usize>, me: usize) -> usize {
    let mut mine = 0;
    let mut fewest: Option<(usize, usize)> = None;
    for (thread, n) in open.into_iter().enumerate() {
        if thread == me {
            mine = n;
        }
        if fewest.is_none_or(|(_, least)| n < least) {
            fewest = Some((thread, n));
        }
    }
    match fewest {
        Some((thread, least)) if least < mine => thread,
        _ => me,
    }
}

impl Spread {
    /// Counts for `threads` serving threads, and each thread's inbox (index = thread).
    pub fn new(threads: usize) -> (Arc<Spread>, Vec<Inbox>) {
        let (senders, inboxes): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| mpsc::unbounded_channel()).unzip();
        let spread = Spread {
            open: (0..threads).map(|_| Count::default()).collect(),
            inboxes: senders.into_boxed_slice(),
        };
        (Arc::new(spread), inboxes)
    }

    /// Where a connection that thread `me` accepted now goes, and its place there.
    pub fn place(self: &Arc<Self>, me: usize) -> Seat {
        let open = self.open.iter().map(|c| c.0.load(Ordering::Relaxed));
        self.seat(choose(open, me))
    }

    /// A place on `thread`, counted from now on.
    pub fn seat(self: &Arc<Self>, thread: usize) -> Seat {
        let thread = thread.min(self.open.len().saturating_sub(1));
        self.open[thread].0.fetch_add(1, Ordering::Relaxed);
        Seat {
            spread: Arc::clone(self),
            thread,
        }
    }

    /// Hands `stream` to the thread its seat is on; gives it back when that thread no longer
    /// takes connections (it stopped accepting: the caller serves it, or closes it, itself).
    pub fn hand(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        seat: Seat,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), (TcpStream, Seat, OwnedSemaphorePermit)> {
        let to = seat.thread;
        // Out of this thread's reactor, into a plain socket any thread's can take.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                // The socket was deregistered, or is broken: the connection is lost either way.
                tracing::debug!(error = %e, "cannot hand a connection to another thread");
                return Ok(());
            }
        };
        let handed = Handed {
            stream,
            peer,
            seat,
            permit,
        };
        match self.inboxes[to].send(handed) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(back)) => match TcpStream::from_std(back.stream) {
                Ok(stream) => Err((stream, back.seat, back.permit)),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot take back a connection");
                    Ok(())
                }
            },
        }
    }
}

impl Seat {
    /// The thread this place is on.
    pub fn thread(&self) -> usize {
        self.thread
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_stays_unless_another_thread_holds_fewer() {
        assert_eq!(choose([0, 0], 0), 0, "a tie stays");
        assert_eq!(choose([0, 0], 1), 1);
        assert_eq!(choose([3, 3, 3], 2), 2);
        assert_eq!(choose([1, 0], 0), 1);
        assert_eq!(choose([2, 1, 1], 0), 1, "the first with the fewest");
        assert_eq!(choose([5, 4, 2], 1), 2);
        assert_eq!(choose([0], 0), 0);
    }

    #[test]
    fn a_burst_accepted_by_one_thread_ends_even() {
        let (spread, _inboxes) = Spread::new(4);
        // Thread 0 woke first and accepts all 10: they spread 3, 3, 2, 2.
        let seats: Vec<Seat> = (0..10).map(|_| spread.place(0)).collect();
        let mut per = [0; 4];
        for s in &seats {
            per[s.thread()] += 1;
        }
        assert_eq!(per, [3, 3, 2, 2]);
        // Connections that end give their place back.
        drop(seats);
        let open: Vec<usize> = spread
            .open
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .collect();
        assert_eq!(open, [0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn a_handed_connection_arrives_and_a_closed_inbox_gives_it_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (spread, mut inboxes) = Spread::new(2);
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = Arc::clone(&permits).try_acquire_owned().unwrap();
        let seat = spread.seat(1);
        assert!(spread.hand(stream, peer, seat, permit).is_ok());
        let handed = inboxes[1].recv().await.expect("handed over");
        assert_eq!(handed.peer, peer);
        assert_eq!(handed.seat.thread(), 1);
        // Thread 1 stopped taking connections: the next one comes back to the caller.
        inboxes[1].close();
        let stream = TcpStream::from_std(handed.stream).unwrap();
        let back = spread.hand(stream, peer, handed.seat, handed.permit);
        let (_stream, seat, permit) = back.expect_err("given back");
        assert_eq!(seat.thread(), 1);
        assert_eq!(permits.available_permits(), 0, "the permit travels with it");
        drop(permit);
        assert_eq!(permits.available_permits(), 1);
    }
}
