//! The dashboard's one reader of the capture database: opened on first use, lent to one
//! blocking task at a time (so the runtime never waits on SQL, and the dashboard never holds
//! more than one connection), dropped after an error so the next read opens it again.

use super::Tasks;
use crate::config::Database;
use crate::store::{Store, open_reader};
use std::sync::Arc;

pub struct Reader {
    database: Database,
    /// `None` until the first read, and after a failed one.
    store: Arc<tokio::sync::Mutex<Option<Box<dyn Store>>>>,
}

impl Reader {
    pub fn new(database: Database) -> Reader {
        Reader {
            database,
            store: Arc::default(),
        }
    }

    /// Runs `f` with the store on the blocking pool (tracked by `tasks`), once the reader is
    /// free.
    pub async fn read<T, F>(&self, tasks: &Tasks, f: F) -> Result<T, String>
    where
        F: FnOnce(&dyn Store) -> Result<T, String> + Send + 'static,
        T: Send + 'static,
    {
        let mut guard = Arc::clone(&self.store).lock_owned().await;
        let database = self.database.clone();
        let job = tasks.spawn_blocking(move || {
            if guard.is_none() {
                if let Some(path) = database.sqlite_path()
                    && !path.exists()
                {
                    return Err(format!("no capture database at {} yet", path.display()));
                }
                *guard = Some(open_reader(&database).map_err(|e| e.to_string())?);
            }
            let store = guard.as_deref().ok_or("the capture database is not open")?;
            let result = f(store);
            if result.is_err() {
                // Open afresh next time: the connection may be what failed.
                *guard = None;
            }
            result
        });
        job.await.map_err(|e| format!("the read stopped: {e}"))?
    }
}
