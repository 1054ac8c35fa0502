//! Acks written together. A thousand subscribers acking the same event would otherwise queue a
//! thousand write transactions behind SQLite's one writer (and the next push behind them). Each ack
//! joins a queue; whoever holds the flush lock writes every queued ack in one transaction and
//! answers them all after it commits, so an answered ack is as durable as before.

use std::collections::HashMap;
use std::sync::Mutex;

use sqlx::Row;
use tokio::sync::oneshot;

use sqlx::AssertSqlSafe;

use super::{Store, Value, bind_all, mark, now_micros, placeholders};
use crate::error::{Error, Result};

/// Subscriptions per statement: four values each, far under both databases' bind limits.
const ACKS_PER_STATEMENT: usize = 1_000;

/// Acks waiting to be written, and the lock of the one writing them.
#[derive(Debug, Default)]
pub(crate) struct AckQueue {
    pending: Mutex<Vec<PendingAck>>,
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct PendingAck {
    agency_id: String,
    name: String,
    seq: i64,
    /// The subscription's cursor once the ack is written; `None` when there is no such subscription.
    done: oneshot::Sender<Result<Option<i64>>>,
}

impl Store {
    /// Moves the subscription's cursor to `seq` (never backwards), durably, batched with the acks
    /// of other subscriptions that arrive meanwhile. Returns the cursor after it, `None` when there
    /// is no such subscription.
    pub(crate) async fn write_ack(
        &self,
        agency_id: &str,
        name: &str,
        seq: i64,
    ) -> Result<Option<i64>> {
        let (done, mut written) = oneshot::channel();
        self.acks
            .pending
            .lock()
            .expect("not poisoned")
            .push(PendingAck {
                agency_id: agency_id.to_owned(),
                name: name.to_owned(),
                seq,
                done,
            });
        let _flushing = self.acks.flushing.lock().await;
        // A flush that ran while this ack waited for the lock may have written it.
        if let Ok(result) = written.try_recv() {
            return result;
        }
        let batch = std::mem::take(&mut *self.acks.pending.lock().expect("not poisoned"));
        match self.write_acks(&batch).await {
            Ok(cursors) => {
                for (ack, cursor) in batch.into_iter().zip(cursors) {
                    let _ = ack.done.send(Ok(cursor));
                }
            }
            // One transaction failed: write each on its own, so each gets its own verdict.
            Err(_) => {
                for ack in batch {
                    let result = self.write_acks(std::slice::from_ref(&ack)).await;
                    let _ = ack.done.send(result.map(|cursors| cursors[0]));
                }
            }
        }
        written
            .try_recv()
            .map_err(|_| Error::Internal("an ack was not written".into()))?
    }

    /// Writes a batch of acks with two statements per chunk (one update, one read of the
    /// cursors), not two per ack: on SQLite each statement is a round trip to its worker thread.
    async fn write_acks(&self, batch: &[PendingAck]) -> Result<Vec<Option<i64>>> {
        // One subscription acked twice in a batch: its highest ack counts.
        let mut highest: HashMap<(&str, &str), i64> = HashMap::new();
        for ack in batch {
            let seq = highest
                .entry((ack.agency_id.as_str(), ack.name.as_str()))
                .or_insert(ack.seq);
            *seq = (*seq).max(ack.seq);
        }
        let highest: Vec<((&str, &str), i64)> = highest.into_iter().collect();
        let now = now_micros();
        let mut tx = self.begin().await?;
        let mut cursors: HashMap<(String, String), i64> = HashMap::new();
        for chunk in highest.chunks(ACKS_PER_STATEMENT) {
            let mark = mark(&tx);
            let values = placeholders(mark, chunk.len(), 4, 1);
            let rows = chunk.iter().flat_map(|((agency_id, name), seq)| {
                [
                    Value::from(*agency_id),
                    Value::from(*name),
                    Value::Int(*seq),
                    Value::Int(now),
                ]
            });
            sqlx::query_with(
                AssertSqlSafe(format!(
                    "WITH acks (agency_id, name, seq, at) AS (VALUES {values}) \
                     UPDATE subscriptions SET acked_seq = acks.seq, updated_at = acks.at FROM acks \
                     WHERE subscriptions.agency_id = acks.agency_id AND subscriptions.name = acks.name \
                     AND subscriptions.acked_seq < acks.seq"
                )),
                bind_all(rows.collect())?,
            )
            .execute(&mut *tx)
            .await?;
            let keys = placeholders(mark, chunk.len(), 2, 1);
            let names = chunk
                .iter()
                .flat_map(|((agency_id, name), _)| [Value::from(*agency_id), Value::from(*name)]);
            let found = sqlx::query_with(
                AssertSqlSafe(format!(
                    "WITH acks (agency_id, name) AS (VALUES {keys}) \
                     SELECT s.agency_id, s.name, s.acked_seq FROM subscriptions s \
                     JOIN acks ON s.agency_id = acks.agency_id AND s.name = acks.name"
                )),
                bind_all(names.collect())?,
            )
            .fetch_all(&mut *tx)
            .await?;
            for row in &found {
                cursors.insert(
                    (row.try_get("agency_id")?, row.try_get("name")?),
                    row.try_get("acked_seq")?,
                );
            }
        }
        tx.commit().await?;
        Ok(batch
            .iter()
            .map(|ack| {
                cursors
                    .get(&(ack.agency_id.clone(), ack.name.clone()))
                    .copied()
            })
            .collect())
    }
}
