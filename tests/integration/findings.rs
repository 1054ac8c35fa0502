//! Findings through the real server: raised by the push that makes them true (and listed in its
//! answer), resolved by the push that fixes the data, re-checks on demand, pre-checks that agree
//! with what a push would find, and the regional balance.

use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::{FindingChangeType, RuleCode, Verdict};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_push_raises_the_finding_it_makes_true_and_a_fix_resolves_it,
    check_hire_and_verify_funding_change_nothing_and_agree_with_the_rules,
    a_reconcile_finds_what_the_pushes_found_and_reports_the_balance,
    an_initial_load_without_push_checks_is_caught_up_by_a_reconcile,
);

fn changes(result: &proto::RecordResult) -> Vec<(i32, i32, String)> {
    result
        .findings
        .iter()
        .map(|change| {
            let finding = change.finding.as_ref().unwrap();
            (change.change, finding.code, finding.subject.clone())
        })
        .collect()
}

async fn open_findings(app: &TestApp, jurisdiction: &str) -> Vec<proto::Finding> {
    app.query_findings(jurisdiction).await
}

impl TestApp {
    pub async fn query_findings(&self, jurisdiction: &str) -> Vec<proto::Finding> {
        let channel = self
            .channel(&agency(jurisdiction, AgencyKind::Discipline))
            .await;
        proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
            .list_findings(proto::ListFindingsRequest {
                page_size: 5_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .findings
    }
}

async fn a_push_raises_the_finding_it_makes_true_and_a_fix_resolves_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ("inst", &unit, "140100"))
        .await
        .unwrap();
    staffing.push_quota(quota("q1", &unit, 2)).await.unwrap();
    let mut approval = proto::HiringApproval {
        record_id: "a1".into(),
        approval_number: "并编审〔2020〕7号".into(),
        institution_uscc: unit.clone(),
        category: proto::QuotaCategory::Administrative as i32,
        approved_entries: 10,
        issued_on: "2020-01-01".into(),
        valid_until: "2030-12-31".into(),
    };
    staffing
        .push_hiring_approval(approval.clone())
        .await
        .unwrap();
    for year in 2020..=2021 {
        staffing
            .push_staffing_plan(proto::StaffingPlan {
                record_id: format!("plan-{year}"),
                institution_uscc: unit.clone(),
                year,
                category: proto::QuotaCategory::Administrative as i32,
                channel: proto::HiringChannel::OpenRecruitment as i32,
                approved_count: 5,
                approval_document: "并编发〔2020〕9号".into(),
            })
            .await
            .unwrap();
    }
    let mut hr = app.hr("140100").await;
    let first = hr
        .push_personnel_event(hire("h1", &resident(1), &unit, "2020-03-01"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.findings.is_empty(), "{:?}", first.findings);
    // The second hire fills the quota: a warning.
    let second = hr
        .push_personnel_event(hire("h2", &resident(2), &unit, "2020-04-01"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        changes(&second),
        vec![(
            FindingChangeType::Raised as i32,
            RuleCode::QuotaFull as i32,
            "ADMINISTRATIVE".into()
        )]
    );
    // The third goes over it.
    let third = hr
        .push_personnel_event(hire("h3", &resident(3), &unit, "2021-05-01"))
        .await
        .unwrap()
        .into_inner();
    let third_changes = changes(&third);
    assert!(third_changes.contains(&(
        FindingChangeType::Raised as i32,
        RuleCode::OverQuota as i32,
        "ADMINISTRATIVE".into()
    )));
    assert!(third_changes.contains(&(
        FindingChangeType::Updated as i32,
        RuleCode::QuotaFull as i32,
        "ADMINISTRATIVE".into()
    )));
    let over = third
        .findings
        .iter()
        .find(|c| c.finding.as_ref().unwrap().code == RuleCode::OverQuota as i32)
        .unwrap();
    let finding = over.finding.as_ref().unwrap();
    assert_eq!((finding.actual, finding.limit), (3, 2));
    assert_eq!(finding.severity, proto::Severity::High as i32);
    assert!(finding.explanation_zh.contains('3') && !finding.explanation_en.is_empty());
    let evidence: Vec<&str> = finding.evidence.iter().map(|e| e.kind.as_str()).collect();
    assert!(evidence.contains(&"quota"));
    assert_eq!(evidence.iter().filter(|k| **k == "person").count(), 3);

    // Resending the hire changes nothing and lists nothing.
    let again = hr
        .push_personnel_event(hire("h3", &resident(3), &unit, "2021-05-01"))
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed && again.findings.is_empty());
    assert_eq!(open_findings(&app, "140100").await.len(), 2);

    // The staffing office approves a larger quota: both findings resolve.
    let fix = staffing
        .push_quota(quota("q2", &unit, 5))
        .await
        .unwrap()
        .into_inner();
    let mut fixed = changes(&fix);
    fixed.sort();
    assert_eq!(
        fixed,
        vec![
            (
                FindingChangeType::Resolved as i32,
                RuleCode::OverQuota as i32,
                "ADMINISTRATIVE".into()
            ),
            (
                FindingChangeType::Resolved as i32,
                RuleCode::QuotaFull as i32,
                "ADMINISTRATIVE".into()
            ),
        ]
    );
    assert!(open_findings(&app, "140100").await.is_empty());

    // A hire beyond the approval's entries: HIRE_WITHOUT_APPROVAL, resolved by a larger approval.
    approval.record_id = "a2".into();
    approval.approved_entries = 3;
    approval.approval_number = "并编审〔2021〕1号".into();
    staffing
        .push_hiring_approval(approval.clone())
        .await
        .unwrap();
    let mut late = hire("h4", &resident(4), &unit, "2021-06-01");
    late.approval_number = "并编审〔2099〕1号".into();
    let result = hr.push_personnel_event(late).await.unwrap().into_inner();
    assert!(changes(&result).contains(&(
        FindingChangeType::Raised as i32,
        RuleCode::HireWithoutApproval as i32,
        resident(4)
    )));
    let cover = proto::HiringApproval {
        record_id: "a3".into(),
        approval_number: "并编审[2099]1号".into(),
        ..approval
    };
    let result = staffing
        .push_hiring_approval(cover)
        .await
        .unwrap()
        .into_inner();
    assert!(changes(&result).contains(&(
        FindingChangeType::Resolved as i32,
        RuleCode::HireWithoutApproval as i32,
        resident(4)
    )));

    // Resolved findings stay on record.
    let channel = app.channel(&agency("140100", AgencyKind::Audit)).await;
    let resolved = proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
        .list_findings(proto::ListFindingsRequest {
            state: proto::FindingState::Resolved as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert_eq!(resolved.len(), 3);
    assert!(
        resolved
            .iter()
            .all(|f| f.resolved_at.is_some() && f.version >= 2)
    );
}

async fn check_hire_and_verify_funding_change_nothing_and_agree_with_the_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ("inst", &unit, "140100"))
        .await
        .unwrap();
    staffing.push_quota(quota("q1", &unit, 2)).await.unwrap();
    staffing
        .push_hiring_approval(proto::HiringApproval {
            record_id: "a1".into(),
            approval_number: "并编审〔2020〕7号".into(),
            institution_uscc: unit.clone(),
            category: proto::QuotaCategory::Administrative as i32,
            approved_entries: 1,
            issued_on: "2020-01-01".into(),
            valid_until: "2030-12-31".into(),
        })
        .await
        .unwrap();
    staffing
        .push_staffing_plan(proto::StaffingPlan {
            record_id: "plan".into(),
            institution_uscc: unit.clone(),
            year: 2024,
            category: proto::QuotaCategory::Administrative as i32,
            channel: proto::HiringChannel::OpenRecruitment as i32,
            approved_count: 1,
            approval_document: "x".into(),
        })
        .await
        .unwrap();
    let channel = app.channel(&agency("140100", AgencyKind::Hr)).await;
    let mut checks =
        proto::reconciliation_service_client::ReconciliationServiceClient::new(channel);
    let ask = |resident_id: String, approval: &str| proto::CheckHireRequest {
        institution_uscc: unit.clone(),
        category: proto::QuotaCategory::Administrative as i32,
        channel: proto::HiringChannel::OpenRecruitment as i32,
        approval_number: approval.into(),
        resident_id,
        date: "2024-03-01".into(),
        ..Default::default()
    };
    let verdict = checks
        .check_hire(ask(resident(1), "并编审[2020]7号"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        verdict.verdict,
        Verdict::Allow as i32,
        "{:?}",
        verdict.reasons
    );
    assert_eq!(
        (verdict.approved_quota, verdict.active, verdict.vacancy),
        (2, 0, 2)
    );
    assert_eq!(
        (
            verdict.approval_entries,
            verdict.approval_used,
            verdict.plan_approved
        ),
        (1, 0, 1)
    );

    // No approval: denied, with the rule named.
    let verdict = checks
        .check_hire(ask(resident(1), ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.verdict, Verdict::Deny as i32);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.code == RuleCode::HireWithoutApproval as i32)
    );

    // The pre-check changed nothing: no findings, nobody on the roll.
    assert!(app.query_findings("140100").await.is_empty());

    // After one hire, the approval is used up and the plan too: a second hire is denied (approval)
    // and would also exceed the plan (a warning among the reasons).
    app.hr("140100")
        .await
        .push_personnel_event(hire("h1", &resident(1), &unit, "2024-02-01"))
        .await
        .unwrap();
    let verdict = checks
        .check_hire(ask(resident(2), "并编审〔2020〕7号"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.verdict, Verdict::Deny as i32);
    let codes: Vec<i32> = verdict.reasons.iter().map(|r| r.code).collect();
    assert!(
        codes.contains(&(RuleCode::HireWithoutApproval as i32)),
        "{codes:?}"
    );
    assert!(codes.contains(&(RuleCode::OverPlan as i32)), "{codes:?}");
    assert!(codes.contains(&(RuleCode::QuotaFull as i32)), "{codes:?}");
    assert_eq!(verdict.approval_used, 1);

    // Someone already on this roll cannot be hired into another unit without a duplicate.
    let other = uscc("140100", 2);
    staffing
        .push_institution(organ("inst2", &other, "140100"))
        .await
        .unwrap();
    let verdict = checks
        .check_hire(proto::CheckHireRequest {
            institution_uscc: other.clone(),
            ..ask(resident(1), "")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.code == RuleCode::DuplicateEnrollment as i32)
    );
    assert_eq!(verdict.other_institutions, vec![unit.clone()]);

    // Funding: at most min(quota, active) = min(2, 1) = 1.
    let channel = app.channel(&agency("140100", AgencyKind::Finance)).await;
    let mut finance_checks =
        proto::reconciliation_service_client::ReconciliationServiceClient::new(channel);
    let funding = |headcount| proto::VerifyFundingRequest {
        institution_uscc: unit.clone(),
        category: proto::QuotaCategory::Administrative as i32,
        period: "2024-03".into(),
        requested_headcount: headcount,
        amount_fen: 100,
    };
    let ok = finance_checks
        .verify_funding(funding(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.verdict, Verdict::Allow as i32, "{:?}", ok.reasons);
    assert_eq!((ok.approved_quota, ok.active, ok.max_fundable), (2, 1, 1));
    let too_much = finance_checks
        .verify_funding(funding(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(too_much.verdict, Verdict::Deny as i32);
    assert!(
        too_much
            .reasons
            .iter()
            .any(|r| r.code == RuleCode::FundedOverQuota as i32)
    );

    // HR may not ask finance's question, nor finance HR's.
    let status = checks.verify_funding(funding(1)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = finance_checks
        .check_hire(ask(resident(3), ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    // A district's agencies may not ask about the city's own institution: refused, the place named.
    let district = |kind| {
        let app = &app;
        async move {
            proto::reconciliation_service_client::ReconciliationServiceClient::new(
                app.channel(&agency("140105", kind)).await,
            )
        }
    };
    let outside = |status: tonic::Status| {
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("lies in 140100"),
            "{}",
            status.message()
        );
    };
    let mut district_hr = district(AgencyKind::Hr).await;
    outside(
        district_hr
            .check_hire(ask(resident(3), ""))
            .await
            .unwrap_err(),
    );
    let mut district_finance = district(AgencyKind::Finance).await;
    outside(
        district_finance
            .verify_funding(funding(1))
            .await
            .unwrap_err(),
    );
}

async fn a_reconcile_finds_what_the_pushes_found_and_reports_the_balance(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b) = (uscc("140100", 1), uscc("140105", 1));
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ("ia", &a, "140100"))
        .await
        .unwrap();
    staffing
        .push_institution(organ("ib", &b, "140105"))
        .await
        .unwrap();
    staffing.push_quota(quota("qa", &a, 1)).await.unwrap();
    staffing.push_quota(quota("qb", &b, 10)).await.unwrap();
    let events = vec![
        hire("h1", &resident(1), &a, "2021-01-01"),
        hire("h2", &resident(2), &a, "2021-01-01"),
        hire("h3", &resident(3), &b, "2021-01-01"),
        // The same person on two rolls.
        hire("h4", &resident(1), &b, "2022-01-01"),
    ];
    app.hr("140100")
        .await
        .push_personnel_events(tokio_stream::iter(events))
        .await
        .unwrap();
    // Ghost pay: nobody of that name on any roll.
    app.finance("140105")
        .await
        .push_payroll_line(payroll("p1", &resident(9), &b, "2024-01"))
        .await
        .unwrap();
    let before = app.query_findings("140100").await;
    let codes: Vec<i32> = before.iter().map(|f| f.code).collect();
    for code in [
        RuleCode::OverQuota,
        RuleCode::DuplicateEnrollment,
        RuleCode::PaidNotOnRoll,
        RuleCode::HireWithoutApproval,
        RuleCode::OverPlan,
    ] {
        assert!(codes.contains(&(code as i32)), "{code:?} in {codes:?}");
    }
    // The district sees its own findings only.
    let district = app.query_findings("140105").await;
    assert!(district.iter().all(|f| f.jurisdiction == "140105"));
    assert!(district.len() < before.len());

    // A full re-check finds nothing new and resolves nothing: the pushes kept the findings true.
    let channel = app
        .channel(&agency("140100", AgencyKind::StaffingOffice))
        .await;
    let mut reconciliation =
        proto::reconciliation_service_client::ReconciliationServiceClient::new(channel);
    let report = reconciliation
        .reconcile(proto::ReconcileRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (report.raised, report.updated, report.resolved),
        (0, 0, 0),
        "{:?}",
        report.changes
    );
    assert_eq!(report.open as usize, before.len());
    assert_eq!(report.institutions, 2);

    // The core rules written again as plain SQL find exactly what the engine keeps.
    let core: std::collections::BTreeSet<(String, String, String, String)> = before
        .iter()
        .filter(|f| {
            quotahub::store::plain_sql::CODES
                .iter()
                .any(|c| quotahub::api::convert::Wire::to_wire(*c) == f.code)
        })
        .map(|f| {
            let code = proto::RuleCode::try_from(f.code)
                .unwrap()
                .as_str_name()
                .trim_start_matches("RULE_CODE_")
                .to_owned();
            (
                code,
                f.institution_uscc.clone(),
                f.subject.clone(),
                f.period.clone(),
            )
        })
        .collect();
    let sql: std::collections::BTreeSet<(String, String, String, String)> = app
        .store
        .plain_sql_findings(app.store.checks().clock.today())
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.code.to_string(), k.institution, k.subject, k.period))
        .collect();
    assert_eq!(core.len(), 3, "{core:?}");
    assert_eq!(core, sql);

    // A district may not re-check the city.
    let channel = app.channel(&agency("140105", AgencyKind::Audit)).await;
    let status = proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
        .reconcile(proto::ReconcileRequest {
            jurisdiction: "140100".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);

    let balance = reconciliation
        .regional_balance(proto::RegionalBalanceRequest {
            as_of: "2023-01-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let rows: Vec<(String, i64, i64, i64)> = balance
        .rows
        .iter()
        .map(|r| (r.jurisdiction.clone(), r.approved, r.active, r.surplus))
        .collect();
    assert_eq!(
        rows,
        vec![("140100".into(), 1, 2, -1), ("140105".into(), 10, 2, 8)]
    );
}

mod reversal {
    use super::*;

    on_both_backends!(a_reversed_payroll_line_stops_counting);

    async fn a_reversed_payroll_line_stops_counting(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let unit = uscc("140100", 1);
        let mut finance = app.finance("140100").await;
        let ghost = finance
            .push_payroll_line(payroll("p1", &resident(7), &unit, "2024-02"))
            .await
            .unwrap()
            .into_inner();
        let raised: Vec<i32> = ghost
            .findings
            .iter()
            .map(|c| c.finding.as_ref().unwrap().code)
            .collect();
        assert!(
            raised.contains(&(RuleCode::PaidNotOnRoll as i32)),
            "{raised:?}"
        );

        // A reversal must match the line it voids.
        let mut wrong = payroll("p1-rev", &resident(7), &unit, "2024-03");
        wrong.reverses_record_id = "p1".into();
        assert_eq!(
            finance.push_payroll_line(wrong).await.unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );

        let mut reversal = payroll("p1-rev", &resident(7), &unit, "2024-02");
        reversal.reverses_record_id = "p1".into();
        let fixed = finance
            .push_payroll_line(reversal.clone())
            .await
            .unwrap()
            .into_inner();
        let resolved: Vec<(i32, i32)> = fixed
            .findings
            .iter()
            .map(|c| (c.change, c.finding.as_ref().unwrap().code))
            .collect();
        assert!(
            resolved.contains(&(
                FindingChangeType::Resolved as i32,
                RuleCode::PaidNotOnRoll as i32
            )),
            "{resolved:?}"
        );

        // A line is reversed once; both lines stay on record and the total counts neither.
        reversal.record_id = "p1-rev2".into();
        assert_eq!(
            finance
                .push_payroll_line(reversal)
                .await
                .unwrap_err()
                .code(),
            tonic::Code::FailedPrecondition
        );
        let listed = app
            .query("140100", AgencyKind::Audit)
            .await
            .list_payroll(proto::ListPayrollRequest {
                institution_uscc: unit,
                period: "2024-02".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.lines.len(), 2);
        assert_eq!(listed.total_gross_fen, 0);
        assert!(app.query_findings("140100").await.is_empty());
    }
}

mod schedule {
    use std::time::Duration;

    use clap::Parser;
    use quotahub::store::{Store, StoreOptions};

    use super::*;

    on_both_backends!(
        the_scheduled_recheck_restores_findings_and_one_replica_holds_the_lease,
        quotahub_reconcile_reports_a_recheck
    );

    async fn the_scheduled_recheck_restores_findings_and_one_replica_holds_the_lease(
        backend: Backend,
    ) {
        let app = TestApp::spawn_scheduled(backend, Duration::from_millis(200)).await;
        let unit = uscc("140100", 1);
        app.finance("140100")
            .await
            .push_payroll_line(payroll("p1", &resident(1), &unit, "2024-01"))
            .await
            .unwrap();
        // Ghost pay, at a unit the registry does not know.
        assert_eq!(app.query_findings("140100").await.len(), 2);
        // Findings lost behind the hub's back come back at the next scheduled re-check.
        // (The schedule may run again at once, so the deletion is checked by its count, not by
        // reading the findings.)
        let deleted = sqlx::query("DELETE FROM findings")
            .execute(app.store.readers())
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(deleted, 2);
        let mut restored = Vec::new();
        for _ in 0..100 {
            restored = app.query_findings("140100").await;
            if !restored.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!restored.is_empty(), "the schedule re-checked within 5 s");
        let codes: Vec<i32> = app
            .query_findings("140100")
            .await
            .iter()
            .map(|f| f.code)
            .collect();
        assert_eq!(
            codes,
            vec![
                RuleCode::PaidNotOnRoll as i32,
                RuleCode::UnregisteredInstitution as i32
            ]
        );

        // Replicas share the lease: while one holds it, another cannot take it.
        let other = Store::connect(app.db.url(), &StoreOptions::default())
            .await
            .unwrap();
        assert!(
            other
                .take_lease("test-work", "replica-a", 60)
                .await
                .unwrap()
        );
        assert!(
            !app.store
                .take_lease("test-work", "replica-b", 60)
                .await
                .unwrap()
        );
        assert!(
            other
                .take_lease("test-work", "replica-a", 60)
                .await
                .unwrap(),
            "the holder renews"
        );
    }

    async fn quotahub_reconcile_reports_a_recheck(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let unit = uscc("140100", 1);
        app.finance("140100")
            .await
            .push_payroll_line(payroll("p1", &resident(1), &unit, "2024-01"))
            .await
            .unwrap();
        sqlx::query("DELETE FROM findings")
            .execute(app.store.readers())
            .await
            .unwrap();
        let files = ClientFiles::new(&agency("140100", AgencyKind::StaffingOffice));
        let (ca, cert, key) = (files.ca.clone(), files.cert.clone(), files.key.clone());
        let endpoint = app.endpoint();
        let args = |dry: bool| {
            let mut args = vec![
                "quotahub",
                "reconcile",
                "--server",
                &endpoint,
                "--ca",
                &ca,
                "--cert",
                &cert,
                "--key",
                &key,
            ];
            if dry {
                args.push("--dry-run");
            }
            quotahub::cli::Cli::parse_from(args)
        };
        quotahub::cli::run(args(true)).await.unwrap();
        assert!(
            app.query_findings("140100").await.is_empty(),
            "a dry run keeps nothing"
        );
        quotahub::cli::run(args(false)).await.unwrap();
        assert_eq!(app.query_findings("140100").await.len(), 2);
    }
}

/// With push-time checks off (an initial load of history), pushes answer without findings and
/// raise none; the full re-check that follows raises what checked pushes would have.
async fn an_initial_load_without_push_checks_is_caught_up_by_a_reconcile(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ("inst", &unit, "140100"))
        .await
        .unwrap();
    staffing.push_quota(quota("q1", &unit, 1)).await.unwrap();

    app.store.set_push_checks(false);
    let events = vec![
        hire("h1", &resident(1), &unit, "2021-01-01"),
        hire("h2", &resident(2), &unit, "2021-01-01"),
    ];
    let response = app
        .hr("140100")
        .await
        .push_personnel_events(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results.len(), 2);
    assert!(
        response
            .results
            .iter()
            .all(|r| r.error.is_none() && r.findings.is_empty()),
        "{:?}",
        response.results
    );
    assert!(app.query_findings("140100").await.is_empty());

    app.store.set_push_checks(true);
    let channel = app
        .channel(&agency("140100", AgencyKind::StaffingOffice))
        .await;
    let report = proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
        .reconcile(proto::ReconcileRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(report.raised > 0, "{report:?}");
    let codes: Vec<i32> = app
        .query_findings("140100")
        .await
        .iter()
        .map(|f| f.code)
        .collect();
    assert!(codes.contains(&(RuleCode::OverQuota as i32)), "{codes:?}");

    // Checks on again: the next push answers with what it changes.
    let result = app
        .hr("140100")
        .await
        .push_personnel_event(hire("h3", &resident(3), &unit, "2021-02-01"))
        .await
        .unwrap()
        .into_inner();
    assert!(!result.findings.is_empty(), "{result:?}");
}

/// The rule codes and their severities are part of the contract: the domain description in the
/// repository names every one the hub raises, with the severity the hub gives it.
#[test]
fn the_domain_description_names_every_rule_code_with_its_severity() {
    use quotahub::domain::Coded;
    use quotahub::domain::findings::RuleCode as Code;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DOMAIN.md");
    let text = std::fs::read_to_string(&path).expect("docs/DOMAIN.md");
    for code in Code::ALL {
        let row = text
            .lines()
            .find(|line| line.starts_with(&format!("| `{}` |", code.code())))
            .unwrap_or_else(|| panic!("docs/DOMAIN.md has no row for {}", code.code()));
        assert!(
            row.trim_end()
                .ends_with(&format!("| {} |", code.severity().code())),
            "{row}: the hub gives {} severity {}",
            code.code(),
            code.severity().code()
        );
    }
}
