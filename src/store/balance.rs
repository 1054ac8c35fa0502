//! REGIONAL_BALANCE (总量余缺) from what the store keeps: the quota in force per (institution,
//! category) and the roll's count on the date, each summed per division and category in the
//! database, then rolled into rows by the domain. A snapshot of whole institutions (the oracle,
//! `rules::regional_balance`) read every spell; this reads one kept row per unit (`roll_now`) and
//! returns one row per division and category, so the console's overview costs the units, not their
//! history, and moves no more than the table it shows.

use chrono::NaiveDate;

use super::codec::{column, stored, stored_code};
use super::{Backend, Store, Value, bind_all};
use crate::domain::rules::{self, BalanceUnit, RegionalBalance};
use crate::domain::{Jurisdiction, QuotaCategory};
use crate::error::Result;

impl Store {
    /// Per division and category of a jurisdiction (all when `None`): quota in force on `as_of`
    /// and people on the rolls; only institutions the registry places count.
    #[tracing::instrument(name = "store.regional_balance", skip_all)]
    pub async fn regional_balance(
        &self,
        jurisdiction: Option<&Jurisdiction>,
        as_of: NaiveDate,
    ) -> Result<Vec<RegionalBalance>> {
        let mut units = Vec::new();
        let within = |at: &Jurisdiction| jurisdiction.is_none_or(|j| j.contains(at));
        for (at, category, approved) in self.approved_by_division(as_of).await? {
            let at = stored(Jurisdiction::parse(&at))?;
            if within(&at) {
                units.push(BalanceUnit {
                    jurisdiction: at,
                    category: stored_code::<QuotaCategory>(&category)?,
                    approved: Some(approved),
                    active: 0,
                });
            }
        }
        for count in self.people_by_division(as_of).await? {
            let at = stored(Jurisdiction::parse(&count.jurisdiction))?;
            if within(&at) {
                units.push(BalanceUnit {
                    jurisdiction: at,
                    category: stored_code::<QuotaCategory>(&count.category)?,
                    approved: None,
                    active: count.people,
                });
            }
        }
        Ok(rules::balance_totals(units))
    }

    /// The approved counts of the quotas in force on `as_of`, summed per division and category:
    /// of a unit's quotas in force, the latest pushed counts (as the rules order them: acceptance,
    /// then `{agency_id}/{record_id}` bytewise).
    async fn approved_by_division(&self, as_of: NaiveDate) -> Result<Vec<(String, String, i64)>> {
        let id = match self.backend() {
            Backend::Sqlite => "agency_id || '/' || record_id",
            Backend::Postgres => "(agency_id || '/' || record_id) COLLATE \"C\"",
        };
        let sql = format!(
            "SELECT i.jurisdiction, q.category, CAST(SUM(q.approved_count) AS BIGINT) AS approved \
             FROM (SELECT institution_uscc, category, approved_count, ROW_NUMBER() OVER \
             (PARTITION BY institution_uscc, category ORDER BY accepted_at DESC, {id} DESC) AS latest \
             FROM quotas WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $2)) q \
             JOIN institutions i ON i.uscc = q.institution_uscc \
             WHERE q.latest = 1 GROUP BY i.jurisdiction, q.category"
        );
        let day = Value::Text(as_of.to_string());
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(vec![day.clone(), day])?)
            .fetch_all(self.readers())
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    column(row, "jurisdiction")?,
                    column(row, "category")?,
                    column(row, "approved")?,
                ))
            })
            .collect()
    }
}
