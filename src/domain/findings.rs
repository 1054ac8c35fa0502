//! Findings: what the hub's rules find where the departments' data disagree with the approved
//! quotas. The rule codes are part of the product's contract (`docs/DOMAIN.md`). This module
//! holds the vocabulary and the rules' input; the rules themselves are in [`super::rules`].

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::roll::{LeaderTerm, Spell};
use super::{
    Funding, FundingForm, Grade, HiringApproval, HiringChannel, InstitutionKind, InstitutionStatus,
    Jurisdiction, LeaderPost, PayrollLine, Quota, QuotaCategory, Rank, ResidentId, StaffingPlan,
    Uscc, coded_enum,
};

coded_enum! {
    /// The rule codes of `docs/DOMAIN.md`.
    RuleCode, "RULE_CODE_" {
        /// 超编: active people in (institution, category) > approved quota.
        OverQuota = "OVER_QUOTA",
        /// 满编预警: occupancy ≥ the warning threshold of the quota.
        QuotaFull = "QUOTA_FULL",
        /// 超职数: leaders at a level and 正/副 > approved posts.
        OverLeaderPosts = "OVER_LEADER_POSTS",
        /// 超规格: a leader's rank above what the institution's grade allows.
        LeaderAboveGrade = "LEADER_ABOVE_GRADE",
        /// 混编混岗: a person's category not allowed in the institution.
        MixedCategory = "MIXED_CATEGORY",
        /// 无审批进人: an entry with no matching unexpired approval with remaining count.
        HireWithoutApproval = "HIRE_WITHOUT_APPROVAL",
        /// 超用编计划: entries in a year > the year's plan for (institution, category).
        OverPlan = "OVER_PLAN",
        /// 一人多编: one resident ID active in two or more institutions at once.
        DuplicateEnrollment = "DUPLICATE_ENROLLMENT",
        /// 吃空饷: a payroll line for someone not active in that period.
        PaidNotOnRoll = "PAID_NOT_ON_ROLL",
        /// 离岗/退休/死亡仍领薪: paid for a period after departure, retirement or death.
        PaidAfterExit = "PAID_AFTER_EXIT",
        /// 多头领薪: one resident ID paid by two or more institutions in one period.
        DoublePay = "DOUBLE_PAY",
        /// 人编分离: paid by an institution other than the one on the roll (not an open secondment).
        PayUnitMismatch = "PAY_UNIT_MISMATCH",
        /// 超编拨款: funded headcount > min(quota, active people).
        FundedOverQuota = "FUNDED_OVER_QUOTA",
        /// 经费形式不符: budget funding for a self-funded institution.
        SelfFundedBudgetPay = "SELF_FUNDED_BUDGET_PAY",
        /// 私设机构: personnel, payroll or funding for an institution missing from, or abolished in,
        /// the registry.
        UnregisteredInstitution = "UNREGISTERED_INSTITUTION",
        /// 总量余缺: per jurisdiction and category, total quota − total active (a report).
        RegionalBalance = "REGIONAL_BALANCE",
        /// 挤占安置预留 (留余地): the vacancies a year's plan leaves after the other channels' entries
        /// fall below what the policy-placement reserve still needs.
        ReserveShortfall = "RESERVE_SHORTFALL",
        /// 工资数据迟报: a finance agency's payroll for a month missing after its due day.
        LatePayroll = "LATE_PAYROLL",
        /// 人事数据补录滞后: a personnel event pushed long after it took effect (backdated).
        BackdatedEvent = "BACKDATED_EVENT",
    }
}

coded_enum! {
    /// How serious a finding is.
    Severity, "SEVERITY_" {
        /// A report, not an alert.
        Info = "INFO",
        /// A warning.
        Low = "LOW",
        /// Needs attention.
        Medium = "MEDIUM",
        /// A violation.
        High = "HIGH",
        /// A violation that costs public money or hides a person.
        Critical = "CRITICAL",
    }
}

impl RuleCode {
    /// The severity docs/DOMAIN.md gives the rule.
    pub fn severity(self) -> Severity {
        use RuleCode as R;
        match self {
            R::RegionalBalance => Severity::Info,
            R::QuotaFull | R::BackdatedEvent => Severity::Low,
            R::MixedCategory
            | R::OverPlan
            | R::PayUnitMismatch
            | R::ReserveShortfall
            | R::LatePayroll => Severity::Medium,
            R::OverQuota
            | R::OverLeaderPosts
            | R::LeaderAboveGrade
            | R::HireWithoutApproval
            | R::FundedOverQuota
            | R::SelfFundedBudgetPay
            | R::UnregisteredInstitution => Severity::High,
            R::DuplicateEnrollment | R::PaidNotOnRoll | R::PaidAfterExit | R::DoublePay => {
                Severity::Critical
            }
        }
    }

    /// The Chinese name of the rule.
    pub fn name_zh(self) -> &'static str {
        use RuleCode as R;
        match self {
            R::OverQuota => "超编",
            R::QuotaFull => "满编预警",
            R::OverLeaderPosts => "超职数",
            R::LeaderAboveGrade => "超规格",
            R::MixedCategory => "混编混岗",
            R::HireWithoutApproval => "无审批进人",
            R::OverPlan => "超用编计划",
            R::DuplicateEnrollment => "一人多编",
            R::PaidNotOnRoll => "吃空饷",
            R::PaidAfterExit => "离岗/退休/死亡仍领薪",
            R::DoublePay => "多头领薪",
            R::PayUnitMismatch => "人编分离",
            R::FundedOverQuota => "超编拨款",
            R::SelfFundedBudgetPay => "经费形式不符",
            R::UnregisteredInstitution => "私设机构",
            R::RegionalBalance => "总量余缺",
            R::ReserveShortfall => "挤占安置预留",
            R::LatePayroll => "工资数据迟报",
            R::BackdatedEvent => "人事数据补录滞后",
        }
    }

    /// Whether the rule's findings are about an agency's data (its freshness) rather than about an
    /// institution: their key's `institution` is then the agency's id (`140100/finance`).
    pub fn about_agency(self) -> bool {
        matches!(self, RuleCode::LatePayroll | RuleCode::BackdatedEvent)
    }
}

/// What identifies a finding: raised once, updated while it holds, resolved when it no longer does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindingKey {
    /// The rule.
    pub code: RuleCode,
    /// USCC of the institution the finding is about (for rules across institutions, the smallest
    /// USCC involved, so that the key is stable); for the freshness rules
    /// ([`RuleCode::about_agency`]), the id of the agency whose data is late (`140100/finance`),
    /// which is who answers for it in the ledger.
    pub institution: String,
    /// What within the institution: a category code (`ADMINISTRATIVE`), a post (`DIVISION/DEPUTY`),
    /// a resident ID, or empty when the finding is about the institution as a whole.
    pub subject: String,
    /// When: empty for the current state of the roll; `YYYY-MM` for a pay or funding period;
    /// `YYYY` for a plan year; `YYYY-MM-DD` for the date of an entry.
    pub period: String,
}

/// A record that makes a finding true.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Evidence {
    /// What kind of record: `institution`, `quota`, `leader_post`, `staffing_plan`,
    /// `hiring_approval`, `personnel_event`, `appointment`, `payroll_line`, `funding`, or
    /// `person` (a resident ID on a roll).
    pub kind: &'static str,
    /// Its id: `{agency_id}/{record_id}` for pushed records (e.g. `140100/finance/pay-17`), the
    /// resident ID for `person`, the USCC for `institution`.
    pub id: String,
}

/// How many rows of a list that grows with an institution (the people on a roll, the entries of
/// a year, the appointments on a post, an unregistered payer's lines) a finding cites: the
/// finding's numbers say how many there are, and the read RPCs list them all. Uncapped, one hire
/// into a large institution rewrote a roll-sized finding and feed event, and a check had to read
/// the whole roll to cite it.
pub const EVIDENCE_SAMPLE: usize = 20;

/// The first [`EVIDENCE_SAMPLE`] of `rows` in evidence order (kind, then id): the same rows
/// whichever engine decides the finding, and the ones a store reads with `ORDER BY id LIMIT`.
pub fn sampled(rows: impl IntoIterator<Item = Evidence>) -> BTreeSet<Evidence> {
    let all: BTreeSet<Evidence> = rows.into_iter().collect();
    all.into_iter().take(EVIDENCE_SAMPLE).collect()
}

impl Evidence {
    /// Evidence of a pushed record.
    pub fn record(kind: &'static str, id: &RecordRef) -> Evidence {
        Evidence {
            kind,
            id: id.0.clone(),
        }
    }
}

/// A finding as the rules produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Its identity.
    pub key: FindingKey,
    /// From the rule.
    pub severity: Severity,
    /// The measure that crossed the line (people on the roll, leaders, entries, funded headcount,
    /// number of institutions), when the rule has one.
    pub actual: i64,
    /// The line it crossed (quota, posts, plan, ...), when the rule has one.
    pub limit: i64,
    /// A plain explanation in Chinese.
    pub explanation_zh: String,
    /// A plain explanation in English.
    pub explanation_en: String,
    /// The records that make it true, sorted and without duplicates.
    pub evidence: BTreeSet<Evidence>,
}

/// The id of a pushed record: `{agency_id}/{record_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordRef(pub String);

/// A registry entry as the rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionFacts {
    /// Its code.
    pub uscc: Uscc,
    /// Where it sits.
    pub jurisdiction: Jurisdiction,
    /// Organ or public institution.
    pub kind: InstitutionKind,
    /// Grade.
    pub grade: Grade,
    /// Funding form (public institutions).
    pub funding_form: Option<FundingForm>,
    /// Registry status.
    pub status: InstitutionStatus,
    /// When the status took effect.
    pub status_since: Option<NaiveDate>,
    /// A political-legal organ.
    pub political_legal: bool,
    /// The registry record.
    pub record: RecordRef,
}

/// A spell of a person's roll record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonSpell {
    /// Whose.
    pub resident_id: ResidentId,
    /// The spell.
    pub spell: Spell,
}

/// A leader term of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonTerm {
    /// Whose.
    pub resident_id: ResidentId,
    /// The term.
    pub term: LeaderTerm,
    /// The appointment that opened it.
    pub record: RecordRef,
}

/// An entry onto a roll (a HIRE, or the arriving side of a TRANSFER).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who entered.
    pub resident_id: ResidentId,
    /// Onto which roll.
    pub institution: Uscc,
    /// Category occupied.
    pub category: QuotaCategory,
    /// Channel of entry, if given.
    pub channel: Option<HiringChannel>,
    /// Date of entry.
    pub date: NaiveDate,
    /// Approval cited, normalised.
    pub approval_number: Option<String>,
    /// Order of arrival among entries of the same date (earlier entries use an approval first).
    pub arrival: i64,
    /// The personnel event.
    pub record: RecordRef,
}

/// A pushed record with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed<T> {
    /// `{agency_id}/{record_id}`.
    pub id: RecordRef,
    /// The record; for quotas, posts and plans, the latest pushed supersedes earlier ones that
    /// cover the same date (see the rules).
    pub record: T,
    /// Arrival order (Unix microseconds of acceptance), to tell which of two records is later.
    pub accepted_at: i64,
}

/// Everything the rules read. The store fills it with complete data for the institutions and
/// people in scope (every spell of every person on those rolls or payrolls, every quota, ...).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Registry entries of the institutions involved.
    pub institutions: Vec<InstitutionFacts>,
    /// Quotas of the institutions in scope.
    pub quotas: Vec<Pushed<Quota>>,
    /// Leader-post approvals of the institutions in scope.
    pub leader_posts: Vec<Pushed<LeaderPost>>,
    /// Staffing-use plans of the institutions in scope.
    pub plans: Vec<Pushed<StaffingPlan>>,
    /// Hiring approvals of the institutions in scope.
    pub approvals: Vec<Pushed<HiringApproval>>,
    /// All spells of every person on a roll or payroll in scope.
    pub spells: Vec<PersonSpell>,
    /// Leader terms at the institutions in scope.
    pub terms: Vec<PersonTerm>,
    /// Entries into the institutions in scope.
    pub entries: Vec<Entry>,
    /// Payroll lines paid by the institutions in scope, and all lines of the people in scope.
    pub payroll: Vec<Pushed<PayrollLine>>,
    /// Funding of the institutions in scope.
    pub fundings: Vec<Pushed<Funding>>,
}

/// Which findings a check decides on. A check raises, updates and resolves exactly the findings
/// its scope covers, so that the incremental path (one push) and the full re-check agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Every institution (a full re-check of a jurisdiction); the sets below are then ignored.
    pub everything: bool,
    /// Institutions whose findings are decided.
    pub institutions: BTreeSet<String>,
    /// People whose cross-institution findings (DUPLICATE_ENROLLMENT, DOUBLE_PAY) and pay findings
    /// (PAID_NOT_ON_ROLL, PAID_AFTER_EXIT, PAY_UNIT_MISMATCH) are decided.
    pub residents: BTreeSet<String>,
}

impl Scope {
    /// Whether a finding of this key is decided by a check of this scope (never one about an
    /// agency's data, which the freshness check decides).
    pub fn covers(&self, key: &FindingKey) -> bool {
        use RuleCode as R;
        // The freshness of an agency's data is no institution's: no re-check decides it.
        if key.code.about_agency() {
            return false;
        }
        if self.everything {
            return true;
        }
        let person_rule = matches!(
            key.code,
            R::DuplicateEnrollment
                | R::DoublePay
                | R::PaidNotOnRoll
                | R::PaidAfterExit
                | R::PayUnitMismatch
        );
        match key.code {
            R::DuplicateEnrollment | R::DoublePay => self.residents.contains(&key.subject),
            _ if person_rule => {
                self.residents.contains(&key.subject)
                    || self.institutions.contains(&key.institution)
            }
            _ => self.institutions.contains(&key.institution),
        }
    }
}

/// Settings of the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    /// QUOTA_FULL fires when active ≥ this fraction of the quota (default 1.0, i.e. 100%).
    pub quota_full_threshold: f64,
    /// The highest leader rank each grade allows (LEADER_ABOVE_GRADE). A grade missing here allows
    /// no leader rank at all above 科员.
    pub rank_ceilings: Vec<(Grade, Rank)>,
}

impl Default for RulesConfig {
    fn default() -> RulesConfig {
        RulesConfig {
            quota_full_threshold: 1.0,
            rank_ceilings: vec![
                (Grade::BureauPrincipal, Rank::BureauPrincipal),
                (Grade::BureauDeputy, Rank::BureauDeputy),
                (Grade::DivisionPrincipal, Rank::DivisionPrincipal),
                (Grade::DivisionDeputy, Rank::DivisionDeputy),
                (Grade::SectionPrincipal, Rank::SectionPrincipal),
                (Grade::SectionDeputy, Rank::SectionDeputy),
                (Grade::UnitPrincipal, Rank::Clerk),
                (Grade::UnitDeputy, Rank::Clerk),
                (Grade::Ungraded, Rank::Clerk),
            ],
        }
    }
}

/// A year's plan seen from its policy-placement reserve (留余地): the places kept for policy
/// placement and those of every other channel, and the entries of each side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reserve {
    /// The year's policy-placement plan: the places kept.
    pub reserve: i64,
    /// Entries of the year through policy placement.
    pub placed: i64,
    /// The other channels' plans, summed: what they may take.
    pub others_plan: i64,
    /// Entries of the year through every other channel (or none named).
    pub others: i64,
}

impl Reserve {
    /// The reserve of a year from its plans counted (the latest per channel, as
    /// `(channel, approved)`), its entries and those of them through policy placement.
    pub fn of(
        plans: impl IntoIterator<Item = (HiringChannel, u32)>,
        taken: i64,
        placed: i64,
    ) -> Reserve {
        let (mut reserve, mut others_plan) = (0, 0);
        for (channel, approved) in plans {
            if channel == HiringChannel::PolicyPlacement {
                reserve += i64::from(approved);
            } else {
                others_plan += i64::from(approved);
            }
        }
        Reserve {
            reserve,
            placed,
            others_plan,
            others: taken - placed,
        }
    }

    /// Placements the reserve still has to take.
    pub fn needed(&self) -> i64 {
        (self.reserve - self.placed).max(0)
    }

    /// The places the plan leaves after every entry of the year.
    pub fn left(&self) -> i64 {
        (self.reserve + self.others_plan - self.others - self.placed).max(0)
    }

    /// RESERVE_SHORTFALL: placements are still needed and the places left fall below them, i.e.
    /// the other channels took more than their plans.
    pub fn short(&self) -> bool {
        self.needed() > 0 && self.others > self.others_plan
    }

    /// How many of the places still needed the other channels took.
    pub fn eaten(&self) -> i64 {
        (self.others - self.others_plan).clamp(0, self.needed())
    }
}
