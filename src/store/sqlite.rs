//! The embedded SQLite backend: WAL so that readers never wait for the writer, one writer
//! connection so that write transactions queue in the process instead of failing on a busy lock,
//! and foreign keys on.
//!
//! On a file, the audit trail lives in a file of its own beside it ([`super::trail_file`]),
//! attached to every connection as the schema `trail`: the trail is appended at every
//! call, and a commit to the data's file would make every reader of the data empty its page cache
//! and unmap the file at its next read ([`keep_trail_apart`] moves a trail kept in the data's
//! file, as every database made before this was, into its own).

use std::str::FromStr;

use sqlx::Executor;
use sqlx::sqlite::SqliteConnectOptions;

use super::read::NativeReaders;
use super::trail_file::{TRAIL_TABLES, attach_trail};
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
    let file = SqliteConnectOptions::from_str(&url)?
        .get_filename()
        .to_owned();
    let on_file = !url.contains(":memory:") && !url.contains("mode=memory");
    // Attached first, so that `journal_mode` (set on every attached database) covers it too.
    let attach: std::sync::Arc<str> = if on_file {
        attach_trail(&file).into()
    } else {
        "".into()
    };
    let pool = |max, pragmas: &'static str| {
        let attach = attach.clone();
        Store::pool_options(options)
            .max_connections(max)
            // A file does not drop a connection: a ping before each use would be one more
            // hand-off to the connection's thread for every call.
            .test_before_acquire(false)
            .after_connect(move |connection, _| {
                let sql = format!("{attach}{pragmas}");
                Box::pin(
                    async move { connection.execute(sqlx::AssertSqlSafe(sql)).await.map(drop) },
                )
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
    let native_writer = on_file.then(|| std::sync::Arc::new(NativeWriter::new(file.clone())));
    let native = on_file.then(|| {
        std::sync::Arc::new(NativeReaders::new(
            file,
            options.max_connections as usize,
            options.sqlite_mapped_bytes,
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
        pg_trail: None,
    })
}

/// Moves the audit trail's tables out of the data's file into the trail's, when the data's file
/// has them: the migrations make them there, and every database made before the trail had a file
/// of its own kept them there. Two transactions, so that a crash between them loses nothing: the
/// first copies the tables into the trail's file (again, if a move was cut short), the second
/// drops them from the data's. Until the second commits, SQLite finds the data's copy first.
pub(super) async fn keep_trail_apart(store: &Store) -> Result<()> {
    // Looked at under the write lock: another process on the file may be moving it too.
    let mut copy = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    let in_data: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'table' AND name = 'audit_head'",
    )
    .fetch_one(&mut *copy)
    .await?;
    if in_data == 0 {
        return Ok(());
    }
    on_each_table(&mut copy, |table| {
        format!("DROP TABLE IF EXISTS trail.{table}")
    })
    .await?;
    let named = TRAIL_TABLES.map(|table| format!("'{table}'")).join(", ");
    let made: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT type, sql FROM main.sqlite_master WHERE tbl_name IN ({named}) \
         AND sql IS NOT NULL ORDER BY type = 'index'"
    )))
    .fetch_all(&mut *copy)
    .await?;
    for (kind, sql) in made {
        // `CREATE TABLE audit_log (...`, `CREATE INDEX audit_log_by_time ON audit_log (at)`: the
        // index goes where its table is.
        let head = if kind == "index" {
            "CREATE INDEX "
        } else {
            "CREATE TABLE "
        };
        let moved = sql.replacen(head, &format!("{head}trail."), 1);
        sqlx::query(sqlx::AssertSqlSafe(moved))
            .execute(&mut *copy)
            .await?;
    }
    on_each_table(&mut copy, |table| {
        format!("INSERT INTO trail.{table} SELECT * FROM main.{table}")
    })
    .await?;
    copy.commit().await?;
    let mut emptied = store.writer.begin_with("BEGIN IMMEDIATE").await?;
    on_each_table(&mut emptied, |table| {
        format!("DROP TABLE IF EXISTS main.{table}")
    })
    .await?;
    emptied.commit().await?;
    tracing::info!("the audit trail moved out of the data's file into a file of its own");
    Ok(())
}

/// Runs `statement` of each of the trail's tables in `tx`.
async fn on_each_table(tx: &mut super::Tx, statement: impl Fn(&str) -> String) -> Result<()> {
    for table in TRAIL_TABLES {
        sqlx::query(sqlx::AssertSqlSafe(statement(table)))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
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
                None => {
                    let connection = rusqlite::Connection::open_with_flags(
                        &file,
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    connection.execute_batch(&attach_trail(&file))?;
                    connection
                }
            };
            // Without a schema: every attached database's WAL, the trail's too.
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
        // (Less than all 2 MiB: the file's free pages, such as those the trail's move left, take
        // some of them.)
        while std::fs::metadata(&file).expect("the file").len() < before + 1_500_000 {
            assert!(
                waited < super::CHECKPOINT_EVERY * 10,
                "no checkpoint copied the WAL into the file"
            );
            tokio::time::sleep(super::CHECKPOINT_EVERY / 4).await;
            waited += super::CHECKPOINT_EVERY / 4;
        }
        store.close().await;
    }

    fn entry(n: u64) -> crate::domain::audit::AuditEntry {
        crate::domain::audit::AuditEntry {
            at: 1_700_000_000_000_000 + n as i64,
            agency_id: "140100/hr".into(),
            jurisdiction: "140100".into(),
            fingerprint: "ab".repeat(32),
            peer: "127.0.0.1:50000".into(),
            method: "/quotahub.v1.PersonnelService/CheckHire".into(),
            touched: format!("call {n}"),
            outcome: "OK".into(),
        }
    }

    /// The names of the audit trail's tables a file holds, read on a connection of its own.
    fn trail_tables_in(file: &std::path::Path) -> Vec<String> {
        let connection = rusqlite::Connection::open(file).expect("the file");
        let mut statement = connection
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'audit%' \
                 ORDER BY name",
            )
            .expect("a query");
        statement
            .query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read")
    }

    /// An answered call's audit entry commits to the trail's file, not the data's: a reader of
    /// the data sees no change (`data_version`, which moves with every other connection's
    /// commit to the file), so SQLite keeps its page cache and its mapping of the file.
    #[tokio::test]
    async fn the_audit_trail_commits_to_a_file_of_its_own() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("hub.db");
        let store = super::on_file(&file).await;
        let reader = rusqlite::Connection::open(&file).expect("the data's file");
        let version = || -> i64 {
            reader
                .query_row("PRAGMA data_version", [], |row| row.get(0))
                .expect("its version")
        };
        let before = version();

        store
            .append_audit((1..=40).map(entry).collect())
            .await
            .expect("appended");
        assert_eq!(
            version(),
            before,
            "the trail's append changed the data's file"
        );
        assert_eq!(store.audit_head().await.expect("the head").0, 40);

        // A data write does change it: the version is what a reader's cache is kept by.
        let mut tx = store.begin().await.expect("a write");
        sqlx::query(
            "INSERT INTO agencies (id, kind, jurisdiction, enabled, created_at, updated_at) \
                     VALUES ('140100/hr', 'hr', '140100', 1, 0, 0)",
        )
        .execute(&mut *tx)
        .await
        .expect("written");
        tx.commit().await.expect("committed");
        assert_ne!(version(), before);

        assert!(
            trail_tables_in(&file).is_empty(),
            "{:?}",
            trail_tables_in(&file)
        );
        assert_eq!(
            trail_tables_in(&super::super::trail_file::trail_file(&file)),
            ["audit_checkpoints", "audit_head", "audit_log", "audit_tree"]
        );
        store.close().await;
    }

    /// A database whose trail is in the data's file, as every one made before the trail had a
    /// file of its own, has it moved on connecting: every entry, the head and the tree, still
    /// verified; and so does one whose move was cut short after the copy.
    #[tokio::test]
    async fn a_trail_kept_in_the_data_s_file_moves_into_its_own() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("hub.db");
        let store = super::on_file(&file).await;
        store
            .append_audit((1..=300).map(entry).collect())
            .await
            .expect("appended");
        let head = store.audit_head().await.expect("the head");
        let tree = store.audit_tree_head().await.expect("the tree");
        store.close().await;

        for cut_short in [false, true] {
            // Back into the data's file, as it was kept before (the tables as SQLite holds them,
            // their rows; the trail's own file gone, or left with its copy).
            let connection = rusqlite::Connection::open(&file).expect("the data's file");
            connection
                .execute_batch(&super::super::trail_file::attach_trail(&file))
                .expect("attached");
            let made: Vec<(String, String)> = {
                let mut statement = connection
                    .prepare(
                        "SELECT type, sql FROM trail.sqlite_master WHERE sql IS NOT NULL \
                         ORDER BY type = 'index'",
                    )
                    .expect("a query");
                statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .expect("rows")
                    .collect::<Result<_, _>>()
                    .expect("read")
            };
            for (kind, sql) in made {
                let head = if kind == "index" {
                    "CREATE INDEX "
                } else {
                    "CREATE TABLE "
                };
                connection
                    .execute_batch(&sql.replacen(head, &format!("{head}main."), 1))
                    .expect("made in the data's file");
            }
            for table in super::super::trail_file::TRAIL_TABLES {
                connection
                    .execute_batch(&format!(
                        "INSERT INTO main.{table} SELECT * FROM trail.{table}; \
                         {}",
                        if cut_short {
                            String::new()
                        } else {
                            format!("DROP TABLE trail.{table};")
                        }
                    ))
                    .expect("moved back");
            }
            drop(connection);
            assert_eq!(trail_tables_in(&file).len(), 4);

            let store = super::on_file(&file).await;
            assert!(trail_tables_in(&file).is_empty(), "cut short: {cut_short}");
            assert_eq!(store.audit_head().await.expect("the head"), head);
            assert_eq!(store.audit_tree_head().await.expect("the tree"), tree);
            let verdict = crate::audit::verify(&store).await.expect("verified");
            assert!(
                matches!(verdict, crate::audit::Verdict::Whole(300)),
                "{verdict:?}"
            );
            store.close().await;
        }
    }

    /// A month's payroll lines land together in the table and its indexes: the pages a month's
    /// lines write (the WAL's frames) are as many in the twelfth month as in the second (the
    /// first fills empty pages), give or take a fifth. With the index by person first, each line
    /// of a month went to a leaf of its own among every earlier month's: here the twelfth month
    /// wrote 2.3x the pages of the second; a city's plain INSERTs ran at 0.25-0.43x of their
    /// first month's rate by the twelfth.
    #[tokio::test]
    async fn a_month_of_payroll_writes_as_many_pages_as_the_second() {
        const PEOPLE: u64 = 2_000;
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("hub.db");
        let store = super::on_file(&file).await;
        store.close().await;
        drop(store);

        let mut connection = rusqlite::Connection::open(&file).expect("the data's file");
        connection
            .execute_batch("PRAGMA cache_size = -65536;")
            .expect("the writer's cache");
        let frames = |connection: &rusqlite::Connection, mode: &str| -> i64 {
            let (busy, log): (i64, i64) = connection
                .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .expect("a checkpoint");
            assert_eq!(busy, 0, "nothing else holds the file");
            log
        };
        let mut written = Vec::new();
        for month in 1..=12 {
            let period = format!("2024-{month:02}");
            frames(&connection, "TRUNCATE");
            let tx = connection.transaction().expect("a transaction");
            {
                let mut insert = tx
                    .prepare(
                        "INSERT INTO payroll_lines (agency_id, record_id, period, \
                         institution_uscc, resident_id, name, gross_fen, accepted_at) \
                         VALUES ('140100/finance', ?1, ?2, ?3, ?4, 'name', 600000, 0)",
                    )
                    .expect("a statement");
                // Each institution's people in turn, as a finance agency's file has them (four
                // institutions: each month's lines fill pages of their own in the index by
                // institution too); their resident IDs in no order.
                for person in 0..PEOPLE {
                    let resident = (person * 48_271 + 11) % 2_147_483_647 * 7_919 % 1_000_000_007;
                    insert
                        .execute(rusqlite::params![
                            format!("pay-{period}-{person:07}"),
                            period,
                            format!("91{:016}", person / 500),
                            format!("{resident:018}"),
                        ])
                        .expect("a line");
                }
            }
            tx.commit().expect("the month");
            written.push(frames(&connection, "PASSIVE"));
        }
        let (second, last) = (written[1], written[11]);
        eprintln!("pages each month's lines wrote: {written:?}");
        assert!(
            last * 5 <= second * 6,
            "the twelfth month wrote {last} pages, the second {second}: {written:?}"
        );
    }
}
