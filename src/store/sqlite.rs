//! The embedded SQLite backend: WAL so that readers never wait for the writer, one writer
//! connection so that write transactions queue in the process instead of failing on a busy lock,
//! and foreign keys on.

use std::str::FromStr;

use sqlx::Executor;
use sqlx::sqlite::SqliteConnectOptions;

use super::read::NativeReaders;
use super::{Backend, Store, StoreOptions};
use crate::error::Result;

const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
    let url = with_create_mode(url);
    let pool = |max| {
        Store::pool_options(options)
            .max_connections(max)
            // A file does not drop a connection: a ping before each use would be one more
            // hand-off to the connection's thread for every call.
            .test_before_acquire(false)
            .after_connect(|connection, _| {
                Box::pin(async move { connection.execute(PRAGMAS).await.map(drop) })
            })
            .connect(&url)
    };
    let writer = pool(1).await?;
    let readers = pool(options.max_connections).await?;
    // The pre-checks' native readers, for a file (an in-memory database is one connection's).
    let file = SqliteConnectOptions::from_str(&url)?
        .get_filename()
        .to_owned();
    let native = (!url.contains(":memory:") && !url.contains("mode=memory"))
        .then(|| std::sync::Arc::new(NativeReaders::new(file, options.max_connections as usize)));
    Ok(Store {
        readers,
        writer,
        backend: Backend::Sqlite,
        checks: Default::default(),
        feed_signal: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
        url: None,
        push_checks: std::sync::Arc::new(true.into()),
        feed_tail: std::sync::Arc::default(),
        acks: std::sync::Arc::default(),
        log: None,
        rechecks: std::sync::Arc::default(),
        check_reads: std::sync::Arc::default(),
        roll_reads: std::sync::Arc::default(),
        native,
    })
}

/// Asks SQLite to create the file when missing, unless the URL says otherwise.
fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}
