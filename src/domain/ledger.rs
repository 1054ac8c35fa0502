//! Follow-through (事后跟踪督办): the rectification ledger, staffing applications, penalties, and
//! the cases public reports become. Items and cases are state machines moved by hand; this module
//! says which moves exist, which agency kinds may make them, and when an item or case is overdue
//! and how far up the ladder it has climbed. Every move is kept as a step; none is ever edited.

use chrono::NaiveDate;

use super::agency::AgencyKind;
use super::coded_enum;

coded_enum! {
    /// Where a ledger item (问题整改台账 entry) stands.
    ItemState, "ITEM_STATE_" {
        /// Opened; the department has not started.
        Open = "OPEN",
        /// The department is putting it right.
        Rectifying = "RECTIFYING",
        /// The department says it is fixed, with its explanation.
        Submitted = "SUBMITTED",
        /// Verified and closed by the staffing office (对账销号).
        Closed = "CLOSED",
    }
}

coded_enum! {
    /// A hand move of a ledger item.
    ItemAction, "ITEM_ACTION_" {
        /// Open → rectifying.
        StartRectifying = "START_RECTIFYING",
        /// Rectifying → submitted.
        Submit = "SUBMIT",
        /// Submitted → rectifying: the fix does not hold.
        SendBack = "SEND_BACK",
        /// Submitted → closed, after verification.
        Close = "CLOSE",
    }
}

/// Agency kinds that act for a department: they start and report its rectification.
const DEPARTMENT_SIDE: &[AgencyKind] = &[
    AgencyKind::StaffingOffice,
    AgencyKind::Organization,
    AgencyKind::Hr,
    AgencyKind::Finance,
];

/// Where `action` takes an item in state `from`, if it may be taken there.
pub fn item_move(from: ItemState, action: ItemAction) -> Option<ItemState> {
    use ItemAction as A;
    use ItemState as S;
    match (from, action) {
        (S::Open, A::StartRectifying) => Some(S::Rectifying),
        (S::Rectifying, A::Submit) => Some(S::Submitted),
        (S::Submitted, A::SendBack) => Some(S::Rectifying),
        (S::Submitted, A::Close) => Some(S::Closed),
        _ => None,
    }
}

/// Whether an agency of `kind` may take `action`: the department's side works on the item, only
/// the staffing office verifies it (sends it back or closes it). Discipline and audit read.
pub fn item_action_allowed(kind: AgencyKind, action: ItemAction) -> bool {
    match action {
        ItemAction::StartRectifying | ItemAction::Submit => DEPARTMENT_SIDE.contains(&kind),
        ItemAction::SendBack | ItemAction::Close => kind == AgencyKind::StaffingOffice,
    }
}

/// Why a move is refused, or `Ok` with the state it leads to.
pub fn check_item_move(
    kind: AgencyKind,
    from: ItemState,
    action: ItemAction,
) -> Result<ItemState, MoveRefused> {
    if !item_action_allowed(kind, action) {
        return Err(MoveRefused::NotForAgency);
    }
    item_move(from, action).ok_or(MoveRefused::NotFromState)
}

/// Why a hand move was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveRefused {
    /// This agency kind may not make the move.
    NotForAgency,
    /// The move does not start from the current state.
    NotFromState,
}

coded_enum! {
    /// Where a case (from a public report) stands.
    CaseState, "CASE_STATE_" {
        /// Received, with an owner and a deadline.
        Received = "RECEIVED",
        /// Its owner is looking into it.
        Investigating = "INVESTIGATING",
        /// Closed with a written outcome (按时办结).
        Closed = "CLOSED",
    }
}

/// Whether a case may move from `from` to `to`. Only the staffing office moves cases; a case is
/// closed only with a written outcome, which the caller checks.
pub fn case_move_allowed(kind: AgencyKind, from: CaseState, to: CaseState) -> bool {
    use CaseState as S;
    kind == AgencyKind::StaffingOffice
        && matches!(
            (from, to),
            (S::Received, S::Investigating) | (S::Received | S::Investigating, S::Closed)
        )
}

coded_enum! {
    /// How a public report came in (三位一体).
    ReportChannel, "REPORT_CHANNEL_" {
        /// The 12310 hotline.
        Hotline = "HOTLINE",
        /// The online mailbox.
        Mailbox = "MAILBOX",
        /// Letters and visits (信访).
        LettersAndVisits = "LETTERS_AND_VISITS",
    }
}

/// Steps of the escalation ladder an open matter due on `due_on` has climbed by `today`: one on
/// the day after it is due (电话提醒), two a week later (书面警示), three a month later (实地督查).
pub fn overdue_level(due_on: NaiveDate, closed: bool, today: NaiveDate) -> i64 {
    if closed || today <= due_on {
        return 0;
    }
    let late = (today - due_on).num_days();
    match late {
        ..=6 => 1,
        7..=29 => 2,
        _ => 3,
    }
}

/// Whether an open matter due on `due_on` is overdue on `today`.
pub fn is_overdue(due_on: NaiveDate, closed: bool, today: NaiveDate) -> bool {
    overdue_level(due_on, closed, today) > 0
}

coded_enum! {
    /// What a department applies for (机构编制事项).
    ApplicationKind, "APPLICATION_KIND_" {
        /// Set up an institution.
        SetUp = "SET_UP",
        /// Abolish an institution.
        Abolish = "ABOLISH",
        /// Merge institutions.
        Merge = "MERGE",
        /// Change grade or functions.
        ChangeGrade = "CHANGE_GRADE",
        /// Change a quota.
        ChangeQuota = "CHANGE_QUOTA",
        /// Change leader posts.
        ChangeLeaderPosts = "CHANGE_LEADER_POSTS",
        /// A hiring approval (用编审批).
        HiringApproval = "HIRING_APPROVAL",
    }
}

coded_enum! {
    /// Where an application stands.
    ApplicationState, "APPLICATION_STATE_" {
        /// Awaiting the staffing office.
        Pending = "PENDING",
        /// Approved: the registry carries it.
        Approved = "APPROVED",
        /// Rejected.
        Rejected = "REJECTED",
    }
}

coded_enum! {
    /// A penalty against an institution.
    PenaltyKind, "PENALTY_KIND_" {
        /// 核减空余编制: the approved quota is lowered by vacant places.
        CutVacantQuota = "CUT_VACANT_QUOTA",
        /// 诫勉 / 通报批评: an admonition on record.
        Admonition = "ADMONITION",
    }
}

/// The quota left after cutting `cut` vacant places from `approved` with `occupied` on the roll:
/// only vacancies may be cut, never below the people already there.
pub fn quota_after_cut(approved: u32, occupied: u32, cut: u32) -> Result<u32, String> {
    let vacant = approved.saturating_sub(occupied);
    if cut == 0 {
        return Err("a cut must be of at least one place".into());
    }
    if cut > vacant {
        return Err(format!(
            "only {vacant} of {approved} places are vacant; {cut} cannot be cut"
        ));
    }
    Ok(approved - cut)
}

coded_enum! {
    /// What a transfer is.
    TransferKind, "TRANSFER_KIND_" {
        /// 案件移送: to the discipline inspection agency.
        Transfer = "TRANSFER",
        /// 联合督查: shared with several agencies.
        JointInspection = "JOINT_INSPECTION",
    }
}

coded_enum! {
    /// What a transfer is about.
    MatterKind, "MATTER_KIND_" {
        /// An alert (a finding).
        Alert = "ALERT",
        /// A ledger item.
        LedgerItem = "LEDGER_ITEM",
        /// A case from a public report.
        Case = "CASE",
        /// A special inspection campaign (its opening on the feed; never transferred).
        Campaign = "CAMPAIGN",
        /// An institution's declaration in a campaign (its absence on the feed; never transferred).
        Declaration = "DECLARATION",
    }
}

/// The agency kinds a transfer reaches: a transfer goes to discipline inspection only; a joint
/// inspection to those named, which must be among discipline, audit, organization and finance.
pub fn transfer_reach(kind: TransferKind, named: &[AgencyKind]) -> Result<Vec<AgencyKind>, String> {
    const JOINT: &[AgencyKind] = &[
        AgencyKind::Discipline,
        AgencyKind::Audit,
        AgencyKind::Organization,
        AgencyKind::Finance,
    ];
    match kind {
        TransferKind::Transfer => Ok(vec![AgencyKind::Discipline]),
        TransferKind::JointInspection => {
            let mut reach: Vec<AgencyKind> = named.to_vec();
            reach.sort();
            reach.dedup();
            if reach.is_empty() {
                return Err("a joint inspection names at least one agency".into());
            }
            if let Some(other) = reach.iter().find(|k| !JOINT.contains(k)) {
                return Err(format!("{other} does not take part in joint inspections"));
            }
            Ok(reach)
        }
    }
}

/// A feed event's reach as stored: `,discipline,audit,` (empty means every kind).
pub fn reach_text(kinds: &[AgencyKind]) -> String {
    if kinds.is_empty() {
        return String::new();
    }
    let mut text = String::from(",");
    for kind in kinds {
        text.push_str(kind.slug());
        text.push(',');
    }
    text
}

/// Whether an agency of `kind` is reached by an event of stored reach `reach`. The feed's SQL
/// (`reach = '' OR reach LIKE '%,kind,%'`) is the same test.
pub fn reaches(reach: &str, kind: AgencyKind) -> bool {
    reach.is_empty() || reach.contains(&format!(",{},", kind.slug()))
}

/// Removes personal data from a bulletin's text: resident ID numbers are masked
/// (`110105********002X`), as everywhere the reader has no need for them.
pub fn redact(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == 'X' || **c == 'x')
            .count();
        if run == 18 && chars[i..i + 17].iter().all(char::is_ascii_digit) {
            out.extend(&chars[i..i + 6]);
            out.push_str("********");
            out.extend(&chars[i + 14..i + 18]);
            i += 18;
        } else if run > 0 {
            out.extend(&chars[i..i + run]);
            i += run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// An overdue ledger item that holds back a department's applications (暂停受理).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueItem {
    /// The item's id.
    pub id: String,
    /// When it was due.
    pub due_on: NaiveDate,
    /// What is wrong.
    pub title: String,
}

/// What the periodic reconciliation of the ledger needs of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFacts {
    /// The department's jurisdiction.
    pub jurisdiction: String,
    /// The department.
    pub department: String,
    /// The day it was opened.
    pub opened_on: NaiveDate,
    /// The day it was closed, if it was.
    pub closed_on: Option<NaiveDate>,
    /// When it is due.
    pub due_on: NaiveDate,
}

/// One department's line of the ledger's reconciliation (定期对账).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportRow {
    /// The jurisdiction.
    pub jurisdiction: String,
    /// The department.
    pub department: String,
    /// Items opened in the period.
    pub opened: u64,
    /// Items closed in the period.
    pub closed: u64,
    /// Items overdue at the period's end.
    pub overdue: u64,
    /// Opening day of the oldest item still open at the period's end.
    pub oldest_open_on: Option<NaiveDate>,
}

/// The ledger's reconciliation for the days `from..=to` (from the beginning when `from` is
/// `None`), per jurisdiction and department, in that order. A department appears if it had an item
/// opened or closed in the period or one still open at its end.
pub fn reconcile_ledger(
    items: &[ItemFacts],
    from: Option<NaiveDate>,
    to: NaiveDate,
) -> Vec<ReportRow> {
    let mut rows: std::collections::BTreeMap<(String, String), ReportRow> =
        std::collections::BTreeMap::new();
    let in_period = |day: NaiveDate| from.is_none_or(|from| day >= from) && day <= to;
    for item in items {
        let opened = in_period(item.opened_on);
        let closed = item.closed_on.is_some_and(in_period);
        let open_at_end = item.opened_on <= to && item.closed_on.is_none_or(|day| day > to);
        if !(opened || closed || open_at_end) {
            continue;
        }
        let row = rows
            .entry((item.jurisdiction.clone(), item.department.clone()))
            .or_insert_with(|| ReportRow {
                jurisdiction: item.jurisdiction.clone(),
                department: item.department.clone(),
                ..ReportRow::default()
            });
        row.opened += u64::from(opened);
        row.closed += u64::from(closed);
        if open_at_end {
            row.overdue += u64::from(is_overdue(item.due_on, false, to));
            row.oldest_open_on = Some(
                row.oldest_open_on
                    .map_or(item.opened_on, |day| day.min(item.opened_on)),
            );
        }
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Coded;
    use AgencyKind::{Audit, Discipline, Finance, Hr, Organization, StaffingOffice};
    use ItemAction as A;
    use ItemState as S;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn every_item_move_from_every_state() {
        let allowed = [
            (S::Open, A::StartRectifying, S::Rectifying),
            (S::Rectifying, A::Submit, S::Submitted),
            (S::Submitted, A::SendBack, S::Rectifying),
            (S::Submitted, A::Close, S::Closed),
        ];
        for &from in S::ALL {
            for &action in A::ALL {
                let expected = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                assert_eq!(item_move(from, action), expected, "{from} by {action}");
            }
        }
        assert_eq!(item_move(S::Closed, A::SendBack), None, "closed is final");
        assert_eq!(item_move(S::Open, A::Close), None, "no closing unverified");
    }

    #[test]
    fn only_the_staffing_office_verifies_and_discipline_and_audit_only_read() {
        for action in [A::SendBack, A::Close] {
            for kind in AgencyKind::ALL {
                assert_eq!(
                    item_action_allowed(kind, action),
                    kind == StaffingOffice,
                    "{kind} {action}"
                );
            }
        }
        for action in [A::StartRectifying, A::Submit] {
            for kind in [StaffingOffice, Organization, Hr, Finance] {
                assert!(item_action_allowed(kind, action), "{kind} {action}");
            }
            for kind in [Discipline, Audit] {
                assert!(!item_action_allowed(kind, action), "{kind} {action}");
            }
        }
        assert_eq!(
            check_item_move(Hr, S::Submitted, A::Close),
            Err(MoveRefused::NotForAgency)
        );
        assert_eq!(
            check_item_move(StaffingOffice, S::Open, A::Submit),
            Err(MoveRefused::NotFromState)
        );
        assert_eq!(
            check_item_move(Hr, S::Rectifying, A::Submit),
            Ok(S::Submitted)
        );
    }

    #[test]
    fn case_moves_go_forward_and_only_by_the_staffing_office() {
        use CaseState as C;
        for &from in C::ALL {
            for &to in C::ALL {
                let expected = matches!(
                    (from, to),
                    (C::Received, C::Investigating)
                        | (C::Received, C::Closed)
                        | (C::Investigating, C::Closed)
                );
                assert_eq!(
                    case_move_allowed(StaffingOffice, from, to),
                    expected,
                    "{from} -> {to}"
                );
                for kind in [Organization, Hr, Finance, Discipline, Audit] {
                    assert!(!case_move_allowed(kind, from, to));
                }
            }
        }
    }

    #[test]
    fn overdue_climbs_the_ladder_and_stops_when_closed() {
        let due = d("2024-06-30");
        assert_eq!(overdue_level(due, false, d("2024-06-30")), 0, "due today");
        assert_eq!(overdue_level(due, false, d("2024-07-01")), 1);
        assert_eq!(overdue_level(due, false, d("2024-07-07")), 2);
        assert_eq!(overdue_level(due, false, d("2024-07-30")), 3);
        assert_eq!(overdue_level(due, false, d("2025-07-30")), 3);
        assert_eq!(overdue_level(due, true, d("2025-07-30")), 0);
        assert!(is_overdue(due, false, d("2024-07-01")));
        assert!(!is_overdue(due, true, d("2024-07-01")));
    }

    #[test]
    fn only_vacant_places_can_be_cut() {
        assert_eq!(quota_after_cut(10, 7, 3), Ok(7));
        assert!(quota_after_cut(10, 7, 4).is_err());
        assert!(
            quota_after_cut(10, 12, 1).is_err(),
            "over quota: nothing vacant"
        );
        assert!(quota_after_cut(10, 0, 0).is_err());
    }

    #[test]
    fn a_transfer_reaches_discipline_and_a_joint_inspection_those_named() {
        assert_eq!(
            transfer_reach(TransferKind::Transfer, &[Audit]),
            Ok(vec![Discipline])
        );
        assert_eq!(
            transfer_reach(TransferKind::JointInspection, &[Audit, Discipline, Audit]),
            Ok(vec![Discipline, Audit])
        );
        assert!(transfer_reach(TransferKind::JointInspection, &[]).is_err());
        assert!(transfer_reach(TransferKind::JointInspection, &[Hr]).is_err());
        let reach = reach_text(&[Discipline, Audit]);
        assert_eq!(reach, ",discipline,audit,");
        assert!(reaches(&reach, Discipline));
        assert!(reaches(&reach, Audit));
        assert!(!reaches(&reach, StaffingOffice));
        assert!(reaches("", Hr));
    }

    #[test]
    fn the_reconciliation_counts_opened_closed_overdue_and_the_oldest_open() {
        let item = |department: &str, opened: &str, closed: Option<&str>, due: &str| ItemFacts {
            jurisdiction: "140100".into(),
            department: department.into(),
            opened_on: d(opened),
            closed_on: closed.map(d),
            due_on: d(due),
        };
        let items = [
            item("A", "2024-01-10", Some("2024-02-01"), "2024-03-01"),
            item("A", "2024-02-10", None, "2024-02-20"),
            item("A", "2024-03-05", None, "2024-06-30"),
            item("B", "2023-12-01", Some("2023-12-20"), "2024-01-01"),
        ];
        let rows = reconcile_ledger(&items, Some(d("2024-02-01")), d("2024-03-31"));
        assert_eq!(
            rows,
            vec![ReportRow {
                jurisdiction: "140100".into(),
                department: "A".into(),
                opened: 2,
                closed: 1,
                overdue: 1,
                oldest_open_on: Some(d("2024-02-10")),
            }],
            "B did nothing in the period and has nothing open"
        );
        let all = reconcile_ledger(&items, None, d("2024-01-31"));
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].opened, all[0].closed, all[0].overdue), (1, 0, 0));
        assert_eq!((all[1].opened, all[1].closed), (1, 1));
    }

    #[test]
    fn bulletins_mask_resident_ids() {
        assert_eq!(
            redact("张三 11010519491231002X 吃空饷 3 个月, 电话 13800000000"),
            "张三 110105********002X 吃空饷 3 个月, 电话 13800000000"
        );
    }
}
