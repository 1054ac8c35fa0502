//! Data freshness (同步录入、实时更新): what each push brought, noted in its transaction
//! (`agency_pushes`, `payroll_months`, `backdated_events`), and the agency's freshness findings
//! decided from those notes ([`freshness::decide`]) and settled like every other finding: at the
//! push, under the push's lock, and on the schedule under the same lock. Judged from the day the
//! hub began watching (`freshness_watch`, its first start; or `freshness.watch_from`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{FixedOffset, NaiveDate, TimeZone};

use super::check::{FindingChange, Keep, settle};
use super::codec::column;
use super::findings::decode_finding;
use super::query as q;
use super::read::{Columns, Reader};
use super::write::Writer;
use super::{Store, Value, bind_all};
use crate::domain::findings::{FindingKey, RecordRef};
use crate::domain::freshness::{self, AgencyPushes, Backdated, Dated};
use crate::domain::{Agency, AgencyKind, Jurisdiction, Period};
use crate::error::{Error, Result};

/// The record kinds whose pushes an agency's freshness findings are decided from.
const PAYROLL: &str = "payroll_line";
const EVENTS: &str = "personnel_event";

/// One agency's freshness, as the staffing office's report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgencyFreshness {
    /// The agency.
    pub agency: Agency,
    /// The last day it pushed each record kind.
    pub last_pushes: BTreeMap<String, NaiveDate>,
    /// The latest pay period it pushed (finance).
    pub latest_period: Option<Period>,
    /// The pay periods it owes, already late (finance).
    pub awaited: Vec<Period>,
    /// The next period due and the first day it is late (finance).
    pub next_due: Option<(Period, NaiveDate)>,
    /// Days since the oldest period owed became late; 0 when none is.
    pub payroll_lag_days: i64,
    /// Personnel events it pushed in the window, those timed (not history) and of them backdated.
    pub events: i64,
    /// Of `events`, those that took effect on or after its first push.
    pub timed: i64,
    /// Of `timed`, those backdated.
    pub backdated: i64,
    /// Days from effect to push, summed over `timed`.
    pub lag_days: i64,
}

impl AgencyFreshness {
    /// Whether the hub is waiting for this agency's data: payroll already late.
    pub fn waiting(&self) -> bool {
        !self.awaited.is_empty()
    }
}

fn china_date(micros: i64) -> NaiveDate {
    let china = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    china
        .timestamp_micros(micros)
        .single()
        .map_or(NaiveDate::MIN, |t| t.date_naive())
}

fn day(row: &impl Columns, name: &str) -> Result<NaiveDate> {
    let text = q::text(row, name)?;
    text.parse()
        .map_err(|_| Error::Internal(format!("a stored {name} is not a date")))
}

/// Its statements number their placeholders in the order they are bound.
async fn rows<R: Reader>(tx: &mut R, sql: &'static str, values: Vec<Value>) -> Result<Vec<R::Row>> {
    tx.rows(sql, values).await
}

async fn execute<W: Writer>(tx: &mut W, sql: &'static str, values: Vec<Value>) -> Result<()> {
    tx.execute(sql, values).await.map(drop)
}

/// The first day the agency pushed anything; `None` before its first push.
async fn first_push<R: Reader>(tx: &mut R, agency_id: &str) -> Result<Option<NaiveDate>> {
    let found = rows(
        tx,
        "SELECT MIN(pushed_on) AS first FROM agency_pushes WHERE agency_id = $1",
        vec![Value::from(agency_id)],
    )
    .await?;
    match found.first() {
        Some(row) => match row.text("first")? {
            Some(text) => Ok(text.parse().ok()),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// Notes, in the push's transaction, what the accepted records of one push brought: the day's
/// count of the kind, the pay periods, and the events' lag and backdating. Returns which of the
/// agency's freshness findings the push decides (its dirty keys): BACKDATED_EVENT after events,
/// LATE_PAYROLL of the periods paid (which a line can only resolve); the rest is the schedule's.
pub(crate) async fn note_push<W: Writer>(
    store: &Store,
    tx: &mut W,
    agency: &Agency,
    kind: &str,
    records: &[(&str, Dated)],
) -> Result<Option<Decides>> {
    if records.is_empty() {
        return Ok(None);
    }
    let agency_id = agency.id();
    let today = store.checks().clock.today();
    let cadence = store.checks().cadence;
    let first = first_push(tx, &agency_id).await?.unwrap_or(today);
    let (mut timed, mut lag, mut backdated) = (0i64, 0i64, 0i64);
    let mut periods: BTreeSet<Period> = BTreeSet::new();
    for (record_id, dated) in records {
        match dated {
            Dated::Undated => {}
            Dated::Paid(period) => {
                periods.insert(*period);
            }
            // Events that took effect before the agency's first push are the history it brought
            // when it joined, not late news.
            Dated::Effective(effective_on) if *effective_on >= first => {
                timed += 1;
                lag += freshness::lag_days(*effective_on, today);
                if cadence.backdated(*effective_on, today) {
                    backdated += 1;
                    execute(
                        tx,
                        "INSERT INTO backdated_events (agency_id, record_id, effective_on, pushed_on) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        vec![
                            Value::from(agency_id.as_str()),
                            Value::from(*record_id),
                            Value::Text(effective_on.to_string()),
                            Value::Text(today.to_string()),
                        ],
                    )
                    .await?;
                }
            }
            Dated::Effective(_) => {}
        }
    }
    for period in &periods {
        execute(
            tx,
            "INSERT INTO payroll_months (agency_id, period, first_pushed_on) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            vec![
                Value::from(agency_id.as_str()),
                Value::Text(period.to_string()),
                Value::Text(today.to_string()),
            ],
        )
        .await?;
    }
    let n = i64::try_from(records.len()).unwrap_or(i64::MAX);
    execute(
        tx,
        "INSERT INTO agency_pushes (agency_id, record_kind, pushed_on, records, timed, lag_days, backdated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (agency_id, record_kind, pushed_on) DO UPDATE SET \
         records = agency_pushes.records + excluded.records, timed = agency_pushes.timed + excluded.timed, \
         lag_days = agency_pushes.lag_days + excluded.lag_days, backdated = agency_pushes.backdated + excluded.backdated",
        vec![
            Value::from(agency_id.as_str()),
            Value::from(kind),
            Value::Text(today.to_string()),
            Value::Int(n),
            Value::Int(timed),
            Value::Int(lag),
            Value::Int(backdated),
        ],
    )
    .await?;
    let events = records
        .iter()
        .any(|(_, d)| matches!(d, Dated::Effective(_)));
    Ok((events || !periods.is_empty()).then_some(Decides { events, periods }))
}

/// The freshness findings of an agency a push decides.
#[derive(Debug, Clone, Default)]
pub(crate) struct Decides {
    /// BACKDATED_EVENT: the push brought events.
    events: bool,
    /// LATE_PAYROLL of these periods: the push brought their lines.
    periods: BTreeSet<Period>,
}

impl Decides {
    /// Whether a finding of `key` is one the push decides.
    pub(crate) fn covers(&self, key: &FindingKey) -> bool {
        use crate::domain::findings::RuleCode as R;
        match key.code {
            R::BackdatedEvent => self.events,
            R::LatePayroll => Period::parse(&key.period).is_ok_and(|p| self.periods.contains(&p)),
            _ => false,
        }
    }
}

/// The day the hub judges freshness from: the configured one, or its first start as stored.
async fn watched_from<R: Reader>(store: &Store, tx: &mut R) -> Result<Option<NaiveDate>> {
    if let Some(configured) = store.checks().cadence.watch_from {
        return Ok(Some(configured));
    }
    match rows(tx, "SELECT since FROM freshness_watch", Vec::new())
        .await?
        .first()
    {
        Some(row) => Ok(Some(day(row, "since")?)),
        None => Ok(None),
    }
}

/// What the notes say of one agency on `today`.
async fn pushes_of<R: Reader>(store: &Store, tx: &mut R, agency: &Agency) -> Result<AgencyPushes> {
    let agency_id = agency.id();
    let today = store.checks().clock.today();
    let cadence = store.checks().cadence;
    let registered_on = rows(
        tx,
        "SELECT created_at FROM agencies WHERE id = $1",
        vec![Value::from(agency_id.as_str())],
    )
    .await?
    .first()
    .map(|row| q::int(row, "created_at"))
    .transpose()?
    .map_or(today, china_date);
    let mut periods = BTreeSet::new();
    for row in rows(
        tx,
        "SELECT period FROM payroll_months WHERE agency_id = $1",
        vec![Value::from(agency_id.as_str())],
    )
    .await?
    {
        let text = q::text(&row, "period")?;
        periods.insert(Period::parse(&text).map_err(Error::Internal)?);
    }
    let mut backdated = Vec::new();
    for row in rows(
        tx,
        "SELECT record_id, effective_on, pushed_on FROM backdated_events WHERE agency_id = $1 AND pushed_on >= $2",
        vec![
            Value::from(agency_id.as_str()),
            Value::Text(cadence.window_start(today).to_string()),
        ],
    )
    .await?
    {
        let record = q::text(&row, "record_id")?;
        backdated.push(Backdated {
            record: RecordRef(format!("{agency_id}/{record}")),
            effective_on: day(&row, "effective_on")?,
            pushed_on: day(&row, "pushed_on")?,
        });
    }
    Ok(AgencyPushes {
        agency: agency.clone(),
        registered_on,
        periods,
        backdated,
        watched_from: watched_from(store, tx).await?,
    })
}

/// Decides the agency's freshness findings that `covers` holds, as of today, and settles them
/// against those stored (raised, updated, resolved; written and fed). The caller holds the
/// agency's push lock of the kind with a cadence (payroll for finance, events for HR).
pub(crate) async fn check_agency<W: Writer>(
    store: &Store,
    tx: &mut W,
    agency: &Agency,
    covers: &(dyn Fn(&FindingKey) -> bool + Sync),
) -> Result<Vec<FindingChange>> {
    let today = store.checks().clock.today();
    let pushes = pushes_of(store, tx, agency).await?;
    let jurisdiction = agency.jurisdiction.to_string();
    let computed = freshness::decide(&pushes, today, &store.checks().cadence)
        .into_iter()
        .filter(|finding| covers(&finding.key))
        .map(|finding| (finding, jurisdiction.clone()))
        .collect();
    let mut existing: BTreeMap<FindingKey, _> = BTreeMap::new();
    for row in rows(
        tx,
        "SELECT * FROM findings WHERE institution_uscc = $1 AND code IN ('LATE_PAYROLL', 'BACKDATED_EVENT')",
        vec![Value::from(agency.id())],
    )
    .await?
    {
        let stored = decode_finding(&row)?;
        if covers(&stored.finding.key) {
            existing.insert(stored.finding.key.clone(), stored);
        }
    }
    settle(store, tx, computed, existing, Keep::Everything).await
}

/// The kind whose push lock guards an agency's freshness findings, for the kinds with a cadence.
fn guarded_kind(kind: AgencyKind) -> Option<&'static str> {
    match kind {
        AgencyKind::Finance => Some(PAYROLL),
        AgencyKind::Hr => Some(EVENTS),
        _ => None,
    }
}

impl Store {
    /// Keeps today as the day the hub began judging data freshness, unless a day is kept already
    /// (a hub's first start; every replica and restart keeps the first), and returns the day
    /// freshness is judged from: `freshness.watch_from` when configured, else the kept one.
    pub async fn watch_freshness(&self) -> Result<NaiveDate> {
        let today = self.checks().clock.today();
        let mut tx = self.begin().await?;
        execute(
            &mut tx,
            "INSERT INTO freshness_watch (singleton, since) VALUES (1, $1) ON CONFLICT DO NOTHING",
            vec![Value::Text(today.to_string())],
        )
        .await?;
        let from = watched_from(self, &mut tx).await?.unwrap_or(today);
        tx.commit().await?;
        Ok(from)
    }

    /// Checks the freshness of every enabled finance and HR agency's data as of today (the
    /// schedule): each agency in its own transaction under its push lock. Returns the changes.
    pub async fn check_freshness(&self) -> Result<Vec<FindingChange>> {
        let mut all = Vec::new();
        for registered in self.agencies().await? {
            let Some(kind) = guarded_kind(registered.agency.kind) else {
                continue;
            };
            if !registered.enabled {
                continue;
            }
            let agency = &registered.agency;
            let lock = format!("push:{}:{kind}", agency.id());
            let mut tx = self.begin_locked(&[lock]).await?;
            let changes = check_agency(self, &mut tx, agency, &|_| true).await?;
            if changes.is_empty() {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
                self.feed_changed();
            }
            all.extend(changes);
        }
        Ok(all)
    }

    /// The freshness of every agency registered in `jurisdiction` (or below it), as of today.
    pub async fn freshness_report(
        &self,
        jurisdiction: &Jurisdiction,
    ) -> Result<Vec<AgencyFreshness>> {
        let today = self.checks().clock.today();
        let cadence = self.checks().cadence;
        let start = cadence.window_start(today).to_string();
        let mut tx = self.readers().begin().await?;
        let mut report = Vec::new();
        for registered in self.agencies().await? {
            let agency = registered.agency;
            if !jurisdiction.contains(&agency.jurisdiction)
                || matches!(agency.kind, AgencyKind::Discipline | AgencyKind::Audit)
            {
                continue;
            }
            let id = agency.id();
            let mut last_pushes = BTreeMap::new();
            for row in sqlx::query_with(
                "SELECT record_kind, MAX(pushed_on) AS last FROM agency_pushes WHERE agency_id = $1 GROUP BY record_kind",
                bind_all(vec![Value::from(id.as_str())])?,
            )
            .fetch_all(&mut *tx)
            .await?
            {
                last_pushes.insert(column::<String>(&row, "record_kind")?, day(&row, "last")?);
            }
            let sums = sqlx::query_with(
                "SELECT CAST(COALESCE(SUM(records), 0) AS BIGINT) AS records, \
                 CAST(COALESCE(SUM(timed), 0) AS BIGINT) AS timed, \
                 CAST(COALESCE(SUM(lag_days), 0) AS BIGINT) AS lag, \
                 CAST(COALESCE(SUM(backdated), 0) AS BIGINT) AS backdated \
                 FROM agency_pushes WHERE agency_id = $1 AND record_kind = $2 AND pushed_on >= $3",
                bind_all(vec![
                    Value::from(id.as_str()),
                    Value::from(EVENTS),
                    Value::Text(start.clone()),
                ])?,
            )
            .fetch_one(&mut *tx)
            .await?;
            let sum = |name: &str| column::<i64>(&sums, name);
            let (events, timed, lag_days, backdated) = (
                sum("records")?,
                sum("timed")?,
                sum("lag")?,
                sum("backdated")?,
            );
            let pushes = pushes_of(self, &mut tx, &agency).await?;
            let awaited = freshness::awaited_payroll(&pushes, today, &cadence);
            let payroll_lag_days = awaited.first().map_or(0, |period| {
                (today - cadence.payroll_late_from(*period)).num_days() + 1
            });
            report.push(AgencyFreshness {
                latest_period: pushes.periods.last().copied(),
                next_due: freshness::next_payroll_due(&pushes, today, &cadence),
                awaited,
                payroll_lag_days,
                last_pushes,
                events,
                timed,
                backdated,
                lag_days,
                agency,
            });
        }
        Ok(report)
    }
}
