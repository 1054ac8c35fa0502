//! Assignment down the levels and closure level by level over real mTLS: the city's staffing
//! office assigns an item to the district's (交办); the department rectifies; the district
//! reports back (上报) and the city confirms last, which closes the item (逐级对账销号). Closing
//! early and confirming out of order are refused; the feed carries each move to both offices and
//! to no other kind; the ledger's report shows the items by the level they wait on.

use chrono::NaiveDate;
use quotahub::domain::{AgencyKind, Jurisdiction};
use quotahub::proto;
use quotahub::proto::{ItemAction, ItemState};
use tonic::Code;

use crate::feed::{feed, next_event, subscribe};
use crate::helpers::*;
use crate::ledger::Ledger;
use crate::on_both_backends;

on_both_backends!(
    an_item_assigned_city_to_district_closes_only_when_both_confirm_lowest_first,
    a_level_that_finds_the_report_wanting_sends_it_back_and_the_round_starts_again,
);

async fn office(app: &TestApp, jurisdiction: &str) -> Ledger {
    Ledger::new(
        app.channel(&agency(jurisdiction, AgencyKind::StaffingOffice))
            .await,
    )
}

/// An organ of the district, pushed by the city's staffing office, with an item opened for it
/// by the city.
async fn district_item(app: &TestApp, n: u32) -> proto::LedgerItem {
    let unit = uscc("140105", n);
    app.staffing("140100")
        .await
        .push_institution(organ(&format!("inst-{n}"), &unit, "140105"))
        .await
        .unwrap();
    office(app, "140100")
        .await
        .open_item(proto::OpenItemRequest {
            department_uscc: unit,
            title: "区属单位超编，市编办交办区编办核查整改".into(),
            due_on: "2024-06-30".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn assign(
    client: &mut Ledger,
    item: &proto::LedgerItem,
    to: &str,
) -> Result<proto::LedgerItem, tonic::Status> {
    client
        .assign_item(proto::AssignItemRequest {
            item_id: item.id.clone(),
            to: to.into(),
            expected_version: item.version,
            text: "请核查整改并按时上报".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn confirm(
    client: &mut Ledger,
    item: &proto::LedgerItem,
    text: &str,
) -> Result<proto::LedgerItem, tonic::Status> {
    client
        .confirm_level(proto::ConfirmLevelRequest {
            item_id: item.id.clone(),
            expected_version: item.version,
            text: text.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn move_item(
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

/// The department's side (the district's HR) rectifies and submits.
async fn rectify(app: &TestApp, item: proto::LedgerItem) -> proto::LedgerItem {
    let mut hr = Ledger::new(app.channel(&agency("140105", AgencyKind::Hr)).await);
    let item = if item.state == ItemState::Open as i32 {
        move_item(&mut hr, &item, ItemAction::StartRectifying, "")
            .await
            .unwrap()
    } else {
        item
    };
    move_item(&mut hr, &item, ItemAction::Submit, "已按核定编制调整人员")
        .await
        .unwrap()
}

async fn by_level(client: &mut Ledger) -> Vec<(String, u64, u64)> {
    client
        .report(proto::LedgerReportRequest {
            to: "2024-06-01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .by_level
        .into_iter()
        .map(|row| (row.jurisdiction, row.waiting, row.working))
        .collect()
}

/// A subscription of `jurisdiction`'s `kind` to the assignment events.
pub(crate) async fn level_events(
    app: &TestApp,
    jurisdiction: &str,
    kind: AgencyKind,
) -> tonic::Streaming<proto::FeedMessage> {
    let mut client = feed(app, jurisdiction, kind).await;
    client
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "levels".into(),
                filter: Some(proto::SubscriptionFilter {
                    event_types: vec![
                        proto::FeedEventType::Assigned as i32,
                        proto::FeedEventType::LevelConfirmed as i32,
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    subscribe(&mut client, "levels", None).await
}

async fn an_item_assigned_city_to_district_closes_only_when_both_confirm_lowest_first(
    backend: Backend,
) {
    let app =
        TestApp::spawn_on_with_console(backend, "2024-06-01".parse::<NaiveDate>().unwrap()).await;
    let mut city_stream = level_events(&app, "140100", AgencyKind::StaffingOffice).await;
    let mut district_stream = level_events(&app, "140105", AgencyKind::StaffingOffice).await;
    let mut city = office(&app, "140100").await;
    let mut district = office(&app, "140105").await;
    let item = district_item(&app, 1).await;
    assert_eq!(item.jurisdiction, "140105");

    // Who may assign to whom: not to a district that does not hold the department, not by a
    // kind other than the staffing office, not by the district (it holds nothing yet).
    let refused = assign(&mut city, &item, "140106").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let mut hr = Ledger::new(app.channel(&agency("140100", AgencyKind::Hr)).await);
    let refused = assign(&mut hr, &item, "140105").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = assign(&mut district, &item, "140105").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    let item = assign(&mut city, &item, "140105").await.unwrap();
    let chain: Vec<&str> = item
        .levels
        .iter()
        .map(|level| level.jurisdiction.as_str())
        .collect();
    assert_eq!(chain, ["140100", "140105"]);
    assert_eq!(item.waiting_on, "140105");
    assert_eq!(
        item.state,
        ItemState::Open as i32,
        "assigning moves no state"
    );
    for stream in [&mut city_stream, &mut district_stream] {
        let event = next_event(stream).await;
        assert_eq!(event.event_type, proto::FeedEventType::Assigned as i32);
        let follow_up = event.follow_up.unwrap();
        assert_eq!(follow_up.id, item.id);
        assert!(
            follow_up.text.contains("交办 140100 → 140105"),
            "{follow_up:?}"
        );
    }
    // The city cannot assign it again: the district holds it.
    let refused = assign(&mut city, &item, "140105").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(by_level(&mut city).await, [("140105".to_owned(), 1, 1)]);

    // Nothing is confirmed before the department submits.
    let refused = confirm(&mut district, &item, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let item = rectify(&app, item).await;
    assert_eq!(item.state, ItemState::Submitted as i32);

    // Closing early: neither the ledger's own close nor the city's confirmation before the
    // district's.
    let refused = move_item(&mut city, &item, ItemAction::Close, "核实销号")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("逐级"), "{}", refused.message());
    let refused = confirm(&mut city, &item, "市编办确认").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("140105"),
        "{}",
        refused.message()
    );
    // An office outside the chain is no level of it.
    let mut other = office(&app, "140200").await;
    let refused = confirm(&mut other, &item, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The district reports back (上报); the item waits on the city.
    let item = confirm(&mut district, &item, "经核查已整改到位")
        .await
        .unwrap();
    assert_eq!(item.state, ItemState::Submitted as i32, "still open");
    assert_eq!(item.waiting_on, "140100");
    assert_eq!(item.levels[1].confirmed_by, "140105/staffing-office");
    assert!(item.levels[0].confirmed_by.is_empty());
    let refused = confirm(&mut district, &item, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "confirmed once");
    assert_eq!(by_level(&mut city).await, [("140100".to_owned(), 1, 0)]);
    // The console's page of the item shows the chain, the district's level confirmed, and the
    // level it waits on.
    let (status, page) = app
        .console_page(
            &agency("140100", AgencyKind::StaffingOffice),
            &format!("/ledger/item?id={}", item.id),
        )
        .await;
    assert!(status.contains("200"), "{status}");
    for text in ["交办链", "140100 → 140105 ✓", "等待确认", "<dd>140100</dd>"] {
        assert!(page.contains(text), "the item's page lacks {text}:\n{page}");
    }
    // `quotahub ledger report --by-level` prints the same.
    let files = ClientFiles::new(&agency("140100", AgencyKind::StaffingOffice));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("levels.csv");
    let cli = <quotahub::cli::Cli as clap::Parser>::parse_from([
        "quotahub",
        "ledger",
        "report",
        "--by-level",
        "--format",
        "csv",
        "--to",
        "2024-06-01",
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
        "jurisdiction,waiting,overdue,working\n140100,1,0,0\n"
    );
    for stream in [&mut city_stream, &mut district_stream] {
        let event = next_event(stream).await;
        assert_eq!(
            event.event_type,
            proto::FeedEventType::LevelConfirmed as i32
        );
        let follow_up = event.follow_up.unwrap();
        assert_eq!(follow_up.state, "SUBMITTED");
        assert!(follow_up.text.starts_with("140105 上报"), "{follow_up:?}");
    }

    // The city confirms last and the item closes (销号).
    let item = confirm(&mut city, &item, "对账销号").await.unwrap();
    assert_eq!(item.state, ItemState::Closed as i32);
    assert!(item.waiting_on.is_empty());
    assert!(
        item.levels
            .iter()
            .all(|level| !level.confirmed_by.is_empty())
    );
    assert!(by_level(&mut city).await.is_empty(), "nothing waits");
    for stream in [&mut city_stream, &mut district_stream] {
        let event = next_event(stream).await;
        assert_eq!(
            event.event_type,
            proto::FeedEventType::LevelConfirmed as i32
        );
        assert_eq!(event.follow_up.unwrap().state, "CLOSED");
    }
    // Every move is a step, in order.
    let history: Vec<String> = item.history.iter().map(|step| step.text.clone()).collect();
    assert!(
        history[1].starts_with("交办 140100 → 140105"),
        "{history:?}"
    );
    assert!(history[4].starts_with("140105 上报"), "{history:?}");
    assert!(history[5].starts_with("140100 确认销号"), "{history:?}");
    let refused = confirm(&mut city, &item, "").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "closed");

    // The events reached the staffing offices only.
    let jurisdiction = Jurisdiction::parse("140100").unwrap();
    for kind in AgencyKind::ALL {
        let seen = app
            .store
            .feed_after_shared(0, &jurisdiction, kind, 100)
            .await
            .unwrap()
            .iter()
            .filter(|event| event.follow_up.as_ref().is_some_and(|f| f.id == item.id))
            .count();
        assert_eq!(
            seen,
            if kind == AgencyKind::StaffingOffice {
                3
            } else {
                0
            },
            "{kind}"
        );
    }
}

async fn a_level_that_finds_the_report_wanting_sends_it_back_and_the_round_starts_again(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, "2024-06-01".parse::<NaiveDate>().unwrap()).await;
    let mut city = office(&app, "140100").await;
    let mut district = office(&app, "140105").await;
    let item = district_item(&app, 2).await;
    let item = assign(&mut city, &item, "140105").await.unwrap();
    let item = rectify(&app, item).await;
    let item = confirm(&mut district, &item, "已整改").await.unwrap();

    // The district, no longer waited on, cannot send it back; the city can.
    let refused = move_item(&mut district, &item, ItemAction::SendBack, "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let item = move_item(&mut city, &item, ItemAction::SendBack, "人员尚未调整到位")
        .await
        .unwrap();
    assert_eq!(item.state, ItemState::Rectifying as i32);
    assert_eq!(
        item.waiting_on, "140105",
        "the round starts from the bottom"
    );
    assert!(
        item.levels
            .iter()
            .all(|level| level.confirmed_by.is_empty())
    );

    let item = rectify(&app, item).await;
    let refused = confirm(&mut city, &item, "").await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "the district first"
    );
    let item = confirm(&mut district, &item, "再次核查").await.unwrap();
    let item = confirm(&mut city, &item, "销号").await.unwrap();
    assert_eq!(item.state, ItemState::Closed as i32);
}
