//! The reconciliation rules: plain functions over a [`Snapshot`] that say where the departments'
//! data disagree with the approved quotas. `docs/RULES.md` fixes what every rule code means; the
//! same snapshot gives the same findings on every replica, at a push and in a full re-check.
//!
//! The snapshot is indexed once per call (a province is about a million people): hash maps for
//! look-ups, sorted vectors and ordered maps for the groups that produce findings, so that the
//! result never depends on hash order.

use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, NaiveDate};

use super::explain::{self, PayProblem, category_zh, join, kind_zh};
use super::findings::{
    Entry, Evidence, Finding, FindingKey, InstitutionFacts, PersonTerm, Pushed, RecordRef,
    RuleCode, RulesConfig, Scope, Snapshot, sampled,
};
use super::roll::Spell;
use super::{
    Coded, Funding, FundingForm, HiringApproval, HiringChannel, InstitutionKind, InstitutionStatus,
    Jurisdiction, LeaderLevel, LeaderPosition, LeaderPost, PayrollLine, Period, PersonStatus,
    Quota, QuotaCategory, Rank, ResidentId, StaffingPlan, Uscc,
};

/// Runs every rule over the snapshot and returns the findings the scope covers, sorted by key.
///
/// Roll-based rules read the state on `as_of`; entry, plan, pay and funding rules read every
/// record in the snapshot whatever its date. REGIONAL_BALANCE is a report, see
/// [`regional_balance`]; it is never a finding.
pub fn check(
    snapshot: &Snapshot,
    scope: &Scope,
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Vec<Finding> {
    decide(snapshot, scope, as_of, config, true)
}

/// The rules of counts: decided from the kept counts ([`aggregates`](super::aggregates)) where a
/// check reads rows by key, not from a snapshot of those rows.
pub const COUNTED: [RuleCode; 4] = [
    RuleCode::OverQuota,
    RuleCode::QuotaFull,
    RuleCode::OverPlan,
    RuleCode::ReserveShortfall,
];

/// [`check`] without the rules of [`COUNTED`]: what a snapshot of a few rows by key decides. It
/// holds no quotas or plans, so those rules would find every unit and year in it over them, and
/// render and drop a finding for each (a bulk push's thousands of people, a pre-check's one).
pub fn check_rows(
    snapshot: &Snapshot,
    scope: &Scope,
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Vec<Finding> {
    decide(snapshot, scope, as_of, config, false)
}

fn decide(
    snapshot: &Snapshot,
    scope: &Scope,
    as_of: NaiveDate,
    config: &RulesConfig,
    counted: bool,
) -> Vec<Finding> {
    let index = Index::new(snapshot);
    let mut found = Findings::default();
    if counted {
        quota_rules(&index, as_of, config, &mut found);
    }
    leader_rules(&index, as_of, config, &mut found);
    roll_rules(&index, as_of, &mut found);
    hires_without_approval(&index, &mut found);
    if counted {
        over_plan(&index, &mut found);
    }
    payroll_rules(&index, &mut found);
    funding_rules(&index, &mut found);
    found
        .0
        .into_values()
        .filter(|finding| scope.covers(&finding.key))
        .collect()
}

/// One row of the REGIONAL_BALANCE report (总量余缺): per jurisdiction and category, the quota in
/// force, the people on the rolls, and what is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionalBalance {
    /// The jurisdiction the institutions sit in (as the registry places them).
    pub jurisdiction: Jurisdiction,
    /// The quota category.
    pub category: QuotaCategory,
    /// Total approved count of the quotas in force.
    pub approved: i64,
    /// Total people active in the category.
    pub active: i64,
    /// `approved − active`: spare places, or a shortfall when negative.
    pub surplus: i64,
}

/// REGIONAL_BALANCE on `as_of`, sorted by (jurisdiction, category). Only institutions the
/// registry places count (the others have no known jurisdiction; UNREGISTERED_INSTITUTION reports
/// them), and only categories with a quota in force or someone active.
pub fn regional_balance(snapshot: &Snapshot, as_of: NaiveDate) -> Vec<RegionalBalance> {
    let index = Index::new(snapshot);
    balance_totals(index.units().into_iter().filter_map(|(uscc, category)| {
        let facts = index.facts(uscc)?;
        let quota = index.quota_in_force(uscc, category, as_of);
        let active = count(index.active_at(uscc, category, as_of).len());
        Some(BalanceUnit {
            jurisdiction: facts.jurisdiction.clone(),
            category,
            approved: quota.map(|q| i64::from(q.record.approved_count)),
            active,
        })
    }))
}

/// One (institution, category) of REGIONAL_BALANCE, or several of one division already summed:
/// where the registry places the institution, the approved count of the quota in force (if one
/// is), and the people active on its roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceUnit {
    pub jurisdiction: Jurisdiction,
    pub category: QuotaCategory,
    pub approved: Option<i64>,
    pub active: i64,
}

/// REGIONAL_BALANCE's rows from its units, however they were counted (a snapshot, or the store's
/// kept counts): units with neither a quota in force nor anyone active do not count.
pub fn balance_totals(units: impl IntoIterator<Item = BalanceUnit>) -> Vec<RegionalBalance> {
    let mut totals: BTreeMap<(Jurisdiction, QuotaCategory), (i64, i64)> = BTreeMap::new();
    for unit in units {
        if unit.approved.is_none() && unit.active == 0 {
            continue;
        }
        let total = totals
            .entry((unit.jurisdiction, unit.category))
            .or_default();
        total.0 += unit.approved.unwrap_or(0);
        total.1 += unit.active;
    }
    totals
        .into_iter()
        .map(
            |((jurisdiction, category), (approved, active))| RegionalBalance {
                jurisdiction,
                category,
                approved,
                active,
                surplus: approved - active,
            },
        )
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The index of a snapshot.

/// The snapshot, looked up by what the rules ask for.
struct Index<'a> {
    snapshot: &'a Snapshot,
    institutions: HashMap<&'a Uscc, &'a InstitutionFacts>,
    /// Quotas per (institution, category), latest pushed first.
    quotas: HashMap<(&'a Uscc, QuotaCategory), Vec<&'a Pushed<Quota>>>,
    /// Leader posts per (institution, level, position), latest pushed first.
    posts: HashMap<(&'a Uscc, LeaderLevel, LeaderPosition), Vec<&'a Pushed<LeaderPost>>>,
    /// On-roll spells per (institution, category).
    on_roll: HashMap<(&'a Uscc, QuotaCategory), Vec<(&'a ResidentId, &'a Spell)>>,
}

impl<'a> Index<'a> {
    fn new(snapshot: &'a Snapshot) -> Index<'a> {
        let mut institutions = HashMap::new();
        for facts in &snapshot.institutions {
            institutions.entry(&facts.uscc).or_insert(facts);
        }
        let mut quotas: HashMap<_, Vec<_>> = HashMap::new();
        for quota in &snapshot.quotas {
            let key = (&quota.record.institution, quota.record.category);
            quotas.entry(key).or_default().push(quota);
        }
        quotas.values_mut().for_each(|list| latest_first(list));
        let mut posts: HashMap<_, Vec<_>> = HashMap::new();
        for post in &snapshot.leader_posts {
            let r = &post.record;
            posts
                .entry((&r.institution, r.level, r.position))
                .or_default()
                .push(post);
        }
        posts.values_mut().for_each(|list| latest_first(list));
        let mut on_roll: HashMap<_, Vec<_>> = HashMap::new();
        for person in &snapshot.spells {
            let spell = &person.spell;
            if spell.status.is_on_roll() {
                on_roll
                    .entry((&spell.institution, spell.category))
                    .or_default()
                    .push((&person.resident_id, spell));
            }
        }
        Index {
            snapshot,
            institutions,
            quotas,
            posts,
            on_roll,
        }
    }

    fn facts(&self, uscc: &Uscc) -> Option<&'a InstitutionFacts> {
        self.institutions.get(uscc).copied()
    }

    /// Every (institution, category) with a quota or someone ever on the roll, in order.
    fn units(&self) -> BTreeSet<(&'a Uscc, QuotaCategory)> {
        self.quotas
            .keys()
            .chain(self.on_roll.keys())
            .copied()
            .collect()
    }

    /// The quota in force on `on`: the latest pushed of those whose range covers it.
    fn quota_in_force(
        &self,
        uscc: &Uscc,
        category: QuotaCategory,
        on: NaiveDate,
    ) -> Option<&'a Pushed<Quota>> {
        self.quotas.get(&(uscc, category)).and_then(|list| {
            list.iter()
                .copied()
                .find(|q| in_force(q.record.effective_from, q.record.effective_to, on))
        })
    }

    /// The leader posts in force on `on`, as for quotas.
    fn post_in_force(
        &self,
        uscc: &Uscc,
        level: LeaderLevel,
        position: LeaderPosition,
        on: NaiveDate,
    ) -> Option<&'a Pushed<LeaderPost>> {
        self.posts.get(&(uscc, level, position)).and_then(|list| {
            list.iter()
                .copied()
                .find(|p| in_force(p.record.effective_from, p.record.effective_to, on))
        })
    }

    /// The people active at (institution, category) on `on`.
    fn active_at(
        &self,
        uscc: &Uscc,
        category: QuotaCategory,
        on: NaiveDate,
    ) -> BTreeSet<&'a ResidentId> {
        self.on_roll
            .get(&(uscc, category))
            .into_iter()
            .flatten()
            .filter(|(_, spell)| spell.covers(on))
            .map(|(person, _)| *person)
            .collect()
    }

    /// Every on-roll spell covering `on`, with its person.
    fn on_roll_on(&self, on: NaiveDate) -> impl Iterator<Item = (&'a ResidentId, &'a Spell)> {
        self.snapshot
            .spells
            .iter()
            .filter(move |s| s.spell.status.is_on_roll() && s.spell.covers(on))
            .map(|s| (&s.resident_id, &s.spell))
    }

    /// Whether the registry has the institution and it is active (whatever the date).
    fn in_good_standing(&self, uscc: &Uscc) -> bool {
        self.facts(uscc)
            .is_some_and(|facts| facts.status == InstitutionStatus::Active)
    }

    /// Why the registry does not vouch for an institution on `on`, if it does not.
    fn unregistered(&self, uscc: &Uscc, on: NaiveDate) -> Option<Unregistered> {
        match self.facts(uscc) {
            None => Some(Unregistered::Missing),
            // A ceased institution without a date (validation refuses one) counts as ceased.
            Some(facts)
                if facts.status != InstitutionStatus::Active
                    && facts.status_since.is_none_or(|since| since <= on) =>
            {
                Some(Unregistered::Ceased {
                    status: facts.status,
                    since: facts.status_since,
                })
            }
            Some(_) => None,
        }
    }
}

/// Sorts pushed records so that the one pushed last comes first (ties: greatest record id).
fn latest_first<T>(records: &mut [&Pushed<T>]) {
    records.sort_by(|a, b| (b.accepted_at, &b.id).cmp(&(a.accepted_at, &a.id)));
}

/// Whether `[from, to)` covers `on`.
pub(super) fn in_force(from: NaiveDate, to: Option<NaiveDate>, on: NaiveDate) -> bool {
    from <= on && to.is_none_or(|to| on < to)
}

/// Whether a spell covers some day of `[first, last]`.
pub(super) fn covers_some_day(spell: &Spell, first: NaiveDate, last: NaiveDate) -> bool {
    let earliest = spell.valid_from.max(first);
    earliest <= last && spell.covers(earliest)
}

/// Whether a spell records an exit (retirement, departure, death).
pub(super) fn is_exit(status: PersonStatus) -> bool {
    matches!(
        status,
        PersonStatus::Retired | PersonStatus::Departed | PersonStatus::Deceased
    )
}

pub(super) fn approved(quota: Option<&Pushed<Quota>>) -> i64 {
    quota.map_or(0, |q| i64::from(q.record.approved_count))
}

pub(super) fn count(n: usize) -> i64 {
    i64::try_from(n).expect("a count of records fits in i64")
}

/// Why an institution is not in good standing in the registry.
enum Unregistered {
    Missing,
    Ceased {
        status: InstitutionStatus,
        since: Option<NaiveDate>,
    },
}

// ---------------------------------------------------------------------------------------------
// Collecting findings.

/// Findings by key. A key raised twice keeps its first numbers and explanation and gathers the
/// evidence of both, so a rule never reports one matter twice.
#[derive(Default)]
struct Findings(BTreeMap<FindingKey, Finding>);

impl Findings {
    fn raise(
        &mut self,
        key: FindingKey,
        (actual, limit): (i64, i64),
        (explanation_zh, explanation_en): (String, String),
        evidence: BTreeSet<Evidence>,
    ) {
        match self.0.entry(key) {
            MapEntry::Occupied(mut old) => old.get_mut().evidence.extend(evidence),
            MapEntry::Vacant(slot) => {
                let severity = slot.key().code.severity();
                let key = slot.key().clone();
                slot.insert(Finding {
                    key,
                    severity,
                    actual,
                    limit,
                    explanation_zh,
                    explanation_en,
                    evidence,
                });
            }
        }
    }
}

pub(super) fn key(
    code: RuleCode,
    institution: &Uscc,
    subject: impl Into<String>,
    period: impl Into<String>,
) -> FindingKey {
    FindingKey {
        code,
        institution: institution.to_string(),
        subject: subject.into(),
        period: period.into(),
    }
}

pub(super) fn person(id: &ResidentId) -> Evidence {
    Evidence {
        kind: "person",
        id: id.to_string(),
    }
}

pub(super) fn institution(uscc: &Uscc) -> Evidence {
    Evidence {
        kind: "institution",
        id: uscc.to_string(),
    }
}

pub(super) fn record(kind: &'static str, id: &RecordRef) -> Evidence {
    Evidence::record(kind, id)
}

// ---------------------------------------------------------------------------------------------
// Rules on the roll, on `as_of`.

/// OVER_QUOTA and QUOTA_FULL.
fn quota_rules(index: &Index, as_of: NaiveDate, config: &RulesConfig, found: &mut Findings) {
    let threshold = config.quota_full_threshold;
    for (uscc, category) in index.units() {
        let quota = index.quota_in_force(uscc, category, as_of);
        let people = index.active_at(uscc, category, as_of);
        let approved = approved(quota);
        let active = count(people.len());
        // Built only for a finding: most units are within their quota.
        let evidence = || -> BTreeSet<Evidence> {
            let mut evidence = sampled(people.iter().map(|p| person(p)));
            evidence.extend(quota.map(|q| record("quota", &q.id)));
            evidence
        };
        if active > approved {
            found.raise(
                key(RuleCode::OverQuota, uscc, category.code(), ""),
                (active, approved),
                explain::over_quota(uscc, category, (active, approved), quota.is_some()),
                evidence(),
            );
        }

        let full = if approved > 0 {
            // The tolerance keeps 0.7 × 10 (= 7.000000000000001 in floating point) at 7.
            active as f64 >= threshold * approved as f64 - 1e-9
        } else {
            active > 0
        };
        if full {
            found.raise(
                key(RuleCode::QuotaFull, uscc, category.code(), ""),
                (active, approved),
                explain::quota_full(uscc, category, (active, approved), threshold),
                evidence(),
            );
        }
    }
}

/// OVER_LEADER_POSTS and LEADER_ABOVE_GRADE.
fn leader_rules(index: &Index, as_of: NaiveDate, config: &RulesConfig, found: &mut Findings) {
    let mut by_post: BTreeMap<(&Uscc, LeaderLevel, LeaderPosition), Vec<&PersonTerm>> =
        BTreeMap::new();
    let mut by_leader: BTreeMap<(&Uscc, &ResidentId), Vec<&PersonTerm>> = BTreeMap::new();
    for term in &index.snapshot.terms {
        let t = &term.term;
        if !in_force(t.valid_from, t.valid_to, as_of) {
            continue;
        }
        by_post
            .entry((&t.institution, t.level, t.position))
            .or_default()
            .push(term);
        by_leader
            .entry((&t.institution, &term.resident_id))
            .or_default()
            .push(term);
    }

    for ((uscc, level, position), terms) in by_post {
        let leaders = count(
            terms
                .iter()
                .map(|t| &t.resident_id)
                .collect::<BTreeSet<_>>()
                .len(),
        );
        let post = index.post_in_force(uscc, level, position, as_of);
        let posts = post.map_or(0, |p| i64::from(p.record.approved_count));
        if leaders <= posts {
            continue;
        }
        let mut evidence = sampled(terms.iter().map(|t| record("appointment", &t.record)));
        evidence.extend(post.map(|p| record("leader_post", &p.id)));
        let text = explain::over_leader_posts(uscc, (level, position), (leaders, posts));
        found.raise(
            key(
                RuleCode::OverLeaderPosts,
                uscc,
                format!("{level}/{position}"),
                "",
            ),
            (leaders, posts),
            text,
            evidence,
        );
    }

    for ((uscc, resident), terms) in by_leader {
        let Some(facts) = index.facts(uscc) else {
            continue;
        };
        let ceiling = config
            .rank_ceilings
            .iter()
            .find(|(grade, _)| *grade == facts.grade)
            .map_or(Rank::Clerk, |(_, rank)| *rank);
        // Rank orders the highest first: a rank below the ceiling in Ord is above it in grade.
        let above: Vec<&&PersonTerm> = terms.iter().filter(|t| t.term.rank < ceiling).collect();
        let Some(highest) = above.iter().map(|t| t.term.rank).min() else {
            continue;
        };
        let mut evidence: BTreeSet<Evidence> = above
            .iter()
            .map(|t| record("appointment", &t.record))
            .collect();
        evidence.insert(institution(uscc));
        let text = explain::leader_above_grade(resident, uscc, facts.grade, (highest, ceiling));
        found.raise(
            key(RuleCode::LeaderAboveGrade, uscc, resident.as_str(), ""),
            (0, 0),
            text,
            evidence,
        );
    }
}

/// MIXED_CATEGORY, DUPLICATE_ENROLLMENT and the roll part of UNREGISTERED_INSTITUTION.
fn roll_rules(index: &Index, as_of: NaiveDate, found: &mut Findings) {
    // Placements on as_of, sorted so that each person's institutions, and each placement's
    // categories, are consecutive (a sort is much cheaper than nested maps for a million people).
    let mut current: Vec<(&ResidentId, &Uscc, QuotaCategory)> = index
        .on_roll_on(as_of)
        .map(|(resident, spell)| (resident, &spell.institution, spell.category))
        .collect();
    current.sort_unstable();
    current.dedup();

    let mut people_at_unregistered: BTreeMap<&Uscc, BTreeSet<&ResidentId>> = BTreeMap::new();
    for placements in current.chunk_by(|a, b| a.0 == b.0) {
        let resident = placements[0].0;
        let rolls: Vec<&Uscc> = placements
            .chunk_by(|a, b| a.1 == b.1)
            .map(|placement| placement[0].1)
            .collect();
        for placement in placements.chunk_by(|a, b| a.1 == b.1) {
            let uscc = placement[0].1;
            if index.unregistered(uscc, as_of).is_some() {
                people_at_unregistered
                    .entry(uscc)
                    .or_default()
                    .insert(resident);
            }
            if let Some(facts) = index.facts(uscc) {
                let categories = placement.iter().map(|(_, _, category)| *category);
                mixed_category(resident, facts, categories, found);
            }
        }
        if rolls.len() >= 2 {
            duplicate_enrollment(resident, &rolls, found);
        }
    }

    for (uscc, people) in people_at_unregistered {
        let Some(why) = index.unregistered(uscc, as_of) else {
            continue;
        };
        let n = people.len();
        let (why_zh, why_en) = unregistered_text(&why);
        let text = (
            format!("机构 {uscc} {why_zh}，但有 {n} 人在编。"),
            format!("Institution {uscc} {why_en}, yet {n} people are on its roll."),
        );
        found.raise(
            key(RuleCode::UnregisteredInstitution, uscc, "", ""),
            (0, 0),
            text,
            sampled(people.iter().map(|p| person(p))),
        );
    }
}

/// MIXED_CATEGORY for one person on one roll, given the categories they occupy there.
fn mixed_category(
    resident: &ResidentId,
    facts: &InstitutionFacts,
    categories: impl Iterator<Item = QuotaCategory>,
    found: &mut Findings,
) {
    let kind = facts.kind;
    let mut misplaced = categories.filter_map(|category| {
        let why = match category {
            QuotaCategory::PublicInstitution if kind == InstitutionKind::Organ => (
                "事业编制不得在机关使用",
                "PUBLIC_INSTITUTION places may not be used in an organ",
            ),
            QuotaCategory::PoliticalLegal if !facts.political_legal => (
                "政法专项编制只能在政法机关使用",
                "POLITICAL_LEGAL places may only be used in a political-legal organ",
            ),
            _ => return None,
        };
        Some((category, why))
    });
    let Some((category, (why_zh, why_en))) = misplaced.next() else {
        return;
    };
    let uscc = &facts.uscc;
    let who = &resident;
    let text = (
        format!(
            "{who} 以{}在机构 {uscc}（{}）在编，{why_zh}。",
            category_zh(category),
            kind_zh(kind)
        ),
        format!("{who} is on the roll of institution {uscc} ({kind}) in {category}; {why_en}."),
    );
    found.raise(
        key(RuleCode::MixedCategory, uscc, resident.as_str(), ""),
        (0, 0),
        text,
        [person(resident), institution(uscc)].into(),
    );
}

/// DUPLICATE_ENROLLMENT for one person on two or more rolls (sorted, without repeats).
fn duplicate_enrollment(resident: &ResidentId, rolls: &[&Uscc], found: &mut Findings) {
    let n = count(rolls.len());
    let who = &resident;
    let mut evidence: BTreeSet<Evidence> = rolls.iter().map(|u| institution(u)).collect();
    evidence.insert(person(resident));
    let text = (
        format!(
            "{who} 同时在 {n} 个机构在编：{}。",
            join(rolls.iter().copied(), "、")
        ),
        format!(
            "{who} is on the rolls of {n} institutions at once: {}.",
            join(rolls.iter().copied(), ", ")
        ),
    );
    found.raise(
        key(
            RuleCode::DuplicateEnrollment,
            rolls[0],
            resident.as_str(),
            "",
        ),
        (n, 1),
        text,
        evidence,
    );
}

// ---------------------------------------------------------------------------------------------
// Rules on entries.

/// Why an entry has no approval.
enum Unapproved<'a> {
    NoneCited,
    Unknown(&'a str),
    NotValid(&'a str),
    UsedUp(&'a str, u32),
}

/// An approval and the entries it has left.
type Slot<'a> = (&'a Pushed<HiringApproval>, u32);

/// Takes one entry on `date` from the valid approval that expires first (`slots` are in that
/// order); says why none can give one. Drawing on the earliest expiry first covers the most entries.
fn draw<'a>(slots: &mut [Slot], number: &'a str, date: NaiveDate) -> Option<Unapproved<'a>> {
    let mut valid = slots
        .iter_mut()
        .filter(|(a, _)| a.record.issued_on <= date && date <= a.record.valid_until)
        .peekable();
    if valid.peek().is_none() {
        return Some(Unapproved::NotValid(number));
    }
    let mut total = 0;
    for (approval, left) in valid {
        if *left > 0 {
            *left -= 1;
            return None;
        }
        total += approval.record.approved_entries;
    }
    Some(Unapproved::UsedUp(number, total))
}

/// HIRE_WITHOUT_APPROVAL: entries use up matching approvals in order of (date, arrival, record),
/// each from the valid approval that expires first; entries left without one fire.
fn hires_without_approval(index: &Index, found: &mut Findings) {
    // Approvals per (institution, category, number) with their remaining count, in the order they
    // are drawn on: expiring first.
    let mut approvals: HashMap<(&Uscc, QuotaCategory, &str), Vec<Slot>> = HashMap::new();
    for approval in &index.snapshot.approvals {
        let a = &approval.record;
        approvals
            .entry((&a.institution, a.category, a.approval_number.as_str()))
            .or_default()
            .push((approval, a.approved_entries));
    }
    for slots in approvals.values_mut() {
        slots.sort_by(|(a, _), (b, _)| {
            (a.record.valid_until, a.record.issued_on, &a.id).cmp(&(
                b.record.valid_until,
                b.record.issued_on,
                &b.id,
            ))
        });
    }

    let mut entries: Vec<&Entry> = index.snapshot.entries.iter().collect();
    entries.sort_by(|a, b| (a.date, a.arrival, &a.record).cmp(&(b.date, b.arrival, &b.record)));
    for entry in entries {
        let date = entry.date;
        let mut evidence: BTreeSet<Evidence> = [record("personnel_event", &entry.record)].into();
        let why = match entry.approval_number.as_deref() {
            None => Some(Unapproved::NoneCited),
            Some(number) => {
                match approvals.get_mut(&(&entry.institution, entry.category, number)) {
                    None => Some(Unapproved::Unknown(number)),
                    Some(slots) => {
                        evidence
                            .extend(slots.iter().map(|(a, _)| record("hiring_approval", &a.id)));
                        draw(slots, number, date)
                    }
                }
            }
        };
        let Some(why) = why else {
            continue;
        };
        let who = &entry.resident_id;
        let uscc = &entry.institution;
        let category = entry.category;
        let zh_category = category_zh(category);
        let opening_zh = format!("{who} 于 {date} 以{zh_category}进入机构 {uscc}");
        let opening_en = format!("{who} entered institution {uscc} in {category} on {date}");
        let text = match why {
            Unapproved::NoneCited => (
                format!("{opening_zh}，未注明用编审批。"),
                format!("{opening_en} citing no hiring approval."),
            ),
            Unapproved::Unknown(number) => (
                format!("{opening_zh}，所引审批 {number} 不存在或不属于该机构和编制类别。"),
                format!(
                    "{opening_en} citing approval {number}, which does not exist for that institution and category."
                ),
            ),
            Unapproved::NotValid(number) => (
                format!("{opening_zh}，所引审批 {number} 在该日不在有效期内。"),
                format!("{opening_en} citing approval {number}, which was not valid on that date."),
            ),
            Unapproved::UsedUp(number, total) => (
                format!("{opening_zh}，所引审批 {number} 核准的 {total} 个名额已用完。"),
                format!(
                    "{opening_en} citing approval {number}, whose {total} approved entries were already used."
                ),
            ),
        };
        found.raise(
            key(
                RuleCode::HireWithoutApproval,
                uscc,
                entry.resident_id.as_str(),
                date.to_string(),
            ),
            (0, 0),
            text,
            evidence,
        );
    }
}

/// OVER_PLAN: entries of a year against the sum over channels of the latest plan per channel;
/// RESERVE_SHORTFALL: the same year's entries through other channels against the places the
/// policy-placement reserve leaves them.
fn over_plan(index: &Index, found: &mut Findings) {
    type Year<'a> = (&'a Uscc, i32, QuotaCategory);
    let mut plans: HashMap<Year, BTreeMap<HiringChannel, &Pushed<StaffingPlan>>> = HashMap::new();
    for plan in &index.snapshot.plans {
        let p = &plan.record;
        let channels = plans
            .entry((&p.institution, p.year, p.category))
            .or_default();
        let latest = channels.entry(p.channel).or_insert(plan);
        if (plan.accepted_at, &plan.id) > (latest.accepted_at, &latest.id) {
            *latest = plan;
        }
    }
    let mut entries: BTreeMap<Year, Vec<&Entry>> = BTreeMap::new();
    for entry in &index.snapshot.entries {
        entries
            .entry((&entry.institution, entry.date.year(), entry.category))
            .or_default()
            .push(entry);
    }
    for (year_key, entries) in entries {
        let counted = plans.get(&year_key);
        let plan: i64 = counted
            .into_iter()
            .flat_map(BTreeMap::values)
            .map(|p| i64::from(p.record.approved_count))
            .sum();
        let taken = count(entries.len());
        let placed = count(entries.iter().filter(|e| is_placement(e)).count());
        let reserve = Reserve::of(
            counted
                .into_iter()
                .flat_map(BTreeMap::values)
                .map(|p| (p.record.channel, p.record.approved_count)),
            taken,
            placed,
        );
        if taken <= plan && !reserve.short() {
            continue;
        }
        let (uscc, year, category) = year_key;
        let mut evidence = sampled(entries.iter().map(|e| record("personnel_event", &e.record)));
        evidence.extend(
            counted
                .into_iter()
                .flat_map(BTreeMap::values)
                .map(|p| record("staffing_plan", &p.id)),
        );
        if taken > plan {
            let text = explain::over_plan((uscc, category, year), (taken, plan));
            found.raise(
                key(
                    RuleCode::OverPlan,
                    uscc,
                    category.code(),
                    format!("{year:04}"),
                ),
                (taken, plan),
                text,
                evidence.clone(),
            );
        }
        if reserve.short() {
            let text = explain::reserve_shortfall((uscc, category, year), &reserve);
            found.raise(
                key(
                    RuleCode::ReserveShortfall,
                    uscc,
                    category.code(),
                    format!("{year:04}"),
                ),
                (reserve.others, reserve.others_plan),
                text,
                evidence,
            );
        }
    }
}

/// Whether an entry fills the policy-placement reserve (政策性安置).
pub(super) fn is_placement(entry: &Entry) -> bool {
    entry.channel == Some(HiringChannel::PolicyPlacement)
}

pub use super::findings::Reserve;

// ---------------------------------------------------------------------------------------------
// Rules on pay and funding, per period.

/// PAID_AFTER_EXIT, PAID_NOT_ON_ROLL, PAY_UNIT_MISMATCH and DOUBLE_PAY.
fn payroll_rules(index: &Index, found: &mut Findings) {
    // Spells by person and lines by (person, period, payer), as sorted vectors: for a million of
    // each, a sort is much cheaper than nested maps.
    let mut spells: Vec<(&ResidentId, &Spell)> = index
        .snapshot
        .spells
        .iter()
        .map(|s| (&s.resident_id, &s.spell))
        .collect();
    spells.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut lines: Vec<&Pushed<PayrollLine>> = index.snapshot.payroll.iter().collect();
    lines.sort_unstable_by(|a, b| {
        let (x, y) = (&a.record, &b.record);
        (&x.resident_id, x.period, &x.institution, &a.id).cmp(&(
            &y.resident_id,
            y.period,
            &y.institution,
            &b.id,
        ))
    });

    let same_pay = |a: &&Pushed<PayrollLine>, b: &&Pushed<PayrollLine>| {
        a.record.resident_id == b.record.resident_id && a.record.period == b.record.period
    };
    for group in lines.chunk_by(same_pay) {
        let resident = &group[0].record.resident_id;
        let from = spells.partition_point(|(r, _)| *r < resident);
        let theirs: Vec<&Spell> = spells[from..]
            .iter()
            .take_while(|(r, _)| *r == resident)
            .map(|(_, spell)| *spell)
            .collect();
        let payers: Vec<&[&Pushed<PayrollLine>]> = group
            .chunk_by(|a, b| a.record.institution == b.record.institution)
            .collect();
        pay_of_period(resident, group[0].record.period, &theirs, &payers, found);
    }
}

/// The pay rules for one person and period: `spells` are all the person's, `payers` the lines of
/// the period by paying institution, in order.
fn pay_of_period(
    resident: &ResidentId,
    period: Period,
    spells: &[&Spell],
    payers: &[&[&Pushed<PayrollLine>]],
    found: &mut Findings,
) {
    let (first, last) = (period.first_day(), period.last_day());
    let mut rolls: BTreeSet<&Uscc> = BTreeSet::new();
    let mut hosts: BTreeSet<&Uscc> = BTreeSet::new();
    for spell in spells {
        if spell.status.is_on_roll() && covers_some_day(spell, first, last) {
            rolls.insert(&spell.institution);
            if spell.status == PersonStatus::Seconded {
                hosts.extend(spell.seconded_to.as_ref());
            }
        }
    }
    // The latest exit on or before the period's first day is the one the pay ignores.
    let exit = spells
        .iter()
        .filter(|s| is_exit(s.status) && s.valid_from <= first)
        .max_by_key(|s| s.valid_from);
    let subject = resident.as_str();

    for lines in payers {
        let payer = &lines[0].record.institution;
        let code = if !rolls.is_empty() {
            if rolls.contains(payer) || hosts.contains(payer) {
                continue;
            }
            RuleCode::PayUnitMismatch
        } else if exit.is_some() {
            RuleCode::PaidAfterExit
        } else {
            RuleCode::PaidNotOnRoll
        };
        let mut evidence: BTreeSet<Evidence> = lines
            .iter()
            .map(|l| record("payroll_line", &l.id))
            .collect();
        if !spells.is_empty() {
            evidence.insert(person(resident));
        }
        let paid: i128 = lines.iter().map(|l| i128::from(l.record.gross_fen)).sum();
        let problem = if code == RuleCode::PayUnitMismatch {
            evidence.extend(rolls.iter().map(|u| institution(u)));
            PayProblem::OtherRolls(&rolls)
        } else if let Some(exit) = exit {
            PayProblem::AfterExit {
                on: exit.valid_from,
                status: exit.status,
            }
        } else {
            PayProblem::OnNoRoll
        };
        let text = explain::pay(payer, resident, period, paid, &problem);
        found.raise(
            key(code, payer, subject, period.to_string()),
            (0, 0),
            text,
            evidence,
        );
    }

    if payers.len() >= 2 {
        let n = count(payers.len());
        let usccs = || payers.iter().map(|lines| &lines[0].record.institution);
        let evidence = payers
            .iter()
            .copied()
            .flatten()
            .map(|l| record("payroll_line", &l.id))
            .collect();
        found.raise(
            key(
                RuleCode::DoublePay,
                &payers[0][0].record.institution,
                subject,
                period.to_string(),
            ),
            (n, 1),
            explain::double_pay(resident, period, usccs()),
            evidence,
        );
    }
}

/// FUNDED_OVER_QUOTA, SELF_FUNDED_BUDGET_PAY, and the period part of UNREGISTERED_INSTITUTION
/// (for pay and funding alike).
fn funding_rules(index: &Index, found: &mut Findings) {
    let mut latest: BTreeMap<(&Uscc, QuotaCategory, Period), &Pushed<Funding>> = BTreeMap::new();
    for funding in &index.snapshot.fundings {
        let f = &funding.record;
        let slot = latest
            .entry((&f.institution, f.category, f.period))
            .or_insert(funding);
        if (funding.accepted_at, &funding.id) > (slot.accepted_at, &slot.id) {
            *slot = funding;
        }
    }

    // What each institution outside the active registry received per period, for
    // UNREGISTERED_INSTITUTION (the registry's active institutions, nearly all, are skipped early).
    type Received<'a> = (Vec<&'a Pushed<PayrollLine>>, Vec<&'a Pushed<Funding>>);
    let mut received: BTreeMap<(&Uscc, Period), Received> = BTreeMap::new();
    for line in &index.snapshot.payroll {
        let l = &line.record;
        if index.in_good_standing(&l.institution) {
            continue;
        }
        received
            .entry((&l.institution, l.period))
            .or_default()
            .0
            .push(line);
    }

    for (&(uscc, category, period), &funding) in &latest {
        let f = &funding.record;
        // A latest record of nothing withdraws the funding.
        if (f.funded_headcount > 0 || f.amount_fen > 0) && !index.in_good_standing(uscc) {
            received.entry((uscc, period)).or_default().1.push(funding);
        }
        let funded = i64::from(f.funded_headcount);
        let day = period.last_day();
        let quota = index.quota_in_force(uscc, category, day);
        let approved = approved(quota);
        let active = count(index.active_at(uscc, category, day).len());
        let limit = approved.min(active);
        if funded > limit {
            let mut evidence: BTreeSet<Evidence> = [record("funding", &funding.id)].into();
            evidence.extend(quota.map(|q| record("quota", &q.id)));
            found.raise(
                key(
                    RuleCode::FundedOverQuota,
                    uscc,
                    category.code(),
                    period.to_string(),
                ),
                (funded, limit),
                explain::funded_over_quota((uscc, category, period), funded, (approved, active)),
                evidence,
            );
        }

        let self_funded = index
            .facts(uscc)
            .is_some_and(|facts| facts.funding_form == Some(FundingForm::SelfFunded));
        if self_funded && (f.amount_fen > 0 || f.funded_headcount > 0) {
            found.raise(
                key(
                    RuleCode::SelfFundedBudgetPay,
                    uscc,
                    category.code(),
                    period.to_string(),
                ),
                (0, 0),
                explain::self_funded_budget_pay((uscc, category, period), f.amount_fen, funded),
                [record("funding", &funding.id), institution(uscc)].into(),
            );
        }
    }

    for ((uscc, period), (lines, fundings)) in received {
        let Some(why) = index.unregistered(uscc, period.first_day()) else {
            continue;
        };
        let (why_zh, why_en) = unregistered_text(&why);
        let (n_lines, n_fundings) = (lines.len(), fundings.len());
        let evidence = sampled(
            lines
                .iter()
                .map(|l| record("payroll_line", &l.id))
                .chain(fundings.iter().map(|f| record("funding", &f.id))),
        );
        found.raise(
            key(
                RuleCode::UnregisteredInstitution,
                uscc,
                "",
                period.to_string(),
            ),
            (0, 0),
            (
                format!(
                    "机构 {uscc} {why_zh}，但在 {period} 有 {n_lines} 条工资记录和 {n_fundings} 条经费记录。"
                ),
                format!(
                    "Institution {uscc} {why_en}, yet it has {n_lines} payroll lines and {n_fundings} funding records for {period}."
                ),
            ),
            evidence,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Words for the explanations.

fn unregistered_text(why: &Unregistered) -> (String, String) {
    match why {
        Unregistered::Missing => (
            "未在机构编制登记中".to_owned(),
            "is not in the registry".to_owned(),
        ),
        Unregistered::Ceased { status, since } => {
            let zh = if *status == InstitutionStatus::Merged {
                "合并"
            } else {
                "撤销"
            };
            let en = status.code().to_lowercase();
            match since {
                Some(since) => (format!("已于 {since} {zh}"), format!("was {en} on {since}")),
                None => (format!("已{zh}"), format!("was {en}")),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::Grade;
    use crate::domain::findings::{InstitutionFacts, PersonSpell};
    use crate::domain::ids::{parse_date, resident_id_with_check};
    use crate::domain::roll::LeaderTerm;
    use proptest::prelude::*;

    use InstitutionKind as K;
    use QuotaCategory as C;
    use RuleCode as R;

    pub(crate) fn d(date: &str) -> NaiveDate {
        parse_date(date).unwrap()
    }

    pub(crate) fn unit(n: u32) -> Uscc {
        Uscc::with_check_character(&format!("11140100MB{n:07}")).unwrap()
    }

    pub(crate) fn resident(seq: u32) -> ResidentId {
        resident_id_with_check(&format!("14010519800101{seq:03}")).unwrap()
    }

    fn period(raw: &str) -> Period {
        Period::parse(raw).unwrap()
    }

    /// A snapshot under construction; every record gets a fresh id and a later acceptance time.
    #[derive(Default)]
    struct World {
        s: Snapshot,
        seq: i64,
    }

    impl World {
        fn next(&mut self, agency: &str) -> (RecordRef, i64) {
            self.seq += 1;
            (
                RecordRef(format!("140100/{agency}/r{:03}", self.seq)),
                self.seq,
            )
        }

        fn institution(&mut self, n: u32, kind: InstitutionKind) -> &mut InstitutionFacts {
            let (record, _) = self.next("staffing-office");
            self.s.institutions.push(InstitutionFacts {
                uscc: unit(n),
                jurisdiction: Jurisdiction::parse("140105").unwrap(),
                kind,
                grade: Grade::SectionPrincipal,
                funding_form: (kind == K::PublicInstitution).then_some(FundingForm::Full),
                status: InstitutionStatus::Active,
                status_since: None,
                political_legal: false,
                record,
            });
            self.s.institutions.last_mut().unwrap()
        }

        fn quota(&mut self, n: u32, category: QuotaCategory, approved: u32) -> &mut Pushed<Quota> {
            let (id, accepted_at) = self.next("staffing-office");
            self.s.quotas.push(Pushed {
                id,
                accepted_at,
                record: Quota {
                    institution: unit(n),
                    category,
                    approved_count: approved,
                    effective_from: d("2000-01-01"),
                    effective_to: None,
                    approval_document: "并编〔2020〕1号".into(),
                },
            });
            self.s.quotas.last_mut().unwrap()
        }

        fn post(&mut self, n: u32, approved: u32) -> &mut Pushed<LeaderPost> {
            let (id, accepted_at) = self.next("staffing-office");
            self.s.leader_posts.push(Pushed {
                id,
                accepted_at,
                record: LeaderPost {
                    institution: unit(n),
                    level: LeaderLevel::Division,
                    position: LeaderPosition::Deputy,
                    approved_count: approved,
                    effective_from: d("2000-01-01"),
                    effective_to: None,
                    approval_document: "并编〔2020〕2号".into(),
                },
            });
            self.s.leader_posts.last_mut().unwrap()
        }

        fn plan(
            &mut self,
            n: u32,
            year: i32,
            channel: HiringChannel,
            approved: u32,
        ) -> &mut Pushed<StaffingPlan> {
            let (id, accepted_at) = self.next("staffing-office");
            self.s.plans.push(Pushed {
                id,
                accepted_at,
                record: StaffingPlan {
                    institution: unit(n),
                    year,
                    category: C::Administrative,
                    channel,
                    approved_count: approved,
                    approval_document: "并编〔2024〕3号".into(),
                },
            });
            self.s.plans.last_mut().unwrap()
        }

        fn approval(
            &mut self,
            n: u32,
            number: &str,
            entries: u32,
            (issued, until): (&str, &str),
        ) -> &mut Pushed<HiringApproval> {
            let (id, accepted_at) = self.next("staffing-office");
            self.s.approvals.push(Pushed {
                id,
                accepted_at,
                record: HiringApproval {
                    approval_number: number.into(),
                    institution: unit(n),
                    category: C::Administrative,
                    approved_entries: entries,
                    issued_on: d(issued),
                    valid_until: d(until),
                },
            });
            self.s.approvals.last_mut().unwrap()
        }

        /// An ACTIVE spell in ADMINISTRATIVE, `[from, to)`.
        fn spell(&mut self, p: u32, n: u32, from: &str, to: Option<&str>) -> &mut Spell {
            self.s.spells.push(PersonSpell {
                resident_id: resident(p),
                spell: Spell {
                    institution: unit(n),
                    category: C::Administrative,
                    rank: Rank::Clerk,
                    status: PersonStatus::Active,
                    valid_from: d(from),
                    valid_to: to.map(d),
                    approval_number: None,
                    seconded_to: None,
                },
            });
            &mut self.s.spells.last_mut().unwrap().spell
        }

        /// Active at `n` from `from` until `exit`, then a terminal spell with `status`.
        fn exit(&mut self, p: u32, n: u32, from: &str, exit: &str, status: PersonStatus) {
            self.spell(p, n, from, Some(exit));
            self.spell(p, n, exit, None).status = status;
        }

        /// A DIVISION/DEPUTY term `[from, to)`.
        fn term(&mut self, p: u32, n: u32, rank: Rank, from: &str, to: Option<&str>) {
            let (record, _) = self.next("organization");
            self.s.terms.push(PersonTerm {
                resident_id: resident(p),
                term: LeaderTerm {
                    institution: unit(n),
                    level: LeaderLevel::Division,
                    position: LeaderPosition::Deputy,
                    rank,
                    valid_from: d(from),
                    valid_to: to.map(d),
                },
                record,
            });
        }

        fn entry(&mut self, p: u32, n: u32, date: &str, number: Option<&str>) -> &mut Entry {
            let (record, arrival) = self.next("hr");
            self.s.entries.push(Entry {
                resident_id: resident(p),
                institution: unit(n),
                category: C::Administrative,
                channel: Some(HiringChannel::OpenRecruitment),
                date: d(date),
                approval_number: number.map(str::to_owned),
                arrival,
                record,
            });
            self.s.entries.last_mut().unwrap()
        }

        fn pay(&mut self, p: u32, n: u32, month: &str) -> &mut Pushed<PayrollLine> {
            let (id, accepted_at) = self.next("finance");
            self.s.payroll.push(Pushed {
                id,
                accepted_at,
                record: PayrollLine {
                    period: period(month),
                    institution: unit(n),
                    resident_id: resident(p),
                    name: "张三".into(),
                    gross_fen: 812_345,
                    reverses: None,
                },
            });
            self.s.payroll.last_mut().unwrap()
        }

        fn funding(&mut self, n: u32, month: &str, headcount: u32) -> &mut Pushed<Funding> {
            let (id, accepted_at) = self.next("finance");
            self.s.fundings.push(Pushed {
                id,
                accepted_at,
                record: Funding {
                    institution: unit(n),
                    category: C::Administrative,
                    period: period(month),
                    funded_headcount: headcount,
                    amount_fen: i64::from(headcount) * 800_000,
                },
            });
            self.s.fundings.last_mut().unwrap()
        }

        fn check(&self, as_of: &str) -> Vec<Finding> {
            self.check_with(as_of, &RulesConfig::default())
        }

        fn check_with(&self, as_of: &str, config: &RulesConfig) -> Vec<Finding> {
            let everything = Scope {
                everything: true,
                ..Scope::default()
            };
            check(&self.s, &everything, d(as_of), config)
        }
    }

    fn of(findings: &[Finding], code: RuleCode) -> Vec<&Finding> {
        findings.iter().filter(|f| f.key.code == code).collect()
    }

    fn only(findings: &[Finding], code: RuleCode) -> &Finding {
        let found = of(findings, code);
        assert_eq!(found.len(), 1, "one {code} expected in {findings:#?}");
        found[0]
    }

    fn kinds(finding: &Finding, kind: &str) -> Vec<String> {
        finding
            .evidence
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.id.clone())
            .collect()
    }

    /// No explanation masks a resident ID: they are stored whole and masked per reader at the
    /// edge, as the personal-data table says.
    fn assert_whole(findings: &[Finding], people: &[u32]) {
        for finding in findings {
            for p in people {
                let masked = resident(*p).masked();
                assert!(!finding.explanation_zh.contains(&masked), "{finding:?}");
                assert!(!finding.explanation_en.contains(&masked), "{finding:?}");
            }
        }
    }

    // --- OVER_QUOTA and QUOTA_FULL ---------------------------------------------------------

    #[test]
    fn over_quota_fires_above_the_quota_with_its_evidence() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.quota(1, C::Administrative, 2);
        for p in 1..=3 {
            w.spell(p, 1, "2020-01-01", None);
        }
        let findings = w.check("2024-06-01");
        let over = only(&findings, R::OverQuota);
        assert_eq!(over.key.institution, unit(1).to_string());
        assert_eq!(over.key.subject, "ADMINISTRATIVE");
        assert_eq!(over.key.period, "");
        assert_eq!(over.severity, R::OverQuota.severity());
        assert_eq!((over.actual, over.limit), (3, 2));
        assert_eq!(kinds(over, "quota"), vec![w.s.quotas[0].id.0.clone()]);
        assert_eq!(kinds(over, "person").len(), 3);
        assert!(
            over.explanation_zh.contains("超编 1 名"),
            "{}",
            over.explanation_zh
        );
        assert!(
            over.explanation_en.contains("(1 over)"),
            "{}",
            over.explanation_en
        );
        assert_whole(&findings, &[1, 2, 3]);
        // Over quota is also full.
        assert_eq!(only(&findings, R::QuotaFull).actual, 3);
    }

    #[test]
    fn at_the_quota_is_full_but_not_over() {
        let mut w = World::default();
        w.quota(1, C::Administrative, 2);
        w.spell(1, 1, "2020-01-01", None);
        w.spell(2, 1, "2020-01-01", None);
        let findings = w.check("2024-06-01");
        assert!(of(&findings, R::OverQuota).is_empty());
        let full = only(&findings, R::QuotaFull);
        assert_eq!((full.actual, full.limit), (2, 2));
        assert_eq!(full.severity, R::QuotaFull.severity());
        // One below the quota: neither.
        w.s.spells.pop();
        let findings = w.check("2024-06-01");
        assert!(of(&findings, R::OverQuota).is_empty());
        assert!(of(&findings, R::QuotaFull).is_empty());
    }

    #[test]
    fn only_people_on_the_roll_on_as_of_count() {
        let mut w = World::default();
        w.quota(1, C::Administrative, 1);
        w.spell(1, 1, "2020-01-01", None);
        w.spell(2, 1, "2024-06-02", None); // hired the day after
        w.spell(3, 1, "2020-01-01", Some("2024-05-31")); // left the day before
        w.spell(4, 1, "2020-01-01", Some("2024-06-01")); // left on as_of
        w.exit(5, 1, "2020-01-01", "2024-01-01", PersonStatus::Retired);
        w.spell(6, 1, "2020-01-01", None).category = C::ServiceWorker; // another category
        let findings = w.check("2024-06-01");
        assert!(
            of(&findings, R::OverQuota)
                .iter()
                .all(|f| f.key.subject != "ADMINISTRATIVE")
        );
        let full = of(&findings, R::QuotaFull);
        let admin = full
            .iter()
            .find(|f| f.key.subject == "ADMINISTRATIVE")
            .unwrap();
        assert_eq!((admin.actual, admin.limit), (1, 1));
        // Seconded and on leave still count.
        w.spell(7, 1, "2020-01-01", None).status = PersonStatus::Seconded;
        w.spell(8, 1, "2020-01-01", None).status = PersonStatus::OnLeave;
        let findings = w.check("2024-06-01");
        let over = of(&findings, R::OverQuota);
        let admin = over
            .iter()
            .find(|f| f.key.subject == "ADMINISTRATIVE")
            .unwrap();
        assert_eq!((admin.actual, admin.limit), (3, 1));
    }

    #[test]
    fn a_category_without_a_quota_fires_only_when_someone_is_in_it() {
        let mut w = World::default();
        w.spell(1, 1, "2020-01-01", None).category = C::ServiceWorker;
        let findings = w.check("2024-06-01");
        let over = only(&findings, R::OverQuota);
        assert_eq!(over.key.subject, "SERVICE_WORKER");
        assert_eq!((over.actual, over.limit), (1, 0));
        assert!(kinds(over, "quota").is_empty());
        assert_eq!(only(&findings, R::QuotaFull).limit, 0);
        // Nobody in the category: nothing, not even for a zero quota.
        let mut w = World::default();
        w.quota(1, C::ServiceWorker, 0);
        w.spell(1, 1, "2024-06-02", None).category = C::ServiceWorker;
        assert!(w.check("2024-06-01").is_empty());
    }

    #[test]
    fn the_latest_pushed_quota_in_force_supersedes() {
        let mut w = World::default();
        w.quota(1, C::Administrative, 5);
        w.quota(1, C::Administrative, 2);
        for p in 1..=3 {
            w.spell(p, 1, "2020-01-01", None);
        }
        let findings = w.check("2024-06-01");
        let over = only(&findings, R::OverQuota);
        assert_eq!(over.limit, 2);
        assert_eq!(kinds(over, "quota"), vec![w.s.quotas[1].id.0.clone()]);
        // A later push not yet in force does not supersede; one that ended on as_of is out too.
        w.s.quotas[1].record.effective_from = d("2024-06-02");
        assert!(of(&w.check("2024-06-01"), R::OverQuota).is_empty());
        w.s.quotas[1].record.effective_from = d("2000-01-01");
        w.s.quotas[0].record.effective_to = Some(d("2024-06-01"));
        w.s.quotas[1].record.effective_to = Some(d("2024-06-01"));
        assert_eq!(only(&w.check("2024-06-01"), R::OverQuota).limit, 0);
        // Same acceptance time: the greater record id wins.
        let mut w = World::default();
        w.quota(1, C::Administrative, 2).accepted_at = 7;
        w.quota(1, C::Administrative, 9).accepted_at = 7;
        for p in 1..=3 {
            w.spell(p, 1, "2020-01-01", None);
        }
        assert!(of(&w.check("2024-06-01"), R::OverQuota).is_empty());
    }

    #[test]
    fn quota_full_follows_the_configured_threshold() {
        let config = RulesConfig {
            quota_full_threshold: 0.9,
            ..RulesConfig::default()
        };
        let mut w = World::default();
        w.quota(1, C::Administrative, 10);
        for p in 1..=8 {
            w.spell(p, 1, "2020-01-01", None);
        }
        assert!(of(&w.check_with("2024-06-01", &config), R::QuotaFull).is_empty());
        w.spell(9, 1, "2020-01-01", None);
        let findings = w.check_with("2024-06-01", &config);
        assert_eq!(only(&findings, R::QuotaFull).actual, 9);
        assert!(of(&findings, R::OverQuota).is_empty());
        // The default threshold (100%) does not fire at 9 of 10.
        assert!(of(&w.check("2024-06-01"), R::QuotaFull).is_empty());
        // 0.7 × 10 is 7 despite floating point.
        let config = RulesConfig {
            quota_full_threshold: 0.7,
            ..RulesConfig::default()
        };
        w.s.spells.truncate(7);
        assert_eq!(
            only(&w.check_with("2024-06-01", &config), R::QuotaFull).actual,
            7
        );
    }

    // --- Leaders -----------------------------------------------------------------------------

    #[test]
    fn over_leader_posts_counts_terms_covering_as_of() {
        let mut w = World::default();
        w.institution(1, K::Organ).grade = Grade::DivisionPrincipal;
        w.post(1, 1);
        w.term(1, 1, Rank::DivisionDeputy, "2020-01-01", None);
        w.term(2, 1, Rank::DivisionDeputy, "2024-06-02", None); // appointed the day after
        w.term(3, 1, Rank::DivisionDeputy, "2020-01-01", Some("2024-06-01")); // removed on as_of
        w.term(4, 1, Rank::DivisionDeputy, "2020-01-01", Some("2024-05-31")); // the day before
        assert!(w.check("2024-06-01").is_empty());
        w.term(5, 1, Rank::DivisionDeputy, "2024-06-01", None);
        let findings = w.check("2024-06-01");
        let over = only(&findings, R::OverLeaderPosts);
        assert_eq!(over.key.subject, "DIVISION/DEPUTY");
        assert_eq!((over.actual, over.limit), (2, 1));
        assert_eq!(
            kinds(over, "leader_post"),
            vec![w.s.leader_posts[0].id.0.clone()]
        );
        assert_eq!(kinds(over, "appointment").len(), 2);
        // Without posts in force the limit is 0.
        w.s.leader_posts[0].record.effective_to = Some(d("2024-06-01"));
        let findings = w.check("2024-06-01");
        assert_eq!(only(&findings, R::OverLeaderPosts).limit, 0);
    }

    #[test]
    fn leader_above_grade_compares_the_rank_with_the_grade_ceiling() {
        let mut w = World::default();
        w.institution(1, K::Organ).grade = Grade::SectionPrincipal;
        w.post(1, 5);
        w.term(1, 1, Rank::SectionPrincipal, "2020-01-01", None); // at the ceiling
        assert!(w.check("2024-06-01").is_empty());
        w.term(2, 1, Rank::DivisionDeputy, "2020-01-01", None);
        w.term(3, 1, Rank::DivisionDeputy, "2020-01-01", Some("2024-06-01")); // ended on as_of
        w.term(4, 1, Rank::DivisionDeputy, "2024-06-02", None); // appointed the day after
        let findings = w.check("2024-06-01");
        let above = only(&findings, R::LeaderAboveGrade);
        assert_eq!(above.key.subject, resident(2).to_string());
        assert_eq!(above.severity, R::LeaderAboveGrade.severity());
        assert_eq!(kinds(above, "institution"), vec![unit(1).to_string()]);
        assert_eq!(kinds(above, "appointment").len(), 1);
        assert!(above.explanation_zh.contains(&resident(2).to_string()));
        assert_whole(&findings, &[1, 2, 3]);
        // A grade missing from the configuration allows nothing above 科员.
        let config = RulesConfig {
            rank_ceilings: Vec::new(),
            ..RulesConfig::default()
        };
        let findings = w.check_with("2024-06-01", &config);
        assert_eq!(of(&findings, R::LeaderAboveGrade).len(), 2); // 1 and 2
        // No registry entry: no ceiling to compare with.
        w.s.institutions.clear();
        assert!(of(&w.check("2024-06-01"), R::LeaderAboveGrade).is_empty());
    }

    // --- The roll ----------------------------------------------------------------------------

    #[test]
    fn mixed_category_flags_public_institution_places_in_an_organ() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.institution(2, K::PublicInstitution);
        w.quota(1, C::PublicInstitution, 9);
        w.quota(2, C::PublicInstitution, 9);
        w.spell(1, 1, "2020-01-01", None).category = C::PublicInstitution;
        w.spell(2, 2, "2020-01-01", None).category = C::PublicInstitution;
        w.spell(3, 1, "2020-01-01", Some("2024-06-01")).category = C::PublicInstitution;
        w.spell(4, 1, "2024-06-02", None).category = C::PublicInstitution;
        w.spell(5, 1, "2020-01-01", Some("2024-05-31")).category = C::PublicInstitution;
        let findings = w.check("2024-06-01");
        let mixed = only(&findings, R::MixedCategory);
        assert_eq!(mixed.key.institution, unit(1).to_string());
        assert_eq!(mixed.key.subject, resident(1).to_string());
        assert_eq!(
            mixed.evidence,
            [person(&resident(1)), institution(&unit(1))].into()
        );
        assert_whole(&findings, &[1]);
    }

    #[test]
    fn mixed_category_flags_political_legal_places_outside_political_legal_organs() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.institution(2, K::Organ).political_legal = true;
        w.quota(1, C::PoliticalLegal, 9);
        w.quota(2, C::PoliticalLegal, 9);
        w.spell(1, 1, "2020-01-01", None).category = C::PoliticalLegal;
        w.spell(2, 2, "2020-01-01", None).category = C::PoliticalLegal;
        let findings = w.check("2024-06-01");
        assert_eq!(
            only(&findings, R::MixedCategory).key.institution,
            unit(1).to_string()
        );
    }

    #[test]
    fn duplicate_enrollment_is_keyed_on_the_smallest_institution() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.institution(2, K::Organ);
        w.quota(1, C::Administrative, 9);
        w.quota(2, C::Administrative, 9);
        w.spell(1, 2, "2020-01-01", None);
        w.spell(1, 1, "2020-01-01", None);
        let findings = w.check("2024-06-01");
        let dup = only(&findings, R::DuplicateEnrollment);
        assert_eq!(dup.key.institution, unit(1).to_string());
        assert_eq!(dup.key.subject, resident(1).to_string());
        assert_eq!((dup.actual, dup.limit), (2, 1));
        assert_eq!(kinds(dup, "institution").len(), 2);
        assert_eq!(kinds(dup, "person"), vec![resident(1).to_string()]);
        assert_whole(&findings, &[1]);
        // Left the first roll on as_of, or joins the second the day after: one roll only.
        w.s.spells[1].spell.valid_to = Some(d("2024-06-01"));
        assert!(of(&w.check("2024-06-01"), R::DuplicateEnrollment).is_empty());
        w.s.spells[1].spell.valid_to = None;
        w.s.spells[0].spell.valid_from = d("2024-06-02");
        assert!(of(&w.check("2024-06-01"), R::DuplicateEnrollment).is_empty());
    }

    #[test]
    fn unregistered_institution_on_the_roll() {
        let mut w = World::default();
        w.quota(1, C::Administrative, 9);
        w.spell(1, 1, "2020-01-01", None);
        let findings = w.check("2024-06-01");
        let unregistered = only(&findings, R::UnregisteredInstitution);
        assert_eq!(unregistered.key.subject, "");
        assert_eq!(unregistered.key.period, "");
        assert_eq!(kinds(unregistered, "person"), vec![resident(1).to_string()]);
        // Registered and active: nothing.
        w.institution(1, K::Organ);
        assert!(w.check("2024-06-01").is_empty());
        // Abolished on as_of: fires; abolished the day after: not yet.
        let facts = &mut w.s.institutions[0];
        facts.status = InstitutionStatus::Abolished;
        facts.status_since = Some(d("2024-06-01"));
        assert_eq!(
            of(&w.check("2024-06-01"), R::UnregisteredInstitution).len(),
            1
        );
        w.s.institutions[0].status_since = Some(d("2024-06-02"));
        assert!(w.check("2024-06-01").is_empty());
        // Nobody on the roll any more: nothing.
        w.s.institutions[0].status_since = Some(d("2024-01-01"));
        w.s.spells[0].spell.valid_to = Some(d("2024-06-01"));
        assert!(w.check("2024-06-01").is_empty());
    }

    // --- Entries -----------------------------------------------------------------------------

    #[test]
    fn approvals_are_used_up_in_order_and_the_next_entry_fires() {
        let mut w = World::default();
        w.approval(1, "并编审〔2024〕1号", 2, ("2024-01-01", "2024-12-31"));
        w.entry(3, 1, "2024-03-01", Some("并编审〔2024〕1号"));
        w.entry(1, 1, "2024-02-01", Some("并编审〔2024〕1号"));
        w.entry(2, 1, "2024-02-01", Some("并编审〔2024〕1号"));
        let findings = w.check("2024-06-01");
        let fired = only(&findings, R::HireWithoutApproval);
        assert_eq!(fired.key.subject, resident(3).to_string());
        assert_eq!(fired.key.period, "2024-03-01");
        assert_eq!(
            kinds(fired, "personnel_event"),
            vec![w.s.entries[0].record.0.clone()]
        );
        assert_eq!(kinds(fired, "hiring_approval").len(), 1);
        assert!(
            fired.explanation_en.contains("already used"),
            "{}",
            fired.explanation_en
        );
        assert_whole(&findings, &[1, 2, 3]);
        // Two entries on one date: the later arrival is the one left out.
        w.s.entries.remove(0);
        w.s.approvals[0].record.approved_entries = 1;
        w.s.entries[0].arrival = 20;
        w.s.entries[1].arrival = 10;
        let findings = w.check("2024-06-01");
        assert_eq!(
            only(&findings, R::HireWithoutApproval).key.subject,
            resident(1).to_string()
        );
    }

    #[test]
    fn an_entry_uses_the_approval_that_expires_first() {
        let mut w = World::default();
        w.approval(1, "A1", 1, ("2024-01-01", "2024-12-31"));
        w.approval(1, "A1", 1, ("2024-01-01", "2024-06-30"));
        w.entry(1, 1, "2024-03-01", Some("A1"));
        w.entry(2, 1, "2024-09-01", Some("A1"));
        assert!(of(&w.check("2024-10-01"), R::HireWithoutApproval).is_empty());
    }

    #[test]
    fn an_approval_covers_entries_from_issue_to_expiry_inclusive() {
        let mut w = World::default();
        w.approval(1, "A1", 9, ("2024-02-01", "2024-06-30"));
        w.entry(1, 1, "2024-06-30", Some("A1")); // the last valid day
        w.entry(2, 1, "2024-02-01", Some("A1")); // the day of issue
        assert!(of(&w.check("2024-10-01"), R::HireWithoutApproval).is_empty());
        w.entry(3, 1, "2024-07-01", Some("A1")); // expired the day before
        w.entry(4, 1, "2024-01-31", Some("A1")); // not yet issued
        let findings = w.check("2024-10-01");
        let fired: BTreeSet<String> = of(&findings, R::HireWithoutApproval)
            .iter()
            .map(|f| f.key.subject.clone())
            .collect();
        assert_eq!(
            fired,
            [resident(3).to_string(), resident(4).to_string()].into()
        );
        assert!(
            of(&findings, R::HireWithoutApproval)
                .iter()
                .all(|f| f.explanation_en.contains("not valid"))
        );
    }

    #[test]
    fn entries_without_a_matching_approval_fire() {
        let mut w = World::default();
        w.approval(1, "A1", 9, ("2024-01-01", "2024-12-31"));
        w.entry(1, 1, "2024-03-01", None);
        w.entry(2, 1, "2024-03-01", Some("A2"));
        w.entry(3, 2, "2024-03-01", Some("A1")); // another institution's approval
        w.entry(4, 1, "2024-03-01", Some("A1")).category = C::ServiceWorker;
        w.entry(5, 1, "2024-03-01", Some("A1")); // the one that matches
        let findings = w.check("2024-06-01");
        let fired = of(&findings, R::HireWithoutApproval);
        assert_eq!(fired.len(), 4);
        assert!(fired.iter().all(|f| kinds(f, "hiring_approval").is_empty()));
        assert!(
            fired
                .iter()
                .all(|f| f.key.subject != resident(5).to_string())
        );
        let no_number = fired
            .iter()
            .find(|f| f.key.subject == resident(1).to_string())
            .unwrap();
        assert!(no_number.explanation_en.contains("no hiring approval"));
    }

    #[test]
    fn over_plan_sums_the_latest_plan_of_each_channel() {
        let mut w = World::default();
        w.plan(1, 2024, HiringChannel::OpenRecruitment, 5);
        w.plan(1, 2024, HiringChannel::OpenRecruitment, 1); // supersedes the 5
        w.plan(1, 2024, HiringChannel::Transfer, 1);
        w.plan(1, 2025, HiringChannel::Transfer, 9);
        w.plan(1, 2023, HiringChannel::Transfer, 1);
        w.entry(1, 1, "2024-01-01", None);
        w.entry(2, 1, "2024-12-31", None).channel = Some(HiringChannel::Transfer);
        w.entry(3, 1, "2023-12-31", None); // the year before
        w.entry(4, 1, "2025-01-01", None); // the year after
        let findings = w.check("2025-06-01");
        assert!(of(&findings, R::OverPlan).is_empty());
        w.entry(5, 1, "2024-06-01", None).channel = None;
        let findings = w.check("2025-06-01");
        let over = only(&findings, R::OverPlan);
        assert_eq!(over.key.subject, "ADMINISTRATIVE");
        assert_eq!(over.key.period, "2024");
        assert_eq!((over.actual, over.limit), (3, 2));
        assert_eq!(kinds(over, "personnel_event").len(), 3);
        assert_eq!(
            kinds(over, "staffing_plan"),
            vec![w.s.plans[1].id.0.clone(), w.s.plans[2].id.0.clone()]
        );
        // No plan at all: the limit is 0.
        w.s.plans.clear();
        let findings = w.check("2025-06-01");
        assert_eq!(of(&findings, R::OverPlan).len(), 3);
    }

    /// A 2024 plan of 5 places in 行政编制: 2 kept for policy placement, 3 for open recruitment.
    fn reserve_of_two() -> World {
        let mut w = World::default();
        w.plan(1, 2024, HiringChannel::OpenRecruitment, 3);
        w.plan(1, 2024, HiringChannel::PolicyPlacement, 2);
        w
    }

    #[test]
    fn reserve_shortfall_fires_when_other_channels_eat_the_reserve() {
        let mut w = reserve_of_two();
        for p in 1..=4 {
            w.entry(p, 1, "2024-03-01", None);
        }
        let findings = w.check("2024-06-01");
        assert!(
            of(&findings, R::OverPlan).is_empty(),
            "4 entries of 5 planned"
        );
        let short = only(&findings, R::ReserveShortfall);
        assert_eq!(short.key.institution, unit(1).to_string());
        assert_eq!(short.key.subject, "ADMINISTRATIVE");
        assert_eq!(short.key.period, "2024");
        assert_eq!((short.actual, short.limit), (4, 3));
        assert_eq!(short.severity, crate::domain::findings::Severity::Medium);
        assert_eq!(kinds(short, "personnel_event").len(), 4);
        assert_eq!(kinds(short, "staffing_plan").len(), 2);
        // By how much: one of the two places kept is gone, one place is left for two placements.
        assert!(
            short.explanation_zh.contains("挤占预留 1 名"),
            "{}",
            short.explanation_zh
        );
        assert!(
            short
                .explanation_en
                .contains("eating 1 of the reserve: 1 places left for 2"),
            "{}",
            short.explanation_en
        );
        // Entries with no channel named count as the other channels'.
        w.entry(5, 1, "2024-04-01", None).channel = None;
        let findings = w.check("2024-06-01");
        let short = only(&findings, R::ReserveShortfall);
        assert_eq!((short.actual, short.limit), (5, 3));
        assert!(short.explanation_zh.contains("挤占预留 2 名"));
        assert!(of(&findings, R::OverPlan).is_empty());
    }

    #[test]
    fn reserve_shortfall_does_not_fire_just_under_or_once_the_reserve_is_placed() {
        // The other channels took exactly their 3: the 2 places kept are still free.
        let mut w = reserve_of_two();
        for p in 1..=3 {
            w.entry(p, 1, "2024-03-01", None);
        }
        let findings = w.check("2024-06-01");
        assert!(of(&findings, R::ReserveShortfall).is_empty());
        // One placement made and one more other entry: 1 place left, 1 placement needed, but the
        // other channels took 4 of their 3, so the one needed place is gone.
        w.entry(4, 1, "2024-04-01", None).channel = Some(HiringChannel::PolicyPlacement);
        assert!(of(&w.check("2024-06-01"), R::ReserveShortfall).is_empty());
        w.entry(5, 1, "2024-05-01", None);
        let findings = w.check("2024-06-01");
        let short = only(&findings, R::ReserveShortfall);
        assert_eq!((short.actual, short.limit), (4, 3));
        // Both placements made: nothing is needed any more, whatever the others took (an entry
        // past the plan is OVER_PLAN's).
        w.entry(6, 1, "2024-05-02", None).channel = Some(HiringChannel::PolicyPlacement);
        let findings = w.check("2024-06-01");
        assert!(of(&findings, R::ReserveShortfall).is_empty());
        assert_eq!(only(&findings, R::OverPlan).actual, 6);
        // No reserve planned: never fires.
        let mut w = World::default();
        w.plan(1, 2024, HiringChannel::OpenRecruitment, 1);
        w.entry(1, 1, "2024-03-01", None);
        w.entry(2, 1, "2024-03-02", None);
        let findings = w.check("2024-06-01");
        assert!(of(&findings, R::ReserveShortfall).is_empty());
        assert_eq!(of(&findings, R::OverPlan).len(), 1);
    }

    #[test]
    fn reserve_shortfall_counts_entries_by_the_calendar_year_of_their_date() {
        let mut w = reserve_of_two();
        for p in 1..=3 {
            w.entry(p, 1, "2024-03-01", None);
        }
        // The last day of the year counts against 2024's plan; the first of the next does not.
        w.entry(4, 1, "2025-01-01", None);
        assert!(of(&w.check("2025-06-01"), R::ReserveShortfall).is_empty());
        w.entry(5, 1, "2024-12-31", None);
        let findings = w.check("2025-06-01");
        let short = only(&findings, R::ReserveShortfall);
        assert_eq!(short.key.period, "2024");
        // A placement on 2023-12-31 fills nothing of 2024's reserve.
        w.entry(6, 1, "2023-12-31", None).channel = Some(HiringChannel::PolicyPlacement);
        assert_eq!(of(&w.check("2025-06-01"), R::ReserveShortfall).len(), 1);
    }

    // --- Pay ---------------------------------------------------------------------------------

    #[test]
    fn pay_for_someone_never_on_a_roll_is_not_on_roll() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.quota(1, C::Administrative, 9);
        w.pay(1, 1, "2024-05");
        let findings = w.check("2024-06-01");
        let ghost = only(&findings, R::PaidNotOnRoll);
        assert_eq!(ghost.key.institution, unit(1).to_string());
        assert_eq!(ghost.key.subject, resident(1).to_string());
        assert_eq!(ghost.key.period, "2024-05");
        assert_eq!(
            ghost.evidence,
            [record("payroll_line", &w.s.payroll[0].id)].into()
        );
        assert!(
            ghost.explanation_zh.contains("8123.45"),
            "{}",
            ghost.explanation_zh
        );
        assert_whole(&findings, &[1]);
        // Hired after the period: still not on a roll then, and no exit before it.
        w.spell(1, 1, "2024-06-01", None);
        let findings = w.check("2024-06-01");
        assert_eq!(kinds(only(&findings, R::PaidNotOnRoll), "person").len(), 1);
        // Hired on the period's last day: on the roll.
        w.s.spells[0].spell.valid_from = d("2024-05-31");
        assert!(w.check("2024-06-01").is_empty());
    }

    #[test]
    fn pay_in_the_period_of_an_exit_is_fine_and_after_it_is_not() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.exit(1, 1, "2020-01-01", "2024-05-31", PersonStatus::Retired);
        w.pay(1, 1, "2024-05");
        assert!(w.check("2024-07-01").is_empty());
        w.pay(1, 1, "2024-06");
        let findings = w.check("2024-07-01");
        let after = only(&findings, R::PaidAfterExit);
        assert_eq!(after.key.period, "2024-06");
        assert_eq!(kinds(after, "person"), vec![resident(1).to_string()]);
        assert!(after.explanation_en.contains("retired on 2024-05-31"));
        assert!(of(&findings, R::PaidNotOnRoll).is_empty());
        // An exit on the first day of the period: not active a single day of it.
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.exit(1, 1, "2020-01-01", "2024-05-01", PersonStatus::Deceased);
        w.pay(1, 1, "2024-05");
        let findings = w.check("2024-07-01");
        assert_eq!(only(&findings, R::PaidAfterExit).key.period, "2024-05");
    }

    #[test]
    fn pay_by_an_institution_other_than_the_roll_is_a_mismatch_unless_seconded() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.institution(2, K::Organ);
        w.institution(3, K::Organ);
        w.quota(1, C::Administrative, 9);
        w.spell(1, 1, "2020-01-01", None);
        w.pay(1, 2, "2024-05");
        let findings = w.check("2024-06-01");
        let mismatch = only(&findings, R::PayUnitMismatch);
        assert_eq!(mismatch.key.institution, unit(2).to_string());
        assert_eq!(kinds(mismatch, "institution"), vec![unit(1).to_string()]);
        assert_eq!(kinds(mismatch, "person"), vec![resident(1).to_string()]);
        assert_eq!(kinds(mismatch, "payroll_line").len(), 1);
        // Seconded to the payer during the period: fine.
        w.s.spells[0].spell.valid_to = Some(d("2024-05-20"));
        let seconded = w.spell(1, 1, "2024-05-20", None);
        seconded.status = PersonStatus::Seconded;
        seconded.seconded_to = Some(unit(2));
        assert!(w.check("2024-06-01").is_empty());
        // Seconded elsewhere: still a mismatch.
        w.s.spells[1].spell.seconded_to = Some(unit(3));
        assert_eq!(of(&w.check("2024-06-01"), R::PayUnitMismatch).len(), 1);
        // Moved to the payer's roll during the period: fine.
        w.s.spells[1].spell = Spell {
            institution: unit(2),
            status: PersonStatus::Active,
            seconded_to: None,
            ..w.s.spells[1].spell.clone()
        };
        w.quota(2, C::Administrative, 9);
        assert!(w.check("2024-06-01").is_empty());
    }

    #[test]
    fn double_pay_needs_two_paying_institutions() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.institution(2, K::Organ);
        w.quota(1, C::Administrative, 9);
        w.spell(1, 1, "2020-01-01", None);
        w.pay(1, 1, "2024-05");
        w.pay(1, 1, "2024-05"); // two lines from one payer
        assert!(w.check("2024-06-01").is_empty());
        w.pay(1, 2, "2024-05");
        w.pay(1, 2, "2024-04"); // another period
        let findings = w.check("2024-06-01");
        let double = only(&findings, R::DoublePay);
        assert_eq!(double.key.institution, unit(1).to_string());
        assert_eq!(double.key.period, "2024-05");
        assert_eq!((double.actual, double.limit), (2, 1));
        assert_eq!(kinds(double, "payroll_line").len(), 3);
        assert_whole(&findings, &[1]);
        assert_eq!(of(&findings, R::PayUnitMismatch).len(), 2);
    }

    // --- Funding -----------------------------------------------------------------------------

    #[test]
    fn funded_over_quota_reads_the_quota_and_roll_on_the_last_day() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.quota(1, C::Administrative, 10);
        w.spell(1, 1, "2020-01-01", None);
        w.spell(2, 1, "2020-01-01", None);
        w.spell(3, 1, "2024-05-31", None); // hired on the last day: counts
        w.spell(4, 1, "2024-06-01", None); // hired the day after: does not
        w.spell(5, 1, "2020-01-01", Some("2024-05-31")); // left on the last day: does not
        w.funding(1, "2024-05", 3);
        assert!(of(&w.check("2024-07-01"), R::FundedOverQuota).is_empty());
        w.funding(1, "2024-05", 9).accepted_at = 0; // older: superseded
        w.funding(1, "2024-05", 4); // latest
        let findings = w.check("2024-07-01");
        let over = only(&findings, R::FundedOverQuota);
        assert_eq!(over.key.period, "2024-05");
        assert_eq!(over.key.subject, "ADMINISTRATIVE");
        assert_eq!((over.actual, over.limit), (4, 3));
        assert_eq!(
            over.evidence,
            [
                record("funding", &w.s.fundings[2].id),
                record("quota", &w.s.quotas[0].id)
            ]
            .into()
        );
        // The quota binds when it is below the roll; none in force means 0.
        w.s.quotas[0].record.approved_count = 2;
        assert_eq!(only(&w.check("2024-07-01"), R::FundedOverQuota).limit, 2);
        w.s.quotas[0].record.effective_to = Some(d("2024-05-31"));
        assert_eq!(only(&w.check("2024-07-01"), R::FundedOverQuota).limit, 0);
    }

    #[test]
    fn budget_funding_of_a_self_funded_institution() {
        let mut w = World::default();
        w.institution(1, K::PublicInstitution).funding_form = Some(FundingForm::SelfFunded);
        w.institution(2, K::PublicInstitution);
        w.funding(1, "2024-05", 0);
        w.funding(2, "2024-05", 0).record.amount_fen = 100;
        assert!(w.check("2024-07-01").is_empty());
        w.funding(1, "2024-05", 0).record.amount_fen = 1;
        let findings = w.check("2024-07-01");
        let wrong = only(&findings, R::SelfFundedBudgetPay);
        assert_eq!(wrong.key.institution, unit(1).to_string());
        assert_eq!(wrong.key.period, "2024-05");
        assert_eq!(kinds(wrong, "institution"), vec![unit(1).to_string()]);
        assert_eq!(kinds(wrong, "funding"), vec![w.s.fundings[2].id.0.clone()]);
        // A later record of nothing withdraws the funding.
        w.funding(1, "2024-05", 0);
        assert!(w.check("2024-07-01").is_empty());
    }

    #[test]
    fn unregistered_institution_for_pay_and_funding_periods() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.quota(2, C::Administrative, 9);
        w.spell(1, 2, "2020-01-01", None);
        w.pay(1, 2, "2024-05");
        w.funding(2, "2024-05", 1);
        let findings = w.check("2024-07-01");
        let found: Vec<&str> = of(&findings, R::UnregisteredInstitution)
            .iter()
            .map(|f| f.key.period.as_str())
            .collect();
        assert_eq!(found, ["", "2024-05"]);
        let period = of(&findings, R::UnregisteredInstitution)[1];
        assert_eq!(kinds(period, "payroll_line").len(), 1);
        assert_eq!(kinds(period, "funding").len(), 1);
        // Merged on the period's first day: that period fires; merged on its second day: only the
        // next period does.
        let mut w = World::default();
        let facts = w.institution(1, K::Organ);
        facts.status = InstitutionStatus::Merged;
        facts.status_since = Some(d("2024-05-01"));
        w.funding(1, "2024-05", 1);
        w.funding(1, "2024-04", 1);
        let findings = w.check("2024-03-01");
        let periods: Vec<&str> = of(&findings, R::UnregisteredInstitution)
            .iter()
            .map(|f| f.key.period.as_str())
            .collect();
        assert_eq!(periods, ["2024-05"]);
        w.s.institutions[0].status_since = Some(d("2024-05-02"));
        let findings = w.check("2024-03-01");
        assert!(of(&findings, R::UnregisteredInstitution).is_empty());
        w.funding(1, "2024-06", 1);
        let findings = w.check("2024-03-01");
        assert_eq!(
            only(&findings, R::UnregisteredInstitution).key.period,
            "2024-06"
        );
    }

    // --- Scope and the report ------------------------------------------------------------------

    #[test]
    fn scope_decides_which_findings_are_returned() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.institution(2, K::Organ);
        w.quota(1, C::Administrative, 0);
        w.quota(2, C::Administrative, 9);
        w.spell(1, 1, "2020-01-01", None);
        w.spell(1, 2, "2020-01-01", None);
        w.pay(2, 2, "2024-05");
        let as_of = d("2024-06-01");
        let config = RulesConfig::default();
        let institutions = |n: u32| Scope {
            everything: false,
            institutions: [unit(n).to_string()].into(),
            residents: BTreeSet::new(),
        };
        // Institution 2 in scope: its pay finding, but not institution 1's quota, nor the
        // duplicate enrollment (its resident is not in scope).
        let codes: Vec<RuleCode> = check(&w.s, &institutions(2), as_of, &config)
            .iter()
            .map(|f| f.key.code)
            .collect();
        assert_eq!(codes, [R::PaidNotOnRoll]);
        let codes: Vec<RuleCode> = check(&w.s, &institutions(1), as_of, &config)
            .iter()
            .map(|f| f.key.code)
            .collect();
        assert_eq!(codes, [R::OverQuota, R::QuotaFull]);
        // The resident in scope: the duplicate enrollment (keyed on institution 1) is returned.
        let residents = Scope {
            everything: false,
            institutions: BTreeSet::new(),
            residents: [resident(1).to_string()].into(),
        };
        let codes: Vec<RuleCode> = check(&w.s, &residents, as_of, &config)
            .iter()
            .map(|f| f.key.code)
            .collect();
        assert_eq!(codes, [R::DuplicateEnrollment]);
        // REGIONAL_BALANCE is never a finding.
        assert!(
            w.check("2024-06-01")
                .iter()
                .all(|f| f.key.code != R::RegionalBalance)
        );
    }

    #[test]
    fn regional_balance_sums_per_jurisdiction_and_category() {
        let mut w = World::default();
        w.institution(1, K::Organ);
        w.institution(2, K::Organ);
        w.institution(3, K::Organ).jurisdiction = Jurisdiction::parse("140106").unwrap();
        w.quota(1, C::Administrative, 3);
        w.quota(2, C::Administrative, 2);
        w.quota(2, C::ServiceWorker, 1).record.effective_from = d("2024-06-02"); // not yet in force
        w.spell(1, 1, "2020-01-01", None);
        w.spell(2, 2, "2020-01-01", None);
        w.spell(3, 3, "2020-01-01", None);
        w.spell(4, 2, "2020-01-01", Some("2024-06-01"));
        w.spell(5, 9, "2020-01-01", None); // no registry entry: no jurisdiction
        let rows = regional_balance(&w.s, d("2024-06-01"));
        let row = |jurisdiction: &str, category, approved, active| RegionalBalance {
            jurisdiction: Jurisdiction::parse(jurisdiction).unwrap(),
            category,
            approved,
            active,
            surplus: approved - active,
        };
        assert_eq!(
            rows,
            [
                row("140105", C::Administrative, 5, 2),
                row("140106", C::Administrative, 0, 1),
            ]
        );
    }

    // --- Properties ----------------------------------------------------------------------------

    pub(crate) const CATEGORIES: [QuotaCategory; 3] =
        [C::Administrative, C::PublicInstitution, C::PoliticalLegal];
    const STATUSES: [PersonStatus; 6] = [
        PersonStatus::Active,
        PersonStatus::Active,
        PersonStatus::Seconded,
        PersonStatus::OnLeave,
        PersonStatus::Retired,
        PersonStatus::Departed,
    ];

    pub(crate) fn day(offset: u64) -> NaiveDate {
        d("2024-01-01") + chrono::Days::new(offset)
    }

    pub(crate) fn month(offset: u64) -> &'static str {
        ["2024-01", "2024-02", "2024-03", "2024-04"][usize::try_from(offset % 4).unwrap()]
    }

    /// Small random worlds over 4 institutions and 5 people, dates in the first months of 2024.
    pub(crate) fn arb_world() -> impl Strategy<Value = Snapshot> {
        let institutions =
            prop::collection::vec((0u32..4, any::<bool>(), 0usize..3, 0u64..120), 0..4);
        let quotas = prop::collection::vec((0u32..4, 0usize..3, 0u32..4, 0u64..120, 0i64..4), 0..6);
        let spells = prop::collection::vec(
            (
                0u32..5,
                0u32..4,
                0usize..3,
                0usize..6,
                0u64..120,
                prop::option::of(1u64..60),
                prop::option::of(0u32..4),
            ),
            0..10,
        );
        let terms = prop::collection::vec(
            (
                0u32..5,
                0u32..4,
                0usize..9,
                0u64..120,
                prop::option::of(1u64..60),
            ),
            0..4,
        );
        let posts = prop::collection::vec((0u32..4, 0u32..3), 0..3);
        let entries = prop::collection::vec(
            (
                0u32..5,
                0u32..4,
                0u64..120,
                prop::option::of(0u32..2),
                0i64..3,
                any::<bool>(),
            ),
            0..6,
        );
        let approvals =
            prop::collection::vec((0u32..4, 0u32..2, 0u32..3, 0u64..120, 0u64..60), 0..4);
        let plans = prop::collection::vec((0u32..4, 0u32..3, any::<bool>()), 0..3);
        let payroll = prop::collection::vec((0u32..5, 0u32..4, 0u64..4), 0..8);
        let fundings = prop::collection::vec((0u32..4, 0u64..4, 0u32..4, any::<bool>()), 0..4);
        (
            institutions,
            quotas,
            spells,
            terms,
            posts,
            entries,
            approvals,
            plans,
            payroll,
            fundings,
        )
            .prop_map(
                |(
                    institutions,
                    quotas,
                    spells,
                    terms,
                    posts,
                    entries,
                    approvals,
                    plans,
                    payroll,
                    fundings,
                )| {
                    let mut w = World::default();
                    for (n, organ, status, since) in institutions {
                        let facts = w.institution(
                            n,
                            if organ {
                                K::Organ
                            } else {
                                K::PublicInstitution
                            },
                        );
                        facts.status = [
                            InstitutionStatus::Active,
                            InstitutionStatus::Merged,
                            InstitutionStatus::Abolished,
                        ][status];
                        facts.status_since = Some(day(since));
                        facts.political_legal = since % 2 == 0;
                        if !organ && since % 3 == 0 {
                            facts.funding_form = Some(FundingForm::SelfFunded);
                        }
                    }
                    for (n, category, approved, from, accepted_at) in quotas {
                        let quota = w.quota(n, CATEGORIES[category], approved);
                        quota.record.effective_from = day(from);
                        quota.accepted_at = accepted_at;
                    }
                    for (p, n, category, status, from, length, host) in spells {
                        let spell = w.spell(p, n, "2024-01-01", None);
                        spell.category = CATEGORIES[category];
                        spell.status = STATUSES[status];
                        spell.valid_from = day(from);
                        spell.valid_to = length.map(|l| day(from + l));
                        if spell.status == PersonStatus::Seconded {
                            spell.seconded_to = host.map(unit);
                        }
                    }
                    for (p, n, rank, from, length) in terms {
                        w.term(p, n, Rank::ALL[rank], "2024-01-01", None);
                        let term = &mut w.s.terms.last_mut().unwrap().term;
                        term.valid_from = day(from);
                        term.valid_to = length.map(|l| day(from + l));
                    }
                    for (n, approved) in posts {
                        w.post(n, approved);
                    }
                    for (p, n, date, number, arrival, placed) in entries {
                        let number = number.map(|k| format!("A{k}"));
                        let entry = w.entry(p, n, "2024-01-01", number.as_deref());
                        entry.date = day(date);
                        entry.arrival = arrival;
                        if placed {
                            entry.channel = Some(HiringChannel::PolicyPlacement);
                        }
                    }
                    for (n, number, count, issued, length) in approvals {
                        let approval = w.approval(
                            n,
                            &format!("A{number}"),
                            count,
                            ("2024-01-01", "2024-01-01"),
                        );
                        approval.record.issued_on = day(issued);
                        approval.record.valid_until = day(issued + length);
                    }
                    for (n, approved, reserve) in plans {
                        let channel = if reserve {
                            HiringChannel::PolicyPlacement
                        } else {
                            HiringChannel::OpenRecruitment
                        };
                        w.plan(n, 2024, channel, approved);
                    }
                    for (p, n, m) in payroll {
                        w.pay(p, n, month(m));
                    }
                    for (n, m, headcount, paid) in fundings {
                        w.funding(n, month(m), headcount).record.amount_fen =
                            if paid { 100 } else { 0 };
                    }
                    w.s
                },
            )
    }

    fn arb_scope() -> impl Strategy<Value = Scope> {
        (
            prop::collection::btree_set(0u32..5, 0..5),
            prop::collection::btree_set(0u32..6, 0..6),
        )
            .prop_map(|(institutions, residents)| Scope {
                everything: false,
                institutions: institutions
                    .into_iter()
                    .map(|n| unit(n).to_string())
                    .collect(),
                residents: residents
                    .into_iter()
                    .map(|p| resident(p).to_string())
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn check_is_deterministic_and_a_sub_scope_is_a_filter(
            snapshot in arb_world(), scope in arb_scope(), as_of in 0u64..120
        ) {
            let config = RulesConfig::default();
            let everything = Scope { everything: true, ..Scope::default() };
            let as_of = day(as_of);
            let all = check(&snapshot, &everything, as_of, &config);
            prop_assert_eq!(&all, &check(&snapshot, &everything, as_of, &config));
            let mut keys: Vec<&FindingKey> = all.iter().map(|f| &f.key).collect();
            keys.dedup();
            prop_assert_eq!(keys.len(), all.len());
            prop_assert!(all.windows(2).all(|pair| pair[0].key < pair[1].key));
            let filtered: Vec<Finding> = all.iter().filter(|f| scope.covers(&f.key)).cloned().collect();
            prop_assert_eq!(filtered, check(&snapshot, &scope, as_of, &config));
            // Without the rules of counts, the rest is found the same.
            let uncounted: Vec<Finding> = all
                .iter()
                .filter(|f| !COUNTED.contains(&f.key.code))
                .cloned()
                .collect();
            prop_assert_eq!(uncounted, check_rows(&snapshot, &everything, as_of, &config));
            for finding in &all {
                prop_assert_eq!(finding.severity, finding.key.code.severity());
                prop_assert!(finding.key.code != R::RegionalBalance);
                // Stored whole; the edge masks them per reader.
                for p in 0..5 {
                    let masked = resident(p).masked();
                    prop_assert!(!finding.explanation_zh.contains(&masked));
                    prop_assert!(!finding.explanation_en.contains(&masked));
                }
            }
        }
    }
}
