//! The PostgreSQL backend, for several stateless hub replicas on one database. Writers that touch
//! the same people or institutions are kept apart with transaction-scoped advisory locks, taken in
//! a fixed order so that two transactions cannot deadlock on them.
//!
//! Pushes and pre-checks go through the native driver's pool (`Store::native_pool`), and audit
//! appends through a connection of their own taken out of it ([`Trail`]), not `sqlx::Any`: rows
//! go in as one `INSERT … SELECT FROM UNNEST` of typed arrays per table, one stable statement
//! text whatever the batch (a multi-row `VALUES` list was a new text, parsed and planned, for
//! every batch size, with a bind parameter per value), and the rows read are decoded once, not
//! copied into `Any`'s rows first.

use std::hash::{Hash, Hasher};

use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Arguments as _, AssertSqlSafe, Row as _, TypeInfo as _, ValueRef as _};

use super::read::{Columns, Reader};
use super::write::Writer;
use super::{Backend, Store, StoreOptions, Value};
use crate::domain::audit::{ChainedEntry, TrailAppend, TrailHead, edge_to_text};
use crate::error::{Error, Result};

pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
    let pool = Store::pool_options(options).connect(url).await?;
    // Opened as pushes and pre-checks need them: a replica that serves neither holds none.
    // Without PostgreSQL's JIT: their statements are index reads of a few pages, but on a table
    // never analyzed the planner's estimates can pass the JIT's threshold, and compiling the plan
    // took 33-41 ms of a read of a dozen pages (a CheckHire at 92 ms, not 6, on the city).
    let native_options = url.parse::<PgConnectOptions>()?.options([("jit", "off")]);
    let native = super::pooled(PgPoolOptions::new(), options).connect_lazy_with(native_options);
    let url = Some(std::sync::Arc::new(url.to_owned()));
    Ok(Store {
        readers: pool.clone(),
        writer: pool,
        backend: Backend::Postgres,
        checks: Default::default(),
        feed_signal: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
        url,
        push_checks: std::sync::Arc::new(true.into()),
        feed_tail: std::sync::Arc::default(),
        acks: std::sync::Arc::default(),
        log: None,
        rechecks: std::sync::Arc::default(),
        check_reads: std::sync::Arc::default(),
        roll_reads: std::sync::Arc::default(),
        native: None,
        native_writer: None,
        native_pg: Some(native),
        pg_trail: Some(std::sync::Arc::default()),
    })
}

impl Store {
    /// The native pool pushes and audit appends write through and pre-checks read from
    /// (PostgreSQL only).
    pub(crate) fn native_pool(&self) -> Option<&PgPool> {
        self.native_pg.as_ref()
    }

    /// The native pool and the trail's appends' own state (PostgreSQL only).
    pub(super) fn native_trail(&self) -> Option<(&PgPool, &tokio::sync::Mutex<Trail>)> {
        self.native_pg.as_ref().zip(self.pg_trail.as_deref())
    }

    /// Statements prepared on a connection of the native pool (PostgreSQL; `None` on SQLite): with
    /// a pool of one connection, every text the store's pushes and pre-checks ran. Work counted
    /// for the test that holds a push's statements to texts that do not change with its size.
    pub async fn native_statements_prepared(&self) -> Result<Option<usize>> {
        let Some(pool) = self.native_pool() else {
            return Ok(None);
        };
        let connection = pool.acquire().await?;
        Ok(Some(sqlx::Connection::cached_statements_size(&*connection)))
    }
}

fn bind_native(values: Vec<Value>) -> Result<PgArguments> {
    let mut arguments = PgArguments::default();
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

impl Reader for sqlx::Transaction<'_, sqlx::Postgres> {
    type Row = PgRow;

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn rows(&mut self, sql: &str, values: Vec<Value>) -> Result<Vec<PgRow>> {
        Ok(
            sqlx::query_with(AssertSqlSafe(sql.to_owned()), bind_native(values)?)
                .fetch_all(&mut **self)
                .await?,
        )
    }
}

impl Columns for PgRow {
    fn text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.try_get(name)?)
    }

    /// Stored integers are BIGINT; a literal or an expression may be a narrower integer.
    fn int(&self, name: &str) -> Result<Option<i64>> {
        Ok(match self.try_get_raw(name)?.type_info().name() {
            "INT4" => self.try_get::<Option<i32>, _>(name)?.map(i64::from),
            "INT2" => self.try_get::<Option<i16>, _>(name)?.map(i64::from),
            _ => self.try_get(name)?,
        })
    }
}

impl Writer for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn execute(&mut self, sql: &str, values: Vec<Value>) -> Result<u64> {
        Ok(
            sqlx::query_with(AssertSqlSafe(sql.to_owned()), bind_native(values)?)
                .execute(&mut **self)
                .await?
                .rows_affected(),
        )
    }

    async fn insert_rows<const N: usize>(
        &mut self,
        head: &str,
        tail: &str,
        rows: Vec<[Value; N]>,
    ) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if let [row] = &rows[..] {
            // One row (a single push's) as plain values: the arrays cost it more than they save
            // (pgbench: 0.20 against 0.24 ms a statement).
            let sql = format!("{head} VALUES {} {tail}", super::placeholders('$', 1, N, 1));
            return self.execute(&sql, row.to_vec()).await;
        }
        let (sql, arguments) = unnest(head, tail, rows)?;
        Ok(sqlx::query_with(AssertSqlSafe(sql), arguments)
            .execute(&mut **self)
            .await?
            .rows_affected())
    }
}

/// A column of rows as one typed array.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

/// `{head} SELECT * FROM UNNEST($1::text[], $2::bigint[], …) {tail}` and its arrays, one per
/// column, typed by the first row's values (every value stored is text or an integer).
fn unnest<const N: usize>(
    head: &str,
    tail: &str,
    rows: Vec<[Value; N]>,
) -> Result<(String, PgArguments)> {
    let mut columns: Vec<Column> = rows[0]
        .iter()
        .map(|value| match value {
            Value::Text(_) | Value::OptText(_) => Column::Text(Vec::with_capacity(rows.len())),
            Value::Int(_) | Value::OptInt(_) => Column::Int(Vec::with_capacity(rows.len())),
        })
        .collect();
    for row in rows {
        for (column, value) in columns.iter_mut().zip(row) {
            match (column, value) {
                (Column::Text(texts), Value::Text(text)) => texts.push(Some(text)),
                (Column::Text(texts), Value::OptText(text)) => texts.push(text),
                (Column::Int(ints), Value::Int(int)) => ints.push(Some(int)),
                (Column::Int(ints), Value::OptInt(int)) => ints.push(int),
                _ => {
                    return Err(Error::Internal(format!(
                        "{head}: a column holds text in one row and integers in another"
                    )));
                }
            }
        }
    }
    let mut arguments = PgArguments::default();
    let mut arrays = Vec::with_capacity(N);
    for (n, column) in columns.into_iter().enumerate() {
        let bound = match column {
            Column::Text(texts) => {
                arrays.push(format!("${}::text[]", n + 1));
                arguments.add(texts)
            }
            Column::Int(ints) => {
                arrays.push(format!("${}::bigint[]", n + 1));
                arguments.add(ints)
            }
        };
        bound.map_err(|error| Error::Internal(format!("cannot bind a column: {error}")))?;
    }
    let sql = format!("{head} SELECT * FROM UNNEST({}) {tail}", arrays.join(", "));
    Ok((sql, arguments))
}

/// The audit trail's appends on PostgreSQL: a connection of their own, kept between appends (a
/// pool's connection is pinged each time it is given back, a round trip of its own), and the head
/// the last append left, which the next continues from if it is still there.
#[derive(Debug, Default)]
pub(super) struct Trail {
    /// The connection and when it was last handed out.
    connection: Option<(PgConnection, std::time::Instant)>,
    /// The head as this process's last append left it; none before the first and after an error.
    head: Option<TrailHead>,
    /// Whether other replicas append too: the last append that locked and read the head found
    /// it moved since this process's append before it.
    shared: bool,
}

impl Trail {
    /// The trail's connection, taken out of `pool` the first time (and after an error), the head
    /// at hand and whether other replicas append too. Like the pool's, a connection idle for
    /// [`super::PING_WHEN_IDLE`] is pinged first, and replaced if it does not answer, so that a
    /// server restarted meanwhile costs no append.
    pub(super) async fn parts(
        &mut self,
        pool: &PgPool,
    ) -> Result<(&mut PgConnection, &mut Option<TrailHead>, &mut bool)> {
        let kept = match self.connection.take() {
            Some((mut connection, used)) => {
                let idle = used.elapsed() >= super::PING_WHEN_IDLE;
                if idle && sqlx::Connection::ping(&mut connection).await.is_err() {
                    self.head = None;
                    None
                } else {
                    Some(connection)
                }
            }
            None => None,
        };
        let connection = match kept {
            Some(connection) => connection,
            None => pool.acquire().await?.detach(),
        };
        let (connection, _) = self
            .connection
            .insert((connection, std::time::Instant::now()));
        Ok((connection, &mut self.head, &mut self.shared))
    }

    /// Closes the connection, if one is open.
    pub(super) async fn close(&mut self) {
        self.head = None;
        if let Some((connection, _)) = self.connection.take() {
            let _ = sqlx::Connection::close(connection).await;
        }
    }
}

/// An append in one statement, on condition that the head is still what the hub holds: the head
/// moved by a compare-and-set, and the rows inserted only where it moved (the statement's parts
/// see one snapshot, so each reads the update's returned row, not the table).
const APPEND_AT: &str = "WITH moved AS (\
    UPDATE audit_head SET seq = $1, hash = $2, tree_size = $3, root = $4, edge = $5, \
    checkpoint_size = $6, checkpoint_at = $7 \
    WHERE id = 1 AND seq = $8 AND hash = $9 AND tree_size = $10 AND checkpoint_size = $11 \
    AND checkpoint_at = $12 RETURNING 1), \
logged AS (INSERT INTO audit_log (seq, at, agency_id, jurisdiction, fingerprint, peer, method, \
    touched, outcome, prev_hash, hash) \
    SELECT * FROM UNNEST($13::bigint[], $14::bigint[], $15::text[], $16::text[], $17::text[], \
    $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[]) \
    WHERE EXISTS (SELECT 1 FROM moved)), \
tree AS (INSERT INTO audit_tree (idx, hash) SELECT * FROM UNNEST($24::bigint[], $25::text[]) \
    WHERE EXISTS (SELECT 1 FROM moved)), \
signed AS (INSERT INTO audit_checkpoints (tree_size, root, note, issued_at) \
    SELECT * FROM UNNEST($26::bigint[], $27::text[], $28::text[], $29::bigint[]) \
    WHERE EXISTS (SELECT 1 FROM moved) ON CONFLICT (tree_size) DO NOTHING) \
SELECT COUNT(*) AS moved FROM moved";

/// Writes `append`, worked out from `head`, in one statement ([`APPEND_AT`]) if the trail's head
/// is still `head`; answers whether it was (if not, nothing is written).
pub(super) async fn append_at(
    connection: &mut PgConnection,
    head: &TrailHead,
    append: &TrailAppend,
) -> Result<bool> {
    let mut arguments = PgArguments::default();
    macro_rules! bind {
        ($($value:expr),* $(,)?) => {$(
            arguments
                .add($value)
                .map_err(|error| Error::Internal(format!("cannot bind a value: {error}")))?;
        )*};
    }
    let (next, rows, nodes) = (&append.head, &append.rows, &append.nodes);
    let column = |text: fn(&ChainedEntry) -> &str| rows.iter().map(text).collect::<Vec<_>>();
    let checkpoint = append.checkpoint.as_slice();
    bind!(
        next.seq,
        next.hash.as_str(),
        next.tree_size,
        next.root.as_str(),
        edge_to_text(&next.edge),
        next.checkpoint_size,
        next.checkpoint_at,
        head.seq,
        head.hash.as_str(),
        head.tree_size,
        head.checkpoint_size,
        head.checkpoint_at,
        rows.iter().map(|row| row.seq).collect::<Vec<_>>(),
        rows.iter().map(|row| row.entry.at).collect::<Vec<_>>(),
        column(|row| &row.entry.agency_id),
        column(|row| &row.entry.jurisdiction),
        column(|row| &row.entry.fingerprint),
        column(|row| &row.entry.peer),
        column(|row| &row.entry.method),
        column(|row| &row.entry.touched),
        column(|row| &row.entry.outcome),
        column(|row| &row.prev_hash),
        column(|row| &row.hash),
        nodes
            .iter()
            .map(|(index, _)| i64::try_from(*index).unwrap_or(i64::MAX))
            .collect::<Vec<_>>(),
        nodes
            .iter()
            .map(|(_, hash)| hex::encode(hash.0))
            .collect::<Vec<_>>(),
        checkpoint.iter().map(|c| c.size).collect::<Vec<_>>(),
        checkpoint
            .iter()
            .map(|c| hex::encode(c.root.0))
            .collect::<Vec<_>>(),
        checkpoint
            .iter()
            .map(|c| c.note.as_str())
            .collect::<Vec<_>>(),
        checkpoint.iter().map(|c| c.at).collect::<Vec<_>>(),
    );
    let moved: i64 = sqlx::query_with(APPEND_AT, arguments)
        .fetch_one(connection)
        .await?
        .try_get("moved")?;
    Ok(moved == 1)
}

/// Keys share this many advisory locks. A batch may name thousands of people and institutions;
/// hashing them into a bounded set keeps every transaction within PostgreSQL's lock table, at the
/// price of making some unrelated writers wait for each other.
const LOCK_BUCKETS: u64 = 1024;

/// Base of the hub's advisory lock ids ("QH"), away from small ids other software may use.
const LOCK_BASE: i64 = 0x5148_0000;

/// Takes the advisory locks of these keys until the transaction ends.
pub(super) async fn advisory_locks<W: Writer>(tx: &mut W, keys: &[String]) -> Result<()> {
    let mut ids: Vec<i64> = keys.iter().map(|key| lock_id(key)).collect();
    ids.sort_unstable();
    ids.dedup();
    // One statement of one parameter, whatever the number of keys; taken in id order.
    // Wrapped in count(*) because the lock function returns `void`, which `Any` cannot decode.
    let sql = format!(
        "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k.id::bigint) FROM ({}) AS k(id) \
         ORDER BY k.id::bigint) AS locked",
        super::key_set(Backend::Postgres, 1)
    );
    tx.execute(&sql, vec![Value::Text(super::json_array(&ids))])
        .await?;
    Ok(())
}

/// A stable lock id for a key. FNV-1a, because the id must be the same in every replica and every
/// build (the standard hasher is randomly seeded).
pub(super) fn lock_id(key: &str) -> i64 {
    let mut hasher = Fnv1a(0xcbf2_9ce4_8422_2325);
    key.hash(&mut hasher);
    LOCK_BASE + i64::try_from(hasher.finish() % LOCK_BUCKETS).expect("a bucket fits in i64")
}

struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Wakes this process's feed streams when another replica commits feed events (LISTEN/NOTIFY).
/// Reconnects after a lost connection; streams poll as well, so a missed notification only delays.
pub(super) fn spawn_feed_listener(
    store: Store,
    url: String,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(super::feed::NOTIFY_CHANNEL).await {
                        tracing::warn!(%error, "cannot LISTEN for feed events");
                    } else {
                        loop {
                            tokio::select! {
                                notification = listener.recv() => match notification {
                                    Ok(_) => store.feed_changed(),
                                    Err(error) => {
                                        tracing::warn!(%error, "feed listener lost its connection");
                                        break;
                                    }
                                },
                                _ = stopped.changed() => return,
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot connect the feed listener"),
            }
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_in_as_one_typed_array_per_column() {
        let rows = vec![
            [Value::from("a"), Value::OptText(None), Value::Int(1)],
            [
                Value::from("b"),
                Value::OptText(Some("x".into())),
                Value::OptInt(None),
            ],
        ];
        let (sql, _) = unnest("INSERT INTO t (a, b, c)", "ON CONFLICT DO NOTHING", rows).unwrap();
        assert_eq!(
            sql,
            "INSERT INTO t (a, b, c) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
             ON CONFLICT DO NOTHING"
        );
        // The text is the batch's shape, not its size: one statement to prepare per table.
        let more = vec![[Value::from("a"), Value::OptText(None), Value::Int(1)]; 5_000];
        assert_eq!(
            unnest("INSERT INTO t (a, b, c)", "ON CONFLICT DO NOTHING", more)
                .unwrap()
                .0,
            sql
        );
        let mixed = vec![[Value::Int(1)], [Value::from("1")]];
        assert!(unnest("INSERT INTO t (a)", "", mixed).is_err());
    }
}
