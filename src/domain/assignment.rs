//! Assignment down the levels and closure level by level (案件转交办、逐级对账销号). A staffing
//! office hands a ledger item to the staffing office of the division directly below it (交办);
//! that office may hand it on one level further down. The item's chain of levels runs from the
//! office that first assigned it down to the office that works it. The department rectifies and
//! submits as for any item; then the levels confirm it from the lowest up: the lowest level's
//! confirmation is its report back (上报), each higher level's its check of the report, and the
//! top level's confirmation closes the item (销号). Nothing here reads or writes: the store keeps
//! the chain and asks these rules.

use chrono::NaiveDate;

use super::agency::{Agency, AgencyKind, Jurisdiction};
use super::ledger::{ItemState, is_overdue};

/// One level of an item's chain: the division whose staffing office holds the item there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// The division (its staffing office acts for the level).
    pub jurisdiction: Jurisdiction,
    /// Whether this level has confirmed the item in the current round.
    pub confirmed: bool,
}

/// The division directly above `code` (a district's city, a city's province); `None` for a
/// province.
pub fn parent(code: &Jurisdiction) -> Option<Jurisdiction> {
    let text = code.as_str();
    let up = if text.ends_with("0000") {
        return None;
    } else if text.ends_with("00") {
        format!("{}0000", &text[..2])
    } else {
        format!("{}00", &text[..4])
    };
    Jurisdiction::parse(&up).ok()
}

/// Why an assignment is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignRefused {
    /// Only a staffing office assigns.
    NotStaffingOffice,
    /// A closed item is not assigned.
    Closed,
    /// The item lies outside the caller's jurisdiction.
    Outside,
    /// The item is held by another level: only the office at the bottom of the chain hands it on.
    HeldBy(Jurisdiction),
    /// A level has already confirmed the item; it is on its way up, not down.
    Confirming,
    /// The target is not the division directly below the caller.
    NotDirectlyBelow,
    /// The item's department does not lie in the target division.
    NotInTarget,
}

impl AssignRefused {
    /// The refusal in words, Chinese first.
    pub fn explain(&self) -> String {
        match self {
            AssignRefused::NotStaffingOffice => {
                "只有编办可以交办 / only a staffing office assigns".into()
            }
            AssignRefused::Closed => "事项已销号 / the item is closed".into(),
            AssignRefused::Outside => {
                "事项不在本级管辖范围 / the item is outside the caller's jurisdiction".into()
            }
            AssignRefused::HeldBy(level) => format!(
                "事项由 {level} 承办，只有承办的编办可以继续交办 / the item is held by {level}; only the office holding it hands it on"
            ),
            AssignRefused::Confirming => {
                "事项已开始逐级销号，不能再交办 / a level has confirmed the item; it can no longer be assigned".into()
            }
            AssignRefused::NotDirectlyBelow => {
                "只能交办给直接下一级 / an item is assigned to the division directly below".into()
            }
            AssignRefused::NotInTarget => {
                "责任单位不在受办地区 / the item's department is not in the division assigned".into()
            }
        }
    }
}

/// Whether `caller` may assign an item of `item_jurisdiction` in `state`, whose chain is
/// `chain` (top first; empty if never assigned), to the staffing office of `to`. On success,
/// the levels to add to the chain: the caller's own when the chain is empty, then `to`.
pub fn check_assign(
    caller: &Agency,
    item_jurisdiction: &Jurisdiction,
    state: ItemState,
    chain: &[Level],
    to: &Jurisdiction,
) -> Result<Vec<Jurisdiction>, AssignRefused> {
    if caller.kind != AgencyKind::StaffingOffice {
        return Err(AssignRefused::NotStaffingOffice);
    }
    if state == ItemState::Closed {
        return Err(AssignRefused::Closed);
    }
    if !caller.oversees(item_jurisdiction) {
        return Err(AssignRefused::Outside);
    }
    if let Some(bottom) = chain.last() {
        if bottom.jurisdiction != caller.jurisdiction {
            return Err(AssignRefused::HeldBy(bottom.jurisdiction.clone()));
        }
        if chain.iter().any(|level| level.confirmed) {
            return Err(AssignRefused::Confirming);
        }
    }
    if parent(to).as_ref() != Some(&caller.jurisdiction) {
        return Err(AssignRefused::NotDirectlyBelow);
    }
    if !to.contains(item_jurisdiction) {
        return Err(AssignRefused::NotInTarget);
    }
    let mut added = Vec::with_capacity(2);
    if chain.is_empty() {
        added.push(caller.jurisdiction.clone());
    }
    added.push(to.clone());
    Ok(added)
}

/// The level an item waits on: the lowest that has not confirmed (confirmations go from the
/// bottom up, so those confirmed are the chain's tail). `None` when every level has confirmed
/// or the item was never assigned.
pub fn waiting_on(chain: &[Level]) -> Option<usize> {
    chain.iter().rposition(|level| !level.confirmed)
}

/// Why a confirmation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmRefused {
    /// Only a staffing office confirms.
    NotStaffingOffice,
    /// The item was never assigned; it closes by the ledger's own move.
    NotAssigned,
    /// The department has not submitted its rectification (or the item is closed).
    NotSubmitted(ItemState),
    /// The caller's division is not a level of the chain.
    NotALevel,
    /// The caller's level has confirmed already.
    AlreadyConfirmed,
    /// A lower level has to confirm first (逐级): the item waits on it.
    WaitsOn(Jurisdiction),
}

impl ConfirmRefused {
    /// The refusal in words, Chinese first.
    pub fn explain(&self) -> String {
        match self {
            ConfirmRefused::NotStaffingOffice => {
                "只有编办可以逐级销号 / only a staffing office confirms".into()
            }
            ConfirmRefused::NotAssigned => {
                "事项未交办，按台账流程销号 / the item was never assigned; close it with MoveItem"
                    .into()
            }
            ConfirmRefused::NotSubmitted(state) => format!(
                "责任单位尚未报送整改结果（当前 {state}）/ the department has not submitted its rectification (the item is {state})"
            ),
            ConfirmRefused::NotALevel => {
                "本级不在交办链上 / the caller's division is not a level of the item's chain".into()
            }
            ConfirmRefused::AlreadyConfirmed => {
                "本级已确认 / this level has confirmed already".into()
            }
            ConfirmRefused::WaitsOn(level) => format!(
                "须由下级先确认：事项正等待 {level} / a lower level confirms first: the item waits on {level}"
            ),
        }
    }
}

/// What a confirmation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// The chain's index of the level confirming.
    pub depth: usize,
    /// The lowest level's confirmation: its report back (上报) to the level above.
    pub reports_back: bool,
    /// The top level's confirmation: the item closes (销号).
    pub closes: bool,
}

/// Whether `caller` may confirm an item in `state` with chain `chain` now.
pub fn check_confirm(
    caller: &Agency,
    state: ItemState,
    chain: &[Level],
) -> Result<Confirmation, ConfirmRefused> {
    if caller.kind != AgencyKind::StaffingOffice {
        return Err(ConfirmRefused::NotStaffingOffice);
    }
    if chain.is_empty() {
        return Err(ConfirmRefused::NotAssigned);
    }
    if state != ItemState::Submitted {
        return Err(ConfirmRefused::NotSubmitted(state));
    }
    let depth = chain
        .iter()
        .position(|level| level.jurisdiction == caller.jurisdiction)
        .ok_or(ConfirmRefused::NotALevel)?;
    if chain[depth].confirmed {
        return Err(ConfirmRefused::AlreadyConfirmed);
    }
    let waiting = waiting_on(chain).ok_or(ConfirmRefused::AlreadyConfirmed)?;
    if waiting != depth {
        return Err(ConfirmRefused::WaitsOn(chain[waiting].jurisdiction.clone()));
    }
    Ok(Confirmation {
        depth,
        reports_back: depth + 1 == chain.len(),
        closes: depth == 0,
    })
}

/// Whether the ledger's own close (MoveItem CLOSE) may close an item with this chain: an
/// assigned item closes only by its levels' confirmations, so never.
pub fn closes_by_hand(chain: &[Level]) -> bool {
    chain.is_empty()
}

/// Whether `caller` may send an assigned item back to the department (SEND_BACK): only the level
/// it waits on, whose check failed; the confirmations below it are undone with it, so the round
/// starts again from the bottom.
pub fn may_send_back(caller: &Agency, chain: &[Level]) -> bool {
    chain.is_empty()
        || waiting_on(chain).is_some_and(|i| chain[i].jurisdiction == caller.jurisdiction)
}

/// What the ledger's report needs of an assigned item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedFacts {
    /// The item's chain, top first.
    pub chain: Vec<Level>,
    /// Whether it is closed.
    pub closed: bool,
    /// When it is due.
    pub due_on: NaiveDate,
}

/// One line of the report by level: the items of a division's office still to confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelRow {
    /// The division whose staffing office the items wait on.
    pub jurisdiction: String,
    /// Assigned items not closed that wait on it.
    pub waiting: u64,
    /// Of those, the ones past due.
    pub overdue: u64,
    /// Of those, the ones it works (the bottom of their chain) rather than checks.
    pub working: u64,
}

/// Assigned items not yet closed, by the level they wait on, in division order.
pub fn waiting_by_level(items: &[AssignedFacts], today: NaiveDate) -> Vec<LevelRow> {
    let mut rows: std::collections::BTreeMap<String, LevelRow> = std::collections::BTreeMap::new();
    for item in items.iter().filter(|item| !item.closed) {
        let Some(depth) = waiting_on(&item.chain) else {
            continue;
        };
        let level = item.chain[depth].jurisdiction.as_str();
        let row = rows.entry(level.to_owned()).or_insert_with(|| LevelRow {
            jurisdiction: level.to_owned(),
            waiting: 0,
            overdue: 0,
            working: 0,
        });
        row.waiting += 1;
        row.overdue += u64::from(is_overdue(item.due_on, false, today));
        row.working += u64::from(depth + 1 == item.chain.len());
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(code: &str) -> Jurisdiction {
        Jurisdiction::parse(code).unwrap()
    }

    fn office(code: &str) -> Agency {
        Agency::new(j(code), AgencyKind::StaffingOffice)
    }

    fn chain(levels: &[(&str, bool)]) -> Vec<Level> {
        levels
            .iter()
            .map(|(code, confirmed)| Level {
                jurisdiction: j(code),
                confirmed: *confirmed,
            })
            .collect()
    }

    #[test]
    fn parents_go_up_one_level() {
        assert_eq!(parent(&j("140105")), Some(j("140100")));
        assert_eq!(parent(&j("140100")), Some(j("140000")));
        assert_eq!(parent(&j("140000")), None);
    }

    #[test]
    fn a_city_assigns_to_its_district_and_only_directly_below() {
        let district = j("140105");
        let added = check_assign(
            &office("140100"),
            &district,
            ItemState::Open,
            &[],
            &district,
        );
        assert_eq!(added, Ok(vec![j("140100"), j("140105")]));
        // A province hands it to the city, not straight to the district.
        assert_eq!(
            check_assign(
                &office("140000"),
                &district,
                ItemState::Open,
                &[],
                &district
            ),
            Err(AssignRefused::NotDirectlyBelow)
        );
        assert_eq!(
            check_assign(
                &office("140000"),
                &district,
                ItemState::Rectifying,
                &[],
                &j("140100")
            ),
            Ok(vec![j("140000"), j("140100")])
        );
        // Another district of the city does not hold this department.
        assert_eq!(
            check_assign(
                &office("140100"),
                &district,
                ItemState::Open,
                &[],
                &j("140106")
            ),
            Err(AssignRefused::NotInTarget)
        );
        // Not upwards, not sideways, not its own level.
        assert_eq!(
            check_assign(
                &office("140100"),
                &j("140100"),
                ItemState::Open,
                &[],
                &j("140100")
            ),
            Err(AssignRefused::NotDirectlyBelow)
        );
    }

    #[test]
    fn assignment_refusals() {
        let district = j("140105");
        let hr = Agency::new(j("140100"), AgencyKind::Hr);
        assert_eq!(
            check_assign(&hr, &district, ItemState::Open, &[], &district),
            Err(AssignRefused::NotStaffingOffice)
        );
        assert_eq!(
            check_assign(
                &office("140100"),
                &district,
                ItemState::Closed,
                &[],
                &district
            ),
            Err(AssignRefused::Closed)
        );
        assert_eq!(
            check_assign(
                &office("140200"),
                &district,
                ItemState::Open,
                &[],
                &j("140205")
            ),
            Err(AssignRefused::Outside)
        );
        // Held by the district: the city cannot assign it again, the province cannot either.
        let held = chain(&[("140100", false), ("140105", false)]);
        assert_eq!(
            check_assign(
                &office("140100"),
                &district,
                ItemState::Open,
                &held,
                &district
            ),
            Err(AssignRefused::HeldBy(j("140105")))
        );
        // The province first assigned it to the city; the city hands it on to the district.
        let from_province = chain(&[("140000", false), ("140100", false)]);
        assert_eq!(
            check_assign(
                &office("140100"),
                &district,
                ItemState::Open,
                &from_province,
                &district
            ),
            Ok(vec![j("140105")])
        );
        let confirming = chain(&[("140000", false), ("140100", true)]);
        assert_eq!(
            check_assign(
                &office("140100"),
                &district,
                ItemState::Submitted,
                &confirming,
                &district
            ),
            Err(AssignRefused::Confirming)
        );
    }

    #[test]
    fn levels_confirm_from_the_lowest_up_and_the_top_closes() {
        let mut levels = chain(&[("140000", false), ("140100", false), ("140105", false)]);
        assert_eq!(waiting_on(&levels), Some(2));
        // Out of order: the city and the province wait for the district.
        for code in ["140100", "140000"] {
            assert_eq!(
                check_confirm(&office(code), ItemState::Submitted, &levels),
                Err(ConfirmRefused::WaitsOn(j("140105")))
            );
        }
        assert_eq!(
            check_confirm(&office("140105"), ItemState::Submitted, &levels),
            Ok(Confirmation {
                depth: 2,
                reports_back: true,
                closes: false
            })
        );
        levels[2].confirmed = true;
        assert_eq!(
            check_confirm(&office("140105"), ItemState::Submitted, &levels),
            Err(ConfirmRefused::AlreadyConfirmed)
        );
        assert_eq!(
            check_confirm(&office("140000"), ItemState::Submitted, &levels),
            Err(ConfirmRefused::WaitsOn(j("140100")))
        );
        assert_eq!(
            check_confirm(&office("140100"), ItemState::Submitted, &levels),
            Ok(Confirmation {
                depth: 1,
                reports_back: false,
                closes: false
            })
        );
        levels[1].confirmed = true;
        assert_eq!(
            check_confirm(&office("140000"), ItemState::Submitted, &levels),
            Ok(Confirmation {
                depth: 0,
                reports_back: false,
                closes: true
            })
        );
        levels[0].confirmed = true;
        assert_eq!(waiting_on(&levels), None);
    }

    #[test]
    fn confirmation_refusals() {
        let levels = chain(&[("140100", false), ("140105", false)]);
        assert_eq!(
            check_confirm(&office("140105"), ItemState::Rectifying, &levels),
            Err(ConfirmRefused::NotSubmitted(ItemState::Rectifying)),
            "the department submits before the district reports back"
        );
        assert_eq!(
            check_confirm(&office("140105"), ItemState::Submitted, &[]),
            Err(ConfirmRefused::NotAssigned)
        );
        assert_eq!(
            check_confirm(&office("140106"), ItemState::Submitted, &levels),
            Err(ConfirmRefused::NotALevel)
        );
        assert_eq!(
            check_confirm(
                &Agency::new(j("140105"), AgencyKind::Finance),
                ItemState::Submitted,
                &levels
            ),
            Err(ConfirmRefused::NotStaffingOffice)
        );
    }

    #[test]
    fn an_assigned_item_closes_only_by_confirmation_and_is_sent_back_by_the_level_waited_on() {
        let levels = chain(&[("140100", false), ("140105", true)]);
        assert!(!closes_by_hand(&levels));
        assert!(closes_by_hand(&[]));
        assert!(may_send_back(&office("140100"), &levels));
        assert!(!may_send_back(&office("140105"), &levels));
        assert!(may_send_back(&office("140105"), &[]));
    }

    #[test]
    fn the_report_counts_items_by_the_level_they_wait_on() {
        let due = "2024-06-30".parse().unwrap();
        let late = "2024-05-01".parse().unwrap();
        let item = |levels: &[(&str, bool)], closed: bool, due_on: NaiveDate| AssignedFacts {
            chain: chain(levels),
            closed,
            due_on,
        };
        let items = [
            item(&[("140100", false), ("140105", false)], false, due),
            item(&[("140100", false), ("140105", false)], false, late),
            item(&[("140100", false), ("140105", true)], false, late),
            item(&[("140100", true), ("140105", true)], true, due),
            item(&[("140100", false), ("140106", false)], true, due),
        ];
        let rows = waiting_by_level(&items, "2024-06-01".parse().unwrap());
        assert_eq!(
            rows,
            vec![
                LevelRow {
                    jurisdiction: "140100".into(),
                    waiting: 1,
                    overdue: 1,
                    working: 0
                },
                LevelRow {
                    jurisdiction: "140105".into(),
                    waiting: 2,
                    overdue: 1,
                    working: 2
                },
            ],
            "closed items wait on no one"
        );
    }
}
