//! Each roll's count as of the hub's date (`roll_now`), beside its history of counts
//! (`roll_counts`): the row of the history in force on that date, and the date of the next change.
//! A count on a date inside that span is the kept row; outside it, the history's last change on or
//! before the date, one seek. So REGIONAL_BALANCE for today reads one row per roll, not a roll's every
//! change (a province keeps a million of them), and stays exact for any date.
//!
//! The push that moves a roll's history sets its row again in the same transaction, as of the
//! hub's date; a roll whose next change has come since is set again by the schedule
//! ([`Store::refresh_rolls`]), and read from the history until then.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;

use super::codec::column;
use super::{Store, Value, bind_all};
use crate::error::Result;

/// A roll's count on the date `day` (a placeholder) from its history: its last change on or
/// before it, one seek; `roll` is the alias of a row naming the roll (`institution_uscc`,
/// `category`).
fn count_on(roll: &str, day: &str) -> String {
    format!(
        "COALESCE((SELECT r.people FROM roll_counts r WHERE r.institution_uscc = {roll}.institution_uscc \
         AND r.category = {roll}.category AND r.on_date <= {day} ORDER BY r.on_date DESC LIMIT 1), 0)"
    )
}

/// Whether the kept row `n` holds for the date `day` (written twice: SQLite numbers placeholders
/// by first appearance, so each use takes its own).
fn holds(first: usize) -> String {
    format!(
        "(n.since IS NULL OR n.since <= ${first}) AND (n.until IS NULL OR n.until > ${})",
        first + 1
    )
}

/// The statement that sets the kept row of the rolls `u(institution_uscc, category)` names (a CTE
/// before it) as of the three date placeholders that follow the CTE's own. The rolls are taken
/// once (`MATERIALIZED`): each is sought three times, and SQLite would otherwise extract a roll
/// bound as JSON again at each (5.6 ms against 3.9 for a thousand rolls).
pub(super) fn set_rolls(from_rolls: &str, first: usize) -> String {
    let roll = "r.institution_uscc = u.institution_uscc AND r.category = u.category";
    format!(
        "WITH u(institution_uscc, category) AS MATERIALIZED ({from_rolls}) \
         INSERT INTO roll_now (institution_uscc, category, people, since, until) \
         SELECT u.institution_uscc, u.category, {count}, \
         (SELECT MAX(r.on_date) FROM roll_counts r WHERE {roll} AND r.on_date <= ${b}), \
         (SELECT MIN(r.on_date) FROM roll_counts r WHERE {roll} AND r.on_date > ${c}) \
         FROM u WHERE TRUE \
         ON CONFLICT (institution_uscc, category) DO UPDATE SET people = excluded.people, \
         since = excluded.since, until = excluded.until",
        count = count_on("u", &format!("${first}")),
        b = first + 1,
        c = first + 2,
    )
}

/// The three dates [`set_rolls`] binds after its rolls' own placeholders: all `today`.
pub(super) fn on(today: NaiveDate) -> [Value; 3] {
    let day = today.to_string();
    [
        Value::Text(day.clone()),
        Value::Text(day.clone()),
        Value::Text(day),
    ]
}

/// The people on the rolls of one division and category on a date.
pub(crate) struct DivisionCount {
    /// Where the registry places the rolls' institutions.
    pub jurisdiction: String,
    pub category: String,
    pub people: i64,
}

impl Store {
    /// Fills the kept rows from the history when there are none and the history is not empty: a
    /// database from before them. Any date would do (each row says the span it holds for); the
    /// clock's is the one most reads will ask for.
    pub(crate) async fn fill_rolls(&self, today: NaiveDate) -> Result<()> {
        let mut tx = self.begin_locked(&["counts".to_owned()]).await?;
        let kept = sqlx::query("SELECT 1 AS one FROM roll_now LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let history = sqlx::query("SELECT 1 AS one FROM roll_counts LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        if kept.is_none() && history.is_some() {
            tracing::info!("keeping each roll's count as of today (once)");
            let sql = set_rolls(
                "SELECT DISTINCT institution_uscc, category FROM roll_counts",
                1,
            );
            let sql = super::plain_on_sqlite(super::mark(&tx), &sql);
            sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(on(today).into())?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets again, as of `today`, the kept rows whose next change has come: what the schedule
    /// does, so that today's reads stay one row per roll. Returns how many it set.
    #[tracing::instrument(name = "store.refresh_rolls", skip_all)]
    pub async fn refresh_rolls(&self, today: NaiveDate) -> Result<u64> {
        let mut tx = self.begin_locked(&["counts".to_owned()]).await?;
        let mut values = vec![Value::Text(today.to_string())];
        values.extend(on(today));
        let sql = set_rolls(
            "SELECT institution_uscc, category FROM roll_now WHERE until IS NOT NULL AND until <= $1",
            2,
        );
        let sql = super::plain_on_sqlite(super::mark(&tx), &sql);
        let set = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(set)
    }

    /// The people on the rolls of every division and category on `day`, summed in the database
    /// over the rolls of the institutions the registry places: the kept row where it holds for the
    /// day, the history's last change on or before it otherwise (one seek per such roll, never a
    /// pass over the history).
    pub(crate) async fn people_by_division(&self, day: NaiveDate) -> Result<Vec<DivisionCount>> {
        let sql = format!(
            "SELECT i.jurisdiction, n.category, \
             CAST(SUM(CASE WHEN {holds} THEN n.people ELSE {count} END) AS BIGINT) AS people, \
             SUM(CASE WHEN {again} THEN 1 ELSE 0 END) AS kept, COUNT(*) AS rolls \
             FROM roll_now n JOIN institutions i ON i.uscc = n.institution_uscc \
             GROUP BY i.jurisdiction, n.category",
            holds = holds(1),
            count = count_on("n", "$3"),
            again = holds(4),
        );
        let day = Value::Text(day.to_string());
        let rows = sqlx::query_with(
            sqlx::AssertSqlSafe(sql),
            bind_all(vec![
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
            ])?,
        )
        .fetch_all(self.readers())
        .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in &rows {
            let (kept, rolls): (i64, i64) = (column(row, "kept")?, column(row, "rolls")?);
            self.roll_reads
                .kept
                .fetch_add(kept.unsigned_abs(), Ordering::Relaxed);
            self.roll_reads
                .seeks
                .fetch_add((rolls - kept).unsigned_abs(), Ordering::Relaxed);
            counts.push(DivisionCount {
                jurisdiction: column(row, "jurisdiction")?,
                category: column(row, "category")?,
                people: column::<Option<i64>>(row, "people")?.unwrap_or(0),
            });
        }
        Ok(counts)
    }

    /// How the rolls' counts were read since the store started (for the complexity test).
    pub fn roll_reads(&self) -> RollReadCounts {
        RollReadCounts {
            kept: self.roll_reads.kept.load(Ordering::Relaxed),
            seeks: self.roll_reads.seeks.load(Ordering::Relaxed),
        }
    }
}

/// How a store has read the rolls' counts: kept rows, and rolls sought in the history one by one.
/// Work counted, for the test that holds it to the rolls.
#[derive(Debug, Default)]
pub struct RollReads {
    kept: AtomicU64,
    seeks: AtomicU64,
}

/// [`RollReads`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RollReadCounts {
    /// Kept rows read (`roll_now`).
    pub kept: u64,
    /// Rolls read from the history one seek each.
    pub seeks: u64,
}
