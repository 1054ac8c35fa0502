//! Measure 2: a full re-check of the loaded data (`Store::reconcile`, set-based) against every rule
//! of docs/RULES.md as plain SQL (`Store::plain_sql_all`, keys only) on the same database.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use super::progress;
use crate::domain::findings::{FindingKey, RuleCode};
use crate::domain::{Coded, Period};
use crate::generator::Planted;
use crate::store::Store;
use crate::store::plain_sql::{APPROXIMATE, CODES, MORE_CODES};
use crate::store::reconcile::{ChangeKind, FindingFilter};

/// What the two checks did.
#[derive(Debug, Clone, Default)]
pub struct Recheck {
    /// Wall time of the hub's full re-check (findings deleted first, so it raises every one).
    pub hub_time: Duration,
    /// Findings the hub raised, every rule.
    pub hub_findings: u64,
    /// Of those, the findings of the rules the plain SQL computes exactly.
    pub hub_core_findings: u64,
    /// Institutions the hub checked.
    pub institutions: u64,
    /// Wall time of every rule as plain SQL (second run; the first warms the caches).
    pub plain_time: Duration,
    /// Wall time of the six core rules alone as plain SQL (the baseline of earlier runs).
    pub plain_core_time: Duration,
    /// Findings the plain SQL found, of the rules it computes exactly.
    pub plain_findings: u64,
    /// Findings per code, hub and plain SQL, where they differ (rules computed exactly).
    pub differences: BTreeMap<&'static str, (u64, u64)>,
    /// Problems the generator planted (its ground truth).
    pub planted: u64,
    /// Planted problems the re-check did not raise, a few of them named.
    pub missed: (u64, Vec<String>),
    /// Findings the re-check raised that were not planted, a few of them named.
    pub extra: (u64, Vec<String>),
    /// Of the planted, those about agencies' data freshness.
    pub planted_freshness: u64,
    /// Late payroll months the replay raised and resolved (as planted), and those planted.
    pub late_resolved: (u64, u64),
}

/// Deletes the findings the pushes kept, times `reconcile(None, as_of, false)` (the hub's clock
/// stands on `as_of`, so every change is kept), then times the plain SQL on the same database.
/// The findings about agencies' data freshness, which no re-check of institutions decides, are the
/// freshness schedule's on the check date, from what the replay's pushes noted. Before the
/// findings go, the `late` payroll months (agency id, period) the replay should have raised and
/// resolved are looked for among the resolved ones.
pub async fn measure(
    store: &Store,
    as_of: NaiveDate,
    truth: &[Planted],
    late: &BTreeSet<(String, Period)>,
) -> anyhow::Result<Recheck> {
    let threshold = store.checks().rules.quota_full_threshold;
    let resolved: BTreeSet<(String, String)> = store
        .findings(&FindingFilter {
            codes: vec![RuleCode::LatePayroll],
            open: false,
            limit: u32::MAX,
            ..FindingFilter::default()
        })
        .await?
        .into_iter()
        .map(|stored| (stored.finding.key.institution, stored.finding.key.period))
        .collect();
    let late_resolved = late
        .iter()
        .filter(|(agency, period)| resolved.contains(&(agency.clone(), period.to_string())))
        .count() as u64;
    // Warm the caches for both: the plain SQL reads every table the re-check reads.
    let _ = store.plain_sql_all(as_of, threshold).await?;

    // Not a store method on purpose: forgetting every finding is something only a benchmark wants.
    sqlx::query("DELETE FROM findings")
        .execute(store.readers())
        .await?;
    progress("  re-check: the hub's full re-check (findings deleted first)");
    let started = Instant::now();
    let report = store.reconcile(None, as_of, false).await?;
    let hub_time = started.elapsed();

    progress("  re-check: the plain-SQL baseline, every rule");
    let started = Instant::now();
    let plain = store.plain_sql_all(as_of, threshold).await?;
    let plain_time = started.elapsed();
    let started = Instant::now();
    let _ = store.plain_sql_findings(as_of).await?;
    let plain_core_time = started.elapsed();
    let exact = CODES
        .iter()
        .chain(&MORE_CODES)
        .filter(|code| !APPROXIMATE.contains(code));

    let mut hub_by_code: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut hub_findings = 0;
    for change in &report.changes {
        if change.kind == ChangeKind::Raised {
            hub_findings += 1;
            *hub_by_code
                .entry(change.finding.finding.key.code.code())
                .or_default() += 1;
        }
    }
    let mut plain_by_code: BTreeMap<&'static str, u64> = BTreeMap::new();
    for key in &plain {
        *plain_by_code.entry(key.code.code()).or_default() += 1;
    }
    let mut differences = BTreeMap::new();
    let mut hub_core_findings = 0;
    let mut plain_findings = 0;
    for code in exact {
        let hub = hub_by_code.get(code.code()).copied().unwrap_or_default();
        let sql = plain_by_code.get(code.code()).copied().unwrap_or_default();
        hub_core_findings += hub;
        plain_findings += sql;
        if hub != sql {
            differences.insert(code.code(), (hub, sql));
        }
    }
    // The generator's ground truth against what the re-check raised, at full scale, and the
    // freshness schedule on the check date.
    let freshness = store.check_freshness().await?;
    let raised: BTreeSet<FindingKey> = report
        .changes
        .iter()
        .chain(&freshness)
        .filter(|change| change.kind == ChangeKind::Raised)
        .map(|change| change.finding.finding.key.clone())
        .collect();
    let planted: BTreeSet<FindingKey> = truth.iter().map(Planted::key).collect();
    let named = |keys: Vec<&FindingKey>| {
        let count = keys.len() as u64;
        let names = keys
            .iter()
            .take(5)
            .map(|k| {
                format!(
                    "{} {} {} {}",
                    k.code.code(),
                    k.institution,
                    k.subject,
                    k.period
                )
            })
            .collect();
        (count, names)
    };
    Ok(Recheck {
        planted_freshness: planted.iter().filter(|k| k.code.about_agency()).count() as u64,
        late_resolved: (late_resolved, late.len() as u64),
        planted: planted.len() as u64,
        missed: named(planted.difference(&raised).collect()),
        extra: named(raised.difference(&planted).collect()),
        hub_time,
        hub_findings,
        hub_core_findings,
        institutions: report.institutions,
        plain_time,
        plain_core_time,
        plain_findings,
        differences,
    })
}
