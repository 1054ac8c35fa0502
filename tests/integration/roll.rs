//! The effective-dated roll: who was on it on any past date, through transfers, leave, secondment,
//! retirement and backdated events.

use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::PersonnelEventType as T;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(the_roll_can_be_read_on_any_past_date, a_long_roll_is_paged);

fn event(id: &str, kind: T, person: &str, unit: &str, on: &str) -> proto::PersonnelEvent {
    proto::PersonnelEvent {
        event_type: kind as i32,
        ..hire(id, person, unit, on)
    }
}

async fn the_roll_can_be_read_on_any_past_date(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (a, b) = (uscc("140100", 1), uscc("140100", 2));
    let (alice, bob) = (resident(1), resident(2));
    let mut transfer = event("e3", T::Transfer, &alice, &a, "2022-01-01");
    transfer.target_institution_uscc = b.clone();
    let mut secondment = event("e5", T::Secondment, &bob, &a, "2022-06-01");
    secondment.target_institution_uscc = b.clone();
    let events = vec![
        event("e1", T::Hire, &alice, &a, "2020-01-01"),
        event("e2", T::Hire, &bob, &a, "2020-06-01"),
        transfer,
        event("e4", T::Retirement, &alice, &b, "2024-01-01"),
        secondment,
        event("e6", T::Return, &bob, &a, "2023-01-01"),
        // Pushed last, effective first: slotted into Bob's history.
        event("e7", T::Leave, &bob, &a, "2021-01-01"),
        event("e8", T::Return, &bob, &a, "2021-03-01"),
    ];
    let response = app
        .hr("140100")
        .await
        .push_personnel_events(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.accepted, 8, "{:?}", response.results);

    let mut query = app.query("140100", AgencyKind::StaffingOffice).await;
    let mut roll = async |unit: &str, on: &str| -> Vec<(String, i32)> {
        query
            .list_roll(proto::ListRollRequest {
                uscc: unit.into(),
                as_of: on.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .map(|e| (e.resident_id, e.status))
            .collect()
    };
    let active = proto::PersonStatus::Active as i32;
    assert_eq!(roll(&a, "2019-12-31").await, vec![]);
    assert_eq!(roll(&a, "2020-01-01").await, vec![(alice.clone(), active)]);
    assert_eq!(
        roll(&a, "2021-02-01").await,
        vec![
            (alice.clone(), active),
            (bob.clone(), proto::PersonStatus::OnLeave as i32)
        ]
    );
    assert_eq!(roll(&a, "2021-12-31").await.len(), 2);
    assert_eq!(roll(&a, "2022-01-01").await, vec![(bob.clone(), active)]);
    assert_eq!(roll(&b, "2022-01-01").await, vec![(alice.clone(), active)]);
    // A seconded person stays on the home roll and does not join the host's.
    assert_eq!(
        roll(&a, "2022-07-01").await,
        vec![(bob.clone(), proto::PersonStatus::Seconded as i32)]
    );
    assert_eq!(roll(&b, "2022-07-01").await, vec![(alice.clone(), active)]);
    assert_eq!(roll(&b, "2023-12-31").await.len(), 1);
    assert_eq!(roll(&b, "2024-01-01").await, vec![]);

    let history = query
        .get_person_history(proto::GetPersonHistoryRequest { resident_id: alice })
        .await
        .unwrap()
        .into_inner();
    let statuses: Vec<i32> = history.spells.iter().map(|s| s.status).collect();
    assert_eq!(
        statuses,
        [active, active, proto::PersonStatus::Retired as i32]
    );
    assert_eq!(history.spells[0].valid_to, "2022-01-01");
}

async fn a_long_roll_is_paged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = uscc("140100", 1);
    let events: Vec<_> = (0..25)
        .map(|n| hire(&format!("h{n}"), &resident(n), &unit, "2021-01-01"))
        .collect();
    app.hr("140100")
        .await
        .push_personnel_events(tokio_stream::iter(events))
        .await
        .unwrap();
    let mut query = app.query("140100", AgencyKind::Hr).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = query
            .list_roll(proto::ListRollRequest {
                uscc: unit.clone(),
                as_of: "2022-01-01".into(),
                page_size: 10,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.entries.into_iter().map(|e| e.resident_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = (0..25).map(resident).collect();
    expected.sort();
    assert_eq!(seen, expected);
}
