//! `aloud export --format csv` run on a database file: its rows (after the header) as fields,
//! for tests that check which feedback joins which attempt. The test's ids and labels hold no
//! comma or quote, so a plain split is the parse.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

/// The rows `aloud export --format csv --database DB EXTRA…` prints, split into fields.
pub fn csv_rows(db: &Path, extra: &[&str]) -> Vec<Vec<String>> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aloud"))
        .args(["export", "--format", "csv", "--database"])
        .arg(db)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}
