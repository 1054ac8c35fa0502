//! Planted problems that change the world before it is written: abolished units still staffed,
//! self-funded units that get budget money, and the person-level problems (mixed categories,
//! entries without approval, one person on two rolls, pay that does not match the roll). The
//! problems that only change a record (a quota, a post count, a plan, an approval's count, a
//! funding record) are planted by [`super::emit`] as it writes them.
//!
//! Each plant takes its own targets (`claimed` institutions, people no longer `plain`), so plants do
//! not pile up on one another; whatever they still cause together is found by the evaluation in
//! [`super::emit`], not assumed.

use chrono::Datelike;

use super::GenConfig;
use super::model::{Citation, Episode, Stint, World, add_days, add_years, date};
use super::rng::Rng;
use crate::domain::{FundingForm, InstitutionKind, InstitutionStatus, QuotaCategory, Rank};

/// Ghost pay (吃空饷): share of payroll lines paid to someone on no roll (docs/DOMAIN.md: 0.5–1.5%).
pub(super) const RATE_GHOST_LINES: f64 = 0.01;
/// Share of the ghost lines that pay a new hire for a month before they started.
pub(super) const PRE_ENTRY_SHARE: f64 = 0.1;
/// Share of the people who left in the last three years whom a payroll still pays.
pub(super) const RATE_PAID_AFTER_EXIT: f64 = 0.02;
/// Share of people paid by a second institution (half of them while seconded to it).
pub(super) const RATE_DOUBLE_PAY: f64 = 0.0003;
/// Share of people paid by another institution than their roll's (人编分离).
pub(super) const RATE_PAY_UNIT_MISMATCH: f64 = 0.0005;
/// Share of people on two rolls at once (一人多编).
pub(super) const RATE_DUPLICATE: f64 = 0.0002;
/// Share of people whose entry cites no valid approval (an HR letter, nothing, an expired one).
pub(super) const RATE_NO_APPROVAL: f64 = 0.001;
/// Share of the last three years' approvals that were used once more than they allow.
pub(super) const RATE_EXHAUSTED_APPROVAL: f64 = 0.005;
/// Share of people in a category their institution may not use (混编混岗).
pub(super) const RATE_MIXED: f64 = 0.0003;
/// Share of quotas cut below the people on them (超编).
pub(super) const RATE_OVER_QUOTA: f64 = 0.015;
/// Share of quotas exactly full (满编).
pub(super) const RATE_QUOTA_FULL: f64 = 0.03;
/// Share of filled leader-post approvals cut below the leaders in them (超职数).
pub(super) const RATE_OVER_LEADER_POSTS: f64 = 0.01;
/// Share of institution heads ranked above the institution's grade (超规格).
pub(super) const RATE_LEADER_ABOVE_GRADE: f64 = 0.005;
/// Share of the check year's (institution, category) plans exceeded (超用编计划).
pub(super) const RATE_OVER_PLAN: f64 = 0.03;
/// Share of the check year's (institution, category) plans whose policy-placement reserve other
/// channels ate into (挤占安置预留).
pub(super) const RATE_RESERVE_SHORTFALL: f64 = 0.02;
/// Share of funding records funding more heads than quota and roll allow (超编拨款).
pub(super) const RATE_FUNDED_OVER_QUOTA: f64 = 0.003;
/// Share of self-funded institutions that get budget money anyway.
pub(super) const RATE_SELF_FUNDED_BUDGET: f64 = 0.05;
/// Share of staffed institutions abolished or merged while people remain on their roll.
pub(super) const RATE_ABOLISHED_STAFFED: f64 = 0.002;
/// Share of institutions that are 私设机构 (not in the registry at all).
pub(super) const RATE_UNKNOWN_UNIT: f64 = 0.001;
/// Share of the finance agencies' monthly payroll files due by the check date that arrive after
/// their due day (迟报), though before the check date: LATE_PAYROLL raised on the due day and
/// resolved on arrival, none open on the check date. See `deliver.rs`.
pub(super) const RATE_LATE_PAYROLL: f64 = 0.05;
/// Share of the finance agencies whose file of the last month due has not arrived by the check
/// date (漏报): LATE_PAYROLL open on it.
pub(super) const RATE_MISSING_PAYROLL: f64 = 0.02;
/// Share of the personnel events that take effect after the agencies' initial load, early enough
/// to be late by the check date, that their HR agency pushes more than `event_due_days` after
/// (补录滞后), within the window: BACKDATED_EVENT open on the check date.
pub(super) const RATE_BACKDATED_EVENT: f64 = 0.03;
/// Share of people seconded and paid by their host only: clean, but close to PAY_UNIT_MISMATCH.
pub(super) const RATE_DECOY: f64 = 0.0001;

/// How many of a plant: the rate of the base, scaled, and at least `min_each`.
pub(super) fn planned(rate: f64, base: usize, config: &GenConfig) -> usize {
    let expected = (rate * base as f64 * config.anomaly_scale).round() as usize;
    expected.max(config.min_each)
}

/// Adds the units the registry does not know (UNKNOWN_UNIT), before the world is staffed: people
/// are on their rolls and payrolls like anyone else's.
pub(super) fn unknown_units(world: &mut World, config: &GenConfig, rng: &mut Rng) {
    for _ in 0..planned(RATE_UNKNOWN_UNIT, world.insts.len(), config) {
        world.add_unknown_unit(rng);
    }
}

/// Plants the problems that change the world.
pub(super) fn plant(world: &mut World, config: &GenConfig) {
    let mut rng = Rng::derive(config.seed, &[4]);
    institutions(world, config, &mut rng);
    people(world, config, &mut rng);
}

fn institutions(world: &mut World, config: &GenConfig, rng: &mut Rng) {
    let staffed = world
        .insts
        .iter()
        .filter(|i| i.staffed && i.registered)
        .count();
    let mut candidates: Vec<usize> = (0..world.insts.len())
        .filter(|&i| world.insts[i].clean() && !world.insts[i].has_children)
        .collect();
    rng.shuffle(&mut candidates);
    let abolished = planned(RATE_ABOLISHED_STAFFED, staffed, config).min(candidates.len());
    for &i in &candidates[..abolished] {
        let as_of = world.as_of;
        let inst = &mut world.insts[i];
        inst.status = if rng.chance(0.6) {
            InstitutionStatus::Abolished
        } else {
            InstitutionStatus::Merged
        };
        // Some are abolished within the pay periods, so that only the later periods count.
        let since = rng
            .date(add_days(as_of, -400), as_of)
            .max(add_days(inst.established, 1));
        inst.status_since = Some(since);
        inst.claimed = true;
    }
    let mut self_funded: Vec<usize> = (0..world.insts.len())
        .filter(|&i| {
            world.insts[i].clean() && world.insts[i].funding == Some(FundingForm::SelfFunded)
        })
        .collect();
    rng.shuffle(&mut self_funded);
    let budget = planned(RATE_SELF_FUNDED_BUDGET, self_funded.len(), config).min(self_funded.len());
    for &i in &self_funded[..budget] {
        world.insts[i].budget_funded = true;
        world.insts[i].claimed = true;
    }
}

/// Institutions pay, host or take people for person-level plants.
fn clean_institutions(world: &World) -> Vec<u32> {
    (0..world.insts.len() as u32)
        .filter(|&i| world.insts[i as usize].clean())
        .collect()
}

/// Another clean institution than `not`.
fn other(rng: &mut Rng, pool: &[u32], not: u32) -> Option<u32> {
    for _ in 0..8 {
        let pick = *rng.pick(pool);
        if pick != not {
            return Some(pick);
        }
    }
    None
}

fn people(world: &mut World, config: &GenConfig, rng: &mut Rng) {
    let payers = clean_institutions(world);
    if payers.len() < 2 {
        return;
    }
    let population = world.persons.len();
    let window_start = world.window_start;
    let as_of = world.as_of;
    let periods = world.periods.clone();
    // People on one roll since before the pay periods, at a clean institution, nothing else on.
    let mut pool: Vec<u32> = (0..population as u32)
        .filter(|&p| {
            let person = &world.persons[p as usize];
            person.plain
                && person.exit.is_none()
                && person.stints.len() == 1
                && person.stints[0].from < window_start
                && world.insts[person.stints[0].inst as usize].clean()
        })
        .collect();
    rng.shuffle(&mut pool);

    for _ in 0..planned(RATE_MIXED, population, config) {
        let Some(p) = pool.pop() else { break };
        let person = &mut world.persons[p as usize];
        let inst = &world.insts[person.stints[0].inst as usize];
        person.stints[0].category = match inst.kind {
            InstitutionKind::Organ if !inst.political_legal && rng.chance(0.3) => {
                QuotaCategory::PoliticalLegal
            }
            InstitutionKind::Organ => QuotaCategory::PublicInstitution,
            InstitutionKind::PublicInstitution => QuotaCategory::PoliticalLegal,
        };
        person.plain = false;
    }

    for _ in 0..planned(RATE_NO_APPROVAL, population, config) {
        let Some(p) = pool.pop() else { break };
        let from = world.persons[p as usize].stints[0].from;
        let citation = match rng.unit() {
            x if x < 0.4 => Citation::HrLetter,
            x if x < 0.7 => Citation::Missing,
            _ => Citation::Expired,
        };
        let person = &mut world.persons[p as usize];
        person.plain = false;
        person.citation = citation;
        if citation == Citation::Expired {
            // Early in a year, citing last year's approval that ran out on 31 December.
            let year = from.year();
            let moved = rng.date(date(year, 1, 15), date(year, 3, 31));
            let inst = person.stints[0].inst as usize;
            let earliest =
                add_years(person.birth, 21).max(add_days(world.insts[inst].established, 30));
            if year > 1990 && moved >= earliest && moved < window_start && moved < as_of {
                person.stints[0].from = moved;
            } else {
                person.citation = Citation::Missing;
            }
        }
    }

    let wanted = planned(RATE_DUPLICATE, population, config);
    let mut placed = 0;
    while placed < wanted {
        let Some(p) = pool.pop() else { break };
        let a = world.persons[p as usize].stints[0].inst;
        let Some(b) = other(rng, &payers, a) else {
            continue;
        };
        let lo = add_years(world.persons[p as usize].stints[0].from, 1)
            .max(add_days(world.insts[b as usize].established, 30));
        let hi = add_days(as_of, -1);
        if lo > hi {
            continue;
        }
        let hired = world.entry_date(rng.date(lo, hi));
        let channel = world.channel_for(b, rng);
        let category = world.insts[b as usize].main_category();
        let paid_by_both = rng.chance(0.3);
        let person = &mut world.persons[p as usize];
        person.plain = false;
        person.stints.push(Stint {
            inst: b,
            category,
            from: hired,
            to: None,
            channel,
            transfer_in: false,
        });
        if paid_by_both {
            for (k, period) in periods.iter().enumerate() {
                if hired <= period.last_day() {
                    person.pay.extra.push((k, b));
                }
            }
        }
        placed += 1;
    }

    if periods.is_empty() {
        return;
    }
    let k = periods.len();

    let wanted = planned(RATE_PAY_UNIT_MISMATCH, population, config);
    let mut placed = 0;
    while placed < wanted {
        let Some(p) = pool.pop() else { break };
        let a = world.persons[p as usize].stints[0].inst;
        let Some(b) = other(rng, &payers, a) else {
            continue;
        };
        let person = &mut world.persons[p as usize];
        person.plain = false;
        person.pay.payer = Some(b);
        placed += 1;
    }

    let double = planned(RATE_DOUBLE_PAY, population, config);
    let decoys = ((RATE_DECOY * population as f64 * config.anomaly_scale).round() as usize)
        .max(usize::from(config.min_each > 0));
    let mut n = 0;
    while n < double + decoys {
        let Some(p) = pool.pop() else { break };
        let a = world.persons[p as usize].stints[0].inst;
        let Some(b) = other(rng, &payers, a) else {
            continue;
        };
        let from = world.persons[p as usize].stints[0].from;
        let seconded = n >= double || n % 2 == 0;
        let person = &mut world.persons[p as usize];
        if seconded {
            // Seconded to B since before the pay periods, and still.
            let lo = add_days(from, 30);
            let hi = add_days(window_start, -1);
            if lo > hi {
                continue;
            }
            person.episode = Some(Episode {
                stint: 0,
                host: Some(b),
                from: rng.date(lo, hi),
                to: None,
            });
        }
        person.plain = false;
        if n >= double {
            // The decoy: paid by the host alone, which the rules accept during a secondment.
            person.pay.payer = Some(b);
        } else {
            let start = rng.below(k);
            person.pay.extra.extend((start..k).map(|i| (i, b)));
        }
        n += 1;
    }

    let clean_lines: usize = world
        .persons
        .iter()
        .map(|person| {
            periods
                .iter()
                .filter(|&&period| person.stints.iter().any(|s| s.overlaps(period)))
                .count()
        })
        .sum();
    let ghost_lines =
        ((RATE_GHOST_LINES * config.anomaly_scale).min(0.2) * clean_lines as f64).round() as usize;

    // Pay for the month before a new hire started.
    let first_last_day = periods[0].last_day();
    let mut newcomers: Vec<u32> = (0..population as u32)
        .filter(|&p| {
            let person = &world.persons[p as usize];
            person.exit.is_none()
                && person.leader_rank.is_none()
                && person.stints.len() == 1
                && person.stints[0].from > first_last_day
                && person.pay.payer.is_none()
                && person.pay.extra.is_empty()
                && world.insts[person.stints[0].inst as usize].clean()
        })
        .collect();
    rng.shuffle(&mut newcomers);
    let pre_entry = ((ghost_lines as f64 * PRE_ENTRY_SHARE).round() as usize).min(newcomers.len());
    for &p in &newcomers[..pre_entry] {
        let person = &mut world.persons[p as usize];
        let start = person.stints[0].from;
        let first_paid = periods
            .iter()
            .position(|period| period.last_day() >= start)
            .expect("hired within the periods");
        person
            .pay
            .extra
            .push((first_paid - 1, person.stints[0].inst));
        person.plain = false;
    }

    // Pay that goes on after retirement, departure or death.
    let last_first_day = periods[k - 1].first_day();
    let mut leavers: Vec<u32> = (0..population as u32)
        .filter(|&p| {
            let person = &world.persons[p as usize];
            person.exit_date().is_some_and(|d| d <= last_first_day)
                && person.pay.extra.is_empty()
                && world.insts[person.stints[0].inst as usize].clean()
        })
        .collect();
    let all_leavers = world.persons.iter().filter(|p| p.exit.is_some()).count();
    rng.shuffle(&mut leavers);
    let after_exit = planned(RATE_PAID_AFTER_EXIT, all_leavers, config).min(leavers.len());
    for &p in &leavers[..after_exit] {
        let person = &mut world.persons[p as usize];
        let exit = person.exit_date().expect("filtered on exit");
        let inst = person.stints[0].inst;
        for (i, period) in periods.iter().enumerate() {
            if period.first_day() >= exit {
                person.pay.extra.push((i, inst));
            }
        }
    }

    // Ghosts: on a payroll, on no roll, every period.
    let ghosts = (ghost_lines.saturating_sub(pre_entry))
        .div_ceil(k)
        .max(config.min_each);
    for _ in 0..ghosts {
        let payer = *rng.pick(&payers);
        let mut ghost = world.new_ghost(rng);
        ghost.rank = *rng.pick(&[Rank::Clerk, Rank::Unranked]);
        ghost.pay.extra = (0..k).map(|i| (i, payer)).collect();
        world.persons.push(ghost);
    }
}
