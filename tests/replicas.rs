//! Two real `aloud` replicas behind a real nginx (round-robin), sharing one real Postgres for
//! capture and the side channel (issue 9, item 5): a subscriber follows a request served by the
//! other replica, beacons join their exchange, `aloud stats` counts each request once, a
//! SIGKILLed replica fails only its own in-flight requests and its spill is replayed when it
//! restarts, and a 10 s Postgres outage loses nothing.
#![allow(
    clippy::disallowed_methods,
    reason = "test tasks are joined before the test ends"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "replicas/fixture.rs"]
mod fixture;
mod support;

use fixture::{Setup, chat, completed, get, key, sse};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::binary::{access_lines, message};
use support::nginx::replica;
use support::post;
use support::postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_through_nginx_follows_a_request_served_by_the_other_replica() {
    let what = "a_subscriber_through_nginx_follows_a_request_served_by_the_other_replica";
    let Some(pg) = postgres::shared(what) else {
        return;
    };
    let Some(mut s) = Setup::start(what, pg, "").await else {
        return;
    };
    let id = "replicas-follow-000001";
    // Subscribe through nginx until round-robin lands the subscription on B (a subscription
    // that landed on A is dropped); nginx names the replica that answered.
    let mut answered = Vec::new();
    let mut on_b = None;
    for _ in 0..4 {
        let r = get(&s.nginx.url(&format!("/aloud/v1/progress/{id}"))).await;
        assert_eq!(r.status(), 200);
        answered.push(replica(&r));
        if replica(&r) == s.b.addr() {
            on_b = Some(r);
            break;
        }
    }
    let sub = on_b.unwrap_or_else(|| panic!("nginx never chose B: {answered:?}"));
    let reader = tokio::spawn(sse(sub));
    // B's interest reaches A over Postgres: the request waits for it, so that A knows of the
    // subscriber when the request begins (one that came later would get the state as of A's
    // next heartbeat, not `accepted`). B sent A nothing before this subscription: a probe
    // that landed on A asked B, and B, holding nothing, answered nothing.
    s.a.wait_metric_at_least("aloud_cluster_received_messages_total", 1)
        .await;
    // The request goes straight to A: the subscriber on B knows it only through the cluster.
    let r = chat(&s.a.url(""), id, 800, 4).await;
    assert!(completed(r).await);
    let events = tokio::time::timeout(fixture::DEADLINE, reader)
        .await
        .expect("the subscription on B ended")
        .unwrap();
    assert!(!events.is_empty(), "B's subscriber got nothing");
    let seqs: Vec<u64> = events.iter().map(|e| e.0.unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert_eq!(events[0].2["phase"], "accepted", "{events:?}");
    assert!(events.iter().any(|e| e.2["phase"] == "generating"));
    assert!(events.iter().all(|e| e.2["request_id"] == id));
    assert_eq!(events.last().unwrap().1, "aloud.done", "{events:?}");
    // A served it (its access-log line), B never did.
    s.a.bin
        .wait_json(|v| v["id"] == id && message(v).starts_with("proxied"))
        .await;
    assert_eq!(access_lines(&s.a.bin.json(), id).len(), 1);
    assert!(access_lines(&s.b.bin.json(), id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_join_their_exchange_and_stats_count_every_request_once() {
    let what = "beacons_join_their_exchange_and_stats_count_every_request_once";
    let Some(pg) = postgres::shared(what) else {
        return;
    };
    let Some(s) = Setup::start(what, pg, "").await else {
        return;
    };
    let n = 24;
    let mut served: BTreeMap<String, std::net::SocketAddr> = BTreeMap::new();
    for i in 0..n {
        let id = format!("replicas-stats-{i:06}");
        let r = chat(&s.nginx.url(""), &id, 5, 3).await;
        let at = replica(&r);
        assert!(completed(r).await, "{id}");
        served.insert(id, at);
    }
    let on_a: Vec<&String> = served
        .iter()
        .filter(|(_, at)| **at == s.a.addr())
        .map(|(id, _)| id)
        .collect();
    assert!(
        !on_a.is_empty() && on_a.len() < n,
        "round-robin served both: {served:?}"
    );
    // A beacon for a request A served, sent to B, once A's writer committed the record.
    let id = on_a[0].clone();
    s.wait_stored("A's record", |st| st.contains_key(&key(&id)))
        .await;
    let beacon = |kind: &str| s.b.url(&format!("/aloud/v1/requests/{id}/{kind}"));
    let h = [("content-type", "text/plain")];
    let r = post(&beacon("feedback"), &h, r#"{"score": 1, "label": "good"}"#).await;
    assert_eq!(r.status(), 204, "feedback through B");
    let r = post(
        &beacon("timings"),
        &h,
        r#"{"first_token_painted_ms": 123.5}"#,
    )
    .await;
    assert_eq!(r.status(), 204, "timings through B");
    let deadline = tokio::time::Instant::now() + fixture::DEADLINE;
    let joined = "SELECT c.id || ' ' || f.score || ' ' || (t.timings::jsonb->>'first_token_painted_ms') \
                  FROM captures c JOIN feedback f USING (id) JOIN client_timings t USING (id)";
    loop {
        let rows = s.sql(joined);
        if !rows.is_empty() {
            assert_eq!(rows, format!("{id} 1 123.5"), "one exchange, joined");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the beacons never joined"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The export's feedback filter finds exactly that exchange.
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_aloud"))
            .args(["export", "--format", "csv", "--min-score", "1"])
            .args(["--database", &s.url])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().count(), 2, "a header and the one:\n{csv}");
    assert!(csv.contains(&id), "{csv}");

    // `aloud stats` over the shared store: every request once, once both writers committed.
    let all: BTreeSet<String> = served.keys().map(|id| key(id)).collect();
    s.wait_stored("every request", |st| all.iter().all(|k| st.contains_key(k)))
        .await;
    let stored = s.stored();
    assert_eq!(stored.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(stored.values().all(|&c| c == 1), "{stored:?}");
    let rows = tokio::task::block_in_place(|| s.stats());
    let counted: u64 = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, n as u64, "{rows:#}");
}

/// Postgres refuses A's capture writes (a trigger keyed on A's `application_name`), so A's
/// records wait in its spill; then A is SIGKILLed with requests in flight on both replicas.
///
/// What the code guarantees: a record is built in an exchange's finish step, which a killed
/// process never reaches, so A's in-flight requests fail (the client's stream is cut) and are
/// not stored at all; what A's writer had committed stays, and what it had spilled (fsynced) is
/// replayed, each once, when A restarts on the same spill directory. (A record still queued in
/// memory at the kill would be lost: the test first waits until A's are in its spill.) B's
/// requests, in flight or new, all succeed, nginx sending new ones to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_replica_fails_only_its_own_requests_and_replays_its_spill() {
    let what = "a_sigkilled_replica_fails_only_its_own_requests_and_replays_its_spill";
    let Some(pg) = postgres::shared(what) else {
        return;
    };
    let Some(mut s) = Setup::start(what, pg, "?application_name=replica-a").await else {
        return;
    };
    // The schema exists once a writer wrote its first batch: one request straight to B.
    let warm = "replicas-kill-warm-00001";
    assert!(completed(chat(&s.b.url(""), warm, 0, 2).await).await);
    s.wait_stored("the first record", |st| st.contains_key(&key(warm)))
        .await;
    s.sql(
        "CREATE TABLE refused (app text PRIMARY KEY);
         INSERT INTO refused VALUES ('replica-a');
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF EXISTS (SELECT 1 FROM refused WHERE app = current_setting('application_name')) THEN
             RAISE EXCEPTION 'capture writes refused for %', current_setting('application_name');
           END IF;
           RETURN NULL;
         END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON captures FOR EACH STATEMENT EXECUTE FUNCTION refuse();",
    );
    let nginx = s.nginx.url("");
    let mut ok: BTreeSet<String> = BTreeSet::from([warm.to_owned()]);
    let mut on_a = Vec::new();
    for i in 0..8 {
        let id = format!("replicas-kill-before-{i:04}");
        let r = chat(&nginx, &id, 0, 3).await;
        let at = replica(&r);
        assert!(completed(r).await, "{id}");
        if at == s.a.addr() {
            on_a.push(id.clone());
        }
        ok.insert(id);
    }
    assert!(!on_a.is_empty() && on_a.len() < 8, "{on_a:?}");
    // A's records reach its spill (refused by Postgres), B's the store.
    let deadline = tokio::time::Instant::now() + fixture::RECOVERY;
    loop {
        let spill = s.a.spill_text();
        if on_a.iter().all(|id| spill.contains(id.as_str())) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's records never spilled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b_before: Vec<String> = ok
        .iter()
        .filter(|id| !on_a.contains(*id))
        .cloned()
        .collect();
    s.wait_stored("B's records", |st| {
        b_before.iter().all(|id| st.contains_key(&key(id)))
    })
    .await;
    assert!(
        s.stored()
            .keys()
            .all(|k| !on_a.iter().any(|id| key(id) == *k))
    );

    // Requests in flight on both (their heads came back at once; the answer takes 3 s).
    let mut flying = Vec::new();
    for i in 0..6 {
        let id = format!("replicas-kill-flying-{i:04}");
        let r = chat(&nginx, &id, 3000, 3).await;
        flying.push((id, replica(&r), r));
    }
    let flying_on_a = flying.iter().filter(|f| f.1 == s.a.addr()).count();
    assert!(flying_on_a > 0 && flying_on_a < 6, "in flight on both");
    let mark = s.b.bin.mark();
    s.a.bin.signal("KILL");
    let status = s.a.bin.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "{status}");
    let readers: Vec<_> = flying
        .into_iter()
        .map(|(id, at, r)| tokio::spawn(async move { (id, at, completed(r).await) }))
        .collect();
    // New traffic goes to B (A refuses connections; nginx passes the request on).
    for i in 0..6 {
        let id = format!("replicas-kill-after-{i:04}");
        let r = chat(&nginx, &id, 0, 3).await;
        assert_eq!(replica(&r), s.b.addr());
        assert!(completed(r).await, "{id}");
        ok.insert(id);
    }
    let mut failed = BTreeSet::new();
    for reader in readers {
        let (id, at, done) = reader.await.unwrap();
        if at == s.a.addr() {
            assert!(
                !done,
                "{id} was in flight on the killed replica yet completed"
            );
            failed.insert(id);
        } else {
            assert!(done, "{id}, in flight on B, failed");
            ok.insert(id);
        }
    }
    assert!(
        s.b.bin.log()[mark..]
            .iter()
            .all(|l| !l.contains("proxied, failed"))
    );

    // A back on the same spill directory, Postgres taking its writes again: the spill replays.
    s.sql("DELETE FROM refused");
    s.a.restart().await;
    let want: BTreeSet<String> = ok.iter().map(|id| key(id)).collect();
    s.wait_stored_within(fixture::RECOVERY, "every completed request", |st| {
        want.iter().all(|k| st.contains_key(k))
    })
    .await;
    let replayed =
        s.a.bin
            .wait_json(|v| message(v) == "capture spill replayed into the store")
            .await;
    assert!(
        replayed["replayed"].as_u64().unwrap() >= on_a.len() as u64,
        "{replayed}"
    );
    let stored = s.stored();
    assert!(stored.values().all(|&c| c == 1), "stored once: {stored:?}");
    assert_eq!(
        stored.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "exactly the completed ones; the killed ones ({failed:?}) are absent"
    );
}

/// Traffic through nginx at a steady pace while Postgres is down for 10 s: every request
/// succeeds, both replicas spill, and after Postgres is back every id is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_seconds_without_postgres_lose_nothing() {
    let what = "ten_seconds_without_postgres_lose_nothing";
    let Some(pg) = postgres::start(what) else {
        return;
    };
    let Some(s) = Setup::start(what, &pg, "").await else {
        return;
    };
    let nginx = s.nginx.url("");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (nginx, stop, done) = (nginx.clone(), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                // A pace, not a wait: at most 50 requests/s per worker.
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut ids = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let id = format!("replicas-outage-{w}-{:06}", ids.len());
                    let r = chat(&nginx, &id, 0, 2).await;
                    assert!(completed(r).await, "{id} failed");
                    ids.push(id);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                ids
            })
        })
        .collect();
    let wait_done = |at_least: u64| {
        let done = Arc::clone(&done);
        async move {
            let deadline = tokio::time::Instant::now() + fixture::DEADLINE;
            while done.load(Ordering::Relaxed) < at_least {
                assert!(tokio::time::Instant::now() < deadline, "traffic stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_done(100).await;
    let (mark_a, mark_b) = (s.a.bin.mark(), s.b.bin.mark());
    tokio::task::block_in_place(|| pg.stop());
    let at_stop = done.load(Ordering::Relaxed);
    // The issue's own outage: a deliberate duration, not a wait for something.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = done.load(Ordering::Relaxed) - at_stop;
    tokio::task::block_in_place(|| pg.start());
    assert!(
        during >= 100,
        "traffic continued while Postgres was down: {during}"
    );
    wait_done(done.load(Ordering::Relaxed) + 100).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = BTreeSet::new();
    for w in workers {
        sent.extend(w.await.unwrap().into_iter().map(|id| key(&id)));
    }
    for (r, mark) in [(&s.a, mark_a), (&s.b, mark_b)] {
        assert!(
            r.bin.log()[mark..]
                .iter()
                .any(|l| l.contains("capture store failed; spilling until it recovers")),
            "{} spilled",
            r.addr()
        );
    }
    // The writer thread runs SCHED_IDLE: on a machine whose cores other work keeps busy it
    // replays only when it gets CPU, hence the longer deadline.
    s.wait_stored_within(fixture::RECOVERY, "every request after the outage", |st| {
        st.len() >= sent.len()
    })
    .await;
    let stored = s.stored();
    assert!(stored.values().all(|&c| c == 1), "stored once");
    assert_eq!(stored.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert_eq!(
        s.sql("SELECT count(*) FROM captures"),
        sent.len().to_string()
    );
}
