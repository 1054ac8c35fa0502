//! The store itself, on both backends: what holds when several hub replicas (here, several `Store`
//! instances on one database) write at once.

use std::collections::HashMap;

use quotahub::api::convert::Pushed;
use quotahub::domain::{AgencyKind, Period, ResidentId, Uscc};
use quotahub::store::{Store, StoreOptions};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    concurrent_pushes_of_the_same_records_store_each_once,
    concurrent_events_of_one_person_keep_a_consistent_roll,
);

async fn concurrent_pushes_of_the_same_records_store_each_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let replica = Store::connect(app.db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let finance = agency("140100", AgencyKind::Finance);
    let unit = uscc("140100", 1);
    let submissions: Vec<_> = (0..200)
        .map(|n| {
            payroll(&format!("pay-{n}"), &resident(n), &unit, "2024-01")
                .to_submission()
                .unwrap()
        })
        .collect();

    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = if task % 2 == 0 {
            app.store.clone()
        } else {
            replica.clone()
        };
        let mut mine = submissions.clone();
        mine.rotate_left(task * 25);
        let finance = finance.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for batch in mine.chunks(40) {
                let verdicts = store.push(&finance, batch).await.unwrap();
                for (submission, verdict) in batch.iter().zip(verdicts) {
                    receipts.push((submission.record_id.clone(), verdict.unwrap()));
                }
            }
            receipts
        }));
    }
    let mut first_acceptances: HashMap<String, usize> = HashMap::new();
    let mut accepted_at: HashMap<String, i64> = HashMap::new();
    for task in tasks {
        for (record_id, receipt) in task.await.unwrap() {
            if !receipt.replayed {
                *first_acceptances.entry(record_id.clone()).or_default() += 1;
            }
            // Every answer for a record names the same commit.
            let at = *accepted_at.entry(record_id).or_insert(receipt.accepted_at);
            assert_eq!(at, receipt.accepted_at);
        }
    }
    assert_eq!(first_acceptances.len(), 200);
    assert!(
        first_acceptances.values().all(|&n| n == 1),
        "each record accepted as new exactly once"
    );
    let lines = app
        .store
        .payroll(
            &Uscc::parse(&unit).unwrap(),
            Period::parse("2024-01").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(lines.len(), 200);
}

async fn concurrent_events_of_one_person_keep_a_consistent_roll(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let replica = Store::connect(app.db.url(), &StoreOptions::default())
        .await
        .unwrap();
    let hr = agency("140100", AgencyKind::Hr);
    let units: Vec<String> = (1..=4).map(|n| uscc("140100", n)).collect();
    let person = resident(7);
    // Four replicas-worth of writers each try to hire the same person into a different unit on
    // the same day, and to move them on: the histories must stay derivable whatever interleaving.
    let mut tasks = Vec::new();
    for (n, unit) in units.iter().enumerate() {
        let store = if n % 2 == 0 {
            app.store.clone()
        } else {
            replica.clone()
        };
        let hire = hire(&format!("hire-{n}"), &person, unit, "2021-01-01")
            .to_submission()
            .unwrap();
        let mut leave = hire_event_of(&format!("leave-{n}"), &person, unit, "2022-01-01");
        leave.event_type = quotahub::proto::PersonnelEventType::Leave as i32;
        let leave = leave.to_submission().unwrap();
        let hr = hr.clone();
        tasks.push(tokio::spawn(async move {
            let first = store.push(&hr, &[hire]).await.unwrap();
            let second = store.push(&hr, &[leave]).await.unwrap();
            (first[0].is_ok(), second[0].is_ok())
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            (true, true),
            "hires into different units all fit"
        );
    }
    let history = app
        .store
        .person_history(&ResidentId::parse(&person).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(history.events.len(), 8);
    // Each unit: active from 2021, on leave from 2022; derived from all eight events.
    assert_eq!(history.spells.len(), 8);
    for unit in &units {
        let on_unit: Vec<_> = history
            .spells
            .iter()
            .filter(|s| s.institution.as_str() == unit)
            .collect();
        assert_eq!(on_unit.len(), 2, "{unit}");
    }
}

fn hire_event_of(id: &str, person: &str, unit: &str, on: &str) -> quotahub::proto::PersonnelEvent {
    hire(id, person, unit, on)
}
