//! Every record kind pushed by its agency and read back; validation errors; idempotency; the data
//! surviving a restart.

use quotahub::domain::AgencyKind;
use quotahub::proto;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    every_record_kind_is_pushed_and_read_back,
    a_bad_record_is_refused_with_its_fields_named,
    a_resend_stores_nothing_twice_and_a_reused_id_is_refused,
    data_survives_a_restart,
);

async fn every_record_kind_is_pushed_and_read_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let city = uscc("140100", 1);
    let child = uscc("140100", 2);
    let mut staffing = app.staffing("140100").await;

    let accepted = staffing
        .push_institution(organ("inst-1", &city, "140100"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.outcome, proto::RecordOutcome::Accepted as i32);
    assert!(!accepted.replayed);
    assert!(accepted.accepted_at.is_some());
    let mut subordinate = organ("inst-2", &child, "140100");
    subordinate.parent_uscc = city.clone();
    staffing.push_institution(subordinate).await.unwrap();
    staffing
        .push_quota(quota("quota-1", &city, 2))
        .await
        .unwrap();
    staffing
        .push_leader_post(proto::LeaderPost {
            record_id: "post-1".into(),
            institution_uscc: city.clone(),
            level: proto::LeaderLevel::Division as i32,
            position: proto::LeaderPosition::Deputy as i32,
            approved_count: 2,
            effective_from: "2020-01-01".into(),
            approval_document: "并编发〔2020〕3号".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    staffing
        .push_staffing_plan(proto::StaffingPlan {
            record_id: "plan-1".into(),
            institution_uscc: city.clone(),
            year: 2024,
            category: proto::QuotaCategory::Administrative as i32,
            channel: proto::HiringChannel::OpenRecruitment as i32,
            approved_count: 3,
            approval_document: "并编发〔2024〕9号".into(),
        })
        .await
        .unwrap();
    staffing
        .push_hiring_approval(proto::HiringApproval {
            record_id: "approval-1".into(),
            // Written with ASCII brackets; stored and matched in the normal form.
            approval_number: "并编审[2020]7号".into(),
            institution_uscc: city.clone(),
            category: proto::QuotaCategory::Administrative as i32,
            approved_entries: 5,
            issued_on: "2020-01-01".into(),
            valid_until: "2030-12-31".into(),
        })
        .await
        .unwrap();

    let person = resident(1);
    app.hr("140100")
        .await
        .push_personnel_event(hire("hire-1", &person, &city, "2021-03-01"))
        .await
        .unwrap();
    app.organization("140100")
        .await
        .push_appointment(proto::Appointment {
            record_id: "appoint-1".into(),
            action: proto::AppointmentAction::Appoint as i32,
            resident_id: person.clone(),
            name: "王五".into(),
            institution_uscc: city.clone(),
            level: proto::LeaderLevel::Division as i32,
            position: proto::LeaderPosition::Deputy as i32,
            rank: proto::Rank::DivisionDeputy as i32,
            effective_on: "2022-01-01".into(),
            appointment_document: "并组任〔2022〕1号".into(),
        })
        .await
        .unwrap();
    let mut finance = app.finance("140100").await;
    finance
        .push_payroll_line(payroll("pay-1", &person, &city, "2024-03"))
        .await
        .unwrap();
    finance
        .push_funding(proto::Funding {
            record_id: "fund-1".into(),
            institution_uscc: city.clone(),
            category: proto::QuotaCategory::Administrative as i32,
            period: "2024-03".into(),
            funded_headcount: 1,
            amount_fen: 650_000,
        })
        .await
        .unwrap();

    // Read it all back as the discipline inspectors of the city.
    let mut query = app.query("140100", AgencyKind::Discipline).await;
    let view = query
        .get_institution(proto::GetInstitutionRequest {
            uscc: city.clone(),
            as_of: "2024-03-15".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let institution = view.institution.unwrap();
    assert_eq!(institution.record_id, "inst-1");
    assert_eq!(institution.approval_document, "并编发〔2020〕1号");
    assert_eq!(view.child_usccs, vec![child.clone()]);
    let quota = &view.quotas[0];
    assert_eq!(
        (quota.approved_count, quota.active_count, quota.vacancy),
        (2, 1, 1)
    );
    assert_eq!(quota.quota.as_ref().unwrap().record_id, "quota-1");
    let post = &view.leader_posts[0];
    assert_eq!((post.approved_count, post.occupied_count), (2, 1));
    assert_eq!(view.plans.len(), 1);
    assert_eq!(view.plans[0].approved_count, 3);
    assert_eq!(view.approvals.len(), 1);
    assert_eq!(
        view.approvals[0].used_entries, 1,
        "the hire cites the approval in another bracket style"
    );

    let roll = query
        .list_roll(proto::ListRollRequest {
            uscc: city.clone(),
            as_of: "2024-03-15".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(roll.entries.len(), 1);
    assert_eq!(roll.entries[0].resident_id, person);
    assert_eq!(
        roll.entries[0].leader_level,
        proto::LeaderLevel::Division as i32
    );
    assert_eq!(roll.entries[0].status, proto::PersonStatus::Active as i32);

    let history = query
        .get_person_history(proto::GetPersonHistoryRequest {
            resident_id: person.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.events.len(), 1);
    assert_eq!(history.events[0].record_id, "hire-1");
    assert_eq!(history.appointments[0].record_id, "appoint-1");
    assert_eq!(history.spells.len(), 1);

    let pay = query
        .list_payroll(proto::ListPayrollRequest {
            institution_uscc: city.clone(),
            period: "2024-03".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pay.lines.len(), 1);
    assert_eq!(pay.total_gross_fen, 650_000);
    let funding = query
        .list_funding(proto::ListFundingRequest {
            institution_uscc: city,
            period: "2024-03".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(funding.fundings[0].funded_headcount, 1);
}

async fn a_bad_record_is_refused_with_its_fields_named(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut hr = app.hr("140100").await;
    let event = hire(
        "hire-bad",
        "110105194912310021",
        &uscc("140100", 1),
        "2021-02-30",
    );
    let status = hr.push_personnel_event(event).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["resident_id", "effective_on"]);
    assert!(status.message().contains("check character"));

    // Fields that are each well-formed but do not make a hire together.
    let mut event = hire("hire-bad", &resident(1), &uscc("140100", 1), "2021-02-01");
    (event.category, event.rank) = (0, 0);
    let status = hr.push_personnel_event(event).await.unwrap_err();
    let details = status.get_error_details();
    let fields: Vec<&str> = details
        .bad_request()
        .unwrap()
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["category", "rank"]);

    // A quota for an institution the registry does not know names that field.
    let status = app
        .staffing("140100")
        .await
        .push_quota(quota("q", &uscc("140100", 9), 1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status
            .get_error_details()
            .bad_request()
            .unwrap()
            .field_violations[0]
            .field,
        "institution_uscc"
    );

    // A departure of someone not on the roll does not fit the data.
    let mut departure = hire("depart", &resident(2), &uscc("140100", 1), "2021-01-01");
    departure.event_type = proto::PersonnelEventType::Departure as i32;
    let status = hr.push_personnel_event(departure).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("not on the roll"));
}

async fn a_resend_stores_nothing_twice_and_a_reused_id_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let mut finance = app.finance("140100").await;
    let line = payroll("pay-1", &resident(1), &unit, "2024-03");
    let first = finance
        .push_payroll_line(line.clone())
        .await
        .unwrap()
        .into_inner();
    let again = finance
        .push_payroll_line(line.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(
        again.accepted_at, first.accepted_at,
        "the same result as the first time"
    );

    let changed = proto::PayrollLine {
        gross_fen: 1,
        ..line
    };
    let status = finance.push_payroll_line(changed).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("pay-1"));

    let lines = app
        .query("140100", AgencyKind::Audit)
        .await
        .list_payroll(proto::ListPayrollRequest {
            institution_uscc: unit,
            period: "2024-03".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .lines;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].gross_fen, 650_000);

    // Personnel events: a resent hire is not a second hire.
    let mut hr = app.hr("140100").await;
    let event = hire("hire-1", &resident(3), &uscc("140100", 1), "2021-01-01");
    hr.push_personnel_event(event.clone()).await.unwrap();
    assert!(
        hr.push_personnel_event(event)
            .await
            .unwrap()
            .into_inner()
            .replayed
    );
}

async fn data_survives_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    app.staffing("140100")
        .await
        .push_institution(organ("inst-1", &unit, "140100"))
        .await
        .unwrap();
    app.hr("140100")
        .await
        .push_personnel_event(hire("hire-1", &resident(1), &unit, "2021-01-01"))
        .await
        .unwrap();

    let app = app.restart().await;
    let roll = app
        .query("140100", AgencyKind::StaffingOffice)
        .await
        .list_roll(proto::ListRollRequest {
            uscc: unit.clone(),
            as_of: "2024-01-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(roll.entries.len(), 1);
    // And a resend after the restart is still recognised.
    let again = app
        .hr("140100")
        .await
        .push_personnel_event(hire("hire-1", &resident(1), &unit, "2021-01-01"))
        .await;
    assert!(again.unwrap().into_inner().replayed);
}
