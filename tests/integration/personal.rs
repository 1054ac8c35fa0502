//! Personal data on a need-to-know basis, over real mTLS: the same records read whole by one
//! agency and masked by another, in the read RPCs and in the alerts of the feed.

use quotahub::domain::AgencyKind;
use quotahub::proto;

use crate::feed::{Feed, feed, next_event, subscribe};
use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    reads_show_ids_names_and_pay_only_to_those_who_need_them,
    each_feed_stream_masks_its_own_alerts,
);

/// A registered organ with a quota, one person hired into it, and a ghost paid by it.
async fn city(app: &TestApp) -> String {
    let unit = uscc("140100", 1);
    let mut office = app.staffing("140100").await;
    office
        .push_institution(organ("org-1", &unit, "140100"))
        .await
        .unwrap();
    office.push_quota(quota("q-1", &unit, 5)).await.unwrap();
    app.hr("140100")
        .await
        .push_personnel_event(hire("hire-1", &resident(1), &unit, "2020-06-01"))
        .await
        .unwrap();
    unit
}

async fn ghost_pay(app: &TestApp, unit: &str) {
    app.finance("140100")
        .await
        .push_payroll_line(payroll("ghost-2", &resident(2), unit, "2024-01"))
        .await
        .unwrap();
}

fn masked(id: &str) -> String {
    format!("{}********{}", &id[..6], &id[14..])
}

async fn reads_show_ids_names_and_pay_only_to_those_who_need_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = city(&app).await;
    ghost_pay(&app, &unit).await;
    let ghost = resident(2);
    let payroll_as = |kind| {
        let unit = unit.clone();
        let app = &app;
        async move {
            app.query("140100", kind)
                .await
                .list_payroll(proto::ListPayrollRequest {
                    institution_uscc: unit,
                    period: "2024-01".into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };

    // Audit sees the line whole.
    let audit = payroll_as(AgencyKind::Audit).await;
    assert!(!audit.amounts_masked);
    assert_eq!(audit.lines[0].resident_id, ghost);
    assert_eq!(audit.lines[0].name, "王五");
    assert_eq!(audit.lines[0].gross_fen, 650_000);
    assert_eq!(audit.lines[0].person_token, "");
    // Finance sees what it paid, not who: the ID masked, a token in its place.
    let finance = payroll_as(AgencyKind::Finance).await;
    assert!(!finance.amounts_masked);
    assert_eq!(finance.lines[0].resident_id, masked(&ghost));
    assert_eq!(finance.lines[0].name, "王*");
    assert_eq!(finance.lines[0].gross_fen, 650_000);
    assert!(!finance.lines[0].person_token.is_empty());
    assert!(!finance.lines[0].person_token.contains(&ghost[6..14]));
    // The staffing office sees who, not what they were paid; the institution's bill stays.
    let office = payroll_as(AgencyKind::StaffingOffice).await;
    assert!(office.amounts_masked);
    assert_eq!(office.lines[0].resident_id, ghost);
    assert_eq!(office.lines[0].gross_fen, 0);
    assert_eq!(office.total_gross_fen, 650_000);

    // The roll: HR sees its people; finance gets tokens, and pages and asks by them.
    let roll_as = |kind| {
        let unit = unit.clone();
        let app = &app;
        async move {
            app.query("140100", kind)
                .await
                .list_roll(proto::ListRollRequest {
                    uscc: unit,
                    as_of: "2024-01-01".into(),
                    page_size: 1,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let hr_roll = roll_as(AgencyKind::Hr).await;
    assert_eq!(hr_roll.entries[0].resident_id, resident(1));
    assert_eq!(hr_roll.entries[0].name, "王五");
    let finance_roll = roll_as(AgencyKind::Finance).await;
    let entry = &finance_roll.entries[0];
    assert_eq!(entry.resident_id, masked(&resident(1)));
    assert_eq!(entry.name, "王*");
    // A full page gives a next page token; it carries no ID either.
    assert!(!finance_roll.next_page_token.contains(&resident(1)));
    assert!(
        !hex::decode(&finance_roll.next_page_token)
            .unwrap()
            .windows(8)
            .any(|w| w == &resident(1).as_bytes()[6..14])
    );
    let next = app
        .query("140100", AgencyKind::Finance)
        .await
        .list_roll(proto::ListRollRequest {
            uscc: unit.clone(),
            as_of: "2024-01-01".into(),
            page_size: 1,
            page_token: finance_roll.next_page_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(next.entries.is_empty());
    let history = app
        .query("140100", AgencyKind::Finance)
        .await
        .get_person_history(proto::GetPersonHistoryRequest {
            resident_id: entry.person_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.resident_id, masked(&resident(1)));
    assert_eq!(history.person_token, entry.person_token);
    assert_eq!(history.events[0].resident_id, masked(&resident(1)));
    assert_eq!(history.events[0].name, "王*");
    let whole = app
        .query("140100", AgencyKind::Discipline)
        .await
        .get_person_history(proto::GetPersonHistoryRequest {
            resident_id: resident(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.resident_id, resident(1));
    assert_eq!(whole.events[0].resident_id, resident(1));
    assert_eq!(whole.person_token, "");

    // Findings: the ghost-pay finding read by each.
    let findings_as = |kind| {
        let app = &app;
        async move {
            let channel = app.channel(&agency("140100", kind)).await;
            proto::reconciliation_service_client::ReconciliationServiceClient::new(channel)
                .list_findings(proto::ListFindingsRequest {
                    codes: vec![proto::RuleCode::PaidNotOnRoll as i32],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .findings
                .remove(0)
        }
    };
    let whole = findings_as(AgencyKind::Audit).await;
    assert_eq!(whole.subject, ghost);
    assert!(!whole.personal_data_masked);
    assert!(whole.explanation_zh.contains("6500.00 元"), "{whole:?}");
    assert!(whole.explanation_en.contains("6500.00 yuan"), "{whole:?}");
    let finance = findings_as(AgencyKind::Finance).await;
    assert!(finance.personal_data_masked);
    // The same token as in the payroll read: finance can tell it is the same person.
    assert_eq!(
        finance.subject,
        payroll_as(AgencyKind::Finance).await.lines[0].person_token
    );
    assert!(finance.explanation_zh.contains("6500.00 元"));
    for text in [
        &finance.subject,
        &finance.explanation_zh,
        &finance.explanation_en,
    ] {
        assert!(!text.contains(&ghost), "{text}");
    }
    for evidence in &finance.evidence {
        assert!(!evidence.id.contains(&ghost), "{evidence:?}");
    }
    let hr = findings_as(AgencyKind::Hr).await;
    assert!(hr.personal_data_masked);
    assert_eq!(hr.subject, ghost);
    assert!(!hr.explanation_zh.contains("6500.00"), "{hr:?}");
    assert!(hr.explanation_zh.contains("**** 元"), "{hr:?}");
    assert!(hr.explanation_en.contains("**** yuan"), "{hr:?}");
}

async fn alert_stream(
    app: &TestApp,
    kind: AgencyKind,
) -> (Feed, tonic::Streaming<proto::FeedMessage>) {
    let mut client = feed(app, "140100", kind).await;
    client
        .put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "ghosts".into(),
                filter: Some(proto::SubscriptionFilter {
                    codes: vec![proto::RuleCode::PaidNotOnRoll as i32],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let stream = subscribe(&mut client, "ghosts", Some(0)).await;
    (client, stream)
}

async fn each_feed_stream_masks_its_own_alerts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unit = city(&app).await;
    // Three streams read the one shared tail of the feed, each as its own reader.
    let (_d, mut discipline) = alert_stream(&app, AgencyKind::Discipline).await;
    let (_f, mut finance) = alert_stream(&app, AgencyKind::Finance).await;
    let (_o, mut office) = alert_stream(&app, AgencyKind::StaffingOffice).await;
    ghost_pay(&app, &unit).await;
    let ghost = resident(2);

    let whole = next_event(&mut discipline).await.finding.unwrap();
    let masked_ids = next_event(&mut finance).await.finding.unwrap();
    let masked_pay = next_event(&mut office).await.finding.unwrap();
    assert_eq!(whole.code, proto::RuleCode::PaidNotOnRoll as i32);
    assert_eq!(whole.subject, ghost);
    assert!(!whole.personal_data_masked);
    assert!(whole.explanation_zh.contains("6500.00 元"));
    assert!(
        whole
            .evidence
            .iter()
            .all(|e| e.kind != "person" || e.id == ghost)
    );

    assert!(masked_ids.personal_data_masked);
    assert_ne!(masked_ids.subject, ghost);
    assert!(masked_ids.explanation_zh.contains(&masked(&ghost)));
    assert!(masked_ids.explanation_zh.contains("6500.00 元"));
    for text in [
        &masked_ids.subject,
        &masked_ids.explanation_zh,
        &masked_ids.explanation_en,
    ] {
        assert!(!text.contains(&ghost), "{text}");
    }

    assert!(masked_pay.personal_data_masked);
    assert_eq!(masked_pay.subject, ghost);
    assert!(
        !masked_pay.explanation_zh.contains("6500.00"),
        "{masked_pay:?}"
    );
    assert!(
        !masked_pay.explanation_en.contains("6500.00"),
        "{masked_pay:?}"
    );

    // The masking of one stream did not leak into the shared event: a stream started after the
    // others read it whole.
    let (_late, mut late) = alert_stream(&app, AgencyKind::Audit).await;
    let again = next_event(&mut late).await.finding.unwrap();
    assert_eq!(again.subject, ghost);
    assert!(again.explanation_zh.contains("6500.00 元"));
}
