//! Writing rows through one interface, whichever connection holds the transaction: a transaction
//! of the store's writer pool (`sqlx`), or, for a push on an SQLite file, a native connection
//! written in place ([`NativeWriter`]).
//!
//! A push is written once against [`Writer`]. On an SQLite file it runs on a native connection
//! on the writer's own thread, its statements and their rows costing no hand-off to `sqlx`'s
//! connection thread and no copy of every value read into `sqlx::Any`'s rows (`perf` of a
//! city's pushes: about a third of their time). The writer pool's one connection is held
//! meanwhile, so SQLite still has one writer at a time and every other write waits as before.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;

use super::read::{InPlace, Reader};
use super::{Backend, Store, Value, bind_all};
use crate::error::Result;

/// A write transaction's connection: it reads ([`Reader`]) and writes. Public only because
/// `push::RecordKind::apply`, a public trait's method, takes one; this module is private, so
/// nothing outside the crate can name it.
pub trait Writer: Reader {
    /// Runs one statement, written with `$N` placeholders (or plain `?` on SQLite, bound in
    /// order), and returns how many rows it changed.
    fn execute(
        &mut self,
        sql: &str,
        values: Vec<Value>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Runs a statement whose `$N` placeholders appear in the order they are bound: on SQLite as
    /// plain `?`, which SQLite binds without looking a number up (see `store::mark`).
    fn execute_in_order(
        &mut self,
        sql: &str,
        values: Vec<Value>,
    ) -> impl Future<Output = Result<u64>> + Send {
        let sql = match self.backend() {
            Backend::Sqlite => super::on_sqlite(sql, false),
            Backend::Postgres => std::borrow::Cow::Borrowed(sql),
        };
        async move { self.execute(&sql, values).await }
    }

    /// Inserts `rows` by `{head} VALUES (...) {tail}` and returns how many it inserted (fewer
    /// than given when the tail is `ON CONFLICT DO NOTHING` and some already existed): as
    /// multi-row statements, as few as the bind limit allows, where each statement is a hand-off
    /// to a connection's thread or a round trip.
    fn insert_rows<const N: usize>(
        &mut self,
        head: &str,
        tail: &str,
        rows: Vec<[Value; N]>,
    ) -> impl Future<Output = Result<u64>> + Send {
        async move {
            let mut inserted = 0;
            let per_statement = (super::MAX_BIND_VALUES / N).max(1);
            let mark = match self.backend() {
                Backend::Sqlite => '?',
                Backend::Postgres => '$',
            };
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<[Value; N]> = rows.by_ref().take(per_statement).collect();
                let sql = format!(
                    "{head} VALUES {} {tail}",
                    super::placeholders(mark, chunk.len(), N, 1)
                );
                inserted += self
                    .execute(&sql, chunk.into_iter().flatten().collect())
                    .await?;
            }
            Ok(inserted)
        }
    }
}

impl Writer for sqlx::Transaction<'_, sqlx::Any> {
    async fn execute(&mut self, sql: &str, values: Vec<Value>) -> Result<u64> {
        Ok(
            sqlx::query_with(sqlx::AssertSqlSafe(sql.to_owned()), bind_all(values)?)
                .execute(&mut **self)
                .await?
                .rows_affected(),
        )
    }
}

/// The native connection to the SQLite file that pushes write on, kept between them.
#[derive(Debug)]
pub(crate) struct NativeWriter {
    path: PathBuf,
    idle: Mutex<Option<rusqlite::Connection>>,
    /// Transactions begun on it, for the tests that hold the pushes to it.
    begun: std::sync::atomic::AtomicU64,
    /// The queue of the one thread the transactions run on ([`NativeWriter::run`]); the thread
    /// ends when the writer, and with it the queue, is dropped.
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Work handed to the writer's thread.
type Job = Box<dyn FnOnce() + Send>;

/// Prepared statements kept on the writer: a push's few dozen texts, its single-row inserts
/// among them. (When its inserts were multi-row, each batch size its own statement of up to a
/// megabyte prepared, 256 of them let the city bench's hub hold 545 MiB at most, 64 453 MiB.)
const STATEMENT_CACHE: usize = 64;

impl NativeWriter {
    /// The writer of the SQLite file at `path` (already in WAL mode: the store's pool set it),
    /// its thread started in the current runtime's context.
    ///
    /// One thread rather than whichever of the blocking pool's is idle: the allocator gives each
    /// thread an arena of its own, and each arena that ran a push kept that push's peak (with
    /// batches of 5,000, the city's hub held 471–541 MiB at most on the blocking pool, 362 MiB
    /// on one thread, its ingest 2–5% slower in alternating runs). A job that panics answers
    /// nothing and the thread goes on.
    pub(crate) fn new(path: PathBuf) -> NativeWriter {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                for job in queue {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .expect("the writer's thread starts");
        NativeWriter {
            path,
            idle: Mutex::default(),
            begun: std::sync::atomic::AtomicU64::new(0),
            jobs,
        }
    }

    /// Runs `job` on the writer's own thread, after the jobs before it.
    fn run(&self, job: Job) -> Result<()> {
        self.jobs
            .send(job)
            .map_err(|_| crate::error::Error::Internal("the writer's thread has ended".into()))
    }

    fn open(&self) -> Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // As the pool's writer (`sqlite::WRITER_PRAGMAS`, which says why), the trail attached.
        connection.execute_batch(&super::trail_file::attach_trail(&self.path))?;
        connection.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
             PRAGMA cache_size = -65536; PRAGMA wal_autocheckpoint = 16384;",
        )?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(connection)
    }

    /// Transactions begun on it so far.
    #[cfg(test)]
    pub(crate) fn begun(&self) -> u64 {
        self.begun.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `work` in one transaction on the native connection, on this thread (the writer's): it
    /// commits when `work` returns `Some`, and rolls back when it returns `None` or fails. The
    /// caller holds the writer.
    pub(crate) fn transaction<T>(
        &self,
        work: impl FnOnce(&mut NativeWrite) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let idle = self.idle.lock().expect("not poisoned").take();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        connection.execute_batch("BEGIN IMMEDIATE")?;
        self.begun
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut write = NativeWrite {
            connection,
            steps: 0,
        };
        let done = work(&mut write);
        let ended = match &done {
            Ok(Some(_)) => write.connection.execute_batch("COMMIT"),
            _ => write.connection.execute_batch("ROLLBACK"),
        };
        match ended {
            // A connection that could not end its transaction is not used again.
            Ok(()) => *self.idle.lock().expect("not poisoned") = Some(write.connection),
            Err(error) => {
                return Err(match done {
                    Err(first) => first,
                    Ok(_) => error.into(),
                });
            }
        }
        done
    }
}

/// A native connection inside a write transaction.
pub(crate) struct NativeWrite {
    connection: rusqlite::Connection,
    steps: u64,
}

impl InPlace for NativeWrite {
    fn connection(&self) -> &rusqlite::Connection {
        &self.connection
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
    }
}

impl Writer for NativeWrite {
    fn execute(
        &mut self,
        sql: &str,
        values: Vec<Value>,
    ) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(self.run(sql, &values))
    }

    fn insert_rows<const N: usize>(
        &mut self,
        head: &str,
        tail: &str,
        rows: Vec<[Value; N]>,
    ) -> impl Future<Output = Result<u64>> + Send {
        std::future::ready(self.insert_each(head, tail, &rows))
    }
}

impl NativeWrite {
    /// One prepared single-row statement, run for each row in place: a multi-row statement would
    /// be prepared again for every row count a batch comes in (its text up to a megabyte, hashed
    /// and compared for the cache besides), and SQLite writes a statement journal for it, since a
    /// conflict half-way must undo the rows before it (`perf` of a city's personnel events: a
    /// fifth of the inserts' time in those).
    fn insert_each<const N: usize>(
        &mut self,
        head: &str,
        tail: &str,
        rows: &[[Value; N]],
    ) -> Result<u64> {
        let sql = format!("{head} VALUES {} {tail}", super::placeholders('?', 1, N, 1));
        let mut statement = self.connection.prepare_cached(&sql)?;
        let mut inserted = 0;
        for row in rows {
            inserted += statement.execute(rusqlite::params_from_iter(row.iter()))? as u64;
        }
        Ok(inserted)
    }

    fn run(&mut self, sql: &str, values: &[Value]) -> Result<u64> {
        let mut statement = self
            .connection
            .prepare_cached(&super::on_sqlite(sql, true))?;
        let changed = statement.execute(rusqlite::params_from_iter(values.iter()))?;
        Ok(changed as u64)
    }
}

impl Store {
    /// The native connection pushes write on (an SQLite file; none on PostgreSQL or in memory).
    pub(crate) fn native_writer(&self) -> Option<&std::sync::Arc<NativeWriter>> {
        self.native_writer.as_ref()
    }

    /// Runs `work` in one transaction on the native writer ([`NativeWriter::transaction`]) on its
    /// thread, under the caller's span, holding the writer pool's one connection, idle,
    /// meanwhile: no other write begins until it ends. One that may change `data` (all but the
    /// audit trail's) makes the pre-checks' kept reads stale, as [`Store::begin`] does.
    pub(crate) async fn native_transaction<T: Send + 'static>(
        &self,
        data: bool,
        work: impl FnOnce(&mut NativeWrite) -> Result<Option<T>> + Send + 'static,
    ) -> Result<Option<T>> {
        let native = self
            .native_writer
            .clone()
            .ok_or_else(|| crate::error::Error::Internal("no native writer here".into()))?;
        let held = self.writer.acquire().await?;
        if let Some(readers) = &self.native {
            readers.writing(data);
        }
        let span = tracing::Span::current();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let writer = native.clone();
        native.run(Box::new(move || {
            let _entered = span.enter();
            let _ = answer.send(writer.transaction(work));
        }))?;
        let done = answered
            .await
            .map_err(|_| crate::error::Error::Internal("a native write did not finish".into()))?;
        drop(held);
        done
    }
}

#[cfg(test)]
mod tests {
    use super::super::Value;
    use super::super::on_sqlite;
    use super::super::read::Columns;
    use super::{NativeWriter, Reader, Writer};
    use crate::error::Error;
    use futures::FutureExt as _;

    /// A push on an SQLite file is one transaction of the native writer, and what it stored is
    /// there for the pool's reads; its resend is answered from the first, stored once.
    #[tokio::test]
    async fn a_push_on_an_sqlite_file_is_written_on_the_native_connection() {
        use crate::domain::{
            Agency, AgencyKind, Funding, Jurisdiction, Period, QuotaCategory, Uscc,
        };
        let dir = tempfile::tempdir().expect("a directory");
        let store = super::super::sqlite::on_file(&dir.path().join("hub.db")).await;
        let finance = Agency::new(
            Jurisdiction::parse("350100").expect("a division"),
            AgencyKind::Finance,
        );
        let funding = super::super::push::Submission {
            record_id: "f1".to_owned(),
            content_hash: "h1".to_owned(),
            record: Funding {
                institution: Uscc::parse("91350100M000100Y43").expect("a USCC"),
                category: QuotaCategory::PublicInstitution,
                period: Period::parse("2024-05").expect("a period"),
                funded_headcount: 3,
                amount_fen: 100,
            },
        };
        let native = store.native_writer().expect("a file has one").clone();
        let begun = || native.begun();
        assert_eq!(begun(), 0);

        let first = store
            .push(&finance, std::slice::from_ref(&funding))
            .await
            .expect("pushed");
        assert!(matches!(&first[0], Ok(receipt) if !receipt.replayed));
        assert_eq!(begun(), 1, "the push went through the native writer");
        let again = store.push(&finance, &[funding]).await.expect("pushed");
        assert!(matches!(&again[0], Ok(receipt) if receipt.replayed));
        assert_eq!(begun(), 2);
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fundings")
            .fetch_one(store.readers())
            .await
            .expect("read by the pool");
        assert_eq!(stored, 1);
        store.close().await;
    }

    /// A push's work on the native connection commits only when it says so: what a work that
    /// gives up (`None`) or fails wrote is gone, and the connection is used again afterwards.
    #[tokio::test]
    async fn a_native_transaction_commits_only_what_its_work_keeps() {
        let dir = tempfile::tempdir().expect("a directory");
        let file = dir.path().join("hub.db");
        let store = super::super::sqlite::on_file(&file).await;
        let writer = NativeWriter::new(file);
        let put = |name: &'static str| {
            move |tx: &mut super::NativeWrite| {
                tx.execute(
                    "INSERT INTO feed_state (name, value) VALUES ($1, $2)",
                    vec![Value::from(name), Value::Int(7)],
                )
                .now_or_never()
                .expect("a native statement is done when it returns")
            }
        };
        let kept = writer.transaction(|tx| put("kept")(tx).map(Some));
        assert_eq!(kept.expect("written"), Some(1));
        let dropped = writer.transaction(|tx| put("dropped")(tx).map(|_| None::<()>));
        assert_eq!(dropped.expect("rolled back"), None);
        let failed = writer.transaction(|tx| {
            put("failed")(tx)?;
            Err::<Option<()>, _>(Error::Aborted("gave up".into()))
        });
        assert!(matches!(failed, Err(Error::Aborted(_))));

        let names = writer
            .transaction(|tx| {
                let rows = tx
                    .rows("SELECT name FROM feed_state ORDER BY name", Vec::new())
                    .now_or_never()
                    .expect("a native read is done when it returns")?;
                rows.iter()
                    .map(|row| row.text("name").map(Option::unwrap_or_default))
                    .collect::<crate::error::Result<Vec<String>>>()
                    .map(Some)
            })
            .expect("read");
        assert_eq!(names, Some(vec!["kept".to_owned()]));
        // The pool's connections see what the native one committed.
        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM feed_state WHERE name = 'kept'")
            .fetch_one(store.readers())
            .await
            .expect("read by the pool");
        assert_eq!(seen, 1);
        store.close().await;
    }

    /// Every native transaction runs on the writer's one thread, whichever task asked for it,
    /// and a work that panics answers an error without taking the thread, or the writer, along.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn native_transactions_run_on_the_writers_one_thread() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = super::super::sqlite::on_file(&dir.path().join("hub.db")).await;
        let thread = || {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .native_transaction(true, |_| Ok(Some(std::thread::current().id())))
                    .await
            })
        };
        let asked: Vec<_> = (0..8).map(|_| thread()).collect();
        let mut ran_on = std::collections::BTreeSet::new();
        for answer in asked {
            let id = answer.await.expect("joined").expect("ran").expect("kept");
            ran_on.insert(format!("{id:?}"));
        }
        assert_eq!(ran_on.len(), 1, "one thread ran them all: {ran_on:?}");

        let panicked = store
            .native_transaction(true, |_| -> crate::error::Result<Option<()>> {
                panic!("a work that panics")
            })
            .await;
        assert!(matches!(panicked, Err(Error::Internal(_))), "{panicked:?}");
        let after = thread().await.expect("joined").expect("ran").expect("kept");
        assert_eq!(ran_on.into_iter().next(), Some(format!("{after:?}")));
        assert_eq!(store.native_writer().expect("a file has one").begun(), 10);
        store.close().await;
    }

    #[test]
    fn placeholders_keep_their_numbers_on_sqlite() {
        assert_eq!(
            on_sqlite("VALUES ($1, $2, 1, $3, $3) WHERE a = $12 AND b = '$'", true),
            "VALUES (?1, ?2, 1, ?3, ?3) WHERE a = ?12 AND b = '$'"
        );
    }
}
