//! Data freshness (同步录入、实时更新) over mutual TLS: a finance agency's payroll month still
//! missing on its due day is a finding about the agency, raised by the schedule on that day (the
//! hub's manual clock), in the ledger like any other, and resolved when the payroll arrives; an
//! event pushed long after it took effect is one at its push; the staffing office's report says
//! whose data the hub is waiting for.

use std::time::Duration;

use chrono::NaiveDate;
use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::RuleCode;
use tonic::transport::Channel;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_late_payroll_month_is_a_finding_about_finance_from_its_due_day_until_it_arrives,
    an_event_pushed_long_after_it_took_effect_is_a_finding_about_hr,
);

pub(crate) type Checks = proto::reconciliation_service_client::ReconciliationServiceClient<Channel>;

pub(crate) async fn checks(app: &TestApp, kind: AgencyKind) -> Checks {
    Checks::new(app.channel(&agency("140100", kind)).await)
}

fn date(raw: &str) -> NaiveDate {
    raw.parse().unwrap()
}

/// Moves the hub's clock to `day` (noon, China time).
pub(crate) fn move_to(app: &TestApp, day: &str) {
    let clock = &app.store.checks().clock;
    let target = date(day).and_hms_opt(4, 0, 0).unwrap().and_utc();
    clock.advance(target - clock.now());
}

pub(crate) async fn findings_of(
    checks: &mut Checks,
    code: RuleCode,
    state: proto::FindingState,
) -> Vec<proto::Finding> {
    checks
        .list_findings(proto::ListFindingsRequest {
            codes: vec![code as i32],
            state: state as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings
}

pub(crate) async fn report(checks: &mut Checks) -> proto::FreshnessReportResponse {
    checks
        .freshness_report(proto::FreshnessReportRequest::default())
        .await
        .unwrap()
        .into_inner()
}

pub(crate) fn row<'a>(
    report: &'a proto::FreshnessReportResponse,
    id: &str,
) -> &'a proto::AgencyFreshness {
    report
        .agencies
        .iter()
        .find(|a| a.agency_id == id)
        .unwrap_or_else(|| panic!("{id} in {report:?}"))
}

/// An organ with one person on its roll since 2024-01-01 (HR's first push: history).
pub(crate) async fn staffed(app: &TestApp) -> String {
    let unit = uscc("140100", 1);
    let mut office = app.staffing("140100").await;
    office
        .push_institution(organ("org", &unit, "140100"))
        .await
        .unwrap();
    office.push_quota(quota("q", &unit, 5)).await.unwrap();
    app.hr("140100")
        .await
        .push_personnel_event(hire("h-1", &resident(1), &unit, "2024-01-01"))
        .await
        .unwrap();
    unit
}

async fn a_late_payroll_month_is_a_finding_about_finance_from_its_due_day_until_it_arrives(
    backend: Backend,
) {
    let app =
        TestApp::spawn_checking_freshness(backend, date("2024-05-05"), Duration::from_millis(50))
            .await;
    let unit = staffed(&app).await;
    let mut finance = app.finance("140100").await;
    finance
        .push_payroll_line(payroll("pay-04", &resident(1), &unit, "2024-04"))
        .await
        .unwrap();
    let mut office = checks(&app, AgencyKind::StaffingOffice).await;
    let open = proto::FindingState::Open;

    // The day before May's payroll is late: several passes of the schedule, nothing.
    move_to(&app, "2024-06-09");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        findings_of(&mut office, RuleCode::LatePayroll, open)
            .await
            .is_empty()
    );
    let before = report(&mut office).await;
    let finance_row = row(&before, "140100/finance");
    assert_eq!(finance_row.latest_payroll_period, "2024-04");
    assert_eq!(
        (
            finance_row.next_payroll_period.as_str(),
            finance_row.next_payroll_late_from.as_str()
        ),
        ("2024-05", "2024-06-10")
    );
    assert!(!finance_row.waiting && before.waiting_for.is_empty());
    assert!(
        finance_row
            .last_pushes
            .iter()
            .any(|p| p.record_kind == "payroll_line" && p.pushed_on == "2024-05-05"),
        "{finance_row:?}"
    );

    // On the due day the schedule raises it, about the finance agency.
    move_to(&app, "2024-06-10");
    let mut late = Vec::new();
    // Up to 20 s: a loaded machine runs the 50 ms schedule late.
    for _ in 0..400 {
        late = findings_of(&mut office, RuleCode::LatePayroll, open).await;
        if !late.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(late.len(), 1, "{late:?}");
    let finding = &late[0];
    assert_eq!(
        (
            finding.institution_uscc.as_str(),
            finding.subject.as_str(),
            finding.period.as_str(),
            finding.jurisdiction.as_str()
        ),
        ("140100/finance", "", "2024-05", "140100")
    );
    assert_eq!(finding.severity, proto::Severity::Medium as i32);
    assert!(
        finding.explanation_zh.contains("2024-05"),
        "{}",
        finding.explanation_zh
    );
    // Discipline sees it on the same terms as any finding of its jurisdiction.
    let mut discipline = checks(&app, AgencyKind::Discipline).await;
    assert_eq!(
        findings_of(&mut discipline, RuleCode::LatePayroll, open)
            .await
            .len(),
        1
    );
    // The hub says whose data it is waiting for.
    let waiting = report(&mut office).await;
    assert_eq!(waiting.waiting_for, vec!["140100/finance".to_owned()]);
    let finance_row = row(&waiting, "140100/finance");
    assert_eq!(
        finance_row.awaited_payroll_periods,
        vec!["2024-05".to_owned()]
    );
    assert_eq!(finance_row.payroll_lag_days, 1);
    assert!(finance_row.waiting);

    // Into the ledger: the agency answers for it.
    let mut ledger = crate::ledger::ledger(&app, AgencyKind::StaffingOffice).await;
    let item = ledger
        .open_item(proto::OpenItemRequest {
            due_on: "2024-06-30".into(),
            finding: Some(proto::FindingRef {
                code: RuleCode::LatePayroll as i32,
                institution_uscc: "140100/finance".into(),
                subject: String::new(),
                period: "2024-05".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (item.department_uscc.as_str(), item.jurisdiction.as_str()),
        ("140100/finance", "140100")
    );
    assert!(item.title.contains("2024-05"), "{}", item.title);
    // An agency has no quota to cut.
    let refused = ledger
        .impose_penalty(proto::ImposePenaltyRequest {
            item_id: item.id.clone(),
            kind: proto::PenaltyKind::Admonition as i32,
            text: "通报".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );

    // The payroll arrives: resolved at its push.
    let answer = finance
        .push_payroll_line(payroll("pay-05", &resident(1), &unit, "2024-05"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer
            .findings
            .iter()
            .any(|c| c.change == proto::FindingChangeType::Resolved as i32
                && c.finding
                    .as_ref()
                    .is_some_and(|f| f.code == RuleCode::LatePayroll as i32)),
        "{answer:?}"
    );
    assert!(
        findings_of(&mut office, RuleCode::LatePayroll, open)
            .await
            .is_empty()
    );
    let resolved = findings_of(
        &mut office,
        RuleCode::LatePayroll,
        proto::FindingState::Resolved,
    )
    .await;
    assert_eq!(resolved.len(), 1);
    assert!(report(&mut office).await.waiting_for.is_empty());
    // The schedule does not raise it again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        findings_of(&mut office, RuleCode::LatePayroll, open)
            .await
            .is_empty()
    );

    // Only the staffing office reads the report.
    let mut hr = checks(&app, AgencyKind::Hr).await;
    let refused = hr
        .freshness_report(proto::FreshnessReportRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

async fn an_event_pushed_long_after_it_took_effect_is_a_finding_about_hr(backend: Backend) {
    let app = TestApp::spawn_on(backend, date("2024-05-05")).await;
    let unit = staffed(&app).await;
    let mut office = checks(&app, AgencyKind::StaffingOffice).await;
    let open = proto::FindingState::Open;
    // What took effect before HR's first push is history, however old.
    assert!(
        findings_of(&mut office, RuleCode::BackdatedEvent, open)
            .await
            .is_empty()
    );

    // 2024-05-20's hire pushed on 2024-07-15: 56 days late, more than the 30 allowed.
    move_to(&app, "2024-07-15");
    let mut hr = app.hr("140100").await;
    let answer = hr
        .push_personnel_event(hire("h-2", &resident(2), &unit, "2024-05-20"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer
            .findings
            .iter()
            .any(|c| c.change == proto::FindingChangeType::Raised as i32
                && c.finding
                    .as_ref()
                    .is_some_and(|f| f.code == RuleCode::BackdatedEvent as i32)),
        "{answer:?}"
    );
    let backdated = findings_of(&mut office, RuleCode::BackdatedEvent, open).await;
    assert_eq!(backdated.len(), 1, "{backdated:?}");
    let finding = &backdated[0];
    assert_eq!(
        (
            finding.institution_uscc.as_str(),
            finding.subject.as_str(),
            finding.period.as_str()
        ),
        ("140100/hr", "", "")
    );
    assert_eq!(
        (finding.actual, finding.severity),
        (1, proto::Severity::Low as i32)
    );
    assert!(
        finding
            .evidence
            .iter()
            .any(|e| e.kind == "personnel_event" && e.id == "140100/hr/h-2"),
        "{finding:?}"
    );
    assert!(
        finding.explanation_en.contains("56 days late"),
        "{}",
        finding.explanation_en
    );

    // Two weeks late is within the cadence: the finding stands as it was.
    hr.push_personnel_event(hire("h-3", &resident(3), &unit, "2024-07-01"))
        .await
        .unwrap();
    let backdated = findings_of(&mut office, RuleCode::BackdatedEvent, open).await;
    assert_eq!(backdated.len(), 1);
    assert_eq!(backdated[0].actual, 1);
    let hr_row = report(&mut office).await;
    let hr_row = row(&hr_row, "140100/hr");
    assert_eq!(
        (
            hr_row.events_in_window,
            hr_row.timed_in_window,
            hr_row.backdated_in_window
        ),
        (3, 2, 1)
    );
    assert!((hr_row.backdated_share - 0.5).abs() < 1e-9);
    assert!(
        (hr_row.mean_event_lag_days - 35.0).abs() < 1e-9,
        "{hr_row:?}"
    );
}
