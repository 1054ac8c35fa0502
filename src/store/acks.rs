//! Acks written together. A thousand subscribers acking the same event would otherwise queue a
//! thousand write transactions behind SQLite's one writer (and the next push behind them). Each ack
//! joins a queue; whoever holds the flush lock writes every queued ack in one transaction and
//! answers them all after it commits, so an answered ack is as durable as before.

use std::sync::Mutex;

use sqlx::Row;
use tokio::sync::oneshot;

use super::{Store, Value, bind_all, now_micros};
use crate::error::{Error, Result};

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

    async fn write_acks(&self, batch: &[PendingAck]) -> Result<Vec<Option<i64>>> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        let mut cursors = Vec::with_capacity(batch.len());
        for ack in batch {
            sqlx::query_with(
                "UPDATE subscriptions SET acked_seq = $3, updated_at = $4 WHERE agency_id = $1 AND name = $2 AND acked_seq < $3",
                bind_all(vec![Value::from(ack.agency_id.as_str()), Value::from(ack.name.as_str()), Value::Int(ack.seq), Value::Int(now)])?,
            )
            .execute(&mut *tx)
            .await?;
            let cursor = sqlx::query_with(
                "SELECT acked_seq FROM subscriptions WHERE agency_id = $1 AND name = $2",
                bind_all(vec![
                    Value::from(ack.agency_id.as_str()),
                    Value::from(ack.name.as_str()),
                ])?,
            )
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get::<i64, _>("acked_seq"))
            .transpose()?;
            cursors.push(cursor);
        }
        tx.commit().await?;
        Ok(cursors)
    }
}
