//! Idempotency of the follow-through RPCs that create something. The key is the caller's, per
//! agency and kind of request; the first request to commit keeps it with the id it created, so a
//! resend with the same content answers that record again and a reuse for other content is
//! refused, as pushes are (`store::push`).

use super::query as q;
use super::{Store, Tx, Value, bind_all, now_micros};
use crate::domain::Agency;
use crate::error::{Error, Result};

/// A caller's idempotency key with the hash of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The caller's key.
    pub key: String,
    /// SHA-256 of the request without its key.
    pub content_hash: String,
}

/// What a request creates, as its key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creates {
    /// OpenItem.
    Item,
    /// Apply.
    Application,
    /// ImposePenalty.
    Penalty,
    /// TakeReport.
    Case,
    /// Transfer (and joint inspection).
    Transfer,
    /// PublishBulletin.
    Bulletin,
    /// CampaignService.OpenCampaign.
    Campaign,
    /// CampaignService.Declare.
    Declaration,
}

impl Creates {
    fn code(self) -> &'static str {
        match self {
            Creates::Item => "ITEM",
            Creates::Application => "APPLICATION",
            Creates::Penalty => "PENALTY",
            Creates::Case => "CASE",
            Creates::Transfer => "TRANSFER",
            Creates::Bulletin => "BULLETIN",
            Creates::Campaign => "CAMPAIGN",
            Creates::Declaration => "DECLARATION",
        }
    }
}

/// The lock of a request's key, for the transaction that recalls and remembers it to take with
/// its other keys (`Store::begin_locked`): of two concurrent resends, one waits for the other.
pub(super) fn request_lock(
    agency: &Agency,
    creates: Creates,
    key: Option<&RequestKey>,
) -> Option<String> {
    key.map(|key| {
        format!(
            "ledger-request:{}:{}:{}",
            agency.id(),
            creates.code(),
            key.key
        )
    })
}

impl Store {
    /// The id an earlier request with this key created, if one committed: the same content answers
    /// it again, other content is refused with `RecordConflict`. The transaction holds the key's
    /// [`request_lock`].
    pub(super) async fn recall(
        &self,
        tx: &mut Tx,
        agency: &Agency,
        creates: Creates,
        key: Option<&RequestKey>,
    ) -> Result<Option<String>> {
        let Some(key) = key else {
            return Ok(None);
        };
        let row = sqlx::query_with(
            "SELECT content_hash, result_id FROM ledger_requests WHERE agency_id = $1 AND kind = $2 AND idempotency_key = $3",
            bind_all(vec![
                Value::Text(agency.id()),
                Value::from(creates.code()),
                Value::from(key.key.as_str()),
            ])?,
        )
        .fetch_optional(&mut **tx)
        .await?;
        match row {
            None => Ok(None),
            Some(row) if q::text(&row, "content_hash")? == key.content_hash => {
                Ok(Some(q::text(&row, "result_id")?))
            }
            Some(_) => Err(Error::RecordConflict {
                record_id: key.key.clone(),
            }),
        }
    }

    /// `recall` in a transaction of its own, for a request that must answer a resend before it
    /// works out what to write (a penalty's cut, from the quota the first request lowered).
    pub(super) async fn recalled(
        &self,
        agency: &Agency,
        creates: Creates,
        key: Option<&RequestKey>,
    ) -> Result<Option<String>> {
        let Some(lock) = request_lock(agency, creates, key) else {
            return Ok(None);
        };
        let mut tx = self.begin_locked(&[lock]).await?;
        let first = self.recall(&mut tx, agency, creates, key).await?;
        tx.rollback().await?;
        Ok(first)
    }

    /// Keeps the key with the id its request created, in the transaction that creates it.
    pub(super) async fn remember(
        &self,
        tx: &mut Tx,
        agency: &Agency,
        creates: Creates,
        key: Option<&RequestKey>,
        result_id: &str,
    ) -> Result<()> {
        let Some(key) = key else {
            return Ok(());
        };
        sqlx::query_with(
            "INSERT INTO ledger_requests (agency_id, kind, idempotency_key, content_hash, result_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            bind_all(vec![
                Value::Text(agency.id()),
                Value::from(creates.code()),
                Value::from(key.key.as_str()),
                Value::from(key.content_hash.as_str()),
                Value::from(result_id),
                Value::Int(now_micros()),
            ])?,
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
