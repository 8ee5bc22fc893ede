//! A real Postgres for a test: Debian's `initdb`/`pg_ctl` in a temp dir, run as an unprivileged
//! user (Postgres refuses root), on a free loopback port with password (SCRAM) auth; ready when
//! `pg_isready` says so; stopped and removed on drop — and by a watchdog process when the test
//! binary dies without dropping it (a `static` never drops). A skip (or, with
//! `ALOUD_REQUIRE_CLIENTS=1`, a failure) when Postgres is not installed.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long Postgres may take to start or stop before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The superuser `initdb` creates, and its password (in every URL this hands out).
pub const USER: &str = "aloud";
pub const PASSWORD: &str = "pg-test-secret";
/// The unprivileged account Postgres runs as when the tests run as root.
const RUN_AS: &str = "nobody";

/// How to start Postgres.
#[derive(Default, Clone)]
pub struct Options {
    /// `ssl = on` with this certificate and key (PEM), for `sslmode=require` tests.
    pub tls: Option<(String, String)>,
}

/// A running (or stopped, by `stop`) Postgres cluster of the test's own.
pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `runuser -u nobody --` when the tests run as root; empty otherwise.
    prefix: Vec<String>,
    options: Options,
    /// Its stdin closing (our drop, or the test binary's death) stops Postgres and removes the
    /// directory.
    watchdog: Option<(Child, ChildStdin)>,
}

/// Debian's Postgres binaries (`/usr/lib/postgresql/<newest>/bin`), or `ALOUD_TEST_PG_BIN`.
pub fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ALOUD_TEST_PG_BIN").filter(|v| !v.is_empty()) {
        return Some(dir.into());
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Starts a Postgres for `what`, or `None` (a loud skip) when it is not installed and not
/// required.
pub fn start(what: &str) -> Option<Postgres> {
    start_with(what, Options::default())
}

/// One Postgres shared by every test of this binary (each test takes a `fresh_database`).
/// Never stop this one: tests that stop Postgres start their own.
pub fn shared(what: &str) -> Option<&'static Postgres> {
    static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
    SHARED
        .get_or_init(|| start("the shared Postgres"))
        .as_ref()
        .or_else(|| {
            super::skip(&format!("{what}: no Postgres"));
            None
        })
}

pub fn start_with(what: &str, options: Options) -> Option<Postgres> {
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    let bin = match bin_dir() {
        Some(bin) => bin,
        None if required => panic!(
            "ALOUD_REQUIRE_CLIENTS=1 but Postgres is not installed (no \
             /usr/lib/postgresql/*/bin/initdb): run scripts/install-test-deps.sh"
        ),
        None => {
            super::skip(&format!(
                "{what}: Postgres is not installed (no /usr/lib/postgresql/*/bin/initdb; \
                 scripts/install-test-deps.sh installs it), or set ALOUD_REQUIRE_CLIENTS=1 to \
                 make this an error"
            ));
            return None;
        }
    };
    Some(Postgres::init(bin, options))
}

impl Postgres {
    fn init(bin: PathBuf, options: Options) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("aloud-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let as_root = std::fs::metadata(&dir).unwrap().uid() == 0;
        let prefix = if as_root {
            let uid = id(&["-u", RUN_AS]);
            let gid = id(&["-g", RUN_AS]);
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            vec!["runuser".into(), "-u".into(), RUN_AS.into(), "--".into()]
        } else {
            Vec::new()
        };
        let mut pg = Postgres {
            bin,
            port: free_port(),
            prefix,
            options,
            watchdog: None,
            dir,
        };
        pg.arm_watchdog();
        let pwfile = pg.dir.join("pwfile");
        pg.write_owned(&pwfile, PASSWORD);
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                pg.data().as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "--auth-host=scram-sha-256".as_ref(),
                "--auth-local=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        if let Some((cert, key)) = pg.options.tls.clone() {
            pg.write_owned(&pg.dir.join("server.crt"), &cert);
            pg.write_owned(&pg.dir.join("server.key"), &key);
        }
        // The port was free when it was picked; a parallel test binding port 0 may take it
        // before Postgres binds. That collision (and only it) picks another port, a few times.
        for attempt in 1.. {
            match pg.try_start() {
                Ok(()) => break,
                Err(e) if attempt < 5 && pg.log().contains("Address already in use") => {
                    let _ = std::fs::remove_file(pg.dir.join("postgres.log"));
                    pg.port = free_port();
                    eprintln!("postgres: port taken before it bound ({e}); trying another");
                }
                Err(e) => panic!("{e}"),
            }
        }
        pg
    }

    /// `postgres://aloud:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The URL of the `postgres` database (always there).
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new, empty database and returns its URL, so tests sharing one Postgres do not
    /// see each other's rows.
    pub fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url_for(&name)
    }

    /// Runs one SQL command with `psql` and returns its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = self.client(
            "psql",
            database,
            &["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts the server (again) on the same port and data; returns once `pg_isready` says it
    /// accepts connections.
    pub fn start(&self) {
        self.try_start().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_start(&self) -> Result<(), String> {
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off \
             -c max_connections=200",
            self.port,
            self.dir.display()
        );
        if self.options.tls.is_some() {
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                self.dir.display()
            ));
        }
        let log = self.dir.join("postgres.log");
        self.try_run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data().as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "start".as_ref(),
            ],
        )?;
        self.wait_ready();
        Ok(())
    }

    /// Stops the server (fast shutdown: connections are cut); the data stays for `start`.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.data().as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "stop".as_ref(),
            ],
        );
    }

    /// The server's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Polls `pg_isready` until it reports the server accepting connections, or fails at the
    /// deadline. `pg_ctl -w` has waited for the server's own "ready" already, so this is a
    /// confirmation that normally succeeds at once (each probe is a process start, which paces
    /// the loop).
    fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            if status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Postgres not ready within {DEADLINE:?}; log:\n{}",
                self.log()
            );
        }
    }

    /// A client program (`psql`, ...) against `database`, over TCP with the password.
    fn client(&self, program: &str, database: &str, args: &[&str]) -> Output {
        let out = Command::new(self.bin.join(program))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                database,
            ])
            .args(args)
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A server program (`initdb`, `pg_ctl`) as the unprivileged user.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        self.try_run(program, args)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
        let mut cmd = self.command(&self.bin.join(program));
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{program} failed: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        ))
    }

    fn command(&self, program: &Path) -> Command {
        match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// A file in the directory, owned by the server's user, readable by it alone (Postgres
    /// insists on that for its key).
    fn write_owned(&self, path: &Path, contents: &str) {
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if !self.prefix.is_empty() {
            std::os::unix::fs::chown(path, Some(id(&["-u", RUN_AS])), Some(id(&["-g", RUN_AS])))
                .unwrap();
        }
    }

    /// A shell that waits for its stdin to close, then stops Postgres at once and removes the
    /// directory: the clean-up still happens when the test binary is killed or never drops us.
    fn arm_watchdog(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let prefix = self.prefix.join(" ");
        let script = format!(
            "read _; {prefix} {} -D {}/data -m immediate stop >/dev/null 2>&1; rm -rf {}",
            pg_ctl.display(),
            self.dir.display(),
            self.dir.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        self.watchdog = Some((child, stdin));
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A port nothing listens on now (Postgres binds it a moment later; a collision fails loudly).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
