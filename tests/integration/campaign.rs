//! Special inspections over real mTLS (专项检查、检查和自查相结合): a staffing office opens a ghost-pay
//! campaign over three institutions with planted ghost pay; one declares honestly, one hides a
//! problem, one never answers. The comparison names exactly those; the hidden problem becomes a
//! ledger item in one step; the missing declaration climbs the ladder on the feed; and the review
//! before approval (关口前移) shows the department's whole record. The same on a generated city,
//! held to its planted ground truth; and the console's pages of campaigns.

use chrono::NaiveDate;
use quotahub::domain::AgencyKind;
use quotahub::proto;
use quotahub::proto::{RuleCode, Standing};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::feed::{feed, next_event, subscribe};
use crate::helpers::*;
use crate::ledger::{applications, ledger};
use crate::on_both_backends;

on_both_backends!(
    a_campaign_names_the_honest_the_hiding_and_the_silent,
    the_review_before_approval_shows_the_departments_whole_record,
    the_console_lists_campaigns_and_their_comparison,
    on_a_generated_city_the_comparison_matches_the_planted_truth,
);

type Campaigns = proto::campaign_service_client::CampaignServiceClient<Channel>;

const TODAY: &str = "2024-06-01";
const DEADLINE: &str = "2024-06-15";

async fn campaigns(app: &TestApp, kind: AgencyKind) -> Campaigns {
    Campaigns::new(app.channel(&agency("140100", kind)).await)
}

/// The three institutions and their ghost pay (吃空饷, 离职仍领薪), as the hub finds it.
struct City {
    honest: String,
    hiding: String,
    silent: String,
    /// Paid at the honest institution, never on its roll.
    honest_ghost: String,
    /// Paid at the hiding institution, never on its roll (declared).
    hiding_ghost: String,
    /// Paid at the hiding institution after leaving it (hidden).
    hidden: String,
}

async fn unit(app: &TestApp, n: u32) -> String {
    let unit = uscc("140100", n);
    let mut staffing = app.staffing("140100").await;
    staffing
        .push_institution(organ(&format!("inst-{n}"), &unit, "140100"))
        .await
        .unwrap();
    staffing
        .push_quota(quota(&format!("q-{n}"), &unit, 5))
        .await
        .unwrap();
    unit
}

async fn plant(app: &TestApp) -> City {
    let city = City {
        honest: unit(app, 11).await,
        hiding: unit(app, 12).await,
        silent: unit(app, 13).await,
        honest_ghost: resident(1101),
        hiding_ghost: resident(1201),
        hidden: resident(1202),
    };
    let mut hr = app.hr("140100").await;
    hr.push_personnel_event(hire("h-1202", &city.hidden, &city.hiding, "2024-01-02"))
        .await
        .unwrap();
    let mut departure = hire("d-1202", &city.hidden, &city.hiding, "2024-02-15");
    departure.event_type = proto::PersonnelEventType::Departure as i32;
    hr.push_personnel_event(departure).await.unwrap();
    let mut finance = app.finance("140100").await;
    for (id, person, unit, period) in [
        ("p-1101", &city.honest_ghost, &city.honest, "2024-03"),
        ("p-1201", &city.hiding_ghost, &city.hiding, "2024-03"),
        ("p-1202", &city.hidden, &city.hiding, "2024-04"),
        ("p-1301", &resident(1301), &city.silent, "2024-02"),
        // Outside the campaign's months: not its business.
        ("p-1302", &resident(1302), &city.silent, "2024-06"),
    ] {
        finance
            .push_payroll_line(payroll(id, person, unit, period))
            .await
            .unwrap();
    }
    city
}

fn ghost_pay() -> Vec<i32> {
    vec![
        RuleCode::PaidNotOnRoll as i32,
        RuleCode::PaidAfterExit as i32,
        RuleCode::DoublePay as i32,
    ]
}

fn open_request(key: &str) -> proto::OpenCampaignRequest {
    proto::OpenCampaignRequest {
        title: "2024年吃空饷专项治理".into(),
        codes: ghost_pay(),
        period_from: "2024-01".into(),
        period_to: "2024-05".into(),
        deadline: DEADLINE.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn problem(code: RuleCode, subject: &str, period: &str) -> proto::Problem {
    proto::Problem {
        code: code as i32,
        subject: subject.into(),
        period: period.into(),
        note: "自查发现".into(),
        ..Default::default()
    }
}

/// The honest and the hiding institutions declare; the silent one never does.
async fn declare(app: &TestApp, campaign: &str, city: &City) {
    let mut hr = campaigns(app, AgencyKind::Hr).await;
    let honest = hr
        .declare(proto::DeclareRequest {
            campaign_id: campaign.into(),
            institution_uscc: city.honest.clone(),
            problems: vec![problem(
                RuleCode::PaidNotOnRoll,
                &city.honest_ghost,
                "2024-03",
            )],
            signed_by: "市教育局 张三".into(),
            idempotency_key: "decl-honest".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!honest.late);
    assert_eq!(honest.declared_by, "140100/hr");
    // The organization department answers for the other, leaving out the one who left.
    campaigns(app, AgencyKind::Organization)
        .await
        .declare(proto::DeclareRequest {
            campaign_id: campaign.into(),
            institution_uscc: city.hiding.clone(),
            problems: vec![problem(RuleCode::PaidNotOnRoll, &city.hiding_ghost, "")],
            signed_by: "市卫健委 李四".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn report(app: &TestApp, campaign: &str) -> proto::CampaignReport {
    campaigns(app, AgencyKind::StaffingOffice)
        .await
        .get_report(proto::CampaignReportRequest {
            campaign_id: campaign.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

fn line<'a>(report: &'a proto::CampaignReport, unit: &str) -> &'a proto::InstitutionComparison {
    report
        .institutions
        .iter()
        .find(|l| l.institution_uscc == unit)
        .expect("the institution is in the report")
}

fn keys(problems: &[proto::Problem]) -> Vec<(i32, &str, &str)> {
    problems
        .iter()
        .map(|p| (p.code, p.subject.as_str(), p.period.as_str()))
        .collect()
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

async fn a_campaign_names_the_honest_the_hiding_and_the_silent(backend: Backend) {
    let app = TestApp::spawn_on(backend, TODAY.parse::<NaiveDate>().unwrap()).await;
    let city = plant(&app).await;
    // HR of the city follows campaigns on its feed; finance is not reached by them.
    let mut hr_feed = feed(&app, "140100", AgencyKind::Hr).await;
    let mut finance_feed = feed(&app, "140100", AgencyKind::Finance).await;
    for feed in [&mut hr_feed, &mut finance_feed] {
        feed.put_subscription(proto::PutSubscriptionRequest {
            subscription: Some(proto::Subscription {
                name: "campaigns".into(),
                filter: Some(proto::SubscriptionFilter {
                    event_types: vec![
                        proto::FeedEventType::CampaignOpened as i32,
                        proto::FeedEventType::DeclarationMissing as i32,
                    ],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    let mut events = subscribe(&mut hr_feed, "campaigns", None).await;

    // Only a staffing office opens one; bad input names its fields.
    let refused = campaigns(&app, AgencyKind::Hr)
        .await
        .open_campaign(open_request(""))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut office = campaigns(&app, AgencyKind::StaffingOffice).await;
    let bad = office
        .open_campaign(proto::OpenCampaignRequest {
            period_from: "2024-13".into(),
            ..open_request("")
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(fields(&bad), ["period_from"]);
    let bad = office
        .open_campaign(proto::OpenCampaignRequest {
            deadline: "2024-05-31".into(),
            ..open_request("")
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&bad), ["deadline"], "a deadline in the past");

    let campaign = office
        .open_campaign(open_request("campaign-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(campaign.institutions, 3);
    assert_eq!(campaign.state, proto::CampaignState::Open as i32);
    assert_eq!(campaign.jurisdiction, "140100");
    // A resend answers the same campaign; the key reused for another is refused.
    let again = office
        .open_campaign(open_request("campaign-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, campaign.id);
    let reused = office
        .open_campaign(proto::OpenCampaignRequest {
            title: "另一次检查".into(),
            ..open_request("campaign-1")
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);
    let opened = next_event(&mut events).await;
    assert_eq!(
        opened.event_type,
        proto::FeedEventType::CampaignOpened as i32
    );
    let follow_up = opened.follow_up.unwrap();
    assert_eq!(follow_up.matter, proto::MatterKind::Campaign as i32);
    assert_eq!(follow_up.id, campaign.id);

    // Who may declare, and what a declaration must say.
    for kind in [AgencyKind::Finance, AgencyKind::StaffingOffice] {
        let refused = campaigns(&app, kind)
            .await
            .declare(proto::DeclareRequest {
                campaign_id: campaign.id.clone(),
                institution_uscc: city.silent.clone(),
                nothing_found: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{kind}");
    }
    let mut hr = campaigns(&app, AgencyKind::Hr).await;
    let bad = hr
        .declare(proto::DeclareRequest {
            campaign_id: campaign.id.clone(),
            institution_uscc: city.silent.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(fields(&bad), ["nothing_found"], "neither problems nor none");
    let bad = hr
        .declare(proto::DeclareRequest {
            campaign_id: campaign.id.clone(),
            institution_uscc: city.silent.clone(),
            problems: vec![problem(RuleCode::OverQuota, "ADMINISTRATIVE", "")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        fields(&bad),
        ["problems[0].code"],
        "a rule outside the campaign"
    );

    declare(&app, &campaign.id, &city).await;
    let twice = hr
        .declare(proto::DeclareRequest {
            campaign_id: campaign.id.clone(),
            institution_uscc: city.honest.clone(),
            nothing_found: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition, "never edited");

    // Before the deadline: the silent one is awaited, and nothing escalates.
    let store = &app.store;
    let clock = &store.checks().clock;
    let before = report(&app, &campaign.id).await;
    let progress = before.progress.clone().unwrap();
    assert_eq!(
        (progress.declared, progress.awaiting, progress.missing),
        (2, 1, 0)
    );
    assert_eq!(
        line(&before, &city.silent).standing,
        Standing::Awaiting as i32
    );
    assert!(
        store
            .escalate_declarations(clock.today())
            .await
            .unwrap()
            .is_empty()
    );

    // The day after the deadline (the manual clock): the comparison names exactly those three.
    clock.advance(chrono::Duration::days(15));
    let after = report(&app, &campaign.id).await;
    let progress = after.progress.clone().unwrap();
    assert_eq!(
        (
            progress.institutions,
            progress.declared,
            progress.matching,
            progress.discrepant,
            progress.missing,
            progress.undeclared_problems,
            progress.unconfirmed_problems,
        ),
        (3, 2, 1, 1, 1, 1, 0)
    );
    let honest = line(&after, &city.honest);
    assert_eq!(honest.standing, Standing::Matching as i32);
    assert_eq!(
        keys(&honest.matched),
        [(
            RuleCode::PaidNotOnRoll as i32,
            city.honest_ghost.as_str(),
            "2024-03"
        )]
    );
    let hiding = line(&after, &city.hiding);
    assert_eq!(hiding.standing, Standing::Discrepant as i32);
    assert_eq!(
        keys(&hiding.undeclared),
        [(
            RuleCode::PaidAfterExit as i32,
            city.hidden.as_str(),
            "2024-04"
        )],
        "the hidden problem is 瞒报"
    );
    assert_eq!(
        keys(&hiding.matched),
        [(
            RuleCode::PaidNotOnRoll as i32,
            city.hiding_ghost.as_str(),
            "2024-03"
        )],
        "a declaration without a month names every month of the campaign"
    );
    assert!(hiding.unconfirmed.is_empty());
    let silent = line(&after, &city.silent);
    assert_eq!(silent.standing, Standing::Missing as i32);
    assert!(silent.undeclared.is_empty());
    assert_eq!(
        keys(&silent.shown),
        [(
            RuleCode::PaidNotOnRoll as i32,
            resident(1301).as_str(),
            "2024-02"
        )],
        "the June pay is outside the campaign's months"
    );
    // A filter on standing.
    let missing = office
        .get_report(proto::CampaignReportRequest {
            campaign_id: campaign.id.clone(),
            standing: Standing::Missing as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        missing
            .institutions
            .iter()
            .map(|l| l.institution_uscc.as_str())
            .collect::<Vec<_>>(),
        [city.silent.as_str()]
    );

    // The missing declaration climbs the ladder, one event per step, each once.
    assert_eq!(
        store
            .escalate_declarations(clock.today())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .escalate_declarations(clock.today())
            .await
            .unwrap()
            .is_empty(),
        "each step fires once"
    );
    let event = next_event(&mut events).await;
    assert_eq!(
        event.event_type,
        proto::FeedEventType::DeclarationMissing as i32
    );
    let follow_up = event.follow_up.unwrap();
    assert_eq!(follow_up.matter, proto::MatterKind::Declaration as i32);
    assert_eq!(follow_up.institution_uscc, city.silent);
    assert_eq!((follow_up.escalation_level, event.escalation_level), (1, 1));
    clock.advance(chrono::Duration::days(7));
    store.escalate_declarations(clock.today()).await.unwrap();
    assert_eq!(next_event(&mut events).await.escalation_level, 2);
    assert_eq!(
        line(&report(&app, &campaign.id).await, &city.silent).escalation_level,
        2
    );
    // Finance is not reached by campaigns: its subscription has nothing.
    let head = finance_feed
        .get_subscription(proto::SubscriptionName {
            name: "campaigns".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut finance_events = subscribe(&mut finance_feed, "campaigns", Some(head.acked_seq)).await;
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(700), async {
        loop {
            let message = finance_events.message().await.unwrap().unwrap();
            if let Some(proto::feed_message::Message::Event(event)) = message.message {
                return event;
            }
        }
    })
    .await;
    assert!(nothing.is_err(), "finance saw {nothing:?}");

    // The hidden problem becomes a ledger item in one step; a resend opens nothing twice.
    let refused = hr
        .open_undeclared_items(proto::OpenUndeclaredItemsRequest {
            campaign_id: campaign.id.clone(),
            due_on: "2024-07-31".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let items = office
        .open_undeclared_items(proto::OpenUndeclaredItemsRequest {
            campaign_id: campaign.id.clone(),
            due_on: "2024-07-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((items.opened, items.item_ids.len()), (1, 1));
    let again = office
        .open_undeclared_items(proto::OpenUndeclaredItemsRequest {
            campaign_id: campaign.id.clone(),
            due_on: "2024-07-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.opened, &again.item_ids), (0, &items.item_ids));
    let item = ledger(&app, AgencyKind::StaffingOffice)
        .await
        .get_item(proto::IdRequest {
            id: items.item_ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(item.department_uscc, city.hiding);
    assert_eq!(item.state, proto::ItemState::Open as i32);
    assert!(item.title.contains("瞒报"), "{}", item.title);
    let finding = item.finding.unwrap();
    assert_eq!(
        (
            finding.code,
            finding.subject.as_str(),
            finding.period.as_str()
        ),
        (
            RuleCode::PaidAfterExit as i32,
            city.hidden.as_str(),
            "2024-04"
        )
    );
    let progress = office
        .get_campaign(proto::CampaignRef {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.items_opened, 1);
    assert_eq!(
        line(&report(&app, &campaign.id).await, &city.hiding).ledger_item_ids,
        items.item_ids
    );

    // Discipline and audit read; the list shows the campaign with its counts.
    let listed = campaigns(&app, AgencyKind::Audit)
        .await
        .list_campaigns(proto::ListCampaignsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .campaigns;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].missing, listed[0].discrepant), (1, 1));

    // The closing report stays what it was; the campaign takes no more declarations.
    let closing = office
        .close_campaign(proto::CloseCampaignRequest {
            campaign_id: campaign.id.clone(),
            note: "专项治理结束, 瞒报问题转入整改台账".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(closing.closing);
    assert_eq!(
        closing
            .progress
            .as_ref()
            .unwrap()
            .campaign
            .as_ref()
            .unwrap()
            .state,
        proto::CampaignState::Closed as i32
    );
    // The data moves on (the ghost is put on the honest roll after all)...
    app.hr("140100")
        .await
        .push_personnel_event(hire(
            "h-1101",
            &city.honest_ghost,
            &city.honest,
            "2024-01-01",
        ))
        .await
        .unwrap();
    // ...but the closing report does not.
    let read = report(&app, &campaign.id).await;
    assert_eq!(read.institutions, closing.institutions);
    assert_eq!(
        line(&read, &city.honest).standing,
        Standing::Matching as i32
    );
    let late = hr
        .declare(proto::DeclareRequest {
            campaign_id: campaign.id.clone(),
            institution_uscc: city.silent.clone(),
            nothing_found: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    clock.advance(chrono::Duration::days(30));
    assert!(
        store
            .escalate_declarations(clock.today())
            .await
            .unwrap()
            .is_empty(),
        "a closed campaign escalates no further"
    );
}

async fn the_review_before_approval_shows_the_departments_whole_record(backend: Backend) {
    let app = TestApp::spawn_on(backend, TODAY.parse::<NaiveDate>().unwrap()).await;
    let city = plant(&app).await;
    let apply = |reason: &str| proto::ApplyRequest {
        department_uscc: city.hiding.clone(),
        kind: proto::ApplicationKind::ChangeQuota as i32,
        reason: reason.into(),
        category: proto::QuotaCategory::Administrative as i32,
        count: 8,
        ..Default::default()
    };
    let mut hr_applications = applications(&app, AgencyKind::Hr).await;
    let mut office_applications = applications(&app, AgencyKind::StaffingOffice).await;
    // An earlier application, decided.
    let earlier = hr_applications
        .apply(apply("2023年增编申请"))
        .await
        .unwrap()
        .into_inner();
    office_applications
        .decide(proto::DecideRequest {
            application_id: earlier.id.clone(),
            approve: false,
            note: "不予批准".into(),
        })
        .await
        .unwrap();

    let mut office = campaigns(&app, AgencyKind::StaffingOffice).await;
    let campaign = office
        .open_campaign(open_request(""))
        .await
        .unwrap()
        .into_inner();
    declare(&app, &campaign.id, &city).await;
    app.store.checks().clock.advance(chrono::Duration::days(15));
    let items = office
        .open_undeclared_items(proto::OpenUndeclaredItemsRequest {
            campaign_id: campaign.id.clone(),
            due_on: "2024-07-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // The silent one answers after all, late: taken, marked late, and its ladder never starts.
    let late = campaigns(&app, AgencyKind::Hr)
        .await
        .declare(proto::DeclareRequest {
            campaign_id: campaign.id.clone(),
            institution_uscc: city.silent.clone(),
            problems: vec![problem(RuleCode::PaidNotOnRoll, &resident(1301), "2024-02")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(late.late);
    let store = &app.store;
    assert!(
        store
            .escalate_declarations(store.checks().clock.today())
            .await
            .unwrap()
            .is_empty()
    );
    let progress = office
        .get_campaign(proto::CampaignRef {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            progress.declared,
            progress.declared_late,
            progress.missing,
            progress.matching
        ),
        (3, 1, 0, 2)
    );
    let penalty = ledger(&app, AgencyKind::StaffingOffice)
        .await
        .impose_penalty(proto::ImposePenaltyRequest {
            item_id: items.item_ids[0].clone(),
            kind: proto::PenaltyKind::Admonition as i32,
            text: "瞒报, 通报批评".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let pending = hr_applications
        .apply(apply("新增职能, 申请增编"))
        .await
        .unwrap()
        .into_inner();
    // Not the applicant's to read: the supervision division weighs it, discipline and audit look.
    let refused = hr_applications
        .review_application(proto::ReviewApplicationRequest {
            application_id: pending.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let review = office_applications
        .review_application(proto::ReviewApplicationRequest {
            application_id: pending.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(review.application.unwrap().id, pending.id);
    let mut found: Vec<(i32, &str)> = review
        .open_findings
        .iter()
        .filter(|f| ghost_pay().contains(&f.code))
        .map(|f| (f.code, f.subject.as_str()))
        .collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            (RuleCode::PaidNotOnRoll as i32, city.hiding_ghost.as_str()),
            (RuleCode::PaidAfterExit as i32, city.hidden.as_str()),
        ]
    );
    assert!(
        review
            .open_findings
            .iter()
            .all(|f| f.institution_uscc == city.hiding),
        "the department's findings only"
    );
    assert_eq!(
        review.open_findings_total,
        review.open_findings.len() as u64
    );
    assert_eq!(
        review
            .ledger_items
            .iter()
            .map(|i| (i.id.as_str(), i.state))
            .collect::<Vec<_>>(),
        [(items.item_ids[0].as_str(), proto::ItemState::Open as i32)]
    );
    assert_eq!(
        review
            .penalties
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        [penalty.id.as_str()]
    );
    let [standing] = &review.campaigns[..] else {
        panic!("one campaign: {:?}", review.campaigns)
    };
    assert_eq!(standing.campaign.as_ref().unwrap().id, campaign.id);
    let comparison = standing.comparison.as_ref().unwrap();
    assert_eq!(comparison.standing, Standing::Discrepant as i32);
    assert_eq!(
        keys(&comparison.undeclared),
        [(
            RuleCode::PaidAfterExit as i32,
            city.hidden.as_str(),
            "2024-04"
        )]
    );
    assert_eq!(comparison.ledger_item_ids, items.item_ids);
    let declaration = standing.declaration.as_ref().unwrap();
    assert_eq!(declaration.declared_by, "140100/organization");
    assert_eq!(declaration.problems.len(), 1);
    assert_eq!(
        review
            .earlier_applications
            .iter()
            .map(|a| (a.id.as_str(), a.state))
            .collect::<Vec<_>>(),
        [(
            earlier.id.as_str(),
            proto::ApplicationState::Rejected as i32
        )],
        "filed before this one, not this one itself"
    );
    // Discipline reads the same review.
    let read = applications(&app, AgencyKind::Discipline)
        .await
        .review_application(proto::ReviewApplicationRequest {
            application_id: pending.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.campaigns.len(), 1);
}

/// GETs a console page as `agency` over TLS with its certificate: the status line and the body.
async fn console_get(
    app: &TestApp,
    agency: &quotahub::domain::Agency,
    target: &str,
) -> (String, String) {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pki = pki();
    let certificate = pki.agency(agency);
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca.cert_pem().as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let address = app.console.expect("the console is on");
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

async fn the_console_lists_campaigns_and_their_comparison(backend: Backend) {
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("audit-log.key");
    quotahub::pki::log_key(&key_path, "test.quotahub/audit-log").unwrap();
    let log = quotahub::store::trust::CheckpointPolicy {
        signer: quotahub::domain::audit::LogSigner::parse(
            &std::fs::read_to_string(&key_path).unwrap(),
        )
        .unwrap(),
        every_entries: 1_000,
        every_micros: i64::MAX,
    };
    let app = TestApp::spawn_with_console_logged(backend, log).await;
    let city = plant(&app).await;
    // This hub runs on the system clock: a deadline far ahead, so the silent one is awaited.
    let campaign = campaigns(&app, AgencyKind::StaffingOffice)
        .await
        .open_campaign(proto::OpenCampaignRequest {
            deadline: "2099-12-31".into(),
            ..open_request("")
        })
        .await
        .unwrap()
        .into_inner();
    declare(&app, &campaign.id, &city).await;

    let office = agency("140100", AgencyKind::StaffingOffice);
    let (status, list) = console_get(&app, &office, "/campaigns").await;
    assert!(status.contains("200"), "{status}");
    assert!(list.contains("2024年吃空饷专项治理"), "{list}");
    assert!(list.contains("专项检查"), "the navigation names the page");
    assert!(list.contains("2/3"), "two of three declared");
    assert!(list.contains(&format!("/campaign?id={}", campaign.id)));
    let (status, english) = console_get(&app, &office, "/campaigns?lang=en").await;
    assert!(status.contains("200"), "{status}");
    assert!(english.contains("Special inspections"));

    let (status, report) =
        console_get(&app, &office, &format!("/campaign?id={}", campaign.id)).await;
    assert!(status.contains("200"), "{status}");
    for text in [
        "自查与核查一致",
        "不一致",
        "待报送",
        city.hidden.as_str(),
        city.silent.as_str(),
    ] {
        assert!(report.contains(text), "{text} in the report page");
    }
    assert!(
        !report.contains(&city.honest_ghost),
        "a declared problem is counted, not listed as left out"
    );

    // Finance reads no campaigns: no link in its navigation, and the page refused.
    let finance = agency("140100", AgencyKind::Finance);
    let (_, overview) = console_get(&app, &finance, "/").await;
    assert!(!overview.contains("/campaigns"), "no link for finance");
    let (status, _) = console_get(&app, &finance, "/campaigns").await;
    assert!(status.contains("403"), "{status}");
}

/// A generated city with planted ghost pay and its ground truth: three registered institutions
/// with planted ghost pay, the campaign narrowed to them; the honest one declares all of its
/// planted problems, the hiding one all but one, the silent one nothing.
async fn on_a_generated_city_the_comparison_matches_the_planted_truth(backend: Backend) {
    use std::collections::{BTreeMap, BTreeSet};
    let config = quotahub::generator::GenConfig::small(11);
    let dataset = quotahub::generator::generate(&config);
    let app = TestApp::spawn_on(backend, config.as_of).await;
    crate::city::push_dataset(&app, &dataset).await;

    // The registry as it ends: a unit abolished or merged comes again with its new status.
    let mut status = BTreeMap::new();
    for institution in &dataset.institutions {
        status.insert(institution.uscc.clone(), institution.status);
    }
    let ghost_pay_codes = [
        quotahub::domain::findings::RuleCode::PaidNotOnRoll,
        quotahub::domain::findings::RuleCode::PaidAfterExit,
        quotahub::domain::findings::RuleCode::DoublePay,
    ];
    let mut planted: BTreeMap<String, BTreeSet<(i32, String, String)>> = BTreeMap::new();
    for truth in &dataset.truth {
        if ghost_pay_codes.contains(&truth.code)
            && status.get(&truth.institution) == Some(&(proto::InstitutionStatus::Active as i32))
        {
            let code = RuleCode::from_str_name(&format!("RULE_CODE_{}", truth.code)).unwrap();
            planted
                .entry(truth.institution.clone())
                .or_default()
                .insert((code as i32, truth.subject.clone(), truth.period.clone()));
        }
    }
    let hiding = planted
        .iter()
        .find(|(_, problems)| problems.len() >= 2)
        .map(|(uscc, _)| uscc.clone())
        .expect("an institution with two planted ghost-pay problems");
    let others: Vec<String> = planted
        .keys()
        .filter(|u| **u != hiding)
        .take(2)
        .cloned()
        .collect();
    let [honest, silent] = &others[..] else {
        panic!("three institutions with planted ghost pay: {planted:?}")
    };

    let months = (
        dataset.periods.first().unwrap(),
        dataset.periods.last().unwrap(),
    );
    let deadline = config.as_of + chrono::Days::new(14);
    let campaign = campaigns(&app, AgencyKind::StaffingOffice)
        .await
        .open_campaign(proto::OpenCampaignRequest {
            title: "吃空饷专项治理(生成数据)".into(),
            codes: ghost_pay(),
            period_from: months.0.clone(),
            period_to: months.1.clone(),
            deadline: deadline.to_string(),
            institution_usccs: vec![honest.clone(), hiding.clone(), silent.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(campaign.institutions, 3);
    let as_problems = |problems: &BTreeSet<(i32, String, String)>| -> Vec<proto::Problem> {
        problems
            .iter()
            .map(|(code, subject, period)| proto::Problem {
                code: *code,
                subject: subject.clone(),
                period: period.clone(),
                ..Default::default()
            })
            .collect()
    };
    let mut hr = campaigns(&app, AgencyKind::Hr).await;
    let mut hidden_set = planted[&hiding].clone();
    let hidden = hidden_set.pop_last().unwrap();
    for (uscc, problems) in [(honest, &planted[honest]), (&hiding, &hidden_set)] {
        hr.declare(proto::DeclareRequest {
            campaign_id: campaign.id.clone(),
            institution_uscc: uscc.clone(),
            problems: as_problems(problems),
            ..Default::default()
        })
        .await
        .unwrap();
    }

    app.store.checks().clock.advance(chrono::Duration::days(15));
    let report = report(&app, &campaign.id).await;
    let set = |problems: &[proto::Problem]| -> BTreeSet<(i32, String, String)> {
        problems
            .iter()
            .map(|p| (p.code, p.subject.clone(), p.period.clone()))
            .collect()
    };
    let honest_line = line(&report, honest);
    assert_eq!(honest_line.standing, Standing::Matching as i32);
    assert_eq!(set(&honest_line.matched), planted[honest]);
    let hiding_line = line(&report, &hiding);
    assert_eq!(hiding_line.standing, Standing::Discrepant as i32);
    assert_eq!(set(&hiding_line.undeclared), BTreeSet::from([hidden]));
    assert_eq!(set(&hiding_line.matched), hidden_set);
    assert!(hiding_line.unconfirmed.is_empty());
    let silent_line = line(&report, silent);
    assert_eq!(silent_line.standing, Standing::Missing as i32);
    assert_eq!(set(&silent_line.shown), planted[silent]);
    let progress = report.progress.unwrap();
    assert_eq!(
        (
            progress.institutions,
            progress.matching,
            progress.discrepant,
            progress.missing,
            progress.undeclared_problems,
            progress.unconfirmed_problems,
        ),
        (3, 1, 1, 1, 1, 0)
    );
}
