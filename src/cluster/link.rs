//! The cluster link: one Postgres session per replica that LISTENs on the interest channel and
//! on this replica's own, hands what arrives to the hub, and sends the hub's queue as NOTIFY
//! batches. When Postgres is unreachable, the side channel serves local subscribers only (one
//! log line); the link reconnects with backoff by itself and says so when it is back.
//!
//! Why tokio-postgres: it is the maintained async Postgres client, and its `Connection` yields
//! notifications as `AsyncMessage`s while the same session sends, so one task does both.

use super::wire::{self, Assembler, Inbound};
use crate::config::PostgresUrl;
use crate::progress::Hub;
use crate::progress::hub::{Outgoing, Replica};
use futures_util::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// Messages waiting for the link at most (a full queue drops remote events, never waits).
const QUEUE: usize = 16_384;
/// Most NOTIFYs sent in one statement (one transaction, delivered in order).
const MAX_BATCH: usize = 512;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Used when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive: a Postgres that vanished without closing the socket is noticed.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// How a session ended.
enum Ended {
    Stopped,
    Failed(String),
}

/// Runs the link for `hub` until `stop`: connects, serves, and reconnects after failures.
pub async fn run(url: PostgresUrl, hub: Arc<Hub>, stop: CancellationToken) {
    let Some(mut queue) = hub.attach_link(QUEUE) else {
        tracing::error!("cluster: a link is already attached to this hub");
        return;
    };
    let me: Replica = Arc::from(uuid::Uuid::now_v7().simple().to_string());
    let mut status = Status::default();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let ended = session(&url, &hub, &me, &mut queue, &stop, &mut status).await;
        hub.set_link_up(false);
        let Ended::Failed(error) = ended else { return };
        if status.connected {
            // A session that worked resets the backoff.
            backoff = FIRST_BACKOFF;
        }
        if !status.down {
            status.down = true;
            tracing::warn!(
                %error,
                database = %url,
                "cluster: Postgres unreachable; the side channel serves this replica's own \
                 requests only until it is back"
            );
        } else {
            tracing::debug!(%error, "cluster: Postgres still unreachable");
        }
        status.connected = false;
        // What was queued for the lost session is stale: subscribers ask again on recovery.
        while queue.try_recv().is_ok() {}
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[derive(Default)]
struct Status {
    /// The last session reached LISTEN.
    connected: bool,
    /// An outage was logged and its end not yet.
    down: bool,
    /// The link was up once (the first success is logged differently from a recovery).
    ever: bool,
}

/// One Postgres session: LISTEN, then deliver notifications and send the queue until the
/// connection fails or `stop`.
async fn session(
    url: &PostgresUrl,
    hub: &Hub,
    me: &Replica,
    queue: &mut mpsc::Receiver<Outgoing>,
    stop: &CancellationToken,
    status: &mut Status,
) -> Ended {
    // The same driver settings and TLS (`sslmode`) as the capture store.
    let (mut config, tls) = match crate::store::postgres::connect::driver_config(url)
        .and_then(|c| crate::store::postgres::connect::make_tls(url).map(|t| (c, t)))
    {
        Ok(pair) => pair,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE)
        .application_name("aloud-cluster");
    let connected = tokio::select! {
        c = config.connect(tls) => c,
        () = stop.cancelled() => return Ended::Stopped,
    };
    let (client, mut connection) = match connected {
        Ok(c) => c,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    let mut assembler = Assembler::default();
    let incoming = async {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    deliver(hub, me, &mut assembler, n.channel(), n.payload());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return e.to_string(),
                None => return "the connection closed".to_owned(),
            }
        }
    };
    let outgoing = async {
        let listen = format!("LISTEN {}; LISTEN {}", wire::INTEREST, wire::channel(me));
        client.batch_execute(&listen).await?;
        let notify = client
            .prepare("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)")
            .await?;
        status.connected = true;
        if status.down {
            status.down = false;
            tracing::info!("cluster: Postgres reachable again; the side channel spans replicas");
        } else if !status.ever {
            tracing::info!(replica = %me, "cluster: the side channel spans replicas");
        }
        status.ever = true;
        hub.set_link_up(true);
        while let Some(first) = queue.recv().await {
            let mut batch = wire::encode(me, &first);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(m) => batch.extend(wire::encode(me, &m)),
                    Err(_) => break,
                }
            }
            let (channels, payloads): (Vec<String>, Vec<String>) = batch.into_iter().unzip();
            client.execute(&notify, &[&channels, &payloads]).await?;
            hub.link_sent(channels.len());
        }
        Ok::<(), tokio_postgres::Error>(())
    };
    tokio::pin!(incoming, outgoing);
    tokio::select! {
        error = &mut incoming => Ended::Failed(error),
        sent = &mut outgoing => match sent {
            Err(e) => Ended::Failed(e.to_string()),
            // The hub is gone: the server is stopping.
            Ok(()) => Ended::Stopped,
        },
        () = stop.cancelled() => Ended::Stopped,
    }
}

/// Hands one notification to the hub.
pub(super) fn deliver(
    hub: &Hub,
    me: &Replica,
    assembler: &mut Assembler,
    channel: &str,
    payload: &str,
) {
    let inbound = assembler.take(me, channel, payload);
    let counted = inbound.is_some();
    match inbound {
        Some(Inbound::Interest { from, id, after }) => hub.remote_interest(&from, &id, after),
        Some(Inbound::Event {
            from,
            id,
            owner,
            event,
        }) => hub.remote_event(&from, &id, owner, event),
        Some(Inbound::Finished {
            from,
            id,
            owner,
            last_seq,
        }) => hub.remote_finished(&from, &id, owner, last_seq),
        Some(Inbound::Forget { from, id }) => hub.remote_forget(&from, &id),
        None => {}
    }
    // Counted once the hub has it: a test (or an operator) that sees the count sees its effect.
    if counted {
        hub.link_received();
    }
}
