//! Reading rows through one interface, whichever connection holds them: a transaction of the
//! store's pools (`sqlx`), or a native SQLite connection read in place ([`NativeReaders`]).
//!
//! The checks are written once against [`Reader`]. A push runs them in its write transaction; a
//! pre-check on SQLite runs them on a native read connection in place, on the runtime's worker,
//! so its couple of dozen indexed reads cost no hand-off between threads, where `sqlx`'s SQLite
//! worker cost one for each statement and one per row, most of a pre-check's time (profiled: a
//! third of the samples were thread wake-ups, SQLite itself 2%), and one blocking task for the
//! whole read still cost more than the reads (see `Store::ask`).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Backend, Value};
use crate::error::{Error, Result};

/// A connection rows are read from, within one snapshot of the data.
pub trait Reader: Send {
    /// The rows it returns.
    type Row: Columns + Send + Sync;

    /// Which database it reads (placeholders and collations differ).
    fn backend(&self) -> Backend;

    /// Runs one statement, written with `$N` placeholders bound in order, and returns its rows.
    fn rows(
        &mut self,
        sql: &str,
        values: Vec<Value>,
    ) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;

    /// Whether the last statement went to the database (rather than being answered again from
    /// what was read before), for the count of work done.
    fn went_to_database(&self) -> bool {
        true
    }

    /// The steps of SQLite's virtual machine the last statement took (rows looked at, not only
    /// rows returned), where the connection can tell; 0 where it cannot.
    fn last_steps(&self) -> u64 {
        0
    }
}

/// The columns of a stored row, by name: what the decoders read, whichever driver read the row.
/// Stored values are text or integers (dates, codes and identifiers are text).
pub trait Columns {
    /// A text column, `None` when NULL.
    fn text(&self, name: &str) -> Result<Option<String>>;
    /// An integer column, `None` when NULL.
    fn int(&self, name: &str) -> Result<Option<i64>>;
}

impl<T: Columns> Columns for Arc<T> {
    fn text(&self, name: &str) -> Result<Option<String>> {
        (**self).text(name)
    }

    fn int(&self, name: &str) -> Result<Option<i64>> {
        (**self).int(name)
    }
}

/// A statement's text and values.
type Statement = (String, Vec<Value>);

/// A reader that runs each distinct statement (text and values) once and answers it again from
/// what it read: within one snapshot the same statement returns the same rows. A pre-check asks
/// some of what its decision already read again for the numbers beside the verdict (the quotas,
/// the roll's count, the year's plans); it asks them through this instead of reading twice. The
/// rows are kept shared, since not every driver's rows can be copied (PostgreSQL's).
pub(crate) struct ReadOnce<'a, R: Reader> {
    inner: &'a mut R,
    read: HashMap<Statement, Vec<Arc<R::Row>>>,
    answered_again: bool,
}

impl<'a, R: Reader> ReadOnce<'a, R> {
    /// Reads through `inner`, which must hold one snapshot (a read transaction).
    pub(crate) fn new(inner: &'a mut R) -> ReadOnce<'a, R> {
        ReadOnce {
            inner,
            read: HashMap::new(),
            answered_again: false,
        }
    }
}

impl<R: Reader> Reader for ReadOnce<'_, R> {
    type Row = Arc<R::Row>;

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    async fn rows(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<Arc<R::Row>>> {
        let key = (sql.to_owned(), values);
        if let Some(rows) = self.read.get(&key) {
            self.answered_again = true;
            return Ok(rows.clone());
        }
        self.answered_again = false;
        let rows: Vec<Arc<R::Row>> = self
            .inner
            .rows(sql, key.1.clone())
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        self.read.insert(key, rows.clone());
        Ok(rows)
    }

    fn went_to_database(&self) -> bool {
        !self.answered_again
    }

    fn last_steps(&self) -> u64 {
        self.inner.last_steps()
    }
}

impl Reader for sqlx::Transaction<'_, sqlx::Any> {
    type Row = AnyRow;

    fn backend(&self) -> Backend {
        if super::mark(self) == '?' {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    async fn rows(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<AnyRow>> {
        let sql = super::plain_on_sqlite(super::mark(self), sql);
        Ok(
            sqlx::query_with(sqlx::AssertSqlSafe(sql), super::bind_all(values)?)
                .fetch_all(&mut **self)
                .await?,
        )
    }
}

impl Columns for AnyRow {
    fn text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.try_get(name)?)
    }

    fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.try_get(name)?)
    }
}

/// Native read connections to the SQLite file, kept for reuse. Each is opened read-only; the
/// file is in WAL mode (the writer set it), so a read sees one committed state and never waits
/// for the writer.
///
/// A connection goes back idle still inside its read, when no data can have been written since
/// it began: the next pre-check reads the same snapshot with the pages it has cached. Ending the
/// read and beginning another after any commit (the audit trail's, at nearly every call) would
/// make SQLite empty the connection's page cache, and a pre-check would start cold every time
/// (`perf`: most of a CheckHire's time at 16 callers was SQLite finding its pages again).
#[derive(Debug)]
pub(crate) struct NativeReaders {
    path: PathBuf,
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection: reads beyond them wait for one rather than open another (an
    /// open parses the schema, and a burst of callers would open and close them by the dozen).
    permits: Arc<tokio::sync::Semaphore>,
    /// The store's writer: a snapshot is kept only when taken while it is idle or writing the
    /// audit trail only.
    writer: sqlx::AnyPool,
    /// Bytes of the file each connection maps (`StoreOptions::sqlite_mapped_bytes`).
    mapped: u64,
    /// Write transactions that may change data (all but the audit trail's) begun so far.
    data_writes: AtomicU64,
    /// Whether the writer holds a transaction that may change data: set as it begins (before
    /// it is counted in `data_writes`), cleared once its connection is back in the pool
    /// (committed or rolled back), by the writer pool's `after_release`.
    data_writing: Arc<AtomicBool>,
}

/// An idle connection, and the read it is still inside, if it was kept.
#[derive(Debug)]
struct Idle {
    connection: rusqlite::Connection,
    kept: Option<Kept>,
}

/// A read kept open: the data write transactions begun before it, and when it began.
#[derive(Debug, Clone, Copy)]
struct Kept {
    data_writes: u64,
    since: Instant,
}

/// How long an idle connection stays inside one read at most: a read holds back the data WAL's
/// checkpoint and its restart.
const KEPT_AT_MOST: Duration = Duration::from_millis(250);

/// Prepared statements kept per connection: the pre-checks issue a few dozen distinct texts.
const STATEMENT_CACHE: usize = 64;

impl NativeReaders {
    /// Readers of the SQLite file at `path`, at most `connections` at once, each mapping
    /// `mapped` bytes of it, beside the store's `writer`, whose pool clears `data_writing` as a
    /// connection comes back to it.
    pub(crate) fn new(
        path: PathBuf,
        connections: usize,
        mapped: u64,
        writer: sqlx::AnyPool,
        data_writing: Arc<AtomicBool>,
    ) -> NativeReaders {
        NativeReaders {
            path,
            mapped,
            idle: Mutex::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(connections.max(1))),
            writer,
            data_writes: AtomicU64::new(0),
            data_writing,
        }
    }

    /// Waits for a connection to be free: the permit is handed to [`NativeReaders::begin`].
    pub(crate) async fn wait(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("the store is closing".into()))
    }

    /// The SQLite file read.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether the store was closed.
    pub(crate) fn closed(&self) -> bool {
        self.writer.is_closed()
    }

    /// The store has begun a write transaction (it holds the writer): one that may change data
    /// makes every kept read stale. Either way reads kept too long end here, so that the commit
    /// to come can checkpoint the WAL past them.
    pub(crate) fn writing(&self, data: bool) {
        if data {
            // Flagged before it is counted: a read that sees the count sees the flag too.
            self.data_writing.store(true, Ordering::SeqCst);
            self.data_writes.fetch_add(1, Ordering::SeqCst);
        }
        let now = Instant::now();
        self.idle.lock().expect("not poisoned").retain_mut(|idle| {
            let stale = idle
                .kept
                .is_some_and(|kept| data || now.duration_since(kept.since) > KEPT_AT_MOST);
            !stale || end_read(idle)
        });
    }

    /// Starts a read on a connection (opened if none is idle yet), holding `permit` until the
    /// read ends, or continues a kept read that no data written since can have made stale.
    /// Blocks while SQLite opens or begins; a pre-check's whole read does (see `Store::ask`).
    pub(crate) fn begin(
        self: &Arc<Self>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<NativeRead> {
        let idle = self.idle.lock().expect("not poisoned").pop();
        let mut idle = match idle {
            Some(idle) => idle,
            None => Idle {
                connection: self.open()?,
                kept: None,
            },
        };
        let current = idle.kept.filter(|kept| {
            kept.data_writes == self.data_writes.load(Ordering::SeqCst)
                && kept.since.elapsed() <= KEPT_AT_MOST
        });
        let kept = match current {
            Some(kept) => Some(kept),
            None => {
                if !end_read(&mut idle) {
                    idle.connection = self.open()?;
                }
                // Read before the writer is looked at: a data write that takes the writer after
                // the look counts itself after this read, so the kept read is never taken again.
                // A write in flight may commit after this read begins, unseen by it, yet be
                // counted already: unless it writes the audit trail only, the read is not kept.
                let data_writes = self.data_writes.load(Ordering::SeqCst);
                let open = self.writer.size() as usize;
                let quiet = open > 0
                    && (self.writer.num_idle() == open
                        || !self.data_writing.load(Ordering::SeqCst));
                idle.connection.execute_batch("BEGIN")?;
                quiet.then(|| Kept {
                    data_writes,
                    since: Instant::now(),
                })
            }
        };
        Ok(NativeRead {
            connection: Some(idle.connection),
            kept,
            steps: 0,
            readers: self.clone(),
            _permit: permit,
        })
    }

    fn open(&self) -> Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let connection = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // The file mapped: a pre-check seeks a few pages of each of a dozen indexes anywhere in
        // the file, more than a connection's own cache keeps, and a page mapped is the operating
        // system's one copy, where a page read is copied into each connection's cache (`perf`
        // of CheckHire at 16 callers: a tenth of the samples in `pread`). Only since the audit
        // trail has a file of its own: SQLite unmaps the file at the next read after any commit
        // to it, and at every call's commit to the trail the faults cost more than the reads.
        connection.execute_batch(&format!(
            "{}PRAGMA mmap_size = {};",
            super::trail_file::attach_trail(&self.path),
            self.mapped
        ))?;
        Ok(connection)
    }
}

/// Ends an idle connection's kept read, if any; false when it would not end (the connection is
/// then not to be used again).
fn end_read(idle: &mut Idle) -> bool {
    idle.kept.take().is_none() || idle.connection.execute_batch("ROLLBACK").is_ok()
}

/// One read in progress on a native connection; the connection goes back to the idle ones when
/// the read ends (dropped), still inside the read when it may be kept.
pub(crate) struct NativeRead {
    connection: Option<rusqlite::Connection>,
    /// Whether the read may be kept, and since when.
    kept: Option<Kept>,
    /// The virtual machine's steps of the last statement.
    steps: u64,
    readers: Arc<NativeReaders>,
    /// Released after the connection is back among the idle ones (fields drop after `drop`).
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Runs one statement on a native connection (its text as SQLite takes it) and returns its rows
/// and the virtual machine's steps it took; prepared once per connection and text.
fn native_rows(
    connection: &rusqlite::Connection,
    sql: &str,
    values: &[Value],
) -> Result<(Vec<NativeRow>, u64)> {
    let started = std::time::Instant::now();
    let mut statement = connection.prepare_cached(sql)?;
    let names = column_names(&statement, sql);
    let count = names.len();
    let mut rows = statement.query(rusqlite::params_from_iter(values.iter()))?;
    let mut out = Vec::new();
    let mut text_size = 0;
    while let Some(row) = rows.next()? {
        let mut text = String::with_capacity(text_size);
        let mut cells = Vec::with_capacity(count);
        for i in 0..count {
            use rusqlite::types::{Type, ValueRef};
            cells.push(match row.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(int) => Cell::Int(int),
                ValueRef::Text(bytes) => {
                    let start = text.len();
                    text.push_str(std::str::from_utf8(bytes).map_err(|_| {
                        Error::Internal(format!("column {i} holds text that is not UTF-8"))
                    })?);
                    Cell::Text(start, text.len())
                }
                ValueRef::Real(_) => Cell::Other(Type::Real),
                ValueRef::Blob(_) => Cell::Other(Type::Blob),
            });
        }
        text_size = text.len();
        out.push(NativeRow {
            names: names.clone(),
            text,
            cells,
        });
    }
    drop(rows);
    let steps = statement.reset_status(rusqlite::StatementStatus::VmStep);
    let steps = u64::try_from(steps).unwrap_or(0);
    // As sqlx logs its statements (`sqlx::query`), for summing a pre-check's reads per text.
    tracing::debug!(
        target: "quotahub::native_read",
        summary = %sql,
        rows_returned = out.len(),
        steps,
        elapsed = ?started.elapsed(),
        "native read"
    );
    Ok((out, steps))
}

thread_local! {
    /// The column names of the statements this thread ran natively, by text: every row carries
    /// them, and collecting them again for each statement was an allocation per column
    /// (`perf`: a fiftieth of a pre-check).
    static COLUMN_NAMES: std::cell::RefCell<HashMap<String, Arc<[String]>>> =
        std::cell::RefCell::default();
}

/// Texts whose names a thread keeps at most: the statements read natively are a few dozen.
const COLUMN_NAMES_KEPT: usize = 256;

/// `statement`'s column names: those kept for `sql` when they still are its names (a
/// connection to another schema could name them otherwise), else read and kept.
fn column_names(statement: &rusqlite::Statement<'_>, sql: &str) -> Arc<[String]> {
    COLUMN_NAMES.with_borrow_mut(|kept| {
        let count = statement.column_count();
        let same = |names: &Arc<[String]>| {
            names.len() == count
                && names
                    .iter()
                    .enumerate()
                    .all(|(i, name)| statement.column_name(i).is_ok_and(|n| n == name))
        };
        if let Some(names) = kept.get(sql).filter(|names| same(names)) {
            return names.clone();
        }
        let names: Arc<[String]> = statement
            .column_names()
            .iter()
            .map(ToString::to_string)
            .collect();
        if kept.len() >= COLUMN_NAMES_KEPT {
            kept.clear();
        }
        kept.insert(sql.to_owned(), names.clone());
        names
    })
}

impl Drop for NativeRead {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        // A read that cannot end cleanly leaves its connection behind rather than reuse it.
        if self.kept.is_some() || connection.execute_batch("ROLLBACK").is_ok() {
            self.readers.idle.lock().expect("not poisoned").push(Idle {
                connection,
                kept: self.kept,
            });
        }
    }
}

impl InPlace for NativeRead {
    fn connection(&self) -> &rusqlite::Connection {
        self.connection.as_ref().expect("held until dropped")
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn set_steps(&mut self, steps: u64) {
        self.steps = steps;
    }
}

/// A native SQLite connection read in place, on the blocking thread its caller is on: a
/// pre-check's read ([`NativeRead`]) or a push's write transaction (`write::NativeWrite`).
pub trait InPlace: Send {
    /// The connection, inside its transaction.
    fn connection(&self) -> &rusqlite::Connection;
    /// The virtual machine's steps of the last statement.
    fn steps(&self) -> u64;
    /// Keeps the steps of the statement just run.
    fn set_steps(&mut self, steps: u64);
}

impl<T: InPlace> Reader for T {
    type Row = NativeRow;

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn last_steps(&self) -> u64 {
        self.steps()
    }

    /// Reads in place: the caller is already on a blocking thread, so the future is ready.
    fn rows(
        &mut self,
        sql: &str,
        values: Vec<Value>,
    ) -> impl Future<Output = Result<Vec<NativeRow>>> + Send {
        let read = native_rows(self.connection(), &super::on_sqlite(sql, false), &values);
        std::future::ready(read.map(|(rows, steps)| {
            self.set_steps(steps);
            rows
        }))
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Text(text) | Value::OptText(Some(text)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))
            }
            Value::Int(int) | Value::OptInt(Some(int)) => ToSqlOutput::from(*int),
            Value::OptText(None) | Value::OptInt(None) => ToSqlOutput::from(rusqlite::types::Null),
        })
    }
}

/// A row read natively: the statement's column names (shared by its rows), and its values with
/// the text of all its columns in one buffer: two allocations a row, however many columns it has
/// (`perf` of an appointments push: a third of the check's reads in allocating a string per
/// column and a vector per row).
#[derive(Debug, Clone)]
pub struct NativeRow {
    names: Arc<[String]>,
    text: String,
    cells: Vec<Cell>,
}

/// One column of a [`NativeRow`].
#[derive(Debug, Clone, Copy)]
enum Cell {
    Null,
    Int(i64),
    /// Where in the row's text.
    Text(usize, usize),
    /// What no decoder reads (a real, a blob).
    Other(rusqlite::types::Type),
}

impl NativeRow {
    fn cell(&self, name: &str) -> Result<Cell> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.cells[i])
            .ok_or_else(|| Error::Internal(format!("no column `{name}` in the row read")))
    }
}

impl Columns for NativeRow {
    fn text(&self, name: &str) -> Result<Option<String>> {
        match self.cell(name)? {
            Cell::Null => Ok(None),
            Cell::Text(start, end) => Ok(Some(self.text[start..end].to_owned())),
            Cell::Int(_) => Err(mismatch(name, "text", rusqlite::types::Type::Integer)),
            Cell::Other(found) => Err(mismatch(name, "text", found)),
        }
    }

    fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.cell(name)? {
            Cell::Null => Ok(None),
            Cell::Int(int) => Ok(Some(int)),
            Cell::Text(..) => Err(mismatch(name, "an integer", rusqlite::types::Type::Text)),
            Cell::Other(found) => Err(mismatch(name, "an integer", found)),
        }
    }
}

fn mismatch(name: &str, wanted: &str, found: rusqlite::types::Type) -> Error {
    Error::Internal(format!("column `{name}` holds {found:?}, not {wanted}"))
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    /// A native reader maps as much of the file as the store's options say, none when they say
    /// none.
    #[tokio::test]
    async fn a_native_reader_maps_what_the_options_say() {
        for mapped in [0, 1 << 30, 64 << 20] {
            let dir = tempfile::tempdir().expect("a directory");
            let options = super::super::StoreOptions {
                sqlite_mapped_bytes: mapped,
                ..super::super::StoreOptions::default()
            };
            let url = format!("sqlite://{}", dir.path().join("hub.db").display());
            let store = Store::connect(&url, &options).await.expect("a store");
            let native = store.native.clone().expect("an SQLite file");
            let permit = native.wait().await.expect("a permit");
            let mut read = native.begin(permit).expect("a read");
            let rows = read
                .rows("PRAGMA mmap_size", Vec::new())
                .await
                .expect("asked");
            assert_eq!(
                rows[0].int("mmap_size").expect("an integer"),
                Some(mapped as i64)
            );
            drop(read);
            store.close().await;
        }
    }

    /// Counts the rows of `table` in a native read, as a pre-check reads.
    async fn count(store: &Store, table: &str) -> i64 {
        let native = store.native.clone().expect("an SQLite file");
        let permit = native.wait().await.expect("a permit");
        let mut read = native.begin(permit).expect("a read");
        let rows = read
            .rows(&format!("SELECT COUNT(*) AS n FROM {table}"), Vec::new())
            .await
            .expect("counted");
        rows[0].int("n").expect("an integer").expect("not NULL")
    }

    /// A native row gives each column back as it was stored, the texts of several columns (in
    /// Chinese, more than a byte a character) from one buffer, and refuses a column read as what
    /// it is not.
    #[test]
    fn a_native_row_gives_each_column_back() {
        let connection = rusqlite::Connection::open_in_memory().expect("a database");
        let (rows, _) = native_rows(
            &connection,
            "SELECT ?1 AS name, ?2 AS n, NULL AS none, ?3 AS unit, 1.5 AS share",
            &[
                Value::from("张三"),
                Value::Int(42),
                Value::from("太原市编办"),
            ],
        )
        .expect("read");
        let row = &rows[0];
        assert_eq!(row.text("name").unwrap().as_deref(), Some("张三"));
        assert_eq!(row.text("unit").unwrap().as_deref(), Some("太原市编办"));
        assert_eq!(row.int("n").unwrap(), Some(42));
        assert_eq!(row.text("none").unwrap(), None);
        assert_eq!(row.int("none").unwrap(), None);
        assert!(row.int("name").is_err());
        assert!(row.text("n").is_err());
        assert!(row.text("share").is_err());
        assert!(row.text("missing").is_err());
    }

    /// On a file, the trail's appends go through the native writer (one hand-off for the whole
    /// append, not one for each statement) and chain whole; changing no data, they leave a kept
    /// read kept, and a data write still ends it.
    #[tokio::test]
    async fn an_audit_append_is_written_natively_and_leaves_the_kept_read() {
        use crate::domain::audit::AuditEntry;
        let dir = tempfile::tempdir().expect("a directory");
        let store = super::super::sqlite::on_file(&dir.path().join("hub.db")).await;
        let entry = |n: i64| AuditEntry {
            at: n,
            agency_id: "140100/hr".into(),
            jurisdiction: "140100".into(),
            fingerprint: "ab".repeat(32),
            peer: "127.0.0.1:50000".into(),
            method: "/quotahub.v1.HrService/CheckHire".into(),
            touched: format!("call {n}"),
            outcome: "OK".into(),
        };
        let native = store.native_writer().expect("a file has one").clone();
        writer_back(&store).await;
        assert_eq!(count(&store, "audit_log").await, 0);

        let begun = native.begun();
        assert_eq!(
            store
                .append_audit(vec![entry(1), entry(2)])
                .await
                .expect("appended"),
            2
        );
        assert_eq!(
            native.begun(),
            begun + 1,
            "the append went through the native writer"
        );
        writer_back(&store).await;
        assert_eq!(
            count(&store, "audit_log").await,
            0,
            "the kept read did not outlive the trail's append"
        );

        write_person(&store).await;
        assert_eq!(count(&store, "audit_log").await, 2);
        assert_eq!(
            store.append_audit(vec![entry(3)]).await.expect("appended"),
            3
        );
        assert_eq!(
            crate::audit::verify(&store).await.expect("verified"),
            crate::audit::Verdict::Whole(3)
        );
        store.close().await;
    }

    /// Runs `sql` in `tx`, which stays open.
    async fn run(tx: &mut super::super::Tx, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut **tx)
            .await
            .expect("written");
    }

    async fn write(mut tx: super::super::Tx, sql: &str) {
        run(&mut tx, sql).await;
        tx.commit().await.expect("committed");
    }

    /// A data write, committed, its writer back in the pool: it ends any kept read.
    async fn write_person(store: &Store) {
        let tx = store.begin().await.expect("a data write");
        write(
            tx,
            "INSERT INTO persons (resident_id, name, first_seen) VALUES ('p1', 'A', 0)",
        )
        .await;
        writer_back(store).await;
    }

    /// Waits for the writer's connection to be back in its pool (it goes back in a task of its own).
    async fn writer_back(store: &Store) {
        for _ in 0..10_000 {
            if store.writer.num_idle() == store.writer.size() as usize {
                return;
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        panic!("the writer's connection did not come back");
    }

    #[tokio::test]
    async fn a_kept_read_outlives_the_trail_but_never_a_data_write() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = super::super::sqlite::on_file(&dir.path().join("hub.db")).await;
        writer_back(&store).await;
        assert_eq!(count(&store, "audit_tree").await, 0);

        // The trail's commit leaves the read kept: it still sees the trail as it was.
        let tx = store.begin_trail().await.expect("a trail write");
        write(tx, "INSERT INTO audit_tree (idx, hash) VALUES (0, 'h0')").await;
        writer_back(&store).await;
        assert_eq!(
            count(&store, "audit_tree").await,
            0,
            "the kept read was not reused"
        );

        // Any other write ends it: the next read sees both.
        write_person(&store).await;
        assert_eq!(count(&store, "persons").await, 1);
        assert_eq!(count(&store, "audit_tree").await, 1);

        // A read begun while a write holds the writer is not kept: it would not see the commit.
        let mut tx = store.begin().await.expect("a data write");
        run(
            &mut tx,
            "INSERT INTO persons (resident_id, name, first_seen) VALUES ('p2', 'B', 0)",
        )
        .await;
        assert_eq!(count(&store, "persons").await, 1);
        tx.commit().await.expect("committed");
        assert_eq!(count(&store, "persons").await, 2);

        // One begun while the trail's write holds the writer is kept: that write changes no
        // data, so the read may go on after it commits (under load the writer is seldom idle).
        writer_back(&store).await;
        let mut tx = store.begin_trail().await.expect("a trail write");
        run(
            &mut tx,
            "INSERT INTO audit_tree (idx, hash) VALUES (1, 'h1')",
        )
        .await;
        assert_eq!(count(&store, "audit_tree").await, 1);
        tx.commit().await.expect("committed");
        writer_back(&store).await;
        assert_eq!(
            count(&store, "audit_tree").await,
            1,
            "the read begun during the trail's write was not kept"
        );
        store.close().await;
    }
}
