//! The console's pages: each asks the gRPC handlers for its data through [`Visit::call`] and
//! renders it. Nothing here reads the store.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tonic::Status;

use super::lists::{BULK_PAGE_SIZE, MAX_BULK_PAGES, every_item};
use super::views::{self, Chrome, FindingQuery, Nav, code_name};
use super::{Lang, Visit};
use crate::api::convert::Wire as _;
use crate::domain::alerts::{AlertState, may_transition};
use crate::proto;
use crate::proto::feed_service_server::FeedService as _;
use crate::proto::reconciliation_service_server::ReconciliationService as _;

/// The gRPC methods the pages call; each is admitted by the policy table under its own path.
pub const LIST_FINDINGS: &str = "/quotahub.v1.ReconciliationService/ListFindings";
/// See [`LIST_FINDINGS`].
pub const REGIONAL_BALANCE: &str = "/quotahub.v1.ReconciliationService/RegionalBalance";
/// See [`LIST_FINDINGS`].
pub const SUMMARIZE_FINDINGS: &str = "/quotahub.v1.ReconciliationService/SummarizeFindings";
/// See [`LIST_FINDINGS`].
pub const TRANSITION_ALERT: &str = "/quotahub.v1.FeedService/TransitionAlert";

/// Rows of the findings list per page.
const PAGE_SIZE: u32 = 50;

/// Only the language.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LangQuery {
    /// `en` for English.
    pub lang: Option<String>,
}

/// The findings list's filters and page, as its links carry them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// A rule code name (`OVER_QUOTA`).
    pub rule: String,
    /// The least severity shown (`HIGH`).
    pub severity: String,
    /// `OPEN` (default) or `RESOLVED`.
    pub state: String,
    /// An institution's USCC.
    pub institution: String,
    /// A division below the viewer's (its subtree).
    pub division: String,
    /// Raised on or after this day (`2024-06-01`).
    pub from: String,
    /// Raised on or before this day.
    pub to: String,
    /// A column's key (`severity`, `raised`, ...), `-` before it for descending; empty for the
    /// findings' key order. Sorted by ListFindings' `order_by`.
    pub sort: String,
    /// ListFindings' page token.
    pub page: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl ListQuery {
    /// The query string of this list in `lang`, with another page token.
    pub fn query_string(&self, lang: Lang, page: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("rule", &self.rule),
            ("severity", &self.severity),
            ("state", &self.state),
            ("institution", &self.institution),
            ("division", &self.division),
            ("from", &self.from),
            ("to", &self.to),
            ("sort", &self.sort),
        ] {
            if !value.trim().is_empty() {
                query.append_pair(name, value.trim());
            }
        }
        if !page.is_empty() {
            query.append_pair("page", page);
        }
        if lang == Lang::En {
            query.append_pair("lang", "en");
        }
        query.finish()
    }

    /// For the audit trail.
    pub fn summary(&self) -> String {
        self.query_string(Lang::Zh, &self.page)
    }

    fn request(
        &self,
        page_size: u32,
        page_token: String,
    ) -> Result<proto::ListFindingsRequest, Status> {
        let codes = if self.rule.is_empty() {
            Vec::new()
        } else {
            vec![rule_code(&self.rule)?]
        };
        let min_severity = if self.severity.is_empty() {
            0
        } else {
            proto::Severity::from_str_name(&format!("SEVERITY_{}", self.severity))
                .ok_or_else(|| Status::invalid_argument("unknown severity"))? as i32
        };
        Ok(proto::ListFindingsRequest {
            jurisdiction: self.division.trim().to_owned(),
            raised_from: self.from.trim().to_owned(),
            raised_to: self.to.trim().to_owned(),
            codes,
            min_severity,
            state: finding_state(&self.state)?,
            institution_uscc: self.institution.trim().to_owned(),
            page_size,
            page_token,
            order_by: order_by(self.sort.trim()),
        })
    }
}

/// ListFindings' `order_by` for a column's key of the list (`-` before it for descending); an
/// unknown key sorts nothing.
fn order_by(sort: &str) -> String {
    let (descending, key) = match sort.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, sort),
    };
    let field = match key {
        "rule" => "code",
        "severity" => "severity",
        "institution" => "institution_uscc",
        "period" => "period",
        "alert" => "alert_state",
        "raised" => "raised_at",
        _ => return String::new(),
    };
    if descending {
        format!("{field} desc")
    } else {
        field.to_owned()
    }
}

/// A transition posted from a finding's page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TransitionForm {
    /// The finding's key, as on its page.
    #[serde(flatten)]
    pub finding: FindingQuery,
    /// The version the page showed.
    pub version: u64,
    /// `ACKNOWLEDGED`, `RECTIFYING` or `CLOSED`.
    pub to: String,
    /// The token of the viewer's certificate (see `Console::form_token`).
    pub form_token: String,
    /// Why, for the record.
    pub note: String,
}

impl TransitionForm {
    /// For the audit trail (the token left out).
    pub fn summary(&self) -> String {
        format!(
            "{} version={} to={}",
            self.finding.summary(),
            self.version,
            self.to
        )
    }
}

fn rule_code(name: &str) -> Result<i32, Status> {
    proto::RuleCode::from_str_name(&format!("RULE_CODE_{name}"))
        .map(|code| code as i32)
        .ok_or_else(|| Status::invalid_argument(format!("unknown rule {name}")))
}

fn finding_state(name: &str) -> Result<i32, Status> {
    match name {
        "" | "OPEN" => Ok(proto::FindingState::Open as i32),
        "RESOLVED" => Ok(proto::FindingState::Resolved as i32),
        other => Err(Status::invalid_argument(format!("unknown state {other}"))),
    }
}

async fn list_findings(
    visit: &mut Visit,
    request: proto::ListFindingsRequest,
) -> Result<proto::ListFindingsResponse, Status> {
    visit
        .call(LIST_FINDINGS, request, |hub, request| async move {
            hub.list_findings(request).await
        })
        .await
}

/// Every finding the list's filters select, page after page (at most [`MAX_BULK_PAGES`]).
pub async fn every_finding(
    visit: &mut Visit,
    query: &ListQuery,
) -> Result<Vec<proto::Finding>, Status> {
    let mut findings = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_BULK_PAGES {
        let page = list_findings(visit, query.request(BULK_PAGE_SIZE, token)?).await?;
        findings.extend(page.findings);
        if page.next_page_token.is_empty() {
            return Ok(findings);
        }
        token = page.next_page_token;
    }
    Err(Status::resource_exhausted(
        "too many findings for one page; narrow the filters",
    ))
}

/// 总览: the regional balance of the viewer's jurisdiction as a chart and a table, and the open
/// findings by rule and severity.
pub async fn overview(visit: &mut Visit) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let balance = visit
        .call(
            REGIONAL_BALANCE,
            proto::RegionalBalanceRequest::default(),
            |hub, request| async move { hub.regional_balance(request).await },
        )
        .await?;
    let summary = visit
        .call(
            SUMMARIZE_FINDINGS,
            proto::SummarizeFindingsRequest::default(),
            |hub, request| async move { hub.summarize_findings(request).await },
        )
        .await?;
    let chrome = Chrome::new(visit, &agency, Nav::Overview, "/", "");
    let lang = visit.lang;
    let counts = summary
        .open_by_rule
        .iter()
        .map(|count| views::RuleCount {
            rule: views::rule_label(lang, count.code),
            severity: views::severity_label(lang, count.severity),
            severity_class: views::severity_class(count.severity),
            count: count.open,
            href: chrome.href(&format!(
                "/findings?{}",
                ListQuery {
                    rule: code_name(count.code).to_owned(),
                    ..ListQuery::default()
                }
                .query_string(Lang::Zh, "")
            )),
        })
        .collect();
    // Escalations due this week: open alerts whose next deadline falls within seven days.
    let escalations = summary
        .due_this_week
        .iter()
        .filter_map(|due| Some((due.finding.as_ref()?, due.deadline.as_ref())))
        .map(|(finding, deadline)| views::DueRow {
            row: views::FindingRow::of(
                lang,
                finding,
                &chrome.href(&format!(
                    "/finding?{}",
                    FindingQuery::of(finding).query_string(Lang::Zh)
                )),
            ),
            deadline: views::timestamp(deadline),
            next_level: finding.escalation_level + 1,
        })
        .collect();
    // The trend: findings open at the end of each of the last twelve weeks.
    let weeks: Vec<(String, usize)> = summary
        .trend
        .iter()
        .map(|week| {
            let label = views::timestamp(week.at.as_ref());
            (
                label.get(5..10).unwrap_or_default().to_owned(),
                usize::try_from(week.open).unwrap_or(usize::MAX),
            )
        })
        .collect();
    let mut by_severity = [0usize; 5];
    for count in &summary.open_by_rule {
        if let Some(slot) = views::severity_rank(count.severity) {
            by_severity[slot] += usize::try_from(count.open).unwrap_or(usize::MAX);
        }
    }
    let mix: Vec<(String, &'static str, usize)> = views::severity_levels()
        .iter()
        .zip(by_severity)
        .map(|(severity, count)| {
            (
                views::severity_label(lang, *severity).to_owned(),
                views::severity_class(*severity),
                count,
            )
        })
        .collect();
    let overdue_items = every_item(visit, "", true).await?;
    let page = views::Overview {
        escalations,
        due_total: usize::try_from(summary.due_this_week_total).unwrap_or(usize::MAX),
        trend: super::chart::trend_chart(lang, &weeks),
        mix: super::chart::count_chart(
            chrome
                .t("未消除问题级别分布", "Open findings by severity")
                .to_owned(),
            &mix,
        ),
        overdue: super::board::by_department(&chrome, &overdue_items),
        overdue_total: overdue_items.len(),
        chart: super::chart::balance_chart(lang, &balance.rows),
        rows: balance
            .rows
            .iter()
            .map(|row| views::BalanceRow::of(lang, row))
            .collect(),
        as_of: balance.as_of,
        open: usize::try_from(summary.open_total).unwrap_or(usize::MAX),
        counts,
        c: chrome,
    };
    views::html(&page)
}

/// The findings list's sortable columns: key, heading in Chinese and English.
const FINDING_COLUMNS: [(&str, &str, &str); 7] = [
    ("rule", "规则", "Rule"),
    ("severity", "级别", "Severity"),
    ("institution", "单位", "Institution"),
    ("", "对象", "Subject"),
    ("period", "期间", "Period"),
    ("alert", "预警状态", "Alert"),
    ("raised", "发现时间", "Raised"),
];

/// The findings list, filtered by ListFindings (rule, severity, state, institution, division,
/// days raised), sorted by a column by ListFindings' `order_by`, paged by its cursor.
pub async fn findings(visit: &mut Visit, query: &ListQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    let page = list_findings(visit, query.request(PAGE_SIZE, query.page.clone())?).await?;
    let (shown, next_token) = (page.findings, page.next_page_token);
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Findings,
        "/findings",
        &query.query_string(Lang::Zh, &query.page),
    );
    let rows = shown
        .iter()
        .map(|finding| {
            views::FindingRow::of(
                lang,
                finding,
                &chrome.href(&format!(
                    "/finding?{}",
                    FindingQuery::of(finding).query_string(Lang::Zh)
                )),
            )
        })
        .collect();
    let with_sort = |sort: &str| ListQuery {
        sort: sort.to_owned(),
        page: String::new(),
        ..query.clone()
    };
    let headers = FINDING_COLUMNS
        .iter()
        .map(|(key, zh, en)| {
            (!key.is_empty())
                .then(|| {
                    views::SortHeader::new(&chrome, key, chrome.t(zh, en), &query.sort, |sort| {
                        format!("/findings?{}", with_sort(sort).query_string(Lang::Zh, ""))
                    })
                })
                .ok_or_else(|| chrome.t(zh, en).to_owned())
        })
        .collect();
    let link = |page: &str| format!("/findings?{}", query.query_string(lang, page));
    let next = (!next_token.is_empty()).then(|| link(&next_token));
    let first = (!query.page.is_empty()).then(|| link(""));
    let view = views::Findings {
        rules: views::rule_options(lang, &query.rule),
        severities: views::severity_options(lang, &query.severity),
        states: views::state_options(lang, &query.state),
        institution: query.institution.clone(),
        division: query.division.clone(),
        from: query.from.clone(),
        to: query.to.clone(),
        sort: query.sort.clone(),
        headers,
        rows,
        next,
        first,
        csv: format!("/findings.csv?{}", query.query_string(lang, "")),
        c: chrome,
    };
    views::html(&view)
}

/// The filtered list as CSV (UTF-8 with a byte-order mark, which spreadsheet programs need to
/// read Chinese), every page of it.
pub async fn findings_csv(visit: &mut Visit, query: &ListQuery) -> Result<Response, Status> {
    visit.viewer().await?;
    let findings = every_finding(
        visit,
        &ListQuery {
            page: String::new(),
            ..query.clone()
        },
    )
    .await?;
    let lang = visit.lang;
    let mut out = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
    let internal = |error: csv::Error| Status::internal(error.to_string());
    out.write_record([
        "rule",
        "rule_name",
        "severity",
        "institution_uscc",
        "subject",
        "period",
        "jurisdiction",
        "state",
        "alert_state",
        "actual",
        "limit",
        "explanation",
        "raised_at",
        "version",
    ])
    .map_err(internal)?;
    for finding in &findings {
        out.write_record([
            code_name(finding.code),
            &views::rule_label(lang, finding.code),
            views::severity_name(finding.severity),
            &finding.institution_uscc,
            &finding.subject,
            &finding.period,
            &finding.jurisdiction,
            views::finding_state_name(finding.state),
            views::alert_state_name(finding.alert_state),
            &finding.actual.to_string(),
            &finding.limit.to_string(),
            if lang == Lang::En {
                &finding.explanation_en
            } else {
                &finding.explanation_zh
            },
            &views::timestamp(finding.raised_at.as_ref()),
            &finding.version.to_string(),
        ])
        .map_err(internal)?;
    }
    let body = out
        .into_inner()
        .map_err(|error| Status::internal(error.to_string()))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"findings.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The finding the query names, as the viewer reads it (its institution's findings of its rule,
/// through ListFindings).
async fn find(visit: &mut Visit, query: &FindingQuery) -> Result<proto::Finding, Status> {
    let list = ListQuery {
        rule: query.code.clone(),
        state: query.state.clone(),
        institution: query.institution.clone(),
        ..ListQuery::default()
    };
    let findings = every_finding(visit, &list).await?;
    findings
        .into_iter()
        .find(|finding| finding.subject == query.subject && finding.period == query.period)
        .ok_or_else(|| Status::not_found("no such finding in your jurisdiction"))
}

/// A finding's page: explanation, evidence, alert state, and the transitions the viewer may make.
pub async fn finding(visit: &mut Visit, query: &FindingQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let finding = find(visit, query).await?;
    let lang = visit.lang;
    let from = AlertState::from_wire(finding.alert_state);
    let may_transition_alerts = visit.may_call(TRANSITION_ALERT);
    let transitions = [
        AlertState::Acknowledged,
        AlertState::Rectifying,
        AlertState::Closed,
    ]
    .into_iter()
    .filter(|to| may_transition_alerts && from.is_some_and(|from| may_transition(from, *to)))
    .map(|to| views::TransitionButton {
        to: views::alert_state_name(to.to_wire()),
        label: views::alert_state_label(lang, to.to_wire()),
    })
    .collect();
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Findings,
        "/finding",
        &FindingQuery::of(&finding).query_string(Lang::Zh),
    );
    let view = views::FindingPage {
        row: views::FindingRow::of(lang, &finding, ""),
        key: FindingQuery::of(&finding),
        explanation: if lang == Lang::En {
            finding.explanation_en.clone()
        } else {
            finding.explanation_zh.clone()
        },
        evidence: finding
            .evidence
            .iter()
            .map(|evidence| (evidence.kind.clone(), evidence.id.clone()))
            .collect(),
        jurisdiction: finding.jurisdiction.clone(),
        actual: finding.actual,
        limit: finding.limit,
        version: finding.version,
        escalation_level: finding.escalation_level,
        acknowledge_by: views::timestamp(finding.acknowledge_by.as_ref()),
        rectify_by: views::timestamp(finding.rectify_by.as_ref()),
        updated_at: views::timestamp(finding.updated_at.as_ref()),
        masked: finding.personal_data_masked,
        transitions,
        may_transition: may_transition_alerts,
        c: chrome,
    };
    views::html(&view)
}

/// Moves a finding's alert through TransitionAlert (with the version the page showed), then shows
/// the finding's page again.
pub async fn transition(visit: &mut Visit, form: &TransitionForm) -> Result<Response, Status> {
    visit.viewer().await?;
    let to = proto::AlertState::from_str_name(&format!("ALERT_STATE_{}", form.to))
        .ok_or_else(|| Status::invalid_argument("unknown alert state"))?;
    let request = proto::TransitionAlertRequest {
        code: rule_code(&form.finding.code)?,
        institution_uscc: form.finding.institution.clone(),
        subject: form.finding.subject.clone(),
        period: form.finding.period.clone(),
        expected_version: form.version,
        to: to as i32,
        // Each posted form is one transition; a second post of the same page carries a version
        // that is no longer stored and is refused (ABORTED).
        idempotency_key: format!("console-{}", uuid::Uuid::now_v7()),
        note: form.note.clone(),
    };
    let after = visit
        .call(TRANSITION_ALERT, request, |hub, request| async move {
            hub.transition_alert(request).await
        })
        .await?;
    let target = format!(
        "/finding?{}",
        FindingQuery::of(&after).query_string(visit.lang)
    );
    Ok(Redirect::to(&target).into_response())
}
