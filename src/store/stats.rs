//! Figures an operator watches, read from the database for the metrics: open findings by rule and
//! severity, how far each subscription is behind the feed, and the connection pools.

use sqlx::Row;

use super::Store;
use crate::error::Result;

/// What the store holds, as gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Open findings per (rule code, severity code).
    pub open_findings: Vec<(String, String, i64)>,
    /// Per (agency id, subscription name), feed events after its acknowledged cursor (whether or
    /// not its filter selects them: the cursor moves past those as well when the next event is
    /// acknowledged).
    pub unacknowledged: Vec<(String, String, i64)>,
}

/// Connections of the pools, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (in use or idle).
    pub size: u32,
    /// Connections open and idle.
    pub idle: u32,
}

impl Store {
    /// Reads the gauges.
    #[tracing::instrument(name = "store.stats", skip_all, err)]
    pub async fn stats(&self) -> Result<StoreStats> {
        let open_findings = sqlx::query(
            "SELECT code, severity, count(*) AS n FROM findings WHERE state = 'OPEN' GROUP BY code, severity ORDER BY code, severity",
        )
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("code")?, row.try_get("severity")?, row.try_get("n")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let unacknowledged = sqlx::query(
            "SELECT s.agency_id, s.name, (SELECT COALESCE(MAX(seq), 0) FROM feed_events) - s.acked_seq AS behind FROM subscriptions s ORDER BY s.agency_id, s.name",
        )
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|row| {
            let behind: i64 = row.try_get("behind")?;
            Ok((row.try_get("agency_id")?, row.try_get("name")?, behind.max(0)))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(StoreStats {
            open_findings,
            unacknowledged,
        })
    }

    /// The pools' connections (on SQLite the writer's one connection counts too).
    pub fn pool_stats(&self) -> PoolStats {
        let mut stats = PoolStats {
            size: self.readers.size(),
            idle: u32::try_from(self.readers.num_idle()).unwrap_or(u32::MAX),
        };
        if self.backend == super::Backend::Sqlite {
            stats.size += self.writer.size();
            stats.idle += u32::try_from(self.writer.num_idle()).unwrap_or(u32::MAX);
        }
        stats
    }
}
