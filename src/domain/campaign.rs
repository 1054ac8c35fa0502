//! Special inspections and self-inspection (专项检查、检查和自查相结合). A staffing office opens a
//! campaign about some rule codes over some months; every institution in its scope must be
//! answered for by a self-inspection declaration (自查) before a deadline. The hub then sets each
//! declaration beside its own findings for the same codes and months (核查): what was found and
//! declared, what was found and not declared (瞒报), what was declared and the data does not show,
//! and who never answered. This module is that comparison, pure; the store feeds it rows.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::coded_enum;
use super::findings::{FindingKey, RuleCode};
use super::ids::Period;
use super::ledger::overdue_level;

coded_enum! {
    /// Where a campaign stands.
    CampaignState, "CAMPAIGN_STATE_" {
        /// Taking declarations.
        Open = "OPEN",
        /// Closed with its report; no more declarations, no more escalation.
        Closed = "CLOSED",
    }
}

coded_enum! {
    /// How an institution stands in a campaign's comparison.
    Standing, "STANDING_" {
        /// No declaration yet, and the deadline has not passed.
        Awaiting = "AWAITING",
        /// No declaration, and the deadline has passed.
        Missing = "MISSING",
        /// Declared, and the declaration agrees with the data.
        Matching = "MATCHING",
        /// Declared, and the declaration and the data disagree.
        Discrepant = "DISCREPANT",
    }
}

/// The months a campaign looks at, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignPeriod {
    /// First month.
    pub from: Period,
    /// Last month.
    pub to: Period,
}

impl CampaignPeriod {
    /// The months `from..=to`; refused when they run backwards.
    pub fn new(from: Period, to: Period) -> Result<CampaignPeriod, String> {
        if from > to {
            return Err(format!("{to} is before {from}"));
        }
        Ok(CampaignPeriod { from, to })
    }

    /// Whether a finding of `period` (as findings write it) falls in the campaign: a pay or
    /// funding month in range, a plan year that overlaps it, an entry in one of its months. A
    /// finding about the current roll (period "") is a standing problem, in every campaign's months.
    pub fn covers(&self, period: &str) -> bool {
        if period.is_empty() {
            return true;
        }
        if let Ok(month) = Period::parse(period) {
            return self.from <= month && month <= self.to;
        }
        if period.len() == 4
            && let Ok(year) = period.parse::<i32>()
        {
            return self.from.year() <= year && year <= self.to.year();
        }
        if let Ok(day) = period.parse::<NaiveDate>() {
            return self.covers(&Period::containing(day).to_string());
        }
        false
    }
}

/// One problem a declaration names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeclaredProblem {
    /// The rule it falls under.
    pub code: RuleCode,
    /// The person (resident ID) or record, as the rule's findings name their subject.
    pub subject: String,
    /// The month (or year, or day) as findings write it; empty for every month of the campaign.
    pub period: String,
    /// What the institution says of it.
    pub note: String,
}

impl DeclaredProblem {
    /// Whether this declared problem is the finding `key` of the declaring institution.
    pub fn names(&self, key: &FindingKey) -> bool {
        self.code == key.code
            && self.subject == key.subject
            && (self.period.is_empty() || self.period == key.period)
    }
}

/// Why a declared problem cannot be taken: the field and the reason.
pub fn check_problem(
    problem: &DeclaredProblem,
    codes: &[RuleCode],
    period: &CampaignPeriod,
) -> Result<(), (&'static str, String)> {
    if !codes.contains(&problem.code) {
        return Err((
            "code",
            format!("{} is not one of the campaign's rule codes", problem.code),
        ));
    }
    if problem.subject.trim().is_empty() {
        return Err(("subject", "names the person or record".into()));
    }
    if !problem.period.is_empty() && !period.covers(&problem.period) {
        return Err((
            "period",
            format!(
                "{} is outside the campaign's months {}..{}",
                problem.period, period.from, period.to
            ),
        ));
    }
    Ok(())
}

/// A declaration as the comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// The problems it names (empty: nothing found).
    pub problems: Vec<DeclaredProblem>,
    /// Whether it came after the deadline.
    pub late: bool,
}

/// Whether a declaration made on `day` is late for `deadline` (the deadline's day still counts).
pub fn is_late(deadline: NaiveDate, day: NaiveDate) -> bool {
    day > deadline
}

/// One institution of a campaign set beside the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The institution.
    pub institution: String,
    /// How it stands.
    pub standing: Standing,
    /// Whether its declaration came after the deadline.
    pub late: bool,
    /// Found by the hub and declared.
    pub matched: Vec<FindingKey>,
    /// Found by the hub and left out of the declaration (瞒报). Only a declaration can leave a
    /// problem out: an institution that has not declared has its problems in `shown` alone.
    pub undeclared: Vec<FindingKey>,
    /// Declared, and the data does not show it.
    pub unconfirmed: Vec<DeclaredProblem>,
    /// Every problem the data shows at the institution for the campaign's codes and months.
    pub shown: Vec<FindingKey>,
    /// Steps of the ladder a missing declaration has climbed by today.
    pub escalation_due: i64,
}

/// Sets one institution's declaration (if any) beside the open findings the hub holds for it,
/// already narrowed to the campaign's codes and months.
pub fn compare(
    institution: &str,
    declared: Option<&Declared>,
    shown: &[FindingKey],
    deadline: NaiveDate,
    today: NaiveDate,
) -> Comparison {
    let mut shown: Vec<FindingKey> = shown
        .iter()
        .filter(|key| key.institution == institution)
        .cloned()
        .collect();
    shown.sort();
    shown.dedup();
    let Some(declared) = declared else {
        let missing = today > deadline;
        return Comparison {
            institution: institution.to_owned(),
            standing: if missing {
                Standing::Missing
            } else {
                Standing::Awaiting
            },
            late: false,
            matched: Vec::new(),
            undeclared: Vec::new(),
            unconfirmed: Vec::new(),
            escalation_due: overdue_level(deadline, false, today),
            shown,
        };
    };
    let (matched, undeclared): (Vec<FindingKey>, Vec<FindingKey>) = shown
        .iter()
        .cloned()
        .partition(|key| declared.problems.iter().any(|p| p.names(key)));
    let mut unconfirmed: Vec<DeclaredProblem> = declared
        .problems
        .iter()
        .filter(|p| !shown.iter().any(|key| p.names(key)))
        .cloned()
        .collect();
    unconfirmed.sort();
    let standing = if undeclared.is_empty() && unconfirmed.is_empty() {
        Standing::Matching
    } else {
        Standing::Discrepant
    };
    Comparison {
        institution: institution.to_owned(),
        standing,
        late: declared.late,
        matched,
        undeclared,
        unconfirmed,
        shown,
        escalation_due: 0,
    }
}

/// A campaign's counts: how far it has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Institutions in scope.
    pub institutions: u64,
    /// Those that declared.
    pub declared: u64,
    /// Of those, the ones that declared after the deadline.
    pub declared_late: u64,
    /// No declaration, deadline not passed.
    pub awaiting: u64,
    /// No declaration, deadline passed.
    pub missing: u64,
    /// Declaration and data agree.
    pub matching: u64,
    /// Declaration and data disagree.
    pub discrepant: u64,
    /// Problems found and not declared (瞒报).
    pub undeclared_problems: u64,
    /// Problems declared and not shown by the data.
    pub unconfirmed_problems: u64,
}

/// The counts of a set of comparisons.
pub fn progress(comparisons: &[Comparison]) -> Progress {
    let mut p = Progress::default();
    for c in comparisons {
        p.institutions += 1;
        match c.standing {
            Standing::Awaiting => p.awaiting += 1,
            Standing::Missing => p.missing += 1,
            Standing::Matching => p.matching += 1,
            Standing::Discrepant => p.discrepant += 1,
        }
        if matches!(c.standing, Standing::Matching | Standing::Discrepant) {
            p.declared += 1;
            p.declared_late += u64::from(c.late);
        }
        p.undeclared_problems += c.undeclared.len() as u64;
        p.unconfirmed_problems += c.unconfirmed.len() as u64;
    }
    p
}

/// Compares every institution of a scope: the declarations by institution, the hub's open
/// findings (any institution; each is set beside its own), narrowed here to the campaign's codes
/// and months. In scope order.
pub fn compare_all(
    scope: &[String],
    declarations: &BTreeMap<String, Declared>,
    findings: &[FindingKey],
    codes: &[RuleCode],
    period: &CampaignPeriod,
    deadline: NaiveDate,
    today: NaiveDate,
) -> Vec<Comparison> {
    let mut by_institution: BTreeMap<&str, Vec<FindingKey>> = BTreeMap::new();
    for key in findings {
        if codes.contains(&key.code) && period.covers(&key.period) {
            by_institution
                .entry(key.institution.as_str())
                .or_default()
                .push(key.clone());
        }
    }
    scope
        .iter()
        .map(|institution| {
            compare(
                institution,
                declarations.get(institution),
                by_institution
                    .get(institution.as_str())
                    .map_or(&[][..], Vec::as_slice),
                deadline,
                today,
            )
        })
        .collect()
}

/// The title of a ledger item opened for a problem left out of a declaration: the campaign,
/// the word for what happened, and the finding's own explanation.
pub fn undeclared_item_title(campaign_title: &str, explanation_zh: &str) -> String {
    format!("专项检查「{campaign_title}」自查未报(瞒报): {explanation_zh}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "A";
    const B: &str = "B";
    const C: &str = "C";

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn p(text: &str) -> Period {
        Period::parse(text).unwrap()
    }

    fn key(code: RuleCode, institution: &str, subject: &str, period: &str) -> FindingKey {
        FindingKey {
            code,
            institution: institution.into(),
            subject: subject.into(),
            period: period.into(),
        }
    }

    fn problem(code: RuleCode, subject: &str, period: &str) -> DeclaredProblem {
        DeclaredProblem {
            code,
            subject: subject.into(),
            period: period.into(),
            note: String::new(),
        }
    }

    fn ghost_pay() -> Vec<RuleCode> {
        vec![
            RuleCode::PaidNotOnRoll,
            RuleCode::PaidAfterExit,
            RuleCode::DoublePay,
        ]
    }

    fn months() -> CampaignPeriod {
        CampaignPeriod::new(p("2024-01"), p("2024-05")).unwrap()
    }

    #[test]
    fn the_months_cover_pay_months_plan_years_entry_days_and_the_current_roll() {
        let months = months();
        assert!(months.covers("2024-01"));
        assert!(months.covers("2024-05"));
        assert!(!months.covers("2024-06"), "the month after");
        assert!(!months.covers("2023-12"), "the month before");
        assert!(months.covers("2024"));
        assert!(!months.covers("2023"));
        assert!(months.covers("2024-05-31"));
        assert!(!months.covers("2024-06-01"));
        assert!(months.covers(""), "a standing problem is in every campaign");
        assert!(!months.covers("garbage"));
        assert!(CampaignPeriod::new(p("2024-05"), p("2024-01")).is_err());
    }

    #[test]
    fn honest_hiding_and_silent_institutions_are_named_as_such() {
        let pay = ghost_pay();
        let findings = [
            key(RuleCode::PaidNotOnRoll, A, "x", "2024-03"),
            key(RuleCode::PaidNotOnRoll, B, "y", "2024-03"),
            key(RuleCode::PaidAfterExit, B, "z", "2024-04"),
            key(RuleCode::PaidNotOnRoll, C, "v", "2024-02"),
            // Outside the campaign: another rule, another month.
            key(RuleCode::OverQuota, B, "ADMINISTRATIVE", ""),
            key(RuleCode::PaidNotOnRoll, B, "w", "2024-07"),
        ];
        let mut declarations = BTreeMap::new();
        declarations.insert(
            A.to_owned(),
            Declared {
                problems: vec![problem(RuleCode::PaidNotOnRoll, "x", "2024-03")],
                late: false,
            },
        );
        declarations.insert(
            B.to_owned(),
            Declared {
                problems: vec![problem(RuleCode::PaidNotOnRoll, "y", "")],
                late: false,
            },
        );
        let scope = [A.to_owned(), B.to_owned(), C.to_owned()];
        let deadline = d("2024-06-15");
        let before = compare_all(
            &scope,
            &declarations,
            &findings,
            &pay,
            &months(),
            deadline,
            d("2024-06-15"),
        );
        assert_eq!(
            before.iter().map(|c| c.standing).collect::<Vec<_>>(),
            [Standing::Matching, Standing::Discrepant, Standing::Awaiting],
            "on the deadline's day the silent one is still awaited"
        );
        let after = compare_all(
            &scope,
            &declarations,
            &findings,
            &pay,
            &months(),
            deadline,
            d("2024-06-16"),
        );
        let [honest, hiding, silent] = &after[..] else {
            panic!("three comparisons")
        };
        assert_eq!(honest.standing, Standing::Matching);
        assert_eq!(
            honest.matched,
            [key(RuleCode::PaidNotOnRoll, A, "x", "2024-03")]
        );
        assert_eq!(hiding.standing, Standing::Discrepant);
        assert_eq!(
            hiding.undeclared,
            [key(RuleCode::PaidAfterExit, B, "z", "2024-04")],
            "the hidden problem, and nothing outside the campaign's codes and months"
        );
        assert_eq!(
            hiding.matched,
            [key(RuleCode::PaidNotOnRoll, B, "y", "2024-03")],
            "a declaration without a month names every month"
        );
        assert_eq!(silent.standing, Standing::Missing);
        assert!(
            silent.undeclared.is_empty(),
            "no declaration, nothing left out of one"
        );
        assert_eq!(silent.shown.len(), 1);
        assert_eq!(silent.escalation_due, 1);
        let counts = progress(&after);
        assert_eq!(
            counts,
            Progress {
                institutions: 3,
                declared: 2,
                declared_late: 0,
                awaiting: 0,
                missing: 1,
                matching: 1,
                discrepant: 1,
                undeclared_problems: 1,
                unconfirmed_problems: 0,
            }
        );
    }

    #[test]
    fn a_declared_problem_the_data_does_not_show_is_unconfirmed() {
        let declared = Declared {
            problems: vec![
                problem(RuleCode::DoublePay, "q", "2024-02"),
                problem(RuleCode::PaidNotOnRoll, "x", "2024-04"),
            ],
            late: true,
        };
        let shown = [key(RuleCode::PaidNotOnRoll, A, "x", "2024-03")];
        let c = compare(A, Some(&declared), &shown, d("2024-06-15"), d("2024-06-20"));
        assert_eq!(c.standing, Standing::Discrepant);
        assert!(c.late);
        assert_eq!(
            c.unconfirmed.len(),
            2,
            "another month is another problem: {c:?}"
        );
        assert_eq!(c.undeclared, shown);
        assert_eq!(
            c.escalation_due, 0,
            "a declaration, even late, stops the ladder"
        );
    }

    #[test]
    fn nothing_found_matches_only_clean_data() {
        let none = Declared {
            problems: Vec::new(),
            late: false,
        };
        let today = d("2024-06-01");
        assert_eq!(
            compare(A, Some(&none), &[], d("2024-06-15"), today).standing,
            Standing::Matching
        );
        let shown = [key(RuleCode::DoublePay, A, "x", "2024-01")];
        let c = compare(A, Some(&none), &shown, d("2024-06-15"), today);
        assert_eq!(c.standing, Standing::Discrepant);
        assert_eq!(c.undeclared, shown);
        // Another institution's finding is not this one's.
        let other = [key(RuleCode::DoublePay, B, "x", "2024-01")];
        assert_eq!(
            compare(A, Some(&none), &other, d("2024-06-15"), today).standing,
            Standing::Matching
        );
    }

    #[test]
    fn a_missing_declaration_climbs_the_ledgers_ladder() {
        let deadline = d("2024-06-15");
        let level = |today: &str| compare(C, None, &[], deadline, d(today)).escalation_due;
        assert_eq!(level("2024-06-15"), 0);
        assert_eq!(level("2024-06-16"), 1);
        assert_eq!(level("2024-06-22"), 2);
        assert_eq!(level("2024-07-15"), 3);
        assert_eq!(level("2025-01-01"), 3);
    }

    #[test]
    fn declared_problems_must_be_of_the_campaign() {
        let codes = ghost_pay();
        let months = months();
        assert!(check_problem(&problem(RuleCode::DoublePay, "x", ""), &codes, &months).is_ok());
        assert_eq!(
            check_problem(&problem(RuleCode::OverQuota, "x", ""), &codes, &months)
                .unwrap_err()
                .0,
            "code"
        );
        assert_eq!(
            check_problem(&problem(RuleCode::DoublePay, " ", ""), &codes, &months)
                .unwrap_err()
                .0,
            "subject"
        );
        assert_eq!(
            check_problem(
                &problem(RuleCode::DoublePay, "x", "2024-09"),
                &codes,
                &months
            )
            .unwrap_err()
            .0,
            "period"
        );
        assert!(is_late(d("2024-06-15"), d("2024-06-16")));
        assert!(!is_late(d("2024-06-15"), d("2024-06-15")));
    }
}
