//! Follow-through over real mTLS: a finding becomes a ledger item that closes only once the data
//! no longer shows it, with a history no RPC can edit; applications held back by overdue items;
//! a penalty that lowers the quota the next checks see; a report that becomes a case and
//! escalates; a transfer that reaches the discipline agency's subscription and no one else's.

use chrono::NaiveDate;
use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::{ItemAction, ItemState, RuleCode};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::feed::{feed, next_event, subscribe};
use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_finding_becomes_an_item_that_closes_only_once_resolved_and_keeps_every_step,
    applications_wait_while_an_item_is_overdue_and_pass_once_it_is_closed,
    a_penalty_cuts_vacant_quota_and_the_checks_that_follow_see_it,
    a_report_becomes_a_case_that_escalates_when_overdue,
    a_transfer_reaches_the_discipline_agency_and_no_one_else,
);

pub(crate) type Ledger = proto::ledger_service_client::LedgerServiceClient<Channel>;
pub(crate) type Applications = proto::application_service_client::ApplicationServiceClient<Channel>;
pub(crate) type Cases = proto::case_service_client::CaseServiceClient<Channel>;

const TODAY: &str = "2024-06-01";

pub(crate) async fn ledger(app: &TestApp, kind: AgencyKind) -> Ledger {
    Ledger::new(app.channel(&agency("140100", kind)).await)
}

pub(crate) async fn applications(app: &TestApp, kind: AgencyKind) -> Applications {
    Applications::new(app.channel(&agency("140100", kind)).await)
}

pub(crate) async fn cases(app: &TestApp, kind: AgencyKind) -> Cases {
    Cases::new(app.channel(&agency("140100", kind)).await)
}

pub(crate) async fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_on(backend, TODAY.parse::<NaiveDate>().unwrap()).await
}

/// An organ with an administrative quota of `count`, and `hired` people on its roll.
pub(crate) async fn unit_with(app: &TestApp, n: u32, count: u32, hired: u32) -> String {
    let unit = uscc("140100", n);
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ(&format!("inst-{n}"), &unit, "140100"))
        .await
        .unwrap();
    staffing
        .push_quota(quota(&format!("q-{n}"), &unit, count))
        .await
        .unwrap();
    let mut hr = app.hr("140100").await;
    for i in 0..hired {
        hr.push_personnel_event(hire(
            &format!("h-{n}-{i}"),
            &resident(n * 100 + i),
            &unit,
            "2024-01-02",
        ))
        .await
        .unwrap();
    }
    unit
}

async fn open_codes(app: &TestApp, unit: &str) -> Vec<i32> {
    let mut codes: Vec<i32> = app
        .query_findings("140100")
        .await
        .into_iter()
        .filter(|f| f.institution_uscc == unit && f.state == proto::FindingState::Open as i32)
        .map(|f| f.code)
        .collect();
    codes.sort_unstable();
    codes
}

pub(crate) async fn open_by_hand(app: &TestApp, unit: &str, due_on: &str) -> proto::LedgerItem {
    ledger(app, AgencyKind::StaffingOffice)
        .await
        .open_item(proto::OpenItemRequest {
            department_uscc: unit.into(),
            title: "年度核查发现的问题".into(),
            due_on: due_on.into(),
            finding: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn step(
    client: &mut Ledger,
    item: &proto::LedgerItem,
    action: ItemAction,
    text: &str,
) -> Result<proto::LedgerItem, tonic::Status> {
    client
        .move_item(proto::MoveItemRequest {
            item_id: item.id.clone(),
            action: action as i32,
            expected_version: item.version,
            text: text.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Walks a by-hand item to closed: the department's side rectifies and submits, the staffing
/// office verifies.
pub(crate) async fn close(app: &TestApp, item: proto::LedgerItem) -> proto::LedgerItem {
    let mut hr = ledger(app, AgencyKind::Hr).await;
    let mut staffing = ledger(app, AgencyKind::StaffingOffice).await;
    let item = step(&mut hr, &item, ItemAction::StartRectifying, "")
        .await
        .unwrap();
    let item = step(&mut hr, &item, ItemAction::Submit, "已整改")
        .await
        .unwrap();
    step(&mut staffing, &item, ItemAction::Close, "核实销号")
        .await
        .unwrap()
}

async fn a_finding_becomes_an_item_that_closes_only_once_resolved_and_keeps_every_step(
    backend: Backend,
) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 1, 1, 2).await;
    assert!(
        open_codes(&app, &unit)
            .await
            .contains(&(RuleCode::OverQuota as i32))
    );

    let mut staffing = ledger(&app, AgencyKind::StaffingOffice).await;
    let mut hr = ledger(&app, AgencyKind::Hr).await;
    let mut discipline = ledger(&app, AgencyKind::Discipline).await;
    let opened = staffing
        .open_item(proto::OpenItemRequest {
            due_on: "2024-06-30".into(),
            finding: Some(proto::FindingRef {
                code: RuleCode::OverQuota as i32,
                institution_uscc: unit.clone(),
                subject: "ADMINISTRATIVE".into(),
                period: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(opened.state, ItemState::Open as i32);
    assert_eq!(opened.department_uscc, unit);
    assert!(!opened.title.is_empty(), "the finding's explanation");
    // One matter, one account.
    let twice = staffing
        .open_item(proto::OpenItemRequest {
            due_on: "2024-07-30".into(),
            finding: opened.finding.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);

    // Only the staffing office opens items; discipline reads but does not move them.
    let refused = ledger(&app, AgencyKind::Hr)
        .await
        .open_item(proto::OpenItemRequest {
            department_uscc: unit.clone(),
            title: "x".into(),
            due_on: "2024-06-30".into(),
            finding: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = step(&mut discipline, &opened, ItemAction::StartRectifying, "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let rectifying = step(&mut hr, &opened, ItemAction::StartRectifying, "开始整改")
        .await
        .unwrap();
    let submitted = step(&mut hr, &rectifying, ItemAction::Submit, "已调出一人")
        .await
        .unwrap();
    // The department cannot verify its own fix.
    let refused = step(&mut hr, &submitted, ItemAction::Close, "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // The data still shows the finding: the item cannot close.
    let refused = step(&mut staffing, &submitted, ItemAction::Close, "核实")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("still shows"),
        "{}",
        refused.message()
    );
    let sent_back = step(
        &mut staffing,
        &submitted,
        ItemAction::SendBack,
        "数据仍显示超编",
    )
    .await
    .unwrap();
    assert_eq!(sent_back.state, ItemState::Rectifying as i32);
    // A stale version is refused and changes nothing.
    let stale = step(&mut hr, &submitted, ItemAction::Submit, "再次提交")
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let resubmitted = step(&mut hr, &sent_back, ItemAction::Submit, "已申请增编")
        .await
        .unwrap();

    // The quota is raised: the data no longer shows the finding, and the item closes.
    app.staffing("140100")
        .await
        .push_quota(quota("q-1-raised", &unit, 2))
        .await
        .unwrap();
    assert!(
        !open_codes(&app, &unit)
            .await
            .contains(&(RuleCode::OverQuota as i32))
    );
    let closed = step(&mut staffing, &resubmitted, ItemAction::Close, "对账销号")
        .await
        .unwrap();
    assert_eq!(closed.state, ItemState::Closed as i32);
    let refused = step(&mut staffing, &closed, ItemAction::SendBack, "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "closed is final");

    // Every step, with who and what, in order.
    let read = discipline
        .get_item(proto::IdRequest {
            id: opened.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let steps: Vec<(&str, &str, &str, &str)> = read
        .history
        .iter()
        .map(|s| {
            (
                s.agency_id.as_str(),
                s.from_state.as_str(),
                s.to_state.as_str(),
                s.text.as_str(),
            )
        })
        .collect();
    assert_eq!(
        steps[1..],
        [
            ("140100/hr", "OPEN", "RECTIFYING", "开始整改"),
            ("140100/hr", "RECTIFYING", "SUBMITTED", "已调出一人"),
            (
                "140100/staffing-office",
                "SUBMITTED",
                "RECTIFYING",
                "数据仍显示超编"
            ),
            ("140100/hr", "RECTIFYING", "SUBMITTED", "已申请增编"),
            ("140100/staffing-office", "SUBMITTED", "CLOSED", "对账销号"),
        ]
    );
    assert_eq!(steps[0].2, "OPEN");
    // What was read before is still the start of the history: steps are only ever appended.
    for (earlier, now) in submitted.history.iter().zip(&read.history) {
        assert_eq!(earlier, now);
    }

    // No RPC edits or deletes a step: the ledger's methods are exactly these, and no method of
    // any service names a step or history to change.
    let descriptors: prost_types::FileDescriptorSet =
        prost::Message::decode(quotahub::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut ledger_methods = Vec::new();
    for file in &descriptors.file {
        for service in &file.service {
            for method in &service.method {
                let name = method.name();
                assert!(
                    !(["Edit", "Update", "Delete", "Remove", "Amend"]
                        .iter()
                        .any(|verb| name.starts_with(verb))
                        && ["Step", "History", "Item", "Case"]
                            .iter()
                            .any(|noun| name.contains(noun))),
                    "{}/{name} would edit follow-up history",
                    service.name()
                );
                if service.name() == "LedgerService" {
                    ledger_methods.push(name.to_owned());
                }
            }
        }
    }
    ledger_methods.sort();
    assert_eq!(
        ledger_methods,
        [
            "AssignItem",
            "ConfirmLevel",
            "GetItem",
            "ImposePenalty",
            "ListItems",
            "ListPenalties",
            "MoveItem",
            "OpenItem",
            "Report"
        ]
    );

    // The reconciliation counts it: opened and closed today, nothing overdue or open.
    let report = discipline
        .report(proto::LedgerReportRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!((row.opened, row.closed, row.overdue), (1, 1, 0));
    assert_eq!(row.oldest_open_on, "");

    // `quotahub ledger report` prints the same report.
    let files = ClientFiles::new(&agency("140100", AgencyKind::StaffingOffice));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.csv");
    let cli = <quotahub::cli::Cli as clap::Parser>::parse_from([
        "quotahub",
        "ledger",
        "report",
        "--format",
        "csv",
        "--server",
        &app.endpoint(),
        "--ca",
        &files.ca,
        "--cert",
        &files.cert,
        "--key",
        &files.key,
        "--out",
        out.to_str().unwrap(),
    ]);
    quotahub::cli::run(cli).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!(
            "jurisdiction,department_uscc,opened,closed,overdue,oldest_open_on\n140100,{unit},1,1,0,\n"
        )
    );
}

async fn applications_wait_while_an_item_is_overdue_and_pass_once_it_is_closed(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 2, 3, 1).await;
    let item = open_by_hand(&app, &unit, "2024-06-10").await;
    let apply = |override_reason: &str| proto::ApplyRequest {
        department_uscc: unit.clone(),
        kind: proto::ApplicationKind::ChangeQuota as i32,
        reason: "新增职能".into(),
        category: proto::QuotaCategory::Administrative as i32,
        count: 5,
        override_reason: override_reason.into(),
        ..Default::default()
    };
    let mut hr = applications(&app, AgencyKind::Hr).await;
    let mut staffing = applications(&app, AgencyKind::StaffingOffice).await;
    // Open but not yet due: no hold.
    hr.apply(apply("")).await.unwrap();

    let clock = &app.store.checks().clock;
    clock.advance(chrono::Duration::days(15));
    // Six days late: the first step of the ladder, on the feed.
    assert_eq!(
        app.store
            .escalate_follow_ups(clock.today())
            .await
            .unwrap()
            .len(),
        1
    );
    let refused = hr.apply(apply("")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let failure = refused
        .get_error_details()
        .precondition_failure()
        .cloned()
        .expect("a PreconditionFailure detail");
    let listed: Vec<(&str, &str)> = failure
        .violations
        .iter()
        .map(|v| (v.r#type.as_str(), v.subject.as_str()))
        .collect();
    assert_eq!(listed, [("LEDGER_ITEM_OVERDUE", item.id.as_str())]);
    let listed = ledger(&app, AgencyKind::Audit)
        .await
        .list_items(proto::ListItemsRequest {
            overdue_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].overdue);
    assert_eq!(listed[0].escalation_level, 1);

    // Only the staffing office may override, and the override is kept with the application.
    let refused = hr.apply(apply("急需")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let overridden = staffing
        .apply(apply("防汛急需, 经主任批准"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overridden.override_reason, "防汛急需, 经主任批准");
    assert_eq!(overridden.override_by, "140100/staffing-office");

    close(&app, item).await;
    let accepted = hr.apply(apply("")).await.unwrap().into_inner();
    assert_eq!(accepted.override_reason, "", "no override needed any more");
    assert_eq!(accepted.state, proto::ApplicationState::Pending as i32);

    // Approved, the quota becomes the one in force, with the application as its source.
    let refused = hr
        .decide(proto::DecideRequest {
            application_id: accepted.id.clone(),
            approve: true,
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let decided = staffing
        .decide(proto::DecideRequest {
            application_id: accepted.id.clone(),
            approve: true,
            note: "同意".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.state, proto::ApplicationState::Approved as i32);
    assert_eq!(
        decided.registry_record,
        format!("140100/staffing-office/application/{}", accepted.id)
    );
    let today = app.store.checks().clock.today();
    let view = app
        .store
        .institution_view(&quotahub::domain::Uscc::parse(&unit).unwrap(), today)
        .await
        .unwrap()
        .unwrap();
    let quota = view.categories[0].quota.as_ref().unwrap();
    assert_eq!(quota.record.approved_count, 5);
    assert_eq!(quota.record_id, format!("application/{}", accepted.id));
    let again = staffing
        .decide(proto::DecideRequest {
            application_id: accepted.id,
            approve: false,
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // An approved abolition is a new version of the department's registry record.
    let abolition = hr
        .apply(proto::ApplyRequest {
            department_uscc: unit.clone(),
            kind: proto::ApplicationKind::Abolish as i32,
            reason: "职能划转".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    staffing
        .decide(proto::DecideRequest {
            application_id: abolition.id.clone(),
            approve: true,
            note: "同意撤销".into(),
        })
        .await
        .unwrap();
    let registered = app
        .store
        .institution(&quotahub::domain::Uscc::parse(&unit).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        registered.record.status,
        quotahub::domain::InstitutionStatus::Abolished
    );
    assert_eq!(
        registered.record_id,
        format!("application/{}", abolition.id)
    );
}

async fn a_penalty_cuts_vacant_quota_and_the_checks_that_follow_see_it(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 3, 5, 3).await;
    assert!(
        !open_codes(&app, &unit)
            .await
            .contains(&(RuleCode::QuotaFull as i32))
    );
    let item = open_by_hand(&app, &unit, "2024-06-30").await;
    let mut staffing = ledger(&app, AgencyKind::StaffingOffice).await;
    let cut = |cut: u32| proto::ImposePenaltyRequest {
        item_id: item.id.clone(),
        kind: proto::PenaltyKind::CutVacantQuota as i32,
        category: proto::QuotaCategory::Administrative as i32,
        cut,
        text: "核减空余编制".into(),
        ..Default::default()
    };
    // Only vacancies can be cut: 2 of 5 are vacant.
    let refused = staffing.impose_penalty(cut(3)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let penalty = staffing.impose_penalty(cut(2)).await.unwrap().into_inner();
    assert_eq!(penalty.institution_uscc, unit);
    // The quota is now 3 for 3 people: full, and the re-check of the push said so at once.
    assert!(
        open_codes(&app, &unit)
            .await
            .contains(&(RuleCode::QuotaFull as i32))
    );
    // The next hire goes over the lowered quota.
    app.hr("140100")
        .await
        .push_personnel_event(hire("h-3-next", &resident(399), &unit, "2024-06-01"))
        .await
        .unwrap();
    assert!(
        open_codes(&app, &unit)
            .await
            .contains(&(RuleCode::OverQuota as i32))
    );

    staffing
        .impose_penalty(proto::ImposePenaltyRequest {
            item_id: item.id.clone(),
            kind: proto::PenaltyKind::Admonition as i32,
            text: "诫勉谈话".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let penalties = ledger(&app, AgencyKind::Audit)
        .await
        .list_penalties(proto::ListPenaltiesRequest {
            institution_uscc: unit.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .penalties;
    let kinds: Vec<(i32, u32)> = penalties.iter().map(|p| (p.kind, p.cut)).collect();
    assert_eq!(
        kinds,
        [
            (proto::PenaltyKind::CutVacantQuota as i32, 2),
            (proto::PenaltyKind::Admonition as i32, 0)
        ]
    );
    let history = staffing
        .get_item(proto::IdRequest {
            id: item.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .history;
    assert_eq!(history.len(), 3, "opened, and one step per penalty");
    assert!(history[1].text.contains(&penalty.id));
    // Only the staffing office penalizes.
    let refused = ledger(&app, AgencyKind::Hr)
        .await
        .impose_penalty(cut(1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

async fn a_report_becomes_a_case_that_escalates_when_overdue(backend: Backend) {
    let app = spawn(backend).await;
    let mut office_feed = feed(&app, "140100", AgencyKind::StaffingOffice).await;
    office_feed
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "follow-up".into(),
                filter: Some(proto::SubscriptionFilter {
                    event_types: vec![proto::FeedEventType::FollowUpEscalated as i32],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut events = subscribe(&mut office_feed, "follow-up", None).await;

    let mut office = cases(&app, AgencyKind::StaffingOffice).await;
    let case = office
        .take_report(proto::ReportRequest {
            channel: proto::ReportChannel::Hotline as i32,
            institution_uscc: uscc("140100", 4),
            text: "某单位有人长期不上班仍领工资".into(),
            person: "张三".into(),
            owner: "督查科 王某".into(),
            due_on: "2024-06-05".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.state, proto::CaseState::Received as i32);
    assert_eq!(case.history.len(), 1);

    let store = &app.store;
    let clock = &store.checks().clock;
    assert!(
        store
            .escalate_follow_ups(clock.today())
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(chrono::Duration::days(5));
    assert_eq!(
        store
            .escalate_follow_ups(clock.today())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .escalate_follow_ups(clock.today())
            .await
            .unwrap()
            .is_empty(),
        "each step fires once"
    );
    let event = next_event(&mut events).await;
    assert_eq!(
        event.event_type,
        proto::FeedEventType::FollowUpEscalated as i32
    );
    assert!(event.finding.is_none());
    let follow_up = event.follow_up.unwrap();
    assert_eq!(follow_up.matter, proto::MatterKind::Case as i32);
    assert_eq!(follow_up.id, case.id);
    assert_eq!((follow_up.escalation_level, event.escalation_level), (1, 1));

    let read = office
        .get_case(proto::IdRequest {
            id: case.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(read.overdue);
    assert_eq!(read.escalation_level, 1);

    // A week late: the written warning.
    clock.advance(chrono::Duration::days(7));
    store.escalate_follow_ups(clock.today()).await.unwrap();
    assert_eq!(next_event(&mut events).await.escalation_level, 2);

    let refused = office
        .publish_bulletin(proto::BulletinRequest {
            case_id: case.id.clone(),
            text: "通报".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "only closed cases"
    );

    // Closed with its outcome, it climbs no further.
    let investigating = office
        .move_case(proto::MoveCaseRequest {
            case_id: case.id.clone(),
            to: proto::CaseState::Investigating as i32,
            expected_version: read.version,
            text: "已约谈".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let refused = office
        .move_case(proto::MoveCaseRequest {
            case_id: case.id.clone(),
            to: proto::CaseState::Closed as i32,
            expected_version: investigating.version,
            text: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::InvalidArgument,
        "closing needs the outcome"
    );
    let closed = office
        .move_case(proto::MoveCaseRequest {
            case_id: case.id.clone(),
            to: proto::CaseState::Closed as i32,
            expected_version: investigating.version,
            text: "查实, 已停发工资并追缴".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.history.len(), 3);
    clock.advance(chrono::Duration::days(60));
    assert!(
        store
            .escalate_follow_ups(clock.today())
            .await
            .unwrap()
            .is_empty()
    );

    // Published as a bulletin, it reaches the districts below, without personal data.
    let mut district = feed(&app, "140105", AgencyKind::Audit).await;
    district
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "bulletins".into(),
                filter: Some(proto::SubscriptionFilter {
                    event_types: vec![proto::FeedEventType::Bulletin as i32],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut bulletins = subscribe(&mut district, "bulletins", None).await;
    let bulletin = office
        .publish_bulletin(proto::BulletinRequest {
            case_id: case.id.clone(),
            text: "张三(11010519491231002X)吃空饷一案已查处".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bulletin.text, "***(110105********002X)吃空饷一案已查处");
    let event = next_event(&mut bulletins).await;
    assert_eq!(event.event_type, proto::FeedEventType::Bulletin as i32);
    assert_eq!(event.follow_up.unwrap().text, bulletin.text);
    // The district sees the city's bulletin but not the city's other follow-up; the database's
    // filter and the in-process tail's agree.
    let district_code = quotahub::domain::Jurisdiction::parse("140105").unwrap();
    let from_tail: Vec<i64> = store
        .feed_after_shared(0, &district_code, AgencyKind::Audit, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    let from_sql: Vec<i64> = store
        .feed_after(0, Some((&district_code, AgencyKind::Audit)), 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(from_tail, from_sql);
    assert_eq!(from_sql, [i64::try_from(event.seq).unwrap()]);
}

async fn a_transfer_reaches_the_discipline_agency_and_no_one_else(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 5, 1, 2).await;
    let item = open_by_hand(&app, &unit, "2024-06-30").await;

    let mut streams = Vec::new();
    for kind in [AgencyKind::Discipline, AgencyKind::Audit] {
        let mut client = feed(&app, "140100", kind).await;
        client
            .put_subscription(proto::PutSubscriptionRequest {
                subscription: Some(proto::Subscription {
                    name: "transfers".into(),
                    filter: Some(proto::SubscriptionFilter {
                        event_types: vec![proto::FeedEventType::Transferred as i32],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        streams.push(subscribe(&mut client, "transfers", None).await);
    }

    let mut office = cases(&app, AgencyKind::StaffingOffice).await;
    let transfer = office
        .transfer(proto::TransferRequest {
            kind: proto::TransferKind::Transfer as i32,
            matter: proto::MatterKind::LedgerItem as i32,
            matter_id: item.id.clone(),
            agencies: Vec::new(),
            text: "逾期未整改, 移送纪检监察".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(transfer.receipts.len(), 1);
    assert_eq!(
        transfer.receipts[0].agency,
        proto::AgencyKind::Discipline as i32
    );

    let event = next_event(&mut streams[0]).await;
    let follow_up = event.follow_up.unwrap();
    assert_eq!(follow_up.transfer_id, transfer.id);
    assert_eq!(follow_up.id, item.id);
    assert_eq!(follow_up.history.len(), 1, "the item's whole history");
    assert_eq!(follow_up.text, "逾期未整改, 移送纪检监察");

    // Audit was not reached: the first transfer its subscription sees is the joint inspection
    // that names it.
    let joint = office
        .transfer(proto::TransferRequest {
            kind: proto::TransferKind::JointInspection as i32,
            matter: proto::MatterKind::LedgerItem as i32,
            matter_id: item.id.clone(),
            agencies: vec![
                proto::AgencyKind::Audit as i32,
                proto::AgencyKind::Finance as i32,
            ],
            text: "联合督查".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seen_by_audit = next_event(&mut streams[1]).await.follow_up.unwrap();
    assert_eq!(seen_by_audit.transfer_id, joint.id);
    // And discipline, not named in it, sees nothing more than its own transfer.
    let discipline_store = app
        .store
        .feed_after_shared(
            0,
            &quotahub::domain::Jurisdiction::parse("140100").unwrap(),
            AgencyKind::Discipline,
            100,
        )
        .await
        .unwrap();
    let transfers: Vec<String> = discipline_store
        .iter()
        .filter_map(|e| e.follow_up.as_ref().map(|f| f.transfer_id.clone()))
        .collect();
    assert_eq!(transfers, vec![transfer.id.clone()]);
    // The database's filter and the in-process tail's are the same test.
    let jurisdiction = quotahub::domain::Jurisdiction::parse("140100").unwrap();
    for kind in AgencyKind::ALL {
        let from_tail: Vec<i64> = app
            .store
            .feed_after_shared(0, &jurisdiction, kind, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        let from_sql: Vec<i64> = app
            .store
            .feed_after(0, Some((&jurisdiction, kind)), 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(from_tail, from_sql, "{kind}");
    }

    // Receipts are acknowledged by the agencies reached, and only by them.
    let refused = cases(&app, AgencyKind::Audit)
        .await
        .acknowledge_receipt(proto::IdRequest {
            id: transfer.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let acknowledged = cases(&app, AgencyKind::Discipline)
        .await
        .acknowledge_receipt(proto::IdRequest {
            id: transfer.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acknowledged.receipts[0].acknowledged_by,
        "140100/discipline"
    );
    // Another jurisdiction's discipline agency is not reached either.
    let refused = Cases::new(app.channel(&agency("140105", AgencyKind::Discipline)).await)
        .acknowledge_receipt(proto::IdRequest { id: transfer.id })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // An alert goes the same way, named by its finding's key.
    let alert = cases(&app, AgencyKind::StaffingOffice)
        .await
        .transfer(proto::TransferRequest {
            kind: proto::TransferKind::Transfer as i32,
            matter: proto::MatterKind::Alert as i32,
            matter_id: format!("OVER_QUOTA|{unit}|ADMINISTRATIVE|"),
            agencies: Vec::new(),
            text: "超编, 移送".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let follow_up = next_event(&mut streams[0]).await.follow_up.unwrap();
    assert_eq!(follow_up.transfer_id, alert.id);
    assert_eq!(follow_up.matter, proto::MatterKind::Alert as i32);
    assert_eq!(follow_up.state, "OPEN");
}
