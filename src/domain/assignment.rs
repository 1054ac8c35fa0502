//! Assignment down the levels and closure level by level (案件转交办、逐级对账销号). A staffing
//! office hands a matter — a ledger item or a case — to the staffing office of the division
//! directly below it (交办); that office may hand it on one level further down. The matter's
//! chain of levels runs from the office that first assigned it down to the office that works it.
//! For an item the department rectifies and submits as for any item; a case the bottom office
//! investigates itself. Then the levels confirm the matter from the lowest up: the lowest level's
//! confirmation is its report back (上报), each higher level's its check of the report, and the
//! top level's confirmation closes it (销号). The level the matter waits on may send it back,
//! which undoes the round. Nothing here reads or writes: the store keeps the chain and asks
//! these rules.

use std::fmt;

use chrono::NaiveDate;

use super::Coded;
use super::agency::{Agency, AgencyKind, Jurisdiction};
use super::ledger::{CaseState, ItemState, is_overdue};

/// Where a matter that can be assigned stands, as the chain's rules read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatterState {
    /// A ledger item: its department works it and submits.
    Item(ItemState),
    /// A case: the office at the bottom of the chain investigates it and reports.
    Case(CaseState),
}

impl From<ItemState> for MatterState {
    fn from(state: ItemState) -> MatterState {
        MatterState::Item(state)
    }
}

impl From<CaseState> for MatterState {
    fn from(state: CaseState) -> MatterState {
        MatterState::Case(state)
    }
}

impl MatterState {
    /// The state's code, as steps keep it.
    pub fn code(self) -> &'static str {
        match self {
            MatterState::Item(state) => state.code(),
            MatterState::Case(state) => state.code(),
        }
    }

    /// Whether the matter is closed.
    pub fn closed(self) -> bool {
        matches!(
            self,
            MatterState::Item(ItemState::Closed) | MatterState::Case(CaseState::Closed)
        )
    }

    /// The state the top level's confirmation closes the matter to.
    pub fn closing(self) -> MatterState {
        match self {
            MatterState::Item(_) => MatterState::Item(ItemState::Closed),
            MatterState::Case(_) => MatterState::Case(CaseState::Closed),
        }
    }

    /// Whether the work the levels confirm has been done: an item's department has submitted
    /// its rectification; a case is under investigation by the office that holds it (whose
    /// confirmation is its report).
    fn worked(self) -> bool {
        matches!(
            self,
            MatterState::Item(ItemState::Submitted) | MatterState::Case(CaseState::Investigating)
        )
    }
}

impl fmt::Display for MatterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

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

/// The division directly below `caller` on the way down to `matter` (the only division a
/// matter of `matter` can be assigned to by `caller`'s office); `None` when `matter` is not
/// below `caller`.
pub fn next_level_toward(caller: &Jurisdiction, matter: &Jurisdiction) -> Option<Jurisdiction> {
    let mut level = matter.clone();
    loop {
        let up = parent(&level)?;
        if &up == caller {
            return Some(level);
        }
        level = up;
    }
}

/// Why an assignment is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignRefused {
    /// Only a staffing office assigns.
    NotStaffingOffice,
    /// A closed matter is not assigned.
    Closed,
    /// The matter lies outside the caller's jurisdiction.
    Outside,
    /// The matter is held by another level: only the office at the bottom of the chain hands it
    /// on.
    HeldBy(Jurisdiction),
    /// A level has already confirmed the matter; it is on its way up, not down.
    Confirming,
    /// The target is not the division directly below the caller.
    NotDirectlyBelow,
    /// The matter (an item's department, a case's division) does not lie in the target division.
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

/// Whether `caller` may assign a matter of `matter_jurisdiction` in `state`, whose chain is
/// `chain` (top first; empty if never assigned), to the staffing office of `to`. On success,
/// the levels to add to the chain: the caller's own when the chain is empty, then `to`.
pub fn check_assign(
    caller: &Agency,
    matter_jurisdiction: &Jurisdiction,
    state: impl Into<MatterState>,
    chain: &[Level],
    to: &Jurisdiction,
) -> Result<Vec<Jurisdiction>, AssignRefused> {
    if caller.kind != AgencyKind::StaffingOffice {
        return Err(AssignRefused::NotStaffingOffice);
    }
    if state.into().closed() {
        return Err(AssignRefused::Closed);
    }
    if !caller.oversees(matter_jurisdiction) {
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
    if !to.contains(matter_jurisdiction) {
        return Err(AssignRefused::NotInTarget);
    }
    let mut added = Vec::with_capacity(2);
    if chain.is_empty() {
        added.push(caller.jurisdiction.clone());
    }
    added.push(to.clone());
    Ok(added)
}

/// The level a matter waits on: the lowest that has not confirmed (confirmations go from the
/// bottom up, so those confirmed are the chain's tail). `None` when every level has confirmed
/// or the matter was never assigned.
pub fn waiting_on(chain: &[Level]) -> Option<usize> {
    chain.iter().rposition(|level| !level.confirmed)
}

/// Why a confirmation is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmRefused {
    /// Only a staffing office confirms.
    NotStaffingOffice,
    /// The matter was never assigned; it closes by its own move (MoveItem, MoveCase).
    NotAssigned,
    /// The work is not done: an item's department has not submitted its rectification, a case
    /// is not under investigation (or the matter is closed).
    NotWorked(MatterState),
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
                "事项未交办，按原流程办结 / the matter was never assigned; close it with MoveItem or MoveCase"
                    .into()
            }
            ConfirmRefused::NotWorked(MatterState::Item(state)) => format!(
                "责任单位尚未报送整改结果（当前 {state}）/ the department has not submitted its rectification (the item is {state})"
            ),
            ConfirmRefused::NotWorked(MatterState::Case(state)) => format!(
                "案件尚未进入调查（当前 {state}）/ the case is not under investigation (it is {state}); the office that holds it investigates before it reports"
            ),
            ConfirmRefused::NotALevel => {
                "本级不在交办链上 / the caller's division is not a level of the chain".into()
            }
            ConfirmRefused::AlreadyConfirmed => {
                "本级已确认 / this level has confirmed already".into()
            }
            ConfirmRefused::WaitsOn(level) => format!(
                "须由下级先确认：正等待 {level} / a lower level confirms first: it waits on {level}"
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
    /// The top level's confirmation: the matter closes (销号).
    pub closes: bool,
}

impl Confirmation {
    /// What the confirmation's note must say, if it must say anything: a case's report back is
    /// what the office found (上报), and the confirmation that closes a case is its written
    /// outcome, as a case never closes without one. An item's confirmations may be bare: the
    /// department's submission says what was done.
    pub fn note_required(&self, state: MatterState) -> Option<&'static str> {
        match state {
            MatterState::Case(_) if self.closes => {
                Some("a case closes with its written outcome (办理结果)")
            }
            MatterState::Case(_) if self.reports_back => {
                Some("the report back (上报) says what the investigation found")
            }
            _ => None,
        }
    }
}

/// Whether `caller` may confirm a matter in `state` with chain `chain` now.
pub fn check_confirm(
    caller: &Agency,
    state: impl Into<MatterState>,
    chain: &[Level],
) -> Result<Confirmation, ConfirmRefused> {
    let state = state.into();
    if caller.kind != AgencyKind::StaffingOffice {
        return Err(ConfirmRefused::NotStaffingOffice);
    }
    if chain.is_empty() {
        return Err(ConfirmRefused::NotAssigned);
    }
    if !state.worked() {
        return Err(ConfirmRefused::NotWorked(state));
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

/// Whether the matter's own close (MoveItem CLOSE, MoveCase CLOSED) may close a matter with this
/// chain: an assigned matter closes only by its levels' confirmations, so never.
pub fn closes_by_hand(chain: &[Level]) -> bool {
    chain.is_empty()
}

/// Whether `caller`'s office works a matter with this chain by hand (a case's MoveCase to
/// INVESTIGATING): any office that may when it was never assigned, else only the office at the
/// bottom of the chain, which holds it. `Err` names the level that holds it.
pub fn check_work(caller: &Agency, chain: &[Level]) -> Result<(), Jurisdiction> {
    match chain.last() {
        Some(bottom) if bottom.jurisdiction != caller.jurisdiction => {
            Err(bottom.jurisdiction.clone())
        }
        _ => Ok(()),
    }
}

/// Why a send-back is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendBackRefused {
    /// Only a staffing office sends back.
    NotStaffingOffice,
    /// A case is sent back only down its chain: one never assigned has no report to send back.
    NotAssigned,
    /// The work is not done, or the matter is closed: there is nothing to send back.
    NotWorked(MatterState),
    /// The caller's division is not a level of the chain.
    NotALevel,
    /// The office at the bottom of a case's chain has not reported back yet: there is no report
    /// to send back.
    NothingReported,
    /// Only the level the matter waits on sends it back.
    NotWaitedOn(Option<Jurisdiction>),
}

impl SendBackRefused {
    /// The refusal in words, Chinese first.
    pub fn explain(&self) -> String {
        match self {
            SendBackRefused::NotStaffingOffice => {
                "只有编办可以退回 / only a staffing office sends back".into()
            }
            SendBackRefused::NotAssigned => {
                "案件未交办，无上报可退回 / the case was never assigned: there is no report to send back"
                    .into()
            }
            SendBackRefused::NotWorked(state) => format!(
                "尚无可退回的办理结果（当前 {state}）/ there is nothing to send back (it is {state})"
            ),
            SendBackRefused::NotALevel => {
                "本级不在交办链上 / the caller's division is not a level of the chain".into()
            }
            SendBackRefused::NothingReported => {
                "承办的编办尚未上报 / the office that works it has not reported back yet".into()
            }
            SendBackRefused::NotWaitedOn(Some(level)) => format!(
                "由等待确认的一级退回：正等待 {level} / the level it waits on sends it back: it waits on {level}"
            ),
            SendBackRefused::NotWaitedOn(None) => {
                "各级均已确认 / every level has confirmed it".into()
            }
        }
    }
}

/// Whether `caller` may send a matter back: only the level it waits on, whose check failed; the
/// confirmations below it are undone with it, so the round starts again from the bottom. An item
/// goes back to its department (SEND_BACK: submitted → rectifying), and one never assigned is
/// sent back by any staffing office that oversees it, as before assignment existed. A case goes
/// back to the office at the bottom of its chain, which investigates again; the bottom has
/// nothing to send back to but itself, so a case is sent back only once the bottom has reported.
pub fn check_send_back(
    caller: &Agency,
    state: impl Into<MatterState>,
    chain: &[Level],
) -> Result<(), SendBackRefused> {
    let state = state.into();
    if caller.kind != AgencyKind::StaffingOffice {
        return Err(SendBackRefused::NotStaffingOffice);
    }
    if chain.is_empty() {
        return match state {
            MatterState::Item(_) => Ok(()),
            MatterState::Case(_) => Err(SendBackRefused::NotAssigned),
        };
    }
    if !chain
        .iter()
        .any(|level| level.jurisdiction == caller.jurisdiction)
    {
        return Err(SendBackRefused::NotALevel);
    }
    if !state.worked() {
        return Err(SendBackRefused::NotWorked(state));
    }
    let waiting = waiting_on(chain);
    if waiting.is_some_and(|i| chain[i].jurisdiction != caller.jurisdiction) || waiting.is_none() {
        return Err(SendBackRefused::NotWaitedOn(
            waiting.map(|i| chain[i].jurisdiction.clone()),
        ));
    }
    if matches!(state, MatterState::Case(_)) && waiting == Some(chain.len() - 1) {
        return Err(SendBackRefused::NothingReported);
    }
    Ok(())
}

/// Whether `caller` may send an assigned item back to the department (SEND_BACK); see
/// [`check_send_back`].
pub fn may_send_back(caller: &Agency, chain: &[Level]) -> bool {
    check_send_back(caller, ItemState::Submitted, chain).is_ok()
}

/// The chain's moves `caller` may make on a matter now, for a page to offer (each is still
/// checked when made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moves {
    /// Assign it to this division's office (交办), the one directly below the caller on the
    /// way to the matter.
    pub assign_to: Option<Jurisdiction>,
    /// Confirm it at the caller's level, and what that confirmation does.
    pub confirm: Option<Confirmation>,
    /// Send it back.
    pub send_back: bool,
}

/// The moves of [`Moves`] the rules allow `caller` on a matter of `matter_jurisdiction`.
pub fn moves(
    caller: &Agency,
    matter_jurisdiction: &Jurisdiction,
    state: impl Into<MatterState>,
    chain: &[Level],
) -> Moves {
    let state = state.into();
    let assign_to = next_level_toward(&caller.jurisdiction, matter_jurisdiction)
        .filter(|to| check_assign(caller, matter_jurisdiction, state, chain, to).is_ok());
    Moves {
        assign_to,
        confirm: check_confirm(caller, state, chain).ok(),
        send_back: !chain.is_empty() && check_send_back(caller, state, chain).is_ok(),
    }
}

/// What the report by level needs of an assigned matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedFacts {
    /// The matter's chain, top first.
    pub chain: Vec<Level>,
    /// Whether it is closed.
    pub closed: bool,
    /// When it is due.
    pub due_on: NaiveDate,
}

/// One line of the report by level: the matters a division's office has still to confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelRow {
    /// The division whose staffing office the matters wait on.
    pub jurisdiction: String,
    /// Assigned matters not closed that wait on it.
    pub waiting: u64,
    /// Of those, the ones past due.
    pub overdue: u64,
    /// Of those, the ones it works (the bottom of their chain) rather than checks.
    pub working: u64,
}

/// Assigned matters (items, or cases) not yet closed, by the level they wait on, in division
/// order.
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
            Err(ConfirmRefused::NotWorked(ItemState::Rectifying.into())),
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

    #[test]
    fn the_next_level_toward_a_matter_is_the_only_division_it_is_assigned_to() {
        assert_eq!(
            next_level_toward(&j("140100"), &j("140105")),
            Some(j("140105"))
        );
        assert_eq!(
            next_level_toward(&j("140000"), &j("140105")),
            Some(j("140100"))
        );
        assert_eq!(
            next_level_toward(&j("140000"), &j("140100")),
            Some(j("140100"))
        );
        assert_eq!(next_level_toward(&j("140100"), &j("140100")), None);
        assert_eq!(next_level_toward(&j("140100"), &j("140205")), None);
        assert_eq!(next_level_toward(&j("140105"), &j("140100")), None);
    }

    #[test]
    fn a_case_goes_down_and_up_the_chain_as_an_item_does() {
        let district = j("140105");
        assert_eq!(
            check_assign(
                &office("140100"),
                &district,
                CaseState::Received,
                &[],
                &district
            ),
            Ok(vec![j("140100"), j("140105")])
        );
        assert_eq!(
            check_assign(
                &office("140100"),
                &district,
                CaseState::Closed,
                &[],
                &district
            ),
            Err(AssignRefused::Closed)
        );
        // A case of the city itself is the city's own: no district holds it.
        assert_eq!(
            check_assign(
                &office("140100"),
                &j("140100"),
                CaseState::Received,
                &[],
                &district
            ),
            Err(AssignRefused::NotInTarget)
        );
        let mut levels = chain(&[("140100", false), ("140105", false)]);
        // The district investigates before it reports.
        assert_eq!(
            check_confirm(&office("140105"), CaseState::Received, &levels),
            Err(ConfirmRefused::NotWorked(CaseState::Received.into()))
        );
        assert_eq!(
            check_confirm(&office("140100"), CaseState::Investigating, &levels),
            Err(ConfirmRefused::WaitsOn(district.clone()))
        );
        let report = check_confirm(&office("140105"), CaseState::Investigating, &levels).unwrap();
        assert!(report.reports_back && !report.closes);
        assert!(
            report
                .note_required(CaseState::Investigating.into())
                .is_some(),
            "a case's report back says what was found"
        );
        assert_eq!(report.note_required(ItemState::Submitted.into()), None);
        levels[1].confirmed = true;
        let close = check_confirm(&office("140100"), CaseState::Investigating, &levels).unwrap();
        assert!(close.closes);
        assert!(
            close
                .note_required(CaseState::Investigating.into())
                .unwrap()
                .contains("outcome")
        );
        assert_eq!(
            MatterState::from(CaseState::Investigating).closing(),
            MatterState::Case(CaseState::Closed)
        );
    }

    #[test]
    fn a_case_is_sent_back_by_the_level_waited_on_once_the_bottom_has_reported() {
        let reported = chain(&[("140100", false), ("140105", true)]);
        let unreported = chain(&[("140100", false), ("140105", false)]);
        let investigating = CaseState::Investigating;
        assert_eq!(
            check_send_back(&office("140100"), investigating, &reported),
            Ok(())
        );
        assert_eq!(
            check_send_back(&office("140105"), investigating, &reported),
            Err(SendBackRefused::NotWaitedOn(Some(j("140100"))))
        );
        assert_eq!(
            check_send_back(&office("140105"), investigating, &unreported),
            Err(SendBackRefused::NothingReported)
        );
        assert_eq!(
            check_send_back(&office("140100"), investigating, &[]),
            Err(SendBackRefused::NotAssigned)
        );
        assert_eq!(
            check_send_back(&office("140106"), investigating, &reported),
            Err(SendBackRefused::NotALevel)
        );
        assert_eq!(
            check_send_back(&office("140100"), CaseState::Closed, &reported),
            Err(SendBackRefused::NotWorked(CaseState::Closed.into()))
        );
        assert_eq!(
            check_send_back(
                &Agency::new(j("140100"), AgencyKind::Discipline),
                investigating,
                &reported
            ),
            Err(SendBackRefused::NotStaffingOffice)
        );
        // An item's bottom level sends the department's submission back; an item never assigned
        // is sent back as it always was.
        assert!(may_send_back(&office("140105"), &unreported));
        assert!(may_send_back(&office("140100"), &[]));
    }

    #[test]
    fn only_the_office_holding_an_assigned_case_works_it() {
        let levels = chain(&[("140000", false), ("140100", false), ("140105", false)]);
        assert_eq!(check_work(&office("140105"), &levels), Ok(()));
        assert_eq!(check_work(&office("140100"), &levels), Err(j("140105")));
        assert_eq!(check_work(&office("140100"), &[]), Ok(()));
    }

    #[test]
    fn the_moves_a_page_offers_are_those_the_rules_allow() {
        let district = j("140105");
        let city = office("140100");
        assert_eq!(
            moves(&city, &district, CaseState::Received, &[]),
            Moves {
                assign_to: Some(district.clone()),
                confirm: None,
                send_back: false
            }
        );
        let held = chain(&[("140100", false), ("140105", false)]);
        assert_eq!(
            moves(&city, &district, CaseState::Investigating, &held),
            Moves {
                assign_to: None,
                confirm: None,
                send_back: false
            },
            "the city waits for the district's report"
        );
        let reported = chain(&[("140100", false), ("140105", true)]);
        let offered = moves(&city, &district, CaseState::Investigating, &reported);
        assert!(offered.confirm.is_some_and(|c| c.closes) && offered.send_back);
        assert_eq!(
            moves(
                &office("140105"),
                &district,
                CaseState::Investigating,
                &held
            )
            .confirm,
            Some(Confirmation {
                depth: 1,
                reports_back: true,
                closes: false
            })
        );
    }
}
