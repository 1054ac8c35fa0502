//! Aggregates: the few numbers each dirty key's findings depend on, and the rules as pure
//! functions of those numbers and the few rows a key names (issue 14, step 2). A store keeps the
//! aggregates in the push's transaction ([`super::dirty`] says which keys a record dirties) and
//! re-decides a dirty key by reading only them, instead of a [`Snapshot`] of whole institutions.
//! The snapshot engine ([`super::rules::check`]) stays the oracle: a property test holds that every
//! `decide_*` returns exactly the oracle's findings of its key (numbers, explanations and evidence),
//! and that an aggregate built from a snapshot and then updated by a record equals the aggregate
//! built from the snapshot with the record.
//!
//! | aggregate | key | holds | updated by | a store reads for one key |
//! |---|---|---|---|---|
//! | [`Headcount`] | (institution, category) | the people on the roll (ACTIVE, SECONDED, ON_LEAVE, from `valid_from` to the exclusive `valid_to`), per date it changes | [`Headcount::apply`] with the person's spell rewrite | one row: the last change on or before the date |
//! | [`Quotas`] | (institution, category) | every quota pushed, latest first; in force = the latest covering the date | [`InForce::push`] | the quotas of the key (a handful) |
//! | [`Leaders`] | (institution, level, position) | the leaders with a term there, per date it changes | [`Leaders::apply`] with the person's term rewrite | one row, as for headcount |
//! | [`Posts`] | (institution, level, position) | leader posts, as quotas | [`InForce::push`] | the posts of the key |
//! | [`Fundings`] | (institution, category, period) | the latest funding | [`Fundings::restate`] | one row, plus headcount and quota on the period's last day |
//! | [`Pay`] | (resident, period) | per payer: the live lines and their sum | [`Pay::add_line`], [`Pay::reverse_line`] | the payers of the key (one or two), plus the person's spells |
//! | [`Plans`] | (institution, category, year) | entries of the year, of them the policy placements; the latest plan per channel | [`Plans::apply`] with the person's entry rewrite, [`Plans::push`] | two counts and the plans (one per channel) |
//!
//! Which function decides which dirty key (`DirtyKey::covers` says which findings a key covers):
//!
//! | dirty key | decided by | reads besides the aggregates |
//! |---|---|---|
//! | `Headcount(i, c)` | [`decide_headcount`] | the people on the roll on the date (evidence) |
//! | `LeaderPosts(i, l, pos)` | [`decide_leader_posts`] | the terms on the post on the date (evidence) |
//! | `LeaderGrade(i, p)` | [`decide_leader_grade`] | p's terms at i, i's registry entry |
//! | `Funding(i, c, m)`, `FundedLimit(i, c, periods)` | [`decide_funding`] per period | i's registry entry |
//! | `PersonPeriod(p, m)`, `Person(p, periods)` (pay part) | [`decide_pay`] per period | p's spells, at every institution |
//! | `PlanUse(i, c, y)` | [`decide_plan`], [`decide_reserve`] | the entries of the year (evidence) |
//!
//! What did not go into numbers, and why:
//!
//! - A headcount counts people, not spells: the oracle counts the distinct people active on a
//!   date, so a person's spells on one key are merged into runs before they count (derived spells
//!   never overlap on one roll, but nothing in a [`Snapshot`] says so). A rewrite takes off the
//!   runs of the person's spells before and puts on those after, which is exact whatever the
//!   spells; a store must apply a personnel event with all of the person's spells, as
//!   [`Rewrite`] has them, not the spell the event touched.
//! - Evidence: a roll (OVER_QUOTA, QUOTA_FULL), the appointments on a post and the entries of a
//!   year are cited as the oracle cites them, the first
//!   [`EVIDENCE_SAMPLE`](super::findings::EVIDENCE_SAMPLE) of the list ([`sampled`]); the `decide_*` functions take the rows a store reads with a LIMIT.
//! - The pay rules read the person's spells, not a number: whether they were on a roll in the
//!   period, which rolls (named in PAY_UNIT_MISMATCH), seconded where, the latest exit before it
//!   (its date is in PAID_AFTER_EXIT's text), and whether they have a spell at all (the person is
//!   evidence only then). A person has a handful; a store reads them by resident.
//! - LEADER_ABOVE_GRADE is the highest rank among a leader's terms in force against the ceiling
//!   of the institution's grade: rows of one leader, and the registry entry (the oracle reads the
//!   first entry of an institution in the snapshot; the registry keeps one).
//! - The explanations are written here as in `rules.rs`, word for word (QUOTA_FULL's threshold
//!   test in floating point included); the oracle test fails on any drift. Once the store decides
//!   from aggregates, the two should share their text builders.
//! - Updating a [`Headcount`] moves the count of every later change date in the run: a backdated
//!   open spell rewrites the rest of the key's history (see [`Occupancy`] for the trade).
//!
//! What remains: HIRE_WITHOUT_APPROVAL (its greedy allocation draws approvals in order of entry
//! date, so a backdated entry re-decides every later entry of its group: the aggregate is the
//! allocation itself, not a number), UNREGISTERED_INSTITUTION (per institution and period: the
//! receipts, and the people on the roll on the check date), MIXED_CATEGORY and
//! DUPLICATE_ENROLLMENT (the person's placements on the check date; rows, no numbers).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};

use super::dirty::Rewrite;
use super::explain::{self, PayProblem};
use super::findings::{
    Entry, Evidence, Finding, FindingKey, InstitutionFacts, PersonTerm, Pushed, RecordRef,
    RuleCode, RulesConfig, Snapshot, sampled,
};
use super::roll::Spell;
use super::rules::{
    Reserve, approved, count, covers_some_day, in_force, institution, is_exit, is_placement, key,
    person, record,
};
use super::{
    Coded, Funding, FundingForm, HiringChannel, LeaderLevel, LeaderPosition, LeaderPost,
    PayrollLine, Period, PersonStatus, Quota, QuotaCategory, Rank, ResidentId, StaffingPlan, Uscc,
};

// ---------------------------------------------------------------------------------------------
// Counts over time.

/// How many people hold each key on a date, kept as the count from each date the count changes
/// on: reading a date is one entry, the last one on or before it. Only dates where the count
/// changes are kept, so two occupancies that count the same people on every date are equal.
///
/// Updating a run `[from, to)` moves the count of every kept date in the run: a backdated open
/// spell moves all the later ones. Keeping the changes (+1, −1) instead makes the update two
/// entries and the read a sum over the key's whole history; reads (every check of the key) are
/// the more frequent, and most events are dated near today.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupancy<K> {
    counts: BTreeMap<K, BTreeMap<NaiveDate, i64>>,
}

impl<K> Default for Occupancy<K> {
    fn default() -> Self {
        Occupancy {
            counts: BTreeMap::new(),
        }
    }
}

/// The count on `on`: that of the last change on or before it.
fn count_on(counts: &BTreeMap<NaiveDate, i64>, on: NaiveDate) -> i64 {
    counts.range(..=on).next_back().map_or(0, |(_, n)| *n)
}

impl<K: Ord + Clone> Occupancy<K> {
    /// The people holding `key` on `on`.
    pub fn at(&self, key: &K, on: NaiveDate) -> i64 {
        self.counts
            .get(key)
            .map_or(0, |counts| count_on(counts, on))
    }

    /// Adds (`sign` 1) or takes off (−1) one person's stretches `[from, to)` per key, merged into
    /// runs so that the person counts once on any date.
    fn add_person(&mut self, stretches: Vec<(K, NaiveDate, Option<NaiveDate>)>, sign: i64) {
        let mut per_key: BTreeMap<K, Vec<(NaiveDate, Option<NaiveDate>)>> = BTreeMap::new();
        for (key, from, to) in stretches {
            if to.is_none_or(|to| from < to) {
                per_key.entry(key).or_default().push((from, to));
            }
        }
        for (key, mut stretches) in per_key {
            stretches.sort();
            let mut runs: Vec<(NaiveDate, Option<NaiveDate>)> = Vec::new();
            for (from, to) in stretches {
                match runs.last_mut() {
                    // Overlapping or touching: one run (an open end absorbs everything after).
                    Some(run) if run.1.is_none_or(|end| from <= end) => {
                        run.1 = run.1.zip(to).map(|(a, b)| a.max(b));
                    }
                    _ => runs.push((from, to)),
                }
            }
            for (from, to) in runs {
                self.shift(&key, from, to, sign);
            }
        }
    }

    /// Moves the count of `[from, to)` by `by`.
    fn shift(&mut self, key: &K, from: NaiveDate, to: Option<NaiveDate>, by: i64) {
        let counts = self.counts.entry(key.clone()).or_default();
        // The run's ends become change dates (with the counts they have now), then every change
        // date in the run moves.
        for day in std::iter::once(from).chain(to) {
            let n = count_on(counts, day);
            counts.entry(day).or_insert(n);
        }
        let run = match to {
            Some(to) => counts.range_mut(from..to),
            None => counts.range_mut(from..),
        };
        run.for_each(|(_, n)| *n += by);
        // Only the ends can now repeat the count before them.
        for day in std::iter::once(from).chain(to) {
            let before = day.pred_opt().map_or(0, |eve| count_on(counts, eve));
            if counts.get(&day) == Some(&before) {
                counts.remove(&day);
            }
        }
        if counts.is_empty() {
            self.counts.remove(key);
        }
    }
}

impl<K: Ord + Clone> Occupancy<K> {
    /// An occupancy that knows the counts it is given, each from its date on: what a set-based
    /// re-check reads (a `COUNT` per key on each date it asks about). `at` is exact on those dates
    /// only, which are the only ones that re-check reads.
    pub fn from_counts(counts: impl IntoIterator<Item = (K, NaiveDate, i64)>) -> Occupancy<K> {
        let mut occupancy = Occupancy::default();
        for (key, on, n) in counts {
            occupancy
                .counts
                .entry(key)
                .or_insert_with(BTreeMap::new)
                .insert(on, n);
        }
        occupancy
    }
}

/// A move of one key's count: `by` more people from `from` up to the day before `to` (open when
/// `None`). What a store applies to the counts it keeps when a person's history is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift<K> {
    /// The roll or post.
    pub key: K,
    /// The first day moved.
    pub from: NaiveDate,
    /// The first day not moved.
    pub to: Option<NaiveDate>,
    /// People more (negative: fewer).
    pub by: i64,
}

impl<K: Ord + Clone> Occupancy<K> {
    /// An occupancy that knows one count, `n` people on `key` on `on`: a store's read of the
    /// counts it keeps, for the `decide_*` functions.
    pub fn known(key: K, on: NaiveDate, n: i64) -> Occupancy<K> {
        let mut occupancy = Occupancy::default();
        if n != 0 {
            occupancy.counts.insert(key, BTreeMap::from([(on, n)]));
        }
        occupancy
    }

    /// Every kept count: (key, the date it changes on, the count from then on).
    pub fn counts(&self) -> impl Iterator<Item = (&K, NaiveDate, i64)> {
        self.counts
            .iter()
            .flat_map(|(key, counts)| counts.iter().map(move |(day, n)| (key, *day, *n)))
    }

    /// Applies a shift (as a store applies it to its rows).
    pub fn shift_by(&mut self, shift: &Shift<K>) {
        self.shift(&shift.key, shift.from, shift.to, shift.by);
    }

    /// The net shifts of one person's stretches before and after a rewrite, as maximal runs of
    /// one non-zero move per key (a hire is one shift, an exit one, a rewrite that moved nothing
    /// none).
    fn net_shifts(
        before: Vec<(K, NaiveDate, Option<NaiveDate>)>,
        after: Vec<(K, NaiveDate, Option<NaiveDate>)>,
    ) -> Vec<Shift<K>> {
        let mut delta = Occupancy::default();
        delta.add_person(before, -1);
        delta.add_person(after, 1);
        delta.runs()
    }

    /// Many shifts (of a batch's rewrites) as one: maximal runs of one non-zero move per key, no
    /// two of a key overlapping. They move the counts as `shifts` do, so a store applies them to
    /// its rows in one statement, each row moved by at most one run.
    pub fn merged(shifts: &[Shift<K>]) -> Vec<Shift<K>> {
        let mut delta = Occupancy::default();
        for shift in shifts {
            delta.shift_by(shift);
        }
        delta.runs()
    }

    /// The counts read as moves from nothing: each change date's count up to the next.
    fn runs(self) -> Vec<Shift<K>> {
        let mut shifts = Vec::new();
        for (key, counts) in self.counts {
            let days: Vec<(NaiveDate, i64)> = counts.into_iter().collect();
            for (i, &(from, by)) in days.iter().enumerate() {
                if by != 0 {
                    shifts.push(Shift {
                        key: key.clone(),
                        from,
                        to: days.get(i + 1).map(|(to, _)| *to),
                        by,
                    });
                }
            }
        }
        shifts
    }
}

/// The people on each (institution, category) roll.
pub type Headcount = Occupancy<(Uscc, QuotaCategory)>;

/// One person's on-roll stretches per (institution, category).
fn roll_stretches<'a>(
    spells: impl Iterator<Item = &'a Spell>,
) -> Vec<((Uscc, QuotaCategory), NaiveDate, Option<NaiveDate>)> {
    spells
        .filter(|spell| spell.status.is_on_roll())
        .map(|s| {
            (
                (s.institution.clone(), s.category),
                s.valid_from,
                s.valid_to,
            )
        })
        .collect()
}

impl Headcount {
    /// The headcount of every roll in the snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Headcount {
        let mut by_person: BTreeMap<&ResidentId, Vec<&Spell>> = BTreeMap::new();
        for person in &snapshot.spells {
            by_person
                .entry(&person.resident_id)
                .or_default()
                .push(&person.spell);
        }
        let mut headcount = Headcount::default();
        for spells in by_person.values() {
            headcount.add_person(roll_stretches(spells.iter().copied()), 1);
        }
        headcount
    }

    /// A personnel event re-derived the person's spells (all of them, before and after).
    pub fn apply(&mut self, spells: &Rewrite<Spell>) {
        self.add_person(roll_stretches(spells.before.iter()), -1);
        self.add_person(roll_stretches(spells.after.iter()), 1);
    }

    /// What [`Headcount::apply`] moves, as shifts a store applies to the counts it keeps.
    pub fn shifts(spells: &Rewrite<Spell>) -> Vec<Shift<(Uscc, QuotaCategory)>> {
        Occupancy::net_shifts(
            roll_stretches(spells.before.iter()),
            roll_stretches(spells.after.iter()),
        )
    }
}

/// The leaders on each (institution, level, position) post.
pub type Leaders = Occupancy<(Uscc, LeaderLevel, LeaderPosition)>;

type Post = (Uscc, LeaderLevel, LeaderPosition);

fn term_stretches<'a>(
    terms: impl Iterator<Item = &'a PersonTerm>,
) -> Vec<(Post, NaiveDate, Option<NaiveDate>)> {
    terms
        .map(|t| {
            let t = &t.term;
            (
                (t.institution.clone(), t.level, t.position),
                t.valid_from,
                t.valid_to,
            )
        })
        .collect()
}

impl Leaders {
    /// The leaders of every post in the snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Leaders {
        let mut by_person: BTreeMap<&ResidentId, Vec<&PersonTerm>> = BTreeMap::new();
        for term in &snapshot.terms {
            by_person.entry(&term.resident_id).or_default().push(term);
        }
        let mut leaders = Leaders::default();
        for terms in by_person.values() {
            leaders.add_person(term_stretches(terms.iter().copied()), 1);
        }
        leaders
    }

    /// An appointment re-derived the person's terms (all of them, before and after).
    pub fn apply(&mut self, terms: &Rewrite<PersonTerm>) {
        self.add_person(term_stretches(terms.before.iter()), -1);
        self.add_person(term_stretches(terms.after.iter()), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Approvals in force.

/// A record approved for a range of dates `[from, to)`, under a key.
pub trait Ranged {
    /// What it approves.
    type Key: Ord + Clone;
    /// The key.
    fn key(&self) -> Self::Key;
    /// First day, and the day after the last.
    fn range(&self) -> (NaiveDate, Option<NaiveDate>);
}

impl Ranged for Quota {
    type Key = (Uscc, QuotaCategory);
    fn key(&self) -> Self::Key {
        (self.institution.clone(), self.category)
    }
    fn range(&self) -> (NaiveDate, Option<NaiveDate>) {
        (self.effective_from, self.effective_to)
    }
}

impl Ranged for LeaderPost {
    type Key = Post;
    fn key(&self) -> Self::Key {
        (self.institution.clone(), self.level, self.position)
    }
    fn range(&self) -> (NaiveDate, Option<NaiveDate>) {
        (self.effective_from, self.effective_to)
    }
}

/// Every record pushed per key, the one pushed last first: the one in force on a date is the
/// latest pushed whose range covers it (docs/RULES.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InForce<T: Ranged> {
    records: BTreeMap<T::Key, Vec<Pushed<T>>>,
}

impl<T: Ranged> Default for InForce<T> {
    fn default() -> Self {
        InForce {
            records: BTreeMap::new(),
        }
    }
}

impl<T: Ranged + Clone> InForce<T> {
    /// From the records of a snapshot.
    pub fn from_records(records: &[Pushed<T>]) -> InForce<T> {
        let mut book = InForce::default();
        records.iter().for_each(|r| book.push(r.clone()));
        book
    }

    /// A record pushed.
    pub fn push(&mut self, record: Pushed<T>) {
        let list = self.records.entry(record.record.key()).or_default();
        list.push(record);
        list.sort_by(|a, b| (b.accepted_at, &b.id).cmp(&(a.accepted_at, &a.id)));
    }

    /// The records of `key` alone: what a decision about that key needs of the book.
    pub fn only(&self, key: &T::Key) -> InForce<T> {
        let mut records = BTreeMap::new();
        if let Some(list) = self.records.get(key) {
            records.insert(key.clone(), list.clone());
        }
        InForce { records }
    }

    /// The record in force for `key` on `on`.
    pub fn in_force(&self, key: &T::Key, on: NaiveDate) -> Option<&Pushed<T>> {
        self.records.get(key).and_then(|list| {
            list.iter().find(|r| {
                let (from, to) = r.record.range();
                in_force(from, to, on)
            })
        })
    }
}

/// Quotas per (institution, category).
pub type Quotas = InForce<Quota>;

/// Leader posts per (institution, level, position).
pub type Posts = InForce<LeaderPost>;

// ---------------------------------------------------------------------------------------------
// Funding, pay and plans.

/// The latest funding per (institution, category, period).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fundings {
    latest: BTreeMap<(Uscc, QuotaCategory, Period), Pushed<Funding>>,
}

impl Fundings {
    /// The latest fundings of a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Fundings {
        let mut fundings = Fundings::default();
        snapshot.fundings.iter().for_each(|f| fundings.restate(f));
        fundings
    }

    /// A funding record restates its period: it is the one judged if pushed last.
    pub fn restate(&mut self, funding: &Pushed<Funding>) {
        let f = &funding.record;
        let key = (f.institution.clone(), f.category, f.period);
        match self.latest.get(&key) {
            Some(old) if (old.accepted_at, &old.id) >= (funding.accepted_at, &funding.id) => {}
            _ => {
                self.latest.insert(key, funding.clone());
            }
        }
    }

    /// The funding judged for (institution, category, period).
    pub fn latest(
        &self,
        institution: &Uscc,
        category: QuotaCategory,
        period: Period,
    ) -> Option<&Pushed<Funding>> {
        self.latest.get(&(institution.clone(), category, period))
    }
}

/// What one institution paid a person for a period: its live lines and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payer {
    /// The live lines.
    pub lines: BTreeSet<RecordRef>,
    /// Their gross amounts summed.
    pub total_fen: i128,
}

/// Per (resident, period), the payers and what each paid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pay {
    payers: BTreeMap<(ResidentId, Period), BTreeMap<Uscc, Payer>>,
}

impl Pay {
    /// The live lines of a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Pay {
        let mut pay = Pay::default();
        snapshot.payroll.iter().for_each(|line| pay.add_line(line));
        pay
    }

    /// A payroll line stored.
    pub fn add_line(&mut self, line: &Pushed<PayrollLine>) {
        let l = &line.record;
        let payer = self
            .payers
            .entry((l.resident_id.clone(), l.period))
            .or_default()
            .entry(l.institution.clone())
            .or_default();
        if payer.lines.insert(line.id.clone()) {
            payer.total_fen += i128::from(l.gross_fen);
        }
    }

    /// A reversal voided a live line.
    pub fn reverse_line(&mut self, voided: &Pushed<PayrollLine>) {
        let l = &voided.record;
        let key = (l.resident_id.clone(), l.period);
        let Some(payers) = self.payers.get_mut(&key) else {
            return;
        };
        if let Some(payer) = payers.get_mut(&l.institution)
            && payer.lines.remove(&voided.id)
        {
            payer.total_fen -= i128::from(l.gross_fen);
            if payer.lines.is_empty() {
                payers.remove(&l.institution);
            }
        }
        if payers.is_empty() {
            self.payers.remove(&key);
        }
    }

    /// The payers of a person for a period, by USCC.
    pub fn payers(&self, resident: &ResidentId, period: Period) -> Option<&BTreeMap<Uscc, Payer>> {
        self.payers.get(&(resident.clone(), period))
    }
}

type PlanYear = (Uscc, QuotaCategory, i32);

/// A year's entries and, of them, those through policy placement.
pub type Taken = (i64, i64);

/// Per (institution, category, year): the entries taken, those of them through policy placement
/// (the reserve's), and the latest plan per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plans {
    entries: BTreeMap<PlanYear, i64>,
    placements: BTreeMap<PlanYear, i64>,
    plans: BTreeMap<PlanYear, BTreeMap<HiringChannel, Pushed<StaffingPlan>>>,
}

impl Plans {
    /// The entries and plans of a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Plans {
        let mut plans = Plans::default();
        snapshot.entries.iter().for_each(|e| plans.count(e, 1));
        snapshot.plans.iter().for_each(|p| plans.push(p));
        plans
    }

    /// A personnel event re-derived the person's entries (all of them, before and after).
    pub fn apply(&mut self, entries: &Rewrite<Entry>) {
        entries.before.iter().for_each(|e| self.count(e, -1));
        entries.after.iter().for_each(|e| self.count(e, 1));
    }

    fn count(&mut self, entry: &Entry, by: i64) {
        let key = (entry.institution.clone(), entry.category, entry.date.year());
        let counts = if is_placement(entry) {
            vec![&mut self.entries, &mut self.placements]
        } else {
            vec![&mut self.entries]
        };
        for counted in counts {
            let n = counted.entry(key.clone()).or_default();
            *n += by;
            if *n == 0 {
                counted.remove(&key);
            }
        }
    }

    /// A staffing plan pushed: the latest of its channel counts.
    pub fn push(&mut self, plan: &Pushed<StaffingPlan>) {
        let p = &plan.record;
        let channels = self
            .plans
            .entry((p.institution.clone(), p.category, p.year))
            .or_default();
        match channels.get(&p.channel) {
            Some(old) if (old.accepted_at, &old.id) >= (plan.accepted_at, &plan.id) => {}
            _ => {
                channels.insert(p.channel, plan.clone());
            }
        }
    }

    /// What [`Plans::apply`] moves: the entries more (or fewer) per (institution, category,
    /// year), and of them the placements, a pair not both zero, as a store applies them to the
    /// counts it keeps.
    pub fn moves(entries: &Rewrite<Entry>) -> Vec<(PlanYear, Taken)> {
        let mut moved = Plans::default();
        moved.apply(entries);
        let years: BTreeSet<&PlanYear> = moved
            .entries
            .keys()
            .chain(moved.placements.keys())
            .collect();
        years
            .into_iter()
            .map(|year| {
                let (institution, category, y) = year;
                (year.clone(), moved.taken(institution, *category, *y))
            })
            .collect()
    }

    /// Plans that know one year's counts and plans: a store's read of the counts it keeps.
    pub fn known(
        (institution, category, year): (&Uscc, QuotaCategory, i32),
        (taken, placed): Taken,
        plans: &[Pushed<StaffingPlan>],
    ) -> Plans {
        let mut known = Plans::default();
        let key = (institution.clone(), category, year);
        if taken != 0 {
            known.entries.insert(key.clone(), taken);
        }
        if placed != 0 {
            known.placements.insert(key, placed);
        }
        plans
            .iter()
            .filter(|p| {
                (&p.record.institution, p.record.category, p.record.year)
                    == (institution, category, year)
            })
            .for_each(|p| known.push(p));
        known
    }

    /// The entries of the year, and of them those through policy placement.
    pub fn taken(&self, institution: &Uscc, category: QuotaCategory, year: i32) -> Taken {
        let key = (institution.clone(), category, year);
        let of = |counts: &BTreeMap<PlanYear, i64>| counts.get(&key).copied().unwrap_or(0);
        (of(&self.entries), of(&self.placements))
    }

    /// The year's plans seen from its policy-placement reserve.
    pub fn reserve(&self, institution: &Uscc, category: QuotaCategory, year: i32) -> Reserve {
        let (taken, placed) = self.taken(institution, category, year);
        Reserve::of(
            self.counted(institution, category, year)
                .map(|p| (p.record.channel, p.record.approved_count)),
            taken,
            placed,
        )
    }

    /// The plans counted for the year, one per channel.
    pub fn counted(
        &self,
        institution: &Uscc,
        category: QuotaCategory,
        year: i32,
    ) -> impl Iterator<Item = &Pushed<StaffingPlan>> {
        self.plans
            .get(&(institution.clone(), category, year))
            .into_iter()
            .flat_map(BTreeMap::values)
    }
}

/// Every aggregate, as a store would keep them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    /// People per roll.
    pub headcount: Headcount,
    /// Quotas.
    pub quotas: Quotas,
    /// Leaders per post.
    pub leaders: Leaders,
    /// Leader posts.
    pub posts: Posts,
    /// Latest fundings.
    pub fundings: Fundings,
    /// Pay per person and period.
    pub pay: Pay,
    /// Entries and plans per year.
    pub plans: Plans,
}

impl Aggregates {
    /// Every aggregate of a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot) -> Aggregates {
        Aggregates {
            headcount: Headcount::from_snapshot(snapshot),
            quotas: Quotas::from_records(&snapshot.quotas),
            leaders: Leaders::from_snapshot(snapshot),
            posts: Posts::from_records(&snapshot.leader_posts),
            fundings: Fundings::from_snapshot(snapshot),
            pay: Pay::from_snapshot(snapshot),
            plans: Plans::from_snapshot(snapshot),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The rules on the aggregates.

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

/// OVER_QUOTA and QUOTA_FULL of (institution, category) on `as_of`, the findings of
/// `DirtyKey::Headcount`. `people` are those on the roll on `as_of`, for the evidence only.
pub fn decide_headcount(
    uscc: &Uscc,
    category: QuotaCategory,
    headcount: &Headcount,
    quotas: &Quotas,
    people: &BTreeSet<ResidentId>,
    config: &RulesConfig,
    as_of: NaiveDate,
) -> Vec<Finding> {
    let unit = (uscc.clone(), category);
    let quota = quotas.in_force(&unit, as_of);
    let approved = approved(quota);
    let active = headcount.at(&unit, as_of);
    let evidence = || -> BTreeSet<Evidence> {
        let mut evidence = sampled(people.iter().map(person));
        evidence.extend(quota.map(|q| record("quota", &q.id)));
        evidence
    };
    let mut found = Vec::new();

    if active > approved {
        found.push(finding(
            key(RuleCode::OverQuota, uscc, category.code(), ""),
            (active, approved),
            explain::over_quota(uscc, category, (active, approved), quota.is_some()),
            evidence(),
        ));
    }

    let threshold = config.quota_full_threshold;
    let full = if approved > 0 {
        active as f64 >= threshold * approved as f64 - 1e-9
    } else {
        active > 0
    };
    if full {
        found.push(finding(
            key(RuleCode::QuotaFull, uscc, category.code(), ""),
            (active, approved),
            explain::quota_full(uscc, category, (active, approved), threshold),
            evidence(),
        ));
    }
    found
}

/// OVER_LEADER_POSTS of a post on `as_of`. `terms` are the terms on the post covering `as_of`,
/// for the evidence only.
pub fn decide_leader_posts(
    (uscc, level, position): &Post,
    leaders: &Leaders,
    posts: &Posts,
    terms: &[&PersonTerm],
    as_of: NaiveDate,
) -> Option<Finding> {
    let (level, position) = (*level, *position);
    let key_of_post = (uscc.clone(), level, position);
    let leaders = leaders.at(&key_of_post, as_of);
    let post = posts.in_force(&key_of_post, as_of);
    let posts = post.map_or(0, |p| i64::from(p.record.approved_count));
    if leaders <= posts {
        return None;
    }
    let mut evidence = sampled(terms.iter().map(|t| record("appointment", &t.record)));
    evidence.extend(post.map(|p| record("leader_post", &p.id)));
    Some(finding(
        key(
            RuleCode::OverLeaderPosts,
            uscc,
            format!("{level}/{position}"),
            "",
        ),
        (leaders, posts),
        explain::over_leader_posts(uscc, (level, position), (leaders, posts)),
        evidence,
    ))
}

/// LEADER_ABOVE_GRADE of a leader at an institution on `as_of`, from the leader's terms there
/// (any others are ignored) and the institution's registry entry.
pub fn decide_leader_grade(
    uscc: &Uscc,
    resident: &ResidentId,
    terms: &[PersonTerm],
    facts: Option<&InstitutionFacts>,
    config: &RulesConfig,
    as_of: NaiveDate,
) -> Option<Finding> {
    let facts = facts?;
    let ceiling = config
        .rank_ceilings
        .iter()
        .find(|(grade, _)| *grade == facts.grade)
        .map_or(Rank::Clerk, |(_, rank)| *rank);
    let above: Vec<&PersonTerm> = terms
        .iter()
        .filter(|t| {
            t.resident_id == *resident
                && t.term.institution == *uscc
                && in_force(t.term.valid_from, t.term.valid_to, as_of)
                && t.term.rank < ceiling
        })
        .collect();
    let highest = above.iter().map(|t| t.term.rank).min()?;
    let mut evidence: BTreeSet<Evidence> = above
        .iter()
        .map(|t| record("appointment", &t.record))
        .collect();
    evidence.insert(institution(uscc));
    Some(finding(
        key(RuleCode::LeaderAboveGrade, uscc, resident.as_str(), ""),
        (0, 0),
        explain::leader_above_grade(resident, uscc, facts.grade, (highest, ceiling)),
        evidence,
    ))
}

/// FUNDED_OVER_QUOTA and SELF_FUNDED_BUDGET_PAY of (institution, category, period): the latest
/// funding against the quota and the roll on the period's last day, and the registry entry.
pub fn decide_funding(
    (uscc, category, period): (&Uscc, QuotaCategory, Period),
    aggregates: &Aggregates,
    facts: Option<&InstitutionFacts>,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let Some(funding) = aggregates.fundings.latest(uscc, category, period) else {
        return found;
    };
    let f = &funding.record;
    let funded = i64::from(f.funded_headcount);

    let day = period.last_day();
    let unit = (uscc.clone(), category);
    let quota = aggregates.quotas.in_force(&unit, day);
    let approved = approved(quota);
    let active = aggregates.headcount.at(&unit, day);
    let limit = approved.min(active);
    if funded > limit {
        let mut evidence: BTreeSet<Evidence> = [record("funding", &funding.id)].into();
        evidence.extend(quota.map(|q| record("quota", &q.id)));
        found.push(finding(
            key(
                RuleCode::FundedOverQuota,
                uscc,
                category.code(),
                period.to_string(),
            ),
            (funded, limit),
            explain::funded_over_quota((uscc, category, period), funded, (approved, active)),
            evidence,
        ));
    }

    let self_funded =
        facts.is_some_and(|facts| facts.funding_form == Some(FundingForm::SelfFunded));
    if self_funded && (f.amount_fen > 0 || f.funded_headcount > 0) {
        found.push(finding(
            key(
                RuleCode::SelfFundedBudgetPay,
                uscc,
                category.code(),
                period.to_string(),
            ),
            (0, 0),
            explain::self_funded_budget_pay((uscc, category, period), f.amount_fen, funded),
            [record("funding", &funding.id), institution(uscc)].into(),
        ));
    }
    found
}

/// PAID_NOT_ON_ROLL, PAID_AFTER_EXIT, PAY_UNIT_MISMATCH and DOUBLE_PAY of a person for a period:
/// the payers of the period against the person's spells (all of them, at every institution).
pub fn decide_pay(
    resident: &ResidentId,
    period: Period,
    pay: &Pay,
    spells: &[Spell],
) -> Vec<Finding> {
    let mut found = Vec::new();
    let Some(payers) = pay.payers(resident, period) else {
        return found;
    };
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
    let exit = spells
        .iter()
        .filter(|s| is_exit(s.status) && s.valid_from <= first)
        .max_by_key(|s| s.valid_from);
    let subject = resident.as_str();

    for (payer, paid) in payers {
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
        let mut evidence: BTreeSet<Evidence> = paid
            .lines
            .iter()
            .map(|l| record("payroll_line", l))
            .collect();
        if !spells.is_empty() {
            evidence.insert(person(resident));
        }
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
        let text = explain::pay(payer, resident, period, paid.total_fen, &problem);
        found.push(finding(
            key(code, payer, subject, period.to_string()),
            (0, 0),
            text,
            evidence,
        ));
    }

    if payers.len() >= 2 {
        let n = count(payers.len());
        let evidence = payers
            .values()
            .flat_map(|paid| &paid.lines)
            .map(|l| record("payroll_line", l))
            .collect();
        let smallest = payers.keys().next().expect("two payers or more");
        found.push(finding(
            key(RuleCode::DoublePay, smallest, subject, period.to_string()),
            (n, 1),
            explain::double_pay(resident, period, payers.keys()),
            evidence,
        ));
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    found
}

/// OVER_PLAN of (institution, category, year). `entries` are the entries of the year, for the
/// evidence only.
pub fn decide_plan(
    (uscc, category, year): (&Uscc, QuotaCategory, i32),
    plans: &Plans,
    entries: &BTreeSet<RecordRef>,
) -> Option<Finding> {
    let plan: i64 = plans
        .counted(uscc, category, year)
        .map(|p| i64::from(p.record.approved_count))
        .sum();
    let (taken, _) = plans.taken(uscc, category, year);
    if taken <= plan {
        return None;
    }
    let mut evidence = sampled(entries.iter().map(|e| record("personnel_event", e)));
    evidence.extend(
        plans
            .counted(uscc, category, year)
            .map(|p| record("staffing_plan", &p.id)),
    );
    Some(finding(
        key(
            RuleCode::OverPlan,
            uscc,
            category.code(),
            format!("{year:04}"),
        ),
        (taken, plan),
        explain::over_plan((uscc, category, year), (taken, plan)),
        evidence,
    ))
}

/// RESERVE_SHORTFALL of (institution, category, year): the other channels' entries against the
/// places the policy-placement reserve leaves them. `entries` as for [`decide_plan`].
pub fn decide_reserve(
    (uscc, category, year): (&Uscc, QuotaCategory, i32),
    plans: &Plans,
    entries: &BTreeSet<RecordRef>,
) -> Option<Finding> {
    let reserve = plans.reserve(uscc, category, year);
    if !reserve.short() {
        return None;
    }
    let mut evidence = sampled(entries.iter().map(|e| record("personnel_event", e)));
    evidence.extend(
        plans
            .counted(uscc, category, year)
            .map(|p| record("staffing_plan", &p.id)),
    );
    Some(finding(
        key(
            RuleCode::ReserveShortfall,
            uscc,
            category.code(),
            format!("{year:04}"),
        ),
        (reserve.others, reserve.others_plan),
        explain::reserve_shortfall((uscc, category, year), &reserve),
        evidence,
    ))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::dirty::Change;
    use crate::domain::dirty::tests::{NOW, arb_arrival, arrive};
    use crate::domain::findings::{PersonSpell, Scope};
    use crate::domain::roll::LeaderTerm;
    use crate::domain::rules::tests::{CATEGORIES, arb_world, d, day, resident, unit};
    use crate::domain::rules::{self};

    use RuleCode as R;

    const LEVELS: [LeaderLevel; 3] = [
        LeaderLevel::Bureau,
        LeaderLevel::Division,
        LeaderLevel::Section,
    ];
    const POSITIONS: [LeaderPosition; 2] = [LeaderPosition::Principal, LeaderPosition::Deputy];
    /// The rules this module decides.
    const DECIDED: [RuleCode; 12] = [
        R::OverQuota,
        R::QuotaFull,
        R::OverLeaderPosts,
        R::LeaderAboveGrade,
        R::FundedOverQuota,
        R::SelfFundedBudgetPay,
        R::PaidNotOnRoll,
        R::PaidAfterExit,
        R::PayUnitMismatch,
        R::DoublePay,
        R::OverPlan,
        R::ReserveShortfall,
    ];

    /// The registry entry the oracle reads: the first of the institution.
    fn facts<'a>(s: &'a Snapshot, uscc: &Uscc) -> Option<&'a InstitutionFacts> {
        s.institutions.iter().find(|f| f.uscc == *uscc)
    }

    /// Every finding of the rules above, decided key by key from the aggregates of `s` and the
    /// few rows each key names, as a store would.
    fn decided(s: &Snapshot, as_of: NaiveDate, config: &RulesConfig) -> Vec<Finding> {
        let all = Aggregates::from_snapshot(s);
        let usccs: BTreeSet<Uscc> = (0..6).map(unit).collect();
        let residents: BTreeSet<ResidentId> = (0..7).map(resident).collect();
        let periods: BTreeSet<Period> = s
            .fundings
            .iter()
            .map(|f| f.record.period)
            .chain(s.payroll.iter().map(|l| l.record.period))
            .collect();
        let years: BTreeSet<i32> = s
            .entries
            .iter()
            .map(|e| e.date.year())
            .chain(s.plans.iter().map(|p| p.record.year))
            .collect();
        let mut found = Vec::new();
        for uscc in &usccs {
            for category in CATEGORIES {
                let people = s
                    .spells
                    .iter()
                    .filter(|p| {
                        let spell = &p.spell;
                        spell.status.is_on_roll()
                            && spell.institution == *uscc
                            && spell.category == category
                            && spell.covers(as_of)
                    })
                    .map(|p| p.resident_id.clone())
                    .collect();
                found.extend(decide_headcount(
                    uscc,
                    category,
                    &all.headcount,
                    &all.quotas,
                    &people,
                    config,
                    as_of,
                ));
                for &period in &periods {
                    found.extend(decide_funding(
                        (uscc, category, period),
                        &all,
                        facts(s, uscc),
                    ));
                }
                for &year in &years {
                    let entries = s
                        .entries
                        .iter()
                        .filter(|e| {
                            e.institution == *uscc
                                && e.category == category
                                && e.date.year() == year
                        })
                        .map(|e| e.record.clone())
                        .collect();
                    found.extend(decide_plan((uscc, category, year), &all.plans, &entries));
                    found.extend(decide_reserve((uscc, category, year), &all.plans, &entries));
                }
            }
            for level in LEVELS {
                for position in POSITIONS {
                    let terms: Vec<&PersonTerm> = s
                        .terms
                        .iter()
                        .filter(|t| {
                            let t = &t.term;
                            t.institution == *uscc
                                && (t.level, t.position) == (level, position)
                                && in_force(t.valid_from, t.valid_to, as_of)
                        })
                        .collect();
                    let post = (uscc.clone(), level, position);
                    found.extend(decide_leader_posts(
                        &post,
                        &all.leaders,
                        &all.posts,
                        &terms,
                        as_of,
                    ));
                }
            }
            for who in &residents {
                let terms: Vec<PersonTerm> = s
                    .terms
                    .iter()
                    .filter(|t| t.resident_id == *who && t.term.institution == *uscc)
                    .cloned()
                    .collect();
                found.extend(decide_leader_grade(
                    uscc,
                    who,
                    &terms,
                    facts(s, uscc),
                    config,
                    as_of,
                ));
            }
        }
        for who in &residents {
            let spells: Vec<Spell> = s
                .spells
                .iter()
                .filter(|p| p.resident_id == *who)
                .map(|p| p.spell.clone())
                .collect();
            for &period in &periods {
                found.extend(decide_pay(who, period, &all.pay, &spells));
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found
    }

    /// The oracle's findings of the rules above.
    fn oracle(s: &Snapshot, as_of: NaiveDate, config: &RulesConfig) -> Vec<Finding> {
        let everything = Scope {
            everything: true,
            ..Scope::default()
        };
        rules::check(s, &everything, as_of, config)
            .into_iter()
            .filter(|f| DECIDED.contains(&f.key.code))
            .collect()
    }

    /// Applies what the store knows of a record that turned `before` into `after`.
    fn update(aggregates: &mut Aggregates, before: &Snapshot, after: &Snapshot, change: &Change) {
        match change {
            Change::Roll {
                spells, entries, ..
            } => {
                aggregates.headcount.apply(spells);
                aggregates.plans.apply(entries);
            }
            Change::Terms { terms, .. } => aggregates.leaders.apply(terms),
            Change::Payroll(_) => {
                if after.payroll.len() > before.payroll.len() {
                    aggregates.pay.add_line(after.payroll.last().unwrap());
                } else if let Some(voided) = before
                    .payroll
                    .iter()
                    .find(|line| after.payroll.iter().all(|l| l.id != line.id))
                {
                    aggregates.pay.reverse_line(voided);
                }
            }
            Change::Funding(_) => aggregates.fundings.restate(after.fundings.last().unwrap()),
            Change::Quota(_) => aggregates.quotas.push(after.quotas.last().unwrap().clone()),
            Change::LeaderPost(_) => aggregates
                .posts
                .push(after.leader_posts.last().unwrap().clone()),
            Change::Plan(_) => aggregates.plans.push(after.plans.last().unwrap()),
            // Approvals and the registry are read as rows, not aggregated.
            Change::Approval(_) | Change::Institution { .. } => {}
        }
    }

    fn spell(n: u32, from: &str, to: Option<&str>) -> Spell {
        Spell {
            institution: unit(n),
            category: QuotaCategory::Administrative,
            rank: Rank::Clerk,
            status: PersonStatus::Active,
            valid_from: d(from),
            valid_to: to.map(d),
            approval_number: None,
            seconded_to: None,
        }
    }

    #[test]
    fn a_person_counts_once_however_their_spells_overlap() {
        let mut s = Snapshot::default();
        for (p, spell) in [
            (1, spell(0, "2024-01-01", Some("2024-03-01"))),
            (1, spell(0, "2024-02-01", None)),
            (2, spell(0, "2024-02-15", Some("2024-02-20"))),
        ] {
            s.spells.push(PersonSpell {
                resident_id: resident(p),
                spell,
            });
        }
        let headcount = Headcount::from_snapshot(&s);
        let unit0 = (unit(0), QuotaCategory::Administrative);
        let at = |date| headcount.at(&unit0, d(date));
        assert_eq!(
            [
                at("2023-12-31"),
                at("2024-01-01"),
                at("2024-02-15"),
                at("2024-02-20"),
                at("2030-01-01")
            ],
            [0, 1, 2, 1, 1]
        );
        // The rewrite that ends the open spell takes the person off from its end.
        let mut updated = headcount.clone();
        let before: Vec<Spell> = s.spells[..2].iter().map(|p| p.spell.clone()).collect();
        let mut after = before.clone();
        after[1].valid_to = Some(d("2024-06-01"));
        updated.apply(&Rewrite { before, after });
        assert_eq!(updated.at(&unit0, d("2024-05-31")), 1);
        assert_eq!(updated.at(&unit0, d("2024-06-01")), 0);
    }

    #[test]
    fn a_term_on_two_posts_counts_on_each() {
        let term = |position, from: &str| PersonTerm {
            resident_id: resident(1),
            term: LeaderTerm {
                institution: unit(0),
                level: LeaderLevel::Division,
                position,
                rank: Rank::DivisionDeputy,
                valid_from: d(from),
                valid_to: None,
            },
            record: RecordRef(format!("140100/organization/{from}")),
        };
        let s = Snapshot {
            terms: vec![
                term(LeaderPosition::Deputy, "2024-01-01"),
                term(LeaderPosition::Principal, "2024-02-01"),
                term(LeaderPosition::Deputy, "2024-03-01"),
            ],
            ..Snapshot::default()
        };
        let leaders = Leaders::from_snapshot(&s);
        let post = |position| (unit(0), LeaderLevel::Division, position);
        assert_eq!(leaders.at(&post(LeaderPosition::Deputy), day(100)), 1);
        assert_eq!(leaders.at(&post(LeaderPosition::Principal), day(100)), 1);
    }

    /// Every kept date changes the count (so equal counts are equal occupancies).
    fn only_changes<K>(occupancy: &Occupancy<K>) -> bool {
        occupancy.counts.values().all(|counts| {
            let mut before = 0;
            counts.values().all(|&n| {
                let changes = n != before;
                before = n;
                changes && n >= 0
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The rules on the aggregates are the oracle's: for every key, the same findings, with
        /// the same numbers, explanations and evidence (or none for both).
        #[test]
        fn the_aggregates_decide_what_the_oracle_finds(world in arb_world(), as_of in 0u64..150) {
            let config = RulesConfig::default();
            let as_of = day(as_of);
            prop_assert_eq!(decided(&world, as_of, &config), oracle(&world, as_of, &config));
        }

        /// A key's own records decide what is in force for it as the whole book does.
        #[test]
        fn a_key_alone_has_in_force_what_the_book_has(world in arb_world(), on in 0u64..150) {
            let book = Quotas::from_records(&world.quotas);
            for quota in &world.quotas {
                let key = quota.record.key();
                let alone = book.only(&key);
                prop_assert_eq!(alone.in_force(&key, day(on)), book.in_force(&key, day(on)));
                prop_assert_eq!(alone.records.len(), 1);
            }
        }

        /// The same after a record arrived, with aggregates updated by the record alone: the
        /// update is exact (built from S then updated by R equals built from S with R).
        #[test]
        fn an_update_by_a_record_is_the_aggregate_of_the_world_with_it(
            world in arb_world(), arrival in arb_arrival(), as_of in 0u64..150
        ) {
            let (after, change) = arrive(&world, &arrival, NOW);
            let mut aggregates = Aggregates::from_snapshot(&world);
            update(&mut aggregates, &world, &after, &change);
            prop_assert_eq!(&aggregates, &Aggregates::from_snapshot(&after));
            prop_assert!(only_changes(&aggregates.headcount) && only_changes(&aggregates.leaders));
            let config = RulesConfig::default();
            let as_of = day(as_of);
            prop_assert_eq!(decided(&after, as_of, &config), oracle(&after, as_of, &config));
        }

        /// The shifts a store applies to its counts move them exactly as `apply` moves the
        /// aggregate: on every date, every roll counts the same people.
        #[test]
        fn shifts_move_the_counts_as_apply_does(world in arb_world(), arrival in arb_arrival()) {
            let (after, change) = arrive(&world, &arrival, NOW);
            let Change::Roll { spells, .. } = &change else {
                return Ok(());
            };
            let mut shifted = Headcount::from_snapshot(&world);
            for shift in Headcount::shifts(spells) {
                prop_assert!(shift.by != 0 && shift.to.is_none_or(|to| shift.from < to));
                shifted.shift_by(&shift);
            }
            prop_assert_eq!(&shifted, &Headcount::from_snapshot(&after));

            // And the entries a store counts per year move as the plans' count does.
            let Change::Roll { entries, .. } = &change else { unreachable!() };
            let mut counted = Plans::from_snapshot(&world);
            for (year, (by, placed)) in Plans::moves(entries) {
                prop_assert!(by != 0 || placed != 0);
                for (counts, by) in [(&mut counted.entries, by), (&mut counted.placements, placed)] {
                    let n = counts.entry(year.clone()).or_default();
                    *n += by;
                    if *n == 0 {
                        counts.remove(&year);
                    }
                }
            }
            let after = Plans::from_snapshot(&after);
            prop_assert_eq!(counted.entries, after.entries);
            prop_assert_eq!(counted.placements, after.placements);
        }

        /// Shifts merged into runs move the counts as the shifts one by one do, and no two runs
        /// of a key overlap (a store moves each of its rows by one run at most).
        #[test]
        fn merged_shifts_move_the_counts_as_the_shifts_do(
            world in arb_world(),
            shifts in proptest::collection::vec((0usize..2, 0u64..150, proptest::option::of(1u64..60), -3i64..4), 0..12),
        ) {
            let keys: Vec<(Uscc, QuotaCategory)> =
                (0u32..2).map(|i| (unit(i), CATEGORIES[i as usize])).collect();
            let shifts: Vec<Shift<(Uscc, QuotaCategory)>> = shifts
                .into_iter()
                .map(|(key, from, length, by)| Shift {
                    key: keys[key].clone(),
                    from: day(from),
                    to: length.map(|length| day(from + length)),
                    by,
                })
                .collect();
            let mut one_by_one = Headcount::from_snapshot(&world);
            shifts.iter().for_each(|shift| one_by_one.shift_by(shift));
            let merged = Headcount::merged(&shifts);
            let mut at_once = Headcount::from_snapshot(&world);
            merged.iter().for_each(|shift| at_once.shift_by(shift));
            prop_assert_eq!(&at_once, &one_by_one);
            for (i, run) in merged.iter().enumerate() {
                prop_assert!(run.by != 0 && run.to.is_none_or(|to| run.from < to));
                for other in &merged[i + 1..] {
                    let apart = other.key != run.key
                        || run.to.is_some_and(|to| to <= other.from)
                        || other.to.is_some_and(|to| to <= run.from);
                    prop_assert!(apart, "{run:?} overlaps {other:?}");
                }
            }
        }

        /// Updates add up: two records, each applied as the store describes it against the data
        /// it arrived to, give the aggregates of the world with both.
        #[test]
        fn updates_by_two_records_are_the_aggregate_of_the_world_with_both(
            world in arb_world(), first in arb_arrival(), second in arb_arrival()
        ) {
            let (middle, one) = arrive(&world, &first, NOW);
            let (after, two) = arrive(&middle, &second, NOW + 1);
            let mut aggregates = Aggregates::from_snapshot(&world);
            update(&mut aggregates, &world, &middle, &one);
            update(&mut aggregates, &middle, &after, &two);
            prop_assert_eq!(&aggregates, &Aggregates::from_snapshot(&after));
        }
    }
}
