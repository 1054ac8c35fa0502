//! Verdicts before the act (事前评估预防): would this hire, appointment or funding break a rule?
//!
//! A pre-check adds the act to the data as if it had happened and runs the same rules as a push:
//! every finding the act would raise (or worsen) is a reason. A funding restates the period's
//! funding rather than adding to it, so its reasons are every finding the funding would be evidence
//! of, whether or not an earlier record already showed one. So a pre-check cannot disagree with
//! what the push itself would find. HIGH and CRITICAL findings deny; MEDIUM and LOW warn.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::findings::{
    Entry, Evidence, Finding, FindingKey, PersonSpell, PersonTerm, Pushed, RecordRef, RuleCode,
    RulesConfig, Scope, Severity, Snapshot,
};
use super::ids::resident_id_with_check;
use super::roll::{LeaderTerm, Spell};
use super::rules::Reserve;
use super::{
    Funding, FundingForm, HiringChannel, LeaderLevel, LeaderPosition, Period, PersonStatus,
    QuotaCategory, Rank, ResidentId, Uscc, rules,
};

/// A pre-check's answer, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Nothing stands in the way.
    Allow,
    /// Allowed, but it would raise a warning.
    Warn,
    /// It would break a hard rule.
    Deny,
}

/// One reason behind a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The rule the act would break; `None` for an informative reason.
    pub code: Option<RuleCode>,
    /// What this reason alone makes the verdict.
    pub verdict: Verdict,
    /// Plain explanation.
    pub message: String,
}

/// A hire or appointment to check.
#[derive(Debug, Clone)]
pub struct HireQuestion {
    /// Institution entered.
    pub institution: Uscc,
    /// Category occupied.
    pub category: QuotaCategory,
    /// Channel of entry.
    pub channel: Option<HiringChannel>,
    /// Approval cited, normalised.
    pub approval_number: Option<String>,
    /// The person, when known.
    pub resident_id: Option<ResidentId>,
    /// The leader post, for an appointment.
    pub post: Option<(LeaderLevel, LeaderPosition)>,
    /// Rank the person would hold.
    pub rank: Option<Rank>,
    /// Date of the entry.
    pub date: NaiveDate,
}

/// The answer to a hire check, with the numbers behind it.
#[derive(Debug, Clone, Default)]
pub struct HireAnswer {
    /// The worst of the reasons' verdicts (ALLOW when there are none).
    pub verdict: Option<Verdict>,
    /// Every reason.
    pub reasons: Vec<Reason>,
    /// Quota in force.
    pub approved_quota: u32,
    /// People on the roll in the category.
    pub active: u32,
    /// The year's plan.
    pub plan_approved: u32,
    /// Entries this year.
    pub plan_used: u32,
    /// Entries of the cited approval.
    pub approval_entries: u32,
    /// Entries already using it.
    pub approval_used: u32,
    /// Posts approved (appointment).
    pub posts_approved: u32,
    /// Posts occupied (appointment).
    pub posts_occupied: u32,
    /// Institutions where the person is already on the roll.
    pub other_institutions: Vec<String>,
    /// Places the year's plan keeps for policy placement.
    pub reserve_kept: u32,
    /// Placements still to come before the entry.
    pub reserve_needed: u32,
    /// Places still needed that the other channels would have taken with the entry.
    pub reserve_eaten: u32,
}

/// A funding to check.
#[derive(Debug, Clone)]
pub struct FundingQuestion {
    /// Institution funded.
    pub institution: Uscc,
    /// Category funded.
    pub category: QuotaCategory,
    /// Period.
    pub period: Period,
    /// Headcount requested.
    pub headcount: u32,
    /// Amount in fen.
    pub amount_fen: i64,
}

/// The answer to a funding check.
#[derive(Debug, Clone, Default)]
pub struct FundingAnswer {
    /// The worst verdict.
    pub verdict: Option<Verdict>,
    /// Every reason.
    pub reasons: Vec<Reason>,
    /// Quota in force on the period's last day.
    pub approved_quota: u32,
    /// People on the roll in the category on the period's last day.
    pub active: u32,
    /// Headcount already funded for the period.
    pub already_funded: u32,
    /// min(quota, active).
    pub max_fundable: u32,
    /// The institution's funding form.
    pub funding_form: Option<FundingForm>,
}

/// The id the act takes in the hypothetical data.
pub const HYPOTHETICAL: &str = "pre-check";

fn verdict_of(severity: Severity) -> Verdict {
    match severity {
        Severity::Critical | Severity::High => Verdict::Deny,
        Severity::Medium | Severity::Low => Verdict::Warn,
        Severity::Info => Verdict::Allow,
    }
}

/// Findings the act brings: new keys, or the same key with a larger measure.
fn brought(before: &[Finding], after: Vec<Finding>) -> Vec<Finding> {
    let before: BTreeMap<&FindingKey, &Finding> = before.iter().map(|f| (&f.key, f)).collect();
    after
        .into_iter()
        .filter(|f| {
            before
                .get(&f.key)
                .is_none_or(|old| f.actual > old.actual || f.evidence.len() > old.evidence.len())
        })
        .collect()
}

fn reasons_from(findings: Vec<Finding>) -> Vec<Reason> {
    findings
        .into_iter()
        .map(|f| Reason {
            code: Some(f.key.code),
            verdict: verdict_of(f.severity),
            message: format!("{} / {}", f.explanation_zh, f.explanation_en),
        })
        .collect()
}

fn active_in(
    snapshot: &Snapshot,
    institution: &Uscc,
    category: QuotaCategory,
    on: NaiveDate,
) -> u32 {
    let count = snapshot
        .spells
        .iter()
        .filter(|s| {
            s.spell.institution == *institution
                && s.spell.category == category
                && s.spell.status.is_on_roll()
                && s.spell.covers(on)
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

fn quota_in_force(
    snapshot: &Snapshot,
    institution: &Uscc,
    category: QuotaCategory,
    on: NaiveDate,
) -> u32 {
    snapshot
        .quotas
        .iter()
        .filter(|q| {
            q.record.institution == *institution
                && q.record.category == category
                && q.record.effective_from <= on
                && q.record.effective_to.is_none_or(|to| on < to)
        })
        .max_by(|a, b| (a.accepted_at, &a.id).cmp(&(b.accepted_at, &b.id)))
        .map_or(0, |q| q.record.approved_count)
}

/// Checks a hire or appointment against `snapshot` (complete data for the institution and the
/// person, as the store loads it for their scope).
pub fn check_hire(
    snapshot: &Snapshot,
    question: &HireQuestion,
    config: &RulesConfig,
) -> HireAnswer {
    let date = question.date;
    let person = question.resident_id.clone().unwrap_or_else(|| {
        // Someone nobody has heard of: a syntactically valid ID in no real division.
        resident_id_with_check("99999919000101000").expect("a valid placeholder")
    });
    let scope = Scope {
        everything: false,
        institutions: [question.institution.to_string()].into_iter().collect(),
        residents: [person.to_string()].into_iter().collect(),
    };
    let before = rules::check(snapshot, &scope, date, config);

    let mut after = snapshot.clone();
    let record = RecordRef(HYPOTHETICAL.to_owned());
    let rank = question.rank.unwrap_or(Rank::Clerk);
    after.spells.push(PersonSpell {
        resident_id: person.clone(),
        spell: Spell {
            institution: question.institution.clone(),
            category: question.category,
            rank,
            status: PersonStatus::Active,
            valid_from: date,
            valid_to: None,
            approval_number: question.approval_number.clone(),
            seconded_to: None,
        },
    });
    // An appointment of someone already on this roll is not an entry.
    let already_here = snapshot.spells.iter().any(|s| {
        s.resident_id == person
            && s.spell.institution == question.institution
            && s.spell.status.is_on_roll()
            && s.spell.covers(date)
    });
    if already_here {
        after.spells.pop();
    } else {
        after.entries.push(Entry {
            resident_id: person.clone(),
            institution: question.institution.clone(),
            category: question.category,
            channel: question.channel,
            date,
            approval_number: question.approval_number.clone(),
            arrival: i64::MAX,
            record: record.clone(),
        });
    }
    if let Some((level, position)) = question.post {
        after.terms.push(PersonTerm {
            resident_id: person.clone(),
            term: LeaderTerm {
                institution: question.institution.clone(),
                level,
                position,
                rank,
                valid_from: date,
                valid_to: None,
            },
            record,
        });
    }
    let after = rules::check(&after, &scope, date, config);

    let approved_quota = quota_in_force(snapshot, &question.institution, question.category, date);
    let active = active_in(snapshot, &question.institution, question.category, date);
    let year = chrono::Datelike::year(&date);
    let mut plans: BTreeMap<HiringChannel, &Pushed<crate::domain::StaffingPlan>> = BTreeMap::new();
    for plan in snapshot.plans.iter().filter(|p| {
        p.record.institution == question.institution
            && p.record.year == year
            && p.record.category == question.category
    }) {
        let entry = plans.entry(plan.record.channel).or_insert(plan);
        if (plan.accepted_at, &plan.id) > (entry.accepted_at, &entry.id) {
            *entry = plan;
        }
    }
    let plan_approved: u32 = plans.values().map(|p| p.record.approved_count).sum();
    let of_year: Vec<&Entry> = snapshot
        .entries
        .iter()
        .filter(|e| {
            e.institution == question.institution
                && e.category == question.category
                && chrono::Datelike::year(&e.date) == year
        })
        .collect();
    let plan_used = of_year.len();
    let placed = of_year.iter().filter(|e| rules::is_placement(e)).count();
    let reserve_of = |taken: usize, placed: usize| {
        Reserve::of(
            plans
                .values()
                .map(|p| (p.record.channel, p.record.approved_count)),
            rules::count(taken),
            rules::count(placed),
        )
    };
    let entering = usize::from(!already_here);
    let placing =
        usize::from(!already_here && question.channel == Some(HiringChannel::PolicyPlacement));
    let reserve = (
        reserve_of(plan_used, placed),
        reserve_of(plan_used + entering, placed + placing),
    );
    let approval = question.approval_number.as_ref().and_then(|number| {
        snapshot.approvals.iter().find(|a| {
            a.record.approval_number == *number
                && a.record.institution == question.institution
                && a.record.category == question.category
        })
    });
    let approval_used = approval.map_or(0, |a| {
        snapshot
            .entries
            .iter()
            .filter(|e| e.approval_number.as_ref() == Some(&a.record.approval_number))
            .count()
    });
    let (posts_approved, posts_occupied) = match question.post {
        Some((level, position)) => {
            let approved = snapshot
                .leader_posts
                .iter()
                .filter(|p| {
                    p.record.institution == question.institution
                        && p.record.level == level
                        && p.record.position == position
                        && p.record.effective_from <= date
                        && p.record.effective_to.is_none_or(|to| date < to)
                })
                .max_by(|a, b| (a.accepted_at, &a.id).cmp(&(b.accepted_at, &b.id)))
                .map_or(0, |p| p.record.approved_count);
            let occupied = snapshot
                .terms
                .iter()
                .filter(|t| {
                    t.term.institution == question.institution
                        && t.term.level == level
                        && t.term.position == position
                        && t.term.valid_from <= date
                        && t.term.valid_to.is_none_or(|to| date < to)
                })
                .count();
            (approved, u32::try_from(occupied).unwrap_or(u32::MAX))
        }
        None => (0, 0),
    };
    let other_institutions: Vec<String> = {
        let mut others: Vec<String> = snapshot
            .spells
            .iter()
            .filter(|s| {
                s.resident_id == person
                    && s.spell.status.is_on_roll()
                    && s.spell.covers(date)
                    && s.spell.institution != question.institution
            })
            .map(|s| s.spell.institution.to_string())
            .collect();
        others.sort();
        others.dedup();
        others
    };
    hire_answer(
        &before,
        after,
        HireNumbers {
            approved_quota,
            active,
            plan_approved,
            plan_used: u32::try_from(plan_used).unwrap_or(u32::MAX),
            approval_entries: approval.map_or(0, |a| a.record.approved_entries),
            approval_used: u32::try_from(approval_used).unwrap_or(u32::MAX),
            posts_approved,
            posts_occupied,
            other_institutions,
            reserve,
        },
    )
}

/// The numbers a hire's answer reports beside its reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HireNumbers {
    /// Quota in force.
    pub approved_quota: u32,
    /// People on the roll in the category.
    pub active: u32,
    /// The year's plan.
    pub plan_approved: u32,
    /// Entries this year.
    pub plan_used: u32,
    /// Entries of the cited approval.
    pub approval_entries: u32,
    /// Entries already using it.
    pub approval_used: u32,
    /// Posts approved (appointment).
    pub posts_approved: u32,
    /// Posts occupied (appointment).
    pub posts_occupied: u32,
    /// Institutions where the person is already on the roll.
    pub other_institutions: Vec<String>,
    /// The year's reserve before the entry, and with it.
    pub reserve: (Reserve, Reserve),
}

/// A hire's answer: every finding the act brings (a new key, or the same key with a larger
/// measure) is a reason, and the numbers. `before` and `after` are the findings of the keys the
/// act can move, without and with it, however they were decided.
pub fn hire_answer(before: &[Finding], after: Vec<Finding>, numbers: HireNumbers) -> HireAnswer {
    let mut reasons = reasons_from(brought(before, after));
    let HireNumbers {
        approved_quota,
        active,
        ..
    } = numbers;
    reasons.push(Reason {
        code: None,
        verdict: Verdict::Allow,
        message: format!(
            "编制 {approved_quota}，实有 {active}，空编 {} / quota {approved_quota}, on the roll {active}, vacancy {}",
            i64::from(approved_quota) - i64::from(active),
            i64::from(approved_quota) - i64::from(active)
        ),
    });
    let verdict = reasons.iter().map(|r| r.verdict).max();
    HireAnswer {
        verdict,
        reasons,
        approved_quota,
        active,
        plan_approved: numbers.plan_approved,
        plan_used: numbers.plan_used,
        approval_entries: numbers.approval_entries,
        approval_used: numbers.approval_used,
        posts_approved: numbers.posts_approved,
        posts_occupied: numbers.posts_occupied,
        other_institutions: numbers.other_institutions,
        reserve_kept: small(numbers.reserve.0.reserve),
        reserve_needed: small(numbers.reserve.0.needed()),
        reserve_eaten: small(numbers.reserve.1.eaten()),
    }
}

fn small(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Checks a funding against `snapshot` (complete data for the institution).
pub fn verify_funding(
    snapshot: &Snapshot,
    question: &FundingQuestion,
    config: &RulesConfig,
) -> FundingAnswer {
    let last_day = question.period.last_day();
    let scope = Scope {
        everything: false,
        institutions: [question.institution.to_string()].into_iter().collect(),
        residents: Default::default(),
    };
    // A funding record restates the period's funding (the latest one counts), so the verdict is
    // what the funding would make true, whatever was recorded before: every finding it would be
    // evidence of, not only those it would add to the findings already open.
    let mut after = snapshot.clone();
    after.fundings.push(hypothetical_funding(question));
    let after = rules::check(&after, &scope, last_day, config);
    let approved_quota =
        quota_in_force(snapshot, &question.institution, question.category, last_day);
    let active = active_in(snapshot, &question.institution, question.category, last_day);
    let already_funded = snapshot
        .fundings
        .iter()
        .filter(|f| {
            f.record.institution == question.institution
                && f.record.category == question.category
                && f.record.period == question.period
        })
        .max_by(|a, b| (a.accepted_at, &a.id).cmp(&(b.accepted_at, &b.id)))
        .map_or(0, |f| f.record.funded_headcount);
    let funding_form = snapshot
        .institutions
        .iter()
        .find(|f| f.uscc == question.institution)
        .and_then(|f| f.funding_form);
    funding_answer(
        after,
        FundingNumbers {
            approved_quota,
            active,
            already_funded,
            funding_form,
        },
    )
}

/// The funding a pre-check adds: restating the period, pushed after everything stored.
pub fn hypothetical_funding(question: &FundingQuestion) -> Pushed<Funding> {
    Pushed {
        id: RecordRef(HYPOTHETICAL.to_owned()),
        record: Funding {
            institution: question.institution.clone(),
            category: question.category,
            period: question.period,
            funded_headcount: question.headcount,
            amount_fen: question.amount_fen,
        },
        accepted_at: i64::MAX,
    }
}

/// The numbers a funding's answer reports beside its reasons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FundingNumbers {
    /// Quota in force on the period's last day.
    pub approved_quota: u32,
    /// People on the roll in the category on the period's last day.
    pub active: u32,
    /// Headcount already funded for the period.
    pub already_funded: u32,
    /// The institution's funding form.
    pub funding_form: Option<FundingForm>,
}

/// A funding's answer: every finding (of those `after`, decided with the funding added) that the
/// funding would be evidence of is a reason, and the numbers.
pub fn funding_answer(after: Vec<Finding>, numbers: FundingNumbers) -> FundingAnswer {
    let cited = Evidence::record("funding", &RecordRef(HYPOTHETICAL.to_owned()));
    let mut reasons: Vec<Reason> = reasons_from(
        after
            .into_iter()
            .filter(|f| f.evidence.contains(&cited))
            .collect(),
    );
    let FundingNumbers {
        approved_quota,
        active,
        already_funded,
        funding_form,
    } = numbers;
    let max_fundable = approved_quota.min(active);
    reasons.push(Reason {
        code: None,
        verdict: Verdict::Allow,
        message: format!(
            "编制 {approved_quota}，实有 {active}，最多可拨 {max_fundable} 人 / quota {approved_quota}, on the roll {active}, at most {max_fundable} may be funded"
        ),
    });
    FundingAnswer {
        verdict: reasons.iter().map(|r| r.verdict).max(),
        reasons,
        approved_quota,
        active,
        already_funded,
        max_fundable,
        funding_form,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Grade, InstitutionKind, InstitutionStatus, Jurisdiction, Quota};

    fn date(raw: &str) -> NaiveDate {
        raw.parse().unwrap()
    }

    /// One public institution of `form` with a quota of 10 and 9 people on the roll.
    fn nine_of_ten(form: FundingForm) -> (Snapshot, Uscc) {
        let unit = Uscc::with_check_character("12140100MB0000001").unwrap();
        let mut snapshot = Snapshot::default();
        snapshot
            .institutions
            .push(super::super::findings::InstitutionFacts {
                uscc: unit.clone(),
                jurisdiction: Jurisdiction::parse("140100").unwrap(),
                kind: InstitutionKind::PublicInstitution,
                grade: Grade::DivisionPrincipal,
                funding_form: Some(form),
                status: InstitutionStatus::Active,
                status_since: None,
                political_legal: false,
                record: RecordRef("office/org".into()),
            });
        snapshot.quotas.push(Pushed {
            id: RecordRef("office/q".into()),
            record: Quota {
                institution: unit.clone(),
                category: QuotaCategory::PublicInstitution,
                approved_count: 10,
                effective_from: date("2020-01-01"),
                effective_to: None,
                approval_document: "x".into(),
            },
            accepted_at: 1,
        });
        for n in 0..9 {
            snapshot.spells.push(PersonSpell {
                resident_id: resident_id_with_check(&format!("14010519800101{n:03}")).unwrap(),
                spell: Spell {
                    institution: unit.clone(),
                    category: QuotaCategory::PublicInstitution,
                    rank: Rank::Clerk,
                    status: PersonStatus::Active,
                    valid_from: date("2020-01-01"),
                    valid_to: None,
                    approval_number: None,
                    seconded_to: None,
                },
            });
        }
        (snapshot, unit)
    }

    fn funded(snapshot: &mut Snapshot, unit: &Uscc, headcount: u32) {
        snapshot.fundings.push(Pushed {
            id: RecordRef(format!("finance/f{}", snapshot.fundings.len())),
            record: Funding {
                institution: unit.clone(),
                category: QuotaCategory::PublicInstitution,
                period: Period::parse("2024-03").unwrap(),
                funded_headcount: headcount,
                amount_fen: i64::from(headcount) * 100,
            },
            accepted_at: 2 + i64::try_from(snapshot.fundings.len()).unwrap(),
        });
    }

    fn verdict(snapshot: &Snapshot, unit: &Uscc, headcount: u32) -> Option<Verdict> {
        let question = FundingQuestion {
            institution: unit.clone(),
            category: QuotaCategory::PublicInstitution,
            period: Period::parse("2024-03").unwrap(),
            headcount,
            amount_fen: i64::from(headcount) * 100,
        };
        verify_funding(snapshot, &question, &RulesConfig::default()).verdict
    }

    #[test]
    fn a_funding_verdict_does_not_depend_on_earlier_funding() {
        let (mut snapshot, unit) = nine_of_ten(FundingForm::Full);
        for earlier in [None, Some(9), Some(12), Some(15)] {
            if let Some(headcount) = earlier {
                funded(&mut snapshot, &unit, headcount);
            }
            for (asked, expected) in [
                (12, Verdict::Deny),
                (10, Verdict::Deny),
                (9, Verdict::Allow),
            ] {
                assert_eq!(
                    verdict(&snapshot, &unit, asked),
                    Some(expected),
                    "{asked} after {earlier:?}"
                );
            }
        }

        let (mut snapshot, unit) = nine_of_ten(FundingForm::SelfFunded);
        for _ in 0..2 {
            assert_eq!(verdict(&snapshot, &unit, 1), Some(Verdict::Deny));
            assert_eq!(verdict(&snapshot, &unit, 0), Some(Verdict::Allow));
            funded(&mut snapshot, &unit, 1);
        }
    }
}
