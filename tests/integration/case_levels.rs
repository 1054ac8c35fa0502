//! Cases down the levels and back up over real mTLS: the city's staffing office takes a report
//! about a district and assigns the case to the district's office (交办), which investigates and
//! reports back (上报); the city confirms last, which closes the case with its written outcome
//! (逐级销号) — here from the console's case page. Closing early, confirming out of order, a
//! wrong office and a stale version are refused with statuses that name the field or the level;
//! the feed carries each move to both offices and to no other division or kind; the ledger's
//! report counts the cases by the level they wait on. A send-back undoes the round. A stock
//! grpcio client makes the same moves.

use chrono::NaiveDate;
use quotahub::domain::{AgencyKind, Jurisdiction};
use quotahub::proto;
use quotahub::proto::CaseState;
use tonic::Code;
use tonic_types::StatusExt;

use crate::feed::next_event;
use crate::helpers::*;
use crate::ledger::{Cases, Ledger};
use crate::on_both_backends;

on_both_backends!(
    a_case_assigned_city_to_district_closes_only_when_both_confirm_lowest_first,
    a_city_that_finds_the_report_wanting_sends_the_case_back_and_the_round_starts_again,
    a_stock_grpcio_client_assigns_and_confirms_a_case,
);

const TODAY: &str = "2024-06-01";

async fn office(app: &TestApp, jurisdiction: &str) -> Cases {
    Cases::new(
        app.channel(&agency(jurisdiction, AgencyKind::StaffingOffice))
            .await,
    )
}

/// A hotline report about a unit of `division`, taken by the city's office.
async fn report_about(app: &TestApp, division: &str, n: u32) -> proto::Case {
    office(app, "140100")
        .await
        .take_report(proto::ReportRequest {
            channel: proto::ReportChannel::Hotline as i32,
            institution_uscc: uscc(division, n),
            text: "区属单位有人长期不上班仍领工资".into(),
            owner: "督查科 王某".into(),
            due_on: "2024-06-30".into(),
            jurisdiction: division.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn assign(
    client: &mut Cases,
    case: &proto::Case,
    to: &str,
) -> Result<proto::Case, tonic::Status> {
    client
        .assign_case(proto::AssignCaseRequest {
            case_id: case.id.clone(),
            to: to.into(),
            expected_version: case.version,
            text: "请核查并按时上报".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn confirm(
    client: &mut Cases,
    case: &proto::Case,
    text: &str,
) -> Result<proto::Case, tonic::Status> {
    client
        .confirm_case_level(proto::ConfirmCaseLevelRequest {
            case_id: case.id.clone(),
            expected_version: case.version,
            text: text.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn move_case(
    client: &mut Cases,
    case: &proto::Case,
    to: CaseState,
    text: &str,
) -> Result<proto::Case, tonic::Status> {
    client
        .move_case(proto::MoveCaseRequest {
            case_id: case.id.clone(),
            to: to as i32,
            expected_version: case.version,
            text: text.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The fields a refusal's `BadRequest` names.
fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        })
        .unwrap_or_default()
}

/// The assigned cases of the city's report, by the level they wait on: (division, waiting,
/// working).
async fn cases_by_level(app: &TestApp) -> Vec<(String, u64, u64)> {
    let mut ledger = Ledger::new(
        app.channel(&agency("140100", AgencyKind::StaffingOffice))
            .await,
    );
    let report = ledger
        .report(proto::LedgerReportRequest {
            to: TODAY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(report.by_level.is_empty(), "no item was assigned");
    report
        .cases_by_level
        .into_iter()
        .map(|row| (row.jurisdiction, row.waiting, row.working))
        .collect()
}

/// A subscription of `jurisdiction`'s staffing office to the assignment events.
async fn level_events(app: &TestApp, jurisdiction: &str) -> tonic::Streaming<proto::FeedMessage> {
    crate::levels::level_events(app, jurisdiction, AgencyKind::StaffingOffice).await
}

/// The next event of a stream: its type and its follow-up.
async fn next_move(stream: &mut tonic::Streaming<proto::FeedMessage>) -> (i32, proto::FollowUp) {
    let event = next_event(stream).await;
    (
        event.event_type,
        event.follow_up.expect("a follow-up event"),
    )
}

/// The value of a hidden input of a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in the page:\n{page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

async fn a_case_assigned_city_to_district_closes_only_when_both_confirm_lowest_first(
    backend: Backend,
) {
    let app = TestApp::spawn_on_with_console(backend, TODAY.parse::<NaiveDate>().unwrap()).await;
    let mut city_stream = level_events(&app, "140100").await;
    let mut district_stream = level_events(&app, "140105").await;
    let mut neighbour_stream = level_events(&app, "140106").await;
    let mut city = office(&app, "140100").await;
    let mut district = office(&app, "140105").await;
    let case = report_about(&app, "140105", 1).await;
    assert_eq!(case.jurisdiction, "140105");
    assert!(case.levels.is_empty() && case.waiting_on.is_empty());

    // Who may assign to whom, each refusal naming what is wrong: not to a district the case
    // does not lie in, not by the district (it is not directly above itself), not by another
    // kind, not from a version no longer stored.
    let refused = assign(&mut city, &case, "140106").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(fields(&refused), ["to"]);
    let refused = assign(&mut district, &case, "140105").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(fields(&refused), ["to"]);
    let mut hr = Cases::new(app.channel(&agency("140100", AgencyKind::Hr)).await);
    let refused = assign(&mut hr, &case, "140105").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let stale = proto::Case {
        version: case.version + 1,
        ..case.clone()
    };
    let refused = assign(&mut city, &stale, "140105").await.unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert!(
        refused.message().contains("expected_version"),
        "{}",
        refused.message()
    );

    let case = assign(&mut city, &case, "140105").await.unwrap();
    let chain: Vec<&str> = case
        .levels
        .iter()
        .map(|level| level.jurisdiction.as_str())
        .collect();
    assert_eq!(chain, ["140100", "140105"]);
    assert_eq!(case.levels[1].assigned_by, "140100/staffing-office");
    assert_eq!(case.waiting_on, "140105");
    assert_eq!(
        case.state,
        CaseState::Received as i32,
        "assigning moves no state"
    );
    for stream in [&mut city_stream, &mut district_stream] {
        let (event_type, follow_up) = next_move(stream).await;
        assert_eq!(event_type, proto::FeedEventType::Assigned as i32);
        assert_eq!(follow_up.matter, proto::MatterKind::Case as i32);
        assert_eq!(follow_up.id, case.id);
        assert!(
            follow_up.text.contains("交办 140100 → 140105"),
            "{follow_up:?}"
        );
    }
    let refused = assign(&mut city, &case, "140105").await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "the district holds it: {refused:?}"
    );
    assert_eq!(cases_by_level(&app).await, [("140105".to_owned(), 1, 1)]);

    // The district works it: the city no longer moves it, and nothing is reported before the
    // district investigates.
    let refused = move_case(&mut city, &case, CaseState::Investigating, "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("140105"),
        "{}",
        refused.message()
    );
    let refused = confirm(&mut district, &case, "已核实").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let case = move_case(&mut district, &case, CaseState::Investigating, "立案调查")
        .await
        .unwrap();

    // Closing early: neither the case's own close nor the city's confirmation before the
    // district's report; an office outside the chain is no level of it.
    let refused = move_case(&mut city, &case, CaseState::Closed, "查实")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("逐级"), "{}", refused.message());
    let refused = confirm(&mut city, &case, "市编办确认").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("140105"),
        "{}",
        refused.message()
    );
    let mut other = office(&app, "140200").await;
    let refused = confirm(&mut other, &case, "确认").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The report back says what was found.
    let refused = confirm(&mut district, &case, " ").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(fields(&refused), ["text"]);

    // The district reports back (上报); the case waits on the city.
    let case = confirm(&mut district, &case, "经核查，举报属实，已停发工资")
        .await
        .unwrap();
    assert_eq!(case.state, CaseState::Investigating as i32, "still open");
    assert_eq!(case.waiting_on, "140100");
    assert_eq!(case.levels[1].confirmed_by, "140105/staffing-office");
    assert!(case.levels[0].confirmed_by.is_empty());
    let refused = confirm(&mut district, &case, "再报").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "confirmed once");
    for stream in [&mut city_stream, &mut district_stream] {
        let (event_type, follow_up) = next_move(stream).await;
        assert_eq!(event_type, proto::FeedEventType::LevelConfirmed as i32);
        assert_eq!(follow_up.state, "INVESTIGATING");
        assert!(follow_up.text.starts_with("140105 上报"), "{follow_up:?}");
    }
    assert_eq!(cases_by_level(&app).await, [("140100".to_owned(), 1, 0)]);
    // `quotahub ledger report --cases-by-level` prints the same.
    let files = ClientFiles::new(&agency("140100", AgencyKind::StaffingOffice));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cases.csv");
    let cli = <quotahub::cli::Cli as clap::Parser>::parse_from([
        "quotahub",
        "ledger",
        "report",
        "--cases-by-level",
        "--format",
        "csv",
        "--to",
        TODAY,
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

    // The console's case page shows the chain and what each office may do now: the district
    // nothing, the city the confirmation that closes it.
    let city_office = agency("140100", AgencyKind::StaffingOffice);
    let page_of = format!("/case?id={}", case.id);
    let (status, page) = app
        .console_page(&agency("140105", AgencyKind::StaffingOffice), &page_of)
        .await;
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("140100 → 140105 ✓"), "{page}");
    assert!(!page.contains("case-moves"), "the district waits: {page}");
    let (status, page) = app.console_page(&city_office, &page_of).await;
    assert!(status.contains("200"), "{status}");
    for text in [
        "交办链",
        "140100 → 140105 ✓",
        "等待确认",
        "<dd>140100</dd>",
        "确认办结",
    ] {
        assert!(page.contains(text), "the case's page lacks {text}:\n{page}");
    }
    assert!(
        page.contains("value=\"send_back\""),
        "the level waited on may send it back: {page}"
    );
    let (status, _) = app
        .console_page(&agency("140106", AgencyKind::StaffingOffice), &page_of)
        .await;
    assert!(
        status.contains("403"),
        "another district reads nothing: {status}"
    );

    // The city closes it from the page, its note the written outcome (销号).
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("form_token", &hidden(&page, "form_token"))
        .append_pair("id", &case.id)
        .append_pair("version", &hidden(&page, "version"))
        .append_pair("move", "confirm")
        .append_pair("note", "举报属实，责令整改，追回多发工资")
        .finish();
    let (status, location) = app.console_post(&city_office, "/case/move", &form).await;
    assert!(status.contains("303"), "{status}");
    assert_eq!(location, page_of);
    let case = city
        .get_case(proto::IdRequest {
            id: case.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.state, CaseState::Closed as i32);
    assert_eq!(case.outcome, "举报属实，责令整改，追回多发工资");
    assert!(case.waiting_on.is_empty());
    assert!(
        case.levels
            .iter()
            .all(|level| !level.confirmed_by.is_empty())
    );
    assert!(cases_by_level(&app).await.is_empty(), "nothing waits");
    for stream in [&mut city_stream, &mut district_stream] {
        let (event_type, follow_up) = next_move(stream).await;
        assert_eq!(event_type, proto::FeedEventType::LevelConfirmed as i32);
        assert_eq!(follow_up.state, "CLOSED");
    }
    // A second post of the same page finds the case moved on.
    let (status, _) = app.console_post(&city_office, "/case/move", &form).await;
    assert!(!status.contains("303"), "{status}");

    // Every move is a step, in order.
    let history: Vec<&str> = case.history.iter().map(|step| step.text.as_str()).collect();
    assert!(
        history[1].starts_with("交办 140100 → 140105"),
        "{history:?}"
    );
    assert_eq!(history[2], "立案调查", "{history:?}");
    assert!(history[3].starts_with("140105 上报"), "{history:?}");
    assert!(history[4].starts_with("140100 确认销号"), "{history:?}");

    // The neighbouring district saw none of it: the first event it gets is about its own case.
    let own = report_about(&app, "140106", 2).await;
    let own = assign(&mut city, &own, "140106").await.unwrap();
    let (_, follow_up) = next_move(&mut neighbour_stream).await;
    assert_eq!(follow_up.id, own.id, "140106 sees only its own case");
    // And no other kind of agency saw the moves.
    let city_division = Jurisdiction::parse("140100").unwrap();
    for kind in AgencyKind::ALL {
        let seen = app
            .store
            .feed_after_shared(0, &city_division, kind, 100)
            .await
            .unwrap()
            .iter()
            .filter(|event| event.follow_up.as_ref().is_some_and(|f| f.id == case.id))
            .count();
        let expected = if kind == AgencyKind::StaffingOffice {
            3
        } else {
            0
        };
        assert_eq!(seen, expected, "{kind}");
    }
}

async fn a_city_that_finds_the_report_wanting_sends_the_case_back_and_the_round_starts_again(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend, TODAY.parse::<NaiveDate>().unwrap()).await;
    let mut city = office(&app, "140100").await;
    let mut district = office(&app, "140105").await;
    let case = report_about(&app, "140105", 3).await;
    let send_back = |case: &proto::Case, text: &str| proto::SendBackCaseRequest {
        case_id: case.id.clone(),
        expected_version: case.version,
        text: text.into(),
    };
    // A case never assigned has no report to send back.
    let refused = city
        .send_back_case(send_back(&case, "重办"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let case = assign(&mut city, &case, "140105").await.unwrap();
    let case = move_case(&mut district, &case, CaseState::Investigating, "")
        .await
        .unwrap();
    // Nor one whose report has not come.
    let refused = city
        .send_back_case(send_back(&case, "重办"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let case = confirm(&mut district, &case, "举报不实").await.unwrap();

    // The district, no longer waited on, cannot send it back; an office outside the chain may
    // not; the city must say why.
    let refused = district
        .send_back_case(send_back(&case, "重办"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("140100"),
        "{}",
        refused.message()
    );
    let refused = office(&app, "140000")
        .await
        .send_back_case(send_back(&case, "重办"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = city.send_back_case(send_back(&case, "")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(fields(&refused), ["text"]);

    let mut stream = level_events(&app, "140105").await;
    let case = city
        .send_back_case(send_back(&case, "未核实工资发放记录"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.state, CaseState::Investigating as i32);
    assert_eq!(
        case.waiting_on, "140105",
        "the round starts from the bottom"
    );
    assert!(
        case.levels
            .iter()
            .all(|level| level.confirmed_by.is_empty())
    );
    // The district hears of it: the case is handed down again. (The stream replays the
    // subscription's backlog first: the assignment and the report.)
    let mut texts = Vec::new();
    for _ in 0..3 {
        let (event_type, follow_up) = next_move(&mut stream).await;
        texts.push((event_type, follow_up.text));
    }
    assert_eq!(texts[2].0, proto::FeedEventType::Assigned as i32);
    assert!(
        texts[2]
            .1
            .starts_with("140100 退回 140105 重办：未核实工资发放记录"),
        "{texts:?}"
    );

    let refused = confirm(&mut city, &case, "销号").await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "the district first"
    );
    let case = confirm(&mut district, &case, "复核：举报属实")
        .await
        .unwrap();
    let case = confirm(&mut city, &case, "举报属实，已整改").await.unwrap();
    assert_eq!(case.state, CaseState::Closed as i32);
    assert_eq!(case.outcome, "举报属实，已整改");
    let refused = city
        .send_back_case(send_back(&case, "重办"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::FailedPrecondition,
        "closed: {refused:?}"
    );
}

async fn a_stock_grpcio_client_assigns_and_confirms_a_case(backend: Backend) {
    let Some(python) = crate::interop::python().await else {
        return;
    };
    let app = TestApp::spawn_on(backend, TODAY.parse::<NaiveDate>().unwrap()).await;
    let city = agency("140100", AgencyKind::StaffingOffice);
    let district = agency("140105", AgencyKind::StaffingOffice);
    app.register(&city).await;
    app.register(&district).await;
    let (city_files, district_files) = (ClientFiles::new(&city), ClientFiles::new(&district));
    let address = app.address.to_string();
    // The script fails unless every answer is the expected one: the refusals' codes and the
    // field or level they name, the chain, the closed case's outcome.
    let stdout = crate::interop::run_script(
        &python,
        "case_levels.py",
        &[
            "--address",
            &address,
            "--ca",
            &city_files.ca,
            "--city-cert",
            &city_files.cert,
            "--city-key",
            &city_files.key,
            "--district-cert",
            &district_files.cert,
            "--district-key",
            &district_files.key,
        ],
    )
    .await;
    assert!(
        stdout.contains("closed after 140105 then 140100 confirmed"),
        "{stdout}"
    );
    // What the script did is what the hub holds.
    let id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("case "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the script names the case");
    let case = app.store.case(id).await.unwrap().unwrap();
    assert_eq!(case.levels.len(), 2);
    assert_eq!(case.state, quotahub::domain::ledger::CaseState::Closed);
}
