//! A second, independent reading of `docs/RULES.md`, for the tests: it sees only the generated
//! records (validated into domain records exactly as the hub does, rolls and terms derived with
//! the hub's own `derive_spells` and `derive_terms`) and computes every finding from scratch. The
//! generator's truth comes from its model; the two must agree.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, NaiveDate};

use super::{Dataset, Kind, Planted};
use crate::api::convert::Pushed;
use crate::domain::findings::RuleCode;
use crate::domain::ids::parse_date;
use crate::domain::roll::{LeaderTerm, Spell, derive_spells, derive_terms};
use crate::domain::{
    Appointment, Coded, FundingForm, Grade, Institution, InstitutionKind, InstitutionStatus,
    LeaderLevel, LeaderPosition, Period, PersonStatus, PersonnelEvent, PersonnelEventType,
    QuotaCategory, Rank,
};

fn records<P: Pushed>(messages: &[P]) -> Vec<P::Record> {
    messages
        .iter()
        .map(|m| {
            m.to_submission()
                .unwrap_or_else(|e| panic!("record {} does not validate: {e:?}", m.record_id()))
                .record
        })
        .collect()
}

fn rank_code(rank: Rank) -> u32 {
    match rank {
        Rank::BureauPrincipal => 121,
        Rank::BureauDeputy => 122,
        Rank::DivisionPrincipal => 131,
        Rank::DivisionDeputy => 132,
        Rank::SectionPrincipal => 141,
        Rank::SectionDeputy => 142,
        Rank::Clerk => 150,
        Rank::Officer => 160,
        Rank::Unranked => 199,
    }
}

fn ceiling(grade: Grade) -> u32 {
    match grade {
        Grade::BureauPrincipal => 121,
        Grade::BureauDeputy => 122,
        Grade::DivisionPrincipal => 131,
        Grade::DivisionDeputy => 132,
        Grade::SectionPrincipal => 141,
        Grade::SectionDeputy => 142,
        _ => 150,
    }
}

fn on_roll_on(spell: &Spell, date: NaiveDate) -> bool {
    spell.status.is_on_roll() && spell.covers(date)
}

fn on_roll_during(spell: &Spell, period: Period) -> bool {
    spell.status.is_on_roll()
        && spell.valid_from <= period.last_day()
        && spell.valid_to.is_none_or(|to| to > period.first_day())
}

/// In force on `date` among records in push order: the last one pushed whose range covers it.
fn in_force<T>(
    records: &[&T],
    date: NaiveDate,
    range: impl Fn(&T) -> (NaiveDate, Option<NaiveDate>),
) -> Option<usize> {
    records.iter().rposition(|r| {
        let (from, to) = range(r);
        from <= date && to.is_none_or(|to| date < to)
    })
}

struct Entry {
    resident: String,
    institution: String,
    category: QuotaCategory,
    date: NaiveDate,
    number: Option<String>,
    arrival: usize,
    record_id: String,
    /// Entered through policy placement (the reserve's channel).
    placed: bool,
}

/// Every finding the records make true on the dataset's check date.
pub(super) fn findings(data: &Dataset) -> BTreeSet<Planted> {
    let as_of = parse_date(&data.as_of).expect("as_of");
    let institutions: Vec<Institution> = records(&data.institutions);
    let mut registry: HashMap<String, Institution> = HashMap::new();
    for inst in institutions {
        registry.insert(inst.uscc.to_string(), inst);
    }
    let quotas = records(&data.quotas);
    let posts = records(&data.leader_posts);
    let plans = records(&data.plans);
    let approvals = records(&data.approvals);
    let events: Vec<PersonnelEvent> = records(&data.events);
    let appointments: Vec<Appointment> = records(&data.appointments);
    let payroll = records(&data.payroll);
    let fundings = records(&data.fundings);

    let mut out = BTreeSet::new();
    let mut find = |code: RuleCode, institution: &str, subject: &str, period: &str| {
        out.insert(Planted {
            code,
            institution: institution.to_owned(),
            subject: subject.to_owned(),
            period: period.to_owned(),
        });
    };

    // Rolls and entries.
    let mut by_person: HashMap<String, Vec<&PersonnelEvent>> = HashMap::new();
    let mut entries: Vec<Entry> = Vec::new();
    for (arrival, event) in events.iter().enumerate() {
        by_person
            .entry(event.resident_id.to_string())
            .or_default()
            .push(event);
        let institution = match event.event_type {
            PersonnelEventType::Hire => Some(event.institution.to_string()),
            PersonnelEventType::Transfer => event.target.as_ref().map(ToString::to_string),
            _ => None,
        };
        if let Some(institution) = institution {
            entries.push(Entry {
                resident: event.resident_id.to_string(),
                institution,
                category: event.category.expect("an entry has a category"),
                date: event.effective_on,
                number: event.approval_number.clone(),
                arrival,
                record_id: data.events[arrival].record_id.clone(),
                placed: event.channel == Some(crate::domain::HiringChannel::PolicyPlacement),
            });
        }
    }
    let mut spells: HashMap<String, Vec<Spell>> = HashMap::new();
    for (person, history) in &by_person {
        let derived = derive_spells(history)
            .unwrap_or_else(|c| panic!("history of {person} does not derive: {}", c.reason));
        spells.insert(person.clone(), derived);
    }

    let unregistered_on = |uscc: &str, date: NaiveDate| match registry.get(uscc) {
        None => true,
        Some(inst) => {
            inst.status != InstitutionStatus::Active
                && inst.status_since.is_some_and(|since| since <= date)
        }
    };

    // Quotas in force.
    let mut quota_records: HashMap<(String, QuotaCategory), Vec<&crate::domain::Quota>> =
        HashMap::new();
    for quota in &quotas {
        quota_records
            .entry((quota.institution.to_string(), quota.category))
            .or_default()
            .push(quota);
    }
    let quota_on = |uscc: &str, category: QuotaCategory, date: NaiveDate| -> u32 {
        quota_records
            .get(&(uscc.to_owned(), category))
            .and_then(|list| {
                in_force(list, date, |q| (q.effective_from, q.effective_to))
                    .map(|i| list[i].approved_count)
            })
            .unwrap_or(0)
    };
    let count_on = |date: NaiveDate| {
        let mut counts: HashMap<(String, QuotaCategory), u32> = HashMap::new();
        for list in spells.values() {
            for spell in list.iter().filter(|s| on_roll_on(s, date)) {
                *counts
                    .entry((spell.institution.to_string(), spell.category))
                    .or_insert(0) += 1;
            }
        }
        counts
    };

    // OVER_QUOTA, QUOTA_FULL.
    let on_as_of = count_on(as_of);
    for ((uscc, category), &active) in &on_as_of {
        let approved = quota_on(uscc, *category, as_of);
        if active > approved {
            find(RuleCode::OverQuota, uscc, category.code(), "");
        }
        if (approved > 0 && active >= approved) || (approved == 0 && active > 0) {
            find(RuleCode::QuotaFull, uscc, category.code(), "");
        }
    }

    // MIXED_CATEGORY, DUPLICATE_ENROLLMENT, UNREGISTERED_INSTITUTION on the roll.
    for (person, list) in &spells {
        let on: Vec<&Spell> = list.iter().filter(|s| on_roll_on(s, as_of)).collect();
        let mut places: Vec<String> = on.iter().map(|s| s.institution.to_string()).collect();
        places.sort();
        places.dedup();
        if places.len() >= 2 {
            find(RuleCode::DuplicateEnrollment, &places[0], person, "");
        }
        for spell in on {
            let uscc = spell.institution.to_string();
            if let Some(inst) = registry.get(&uscc) {
                let mixed = (inst.kind == InstitutionKind::Organ
                    && spell.category == QuotaCategory::PublicInstitution)
                    || (spell.category == QuotaCategory::PoliticalLegal && !inst.political_legal);
                if mixed {
                    find(RuleCode::MixedCategory, &uscc, person, "");
                }
            }
            if unregistered_on(&uscc, as_of) {
                find(RuleCode::UnregisteredInstitution, &uscc, "", "");
            }
        }
    }

    // OVER_LEADER_POSTS, LEADER_ABOVE_GRADE.
    let mut by_leader: HashMap<String, Vec<&Appointment>> = HashMap::new();
    for appointment in &appointments {
        by_leader
            .entry(appointment.resident_id.to_string())
            .or_default()
            .push(appointment);
    }
    let mut in_office: HashMap<(String, LeaderLevel, LeaderPosition), u32> = HashMap::new();
    for (person, history) in &by_leader {
        let terms: Vec<LeaderTerm> = derive_terms(history)
            .unwrap_or_else(|c| panic!("terms of {person} do not derive: {}", c.reason));
        for term in terms
            .iter()
            .filter(|t| t.valid_from <= as_of && t.valid_to.is_none_or(|to| as_of < to))
        {
            let uscc = term.institution.to_string();
            *in_office
                .entry((uscc.clone(), term.level, term.position))
                .or_insert(0) += 1;
            if let Some(inst) = registry.get(&uscc)
                && rank_code(term.rank) < ceiling(inst.grade)
            {
                find(RuleCode::LeaderAboveGrade, &uscc, person, "");
            }
        }
    }
    let mut post_records: HashMap<
        (String, LeaderLevel, LeaderPosition),
        Vec<&crate::domain::LeaderPost>,
    > = HashMap::new();
    for post in &posts {
        post_records
            .entry((post.institution.to_string(), post.level, post.position))
            .or_default()
            .push(post);
    }
    for (key, &leaders) in &in_office {
        let approved = post_records
            .get(key)
            .and_then(|list| {
                in_force(list, as_of, |p| (p.effective_from, p.effective_to))
                    .map(|i| list[i].approved_count)
            })
            .unwrap_or(0);
        if leaders > approved {
            find(
                RuleCode::OverLeaderPosts,
                &key.0,
                &format!("{}/{}", key.1.code(), key.2.code()),
                "",
            );
        }
    }

    // HIRE_WITHOUT_APPROVAL: entries use approvals up in order of (date, arrival, record id), each
    // from the matching approval that expires first.
    let mut remaining: Vec<u32> = approvals.iter().map(|a| a.approved_entries).collect();
    let mut order: Vec<&Entry> = entries.iter().collect();
    order.sort_by(|a, b| (a.date, a.arrival, &a.record_id).cmp(&(b.date, b.arrival, &b.record_id)));
    let mut by_number: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, approval) in approvals.iter().enumerate() {
        by_number
            .entry(approval.approval_number.as_str())
            .or_default()
            .push(i);
    }
    let no_approvals: Vec<usize> = Vec::new();
    for entry in order {
        let candidates = entry
            .number
            .as_deref()
            .and_then(|n| by_number.get(n))
            .unwrap_or(&no_approvals);
        let best = candidates
            .iter()
            .map(|&i| (i, &approvals[i]))
            .filter(|(i, a)| {
                remaining[*i] > 0
                    && a.institution.as_str() == entry.institution
                    && a.category == entry.category
                    && a.issued_on <= entry.date
                    && entry.date <= a.valid_until
            })
            .min_by_key(|(i, a)| (a.valid_until, *i))
            .map(|(i, _)| i);
        match best {
            Some(i) => remaining[i] -= 1,
            None => find(
                RuleCode::HireWithoutApproval,
                &entry.institution,
                &entry.resident,
                &entry.date.to_string(),
            ),
        }
    }

    // OVER_PLAN, in every year with entries.
    let mut entered: HashMap<(String, QuotaCategory, i32), u32> = HashMap::new();
    for entry in &entries {
        *entered
            .entry((
                entry.institution.clone(),
                entry.category,
                chrono::Datelike::year(&entry.date),
            ))
            .or_insert(0) += 1;
    }
    let mut latest_plan: HashMap<(String, QuotaCategory, i32, crate::domain::HiringChannel), u32> =
        HashMap::new();
    for plan in &plans {
        latest_plan.insert(
            (
                plan.institution.to_string(),
                plan.category,
                plan.year,
                plan.channel,
            ),
            plan.approved_count,
        );
    }
    let mut planned: HashMap<(String, QuotaCategory, i32), u32> = HashMap::new();
    for ((uscc, category, year, _), count) in &latest_plan {
        let (uscc, category, year, count) = (uscc.clone(), *category, *year, *count);
        *planned.entry((uscc, category, year)).or_insert(0) += count;
    }
    for (key, count) in &entered {
        if *count > planned.get(key).copied().unwrap_or(0) {
            find(RuleCode::OverPlan, &key.0, key.1.code(), &key.2.to_string());
        }
    }
    // RESERVE_SHORTFALL: placements still to come, and the other channels past their plans.
    let mut kept: HashMap<(String, QuotaCategory, i32), (u32, u32)> = HashMap::new();
    for ((uscc, category, year, channel), count) in &latest_plan {
        let (reserve, others) = kept.entry((uscc.clone(), *category, *year)).or_default();
        if *channel == crate::domain::HiringChannel::PolicyPlacement {
            *reserve += count;
        } else {
            *others += count;
        }
    }
    let mut placements: HashMap<(String, QuotaCategory, i32), u32> = HashMap::new();
    for entry in entries.iter().filter(|e| e.placed) {
        let year = chrono::Datelike::year(&entry.date);
        *placements
            .entry((entry.institution.clone(), entry.category, year))
            .or_insert(0) += 1;
    }
    for (key, count) in &entered {
        let placed = placements.get(key).copied().unwrap_or(0);
        let (reserve, others_plan) = kept.get(key).copied().unwrap_or_default();
        if reserve > placed && count - placed > others_plan {
            find(
                RuleCode::ReserveShortfall,
                &key.0,
                key.1.code(),
                &key.2.to_string(),
            );
        }
    }

    // Pay rules, per person and period.
    let mut lines: HashMap<(String, Period), Vec<String>> = HashMap::new();
    for line in &payroll {
        lines
            .entry((line.resident_id.to_string(), line.period))
            .or_default()
            .push(line.institution.to_string());
        if unregistered_on(line.institution.as_str(), line.period.first_day()) {
            find(
                RuleCode::UnregisteredInstitution,
                line.institution.as_str(),
                "",
                &line.period.to_string(),
            );
        }
    }
    let none: Vec<Spell> = Vec::new();
    for ((person, period), payers) in &lines {
        let label = period.to_string();
        let list = spells.get(person).unwrap_or(&none);
        let active: Vec<&Spell> = list.iter().filter(|s| on_roll_during(s, *period)).collect();
        if active.is_empty() {
            let exited = list.iter().any(|s| {
                matches!(
                    s.status,
                    PersonStatus::Retired | PersonStatus::Departed | PersonStatus::Deceased
                ) && s.valid_from <= period.first_day()
            });
            let code = if exited {
                RuleCode::PaidAfterExit
            } else {
                RuleCode::PaidNotOnRoll
            };
            for payer in payers {
                find(code, payer, person, &label);
            }
        } else {
            for payer in payers {
                let on_its_roll = active.iter().any(|s| s.institution.as_str() == payer);
                let seconded = active.iter().any(|s| {
                    s.status == PersonStatus::Seconded
                        && s.seconded_to
                            .as_ref()
                            .is_some_and(|host| host.as_str() == payer)
                });
                if !on_its_roll && !seconded {
                    find(RuleCode::PayUnitMismatch, payer, person, &label);
                }
            }
        }
        let mut distinct = payers.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() >= 2 {
            find(RuleCode::DoublePay, &distinct[0], person, &label);
        }
    }

    // Funding rules, on the latest funding of each (institution, category, period).
    let mut latest_funding: HashMap<(String, QuotaCategory, Period), &crate::domain::Funding> =
        HashMap::new();
    for funding in &fundings {
        latest_funding.insert(
            (
                funding.institution.to_string(),
                funding.category,
                funding.period,
            ),
            funding,
        );
    }
    let mut counts_at: HashMap<Period, HashMap<(String, QuotaCategory), u32>> = HashMap::new();
    for ((uscc, category, period), funding) in &latest_funding {
        let last = period.last_day();
        let counts = counts_at.entry(*period).or_insert_with(|| count_on(last));
        let active = counts.get(&(uscc.clone(), *category)).copied().unwrap_or(0);
        let allowed = active.min(quota_on(uscc, *category, last));
        let label = period.to_string();
        if funding.funded_headcount > allowed {
            find(RuleCode::FundedOverQuota, uscc, category.code(), &label);
        }
        let self_funded = registry
            .get(uscc)
            .is_some_and(|i| i.funding_form == Some(FundingForm::SelfFunded));
        if self_funded && (funding.amount_fen > 0 || funding.funded_headcount > 0) {
            find(RuleCode::SelfFundedBudgetPay, uscc, category.code(), &label);
        }
        if unregistered_on(uscc, period.first_day()) {
            find(RuleCode::UnregisteredInstitution, uscc, "", &label);
        }
    }

    // Freshness, on a hub that received each delivery on its day and judges from the first:
    // a finance agency owes every month from its first sent (and due after the start) whose due
    // day has come; an HR agency's events that took effect after its first delivery and were sent
    // more than the days allowed later, within the window, are backdated.
    let cadence = crate::domain::freshness::Cadence::default();
    let due_day = |period: Period| {
        let next = period.last_day() + chrono::Days::new(1);
        next.with_day(cadence.payroll_due_day)
            .expect("a day every month has")
    };
    let window_from = as_of - chrono::Days::new(u64::from(cadence.window_days) - 1);
    let mut first_sent: HashMap<String, NaiveDate> = HashMap::new();
    let mut months: BTreeMap<String, BTreeSet<Period>> = BTreeMap::new();
    for delivery in data.deliveries.iter().filter(|d| d.on <= as_of) {
        let id = delivery.agency.id();
        let first = first_sent.entry(id.clone()).or_insert(delivery.on);
        *first = (*first).min(delivery.on);
        if delivery.kind == Kind::PayrollLine {
            let sent = months.entry(id).or_default();
            for line in &payroll[delivery.records.clone()] {
                sent.insert(line.period);
            }
        }
    }
    for (agency, sent) in &months {
        let Some(mut period) = sent.first().copied() else {
            continue;
        };
        while due_day(period) < data.start {
            period = period.next();
        }
        while due_day(period) <= as_of {
            if !sent.contains(&period) {
                find(RuleCode::LatePayroll, agency, "", &period.to_string());
            }
            period = period.next();
        }
    }
    for delivery in &data.deliveries {
        let judged = window_from.max(data.start) <= delivery.on && delivery.on <= as_of;
        if delivery.kind != Kind::PersonnelEvent || !judged {
            continue;
        }
        let id = delivery.agency.id();
        let late = events[delivery.records.clone()].iter().any(|event| {
            event.effective_on >= first_sent[&id]
                && (delivery.on - event.effective_on).num_days() > i64::from(cadence.event_due_days)
        });
        if late {
            find(RuleCode::BackdatedEvent, &id, "", "");
        }
    }
    out
}
