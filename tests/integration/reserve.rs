//! The reserve (留余地): a year's plan keeps places for policy placement; CheckHire warns an
//! open-recruitment hire that would eat into them and says by how much, and the push of such
//! hires raises RESERVE_SHORTFALL until the placements fill the reserve.

use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::{RuleCode, Verdict};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(check_hire_warns_an_open_recruitment_that_would_eat_into_the_reserve);

const NUMBER: &str = "并编审〔2024〕11号";

fn plan(
    record_id: &str,
    unit: &str,
    channel: proto::HiringChannel,
    count: u32,
) -> proto::StaffingPlan {
    proto::StaffingPlan {
        record_id: record_id.into(),
        institution_uscc: unit.into(),
        year: 2024,
        category: proto::QuotaCategory::Administrative as i32,
        channel: channel as i32,
        approved_count: count,
        approval_document: "并编〔2024〕2号".into(),
    }
}

fn entry(
    record_id: &str,
    person: u32,
    unit: &str,
    channel: proto::HiringChannel,
) -> proto::PersonnelEvent {
    let mut event = hire(record_id, &resident(person), unit, "2024-03-01");
    event.approval_number = NUMBER.into();
    event.channel = channel as i32;
    event
}

async fn reserve_findings(app: &TestApp, state: proto::FindingState) -> Vec<proto::Finding> {
    let mut checks = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::StaffingOffice))
            .await,
    );
    checks
        .list_findings(proto::ListFindingsRequest {
            codes: vec![RuleCode::ReserveShortfall as i32],
            state: state as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings
}

async fn check_hire_warns_an_open_recruitment_that_would_eat_into_the_reserve(backend: Backend) {
    use proto::HiringChannel as C;
    let app = TestApp::spawn_on(
        backend,
        chrono::NaiveDate::from_ymd_opt(2024, 6, 15).unwrap(),
    )
    .await;
    let unit = uscc("140100", 1);
    let mut office = app.staffing("140100").await;
    office
        .push_institution(organ("org", &unit, "140100"))
        .await
        .unwrap();
    office.push_quota(quota("q", &unit, 20)).await.unwrap();
    office
        .push_hiring_approval(proto::HiringApproval {
            record_id: "a".into(),
            approval_number: NUMBER.into(),
            institution_uscc: unit.clone(),
            category: proto::QuotaCategory::Administrative as i32,
            approved_entries: 20,
            issued_on: "2024-01-01".into(),
            valid_until: "2024-12-31".into(),
        })
        .await
        .unwrap();
    // Of 2024's four places, two are kept for policy placement.
    office
        .push_staffing_plan(plan("p-open", &unit, C::OpenRecruitment, 2))
        .await
        .unwrap();
    office
        .push_staffing_plan(plan("p-reserve", &unit, C::PolicyPlacement, 2))
        .await
        .unwrap();
    let mut hr = app.hr("140100").await;
    for n in 1..=2 {
        hr.push_personnel_event(entry(&format!("h-{n}"), n, &unit, C::OpenRecruitment))
            .await
            .unwrap();
    }
    assert!(
        reserve_findings(&app, proto::FindingState::Open)
            .await
            .is_empty()
    );

    let mut checks = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Hr)).await,
    );
    let ask = |channel: C| proto::CheckHireRequest {
        institution_uscc: unit.clone(),
        category: proto::QuotaCategory::Administrative as i32,
        channel: channel as i32,
        approval_number: NUMBER.into(),
        resident_id: resident(9),
        date: "2024-06-15".into(),
        ..Default::default()
    };
    // A third open recruitment would take one of the two places kept.
    let answer = checks
        .check_hire(ask(C::OpenRecruitment))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.verdict, Verdict::Warn as i32, "{:?}", answer.reasons);
    let reason = answer
        .reasons
        .iter()
        .find(|r| r.code == RuleCode::ReserveShortfall as i32)
        .expect("the reserve is the reason");
    assert_eq!(reason.verdict, Verdict::Warn as i32);
    assert!(
        reason.message.contains("挤占预留 1 名"),
        "{}",
        reason.message
    );
    assert!(
        reason.message.contains("eating 1 of the reserve"),
        "{}",
        reason.message
    );
    assert_eq!(
        (
            answer.reserve_kept,
            answer.reserve_needed,
            answer.reserve_eaten
        ),
        (2, 2, 1)
    );
    assert_eq!((answer.plan_approved, answer.plan_used), (4, 2));
    // A placement is what the reserve is for.
    let answer = checks
        .check_hire(ask(C::PolicyPlacement))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.verdict,
        Verdict::Allow as i32,
        "{:?}",
        answer.reasons
    );
    assert_eq!(answer.reserve_eaten, 0);

    // Pushed anyway: the finding, with the same numbers.
    hr.push_personnel_event(entry("h-3", 3, &unit, C::OpenRecruitment))
        .await
        .unwrap();
    let open = reserve_findings(&app, proto::FindingState::Open).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let finding = &open[0];
    assert_eq!(
        (
            finding.institution_uscc.as_str(),
            finding.subject.as_str(),
            finding.period.as_str()
        ),
        (unit.as_str(), "ADMINISTRATIVE", "2024")
    );
    assert_eq!((finding.actual, finding.limit), (3, 2));
    assert_eq!(finding.severity, proto::Severity::Medium as i32);
    // One placement: one place left, one needed, but the other channels still hold it.
    hr.push_personnel_event(entry("h-4", 4, &unit, C::PolicyPlacement))
        .await
        .unwrap();
    assert_eq!(
        reserve_findings(&app, proto::FindingState::Open)
            .await
            .len(),
        1
    );
    // The second fills the reserve: nothing is needed any more.
    hr.push_personnel_event(entry("h-5", 5, &unit, C::PolicyPlacement))
        .await
        .unwrap();
    assert!(
        reserve_findings(&app, proto::FindingState::Open)
            .await
            .is_empty()
    );
    assert_eq!(
        reserve_findings(&app, proto::FindingState::Resolved)
            .await
            .len(),
        1
    );
}
