//! Where the real client SDKs are: the Python interpreter of the test venv and the folder of
//! client scripts, from the environment `scripts/test.sh` sets; a skip (or, with
//! `ALOUD_REQUIRE_CLIENTS=1`, a failure) when they are missing.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

/// One client run may take this long (interpreter start-up included) before it counts as hung.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the client scripts and their interpreters are.
pub struct Clients {
    pub python: PathBuf,
    pub dir: PathBuf,
}

/// The installed clients, or `None` (skip `what`) when they are not configured and not required.
pub fn clients(what: &str) -> Option<Clients> {
    let python = std::env::var_os("ALOUD_TEST_PYTHON").filter(|v| !v.is_empty());
    let dir = std::env::var_os("ALOUD_TEST_CLIENTS").filter(|v| !v.is_empty());
    let required = std::env::var("ALOUD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
    match (python, dir) {
        (Some(python), Some(dir)) => Some(Clients {
            python: python.into(),
            dir: dir.into(),
        }),
        _ if required => panic!(
            "ALOUD_REQUIRE_CLIENTS=1 but ALOUD_TEST_PYTHON or ALOUD_TEST_CLIENTS is unset: \
             run scripts/test.sh, or scripts/install-test-deps.sh and set them"
        ),
        _ => {
            super::skip(&format!(
                "{what}: set ALOUD_TEST_PYTHON and ALOUD_TEST_CLIENTS \
                 (scripts/test.sh does), or ALOUD_REQUIRE_CLIENTS=1 to make this an error"
            ));
            None
        }
    }
}
