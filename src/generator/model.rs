//! The world before it becomes records: the institution tree, every person's career as stints on
//! rolls, leave and secondment episodes, exits, and leader terms. Plants ([`super::plant`]) edit
//! this model; [`super::emit`] turns it into the contract's messages and works out the findings.
//!
//! People are kept compact (resident ID as a number, name as a packed code) because a province has
//! a million of them.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use chrono::{Datelike, Days, Months, NaiveDate};

use super::GenConfig;
use super::names::{self, Jur, Level, Naming, Tag};
use super::rng::Rng;
use crate::domain::ids::Uscc;
use crate::domain::{
    FundingForm, Grade, HiringChannel, InstitutionKind, InstitutionStatus, LeaderLevel,
    LeaderPosition, Period, QuotaCategory, Rank,
};

/// The quota categories in a fixed order; counts are indexed by it.
pub(super) const CATEGORIES: [QuotaCategory; 5] = [
    QuotaCategory::Administrative,
    QuotaCategory::PoliticalLegal,
    QuotaCategory::PublicInstitution,
    QuotaCategory::CivilServiceManaged,
    QuotaCategory::ServiceWorker,
];

/// Position of a category in [`CATEGORIES`].
pub(super) fn cat_index(category: QuotaCategory) -> usize {
    match category {
        QuotaCategory::Administrative => 0,
        QuotaCategory::PoliticalLegal => 1,
        QuotaCategory::PublicInstitution => 2,
        QuotaCategory::CivilServiceManaged => 3,
        QuotaCategory::ServiceWorker => 4,
    }
}

/// Grades from the top; an institution stores its index.
pub(super) const GRADES: [Grade; 9] = [
    Grade::BureauPrincipal,
    Grade::BureauDeputy,
    Grade::DivisionPrincipal,
    Grade::DivisionDeputy,
    Grade::SectionPrincipal,
    Grade::SectionDeputy,
    Grade::UnitPrincipal,
    Grade::UnitDeputy,
    Grade::Ungraded,
];

/// The GB/T 12407 code of a rank; a smaller code is a higher rank.
pub(super) fn rank_code(rank: Rank) -> u32 {
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

/// The highest rank code a grade allows its leaders (RULES.md, LEADER_ABOVE_GRADE).
pub(super) fn ceiling_code(grade: Grade) -> u32 {
    match grade {
        Grade::BureauPrincipal => 121,
        Grade::BureauDeputy => 122,
        Grade::DivisionPrincipal => 131,
        Grade::DivisionDeputy => 132,
        Grade::SectionPrincipal => 141,
        Grade::SectionDeputy => 142,
        Grade::UnitPrincipal | Grade::UnitDeputy | Grade::Ungraded => 150,
    }
}

/// The rank that goes with a leader post.
pub(super) fn post_rank(level: LeaderLevel, position: LeaderPosition) -> Rank {
    use LeaderLevel as L;
    use LeaderPosition as P;
    match (level, position) {
        (L::Bureau, P::Principal) => Rank::BureauPrincipal,
        (L::Bureau, P::Deputy) => Rank::BureauDeputy,
        (L::Division, P::Principal) => Rank::DivisionPrincipal,
        (L::Division, P::Deputy) => Rank::DivisionDeputy,
        (L::Section, P::Principal) => Rank::SectionPrincipal,
        (L::Section, P::Deputy) => Rank::SectionDeputy,
    }
}

/// The rank one step above a leader rank (高配), if there is one.
pub(super) fn rank_above(rank: Rank) -> Option<Rank> {
    match rank {
        Rank::BureauDeputy => Some(Rank::BureauPrincipal),
        Rank::DivisionPrincipal => Some(Rank::BureauDeputy),
        Rank::DivisionDeputy => Some(Rank::DivisionPrincipal),
        Rank::SectionPrincipal => Some(Rank::DivisionDeputy),
        Rank::SectionDeputy => Some(Rank::SectionPrincipal),
        _ => None,
    }
}

/// A calendar date that exists.
pub(super) fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a valid calendar date")
}

/// `date` moved by `days` (either way).
pub(super) fn add_days(date: NaiveDate, days: i64) -> NaiveDate {
    if days >= 0 {
        date.checked_add_days(Days::new(days as u64))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
    .expect("dates stay within the calendar")
}

/// `date` moved by whole years (29 February becomes 28 February).
pub(super) fn add_years(date: NaiveDate, years: i32) -> NaiveDate {
    let months = Months::new(years.unsigned_abs() * 12);
    if years >= 0 {
        date.checked_add_months(months)
    } else {
        date.checked_sub_months(months)
    }
    .expect("dates stay within the calendar")
}

/// An institution of the world, registered or not.
#[derive(Debug, Clone)]
pub(super) struct Inst {
    pub uscc: String,
    pub name: String,
    pub jur: usize,
    pub parent: Option<u32>,
    pub kind: InstitutionKind,
    pub grade_index: usize,
    pub funding: Option<FundingForm>,
    pub political_legal: bool,
    /// 参公: its staff use 参公事业编制.
    pub civil_service_managed: bool,
    pub established: NaiveDate,
    pub status: InstitutionStatus,
    pub status_since: Option<NaiveDate>,
    /// False for the 私设机构 the generator plants: people and pay, but no registry entry.
    pub registered: bool,
    /// Has quotas and people (internal units have neither).
    pub staffed: bool,
    pub has_children: bool,
    /// Relative size.
    pub weight: f64,
    pub internal_units: u32,
    /// Taken by an institution-level plant; person-level plants leave it alone.
    pub claimed: bool,
    /// A self-funded institution that finance nevertheless funds (SELF_FUNDED_BUDGET_PAY).
    pub budget_funded: bool,
}

impl Inst {
    pub(super) fn grade(&self) -> Grade {
        GRADES[self.grade_index]
    }

    /// The category most of its people occupy.
    pub(super) fn main_category(&self) -> QuotaCategory {
        match (self.kind, self.political_legal, self.civil_service_managed) {
            (InstitutionKind::Organ, true, _) => QuotaCategory::PoliticalLegal,
            (InstitutionKind::Organ, false, _) => QuotaCategory::Administrative,
            (InstitutionKind::PublicInstitution, _, true) => QuotaCategory::CivilServiceManaged,
            (InstitutionKind::PublicInstitution, _, false) => QuotaCategory::PublicInstitution,
        }
    }

    /// Categories the staffing office approves quotas of for it.
    pub(super) fn allowed(&self) -> &'static [QuotaCategory] {
        use QuotaCategory as C;
        match (self.kind, self.political_legal, self.civil_service_managed) {
            (InstitutionKind::Organ, true, _) => {
                &[C::Administrative, C::PoliticalLegal, C::ServiceWorker]
            }
            (InstitutionKind::Organ, false, _) => &[C::Administrative, C::ServiceWorker],
            (InstitutionKind::PublicInstitution, _, true) => {
                &[C::CivilServiceManaged, C::ServiceWorker]
            }
            (InstitutionKind::PublicInstitution, _, false) => {
                &[C::PublicInstitution, C::ServiceWorker]
            }
        }
    }

    /// Whether a person of this category here is 混编混岗 (RULES.md, MIXED_CATEGORY).
    pub(super) fn is_mixed(&self, category: QuotaCategory) -> bool {
        (self.kind == InstitutionKind::Organ && category == QuotaCategory::PublicInstitution)
            || (category == QuotaCategory::PoliticalLegal && !self.political_legal)
    }

    /// Whether the registry, as of `date`, lacks it or has it abolished or merged.
    pub(super) fn unregistered_on(&self, date: NaiveDate) -> bool {
        !self.registered
            || (self.status != InstitutionStatus::Active
                && self.status_since.is_some_and(|since| since <= date))
    }

    /// Registered, operating, and not taken by an institution-level plant: safe to pay from or
    /// plant person-level problems at.
    pub(super) fn clean(&self) -> bool {
        self.registered && self.staffed && self.status == InstitutionStatus::Active && !self.claimed
    }
}

/// How a person left their last roll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExitKind {
    Retirement,
    Departure,
    Death,
}

/// What the entry of a person's first stint cites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Citation {
    /// The approval of its (institution, category, year): covered.
    Approval,
    /// An HR letter's number, which is no approval.
    HrLetter,
    /// Nothing.
    Missing,
    /// The previous year's approval, expired by the entry date.
    Expired,
}

/// A stretch on one roll: `[from, to)`.
#[derive(Debug, Clone)]
pub(super) struct Stint {
    pub inst: u32,
    pub category: QuotaCategory,
    pub from: NaiveDate,
    /// A transfer's date, or the exit date for the last stint of someone who left.
    pub to: Option<NaiveDate>,
    pub channel: HiringChannel,
    /// Entered by transfer from the previous stint's institution.
    pub transfer_in: bool,
}

impl Stint {
    /// On the roll on `date`.
    pub(super) fn covers(&self, date: NaiveDate) -> bool {
        self.from <= date && self.to.is_none_or(|to| date < to)
    }

    /// On the roll on at least one day of the period.
    pub(super) fn overlaps(&self, period: Period) -> bool {
        self.from <= period.last_day() && self.to.is_none_or(|to| to > period.first_day())
    }
}

/// A leave (no host) or a secondment (host) within one stint: `[from, to)`.
#[derive(Debug, Clone)]
pub(super) struct Episode {
    pub stint: usize,
    pub host: Option<u32>,
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
}

impl Episode {
    /// Seconded to `inst` on at least one day of the period.
    pub(super) fn seconded_to_during(&self, inst: u32, period: Period) -> bool {
        self.host == Some(inst)
            && self.from <= period.last_day()
            && self.to.is_none_or(|to| to > period.first_day())
    }
}

/// Who pays a person beyond their own roll.
#[derive(Debug, Clone, Default)]
pub(super) struct PayPlan {
    /// Paid by this institution instead of the roll's (人编分离, or a decoy host).
    pub payer: Option<u32>,
    /// Extra lines: (period index, paying institution).
    pub extra: Vec<(usize, u32)>,
}

/// A person (or a ghost who exists only on a payroll).
#[derive(Debug, Clone)]
pub(super) struct Person {
    /// The first 17 digits of the resident ID.
    pub rid: u64,
    /// Packed name, see [`names::name`].
    pub name: u32,
    pub birth: NaiveDate,
    /// Rank at entry.
    pub rank: Rank,
    /// Rank of the leader post held now, if any.
    pub leader_rank: Option<Rank>,
    pub stints: Vec<Stint>,
    pub episode: Option<Episode>,
    pub exit: Option<ExitKind>,
    pub citation: Citation,
    pub pay: PayPlan,
    /// One plain stint, nothing else going on: free for a plant.
    pub plain: bool,
}

impl Person {
    /// The resident ID with its check character.
    pub(super) fn resident_id(&self) -> String {
        render_resident_id(self.rid)
    }

    pub(super) fn name(&self) -> String {
        names::name(self.name)
    }

    /// Date of the exit (retirement, departure, death), if they left.
    pub(super) fn exit_date(&self) -> Option<NaiveDate> {
        self.exit?;
        self.stints.last().and_then(|s| s.to)
    }
}

/// Appends the GB 11643 check character to 17 digits.
pub(super) fn render_resident_id(first17: u64) -> String {
    const WEIGHTS: [u64; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let digits = format!("{first17:017}");
    let sum: u64 = digits
        .bytes()
        .zip(WEIGHTS)
        .map(|(d, w)| u64::from(d - b'0') * w)
        .sum();
    let mut id = digits;
    id.push(CHECK[(sum % 11) as usize] as char);
    id
}

/// Approved leader posts of one level and position at one institution.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub inst: u32,
    pub level: LeaderLevel,
    pub position: LeaderPosition,
    pub posts: u32,
    pub filled: u32,
}

/// A leader term `[from, to)` of a person.
#[derive(Debug, Clone)]
pub(super) struct LeaderDraft {
    pub person: u32,
    pub inst: u32,
    pub level: LeaderLevel,
    pub position: LeaderPosition,
    pub rank: Rank,
    pub from: NaiveDate,
    pub to: Option<NaiveDate>,
}

/// Everything the generator knows before it writes records.
#[derive(Debug)]
pub(super) struct World {
    pub jurs: Vec<Jur>,
    pub insts: Vec<Inst>,
    pub persons: Vec<Person>,
    pub slots: Vec<Slot>,
    pub leaders: Vec<LeaderDraft>,
    pub as_of: NaiveDate,
    pub periods: Vec<Period>,
    /// First day of the first pay period (as_of when there is none). Transfers and quota changes
    /// happen before it, so that every period sees one roll per person and one quota.
    pub window_start: NaiveDate,
    used_ids: HashSet<u64>,
    serial: u32,
}

/// Share of a jurisdiction's institutions that are departments and internal units.
const ORGAN_SHARE: f64 = 0.22;
const INTERNAL_SHARE: f64 = 0.28;
/// Yearly share of staff who leave; those who left in the last three years are in the data.
const EXIT_SHARE: f64 = 0.09;
/// Share of staff who came by transfer.
const TRANSFER_SHARE: f64 = 0.08;
/// First year of the real-name records.
const FIRST_ENTRY: (i32, u32, u32) = (1990, 1, 15);

impl World {
    /// Builds the registry (the people come with [`World::staff`], once the plants have added
    /// the units the registry does not know), and the stream of draws the plants go on with.
    pub(super) fn registry(config: &GenConfig) -> (World, Rng) {
        let mut periods = config.periods.clone();
        periods.sort();
        periods.dedup();
        let window_start = periods
            .first()
            .map_or(config.as_of, |p| p.first_day())
            .min(config.as_of);
        let mut world = World {
            jurs: names::jurisdictions(&config.root, config.institutions),
            insts: Vec::new(),
            persons: Vec::new(),
            slots: Vec::new(),
            leaders: Vec::new(),
            as_of: config.as_of,
            periods,
            window_start,
            used_ids: HashSet::new(),
            serial: 0,
        };
        let mut rng = Rng::derive(config.seed, &[1]);
        for j in 0..world.jurs.len() {
            world.build_jurisdiction(j, &mut rng);
        }
        if config.min_each > 0 {
            world.ensure_self_funded(config.min_each + 1, &mut rng);
        }
        (world, rng)
    }

    /// A unit code: `11` (organ) or `12` (public institution), the division, a serial that makes
    /// it unique (organs: eight digits and a character; public institutions: `MB`, six digits and
    /// a character, as the registration authority writes them), and the check character.
    fn next_uscc(&mut self, kind: InstitutionKind, jur: usize, rng: &mut Rng) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
        self.serial += 1;
        assert!(self.serial < 1_000_000, "serials fit the code's six digits");
        let tail = ALPHABET[rng.below(ALPHABET.len())] as char;
        let code = &self.jurs[jur].code;
        let first17 = match kind {
            InstitutionKind::Organ => format!("11{code}{:08}{tail}", 1_000_000 + self.serial),
            InstitutionKind::PublicInstitution => format!("12{code}MB{:06}{tail}", self.serial),
        };
        Uscc::with_check_character(&first17)
            .expect("generated code uses the alphabet")
            .to_string()
    }

    fn new_inst(&mut self, jur: usize, kind: InstitutionKind, rng: &mut Rng) -> Inst {
        let uscc = self.next_uscc(kind, jur, rng);
        let established = if rng.chance(0.9) {
            rng.date(date(1949, 10, 1), date(1999, 12, 31))
        } else {
            rng.date(date(2000, 1, 1), date(2020, 6, 30))
        };
        // Nothing starts after the check date, even with an unusual as_of.
        let established = established.min(add_years(self.window_start, -3));
        Inst {
            uscc,
            name: String::new(),
            jur,
            parent: None,
            kind,
            grade_index: 8,
            funding: None,
            political_legal: false,
            civil_service_managed: false,
            established,
            status: InstitutionStatus::Active,
            status_since: None,
            registered: true,
            staffed: true,
            has_children: false,
            weight: 0.0,
            internal_units: 0,
            claimed: false,
            budget_funded: false,
        }
    }

    fn build_jurisdiction(&mut self, j: usize, rng: &mut Rng) {
        let jur = self.jurs[j].clone();
        let budget = jur.budget.max(2);
        let level_weight = match jur.level {
            Level::Province => 1.6,
            Level::City => 1.0,
            Level::District => 0.6,
        };
        let organ_grade = match jur.level {
            Level::Province => 0,
            Level::City => 2,
            Level::District => 4,
        };
        // Departments first, then street offices and towns in a district.
        // A small division still has its core departments (offices, police, education, health,
        // courts) so that every category and kind of public institution occurs.
        let wanted = ((budget as f64 * ORGAN_SHARE).round() as usize)
            .max((budget / 2).min(6))
            .clamp(1, budget);
        let templates = names::ORGANS.len();
        let streets = if jur.level == Level::District { 12 } else { 0 };
        let organ_count = wanted.min(templates + streets);
        let mut organs: Vec<(u32, Tag)> = Vec::new();
        for k in 0..organ_count {
            let mut inst = self.new_inst(j, InstitutionKind::Organ, rng);
            let tag = if k < templates {
                let template = &names::ORGANS[k];
                inst.name = template.name(&jur);
                inst.political_legal = template.political_legal;
                inst.weight = template.weight * level_weight;
                template.tag
            } else {
                let street = k - templates;
                inst.name = if street.is_multiple_of(2) {
                    format!("{}{}街道办事处", jur.name, names::place(street))
                } else {
                    format!("{}{}镇人民政府", jur.name, names::place(street + 20))
                };
                inst.weight = 45.0;
                Tag::General
            };
            inst.grade_index = organ_grade + usize::from(k >= 3 && rng.chance(0.1));
            organs.push((self.insts.len() as u32, tag));
            self.insts.push(inst);
        }
        // Internal units: registry entries under a department, without quotas of their own.
        let internal = ((budget as f64 * INTERNAL_SHARE).round() as usize)
            .min(budget.saturating_sub(organ_count + 1))
            .min(organ_count * 8);
        for k in 0..internal {
            let (parent, _) = organs[k % organs.len()];
            let mut inst = self.new_inst(j, InstitutionKind::Organ, rng);
            let parent_inst = &self.insts[parent as usize];
            let unit = k / organs.len();
            let mut unit_name = names::internal_unit(jur.level, unit);
            if parent_inst.name.ends_with("办公室") && unit_name == "办公室" {
                unit_name = names::internal_unit(jur.level, names::INTERNAL_UNITS.len() - 1)
                    .replace("审批", "秘书");
            }
            inst.name = format!("{}{unit_name}", parent_inst.name);
            inst.parent = Some(parent);
            inst.grade_index = (parent_inst.grade_index + 2).min(8);
            inst.established = inst.established.max(parent_inst.established);
            inst.staffed = false;
            self.insts[parent as usize].has_children = true;
            self.insts[parent as usize].internal_units += 1;
            self.insts.push(inst);
        }
        // Public institutions under the departments that run them.
        let public = budget.saturating_sub(organ_count + internal);
        let pi_base: i32 = match jur.level {
            Level::Province => 2,
            Level::City => 4,
            Level::District => 6,
        };
        let mut ordinals: HashMap<&'static str, u32> = HashMap::new();
        let mut by_parent: HashMap<(u32, &'static str), u32> = HashMap::new();
        let mut places = 0usize;
        for _ in 0..public {
            let wanted_tag = match rng.unit() {
                x if x < 0.35 => Tag::Education,
                x if x < 0.55 => Tag::Health,
                x if x < 0.60 => Tag::Culture,
                _ => Tag::General,
            };
            let parents: Vec<u32> = organs
                .iter()
                .enumerate()
                .filter(|(k, (_, tag))| *tag == wanted_tag && (*k >= 2 || organs.len() <= 2))
                .map(|(_, (i, _))| *i)
                .collect();
            // The party and government offices (the first two departments) run nothing when
            // another department can.
            let fallback = if organs.len() > 2 {
                &organs[2..]
            } else {
                &organs[..]
            };
            let (parent, tag) = if parents.is_empty() {
                (fallback[rng.below(fallback.len())].0, Tag::General)
            } else {
                (*rng.pick(&parents), wanted_tag)
            };
            let templates: Vec<&names::PublicInstitution> = names::PUBLIC_INSTITUTIONS
                .iter()
                .filter(|t| t.tag == tag)
                .collect();
            let template = *rng.pick(&templates);
            let mut inst = self.new_inst(j, InstitutionKind::PublicInstitution, rng);
            let parent_name = self.insts[parent as usize].name.clone();
            let ordinal = ordinals.entry(template.kind).or_insert(0);
            *ordinal += 1;
            inst.name = match template.naming {
                Naming::Ordinal => {
                    format!(
                        "{}第{}{}",
                        jur.name,
                        names::zh_number(*ordinal),
                        template.kind
                    )
                }
                Naming::Place => {
                    places += 1;
                    format!("{}{}{}", jur.name, names::place(places), template.kind)
                }
                Naming::Parent => {
                    let repeat = by_parent.entry((parent, template.kind)).or_insert(0);
                    *repeat += 1;
                    if *repeat == 1 {
                        format!("{parent_name}{}", template.kind)
                    } else {
                        format!(
                            "{parent_name}第{}{}",
                            names::zh_number(*repeat),
                            template.kind
                        )
                    }
                }
                _ if *ordinal == 1 => format!("{}{}", jur.name, template.kind),
                _ => format!(
                    "{}第{}{}",
                    jur.name,
                    names::zh_number(*ordinal),
                    template.kind
                ),
            };
            inst.parent = Some(parent);
            inst.established = inst
                .established
                .max(self.insts[parent as usize].established);
            self.insts[parent as usize].has_children = true;
            let grade = (pi_base + template.grade_shift).clamp(1, 7) as usize;
            inst.grade_index = if grade >= 5 && rng.chance(0.1) {
                8
            } else {
                grade
            };
            let form = rng.unit();
            inst.funding = Some(if form < template.full {
                FundingForm::Full
            } else if form < template.full + template.partial {
                FundingForm::Partial
            } else {
                FundingForm::SelfFunded
            });
            inst.civil_service_managed = rng.chance(template.civil_service_managed);
            if inst.civil_service_managed {
                inst.funding = Some(FundingForm::Full);
            }
            inst.weight = template.weight * level_weight;
            self.insts.push(inst);
        }
    }

    /// A small test world must hold enough self-funded institutions for its plants.
    fn ensure_self_funded(&mut self, at_least: usize, rng: &mut Rng) {
        let mut candidates: Vec<usize> = (0..self.insts.len())
            .filter(|&i| {
                let inst = &self.insts[i];
                inst.staffed
                    && inst.kind == InstitutionKind::PublicInstitution
                    && !inst.civil_service_managed
            })
            .collect();
        let have = candidates
            .iter()
            .filter(|&&i| self.insts[i].funding == Some(FundingForm::SelfFunded))
            .count();
        candidates.retain(|&i| self.insts[i].funding != Some(FundingForm::SelfFunded));
        rng.shuffle(&mut candidates);
        for &i in candidates.iter().take(at_least.saturating_sub(have)) {
            self.insts[i].funding = Some(FundingForm::SelfFunded);
        }
    }

    /// A 私设机构: a unit with people and pay that the staffing office never registered.
    pub(super) fn add_unknown_unit(&mut self, rng: &mut Rng) {
        let j = rng.below(self.jurs.len());
        let mut inst = self.new_inst(j, InstitutionKind::Organ, rng);
        inst.name = format!(
            "{}{}",
            self.jurs[j].name,
            rng.pick(names::UNREGISTERED_UNITS)
        );
        inst.registered = false;
        inst.grade_index = 4;
        inst.established = add_days(self.as_of, -400);
        inst.claimed = true;
        self.insts.push(inst);
    }

    pub(super) fn staff(&mut self, config: &GenConfig) {
        let staffed: Vec<u32> = (0..self.insts.len() as u32)
            .filter(|&i| self.insts[i as usize].staffed && self.insts[i as usize].registered)
            .collect();
        let total: f64 = staffed.iter().map(|&i| self.insts[i as usize].weight).sum();
        for &i in &staffed {
            let mut rng = Rng::derive(config.seed, &[2, u64::from(i)]);
            let share = self.insts[i as usize].weight / total.max(1.0);
            let n = ((config.people as f64 * share).round() as usize).max(2);
            self.staff_institution(i, n, &staffed, &mut rng);
        }
        for i in 0..self.insts.len() as u32 {
            if !self.insts[i as usize].registered {
                let mut rng = Rng::derive(config.seed, &[3, u64::from(i)]);
                self.staff_unknown(i, &mut rng);
            }
        }
    }

    fn split(&self, i: u32, n: usize) -> Vec<(QuotaCategory, usize)> {
        let inst = &self.insts[i as usize];
        let service = if n >= 8 {
            ((n as f64 * 0.07).round() as usize).max(1)
        } else {
            0
        };
        let main = inst.main_category();
        let mut split = Vec::new();
        if main == QuotaCategory::PoliticalLegal {
            let admin = (n as f64 * 0.15).round() as usize;
            split.push((main, n - service - admin));
            split.push((QuotaCategory::Administrative, admin));
        } else {
            split.push((main, n - service));
        }
        split.push((QuotaCategory::ServiceWorker, service));
        split.retain(|(_, k)| *k > 0);
        split
    }

    /// A fresh resident ID: area code, birth date, a sequence whose last digit is odd for men.
    fn new_id(&mut self, area: &str, birth: NaiveDate, female: bool, rng: &mut Rng) -> u64 {
        let area: u64 = area.parse().expect("division codes are digits");
        let day = u64::from(birth.year() as u32) * 10_000
            + u64::from(birth.month()) * 100
            + u64::from(birth.day());
        let mut seq = rng.below(500) as u64 * 2 + u64::from(!female);
        loop {
            let id = area * 100_000_000_000 + day * 1_000 + seq;
            if self.used_ids.insert(id) {
                return id;
            }
            seq = (seq + 2) % 1_000;
        }
    }

    fn area_for(&self, jur: usize, rng: &mut Rng) -> String {
        let j = if rng.chance(0.8) {
            jur
        } else {
            rng.below(self.jurs.len())
        };
        let code = &self.jurs[j].code;
        if code.ends_with("0000") {
            // People are registered in a city or county, not at province level.
            format!("{}01{}", &code[..2], &code[4..])
        } else {
            code.clone()
        }
    }

    /// Entry dates fall on or after 15 January, after the year's approvals are issued (2–14
    /// January), so an approval always covers the entries of its year.
    pub(super) fn entry_date(&self, d: NaiveDate) -> NaiveDate {
        if d.month() == 1 && d.day() < 15 {
            let moved = date(d.year(), 1, 15);
            if moved < self.as_of {
                moved
            } else {
                date(d.year() - 1, 12, 15)
            }
        } else {
            d
        }
    }

    fn earliest_entry(&self, birth: NaiveDate, inst: u32) -> NaiveDate {
        let (y, m, d) = FIRST_ENTRY;
        add_years(birth, 21)
            .max(add_days(self.insts[inst as usize].established, 30))
            .max(date(y, m, d))
    }

    fn rank_for(category: QuotaCategory, rng: &mut Rng) -> Rank {
        match category {
            QuotaCategory::PublicInstitution | QuotaCategory::ServiceWorker => Rank::Unranked,
            _ if rng.chance(0.8) => Rank::Clerk,
            _ => Rank::Officer,
        }
    }

    pub(super) fn channel_for(&self, inst: u32, rng: &mut Rng) -> HiringChannel {
        let organ = self.insts[inst as usize].kind == InstitutionKind::Organ;
        match rng.unit() {
            x if x < 0.8 => HiringChannel::OpenRecruitment,
            x if x < 0.9 => HiringChannel::PolicyPlacement,
            _ if organ => HiringChannel::OrganizationalAppointment,
            _ => HiringChannel::TalentIntroduction,
        }
    }

    fn blank_person(
        &mut self,
        jur: usize,
        age_at: NaiveDate,
        ages: Range<i64>,
        female: bool,
        rng: &mut Rng,
    ) -> Person {
        let age = rng.between(ages.start, ages.end - 1) as i32;
        let birth = add_days(add_years(age_at, -age), -rng.between(0, 364));
        let area = self.area_for(jur, rng);
        let rid = self.new_id(&area, birth, female, rng);
        Person {
            rid,
            name: names::name_code(rng.next_u64()),
            birth,
            rank: Rank::Clerk,
            leader_rank: None,
            stints: Vec::new(),
            episode: None,
            exit: None,
            citation: Citation::Approval,
            pay: PayPlan::default(),
            plain: false,
        }
    }

    fn staff_institution(&mut self, i: u32, n: usize, staffed: &[u32], rng: &mut Rng) {
        let split = self.split(i, n);
        let first = self.persons.len();
        for &(category, count) in &split {
            for _ in 0..count {
                let person = self.new_current(i, category, staffed, rng);
                self.persons.push(person);
            }
        }
        let current = first..self.persons.len();
        let leavers = (n as f64 * EXIT_SHARE * rng.float(0.6, 1.4)).round() as usize;
        for _ in 0..leavers {
            let pick = rng.below(n);
            let mut acc = 0;
            let category = split
                .iter()
                .find(|(_, k)| {
                    acc += k;
                    pick < acc
                })
                .map_or(split[0].0, |(c, _)| *c);
            if let Some(person) = self.new_leaver(i, category, rng) {
                self.persons.push(person);
            }
        }
        let leavers = current.end..self.persons.len();
        self.fill_leaders(i, n, current, leavers, rng);
    }

    fn new_current(
        &mut self,
        i: u32,
        category: QuotaCategory,
        staffed: &[u32],
        rng: &mut Rng,
    ) -> Person {
        let jur = self.insts[i as usize].jur;
        let female = rng.chance(0.45);
        // Women retire at 55, men at 60: nobody on the roll is past it.
        let ages = if female { 23..54 } else { 23..59 };
        let mut person = self.blank_person(jur, self.as_of, ages, female, rng);
        person.rank = Self::rank_for(category, rng);
        let latest = add_days(self.as_of, -1);
        let earliest = self.earliest_entry(person.birth, i).min(latest);
        let arrival = self.entry_date(rng.date(earliest, latest));
        let mut transferred = false;
        if rng.chance(TRANSFER_SHARE) && arrival < self.window_start && arrival.year() >= 1996 {
            let source = *rng.pick(staffed);
            if source != i {
                let lo = self.earliest_entry(person.birth, source);
                let hi = add_days(arrival, -365);
                if lo <= hi {
                    let hired = self.entry_date(rng.date(lo, hi));
                    person.stints.push(Stint {
                        inst: source,
                        category: self.insts[source as usize].main_category(),
                        from: hired,
                        to: Some(arrival),
                        channel: self.channel_for(source, rng),
                        transfer_in: false,
                    });
                    transferred = true;
                }
            }
        }
        let channel = if transferred {
            HiringChannel::Transfer
        } else {
            self.channel_for(i, rng)
        };
        person.stints.push(Stint {
            inst: i,
            category,
            from: arrival,
            to: None,
            channel,
            transfer_in: transferred,
        });
        let roll = rng.unit();
        if roll < 0.075 {
            let secondment = roll >= 0.045;
            let ongoing = roll < 0.015 || (0.045..0.055).contains(&roll);
            let lo = add_days(arrival, 30);
            let host = *rng.pick(staffed);
            let host = (host != i).then_some(host);
            if secondment && host.is_none() {
                // No host drawn: an ordinary career.
            } else if ongoing && lo <= latest {
                let from = rng.date(lo.max(add_years(self.as_of, -3)), latest);
                person.episode = Some(Episode {
                    stint: person.stints.len() - 1,
                    host: host.filter(|_| secondment),
                    from,
                    to: None,
                });
            } else if !ongoing && lo <= add_days(self.as_of, -61) {
                let from = rng.date(lo, add_days(self.as_of, -61));
                let to = rng.date(add_days(from, 30), add_days(from, 730).min(latest));
                person.episode = Some(Episode {
                    stint: person.stints.len() - 1,
                    host: host.filter(|_| secondment),
                    from,
                    to: Some(to),
                });
            }
        }
        person.plain = !transferred && person.episode.is_none();
        person
    }

    /// Someone who left in the last three years: retired, departed or died.
    fn new_leaver(&mut self, i: u32, category: QuotaCategory, rng: &mut Rng) -> Option<Person> {
        let jur = self.insts[i as usize].jur;
        let window = (add_years(self.as_of, -3), self.as_of);
        let kind = match rng.unit() {
            x if x < 0.7 => ExitKind::Retirement,
            x if x < 0.95 => ExitKind::Departure,
            _ => ExitKind::Death,
        };
        let female = rng.chance(0.45);
        let (mut person, exit) = if kind == ExitKind::Retirement {
            // Retirement takes effect on the first of the month after the birthday.
            let day = rng.date(window.0, window.1);
            let exit = date(day.year(), day.month(), 1).max(window.0);
            let age = if female { 55 } else { 60 };
            let mut person = self.blank_person(jur, exit, age..age + 1, female, rng);
            let birthday = add_days(exit, -rng.between(1, 28));
            person.birth = add_years(birthday, -(age as i32));
            let area = self.area_for(jur, rng);
            self.used_ids.remove(&person.rid);
            person.rid = self.new_id(&area, person.birth, female, rng);
            (person, exit)
        } else {
            let exit = rng.date(window.0, window.1);
            let person = self.blank_person(jur, exit, 25..59, female, rng);
            (person, exit)
        };
        let lo = self.earliest_entry(person.birth, i);
        let hi = add_days(
            exit,
            if kind == ExitKind::Retirement {
                -730
            } else {
                -180
            },
        );
        if lo > hi {
            self.used_ids.remove(&person.rid);
            return None;
        }
        let hired = self.entry_date(rng.date(lo, hi));
        person.rank = Self::rank_for(category, rng);
        person.stints.push(Stint {
            inst: i,
            category,
            from: hired,
            to: Some(exit),
            channel: self.channel_for(i, rng),
            transfer_in: false,
        });
        person.exit = Some(kind);
        Some(person)
    }

    /// Leader posts of an institution by its grade, and the leaders in them.
    fn fill_leaders(
        &mut self,
        i: u32,
        n: usize,
        current: Range<usize>,
        leavers: Range<usize>,
        rng: &mut Rng,
    ) {
        use LeaderLevel as L;
        use LeaderPosition as P;
        let grade_index = self.insts[i as usize].grade_index;
        let internal = self.insts[i as usize].internal_units;
        let head = match grade_index {
            0 => Some((L::Bureau, P::Principal)),
            1 => Some((L::Bureau, P::Deputy)),
            2 => Some((L::Division, P::Principal)),
            3 => Some((L::Division, P::Deputy)),
            4 => Some((L::Section, P::Principal)),
            5 => Some((L::Section, P::Deputy)),
            _ => None,
        };
        let Some(head) = head else { return };
        let deputies = match grade_index {
            0 => Some((L::Bureau, P::Deputy)),
            1 => Some((L::Division, P::Principal)),
            2 => Some((L::Division, P::Deputy)),
            3 => Some((L::Section, P::Principal)),
            4 => Some((L::Section, P::Deputy)),
            _ => None,
        };
        let deputy_posts = match n {
            0..15 => 1,
            15..60 => 2,
            60..200 => 3,
            _ => 4,
        };
        let middle = match grade_index {
            0 => Some((L::Division, P::Principal)),
            2 => Some((L::Section, P::Principal)),
            _ => None,
        };
        let mut plan: Vec<((L, P), u32)> = vec![(head, 1)];
        if let Some(d) = deputies {
            plan.push((d, deputy_posts));
        }
        if let Some(m) = middle
            && internal > 0
        {
            match plan.iter_mut().find(|(key, _)| *key == m) {
                Some(entry) => entry.1 += internal,
                None => plan.push((m, internal)),
            }
        }
        let mut candidates: Vec<usize> = current
            .filter(|&p| {
                let person = &self.persons[p];
                // Leaders have some seniority.
                person.plain
                    && person.stints[0].from <= add_years(self.as_of, -3)
                    && person.birth <= add_years(self.as_of, -30)
            })
            .collect();
        rng.shuffle(&mut candidates);
        let cap = candidates.len() * 3 / 5;
        let mut used = 0;
        let latest = add_days(self.as_of, -1);
        for (k, ((level, position), posts)) in plan.into_iter().enumerate() {
            let fill = if k > 0 && posts > 0 && rng.chance(0.25) {
                posts - 1
            } else {
                posts
            };
            let rank = post_rank(level, position);
            let mut filled = 0;
            for _ in 0..fill {
                if used >= cap {
                    break;
                }
                let p = candidates[used];
                used += 1;
                let arrival = self.persons[p].stints[0].from;
                let mut from = rng.date(add_days(arrival, 60), latest);
                if k == 0 && rng.chance(0.3) {
                    // The post's previous holder, removed when they retired.
                    let predecessor = leavers.clone().find(|&q| {
                        let person = &self.persons[q];
                        person.exit == Some(ExitKind::Retirement)
                            && person.leader_rank.is_none()
                            && person
                                .exit_date()
                                .is_some_and(|d| d <= add_days(self.as_of, -30))
                            && add_years(person.stints[0].from, 2)
                                <= person.exit_date().unwrap_or(person.stints[0].from)
                    });
                    if let Some(q) = predecessor {
                        let exit = self.persons[q].exit_date().expect("a leaver has an exit");
                        let start = rng.date(
                            add_years(self.persons[q].stints[0].from, 1),
                            add_days(exit, -180),
                        );
                        self.persons[q].leader_rank = Some(rank);
                        self.leaders.push(LeaderDraft {
                            person: q as u32,
                            inst: i,
                            level,
                            position,
                            rank,
                            from: start,
                            to: Some(exit),
                        });
                        from = from.max(exit);
                    }
                }
                let person = &mut self.persons[p];
                person.plain = false;
                person.leader_rank = Some(rank);
                self.leaders.push(LeaderDraft {
                    person: p as u32,
                    inst: i,
                    level,
                    position,
                    rank,
                    from,
                    to: None,
                });
                filled += 1;
            }
            self.slots.push(Slot {
                inst: i,
                level,
                position,
                posts,
                filled,
            });
        }
    }

    /// A 私设机构's staff: hired this year, citing no approval (none can exist for it).
    fn staff_unknown(&mut self, i: u32, rng: &mut Rng) {
        let jur = self.insts[i as usize].jur;
        let year_start = date(self.as_of.year(), 1, 15);
        let lo = if year_start < add_days(self.as_of, -30) {
            year_start
        } else {
            add_days(self.as_of, -200)
        };
        let n = rng.between(3, 8);
        for _ in 0..n {
            let female = rng.chance(0.45);
            let mut person = self.blank_person(jur, self.as_of, 25..50, female, rng);
            person.stints.push(Stint {
                inst: i,
                category: QuotaCategory::Administrative,
                from: self.entry_date(rng.date(lo, add_days(self.as_of, -1))),
                to: None,
                channel: HiringChannel::OpenRecruitment,
                transfer_in: false,
            });
            person.citation = if rng.chance(0.5) {
                Citation::Missing
            } else {
                Citation::HrLetter
            };
            self.persons.push(person);
        }
    }

    /// A person who exists only on a payroll (吃空饷).
    pub(super) fn new_ghost(&mut self, rng: &mut Rng) -> Person {
        let jur = rng.below(self.jurs.len());
        let female = rng.chance(0.45);
        let mut person = self.blank_person(jur, self.as_of, 25..58, female, rng);
        person.citation = Citation::Missing;
        person
    }
}
