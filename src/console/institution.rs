//! 单位: an institution's page. Its quotas and leader posts with their use (GetInstitution), the
//! roll as of any date (ListRoll, masked for the viewer by the handler), payroll and funding of a
//! period (ListPayroll, ListFunding), its open findings (ListFindings) and its ledger items
//! (ListItems) and its applications (ListApplications, for the agencies that may read them).
//! Without an institution, the page asks for one and lists those with open findings.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tonic::Status;

use super::lists::{BULK_PAGE_SIZE, LIST_ITEMS, MAX_BULK_PAGES};
use super::matters::LIST_APPLICATIONS;
use super::pages::{self, ListQuery};
use super::views::{self, Chrome, FindingQuery, FindingRow, Nav};
use super::{Lang, Visit};
use crate::proto;
use crate::proto::application_service_server::ApplicationService as _;
use crate::proto::ledger_service_server::LedgerService as _;
use crate::proto::query_service_server::QueryService as _;
use crate::proto::reconciliation_service_server::ReconciliationService as _;

/// See [`pages::LIST_FINDINGS`].
pub const GET_INSTITUTION: &str = "/quotahub.v1.QueryService/GetInstitution";
/// See [`pages::LIST_FINDINGS`].
pub const LIST_ROLL: &str = "/quotahub.v1.QueryService/ListRoll";
/// See [`pages::LIST_FINDINGS`].
pub const LIST_PAYROLL: &str = "/quotahub.v1.QueryService/ListPayroll";
/// See [`pages::LIST_FINDINGS`].
pub const LIST_FUNDING: &str = "/quotahub.v1.QueryService/ListFunding";

/// People of the roll per page.
const ROLL_PAGE: u32 = 100;
/// Findings and ledger items shown on the page (the lists link to the rest).
const SHOWN: usize = 50;

/// The institution page's link: which institution, as of when, which pay period, which page of
/// the roll.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct InstitutionQuery {
    /// The institution's USCC.
    pub uscc: String,
    /// The roll's date (`2024-06-30`); today when empty.
    pub as_of: String,
    /// The payroll and funding period (`2024-06`); the month of `as_of` when empty.
    pub period: String,
    /// ListRoll's page token.
    pub roll_page: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl InstitutionQuery {
    /// The page's query string (without `lang`), with another page of the roll.
    pub fn query_string(&self, roll_page: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("uscc", &self.uscc);
        for (name, value) in [
            ("as_of", &self.as_of),
            ("period", &self.period),
            ("roll_page", &roll_page.to_owned()),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }

    /// For the audit trail.
    pub fn summary(&self) -> String {
        self.query_string(&self.roll_page)
    }

    /// The period shown: the one asked for, else the month of the roll's date, else this month.
    fn period(&self) -> String {
        if !self.period.trim().is_empty() {
            return self.period.trim().to_owned();
        }
        if self.as_of.trim().len() >= 7 {
            return self.as_of.trim()[..7].to_owned();
        }
        china_today().format("%Y-%m").to_string()
    }
}

fn china_today() -> chrono::NaiveDate {
    let china = chrono::FixedOffset::east_opt(8 * 3_600).expect("a valid offset");
    chrono::Utc::now().with_timezone(&china).date_naive()
}

/// The page.
#[derive(askama::Template)]
#[template(path = "console/institution.html")]
pub struct InstitutionPage {
    pub c: Chrome,
    pub uscc: String,
    pub name: String,
    pub facts: Vec<(&'static str, String)>,
    pub as_of: String,
    pub period: String,
    pub quotas: Vec<QuotaRow>,
    pub posts: Vec<PostRow>,
    pub roll: Vec<RollRow>,
    pub roll_next: Option<String>,
    pub roll_first: Option<String>,
    pub roll_csv: String,
    pub payroll: Vec<PayrollRow>,
    pub payroll_total: String,
    pub amounts_masked: bool,
    pub funding: Vec<FundingRow>,
    pub findings: Vec<FindingRow>,
    pub findings_total: usize,
    pub findings_href: String,
    pub items: Vec<super::board::ItemRow>,
    /// None when the viewer's agency may not read applications.
    pub applications: Option<Vec<super::matters::ApplicationLine>>,
    pub applications_href: String,
    pub children: Vec<(String, String)>,
    pub masked: bool,
}

/// A quota category with its use.
pub struct QuotaRow {
    pub category: &'static str,
    pub approved: u32,
    pub active: u32,
    pub vacancy: i64,
    pub document: String,
}

/// A leader post with its occupants.
pub struct PostRow {
    pub level: &'static str,
    pub position: &'static str,
    pub approved: u32,
    pub occupied: u32,
}

/// One person of the roll, as the viewer may see them.
pub struct RollRow {
    pub resident_id: String,
    pub name: String,
    pub category: &'static str,
    pub status: &'static str,
    pub since: String,
    pub leader: String,
}

/// A payroll line.
pub struct PayrollRow {
    pub record_id: String,
    pub resident_id: String,
    pub name: String,
    pub gross: String,
    pub reverses: String,
}

/// A funding record.
pub struct FundingRow {
    pub category: &'static str,
    pub headcount: u32,
    pub amount: String,
}

/// The index: a form, and the institutions with open findings.
#[derive(askama::Template)]
#[template(path = "console/institutions.html")]
pub struct InstitutionIndex {
    pub c: Chrome,
    pub rows: Vec<(String, String, u64)>,
    /// How many institutions have open findings.
    pub institutions: u64,
    pub findings_href: String,
}

/// An amount of fen as yuan (`12,345.67`).
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    let whole = (fen / 100).to_string();
    let mut grouped = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02}", fen % 100)
}

async fn roll_page(
    visit: &mut Visit,
    query: &InstitutionQuery,
    page_size: u32,
    page_token: String,
) -> Result<proto::ListRollResponse, Status> {
    visit
        .call(
            LIST_ROLL,
            proto::ListRollRequest {
                uscc: query.uscc.trim().to_owned(),
                as_of: query.as_of.trim().to_owned(),
                page_size,
                page_token,
            },
            |hub, request| async move { hub.list_roll(request).await },
        )
        .await
}

fn roll_row(lang: Lang, entry: &proto::RollEntry) -> RollRow {
    RollRow {
        resident_id: entry.resident_id.clone(),
        name: entry.name.clone(),
        category: super::chart::category(lang, entry.category),
        status: views::person_status_label(lang, entry.status),
        since: entry.since.clone(),
        leader: if entry.leader_level == 0 {
            String::new()
        } else {
            format!(
                "{} {}",
                views::leader_level_label(lang, entry.leader_level),
                views::leader_position_label(lang, entry.leader_position)
            )
        },
    }
}

/// The institution's page, or the index without one.
pub async fn page(visit: &mut Visit, query: &InstitutionQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    if query.uscc.trim().is_empty() {
        let summary = visit
            .call(
                pages::SUMMARIZE_FINDINGS,
                proto::SummarizeFindingsRequest::default(),
                |hub, request| async move { hub.summarize_findings(request).await },
            )
            .await?;
        let chrome = Chrome::new(visit, &agency, Nav::Institution, "/institution", "");
        let rows = summary
            .most_findings
            .into_iter()
            .map(|count| {
                let href = chrome.href(&format!(
                    "/institution?{}",
                    InstitutionQuery {
                        uscc: count.institution_uscc.clone(),
                        ..InstitutionQuery::default()
                    }
                    .query_string("")
                ));
                (count.institution_uscc, href, count.open)
            })
            .collect();
        let findings_href = chrome.href(&format!(
            "/findings?{}",
            ListQuery {
                sort: "institution".into(),
                ..ListQuery::default()
            }
            .query_string(Lang::Zh, "")
        ));
        return views::html(&InstitutionIndex {
            c: chrome,
            rows,
            institutions: summary.institutions_with_findings,
            findings_href,
        });
    }
    let uscc = query.uscc.trim().to_owned();
    let period = query.period();
    let view = visit
        .call(
            GET_INSTITUTION,
            proto::GetInstitutionRequest {
                uscc: uscc.clone(),
                as_of: query.as_of.trim().to_owned(),
            },
            |hub, request| async move { hub.get_institution(request).await },
        )
        .await?;
    let roll = roll_page(visit, query, ROLL_PAGE, query.roll_page.clone()).await?;
    let payroll = visit
        .call(
            LIST_PAYROLL,
            proto::ListPayrollRequest {
                institution_uscc: uscc.clone(),
                period: period.clone(),
            },
            |hub, request| async move { hub.list_payroll(request).await },
        )
        .await?;
    let funding = visit
        .call(
            LIST_FUNDING,
            proto::ListFundingRequest {
                institution_uscc: uscc.clone(),
                period: period.clone(),
            },
            |hub, request| async move { hub.list_funding(request).await },
        )
        .await?;
    let findings_query = ListQuery {
        institution: uscc.clone(),
        ..ListQuery::default()
    };
    let findings = pages::every_finding(visit, &findings_query).await?;
    let items = visit
        .call(
            LIST_ITEMS,
            proto::ListItemsRequest {
                department_uscc: uscc.clone(),
                page_size: u32::try_from(SHOWN).unwrap_or(50),
                ..proto::ListItemsRequest::default()
            },
            |hub, request| async move { hub.list_items(request).await },
        )
        .await?;
    let applications = if visit.may_call(LIST_APPLICATIONS) {
        Some(
            visit
                .call(
                    LIST_APPLICATIONS,
                    proto::ListApplicationsRequest {
                        department_uscc: uscc.clone(),
                        page_size: u32::try_from(SHOWN).unwrap_or(50),
                        ..proto::ListApplicationsRequest::default()
                    },
                    |hub, request| async move { hub.list_applications(request).await },
                )
                .await?
                .applications,
        )
    } else {
        None
    };

    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Institution,
        "/institution",
        &query.query_string(&query.roll_page),
    );
    let institution = view.institution.clone().unwrap_or_default();
    let facts = vec![
        (
            chrome.t("区划", "Division"),
            institution.jurisdiction.clone(),
        ),
        (
            chrome.t("类型", "Kind"),
            views::institution_kind_label(lang, institution.kind).to_owned(),
        ),
        (
            chrome.t("机构规格", "Grade"),
            views::enum_name(
                proto::Grade::try_from(institution.grade)
                    .ok()
                    .map(|g| g.as_str_name()),
                "GRADE_",
            ),
        ),
        (
            chrome.t("经费形式", "Funding"),
            views::enum_name(
                proto::FundingForm::try_from(institution.funding_form)
                    .ok()
                    .map(|f| f.as_str_name()),
                "FUNDING_FORM_",
            ),
        ),
        (
            chrome.t("状态", "Status"),
            views::enum_name(
                proto::InstitutionStatus::try_from(institution.status)
                    .ok()
                    .map(|s| s.as_str_name()),
                "INSTITUTION_STATUS_",
            ),
        ),
        (
            chrome.t("上级单位", "Parent"),
            institution.parent_uscc.clone(),
        ),
        (
            chrome.t("批准文件", "Approval"),
            institution.approval_document.clone(),
        ),
        (
            chrome.t("成立日期", "Established"),
            institution.established_on.clone(),
        ),
    ];
    let masked = roll
        .entries
        .iter()
        .any(|entry| !entry.person_token.is_empty() && entry.resident_id.contains('*'))
        || payroll
            .lines
            .iter()
            .any(|line| line.resident_id.contains('*'))
        || payroll.amounts_masked;
    let link = |q: &InstitutionQuery, page: &str| {
        chrome.href(&format!("/institution?{}", q.query_string(page)))
    };
    let page = InstitutionPage {
        uscc: uscc.clone(),
        name: institution.name.clone(),
        facts,
        as_of: view.as_of.clone(),
        period: period.clone(),
        quotas: view
            .quotas
            .iter()
            .map(|quota| QuotaRow {
                category: super::chart::category(lang, quota.category),
                approved: quota.approved_count,
                active: quota.active_count,
                vacancy: quota.vacancy,
                document: quota
                    .quota
                    .as_ref()
                    .map(|q| q.approval_document.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        posts: view
            .leader_posts
            .iter()
            .map(|post| PostRow {
                level: views::leader_level_label(lang, post.level),
                position: views::leader_position_label(lang, post.position),
                approved: post.approved_count,
                occupied: post.occupied_count,
            })
            .collect(),
        roll: roll
            .entries
            .iter()
            .map(|entry| roll_row(lang, entry))
            .collect(),
        roll_next: (!roll.next_page_token.is_empty()).then(|| link(query, &roll.next_page_token)),
        roll_first: (!query.roll_page.is_empty()).then(|| link(query, "")),
        roll_csv: chrome.href(&format!("/institution/roll.csv?{}", query.query_string(""))),
        payroll: payroll
            .lines
            .iter()
            .map(|line| PayrollRow {
                record_id: line.record_id.clone(),
                resident_id: line.resident_id.clone(),
                name: line.name.clone(),
                gross: if payroll.amounts_masked {
                    "***".to_owned()
                } else {
                    yuan(line.gross_fen)
                },
                reverses: line.reverses_record_id.clone(),
            })
            .collect(),
        payroll_total: if payroll.amounts_masked {
            "***".to_owned()
        } else {
            yuan(payroll.total_gross_fen)
        },
        amounts_masked: payroll.amounts_masked,
        funding: funding
            .fundings
            .iter()
            .map(|funding| FundingRow {
                category: super::chart::category(lang, funding.category),
                headcount: funding.funded_headcount,
                amount: yuan(funding.amount_fen),
            })
            .collect(),
        findings_total: findings.len(),
        findings: findings
            .iter()
            .take(SHOWN)
            .map(|finding| {
                FindingRow::of(
                    lang,
                    finding,
                    &chrome.href(&format!(
                        "/finding?{}",
                        FindingQuery::of(finding).query_string(Lang::Zh)
                    )),
                )
            })
            .collect(),
        findings_href: chrome.href(&format!(
            "/findings?{}",
            findings_query.query_string(Lang::Zh, "")
        )),
        items: items
            .items
            .iter()
            .map(|item| super::board::ItemRow::of(lang, &chrome, item))
            .collect(),
        applications: applications.map(|applications| {
            applications
                .iter()
                .map(|application| super::matters::ApplicationLine::of(lang, &chrome, application))
                .collect()
        }),
        applications_href: chrome.href(&format!(
            "/applications?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("department", &uscc)
                .finish()
        )),
        children: view
            .child_usccs
            .iter()
            .map(|child| {
                (
                    child.clone(),
                    link(
                        &InstitutionQuery {
                            uscc: child.clone(),
                            as_of: query.as_of.clone(),
                            period: query.period.clone(),
                            ..InstitutionQuery::default()
                        },
                        "",
                    ),
                )
            })
            .collect(),
        masked,
        c: chrome,
    };
    views::html(&page)
}

/// The roll as of the page's date as CSV, every page of it (as masked for the viewer).
pub async fn roll_csv(visit: &mut Visit, query: &InstitutionQuery) -> Result<Response, Status> {
    visit.viewer().await?;
    let lang = visit.lang;
    let mut out = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
    let internal = |error: csv::Error| Status::internal(error.to_string());
    out.write_record([
        "resident_id",
        "name",
        "category",
        "status",
        "since",
        "leader",
        "approval_number",
        "person_token",
    ])
    .map_err(internal)?;
    let mut token = String::new();
    for _ in 0..MAX_BULK_PAGES {
        let page = roll_page(visit, query, BULK_PAGE_SIZE, token).await?;
        for entry in &page.entries {
            let row = roll_row(lang, entry);
            out.write_record([
                &row.resident_id,
                &row.name,
                row.category,
                row.status,
                &row.since,
                &row.leader,
                &entry.approval_number,
                &entry.person_token,
            ])
            .map_err(internal)?;
        }
        if page.next_page_token.is_empty() {
            let body = out
                .into_inner()
                .map_err(|error| Status::internal(error.to_string()))?;
            return Ok((
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"roll.csv\"",
                    ),
                ],
                body,
            )
                .into_response());
        }
        token = page.next_page_token;
    }
    Err(Status::resource_exhausted(
        "the roll is too long for one export",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fen_are_shown_as_grouped_yuan() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(650_000), "6,500.00");
        assert_eq!(yuan(123_456_789), "1,234,567.89");
        assert_eq!(yuan(-5), "-0.05");
    }
}
