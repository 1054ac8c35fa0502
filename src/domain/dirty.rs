//! Dirty keys: which rule inputs a stored record can change, in the domain's words, so that a push
//! re-decides only the findings of those inputs instead of every finding of the institutions it
//! touches (issue 14). [`dirty_keys`] says what a [`Change`] dirties; [`DirtySet::covers`] says
//! whether a finding is decided by re-checking those keys, so it can stand where [`Scope::covers`]
//! stands today. The snapshot engine ([`super::rules::check`]) is the oracle: a property test holds
//! that every finding whose presence or content a change moves is covered by the change's keys.
//!
//! What each key decides (docs/RULES.md fixes what every rule reads):
//!
//! | key | findings decided |
//! |---|---|
//! | `Headcount(i, c)` | OVER_QUOTA, QUOTA_FULL of (i, c): the people on that roll and the quota on the check date |
//! | `Roster(i)` | UNREGISTERED_INSTITUTION of i on the roll (period ""): whether anyone is on it |
//! | `Placement(i, p)` | MIXED_CATEGORY of p at i: the categories p holds there |
//! | `Person(p, periods)` | DUPLICATE_ENROLLMENT of p; PAID_NOT_ON_ROLL, PAID_AFTER_EXIT, PAY_UNIT_MISMATCH of p for those periods (any payer): p's spells |
//! | `PersonPeriod(p, m)` | every pay finding of p for period m, DOUBLE_PAY included: p's lines of m |
//! | `Receipts(i, m)` | UNREGISTERED_INSTITUTION of i for period m: what i was paid or funded in m |
//! | `Funding(i, c, m)` | FUNDED_OVER_QUOTA, SELF_FUNDED_BUDGET_PAY of (i, c, m): the latest funding of the period |
//! | `FundedLimit(i, c, periods)` | FUNDED_OVER_QUOTA of (i, c) for those periods: min(quota, roll) on their last days |
//! | `PlanUse(i, c, y)` | OVER_PLAN, RESERVE_SHORTFALL of (i, c, y): entries of the year (and of them the policy placements) against the plans of every channel |
//! | `Entered(i, p, d)` | HIRE_WITHOUT_APPROVAL of p's entries into i on d (one finding, whatever approvals they cite) |
//! | `Draws(i, c, n, from)` | none by itself: resolved ([`DirtySet::resolve`]) into `Entered` of the entries citing approval n of (i, c) dated on or after `from` (all when none); settled into nothing ([`DirtySet::settle`]) when entries added made it and the number's entries still fit each of its approvals ([`draws_settled`]) |
//! | `LeaderPosts(i, l, pos)` | OVER_LEADER_POSTS of (i, l/pos) |
//! | `LeaderGrade(i, p)` | LEADER_ABOVE_GRADE of leader p at i |
//! | `Registry(i, code)` | the findings of `code` at i that read i's registry entry |
//!
//! What each record kind dirties, and why:
//!
//! | record | keys | why |
//! |---|---|---|
//! | personnel event | for each spell the rewrite adds or drops: | the roll is re-derived from all of the person's events |
//! |  | on-roll spell → `Headcount(i, c)` | it counts on (i, c) while it lasts |
//! |  | on-roll spell → `Roster(i)`, `Placement(i, p)` | someone (p, in c) is on i's roll |
//! |  | on-roll spell → `FundedLimit(i, c, periods ending in it)` | funding is held against the roll on a period's last day |
//! |  | any spell → `Person(p, periods it touches)` (a spell whose end alone moved: the days between the ends) | pay reads whether p is active in the period (any day of it), at which roll, seconded where; an exit moves every later period; a first or last spell moves all (the pay findings cite the person only when they have spells) |
//! |  | for each entry added or dropped → `Entered(i, p, date)`, and when it cites n, `Draws(i, c, n, date)` | entries draw approvals in order, so an entry moves its own verdict and those of later entries citing the same number |
//! |  | entry → `PlanUse(i, c, year)` | it counts against the year's plan |
//! | appointment | each term added or dropped → `LeaderPosts(i, l, pos)`, `LeaderGrade(i, p)` | terms are counted per post and compared with the grade |
//! | payroll line, reversal | `PersonPeriod(p, m)`, `Receipts(i, m)` | a line (or the line a reversal voids) is the pay of (p, m) and a receipt of the payer |
//! | funding | `Funding(i, c, m)`, `Receipts(i, m)` | the latest funding of (i, c, m) is the one judged; it is a receipt of i |
//! | quota | `Headcount(i, c)`, `FundedLimit(i, c, periods ending in its range)` | the quota in force changes only on the days its range covers |
//! | leader post | `LeaderPosts(i, l, pos)` | posts in force |
//! | staffing plan | `PlanUse(i, c, y)` | plans of every channel sum to the year's plan |
//! | hiring approval | `Draws(i, c, n, all)` | every entry citing it lists it as evidence, and draws are re-allocated |
//! | institution | `Registry(i, code)` for the facts that changed | grade → LEADER_ABOVE_GRADE; kind, political-legal → MIXED_CATEGORY; status, since → UNREGISTERED_INSTITUTION (roll and periods); funding form → SELF_FUNDED_BUDGET_PAY; all four when it is new; jurisdiction only moves REGIONAL_BALANCE, a report |
//!
//! Where the findings move in ways a store must mind:
//!
//! - A finding's key does not name the category or approval number of an entry, so which
//!   findings a `Draws` key moves depends on the stored entries citing the number: the store reads
//!   them and [`DirtySet::resolve`] turns the key into the `Entered` keys of those entries. The
//!   reads are bounded by the number's entries, not by the institution's history, and a number
//!   whose entries fit every approval of it is settled from a count, without them. Deciding an
//!   `Entered` key reads every entry of (i, p, d) and every entry citing their numbers (unless
//!   settled): two entries of one person into one institution on one date share a key (the first
//!   raised gives the text, the evidence is merged) even when they cite different approvals.
//! - An approval is evidence of every entry citing its number, whatever the entry's date, so it
//!   dirties the number's whole history; a backdated entry re-allocates every later entry's draw.
//! - DUPLICATE_ENROLLMENT and DOUBLE_PAY are keyed on the smallest USCC involved: a new roll or
//!   payer can move the key itself (one finding resolved, another raised). The keys of a person
//!   cover them whatever the institution, so stored findings must be found by subject and period.
//! - A person's pay findings read their spells at every institution, and cite the person only when
//!   they have a spell: a first spell moves the evidence of all their pay findings.
//! - A spell is open-ended more often than not: a hire, or an exit (which judges every later pay
//!   period), moves funding and pay verdicts without an end date.
//!
//! [`Scope::covers`]: super::findings::Scope::covers

use std::collections::{BTreeSet, HashMap};

use chrono::{Datelike, NaiveDate};

use super::findings::{Entry, FindingKey, InstitutionFacts, PersonTerm, RuleCode};
use super::roll::Spell;
use super::{
    Coded, Funding, HiringApproval, LeaderLevel, LeaderPosition, LeaderPost, PayrollLine, Period,
    PersonStatus, Quota, QuotaCategory, ResidentId, StaffingPlan, Uscc,
};

/// A run of pay periods, both ends included; an end of `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Periods {
    /// The first period, or none before it.
    pub first: Option<Period>,
    /// The last period, or none after it.
    pub last: Option<Period>,
}

impl Periods {
    /// Every period.
    pub const ALL: Periods = Periods {
        first: None,
        last: None,
    };

    /// One period.
    pub fn one(period: Period) -> Periods {
        Periods {
            first: Some(period),
            last: Some(period),
        }
    }

    /// The periods with at least one day in `[from, to)` (pay: "active in a period" is active on
    /// one day of it); none when the range is empty.
    pub fn touching(from: NaiveDate, to: Option<NaiveDate>) -> Option<Periods> {
        let last = match to {
            Some(to) if to <= from => return None,
            Some(to) => Some(Period::containing(to.pred_opt()?)),
            None => None,
        };
        Some(Periods {
            first: Some(Period::containing(from)),
            last,
        })
    }

    /// The periods whose last day lies in `[from, to)` (funding reads the roll and the quota on
    /// a period's last day); none when there are none.
    pub fn ending_in(from: NaiveDate, to: Option<NaiveDate>) -> Option<Periods> {
        let first = Period::containing(from);
        let last = match to {
            // The month before the one containing `to`: its last day is the last one before `to`.
            Some(to) => Some(Period::containing(
                Period::containing(to).first_day().pred_opt()?,
            )),
            None => None,
        };
        if last.is_some_and(|last| last < first) {
            return None;
        }
        Some(Periods {
            first: Some(first),
            last,
        })
    }

    /// The smallest run holding both.
    fn hull(self, other: Periods) -> Periods {
        Periods {
            first: self.first.zip(other.first).map(|(a, b)| a.min(b)),
            last: self.last.zip(other.last).map(|(a, b)| a.max(b)),
        }
    }

    /// Whether the run holds `period`.
    pub fn contains(&self, period: Period) -> bool {
        self.first.is_none_or(|first| first <= period)
            && self.last.is_none_or(|last| period <= last)
    }

    /// Whether the run holds the period a finding key names (`YYYY-MM`).
    fn contains_key(&self, period: &str) -> bool {
        Period::parse(period).is_ok_and(|period| self.contains(period))
    }
}

/// One rule input a record can change; re-checking it decides the findings [`DirtyKey::covers`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DirtyKey {
    /// The people on (institution, category) and its quota on the check date: OVER_QUOTA,
    /// QUOTA_FULL.
    Headcount {
        /// The roll.
        institution: Uscc,
        /// The category.
        category: QuotaCategory,
    },
    /// Whether anyone is on the institution's roll on the check date: UNREGISTERED_INSTITUTION
    /// with period "".
    Roster {
        /// The roll.
        institution: Uscc,
    },
    /// The categories a person holds on one roll: MIXED_CATEGORY.
    Placement {
        /// The roll.
        institution: Uscc,
        /// The person.
        resident: ResidentId,
    },
    /// The person's spells: DUPLICATE_ENROLLMENT, and PAID_NOT_ON_ROLL, PAID_AFTER_EXIT,
    /// PAY_UNIT_MISMATCH of the person for `periods`, whoever paid.
    Person {
        /// The person.
        resident: ResidentId,
        /// The pay periods whose verdict the spells can move.
        periods: Periods,
    },
    /// The person's payroll lines of one period: every pay finding of it, DOUBLE_PAY included.
    PersonPeriod {
        /// The person.
        resident: ResidentId,
        /// The period.
        period: Period,
    },
    /// What an institution was paid or funded for a period: UNREGISTERED_INSTITUTION of it.
    Receipts {
        /// The paying or funded institution.
        institution: Uscc,
        /// The period.
        period: Period,
    },
    /// The latest funding of (institution, category, period): FUNDED_OVER_QUOTA and
    /// SELF_FUNDED_BUDGET_PAY of it.
    Funding {
        /// The funded institution.
        institution: Uscc,
        /// The category.
        category: QuotaCategory,
        /// The period.
        period: Period,
    },
    /// What funding of (institution, category) is held against, the smaller of the quota in force
    /// and the people on the roll on a period's last day, for `periods`: FUNDED_OVER_QUOTA.
    FundedLimit {
        /// The funded institution.
        institution: Uscc,
        /// The category.
        category: QuotaCategory,
        /// The periods whose last day it can move.
        periods: Periods,
    },
    /// Entries of a year against its plan: OVER_PLAN and RESERVE_SHORTFALL of (institution,
    /// category, year).
    PlanUse {
        /// Where the entries went.
        institution: Uscc,
        /// The category.
        category: QuotaCategory,
        /// The calendar year.
        year: i32,
    },
    /// The verdict on a person's entries into an institution on a date: HIRE_WITHOUT_APPROVAL of
    /// (institution, person, date).
    Entered {
        /// The institution entered.
        institution: Uscc,
        /// The person.
        resident: ResidentId,
        /// The date of entry.
        date: NaiveDate,
    },
    /// How the entries citing one approval number of (institution, category) draw on it, from
    /// `from` on (every entry when `None`). It covers nothing by itself: which findings it moves
    /// depends on the entries citing the number, and [`DirtySet::resolve`] turns it into their
    /// [`DirtyKey::Entered`] keys.
    Draws {
        /// The institution entered.
        institution: Uscc,
        /// The category the approval is for.
        category: QuotaCategory,
        /// The approval number cited.
        number: String,
        /// The earliest entry date whose verdict can move.
        from: Option<NaiveDate>,
        /// Whether an entry added made it (rather than one dropped, or an approval): then the
        /// number's entries only grew, and when they still fit its approvals the draw moves no
        /// other entry ([`draws_settled`]).
        added: bool,
    },
    /// Leaders on a post against the posts approved: OVER_LEADER_POSTS.
    LeaderPosts {
        /// The institution.
        institution: Uscc,
        /// The level.
        level: LeaderLevel,
        /// 正 or 副.
        position: LeaderPosition,
    },
    /// One leader's ranks at an institution: LEADER_ABOVE_GRADE.
    LeaderGrade {
        /// The institution.
        institution: Uscc,
        /// The leader.
        resident: ResidentId,
    },
    /// The findings of one rule at an institution that read its registry entry.
    Registry {
        /// The institution.
        institution: Uscc,
        /// LEADER_ABOVE_GRADE, MIXED_CATEGORY, UNREGISTERED_INSTITUTION or SELF_FUNDED_BUDGET_PAY.
        code: RuleCode,
    },
}

impl DirtyKey {
    /// Whether a finding of this key is decided by re-checking this input.
    pub fn covers(&self, key: &FindingKey) -> bool {
        use RuleCode as R;
        let at = |uscc: &Uscc| key.institution == uscc.as_str();
        let about = |resident: &ResidentId| key.subject == resident.as_str();
        match self {
            DirtyKey::Headcount {
                institution,
                category,
            } => {
                matches!(key.code, R::OverQuota | R::QuotaFull)
                    && at(institution)
                    && key.subject == category.code()
            }
            DirtyKey::Roster { institution } => {
                key.code == R::UnregisteredInstitution && at(institution) && key.period.is_empty()
            }
            DirtyKey::Placement {
                institution,
                resident,
            } => key.code == R::MixedCategory && at(institution) && about(resident),
            DirtyKey::Person { resident, periods } => {
                about(resident)
                    && match key.code {
                        R::DuplicateEnrollment => true,
                        R::PaidNotOnRoll | R::PaidAfterExit | R::PayUnitMismatch => {
                            periods.contains_key(&key.period)
                        }
                        _ => false,
                    }
            }
            DirtyKey::PersonPeriod { resident, period } => {
                matches!(
                    key.code,
                    R::PaidNotOnRoll | R::PaidAfterExit | R::PayUnitMismatch | R::DoublePay
                ) && about(resident)
                    && Periods::one(*period).contains_key(&key.period)
            }
            DirtyKey::Receipts {
                institution,
                period,
            } => {
                key.code == R::UnregisteredInstitution
                    && at(institution)
                    && Periods::one(*period).contains_key(&key.period)
            }
            DirtyKey::Funding {
                institution,
                category,
                period,
            } => {
                matches!(key.code, R::FundedOverQuota | R::SelfFundedBudgetPay)
                    && at(institution)
                    && key.subject == category.code()
                    && Periods::one(*period).contains_key(&key.period)
            }
            DirtyKey::FundedLimit {
                institution,
                category,
                periods,
            } => {
                key.code == R::FundedOverQuota
                    && at(institution)
                    && key.subject == category.code()
                    && periods.contains_key(&key.period)
            }
            DirtyKey::PlanUse {
                institution,
                category,
                year,
            } => {
                matches!(key.code, R::OverPlan | R::ReserveShortfall)
                    && at(institution)
                    && key.subject == category.code()
                    && key.period == format!("{year:04}")
            }
            DirtyKey::Entered {
                institution,
                resident,
                date,
            } => {
                key.code == R::HireWithoutApproval
                    && at(institution)
                    && about(resident)
                    && key.period == date.to_string()
            }
            DirtyKey::Draws { .. } => false,
            DirtyKey::LeaderPosts {
                institution,
                level,
                position,
            } => {
                key.code == R::OverLeaderPosts
                    && at(institution)
                    && key.subject == format!("{level}/{position}")
            }
            DirtyKey::LeaderGrade {
                institution,
                resident,
            } => key.code == R::LeaderAboveGrade && at(institution) && about(resident),
            DirtyKey::Registry { institution, code } => key.code == *code && at(institution),
        }
    }
}

/// The rule inputs a push changed; it decides exactly the findings some key covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtySet(BTreeSet<DirtyKey>);

impl DirtySet {
    /// An empty set.
    pub fn new() -> DirtySet {
        DirtySet::default()
    }

    /// Adds what a change dirties.
    pub fn add(&mut self, change: &Change) {
        self.0.extend(dirty_keys(change));
    }

    /// Whether a finding of this key is decided by re-checking the set.
    pub fn covers(&self, key: &FindingKey) -> bool {
        self.0.iter().any(|dirty| dirty.covers(key))
    }

    /// The keys indexed for many `covers` questions ([`DirtyIndex`]).
    pub fn index(&self) -> DirtyIndex<'_> {
        DirtyIndex::new(&self.0)
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &DirtyKey> {
        self.0.iter()
    }

    /// Whether nothing is dirty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The (institution, approval number) pairs whose citing entries [`DirtySet::resolve`] needs.
    pub fn drawn(&self) -> BTreeSet<(&Uscc, &str)> {
        self.0
            .iter()
            .filter_map(|key| match key {
                DirtyKey::Draws {
                    institution,
                    number,
                    ..
                } => Some((institution, number.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The (institution, approval number) pairs only entries added draw on (no entry of theirs
    /// dropped, no approval of theirs changed): whether they are [`draws_settled`] is a count.
    pub fn drawn_by_additions(&self) -> BTreeSet<(&Uscc, &str)> {
        let mut by_additions = BTreeSet::new();
        let mut otherwise = BTreeSet::new();
        for key in &self.0 {
            if let DirtyKey::Draws {
                institution,
                number,
                added,
                ..
            } = key
            {
                let pair = (institution, number.as_str());
                if *added {
                    by_additions.insert(pair);
                } else {
                    otherwise.insert(pair);
                }
            }
        }
        by_additions.retain(|pair| !otherwise.contains(pair));
        by_additions
    }

    /// Drops the draws on the numbers (institution, approval number) only entries added draw on
    /// ([`DirtySet::drawn_by_additions`]) whose entries `fit` each of their approvals
    /// ([`draws_settled`]): such a draw moves no entry but its own.
    pub fn settle(&mut self, fit: impl Fn(&Uscc, &str) -> bool) {
        let settled: BTreeSet<(Uscc, String)> = self
            .drawn_by_additions()
            .into_iter()
            .filter(|(institution, number)| fit(institution, number))
            .map(|(institution, number)| (institution.clone(), number.to_owned()))
            .collect();
        self.0.retain(|key| match key {
            DirtyKey::Draws {
                institution,
                number,
                ..
            } => !settled.contains(&(institution.clone(), number.clone())),
            _ => true,
        });
    }

    /// Adds the [`DirtyKey::Entered`] keys of the entries each [`DirtyKey::Draws`] key moves, given
    /// `cited`: at least every entry citing a number [`DirtySet::drawn`] names (others are passed
    /// over). Returns each added key beside the draw it came from (the first, in key order).
    pub fn resolve<'e>(
        &mut self,
        cited: impl IntoIterator<Item = &'e Entry>,
    ) -> Vec<(DirtyKey, DirtyKey)> {
        // The draws of each (institution, category, number), in key order: the earliest first.
        type Group<'k> = (&'k Uscc, QuotaCategory, &'k str);
        let mut draws: HashMap<Group, Vec<(&Option<NaiveDate>, &DirtyKey)>> = HashMap::new();
        for key in &self.0 {
            if let DirtyKey::Draws {
                institution,
                category,
                number,
                from,
                ..
            } = key
            {
                let group = draws.entry((institution, *category, number)).or_default();
                group.push((from, key));
            }
        }
        if draws.is_empty() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for entry in cited {
            let Some(cites) = entry.approval_number.as_deref() else {
                continue;
            };
            let group = draws.get(&(&entry.institution, entry.category, cites));
            let draw = group.into_iter().flatten().find_map(|(from, draw)| {
                from.is_none_or(|from| from <= entry.date).then_some(*draw)
            });
            if let Some(draw) = draw {
                found.push((draw.clone(), entry));
            }
        }
        let mut added = Vec::new();
        for (draw, entry) in found {
            let entered = DirtyKey::Entered {
                institution: entry.institution.clone(),
                resident: entry.resident_id.clone(),
                date: entry.date,
            };
            if self.0.insert(entered.clone()) {
                added.push((draw, entered));
            }
        }
        added
    }
}

impl DirtyKey {
    /// What a finding it covers names: the institution it is at, or for a person's keys (and an
    /// entry's, which a large institution has thousands of) the person (the finding's subject).
    fn name(&self) -> &str {
        match self {
            DirtyKey::Person { resident, .. }
            | DirtyKey::PersonPeriod { resident, .. }
            | DirtyKey::Entered { resident, .. } => resident.as_str(),
            DirtyKey::Headcount { institution, .. }
            | DirtyKey::Roster { institution }
            | DirtyKey::Placement { institution, .. }
            | DirtyKey::Receipts { institution, .. }
            | DirtyKey::Funding { institution, .. }
            | DirtyKey::FundedLimit { institution, .. }
            | DirtyKey::PlanUse { institution, .. }
            | DirtyKey::Draws { institution, .. }
            | DirtyKey::LeaderPosts { institution, .. }
            | DirtyKey::LeaderGrade { institution, .. }
            | DirtyKey::Registry { institution, .. } => institution.as_str(),
        }
    }
}

/// Keys looked up by what the findings they cover name, so that asking which keys cover a finding
/// costs the keys of its institution and subject, not every key of a batch (a bulk push has tens
/// of thousands).
#[derive(Debug, Default)]
pub struct DirtyIndex<'a> {
    by_name: std::collections::HashMap<&'a str, Vec<&'a DirtyKey>>,
}

impl<'a> DirtyIndex<'a> {
    /// Indexes `keys`.
    pub fn new(keys: impl IntoIterator<Item = &'a DirtyKey>) -> DirtyIndex<'a> {
        let mut index = DirtyIndex::default();
        for key in keys {
            index.by_name.entry(key.name()).or_default().push(key);
        }
        index
    }

    /// The keys that cover a finding of `key`, in the order they were indexed.
    pub fn covering<'k>(&'k self, key: &'k FindingKey) -> impl Iterator<Item = &'a DirtyKey> + 'k {
        let at = self.by_name.get(key.institution.as_str());
        let about = (key.subject != key.institution)
            .then(|| self.by_name.get(key.subject.as_str()))
            .flatten();
        at.into_iter()
            .chain(about)
            .flatten()
            .copied()
            .filter(move |dirty| dirty.covers(key))
    }

    /// Whether some key covers a finding of `key`.
    pub fn covers(&self, key: &FindingKey) -> bool {
        self.covering(key).next().is_some()
    }
}

impl FromIterator<DirtyKey> for DirtySet {
    fn from_iter<I: IntoIterator<Item = DirtyKey>>(keys: I) -> DirtySet {
        DirtySet(keys.into_iter().collect())
    }
}

impl Extend<DirtyKey> for DirtySet {
    fn extend<I: IntoIterator<Item = DirtyKey>>(&mut self, keys: I) {
        self.0.extend(keys);
    }
}

/// Whether the entries citing one approval number of an institution, `entries` of them (in every
/// category), draw on its approvals without moving one another: when they fit in each of them
/// (`approved`: each approval's approved entries, in every category), no approval runs out, so
/// HIRE_WITHOUT_APPROVAL of each entry is its date's alone (a valid approval, or none). Then an
/// entry added moves no other entry's verdict, provided the count is of the entries after it (the
/// number's entries only grew: they fitted before too), and deciding an entry needs none of the
/// others. A number without approvals is settled: every entry citing it fires by itself.
pub fn draws_settled(entries: u64, approved: impl IntoIterator<Item = u32>) -> bool {
    approved
        .into_iter()
        .all(|approved| entries <= u64::from(approved))
}

/// What a derived list of a person looked like before a record arrived and after the rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite<T> {
    /// Before the record.
    pub before: Vec<T>,
    /// After it.
    pub after: Vec<T>,
}

impl<T: PartialEq> Rewrite<T> {
    /// The items dropped or added (a multiset difference; what is in both moved nothing).
    fn changed(&self) -> Vec<&T> {
        let mut changed = self.dropped();
        changed.extend(self.added());
        changed
    }

    /// The items before that are not after.
    fn dropped(&self) -> Vec<&T> {
        missing(&self.before, &self.after)
    }

    /// The items after that were not before.
    fn added(&self) -> Vec<&T> {
        missing(&self.after, &self.before)
    }
}

/// The items of `from` without a twin in `other`, each twin used once.
fn missing<'a, T: PartialEq>(from: &'a [T], other: &[T]) -> Vec<&'a T> {
    let mut used = vec![false; other.len()];
    from.iter()
        .filter(|item| {
            let twin = (0..other.len()).find(|&i| !used[i] && other[i] == **item);
            twin.map(|i| used[i] = true).is_none()
        })
        .collect()
}

/// A record stored by a push, with what the store knows of it at that moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A personnel event: the person's spells and entries as derived from their events before it
    /// and after the rewrite (an event can move the person's roll at the institutions of their old
    /// spells and of their new ones).
    Roll {
        /// The person.
        resident: ResidentId,
        /// Every spell of the person.
        spells: Rewrite<Spell>,
        /// Every entry of the person (HIREs and arriving TRANSFERs).
        entries: Rewrite<Entry>,
    },
    /// An appointment: the person's leader terms before it and after the rewrite.
    Terms {
        /// The person.
        resident: ResidentId,
        /// Every term of the person, with the appointment that opened it.
        terms: Rewrite<PersonTerm>,
    },
    /// A payroll line stored, or the live line a reversal voids (same period, payer and person).
    Payroll(PayrollLine),
    /// A funding record.
    Funding(Funding),
    /// A quota.
    Quota(Quota),
    /// A leader-post approval.
    LeaderPost(LeaderPost),
    /// A staffing-use plan.
    Plan(StaffingPlan),
    /// A hiring approval.
    Approval(HiringApproval),
    /// A registry entry: as the rules saw it before (none if new) and after.
    Institution {
        /// The entry before, if any.
        before: Option<InstitutionFacts>,
        /// The entry after.
        after: InstitutionFacts,
    },
}

/// The rule inputs a change can move, without repeats, in order.
pub fn dirty_keys(change: &Change) -> Vec<DirtyKey> {
    let mut keys: BTreeSet<DirtyKey> = BTreeSet::new();
    match change {
        Change::Roll {
            resident,
            spells,
            entries,
        } => {
            roll_keys(resident, spells, &mut keys);
            let dropped = entries.dropped().into_iter().map(|entry| (entry, false));
            for (entry, added) in dropped.chain(entries.added().into_iter().map(|e| (e, true))) {
                keys.insert(DirtyKey::Entered {
                    institution: entry.institution.clone(),
                    resident: resident.clone(),
                    date: entry.date,
                });
                if let Some(number) = &entry.approval_number {
                    keys.insert(DirtyKey::Draws {
                        institution: entry.institution.clone(),
                        category: entry.category,
                        number: number.clone(),
                        from: Some(entry.date),
                        added,
                    });
                }
                keys.insert(DirtyKey::PlanUse {
                    institution: entry.institution.clone(),
                    category: entry.category,
                    year: entry.date.year(),
                });
            }
        }
        Change::Terms { resident, terms } => {
            for term in terms.changed() {
                let t = &term.term;
                keys.insert(DirtyKey::LeaderPosts {
                    institution: t.institution.clone(),
                    level: t.level,
                    position: t.position,
                });
                keys.insert(DirtyKey::LeaderGrade {
                    institution: t.institution.clone(),
                    resident: resident.clone(),
                });
            }
        }
        Change::Payroll(line) => {
            keys.insert(DirtyKey::PersonPeriod {
                resident: line.resident_id.clone(),
                period: line.period,
            });
            keys.insert(DirtyKey::Receipts {
                institution: line.institution.clone(),
                period: line.period,
            });
        }
        Change::Funding(funding) => {
            keys.insert(DirtyKey::Funding {
                institution: funding.institution.clone(),
                category: funding.category,
                period: funding.period,
            });
            keys.insert(DirtyKey::Receipts {
                institution: funding.institution.clone(),
                period: funding.period,
            });
        }
        Change::Quota(quota) => {
            keys.insert(DirtyKey::Headcount {
                institution: quota.institution.clone(),
                category: quota.category,
            });
            if let Some(periods) = Periods::ending_in(quota.effective_from, quota.effective_to) {
                keys.insert(DirtyKey::FundedLimit {
                    institution: quota.institution.clone(),
                    category: quota.category,
                    periods,
                });
            }
        }
        Change::LeaderPost(post) => {
            keys.insert(DirtyKey::LeaderPosts {
                institution: post.institution.clone(),
                level: post.level,
                position: post.position,
            });
        }
        Change::Plan(plan) => {
            keys.insert(DirtyKey::PlanUse {
                institution: plan.institution.clone(),
                category: plan.category,
                year: plan.year,
            });
        }
        Change::Approval(approval) => {
            keys.insert(DirtyKey::Draws {
                institution: approval.institution.clone(),
                category: approval.category,
                number: approval.approval_number.clone(),
                from: None,
                added: false,
            });
        }
        Change::Institution { before, after } => {
            for code in registry_rules(before.as_ref(), after) {
                keys.insert(DirtyKey::Registry {
                    institution: after.uscc.clone(),
                    code,
                });
            }
        }
    }
    keys.into_iter().collect()
}

/// What a rewrite of a person's spells dirties.
fn roll_keys(resident: &ResidentId, spells: &Rewrite<Spell>, keys: &mut BTreeSet<DirtyKey>) {
    let spans = moved_spans(spells);
    if spans.is_empty() {
        return;
    }
    let mut pay: Option<Periods> = None;
    let mut widen = |periods: Periods| {
        pay = Some(pay.map_or(periods, |pay| pay.hull(periods)));
    };
    // The pay findings cite the person only when they have spells: a first spell, or the last one
    // dropped, moves the evidence of every period.
    if spells.before.is_empty() != spells.after.is_empty() {
        widen(Periods::ALL);
    }
    for Span {
        spell,
        from,
        to,
        whole,
    } in spans
    {
        let uscc = &spell.institution;
        if spell.status.is_on_roll() {
            keys.insert(DirtyKey::Headcount {
                institution: uscc.clone(),
                category: spell.category,
            });
            keys.insert(DirtyKey::Roster {
                institution: uscc.clone(),
            });
            keys.insert(DirtyKey::Placement {
                institution: uscc.clone(),
                resident: resident.clone(),
            });
            if let Some(periods) = Periods::ending_in(from, to) {
                keys.insert(DirtyKey::FundedLimit {
                    institution: uscc.clone(),
                    category: spell.category,
                    periods,
                });
            }
            if let Some(periods) = Periods::touching(from, to) {
                widen(periods);
            }
        } else if is_exit(spell.status) && whole {
            // The pay of a period reads the latest exit on or before its first day: every period
            // from the exit on, whatever the terminal spell's end (so a terminal spell whose end
            // alone moved moves no pay).
            widen(Periods {
                first: Some(Period::containing(from)),
                last: None,
            });
        }
    }
    if let Some(periods) = pay {
        keys.insert(DirtyKey::Person {
            resident: resident.clone(),
            periods,
        });
    }
}

/// Days `[from, to)` of a spell in which a rewrite moved it (`to` of `None`: open).
struct Span<'a> {
    spell: &'a Spell,
    from: NaiveDate,
    to: Option<NaiveDate>,
    /// Whether it is the whole spell (else only its end moved).
    whole: bool,
}

/// The spells a rewrite dropped or added, each with the days it moved. A dropped spell and an
/// added one that differ only in their end (an exit or a transfer closing an open spell, a
/// correction moving it) moved only the days between the two ends; any other spell moved all of
/// its days.
fn moved_spans(spells: &Rewrite<Spell>) -> Vec<Span<'_>> {
    let mut added: Vec<Option<&Spell>> = spells.added().into_iter().map(Some).collect();
    let mut spans = Vec::new();
    for dropped in spells.dropped() {
        let same_but_end = |spell: &Spell| {
            Spell {
                valid_to: dropped.valid_to,
                ..spell.clone()
            } == *dropped
        };
        let twin = added
            .iter_mut()
            .find(|slot| slot.is_some_and(same_but_end))
            .and_then(Option::take);
        spans.push(match twin {
            // Ends differ (they are not twins): the days from the earlier end to the later one.
            Some(twin) => {
                let ends = [dropped.valid_to, twin.valid_to];
                let from = ends.iter().flatten().min().copied();
                let to = if ends.contains(&None) {
                    None
                } else {
                    ends.iter().flatten().max().copied()
                };
                Span {
                    spell: dropped,
                    from: from.expect("two different ends, so one is a date"),
                    to,
                    whole: false,
                }
            }
            None => Span::whole(dropped),
        });
    }
    spans.extend(added.into_iter().flatten().map(Span::whole));
    spans
}

impl Span<'_> {
    fn whole(spell: &Spell) -> Span<'_> {
        Span {
            spell,
            from: spell.valid_from,
            to: spell.valid_to,
            whole: true,
        }
    }
}

/// Whether a status records an exit (retirement, departure, death).
fn is_exit(status: PersonStatus) -> bool {
    matches!(
        status,
        PersonStatus::Retired | PersonStatus::Departed | PersonStatus::Deceased
    )
}

/// The rules of an institution whose verdicts a new registry entry can move: only those that read
/// a fact that changed. The rules read the grade (LEADER_ABOVE_GRADE), the kind and the
/// political-legal flag (MIXED_CATEGORY), the status and its date (UNREGISTERED_INSTITUTION, on
/// the roll and per period), and the funding form (SELF_FUNDED_BUDGET_PAY); a new entry can move
/// all four. The jurisdiction only places the institution in REGIONAL_BALANCE, a report, and the
/// registry record's id is never evidence (the USCC is).
fn registry_rules(before: Option<&InstitutionFacts>, after: &InstitutionFacts) -> Vec<RuleCode> {
    use RuleCode as R;
    let Some(before) = before else {
        return vec![
            R::LeaderAboveGrade,
            R::MixedCategory,
            R::UnregisteredInstitution,
            R::SelfFundedBudgetPay,
        ];
    };
    let mut codes = Vec::new();
    if before.grade != after.grade {
        codes.push(R::LeaderAboveGrade);
    }
    if (before.kind, before.political_legal) != (after.kind, after.political_legal) {
        codes.push(R::MixedCategory);
    }
    if (before.status, before.status_since) != (after.status, after.status_since) {
        codes.push(R::UnregisteredInstitution);
    }
    if before.funding_form != after.funding_form {
        codes.push(R::SelfFundedBudgetPay);
    }
    codes
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::findings::{
        Finding, PersonSpell, Pushed, RecordRef, RulesConfig, Scope, Snapshot,
    };
    use crate::domain::roll::LeaderTerm;
    use crate::domain::rules::tests::{CATEGORIES, arb_world, d, day, month, resident, unit};
    use crate::domain::rules::{self};
    use crate::domain::{
        FundingForm, Grade, HiringChannel, InstitutionKind, InstitutionStatus, Jurisdiction, Rank,
    };

    use QuotaCategory as C;
    use RuleCode as R;

    fn period(raw: &str) -> Period {
        Period::parse(raw).unwrap()
    }

    fn key(code: RuleCode, n: u32, subject: &str, period: &str) -> FindingKey {
        FindingKey {
            code,
            institution: unit(n).to_string(),
            subject: subject.to_owned(),
            period: period.to_owned(),
        }
    }

    /// A check by rows leaves the rules of counts out of its snapshot's decision
    /// ([`rules::check_rows`]): no key it decides by rows may cover one of them.
    #[test]
    fn no_key_but_the_counted_ones_covers_a_rule_of_counts() {
        let (at, who, june) = (unit(1), resident(1), period("2024-06"));
        let by_rows = [
            DirtyKey::Roster {
                institution: at.clone(),
            },
            DirtyKey::Placement {
                institution: at.clone(),
                resident: who.clone(),
            },
            DirtyKey::Person {
                resident: who.clone(),
                periods: Periods::ALL,
            },
            DirtyKey::PersonPeriod {
                resident: who.clone(),
                period: june,
            },
            DirtyKey::Receipts {
                institution: at.clone(),
                period: june,
            },
            DirtyKey::Entered {
                institution: at.clone(),
                resident: who.clone(),
                date: d("2024-06-01"),
            },
            DirtyKey::Draws {
                institution: at.clone(),
                category: C::Administrative,
                number: "A0".into(),
                from: None,
                added: true,
            },
            DirtyKey::LeaderPosts {
                institution: at.clone(),
                level: LeaderLevel::Division,
                position: LeaderPosition::Principal,
            },
            DirtyKey::LeaderGrade {
                institution: at.clone(),
                resident: who.clone(),
            },
        ];
        let subjects = [
            C::Administrative.code().to_owned(),
            who.to_string(),
            String::new(),
        ];
        for dirty in &by_rows {
            for code in rules::COUNTED {
                for subject in &subjects {
                    for period in ["", "2024", "2024-06"] {
                        let finding = key(code, 1, subject, period);
                        assert!(!dirty.covers(&finding), "{dirty:?} covers {finding:?}");
                    }
                }
            }
        }
        // The counted keys do.
        let headcount = DirtyKey::Headcount {
            institution: at,
            category: C::Administrative,
        };
        assert!(headcount.covers(&key(R::QuotaFull, 1, C::Administrative.code(), "")));
    }

    fn spell(n: u32, status: PersonStatus, from: &str, to: Option<&str>) -> Spell {
        Spell {
            institution: unit(n),
            category: C::Administrative,
            rank: Rank::Clerk,
            status,
            valid_from: d(from),
            valid_to: to.map(d),
            approval_number: None,
            seconded_to: None,
        }
    }

    fn entry(p: u32, n: u32, date: &str, number: Option<&str>, seq: u32) -> Entry {
        Entry {
            resident_id: resident(p),
            institution: unit(n),
            category: C::Administrative,
            channel: Some(HiringChannel::OpenRecruitment),
            date: d(date),
            approval_number: number.map(str::to_owned),
            arrival: i64::from(seq),
            record: RecordRef(format!("140100/hr/e{seq}")),
        }
    }

    fn line(p: u32, n: u32, month: &str) -> PayrollLine {
        PayrollLine {
            period: period(month),
            institution: unit(n),
            resident_id: resident(p),
            name: "张三".into(),
            gross_fen: 812_345,
            reverses: None,
        }
    }

    fn facts(n: u32, kind: InstitutionKind) -> InstitutionFacts {
        InstitutionFacts {
            uscc: unit(n),
            jurisdiction: Jurisdiction::parse("140105").unwrap(),
            kind,
            grade: Grade::SectionPrincipal,
            funding_form: (kind == InstitutionKind::PublicInstitution).then_some(FundingForm::Full),
            status: InstitutionStatus::Active,
            status_since: None,
            political_legal: false,
            record: RecordRef(format!("140100/staffing-office/i{n}")),
        }
    }

    fn covers(change: &Change, key: &FindingKey) -> bool {
        covers_given(change, &[], key)
    }

    /// Whether the change's keys cover `key` once resolved against the stored entries `entries`.
    fn covers_given(change: &Change, entries: &[Entry], key: &FindingKey) -> bool {
        let mut dirty: DirtySet = dirty_keys(change).into_iter().collect();
        dirty.resolve(entries);
        dirty.covers(key)
    }

    /// Settles the draws that the counts of `after` (the data with the change) settle, as a store
    /// does before it resolves the rest.
    fn settle(dirty: &mut DirtySet, after: &Snapshot) {
        dirty.settle(|institution, number| {
            let cites = |at: &Uscc, cited: Option<&str>| at == institution && cited == Some(number);
            let entries = after
                .entries
                .iter()
                .filter(|e| cites(&e.institution, e.approval_number.as_deref()))
                .count();
            let approved = after
                .approvals
                .iter()
                .filter(|a| cites(&a.record.institution, Some(&a.record.approval_number)))
                .map(|a| a.record.approved_entries);
            draws_settled(entries as u64, approved)
        });
    }

    const ADMIN: &str = "ADMINISTRATIVE";

    // --- Periods -------------------------------------------------------------------------------

    #[test]
    fn periods_touching_a_range_and_ending_in_it() {
        let touching = Periods::touching(d("2024-01-31"), Some(d("2024-03-01"))).unwrap();
        assert_eq!(touching.first, Some(period("2024-01")));
        assert_eq!(touching.last, Some(period("2024-02")));
        assert_eq!(
            Periods::touching(d("2024-01-31"), Some(d("2024-01-31"))),
            None
        );

        // Funding reads the last day: [Jan 31, Mar 1) holds the last days of January and February.
        let ending = Periods::ending_in(d("2024-01-31"), Some(d("2024-03-01"))).unwrap();
        assert_eq!((ending.first, ending.last), (touching.first, touching.last));
        // [Jan 10, Jan 20) holds no last day of a month.
        assert_eq!(
            Periods::ending_in(d("2024-01-10"), Some(d("2024-01-20"))),
            None
        );
        // [Jan 10, Mar 31) holds the last days of January and February, not March's.
        let ending = Periods::ending_in(d("2024-01-10"), Some(d("2024-03-31"))).unwrap();
        assert!(ending.contains(period("2024-02")) && !ending.contains(period("2024-03")));
        let open = Periods::ending_in(d("2024-01-10"), None).unwrap();
        assert!(open.contains(period("2030-12")) && !open.contains(period("2023-12")));
    }

    // --- Each record kind ----------------------------------------------------------------------

    #[test]
    fn a_hire_dirties_its_roll_its_entry_and_the_persons_pay() {
        let hire = Change::Roll {
            resident: resident(1),
            spells: Rewrite {
                before: vec![],
                after: vec![spell(1, PersonStatus::Active, "2024-03-10", None)],
            },
            entries: Rewrite {
                before: vec![],
                after: vec![entry(1, 1, "2024-03-10", Some("A0"), 1)],
            },
        };
        let who = resident(1).to_string();
        let other = resident(2).to_string();
        // What is stored: the hire, and the other person's entries citing A0 before and after it
        // and A1 after it. Only the later draw on A0 can move.
        let stored = [
            entry(1, 1, "2024-03-10", Some("A0"), 1),
            entry(2, 1, "2024-03-09", Some("A0"), 2),
            entry(3, 1, "2024-03-10", Some("A0"), 5),
            entry(2, 1, "2024-07-01", Some("A0"), 3),
            entry(2, 1, "2024-08-01", Some("A1"), 4),
        ];
        let covers = |change: &Change, key: &FindingKey| covers_given(change, &stored, key);
        for covered in [
            key(R::OverQuota, 1, ADMIN, ""),
            key(R::QuotaFull, 1, ADMIN, ""),
            key(R::UnregisteredInstitution, 1, "", ""),
            key(R::MixedCategory, 1, &who, ""),
            key(R::DuplicateEnrollment, 0, &who, ""),
            // The person's first spell: their pay findings of every period now cite them.
            key(R::PaidNotOnRoll, 3, &who, "2019-01"),
            key(R::FundedOverQuota, 1, ADMIN, "2024-03"),
            key(R::HireWithoutApproval, 1, &who, "2024-03-10"),
            key(R::HireWithoutApproval, 1, &other, "2024-07-01"),
            // The same day, arrived later: it draws after the hire.
            key(
                R::HireWithoutApproval,
                1,
                resident(3).as_str(),
                "2024-03-10",
            ),
            key(R::OverPlan, 1, ADMIN, "2024"),
        ] {
            assert!(covers(&hire, &covered), "{covered:?}");
        }
        for untouched in [
            key(R::OverQuota, 2, ADMIN, ""),
            key(R::OverQuota, 1, "PUBLIC_INSTITUTION", ""),
            key(R::MixedCategory, 1, &other, ""),
            key(R::FundedOverQuota, 1, ADMIN, "2024-02"),
            key(R::HireWithoutApproval, 1, &other, "2024-03-09"),
            key(R::HireWithoutApproval, 1, &other, "2024-08-01"),
            key(R::HireWithoutApproval, 2, &other, "2024-07-01"),
            key(R::OverPlan, 1, ADMIN, "2023"),
            key(R::DoublePay, 0, &who, "2024-03"),
            key(R::PaidNotOnRoll, 1, &other, "2024-03"),
            key(R::UnregisteredInstitution, 1, "", "2024-03"),
            key(R::OverLeaderPosts, 1, "DIVISION/DEPUTY", ""),
        ] {
            assert!(!covers(&hire, &untouched), "{untouched:?}");
        }
    }

    #[test]
    fn a_transfer_dirties_both_rolls_and_only_the_pay_periods_it_moves() {
        let kept = spell(1, PersonStatus::Active, "2020-01-01", Some("2023-01-01"));
        let transfer = Change::Roll {
            resident: resident(1),
            spells: Rewrite {
                before: vec![
                    kept.clone(),
                    spell(2, PersonStatus::Active, "2023-01-01", None),
                ],
                after: vec![
                    kept,
                    spell(2, PersonStatus::Active, "2023-01-01", Some("2024-05-01")),
                    spell(3, PersonStatus::Active, "2024-05-01", None),
                ],
            },
            entries: Rewrite {
                before: vec![],
                after: vec![entry(1, 3, "2024-05-01", Some("A0"), 1)],
            },
        };
        let who = resident(1).to_string();
        assert!(covers(&transfer, &key(R::OverQuota, 2, ADMIN, "")));
        assert!(covers(&transfer, &key(R::OverQuota, 3, ADMIN, "")));
        // The spell at institution 1 is the same before and after.
        assert!(!covers(&transfer, &key(R::OverQuota, 1, ADMIN, "")));
        assert!(!covers(
            &transfer,
            &key(R::PayUnitMismatch, 1, &who, "2022-12")
        ));
        // The spell at institution 2 only lost its days from the transfer on.
        assert!(!covers(
            &transfer,
            &key(R::PayUnitMismatch, 1, &who, "2024-04")
        ));
        assert!(covers(
            &transfer,
            &key(R::PayUnitMismatch, 1, &who, "2024-05")
        ));
        assert!(!covers(
            &transfer,
            &key(R::FundedOverQuota, 2, ADMIN, "2024-03")
        ));
        assert!(covers(
            &transfer,
            &key(R::FundedOverQuota, 2, ADMIN, "2024-05")
        ));
        assert!(covers(
            &transfer,
            &key(R::PayUnitMismatch, 1, &who, "2024-06")
        ));
        assert!(!covers(
            &transfer,
            &key(R::HireWithoutApproval, 2, &who, "2024-05-01")
        ));
    }

    #[test]
    fn an_appointment_dirties_its_post_and_the_leaders_grade() {
        let term = |level| PersonTerm {
            resident_id: resident(1),
            term: LeaderTerm {
                institution: unit(1),
                level,
                position: LeaderPosition::Deputy,
                rank: Rank::DivisionDeputy,
                valid_from: d("2024-01-01"),
                valid_to: None,
            },
            record: RecordRef("140100/organization/a1".into()),
        };
        let appointment = Change::Terms {
            resident: resident(1),
            terms: Rewrite {
                before: vec![term(LeaderLevel::Section)],
                after: vec![term(LeaderLevel::Section), term(LeaderLevel::Division)],
            },
        };
        let who = resident(1).to_string();
        assert!(covers(
            &appointment,
            &key(R::OverLeaderPosts, 1, "DIVISION/DEPUTY", "")
        ));
        assert!(!covers(
            &appointment,
            &key(R::OverLeaderPosts, 1, "SECTION/DEPUTY", "")
        ));
        assert!(covers(&appointment, &key(R::LeaderAboveGrade, 1, &who, "")));
        assert!(!covers(
            &appointment,
            &key(R::LeaderAboveGrade, 2, &who, "")
        ));
        assert!(!covers(&appointment, &key(R::OverQuota, 1, ADMIN, "")));
    }

    #[test]
    fn a_payroll_line_dirties_the_pay_of_its_person_and_period_and_the_payers_receipts() {
        let pay = Change::Payroll(line(1, 1, "2024-03"));
        let who = resident(1).to_string();
        let other = resident(2).to_string();
        assert_eq!(
            dirty_keys(&pay),
            vec![
                DirtyKey::PersonPeriod {
                    resident: resident(1),
                    period: period("2024-03")
                },
                DirtyKey::Receipts {
                    institution: unit(1),
                    period: period("2024-03")
                },
            ]
        );
        assert!(covers(&pay, &key(R::DoublePay, 0, &who, "2024-03")));
        assert!(covers(&pay, &key(R::PaidAfterExit, 2, &who, "2024-03")));
        assert!(covers(
            &pay,
            &key(R::UnregisteredInstitution, 1, "", "2024-03")
        ));
        assert!(!covers(&pay, &key(R::PaidAfterExit, 1, &who, "2024-04")));
        assert!(!covers(&pay, &key(R::DoublePay, 1, &other, "2024-03")));
        assert!(!covers(&pay, &key(R::UnregisteredInstitution, 1, "", "")));
        assert!(!covers(&pay, &key(R::DuplicateEnrollment, 1, &who, "")));
    }

    #[test]
    fn a_funding_dirties_its_period_only() {
        let funding = Change::Funding(Funding {
            institution: unit(1),
            category: C::Administrative,
            period: period("2024-03"),
            funded_headcount: 3,
            amount_fen: 100,
        });
        assert!(covers(
            &funding,
            &key(R::FundedOverQuota, 1, ADMIN, "2024-03")
        ));
        assert!(covers(
            &funding,
            &key(R::SelfFundedBudgetPay, 1, ADMIN, "2024-03")
        ));
        assert!(covers(
            &funding,
            &key(R::UnregisteredInstitution, 1, "", "2024-03")
        ));
        assert!(!covers(
            &funding,
            &key(R::FundedOverQuota, 1, ADMIN, "2024-04")
        ));
        assert!(!covers(
            &funding,
            &key(R::FundedOverQuota, 1, "PUBLIC_INSTITUTION", "2024-03")
        ));
        assert!(!covers(&funding, &key(R::OverQuota, 1, ADMIN, "")));
        let who = resident(1).to_string();
        assert!(!covers(
            &funding,
            &key(R::PaidNotOnRoll, 1, &who, "2024-03")
        ));
    }

    #[test]
    fn a_quota_dirties_its_unit_and_the_funding_of_the_periods_it_is_in_force_at_the_end_of() {
        let quota = Change::Quota(Quota {
            institution: unit(1),
            category: C::Administrative,
            approved_count: 3,
            effective_from: d("2024-03-10"),
            effective_to: Some(d("2024-06-01")),
            approval_document: "并编〔2024〕1号".into(),
        });
        assert!(covers(&quota, &key(R::OverQuota, 1, ADMIN, "")));
        assert!(covers(&quota, &key(R::QuotaFull, 1, ADMIN, "")));
        assert!(!covers(
            &quota,
            &key(R::FundedOverQuota, 1, ADMIN, "2024-02")
        ));
        assert!(covers(
            &quota,
            &key(R::FundedOverQuota, 1, ADMIN, "2024-03")
        ));
        assert!(covers(
            &quota,
            &key(R::FundedOverQuota, 1, ADMIN, "2024-05")
        ));
        assert!(!covers(
            &quota,
            &key(R::FundedOverQuota, 1, ADMIN, "2024-06")
        ));
        assert!(!covers(
            &quota,
            &key(R::SelfFundedBudgetPay, 1, ADMIN, "2024-03")
        ));
        assert!(!covers(&quota, &key(R::UnregisteredInstitution, 1, "", "")));
    }

    #[test]
    fn posts_plans_and_approvals_dirty_their_rule_at_their_institution() {
        let post = Change::LeaderPost(LeaderPost {
            institution: unit(1),
            level: LeaderLevel::Division,
            position: LeaderPosition::Principal,
            approved_count: 1,
            effective_from: d("2024-01-01"),
            effective_to: None,
            approval_document: "并编〔2024〕2号".into(),
        });
        assert!(covers(
            &post,
            &key(R::OverLeaderPosts, 1, "DIVISION/PRINCIPAL", "")
        ));
        assert!(!covers(
            &post,
            &key(R::OverLeaderPosts, 1, "DIVISION/DEPUTY", "")
        ));

        let plan = Change::Plan(StaffingPlan {
            institution: unit(1),
            year: 2024,
            category: C::Administrative,
            channel: HiringChannel::Transfer,
            approved_count: 2,
            approval_document: "并编〔2024〕3号".into(),
        });
        assert!(covers(&plan, &key(R::OverPlan, 1, ADMIN, "2024")));
        assert!(!covers(&plan, &key(R::OverPlan, 1, ADMIN, "2025")));
        assert!(!covers(&plan, &key(R::OverPlan, 2, ADMIN, "2024")));
        assert!(covers(&plan, &key(R::ReserveShortfall, 1, ADMIN, "2024")));
        assert!(!covers(&plan, &key(R::ReserveShortfall, 1, ADMIN, "2023")));

        let approval = Change::Approval(HiringApproval {
            approval_number: "A0".into(),
            institution: unit(1),
            category: C::Administrative,
            approved_entries: 1,
            issued_on: d("2024-06-01"),
            valid_until: d("2024-12-31"),
        });
        let who = resident(1).to_string();
        let stored = [
            entry(1, 1, "2024-01-05", Some("A0"), 1),
            entry(1, 1, "2024-07-01", Some("A1"), 2),
            entry(1, 2, "2024-07-01", Some("A0"), 3),
        ];
        let covers = |change: &Change, key: &FindingKey| covers_given(change, &stored, key);
        // Entries before its issue list it as an approval considered: their evidence moves.
        assert!(covers(
            &approval,
            &key(R::HireWithoutApproval, 1, &who, "2024-01-05")
        ));
        // Nor another number's entries, nor the same number's at another institution.
        assert!(!covers(
            &approval,
            &key(R::HireWithoutApproval, 1, &who, "2024-07-01")
        ));
        assert!(!covers(
            &approval,
            &key(R::HireWithoutApproval, 2, &who, "2024-07-01")
        ));
        assert!(!covers(&approval, &key(R::OverPlan, 1, ADMIN, "2024")));
    }

    #[test]
    fn an_institution_dirties_only_the_rules_of_the_facts_that_changed() {
        let before = facts(1, InstitutionKind::PublicInstitution);
        let codes =
            |after: &InstitutionFacts, before: Option<&InstitutionFacts>| -> Vec<RuleCode> {
                dirty_keys(&Change::Institution {
                    before: before.cloned(),
                    after: after.clone(),
                })
                .into_iter()
                .map(|key| match key {
                    DirtyKey::Registry { code, .. } => code,
                    other => panic!("not a registry key: {other:?}"),
                })
                .collect()
            };
        let mut moved = before.clone();
        moved.jurisdiction = Jurisdiction::parse("140106").unwrap();
        assert_eq!(codes(&moved, Some(&before)), vec![]);
        moved.grade = Grade::DivisionDeputy;
        assert_eq!(codes(&moved, Some(&before)), vec![R::LeaderAboveGrade]);
        let mut moved = before.clone();
        moved.funding_form = Some(FundingForm::SelfFunded);
        assert_eq!(codes(&moved, Some(&before)), vec![R::SelfFundedBudgetPay]);
        moved.status = InstitutionStatus::Abolished;
        moved.status_since = Some(d("2024-02-01"));
        assert_eq!(
            codes(&moved, Some(&before)),
            vec![R::SelfFundedBudgetPay, R::UnregisteredInstitution]
        );
        let organ = facts(1, InstitutionKind::Organ);
        assert!(codes(&organ, Some(&before)).contains(&R::MixedCategory));
        assert_eq!(codes(&before, None).len(), 4);

        let registered = Change::Institution {
            before: None,
            after: before,
        };
        let who = resident(1).to_string();
        assert!(covers(
            &registered,
            &key(R::UnregisteredInstitution, 1, "", "2024-03")
        ));
        assert!(covers(
            &registered,
            &key(R::UnregisteredInstitution, 1, "", "")
        ));
        assert!(covers(&registered, &key(R::MixedCategory, 1, &who, "")));
        assert!(!covers(
            &registered,
            &key(R::UnregisteredInstitution, 2, "", "")
        ));
        assert!(!covers(&registered, &key(R::OverQuota, 1, ADMIN, "")));
        assert!(!covers(
            &registered,
            &key(R::PayUnitMismatch, 1, &who, "2024-03")
        ));
    }

    #[test]
    fn an_approval_moves_the_verdict_of_a_later_entry_of_its_group_and_covers_it() {
        // Two entries cite A0, which allows one: the second fires. A second approval A0 covers it.
        let approval = |id: &str| Pushed {
            id: RecordRef(format!("140100/staffing-office/{id}")),
            accepted_at: 1,
            record: HiringApproval {
                approval_number: "A0".into(),
                institution: unit(1),
                category: C::Administrative,
                approved_entries: 1,
                issued_on: d("2024-01-01"),
                valid_until: d("2024-12-31"),
            },
        };
        let mut world = Snapshot::default();
        world.institutions.push(facts(1, InstitutionKind::Organ));
        world.approvals.push(approval("a1"));
        world.entries.push(entry(1, 1, "2024-02-01", Some("A0"), 1));
        world.entries.push(entry(2, 1, "2024-03-01", Some("A0"), 2));
        let mut after = world.clone();
        after.approvals.push(approval("a2"));
        let as_of = d("2024-06-01");
        let moved = moved(&world, &after, as_of);
        assert_eq!(
            moved,
            [key(
                R::HireWithoutApproval,
                1,
                resident(2).as_str(),
                "2024-03-01"
            )]
            .into()
        );
        let change = Change::Approval(approval("a2").record);
        assert!(
            moved
                .iter()
                .all(|key| covers_given(&change, &after.entries, key))
        );
        assert!(
            !moved.iter().any(|key| covers(&change, key)),
            "a draw covers nothing until resolved"
        );
    }

    #[test]
    fn a_draw_is_settled_only_when_entries_added_still_fit_the_approval() {
        // A0 of institution 1 allows `allowed` entries; person 2 entered on 1 March citing it.
        let world = |allowed: u32| {
            let mut world = Snapshot::default();
            world.institutions.push(facts(1, InstitutionKind::Organ));
            world.approvals.push(Pushed {
                id: RecordRef("140100/staffing-office/a0".into()),
                accepted_at: 1,
                record: HiringApproval {
                    approval_number: "A0".into(),
                    institution: unit(1),
                    category: C::Administrative,
                    approved_entries: allowed,
                    issued_on: d("2024-01-01"),
                    valid_until: d("2024-12-31"),
                },
            });
            world.entries.push(entry(2, 1, "2024-03-01", Some("A0"), 2));
            world
        };
        let early = entry(1, 1, "2024-02-01", Some("A0"), 1);
        let roll = |entries: Rewrite<Entry>| Change::Roll {
            resident: resident(1),
            spells: Rewrite {
                before: Vec::new(),
                after: Vec::new(),
            },
            entries,
        };
        let added = roll(Rewrite {
            before: Vec::new(),
            after: vec![early.clone()],
        });
        let second = key(
            R::HireWithoutApproval,
            1,
            resident(2).as_str(),
            "2024-03-01",
        );
        let as_of = d("2024-06-01");
        let settled = |change: &Change, after: &Snapshot| {
            let mut dirty: DirtySet = dirty_keys(change).into_iter().collect();
            settle(&mut dirty, after);
            let drawn = dirty.drawn().is_empty();
            dirty.resolve(&after.entries);
            (drawn, dirty)
        };

        // Room for both: the earlier entry moves nobody else, and its draw is settled.
        let before = world(2);
        let mut after = before.clone();
        after.entries.push(early.clone());
        let (was_settled, dirty) = settled(&added, &after);
        assert!(was_settled, "two entries fit an approval of two");
        assert!(
            moved(&before, &after, as_of)
                .iter()
                .all(|k| dirty.covers(k))
        );

        // Room for one: the earlier entry takes it, person 2 fires, and the draw resolves to them.
        let before = world(1);
        let mut after = before.clone();
        after.entries.push(early.clone());
        assert!(moved(&before, &after, as_of).contains(&second));
        let (was_settled, dirty) = settled(&added, &after);
        assert!(!was_settled, "two entries do not fit an approval of one");
        assert!(dirty.covers(&second));

        // The earlier entry dropped again: one entry now fits, but two did not before, and person
        // 2's finding resolves. A draw an entry dropped is never settled.
        let (before, after) = (after, before);
        assert!(moved(&before, &after, as_of).contains(&second));
        let dropped = roll(Rewrite {
            before: vec![early],
            after: Vec::new(),
        });
        let (was_settled, dirty) = settled(&dropped, &after);
        assert!(!was_settled, "a dropped entry's draw is not settled");
        assert!(dirty.covers(&second));
    }

    #[test]
    fn entries_of_one_person_institution_and_date_share_a_finding_across_approvals() {
        // Two entries of one person into one institution on one date, citing A0 and A1: one
        // finding. An approval A1 moves it although the entry its text is about cites A0.
        let mut world = Snapshot::default();
        world.institutions.push(facts(1, InstitutionKind::Organ));
        world.entries.push(entry(1, 1, "2024-02-01", Some("A0"), 1));
        world.entries.push(entry(1, 1, "2024-02-01", Some("A1"), 2));
        let approval = HiringApproval {
            approval_number: "A1".into(),
            institution: unit(1),
            category: C::Administrative,
            approved_entries: 1,
            issued_on: d("2024-01-01"),
            valid_until: d("2024-12-31"),
        };
        let mut after = world.clone();
        after.approvals.push(Pushed {
            id: RecordRef("140100/staffing-office/a1".into()),
            accepted_at: 1,
            record: approval.clone(),
        });
        let moved = moved(&world, &after, d("2024-06-01"));
        let shared = key(
            R::HireWithoutApproval,
            1,
            resident(1).as_str(),
            "2024-02-01",
        );
        assert_eq!(moved, [shared.clone()].into());
        assert!(covers_given(
            &Change::Approval(approval),
            &after.entries,
            &shared
        ));
    }

    // --- Against the oracle --------------------------------------------------------------------

    /// Keys of the findings whose presence or content differ between two snapshots.
    fn moved(before: &Snapshot, after: &Snapshot, as_of: NaiveDate) -> BTreeSet<FindingKey> {
        let everything = Scope {
            everything: true,
            ..Scope::default()
        };
        let config = RulesConfig::default();
        let by_key = |snapshot| -> BTreeMap<FindingKey, Finding> {
            rules::check(snapshot, &everything, as_of, &config)
                .into_iter()
                .map(|finding| (finding.key.clone(), finding))
                .collect()
        };
        let (before, after) = (by_key(before), by_key(after));
        before
            .keys()
            .chain(after.keys())
            .filter(|key| before.get(key) != after.get(key))
            .cloned()
            .collect()
    }

    /// Every finding key of either snapshot.
    fn all_keys(before: &Snapshot, after: &Snapshot, as_of: NaiveDate) -> BTreeSet<FindingKey> {
        let everything = Scope {
            everything: true,
            ..Scope::default()
        };
        let config = RulesConfig::default();
        [before, after]
            .into_iter()
            .flat_map(|snapshot| rules::check(snapshot, &everything, as_of, &config))
            .map(|finding| finding.key)
            .collect()
    }

    const STATUSES: [PersonStatus; 7] = [
        PersonStatus::Active,
        PersonStatus::Active,
        PersonStatus::Seconded,
        PersonStatus::OnLeave,
        PersonStatus::Retired,
        PersonStatus::Departed,
        PersonStatus::Deceased,
    ];

    /// (institution, category, status, from, length, host of a secondment).
    type SpellSpec = (u32, usize, usize, u64, Option<u64>, Option<u32>);
    /// (institution, category, date, approval number, arrival, through policy placement).
    type EntrySpec = (u32, usize, u64, Option<u32>, i64, bool);
    /// (institution, level, position, rank, from, length).
    type TermSpec = (u32, usize, usize, usize, u64, Option<u64>);

    /// A record arriving, as drawn: applied to a world it gives the world after and the change.
    #[derive(Debug, Clone)]
    pub(crate) enum Arrival {
        /// A personnel event: the person's spells and entries rewritten. `keep`: 0 replaces them,
        /// 1 keeps them and adds, 2 drops the last of each and adds, 3 keeps them, gives the last
        /// spell the end `end` days after its start (open when none) and adds (an exit, a
        /// transfer, a correction of one).
        Roll {
            p: u32,
            keep: u8,
            end: Option<u64>,
            spells: Vec<SpellSpec>,
            entries: Vec<EntrySpec>,
        },
        Terms {
            p: u32,
            keep: u8,
            terms: Vec<TermSpec>,
        },
        Pay {
            p: u32,
            n: u32,
            m: u64,
        },
        Reversal {
            pick: usize,
        },
        Funding {
            n: u32,
            category: usize,
            m: u64,
            headcount: u32,
            paid: bool,
        },
        Quota {
            n: u32,
            category: usize,
            approved: u32,
            from: u64,
            length: Option<u64>,
        },
        Post {
            n: u32,
            level: usize,
            position: usize,
            approved: u32,
            from: u64,
        },
        Plan {
            n: u32,
            category: usize,
            year: i32,
            channel: usize,
            approved: u32,
        },
        Approval {
            n: u32,
            category: usize,
            number: u32,
            count: u32,
            issued: u64,
            length: u64,
        },
        Institution {
            n: u32,
            organ: bool,
            status: usize,
            since: u64,
            political_legal: bool,
            self_funded: bool,
            grade: usize,
        },
    }

    pub(crate) fn arb_arrival() -> impl Strategy<Value = Arrival> {
        let spell = (
            0u32..4,
            0usize..3,
            0usize..7,
            0u64..150,
            prop::option::of(1u64..90),
            prop::option::of(0u32..4),
        );
        let entry = (
            0u32..4,
            0usize..3,
            0u64..150,
            prop::option::of(0u32..2),
            0i64..3,
            any::<bool>(),
        );
        let term = (
            0u32..4,
            0usize..2,
            0usize..2,
            0usize..9,
            0u64..150,
            prop::option::of(1u64..60),
        );
        prop_oneof![
            4 => (
                0u32..5,
                0u8..4,
                prop::option::of(1u64..150),
                prop::collection::vec(spell, 0..3),
                prop::collection::vec(entry, 0..2)
            )
                .prop_map(|(p, keep, end, spells, entries)| Arrival::Roll {
                    p,
                    keep,
                    end,
                    spells,
                    entries
                }),
            1 => (0u32..5, 0u8..3, prop::collection::vec(term, 0..3))
                .prop_map(|(p, keep, terms)| Arrival::Terms { p, keep, terms }),
            1 => (0u32..5, 0u32..5, 0u64..4).prop_map(|(p, n, m)| Arrival::Pay { p, n, m }),
            1 => any::<usize>().prop_map(|pick| Arrival::Reversal { pick }),
            1 => (0u32..5, 0usize..3, 0u64..4, 0u32..4, any::<bool>()).prop_map(
                |(n, category, m, headcount, paid)| Arrival::Funding {
                    n,
                    category,
                    m,
                    headcount,
                    paid
                }
            ),
            1 => (0u32..4, 0usize..3, 0u32..4, 0u64..150, prop::option::of(1u64..90)).prop_map(
                |(n, category, approved, from, length)| Arrival::Quota {
                    n,
                    category,
                    approved,
                    from,
                    length
                }
            ),
            1 => (0u32..4, 0usize..2, 0usize..2, 0u32..3, 0u64..150).prop_map(
                |(n, level, position, approved, from)| Arrival::Post {
                    n,
                    level,
                    position,
                    approved,
                    from
                }
            ),
            1 => (0u32..4, 0usize..3, 2023i32..2025, 0usize..3, 0u32..3).prop_map(
                |(n, category, year, channel, approved)| Arrival::Plan {
                    n,
                    category,
                    year,
                    channel,
                    approved
                }
            ),
            1 => (0u32..4, 0usize..3, 0u32..2, 0u32..3, 0u64..150, 0u64..60).prop_map(
                |(n, category, number, count, issued, length)| Arrival::Approval {
                    n,
                    category,
                    number,
                    count,
                    issued,
                    length
                }
            ),
            1 => (
                0u32..5,
                any::<bool>(),
                0usize..3,
                0u64..150,
                any::<bool>(),
                any::<bool>(),
                0usize..Grade::ALL.len()
            )
                .prop_map(
                    |(n, organ, status, since, political_legal, self_funded, grade)| {
                        Arrival::Institution {
                            n,
                            organ,
                            status,
                            since,
                            political_legal,
                            self_funded,
                            grade,
                        }
                    }
                ),
        ]
    }

    const LEVELS: [LeaderLevel; 2] = [LeaderLevel::Division, LeaderLevel::Section];
    const POSITIONS: [LeaderPosition; 2] = [LeaderPosition::Deputy, LeaderPosition::Principal];
    /// Later than every record of the generated worlds.
    pub(crate) const NOW: i64 = 10_000;

    fn pushed<T>(agency: &str, now: i64, record: T) -> Pushed<T> {
        Pushed {
            id: RecordRef(format!("140100/{agency}/new{now}")),
            accepted_at: now,
            record,
        }
    }

    /// The person's items kept by a rewrite, then the new ones.
    fn rewrite<T: Clone>(old: &[T], keep: u8, new: Vec<T>) -> Vec<T> {
        let kept = match keep {
            0 => 0,
            2 => old.len().saturating_sub(1),
            _ => old.len(),
        };
        old[..kept].iter().cloned().chain(new).collect()
    }

    /// The world after the arrival, and the change as the store would describe it.
    pub(crate) fn arrive(world: &Snapshot, arrival: &Arrival, now: i64) -> (Snapshot, Change) {
        let mut after = world.clone();
        let change = match arrival.clone() {
            Arrival::Roll {
                p,
                keep,
                end,
                spells,
                entries,
            } => {
                let who = resident(p);
                let old_spells: Vec<Spell> = world
                    .spells
                    .iter()
                    .filter(|s| s.resident_id == who)
                    .map(|s| s.spell.clone())
                    .collect();
                let new_spells = spells
                    .into_iter()
                    .map(|(n, category, status, from, length, host)| {
                        let status = STATUSES[status];
                        Spell {
                            institution: unit(n),
                            category: CATEGORIES[category],
                            rank: Rank::Clerk,
                            status,
                            valid_from: day(from),
                            valid_to: length.map(|l| day(from + l)),
                            approval_number: None,
                            seconded_to: host
                                .filter(|_| status == PersonStatus::Seconded)
                                .map(unit),
                        }
                    })
                    .collect();
                let old_entries: Vec<Entry> = world
                    .entries
                    .iter()
                    .filter(|e| e.resident_id == who)
                    .cloned()
                    .collect();
                let new_entries = entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, category, date, number, arrival, placed))| Entry {
                        resident_id: who.clone(),
                        institution: unit(n),
                        category: CATEGORIES[category],
                        channel: Some(if placed {
                            HiringChannel::PolicyPlacement
                        } else {
                            HiringChannel::OpenRecruitment
                        }),
                        date: day(date),
                        approval_number: number.map(|k| format!("A{k}")),
                        arrival,
                        record: RecordRef(format!("140100/hr/new{now}-{i}")),
                    })
                    .collect();
                let mut spells = Rewrite {
                    after: rewrite(&old_spells, keep, new_spells),
                    before: old_spells,
                };
                if keep == 3
                    && let Some(last) = spells.after.get_mut(spells.before.len().wrapping_sub(1))
                {
                    last.valid_to = end.map(|days| last.valid_from + chrono::Days::new(days));
                }
                let entries = Rewrite {
                    after: rewrite(&old_entries, keep, new_entries),
                    before: old_entries,
                };
                after.spells.retain(|s| s.resident_id != who);
                after
                    .spells
                    .extend(spells.after.iter().map(|spell| PersonSpell {
                        resident_id: who.clone(),
                        spell: spell.clone(),
                    }));
                after.entries.retain(|e| e.resident_id != who);
                after.entries.extend(entries.after.iter().cloned());
                Change::Roll {
                    resident: who,
                    spells,
                    entries,
                }
            }
            Arrival::Terms { p, keep, terms } => {
                let who = resident(p);
                let old: Vec<PersonTerm> = world
                    .terms
                    .iter()
                    .filter(|t| t.resident_id == who)
                    .cloned()
                    .collect();
                let new = terms
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, level, position, rank, from, length))| PersonTerm {
                        resident_id: who.clone(),
                        term: LeaderTerm {
                            institution: unit(n),
                            level: LEVELS[level],
                            position: POSITIONS[position],
                            rank: Rank::ALL[rank],
                            valid_from: day(from),
                            valid_to: length.map(|l| day(from + l)),
                        },
                        record: RecordRef(format!("140100/organization/new{now}-{i}")),
                    })
                    .collect();
                let terms = Rewrite {
                    after: rewrite(&old, keep, new),
                    before: old,
                };
                after.terms.retain(|t| t.resident_id != who);
                after.terms.extend(terms.after.iter().cloned());
                Change::Terms {
                    resident: who,
                    terms,
                }
            }
            Arrival::Pay { p, n, m } => {
                let line = line(p, n, month(m));
                after.payroll.push(pushed("finance", now, line.clone()));
                Change::Payroll(line)
            }
            Arrival::Reversal { pick } => {
                if world.payroll.is_empty() {
                    // Nothing to reverse: the reversal is refused and changes nothing.
                    Change::Payroll(line(0, 0, "2024-01"))
                } else {
                    let voided = after.payroll.remove(pick % world.payroll.len());
                    Change::Payroll(voided.record)
                }
            }
            Arrival::Funding {
                n,
                category,
                m,
                headcount,
                paid,
            } => {
                let funding = Funding {
                    institution: unit(n),
                    category: CATEGORIES[category],
                    period: period(month(m)),
                    funded_headcount: headcount,
                    amount_fen: if paid { 100 } else { 0 },
                };
                after.fundings.push(pushed("finance", now, funding.clone()));
                Change::Funding(funding)
            }
            Arrival::Quota {
                n,
                category,
                approved,
                from,
                length,
            } => {
                let quota = Quota {
                    institution: unit(n),
                    category: CATEGORIES[category],
                    approved_count: approved,
                    effective_from: day(from),
                    effective_to: length.map(|l| day(from + l)),
                    approval_document: "并编〔2024〕9号".into(),
                };
                after
                    .quotas
                    .push(pushed("staffing-office", now, quota.clone()));
                Change::Quota(quota)
            }
            Arrival::Post {
                n,
                level,
                position,
                approved,
                from,
            } => {
                let post = LeaderPost {
                    institution: unit(n),
                    level: LEVELS[level],
                    position: POSITIONS[position],
                    approved_count: approved,
                    effective_from: day(from),
                    effective_to: None,
                    approval_document: "并编〔2024〕9号".into(),
                };
                after
                    .leader_posts
                    .push(pushed("staffing-office", now, post.clone()));
                Change::LeaderPost(post)
            }
            Arrival::Plan {
                n,
                category,
                year,
                channel,
                approved,
            } => {
                let plan = StaffingPlan {
                    institution: unit(n),
                    year,
                    category: CATEGORIES[category],
                    channel: HiringChannel::ALL[channel],
                    approved_count: approved,
                    approval_document: "并编〔2024〕9号".into(),
                };
                after
                    .plans
                    .push(pushed("staffing-office", now, plan.clone()));
                Change::Plan(plan)
            }
            Arrival::Approval {
                n,
                category,
                number,
                count,
                issued,
                length,
            } => {
                let approval = HiringApproval {
                    approval_number: format!("A{number}"),
                    institution: unit(n),
                    category: CATEGORIES[category],
                    approved_entries: count,
                    issued_on: day(issued),
                    valid_until: day(issued + length),
                };
                after
                    .approvals
                    .push(pushed("staffing-office", now, approval.clone()));
                Change::Approval(approval)
            }
            Arrival::Institution {
                n,
                organ,
                status,
                since,
                political_legal,
                self_funded,
                grade,
            } => {
                let kind = if organ {
                    InstitutionKind::Organ
                } else {
                    InstitutionKind::PublicInstitution
                };
                let mut facts = facts(n, kind);
                facts.status = [
                    InstitutionStatus::Active,
                    InstitutionStatus::Merged,
                    InstitutionStatus::Abolished,
                ][status];
                facts.status_since = Some(day(since));
                facts.political_legal = political_legal;
                facts.grade = Grade::ALL[grade];
                if !organ && self_funded {
                    facts.funding_form = Some(FundingForm::SelfFunded);
                }
                // The rules read the first entry of an institution; the registry keeps one.
                let before = world
                    .institutions
                    .iter()
                    .find(|f| f.uscc == facts.uscc)
                    .cloned();
                after.institutions.retain(|f| f.uscc != facts.uscc);
                after.institutions.push(facts.clone());
                Change::Institution {
                    before,
                    after: facts,
                }
            }
        };
        (after, change)
    }

    /// Whether a finding a change's keys cover is one the record can reach at all (precision: a
    /// set that covered everything would pass the oracle test and be useless).
    fn reachable(change: &Change, key: &FindingKey) -> bool {
        let pay_rule = matches!(
            key.code,
            R::PaidNotOnRoll | R::PaidAfterExit | R::PayUnitMismatch | R::DoublePay
        );
        match change {
            Change::Roll {
                resident, entries, ..
            } => {
                let personal =
                    pay_rule || matches!(key.code, R::MixedCategory | R::DuplicateEnrollment);
                !matches!(
                    key.code,
                    R::OverLeaderPosts
                        | R::LeaderAboveGrade
                        | R::DoublePay
                        | R::SelfFundedBudgetPay
                ) && (!personal || key.subject == resident.as_str())
                    && (key.code != R::HireWithoutApproval
                        || entries
                            .before
                            .iter()
                            .chain(&entries.after)
                            .any(|e| key.institution == e.institution.as_str()))
                    && (key.code != R::UnregisteredInstitution || key.period.is_empty())
            }
            Change::Terms { resident, .. } => {
                key.code == R::OverLeaderPosts
                    || (key.code == R::LeaderAboveGrade && key.subject == resident.as_str())
            }
            Change::Payroll(line) => {
                key.period == line.period.to_string()
                    && ((pay_rule && key.subject == line.resident_id.as_str())
                        || (key.code == R::UnregisteredInstitution
                            && key.institution == line.institution.as_str()))
            }
            Change::Funding(funding) => {
                key.period == funding.period.to_string()
                    && key.institution == funding.institution.as_str()
                    && matches!(
                        key.code,
                        R::FundedOverQuota | R::SelfFundedBudgetPay | R::UnregisteredInstitution
                    )
            }
            Change::Quota(quota) => {
                key.institution == quota.institution.as_str()
                    && key.subject == quota.category.code()
                    && matches!(key.code, R::OverQuota | R::QuotaFull | R::FundedOverQuota)
            }
            Change::LeaderPost(post) => {
                key.code == R::OverLeaderPosts && key.institution == post.institution.as_str()
            }
            Change::Plan(plan) => {
                matches!(key.code, R::OverPlan | R::ReserveShortfall)
                    && key.institution == plan.institution.as_str()
                    && key.period == plan.year.to_string()
            }
            Change::Approval(approval) => {
                key.code == R::HireWithoutApproval
                    && key.institution == approval.institution.as_str()
            }
            Change::Institution { after, .. } => {
                key.institution == after.uscc.as_str()
                    && matches!(
                        key.code,
                        R::LeaderAboveGrade
                            | R::MixedCategory
                            | R::UnregisteredInstitution
                            | R::SelfFundedBudgetPay
                    )
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The oracle: every finding a record moves (raised, resolved, or changed in numbers,
        /// explanation or evidence) is decided by re-checking the record's dirty keys.
        #[test]
        fn every_finding_a_record_moves_is_covered_by_its_dirty_keys(
            world in arb_world(), arrival in arb_arrival(), as_of in 0u64..150
        ) {
            let as_of = day(as_of);
            let (after, change) = arrive(&world, &arrival, NOW);
            let mut dirty: DirtySet = dirty_keys(&change).into_iter().collect();
            settle(&mut dirty, &after);
            dirty.resolve(&after.entries);
            for key in moved(&world, &after, as_of) {
                prop_assert!(dirty.covers(&key), "{key:?} moved, not covered by {dirty:?}");
            }
        }

        /// The runs of periods are exactly the periods the rules read: a day of the period in
        /// the range (pay), or the period's last day (funding).
        #[test]
        fn periods_are_those_the_rules_read(from in 0u64..400, length in prop::option::of(0u64..200)) {
            let (from, to) = (day(from), length.map(|l| day(from + l)));
            let mut month = period("2023-11");
            while month < period("2025-12") {
                let days = month.first_day().iter_days().take_while(|d| *d <= month.last_day());
                let in_range = |d: NaiveDate| from <= d && to.is_none_or(|to| d < to);
                let touched = days.clone().any(in_range);
                prop_assert_eq!(
                    Periods::touching(from, to).is_some_and(|p| p.contains(month)),
                    touched,
                    "touching {}", month
                );
                prop_assert_eq!(
                    Periods::ending_in(from, to).is_some_and(|p| p.contains(month)),
                    in_range(month.last_day()),
                    "ending in {}", month
                );
                month = month.next();
            }
        }

        /// Dirty sets add up: the keys of two records, each described against the data it
        /// arrived to, cover every finding the pair moves (a push of many records is one set).
        #[test]
        fn the_dirty_set_of_two_records_covers_what_the_pair_moves(
            world in arb_world(),
            first in arb_arrival(),
            second in arb_arrival(),
            as_of in 0u64..150
        ) {
            let as_of = day(as_of);
            let (middle, one) = arrive(&world, &first, NOW);
            let (after, two) = arrive(&middle, &second, NOW + 1);
            let mut dirty = DirtySet::new();
            dirty.add(&one);
            dirty.add(&two);
            settle(&mut dirty, &after);
            dirty.resolve(&after.entries);
            for key in moved(&world, &after, as_of) {
                prop_assert!(dirty.covers(&key), "{key:?} moved, not covered by {dirty:?}");
            }
        }

        /// Precision: the keys cover only findings the record can reach (a payroll line never
        /// another person's or a roll finding, a funding never a person's, ...).
        #[test]
        fn dirty_keys_cover_only_findings_the_record_can_reach(
            world in arb_world(), arrival in arb_arrival(), as_of in 0u64..150
        ) {
            let as_of = day(as_of);
            let (after, change) = arrive(&world, &arrival, NOW);
            let mut dirty: DirtySet = dirty_keys(&change).into_iter().collect();
            dirty.resolve(&after.entries);
            let index = dirty.index();
            for key in all_keys(&world, &after, as_of) {
                // The index answers as the set does, key by key.
                let covering: Vec<&DirtyKey> = dirty.keys().filter(|k| k.covers(&key)).collect();
                prop_assert_eq!(index.covering(&key).collect::<Vec<_>>(), covering);
                if dirty.covers(&key) {
                    prop_assert!(reachable(&change, &key), "{key:?} covered by {dirty:?}");
                }
            }
        }
    }
}
