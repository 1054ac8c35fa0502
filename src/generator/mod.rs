//! The data generator: a realistic, deterministic staffing world (institution tree, quotas, leader
//! posts, plans, approvals, careers, appointments, payroll, funding) with planted problems, and the
//! exact findings the rules of `docs/RULES.md` must raise on it.
//!
//! [`generate`] builds a [`Dataset`] from a [`GenConfig`]; [`write()`] lays it out as the JSONL files
//! `quotahub import --kind {kind} FILE` takes, with `truth.jsonl` (the expected finding keys),
//! `deliveries.jsonl` (the delivery timeline) and a `manifest.json` (import order, kinds, pushing
//! agency).
//!
//! How it works: `model` builds the world (registry, then each staffed institution's people, their
//! careers and leaders); `plant` changes it to plant person- and institution-level problems; `emit`
//! writes the records, plants the record-level problems (quota and post cuts, plan shortfalls,
//! exhausted approvals, over-funding), and evaluates every rule of RULES.md over the model to get the
//! truth, so that interactions between problems are in it and clean data gives nothing; `deliver`
//! says on which day which agency sends which records ([`Delivery`]), with late, missing and
//! backdated data planted in that timeline, and the freshness findings they leave open on the
//! check date (a hub replaying the timeline, its clock on each day, from its first start). The same
//! config always gives the same bytes: randomness is a seeded SplitMix64 (`rng`), and nothing
//! iterates a hash map in an order that reaches the output.

mod deliver;
mod emit;
mod model;
mod names;
mod output;
mod plant;
mod rng;

#[cfg(test)]
mod check;
#[cfg(test)]
mod engine;
#[cfg(test)]
mod tests;

use std::ops::Range;

use chrono::{Datelike, NaiveDate};

pub use deliver::late_payroll;
pub use output::{Manifest, ManifestFile, write};

use crate::domain::findings::{FindingKey, RuleCode};
use crate::domain::{Agency, AgencyKind, Jurisdiction, Period};
use crate::proto;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    /// Seed of every random choice; the same config gives byte-identical output.
    pub seed: u64,
    /// Institutions in the registry (departments, their internal units, public institutions). A
    /// few unregistered units (私设机构) come on top.
    pub institutions: usize,
    /// People on the rolls on the check date, roughly; people who left in the last three years and
    /// ghosts on payrolls come on top.
    pub people: usize,
    /// The top division: a province (`140000`: its own level, its cities and their districts), a
    /// city (`140100`: the city and its districts) or a district.
    pub root: Jurisdiction,
    /// The check date: roll-based findings are evaluated on it, and no event is later.
    pub as_of: NaiveDate,
    /// Payroll and funding months.
    pub periods: Vec<Period>,
    /// Multiplies every anomaly rate (1.0: realistic rates, see [`RATES`]).
    pub anomaly_scale: f64,
    /// At least this many of each planted problem, whatever the rates give (so that a small test
    /// world still holds every rule code). 0 for realistic worlds.
    pub min_each: usize,
}

/// The anomaly rates at scale 1.0, as (problem, rate, of what); see `plant.rs`.
pub const RATES: &[(&str, f64, &str)] = &[
    (
        "PAID_NOT_ON_ROLL ghosts",
        plant::RATE_GHOST_LINES,
        "payroll lines",
    ),
    (
        "PAID_AFTER_EXIT",
        plant::RATE_PAID_AFTER_EXIT,
        "people who left in the last three years",
    ),
    ("DOUBLE_PAY", plant::RATE_DOUBLE_PAY, "people"),
    ("PAY_UNIT_MISMATCH", plant::RATE_PAY_UNIT_MISMATCH, "people"),
    ("DUPLICATE_ENROLLMENT", plant::RATE_DUPLICATE, "people"),
    (
        "HIRE_WITHOUT_APPROVAL (citation)",
        plant::RATE_NO_APPROVAL,
        "people",
    ),
    (
        "HIRE_WITHOUT_APPROVAL (exhausted)",
        plant::RATE_EXHAUSTED_APPROVAL,
        "approvals of the last three years",
    ),
    ("MIXED_CATEGORY", plant::RATE_MIXED, "people"),
    ("OVER_QUOTA", plant::RATE_OVER_QUOTA, "quotas"),
    ("QUOTA_FULL", plant::RATE_QUOTA_FULL, "quotas"),
    (
        "OVER_LEADER_POSTS",
        plant::RATE_OVER_LEADER_POSTS,
        "filled leader-post approvals",
    ),
    (
        "LEADER_ABOVE_GRADE",
        plant::RATE_LEADER_ABOVE_GRADE,
        "institution heads",
    ),
    (
        "OVER_PLAN",
        plant::RATE_OVER_PLAN,
        "check-year (institution, category) plans",
    ),
    (
        "RESERVE_SHORTFALL",
        plant::RATE_RESERVE_SHORTFALL,
        "check-year (institution, category) plans",
    ),
    (
        "FUNDED_OVER_QUOTA",
        plant::RATE_FUNDED_OVER_QUOTA,
        "funding records",
    ),
    (
        "SELF_FUNDED_BUDGET_PAY",
        plant::RATE_SELF_FUNDED_BUDGET,
        "self-funded institutions",
    ),
    (
        "UNREGISTERED_INSTITUTION (abolished, staffed)",
        plant::RATE_ABOLISHED_STAFFED,
        "staffed institutions",
    ),
    (
        "UNREGISTERED_INSTITUTION (私设机构)",
        plant::RATE_UNKNOWN_UNIT,
        "institutions",
    ),
    (
        "LATE_PAYROLL (late, arrived by the check date: resolved)",
        plant::RATE_LATE_PAYROLL,
        "finance agencies' monthly payroll files due by the check date",
    ),
    (
        "LATE_PAYROLL (never arrived: open)",
        plant::RATE_MISSING_PAYROLL,
        "finance agencies (their last month due)",
    ),
    (
        "BACKDATED_EVENT",
        plant::RATE_BACKDATED_EVENT,
        "events taking effect after the initial load, early enough to be late by the check date",
    ),
];

impl GenConfig {
    /// A prefecture-level city like Taiyuan: about 2,500 institutions and 140,000 people,
    /// realistic anomaly rates, checked on 2024-06-15 with the three months up to it.
    pub fn city(seed: u64) -> GenConfig {
        GenConfig::around(seed, 2_500, 140_000, "140100", 1.0, 0)
    }

    /// A province like Shanxi: about 15,000 institutions and 1,000,000 people.
    pub fn province(seed: u64) -> GenConfig {
        GenConfig::around(seed, 15_000, 1_000_000, "140000", 1.0, 0)
    }

    /// A small city for tests: about 40 institutions and 1,500 people, rates five times the
    /// realistic ones and every planted problem at least twice.
    pub fn small(seed: u64) -> GenConfig {
        GenConfig::around(seed, 40, 1_500, "140100", 5.0, 2)
    }

    fn around(
        seed: u64,
        institutions: usize,
        people: usize,
        root: &str,
        anomaly_scale: f64,
        min_each: usize,
    ) -> GenConfig {
        let as_of = NaiveDate::from_ymd_opt(2024, 6, 15).expect("a valid date");
        GenConfig {
            seed,
            institutions,
            people,
            root: Jurisdiction::parse(root).expect("a valid division code"),
            as_of,
            periods: months_up_to(as_of, 3),
            anomaly_scale,
            min_each,
        }
    }
}

/// The `n` months up to and including the month of `date`, oldest first.
pub fn months_up_to(date: NaiveDate, n: usize) -> Vec<Period> {
    let mut periods = Vec::with_capacity(n);
    let mut year = date.year();
    let mut month = date.month();
    for _ in 0..n {
        periods.push(Period::parse(&format!("{year:04}-{month:02}")).expect("a valid period"));
        if month == 1 {
            year -= 1;
            month = 12;
        } else {
            month -= 1;
        }
    }
    periods.reverse();
    periods
}

/// Everything generated: the records of each kind, in push order, and the findings they make true.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// The root division (the jurisdiction whose agencies push everything).
    pub root: String,
    /// The check date, `YYYY-MM-DD`.
    pub as_of: String,
    /// The pay periods, `YYYY-MM`.
    pub periods: Vec<String>,
    /// Registry entries, parents before children; abolished and merged units appear a second
    /// time, at the end, with their new status.
    pub institutions: Vec<proto::Institution>,
    /// Quotas; an earlier approval of a quota comes before the one that replaced it.
    pub quotas: Vec<proto::Quota>,
    /// Leader-post approvals.
    pub leader_posts: Vec<proto::LeaderPost>,
    /// Staffing-use plans.
    pub plans: Vec<proto::StaffingPlan>,
    /// Hiring approvals.
    pub approvals: Vec<proto::HiringApproval>,
    /// Personnel events in date order (each person's history in order).
    pub events: Vec<proto::PersonnelEvent>,
    /// Appointments and removals in date order.
    pub appointments: Vec<proto::Appointment>,
    /// Payroll lines, period by period.
    pub payroll: Vec<proto::PayrollLine>,
    /// Funding, period by period.
    pub fundings: Vec<proto::Funding>,
    /// The day the first records are sent: the hub's first start, the agencies' initial load.
    pub start: NaiveDate,
    /// Who sends which records on which day, in the order to push them (by day). Each kind's
    /// records are listed in delivery order, so that a delivery is a range of them.
    pub deliveries: Vec<Delivery>,
    /// The findings the rules must raise on this data, sorted, without duplicates: on the check
    /// date, and for LATE_PAYROLL and BACKDATED_EVENT on a hub that received the deliveries on
    /// their days (its clock on each), judging freshness from `start` with the default cadence.
    pub truth: Vec<Planted>,
}

impl Dataset {
    /// How many records of `kind` there are.
    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Institution => self.institutions.len(),
            Kind::Quota => self.quotas.len(),
            Kind::LeaderPost => self.leader_posts.len(),
            Kind::StaffingPlan => self.plans.len(),
            Kind::HiringApproval => self.approvals.len(),
            Kind::PersonnelEvent => self.events.len(),
            Kind::Appointment => self.appointments.len(),
            Kind::PayrollLine => self.payroll.len(),
            Kind::Funding => self.fundings.len(),
        }
    }
}

/// A kind of record: one file of the directory [`write()`] lays out (`quotahub import --kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Registry entries.
    Institution,
    /// Quotas.
    Quota,
    /// Leader-post approvals.
    LeaderPost,
    /// Staffing-use plans.
    StaffingPlan,
    /// Hiring approvals.
    HiringApproval,
    /// Personnel events.
    PersonnelEvent,
    /// Appointments and removals.
    Appointment,
    /// Payroll lines.
    PayrollLine,
    /// Funding.
    Funding,
}

impl Kind {
    /// Every kind, in the order a whole directory is imported (what is referred to first).
    pub const ALL: [Kind; 9] = [
        Kind::Institution,
        Kind::Quota,
        Kind::LeaderPost,
        Kind::StaffingPlan,
        Kind::HiringApproval,
        Kind::PersonnelEvent,
        Kind::Appointment,
        Kind::PayrollLine,
        Kind::Funding,
    ];

    /// The name of `quotahub import --kind` and of the file.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::Institution => "institution",
            Kind::Quota => "quota",
            Kind::LeaderPost => "leader-post",
            Kind::StaffingPlan => "staffing-plan",
            Kind::HiringApproval => "hiring-approval",
            Kind::PersonnelEvent => "personnel-event",
            Kind::Appointment => "appointment",
            Kind::PayrollLine => "payroll-line",
            Kind::Funding => "funding",
        }
    }

    /// The kind of agency that sends it.
    pub fn sender(self) -> AgencyKind {
        match self {
            Kind::Institution
            | Kind::Quota
            | Kind::LeaderPost
            | Kind::StaffingPlan
            | Kind::HiringApproval => AgencyKind::StaffingOffice,
            Kind::PersonnelEvent => AgencyKind::Hr,
            Kind::Appointment => AgencyKind::Organization,
            Kind::PayrollLine | Kind::Funding => AgencyKind::Finance,
        }
    }
}

/// Records of one kind that one agency sends on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The day, as the hub's clock has it.
    pub on: NaiveDate,
    /// Who sends them: the staffing office, organization department and the funding's finance
    /// agency are the root's; events and payroll come from each division's HR and finance agency.
    pub agency: Agency,
    /// What they are.
    pub kind: Kind,
    /// Which of the dataset's records of the kind.
    pub records: Range<usize>,
}

/// An expected finding: exactly the fields of a [`FindingKey`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Planted {
    /// The rule.
    pub code: RuleCode,
    /// USCC of the institution the finding is about.
    pub institution: String,
    /// Category code, `LEVEL/POSITION`, resident ID, or empty.
    pub subject: String,
    /// Empty, `YYYY-MM`, `YYYY` or `YYYY-MM-DD`.
    pub period: String,
}

impl Planted {
    /// The finding's key.
    pub fn key(&self) -> FindingKey {
        FindingKey {
            code: self.code,
            institution: self.institution.clone(),
            subject: self.subject.clone(),
            period: self.period.clone(),
        }
    }
}

impl From<&FindingKey> for Planted {
    fn from(key: &FindingKey) -> Planted {
        Planted {
            code: key.code,
            institution: key.institution.clone(),
            subject: key.subject.clone(),
            period: key.period.clone(),
        }
    }
}

/// Generates the dataset a config describes.
pub fn generate(config: &GenConfig) -> Dataset {
    let (mut world, mut rng) = model::World::registry(config);
    plant::unknown_units(&mut world, config, &mut rng);
    world.staff(config);
    plant::plant(&mut world, config);
    emit::emit(&mut world, config)
}
