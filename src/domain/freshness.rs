//! Data freshness and completeness (同步录入、实时更新): each agency kind has a cadence, and data
//! that comes late, or not at all, is a finding about the agency responsible rather than about an
//! institution (docs/RULES.md, LATE_PAYROLL and BACKDATED_EVENT).
//!
//! A finding about an agency is keyed like any other, with the agency's id (`140100/finance`) where
//! an institution's USCC stands: that is who answers for it in the ledger, and an agency id (with
//! its `/`) never parses as a USCC. No re-check of institutions decides these findings
//! ([`super::findings::Scope::covers`]); the store decides them from the pushes it noted, at a push
//! and on the schedule, with [`decide`].

use std::collections::BTreeSet;

use chrono::{Datelike, NaiveDate};

use super::explain;
use super::findings::{Evidence, Finding, FindingKey, RecordRef, RuleCode, sampled};
use super::{Agency, AgencyKind, Period};

/// The cadence each agency kind is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// A month's payroll is late from this day of the next month on (1–28).
    pub payroll_due_day: u32,
    /// A personnel event is backdated when pushed more than this many days after it took effect.
    pub event_due_days: u32,
    /// BACKDATED_EVENT and the report's backdated share look at the events pushed in this many
    /// days up to today.
    pub window_days: u32,
    /// Freshness is judged from this day on (`freshness.watch_from`); none: from the hub's first
    /// start, which the store keeps.
    pub watch_from: Option<NaiveDate>,
}

impl Default for Cadence {
    fn default() -> Cadence {
        Cadence {
            payroll_due_day: 10,
            event_due_days: 30,
            window_days: 90,
            watch_from: None,
        }
    }
}

impl Cadence {
    /// The first day `period`'s payroll is late: the due day of the next month.
    pub fn payroll_late_from(&self, period: Period) -> NaiveDate {
        let next = period.next().first_day();
        let day = self.payroll_due_day.clamp(1, 28);
        next.with_day(day).unwrap_or(next)
    }

    /// Whether an event that took effect on `effective_on` and was pushed on `pushed_on` came
    /// later than the cadence allows.
    pub fn backdated(&self, effective_on: NaiveDate, pushed_on: NaiveDate) -> bool {
        lag_days(effective_on, pushed_on) > i64::from(self.event_due_days)
    }

    /// The first day of the window that ends today.
    pub fn window_start(&self, today: NaiveDate) -> NaiveDate {
        today - chrono::Days::new(u64::from(self.window_days.saturating_sub(1)))
    }
}

/// Days from an event's effective date to its push (0 when pushed ahead of it).
pub fn lag_days(effective_on: NaiveDate, pushed_on: NaiveDate) -> i64 {
    (pushed_on - effective_on).num_days().max(0)
}

/// What a pushed record tells the freshness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dated {
    /// Nothing: the kind has no cadence.
    Undated,
    /// A payroll line of this pay period.
    Paid(Period),
    /// A personnel event that took effect on this date.
    Effective(NaiveDate),
}

/// A backdated event as noted at its push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backdated {
    /// The event.
    pub record: RecordRef,
    /// When it took effect.
    pub effective_on: NaiveDate,
    /// When the hub accepted it (the hub's date).
    pub pushed_on: NaiveDate,
}

/// What the hub noted of one agency's pushes: what its freshness findings are decided from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyPushes {
    /// The agency.
    pub agency: Agency,
    /// The day it was registered: a finance agency that pushed no payroll is expected to from the
    /// month it joined.
    pub registered_on: NaiveDate,
    /// The pay periods it pushed lines for.
    pub periods: BTreeSet<Period>,
    /// Its backdated events pushed in the window.
    pub backdated: Vec<Backdated>,
    /// The day the hub began judging freshness (the configured day, or its first start): a month
    /// due before it is not owed and a push before it is not judged, since nobody watched then. A
    /// hub that starts mid-year thus does not call every month before it late. None: always.
    pub watched_from: Option<NaiveDate>,
}

/// The first pay period a finance agency owes: its first pushed period (none pushed: the month it
/// was registered), or the first whose due day came after the hub began watching, the later.
fn first_owed(pushes: &AgencyPushes, cadence: &Cadence) -> Period {
    let mut first = pushes
        .periods
        .first()
        .copied()
        .unwrap_or_else(|| Period::containing(pushes.registered_on));
    if let Some(watched_from) = pushes.watched_from {
        while cadence.payroll_late_from(first) < watched_from {
            first = first.next();
        }
    }
    first
}

/// The pay periods whose payroll a finance agency owes on `today`: from the first it owes
/// ([`first_owed`]) to the last one already late, less those pushed.
pub fn awaited_payroll(pushes: &AgencyPushes, today: NaiveDate, cadence: &Cadence) -> Vec<Period> {
    if pushes.agency.kind != AgencyKind::Finance {
        return Vec::new();
    }
    let first = first_owed(pushes, cadence);
    let mut awaited = Vec::new();
    let mut period = first;
    while cadence.payroll_late_from(period) <= today {
        if !pushes.periods.contains(&period) {
            awaited.push(period);
        }
        period = period.next();
    }
    awaited
}

/// The next period a finance agency's payroll is due for, with the first day it is late: the
/// earliest not yet pushed and not yet late.
pub fn next_payroll_due(
    pushes: &AgencyPushes,
    today: NaiveDate,
    cadence: &Cadence,
) -> Option<(Period, NaiveDate)> {
    if pushes.agency.kind != AgencyKind::Finance {
        return None;
    }
    let mut period = first_owed(pushes, cadence);
    while cadence.payroll_late_from(period) <= today || pushes.periods.contains(&period) {
        period = period.next();
    }
    Some((period, cadence.payroll_late_from(period)))
}

/// The agency's freshness findings on `today`: LATE_PAYROLL for each period a finance agency owes,
/// BACKDATED_EVENT for an agency that pushed backdated events in the window.
pub fn decide(pushes: &AgencyPushes, today: NaiveDate, cadence: &Cadence) -> Vec<Finding> {
    let agency = pushes.agency.id();
    let mut found: Vec<Finding> = awaited_payroll(pushes, today, cadence)
        .into_iter()
        .map(|period| {
            let late_from = cadence.payroll_late_from(period);
            finding(
                key(RuleCode::LatePayroll, &agency, period.to_string()),
                (0, 0),
                late_payroll_text(&agency, period, late_from),
                BTreeSet::new(),
            )
        })
        .collect();
    let start = cadence.window_start(today);
    let recent: Vec<&Backdated> = pushes
        .backdated
        .iter()
        .filter(|b| start <= b.pushed_on && b.pushed_on <= today)
        .filter(|b| pushes.watched_from.is_none_or(|from| from <= b.pushed_on))
        .collect();
    if let Some(latest) = recent.iter().max_by_key(|b| {
        (
            b.pushed_on,
            lag_days(b.effective_on, b.pushed_on),
            &b.record,
        )
    }) {
        let n = i64::try_from(recent.len()).unwrap_or(i64::MAX);
        let evidence = sampled(
            recent
                .iter()
                .map(|b| Evidence::record("personnel_event", &b.record)),
        );
        found.push(finding(
            key(RuleCode::BackdatedEvent, &agency, String::new()),
            (n, 0),
            backdated_text(&agency, n, cadence, latest),
            evidence,
        ));
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

fn key(code: RuleCode, agency: &str, period: String) -> FindingKey {
    FindingKey {
        code,
        institution: agency.to_owned(),
        subject: String::new(),
        period,
    }
}

fn finding(
    key: FindingKey,
    (actual, limit): (i64, i64),
    (explanation_zh, explanation_en): (String, String),
    evidence: BTreeSet<Evidence>,
) -> Finding {
    Finding {
        severity: key.code.severity(),
        key,
        actual,
        limit,
        explanation_zh,
        explanation_en,
        evidence,
    }
}

/// The agency a freshness finding is about, from its key.
pub fn agency_of(key: &FindingKey) -> Option<Agency> {
    if !key.code.about_agency() {
        return None;
    }
    Agency::from_uri(&format!(
        "{}{}",
        super::agency::AGENCY_URI_PREFIX,
        key.institution
    ))
    .ok()
}

// ---------------------------------------------------------------------------------------------
// The explanations, in Chinese and English (explain.rs's wording for the other rules).

/// LATE_PAYROLL: `agency` has not pushed `period`'s payroll, late from `late_from`.
fn late_payroll_text(agency: &str, period: Period, late_from: NaiveDate) -> explain::Text {
    (
        format!("{agency} 尚未报送 {period} 的工资数据（应于 {late_from} 前报送）。"),
        format!("{agency} has not pushed the payroll for {period}, due before {late_from}."),
    )
}

/// BACKDATED_EVENT: `n` of `agency`'s events in the window came later than the cadence allows;
/// `latest` is the last of them.
fn backdated_text(agency: &str, n: i64, cadence: &Cadence, latest: &Backdated) -> explain::Text {
    let (window, due) = (cadence.window_days, cadence.event_due_days);
    let lag = lag_days(latest.effective_on, latest.pushed_on);
    let (record, effective, pushed) = (&latest.record.0, latest.effective_on, latest.pushed_on);
    (
        format!(
            "{agency} 近 {window} 天报送的人事事件中有 {n} 条在生效 {due} 天后才报送；最近一条 {record} 于 {effective} 生效，{pushed} 报送，滞后 {lag} 天。"
        ),
        format!(
            "{agency} pushed {n} personnel events in the last {window} days more than {due} days after they took effect; the latest, {record}, took effect on {effective} and was pushed on {pushed}, {lag} days late."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Jurisdiction;

    fn d(raw: &str) -> NaiveDate {
        raw.parse().unwrap()
    }

    fn p(raw: &str) -> Period {
        Period::parse(raw).unwrap()
    }

    fn finance(periods: &[&str]) -> AgencyPushes {
        AgencyPushes {
            agency: Agency::new(Jurisdiction::parse("140100").unwrap(), AgencyKind::Finance),
            registered_on: d("2024-01-20"),
            periods: periods.iter().map(|raw| p(raw)).collect(),
            backdated: Vec::new(),
            watched_from: None,
        }
    }

    #[test]
    fn a_months_payroll_is_late_from_the_due_day_of_the_next_month() {
        let cadence = Cadence::default();
        assert_eq!(cadence.payroll_late_from(p("2024-05")), d("2024-06-10"));
        assert_eq!(cadence.payroll_late_from(p("2024-12")), d("2025-01-10"));
        let pushes = finance(&["2024-03", "2024-04"]);
        assert!(awaited_payroll(&pushes, d("2024-06-09"), &cadence).is_empty());
        assert_eq!(
            awaited_payroll(&pushes, d("2024-06-10"), &cadence),
            vec![p("2024-05")]
        );
        assert_eq!(
            next_payroll_due(&pushes, d("2024-06-10"), &cadence),
            Some((p("2024-06"), d("2024-07-10")))
        );
        let found = decide(&pushes, d("2024-06-10"), &cadence);
        assert_eq!(found.len(), 1);
        let late = &found[0];
        assert_eq!(late.key.code, RuleCode::LatePayroll);
        assert_eq!(late.key.institution, "140100/finance");
        assert_eq!(late.key.period, "2024-05");
        assert!(
            late.explanation_zh.contains("2024-05"),
            "{}",
            late.explanation_zh
        );
        assert_eq!(agency_of(&late.key), Some(pushes.agency.clone()));
        // A gap is owed too; a month pushed is not.
        let gap = finance(&["2024-02", "2024-04", "2024-05"]);
        assert_eq!(
            awaited_payroll(&gap, d("2024-06-10"), &cadence),
            vec![p("2024-03")]
        );
        // Nothing pushed yet: owed from the month the agency joined.
        let none = finance(&[]);
        assert!(awaited_payroll(&none, d("2024-02-09"), &cadence).is_empty());
        assert_eq!(
            awaited_payroll(&none, d("2024-02-10"), &cadence),
            vec![p("2024-01")]
        );
        // Only finance owes payroll.
        let mut hr = finance(&[]);
        hr.agency.kind = AgencyKind::Hr;
        assert!(decide(&hr, d("2025-01-01"), &cadence).is_empty());
    }

    #[test]
    fn months_due_before_the_hub_began_watching_are_not_owed() {
        let cadence = Cadence::default();
        // An initial load of January to June with March missing, into a hub started on 20 July.
        let mut pushes = finance(&["2024-01", "2024-02", "2024-04", "2024-05", "2024-06"]);
        pushes.watched_from = Some(d("2024-07-20"));
        // June was due on 10 July, before the hub watched: neither it nor March is owed.
        assert!(awaited_payroll(&pushes, d("2024-08-09"), &cadence).is_empty());
        assert_eq!(
            next_payroll_due(&pushes, d("2024-07-20"), &cadence),
            Some((p("2024-07"), d("2024-08-10")))
        );
        // July comes due while the hub watches.
        assert_eq!(
            awaited_payroll(&pushes, d("2024-08-10"), &cadence),
            vec![p("2024-07")]
        );
        // A hub that watched from the first due day sees March too.
        pushes.watched_from = Some(d("2024-02-10"));
        assert_eq!(
            awaited_payroll(&pushes, d("2024-08-10"), &cadence),
            vec![p("2024-03"), p("2024-07")]
        );
        // On the due day itself the hub already watches.
        pushes.watched_from = Some(d("2024-04-10"));
        assert_eq!(
            awaited_payroll(&pushes, d("2024-08-10"), &cadence),
            vec![p("2024-03"), p("2024-07")]
        );
        pushes.watched_from = Some(d("2024-04-11"));
        assert_eq!(
            awaited_payroll(&pushes, d("2024-08-10"), &cadence),
            vec![p("2024-07")]
        );

        // A backdated push before the hub watched is not judged.
        let mut hr = finance(&[]);
        hr.agency.kind = AgencyKind::Hr;
        hr.backdated = vec![Backdated {
            record: RecordRef("140100/hr/e-1".into()),
            effective_on: d("2024-05-01"),
            pushed_on: d("2024-07-01"),
        }];
        assert_eq!(decide(&hr, d("2024-07-15"), &cadence).len(), 1);
        hr.watched_from = Some(d("2024-07-02"));
        assert!(decide(&hr, d("2024-07-15"), &cadence).is_empty());
    }

    #[test]
    fn backdated_events_count_in_the_window_and_age_out() {
        let cadence = Cadence::default();
        assert!(!cadence.backdated(d("2024-05-01"), d("2024-05-31")));
        assert!(cadence.backdated(d("2024-05-01"), d("2024-06-01")));
        let mut hr = finance(&[]);
        hr.agency.kind = AgencyKind::Hr;
        hr.backdated = vec![
            Backdated {
                record: RecordRef("140100/hr/e-1".into()),
                effective_on: d("2024-01-02"),
                pushed_on: d("2024-03-01"),
            },
            Backdated {
                record: RecordRef("140100/hr/e-2".into()),
                effective_on: d("2024-02-01"),
                pushed_on: d("2024-04-15"),
            },
        ];
        let found = decide(&hr, d("2024-04-15"), &cadence);
        assert_eq!(found.len(), 1);
        let backdated = &found[0];
        assert_eq!(backdated.key.code, RuleCode::BackdatedEvent);
        assert_eq!(backdated.key.institution, "140100/hr");
        assert_eq!(
            (
                backdated.key.subject.as_str(),
                backdated.key.period.as_str()
            ),
            ("", "")
        );
        assert_eq!(backdated.actual, 2);
        assert_eq!(backdated.evidence.len(), 2);
        assert!(
            backdated.explanation_en.contains("e-2"),
            "{}",
            backdated.explanation_en
        );
        // 90 days on from the first, one is left; from the second, none.
        assert_eq!(decide(&hr, d("2024-05-30"), &cadence)[0].actual, 1);
        assert!(decide(&hr, d("2024-07-14"), &cadence).is_empty());
    }
}
