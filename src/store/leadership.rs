//! What the report to the leadership reads: the regional balance as of the period's end, the
//! findings, the ledger's items, penalties, bulletins and campaigns of a jurisdiction subtree, and the
//! registry's names of the institutions it names. Reads only, on the read pool.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::codec::column;
use super::ledger::{TimeRange, day_of};
use super::query as q;
use super::{Store, Value, bind_all};
use crate::domain::findings::RuleCode;
use crate::domain::leadership::{FindingFacts, Period};
use crate::domain::ledger::{ItemFacts, PenaltyKind};
use crate::domain::rules::RegionalBalance;
use crate::domain::{Coded, Jurisdiction};
use crate::error::{Error, Result};

/// Everything the report is computed from.
#[derive(Debug, Clone)]
pub struct LeadershipFacts {
    /// Quota and people per division and category as of the period's last day.
    pub balance: Vec<RegionalBalance>,
    /// Findings raised up to the period's end.
    pub findings: Vec<FindingFacts>,
    /// Ledger items opened up to the period's end.
    pub items: Vec<ItemFacts>,
    /// Penalties imposed in the period, oldest first.
    pub penalties: Vec<PenaltyFact>,
    /// Bulletins published in the period, oldest first.
    pub bulletins: Vec<BulletinFact>,
    /// Campaigns open during the period, oldest first.
    pub campaigns: Vec<CampaignFact>,
    /// Registry names of the institutions named above.
    pub names: BTreeMap<String, String>,
}

/// A campaign (专项检查) and its results so far, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignFact {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Whether it is closed.
    pub closed: bool,
    /// The day it opened.
    pub opened_on: NaiveDate,
    /// Institutions in its scope.
    pub institutions: u64,
    /// Declarations received.
    pub declared: u64,
    /// Of those, late.
    pub late: u64,
    /// Ledger items opened for undeclared problems.
    pub undeclared_items: u64,
}

/// A penalty as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PenaltyFact {
    /// The institution.
    pub institution: String,
    /// What kind.
    pub kind: PenaltyKind,
    /// Places cut.
    pub cut: u32,
    /// Why.
    pub text: String,
    /// The day.
    pub imposed_on: NaiveDate,
}

/// A bulletin as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulletinFact {
    /// Its id.
    pub id: String,
    /// The case.
    pub case_id: String,
    /// The day.
    pub published_on: NaiveDate,
    /// Its text (personal data already removed when it was published).
    pub text: String,
}

impl Store {
    /// The facts of the report for `jurisdiction` and `period`.
    pub async fn leadership_facts(
        &self,
        jurisdiction: &Jurisdiction,
        period: Period,
    ) -> Result<LeadershipFacts> {
        let balance = self.regional_balance(Some(jurisdiction), period.to).await?;
        let subtree = Value::Text(format!("{}%", jurisdiction.prefix()));
        let range = TimeRange::of_days(Some(period.from), Some(period.to));
        let (start, end) = (range.from.unwrap_or(i64::MIN), range.to.unwrap_or(i64::MAX));
        let findings = sqlx::query_with(
            "SELECT code, raised_at, resolved_at FROM findings WHERE jurisdiction LIKE $1 AND raised_at < $2",
            bind_all(vec![subtree.clone(), Value::Int(end)])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(|row| {
            Ok(FindingFacts {
                code: RuleCode::from_code(&q::text(row, "code")?)
                    .ok_or_else(|| Error::Internal("a stored rule code is unknown".into()))?,
                raised_on: day_of(column(row, "raised_at")?),
                resolved_on: column::<Option<i64>>(row, "resolved_at")?.map(day_of),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let items = self
            .items(jurisdiction, None)
            .await?
            .into_iter()
            .filter(|item| item.opened_at < end)
            .map(|item| ItemFacts {
                jurisdiction: item.jurisdiction,
                department: item.department,
                opened_on: day_of(item.opened_at),
                closed_on: item.closed_at.map(day_of),
                due_on: item.due_on,
            })
            .collect::<Vec<_>>();
        let penalties = sqlx::query_with(
            "SELECT p.institution_uscc, p.kind, p.cut, p.text, p.imposed_at FROM penalties p \
             JOIN ledger_items i ON i.id = p.item_id \
             WHERE i.jurisdiction LIKE $1 AND p.imposed_at >= $2 AND p.imposed_at < $3 \
             ORDER BY p.imposed_at, p.id",
            bind_all(vec![subtree.clone(), Value::Int(start), Value::Int(end)])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(|row| {
            Ok(PenaltyFact {
                institution: q::text(row, "institution_uscc")?,
                kind: q::code(row, "kind")?,
                cut: u32::try_from(column::<i64>(row, "cut")?).unwrap_or_default(),
                text: q::text(row, "text")?,
                imposed_on: day_of(column(row, "imposed_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let bulletins = sqlx::query_with(
            "SELECT id, case_id, text, published_at FROM bulletins \
             WHERE jurisdiction LIKE $1 AND published_at >= $2 AND published_at < $3 \
             ORDER BY published_at, id",
            bind_all(vec![subtree.clone(), Value::Int(start), Value::Int(end)])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(|row| {
            Ok(BulletinFact {
                id: q::text(row, "id")?,
                case_id: q::text(row, "case_id")?,
                text: q::text(row, "text")?,
                published_on: day_of(column(row, "published_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        // Counted per campaign by correlated subqueries: a report reads a handful of campaigns.
        let count = |row: &sqlx::any::AnyRow, name: &str| -> Result<u64> {
            Ok(u64::try_from(column::<i64>(row, name)?).unwrap_or_default())
        };
        let campaigns = sqlx::query_with(
            "SELECT c.id, c.title, c.state, c.opened_at, \
             (SELECT COUNT(*) FROM campaign_scope s WHERE s.campaign_id = c.id) AS scope_count, \
             (SELECT COUNT(*) FROM campaign_declarations d WHERE d.campaign_id = c.id) AS declared_count, \
             (SELECT COUNT(*) FROM campaign_declarations d WHERE d.campaign_id = c.id AND d.late <> 0) AS late_count, \
             (SELECT COUNT(*) FROM campaign_items i WHERE i.campaign_id = c.id) AS item_count \
             FROM campaigns c WHERE c.jurisdiction LIKE $1 AND c.opened_at < $3 \
             AND (c.closed_at IS NULL OR c.closed_at >= $2) ORDER BY c.opened_at, c.id",
            bind_all(vec![subtree.clone(), Value::Int(start), Value::Int(end)])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(|row| {
            Ok(CampaignFact {
                id: q::text(row, "id")?,
                title: q::text(row, "title")?,
                closed: q::text(row, "state")? == "CLOSED",
                opened_on: day_of(column(row, "opened_at")?),
                institutions: count(row, "scope_count")?,
                declared: count(row, "declared_count")?,
                late: count(row, "late_count")?,
                undeclared_items: count(row, "item_count")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let names = sqlx::query_with(
            "SELECT uscc, name FROM institutions WHERE jurisdiction LIKE $1",
            bind_all(vec![subtree])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(|row| Ok((q::text(row, "uscc")?, q::text(row, "name")?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
        Ok(LeadershipFacts {
            balance,
            findings,
            items,
            penalties,
            bulletins,
            campaigns,
            names,
        })
    }
}
