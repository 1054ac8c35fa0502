//! Correct verdicts and complete reads: a funding pre-check answers for what the funding would
//! make true, a check of another date reports roll findings as of that date, amounts have a
//! ceiling and sums do not overflow, pages hold what they claim, and masking follows the one
//! table of personal data.

use quotahub::api::policy::personal_data;
use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::{RuleCode, Verdict};
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_funding_verdict_depends_on_what_the_funding_would_make_true,
    a_dated_check_and_a_dry_run_report_roll_findings_as_of_their_date,
    amounts_have_a_ceiling_and_the_wage_bill_does_not_overflow,
    roll_and_finding_pages_hold_every_entry_they_claim,
    explanations_are_masked_as_the_personal_data_table_says,
);

type Checks =
    proto::reconciliation_service_client::ReconciliationServiceClient<tonic::transport::Channel>;

async fn checks(app: &TestApp, kind: AgencyKind) -> Checks {
    Checks::new(app.channel(&agency("140100", kind)).await)
}

fn funding(record_id: &str, unit: &str, headcount: u32) -> proto::Funding {
    proto::Funding {
        record_id: record_id.into(),
        institution_uscc: unit.into(),
        category: proto::QuotaCategory::Administrative as i32,
        period: "2024-03".into(),
        funded_headcount: headcount,
        amount_fen: i64::from(headcount) * 800_000,
    }
}

fn field_of(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

async fn a_funding_verdict_depends_on_what_the_funding_would_make_true(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (funded, unfunded) = (uscc("140100", 1), uscc("140100", 2));
    let mut office = app.staffing("140100").await;
    let mut hr = app.hr("140100").await;
    for (n, unit) in [&funded, &unfunded].into_iter().enumerate() {
        office
            .push_institution(organ(&format!("org-{n}"), unit, "140100"))
            .await
            .unwrap();
        office
            .push_quota(quota(&format!("q-{n}"), unit, 10))
            .await
            .unwrap();
        for person in 0..9 {
            let id = 100 * (n as u32 + 1) + person;
            hr.push_personnel_event(hire(&format!("h-{id}"), &resident(id), unit, "2024-01-01"))
                .await
                .unwrap();
        }
    }
    // The first institution already has funding for the period, over the limit.
    let mut finance = app.finance("140100").await;
    finance
        .push_funding(funding("f-1", &funded, 12))
        .await
        .unwrap();

    let mut checks = checks(&app, AgencyKind::Finance).await;
    let ask = |unit: &str, headcount| proto::VerifyFundingRequest {
        institution_uscc: unit.into(),
        category: proto::QuotaCategory::Administrative as i32,
        period: "2024-03".into(),
        requested_headcount: headcount,
        amount_fen: i64::from(headcount) * 800_000,
    };
    for (unit, headcount, expected) in [
        (&unfunded, 12, Verdict::Deny),
        (&funded, 12, Verdict::Deny),
        (&funded, 11, Verdict::Deny),
        (&funded, 13, Verdict::Deny),
        (&funded, 9, Verdict::Allow),
        (&unfunded, 9, Verdict::Allow),
    ] {
        let answer = checks
            .verify_funding(ask(unit, headcount))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.verdict, expected as i32,
            "{headcount} for {unit}: {:?}",
            answer.reasons
        );
        assert_eq!(answer.max_fundable, 9);
        if expected == Verdict::Deny {
            assert!(
                answer
                    .reasons
                    .iter()
                    .any(|r| r.code == RuleCode::FundedOverQuota as i32)
            );
        }
    }

    // A self-funded institution with budget funding already: funding it again is no better.
    let selfish = uscc("140100", 3);
    let mut institution = organ("org-3", &selfish, "140100");
    institution.kind = proto::InstitutionKind::PublicInstitution as i32;
    institution.funding_form = proto::FundingForm::SelfFunded as i32;
    office.push_institution(institution).await.unwrap();
    office.push_quota(quota("q-3", &selfish, 10)).await.unwrap();
    hr.push_personnel_event(hire("h-s", &resident(900), &selfish, "2024-01-01"))
        .await
        .unwrap();
    for round in 0..2 {
        let answer = checks
            .verify_funding(ask(&selfish, 1))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.verdict, Verdict::Deny as i32, "{:?}", answer.reasons);
        assert!(
            answer
                .reasons
                .iter()
                .any(|r| r.code == RuleCode::SelfFundedBudgetPay as i32)
        );
        if round == 0 {
            finance
                .push_funding(funding("f-s", &selfish, 1))
                .await
                .unwrap();
        }
    }
    // Withdrawing the funding (a record of nothing) is what would fix it.
    let answer = checks
        .verify_funding(ask(&selfish, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.verdict,
        Verdict::Allow as i32,
        "{:?}",
        answer.reasons
    );
}

async fn open_roll_findings(app: &TestApp) -> Vec<proto::Finding> {
    checks(app, AgencyKind::Discipline)
        .await
        .list_findings(proto::ListFindingsRequest {
            codes: vec![RuleCode::OverQuota as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings
}

async fn a_dated_check_and_a_dry_run_report_roll_findings_as_of_their_date(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let mut office = app.staffing("140100").await;
    office
        .push_institution(organ("org", &unit, "140100"))
        .await
        .unwrap();
    office.push_quota(quota("q", &unit, 1)).await.unwrap();
    let mut hr = app.hr("140100").await;
    for n in 1..=2 {
        hr.push_personnel_event(hire(&format!("h{n}"), &resident(n), &unit, "2024-01-01"))
            .await
            .unwrap();
    }
    let open = open_roll_findings(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");

    let mut checks = checks(&app, AgencyKind::StaffingOffice).await;
    let resolved_over_quota = |response: &proto::ReconcileResponse| {
        response
            .changes
            .iter()
            .filter(|c| {
                c.change == proto::FindingChangeType::Resolved as i32
                    && c.finding.as_ref().unwrap().code == RuleCode::OverQuota as i32
            })
            .count()
    };
    // Before anyone was on any roll, the roll was not over its quota.
    for dry_run in [true, false] {
        let response = checks
            .reconcile(proto::ReconcileRequest {
                as_of: "2023-06-01".into(),
                dry_run,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resolved_over_quota(&response), 1, "{response:?}");
        assert!(response.resolved >= 1);
        // Reported, never kept: today's roll is still over its quota.
        assert_eq!(open_roll_findings(&app).await, open);
    }
    // A dry run as of today reports the roll too: nothing changes.
    let response = checks
        .reconcile(proto::ReconcileRequest {
            dry_run: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.resolved + response.raised + response.updated, 0);
}

async fn amounts_have_a_ceiling_and_the_wage_bill_does_not_overflow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    app.staffing("140100")
        .await
        .push_institution(organ("org", &unit, "140100"))
        .await
        .unwrap();
    let mut finance = app.finance("140100").await;
    let ceiling = quotahub::domain::MAX_AMOUNT_FEN;
    for (n, gross) in [(1, i64::MAX), (2, ceiling + 1)] {
        let mut line = payroll(&format!("big-{n}"), &resident(n), &unit, "2024-01");
        line.gross_fen = gross;
        let status = finance.push_payroll_line(line).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(field_of(&status), ["gross_fen"]);
    }
    let mut too_much = funding("f-big", &unit, 1);
    too_much.amount_fen = i64::MAX;
    let status = finance.push_funding(too_much).await.unwrap_err();
    assert_eq!(field_of(&status), ["amount_fen"]);
    let status = checks(&app, AgencyKind::Finance)
        .await
        .verify_funding(proto::VerifyFundingRequest {
            institution_uscc: unit.clone(),
            category: proto::QuotaCategory::Administrative as i32,
            period: "2024-01".into(),
            requested_headcount: 1,
            amount_fen: ceiling + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(field_of(&status), ["amount_fen"]);

    // Lines at the ceiling are taken, and their sum is exact.
    for n in 1..=3 {
        let mut line = payroll(&format!("max-{n}"), &resident(n), &unit, "2024-01");
        line.gross_fen = ceiling;
        finance.push_payroll_line(line).await.unwrap();
    }
    let mut at_ceiling = funding("f-max", &unit, 1);
    at_ceiling.amount_fen = ceiling;
    finance.push_funding(at_ceiling).await.unwrap();
    let bill = app
        .query("140100", AgencyKind::Audit)
        .await
        .list_payroll(proto::ListPayrollRequest {
            institution_uscc: unit.clone(),
            period: "2024-01".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bill.total_gross_fen, 3 * ceiling);
}

async fn roll_and_finding_pages_hold_every_entry_they_claim(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let mut office = app.staffing("140100").await;
    office
        .push_institution(organ("org", &unit, "140100"))
        .await
        .unwrap();
    office.push_quota(quota("q", &unit, 10)).await.unwrap();
    let mut hr = app.hr("140100").await;
    for n in 1..=3 {
        hr.push_personnel_event(hire(&format!("h{n}"), &resident(n), &unit, "2024-01-01"))
            .await
            .unwrap();
    }
    // The first person holds four posts at once.
    let posts = [
        (proto::LeaderLevel::Bureau, proto::LeaderPosition::Principal),
        (
            proto::LeaderLevel::Division,
            proto::LeaderPosition::Principal,
        ),
        (
            proto::LeaderLevel::Section,
            proto::LeaderPosition::Principal,
        ),
        (proto::LeaderLevel::Section, proto::LeaderPosition::Deputy),
    ];
    let mut organization = app.organization("140100").await;
    for (n, (level, position)) in posts.into_iter().enumerate() {
        organization
            .push_appointment(proto::Appointment {
                record_id: format!("a{n}"),
                action: proto::AppointmentAction::Appoint as i32,
                resident_id: resident(1),
                name: "王五".into(),
                institution_uscc: unit.clone(),
                level: level as i32,
                position: position as i32,
                rank: proto::Rank::Clerk as i32,
                effective_on: "2024-02-01".into(),
                appointment_document: format!("并任〔2024〕{n}号"),
            })
            .await
            .unwrap();
    }

    let mut query = app.query("140100", AgencyKind::Hr).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = query
            .list_roll(proto::ListRollRequest {
                uscc: unit.clone(),
                as_of: "2024-06-01".into(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(page.entries.into_iter().map(|e| e.resident_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut everyone: Vec<String> = (1..=3).map(resident).collect();
    everyone.sort();
    assert_eq!(seen, everyone);

    // Findings page by key: every open finding once, in order, whatever the page size.
    let mut checks = checks(&app, AgencyKind::Discipline).await;
    let all = checks
        .list_findings(proto::ListFindingsRequest {
            page_size: 5_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert!(all.len() >= 2, "{all:?}");
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = checks
            .list_findings(proto::ListFindingsRequest {
                page_size: 1,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.findings.len() <= 1);
        paged.extend(page.findings);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all);
    // A severity filter is applied before the page is cut.
    let high = checks
        .list_findings(proto::ListFindingsRequest {
            page_size: 1,
            min_severity: proto::Severity::High as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first_high = all
        .iter()
        .find(|f| f.severity >= proto::Severity::High as i32);
    assert_eq!(high.findings.first(), first_high);
}

async fn explanations_are_masked_as_the_personal_data_table_says(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    app.staffing("140100")
        .await
        .push_institution(organ("org", &unit, "140100"))
        .await
        .unwrap();
    let ghost = resident(2);
    app.finance("140100")
        .await
        .push_payroll_line(payroll("ghost", &ghost, &unit, "2024-01"))
        .await
        .unwrap();
    let masked = format!("{}********{}", &ghost[..6], &ghost[14..]);
    for kind in AgencyKind::ALL {
        let sight = personal_data(kind);
        let finding = checks(&app, kind)
            .await
            .list_findings(proto::ListFindingsRequest {
                codes: vec![RuleCode::PaidNotOnRoll as i32],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("{kind}: {status:?}"))
            .into_inner()
            .findings
            .remove(0);
        for text in [&finding.explanation_zh, &finding.explanation_en] {
            if sight.resident_ids {
                assert!(text.contains(&ghost), "{kind}: {text}");
            } else {
                assert!(!text.contains(&ghost), "{kind}: {text}");
                assert!(text.contains(&masked), "{kind}: {text}");
            }
            assert_eq!(text.contains("6500.00"), sight.pay, "{kind}: {text}");
        }
        assert_eq!(finding.subject == ghost, sight.resident_ids, "{kind}");
        assert_eq!(finding.personal_data_masked, !sight.is_whole(), "{kind}");
    }

    // A ledger item opened from the finding takes its explanation as title: masked the same way.
    let ledger = |kind| {
        let app = &app;
        async move {
            proto::ledger_service_client::LedgerServiceClient::new(
                app.channel(&agency("140100", kind)).await,
            )
        }
    };
    let item = ledger(AgencyKind::StaffingOffice)
        .await
        .open_item(proto::OpenItemRequest {
            due_on: "2030-01-01".into(),
            finding: Some(proto::FindingRef {
                code: RuleCode::PaidNotOnRoll as i32,
                institution_uscc: unit.clone(),
                subject: ghost.clone(),
                period: "2024-01".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for kind in AgencyKind::ALL {
        let sight = personal_data(kind);
        let read = ledger(kind)
            .await
            .get_item(proto::IdRequest {
                id: item.id.clone(),
            })
            .await
            .unwrap_or_else(|status| panic!("{kind}: {status:?}"))
            .into_inner();
        assert_eq!(read.title.contains(&ghost), sight.resident_ids, "{kind}");
        assert_eq!(
            read.finding.as_ref().unwrap().subject == ghost,
            sight.resident_ids,
            "{kind}"
        );
    }
}
