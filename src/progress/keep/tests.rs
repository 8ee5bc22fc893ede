//! Tests of kept answers: bounds, reading after event N, live, whole, and failures.

use super::*;
use crate::apis::Api;

fn sse_head() -> KeptHead {
    KeptHead {
        status: 200,
        content_type: Some("text/event-stream".into()),
        content_encoding: None,
    }
}

async fn drain(f: &mut Follow) -> Result<Vec<u8>, FollowError> {
    let mut out = Vec::new();
    while let Some(b) = f.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

#[tokio::test]
async fn replays_after_event_n_then_follows_live_to_the_end() {
    let keeper = Keeper::new(1 << 20, Duration::from_secs(60), 10);
    let k = keeper.begin(
        (&Arc::from("a"), Api::OpenAi),
        None,
        1 << 20,
        Instant::now(),
    );
    k.head(sse_head());
    assert!(k.data(&Bytes::from_static(b"data: 1\n\ndata: ")));
    assert!(k.data(&Bytes::from_static(b"2\n\n: c\n\n")));
    let mut after_one = k.follow(1);
    let mut after_three = k.follow(3);
    // Event 1 ends inside the first chunk: its rest, then the next chunk, as slices.
    assert_eq!(after_one.next().await.unwrap().unwrap(), &b"data: "[..]);
    assert_eq!(
        after_one.next().await.unwrap().unwrap(),
        Bytes::from_static(b"2\n\n: c\n\n")
    );
    let writer = Arc::clone(&k);
    let late = async move {
        writer.data(&Bytes::from_static(b"data: 3\n\ndata: 4\n\n"));
        writer.end(KeptEnd::Complete);
    };
    let (rest, three, ()) = tokio::join!(drain(&mut after_one), drain(&mut after_three), late);
    assert_eq!(rest.unwrap(), b"data: 3\n\ndata: 4\n\n");
    assert_eq!(three.unwrap(), b"data: 4\n\n");
    let (head, chunks) = k.whole().await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        chunks.concat(),
        b"data: 1\n\ndata: 2\n\n: c\n\ndata: 3\n\ndata: 4\n\n"
    );
    assert_eq!(
        k.start(5),
        Err(FollowError::Beyond {
            events: 4,
            after: 5
        })
    );
}

#[tokio::test]
async fn past_a_bound_the_bytes_go_and_every_reader_gets_an_error() {
    let keeper = Keeper::new(200, Duration::from_secs(60), 10);
    let small = keeper.begin((&Arc::from("small"), Api::OpenAi), None, 60, Instant::now());
    small.head(sse_head());
    let mut live = small.follow(0);
    assert!(small.data(&Bytes::from_static(b"data: 1\n\n")));
    assert!(!small.data(&Bytes::from_static(b"data: 2\n\n")));
    assert!(small.overflowed());
    assert_eq!(keeper.used(), 0);
    // Dropped bytes are not given out, even those a reader could have had.
    assert!(matches!(
        live.next().await,
        Some(Err(FollowError::Overflow(_)))
    ));
    assert!(live.next().await.is_none());
    assert!(matches!(small.whole().await, Err(FollowError::Overflow(_))));
    // A clean end later does not hide it.
    small.end(KeptEnd::Complete);
    assert!(matches!(small.start(0), Err(FollowError::Overflow(_))));

    let a = keeper.begin((&Arc::from("a"), Api::OpenAi), None, 150, Instant::now());
    let b = keeper.begin((&Arc::from("b"), Api::OpenAi), None, 150, Instant::now());
    assert!(a.data(&Bytes::from(vec![b'x'; 70])));
    assert_eq!(keeper.used(), 70 + CHUNK_OVERHEAD);
    assert!(!b.data(&Bytes::from(vec![b'y'; 70])), "the total is 200");
    assert_eq!(keeper.used(), 70 + CHUNK_OVERHEAD);
    // Many tiny chunks are charged their overhead too.
    let c = keeper.begin((&Arc::from("c"), Api::OpenAi), None, 60, Instant::now());
    assert!(c.data(&Bytes::from_static(b"d")));
    assert!(!c.data(&Bytes::from_static(b"d")), "{}", keeper.used());
    drop(a);
    keeper.begin((&Arc::from("a"), Api::OpenAi), None, 150, Instant::now());
    assert_eq!(keeper.used(), 0, "a replaced entry gives its bytes back");
}

#[tokio::test]
async fn foreign_and_unknown_ids_are_not_found_and_finished_ones_expire() {
    let keeper = Keeper::new(1 << 20, Duration::from_millis(0), 10);
    let owner = crate::config::tokens::find("token-a", &["token-a".into()]).unwrap();
    let k = keeper.begin(
        (&Arc::from("x"), Api::OpenAi),
        Some(owner),
        100,
        Instant::now(),
    );
    assert!(keeper.find("x", Some(owner)).is_some());
    assert!(keeper.find("x", None).is_none());
    assert!(
        keeper
            .find(
                "x",
                Some(crate::config::tokens::find("token-b", &["token-b".into()]).unwrap())
            )
            .is_none()
    );
    assert!(keeper.find("y", Some(owner)).is_none());
    k.end(KeptEnd::Complete);
    // Retained for zero time: gone at the next look.
    assert!(keeper.find("x", Some(owner)).is_none());
}

#[tokio::test]
async fn a_failed_stream_gives_its_bytes_then_an_error() {
    let keeper = Keeper::new(1 << 20, Duration::from_secs(60), 10);
    let k = keeper.begin(
        (&Arc::from("f"), Api::OpenAi),
        None,
        1 << 20,
        Instant::now(),
    );
    k.head(sse_head());
    k.data(&Bytes::from_static(b"data: 1\n\n"));
    k.end(KeptEnd::Failed("reset".into()));
    let mut f = k.follow(0);
    assert_eq!(f.next().await.unwrap().unwrap(), &b"data: 1\n\n"[..]);
    assert!(matches!(f.next().await, Some(Err(FollowError::Failed(_)))));
    assert!(matches!(k.whole().await, Err(FollowError::Failed(_))));
    k.client_left(Instant::now());
    k.resumed(1);
    let d = k.disconnected().unwrap();
    assert!(d.client_left_ms.is_some() && d.upstream_done_ms.is_some());
    assert_eq!(d.resumes.len(), 1);
}
