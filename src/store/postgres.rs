//! The PostgreSQL backend, for several stateless hub replicas on one database. Writers that touch
//! the same people or institutions are kept apart with transaction-scoped advisory locks, taken in
//! a fixed order so that two transactions cannot deadlock on them.

use std::hash::{Hash, Hasher};

use sqlx::AssertSqlSafe;

use super::{Backend, Store, StoreOptions, Tx, Value, bind_all};
use crate::error::Result;

pub(super) async fn connect(url: &str, options: &StoreOptions) -> Result<Store> {
    let pool = Store::pool_options(options).connect(url).await?;
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
    })
}

/// Keys share this many advisory locks. A batch may name thousands of people and institutions;
/// hashing them into a bounded set keeps every transaction within PostgreSQL's lock table, at the
/// price of making some unrelated writers wait for each other.
const LOCK_BUCKETS: u64 = 1024;

/// Base of the hub's advisory lock ids ("QH"), away from small ids other software may use.
const LOCK_BASE: i64 = 0x5148_0000;

/// Takes the advisory locks of these keys until the transaction ends.
pub(super) async fn advisory_locks(tx: &mut Tx, keys: &[String]) -> Result<()> {
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
    let arguments = bind_all(vec![Value::Text(super::json_array(&ids))])?;
    sqlx::query_with(AssertSqlSafe(sql), arguments)
        .execute(&mut **tx)
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
