//! The hub's own rules engine on generated data, without a database: the dataset becomes a
//! [`Snapshot`] the way the store builds one (latest registry version per unit, spells and terms
//! derived from each person's records in push order, entries from hires and arriving transfers,
//! arrival order = position in the files), and [`rules::check`] runs over it with the default
//! settings; the freshness findings are `freshness::decide`'s over what the delivery timeline
//! makes each agency's pushes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Dataset, Kind, Planted};
use crate::api::convert::Pushed as Message;
use crate::domain::findings::{
    Entry, InstitutionFacts, PersonSpell, PersonTerm, Pushed, RecordRef, RulesConfig, Scope,
    Snapshot,
};
use crate::domain::freshness::{AgencyPushes, Backdated, Cadence, decide};
use crate::domain::ids::parse_date;
use crate::domain::roll::{derive_spells, derive_terms};
use crate::domain::{AgencyKind, Period, PersonnelEventType, rules};

fn pushed<M: Message>(agency: &str, messages: &[M]) -> Vec<Pushed<M::Record>> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| Pushed {
            id: RecordRef(format!("{agency}/{}", m.record_id())),
            record: m.to_record().expect("generated records validate"),
            accepted_at: i as i64,
        })
        .collect()
}

/// The findings the hub's engine raises on the dataset, on its check date.
pub(super) fn findings(data: &Dataset) -> BTreeSet<Planted> {
    let root = &data.root;
    let office = format!("{root}/staffing-office");
    let mut snapshot = Snapshot::default();
    let mut latest: HashMap<String, InstitutionFacts> = HashMap::new();
    for (i, m) in data.institutions.iter().enumerate() {
        let inst = m.to_record().expect("generated records validate");
        latest.insert(
            inst.uscc.to_string(),
            InstitutionFacts {
                uscc: inst.uscc.clone(),
                jurisdiction: inst.jurisdiction.clone(),
                kind: inst.kind,
                grade: inst.grade,
                funding_form: inst.funding_form,
                status: inst.status,
                status_since: inst.status_since,
                political_legal: inst.political_legal,
                record: RecordRef(format!("{office}/{}", data.institutions[i].record_id)),
            },
        );
    }
    let mut facts: Vec<InstitutionFacts> = latest.into_values().collect();
    facts.sort_by(|a, b| a.uscc.cmp(&b.uscc));
    snapshot.institutions = facts;
    snapshot.quotas = pushed(&office, &data.quotas);
    snapshot.leader_posts = pushed(&office, &data.leader_posts);
    snapshot.plans = pushed(&office, &data.plans);
    snapshot.approvals = pushed(&office, &data.approvals);
    snapshot.payroll = pushed(&format!("{root}/finance"), &data.payroll);
    snapshot.fundings = pushed(&format!("{root}/finance"), &data.fundings);

    let events: Vec<_> = data
        .events
        .iter()
        .map(|m| m.to_record().expect("valid"))
        .collect();
    let mut by_person: HashMap<String, Vec<_>> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        by_person
            .entry(event.resident_id.to_string())
            .or_default()
            .push(event);
        let institution = match event.event_type {
            PersonnelEventType::Hire => event.institution.clone(),
            PersonnelEventType::Transfer => event.target.clone().expect("a transfer has a target"),
            _ => continue,
        };
        snapshot.entries.push(Entry {
            resident_id: event.resident_id.clone(),
            institution,
            category: event.category.expect("an entry has a category"),
            channel: event.channel,
            date: event.effective_on,
            approval_number: event.approval_number.clone(),
            arrival: i as i64,
            record: RecordRef(format!("{root}/hr/{}", data.events[i].record_id)),
        });
    }
    let mut people: Vec<_> = by_person.into_iter().collect();
    people.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, history) in people {
        let resident_id = history[0].resident_id.clone();
        for spell in derive_spells(&history).expect("histories derive") {
            snapshot.spells.push(PersonSpell {
                resident_id: resident_id.clone(),
                spell,
            });
        }
    }
    let appointments: Vec<_> = data
        .appointments
        .iter()
        .map(|m| m.to_record().expect("valid"))
        .collect();
    let mut by_leader: HashMap<String, Vec<_>> = HashMap::new();
    for a in &appointments {
        by_leader
            .entry(a.resident_id.to_string())
            .or_default()
            .push(a);
    }
    let mut leaders: Vec<_> = by_leader.into_iter().collect();
    leaders.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, history) in leaders {
        let resident_id = history[0].resident_id.clone();
        for term in derive_terms(&history).expect("terms derive") {
            snapshot.terms.push(PersonTerm {
                resident_id: resident_id.clone(),
                term,
                record: RecordRef(format!("term/{id}")),
            });
        }
    }
    let scope = Scope {
        everything: true,
        ..Scope::default()
    };
    let as_of = parse_date(&data.as_of).expect("as_of");
    let mut found: BTreeSet<Planted> =
        rules::check(&snapshot, &scope, as_of, &RulesConfig::default())
            .iter()
            .map(|finding| Planted::from(&finding.key))
            .collect();
    found.extend(freshness(data, as_of));
    found
}

/// The hub's freshness decision (`freshness::decide`) on the check date over what each finance
/// and HR agency sent, as the store notes it at each push on the hub's date: the pay periods, and
/// the events sent later than the cadence allows that took effect after the agency's first push.
fn freshness(data: &Dataset, as_of: chrono::NaiveDate) -> Vec<Planted> {
    let cadence = Cadence::default();
    let mut noted: BTreeMap<String, AgencyPushes> = BTreeMap::new();
    for delivery in data.deliveries.iter().filter(|d| d.on <= as_of) {
        let pushes = noted
            .entry(delivery.agency.id())
            .or_insert_with(|| AgencyPushes {
                agency: delivery.agency.clone(),
                registered_on: delivery.on,
                periods: BTreeSet::new(),
                backdated: Vec::new(),
                watched_from: Some(data.start),
            });
        // Deliveries come by day: the first one noted is the agency's first push.
        let first = pushes.registered_on;
        match delivery.kind {
            Kind::PayrollLine => {
                for line in &data.payroll[delivery.records.clone()] {
                    pushes
                        .periods
                        .insert(Period::parse(&line.period).expect("generated periods parse"));
                }
            }
            Kind::PersonnelEvent => {
                for event in &data.events[delivery.records.clone()] {
                    let effective_on = parse_date(&event.effective_on).expect("generated dates");
                    if effective_on >= first && cadence.backdated(effective_on, delivery.on) {
                        pushes.backdated.push(Backdated {
                            record: RecordRef(format!("{}/{}", pushes.agency, event.record_id)),
                            effective_on,
                            pushed_on: delivery.on,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    noted
        .values()
        .filter(|pushes| matches!(pushes.agency.kind, AgencyKind::Finance | AgencyKind::Hr))
        .flat_map(|pushes| decide(pushes, as_of, &cadence))
        .map(|finding| Planted::from(&finding.key))
        .collect()
}
