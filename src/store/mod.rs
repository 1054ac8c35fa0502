//! Persistence behind one [`Store`]. The backend is picked by the database URL's scheme:
//! `sqlite:` (the embedded default: WAL, one writer, foreign keys on) or `postgres:` (several
//! stateless hub replicas on one server).
//!
//! Both backends run the same SQL through `sqlx::Any`: placeholders are `$N`, which SQLite and
//! PostgreSQL both accept, and column types are spelled portably. What differs lives in the backend
//! modules: how to connect, the migrations, and how concurrent writers are kept apart. The
//! pre-checks read an SQLite file natively ([`read`]), and the pushes write it natively
//! ([`write`]), with the same statements.

mod acks;
mod balance;
pub mod campaign;
pub mod check;
mod codec;
pub mod evidence;
pub mod feed;
mod feed_tail;
mod findings;
pub mod freshness;
pub mod leadership;
pub mod ledger;
pub mod ledger_keys;
mod levels;
pub mod plain_sql;
mod postgres;
mod precheck;
pub mod push;
pub mod query;
mod read;
pub mod recheck;
pub mod reconcile;
pub mod roll_now;
mod secrets;
mod sqlite;
pub mod stats;
mod time_range;
mod trail_file;
pub mod trust;
mod write;

use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::{Any, AnyPool, Arguments, Transaction};

use crate::clock::Clock;
use crate::domain::findings::RulesConfig;
use crate::error::{Error, Result};

/// A connection idle this long is pinged before it is handed out; one used more recently is not.
const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

/// Both backends' pools, sized by `options`. `sqlx` pings every connection it takes back (which
/// also sends a dropped transaction's rollback), and by default pings it again before handing it
/// out: on PostgreSQL a round trip of its own for each pre-check, push and audit append, a
/// fifteenth of a CheckHire's. A connection returned less than [`PING_WHEN_IDLE`] ago answered
/// its last ping then; older ones are pinged, so that a server restarted meanwhile costs no call.
pub(crate) fn pooled<DB: sqlx::Database>(
    pool: sqlx::pool::PoolOptions<DB>,
    options: &StoreOptions,
) -> sqlx::pool::PoolOptions<DB> {
    pool.max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite: one process, one writer.
    Sqlite,
    /// PostgreSQL: any number of hub replicas.
    Postgres,
}

impl Backend {
    /// Picks the backend from a database URL.
    pub fn from_url(url: &str) -> Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::invalid(
                "database_url",
                "must start with sqlite: or postgres:",
            ))
        }
    }
}

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections for reads (and, on PostgreSQL, writes).
    pub max_connections: u32,
    /// How long a call waits for a connection before the store reports itself unavailable.
    pub acquire_timeout: Duration,
    /// On an SQLite file, how many bytes of it the pre-checks' readers map (0: none, each page
    /// read into each connection's cache): mapped pages are the operating system's file cache,
    /// counted in the process's resident memory.
    pub sqlite_mapped_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_mapped_bytes: 1 << 30,
        }
    }
}

/// The hub's storage. Cheap to clone; all clones share the pools.
#[derive(Clone, Debug)]
pub struct Store {
    /// Pool for reads.
    readers: AnyPool,
    /// Pool for write transactions: a single connection on SQLite (its one writer), the reader pool
    /// on PostgreSQL.
    writer: AnyPool,
    /// Which database this is.
    backend: Backend,
    /// How findings are checked at every push.
    checks: std::sync::Arc<Checks>,
    /// Bumped whenever this process (or, on PostgreSQL, another replica) may have added events to
    /// the feed; feed streams wait on it.
    feed_signal: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// The PostgreSQL URL, for the feed's LISTEN connection (none on SQLite: wake-ups are in process).
    url: Option<std::sync::Arc<String>>,
    /// Whether pushes check the findings they can change (the default). Off only for an initial
    /// load of history, which a full re-check then follows: checked push by push, years of
    /// backdated history would raise and resolve findings that were never true today.
    push_checks: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The feed's recent events, read once for every stream of this process.
    feed_tail: std::sync::Arc<feed_tail::FeedTail>,
    /// Acks waiting to be written together.
    acks: std::sync::Arc<acks::AckQueue>,
    /// Who signs the audit log's checkpoints and how often; none, no checkpoints are issued.
    log: Option<std::sync::Arc<trust::CheckpointPolicy>>,
    /// The re-check jobs this process runs or waits for: wake-ups and the changes waiters list.
    rechecks: std::sync::Arc<recheck::Runs>,
    /// Rows the pushes' and pre-checks' checks have read (for the complexity test and the metrics).
    check_reads: std::sync::Arc<check::CheckReads>,
    /// How REGIONAL_BALANCE has read the rolls' counts (for the complexity test).
    roll_reads: std::sync::Arc<roll_now::RollReads>,
    /// Native read connections for the pre-checks (an SQLite file; none on PostgreSQL, where
    /// the pool's connections are as direct).
    native: Option<std::sync::Arc<read::NativeReaders>>,
    /// The native connection pushes write on (an SQLite file; none on PostgreSQL or in memory).
    native_writer: Option<std::sync::Arc<write::NativeWriter>>,
    /// The native driver's pool that pushes and audit appends write through and pre-checks read
    /// from (PostgreSQL; none on SQLite).
    native_pg: Option<sqlx::PgPool>,
    /// The audit trail's appends' own connection and the head they left (PostgreSQL; none on
    /// SQLite).
    pg_trail: Option<std::sync::Arc<tokio::sync::Mutex<postgres::Trail>>>,
}

/// What the store needs to check findings: the rules' settings and the clock that says what
/// "today" is for the current roll.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// Thresholds and ceilings of the rules.
    pub rules: RulesConfig,
    /// Where today comes from.
    pub clock: Clock,
    /// Deadlines of alerts per severity.
    pub escalation: crate::domain::alerts::EscalationPolicy,
    /// The cadence agencies' data is held to (LATE_PAYROLL, BACKDATED_EVENT).
    pub cadence: crate::domain::freshness::Cadence,
}

/// A write transaction.
pub type Tx = Transaction<'static, Any>;

impl Store {
    /// Connects to `url`, creating an SQLite file if needed, and applies the migrations.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let store = match backend {
            Backend::Sqlite => sqlite::connect(url, options).await?,
            Backend::Postgres => postgres::connect(url, options).await?,
        };
        store.migrate().await?;
        if store.native.is_some() {
            sqlite::keep_trail_apart(&store).await?;
        }
        check::rebuild_counts(&store).await?;
        // Any date would do (a kept row says the span it holds for); today's is the one most read.
        store
            .fill_rolls(crate::clock::Clock::default().today())
            .await?;
        Ok(store)
    }

    fn pool_options(options: &StoreOptions) -> AnyPoolOptions {
        pooled(AnyPoolOptions::new(), options)
    }

    async fn migrate(&self) -> Result<()> {
        // One set of migrations: every statement is portable between the two backends.
        let migrator = sqlx::migrate!();
        migrator.run(&self.writer).await.map_err(|error| {
            tracing::error!(%error, "migration failed");
            Error::Internal(format!("database migration failed: {error}"))
        })
    }

    /// Uses these rules' settings and clock from now on.
    pub fn with_checks(mut self, checks: Checks) -> Store {
        self.checks = std::sync::Arc::new(checks);
        self
    }

    /// Signs checkpoints of the audit log thus from now on.
    pub fn with_log(mut self, log: trust::CheckpointPolicy) -> Store {
        self.log = Some(std::sync::Arc::new(log));
        self
    }

    /// Turns the findings check at every push on or off, for every clone of this store. Off, pushes
    /// are stored and answered without findings until a full re-check (`Store::reconcile`).
    pub fn set_push_checks(&self, on: bool) {
        self.push_checks
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether pushes check the findings they can change.
    pub fn push_checks(&self) -> bool {
        self.push_checks.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The rules' settings and clock.
    pub fn checks(&self) -> &Checks {
        &self.checks
    }

    /// Rows the checks of pushes and pre-checks have read since the store started.
    pub fn check_reads(&self) -> &check::CheckReads {
        &self.check_reads
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool for reads.
    pub fn readers(&self) -> &AnyPool {
        &self.readers
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once, so that a transaction
    /// never fails half-way for want of it.
    pub async fn begin(&self) -> Result<Tx> {
        self.begin_writing(true).await
    }

    /// Starts a write transaction that changes the audit trail and nothing else: the pre-checks'
    /// kept reads (of data, never of the trail) stay current through it.
    pub(crate) async fn begin_trail(&self) -> Result<Tx> {
        self.begin_writing(false).await
    }

    async fn begin_writing(&self, data: bool) -> Result<Tx> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        // Counted once the transaction holds the writer: see `NativeReaders::begin`.
        if let Some(native) = &self.native {
            native.writing(data);
        }
        Ok(tx)
    }

    /// Serializes transactions that touch the same keys (people, institutions) across hub replicas.
    /// SQLite has one writer, so there it is a no-op.
    ///
    /// A transaction calls this once, with every key it needs, before it reads what they guard:
    /// the keys are taken in one acquisition in one global order (by lock id), so two transactions
    /// can never each hold a key the other waits for. Taking keys in two calls breaks that (the
    /// first call's keys may sort after the second's). Only the feed's lock comes later, last.
    pub async fn lock_keys(&self, tx: &mut Tx, keys: &[String]) -> Result<()> {
        match self.backend {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => postgres::advisory_locks(tx, keys).await,
        }
    }

    /// Starts a write transaction and takes all of its keys' locks at once (see [`Store::lock_keys`]).
    pub async fn begin_locked(&self, keys: &[String]) -> Result<Tx> {
        let mut tx = self.begin().await?;
        self.lock_keys(&mut tx, keys).await?;
        Ok(tx)
    }

    /// On PostgreSQL, starts listening for other replicas' feed events until `stopped` changes.
    pub fn spawn_feed_listener(
        &self,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let url = self.url.as_ref()?;
        Some(postgres::spawn_feed_listener(
            self.clone(),
            url.to_string(),
            stopped,
        ))
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    /// Closes the pools, waiting for connections in use.
    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
        if let Some(native) = &self.native_pg {
            native.close().await;
        }
        if let Some(trail) = &self.pg_trail {
            trail.lock().await.close().await;
        }
    }
}

/// A value bound into a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// Text.
    Text(String),
    /// Text or NULL.
    OptText(Option<String>),
    /// An integer.
    Int(i64),
    /// An integer or NULL (PostgreSQL types a NULL by how it is bound).
    OptInt(Option<i64>),
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Text(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::Text(value.to_owned())
    }
}

impl From<Option<String>> for Value {
    fn from(value: Option<String>) -> Value {
        Value::OptText(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Value {
        Value::Int(i64::from(value))
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Int(i64::from(value))
    }
}

fn bind_all(values: Vec<Value>) -> Result<AnyArguments> {
    let mut arguments = AnyArguments::default();
    for value in values {
        let bound = match value {
            Value::Text(text) => arguments.add(text),
            Value::OptText(text) => arguments.add(text),
            Value::Int(int) => arguments.add(int),
            Value::OptInt(int) => arguments.add(int),
        };
        bound.map_err(|error| Error::Internal(format!("cannot bind a value: {error}")))?;
    }
    Ok(arguments)
}

/// The placeholder mark of a connection's backend: `$` (numbered `$N`) on PostgreSQL, `?` (plain,
/// bound in order) on SQLite. SQLite finds a named or numbered parameter by walking a list, both
/// when parsing and when sqlx binds it, which makes a statement with thousands of them quadratic;
/// plain `?` needs no lookup. Statements built here (the large multi-row ones) use these forms.
fn mark(connection: &sqlx::AnyConnection) -> char {
    if connection.backend_name() == "SQLite" {
        '?'
    } else {
        '$'
    }
}

/// On SQLite, turns the `$N` placeholders of a statement written for both backends into plain
/// `?`: they appear in binding order in every statement built here.
fn plain_on_sqlite(mark: char, sql: &str) -> String {
    if mark == '$' {
        return sql.to_owned();
    }
    on_sqlite(sql, false).into_owned()
}

/// A statement's `$N` placeholders as SQLite's `?N` (`numbered`), which it binds by number as
/// `sqlx` binds `$N`, for a statement that names one twice or out of order; or as plain `?`.
/// Borrowed when it has none. Every native statement passes through here, so it copies the text
/// between placeholders in runs rather than char by char (`perf`: a hundredth of a pre-check).
fn on_sqlite(sql: &str, numbered: bool) -> std::borrow::Cow<'_, str> {
    let bytes = sql.as_bytes();
    let mut out = String::new();
    let (mut copied, mut from) = (0, 0);
    while let Some(offset) = sql[from..].find('$') {
        let dollar = from + offset;
        let digits = bytes[dollar + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        from = dollar + 1 + digits;
        if digits == 0 {
            continue;
        }
        if out.is_empty() {
            out.reserve(sql.len());
        }
        out.push_str(&sql[copied..dollar]);
        out.push('?');
        if numbered {
            out.push_str(&sql[dollar + 1..from]);
        }
        copied = from;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(sql);
    }
    out.push_str(&sql[copied..]);
    std::borrow::Cow::Owned(out)
}

/// `($1, $2), ($3, $4)` (or `?1`, ... on SQLite): placeholders for `rows` rows of `columns` values.
fn placeholders(mark: char, rows: usize, columns: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push(mark);
            if mark == '$' {
                sql.push_str(&(first + row * columns + column).to_string());
            }
        }
        sql.push(')');
    }
    sql
}

/// Most values bound into one statement; under both SQLite's and PostgreSQL's limits.
const MAX_BIND_VALUES: usize = 30_000;

/// Runs `{head} IN (the keys) {tail}`, with `fixed` values bound first as `$1..`, and returns all
/// rows. The keys go in as one JSON array in one parameter ([`key_match`]), so the statement's
/// text is the same whatever their number and it is prepared once per connection.
pub(crate) async fn select_in<R: read::Reader>(
    tx: &mut R,
    head: &str,
    tail: &str,
    fixed: &[Value],
    keys: &[String],
) -> Result<Vec<R::Row>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (matched, set) = key_match(tx.backend(), fixed.len() + 1, keys);
    let mut values: Vec<Value> = fixed.to_vec();
    values.push(set);
    tx.rows(&format!("{head} {matched} {tail}"), values).await
}

/// How a column is matched against `keys` bound at parameter `n`, and the value bound. One key
/// goes in as itself (`= $n`): on SQLite, `IN (subquery)` builds a temporary index of the set
/// first, a B-tree with a page cache of its own (`perf`: a fortieth of a CheckHire's time, whose
/// sets are mostly one institution or one person); on PostgreSQL an equality is what its planner
/// estimates best. More go in as one JSON array ([`key_set`]), so the text is the same whatever
/// their number: `IN` the set on SQLite; on PostgreSQL `= ANY` of an array built once from it, an
/// index condition whatever the table's statistics (as `IN (subquery)` it is a semi-join, which
/// without them scanned the whole table). Two texts per backend, each prepared once.
pub(crate) fn key_match(backend: Backend, n: usize, keys: &[String]) -> (String, Value) {
    let set = || Value::Text(json_array(keys));
    match (backend, keys) {
        (_, [key]) => (format!("= ${n}"), Value::Text(key.clone())),
        (Backend::Postgres, _) => (format!("= ANY(ARRAY({}))", key_set(backend, n)), set()),
        (Backend::Sqlite, _) => (format!("IN ({})", key_set(backend, n)), set()),
    }
}

/// Reads `columns` of the rows of `table` whose key is `fixed` (column = value pairs, bound first)
/// and one of `keys` in `key_column`: a lookup of a unique key. On PostgreSQL each key is sought
/// by itself (a lateral subquery that the planner cannot flatten), so the whole key goes into the
/// index whatever the planner believes of the table: without statistics (a bulk-loaded table,
/// autovacuum behind) it believed the fixed prefix named one row and read every row under it, an
/// agency's whole history of a kind for each batch pushed.
pub(crate) async fn lookup_keys<R: read::Reader>(
    tx: &mut R,
    table: &str,
    columns: &str,
    fixed: &[(&str, Value)],
    key_column: &str,
    keys: &[String],
) -> Result<Vec<R::Row>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let prefix: String = fixed
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{column} = ${} AND ", i + 1))
        .collect();
    let backend = tx.backend();
    let n = fixed.len() + 1;
    let (sql, set) = match backend {
        Backend::Postgres => (
            format!(
                "SELECT {columns} FROM ({}) AS k(id) CROSS JOIN LATERAL \
                 (SELECT {columns} FROM {table} WHERE {prefix}{key_column} = k.id LIMIT 1) AS found",
                key_set(backend, n)
            ),
            Value::Text(json_array(keys)),
        ),
        Backend::Sqlite => {
            let (matched, set) = key_match(backend, n, keys);
            (
                format!("SELECT {columns} FROM {table} WHERE {prefix}{key_column} {matched}"),
                set,
            )
        }
    };
    let mut values: Vec<Value> = fixed.iter().map(|(_, value)| value.clone()).collect();
    values.push(set);
    tx.rows(&sql, values).await
}

/// The rows of a set of text keys bound as one JSON array at parameter `n`: a table of one column
/// on either backend, for `IN (...)`, `ARRAY(...)` or a join. It stands in for PostgreSQL's
/// `= ANY($n)` array, which `sqlx::Any` cannot bind, and works the same on SQLite (whose plain
/// `?` binds in order, as every statement here numbers its placeholders).
fn key_set(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("SELECT json_array_elements_text(${n}::json)"),
        Backend::Sqlite => "SELECT value FROM json_each(?)".to_owned(),
    }
}

/// Keys as the JSON array [`key_set`] reads.
fn json_array<S: serde::Serialize>(keys: &[S]) -> String {
    serde_json::to_string(keys).expect("a list of strings or numbers is JSON")
}

/// The PostgreSQL advisory lock id (`pg_advisory_xact_lock`'s argument) that guards `key`; keys
/// share a bounded set of ids. For operators reading lock waits, and for tests that hold a key.
pub fn advisory_lock_id(key: &str) -> i64 {
    postgres::lock_id(key)
}

/// Microseconds since the Unix epoch: how instants are stored.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_in_order() {
        assert_eq!(placeholders('$', 2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders('?', 1, 2, 3), "(?, ?)");
        assert_eq!(
            plain_on_sqlite('?', "a = $1 AND b = $12 AND c"),
            "a = ? AND b = ? AND c"
        );
        assert_eq!(plain_on_sqlite('$', "a = $1"), "a = $1");
        assert_eq!(on_sqlite("$1, '$', $", false), "?, '$', $");
        assert_eq!(
            on_sqlite("x = $12 AND y = $3x", true),
            "x = ?12 AND y = ?3x"
        );
        assert!(matches!(
            on_sqlite("SELECT '$' || id FROM t", false),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
