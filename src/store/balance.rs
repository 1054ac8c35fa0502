//! REGIONAL_BALANCE (总量余缺) from what the store keeps: the quota in force per (institution,
//! category) and the roll's count on the date, one row per unit each, summed by the domain.
//! A snapshot of whole institutions (the oracle, `rules::regional_balance`) read every spell; this
//! reads one kept row per unit (`roll_now`), so the console's overview costs the units, not their
//! history.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::Store;
use super::codec::{column, stored, stored_code};
use crate::domain::rules::{self, BalanceUnit, RegionalBalance};
use crate::domain::{Jurisdiction, QuotaCategory};
use crate::error::Result;

/// A unit's quota in force: its approved count and what makes it the latest pushed.
struct InForce {
    approved: i64,
    order: (i64, String),
}

impl Store {
    /// Per division and category of a jurisdiction (all when `None`): quota in force on `as_of`
    /// and people on the rolls; only institutions the registry places count.
    #[tracing::instrument(name = "store.regional_balance", skip_all)]
    pub async fn regional_balance(
        &self,
        jurisdiction: Option<&Jurisdiction>,
        as_of: NaiveDate,
    ) -> Result<Vec<RegionalBalance>> {
        let mut placed: HashMap<String, Jurisdiction> = HashMap::new();
        for row in sqlx::query("SELECT uscc, jurisdiction FROM institutions")
            .fetch_all(self.readers())
            .await?
        {
            let at = stored(Jurisdiction::parse(&column::<String>(
                &row,
                "jurisdiction",
            )?))?;
            if jurisdiction.is_none_or(|j| j.contains(&at)) {
                placed.insert(column(&row, "uscc")?, at);
            }
        }
        let day = as_of.to_string();

        // Of the quotas in force, the latest pushed (as `InForce` orders them) counts.
        let mut quotas: HashMap<(String, String), InForce> = HashMap::new();
        for row in sqlx::query(
            "SELECT institution_uscc, category, approved_count, accepted_at, agency_id, record_id \
             FROM quotas WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $2)",
        )
        .bind(&day)
        .bind(&day)
        .fetch_all(self.readers())
        .await?
        {
            let uscc: String = column(&row, "institution_uscc")?;
            if !placed.contains_key(&uscc) {
                continue;
            }
            let id = format!(
                "{}/{}",
                column::<String>(&row, "agency_id")?,
                column::<String>(&row, "record_id")?
            );
            let candidate = InForce {
                approved: column(&row, "approved_count")?,
                order: (column(&row, "accepted_at")?, id),
            };
            let unit = (uscc, column(&row, "category")?);
            match quotas.get(&unit) {
                Some(kept) if kept.order >= candidate.order => {}
                _ => {
                    quotas.insert(unit, candidate);
                }
            }
        }

        // A roll's count on a date is its last change on or before it: the kept row where it
        // holds for the date, the history otherwise (`roll_now`).
        let mut active: HashMap<(String, String), i64> = HashMap::new();
        for roll in self.rolls_on(as_of).await? {
            if placed.contains_key(&roll.uscc) {
                active.insert((roll.uscc, roll.category), roll.people);
            }
        }

        let mut units: Vec<BalanceUnit> = Vec::with_capacity(quotas.len() + active.len());
        for (unit, quota) in &quotas {
            units.push(BalanceUnit {
                jurisdiction: placed[&unit.0].clone(),
                category: stored_code::<QuotaCategory>(&unit.1)?,
                approved: Some(quota.approved),
                active: active.get(unit).copied().unwrap_or(0),
            });
        }
        for (unit, people) in &active {
            if !quotas.contains_key(unit) {
                units.push(BalanceUnit {
                    jurisdiction: placed[&unit.0].clone(),
                    category: stored_code::<QuotaCategory>(&unit.1)?,
                    approved: None,
                    active: *people,
                });
            }
        }
        Ok(rules::balance_totals(units))
    }
}
