//! The follow-through's promises to a client that retries, over real mTLS: a resent request with
//! its idempotency key creates nothing twice, a key reused for other content is refused; lists
//! come in pages; of two concurrent decisions only the winner reaches the registry; the
//! transferring office learns of a receipt on its feed.

use std::collections::BTreeSet;

use quotahub::domain::{AgencyKind, Uscc};
use quotahub::proto;
use tonic::Code;

use crate::feed::{feed, next_event, subscribe};
use crate::helpers::*;
use crate::ledger::{applications, cases, close, ledger, open_by_hand, spawn, unit_with};
use crate::on_both_backends;

on_both_backends!(
    a_resent_request_creates_nothing_twice_and_a_reused_key_is_refused,
    items_and_penalties_come_in_pages,
    of_two_concurrent_decisions_only_the_winner_reaches_the_registry,
    a_receipt_reaches_the_feed_of_the_transferring_office_once,
);

/// The approved count of the unit's administrative quota in force, and its record id.
async fn quota_in_force(app: &TestApp, unit: &str) -> (u32, String) {
    let today = app.store.checks().clock.today();
    let view = app
        .store
        .institution_view(&Uscc::parse(unit).unwrap(), today)
        .await
        .unwrap()
        .unwrap();
    let quota = view.categories[0].quota.as_ref().unwrap();
    (quota.record.approved_count, quota.record_id.clone())
}

async fn a_resent_request_creates_nothing_twice_and_a_reused_key_is_refused(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 11, 5, 3).await;
    let mut office = ledger(&app, AgencyKind::StaffingOffice).await;

    // OpenItem.
    let open = |title: &str| proto::OpenItemRequest {
        department_uscc: unit.clone(),
        title: title.into(),
        due_on: "2024-06-30".into(),
        idempotency_key: "item-1".into(),
        ..Default::default()
    };
    let item = office
        .open_item(open("超职数配备"))
        .await
        .unwrap()
        .into_inner();
    let again = office
        .open_item(open("超职数配备"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, item.id);
    assert_eq!(again.history.len(), 1);
    let listed = office
        .list_items(proto::ListItemsRequest {
            department_uscc: unit.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), 1, "one item, however often it is sent");
    let reused = office.open_item(open("另一问题")).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    // The key is the caller's own: another agency's same key is another request.
    let mut other = crate::ledger::Ledger::new(
        app.channel(&agency("140000", AgencyKind::StaffingOffice))
            .await,
    );
    let theirs = other
        .open_item(open("超职数配备"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(theirs.id, item.id);

    // ImposePenalty: a resent cut of vacant quota cuts once.
    let cut = |cut: u32| proto::ImposePenaltyRequest {
        item_id: item.id.clone(),
        kind: proto::PenaltyKind::CutVacantQuota as i32,
        category: proto::QuotaCategory::Administrative as i32,
        cut,
        text: "核减空余编制".into(),
        idempotency_key: "cut-1".into(),
    };
    let penalty = office.impose_penalty(cut(1)).await.unwrap().into_inner();
    let again = office.impose_penalty(cut(1)).await.unwrap().into_inner();
    assert_eq!(again.id, penalty.id);
    assert_eq!(quota_in_force(&app, &unit).await.0, 4, "5 less one, once");
    let reused = office.impose_penalty(cut(2)).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    assert_eq!(quota_in_force(&app, &unit).await.0, 4);
    let penalties = office
        .list_penalties(proto::ListPenaltiesRequest {
            institution_uscc: unit.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .penalties;
    assert_eq!(penalties.len(), 1);

    // Apply: a resend answers the first application, even once the gate would hold it back.
    let mut hr = applications(&app, AgencyKind::Hr).await;
    let apply = |count: u32| proto::ApplyRequest {
        department_uscc: unit.clone(),
        kind: proto::ApplicationKind::ChangeQuota as i32,
        reason: "新增职能".into(),
        category: proto::QuotaCategory::Administrative as i32,
        count,
        idempotency_key: "apply-1".into(),
        ..Default::default()
    };
    let application = hr.apply(apply(6)).await.unwrap().into_inner();
    app.store.checks().clock.advance(chrono::Duration::days(40));
    let again = hr.apply(apply(6)).await.unwrap().into_inner();
    assert_eq!(again.id, application.id);
    let reused = hr.apply(apply(7)).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    let fresh = hr
        .apply(proto::ApplyRequest {
            idempotency_key: "apply-2".into(),
            ..apply(6)
        })
        .await
        .unwrap_err();
    assert_eq!(
        fresh.code(),
        Code::FailedPrecondition,
        "a new request meets the gate"
    );

    // TakeReport, then PublishBulletin of its closed case.
    let mut office_cases = cases(&app, AgencyKind::StaffingOffice).await;
    let report = |text: &str| proto::ReportRequest {
        channel: proto::ReportChannel::Mailbox as i32,
        institution_uscc: unit.clone(),
        text: text.into(),
        owner: "督查科 王某".into(),
        due_on: "2024-08-01".into(),
        idempotency_key: "report-1".into(),
        ..Default::default()
    };
    let case = office_cases
        .take_report(report("有人吃空饷"))
        .await
        .unwrap()
        .into_inner();
    let again = office_cases
        .take_report(report("有人吃空饷"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, case.id);
    let reused = office_cases
        .take_report(report("另一举报"))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    let investigating = office_cases
        .move_case(proto::MoveCaseRequest {
            case_id: case.id.clone(),
            to: proto::CaseState::Investigating as i32,
            expected_version: case.version,
            text: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    office_cases
        .move_case(proto::MoveCaseRequest {
            case_id: case.id.clone(),
            to: proto::CaseState::Closed as i32,
            expected_version: investigating.version,
            text: "查实".into(),
        })
        .await
        .unwrap();
    let bulletin = |text: &str| proto::BulletinRequest {
        case_id: case.id.clone(),
        text: text.into(),
        idempotency_key: "bulletin-1".into(),
    };
    let published = office_cases
        .publish_bulletin(bulletin("通报"))
        .await
        .unwrap()
        .into_inner();
    let again = office_cases
        .publish_bulletin(bulletin("通报"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, published.id);
    let reused = office_cases
        .publish_bulletin(bulletin("另一通报"))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);

    // Transfer and joint inspection.
    let transfer =
        |kind: proto::TransferKind, agencies: Vec<i32>, key: &str| proto::TransferRequest {
            kind: kind as i32,
            matter: proto::MatterKind::LedgerItem as i32,
            matter_id: item.id.clone(),
            agencies,
            text: "移送".into(),
            idempotency_key: key.into(),
        };
    let sent = office_cases
        .transfer(transfer(proto::TransferKind::Transfer, Vec::new(), "tr-1"))
        .await
        .unwrap()
        .into_inner();
    let again = office_cases
        .transfer(transfer(proto::TransferKind::Transfer, Vec::new(), "tr-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, sent.id);
    let joint = || {
        transfer(
            proto::TransferKind::JointInspection,
            vec![proto::AgencyKind::Audit as i32],
            "joint-1",
        )
    };
    let shared = office_cases.transfer(joint()).await.unwrap().into_inner();
    assert_ne!(shared.id, sent.id);
    let again = office_cases.transfer(joint()).await.unwrap().into_inner();
    assert_eq!(again.id, shared.id);
    let reused = office_cases
        .transfer(transfer(
            proto::TransferKind::Transfer,
            Vec::new(),
            "joint-1",
        ))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
}

async fn items_and_penalties_come_in_pages(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 12, 5, 0).await;
    let mut all = BTreeSet::new();
    for day in 10..15 {
        all.insert(
            open_by_hand(&app, &unit, &format!("2024-06-{day}"))
                .await
                .id,
        );
    }
    // One closed: the overdue list leaves it out.
    let first = all.iter().next().unwrap().clone();
    let item = ledger(&app, AgencyKind::StaffingOffice)
        .await
        .get_item(proto::IdRequest { id: first.clone() })
        .await
        .unwrap()
        .into_inner();
    close(&app, item).await;
    app.store.checks().clock.advance(chrono::Duration::days(30));

    let mut audit = ledger(&app, AgencyKind::Audit).await;
    let pages = |overdue_only: bool| {
        let mut audit = audit.clone();
        async move {
            let mut pages = Vec::new();
            let mut token = String::new();
            loop {
                let page = audit
                    .list_items(proto::ListItemsRequest {
                        overdue_only,
                        page_size: 2,
                        page_token: token.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                pages.push(page.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>());
                if page.next_page_token.is_empty() {
                    return pages;
                }
                token = page.next_page_token;
            }
        }
    };
    let every = pages(false).await;
    assert_eq!(
        every.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 1],
        "5 items, 2 a page"
    );
    assert_eq!(every.concat(), all.iter().cloned().collect::<Vec<_>>());
    let overdue = pages(true).await;
    assert_eq!(overdue.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 0]);
    assert!(!overdue.concat().contains(&first));

    let mut office = ledger(&app, AgencyKind::StaffingOffice).await;
    let mut imposed = Vec::new();
    for n in 0..3 {
        imposed.push(
            office
                .impose_penalty(proto::ImposePenaltyRequest {
                    item_id: first.clone(),
                    kind: proto::PenaltyKind::Admonition as i32,
                    text: format!("诫勉 {n}"),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let page = |token: String| proto::ListPenaltiesRequest {
        institution_uscc: unit.clone(),
        page_size: 2,
        page_token: token,
    };
    let one = audit
        .list_penalties(page(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.penalties.len(), 2);
    let two = audit
        .list_penalties(page(one.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.next_page_token, "");
    let listed: Vec<String> = one
        .penalties
        .iter()
        .chain(&two.penalties)
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(listed, imposed, "oldest first, each once");
    let bad = audit
        .list_penalties(page("nonsense".into()))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

async fn of_two_concurrent_decisions_only_the_winner_reaches_the_registry(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 13, 3, 0).await;
    let mut hr = applications(&app, AgencyKind::Hr).await;
    let office = applications(&app, AgencyKind::StaffingOffice).await;
    let mut in_force = (3, "q-13".to_owned());
    assert_eq!(quota_in_force(&app, &unit).await, in_force);
    for round in 0..8u32 {
        // A day apart, so that each approved quota is in force from a day of its own.
        app.store.checks().clock.advance(chrono::Duration::days(1));
        let application = hr
            .apply(proto::ApplyRequest {
                department_uscc: unit.clone(),
                kind: proto::ApplicationKind::ChangeQuota as i32,
                reason: "调整".into(),
                category: proto::QuotaCategory::Administrative as i32,
                count: 10 + round,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let decide = |approve: bool| {
            let mut office = office.clone();
            let id = application.id.clone();
            async move {
                office
                    .decide(proto::DecideRequest {
                        application_id: id,
                        approve,
                        note: String::new(),
                    })
                    .await
            }
        };
        // The rejection goes first half of the time, so that either may win.
        let (approved, rejected) = if round % 2 == 0 {
            tokio::join!(decide(true), decide(false))
        } else {
            let (r, a) = tokio::join!(decide(false), decide(true));
            (a, r)
        };
        assert!(
            approved.is_ok() != rejected.is_ok(),
            "exactly one decision wins: {approved:?} / {rejected:?}"
        );
        let loser = approved.as_ref().err().or(rejected.as_ref().err()).unwrap();
        assert!(
            matches!(loser.code(), Code::Aborted | Code::FailedPrecondition),
            "{loser:?}"
        );
        let stored = office
            .clone()
            .get_application(proto::IdRequest {
                id: application.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if approved.is_ok() {
            assert_eq!(stored.state, proto::ApplicationState::Approved as i32);
            assert_eq!(
                stored.registry_record,
                format!("140100/staffing-office/application/{}", application.id)
            );
            in_force = (10 + round, format!("application/{}", application.id));
        } else {
            assert_eq!(stored.state, proto::ApplicationState::Rejected as i32);
            assert_eq!(stored.registry_record, "");
        }
        assert_eq!(
            quota_in_force(&app, &unit).await,
            in_force,
            "the registry carries the winning decision of round {round}"
        );
    }

    // An approval the registry refuses hands the claim back: still pending, and decidable.
    let unpushable = hr
        .apply(proto::ApplyRequest {
            department_uscc: unit.clone(),
            kind: proto::ApplicationKind::ChangeQuota as i32,
            reason: "漏填类别".into(),
            count: 9,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut office = office.clone();
    let refused = office
        .decide(proto::DecideRequest {
            application_id: unpushable.id.clone(),
            approve: true,
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let stored = office
        .get_application(proto::IdRequest {
            id: unpushable.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.state, proto::ApplicationState::Pending as i32);
    assert_eq!(stored.decided_by, "");
    let rejected = office
        .decide(proto::DecideRequest {
            application_id: unpushable.id,
            approve: false,
            note: "退回".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.state, proto::ApplicationState::Rejected as i32);
    assert_eq!(quota_in_force(&app, &unit).await, in_force);
}

async fn a_receipt_reaches_the_feed_of_the_transferring_office_once(backend: Backend) {
    let app = spawn(backend).await;
    let unit = unit_with(&app, 14, 3, 0).await;
    let item = open_by_hand(&app, &unit, "2024-06-30").await;
    let mut streams = Vec::new();
    for kind in [AgencyKind::StaffingOffice, AgencyKind::Discipline] {
        let mut client = feed(&app, "140100", kind).await;
        client
            .put_subscription(proto::PutSubscriptionRequest {
                subscription: Some(proto::Subscription {
                    name: "transfers".into(),
                    filter: Some(proto::SubscriptionFilter {
                        event_types: vec![
                            proto::FeedEventType::Transferred as i32,
                            proto::FeedEventType::ReceiptAcknowledged as i32,
                        ],
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
        streams.push(subscribe(&mut client, "transfers", None).await);
    }
    let office = cases(&app, AgencyKind::StaffingOffice).await;
    let mut discipline = cases(&app, AgencyKind::Discipline).await;
    let transfer = || {
        let mut office = office.clone();
        let id = item.id.clone();
        async move {
            office
                .transfer(proto::TransferRequest {
                    kind: proto::TransferKind::Transfer as i32,
                    matter: proto::MatterKind::LedgerItem as i32,
                    matter_id: id,
                    text: "移送".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = transfer().await;
    for _ in 0..2 {
        discipline
            .acknowledge_receipt(proto::IdRequest {
                id: first.id.clone(),
            })
            .await
            .unwrap();
    }
    let second = transfer().await;
    discipline
        .acknowledge_receipt(proto::IdRequest {
            id: second.id.clone(),
        })
        .await
        .unwrap();

    // The office sees each acknowledgement once (the second of the first transfer changed
    // nothing), and not its own transfers, which reach discipline only.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = next_event(&mut streams[0]).await;
        let follow_up = event.follow_up.unwrap();
        seen.push((event.event_type, follow_up.transfer_id, follow_up.id));
        assert!(
            follow_up.text.contains("140100/discipline"),
            "{}",
            follow_up.text
        );
    }
    let acknowledged = proto::FeedEventType::ReceiptAcknowledged as i32;
    assert_eq!(
        seen,
        [
            (acknowledged, first.id.clone(), item.id.clone()),
            (acknowledged, second.id.clone(), item.id.clone()),
        ]
    );
    // Discipline sees the transfers, not the acknowledgements meant for the sender.
    let transferred = proto::FeedEventType::Transferred as i32;
    for expected in [&first.id, &second.id] {
        let event = next_event(&mut streams[1]).await;
        assert_eq!(event.event_type, transferred);
        assert_eq!(&event.follow_up.unwrap().transfer_id, expected);
    }
}
