//! The embedded SQLite backend: WAL so that readers never wait for the writer, one writer
//! connection so that write transactions queue in the process instead of failing on a busy lock,
//! and foreign keys on.

use std::str::FromStr;

use sqlx::Executor;
use sqlx::sqlite::SqliteConnectOptions;

use super::read::NativeReaders;
use super::{Backend, Store, StoreOptions};
use crate::error::Result;

/// What every connection sets.
macro_rules! pragmas {
    () => {
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;"
    };
}
const PRAGMAS: &str = pragmas!();

/// The writer's besides: a page cache of 64 MiB (SQLite's default is 2 MiB). Every push seeks and
/// inserts into the indexes of what it writes; once the file outgrows the cache, each seek reads
/// its pages from the operating system again (`perf` of a city's third repeated payroll import:
/// twice the time in `pread` and checkpoints of the first). One connection: this is its bound.
///
/// And a checkpoint every 16,384 WAL pages (64 MiB) rather than SQLite's 1,000: a bulk push
/// rewrites the same index pages commit after commit, and each checkpoint copies them into the
/// file again (`perf`: a tenth of a people push in checkpoints; a city's initial load of people
/// 12% faster, payroll 10–20%, in alternating runs of both builds).
const WRITER_PRAGMAS: &str = concat!(
    pragmas!(),
    " PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;"
);

pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
    let url = with_create_mode(url);
    let pool = |max, pragmas: &'static str| {
        Store::pool_options(options)
            .max_connections(max)
            // A file does not drop a connection: a ping before each use would be one more
            // hand-off to the connection's thread for every call.
            .test_before_acquire(false)
            .after_connect(move |connection, _| {
                Box::pin(async move { connection.execute(pragmas).await.map(drop) })
            })
            .connect(&url)
    };
    let writer = pool(1, WRITER_PRAGMAS).await?;
    let readers = pool(options.max_connections, PRAGMAS).await?;
    // The pre-checks' native readers, for a file (an in-memory database is one connection's).
    let file = SqliteConnectOptions::from_str(&url)?
        .get_filename()
        .to_owned();
    let native = (!url.contains(":memory:") && !url.contains("mode=memory")).then(|| {
        std::sync::Arc::new(NativeReaders::new(
            file,
            options.max_connections as usize,
            writer.clone(),
        ))
    });
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
