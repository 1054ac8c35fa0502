//! A generated city with planted problems of every rule code, pushed by each agency over mutual
//! TLS through the real server: every planted problem is found and nothing else; the core rules as
//! plain SQL agree; and fixing the data, the way each agency would, resolves every finding.

use std::collections::BTreeSet;

use quotahub::domain::AgencyKind;
use quotahub::generator::{Dataset, GenConfig};
use quotahub::proto;
use quotahub::proto::RuleCode;
use tonic::transport::Channel;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(a_generated_city_yields_exactly_its_planted_problems_and_fixes_resolve_them);

type Key = (String, String, String, String);

fn code_name(code: i32) -> String {
    RuleCode::try_from(code)
        .map(|c| c.as_str_name().trim_start_matches("RULE_CODE_").to_owned())
        .unwrap_or_default()
}

fn key_of(finding: &proto::Finding) -> Key {
    (
        code_name(finding.code),
        finding.institution_uscc.clone(),
        finding.subject.clone(),
        finding.period.clone(),
    )
}

pub(crate) async fn push_dataset(app: &TestApp, dataset: &Dataset) {
    macro_rules! push_all {
        ($records:expr, $client:expr, $method:ident) => {{
            let mut client = $client.max_decoding_message_size(64 * 1024 * 1024);
            for chunk in $records.chunks(1_000) {
                let response = client
                    .$method(tokio_stream::iter(chunk.to_vec()))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(
                    response.rejected,
                    0,
                    "{:?}",
                    response.results.iter().find(|r| r.error.is_some())
                );
            }
        }};
    }
    push_all!(
        dataset.institutions,
        app.staffing("140100").await,
        push_institutions
    );
    push_all!(dataset.quotas, app.staffing("140100").await, push_quotas);
    push_all!(
        dataset.leader_posts,
        app.staffing("140100").await,
        push_leader_posts
    );
    push_all!(
        dataset.plans,
        app.staffing("140100").await,
        push_staffing_plans
    );
    push_all!(
        dataset.approvals,
        app.staffing("140100").await,
        push_hiring_approvals
    );
    push_all!(
        dataset.events,
        app.hr("140100").await,
        push_personnel_events
    );
    push_all!(
        dataset.appointments,
        app.organization("140100").await,
        push_appointments
    );
    push_all!(
        dataset.payroll,
        app.finance("140100").await,
        push_payroll_lines
    );
    push_all!(dataset.fundings, app.finance("140100").await, push_fundings);
}

async fn open_findings(
    reconciliation: &mut proto::reconciliation_service_client::ReconciliationServiceClient<Channel>,
) -> Vec<proto::Finding> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = reconciliation
            .list_findings(proto::ListFindingsRequest {
                page_size: 1_000,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        all.extend(page.findings);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

/// The record id of a pushed record named in evidence (`{jurisdiction}/{kind}/{record id}`).
fn record_id(evidence_id: &str) -> String {
    evidence_id
        .splitn(3, '/')
        .nth(2)
        .unwrap_or(evidence_id)
        .to_owned()
}

/// Pushes, as the agency concerned, what puts one finding right.
async fn fix(app: &TestApp, finding: &proto::Finding, round: usize, n: usize) {
    let id = format!("fix-{round}-{n}");
    let code = RuleCode::try_from(finding.code).unwrap();
    let institution = finding.institution_uscc.clone();
    let category = |subject: &str| {
        proto::QuotaCategory::from_str_name(&format!("QUOTA_CATEGORY_{subject}"))
            .unwrap_or_default() as i32
    };
    let evidence = |kind: &str| {
        finding
            .evidence
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.id.clone())
            .collect::<Vec<_>>()
    };
    match code {
        RuleCode::OverQuota | RuleCode::QuotaFull => {
            let mut quota = quota(
                &id,
                &institution,
                u32::try_from(finding.actual).unwrap() + 5,
            );
            quota.category = category(&finding.subject);
            quota.effective_from = "2000-01-01".into();
            app.staffing("140100")
                .await
                .push_quota(quota)
                .await
                .unwrap();
        }
        RuleCode::OverLeaderPosts => {
            let (level, position) = finding.subject.split_once('/').unwrap();
            let post = proto::LeaderPost {
                record_id: id,
                institution_uscc: institution,
                level: proto::LeaderLevel::from_str_name(&format!("LEADER_LEVEL_{level}")).unwrap()
                    as i32,
                position: proto::LeaderPosition::from_str_name(&format!(
                    "LEADER_POSITION_{position}"
                ))
                .unwrap() as i32,
                approved_count: u32::try_from(finding.actual).unwrap(),
                effective_from: "2000-01-01".into(),
                approval_document: "整改".into(),
                ..Default::default()
            };
            app.staffing("140100")
                .await
                .push_leader_post(post)
                .await
                .unwrap();
        }
        RuleCode::LeaderAboveGrade
        | RuleCode::MixedCategory
        | RuleCode::UnregisteredInstitution => {
            // The staffing office corrects the registry: the grade the leaders hold, a
            // political-legal organ, a public institution for 事业编制, an institution registered.
            let view = app
                .query("140100", AgencyKind::StaffingOffice)
                .await
                .get_institution(proto::GetInstitutionRequest {
                    uscc: institution.clone(),
                    as_of: String::new(),
                })
                .await;
            let mut record = match view {
                Ok(view) => view.into_inner().institution.unwrap(),
                Err(_) => organ(&id, &institution, &institution[2..8]),
            };
            record.record_id = id;
            record.status = proto::InstitutionStatus::Active as i32;
            record.status_since = String::new();
            match code {
                RuleCode::LeaderAboveGrade => record.grade = proto::Grade::BureauPrincipal as i32,
                RuleCode::MixedCategory => {
                    record.political_legal = true;
                    if record.kind == proto::InstitutionKind::Organ as i32 {
                        record.kind = proto::InstitutionKind::PublicInstitution as i32;
                        record.funding_form = proto::FundingForm::Full as i32;
                    }
                }
                _ => {}
            }
            app.staffing("140100")
                .await
                .push_institution(record)
                .await
                .unwrap();
        }
        RuleCode::HireWithoutApproval | RuleCode::OverPlan | RuleCode::ReserveShortfall => {
            // Retroactive approvals and plans, as the staffing office would issue them.
            let history_of = |resident: String| async {
                app.query("140100", AgencyKind::StaffingOffice)
                    .await
                    .get_person_history(proto::GetPersonHistoryRequest {
                        resident_id: resident,
                    })
                    .await
                    .unwrap()
                    .into_inner()
            };
            if code == RuleCode::HireWithoutApproval {
                let history = history_of(finding.subject.clone()).await;
                let entry = history
                    .events
                    .iter()
                    .find(|e| {
                        e.effective_on == finding.period
                            && (e.institution_uscc == institution
                                || e.target_institution_uscc == institution)
                    })
                    .unwrap();
                // The staffing office issues the approval after the fact; an entry that cited
                // nothing is corrected by HR to cite it.
                let number = if entry.approval_number.is_empty() {
                    format!("并编审〔补〕{n}号")
                } else {
                    entry.approval_number.clone()
                };
                let approval = proto::HiringApproval {
                    record_id: id.clone(),
                    approval_number: number.clone(),
                    institution_uscc: institution,
                    category: entry.category,
                    approved_entries: 1_000,
                    issued_on: "2000-01-01".into(),
                    valid_until: "2099-12-31".into(),
                };
                app.staffing("140100")
                    .await
                    .push_hiring_approval(approval)
                    .await
                    .unwrap();
                if entry.approval_number.is_empty() {
                    let correction = proto::PersonnelEvent {
                        record_id: format!("{id}-correction"),
                        approval_number: number,
                        corrects_record_id: entry.record_id.clone(),
                        ..entry.clone()
                    };
                    app.hr("140100")
                        .await
                        .push_personnel_event(correction)
                        .await
                        .unwrap();
                }
            } else {
                let plan = proto::StaffingPlan {
                    record_id: id,
                    institution_uscc: institution,
                    year: finding.period.parse().unwrap(),
                    category: category(&finding.subject),
                    channel: proto::HiringChannel::TalentIntroduction as i32,
                    approved_count: u32::try_from(finding.actual).unwrap() + 5,
                    approval_document: "整改".into(),
                };
                app.staffing("140100")
                    .await
                    .push_staffing_plan(plan)
                    .await
                    .unwrap();
            }
        }
        RuleCode::DuplicateEnrollment => {
            // HR ends the person's second enrolment.
            let mut institutions: Vec<String> = evidence("institution");
            institutions.sort();
            for (k, other) in institutions.iter().skip(1).enumerate() {
                let mut departure =
                    hire(&format!("{id}-{k}"), &finding.subject, other, "2024-06-15");
                departure.event_type = proto::PersonnelEventType::Departure as i32;
                app.hr("140100")
                    .await
                    .push_personnel_event(departure)
                    .await
                    .unwrap();
            }
        }
        RuleCode::PaidNotOnRoll
        | RuleCode::PaidAfterExit
        | RuleCode::PayUnitMismatch
        | RuleCode::DoublePay => {
            // Finance reverses the lines paid in error (for double pay, all but the first payer's).
            let mut lines = evidence("payroll_line");
            lines.sort();
            let mut finance = app.finance("140100").await;
            let mut query = app.query("140100", AgencyKind::Finance).await;
            for (k, line) in lines.iter().enumerate() {
                let record = record_id(line);
                // Which institution paid the line (evidence names the line, not its payer).
                let row = sqlx::query_with(
                    "SELECT institution_uscc FROM payroll_lines WHERE record_id = $1",
                    {
                        use sqlx::Arguments;
                        let mut arguments = sqlx::any::AnyArguments::default();
                        arguments.add(record.clone()).unwrap();
                        arguments
                    },
                )
                .fetch_one(app.store.readers())
                .await
                .unwrap();
                let payer: String = sqlx::Row::get(&row, 0);
                let lines = query
                    .list_payroll(proto::ListPayrollRequest {
                        institution_uscc: payer,
                        period: finding.period.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .lines;
                if lines.iter().any(|l| l.reverses_record_id == record) {
                    continue; // Already reversed for another finding it was evidence of.
                }
                let original = lines.into_iter().find(|l| l.record_id == record);
                let original = original.unwrap_or_else(|| panic!("line {record} not found"));
                if code == RuleCode::DoublePay && original.institution_uscc == institution {
                    continue;
                }
                // Finance reads the payee's resident ID masked from the hub: its own payroll
                // system (here, the database) has it.
                let payee = sqlx::query_with(
                    "SELECT resident_id FROM payroll_lines WHERE record_id = $1",
                    {
                        use sqlx::Arguments;
                        let mut arguments = sqlx::any::AnyArguments::default();
                        arguments.add(record.clone()).unwrap();
                        arguments
                    },
                )
                .fetch_one(app.store.readers())
                .await
                .unwrap();
                let reversal = proto::PayrollLine {
                    record_id: format!("{id}-{k}"),
                    reverses_record_id: record,
                    gross_fen: 0,
                    resident_id: sqlx::Row::get(&payee, 0),
                    person_token: String::new(),
                    ..original
                };
                finance.push_payroll_line(reversal).await.unwrap();
            }
        }
        RuleCode::FundedOverQuota | RuleCode::SelfFundedBudgetPay => {
            let headcount = if code == RuleCode::FundedOverQuota {
                u32::try_from(finding.limit).unwrap()
            } else {
                0
            };
            let funding = proto::Funding {
                record_id: id,
                institution_uscc: institution,
                category: category(&finding.subject),
                period: finding.period.clone(),
                funded_headcount: headcount,
                amount_fen: i64::from(headcount) * 800_000,
            };
            app.finance("140100")
                .await
                .push_funding(funding)
                .await
                .unwrap();
        }
        RuleCode::RegionalBalance | RuleCode::Unspecified => unreachable!("not a finding"),
        // The city's data all arrives on its check date, payroll up to the check month.
        RuleCode::LatePayroll | RuleCode::BackdatedEvent => unreachable!("nothing is late"),
    }
}

async fn a_generated_city_yields_exactly_its_planted_problems_and_fixes_resolve_them(
    backend: Backend,
) {
    let config = GenConfig::small(7);
    let dataset = quotahub::generator::generate(&config);
    let app = TestApp::spawn_on(backend, config.as_of).await;
    push_dataset(&app, &dataset).await;

    let channel = app.channel(&agency("140100", AgencyKind::Discipline)).await;
    let mut reconciliation =
        proto::reconciliation_service_client::ReconciliationServiceClient::new(channel);
    let found: BTreeSet<Key> = open_findings(&mut reconciliation)
        .await
        .iter()
        .map(key_of)
        .collect();
    // All of it arrives on the check date: the freshness truth is the delivery timeline's
    // (tests/integration/timeline.rs replays it).
    let planted: BTreeSet<Key> = dataset
        .truth
        .iter()
        .filter(|p| !p.code.about_agency())
        .map(|p| {
            (
                p.code.to_string(),
                p.institution.clone(),
                p.subject.clone(),
                p.period.clone(),
            )
        })
        .collect();
    let missed: Vec<&Key> = planted.difference(&found).collect();
    let extra: Vec<&Key> = found.difference(&planted).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed {missed:#?}\nextra {extra:#?}"
    );
    let codes: BTreeSet<&str> = planted.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(
        codes.len(),
        16,
        "every rule code about institutions but REGIONAL_BALANCE is planted: {codes:?}"
    );

    // The core rules as plain SQL find the same on this data.
    let core: BTreeSet<Key> = found
        .iter()
        .filter(|k| {
            quotahub::store::plain_sql::CODES
                .iter()
                .any(|c| c.to_string() == k.0)
        })
        .cloned()
        .collect();
    let sql: BTreeSet<Key> = app
        .store
        .plain_sql_findings(config.as_of)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.code.to_string(), k.institution, k.subject, k.period))
        .collect();
    assert_eq!(core, sql);

    // Fix the data, round after round (a fix may bring a new finding to fix), until none is open.
    let mut resolved: BTreeSet<Key> = BTreeSet::new();
    for round in 0..6 {
        let mut open = open_findings(&mut reconciliation).await;
        if open.is_empty() {
            break;
        }
        // The registry first: quotas, posts and plans can only be given to registered institutions.
        open.sort_by_key(|f| f.code != RuleCode::UnregisteredInstitution as i32);
        for (n, finding) in open.iter().enumerate() {
            resolved.insert(key_of(finding));
            fix(&app, finding, round, n).await;
        }
    }
    let left: Vec<Key> = open_findings(&mut reconciliation)
        .await
        .iter()
        .map(key_of)
        .collect();
    assert!(left.is_empty(), "still open after the fixes: {left:#?}");
    assert!(planted.is_subset(&resolved));
    // Resolved, not forgotten: every planted finding is on record as resolved.
    let resolved_on_record: BTreeSet<Key> = reconciliation
        .list_findings(proto::ListFindingsRequest {
            state: proto::FindingState::Resolved as i32,
            page_size: 5_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .findings
        .iter()
        .map(key_of)
        .collect();
    assert!(planted.is_subset(&resolved_on_record));
}
