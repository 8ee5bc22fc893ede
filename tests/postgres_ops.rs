//! Postgres in operation, against a real Postgres (tests/support/postgres.rs): stopped
//! mid-traffic, a spill replayed twice, the real binary serving into it and reading it back
//! (`aloud stats` / `aloud export --database postgres://...`), and TLS per `sslmode`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first surprise"
)]

#[path = "support/records.rs"]
mod records;
mod support;

use aloud::capture::{CaptureWriter, WriterConfig};
use aloud::config::PostgresUrl;
use aloud::store::PostgresStore;
use aloud::store::postgres::Access;
use records::record;
use std::time::Duration;
use support::postgres::{self, Postgres};

fn pg_url(url: &str) -> PostgresUrl {
    PostgresUrl::parse(&format!("{url}?sslmode=disable")).unwrap()
}

fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

fn count_ids(pg: &Postgres, raw: &str) -> (String, String) {
    let db = database_name(raw);
    (
        pg.psql(&db, "SELECT count(*) FROM captures"),
        pg.psql(&db, "SELECT count(DISTINCT (id, attempt)) FROM captures"),
    )
}

fn pg_writer(url: &PostgresUrl, spill: &std::path::Path) -> CaptureWriter {
    let config = WriterConfig {
        flush_interval: Duration::from_millis(20),
        batch_records: 64,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..WriterConfig::with_spill_dir(spill)
    };
    let url = url.clone();
    CaptureWriter::start(config, move || PostgresStore::open(&url, Access::ReadWrite)).unwrap()
}

/// Postgres stops mid-traffic: what comes meanwhile spills; once it is back, the spill is
/// replayed and every id is stored exactly once.
#[tokio::test]
async fn postgres_stopped_mid_traffic_spills_then_replays_each_id_once() {
    let Some(pg) = postgres::start("postgres_stopped_mid_traffic_spills_then_replays_each_id_once")
    else {
        return;
    };
    let raw = pg.fresh_database();
    let url = pg_url(&raw);
    let dir = tempfile::tempdir().unwrap();
    let writer = pg_writer(&url, &dir.path().join("spill"));
    let submit = |from: u32, to: u32| {
        for i in from..to {
            writer.submit(record(&format!("pg-outage-{i:05}"), 1, i64::from(i), 2000));
        }
    };
    submit(0, 500);
    writer.flush().await;
    assert_eq!(count_ids(&pg, &raw).0, "500");
    pg.stop();
    submit(500, 1500);
    writer.flush().await;
    let stats = writer.stats();
    assert!(
        stats.spilled >= 1000,
        "records spilled while Postgres was down: {stats:?}"
    );
    pg.start();
    submit(1500, 2000);
    writer.flush().await;
    let stats = writer.stats();
    assert_eq!(stats.spill_bytes, 0, "spill replayed: {stats:?}");
    assert!(stats.replayed >= 1000, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    writer.clone().close().await;
    assert_eq!(count_ids(&pg, &raw), ("2000".into(), "2000".into()));
}

/// A spill replayed, then the same spill (a copy, as after a crash before its deletion)
/// replayed again: nothing is stored twice.
#[tokio::test]
async fn a_spill_replayed_twice_never_duplicates() {
    let Some(pg) = postgres::start("a_spill_replayed_twice_never_duplicates") else {
        return;
    };
    let raw = pg.fresh_database();
    let url = pg_url(&raw);
    // The schema exists, then Postgres goes away before anything is written.
    let open = url.clone();
    tokio::task::spawn_blocking(move || {
        drop(PostgresStore::open(&open, Access::ReadWrite).unwrap())
    })
    .await
    .unwrap();
    pg.stop();
    let dir = tempfile::tempdir().unwrap();
    let (spill, copy) = (dir.path().join("spill"), dir.path().join("copy"));
    let writer = pg_writer(&url, &spill);
    for i in 0..400 {
        writer.submit(record(&format!("pg-replay-{i:05}"), 1, i64::from(i), 2000));
    }
    writer.clone().close().await;
    assert!(writer.stats().spilled >= 400, "{:?}", writer.stats());
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&spill).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    pg.start();
    for dir in [&spill, &copy] {
        let writer = pg_writer(&url, dir);
        writer.flush().await;
        assert!(writer.stats().replayed >= 400, "{:?}", writer.stats());
        writer.clone().close().await;
    }
    assert_eq!(count_ids(&pg, &raw), ("400".into(), "400".into()));
}

/// The real binary: `aloud serve` with `database_env` naming the URL captures every request
/// (and a beacon) into Postgres, never logging the password; `aloud stats` and `aloud export`
/// with `--database postgres://...` count every request once.
#[tokio::test]
async fn the_binary_serves_into_postgres_and_stats_and_export_read_it() {
    let Some(pg) = postgres::shared("the_binary_serves_into_postgres_and_stats_and_export_read_it")
    else {
        return;
    };
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace = \"5s\"\n\
             [capture]\ndatabase_env = \"ALOUD_TEST_DATABASE\"\nspill_dir = \"{}\"\nflush_interval = \"50ms\"\n\
             [[routes]]\nname = \"sim\"\nprefix = \"/sim\"\nupstream = \"builtin:simulator\"\napi = \"openai\"\n",
            dir.path().join("spill").display()
        ),
    )
    .unwrap();
    let mut aloud = support::binary::Binary::start(&config, &[("ALOUD_TEST_DATABASE", &url)]).await;
    let base = format!("http://{}", aloud.addr);
    let n = 12;
    for i in 0..n {
        let id = format!("pg-binary-request-{i:04}");
        let chat = serde_json::json!({"model": "gpt-sim", "stream": i % 2 == 0, "messages": [{"role": "user", "content": "hi"}]});
        let h = [
            ("content-type", "application/json"),
            ("aloud-request-id", id.as_str()),
            ("x-sim-think-ms", "20"),
            ("x-sim-tokens", "3"),
            ("x-sim-token-ms", "2"),
        ];
        let r = support::post(
            &format!("{base}/sim/v1/chat/completions"),
            &h,
            chat.to_string(),
        )
        .await;
        assert_eq!(r.status(), 200);
        support::body_bytes(r).await;
    }
    let beacon = format!("{base}/aloud/v1/requests/pg-binary-request-0003/feedback");
    let r = support::post(
        &beacon,
        &[("content-type", "text/plain")],
        r#"{"score": 1}"#,
    )
    .await;
    assert_eq!(r.status(), 204);
    aloud.signal("TERM");
    let status = aloud.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "aloud exited with {status}");
    let log = aloud.log().join("\n");
    assert!(
        !log.contains(postgres::PASSWORD),
        "the password was logged:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "postgres://{}:***@127.0.0.1:{}",
            postgres::USER,
            pg.port()
        )),
        "the masked URL is logged:\n{log}"
    );

    let bin = env!("CARGO_BIN_EXE_aloud");
    let stats = std::process::Command::new(bin)
        .args(["stats", "--json", "--database", &url])
        .output()
        .unwrap();
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(rows["rows"][0]["n"], n, "{rows:#}");
    let out = dir.path().join("export.jsonl");
    let export = std::process::Command::new(bin)
        .args([
            "export",
            "--format",
            "chat-jsonl",
            "--min-score",
            "1",
            "--database",
            &url,
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        1,
        "the one with feedback"
    );
    let export = std::process::Command::new(bin)
        .args(["export", "--format", "csv", "--database", &url])
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let csv = String::from_utf8(export.stdout).unwrap();
    assert_eq!(
        csv.lines().count(),
        n + 1,
        "a header and one line per request:\n{csv}"
    );
    let db = database_name(&url);
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(DISTINCT id) || ' ' || count(*) FROM captures"
        ),
        format!("{n} {n}")
    );
    // A database without the capture tables is an error that says so, not an empty result.
    let empty = pg.fresh_database();
    let stats = std::process::Command::new(bin)
        .args(["stats", "--database", &empty])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&stats.stderr);
    assert!(
        !stats.status.success() && err.contains("no capture tables"),
        "{err}"
    );
    assert!(!err.contains(postgres::PASSWORD), "{err}");
}

/// A CA and a server certificate for `names` (SAN entries like `DNS:db.internal`), made with
/// the openssl CLI; returns (CA PEM path, server cert PEM, server key PEM).
fn certificates(
    dir: &std::path::Path,
    tag: &str,
    names: &str,
) -> (std::path::PathBuf, String, String) {
    let p = |f: &str| dir.join(format!("{tag}-{f}"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            &s(p("ca.key")),
            "-out",
            &s(p("ca.pem")),
            "-days",
            "2",
            "-subj",
            &format!("/CN=aloud test CA {tag}"),
        ],
    ]
    .concat());
    run(&[
        &["req", "-new"][..],
        &ec,
        &[
            "-keyout",
            &s(p("server.key")),
            "-out",
            &s(p("server.csr")),
            "-subj",
            "/CN=postgres",
        ],
    ]
    .concat());
    std::fs::write(
        p("ext"),
        format!("subjectAltName={names}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &s(p("server.csr")),
        "-CA",
        &s(p("ca.pem")),
        "-CAkey",
        &s(p("ca.key")),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(p("ext")),
        "-out",
        &s(p("server.pem")),
    ]);
    (
        p("ca.pem"),
        std::fs::read_to_string(p("server.pem")).unwrap(),
        std::fs::read_to_string(p("server.key")).unwrap(),
    )
}

/// Whether the connection `url` opens is encrypted, or the connect error.
fn ssl_in_use(url: &str) -> Result<bool, String> {
    let url = PostgresUrl::parse(url).map_err(|e| e.to_string())?;
    let mut client = aloud::store::postgres::connect::connect(&url).map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// `sslmode` as libpq means it: `require` encrypts without checking, `verify-ca` checks the
/// chain, `verify-full` the chain and the host name, `disable` stays plain; and the store
/// writes over TLS.
#[test]
fn sslmode_decides_tls_and_what_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    // The server's certificate names db.internal, not 127.0.0.1.
    let (ca, cert, key) = certificates(dir.path(), "right", "DNS:db.internal");
    let (other_ca, _, _) = certificates(dir.path(), "other", "DNS:db.internal");
    let options = postgres::Options {
        tls: Some((cert, key)),
    };
    let Some(pg) = postgres::start_with("sslmode_decides_tls_and_what_is_checked", options) else {
        return;
    };
    let base = pg.fresh_database();
    let with = |q: &str| format!("{base}?{q}");
    let root = |p: &std::path::Path| p.to_str().unwrap().replace('/', "%2F");
    assert_eq!(ssl_in_use(&with("sslmode=require")), Ok(true));
    assert_eq!(
        ssl_in_use(&base),
        Ok(true),
        "prefer, the default, takes TLS when offered"
    );
    assert_eq!(ssl_in_use(&with("sslmode=disable")), Ok(false));
    assert_eq!(
        ssl_in_use(&with(&format!(
            "sslmode=verify-ca&sslrootcert={}",
            root(&ca)
        ))),
        Ok(true)
    );
    let wrong_ca = ssl_in_use(&with(&format!(
        "sslmode=verify-ca&sslrootcert={}",
        root(&other_ca)
    )));
    assert!(wrong_ca.is_err(), "{wrong_ca:?}");
    let wrong_name = ssl_in_use(&with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        root(&ca)
    )));
    assert!(
        wrong_name
            .as_ref()
            .is_err_and(|e| e.contains("cannot connect")),
        "{wrong_name:?}"
    );
    let no_roots = ssl_in_use(&with("sslmode=verify-ca"));
    assert!(
        no_roots.is_err(),
        "the web's roots do not know the test CA: {no_roots:?}"
    );

    let url = PostgresUrl::parse(&with("sslmode=require")).unwrap();
    let mut store = PostgresStore::open(&url, Access::ReadWrite).unwrap();
    use aloud::store::Store;
    assert_eq!(
        store
            .insert_batch(&[record("pg-tls-000001", 1, 1, 1000)])
            .unwrap(),
        1
    );
    assert!(store.exists("pg-tls-000001").unwrap());

    // A server without TLS: require fails, prefer falls back.
    let Some(plain) = postgres::shared("sslmode_decides_tls_and_what_is_checked") else {
        return;
    };
    let plain_url = plain.fresh_database();
    assert!(ssl_in_use(&format!("{plain_url}?sslmode=require")).is_err());
    assert_eq!(ssl_in_use(&plain_url), Ok(false));
}
