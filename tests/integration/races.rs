//! What holds when two hub replicas (here, two `Store`s with pools of their own on one database)
//! race on the follow-through: transactions that lock the same keys cannot deadlock, a push cannot
//! undo an escalation step it raced, and a decision or a penalty commits with its registry change
//! or not at all.
//!
//! The races are made deterministic by a third connection that holds a lock (an advisory lock,
//! or a finding's row) while the two replicas queue up behind it in a known order, and then lets
//! go: the test waits for the queue by asking PostgreSQL who waits, never by sleeping a set time.

use chrono::NaiveDate;
use quotahub::api::convert::Pushed;
use quotahub::domain::findings::{FindingKey, RuleCode};
use quotahub::domain::ledger::{ApplicationKind, ApplicationState, PenaltyKind};
use quotahub::domain::{AgencyKind, QuotaCategory, Uscc};
use quotahub::store::ledger::{ApplicationRequest, NewItem};
use quotahub::store::ledger_keys::RequestKey;
use quotahub::store::{Store, StoreOptions, advisory_lock_id};
use sqlx::Connection;

use crate::helpers::*;
use crate::ledger::{open_by_hand, spawn, unit_with};
use crate::on_both_backends;

on_both_backends!(
    a_refused_approval_leaves_neither_the_decision_nor_a_registry_change,
    a_penalty_that_cannot_be_recorded_leaves_the_quota_uncut,
);

/// A second replica on the hub's database, with the hub's clock.
async fn replica(app: &TestApp) -> Store {
    Store::connect(app.db.url(), &StoreOptions::default())
        .await
        .unwrap()
        .with_checks(app.store.checks().clone())
}

/// Waits until `count` sessions of the test's database wait for a lock.
async fn waiters(probe: &mut sqlx::PgConnection, count: i64) {
    for _ in 0..3_000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *probe)
        .await
        .unwrap();
        if waiting >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{count} sessions never came to wait for a lock");
}

fn request_key(key: &str) -> RequestKey {
    RequestKey {
        key: key.into(),
        content_hash: format!("hash of {key}"),
    }
}

fn more_quota() -> ApplicationRequest {
    ApplicationRequest {
        category: Some("ADMINISTRATIVE".into()),
        count: 5,
        ..ApplicationRequest::default()
    }
}

fn over_quota(unit: &str) -> FindingKey {
    FindingKey {
        code: RuleCode::OverQuota,
        institution: unit.into(),
        subject: "ADMINISTRATIVE".into(),
        period: String::new(),
    }
}

/// OpenItem takes the lock of its request's key and then the department's; Apply took them the
/// other way round. Keys share a bounded set of advisory locks, so an application's key may
/// share a lock with an item's: then an item held that lock and waited for the department while
/// an application held the department and waited for that lock, and PostgreSQL broke the
/// deadlock by failing one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_and_an_application_at_once_on_two_replicas_both_commit() {
    if !postgres_given() {
        return;
    }
    let app = spawn(Backend::Postgres).await;
    let unit = unit_with(&app, 1, 1, 2).await;
    let other = replica(&app).await;
    let staffing = agency("140100", AgencyKind::StaffingOffice);
    let department = format!("institution:{unit}");
    let item_key = (0..)
        .map(|n| format!("item-{n}"))
        .find(|key| {
            let lock = format!("ledger-request:{}:ITEM:{key}", staffing.id());
            advisory_lock_id(&lock) != advisory_lock_id(&department)
        })
        .unwrap();
    let shared = advisory_lock_id(&format!("ledger-request:{}:ITEM:{item_key}", staffing.id()));
    // An application key whose lock is the item key's.
    let application_key = (0..1_000_000)
        .map(|n| format!("application-{n}"))
        .find(|key| {
            advisory_lock_id(&format!(
                "ledger-request:{}:APPLICATION:{key}",
                staffing.id()
            )) == shared
        })
        .expect("some key shares the lock");

    let mut holder = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    let mut probe = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(shared)
        .execute(&mut holder)
        .await
        .unwrap();

    let item = {
        let (store, staffing, unit) = (app.store.clone(), staffing.clone(), unit.clone());
        tokio::spawn(async move {
            store
                .open_item(
                    &staffing,
                    NewItem {
                        department: None,
                        title: String::new(),
                        due_on: NaiveDate::from_ymd_opt(2024, 7, 1).unwrap(),
                        finding: Some(over_quota(&unit)),
                    },
                    Some(&request_key(&item_key)),
                )
                .await
        })
    };
    waiters(&mut probe, 1).await;
    let application = {
        let (staffing, unit) = (staffing.clone(), unit.clone());
        tokio::spawn(async move {
            other
                .apply(
                    &staffing,
                    &Uscc::parse(&unit).unwrap(),
                    ApplicationKind::ChangeQuota,
                    more_quota(),
                    "新增职能",
                    None,
                    Some(&request_key(&application_key)),
                )
                .await
        })
    };
    waiters(&mut probe, 2).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    let item = item.await.unwrap().expect("the item is opened");
    let application = application.await.unwrap().expect("the application is made");
    assert_eq!(item.department, unit);
    assert_eq!(application.state, ApplicationState::Pending);
}

/// An escalation step claimed the finding without the institution's lock, and a push that had
/// read the finding before the step wrote its older alert back over it: the step was on the feed
/// and gone from the finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_racing_an_escalation_keeps_the_step() {
    if !postgres_given() {
        return;
    }
    let app = spawn(Backend::Postgres).await;
    let unit = unit_with(&app, 1, 1, 2).await;
    let other = replica(&app).await;
    let key = over_quota(&unit);
    let before = app.store.finding(&key).await.unwrap().expect("over quota");
    assert_eq!(before.alert.escalation_level, 0);

    let mut holder = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    let mut probe = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT version FROM findings WHERE code = 'OVER_QUOTA' AND institution_uscc = $1 FOR UPDATE")
        .bind(&unit)
        .execute(&mut holder)
        .await
        .unwrap();

    // A year on, every deadline has passed.
    let later = quotahub::store::now_micros() + 365 * 24 * 3_600 * 1_000_000;
    let escalation = tokio::spawn(async move { other.escalate_due(later).await });
    waiters(&mut probe, 1).await;
    let push = {
        let (store, unit) = (app.store.clone(), unit.clone());
        tokio::spawn(async move {
            let hr = agency("140100", AgencyKind::Hr);
            let third = hire("h-race", &resident(199), &unit, "2024-01-02")
                .to_submission()
                .unwrap();
            store.push(&hr, &[third]).await
        })
    };
    waiters(&mut probe, 2).await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    let steps = escalation.await.unwrap().expect("the escalation runs");
    let verdicts = push.await.unwrap().expect("the push runs");
    assert!(verdicts[0].is_ok(), "{verdicts:?}");
    assert!(!steps.is_empty(), "the finding escalated");
    let after = app.store.finding(&key).await.unwrap().unwrap();
    assert_eq!(after.finding.actual, 3, "the push's hire is counted");
    assert!(
        after.alert.escalation_level > 0,
        "the escalation step survives the push: {after:?}"
    );
}

/// A writer that changes a finding without the institution's lock (as the escalation did) while
/// a push re-checks it: the push read the older version, and its upsert wrote that version's
/// alert back. Findings are now written only from the version read; the push tries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_never_writes_back_a_finding_changed_since_it_read_it() {
    if !postgres_given() {
        return;
    }
    let app = spawn(Backend::Postgres).await;
    let unit = unit_with(&app, 1, 1, 2).await;
    let key = over_quota(&unit);
    let before = app.store.finding(&key).await.unwrap().expect("over quota");

    let mut writer = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    let mut probe = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut writer).await.unwrap();
    sqlx::query(
        "UPDATE findings SET escalation_level = 2, version = version + 2 \
         WHERE code = 'OVER_QUOTA' AND institution_uscc = $1",
    )
    .bind(&unit)
    .execute(&mut writer)
    .await
    .unwrap();
    let push = {
        let (store, unit) = (app.store.clone(), unit.clone());
        tokio::spawn(async move {
            let hr = agency("140100", AgencyKind::Hr);
            let third = hire("h-race", &resident(199), &unit, "2024-01-02")
                .to_submission()
                .unwrap();
            store.push(&hr, &[third]).await
        })
    };
    // The push has read the finding and waits to write it.
    waiters(&mut probe, 1).await;
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();

    let verdicts = push.await.unwrap().expect("the push runs");
    assert!(verdicts[0].is_ok(), "{verdicts:?}");
    let after = app.store.finding(&key).await.unwrap().unwrap();
    assert_eq!(after.finding.actual, 3, "the push's hire is counted");
    assert_eq!(
        after.alert.escalation_level, 2,
        "the change survives: {after:?}"
    );
    assert_eq!(after.version, before.version + 3);
}

/// Runs statements on the test's database as they are (for a fault the test injects).
async fn execute(app: &TestApp, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(app.store.readers())
        .await
        .unwrap();
}

/// Makes every `operation` (`INSERT`, `DELETE`) on `table` fail, as a lost connection would.
async fn refuse(app: &TestApp, backend: Backend, operation: &str, table: &str) {
    match backend {
        Backend::Sqlite => {
            execute(
                app,
                &format!(
                    "CREATE TRIGGER refuse_{table} BEFORE {operation} ON {table} \
                     BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                ),
            )
            .await;
        }
        Backend::Postgres => {
            execute(
                app,
                "CREATE OR REPLACE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$",
            )
            .await;
            execute(
                app,
                &format!(
                    "CREATE TRIGGER refuse_{table} BEFORE {operation} ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION injected_fault()"
                ),
            )
            .await;
        }
    }
}

async fn allow(app: &TestApp, backend: Backend, table: &str) {
    execute(
        app,
        &match backend {
            Backend::Sqlite => format!("DROP TRIGGER refuse_{table}"),
            Backend::Postgres => format!("DROP TRIGGER refuse_{table} ON {table}"),
        },
    )
    .await;
}

async fn quota_in_force(app: &TestApp, unit: &str) -> u32 {
    let today = app.store.checks().clock.today();
    app.store
        .institution_view(&Uscc::parse(unit).unwrap(), today)
        .await
        .unwrap()
        .unwrap()
        .categories
        .iter()
        .find(|c| c.category == QuotaCategory::Administrative)
        .and_then(|c| c.quota.as_ref())
        .map(|q| q.record.approved_count)
        .unwrap()
}

/// An approval whose registry record is refused: before, the decision was committed first and
/// handed back after the refusal, so a hand-back that failed left an approval without its record.
/// The decision and the push are one transaction now.
async fn a_refused_approval_leaves_neither_the_decision_nor_a_registry_change(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 1, 3, 1).await;
    let staffing = agency("140100", AgencyKind::StaffingOffice);
    let department = Uscc::parse(&unit).unwrap();
    let apply = || {
        app.store.apply(
            &staffing,
            &department,
            ApplicationKind::ChangeQuota,
            more_quota(),
            "新增职能",
            None,
            None,
        )
    };
    let refused = apply().await.unwrap();
    // The registry record the approval would push is refused: its id is taken by other content.
    let taken = quota(&format!("application/{}", refused.id), &unit, 4)
        .to_submission()
        .unwrap();
    assert!(app.store.push(&staffing, &[taken]).await.unwrap()[0].is_ok());
    assert_eq!(quota_in_force(&app, &unit).await, 4);
    // And a decision, once written, is never taken back.
    refuse(&app, backend, "DELETE", "application_decisions").await;

    app.store
        .decide(&staffing, &refused.id, true, "同意")
        .await
        .expect_err("the registry refuses the record");
    let after = app.store.application(&refused.id).await.unwrap().unwrap();
    assert_eq!(after.state, ApplicationState::Pending);
    assert_eq!(after.decision, None);
    assert_eq!(quota_in_force(&app, &unit).await, 4);

    // The happy path commits both.
    let approved = apply().await.unwrap();
    let decided = app
        .store
        .decide(&staffing, &approved.id, true, "同意")
        .await
        .unwrap();
    assert_eq!(decided.state, ApplicationState::Approved);
    assert_eq!(
        decided.decision,
        Some((
            "同意".into(),
            staffing.id(),
            Some(format!("{}/application/{}", staffing.id(), approved.id))
        ))
    );
    assert_eq!(quota_in_force(&app, &unit).await, 5);
    allow(&app, backend, "application_decisions").await;
}

/// A cut of vacant quota whose penalty cannot be recorded: before, the lowered quota was pushed
/// and committed first, so the quota stayed cut with no penalty on record.
async fn a_penalty_that_cannot_be_recorded_leaves_the_quota_uncut(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 2, 5, 1).await;
    let item = open_by_hand(&app, &unit, "2024-07-01").await;
    let office = agency("140100", AgencyKind::StaffingOffice);
    let penalize = || {
        app.store.impose_penalty(
            &office,
            &item.id,
            PenaltyKind::CutVacantQuota,
            Some(QuotaCategory::Administrative),
            2,
            "逾期未整改",
            None,
        )
    };
    refuse(&app, backend, "INSERT", "penalties").await;
    penalize()
        .await
        .expect_err("the penalty cannot be recorded");
    let department = Uscc::parse(&unit).unwrap();
    assert_eq!(app.store.penalties(&department).await.unwrap(), []);
    assert_eq!(
        quota_in_force(&app, &unit).await,
        5,
        "no cut without its penalty"
    );

    allow(&app, backend, "penalties").await;
    let penalty = penalize().await.unwrap();
    assert_eq!(penalty.cut, 2);
    assert_eq!(app.store.penalties(&department).await.unwrap(), [penalty]);
    assert_eq!(quota_in_force(&app, &unit).await, 3);
}
