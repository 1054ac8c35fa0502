//! The incremental path and the full re-check agree: for random sequences of pushes by every
//! agency, the findings kept up push by push equal those of a re-check from scratch of the same data.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use quotahub::api::convert::Pushed;
use quotahub::clock::Clock;
use quotahub::domain::findings::{FindingKey, Scope};
use quotahub::domain::rules;
use quotahub::domain::{Agency, AgencyKind};
use quotahub::proto;
use quotahub::store::Store;
use quotahub::store::plain_sql;
use quotahub::store::reconcile::FindingFilter;

use crate::helpers::*;

/// A push in the random sequence.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Institution {
        unit: u8,
        self_funded: bool,
        abolished: bool,
    },
    Quota {
        unit: u8,
        count: u32,
    },
    Post {
        unit: u8,
        count: u32,
    },
    Plan {
        unit: u8,
        count: u32,
        /// The policy-placement channel's plan (the reserve), not open recruitment's.
        reserve: bool,
    },
    Approval {
        unit: u8,
        entries: u32,
    },
    Event {
        kind: u8,
        person: u8,
        unit: u8,
        target: u8,
        day: u16,
        category: u8,
    },
    Appoint {
        person: u8,
        unit: u8,
        remove: bool,
        day: u16,
    },
    Pay {
        person: u8,
        unit: u8,
        month: u8,
    },
    Fund {
        unit: u8,
        headcount: u32,
        month: u8,
    },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<bool>(), prop::bool::weighted(0.15)).prop_map(
            |(unit, self_funded, abolished)| Op::Institution {
                unit,
                self_funded,
                abolished
            }
        ),
        (0u8..4, 0u32..4).prop_map(|(unit, count)| Op::Quota { unit, count }),
        (0u8..4, 0u32..2).prop_map(|(unit, count)| Op::Post { unit, count }),
        (0u8..4, 0u32..3, any::<bool>()).prop_map(|(unit, count, reserve)| Op::Plan {
            unit,
            count,
            reserve
        }),
        (0u8..4, 0u32..3).prop_map(|(unit, entries)| Op::Approval { unit, entries }),
        (0u8..9, 0u8..6, 0u8..4, 0u8..4, 0u16..1400, 0u8..3).prop_map(
            |(kind, person, unit, target, day, category)| Op::Event {
                kind,
                person,
                unit,
                target,
                day,
                category
            }
        ),
        (0u8..6, 0u8..4, any::<bool>(), 0u16..1400).prop_map(|(person, unit, remove, day)| {
            Op::Appoint {
                person,
                unit,
                remove,
                day,
            }
        }),
        (0u8..6, 0u8..4, 0u8..4).prop_map(|(person, unit, month)| Op::Pay {
            person,
            unit,
            month
        }),
        (0u8..4, 0u32..4, 0u8..4).prop_map(|(unit, headcount, month)| Op::Fund {
            unit,
            headcount,
            month
        }),
    ]
}

fn unit_code(unit: u8) -> String {
    uscc("140100", u32::from(unit) + 1)
}

fn day(offset: u16) -> String {
    (chrono::NaiveDate::from_ymd_opt(2021, 1, 1).unwrap() + chrono::Days::new(u64::from(offset)))
        .to_string()
}

fn month(m: u8) -> String {
    format!("2024-{:02}", m + 3)
}

const CATEGORIES: [proto::QuotaCategory; 3] = [
    proto::QuotaCategory::Administrative,
    proto::QuotaCategory::PublicInstitution,
    proto::QuotaCategory::PoliticalLegal,
];

/// Pushes one op through the store as its agency would; refusals are part of the game.
pub(crate) async fn push(store: &Store, n: usize, op: &Op) {
    let office = agency("140100", AgencyKind::StaffingOffice);
    let id = format!("r{n}");
    async fn one<P: Pushed>(store: &Store, agency: &Agency, message: P) {
        if let Ok(submission) = message.to_submission() {
            store.push(agency, &[submission]).await.unwrap();
        }
    }
    match op.clone() {
        Op::Institution {
            unit,
            self_funded,
            abolished,
        } => {
            let mut institution = organ(&id, &unit_code(unit), "140100");
            if unit % 2 == 1 {
                institution.kind = proto::InstitutionKind::PublicInstitution as i32;
                institution.funding_form = if self_funded {
                    proto::FundingForm::SelfFunded
                } else {
                    proto::FundingForm::Full
                } as i32;
            }
            institution.grade = if unit == 0 {
                proto::Grade::SectionDeputy
            } else {
                proto::Grade::DivisionPrincipal
            } as i32;
            if abolished {
                institution.status = proto::InstitutionStatus::Abolished as i32;
                institution.status_since = "2023-01-01".into();
            }
            one(store, &office, institution).await;
        }
        Op::Quota { unit, count } => one(store, &office, quota(&id, &unit_code(unit), count)).await,
        Op::Post { unit, count } => {
            let post = proto::LeaderPost {
                record_id: id,
                institution_uscc: unit_code(unit),
                level: proto::LeaderLevel::Division as i32,
                position: proto::LeaderPosition::Deputy as i32,
                approved_count: count,
                effective_from: "2020-01-01".into(),
                approval_document: "d".into(),
                ..Default::default()
            };
            one(store, &office, post).await;
        }
        Op::Plan {
            unit,
            count,
            reserve,
        } => {
            for year in [2021, 2022, 2023, 2024] {
                let plan = proto::StaffingPlan {
                    record_id: format!("{id}-{year}"),
                    institution_uscc: unit_code(unit),
                    year,
                    category: proto::QuotaCategory::Administrative as i32,
                    channel: if reserve {
                        proto::HiringChannel::PolicyPlacement
                    } else {
                        proto::HiringChannel::OpenRecruitment
                    } as i32,
                    approved_count: count,
                    approval_document: "d".into(),
                };
                one(store, &office, plan).await;
            }
        }
        Op::Approval { unit, entries } => {
            let approval = proto::HiringApproval {
                record_id: id,
                approval_number: "并编审〔2020〕7号".into(),
                institution_uscc: unit_code(unit),
                category: proto::QuotaCategory::Administrative as i32,
                approved_entries: entries,
                issued_on: "2020-01-01".into(),
                valid_until: "2030-12-31".into(),
            };
            one(store, &office, approval).await;
        }
        Op::Event {
            kind,
            person,
            unit,
            target,
            day: offset,
            category,
        } => {
            use proto::PersonnelEventType as T;
            let kinds = [
                T::Hire,
                T::Hire,
                T::Hire,
                T::Transfer,
                T::Leave,
                T::Return,
                T::Secondment,
                T::Departure,
                T::Retirement,
            ];
            let mut event = hire(
                &id,
                &resident(u32::from(person)),
                &unit_code(unit),
                &day(offset),
            );
            event.event_type = kinds[usize::from(kind)] as i32;
            event.category = CATEGORIES[usize::from(category)] as i32;
            // One hire in three fills the reserve (RESERVE_SHORTFALL).
            if kind == 2 {
                event.channel = proto::HiringChannel::PolicyPlacement as i32;
            }
            if matches!(kinds[usize::from(kind)], T::Transfer | T::Secondment) && target != unit {
                event.target_institution_uscc = unit_code(target);
            }
            one(store, &agency("140100", AgencyKind::Hr), event).await;
        }
        Op::Appoint {
            person,
            unit,
            remove,
            day: offset,
        } => {
            let appointment = proto::Appointment {
                record_id: id,
                action: if remove {
                    proto::AppointmentAction::Remove
                } else {
                    proto::AppointmentAction::Appoint
                } as i32,
                resident_id: resident(u32::from(person)),
                name: "李".into(),
                institution_uscc: unit_code(unit),
                level: proto::LeaderLevel::Division as i32,
                position: proto::LeaderPosition::Deputy as i32,
                rank: proto::Rank::DivisionDeputy as i32,
                effective_on: day(offset),
                appointment_document: "d".into(),
            };
            one(
                store,
                &agency("140100", AgencyKind::Organization),
                appointment,
            )
            .await;
        }
        Op::Pay {
            person,
            unit,
            month: m,
        } => {
            one(
                store,
                &agency("140100", AgencyKind::Finance),
                payroll(
                    &id,
                    &resident(u32::from(person)),
                    &unit_code(unit),
                    &month(m),
                ),
            )
            .await;
        }
        Op::Fund {
            unit,
            headcount,
            month: m,
        } => {
            let funding = proto::Funding {
                record_id: id,
                institution_uscc: unit_code(unit),
                category: proto::QuotaCategory::Administrative as i32,
                period: month(m),
                funded_headcount: headcount,
                amount_fen: i64::from(headcount) * 100,
            };
            one(store, &agency("140100", AgencyKind::Finance), funding).await;
        }
    }
}

/// A fresh database on `backend` and a store on it, its clock on 2024-06-15, with `ops` pushed
/// in order: the data each of the property tests over random pushes starts from. The database
/// lives as long as the first half.
pub(crate) async fn pushed_on(backend: Backend, ops: &[Op]) -> (TestDb, Store) {
    let db = TestDb::new(backend).await;
    let store = db
        .store_on(&Clock::on(
            chrono::NaiveDate::from_ymd_opt(2024, 6, 15).unwrap(),
        ))
        .await;
    for (n, op) in ops.iter().enumerate() {
        push(&store, n, op).await;
    }
    (db, store)
}

/// The open findings, by key, with what they say.
async fn open(store: &Store) -> BTreeMap<String, (i64, i64, Vec<String>)> {
    let filter = FindingFilter {
        open: true,
        limit: u32::MAX,
        ..FindingFilter::default()
    };
    store
        .findings(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|f| {
            let key = format!(
                "{} {} {} {}",
                f.finding.key.code,
                f.finding.key.institution,
                f.finding.key.subject,
                f.finding.key.period
            );
            let evidence = f
                .finding
                .evidence
                .iter()
                .map(|e| format!("{}:{}", e.kind, e.id))
                .collect();
            (key, (f.finding.actual, f.finding.limit, evidence))
        })
        .collect()
}

async fn incremental_equals_from_scratch(
    backend: Backend,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let (_db, store) = pushed_on(backend, &ops).await;
    let kept = open(&store).await;
    sqlx::query("DELETE FROM findings")
        .execute(store.readers())
        .await
        .unwrap();
    let today = store.checks().clock.today();
    store.reconcile(None, today, false).await.unwrap();
    let from_scratch = open(&store).await;
    prop_assert_eq!(&kept, &from_scratch);

    // The core rules written again as plain SQL find exactly the same.
    let engine: BTreeSet<FindingKey> = store
        .findings(&FindingFilter {
            open: true,
            limit: u32::MAX,
            codes: plain_sql::CODES.to_vec(),
            ..FindingFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.finding.key)
        .collect();
    let sql = store.plain_sql_findings(today).await.unwrap();
    prop_assert_eq!(engine, sql);

    // REGIONAL_BALANCE from the kept counts equals the oracle's over a snapshot of everything.
    let everything = Scope {
        everything: true,
        institutions: (0..4).map(unit_code).collect(),
        ..Scope::default()
    };
    let snapshot = store.snapshot_for(&everything).await.unwrap();
    for on in ["2021-01-01", "2022-06-30", "2023-12-31", "2024-06-15"] {
        let on: chrono::NaiveDate = on.parse().unwrap();
        let kept = store.regional_balance(None, on).await.unwrap();
        prop_assert_eq!(&kept, &rules::regional_balance(&snapshot, on), "on {}", on);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn findings_kept_push_by_push_equal_a_full_recheck(ops in prop::collection::vec(op(), 1..45)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(incremental_equals_from_scratch(Backend::Sqlite, ops))?;
    }
}

proptest! {
    // A database per case: fewer cases, the same code paths in the other dialect.
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn on_postgres_findings_kept_push_by_push_equal_a_full_recheck(
        ops in prop::collection::vec(op(), 1..45)
    ) {
        if postgres_given() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(incremental_equals_from_scratch(Backend::Postgres, ops))?;
        }
    }
}
