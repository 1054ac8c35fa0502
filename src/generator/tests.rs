//! Tests of the generator: determinism, coverage of every rule code, validity of every record as
//! the hub validates it, pushability (order, scope, registry references), the written files read
//! back by `quotahub import`, and the truth against both an independent evaluation of the rules
//! (`check.rs`) and the hub's own rules engine (`engine.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use clap::ValueEnum;
use prost::Message;

use chrono::{Datelike, NaiveDate};

use super::plant::{self, planned};
use super::*;
use super::{check, engine};
use crate::api::convert::Pushed;
use crate::cli::import::{RecordKind, read_records};
use crate::domain::findings::RuleCode;
use crate::domain::roll::{derive_spells, derive_terms};
use crate::domain::{Coded, ResidentId, Uscc};

fn small(seed: u64) -> Dataset {
    generate(&GenConfig::small(seed))
}

#[test]
fn the_same_config_gives_the_same_data_and_bytes() {
    let a = small(11);
    let b = small(11);
    assert_eq!(a, b);
    assert_ne!(a, small(12));
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let manifest_a = write(&a, dir_a.path()).unwrap();
    let manifest_b = write(&b, dir_b.path()).unwrap();
    assert_eq!(manifest_a, manifest_b);
    for file in manifest_a.files.iter().map(|f| f.file.clone()).chain([
        "truth.jsonl".to_owned(),
        "deliveries.jsonl".to_owned(),
        "manifest.json".to_owned(),
    ]) {
        let bytes_a = std::fs::read(dir_a.path().join(&file)).unwrap();
        let bytes_b = std::fs::read(dir_b.path().join(&file)).unwrap();
        assert!(bytes_a == bytes_b, "{file} differs between two runs");
    }
}

#[test]
fn a_small_world_plants_every_rule_code_at_least_twice() {
    for seed in 1..=6 {
        let data = small(seed);
        let mut per_code: BTreeMap<RuleCode, usize> = BTreeMap::new();
        for planted in &data.truth {
            *per_code.entry(planted.code).or_insert(0) += 1;
        }
        for &code in RuleCode::ALL {
            let n = per_code.get(&code).copied().unwrap_or(0);
            if code == RuleCode::RegionalBalance {
                assert_eq!(n, 0, "REGIONAL_BALANCE is a report");
            } else {
                assert!(
                    n >= 2,
                    "seed {seed}: {code} planted {n} times: {per_code:?}"
                );
            }
        }
        let mut sorted = data.truth.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, data.truth, "truth is sorted and without duplicates");
    }
}

#[test]
fn the_truth_is_what_the_rules_find_on_the_records() {
    for seed in 1..=6 {
        let data = small(seed);
        let found = check::findings(&data);
        let truth: BTreeSet<Planted> = data.truth.iter().cloned().collect();
        let missing: Vec<_> = truth.difference(&found).collect();
        let extra: Vec<_> = found.difference(&truth).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "seed {seed}: in the truth but not found: {missing:#?}\nfound but not in the truth: {extra:#?}"
        );
    }
}

#[test]
fn clean_data_makes_no_finding() {
    let config = GenConfig {
        anomaly_scale: 0.0,
        min_each: 0,
        ..GenConfig::small(5)
    };
    let data = generate(&config);
    assert!(data.truth.is_empty(), "{:#?}", data.truth);
    assert!(check::findings(&data).is_empty());
    assert!(!data.payroll.is_empty() && !data.fundings.is_empty());
}

#[test]
fn every_identifier_validates_and_every_record_converts() {
    let data = small(3);
    let uscc = |code: &str| {
        assert!(Uscc::parse(code).is_ok(), "bad USCC {code}");
    };
    let optional = |code: &str| {
        if !code.is_empty() {
            uscc(code);
        }
    };
    let resident = |id: &str| {
        assert!(ResidentId::parse(id).is_ok(), "bad resident ID {id}");
    };
    for i in &data.institutions {
        uscc(&i.uscc);
        optional(&i.parent_uscc);
        assert!(i.uscc.starts_with("11") || i.uscc.starts_with("12"));
    }
    data.quotas.iter().for_each(|q| uscc(&q.institution_uscc));
    data.leader_posts
        .iter()
        .for_each(|p| uscc(&p.institution_uscc));
    data.plans.iter().for_each(|p| uscc(&p.institution_uscc));
    data.approvals
        .iter()
        .for_each(|a| uscc(&a.institution_uscc));
    for e in &data.events {
        uscc(&e.institution_uscc);
        optional(&e.target_institution_uscc);
        resident(&e.resident_id);
    }
    for a in &data.appointments {
        uscc(&a.institution_uscc);
        resident(&a.resident_id);
    }
    for l in &data.payroll {
        uscc(&l.institution_uscc);
        resident(&l.resident_id);
    }
    data.fundings.iter().for_each(|f| uscc(&f.institution_uscc));

    fn all_convert<P: Pushed>(messages: &[P]) {
        for m in messages {
            if let Err(e) = m.to_submission() {
                panic!("{} does not convert: {e:?}", m.record_id());
            }
        }
    }
    all_convert(&data.institutions);
    all_convert(&data.quotas);
    all_convert(&data.leader_posts);
    all_convert(&data.plans);
    all_convert(&data.approvals);
    all_convert(&data.events);
    all_convert(&data.appointments);
    all_convert(&data.payroll);
    all_convert(&data.fundings);
}

#[test]
fn record_ids_are_unique_per_kind() {
    let data = small(4);
    fn unique<P: Pushed>(kind: &str, messages: &[P]) {
        let mut seen = HashSet::new();
        for m in messages {
            assert!(
                seen.insert(m.record_id().to_owned()),
                "{kind}: {} twice",
                m.record_id()
            );
        }
    }
    unique("institution", &data.institutions);
    unique("quota", &data.quotas);
    unique("leader-post", &data.leader_posts);
    unique("staffing-plan", &data.plans);
    unique("hiring-approval", &data.approvals);
    unique("personnel-event", &data.events);
    unique("appointment", &data.appointments);
    unique("payroll-line", &data.payroll);
    unique("funding", &data.fundings);
}

/// What the hub needs to accept the pushes in file order: parents registered before children,
/// staffing-office records about registered institutions, everything within the root's
/// jurisdiction, and each person's history deriving after every prefix (a bulk push is stored in
/// batches, so any prefix can be what is stored when the next record arrives).
#[test]
fn the_files_push_in_order() {
    let data = small(5);
    let root = Jurisdiction::parse(&data.root).unwrap();
    let mut registered: HashSet<&str> = HashSet::new();
    for i in &data.institutions {
        if !i.parent_uscc.is_empty() {
            assert!(
                registered.contains(i.parent_uscc.as_str()),
                "parent after child: {}",
                i.name
            );
        }
        assert!(root.contains(&Jurisdiction::parse(&i.jurisdiction).unwrap()));
        registered.insert(&i.uscc);
    }
    let known = |uscc: &str| assert!(registered.contains(uscc), "{uscc} is not registered");
    data.quotas.iter().for_each(|q| known(&q.institution_uscc));
    data.leader_posts
        .iter()
        .for_each(|p| known(&p.institution_uscc));
    data.plans.iter().for_each(|p| known(&p.institution_uscc));
    data.approvals
        .iter()
        .for_each(|a| known(&a.institution_uscc));
    let in_scope = |uscc: &str| {
        let division = Jurisdiction::parse(Uscc::parse(uscc).unwrap().division_code()).unwrap();
        assert!(root.contains(&division), "{uscc} lies outside {root}");
    };
    data.events
        .iter()
        .for_each(|e| in_scope(&e.institution_uscc));
    data.payroll
        .iter()
        .for_each(|l| in_scope(&l.institution_uscc));
    data.fundings
        .iter()
        .for_each(|f| in_scope(&f.institution_uscc));

    let events: Vec<_> = data.events.iter().map(|e| e.to_record().unwrap()).collect();
    let mut by_person: HashMap<String, Vec<_>> = HashMap::new();
    for e in &events {
        by_person
            .entry(e.resident_id.to_string())
            .or_default()
            .push(e);
        let history = &by_person[e.resident_id.as_str()];
        if let Err(conflict) = derive_spells(history) {
            panic!("{}: {}", e.resident_id, conflict.reason);
        }
    }
    let appointments: Vec<_> = data
        .appointments
        .iter()
        .map(|a| a.to_record().unwrap())
        .collect();
    let mut by_leader: HashMap<String, Vec<_>> = HashMap::new();
    for a in &appointments {
        by_leader
            .entry(a.resident_id.to_string())
            .or_default()
            .push(a);
        derive_terms(&by_leader[a.resident_id.as_str()]).unwrap();
    }
    let as_of = crate::domain::ids::parse_date(&data.as_of).unwrap();
    assert!(events.iter().all(|e| e.effective_on <= as_of));
}

fn read_back<M: Message + Default + PartialEq + std::fmt::Debug>(
    dir: &Path,
    file: &ManifestFile,
    originals: &[M],
) {
    let kind = RecordKind::from_str(&file.kind, true).unwrap();
    let records = read_records(&dir.join(&file.file), kind).unwrap();
    assert_eq!(records.len(), originals.len(), "{}", file.file);
    assert_eq!(records.len(), file.records);
    for ((line, record), original) in records.iter().zip(originals) {
        let message = record
            .as_ref()
            .unwrap_or_else(|e| panic!("{} line {line}: {e}", file.file));
        let typed: M = message.transcode_to().unwrap();
        assert_eq!(&typed, original, "{} line {line}", file.file);
    }
}

#[test]
fn written_files_read_back_as_the_same_records() {
    let data = small(6);
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(&data, dir.path()).unwrap();
    let kinds: Vec<&str> = manifest.files.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "institution",
            "quota",
            "leader-post",
            "staffing-plan",
            "hiring-approval",
            "personnel-event",
            "appointment",
            "payroll-line",
            "funding"
        ]
    );
    for file in &manifest.files {
        let path = dir.path();
        match file.kind.as_str() {
            "institution" => read_back(path, file, &data.institutions),
            "quota" => read_back(path, file, &data.quotas),
            "leader-post" => read_back(path, file, &data.leader_posts),
            "staffing-plan" => read_back(path, file, &data.plans),
            "hiring-approval" => read_back(path, file, &data.approvals),
            "personnel-event" => read_back(path, file, &data.events),
            "appointment" => read_back(path, file, &data.appointments),
            "payroll-line" => read_back(path, file, &data.payroll),
            "funding" => read_back(path, file, &data.fundings),
            other => panic!("unexpected kind {other}"),
        }
        let agency = RecordKind::from_str(&file.kind, true)
            .unwrap()
            .agency_kind();
        assert_eq!(agency.slug(), file.agency_kind);
        assert_eq!(file.jurisdiction, "140100");
    }
    let truth = std::fs::read_to_string(dir.path().join(&manifest.truth)).unwrap();
    let lines: Vec<serde_json::Value> = truth
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), data.truth.len());
    assert_eq!(lines[0]["code"], data.truth[0].code.code());
    // The timeline: each delivery a run of lines of its kind's file, sent by its agency.
    let deliveries = std::fs::read_to_string(dir.path().join(&manifest.deliveries)).unwrap();
    let deliveries: Vec<serde_json::Value> = deliveries
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(deliveries.len(), data.deliveries.len());
    assert_eq!(manifest.delivery_count, data.deliveries.len());
    assert_eq!(manifest.start, data.start.to_string());
    for (line, delivery) in deliveries.iter().zip(&data.deliveries) {
        assert_eq!(line["on"], delivery.on.to_string());
        assert_eq!(line["jurisdiction"], delivery.agency.jurisdiction.as_str());
        assert_eq!(line["agency_kind"], delivery.agency.kind.slug());
        assert_eq!(line["file"], format!("{}.jsonl", delivery.kind.slug()));
        assert_eq!(line["line"], delivery.records.start + 1);
        assert_eq!(line["records"], delivery.records.len());
    }
    let written: Manifest =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(written, manifest);
}

#[test]
fn months_up_to_counts_back_across_a_year() {
    let date = chrono::NaiveDate::from_ymd_opt(2024, 2, 10).unwrap();
    let periods: Vec<String> = months_up_to(date, 3)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(periods, ["2023-12", "2024-01", "2024-02"]);
}

/// Timing and size at realistic scale, with the independent check on the city; run by hand:
/// `cargo test --release --lib gen::tests::scale_ -- --ignored --nocapture --test-threads 1`.
fn measure(name: &str, config: &GenConfig, check_truth: bool) {
    let started = std::time::Instant::now();
    let data = generate(config);
    let generated = started.elapsed();
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    write(&data, dir.path()).unwrap();
    let written = started.elapsed();
    let mut per_code: BTreeMap<RuleCode, usize> = BTreeMap::new();
    for planted in &data.truth {
        *per_code.entry(planted.code).or_insert(0) += 1;
    }
    let ghosts = per_code.get(&RuleCode::PaidNotOnRoll).copied().unwrap_or(0);
    println!(
        "{name}: generate {generated:.2?}, write {written:.2?}; {} institutions, {} quotas, {} posts, {} plans, {} approvals, {} events, {} appointments, {} payroll lines ({:.2}% ghost), {} fundings, {} findings",
        data.institutions.len(),
        data.quotas.len(),
        data.leader_posts.len(),
        data.plans.len(),
        data.approvals.len(),
        data.events.len(),
        data.appointments.len(),
        data.payroll.len(),
        100.0 * ghosts as f64 / data.payroll.len().max(1) as f64,
        data.fundings.len(),
        data.truth.len(),
    );
    println!("{name}: findings per code {per_code:?}");
    if check_truth {
        let started = std::time::Instant::now();
        assert_truth_matches(name, &data);
        println!(
            "{name}: independent check and engine agree ({:.2?})",
            started.elapsed()
        );
    }
}

#[test]
#[ignore = "takes seconds; run by hand"]
fn scale_city() {
    measure("city", &GenConfig::city(1), true);
}

#[test]
#[ignore = "takes a minute; run by hand"]
fn scale_province() {
    measure("province", &GenConfig::province(1), true);
}

/// The independent check is not vacuous: small changes to the records change what it finds.
#[test]
fn the_check_notices_changed_records() {
    let data = small(1);
    let truth: BTreeSet<Planted> = data.truth.iter().cloned().collect();
    let mut cut = data.clone();
    let q = cut
        .quotas
        .iter()
        .position(|q| q.effective_to.is_empty() && q.approved_count > 3)
        .unwrap();
    cut.quotas[q].approved_count = 1;
    assert_ne!(check::findings(&cut), truth);
    let mut drained = data.clone();
    drained.approvals[0].approved_entries = 0;
    assert_ne!(check::findings(&drained), truth);
    let mut paid = data.clone();
    let mut line = paid.payroll[5].clone();
    line.record_id = "pay-extra".into();
    let other = paid
        .payroll
        .iter()
        .find(|l| l.institution_uscc != line.institution_uscc)
        .unwrap()
        .institution_uscc
        .clone();
    line.institution_uscc = other;
    paid.payroll.push(line);
    let added: BTreeSet<RuleCode> = check::findings(&paid)
        .difference(&truth)
        .map(|p| p.code)
        .collect();
    assert!(added.contains(&RuleCode::DoublePay), "{added:?}");
}

/// The truth equals both the independent check and the hub's rules engine.
fn assert_truth_matches(name: &str, data: &Dataset) {
    let truth: BTreeSet<Planted> = data.truth.iter().cloned().collect();
    for (by, found) in [
        ("check", check::findings(data)),
        ("engine", engine::findings(data)),
    ] {
        let missing: Vec<_> = truth.difference(&found).collect();
        let extra: Vec<_> = found.difference(&truth).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name}: in the truth but not found by the {by}: {missing:#?}\nfound by the {by} but not in the truth: {extra:#?}"
        );
    }
}

#[test]
fn other_roots_dates_and_periods_hold_too() {
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let province = GenConfig {
        institutions: 300,
        people: 6_000,
        root: Jurisdiction::parse("140000").unwrap(),
        ..GenConfig::small(21)
    };
    let district = GenConfig {
        root: Jurisdiction::parse("140105").unwrap(),
        ..GenConfig::small(22)
    };
    let january = GenConfig {
        as_of: date(2024, 1, 20),
        periods: months_up_to(date(2024, 1, 20), 3),
        ..GenConfig::small(23)
    };
    let no_pay = GenConfig {
        periods: Vec::new(),
        ..GenConfig::small(24)
    };
    for (name, config) in [
        ("province", province),
        ("district", district),
        ("january", january),
        ("no pay", no_pay),
    ] {
        let data = generate(&config);
        assert_truth_matches(name, &data);
        let codes: BTreeSet<RuleCode> = data.truth.iter().map(|p| p.code).collect();
        assert!(codes.len() >= 9, "{name}: {codes:?}");
    }
}

#[test]
#[ignore = "many seeds; run by hand"]
fn many_seeds() {
    for seed in 100..160 {
        let data = small(seed);
        assert_truth_matches(&format!("seed {seed}"), &data);
        let mut per_code: BTreeMap<RuleCode, usize> = BTreeMap::new();
        for planted in &data.truth {
            *per_code.entry(planted.code).or_insert(0) += 1;
        }
        for &code in RuleCode::ALL {
            if code != RuleCode::RegionalBalance {
                assert!(
                    per_code.get(&code).copied().unwrap_or(0) >= 2,
                    "seed {seed}: {code}: {per_code:?}"
                );
            }
        }
    }
}

/// The hub's rules engine finds exactly the truth.
#[test]
fn the_engine_finds_exactly_the_truth() {
    for seed in 1..=6 {
        let data = small(seed);
        let found = engine::findings(&data);
        let truth: BTreeSet<Planted> = data.truth.iter().cloned().collect();
        let missing: Vec<_> = truth.difference(&found).collect();
        let extra: Vec<_> = found.difference(&truth).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "seed {seed}: in the truth but not found by the engine: {missing:#?}\nfound by the engine but not in the truth: {extra:#?}"
        );
    }
}

/// The delivery timeline: every record sent once, by an agency that may send it, on a day between
/// the start and the check date, the registry first, each person's events in their order.
#[test]
fn every_record_is_delivered_once_in_order_by_an_agency_that_may_send_it() {
    for seed in 1..=3 {
        let data = small(seed);
        let as_of = crate::domain::ids::parse_date(&data.as_of).unwrap();
        assert_eq!(data.deliveries[0].kind, Kind::Institution);
        assert_eq!(data.deliveries[0].on, data.start);
        assert!(
            data.deliveries.windows(2).all(|w| w[0].on <= w[1].on),
            "by day"
        );
        for kind in Kind::ALL {
            let mut ranges: Vec<std::ops::Range<usize>> = data
                .deliveries
                .iter()
                .filter(|d| d.kind == kind)
                .map(|d| d.records.clone())
                .collect();
            ranges.sort_by_key(|r| r.start);
            let mut next = 0;
            for range in &ranges {
                assert_eq!(range.start, next, "{kind:?}: a gap or an overlap");
                next = range.end;
            }
            assert_eq!(next, data.count(kind), "{kind:?}: every record");
        }
        let root = Jurisdiction::parse(&data.root).unwrap();
        let division =
            |uscc: &str| Jurisdiction::parse(Uscc::parse(uscc).unwrap().division_code()).unwrap();
        let mut sender: HashMap<String, String> = HashMap::new();
        for delivery in &data.deliveries {
            assert!(data.start <= delivery.on && delivery.on <= as_of);
            assert_eq!(delivery.agency.kind, delivery.kind.sender());
            assert!(root.contains(&delivery.agency.jurisdiction));
            let agency = &delivery.agency;
            match delivery.kind {
                Kind::PersonnelEvent => {
                    for event in &data.events[delivery.records.clone()] {
                        assert!(agency.oversees(&division(&event.institution_uscc)));
                        if !event.target_institution_uscc.is_empty() {
                            assert!(agency.oversees(&division(&event.target_institution_uscc)));
                        }
                        // One agency sends all of a person's events.
                        let first = sender
                            .entry(event.resident_id.clone())
                            .or_insert_with(|| agency.id());
                        assert_eq!(*first, agency.id(), "{}", event.resident_id);
                        let effective =
                            crate::domain::ids::parse_date(&event.effective_on).unwrap();
                        assert!(effective <= delivery.on, "sent before it took effect");
                    }
                }
                Kind::PayrollLine => {
                    let period = &data.payroll[delivery.records.start].period;
                    for line in &data.payroll[delivery.records.clone()] {
                        // A month's file: the institutions its division's finance agency pays.
                        assert_eq!(&line.period, period);
                        assert_eq!(division(&line.institution_uscc), agency.jurisdiction);
                    }
                }
                _ => assert_eq!(agency.jurisdiction, root),
            }
        }
    }
}

/// Late, missing and backdated data at the stated rates, and exactly the findings they leave open
/// on the check date in the truth; nothing else late.
#[test]
fn the_timeline_plants_late_missing_and_backdated_data_at_their_rates() {
    use super::deliver::EVENT_LAG_DAYS;
    use crate::domain::freshness::Cadence;
    let cadence = Cadence::default();
    for (name, config) in [
        ("small", GenConfig::small(2)),
        (
            "small at the rates alone",
            GenConfig {
                min_each: 0,
                people: 4_000,
                institutions: 120,
                ..GenConfig::small(8)
            },
        ),
    ] {
        let data = generate(&config);
        let as_of = config.as_of;
        let truth_of = |code: RuleCode| -> BTreeSet<(String, String)> {
            data.truth
                .iter()
                .filter(|p| p.code == code)
                .map(|p| (p.institution.clone(), p.period.clone()))
                .collect()
        };

        // Payroll: files by (agency, period); each agency's first month is never late.
        let files: Vec<(String, Period, NaiveDate)> = data
            .deliveries
            .iter()
            .filter(|d| d.kind == Kind::PayrollLine)
            .map(|d| {
                let period = Period::parse(&data.payroll[d.records.start].period).unwrap();
                (d.agency.id(), period, d.on)
            })
            .collect();
        let agencies: BTreeSet<&String> = files.iter().map(|(a, _, _)| a).collect();
        let missing = truth_of(RuleCode::LatePayroll);
        let last_due = *config
            .periods
            .iter()
            .filter(|p| cadence.payroll_late_from(**p) <= as_of)
            .max()
            .unwrap();
        for (agency, period) in &missing {
            assert_eq!(period, &last_due.to_string(), "{name}: the last month due");
            assert!(
                agencies.contains(agency),
                "{name}: {agency} sent earlier months"
            );
            assert!(
                !files
                    .iter()
                    .any(|(a, p, _)| a == agency && p.to_string() == *period),
                "{name}: {agency} {period} never arrives"
            );
        }
        assert_eq!(
            missing.len(),
            planned(plant::RATE_MISSING_PAYROLL, agencies.len(), &config),
            "{name}: missing files at their rate"
        );
        let late = late_payroll(&data);
        let first_month = |agency: &String| {
            files
                .iter()
                .filter(|(a, _, _)| a == agency)
                .map(|(_, p, _)| *p)
                .min()
        };
        let due_files: Vec<&(String, Period, NaiveDate)> = files
            .iter()
            .filter(|(_, p, _)| cadence.payroll_late_from(*p) <= as_of)
            .collect();
        // An agency's first month cannot be told late (nothing says it owes it before it).
        let could_be_late = due_files
            .iter()
            .filter(|(a, p, _)| first_month(a) < Some(*p))
            .count();
        assert_eq!(
            late.len(),
            planned(
                plant::RATE_LATE_PAYROLL,
                due_files.len() + missing.len(),
                &config
            )
            .min(could_be_late),
            "{name}: late files at their rate"
        );
        for (agency, period, on) in &files {
            let due = cadence.payroll_late_from(*period);
            if late.contains(&(agency.clone(), *period)) {
                assert!(due <= *on && *on <= as_of);
                assert!(
                    first_month(agency) < Some(*period),
                    "{name}: never an agency's first month"
                );
            } else {
                // In its own month, by the 15th.
                assert_eq!(
                    Period::containing(*on),
                    *period,
                    "{name}: {agency} {period}"
                );
                assert!(on.day() <= 15);
            }
        }

        // Events: lag from effect to delivery; history (before the start) comes at the start.
        let mut backdated: BTreeSet<String> = BTreeSet::new();
        let mut backdated_events = 0;
        let mut feasible = 0;
        let history: BTreeSet<String> = data
            .deliveries
            .iter()
            .filter(|d| d.kind == Kind::PersonnelEvent && d.on == data.start)
            .filter(|d| {
                data.events[d.records.clone()]
                    .iter()
                    .any(|e| crate::domain::ids::parse_date(&e.effective_on).unwrap() < data.start)
            })
            .map(|d| d.agency.id())
            .collect();
        for delivery in data
            .deliveries
            .iter()
            .filter(|d| d.kind == Kind::PersonnelEvent)
        {
            for event in &data.events[delivery.records.clone()] {
                let effective = crate::domain::ids::parse_date(&event.effective_on).unwrap();
                if effective < data.start {
                    assert_eq!(
                        delivery.on, data.start,
                        "{name}: history in the initial load"
                    );
                    continue;
                }
                let lag = (delivery.on - effective).num_days();
                let could = history.contains(&delivery.agency.id())
                    && (effective + chrono::Days::new(31)).max(cadence.window_start(as_of))
                        <= as_of;
                feasible += usize::from(could);
                if cadence.backdated(effective, delivery.on) {
                    assert!(could, "{name}: {} backdated out of reach", event.record_id);
                    assert!(delivery.on >= cadence.window_start(as_of));
                    backdated_events += 1;
                    backdated.insert(delivery.agency.id());
                } else {
                    assert!(
                        lag <= EVENT_LAG_DAYS,
                        "{name}: {} {lag} days",
                        event.record_id
                    );
                }
            }
        }
        assert_eq!(
            backdated_events,
            planned(plant::RATE_BACKDATED_EVENT, feasible, &config),
            "{name}: backdated events at their rate"
        );
        let keys: BTreeSet<String> = truth_of(RuleCode::BackdatedEvent)
            .into_iter()
            .map(|(agency, _)| agency)
            .collect();
        assert_eq!(keys, backdated, "{name}: one finding per agency with one");
        if config.min_each > 0 {
            assert!(
                missing.len() >= 2 && !late.is_empty() && keys.len() >= 2,
                "{name}"
            );
        }
    }
}
