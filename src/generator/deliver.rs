//! The delivery timeline: on which day which agency sends which records, so that the freshness
//! rules (LATE_PAYROLL, BACKDATED_EVENT: docs/RULES.md) have something to judge, with late,
//! missing and backdated data planted in it, and the freshness findings open on the check date.
//!
//! Who sends what, when:
//! - `start`, the first day of the first pay period, is the hub's first start and the agencies'
//!   initial load: the root's staffing office sends the registry, quotas, posts, plans and
//!   approvals, and each HR agency the events that took effect before it (history, never late).
//! - Each person's events come from one HR agency: that of the lowest division holding every
//!   institution they name (the person's own district; the city's for a transfer or secondment
//!   between districts), so that a person's history arrives in order. An event is sent 0 to
//!   [`EVENT_LAG_DAYS`] days after it takes effect, never before the person's previous one.
//! - Each division's finance agency sends a month's payroll of the institutions it pays (the
//!   payers' division) as one file, between the 1st and the 15th of the month (pay goes out
//!   mid-month), never after the check date.
//! - The root's organization department sends the appointments and the root's finance agency the
//!   funding on the check date: neither has a cadence.
//!
//! Planted, at the rates of `plant.rs`, under the default [`Cadence`]:
//! - late files: a month's file (not the agency's first month, whose lateness nobody could tell
//!   before it) that arrives on or after its due day, by the check date: LATE_PAYROLL raised on
//!   the due day and resolved on arrival, so none is open on the check date;
//! - missing files: the last month due, not an agency's first, that never arrives: its lines are
//!   not in the data (the other rules' truth is evaluated without them) and its LATE_PAYROLL is
//!   open on the check date;
//! - backdated events: a person's last event, taking effect after the initial load of an agency
//!   that had one, sent more than `event_due_days` after it took effect and within the window
//!   that ends on the check date: the agency's BACKDATED_EVENT is open on the check date.
//!
//! Nothing else is late: normal lags stay under a week and every other file arrives in its month,
//! so the truth is exactly what is planted (the tests read the timeline again, `check.rs`, and
//! run the hub's own decision over it, `engine.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use super::model::{World, add_days};
use super::plant::{self, planned};
use super::rng::Rng;
use super::{Dataset, Delivery, GenConfig, Kind, Planted};
use crate::domain::findings::RuleCode;
use crate::domain::freshness::Cadence;
use crate::domain::{Agency, AgencyKind, Jurisdiction, Period};
use crate::proto;

/// Most days an event normally waits before its HR agency sends it.
pub(super) const EVENT_LAG_DAYS: i64 = 7;
/// Last day of a month by which its payroll file normally arrives.
const PAYROLL_BY_DAY: i64 = 15;
/// Most days a late file or a backdated event comes after it was due.
const LATE_SPAN_DAYS: i64 = 30;

/// When each finance agency's payroll file of each period arrives, decided before the lines are
/// written (a file that never arrives has none), by division and period index.
pub(super) struct PayrollPlan {
    /// The day each file arrives; a file that never arrives is not here.
    arrivals: BTreeMap<(usize, usize), NaiveDate>,
    /// The files that never arrive (planted).
    missing: Vec<(usize, usize)>,
}

impl PayrollPlan {
    /// The day the file of division `jur`'s finance agency for period `k` arrives, if it does.
    pub(super) fn arrives(&self, jur: usize, k: usize) -> Option<NaiveDate> {
        self.arrivals.get(&(jur, k)).copied()
    }
}

/// The day each file of `paying` (division, period index: the files that would have lines) is
/// sent, with the late and missing ones planted.
pub(super) fn plan_payroll(
    world: &World,
    config: &GenConfig,
    paying: &BTreeSet<(usize, usize)>,
) -> PayrollPlan {
    let cadence = Cadence::default();
    let mut rng = Rng::derive(config.seed, &[6]);
    let (start, as_of) = (world.window_start, world.as_of);
    let periods = &world.periods;
    let due = |k: usize| cadence.payroll_late_from(periods[k]);
    let mut first: BTreeMap<usize, usize> = BTreeMap::new();
    for &(jur, k) in paying {
        first.entry(jur).or_insert(k);
    }
    // The last month due by the check date: an agency's file of it missing is open then.
    let last_due = (0..periods.len()).rev().find(|&k| due(k) <= as_of);
    let mut missing: Vec<(usize, usize)> = paying
        .iter()
        .copied()
        .filter(|&(jur, k)| Some(k) == last_due && first[&jur] < k)
        .collect();
    rng.shuffle(&mut missing);
    missing.truncate(planned(plant::RATE_MISSING_PAYROLL, first.len(), config));
    let due_files = paying.iter().filter(|&&(_, k)| due(k) <= as_of).count();
    let mut late: Vec<(usize, usize)> = paying
        .iter()
        .copied()
        .filter(|&(jur, k)| due(k) <= as_of && first[&jur] < k && !missing.contains(&(jur, k)))
        .collect();
    rng.shuffle(&mut late);
    late.truncate(planned(plant::RATE_LATE_PAYROLL, due_files, config));
    let mut arrivals = BTreeMap::new();
    for &(jur, k) in paying {
        if missing.contains(&(jur, k)) {
            continue;
        }
        let day = if late.contains(&(jur, k)) {
            rng.date(due(k), add_days(due(k), LATE_SPAN_DAYS).min(as_of))
        } else {
            let first_day = periods[k].first_day().max(start);
            rng.date(
                first_day,
                add_days(periods[k].first_day(), PAYROLL_BY_DAY - 1).min(as_of),
            )
        };
        arrivals.insert((jur, k), day);
    }
    PayrollPlan { arrivals, missing }
}

/// Each division as a jurisdiction, and the division of each institution by its USCC.
struct Divisions {
    codes: Vec<Jurisdiction>,
    of: HashMap<String, usize>,
}

impl Divisions {
    fn new(world: &World) -> Divisions {
        Divisions {
            codes: world
                .jurs
                .iter()
                .map(|j| Jurisdiction::parse(&j.code).expect("generated codes parse"))
                .collect(),
            of: world
                .insts
                .iter()
                .map(|i| (i.uscc.clone(), i.jur))
                .collect(),
        }
    }

    fn of(&self, uscc: &str) -> usize {
        self.of[uscc]
    }

    /// The lowest division holding all of `divisions`.
    fn holding(&self, divisions: &BTreeSet<usize>) -> usize {
        if let [only] = divisions.iter().copied().collect::<Vec<_>>()[..] {
            return only;
        }
        (0..self.codes.len())
            .filter(|&j| {
                divisions
                    .iter()
                    .all(|&d| self.codes[j].contains(&self.codes[d]))
            })
            .max_by_key(|&j| self.codes[j].prefix().len())
            .expect("the root holds every division")
    }

    fn agency(&self, jur: usize, kind: AgencyKind) -> Agency {
        Agency::new(self.codes[jur].clone(), kind)
    }
}

/// Lays the dataset's records out as deliveries (events and payroll reordered into delivery
/// order), plants the backdated events, and returns the freshness findings open on the check date.
/// `people` names the person of each event; `plan` is the payroll's.
pub(super) fn timeline(
    world: &World,
    config: &GenConfig,
    data: &mut Dataset,
    people: &[u32],
    plan: &PayrollPlan,
) -> BTreeSet<Planted> {
    let cadence = Cadence::default();
    let divisions = Divisions::new(world);
    let root = Jurisdiction::parse(&data.root).expect("the root parses");
    let (start, as_of) = (world.window_start, world.as_of);
    data.start = start;
    let mut truth = BTreeSet::new();
    let mut deliveries: Vec<(u8, Delivery)> = Vec::new();
    let whole = |kind: Kind, on: NaiveDate, count: usize| Delivery {
        on,
        agency: Agency::new(root.clone(), kind.sender()),
        kind,
        records: 0..count,
    };
    // The registry before everything that names it; appointments after the events; funding last.
    for kind in [
        Kind::Institution,
        Kind::Quota,
        Kind::LeaderPost,
        Kind::StaffingPlan,
        Kind::HiringApproval,
    ] {
        deliveries.push((0, whole(kind, start, data.count(kind))));
    }
    deliveries.push((
        2,
        whole(Kind::Appointment, as_of, data.count(Kind::Appointment)),
    ));
    deliveries.push((3, whole(Kind::Funding, as_of, data.count(Kind::Funding))));

    // Payroll: each (period, division) file a range, period by period.
    let period_index: HashMap<String, usize> = world
        .periods
        .iter()
        .enumerate()
        .map(|(k, p)| (p.to_string(), k))
        .collect();
    let file_of = |line: &proto::PayrollLine| {
        (
            period_index[&line.period],
            divisions.of(&line.institution_uscc),
        )
    };
    data.payroll.sort_by_key(|line| file_of(line));
    let mut at = 0;
    while at < data.payroll.len() {
        let (k, jur) = file_of(&data.payroll[at]);
        let end = at
            + data.payroll[at..]
                .iter()
                .take_while(|line| file_of(line) == (k, jur))
                .count();
        let on = plan
            .arrives(jur, k)
            .expect("only files that arrive have lines");
        deliveries.push((
            1,
            Delivery {
                on,
                agency: divisions.agency(jur, AgencyKind::Finance),
                kind: Kind::PayrollLine,
                records: at..end,
            },
        ));
        at = end;
    }
    for &(jur, k) in &plan.missing {
        truth.insert(Planted {
            code: RuleCode::LatePayroll,
            institution: divisions.agency(jur, AgencyKind::Finance).id(),
            subject: String::new(),
            period: world.periods[k].to_string(),
        });
    }

    // Events: each person's HR agency, and the day each event is sent.
    let effective: Vec<NaiveDate> = data
        .events
        .iter()
        .map(|e| e.effective_on.parse().expect("generated dates parse"))
        .collect();
    let mut named: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    for (event, &person) in data.events.iter().zip(people) {
        let set = named.entry(person).or_default();
        set.insert(divisions.of(&event.institution_uscc));
        if !event.target_institution_uscc.is_empty() {
            set.insert(divisions.of(&event.target_institution_uscc));
        }
    }
    let sender: HashMap<u32, usize> = named
        .iter()
        .map(|(&person, set)| (person, divisions.holding(set)))
        .collect();
    let mut rng = Rng::derive(config.seed, &[7]);
    let mut sent: Vec<NaiveDate> = Vec::with_capacity(data.events.len());
    let mut previous: HashMap<u32, NaiveDate> = HashMap::new();
    let mut last_of: HashMap<u32, usize> = HashMap::new();
    for (i, &person) in people.iter().enumerate() {
        let day = if effective[i] < start {
            start
        } else {
            let normal = add_days(effective[i], rng.between(0, EVENT_LAG_DAYS));
            normal
                .max(previous.get(&person).copied().unwrap_or(start))
                .min(as_of)
        };
        previous.insert(person, day);
        last_of.insert(person, i);
        sent.push(day);
    }
    // Backdated: a person's last event (nothing of theirs waits behind it), after the initial load
    // of an agency that had one, late enough within the window by the check date.
    let with_history: BTreeSet<usize> = people
        .iter()
        .zip(&effective)
        .filter(|&(_, &on)| on < start)
        .map(|(person, _)| sender[person])
        .collect();
    let window_start = cadence.window_start(as_of);
    let due = i64::from(cadence.event_due_days);
    let earliest_late = |i: usize| add_days(effective[i], due + 1).max(window_start);
    let feasible: Vec<usize> = (0..people.len())
        .filter(|&i| {
            effective[i] >= start
                && with_history.contains(&sender[&people[i]])
                && earliest_late(i) <= as_of
        })
        .collect();
    let mut candidates: Vec<usize> = feasible
        .iter()
        .copied()
        .filter(|&i| last_of[&people[i]] == i)
        .collect();
    rng.shuffle(&mut candidates);
    let wanted = planned(plant::RATE_BACKDATED_EVENT, feasible.len(), config).min(candidates.len());
    // One agency each first, so that a few plants still make several findings.
    let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
    let mut agencies: BTreeSet<usize> = BTreeSet::new();
    for &i in &candidates {
        if chosen.len() < wanted && agencies.insert(sender[&people[i]]) {
            chosen.push(i);
        }
    }
    for &i in &candidates {
        if chosen.len() < wanted && !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    for &i in &chosen {
        let lo = earliest_late(i);
        sent[i] = rng.date(lo, add_days(lo, LATE_SPAN_DAYS).min(as_of));
        truth.insert(Planted {
            code: RuleCode::BackdatedEvent,
            institution: divisions.agency(sender[&people[i]], AgencyKind::Hr).id(),
            subject: String::new(),
            period: String::new(),
        });
    }
    // In delivery order: by day and agency, each person's events still in their order.
    let mut order: Vec<usize> = (0..data.events.len()).collect();
    order.sort_by_key(|&i| (sent[i], sender[&people[i]], i));
    let mut events: Vec<Option<proto::PersonnelEvent>> = std::mem::take(&mut data.events)
        .into_iter()
        .map(Some)
        .collect();
    data.events = order
        .iter()
        .map(|&i| events[i].take().expect("each event once"))
        .collect();
    let mut at = 0;
    while at < order.len() {
        let key = |i: usize| (sent[i], sender[&people[i]]);
        let (on, jur) = key(order[at]);
        let end = at
            + order[at..]
                .iter()
                .take_while(|&&i| key(i) == (on, jur))
                .count();
        deliveries.push((
            1,
            Delivery {
                on,
                agency: divisions.agency(jur, AgencyKind::Hr),
                kind: Kind::PersonnelEvent,
                records: at..end,
            },
        ));
        at = end;
    }

    // By day; on a day the registry first, then events and payroll, appointments, funding.
    deliveries.sort_by_key(|(phase, delivery)| (delivery.on, *phase));
    data.deliveries = deliveries
        .into_iter()
        .map(|(_, delivery)| delivery)
        .filter(|delivery| !delivery.records.is_empty())
        .collect();
    truth
}

/// The late payroll files of the timeline: those that arrived on or after their due day (their
/// LATE_PAYROLL raised on the due day and resolved on arrival), as (agency id, period).
pub fn late_payroll(data: &Dataset) -> BTreeSet<(String, Period)> {
    let cadence = Cadence::default();
    data.deliveries
        .iter()
        .filter(|d| d.kind == Kind::PayrollLine)
        .filter_map(|d| {
            let period = Period::parse(&data.payroll[d.records.start].period).ok()?;
            (d.on >= cadence.payroll_late_from(period)).then(|| (d.agency.id(), period))
        })
        .collect()
}
