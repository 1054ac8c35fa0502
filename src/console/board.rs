//! 一事一账: the ledger board. Every ledger item of the viewer's jurisdiction (ListItems, page
//! after page) counted by department and state, listed with due dates and overdue marks, filtered,
//! sorted, paged and exported as CSV; an item's page with its step timeline (GetItem); the
//! 定期对账 report of a period (Report); an application with the gate's answer (GetApplication)
//! looked up by id. A case's page is 督办's (`matters`).

use std::collections::BTreeMap;

use axum::response::Response;
use serde::Deserialize;
use tonic::Status;

use super::lists::{csv_response, every_item};
use super::views::{self, Chrome, DepartmentRow, Nav};
use super::{Lang, Visit};
use crate::proto;
use crate::proto::application_service_server::ApplicationService as _;
use crate::proto::ledger_service_server::LedgerService as _;

/// See [`super::pages::LIST_FINDINGS`].
pub const GET_ITEM: &str = "/quotahub.v1.LedgerService/GetItem";
/// See [`super::pages::LIST_FINDINGS`].
pub const LEDGER_REPORT: &str = "/quotahub.v1.LedgerService/Report";
/// See [`super::pages::LIST_FINDINGS`].
pub const GET_APPLICATION: &str = "/quotahub.v1.ApplicationService/GetApplication";

/// Items per page of the board.
const PAGE_SIZE: usize = 50;

/// The board's filters, order and page, as its links carry them.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct BoardQuery {
    /// A department's USCC.
    pub department: String,
    /// `OPEN`, `RECTIFYING`, `SUBMITTED` or `CLOSED`.
    pub state: String,
    /// `1`: overdue items only.
    pub overdue: String,
    /// `due` (default), `department`, `state` or `escalation`; `-` before it for descending.
    pub sort: String,
    /// Which page (from 1).
    pub page: usize,
    /// `en` for English.
    pub lang: Option<String>,
}

impl BoardQuery {
    /// The query string (without `lang`), with another order and page.
    pub fn query_string(&self, sort: &str, page: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("department", self.department.as_str()),
            ("state", self.state.as_str()),
            ("overdue", self.overdue.as_str()),
            ("sort", sort),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        if page > 1 {
            query.append_pair("page", &page.to_string());
        }
        query.finish()
    }

    /// For the audit trail.
    pub fn summary(&self) -> String {
        self.query_string(&self.sort, self.page)
    }

    fn overdue_only(&self) -> bool {
        self.overdue == "1"
    }
}

/// A ledger item as a row.
pub struct ItemRow {
    pub href: String,
    pub title: String,
    pub department: String,
    pub department_href: String,
    pub state: &'static str,
    pub due_on: String,
    pub overdue: bool,
    pub escalation_level: u32,
    pub finding: String,
}

impl ItemRow {
    /// An item as the viewer reads it.
    pub fn of(lang: Lang, chrome: &Chrome, item: &proto::LedgerItem) -> ItemRow {
        ItemRow {
            href: chrome.href(&format!("/ledger/item?{}", id_query(&item.id))),
            title: item.title.clone(),
            department: item.department_uscc.clone(),
            department_href: chrome.href(&format!(
                "/institution?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("uscc", &item.department_uscc)
                    .finish()
            )),
            state: views::item_state_label(lang, item.state),
            due_on: item.due_on.clone(),
            overdue: item.overdue,
            escalation_level: item.escalation_level,
            finding: item
                .finding
                .as_ref()
                .map(|finding| views::rule_label(lang, finding.code))
                .unwrap_or_default(),
        }
    }
}

pub(super) fn id_query(id: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("id", id)
        .finish()
}

fn item_state_name(state: i32) -> &'static str {
    proto::ItemState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("")
        .trim_start_matches("ITEM_STATE_")
}

/// The items the board's filters select, in its order.
async fn selected(visit: &mut Visit, query: &BoardQuery) -> Result<Vec<proto::LedgerItem>, Status> {
    let mut items = every_item(visit, &query.department, query.overdue_only()).await?;
    if !query.state.is_empty() {
        items.retain(|item| item_state_name(item.state) == query.state);
    }
    let (descending, key) = match query.sort.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, query.sort.as_str()),
    };
    items.sort_by(|a, b| {
        let order = match key {
            "department" => a.department_uscc.cmp(&b.department_uscc),
            "state" => a.state.cmp(&b.state),
            "escalation" => a.escalation_level.cmp(&b.escalation_level),
            _ => a.due_on.cmp(&b.due_on),
        }
        .then_with(|| a.id.cmp(&b.id));
        if descending { order.reverse() } else { order }
    });
    Ok(items)
}

/// The board.
#[derive(askama::Template)]
#[template(path = "console/ledger.html")]
pub struct Board {
    pub c: Chrome,
    pub department: String,
    pub states: Vec<views::SelectOption>,
    pub overdue_only: bool,
    pub sort: String,
    /// Departments: USCC, link, counts per state (open, rectifying, submitted, closed), overdue.
    pub departments: Vec<DepartmentRow>,
    pub rows: Vec<ItemRow>,
    pub total: usize,
    pub headers: Vec<views::SortHeader>,
    pub pages: views::Pager,
    pub csv: String,
}

/// Counts of items by department and state, and overdue ones, most overdue first.
pub fn by_department(chrome: &Chrome, items: &[proto::LedgerItem]) -> Vec<DepartmentRow> {
    let mut departments: BTreeMap<&str, ([usize; 4], usize)> = BTreeMap::new();
    for item in items {
        let entry = departments
            .entry(item.department_uscc.as_str())
            .or_default();
        if let Some(slot) = usize::try_from(item.state - 1).ok().filter(|s| *s < 4) {
            entry.0[slot] += 1;
        }
        if item.overdue {
            entry.1 += 1;
        }
    }
    let mut rows: Vec<DepartmentRow> = departments
        .into_iter()
        .map(|(uscc, (counts, overdue))| DepartmentRow {
            uscc: uscc.to_owned(),
            href: chrome.href(&format!(
                "/ledger?{}",
                BoardQuery {
                    department: uscc.to_owned(),
                    ..BoardQuery::default()
                }
                .query_string("", 1)
            )),
            counts,
            overdue,
        })
        .collect();
    rows.sort_by(|a, b| b.overdue.cmp(&a.overdue).then_with(|| a.uscc.cmp(&b.uscc)));
    rows
}

/// 一事一账: the board of the viewer's jurisdiction.
pub async fn board(visit: &mut Visit, query: &BoardQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    let items = selected(visit, query).await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Ledger,
        "/ledger",
        &query.query_string(&query.sort, query.page),
    );
    let page = query.page.max(1);
    let headers = [
        ("department", "责任单位", "Department"),
        ("state", "状态", "State"),
        ("due", "整改期限", "Due"),
        ("escalation", "升级", "Escalation"),
    ]
    .into_iter()
    .map(|(key, zh, en)| {
        views::SortHeader::new(&chrome, key, chrome.t(zh, en), &query.sort, |sort| {
            format!("/ledger?{}", query.query_string(sort, 1))
        })
    })
    .collect();
    let board = Board {
        department: query.department.clone(),
        states: views::item_state_options(lang, &query.state),
        overdue_only: query.overdue_only(),
        sort: query.sort.clone(),
        departments: by_department(&chrome, &items),
        rows: items
            .iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|item| ItemRow::of(lang, &chrome, item))
            .collect(),
        total: items.len(),
        headers,
        pages: views::Pager::new(&chrome, page, items.len().div_ceil(PAGE_SIZE), |page| {
            format!("/ledger?{}", query.query_string(&query.sort, page))
        }),
        csv: chrome.href(&format!(
            "/ledger.csv?{}",
            query.query_string(&query.sort, 1)
        )),
        c: chrome,
    };
    views::html(&board)
}

/// The board's items as CSV, every one the filters select.
pub async fn board_csv(visit: &mut Visit, query: &BoardQuery) -> Result<Response, Status> {
    visit.viewer().await?;
    let lang = visit.lang;
    let items = selected(visit, query).await?;
    let mut out = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
    let internal = |error: csv::Error| Status::internal(error.to_string());
    out.write_record([
        "id",
        "jurisdiction",
        "department_uscc",
        "title",
        "state",
        "state_name",
        "due_on",
        "overdue",
        "escalation_level",
        "rule",
        "version",
    ])
    .map_err(internal)?;
    for item in &items {
        out.write_record([
            item.id.as_str(),
            &item.jurisdiction,
            &item.department_uscc,
            &item.title,
            item_state_name(item.state),
            views::item_state_label(lang, item.state),
            &item.due_on,
            if item.overdue { "true" } else { "false" },
            &item.escalation_level.to_string(),
            item.finding
                .as_ref()
                .map_or("", |finding| views::code_name(finding.code)),
            &item.version.to_string(),
        ])
        .map_err(internal)?;
    }
    csv_response(out, "ledger.csv")
}

/// A matter named by id.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct IdQuery {
    /// Its id.
    pub id: String,
    /// `en` for English.
    pub lang: Option<String>,
}

/// A step of a timeline.
pub struct StepRow {
    pub at: String,
    pub agency: String,
    pub from: String,
    pub to: String,
    pub text: String,
}

pub(super) fn steps(history: &[proto::Step]) -> Vec<StepRow> {
    history
        .iter()
        .map(|step| StepRow {
            at: views::timestamp(step.at.as_ref()),
            agency: step.agency_id.clone(),
            from: step.from_state.clone(),
            to: step.to_state.clone(),
            text: step.text.clone(),
        })
        .collect()
}

/// A ledger item's page, or a case's: facts and the step timeline.
#[derive(askama::Template)]
#[template(path = "console/matter.html")]
pub struct MatterPage {
    pub c: Chrome,
    pub heading: String,
    pub facts: Vec<(&'static str, String)>,
    pub finding_href: Option<String>,
    /// What the link of `finding_href` says.
    pub link_label: &'static str,
    pub steps: Vec<StepRow>,
}

/// A ledger item and its steps.
pub async fn item(visit: &mut Visit, query: &IdQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    let item = visit
        .call(
            GET_ITEM,
            proto::IdRequest {
                id: query.id.trim().to_owned(),
            },
            |hub, request| async move { hub.get_item(request).await },
        )
        .await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Ledger,
        "/ledger/item",
        &id_query(&item.id),
    );
    let finding_href = item.finding.as_ref().map(|finding| {
        chrome.href(&format!(
            "/finding?{}",
            views::FindingQuery {
                code: views::code_name(finding.code).to_owned(),
                institution: finding.institution_uscc.clone(),
                subject: finding.subject.clone(),
                period: finding.period.clone(),
                ..views::FindingQuery::default()
            }
            .query_string(Lang::Zh)
        ))
    });
    let mut page = MatterPage {
        heading: item.title.clone(),
        facts: vec![
            (chrome.t("编号", "Id"), item.id.clone()),
            (chrome.t("区划", "Division"), item.jurisdiction.clone()),
            (
                chrome.t("责任单位", "Department"),
                item.department_uscc.clone(),
            ),
            (
                chrome.t("状态", "State"),
                views::item_state_label(lang, item.state).to_owned(),
            ),
            (chrome.t("整改期限", "Due"), item.due_on.clone()),
            (
                chrome.t("是否逾期", "Overdue"),
                if item.overdue {
                    chrome.t("已逾期", "overdue")
                } else {
                    chrome.t("未逾期", "no")
                }
                .to_owned(),
            ),
            (
                chrome.t("升级层级", "Escalation level"),
                format!("{} / 3", item.escalation_level),
            ),
            (chrome.t("版本", "Version"), item.version.to_string()),
        ],
        finding_href,
        link_label: chrome.t("来源问题", "The finding it follows"),
        steps: steps(&item.history),
        c: chrome,
    };
    page.facts
        .extend(chain_facts(&page.c, &item.levels, &item.waiting_on));
    views::html(&page)
}

/// The facts of an assigned matter (交办), an item's or a case's: its chain top first, each
/// level marked once it confirmed, and the level it waits on. None for a matter never assigned.
pub(super) fn chain_facts(
    c: &Chrome,
    levels: &[proto::ItemLevel],
    waiting_on: &str,
) -> Vec<(&'static str, String)> {
    if levels.is_empty() {
        return Vec::new();
    }
    let chain = levels
        .iter()
        .map(|level| {
            if level.confirmed_by.is_empty() {
                level.jurisdiction.clone()
            } else {
                format!("{} ✓", level.jurisdiction)
            }
        })
        .collect::<Vec<_>>()
        .join(" → ");
    let mut facts = vec![(c.t("交办链", "Assigned down"), chain)];
    if !waiting_on.is_empty() {
        facts.push((c.t("等待确认", "Waits on"), waiting_on.to_owned()));
    }
    facts
}

/// An application and the gate's answer.
pub async fn application(visit: &mut Visit, query: &IdQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let found = visit
        .call(
            GET_APPLICATION,
            proto::IdRequest {
                id: query.id.trim().to_owned(),
            },
            |hub, request| async move { hub.get_application(request).await },
        )
        .await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Ledger,
        "/application",
        &id_query(&found.id),
    );
    let page = MatterPage {
        heading: format!(
            "{} {}",
            chrome.t("机构编制事项申请", "Application"),
            found.id
        ),
        facts: vec![
            (
                chrome.t("申请单位", "Department"),
                found.department_uscc.clone(),
            ),
            (
                chrome.t("事项", "Kind"),
                views::enum_name(
                    proto::ApplicationKind::try_from(found.kind)
                        .ok()
                        .map(|k| k.as_str_name()),
                    "APPLICATION_KIND_",
                ),
            ),
            (
                chrome.t("状态", "State"),
                views::enum_name(
                    proto::ApplicationState::try_from(found.state)
                        .ok()
                        .map(|s| s.as_str_name()),
                    "APPLICATION_STATE_",
                ),
            ),
            (chrome.t("理由", "Reason"), found.reason.clone()),
            (chrome.t("申请人", "Applied by"), found.applied_by.clone()),
            (
                chrome.t("逾期事项闸门：例外理由", "Gate: override reason"),
                found.override_reason.clone(),
            ),
            (
                chrome.t("例外批准人", "Override by"),
                found.override_by.clone(),
            ),
            (
                chrome.t("审批意见", "Decision"),
                found.decision_note.clone(),
            ),
            (chrome.t("审批人", "Decided by"), found.decided_by.clone()),
            (
                chrome.t("登记记录", "Registry record"),
                found.registry_record.clone(),
            ),
        ],
        finding_href: None,
        link_label: "",
        steps: Vec::new(),
        c: chrome,
    };
    views::html(&page)
}

/// The 定期对账 report's period.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ReportQuery {
    /// First day (`2024-01-01`); the beginning when empty.
    pub from: String,
    /// Last day; today when empty.
    pub to: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl ReportQuery {
    /// The query string (without `lang`).
    pub fn query_string(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [("from", &self.from), ("to", &self.to)] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }
}

/// The report.
#[derive(askama::Template)]
#[template(path = "console/ledger_report.html")]
pub struct ReportPage {
    pub c: Chrome,
    pub from: String,
    pub to: String,
    pub rows: Vec<proto::LedgerReportRow>,
    pub csv: String,
}

async fn ledger_report(
    visit: &mut Visit,
    query: &ReportQuery,
) -> Result<proto::LedgerReport, Status> {
    visit
        .call(
            LEDGER_REPORT,
            proto::LedgerReportRequest {
                jurisdiction: String::new(),
                from: query.from.trim().to_owned(),
                to: query.to.trim().to_owned(),
            },
            |hub, request| async move { hub.report(request).await },
        )
        .await
}

/// 定期对账: items opened, closed and overdue per department in a period.
pub async fn report(visit: &mut Visit, query: &ReportQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let report = ledger_report(visit, query).await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Ledger,
        "/ledger/report",
        &query.query_string(),
    );
    let page = ReportPage {
        from: query.from.clone(),
        to: query.to.clone(),
        rows: report.rows,
        csv: chrome.href(&format!("/ledger/report.csv?{}", query.query_string())),
        c: chrome,
    };
    views::html(&page)
}

/// The report as CSV.
pub async fn report_csv(visit: &mut Visit, query: &ReportQuery) -> Result<Response, Status> {
    visit.viewer().await?;
    let report = ledger_report(visit, query).await?;
    let mut out = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
    let internal = |error: csv::Error| Status::internal(error.to_string());
    out.write_record([
        "jurisdiction",
        "department_uscc",
        "opened",
        "closed",
        "overdue",
        "oldest_open_on",
    ])
    .map_err(internal)?;
    for row in &report.rows {
        out.write_record([
            &row.jurisdiction,
            &row.department_uscc,
            &row.opened.to_string(),
            &row.closed.to_string(),
            &row.overdue.to_string(),
            &row.oldest_open_on,
        ])
        .map_err(internal)?;
    }
    csv_response(out, "ledger-report.csv")
}
