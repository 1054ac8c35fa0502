//! The report to the leadership (向编委领导报告): the figures it gives for a period, computed from
//! what the store reads. Pure: the store gathers the facts, the API turns the figures into the
//! contract's message, `report` renders them.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::Coded;
use super::findings::RuleCode;
use super::ledger::{ItemFacts, is_overdue};

/// A period's days, `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub from: NaiveDate,
    /// Last day.
    pub to: NaiveDate,
}

impl Period {
    /// The period, if `from` is not after `to`.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Period, String> {
        if from > to {
            return Err(format!("the period starts on {from}, after its end {to}"));
        }
        Ok(Period { from, to })
    }

    /// Whether `day` lies in the period.
    pub fn holds(self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }
}

/// What the report needs of a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingFacts {
    /// Its rule.
    pub code: RuleCode,
    /// The day it was raised.
    pub raised_on: NaiveDate,
    /// The day the data stopped showing it, if it has.
    pub resolved_on: Option<NaiveDate>,
}

/// Findings of one rule in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTally {
    /// The rule.
    pub code: RuleCode,
    /// Raised in the period.
    pub raised: u64,
    /// Resolved in the period.
    pub closed: u64,
    /// Open at the period's end.
    pub open_at_end: u64,
}

/// Findings raised, resolved and open at the end, per rule, in the rules' order; a rule with
/// nothing in the period is left out.
pub fn tally_findings(findings: &[FindingFacts], period: Period) -> Vec<RuleTally> {
    let mut rows: BTreeMap<usize, RuleTally> = BTreeMap::new();
    for finding in findings {
        let raised = period.holds(finding.raised_on);
        let closed = finding.resolved_on.is_some_and(|day| period.holds(day));
        let open_at_end =
            finding.raised_on <= period.to && finding.resolved_on.is_none_or(|day| day > period.to);
        if !(raised || closed || open_at_end) {
            continue;
        }
        let order = RuleCode::ALL
            .iter()
            .position(|code| *code == finding.code)
            .unwrap_or(usize::MAX);
        let row = rows.entry(order).or_insert(RuleTally {
            code: finding.code,
            raised: 0,
            closed: 0,
            open_at_end: 0,
        });
        row.raised += u64::from(raised);
        row.closed += u64::from(closed);
        row.open_at_end += u64::from(open_at_end);
    }
    rows.into_values().collect()
}

/// One department's ledger in a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartmentClosure {
    /// The department's jurisdiction.
    pub jurisdiction: String,
    /// The department.
    pub department: String,
    /// Items it had to deal with: closed in the period or open at its end.
    pub handled: u64,
    /// Closed in the period.
    pub closed: u64,
    /// Open and past due at the period's end.
    pub overdue: u64,
}

impl DepartmentClosure {
    /// closed ÷ handled, per mille.
    pub fn permille(&self) -> u32 {
        permille(self.closed, self.handled)
    }
}

/// `part ÷ whole` per mille, rounded down; 1000 when there is nothing to do (nothing left open).
pub fn permille(part: u64, whole: u64) -> u32 {
    if whole == 0 {
        return 1000;
    }
    u32::try_from(part.min(whole) * 1000 / whole).unwrap_or(1000)
}

/// The ledger per department for the period, by jurisdiction and department: an item counts
/// where it was closed in the period or is still open at its end (items closed before the period
/// were dealt with in another).
pub fn closure_by_department(items: &[ItemFacts], period: Period) -> Vec<DepartmentClosure> {
    let mut rows: BTreeMap<(String, String), DepartmentClosure> = BTreeMap::new();
    for item in items {
        let closed = item.closed_on.is_some_and(|day| period.holds(day));
        let open_at_end =
            item.opened_on <= period.to && item.closed_on.is_none_or(|day| day > period.to);
        if !(closed || open_at_end) {
            continue;
        }
        let row = rows
            .entry((item.jurisdiction.clone(), item.department.clone()))
            .or_insert_with(|| DepartmentClosure {
                jurisdiction: item.jurisdiction.clone(),
                department: item.department.clone(),
                handled: 0,
                closed: 0,
                overdue: 0,
            });
        row.handled += 1;
        row.closed += u64::from(closed);
        row.overdue += u64::from(open_at_end && is_overdue(item.due_on, false, period.to));
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn quarter() -> Period {
        Period::new(d("2024-04-01"), d("2024-06-30")).unwrap()
    }

    #[test]
    fn a_period_runs_forwards() {
        assert!(Period::new(d("2024-07-01"), d("2024-06-30")).is_err());
        assert!(quarter().holds(d("2024-04-01")) && quarter().holds(d("2024-06-30")));
        assert!(!quarter().holds(d("2024-07-01")));
    }

    #[test]
    fn findings_are_tallied_per_rule_in_the_rules_order() {
        let finding = |code, raised: &str, resolved: Option<&str>| FindingFacts {
            code,
            raised_on: d(raised),
            resolved_on: resolved.map(d),
        };
        let findings = [
            finding(RuleCode::PaidNotOnRoll, "2024-04-02", None),
            finding(RuleCode::PaidNotOnRoll, "2024-05-02", Some("2024-06-01")),
            finding(RuleCode::PaidNotOnRoll, "2024-03-02", Some("2024-04-10")),
            finding(RuleCode::OverQuota, "2024-01-02", None),
            // Over before the quarter, and raised after it: neither counts.
            finding(RuleCode::OverQuota, "2024-01-02", Some("2024-02-01")),
            finding(RuleCode::DoublePay, "2024-07-02", None),
        ];
        assert_eq!(
            tally_findings(&findings, quarter()),
            vec![
                RuleTally {
                    code: RuleCode::OverQuota,
                    raised: 0,
                    closed: 0,
                    open_at_end: 1
                },
                RuleTally {
                    code: RuleCode::PaidNotOnRoll,
                    raised: 2,
                    closed: 2,
                    open_at_end: 1
                },
            ]
        );
    }

    #[test]
    fn closure_counts_what_was_closed_against_what_had_to_be_dealt_with() {
        let item = |department: &str, opened: &str, closed: Option<&str>, due: &str| ItemFacts {
            jurisdiction: "140105".into(),
            department: department.into(),
            opened_on: d(opened),
            closed_on: closed.map(d),
            due_on: d(due),
        };
        let items = [
            item("A", "2024-03-01", Some("2024-04-15"), "2024-05-01"),
            item("A", "2024-04-01", None, "2024-05-01"),
            item("A", "2024-04-01", None, "2024-07-31"),
            item("A", "2024-01-01", Some("2024-02-01"), "2024-03-01"),
            item("B", "2024-04-01", Some("2024-04-02"), "2024-05-01"),
        ];
        let rows = closure_by_department(&items, quarter());
        assert_eq!(
            rows,
            vec![
                DepartmentClosure {
                    jurisdiction: "140105".into(),
                    department: "A".into(),
                    handled: 3,
                    closed: 1,
                    overdue: 1,
                },
                DepartmentClosure {
                    jurisdiction: "140105".into(),
                    department: "B".into(),
                    handled: 1,
                    closed: 1,
                    overdue: 0,
                },
            ]
        );
        assert_eq!(rows[0].permille(), 333);
        assert_eq!(rows[1].permille(), 1000);
        assert_eq!(
            permille(0, 0),
            1000,
            "nothing to deal with is nothing left open"
        );
        assert_eq!(permille(2, 3), 666);
    }
}
