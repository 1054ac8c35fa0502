//! The follow-through's lists over real mTLS: cases, transfers and joint inspections, and
//! applications, paged, filtered by state, department and date, scoped to the caller's
//! jurisdiction, masked per reader, and open only to the agency kinds the policy table names (a
//! transfer only to the kinds it reaches). And ListFindings' filter of the days findings were
//! raised and its sort by a column (`order_by`), which the console's findings list uses.

use quotahub::domain::AgencyKind;
use quotahub::proto;
use tonic::Code;

use crate::helpers::*;
use crate::ledger::{applications, cases, open_by_hand, spawn};
use crate::on_both_backends;

on_both_backends!(
    cases_are_listed_by_state_institution_date_and_division,
    transfers_are_listed_to_the_kinds_they_reach_and_masked_per_reader,
    applications_are_listed_with_their_gate_and_decision,
    findings_are_listed_by_the_days_they_were_raised_and_by_division,
    findings_are_sorted_by_a_column_and_paged_in_that_order,
    findings_are_summarized_as_the_list_shows_them,
);

type Cases = proto::case_service_client::CaseServiceClient<tonic::transport::Channel>;

async fn cases_in(app: &TestApp, jurisdiction: &str, kind: AgencyKind) -> Cases {
    Cases::new(app.channel(&agency(jurisdiction, kind)).await)
}

/// An organ of `division` in the registry, with no one on its roll.
async fn registered_unit(app: &TestApp, division: &str, n: u32) -> String {
    let unit = uscc(division, n);
    app.staffing(division)
        .await
        .push_institution(organ(&format!("inst-{division}-{n}"), &unit, division))
        .await
        .unwrap();
    unit
}

fn ids(cases: &[proto::Case]) -> Vec<&str> {
    cases.iter().map(|c| c.id.as_str()).collect()
}

async fn cases_are_listed_by_state_institution_date_and_division(backend: Backend) {
    let app = spawn(backend).await;
    let mut office = cases(&app, AgencyKind::StaffingOffice).await;
    let report = |institution: String, jurisdiction: &str, due_on: &str| proto::ReportRequest {
        channel: proto::ReportChannel::Hotline as i32,
        institution_uscc: institution,
        text: "举报人称 11010519491231002X 长期不上班仍领工资".into(),
        person: "11010519491231002X".into(),
        owner: "督查科 王某".into(),
        due_on: due_on.into(),
        jurisdiction: jurisdiction.into(),
        ..Default::default()
    };
    let mut taken = Vec::new();
    for (institution, jurisdiction, due_on) in [
        (uscc("140100", 1), "", "2024-06-05"),
        (uscc("140100", 2), "", "2024-06-30"),
        (uscc("140105", 3), "140105", "2024-06-05"),
    ] {
        taken.push(
            office
                .take_report(report(institution, jurisdiction, due_on))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let investigating = office
        .move_case(proto::MoveCaseRequest {
            case_id: taken[1].id.clone(),
            to: proto::CaseState::Investigating as i32,
            expected_version: taken[1].version,
            text: "已约谈".into(),
        })
        .await
        .unwrap()
        .into_inner();

    let list = |request: proto::ListCasesRequest| {
        let mut client = office.clone();
        async move {
            client
                .list_cases(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let all = list(proto::ListCasesRequest::default()).await.unwrap();
    assert_eq!(ids(&all.cases), ids(&taken), "oldest first");
    assert!(all.next_page_token.is_empty());
    assert!(
        all.cases.iter().all(|c| c.history.is_empty()),
        "lists leave out histories"
    );
    assert_eq!(all.cases[1].state, proto::CaseState::Investigating as i32);
    assert_eq!(all.cases[1].version, investigating.version);
    assert!(all.cases[0].opened_at.is_some());

    // Paged: two, then the third, with the first page's token.
    let first = list(proto::ListCasesRequest {
        page_size: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&first.cases), ids(&taken[..2]));
    let second = list(proto::ListCasesRequest {
        page_size: 2,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&second.cases), ids(&taken[2..]));
    assert!(second.next_page_token.is_empty());

    // By state, institution, division and date.
    let by_state = list(proto::ListCasesRequest {
        state: proto::CaseState::Investigating as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&by_state.cases), [taken[1].id.as_str()]);
    let by_institution = list(proto::ListCasesRequest {
        institution_uscc: uscc("140100", 1),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&by_institution.cases), [taken[0].id.as_str()]);
    let district = list(proto::ListCasesRequest {
        jurisdiction: "140105".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&district.cases), [taken[2].id.as_str()]);
    let that_day = list(proto::ListCasesRequest {
        opened_from: "2024-06-01".into(),
        opened_to: "2024-06-01".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(that_day.cases.len(), 3);
    let later = list(proto::ListCasesRequest {
        opened_from: "2024-06-02".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(later.cases.is_empty());
    let earlier = list(proto::ListCasesRequest {
        opened_to: "2024-05-31".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(earlier.cases.is_empty());
    let backwards = list(proto::ListCasesRequest {
        opened_from: "2024-06-02".into(),
        opened_to: "2024-06-01".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument);
    let not_a_date = list(proto::ListCasesRequest {
        opened_from: "June".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(not_a_date.code(), Code::InvalidArgument);

    // Overdue: a week on, the two cases due on the 5th.
    app.store.checks().clock.advance(chrono::Duration::days(7));
    let overdue = list(proto::ListCasesRequest {
        overdue_only: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        ids(&overdue.cases),
        [taken[0].id.as_str(), taken[2].id.as_str()]
    );
    assert!(overdue.cases.iter().all(|c| c.overdue));

    // A district's discipline agency sees its district's case, whole; not the city's.
    let mut district_discipline = cases_in(&app, "140105", AgencyKind::Discipline).await;
    let seen = district_discipline
        .list_cases(proto::ListCasesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&seen.cases), [taken[2].id.as_str()]);
    assert_eq!(seen.cases[0].person, "11010519491231002X");
    let above = district_discipline
        .list_cases(proto::ListCasesRequest {
            jurisdiction: "140100".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(above.code(), Code::PermissionDenied);

    // The policy table: HR and finance do not read cases.
    for kind in [AgencyKind::Hr, AgencyKind::Finance] {
        let refused = cases(&app, kind)
            .await
            .list_cases(proto::ListCasesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{kind}");
    }
}

async fn transfers_are_listed_to_the_kinds_they_reach_and_masked_per_reader(backend: Backend) {
    let app = spawn(backend).await;
    let unit = registered_unit(&app, "140100", 5).await;
    let item = open_by_hand(&app, &unit, "2024-06-30").await;
    let mut office = cases(&app, AgencyKind::StaffingOffice).await;
    let transfer = office
        .transfer(proto::TransferRequest {
            kind: proto::TransferKind::Transfer as i32,
            matter: proto::MatterKind::LedgerItem as i32,
            matter_id: item.id.clone(),
            text: "逾期未整改, 移送纪检监察".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let joint = office
        .transfer(proto::TransferRequest {
            kind: proto::TransferKind::JointInspection as i32,
            matter: proto::MatterKind::LedgerItem as i32,
            matter_id: item.id.clone(),
            agencies: vec![
                proto::AgencyKind::Audit as i32,
                proto::AgencyKind::Finance as i32,
            ],
            text: "联合督查, 涉及 11010519491231002X".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let list = |kind: AgencyKind, request: proto::ListTransfersRequest| {
        let app = &app;
        async move {
            cases(app, kind)
                .await
                .list_transfers(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let listed_ids = |page: &proto::ListTransfersResponse| -> Vec<String> {
        page.transfers.iter().map(|t| t.id.clone()).collect()
    };
    let everything = list(AgencyKind::StaffingOffice, Default::default())
        .await
        .unwrap();
    assert_eq!(
        listed_ids(&everything),
        [transfer.id.clone(), joint.id.clone()]
    );
    assert_eq!(everything.transfers[1].receipts.len(), 2);
    assert_eq!(
        everything.transfers[0].sent_by,
        agency("140100", AgencyKind::StaffingOffice).id()
    );
    assert!(everything.transfers[0].sent_at.is_some());
    // Each other kind sees what reaches it.
    for (kind, expected) in [
        (AgencyKind::Discipline, vec![transfer.id.clone()]),
        (AgencyKind::Audit, vec![joint.id.clone()]),
        (AgencyKind::Finance, vec![joint.id.clone()]),
        (AgencyKind::Organization, vec![]),
    ] {
        let seen = list(kind, Default::default()).await.unwrap();
        assert_eq!(listed_ids(&seen), expected, "{kind}");
    }
    // Finance reads resident IDs masked; audit whole.
    let finance = list(AgencyKind::Finance, Default::default()).await.unwrap();
    assert_eq!(
        finance.transfers[0].text,
        "联合督查, 涉及 110105********002X"
    );
    let audit = list(AgencyKind::Audit, Default::default()).await.unwrap();
    assert_eq!(audit.transfers[0].text, "联合督查, 涉及 11010519491231002X");

    // By kind, and by receipts not yet acknowledged.
    let joint_only = list(
        AgencyKind::StaffingOffice,
        proto::ListTransfersRequest {
            kind: proto::TransferKind::JointInspection as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed_ids(&joint_only), [joint.id.as_str()]);
    let unacknowledged = proto::ListTransfersRequest {
        unacknowledged_only: true,
        ..Default::default()
    };
    for kind in [AgencyKind::Discipline, AgencyKind::Audit] {
        let id = if kind == AgencyKind::Discipline {
            &transfer.id
        } else {
            &joint.id
        };
        cases(&app, kind)
            .await
            .acknowledge_receipt(proto::IdRequest { id: id.clone() })
            .await
            .unwrap();
    }
    let waiting = list(AgencyKind::StaffingOffice, unacknowledged.clone())
        .await
        .unwrap();
    assert_eq!(
        listed_ids(&waiting),
        [joint.id.as_str()],
        "finance has not acknowledged the joint inspection"
    );
    let sent_today = list(
        AgencyKind::StaffingOffice,
        proto::ListTransfersRequest {
            sent_from: "2024-06-01".into(),
            sent_to: "2024-06-01".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(sent_today.transfers.len(), 2);
    let sent_later = list(
        AgencyKind::StaffingOffice,
        proto::ListTransfersRequest {
            sent_from: "2024-06-02".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(sent_later.transfers.is_empty());

    // One transfer: to the kinds it reaches only.
    let got = cases(&app, AgencyKind::Finance)
        .await
        .get_transfer(proto::IdRequest {
            id: joint.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.text, "联合督查, 涉及 110105********002X");
    let not_reached = cases(&app, AgencyKind::Discipline)
        .await
        .get_transfer(proto::IdRequest {
            id: joint.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(not_reached.code(), Code::PermissionDenied);
    // Another division's agencies see none of the city's.
    let district = cases_in(&app, "140105", AgencyKind::Discipline)
        .await
        .list_transfers(proto::ListTransfersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(district.transfers.is_empty());
    let refused = list(AgencyKind::Hr, Default::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

async fn applications_are_listed_with_their_gate_and_decision(backend: Backend) {
    let app = spawn(backend).await;
    let unit = registered_unit(&app, "140100", 2).await;
    let district_unit = registered_unit(&app, "140105", 7).await;
    let apply = |department: &str, override_reason: &str| proto::ApplyRequest {
        department_uscc: department.into(),
        kind: proto::ApplicationKind::ChangeQuota as i32,
        reason: "新增职能".into(),
        category: proto::QuotaCategory::Administrative as i32,
        count: 5,
        override_reason: override_reason.into(),
        ..Default::default()
    };
    let mut hr = applications(&app, AgencyKind::Hr).await;
    let mut office = applications(&app, AgencyKind::StaffingOffice).await;
    let first = hr.apply(apply(&unit, "")).await.unwrap().into_inner();
    let district = office
        .apply(apply(&district_unit, ""))
        .await
        .unwrap()
        .into_inner();
    // An overdue item holds the unit back; the staffing office lets a third through on record.
    open_by_hand(&app, &unit, "2024-06-10").await;
    app.store.checks().clock.advance(chrono::Duration::days(15));
    let overridden = office
        .apply(apply(&unit, "防汛急需"))
        .await
        .unwrap()
        .into_inner();
    office
        .decide(proto::DecideRequest {
            application_id: first.id.clone(),
            approve: true,
            note: "同意".into(),
        })
        .await
        .unwrap();

    let list = |kind: AgencyKind, request: proto::ListApplicationsRequest| {
        let app = &app;
        async move {
            applications(app, kind)
                .await
                .list_applications(request)
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let listed_ids = |page: &proto::ListApplicationsResponse| -> Vec<String> {
        page.applications.iter().map(|a| a.id.clone()).collect()
    };
    let all = list(AgencyKind::Audit, Default::default()).await.unwrap();
    assert_eq!(
        listed_ids(&all),
        [first.id.clone(), district.id.clone(), overridden.id.clone()]
    );
    let decided = &all.applications[0];
    assert_eq!(decided.state, proto::ApplicationState::Approved as i32);
    assert_eq!(decided.decision_note, "同意");
    assert!(decided.decided_at.is_some() && decided.applied_at.is_some());
    assert_eq!(decided.jurisdiction, "140100");
    assert!(all.applications[1].decided_at.is_none());
    assert_eq!(all.applications[2].override_reason, "防汛急需");
    assert_eq!(
        all.applications[2].override_by,
        agency("140100", AgencyKind::StaffingOffice).id()
    );

    let pending = list(
        AgencyKind::Hr,
        proto::ListApplicationsRequest {
            state: proto::ApplicationState::Pending as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        listed_ids(&pending),
        [district.id.clone(), overridden.id.clone()]
    );
    let of_unit = list(
        AgencyKind::StaffingOffice,
        proto::ListApplicationsRequest {
            department_uscc: unit.clone(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed_ids(&of_unit), [first.id.as_str()]);
    let rest = list(
        AgencyKind::StaffingOffice,
        proto::ListApplicationsRequest {
            department_uscc: unit.clone(),
            page_size: 1,
            page_token: of_unit.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed_ids(&rest), [overridden.id.as_str()]);
    // Filed on the day the clock moved to.
    let late = list(
        AgencyKind::StaffingOffice,
        proto::ListApplicationsRequest {
            applied_from: "2024-06-16".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed_ids(&late), [overridden.id.as_str()]);
    let bad_kind = list(
        AgencyKind::StaffingOffice,
        proto::ListApplicationsRequest {
            kind: 99,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad_kind.code(), Code::InvalidArgument);

    // The district's staffing office sees its district's only, and not the city's on request.
    let mut district_office = proto::application_service_client::ApplicationServiceClient::new(
        app.channel(&agency("140105", AgencyKind::StaffingOffice))
            .await,
    );
    let seen = district_office
        .list_applications(proto::ListApplicationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed_ids(&seen), [district.id.as_str()]);
    let above = district_office
        .list_applications(proto::ListApplicationsRequest {
            jurisdiction: "140100".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(above.code(), Code::PermissionDenied);
    let refused = list(AgencyKind::Finance, Default::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// Today in China Standard Time, by the wall clock (findings are stamped by it, not by the hub's
/// date).
fn today_in_china() -> chrono::NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}

async fn findings_are_listed_by_the_days_they_were_raised_and_by_division(backend: Backend) {
    let app = spawn(backend).await;
    let unit = registered_unit(&app, "140100", 1).await;
    let mut finance = app.finance("140100").await;
    let before = today_in_china();
    // Paid, not on the roll: two findings.
    for n in [1, 2] {
        finance
            .push_payroll_line(payroll(&format!("pay-{n}"), &resident(n), &unit, "2024-05"))
            .await
            .unwrap();
    }
    let after = today_in_china();
    let day = |d: chrono::NaiveDate| d.to_string();
    let mut reader = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Audit)).await,
    );
    let subjects = |page: &proto::ListFindingsResponse| -> Vec<String> {
        page.findings.iter().map(|f| f.subject.clone()).collect()
    };
    let mut list = async |request: proto::ListFindingsRequest| {
        reader
            .list_findings(proto::ListFindingsRequest {
                codes: vec![proto::RuleCode::PaidNotOnRoll as i32],
                ..request
            })
            .await
            .map(tonic::Response::into_inner)
    };
    let both = [resident(1), resident(2)];
    let all = list(Default::default()).await.unwrap();
    assert_eq!(subjects(&all), both);
    let those_days = list(proto::ListFindingsRequest {
        raised_from: day(before),
        raised_to: day(after),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(subjects(&those_days), both);
    let earlier = list(proto::ListFindingsRequest {
        raised_to: day(before.pred_opt().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(earlier.findings.is_empty());
    // The date filter is applied in the store, so pages are full: a page of one holds a finding
    // and the last page carries no token.
    let first = list(proto::ListFindingsRequest {
        raised_from: day(before),
        page_size: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(subjects(&first), [resident(1)]);
    let second = list(proto::ListFindingsRequest {
        raised_from: day(before),
        page_size: 1,
        page_token: first.next_page_token.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(subjects(&second), [resident(2)]);
    let tomorrow = list(proto::ListFindingsRequest {
        raised_from: day(after.succ_opt().unwrap()),
        page_size: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(tomorrow.findings.is_empty(), "none raised tomorrow");
    assert!(tomorrow.next_page_token.is_empty());
    let backwards = list(proto::ListFindingsRequest {
        raised_from: day(after),
        raised_to: day(before.pred_opt().unwrap()),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument);
    let district = list(proto::ListFindingsRequest {
        jurisdiction: "140105".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(district.findings.is_empty());
}

async fn findings_are_sorted_by_a_column_and_paged_in_that_order(backend: Backend) {
    let app = spawn(backend).await;
    let registered = registered_unit(&app, "140100", 1).await;
    let unregistered = uscc("140100", 2);
    let mut finance = app.finance("140100").await;
    // Paid, not on the roll (CRITICAL) at both; the unregistered one also UNREGISTERED_INSTITUTION
    // (HIGH).
    for (n, unit) in [(1, &registered), (2, &unregistered), (3, &registered)] {
        finance
            .push_payroll_line(payroll(&format!("pay-{n}"), &resident(n), unit, "2024-05"))
            .await
            .unwrap();
    }
    let mut reader = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Discipline)).await,
    );
    let mut sorted = async |order_by: &str| {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let page = reader
                .list_findings(proto::ListFindingsRequest {
                    order_by: order_by.into(),
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner)?;
            assert!(page.findings.len() <= 2);
            seen.extend(
                page.findings
                    .iter()
                    .map(|f| (f.code, f.institution_uscc.clone(), f.subject.clone())),
            );
            if page.next_page_token.is_empty() {
                return Ok::<_, tonic::Status>(seen);
            }
            token = page.next_page_token;
        }
    };
    let paid = proto::RuleCode::PaidNotOnRoll as i32;
    let unregistered_code = proto::RuleCode::UnregisteredInstitution as i32;
    let by_institution = sorted("institution_uscc desc").await.unwrap();
    assert_eq!(
        by_institution
            .iter()
            .map(|(_, unit, _)| unit.as_str())
            .collect::<Vec<_>>(),
        [&unregistered, &unregistered, &registered, &registered],
        "descending by institution, across pages"
    );
    let by_severity = sorted("severity").await.unwrap();
    assert_eq!(
        by_severity
            .iter()
            .map(|(code, _, _)| *code)
            .collect::<Vec<_>>(),
        [paid, paid, paid, unregistered_code],
        "most severe first"
    );
    // Of one value, key order: the registered unit's two in resident order.
    let registered_subjects: Vec<&str> = by_severity
        .iter()
        .filter(|(_, unit, _)| *unit == registered)
        .map(|(_, _, subject)| subject.as_str())
        .collect();
    assert_eq!(registered_subjects, [resident(1), resident(3)]);
    let by_severity_desc = sorted("severity  desc").await.unwrap();
    assert_eq!(
        by_severity_desc.first().map(|(code, _, _)| *code),
        Some(unregistered_code)
    );

    // A token belongs to its order; an unknown field or direction is refused, naming order_by.
    let first = reader
        .list_findings(proto::ListFindingsRequest {
            order_by: "period".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for (order_by, token) in [
        ("code", first.next_page_token.as_str()),
        ("salary", ""),
        ("period sideways", ""),
    ] {
        let refused = reader
            .list_findings(proto::ListFindingsRequest {
                order_by: order_by.into(),
                page_token: token.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{order_by}");
        let field = if token.is_empty() {
            "order_by"
        } else {
            "page_token"
        };
        assert!(refused.message().contains(field), "{}", refused.message());
    }
}

/// SummarizeFindings counts what ListFindings lists: per rule, over the weeks, and by deadline.
async fn findings_are_summarized_as_the_list_shows_them(backend: Backend) {
    let app = spawn(backend).await;
    let registered = registered_unit(&app, "140100", 1).await;
    let unregistered = uscc("140100", 2);
    let mut finance = app.finance("140100").await;
    for (n, unit) in [(1, &registered), (2, &unregistered), (3, &registered)] {
        finance
            .push_payroll_line(payroll(&format!("pay-{n}"), &resident(n), unit, "2024-05"))
            .await
            .unwrap();
    }
    let mut reader = proto::reconciliation_service_client::ReconciliationServiceClient::new(
        app.channel(&agency("140100", AgencyKind::Finance)).await,
    );
    let listed = reader
        .list_findings(proto::ListFindingsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .findings;
    assert!(listed.len() >= 4, "{listed:?}");
    let summary = reader
        .summarize_findings(proto::SummarizeFindingsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut expected: std::collections::BTreeMap<(i32, i32), u64> = Default::default();
    for finding in &listed {
        *expected
            .entry((finding.code, finding.severity))
            .or_default() += 1;
    }
    let counted: std::collections::BTreeMap<(i32, i32), u64> = summary
        .open_by_rule
        .iter()
        .map(|count| ((count.code, count.severity), count.open))
        .collect();
    assert_eq!(counted, expected);
    assert_eq!(summary.open_total, listed.len() as u64);
    assert!(
        summary
            .open_by_rule
            .windows(2)
            .all(|pair| pair[0].severity >= pair[1].severity),
        "most severe first"
    );
    // Twelve weeks, oldest first: none were open a week ago, all are now.
    assert_eq!(summary.trend.len(), 12);
    assert_eq!(summary.trend.first().unwrap().open, 0);
    assert_eq!(summary.trend.last().unwrap().open, listed.len() as u64);
    // Due within the week: the alerts whose acknowledgement deadline falls in it, soonest first,
    // masked for the reader as the list masks them.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let due_listed = listed
        .iter()
        .filter(|f| {
            f.acknowledge_by
                .as_ref()
                .is_some_and(|at| at.seconds >= now - 60 && at.seconds < now + 7 * 24 * 3_600)
        })
        .count();
    assert!(
        due_listed > 0,
        "fresh alerts are due for acknowledgement within a week"
    );
    assert_eq!(summary.due_this_week_total, due_listed as u64);
    assert_eq!(summary.due_this_week.len(), due_listed.min(20));
    let deadlines: Vec<i64> = summary
        .due_this_week
        .iter()
        .map(|due| due.deadline.as_ref().unwrap().seconds)
        .collect();
    assert!(deadlines.windows(2).all(|pair| pair[0] <= pair[1]));
    let subjects: std::collections::BTreeSet<&str> =
        listed.iter().map(|f| f.subject.as_str()).collect();
    assert!(
        summary
            .due_this_week
            .iter()
            .all(|due| subjects.contains(due.finding.as_ref().unwrap().subject.as_str())),
        "the same masking as the list"
    );
    // The institutions with the most, most first (ties by USCC), as the list counts them.
    let mut per_institution: std::collections::BTreeMap<&str, u64> = Default::default();
    for finding in &listed {
        *per_institution
            .entry(finding.institution_uscc.as_str())
            .or_default() += 1;
    }
    let mut most: Vec<(&str, u64)> = per_institution.into_iter().collect();
    most.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    assert_eq!(
        summary
            .most_findings
            .iter()
            .map(|count| (count.institution_uscc.as_str(), count.open))
            .collect::<Vec<_>>(),
        most
    );
    assert_eq!(summary.institutions_with_findings, most.len() as u64);
    // A division with none, and a trend too long.
    let district = reader
        .summarize_findings(proto::SummarizeFindingsRequest {
            jurisdiction: "140105".into(),
            weeks: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(district.open_total, 0);
    assert_eq!(district.trend.len(), 3);
    let refused = reader
        .summarize_findings(proto::SummarizeFindingsRequest {
            weeks: 105,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("weeks"));
}
