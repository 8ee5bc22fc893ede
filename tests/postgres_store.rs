//! The Postgres capture store against a real Postgres (tests/support/postgres.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::postgres;

/// The test support itself: a fresh database answers, and a stopped server refuses until it is
/// started again.
#[test]
fn support_starts_stops_and_starts_again() {
    let Some(pg) = postgres::start("support_starts_stops_and_starts_again") else {
        return;
    };
    let url = pg.fresh_database();
    let db = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(pg.psql(&db, "SELECT 1 + 1"), "2");
    pg.stop();
    let refused = std::net::TcpStream::connect(("127.0.0.1", pg.port()));
    assert!(refused.is_err(), "Postgres still listening after stop");
    pg.start();
    assert_eq!(pg.psql(&db, "SELECT 2 + 2"), "4");
}
