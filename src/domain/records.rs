//! The records each agency pushes, once validated, and the enums they are made of.

use chrono::NaiveDate;

use super::{FieldViolation, Jurisdiction, Period, ResidentId, Uscc, coded_enum};

/// The largest amount one record may state, in fen: 10^12 fen, 100亿元 (ten billion yuan). No
/// monthly wage and no month's funding of one institution comes near it, and millions of records
/// at the ceiling still sum within an `i64`, so a wage bill cannot wrap.
pub const MAX_AMOUNT_FEN: i64 = 1_000_000_000_000;

/// An amount a record states, if it lies between 0 and [`MAX_AMOUNT_FEN`]; otherwise why not.
pub fn amount_fen(fen: i64) -> Result<i64, String> {
    if fen < 0 {
        Err("must not be negative".into())
    } else if fen > MAX_AMOUNT_FEN {
        Err(format!(
            "must be at most {MAX_AMOUNT_FEN} fen (100亿元, ten billion yuan)"
        ))
    } else {
        Ok(fen)
    }
}

/// The sum of amounts, exact: `None` only if it does not fit in an `i64` (more than nine million
/// records at the ceiling).
pub fn total_fen(amounts: impl IntoIterator<Item = i64>) -> Option<i64> {
    let total: i128 = amounts.into_iter().map(i128::from).sum();
    i64::try_from(total).ok()
}

coded_enum! {
    /// Quota category (编制类别).
    QuotaCategory, "QUOTA_CATEGORY_" {
        /// 行政编制.
        Administrative = "ADMINISTRATIVE",
        /// 政法专项编制.
        PoliticalLegal = "POLITICAL_LEGAL",
        /// 事业编制.
        PublicInstitution = "PUBLIC_INSTITUTION",
        /// 参公事业编制.
        CivilServiceManaged = "CIVIL_SERVICE_MANAGED",
        /// 工勤编制.
        ServiceWorker = "SERVICE_WORKER",
    }
}

coded_enum! {
    /// Organ (机关) or public institution (事业单位).
    InstitutionKind, "INSTITUTION_KIND_" {
        /// 机关.
        Organ = "ORGAN",
        /// 事业单位.
        PublicInstitution = "PUBLIC_INSTITUTION",
    }
}

coded_enum! {
    /// Institution grade (机构规格).
    Grade, "GRADE_" {
        /// 正厅.
        BureauPrincipal = "BUREAU_PRINCIPAL",
        /// 副厅.
        BureauDeputy = "BUREAU_DEPUTY",
        /// 正处.
        DivisionPrincipal = "DIVISION_PRINCIPAL",
        /// 副处.
        DivisionDeputy = "DIVISION_DEPUTY",
        /// 正科.
        SectionPrincipal = "SECTION_PRINCIPAL",
        /// 副科.
        SectionDeputy = "SECTION_DEPUTY",
        /// 正股.
        UnitPrincipal = "UNIT_PRINCIPAL",
        /// 副股.
        UnitDeputy = "UNIT_DEPUTY",
        /// 未定级.
        Ungraded = "UNGRADED",
    }
}

coded_enum! {
    /// Funding form of a public institution.
    FundingForm, "FUNDING_FORM_" {
        /// 全额拨款.
        Full = "FULL",
        /// 差额拨款.
        Partial = "PARTIAL",
        /// 自收自支.
        SelfFunded = "SELF_FUNDED",
    }
}

coded_enum! {
    /// Registry status of an institution.
    InstitutionStatus, "INSTITUTION_STATUS_" {
        /// Operating.
        Active = "ACTIVE",
        /// Merged into another.
        Merged = "MERGED",
        /// Abolished.
        Abolished = "ABOLISHED",
    }
}

coded_enum! {
    /// Level of a leadership post.
    LeaderLevel, "LEADER_LEVEL_" {
        /// 厅局级.
        Bureau = "BUREAU",
        /// 县处级.
        Division = "DIVISION",
        /// 乡科级.
        Section = "SECTION",
    }
}

coded_enum! {
    /// 正 or 副.
    LeaderPosition, "LEADER_POSITION_" {
        /// 正职.
        Principal = "PRINCIPAL",
        /// 副职.
        Deputy = "DEPUTY",
    }
}

coded_enum! {
    /// Rank of a person (GB/T 12407).
    Rank, "RANK_" {
        /// 121 厅局级正职.
        BureauPrincipal = "BUREAU_PRINCIPAL",
        /// 122 厅局级副职.
        BureauDeputy = "BUREAU_DEPUTY",
        /// 131 县处级正职.
        DivisionPrincipal = "DIVISION_PRINCIPAL",
        /// 132 县处级副职.
        DivisionDeputy = "DIVISION_DEPUTY",
        /// 141 乡科级正职.
        SectionPrincipal = "SECTION_PRINCIPAL",
        /// 142 乡科级副职.
        SectionDeputy = "SECTION_DEPUTY",
        /// 150 科员.
        Clerk = "CLERK",
        /// 160 办事员.
        Officer = "OFFICER",
        /// 199 未定级.
        Unranked = "UNRANKED",
    }
}

coded_enum! {
    /// Status of a person on a roll.
    PersonStatus, "PERSON_STATUS_" {
        /// At work.
        Active = "ACTIVE",
        /// Seconded elsewhere, still on this roll.
        Seconded = "SECONDED",
        /// On leave, still on this roll.
        OnLeave = "ON_LEAVE",
        /// Retired.
        Retired = "RETIRED",
        /// Departed.
        Departed = "DEPARTED",
        /// Deceased.
        Deceased = "DECEASED",
    }
}

impl PersonStatus {
    /// Whether a person with this status counts on the roll (`active(p, t)` in docs/RULES.md).
    pub fn is_on_roll(self) -> bool {
        matches!(
            self,
            PersonStatus::Active | PersonStatus::Seconded | PersonStatus::OnLeave
        )
    }
}

coded_enum! {
    /// Channel of entry (用编渠道).
    HiringChannel, "HIRING_CHANNEL_" {
        /// 公开招录.
        OpenRecruitment = "OPEN_RECRUITMENT",
        /// 调任.
        Transfer = "TRANSFER",
        /// 政策性安置.
        PolicyPlacement = "POLICY_PLACEMENT",
        /// 组织任命.
        OrganizationalAppointment = "ORGANIZATIONAL_APPOINTMENT",
        /// 人才引进.
        TalentIntroduction = "TALENT_INTRODUCTION",
    }
}

coded_enum! {
    /// What happened to a person.
    PersonnelEventType, "PERSONNEL_EVENT_TYPE_" {
        /// Entry onto a roll.
        Hire = "HIRE",
        /// Move from one roll to another.
        Transfer = "TRANSFER",
        /// Start of leave.
        Leave = "LEAVE",
        /// Back from leave or secondment.
        Return = "RETURN",
        /// Secondment elsewhere.
        Secondment = "SECONDMENT",
        /// Retirement.
        Retirement = "RETIREMENT",
        /// Departure.
        Departure = "DEPARTURE",
        /// Death.
        Death = "DEATH",
        /// Change of rank or category.
        Change = "CHANGE",
    }
}

coded_enum! {
    /// Start or end of an appointment.
    AppointmentAction, "APPOINTMENT_ACTION_" {
        /// Appointed.
        Appoint = "APPOINT",
        /// Removed.
        Remove = "REMOVE",
    }
}

/// An institution in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Institution {
    /// Its code, the key of the registry.
    pub uscc: Uscc,
    /// Official name.
    pub name: String,
    /// Where it sits; scopes every read and write about it.
    pub jurisdiction: Jurisdiction,
    /// Parent for internal units and subordinate institutions.
    pub parent: Option<Uscc>,
    /// Organ or public institution.
    pub kind: InstitutionKind,
    /// Grade, which bounds its leaders' ranks.
    pub grade: Grade,
    /// Funding form (public institutions only).
    pub funding_form: Option<FundingForm>,
    /// Registry status.
    pub status: InstitutionStatus,
    /// Approval document, normalised.
    pub approval_document: String,
    /// Date set up, when known.
    pub established_on: Option<NaiveDate>,
    /// Date the status took effect, when known.
    pub status_since: Option<NaiveDate>,
    /// Political-legal organ: may use 政法专项编制.
    pub political_legal: bool,
}

impl Institution {
    /// Rules that tie the fields together.
    pub fn check(&self) -> Vec<FieldViolation> {
        let mut violations = Vec::new();
        if self.kind == InstitutionKind::PublicInstitution && self.funding_form.is_none() {
            violations.push(FieldViolation::new(
                "funding_form",
                "a public institution must state its funding form",
            ));
        }
        if self.kind == InstitutionKind::Organ && self.funding_form.is_some() {
            violations.push(FieldViolation::new(
                "funding_form",
                "an organ has no funding form; leave it unspecified",
            ));
        }
        if self.parent.as_ref() == Some(&self.uscc) {
            violations.push(FieldViolation::new(
                "parent_uscc",
                "an institution cannot be its own parent",
            ));
        }
        if self.status != InstitutionStatus::Active && self.status_since.is_none() {
            violations.push(FieldViolation::new(
                "status_since",
                "a merged or abolished institution needs the date it ceased",
            ));
        }
        if let (Some(established), Some(since)) = (self.established_on, self.status_since)
            && since < established
        {
            violations.push(FieldViolation::new(
                "status_since",
                "is before established_on",
            ));
        }
        violations
    }
}

/// Checks an effective range `[from, to)`.
fn check_range(from: NaiveDate, to: Option<NaiveDate>, to_field: &str) -> Vec<FieldViolation> {
    match to {
        Some(to) if to <= from => {
            vec![FieldViolation::new(
                to_field,
                "must be after effective_from",
            )]
        }
        _ => Vec::new(),
    }
}

/// An approved quota of one category for one institution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The institution.
    pub institution: Uscc,
    /// The category.
    pub category: QuotaCategory,
    /// Approved headcount.
    pub approved_count: u32,
    /// First day in force.
    pub effective_from: NaiveDate,
    /// Day it stops being in force, if set.
    pub effective_to: Option<NaiveDate>,
    /// Approval document, normalised.
    pub approval_document: String,
}

impl Quota {
    /// Rules that tie the fields together.
    pub fn check(&self) -> Vec<FieldViolation> {
        check_range(self.effective_from, self.effective_to, "effective_to")
    }
}

/// Approved leadership posts of one level and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderPost {
    /// The institution.
    pub institution: Uscc,
    /// 厅, 处 or 科.
    pub level: LeaderLevel,
    /// 正 or 副.
    pub position: LeaderPosition,
    /// Approved posts.
    pub approved_count: u32,
    /// First day in force.
    pub effective_from: NaiveDate,
    /// Day it stops being in force, if set.
    pub effective_to: Option<NaiveDate>,
    /// Approval document, normalised.
    pub approval_document: String,
}

impl LeaderPost {
    /// Rules that tie the fields together.
    pub fn check(&self) -> Vec<FieldViolation> {
        check_range(self.effective_from, self.effective_to, "effective_to")
    }
}

/// An annual staffing-use plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffingPlan {
    /// The institution.
    pub institution: Uscc,
    /// Calendar year.
    pub year: i32,
    /// Category of the entries.
    pub category: QuotaCategory,
    /// Channel of the entries.
    pub channel: HiringChannel,
    /// Entries approved.
    pub approved_count: u32,
    /// Approval document, normalised.
    pub approval_document: String,
}

/// A hiring approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiringApproval {
    /// Its number, normalised; entries cite it.
    pub approval_number: String,
    /// The institution.
    pub institution: Uscc,
    /// Category of the entries.
    pub category: QuotaCategory,
    /// Entries approved.
    pub approved_entries: u32,
    /// Date of issue.
    pub issued_on: NaiveDate,
    /// Last day it may be used (inclusive).
    pub valid_until: NaiveDate,
}

impl HiringApproval {
    /// Rules that tie the fields together.
    pub fn check(&self) -> Vec<FieldViolation> {
        if self.valid_until < self.issued_on {
            vec![FieldViolation::new("valid_until", "is before issued_on")]
        } else {
            Vec::new()
        }
    }
}

/// A real-name personnel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonnelEvent {
    /// What happened.
    pub event_type: PersonnelEventType,
    /// Who it happened to.
    pub resident_id: ResidentId,
    /// The person's name.
    pub name: String,
    /// The roll it concerns.
    pub institution: Uscc,
    /// Category (HIRE, TRANSFER, CHANGE).
    pub category: Option<QuotaCategory>,
    /// Rank (HIRE, TRANSFER, CHANGE).
    pub rank: Option<Rank>,
    /// When it takes effect.
    pub effective_on: NaiveDate,
    /// Approval cited by an entry, normalised.
    pub approval_number: Option<String>,
    /// Channel of an entry.
    pub channel: Option<HiringChannel>,
    /// Destination of a transfer or host of a secondment.
    pub target: Option<Uscc>,
    /// The sender's record id of the event this one corrects, if it is a correction.
    pub corrects: Option<String>,
}

impl PersonnelEvent {
    /// Rules that tie the fields together.
    pub fn check(&self) -> Vec<FieldViolation> {
        use PersonnelEventType as T;
        let mut violations = Vec::new();
        let needs_placement = matches!(self.event_type, T::Hire | T::Transfer);
        if needs_placement && self.category.is_none() {
            violations.push(FieldViolation::new(
                "category",
                "is required for a hire or transfer",
            ));
        }
        if needs_placement && self.rank.is_none() {
            violations.push(FieldViolation::new(
                "rank",
                "is required for a hire or transfer",
            ));
        }
        if self.event_type == T::Change && self.category.is_none() && self.rank.is_none() {
            violations.push(FieldViolation::new(
                "rank",
                "a change must give a new rank or category",
            ));
        }
        let needs_target = matches!(self.event_type, T::Transfer | T::Secondment);
        let target_problem = match (&self.target, needs_target) {
            (None, true) => Some("is required for a transfer or secondment"),
            (Some(_), false) => Some("is only meaningful for a transfer or secondment"),
            (Some(target), true) if *target == self.institution => {
                Some("must differ from institution_uscc")
            }
            _ => None,
        };
        if let Some(problem) = target_problem {
            violations.push(FieldViolation::new("target_institution_uscc", problem));
        }
        if self.effective_on < self.resident_id.birth_date() {
            violations.push(FieldViolation::new(
                "effective_on",
                "is before the person's birth",
            ));
        }
        violations
    }
}

/// An appointment to, or removal from, a leadership post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    /// Appoint or remove.
    pub action: AppointmentAction,
    /// The leader.
    pub resident_id: ResidentId,
    /// The leader's name.
    pub name: String,
    /// Whose post it is.
    pub institution: Uscc,
    /// 厅, 处 or 科.
    pub level: LeaderLevel,
    /// 正 or 副.
    pub position: LeaderPosition,
    /// The leader's rank with the post.
    pub rank: Rank,
    /// When it takes effect.
    pub effective_on: NaiveDate,
    /// Appointment document, normalised.
    pub document: String,
}

/// One payroll line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayrollLine {
    /// Pay period.
    pub period: Period,
    /// Paying institution.
    pub institution: Uscc,
    /// Payee.
    pub resident_id: ResidentId,
    /// Payee's name.
    pub name: String,
    /// Gross amount in fen.
    pub gross_fen: i64,
    /// The sender's record id of the line this one reverses, if it is a reversal.
    pub reverses: Option<String>,
}

/// Funded headcount for one institution, category and period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funding {
    /// Funded institution.
    pub institution: Uscc,
    /// Category funded.
    pub category: QuotaCategory,
    /// Period.
    pub period: Period,
    /// Headcount paid for.
    pub funded_headcount: u32,
    /// Amount in fen.
    pub amount_fen: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_lie_between_zero_and_the_ceiling_and_sum_exactly() {
        assert_eq!(amount_fen(0), Ok(0));
        assert_eq!(amount_fen(MAX_AMOUNT_FEN), Ok(MAX_AMOUNT_FEN));
        assert!(amount_fen(-1).is_err());
        assert!(amount_fen(MAX_AMOUNT_FEN + 1).is_err());
        assert!(amount_fen(i64::MAX).is_err());
        assert_eq!(total_fen([MAX_AMOUNT_FEN; 3]), Some(3 * MAX_AMOUNT_FEN));
        assert_eq!(total_fen([i64::MAX, 1]), None);
    }
}
