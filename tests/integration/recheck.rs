//! The set-based full re-check (`store::recheck`) against the oracle (the snapshot engine,
//! `Store::reconcile_by_snapshot`): for random sequences of pushes by every agency, on both
//! backends, both keep exactly the same findings (numbers, evidence, explanations, jurisdiction,
//! alert state), each finds nothing to change after the other, and a dry run as of another date
//! reports the same changes.

use proptest::prelude::*;
use quotahub::store::reconcile::{FindingChange, FindingFilter, StoredFinding};
use quotahub::store::{Store, StoreOptions, plain_sql};

use crate::helpers::*;
use crate::incremental::{Op, op, pushed_on};

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
        all.extend(
            store
                .findings(&filter)
                .await
                .unwrap()
                .iter()
                .map(comparable),
        );
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
    let (_db, store) = pushed_on(backend, &ops).await;
    let today = store.checks().clock.today();

    // From nothing, each engine raises the same findings.
    forget(&store).await;
    store
        .reconcile_by_snapshot(None, today, false)
        .await
        .unwrap();
    let oracle = stored(&store).await;
    let after_oracle = store.reconcile(None, today, true).await.unwrap();
    prop_assert_eq!(changes(&after_oracle.changes), Vec::<String>::new());

    forget(&store).await;
    store.reconcile(None, today, false).await.unwrap();
    prop_assert_eq!(&stored(&store).await, &oracle);
    let after_set = store
        .reconcile_by_snapshot(None, today, true)
        .await
        .unwrap();
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
    let by_oracle = store
        .reconcile_by_snapshot(None, before, true)
        .await
        .unwrap();
    let by_set = store.reconcile(None, before, true).await.unwrap();
    prop_assert_eq!(changes(&by_set.changes), changes(&by_oracle.changes));
    Ok(())
}

fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Sets up the logs when TEST_LOG asks for them.
    let _ = pki();
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

mod jobs {
    use super::*;
    use crate::on_both_backends;
    use quotahub::domain::AgencyKind;
    use quotahub::proto;
    use quotahub::store::recheck::{JobState, Lease};

    on_both_backends!(
        a_reconcile_is_an_operation_that_callers_follow_list_and_wait_for,
        a_job_goes_on_from_its_last_finished_chunk,
        a_cancelled_job_stops_before_its_next_chunk
    );

    /// Two units with people on their rolls and no quota: each is over quota. Stored without
    /// checks, as an initial load: the findings are the re-check's to raise.
    async fn two_rolls_over_quota(store: &Store) -> (String, String) {
        use quotahub::api::convert::Pushed;
        let (first, second) = (uscc("140100", 1), uscc("140105", 2));
        store.set_push_checks(false);
        let office = agency("140100", AgencyKind::StaffingOffice);
        for (id, unit, at) in [("i1", &first, "140100"), ("i2", &second, "140105")] {
            let submission = organ(id, unit, at).to_submission().unwrap();
            store.push(&office, &[submission]).await.unwrap();
        }
        let hr = agency("140100", AgencyKind::Hr);
        for (id, n, unit) in [("h1", 1, &first), ("h2", 2, &second)] {
            let submission = hire(id, &resident(n), unit, "2021-01-01")
                .to_submission()
                .unwrap();
            store.push(&hr, &[submission]).await.unwrap();
        }
        store.set_push_checks(true);
        (first, second)
    }

    /// A store with no hub (so no runner) around it, as of the test day.
    async fn store_alone(db: &TestDb) -> Store {
        let store = Store::connect(db.url(), &StoreOptions::default())
            .await
            .unwrap();
        pki().register_all(&store).await;
        store
    }

    async fn a_reconcile_is_an_operation_that_callers_follow_list_and_wait_for(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        two_rolls_over_quota(&app.store).await;
        let mut checks = proto::reconciliation_service_client::ReconciliationServiceClient::new(
            app.channel(&agency("140100", AgencyKind::StaffingOffice))
                .await,
        );

        // Answered at once with the operation; the job runs in the hub, not in the call.
        let started = checks
            .reconcile(proto::ReconcileRequest {
                return_operation: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let operation = started.operation.unwrap();
        assert!(operation.name.starts_with("operations/"), "{operation:?}");
        assert_eq!(operation.jurisdiction, "140100");

        // Followed to its end, as `quotahub reconcile` does.
        let mut done = operation.clone();
        while !done.done {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            done = checks
                .get_operation(proto::GetOperationRequest {
                    name: operation.name.clone(),
                })
                .await
                .unwrap()
                .into_inner();
        }
        assert_eq!(done.state, proto::OperationState::Succeeded as i32);
        assert_eq!(done.chunks_done, done.chunks_total);
        assert_eq!(done.institutions, 2);
        // Per roll: OVER_QUOTA, QUOTA_FULL, and the hire's HIRE_WITHOUT_APPROVAL and OVER_PLAN.
        assert_eq!(done.raised, 8, "{done:?}");
        assert_eq!(done.open, 8);

        // A caller from before jobs waits for its job and gets the answer it always got.
        let waited = checks
            .reconcile(proto::ReconcileRequest::default())
            .await
            .unwrap()
            .into_inner();
        let again = waited.operation.clone().unwrap();
        assert!(again.done && again.name != done.name, "{again:?}");
        assert_eq!((waited.raised, waited.updated, waited.resolved), (0, 0, 0));
        assert_eq!((waited.institutions, waited.open), (2, 8));
        let dry = checks
            .reconcile(proto::ReconcileRequest {
                as_of: "2020-06-01".into(),
                dry_run: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // Before the hires nobody was on a roll: the roll's findings would resolve (reported,
        // not kept), the dated ones stay.
        assert_eq!(dry.resolved, 4, "{dry:?}");
        assert_eq!(dry.changes.len(), 4);
        assert!(!dry.kept);

        // GetOperation reads the same; ListOperations lists it, newest first.
        let got = checks
            .get_operation(proto::GetOperationRequest {
                name: operation.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, done);
        let listed = checks
            .list_operations(proto::ListOperationsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.operations.len(), 3);
        assert_eq!(listed.operations.last(), Some(&done));

        // Cancelling an ended job changes nothing.
        let cancelled = checks
            .cancel_operation(proto::CancelOperationRequest {
                name: operation.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.state, proto::OperationState::Succeeded as i32);

        // A district sees neither the city's job nor, in its list, anything of the city's.
        let mut district = proto::reconciliation_service_client::ReconciliationServiceClient::new(
            app.channel(&agency("140105", AgencyKind::Audit)).await,
        );
        let status = district
            .get_operation(proto::GetOperationRequest {
                name: operation.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let status = district
            .cancel_operation(proto::CancelOperationRequest {
                name: operation.name.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(
            district
                .list_operations(proto::ListOperationsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .operations
                .is_empty()
        );
        let status = district
            .get_operation(proto::GetOperationRequest {
                name: "not-an-operation".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        // Finance may not follow re-checks.
        let status = proto::reconciliation_service_client::ReconciliationServiceClient::new(
            app.channel(&agency("140100", AgencyKind::Finance)).await,
        )
        .list_operations(proto::ListOperationsRequest::default())
        .await
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }

    fn lease() -> Lease {
        Lease {
            name: "reconcile",
            holder: "test-replica".into(),
            seconds: 60,
        }
    }

    /// A hub stopped after the first chunk of a job: the job's row says how far it got; the next
    /// hub to hold the lease checks only the institutions after it.
    async fn a_job_goes_on_from_its_last_finished_chunk(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = &store_alone(&db).await;
        let (first, second) = two_rolls_over_quota(store).await;
        let today = store.checks().clock.today();
        let job = store
            .start_recheck(None, today, false, "test")
            .await
            .unwrap();
        assert_eq!(job.state, JobState::Running);
        // What a hub that checked the first institution and then stopped leaves behind.
        sqlx::query(
            "UPDATE recheck_jobs SET chunks_total = 2, chunks_done = 1, institutions = 2, done_through = $1 WHERE id = $2",
        )
        .bind(first.clone())
        .bind(job.id.clone())
        .execute(store.readers())
        .await
        .unwrap();

        let (_, stopped) = tokio::sync::watch::channel(false);
        store
            .take_lease("reconcile", "test-replica", 60)
            .await
            .unwrap();
        store.run_rechecks(&lease(), &stopped).await.unwrap();

        let done = store.recheck_job(&job.id).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!((done.chunks_done, done.chunks_total), (2, 2));
        let kept = store
            .findings(&FindingFilter {
                open: true,
                limit: u32::MAX,
                ..FindingFilter::default()
            })
            .await
            .unwrap();
        assert!(
            kept.iter().all(|f| f.finding.key.institution == second),
            "{kept:?}"
        );
        assert!(!kept.is_empty());
        assert_eq!(done.raised, kept.len() as i64);
    }

    async fn a_cancelled_job_stops_before_its_next_chunk(backend: Backend) {
        let db = TestDb::new(backend).await;
        let store = &store_alone(&db).await;
        two_rolls_over_quota(store).await;
        let job = store
            .start_recheck(None, store.checks().clock.today(), false, "test")
            .await
            .unwrap();
        let asked = store.cancel_recheck(&job.id).await.unwrap().unwrap();
        assert!(asked.cancel_requested);
        assert_eq!(asked.state, JobState::Running);

        let (_, stopped) = tokio::sync::watch::channel(false);
        store.run_rechecks(&lease(), &stopped).await.unwrap();
        let done = store.recheck_job(&job.id).await.unwrap().unwrap();
        assert_eq!(done.state, JobState::Cancelled);
        assert_eq!(done.chunks_done, 0);
        assert!(done.finished_at.is_some());
        // A shutdown leaves a job running, to go on later; none is left here.
        assert!(
            store
                .recheck_jobs(10)
                .await
                .unwrap()
                .iter()
                .all(|j| j.state != JobState::Running)
        );
    }
}
