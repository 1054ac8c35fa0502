//! The embedded SQLite backend: WAL so that readers never wait for the writer, one writer
//! connection so that write transactions queue in the process instead of failing on a busy lock,
//! and foreign keys on.

use std::str::FromStr;

use sqlx::Executor;
use sqlx::sqlite::SqliteConnectOptions;

use super::read::NativeReaders;
use super::write::NativeWriter;
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
/// And the writer's own checkpoint only every 16,384 WAL pages (64 MiB) rather than SQLite's
/// 1,000: a bulk push rewrites the same index pages commit after commit, and each checkpoint
/// copies them into the file again (`perf`: a tenth of a people push in checkpoints; a city's
/// initial load of people 12% faster, payroll 10–20%, in alternating runs of both builds). The
/// [`checkpointer`] does them before that, off the writer: a checkpoint of 64 MiB in the commit
/// that crossed the line held up that push and every alert it raised (with 1,000 subscribers,
/// the one push of fifty that paid for it set the p99 of them all).
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
    };
    // The pre-checks keep a read through the audit trail's writes, not through the others'
    // (`NativeReaders::begin`): the writer says when a data write's connection is back.
    let data_writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let released = data_writing.clone();
    let writer = pool(1, WRITER_PRAGMAS)
        .after_release(move |_, _| {
            released.store(false, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Ok(true) })
        })
        .connect(&url)
        .await?;
    let readers = pool(options.max_connections, PRAGMAS).connect(&url).await?;
    // The pre-checks' native readers, for a file (an in-memory database is one connection's).
    let file = SqliteConnectOptions::from_str(&url)?
        .get_filename()
        .to_owned();
    let on_file = !url.contains(":memory:") && !url.contains("mode=memory");
    let native_writer = on_file.then(|| std::sync::Arc::new(NativeWriter::new(file.clone())));
    let native = on_file.then(|| {
        std::sync::Arc::new(NativeReaders::new(
            file,
            options.max_connections as usize,
            writer.clone(),
            data_writing,
        ))
    });
    if let Some(native) = &native {
        tokio::spawn(checkpointer(std::sync::Arc::downgrade(native)));
    }
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
        native_writer,
        native_pg: None,
    })
}

/// How often the [`checkpointer`] copies what the WAL holds into the file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Copies the WAL's committed pages into the database file every [`CHECKPOINT_EVERY`], on a
/// connection of its own on a blocking thread, so that the writer's commits do not (PASSIVE:
/// it waits for no reader or writer, and copies what no reader still needs; the writer then
/// starts the WAL over). Ends once the store is closed or gone.
async fn checkpointer(store: std::sync::Weak<NativeReaders>) {
    let mut connection: Option<rusqlite::Connection> = None;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let file = match store.upgrade() {
            Some(readers) if !readers.closed() => readers.path().to_owned(),
            _ => return,
        };
        let kept = connection.take();
        let done = tokio::task::spawn_blocking(move || {
            let connection = match kept {
                Some(connection) => connection,
                None => rusqlite::Connection::open_with_flags(
                    &file,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?,
            };
            connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            Ok::<_, rusqlite::Error>(connection)
        })
        .await;
        match done {
            Ok(Ok(kept)) => connection = Some(kept),
            // The writer's own checkpoints stand in until the next try, on a new connection.
            Ok(Err(error)) => tracing::warn!(%error, "a WAL checkpoint failed"),
            Err(error) => tracing::warn!(%error, "a WAL checkpoint did not finish"),
        }
    }
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

/// A store on a new SQLite file at `file`, for the store's own tests.
#[cfg(test)]
pub(super) async fn on_file(file: &std::path::Path) -> Store {
    Store::connect(
        &format!("sqlite://{}", file.display()),
        &StoreOptions::default(),
    )
    .await
    .expect("a store")
}

#[cfg(test)]
mod tests {

    /// The SQLite every connection runs is built as `.cargo/config.toml` says: no process-wide
    /// lock at each allocation (memory statistics), statement journals in memory.
    #[test]
    fn sqlite_is_built_as_configured() {
        let connection = rusqlite::Connection::open_in_memory().expect("a connection");
        let mut statement = connection
            .prepare("PRAGMA compile_options")
            .expect("a pragma");
        let options: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .expect("options")
            .collect::<Result<_, _>>()
            .expect("read");
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|o| o == "STMTJRNL_SPILL=-1"),
            "{options:?}"
        );
    }

    /// What the WAL holds reaches the database file without the writer checkpointing: a few
    /// hundred pages, far below the writer's own line.
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_into_the_file_off_the_writer() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("hub.db");
        let store = super::on_file(&file).await;
        // Let a checkpoint take the migrations, so that what follows is all in the WAL.
        tokio::time::sleep(super::CHECKPOINT_EVERY * 2).await;
        let before = std::fs::metadata(&file).expect("the file").len();

        // About 2 MiB (500 pages) in one commit.
        let mut tx = store.begin().await.expect("a write");
        sqlx::query(
            "CREATE TABLE ballast (n INTEGER PRIMARY KEY, fill TEXT); \
             WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 2000) \
             INSERT INTO ballast SELECT n, printf('%.1000c', 'x') FROM k",
        )
        .execute(&mut *tx)
        .await
        .expect("written");
        tx.commit().await.expect("committed");
        assert!(
            std::fs::metadata(&file).expect("the file").len() < before + 1_000_000,
            "the commit itself left the pages in the WAL"
        );

        let mut waited = std::time::Duration::ZERO;
        while std::fs::metadata(&file).expect("the file").len() < before + 2_000_000 {
            assert!(
                waited < super::CHECKPOINT_EVERY * 10,
                "no checkpoint copied the WAL into the file"
            );
            tokio::time::sleep(super::CHECKPOINT_EVERY / 4).await;
            waited += super::CHECKPOINT_EVERY / 4;
        }
        store.close().await;
    }
}
