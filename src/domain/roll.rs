//! How personnel events become an effective-dated roll, and appointments become leader terms.
//!
//! The hub keeps every event and derives the person's spells from all of them, ordered by effective
//! date and then by arrival. Deriving from scratch (a person has a handful of events) makes a
//! backdated event correct by construction: it is slotted into the history, and refused if the
//! history no longer holds together with it.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{
    Appointment, AppointmentAction, Coded, LeaderLevel, LeaderPosition, PersonStatus,
    PersonnelEvent, PersonnelEventType, QuotaCategory, Rank, Uscc,
};

/// A stretch of time `[valid_from, valid_to)` in which a person's record on one roll did not change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spell {
    /// Whose roll.
    pub institution: Uscc,
    /// Category occupied.
    pub category: QuotaCategory,
    /// Rank.
    pub rank: Rank,
    /// Status during the spell.
    pub status: PersonStatus,
    /// First day.
    pub valid_from: NaiveDate,
    /// Day after the last; `None` while it lasts.
    pub valid_to: Option<NaiveDate>,
    /// Approval the person entered under.
    pub approval_number: Option<String>,
    /// Host during a secondment.
    pub seconded_to: Option<Uscc>,
}

impl Spell {
    /// Whether the spell covers `date`.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.valid_from <= date && self.valid_to.is_none_or(|to| date < to)
    }
}

/// Why an event does not fit the person's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollConflict {
    /// Position of the offending event in the list given.
    pub index: usize,
    /// What is wrong, in plain words.
    pub reason: String,
}

/// Derives a person's spells from events given in arrival order. Events are applied by effective
/// date, ties in arrival order.
pub fn derive_spells(events: &[&PersonnelEvent]) -> Result<Vec<Spell>, RollConflict> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (events[i].effective_on, i));

    let mut closed: Vec<Spell> = Vec::new();
    // The open spell on each roll; an open spell with a final status (retired, ...) stays until a
    // re-hire, so that pay after exit can be told from pay to a stranger.
    let mut open: BTreeMap<Uscc, Spell> = BTreeMap::new();

    for index in order {
        let event = events[index];
        let date = event.effective_on;
        let conflict = |reason: String| RollConflict { index, reason };
        let current = open
            .get(&event.institution)
            .filter(|s| s.status.is_on_roll())
            .cloned();

        use PersonnelEventType as T;
        match event.event_type {
            T::Hire => {
                if current.is_some() {
                    return Err(conflict(format!(
                        "already on the roll of {} on {date}",
                        event.institution
                    )));
                }
                close(&mut open, &mut closed, &event.institution, date);
                open.insert(
                    event.institution.clone(),
                    entry(event, event.institution.clone()),
                );
            }
            T::Transfer => {
                let Some(_) = current else {
                    return Err(conflict(not_on_roll(event)));
                };
                let target = event
                    .target
                    .clone()
                    .expect("checked: a transfer has a target");
                if open.get(&target).is_some_and(|s| s.status.is_on_roll()) {
                    return Err(conflict(format!(
                        "already on the roll of {target} on {date}"
                    )));
                }
                close(&mut open, &mut closed, &event.institution, date);
                close(&mut open, &mut closed, &target, date);
                open.insert(target.clone(), entry(event, target));
            }
            T::Leave | T::Return | T::Secondment | T::Change => {
                let Some(spell) = current else {
                    return Err(conflict(not_on_roll(event)));
                };
                let (status, seconded_to) = match event.event_type {
                    T::Leave if spell.status == PersonStatus::Active => {
                        (PersonStatus::OnLeave, None)
                    }
                    T::Secondment if spell.status == PersonStatus::Active => {
                        (PersonStatus::Seconded, event.target.clone())
                    }
                    T::Return if spell.status != PersonStatus::Active => {
                        (PersonStatus::Active, None)
                    }
                    T::Change => (spell.status, spell.seconded_to.clone()),
                    _ => {
                        return Err(conflict(format!(
                            "cannot {} a person whose status on {date} is {}",
                            event.event_type.code().to_lowercase(),
                            spell.status
                        )));
                    }
                };
                close(&mut open, &mut closed, &event.institution, date);
                let next = Spell {
                    category: event.category.unwrap_or(spell.category),
                    rank: event.rank.unwrap_or(spell.rank),
                    status,
                    seconded_to,
                    valid_from: date,
                    valid_to: None,
                    ..spell
                };
                open.insert(event.institution.clone(), next);
            }
            T::Retirement | T::Departure | T::Death => {
                let Some(spell) = current else {
                    return Err(conflict(not_on_roll(event)));
                };
                let status = match event.event_type {
                    T::Retirement => PersonStatus::Retired,
                    T::Departure => PersonStatus::Departed,
                    _ => PersonStatus::Deceased,
                };
                close(&mut open, &mut closed, &event.institution, date);
                open.insert(
                    event.institution.clone(),
                    Spell {
                        status,
                        seconded_to: None,
                        valid_from: date,
                        valid_to: None,
                        ..spell
                    },
                );
            }
        }
    }
    closed.extend(open.into_values());
    closed.sort_by(|a, b| (a.valid_from, &a.institution).cmp(&(b.valid_from, &b.institution)));
    Ok(closed)
}

fn not_on_roll(event: &PersonnelEvent) -> String {
    format!(
        "{} is not on the roll of {} on {}",
        event.resident_id.masked(),
        event.institution,
        event.effective_on
    )
}

fn entry(event: &PersonnelEvent, institution: Uscc) -> Spell {
    Spell {
        institution,
        category: event.category.expect("checked: an entry has a category"),
        rank: event.rank.expect("checked: an entry has a rank"),
        status: PersonStatus::Active,
        valid_from: event.effective_on,
        valid_to: None,
        approval_number: event.approval_number.clone(),
        seconded_to: None,
    }
}

/// Ends the open spell on a roll at `date`; a spell that would last no day is dropped.
fn close(
    open: &mut BTreeMap<Uscc, Spell>,
    closed: &mut Vec<Spell>,
    institution: &Uscc,
    date: NaiveDate,
) {
    if let Some(mut spell) = open.remove(institution)
        && spell.valid_from < date
    {
        spell.valid_to = Some(date);
        closed.push(spell);
    }
}

/// A term `[valid_from, valid_to)` in a leadership post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderTerm {
    /// Whose post.
    pub institution: Uscc,
    /// 厅, 处 or 科.
    pub level: LeaderLevel,
    /// 正 or 副.
    pub position: LeaderPosition,
    /// Rank with the post.
    pub rank: Rank,
    /// First day.
    pub valid_from: NaiveDate,
    /// Day after the last; `None` while it lasts.
    pub valid_to: Option<NaiveDate>,
}

/// Derives a person's leader terms from appointments given in arrival order.
pub fn derive_terms(appointments: &[&Appointment]) -> Result<Vec<LeaderTerm>, RollConflict> {
    let mut order: Vec<usize> = (0..appointments.len()).collect();
    order.sort_by_key(|&i| (appointments[i].effective_on, i));
    let mut terms: Vec<LeaderTerm> = Vec::new();
    for index in order {
        let a = appointments[index];
        let open = terms.iter_mut().find(|t| {
            t.valid_to.is_none()
                && t.institution == a.institution
                && t.level == a.level
                && t.position == a.position
        });
        match (a.action, open) {
            (AppointmentAction::Appoint, None) => terms.push(LeaderTerm {
                institution: a.institution.clone(),
                level: a.level,
                position: a.position,
                rank: a.rank,
                valid_from: a.effective_on,
                valid_to: None,
            }),
            (AppointmentAction::Appoint, Some(_)) => {
                return Err(RollConflict {
                    index,
                    reason: format!(
                        "already holds a {} {} post at {} on {}",
                        a.level, a.position, a.institution, a.effective_on
                    ),
                });
            }
            (AppointmentAction::Remove, Some(term)) => term.valid_to = Some(a.effective_on),
            (AppointmentAction::Remove, None) => {
                return Err(RollConflict {
                    index,
                    reason: format!(
                        "holds no {} {} post at {} on {}",
                        a.level, a.position, a.institution, a.effective_on
                    ),
                });
            }
        }
    }
    terms.retain(|t| t.valid_to.is_none_or(|to| t.valid_from < to));
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{ResidentId, parse_date};

    fn uscc(n: u32) -> Uscc {
        Uscc::with_check_character(&format!("12140100MB{n:07}")).unwrap()
    }

    fn event(kind: PersonnelEventType, at: u32, date: &str) -> PersonnelEvent {
        PersonnelEvent {
            event_type: kind,
            resident_id: ResidentId::parse("11010519491231002X").unwrap(),
            name: "张三".into(),
            institution: uscc(at),
            category: Some(QuotaCategory::PublicInstitution),
            rank: Some(Rank::Clerk),
            effective_on: parse_date(date).unwrap(),
            approval_number: None,
            channel: None,
            target: None,
            corrects: None,
        }
    }

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn hire_leave_return_retire_makes_contiguous_spells() {
        use PersonnelEventType as T;
        let events = [
            event(T::Hire, 1, "2020-01-01"),
            event(T::Leave, 1, "2021-03-01"),
            event(T::Return, 1, "2021-06-01"),
            event(T::Retirement, 1, "2024-01-01"),
        ];
        let spells = derive_spells(&events.iter().collect::<Vec<_>>()).unwrap();
        let statuses: Vec<_> = spells.iter().map(|s| s.status).collect();
        assert_eq!(
            statuses,
            [
                PersonStatus::Active,
                PersonStatus::OnLeave,
                PersonStatus::Active,
                PersonStatus::Retired
            ]
        );
        assert_eq!(spells[0].valid_to, Some(d("2021-03-01")));
        assert!(spells[3].valid_to.is_none());
        // The day before retirement they are on the roll; on the day they are not.
        let on_roll = |date| {
            spells
                .iter()
                .any(|s| s.covers(date) && s.status.is_on_roll())
        };
        assert!(on_roll(d("2023-12-31")));
        assert!(!on_roll(d("2024-01-01")));
        assert!(!on_roll(d("2019-12-31")));
    }

    #[test]
    fn a_backdated_event_is_slotted_into_history() {
        use PersonnelEventType as T;
        let events = [
            event(T::Hire, 1, "2020-01-01"),
            event(T::Departure, 1, "2022-01-01"),
        ];
        let mut with_leave = events.to_vec();
        with_leave.push(event(T::Leave, 1, "2021-01-01"));
        let spells = derive_spells(&with_leave.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(spells.len(), 3);
        assert_eq!(spells[1].status, PersonStatus::OnLeave);
        assert_eq!(spells[1].valid_to, Some(d("2022-01-01")));
    }

    #[test]
    fn events_that_do_not_fit_are_refused_with_their_index() {
        use PersonnelEventType as T;
        let hire = event(T::Hire, 1, "2020-01-01");
        let depart = event(T::Departure, 1, "2022-01-01");
        let late_return = event(T::Return, 1, "2021-01-01");
        let conflict = derive_spells(&[&hire, &depart, &late_return]).unwrap_err();
        assert_eq!(conflict.index, 2);
        // A departure backdated before the hire does not fit either.
        let early = event(T::Departure, 1, "2019-01-01");
        assert_eq!(derive_spells(&[&hire, &early]).unwrap_err().index, 1);
        // Hiring twice onto the same roll is refused; onto another roll it is kept (and later flagged).
        assert!(derive_spells(&[&hire, &event(T::Hire, 1, "2021-01-01")]).is_err());
        let both = derive_spells(&[&hire, &event(T::Hire, 2, "2021-01-01")]).unwrap();
        assert_eq!(both.len(), 2);
    }

    #[test]
    fn transfer_moves_the_person_and_rehire_follows_departure() {
        use PersonnelEventType as T;
        let mut transfer = event(T::Transfer, 1, "2021-01-01");
        transfer.target = Some(uscc(2));
        let events = [
            event(T::Hire, 1, "2020-01-01"),
            transfer,
            event(T::Departure, 2, "2022-01-01"),
            event(T::Hire, 2, "2023-01-01"),
        ];
        let spells = derive_spells(&events.iter().collect::<Vec<_>>()).unwrap();
        let at = |date| {
            spells
                .iter()
                .filter(|s| s.covers(d(date)) && s.status.is_on_roll())
                .map(|s| s.institution.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(at("2020-12-31"), vec![uscc(1)]);
        assert_eq!(at("2021-01-01"), vec![uscc(2)]);
        assert!(at("2022-06-01").is_empty());
        assert_eq!(at("2023-01-01"), vec![uscc(2)]);
    }

    #[test]
    fn appointments_open_and_close_terms() {
        let appoint = |action, date: &str| Appointment {
            action,
            resident_id: ResidentId::parse("11010519491231002X").unwrap(),
            name: "李四".into(),
            institution: uscc(1),
            level: LeaderLevel::Division,
            position: LeaderPosition::Deputy,
            rank: Rank::DivisionDeputy,
            effective_on: d(date),
            document: "并组字〔2020〕1号".into(),
        };
        let a = appoint(AppointmentAction::Appoint, "2020-01-01");
        let r = appoint(AppointmentAction::Remove, "2022-01-01");
        let terms = derive_terms(&[&a, &r]).unwrap();
        assert_eq!(terms.len(), 1);
        assert_eq!(terms[0].valid_to, Some(d("2022-01-01")));
        assert_eq!(derive_terms(&[&r]).unwrap_err().index, 0);
        assert_eq!(derive_terms(&[&a, &a.clone()]).unwrap_err().index, 1);
    }
}
