//! The set-based full re-check (`store::recheck`) against the oracle (the snapshot engine,
//! `Store::reconcile_by_snapshot`): for random sequences of pushes by every agency, on both
//! backends, both keep exactly the same findings (numbers, evidence, explanations, jurisdiction,
//! alert state), each finds nothing to change after the other, and a dry run as of another date
//! reports the same changes.

use proptest::prelude::*;
use quotahub::clock::Clock;
use quotahub::store::reconcile::{FindingChange, FindingFilter, StoredFinding};
use quotahub::store::{Checks, Store, StoreOptions, plain_sql};

use crate::helpers::*;
use crate::incremental::{Op, op, push};

/// A stored finding without the instants of its writing (raised, updated, deadlines).
fn comparable(f: &StoredFinding) -> String {
    format!(
        "{:?} {} open={} v{} alert={:?}/{}/{}/{}/{}",
        f.finding,
        f.jurisdiction,
        f.open,
        f.version,
        f.alert.state,
        f.alert.escalation_level,
        f.alert.acknowledged,
        f.alert.acknowledge_by.is_some(),
        f.alert.rectify_by.is_some(),
    )
}

async fn stored(store: &Store) -> Vec<String> {
    let mut all = Vec::new();
    for open in [true, false] {
        let filter = FindingFilter {
            open,
            limit: u32::MAX,
            ..FindingFilter::default()
        };
        all.extend(store.findings(&filter).await.unwrap().iter().map(comparable));
    }
    all
}

fn changes(changes: &[FindingChange]) -> Vec<String> {
    let mut listed: Vec<String> = changes
        .iter()
        .map(|c| format!("{:?} {}", c.kind, comparable(&c.finding)))
        .collect();
    listed.sort();
    listed
}

async fn forget(store: &Store) {
    sqlx::query("DELETE FROM findings")
        .execute(store.readers())
        .await
        .unwrap();
}

async fn set_based_equals_oracle(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = TestDb::new(backend).await;
    let store = Store::connect(db.url(), &StoreOptions::default())
        .await
        .unwrap()
        .with_checks(Checks {
            clock: Clock::on(chrono::NaiveDate::from_ymd_opt(2024, 6, 15).unwrap()),
            ..Checks::default()
        });
    for (n, op) in ops.iter().enumerate() {
        push(&store, n, op).await;
    }
    let today = store.checks().clock.today();

    // From nothing, each engine raises the same findings.
    forget(&store).await;
    store.reconcile_by_snapshot(None, today, false).await.unwrap();
    let oracle = stored(&store).await;
    let after_oracle = store.reconcile(None, today, true).await.unwrap();
    prop_assert_eq!(changes(&after_oracle.changes), Vec::<String>::new());

    forget(&store).await;
    store.reconcile(None, today, false).await.unwrap();
    prop_assert_eq!(&stored(&store).await, &oracle);
    let after_set = store.reconcile_by_snapshot(None, today, true).await.unwrap();
    prop_assert_eq!(changes(&after_set.changes), Vec::<String>::new());

    // Every rule written again as plain SQL (the benchmark's baseline) finds the same keys, but
    // for those it only approximates.
    let open_keys: std::collections::BTreeSet<_> = store
        .findings(&FindingFilter {
            open: true,
            limit: u32::MAX,
            ..FindingFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.finding.key)
        .filter(|k| !plain_sql::APPROXIMATE.contains(&k.code))
        .collect();
    let sql: std::collections::BTreeSet<_> = store
        .plain_sql_all(today, store.checks().rules.quota_full_threshold)
        .await
        .unwrap()
        .into_iter()
        .filter(|k| !plain_sql::APPROXIMATE.contains(&k.code))
        .collect();
    prop_assert_eq!(open_keys, sql);

    // Another date: the same changes reported (the roll's against today's findings too).
    let before = chrono::NaiveDate::from_ymd_opt(2023, 6, 1).unwrap();
    let by_oracle = store.reconcile_by_snapshot(None, before, true).await.unwrap();
    let by_set = store.reconcile(None, before, true).await.unwrap();
    prop_assert_eq!(changes(&by_set.changes), changes(&by_oracle.changes));
    Ok(())
}

fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(set_based_equals_oracle(backend, ops))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_set_based_recheck_equals_the_oracle_on_sqlite(ops in prop::collection::vec(op(), 1..45)) {
        run(Backend::Sqlite, ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn the_set_based_recheck_equals_the_oracle_on_postgres(ops in prop::collection::vec(op(), 1..45)) {
        run(Backend::Postgres, ops)?;
    }
}
