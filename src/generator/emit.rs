//! From the world to the contract's records, and the findings those records make true.
//!
//! The truth is not a list of intentions: each rule of RULES.md is evaluated here over the model
//! the records come from (counts on the check dates, quotas in force, leader terms, each person's
//! stints and pay), so that whatever the planted problems cause together — an over-quota unit is
//! also full, a 私设机构's hires have no approval and exceed a plan of 0 — is in the truth, and clean
//! data yields nothing. The record-level plants (quota cuts, post cuts, plan shortfalls, exhausted
//! approvals, over-funding) are made here as the records are written.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{Datelike, NaiveDate};

use super::deliver::{self, PayrollPlan};
use super::model::{
    CATEGORIES, Citation, ExitKind, GRADES, Inst, Person, World, add_days, add_years, cat_index,
    ceiling_code, date, rank_above, rank_code,
};
use super::plant::{self, planned};
use super::rng::{Rng, mix};
use super::{Dataset, GenConfig, Planted};
use crate::api::convert::Wire;
use crate::domain::findings::RuleCode;
use crate::domain::{
    AppointmentAction, Coded, FundingForm, HiringChannel, InstitutionStatus, LeaderLevel,
    LeaderPosition, Period, PersonnelEventType, QuotaCategory, Rank,
};
use crate::proto;

/// Document numbers: one counter per division, kind of document and year.
#[derive(Default)]
struct Docs {
    counters: HashMap<(usize, &'static str, i32), u32>,
}

impl Docs {
    fn next(&mut self, world: &World, jur: usize, kind: &'static str, year: i32) -> String {
        let n = self.counters.entry((jur, kind, year)).or_insert(0);
        *n += 1;
        format!("{}{kind}〔{year}〕{n}号", world.jurs[jur].prefix)
    }
}

/// 编审: hiring approvals.
const APPROVAL: &str = "编审";
/// 编发: the staffing office's decisions (registry, quotas, posts, plans).
const STAFFING: &str = "编发";
/// 组任: appointments.
const APPOINTMENT: &str = "组任";
/// 人社函: HR letters, which some entries cite instead of an approval.
const HR_LETTER: &str = "人社函";

struct QuotaDraft {
    inst: u32,
    category: QuotaCategory,
    value: u32,
    from: NaiveDate,
    /// An earlier approval of the same quota, in force until `from`.
    previous: Option<(NaiveDate, u32)>,
}

struct ApprovalDraft {
    number: String,
    inst: u32,
    category: QuotaCategory,
    year: i32,
    covered: u32,
    /// The last entry using it, and whether no other entry has that date.
    latest: Option<(NaiveDate, u32)>,
    latest_unique: bool,
}

impl ApprovalDraft {
    /// An entry on `on` uses the approval.
    fn use_on(&mut self, on: NaiveDate, person: u32) {
        self.covered += 1;
        match self.latest {
            Some((latest, _)) if on < latest => {}
            Some((latest, _)) if on == latest => self.latest_unique = false,
            _ => {
                self.latest = Some((on, person));
                self.latest_unique = true;
            }
        }
    }
}

/// Hiring approvals, one per (institution, category, year), numbered as first needed.
#[derive(Default)]
struct Approvals {
    drafts: Vec<ApprovalDraft>,
    keys: HashMap<(u32, usize, i32), usize>,
}

impl Approvals {
    fn get(
        &mut self,
        docs: &mut Docs,
        world: &World,
        inst: u32,
        category: QuotaCategory,
        year: i32,
    ) -> usize {
        if let Some(&a) = self.keys.get(&(inst, cat_index(category), year)) {
            return a;
        }
        let jur = world.insts[inst as usize].jur;
        self.drafts.push(ApprovalDraft {
            number: docs.next(world, jur, APPROVAL, year),
            inst,
            category,
            year,
            covered: 0,
            latest: None,
            latest_unique: true,
        });
        self.keys
            .insert((inst, cat_index(category), year), self.drafts.len() - 1);
        self.drafts.len() - 1
    }
}

struct Emitter<'w> {
    world: &'w mut World,
    config: &'w GenConfig,
    rng: Rng,
    docs: Docs,
    truth: BTreeSet<Planted>,
    /// The check dates: as_of, then each period's last day.
    dates: Vec<NaiveDate>,
    /// People on the roll per (institution, category, check date).
    counts: Vec<u32>,
    /// The quota in force per (institution, category) on every check date.
    quota: Vec<Option<u32>>,
    quota_drafts: Vec<QuotaDraft>,
    /// The person of each of `data.events`, for the delivery timeline.
    event_people: Vec<u32>,
    data: Dataset,
}

/// Writes the world as records and works out the findings.
pub(super) fn emit(world: &mut World, config: &GenConfig) -> Dataset {
    let mut dates = vec![world.as_of];
    dates.extend(world.periods.iter().map(|p| p.last_day()));
    let slots = world.insts.len() * CATEGORIES.len();
    let data = Dataset {
        root: config.root.to_string(),
        as_of: config.as_of.to_string(),
        periods: world.periods.iter().map(ToString::to_string).collect(),
        ..Dataset::default()
    };
    let mut emitter = Emitter {
        counts: vec![0; slots * dates.len()],
        quota: vec![None; slots],
        dates,
        world,
        config,
        rng: Rng::derive(config.seed, &[5]),
        docs: Docs::default(),
        truth: BTreeSet::new(),
        quota_drafts: Vec::new(),
        event_people: Vec::new(),
        data,
    };
    emitter.count();
    emitter.quotas();
    emitter.leaders();
    emitter.people();
    let plan = emitter.payroll();
    emitter.fundings();
    emitter.roll();
    emitter.institutions();
    let freshness = deliver::timeline(
        emitter.world,
        config,
        &mut emitter.data,
        &emitter.event_people,
        &plan,
    );
    let mut data = emitter.data;
    emitter.truth.extend(freshness);
    data.truth = emitter.truth.into_iter().collect();
    data
}

fn text(date: NaiveDate) -> String {
    date.to_string()
}

fn channel_index(channel: HiringChannel) -> usize {
    HiringChannel::ALL
        .iter()
        .position(|c| *c == channel)
        .expect("every channel is listed")
}

/// `LEVEL/POSITION`, the subject of OVER_LEADER_POSTS.
fn post_subject(level: LeaderLevel, position: LeaderPosition) -> String {
    format!("{}/{}", level.code(), position.code())
}

impl Emitter<'_> {
    fn find(&mut self, code: RuleCode, inst: u32, subject: &str, period: &str) {
        self.truth.insert(Planted {
            code,
            institution: self.world.insts[inst as usize].uscc.clone(),
            subject: subject.to_owned(),
            period: period.to_owned(),
        });
    }

    fn slot(&self, inst: u32, category: QuotaCategory) -> usize {
        inst as usize * CATEGORIES.len() + cat_index(category)
    }

    fn count_at(&self, inst: u32, category: QuotaCategory, date_index: usize) -> u32 {
        self.counts[self.slot(inst, category) * self.dates.len() + date_index]
    }

    fn inst(&self, i: u32) -> &Inst {
        &self.world.insts[i as usize]
    }

    fn count(&mut self) {
        let d = self.dates.len();
        for person in &self.world.persons {
            for stint in &person.stints {
                let base = (stint.inst as usize * CATEGORIES.len() + cat_index(stint.category)) * d;
                for (k, &day) in self.dates.iter().enumerate() {
                    if stint.covers(day) {
                        self.counts[base + k] += 1;
                    }
                }
            }
        }
    }

    /// Quotas: above the most people the roll holds on any check date, except the planted cuts
    /// (OVER_QUOTA) and exactly full ones (QUOTA_FULL).
    fn quotas(&mut self) {
        let window_start = self.world.window_start;
        let reform = date(2019, 3, 1).min(add_years(window_start, -1));
        let d = self.dates.len();
        for i in 0..self.world.insts.len() as u32 {
            let inst = self.inst(i).clone();
            if !inst.registered || !inst.staffed {
                continue;
            }
            for &category in inst.allowed() {
                let most = (0..d)
                    .map(|k| self.count_at(i, category, k))
                    .max()
                    .unwrap_or(0);
                if category != inst.main_category() && most == 0 && !self.rng.chance(0.1) {
                    continue;
                }
                let vacancy =
                    ((f64::from(most) * self.rng.float(0.02, 0.15)).round() as u32).max(1);
                let value = most + vacancy;
                let from =
                    add_days(reform, self.rng.between(0, 300)).max(add_days(inst.established, 30));
                let earliest = add_days(inst.established, 30);
                let previous =
                    (self.rng.chance(0.3) && earliest < add_days(from, -365)).then(|| {
                        let old = (f64::from(value) * self.rng.float(0.8, 1.2)).round() as u32;
                        (self.rng.date(earliest, add_days(from, -365)), old.max(1))
                    });
                self.quota_drafts.push(QuotaDraft {
                    inst: i,
                    category,
                    value,
                    from,
                    previous,
                });
            }
        }
        let mut candidates: Vec<usize> = (0..self.quota_drafts.len())
            .filter(|&q| self.inst(self.quota_drafts[q].inst).clean())
            .collect();
        self.rng.shuffle(&mut candidates);
        let mut over = planned(plant::RATE_OVER_QUOTA, self.quota_drafts.len(), self.config);
        let mut full = planned(plant::RATE_QUOTA_FULL, self.quota_drafts.len(), self.config);
        for q in candidates {
            let (inst, category) = (self.quota_drafts[q].inst, self.quota_drafts[q].category);
            let on_roll = self.count_at(inst, category, 0);
            if over > 0 && on_roll >= 2 {
                // Cut (核减) below the people still on it, before the pay periods.
                let draft = &self.quota_drafts[q];
                let lo = add_days(draft.from, 30).max(add_days(window_start, -540));
                let hi = add_days(window_start, -1);
                if lo <= hi {
                    let cut = self.rng.between(1, i64::from(on_roll - 1).min(3)) as u32;
                    let since = self.rng.date(lo, hi);
                    let draft = &mut self.quota_drafts[q];
                    draft.previous = Some((draft.from, draft.value));
                    draft.from = since;
                    draft.value = on_roll - cut;
                    over -= 1;
                    continue;
                }
            }
            if full > 0 && on_roll >= 1 {
                self.quota_drafts[q].value = on_roll;
                full -= 1;
            }
        }
        let drafts = std::mem::take(&mut self.quota_drafts);
        for draft in &drafts {
            let slot = self.slot(draft.inst, draft.category);
            self.quota[slot] = Some(draft.value);
            let jur = self.inst(draft.inst).jur;
            let uscc = self.inst(draft.inst).uscc.clone();
            if let Some((from, value)) = draft.previous {
                let document = self.docs.next(self.world, jur, STAFFING, from.year());
                self.push_quota(
                    &uscc,
                    draft.category,
                    value,
                    from,
                    Some(draft.from),
                    document,
                );
            }
            let document = self.docs.next(self.world, jur, STAFFING, draft.from.year());
            self.push_quota(
                &uscc,
                draft.category,
                draft.value,
                draft.from,
                None,
                document,
            );
        }
        self.quota_drafts = drafts;
        // OVER_QUOTA and QUOTA_FULL on as_of, for every unit anyone is on the roll of.
        for i in 0..self.world.insts.len() as u32 {
            if !self.inst(i).staffed {
                continue;
            }
            for category in CATEGORIES {
                let on_roll = self.count_at(i, category, 0);
                let approved = self.quota[self.slot(i, category)].unwrap_or(0);
                if on_roll > approved {
                    self.find(RuleCode::OverQuota, i, category.code(), "");
                }
                if (approved > 0 && on_roll >= approved) || (approved == 0 && on_roll > 0) {
                    self.find(RuleCode::QuotaFull, i, category.code(), "");
                }
            }
        }
    }

    fn push_quota(
        &mut self,
        uscc: &str,
        category: QuotaCategory,
        value: u32,
        from: NaiveDate,
        to: Option<NaiveDate>,
        approval_document: String,
    ) {
        let record_id = format!("quota-{:06}", self.data.quotas.len() + 1);
        self.data.quotas.push(proto::Quota {
            record_id,
            institution_uscc: uscc.to_owned(),
            category: category.to_wire(),
            approved_count: value,
            effective_from: text(from),
            effective_to: to.map(text).unwrap_or_default(),
            approval_document,
        });
    }

    /// Leader posts and appointments, with the planted post cuts (OVER_LEADER_POSTS) and heads
    /// ranked above their institution's grade (LEADER_ABOVE_GRADE).
    fn leaders(&mut self) {
        let as_of = self.world.as_of;
        let window_start = self.world.window_start;
        let current =
            |from: NaiveDate, to: Option<NaiveDate>| from <= as_of && to.is_none_or(|t| t > as_of);
        // Heads above grade.
        let mut heads: Vec<usize> = (0..self.world.leaders.len())
            .filter(|&l| {
                let draft = &self.world.leaders[l];
                let grade = self.inst(draft.inst).grade();
                current(draft.from, draft.to)
                    && rank_code(draft.rank) == ceiling_code(grade)
                    && rank_above(draft.rank).is_some()
                    && self.inst(draft.inst).clean()
            })
            .collect();
        let head_count = heads.len();
        self.rng.shuffle(&mut heads);
        let above =
            planned(plant::RATE_LEADER_ABOVE_GRADE, head_count, self.config).min(head_count);
        for &l in &heads[..above] {
            let draft = &mut self.world.leaders[l];
            let higher = rank_above(draft.rank).expect("filtered on a higher rank");
            draft.rank = higher;
            self.world.persons[draft.person as usize].leader_rank = Some(higher);
        }
        // Post approvals, some cut below the leaders in office.
        let mut filled: Vec<usize> = (0..self.world.slots.len())
            .filter(|&s| {
                self.world.slots[s].filled >= 1 && self.inst(self.world.slots[s].inst).clean()
            })
            .collect();
        let filled_count = filled.len();
        self.rng.shuffle(&mut filled);
        let cuts =
            planned(plant::RATE_OVER_LEADER_POSTS, filled_count, self.config).min(filled_count);
        let cut: BTreeSet<usize> = filled[..cuts].iter().copied().collect();
        let reform = date(2019, 6, 1).min(add_years(window_start, -1));
        let mut posts_in_force: HashMap<(u32, LeaderLevel, LeaderPosition), u32> = HashMap::new();
        for s in 0..self.world.slots.len() {
            let slot = self.world.slots[s].clone();
            let inst = self.inst(slot.inst).clone();
            let from =
                add_days(reform, self.rng.between(0, 200)).max(add_days(inst.established, 30));
            let mut in_force = slot.posts;
            let mut until = None;
            if cut.contains(&s) {
                let lo = add_days(from, 30).max(add_days(window_start, -540));
                let since = self.rng.date(lo, add_days(window_start, -1).max(lo));
                until = Some(since);
                in_force = slot.filled - 1;
            }
            let document = self.docs.next(self.world, inst.jur, STAFFING, from.year());
            self.push_post(
                &inst.uscc,
                slot.level,
                slot.position,
                slot.posts,
                from,
                until,
                document,
            );
            if let Some(since) = until {
                let document = self.docs.next(self.world, inst.jur, STAFFING, since.year());
                self.push_post(
                    &inst.uscc,
                    slot.level,
                    slot.position,
                    in_force,
                    since,
                    None,
                    document,
                );
            }
            posts_in_force.insert((slot.inst, slot.level, slot.position), in_force);
        }
        // Appointments in date order, so that each person's history is pushed in order.
        let mut appointments: Vec<(NaiveDate, u32, u32, proto::Appointment)> = Vec::new();
        let mut in_office: HashMap<(u32, LeaderLevel, LeaderPosition), u32> = HashMap::new();
        for l in 0..self.world.leaders.len() {
            let draft = self.world.leaders[l].clone();
            let person = &self.world.persons[draft.person as usize];
            let (rid, name) = (person.resident_id(), person.name());
            let inst = self.inst(draft.inst).clone();
            let mut make =
                |emitter: &mut Self, action: AppointmentAction, on: NaiveDate, seq: u32| {
                    let document =
                        emitter
                            .docs
                            .next(emitter.world, inst.jur, APPOINTMENT, on.year());
                    appointments.push((
                        on,
                        draft.person,
                        seq,
                        proto::Appointment {
                            record_id: String::new(),
                            action: action.to_wire(),
                            resident_id: rid.clone(),
                            name: name.clone(),
                            institution_uscc: inst.uscc.clone(),
                            level: draft.level.to_wire(),
                            position: draft.position.to_wire(),
                            rank: draft.rank.to_wire(),
                            effective_on: text(on),
                            appointment_document: document,
                        },
                    ));
                };
            make(self, AppointmentAction::Appoint, draft.from, 0);
            if let Some(to) = draft.to {
                make(self, AppointmentAction::Remove, to, 1);
            }
            if current(draft.from, draft.to) {
                *in_office
                    .entry((draft.inst, draft.level, draft.position))
                    .or_insert(0) += 1;
                if rank_code(draft.rank) < ceiling_code(inst.grade()) {
                    self.find(RuleCode::LeaderAboveGrade, draft.inst, &rid, "");
                }
            }
        }
        appointments.sort_by_key(|(on, person, seq, _)| (*on, *person, *seq));
        for (n, (_, _, _, mut appointment)) in appointments.into_iter().enumerate() {
            appointment.record_id = format!("appt-{:06}", n + 1);
            self.data.appointments.push(appointment);
        }
        let mut over: Vec<(u32, LeaderLevel, LeaderPosition)> = in_office
            .iter()
            .filter(|(key, leaders)| **leaders > posts_in_force.get(key).copied().unwrap_or(0))
            .map(|(key, _)| *key)
            .collect();
        over.sort();
        for (inst, level, position) in over {
            self.find(
                RuleCode::OverLeaderPosts,
                inst,
                &post_subject(level, position),
                "",
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_post(
        &mut self,
        uscc: &str,
        level: LeaderLevel,
        position: LeaderPosition,
        approved: u32,
        from: NaiveDate,
        to: Option<NaiveDate>,
        approval_document: String,
    ) {
        let record_id = format!("post-{:06}", self.data.leader_posts.len() + 1);
        self.data.leader_posts.push(proto::LeaderPost {
            record_id,
            institution_uscc: uscc.to_owned(),
            level: level.to_wire(),
            position: position.to_wire(),
            approved_count: approved,
            effective_from: text(from),
            effective_to: to.map(text).unwrap_or_default(),
            approval_document,
        });
    }

    /// Personnel events, hiring approvals and staffing plans, from every person's career.
    fn people(&mut self) {
        let mut approvals = Approvals::default();
        let mut plan_counts: BTreeMap<(u32, usize, i32, usize), u32> = BTreeMap::new();
        let mut events: Vec<(NaiveDate, u32, u32, proto::PersonnelEvent)> = Vec::new();
        for p in 0..self.world.persons.len() as u32 {
            let person = self.world.persons[p as usize].clone();
            let rid = person.resident_id();
            let name = person.name();
            let mut seq = 0u32;
            let mut push = |events: &mut Vec<_>, on: NaiveDate, event: proto::PersonnelEvent| {
                events.push((on, p, seq, event));
                seq += 1;
            };
            for (s, stint) in person.stints.iter().enumerate() {
                let inst = self.inst(stint.inst).clone();
                let year = stint.from.year();
                let citation = if !inst.registered || s == 0 {
                    person.citation
                } else {
                    Citation::Approval
                };
                let cited = match citation {
                    Citation::Approval => {
                        let a = approvals.get(
                            &mut self.docs,
                            self.world,
                            stint.inst,
                            stint.category,
                            year,
                        );
                        approvals.drafts[a].use_on(stint.from, p);
                        styled(
                            &approvals.drafts[a].number,
                            mix(u64::from(p) ^ u64::from(year as u32)),
                        )
                    }
                    Citation::HrLetter => self.docs.next(self.world, inst.jur, HR_LETTER, year),
                    Citation::Missing => String::new(),
                    Citation::Expired => {
                        // Last year's approval, which ran out on 31 December.
                        let a = approvals.get(
                            &mut self.docs,
                            self.world,
                            stint.inst,
                            stint.category,
                            year - 1,
                        );
                        approvals.drafts[a].number.clone()
                    }
                };
                if citation != Citation::Approval {
                    self.find(
                        RuleCode::HireWithoutApproval,
                        stint.inst,
                        &rid,
                        &text(stint.from),
                    );
                }
                *plan_counts
                    .entry((
                        stint.inst,
                        cat_index(stint.category),
                        year,
                        channel_index(stint.channel),
                    ))
                    .or_insert(0) += 1;
                let (institution, target) = if stint.transfer_in {
                    let from = self.inst(person.stints[s - 1].inst).uscc.clone();
                    (from, inst.uscc.clone())
                } else {
                    (inst.uscc.clone(), String::new())
                };
                push(
                    &mut events,
                    stint.from,
                    proto::PersonnelEvent {
                        record_id: String::new(),
                        event_type: if stint.transfer_in {
                            PersonnelEventType::Transfer
                        } else {
                            PersonnelEventType::Hire
                        }
                        .to_wire(),
                        resident_id: rid.clone(),
                        name: name.clone(),
                        institution_uscc: institution,
                        category: stint.category.to_wire(),
                        rank: person.rank.to_wire(),
                        effective_on: text(stint.from),
                        approval_number: cited,
                        channel: stint.channel.to_wire(),
                        target_institution_uscc: target,
                        corrects_record_id: String::new(),
                    },
                );
                if let Some(episode) = person.episode.as_ref().filter(|e| e.stint == s) {
                    let (kind, host) = match episode.host {
                        Some(host) => {
                            (PersonnelEventType::Secondment, self.inst(host).uscc.clone())
                        }
                        None => (PersonnelEventType::Leave, String::new()),
                    };
                    push(
                        &mut events,
                        episode.from,
                        status_event(kind, &rid, &name, &inst.uscc, episode.from, host),
                    );
                    if let Some(back) = episode.to {
                        push(
                            &mut events,
                            back,
                            status_event(
                                PersonnelEventType::Return,
                                &rid,
                                &name,
                                &inst.uscc,
                                back,
                                String::new(),
                            ),
                        );
                    }
                }
            }
            if let (Some(kind), Some(exit)) = (person.exit, person.exit_date()) {
                let last = self
                    .inst(person.stints.last().expect("a leaver has a stint").inst)
                    .uscc
                    .clone();
                let kind = match kind {
                    ExitKind::Retirement => PersonnelEventType::Retirement,
                    ExitKind::Departure => PersonnelEventType::Departure,
                    ExitKind::Death => PersonnelEventType::Death,
                };
                push(
                    &mut events,
                    exit,
                    status_event(kind, &rid, &name, &last, exit, String::new()),
                );
            }
        }
        // Promotions that come with an appointment (the appointment carries the post's rank).
        for draft in self.world.leaders.clone() {
            let person = &self.world.persons[draft.person as usize];
            let mut event = status_event(
                PersonnelEventType::Change,
                &person.resident_id(),
                &person.name(),
                &self.inst(draft.inst).uscc,
                draft.from,
                String::new(),
            );
            event.rank = draft.rank.to_wire();
            events.push((draft.from, draft.person, 1_000, event));
        }

        events.sort_by_key(|(on, p, seq, _)| (*on, *p, *seq));
        for (n, (_, p, _, mut event)) in events.into_iter().enumerate() {
            event.record_id = format!("ev-{:07}", n + 1);
            self.data.events.push(event);
            self.event_people.push(p);
        }

        // Approvals, a few used once more than they allow.
        let approvals = approvals.drafts;
        let this_year = self.world.as_of.year();
        let mut recent: Vec<usize> = (0..approvals.len())
            .filter(|&a| approvals[a].covered > 0 && approvals[a].year >= this_year - 3)
            .collect();
        let recent_count = recent.len();
        recent.retain(|&a| {
            approvals[a].covered >= 2
                && approvals[a].latest_unique
                && self.inst(approvals[a].inst).clean()
        });
        self.rng.shuffle(&mut recent);
        let exhausted_count =
            planned(plant::RATE_EXHAUSTED_APPROVAL, recent_count, self.config).min(recent.len());
        let exhausted: BTreeSet<usize> = recent[..exhausted_count].iter().copied().collect();
        for (a, draft) in approvals.iter().enumerate() {
            if draft.covered == 0 {
                continue;
            }
            let approved = if exhausted.contains(&a) {
                let (on, p) = draft.latest.expect("a used approval has a latest use");
                let rid = self.world.persons[p as usize].resident_id();
                self.find(RuleCode::HireWithoutApproval, draft.inst, &rid, &text(on));
                draft.covered - 1
            } else if self.rng.chance(0.1) {
                draft.covered + 1 + self.rng.below(2) as u32
            } else {
                draft.covered
            };
            let issued = date(draft.year, 1, 2 + (mix(a as u64) % 12) as u32);
            self.data.approvals.push(proto::HiringApproval {
                record_id: format!("appr-{:06}", self.data.approvals.len() + 1),
                approval_number: draft.number.clone(),
                institution_uscc: self.inst(draft.inst).uscc.clone(),
                category: draft.category.to_wire(),
                approved_entries: approved,
                issued_on: text(issued),
                valid_until: text(date(draft.year, 12, 31)),
            });
        }

        self.plans(&plan_counts);
    }

    /// Staffing plans: each year's entries per channel with some margin (留余地), except the
    /// planted shortfalls in the check year: OVER_PLAN (one channel planned one short), and
    /// RESERVE_SHORTFALL (two places kept for policy placement while another channel took one
    /// more than its plan; the year's total is not exceeded).
    fn plans(&mut self, plan_counts: &BTreeMap<(u32, usize, i32, usize), u32>) {
        let this_year = self.world.as_of.year();
        let mut groups: BTreeMap<(u32, usize, i32), Vec<(usize, u32)>> = BTreeMap::new();
        for (&(inst, category, year, channel), &count) in plan_counts {
            groups
                .entry((inst, category, year))
                .or_default()
                .push((channel, count));
        }
        // Plans of the check year for hires still to come.
        for i in 0..self.world.insts.len() as u32 {
            let inst = &self.world.insts[i as usize];
            if inst.clean() && self.rng.chance(0.2) {
                let key = (i, cat_index(inst.main_category()), this_year);
                groups
                    .entry(key)
                    .or_insert_with(|| vec![(channel_index(HiringChannel::OpenRecruitment), 0)]);
            }
        }
        let mut candidates: Vec<(u32, usize, i32)> = groups
            .iter()
            .filter(|((inst, _, year), entries)| {
                *year == this_year
                    && entries.iter().any(|(_, n)| *n > 0)
                    && self.inst(*inst).clean()
            })
            .map(|(key, _)| *key)
            .collect();
        let base = candidates.len();
        self.rng.shuffle(&mut candidates);
        let short = planned(plant::RATE_OVER_PLAN, base, self.config).min(base);
        let (over, rest) = candidates.split_at(short);
        let short: BTreeSet<(u32, usize, i32)> = over.iter().copied().collect();
        // The reserve's shortfalls, in years where another channel than policy placement entered.
        let placement = channel_index(HiringChannel::PolicyPlacement);
        let others_entered: Vec<(u32, usize, i32)> = rest
            .iter()
            .copied()
            .filter(|key| groups[key].iter().any(|&(c, n)| c != placement && n > 0))
            .collect();
        let eaten =
            planned(plant::RATE_RESERVE_SHORTFALL, base, self.config).min(others_entered.len());
        let eaten: BTreeSet<(u32, usize, i32)> = others_entered[..eaten].iter().copied().collect();
        let mut documents: HashMap<(usize, i32), String> = HashMap::new();
        for (key, mut channels) in groups {
            let (inst, category, year) = key;
            let entries: u32 = channels.iter().map(|(_, n)| n).sum();
            let placed: u32 = channels
                .iter()
                .filter(|(c, _)| *c == placement)
                .map(|(_, n)| n)
                .sum();
            let reserve_short = eaten.contains(&key);
            if reserve_short && channels.iter().all(|(c, _)| *c != placement) {
                channels.push((placement, 0));
            }
            let mut planned_total = 0;
            // What the written plans keep for policy placement, and give the other channels.
            let (mut kept, mut others_plan) = (0, 0);
            if self.inst(inst).registered {
                let jur = self.inst(inst).jur;
                let shortfall = short.contains(&key);
                let mut cut_done = false;
                for (channel, count) in channels {
                    let approved = if shortfall {
                        if !cut_done && count > 0 {
                            cut_done = true;
                            count - 1
                        } else {
                            count
                        }
                    } else if reserve_short {
                        if channel == placement {
                            count + 2
                        } else if !cut_done && count > 0 {
                            cut_done = true;
                            count - 1
                        } else {
                            count
                        }
                    } else if count == 0 {
                        1 + self.rng.below(3) as u32
                    } else if self.rng.chance(0.6) {
                        count + 1 + self.rng.below(2) as u32
                    } else {
                        count
                    };
                    if approved == 0 {
                        continue;
                    }
                    planned_total += approved;
                    if channel == placement {
                        kept += approved;
                    } else {
                        others_plan += approved;
                    }
                    let document = match documents.get(&(jur, year)) {
                        Some(document) => document.clone(),
                        None => {
                            let document = self.docs.next(self.world, jur, STAFFING, year);
                            documents.insert((jur, year), document.clone());
                            document
                        }
                    };
                    self.data.plans.push(proto::StaffingPlan {
                        record_id: format!("plan-{:06}", self.data.plans.len() + 1),
                        institution_uscc: self.inst(inst).uscc.clone(),
                        year: year as u32,
                        category: CATEGORIES[category].to_wire(),
                        channel: HiringChannel::ALL[channel].to_wire(),
                        approved_count: approved,
                        approval_document: document,
                    });
                }
            }
            let code = CATEGORIES[category].code();
            if entries > planned_total {
                self.find(RuleCode::OverPlan, inst, code, &year.to_string());
            }
            if kept > placed && entries - placed > others_plan {
                self.find(RuleCode::ReserveShortfall, inst, code, &year.to_string());
            }
        }
    }

    /// Who pays person `p` in period `k`: the institutions whose roll they are on during it, and
    /// their payers (the roll's, or the one a plant gave them, and the planted extra ones).
    fn payers(&self, p: usize, k: usize, period: Period) -> (Vec<u32>, Vec<u32>) {
        let person = &self.world.persons[p];
        let active: Vec<u32> = person
            .stints
            .iter()
            .filter(|s| s.overlaps(period))
            .map(|s| s.inst)
            .collect();
        let mut payers: Vec<u32> = Vec::new();
        if !active.is_empty() {
            let own = person
                .stints
                .iter()
                .filter(|s| s.overlaps(period))
                .min_by_key(|s| s.from)
                .map(|s| s.inst)
                .expect("active somewhere");
            payers.push(person.pay.payer.unwrap_or(own));
        }
        for &(when, payer) in &person.pay.extra {
            if when == k && !payers.contains(&payer) {
                payers.push(payer);
            }
        }
        (active, payers)
    }

    /// Monthly pay: each person by the roll they are on (or the payer a plant gave them), plus the
    /// planted extra lines, less the files that never arrive (each payer's division's finance
    /// agency sends a month's file, `deliver.rs`); and the pay findings per person and period.
    /// Returns when each file arrives.
    fn payroll(&mut self) -> PayrollPlan {
        let periods = self.world.periods.clone();
        let mut paying: BTreeSet<(usize, usize)> = BTreeSet::new();
        for (k, &period) in periods.iter().enumerate() {
            for p in 0..self.world.persons.len() {
                for payer in self.payers(p, k, period).1 {
                    paying.insert((self.inst(payer).jur, k));
                }
            }
        }
        let plan = deliver::plan_payroll(self.world, self.config, &paying);
        for (k, &period) in periods.iter().enumerate() {
            let label = period.to_string();
            let mut seq = 0usize;
            for p in 0..self.world.persons.len() {
                let (active, mut payers) = self.payers(p, k, period);
                payers.retain(|&payer| plan.arrives(self.inst(payer).jur, k).is_some());
                if payers.is_empty() {
                    continue;
                }
                let person = &self.world.persons[p];
                let rid = person.resident_id();
                let name = person.name();
                let gross = gross_fen(person, period);
                let mut found: Vec<(RuleCode, u32)> = Vec::new();
                if active.is_empty() {
                    let after_exit = person.exit_date().is_some_and(|d| d <= period.first_day());
                    let code = if after_exit {
                        RuleCode::PaidAfterExit
                    } else {
                        RuleCode::PaidNotOnRoll
                    };
                    found.extend(payers.iter().map(|&payer| (code, payer)));
                } else {
                    for &payer in &payers {
                        let seconded = person
                            .episode
                            .as_ref()
                            .is_some_and(|e| e.seconded_to_during(payer, period));
                        if !active.contains(&payer) && !seconded {
                            found.push((RuleCode::PayUnitMismatch, payer));
                        }
                    }
                }
                if payers.len() >= 2 {
                    let smallest = *payers
                        .iter()
                        .min_by_key(|&&payer| &self.world.insts[payer as usize].uscc)
                        .expect("two payers");
                    found.push((RuleCode::DoublePay, smallest));
                }
                for &payer in &payers {
                    seq += 1;
                    self.data.payroll.push(proto::PayrollLine {
                        record_id: format!("pay-{label}-{seq:07}"),
                        period: label.clone(),
                        institution_uscc: self.world.insts[payer as usize].uscc.clone(),
                        resident_id: rid.clone(),
                        name: name.clone(),
                        gross_fen: gross,
                        reverses_record_id: String::new(),
                        person_token: String::new(),
                    });
                    if self.inst(payer).unregistered_on(period.first_day()) {
                        found.push((RuleCode::UnregisteredInstitution, payer));
                    }
                }
                for (code, inst) in found {
                    if code == RuleCode::UnregisteredInstitution {
                        self.find(code, inst, "", &label);
                    } else {
                        self.find(code, inst, &rid, &label);
                    }
                }
            }
        }
        plan
    }

    /// Funding: the funded headcount is min(quota, roll) on the period's last day, none for
    /// self-funded units, except the planted over-funding and budget money to self-funded units.
    fn fundings(&mut self) {
        let periods = self.world.periods.clone();
        struct Draft {
            inst: u32,
            category: QuotaCategory,
            period: usize,
            funded: u32,
            allowed: u32,
        }
        let mut drafts: Vec<Draft> = Vec::new();
        for k in 0..periods.len() {
            for q in 0..self.quota_drafts.len() {
                let (inst, category) = (self.quota_drafts[q].inst, self.quota_drafts[q].category);
                let on_roll = self.count_at(inst, category, k + 1);
                let allowed = on_roll.min(self.quota[self.slot(inst, category)].unwrap_or(0));
                let self_funded = self.inst(inst).funding == Some(FundingForm::SelfFunded);
                let fund = if self_funded {
                    self.inst(inst).budget_funded
                } else {
                    allowed > 0
                };
                if fund {
                    drafts.push(Draft {
                        inst,
                        category,
                        period: k,
                        funded: allowed,
                        allowed,
                    });
                }
            }
        }
        let mut candidates: Vec<usize> = (0..drafts.len())
            .filter(|&d| {
                let inst = self.inst(drafts[d].inst);
                inst.clean() && inst.funding != Some(FundingForm::SelfFunded)
            })
            .collect();
        self.rng.shuffle(&mut candidates);
        let over =
            planned(plant::RATE_FUNDED_OVER_QUOTA, drafts.len(), self.config).min(candidates.len());
        for &d in &candidates[..over] {
            drafts[d].funded += 1 + self.rng.below(2) as u32;
        }
        let mut seq = vec![0usize; periods.len()];
        for draft in drafts {
            let period = periods[draft.period];
            let label = period.to_string();
            seq[draft.period] += 1;
            let inst = self.inst(draft.inst).clone();
            // A month's cost per head: pay plus employer contributions.
            let amount = i64::from(draft.funded.max(1)) * 1_020_000;
            self.data.fundings.push(proto::Funding {
                record_id: format!("fund-{label}-{:06}", seq[draft.period]),
                institution_uscc: inst.uscc.clone(),
                category: draft.category.to_wire(),
                period: label.clone(),
                funded_headcount: draft.funded,
                amount_fen: amount,
            });
            let code = draft.category.code();
            if draft.funded > draft.allowed {
                self.find(RuleCode::FundedOverQuota, draft.inst, code, &label);
            }
            if inst.funding == Some(FundingForm::SelfFunded) {
                self.find(RuleCode::SelfFundedBudgetPay, draft.inst, code, &label);
            }
            if inst.unregistered_on(period.first_day()) {
                self.find(RuleCode::UnregisteredInstitution, draft.inst, "", &label);
            }
        }
    }

    /// Findings about the roll on as_of: one person on two rolls, mixed categories, people on the
    /// roll of a unit the registry lacks.
    fn roll(&mut self) {
        let as_of = self.world.as_of;
        for p in 0..self.world.persons.len() {
            let person = &self.world.persons[p];
            let on: Vec<(u32, QuotaCategory)> = person
                .stints
                .iter()
                .filter(|s| s.covers(as_of))
                .map(|s| (s.inst, s.category))
                .collect();
            if on.is_empty() {
                continue;
            }
            let rid = person.resident_id();
            if on.len() >= 2 {
                let smallest = on
                    .iter()
                    .map(|(i, _)| *i)
                    .min_by_key(|&i| &self.world.insts[i as usize].uscc)
                    .expect("two rolls");
                self.find(RuleCode::DuplicateEnrollment, smallest, &rid, "");
            }
            for (inst, category) in on {
                if self.inst(inst).registered && self.inst(inst).is_mixed(category) {
                    self.find(RuleCode::MixedCategory, inst, &rid, "");
                }
                if self.inst(inst).unregistered_on(as_of) {
                    self.find(RuleCode::UnregisteredInstitution, inst, "", "");
                }
            }
        }
    }

    /// The registry: every registered institution, parents first; abolished and merged ones once
    /// more at the end with their new status, as the staffing office would push the change.
    fn institutions(&mut self) {
        let mut changes: Vec<u32> = Vec::new();
        for i in 0..self.world.insts.len() as u32 {
            let inst = self.inst(i).clone();
            if !inst.registered {
                continue;
            }
            let year = inst.established.year().max(2019);
            let document = self.docs.next(self.world, inst.jur, STAFFING, year);
            let record = self.institution_record(&inst, InstitutionStatus::Active, None, document);
            self.data.institutions.push(record);
            if inst.status != InstitutionStatus::Active {
                changes.push(i);
            }
        }
        for i in changes {
            let inst = self.inst(i).clone();
            let since = inst.status_since.expect("a closed institution has a date");
            let document = self.docs.next(self.world, inst.jur, STAFFING, since.year());
            let record = self.institution_record(&inst, inst.status, Some(since), document);
            self.data.institutions.push(record);
        }
    }

    fn institution_record(
        &self,
        inst: &Inst,
        status: InstitutionStatus,
        since: Option<NaiveDate>,
        approval_document: String,
    ) -> proto::Institution {
        proto::Institution {
            record_id: format!("inst-{:06}", self.data.institutions.len() + 1),
            uscc: inst.uscc.clone(),
            name: inst.name.clone(),
            jurisdiction: self.world.jurs[inst.jur].code.clone(),
            parent_uscc: inst
                .parent
                .map(|p| self.inst(p).uscc.clone())
                .unwrap_or_default(),
            kind: inst.kind.to_wire(),
            grade: GRADES[inst.grade_index].to_wire(),
            funding_form: inst.funding.map(Wire::to_wire).unwrap_or_default(),
            status: status.to_wire(),
            approval_document,
            established_on: text(inst.established),
            status_since: since.map(text).unwrap_or_default(),
            political_legal: inst.political_legal,
        }
    }
}

fn status_event(
    kind: PersonnelEventType,
    rid: &str,
    name: &str,
    uscc: &str,
    on: NaiveDate,
    target: String,
) -> proto::PersonnelEvent {
    proto::PersonnelEvent {
        record_id: String::new(),
        event_type: kind.to_wire(),
        resident_id: rid.to_owned(),
        name: name.to_owned(),
        institution_uscc: uscc.to_owned(),
        category: 0,
        rank: 0,
        effective_on: text(on),
        approval_number: String::new(),
        channel: 0,
        target_institution_uscc: target,
        corrects_record_id: String::new(),
    }
}

/// Approval numbers as people type them: mostly `〔〕`, sometimes `[]` or full-width `（）`, which
/// the hub normalises.
fn styled(number: &str, bits: u64) -> String {
    match bits % 20 {
        0 | 1 => number.replace('〔', "[").replace('〕', "]"),
        2 => number.replace('〔', "（").replace('〕', "）"),
        _ => number.to_owned(),
    }
}

/// Gross monthly pay in fen: by rank, a personal factor, a little monthly variation.
fn gross_fen(person: &Person, period: Period) -> i64 {
    let rank = person.leader_rank.unwrap_or(person.rank);
    let base: i64 = match rank {
        Rank::BureauPrincipal => 1_600_000,
        Rank::BureauDeputy => 1_350_000,
        Rank::DivisionPrincipal => 1_150_000,
        Rank::DivisionDeputy => 1_000_000,
        Rank::SectionPrincipal => 880_000,
        Rank::SectionDeputy => 800_000,
        Rank::Clerk => 700_000,
        Rank::Officer => 600_000,
        Rank::Unranked => 650_000,
    };
    let personal = 85 + (mix(person.rid) % 41) as i64;
    let monthly = 97 + (mix(person.rid ^ u64::from(period.first_day().month())) % 7) as i64;
    base * personal / 100 * monthly / 100
}
