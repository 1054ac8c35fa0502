//! The full re-check's decisions (issue 14, step 4): findings from the numbers and the few rows
//! that set-based queries return for a chunk of institutions, instead of from a [`Snapshot`] of
//! everything ever at them. The store counts (people on a roll on a date, leaders on a post,
//! entries of a year) and finds the candidate keys in SQL; what turns them into findings is here,
//! and is the same code that decides a dirty key:
//!
//! | rules | decided by | from |
//! |---|---|---|
//! | OVER_QUOTA, QUOTA_FULL | [`headcount`](super::aggregates::decide_headcount) | the count on the check date, the unit's quotas, the people of the units that fire |
//! | OVER_LEADER_POSTS, LEADER_ABOVE_GRADE | [`leader_posts`](super::aggregates::decide_leader_posts), [`leader_grade`](super::aggregates::decide_leader_grade) | the terms in force on the check date, the posts, the registry entry |
//! | FUNDED_OVER_QUOTA, SELF_FUNDED_BUDGET_PAY | [`funding`](super::aggregates::decide_funding) | the count on the period's last day, the quotas, the candidate keys' fundings |
//! | PAID_NOT_ON_ROLL, PAID_AFTER_EXIT, PAY_UNIT_MISMATCH, DOUBLE_PAY | [`pay`](super::aggregates::decide_pay) | the candidate (person, period)'s lines and the person's spells |
//! | MIXED_CATEGORY, DUPLICATE_ENROLLMENT, UNREGISTERED_INSTITUTION, HIRE_WITHOUT_APPROVAL, OVER_PLAN, RESERVE_SHORTFALL | [`rows`]: the oracle itself ([`rules::check`]) | the rows of the candidate keys only |
//!
//! The last group has no number to decide from (placements on a date, an allocation of approvals
//! in order, receipts of an unregistered institution) or, for OVER_PLAN and RESERVE_SHORTFALL
//! (candidates by [`Reserve`](super::rules::Reserve) on the year's counts), only a few candidates;
//! running the oracle over the candidates' rows keeps one wording and one decision for them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use super::aggregates::{
    Aggregates, Fundings, Headcount, Leaders, Pay, Posts, Quotas, decide_funding, decide_headcount,
    decide_leader_grade, decide_leader_posts, decide_pay,
};
use super::findings::{
    Finding, FindingKey, InstitutionFacts, PersonTerm, Pushed, RuleCode, RulesConfig, Scope,
    Snapshot,
};
use super::roll::Spell;
use super::rules;
use super::{
    Funding, LeaderLevel, LeaderPosition, PayrollLine, Period, QuotaCategory, ResidentId, Uscc,
};

/// A roll: (institution, category).
pub type Unit = (Uscc, QuotaCategory);

/// OVER_QUOTA and QUOTA_FULL of every unit in `units` (those with people on the roll on `as_of`
/// and those with a quota), from `active` (people per unit on `as_of`), the units' `quotas` and,
/// for the evidence, `people` on the roll of the units that fire (none yet: the store asks
/// [`firing_units`] first).
pub fn headcount(
    units: &BTreeSet<Unit>,
    active: &BTreeMap<Unit, i64>,
    quotas: &Quotas,
    people: &BTreeMap<Unit, BTreeSet<ResidentId>>,
    config: &RulesConfig,
    as_of: NaiveDate,
) -> Vec<Finding> {
    let counts = Headcount::from_counts(active.iter().map(|(unit, n)| (unit.clone(), as_of, *n)));
    let nobody = BTreeSet::new();
    units
        .iter()
        .flat_map(|(uscc, category)| {
            let people = people.get(&(uscc.clone(), *category)).unwrap_or(&nobody);
            decide_headcount(uscc, *category, &counts, quotas, people, config, as_of)
        })
        .collect()
}

/// The units whose OVER_QUOTA or QUOTA_FULL fires: whose people the evidence needs.
pub fn firing_units(findings: &[Finding]) -> BTreeSet<(String, String)> {
    findings
        .iter()
        .map(|f| (f.key.institution.clone(), f.key.subject.clone()))
        .collect()
}

/// OVER_LEADER_POSTS and LEADER_ABOVE_GRADE from the leader `terms` in force on `as_of` at the
/// chunk's institutions, the posts approved there and the registry entries.
pub fn leaders(
    terms: &[PersonTerm],
    posts: &Posts,
    facts: &HashMap<String, InstitutionFacts>,
    config: &RulesConfig,
    as_of: NaiveDate,
) -> Vec<Finding> {
    type Post = (Uscc, LeaderLevel, LeaderPosition);
    let mut by_post: BTreeMap<Post, Vec<&PersonTerm>> = BTreeMap::new();
    let mut by_leader: BTreeMap<(Uscc, ResidentId), Vec<PersonTerm>> = BTreeMap::new();
    for term in terms {
        let t = &term.term;
        by_post
            .entry((t.institution.clone(), t.level, t.position))
            .or_default()
            .push(term);
        by_leader
            .entry((t.institution.clone(), term.resident_id.clone()))
            .or_default()
            .push(term.clone());
    }
    // The oracle counts the distinct people with a term on the post.
    let counts = Leaders::from_counts(by_post.iter().map(|(post, terms)| {
        let people: BTreeSet<&ResidentId> = terms.iter().map(|t| &t.resident_id).collect();
        (post.clone(), as_of, rules_count(people.len()))
    }));
    let mut found: Vec<Finding> = by_post
        .iter()
        .filter_map(|(post, terms)| decide_leader_posts(post, &counts, posts, terms, as_of))
        .collect();
    found.extend(by_leader.iter().filter_map(|((uscc, resident), terms)| {
        decide_leader_grade(
            uscc,
            resident,
            terms,
            facts.get(uscc.as_str()),
            config,
            as_of,
        )
    }));
    found
}

fn rules_count(n: usize) -> i64 {
    i64::try_from(n).expect("a count of people fits in i64")
}

/// A funding key the store found may fire, with the people on its roll on the period's last day.
pub type FundedKey = ((Uscc, QuotaCategory, Period), i64);

/// FUNDED_OVER_QUOTA and SELF_FUNDED_BUDGET_PAY of the candidate keys, from every funding of those
/// keys (the latest is judged), the people on the roll on each period's last day, the quotas and
/// the registry entries.
pub fn funding(
    candidates: &[FundedKey],
    fundings: &[Pushed<Funding>],
    quotas: Quotas,
    facts: &HashMap<String, InstitutionFacts>,
) -> Vec<Finding> {
    let mut latest = Fundings::default();
    fundings.iter().for_each(|f| latest.restate(f));
    let aggregates = Aggregates {
        headcount: Headcount::from_counts(candidates.iter().map(
            |((uscc, category, period), active)| {
                ((uscc.clone(), *category), period.last_day(), *active)
            },
        )),
        quotas,
        fundings: latest,
        ..Aggregates::default()
    };
    candidates
        .iter()
        .flat_map(|((uscc, category, period), _)| {
            decide_funding(
                (uscc, *category, *period),
                &aggregates,
                facts.get(uscc.as_str()),
            )
        })
        .collect()
}

/// The pay rules of the candidate (person, period) keys, from every live line of those keys and
/// all of each person's spells.
pub fn pay(
    candidates: &BTreeSet<(ResidentId, Period)>,
    lines: &[Pushed<PayrollLine>],
    spells: &BTreeMap<ResidentId, Vec<Spell>>,
) -> Vec<Finding> {
    let mut pay = Pay::default();
    for line in lines {
        let l = &line.record;
        if candidates.contains(&(l.resident_id.clone(), l.period)) {
            pay.add_line(line);
        }
    }
    let none = Vec::new();
    candidates
        .iter()
        .flat_map(|(resident, period)| {
            let theirs = spells.get(resident).unwrap_or(&none);
            decide_pay(resident, *period, &pay, theirs)
        })
        .collect()
}

/// The findings of `codes` that the oracle finds in `rows` (the candidates' rows a set-based query
/// named), as of `as_of`, kept where `wanted` says (other keys of such a partial snapshot are
/// not decided by it).
pub fn rows(
    rows: &Snapshot,
    codes: &[RuleCode],
    as_of: NaiveDate,
    config: &RulesConfig,
    wanted: impl Fn(&FindingKey) -> bool,
) -> Vec<Finding> {
    let everything = Scope {
        everything: true,
        ..Scope::default()
    };
    rules::check(rows, &everything, as_of, config)
        .into_iter()
        .filter(|f| codes.contains(&f.key.code) && wanted(&f.key))
        .collect()
}
