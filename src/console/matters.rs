//! 督办: the follow-through besides the ledger. Cases from public reports (ListCases, one through
//! GetCase with its chain of levels and the moves the viewer may make on it: MoveCase,
//! AssignCase, ConfirmCaseLevel, SendBackCase), transfers and joint inspections (ListTransfers,
//! one through GetTransfer) and staffing applications with the gate's answer (ListApplications,
//! and ListItems for the departments' overdue items now).
//! Each list reads every page its filters select, then sorts, pages and exports it as CSV in the
//! console, as the ledger board does; the filters (state, kind, department, division, dates) are
//! the RPCs' own.

use std::collections::BTreeMap;

use serde::Deserialize;
use tonic::Status;

use super::board;
use super::lists::{BULK_PAGE_SIZE, MAX_BULK_PAGES, csv_response, every_item};
use super::views::{self, Chrome, FindingQuery, Nav, SelectOption, SortHeader};
use super::{Lang, Visit};
use crate::api::convert::Wire as _;
use crate::domain::assignment::{self, Level};
use crate::domain::ledger::{CaseState, case_move_allowed};
use crate::domain::{Agency, Jurisdiction};
use crate::proto;
use crate::proto::application_service_server::ApplicationService as _;
use crate::proto::case_service_server::CaseService as _;
use axum::response::{IntoResponse as _, Redirect, Response};

/// See [`super::pages::LIST_FINDINGS`].
pub const LIST_CASES: &str = "/quotahub.v1.CaseService/ListCases";
/// See [`super::pages::LIST_FINDINGS`].
pub const GET_CASE: &str = "/quotahub.v1.CaseService/GetCase";
/// See [`super::pages::LIST_FINDINGS`].
pub const MOVE_CASE: &str = "/quotahub.v1.CaseService/MoveCase";
/// See [`super::pages::LIST_FINDINGS`].
pub const ASSIGN_CASE: &str = "/quotahub.v1.CaseService/AssignCase";
/// See [`super::pages::LIST_FINDINGS`].
pub const CONFIRM_CASE_LEVEL: &str = "/quotahub.v1.CaseService/ConfirmCaseLevel";
/// See [`super::pages::LIST_FINDINGS`].
pub const SEND_BACK_CASE: &str = "/quotahub.v1.CaseService/SendBackCase";
/// See [`super::pages::LIST_FINDINGS`].
pub const LIST_TRANSFERS: &str = "/quotahub.v1.CaseService/ListTransfers";
/// See [`super::pages::LIST_FINDINGS`].
pub const GET_TRANSFER: &str = "/quotahub.v1.CaseService/GetTransfer";
/// See [`super::pages::LIST_FINDINGS`].
pub const LIST_APPLICATIONS: &str = "/quotahub.v1.ApplicationService/ListApplications";

/// Rows per page of a list.
const PAGE_SIZE: usize = 50;

/// A list's filters, order and page, as its links carry them. Each list reads the fields it has.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct MatterQuery {
    /// A division below the viewer's (its subtree).
    pub division: String,
    /// A state's code name (`RECEIVED`, `PENDING`).
    pub state: String,
    /// A kind's code name (`JOINT_INSPECTION`, `CHANGE_QUOTA`).
    pub kind: String,
    /// A department's (or the institution concerned's) USCC.
    pub department: String,
    /// First day (`2024-06-01`).
    pub from: String,
    /// Last day.
    pub to: String,
    /// `1`: only overdue cases, or transfers not yet acknowledged by all.
    pub only: String,
    /// A column's key; `-` before it for descending.
    pub sort: String,
    /// Which page (from 1).
    pub page: usize,
    /// `en` for English.
    pub lang: Option<String>,
}

impl MatterQuery {
    /// The query string (without `lang`), with another order and page.
    pub fn query_string(&self, sort: &str, page: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("division", self.division.as_str()),
            ("state", self.state.as_str()),
            ("kind", self.kind.as_str()),
            ("department", self.department.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("only", self.only.as_str()),
            ("sort", sort),
        ] {
            if !value.trim().is_empty() {
                query.append_pair(name, value.trim());
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

    fn only(&self) -> bool {
        self.only == "1"
    }
}

/// A cell of a list: its text, and a link when it names something with a page.
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    /// `mono` for codes and ids, `num` for numbers, or empty.
    pub class: &'static str,
}

impl Cell {
    fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            href: None,
            class: "",
        }
    }

    fn link(text: impl Into<String>, href: String, class: &'static str) -> Cell {
        Cell {
            text: text.into(),
            href: Some(href),
            class,
        }
    }

    fn mono(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            href: None,
            class: "mono",
        }
    }
}

/// A row of a list, with what it sorts by and what its CSV line says.
pub struct Row {
    pub cells: Vec<Cell>,
    pub overdue: bool,
    /// The value of each sortable column, by key.
    sort: BTreeMap<&'static str, String>,
    csv: Vec<String>,
}

/// A column's heading: sortable (a link) or not.
pub struct Column {
    pub label: String,
    pub sort: Option<SortHeader>,
}

/// A filter of a list's form.
pub struct Filter {
    pub name: &'static str,
    pub label: &'static str,
    /// `select`, `text`, `date` or `check`.
    pub input: &'static str,
    pub value: String,
    pub options: Vec<SelectOption>,
}

/// One of the lists.
#[derive(askama::Template)]
#[template(path = "console/matters.html")]
pub struct ListPage {
    pub c: Chrome,
    pub title: &'static str,
    pub path: &'static str,
    pub table_id: &'static str,
    pub tabs: Vec<(String, &'static str, bool)>,
    pub filters: Vec<Filter>,
    pub sort: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub total: usize,
    pub pages: views::Pager,
    pub csv: String,
}

/// What the three lists differ in.
struct List {
    path: &'static str,
    title: (&'static str, &'static str),
    table_id: &'static str,
    /// Column headings (zh, en) with their sort key, if sortable.
    columns: Vec<(&'static str, &'static str, Option<&'static str>)>,
    /// The default order's key.
    default_sort: &'static str,
    csv_header: Vec<&'static str>,
    csv_name: &'static str,
}

/// The lists the viewer may read, as tabs.
fn tabs(visit: &Visit, chrome: &Chrome, current: &str) -> Vec<(String, &'static str, bool)> {
    [
        ("/cases", LIST_CASES, chrome.t("举报案件", "Cases")),
        (
            "/transfers",
            LIST_TRANSFERS,
            chrome.t("移送与联合督查", "Transfers"),
        ),
        (
            "/applications",
            LIST_APPLICATIONS,
            chrome.t("编制事项申请", "Applications"),
        ),
    ]
    .into_iter()
    .filter(|(_, method, _)| visit.may_call(method))
    .map(|(path, _, label)| (chrome.href(path), label, path == current))
    .collect()
}

fn options(
    lang: Lang,
    selected: &str,
    every: (&str, &str),
    values: &[(&'static str, &str, &str)],
) -> Vec<SelectOption> {
    let mut options = vec![SelectOption {
        value: "",
        label: if lang == Lang::En { every.1 } else { every.0 }.to_owned(),
        selected: selected.is_empty(),
    }];
    options.extend(values.iter().map(|(value, zh, en)| SelectOption {
        value,
        label: if lang == Lang::En { en } else { zh }.to_string(),
        selected: selected == *value,
    }));
    options
}

fn text_filter(
    name: &'static str,
    label: &'static str,
    value: &str,
    input: &'static str,
) -> Filter {
    Filter {
        name,
        label,
        input,
        value: value.to_owned(),
        options: Vec::new(),
    }
}

/// The filters every list has: division and the days.
fn common_filters(
    chrome: &Chrome,
    query: &MatterQuery,
    days: (&'static str, &'static str),
) -> Vec<Filter> {
    vec![
        text_filter(
            "division",
            chrome.t("区划代码", "Division code"),
            &query.division,
            "text",
        ),
        text_filter("from", days.0, &query.from, "date"),
        text_filter("to", days.1, &query.to, "date"),
    ]
}

fn select_filter(name: &'static str, label: &'static str, options: Vec<SelectOption>) -> Filter {
    Filter {
        name,
        label,
        input: "select",
        value: String::new(),
        options,
    }
}

/// An enum filter's wire value from its code name, 0 (any) when empty.
fn wire(name: &str, prefix: &str, from: fn(&str) -> Option<i32>) -> Result<i32, Status> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(0);
    }
    from(&format!("{prefix}{name}"))
        .ok_or_else(|| Status::invalid_argument(format!("unknown value {name}")))
}

fn code_name(name: Option<&'static str>, prefix: &str) -> &'static str {
    name.map_or("", |name| name.trim_start_matches(prefix))
}

/// Reads every page of a list RPC (at most [`MAX_BULK_PAGES`]) into `$rows`: `$call` makes one
/// call with the page token it is given and answers the page's rows and the next token. (A macro
/// rather than a function over an async closure, whose future the router could not prove `Send`.)
macro_rules! every_page {
    (|$token:ident| $call:expr) => {{
        let mut all = Vec::new();
        let mut $token = String::new();
        let mut complete = false;
        for _ in 0..MAX_BULK_PAGES {
            let (rows, next): (Vec<_>, String) = $call;
            all.extend(rows);
            if next.is_empty() {
                complete = true;
                break;
            }
            $token = next;
        }
        if !complete {
            return Err(Status::resource_exhausted(
                "too many rows for one page; narrow the filters",
            ));
        }
        all
    }};
}

fn sorted(mut rows: Vec<Row>, sort: &str, default: &str) -> Vec<Row> {
    let (descending, key) = match sort.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, if sort.is_empty() { default } else { sort }),
    };
    // A stable sort: rows of one value keep the RPC's order (the order they were made).
    rows.sort_by(|a, b| {
        let order = a.sort.get(key).cmp(&b.sort.get(key));
        if descending { order.reverse() } else { order }
    });
    rows
}

/// Renders a list page, or its CSV.
fn render(
    visit: &Visit,
    chrome: Chrome,
    list: &List,
    query: &MatterQuery,
    filters: Vec<Filter>,
    rows: Vec<Row>,
    csv: bool,
) -> Result<Response, Status> {
    let rows = sorted(rows, &query.sort, list.default_sort);
    if csv {
        let mut out = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
        let internal = |error: csv::Error| Status::internal(error.to_string());
        out.write_record(&list.csv_header).map_err(internal)?;
        for row in &rows {
            out.write_record(&row.csv).map_err(internal)?;
        }
        return csv_response(out, list.csv_name);
    }
    let page = query.page.max(1);
    let link =
        |sort: &str, page: usize| format!("{}?{}", list.path, query.query_string(sort, page));
    let columns = list
        .columns
        .iter()
        .map(|(zh, en, key)| Column {
            label: chrome.t(zh, en).to_owned(),
            sort: key.map(|key| {
                SortHeader::new(&chrome, key, chrome.t(zh, en), &query.sort, |sort| {
                    link(sort, 1)
                })
            }),
        })
        .collect();
    let total = rows.len();
    let view = ListPage {
        title: chrome.t(list.title.0, list.title.1),
        path: list.path,
        table_id: list.table_id,
        tabs: tabs(visit, &chrome, list.path),
        filters,
        sort: query.sort.clone(),
        columns,
        rows: rows
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect(),
        total,
        pages: views::Pager::new(&chrome, page, total.div_ceil(PAGE_SIZE), |page| {
            link(&query.sort, page)
        }),
        csv: chrome.href(&format!(
            "{}.csv?{}",
            list.path,
            query.query_string(&query.sort, 1)
        )),
        c: chrome,
    };
    views::html(&view)
}

/// The gate's answer to an application, in words.
fn gate_answer(chrome: &Chrome, application: &proto::Application) -> String {
    if application.override_reason.is_empty() {
        chrome
            .t("无逾期事项，受理", "passed: no overdue items")
            .to_owned()
    } else {
        format!(
            "{}{}（{}）",
            chrome.t("有逾期事项，例外受理：", "overridden: "),
            application.override_reason,
            application.override_by
        )
    }
}

/// An application as a line of another page (an institution's).
pub struct ApplicationLine {
    pub href: String,
    pub applied: String,
    pub reason: String,
    pub kind: &'static str,
    pub state: &'static str,
    pub gate: String,
}

impl ApplicationLine {
    pub fn of(lang: Lang, chrome: &Chrome, application: &proto::Application) -> ApplicationLine {
        let kind = code_name(
            proto::ApplicationKind::try_from(application.kind)
                .ok()
                .map(|k| k.as_str_name()),
            "APPLICATION_KIND_",
        );
        let state = code_name(
            proto::ApplicationState::try_from(application.state)
                .ok()
                .map(|s| s.as_str_name()),
            "APPLICATION_STATE_",
        );
        ApplicationLine {
            href: id_href(chrome, "/application", &application.id),
            applied: views::timestamp(application.applied_at.as_ref()),
            reason: application.reason.chars().take(40).collect(),
            kind: label(lang, &APPLICATION_KINDS, kind),
            state: label(lang, &APPLICATION_STATES, state),
            gate: gate_answer(chrome, application),
        }
    }
}

fn id_href(chrome: &Chrome, path: &str, id: &str) -> String {
    chrome.href(&format!(
        "{path}?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("id", id)
            .finish()
    ))
}

fn institution_href(chrome: &Chrome, uscc: &str) -> String {
    chrome.href(&format!(
        "/institution?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("uscc", uscc)
            .finish()
    ))
}

/// `2024-06-01` of a timestamp (China Standard Time), or empty.
fn day(at: Option<&prost_types::Timestamp>) -> String {
    views::timestamp(at)
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

fn yes_no(chrome: &Chrome, yes: bool) -> String {
    if yes {
        chrome.t("是", "yes")
    } else {
        chrome.t("否", "no")
    }
    .to_owned()
}

const CASE_STATES: [(&str, &str, &str); 3] = [
    ("RECEIVED", "已受理", "received"),
    ("INVESTIGATING", "调查中", "investigating"),
    ("CLOSED", "已办结", "closed"),
];

const CHANNELS: [(&str, &str, &str); 3] = [
    ("HOTLINE", "12310 电话", "12310 hotline"),
    ("MAILBOX", "网上信箱", "mailbox"),
    ("LETTERS_AND_VISITS", "来信来访", "letters and visits"),
];

const TRANSFER_KINDS: [(&str, &str, &str); 2] = [
    ("TRANSFER", "案件移送", "transfer"),
    ("JOINT_INSPECTION", "联合督查", "joint inspection"),
];

const APPLICATION_STATES: [(&str, &str, &str); 3] = [
    ("PENDING", "待审批", "pending"),
    ("APPROVED", "已批准", "approved"),
    ("REJECTED", "未批准", "rejected"),
];

const APPLICATION_KINDS: [(&str, &str, &str); 7] = [
    ("SET_UP", "机构设立", "set up"),
    ("ABOLISH", "机构撤销", "abolish"),
    ("MERGE", "机构合并", "merge"),
    ("CHANGE_GRADE", "规格调整", "change grade"),
    ("CHANGE_QUOTA", "编制调整", "change quota"),
    ("CHANGE_LEADER_POSTS", "领导职数调整", "change leader posts"),
    ("HIRING_APPROVAL", "用编审批", "hiring approval"),
];

/// The label of a code name from one of the tables above.
fn label(lang: Lang, table: &[(&str, &'static str, &'static str)], name: &str) -> &'static str {
    table
        .iter()
        .find(|(value, _, _)| *value == name)
        .map_or("", |(_, zh, en)| if lang == Lang::En { en } else { zh })
}

fn agency_kind_label(lang: Lang, raw: i32) -> String {
    let name = code_name(
        proto::AgencyKind::try_from(raw)
            .ok()
            .map(|k| k.as_str_name()),
        "AGENCY_KIND_",
    );
    crate::domain::AgencyKind::ALL
        .iter()
        .find(|kind| kind.slug().replace('-', "_").eq_ignore_ascii_case(name))
        .map_or_else(
            || name.to_owned(),
            |kind| views::kind_label(lang, *kind).to_owned(),
        )
}

fn the_division(query: &MatterQuery) -> String {
    query.division.trim().to_owned()
}

// ---- cases ----

fn cases_list() -> List {
    List {
        path: "/cases",
        title: ("举报案件", "Cases"),
        table_id: "cases-table",
        columns: vec![
            ("案件", "Case", Some("opened")),
            ("区划", "Division", Some("division")),
            ("来源", "Channel", None),
            ("涉及单位", "Institution", Some("institution")),
            ("承办", "Owner", None),
            ("状态", "State", Some("state")),
            ("办理期限", "Due", Some("due")),
            ("升级", "Escalation", Some("escalation")),
        ],
        default_sort: "opened",
        csv_header: vec![
            "id",
            "jurisdiction",
            "channel",
            "institution_uscc",
            "owner",
            "state",
            "state_name",
            "opened_on",
            "due_on",
            "overdue",
            "escalation_level",
            "text",
        ],
        csv_name: "cases.csv",
    }
}

async fn case_rows(visit: &mut Visit, query: &MatterQuery) -> Result<Vec<proto::Case>, Status> {
    let request = proto::ListCasesRequest {
        jurisdiction: the_division(query),
        state: wire(&query.state, "CASE_STATE_", |n| {
            proto::CaseState::from_str_name(n).map(|s| s as i32)
        })?,
        institution_uscc: query.department.trim().to_owned(),
        overdue_only: query.only(),
        opened_from: query.from.trim().to_owned(),
        opened_to: query.to.trim().to_owned(),
        page_size: BULK_PAGE_SIZE,
        page_token: String::new(),
    };
    let cases = every_page!(|token| {
        let page = visit
            .call(
                LIST_CASES,
                proto::ListCasesRequest {
                    page_token: std::mem::take(&mut token),
                    ..request.clone()
                },
                |hub, request| async move { hub.list_cases(request).await },
            )
            .await?;
        (page.cases, page.next_page_token)
    });
    Ok(cases)
}

/// 举报案件: the cases of the viewer's jurisdiction, or their CSV.
pub async fn cases(visit: &mut Visit, query: &MatterQuery, csv: bool) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    let found = case_rows(visit, query).await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Matters,
        "/cases",
        &query.query_string(&query.sort, query.page),
    );
    let rows = found
        .iter()
        .map(|case| {
            let state = code_name(
                proto::CaseState::try_from(case.state)
                    .ok()
                    .map(|s| s.as_str_name()),
                "CASE_STATE_",
            );
            let channel = code_name(
                proto::ReportChannel::try_from(case.channel)
                    .ok()
                    .map(|c| c.as_str_name()),
                "REPORT_CHANNEL_",
            );
            let opened = day(case.opened_at.as_ref());
            Row {
                cells: vec![
                    Cell::link(
                        format!(
                            "{opened} {}",
                            case.text.chars().take(24).collect::<String>()
                        ),
                        id_href(&chrome, "/case", &case.id),
                        "",
                    ),
                    Cell::mono(case.jurisdiction.clone()),
                    Cell::text(label(lang, &CHANNELS, channel)),
                    if case.institution_uscc.is_empty() {
                        Cell::text("")
                    } else {
                        Cell::link(
                            case.institution_uscc.clone(),
                            institution_href(&chrome, &case.institution_uscc),
                            "mono",
                        )
                    },
                    Cell::text(case.owner.clone()),
                    Cell::text(label(lang, &CASE_STATES, state)),
                    Cell::text(if case.overdue {
                        format!("{} {}", case.due_on, chrome.t("已逾期", "overdue"))
                    } else {
                        case.due_on.clone()
                    }),
                    Cell {
                        text: case.escalation_level.to_string(),
                        href: None,
                        class: "num",
                    },
                ],
                overdue: case.overdue,
                sort: BTreeMap::from([
                    ("opened", format!("{opened} {}", case.id)),
                    ("division", case.jurisdiction.clone()),
                    ("institution", case.institution_uscc.clone()),
                    ("state", format!("{:02}", case.state)),
                    ("due", case.due_on.clone()),
                    ("escalation", format!("{:02}", case.escalation_level)),
                ]),
                csv: vec![
                    case.id.clone(),
                    case.jurisdiction.clone(),
                    channel.to_owned(),
                    case.institution_uscc.clone(),
                    case.owner.clone(),
                    state.to_owned(),
                    label(lang, &CASE_STATES, state).to_owned(),
                    opened,
                    case.due_on.clone(),
                    case.overdue.to_string(),
                    case.escalation_level.to_string(),
                    case.text.clone(),
                ],
            }
        })
        .collect();
    let mut filters = vec![
        select_filter(
            "state",
            chrome.t("状态", "State"),
            options(
                lang,
                &query.state,
                ("全部状态", "every state"),
                &CASE_STATES,
            ),
        ),
        text_filter(
            "department",
            chrome.t("涉及单位", "Institution (USCC)"),
            &query.department,
            "text",
        ),
    ];
    filters.extend(common_filters(
        &chrome,
        query,
        (
            chrome.t("受理日期自", "Taken in from"),
            chrome.t("至", "to"),
        ),
    ));
    filters.push(Filter {
        name: "only",
        label: chrome.t("仅逾期", "Overdue only"),
        input: "check",
        value: query.only.clone(),
        options: Vec::new(),
    });
    render(visit, chrome, &cases_list(), query, filters, rows, csv)
}

// ---- transfers ----

fn transfers_list() -> List {
    List {
        path: "/transfers",
        title: ("移送与联合督查", "Transfers and joint inspections"),
        table_id: "transfers-table",
        columns: vec![
            ("移送", "Transfer", Some("sent")),
            ("类型", "Kind", Some("kind")),
            ("事项", "Matter", Some("matter")),
            ("区划", "Division", Some("division")),
            ("发送方", "Sent by", None),
            ("签收", "Receipts", Some("waiting")),
        ],
        default_sort: "sent",
        csv_header: vec![
            "id",
            "kind",
            "matter",
            "matter_id",
            "jurisdiction",
            "sent_by",
            "sent_at",
            "receipts",
            "text",
        ],
        csv_name: "transfers.csv",
    }
}

/// The page of the matter a transfer is about.
fn matter_href(chrome: &Chrome, matter: i32, id: &str) -> Option<String> {
    match proto::MatterKind::try_from(matter).ok()? {
        proto::MatterKind::LedgerItem => Some(id_href(chrome, "/ledger/item", id)),
        proto::MatterKind::Case => Some(id_href(chrome, "/case", id)),
        proto::MatterKind::Alert => {
            let mut parts = id.splitn(4, '|');
            let key = FindingQuery {
                code: parts.next()?.to_owned(),
                institution: parts.next()?.to_owned(),
                subject: parts.next()?.to_owned(),
                period: parts.next()?.to_owned(),
                ..FindingQuery::default()
            };
            Some(chrome.href(&format!("/finding?{}", key.query_string(Lang::Zh))))
        }
        proto::MatterKind::Unspecified
        | proto::MatterKind::Campaign
        | proto::MatterKind::Declaration => None,
    }
}

fn receipts_text(chrome: &Chrome, transfer: &proto::MatterTransfer) -> String {
    transfer
        .receipts
        .iter()
        .map(|receipt| {
            format!(
                "{} {}",
                agency_kind_label(chrome.lang, receipt.agency),
                if receipt.acknowledged_by.is_empty() {
                    chrome.t("待签收", "waiting")
                } else {
                    chrome.t("已签收", "acknowledged")
                }
            )
        })
        .collect::<Vec<_>>()
        .join(chrome.t("；", "; "))
}

fn transfer_kind(transfer: &proto::MatterTransfer) -> &'static str {
    code_name(
        proto::TransferKind::try_from(transfer.kind)
            .ok()
            .map(|k| k.as_str_name()),
        "TRANSFER_KIND_",
    )
}

/// 移送与联合督查: the transfers of the viewer's jurisdiction that reach it, or their CSV.
pub async fn transfers(
    visit: &mut Visit,
    query: &MatterQuery,
    csv: bool,
) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    let request = proto::ListTransfersRequest {
        jurisdiction: the_division(query),
        kind: wire(&query.kind, "TRANSFER_KIND_", |n| {
            proto::TransferKind::from_str_name(n).map(|k| k as i32)
        })?,
        matter: 0,
        unacknowledged_only: query.only(),
        sent_from: query.from.trim().to_owned(),
        sent_to: query.to.trim().to_owned(),
        page_size: BULK_PAGE_SIZE,
        page_token: String::new(),
    };
    let found = every_page!(|token| {
        let page = visit
            .call(
                LIST_TRANSFERS,
                proto::ListTransfersRequest {
                    page_token: std::mem::take(&mut token),
                    ..request.clone()
                },
                |hub, request| async move { hub.list_transfers(request).await },
            )
            .await?;
        (page.transfers, page.next_page_token)
    });
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Matters,
        "/transfers",
        &query.query_string(&query.sort, query.page),
    );
    let rows = found
        .iter()
        .map(|transfer| {
            let kind = transfer_kind(transfer);
            let sent = views::timestamp(transfer.sent_at.as_ref());
            let matter = views::matter_label(lang, transfer.matter);
            let waiting = transfer
                .receipts
                .iter()
                .filter(|r| r.acknowledged_by.is_empty())
                .count();
            let matter_cell = match matter_href(&chrome, transfer.matter, &transfer.matter_id) {
                Some(href) => Cell::link(format!("{matter} {}", transfer.matter_id), href, ""),
                None => Cell::text(format!("{matter} {}", transfer.matter_id)),
            };
            Row {
                cells: vec![
                    Cell::link(
                        format!(
                            "{sent} {}",
                            transfer.text.chars().take(24).collect::<String>()
                        ),
                        id_href(&chrome, "/transfer", &transfer.id),
                        "",
                    ),
                    Cell::text(label(lang, &TRANSFER_KINDS, kind)),
                    matter_cell,
                    Cell::mono(transfer.jurisdiction.clone()),
                    Cell::mono(transfer.sent_by.clone()),
                    Cell::text(receipts_text(&chrome, transfer)),
                ],
                overdue: false,
                sort: BTreeMap::from([
                    ("sent", format!("{sent} {}", transfer.id)),
                    ("kind", kind.to_owned()),
                    (
                        "matter",
                        format!("{:02} {}", transfer.matter, transfer.matter_id),
                    ),
                    ("division", transfer.jurisdiction.clone()),
                    ("waiting", format!("{waiting:02}")),
                ]),
                csv: vec![
                    transfer.id.clone(),
                    kind.to_owned(),
                    code_name(
                        proto::MatterKind::try_from(transfer.matter)
                            .ok()
                            .map(|m| m.as_str_name()),
                        "MATTER_KIND_",
                    )
                    .to_owned(),
                    transfer.matter_id.clone(),
                    transfer.jurisdiction.clone(),
                    transfer.sent_by.clone(),
                    sent,
                    receipts_text(&chrome, transfer),
                    transfer.text.clone(),
                ],
            }
        })
        .collect();
    let mut filters = vec![select_filter(
        "kind",
        chrome.t("类型", "Kind"),
        options(
            lang,
            &query.kind,
            ("全部类型", "every kind"),
            &TRANSFER_KINDS,
        ),
    )];
    filters.extend(common_filters(
        &chrome,
        query,
        (chrome.t("发送日期自", "Sent from"), chrome.t("至", "to")),
    ));
    filters.push(Filter {
        name: "only",
        label: chrome.t("仅有待签收", "Awaiting receipt only"),
        input: "check",
        value: query.only.clone(),
        options: Vec::new(),
    });
    render(visit, chrome, &transfers_list(), query, filters, rows, csv)
}

/// One transfer and its receipts.
pub async fn transfer(visit: &mut Visit, query: &board::IdQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    let found = visit
        .call(
            GET_TRANSFER,
            proto::IdRequest {
                id: query.id.trim().to_owned(),
            },
            |hub, request| async move { hub.get_transfer(request).await },
        )
        .await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Matters,
        "/transfer",
        &form_urlencoded::Serializer::new(String::new())
            .append_pair("id", &found.id)
            .finish(),
    );
    let page = board::MatterPage {
        heading: format!(
            "{} {}",
            label(lang, &TRANSFER_KINDS, transfer_kind(&found)),
            found.id
        ),
        facts: vec![
            (
                chrome.t("事项", "Matter"),
                format!(
                    "{} {}",
                    views::matter_label(lang, found.matter),
                    found.matter_id
                ),
            ),
            (chrome.t("区划", "Division"), found.jurisdiction.clone()),
            (chrome.t("发送方", "Sent by"), found.sent_by.clone()),
            (
                chrome.t("发送时间", "Sent at"),
                views::timestamp(found.sent_at.as_ref()),
            ),
            (chrome.t("移送说明", "Covering note"), found.text.clone()),
            (chrome.t("签收", "Receipts"), receipts_text(&chrome, &found)),
        ],
        finding_href: matter_href(&chrome, found.matter, &found.matter_id),
        link_label: chrome.t("移送的事项", "The matter transferred"),
        steps: found
            .receipts
            .iter()
            .map(|receipt| board::StepRow {
                at: views::timestamp(receipt.acknowledged_at.as_ref()),
                agency: receipt.acknowledged_by.clone(),
                from: agency_kind_label(lang, receipt.agency),
                to: if receipt.acknowledged_by.is_empty() {
                    chrome.t("待签收", "waiting")
                } else {
                    chrome.t("已签收", "acknowledged")
                }
                .to_owned(),
                text: String::new(),
            })
            .collect(),
        c: chrome,
    };
    views::html(&page)
}

// ---- a case ----

/// A case's page: its facts and chain, the moves the viewer may make, its steps.
#[derive(askama::Template)]
#[template(path = "console/case.html")]
pub struct CasePage {
    pub c: Chrome,
    pub heading: String,
    pub facts: Vec<(&'static str, String)>,
    /// Never set: a case follows no finding (the shared template asks).
    pub finding_href: Option<String>,
    pub link_label: &'static str,
    pub steps: Vec<board::StepRow>,
    /// The case, for the moves' form.
    pub case_id: String,
    /// The version the page shows: a move posted from it is refused (ABORTED) once the case
    /// has moved on.
    pub version: u64,
    /// The division the assignment offered hands it to.
    pub assign_to: Option<String>,
    /// The moves offered, one button each.
    pub moves: Vec<CaseMove>,
}

/// One move a case's page offers.
pub struct CaseMove {
    /// What the form posts (`investigate`, `assign`, `confirm`, `send_back`).
    pub name: &'static str,
    /// The button's words.
    pub label: String,
}

/// The moves the viewer may make on a case, as the domain's rules and the policy table allow
/// them (each is checked again when made).
fn case_moves(
    visit: &Visit,
    chrome: &Chrome,
    viewer: &Agency,
    case: &proto::Case,
) -> (Option<String>, Vec<CaseMove>) {
    let (Some(state), Ok(division)) = (
        CaseState::from_wire(case.state),
        Jurisdiction::parse(&case.jurisdiction),
    ) else {
        return (None, Vec::new());
    };
    let chain: Vec<Level> = case
        .levels
        .iter()
        .filter_map(|level| {
            Some(Level {
                jurisdiction: Jurisdiction::parse(&level.jurisdiction).ok()?,
                confirmed: !level.confirmed_by.is_empty(),
            })
        })
        .collect();
    let offered = assignment::moves(viewer, &division, state, &chain);
    let mut moves = Vec::new();
    if visit.may_call(MOVE_CASE)
        && viewer.oversees(&division)
        && case_move_allowed(viewer.kind, state, CaseState::Investigating)
        && assignment::check_work(viewer, &chain).is_ok()
    {
        moves.push(CaseMove {
            name: "investigate",
            label: chrome.t("开始调查", "Start investigating").to_owned(),
        });
    }
    let assign_to = offered
        .assign_to
        .filter(|_| visit.may_call(ASSIGN_CASE))
        .map(|to| to.to_string());
    if let Some(to) = &assign_to {
        moves.push(CaseMove {
            name: "assign",
            label: format!("{} {to}", chrome.t("交办", "Assign to")),
        });
    }
    if let Some(confirmation) = offered
        .confirm
        .filter(|_| visit.may_call(CONFIRM_CASE_LEVEL))
    {
        let label = if confirmation.closes {
            chrome.t("确认办结（销号）", "Confirm and close")
        } else if confirmation.reports_back {
            chrome.t("上报", "Report back")
        } else {
            chrome.t("确认", "Confirm")
        };
        moves.push(CaseMove {
            name: "confirm",
            label: label.to_owned(),
        });
    }
    if offered.send_back && visit.may_call(SEND_BACK_CASE) {
        moves.push(CaseMove {
            name: "send_back",
            label: chrome.t("退回重办", "Send back").to_owned(),
        });
    }
    (assign_to, moves)
}

/// A case, its chain and its steps.
pub async fn case(visit: &mut Visit, query: &board::IdQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let found = visit
        .call(
            GET_CASE,
            proto::IdRequest {
                id: query.id.trim().to_owned(),
            },
            |hub, request| async move { hub.get_case(request).await },
        )
        .await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Matters,
        "/case",
        &board::id_query(&found.id),
    );
    let mut facts = vec![
        (chrome.t("区划", "Division"), found.jurisdiction.clone()),
        (
            chrome.t("来源", "Channel"),
            views::enum_name(
                proto::ReportChannel::try_from(found.channel)
                    .ok()
                    .map(|c| c.as_str_name()),
                "REPORT_CHANNEL_",
            ),
        ),
        (
            chrome.t("单位", "Institution"),
            found.institution_uscc.clone(),
        ),
        (chrome.t("涉及人员", "Person"), found.person.clone()),
        (chrome.t("内容", "Report"), found.text.clone()),
        (chrome.t("承办", "Owner"), found.owner.clone()),
        (
            chrome.t("状态", "State"),
            views::enum_name(
                proto::CaseState::try_from(found.state)
                    .ok()
                    .map(|s| s.as_str_name()),
                "CASE_STATE_",
            ),
        ),
        (chrome.t("办理期限", "Due"), found.due_on.clone()),
        (
            chrome.t("升级层级", "Escalation level"),
            format!("{} / 3", found.escalation_level),
        ),
        (chrome.t("办理结果", "Outcome"), found.outcome.clone()),
        (chrome.t("版本", "Version"), found.version.to_string()),
    ];
    facts.extend(board::chain_facts(
        &chrome,
        &found.levels,
        &found.waiting_on,
    ));
    let (assign_to, moves) = case_moves(visit, &chrome, &agency, &found);
    let page = CasePage {
        heading: format!("{} {}", chrome.t("举报案件", "Case"), found.id),
        facts,
        finding_href: None,
        link_label: "",
        steps: board::steps(&found.history),
        case_id: found.id.clone(),
        version: found.version,
        assign_to,
        moves,
        c: chrome,
    };
    views::html(&page)
}

/// A move posted from a case's page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CaseMoveForm {
    /// The case.
    pub id: String,
    /// The version the page showed.
    pub version: u64,
    /// `investigate`, `assign`, `confirm` or `send_back`.
    #[serde(rename = "move")]
    pub action: String,
    /// For `assign`: the division.
    pub to: String,
    /// The note: the covering note, the report back, the outcome, what the report lacks.
    pub note: String,
    /// The token of the viewer's certificate (see `Console::form_token`).
    pub form_token: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl CaseMoveForm {
    /// For the audit trail (the token left out).
    pub fn summary(&self) -> String {
        format!(
            "id={} version={} move={} to={}",
            self.id, self.version, self.action, self.to
        )
    }
}

/// Makes the move a case's page posted, as the viewer (with the version the page showed), then
/// shows the case again.
pub async fn case_move(visit: &mut Visit, form: &CaseMoveForm) -> Result<Response, Status> {
    visit.viewer().await?;
    let (case_id, expected_version, text) = (form.id.clone(), form.version, form.note.clone());
    let case = match form.action.as_str() {
        "investigate" => {
            let request = proto::MoveCaseRequest {
                case_id,
                to: proto::CaseState::Investigating as i32,
                expected_version,
                text,
            };
            visit
                .call(MOVE_CASE, request, |hub, request| async move {
                    hub.move_case(request).await
                })
                .await?
        }
        "assign" => {
            let request = proto::AssignCaseRequest {
                case_id,
                to: form.to.clone(),
                expected_version,
                text,
            };
            visit
                .call(ASSIGN_CASE, request, |hub, request| async move {
                    hub.assign_case(request).await
                })
                .await?
        }
        "confirm" => {
            let request = proto::ConfirmCaseLevelRequest {
                case_id,
                expected_version,
                text,
            };
            visit
                .call(CONFIRM_CASE_LEVEL, request, |hub, request| async move {
                    hub.confirm_case_level(request).await
                })
                .await?
        }
        "send_back" => {
            let request = proto::SendBackCaseRequest {
                case_id,
                expected_version,
                text,
            };
            visit
                .call(SEND_BACK_CASE, request, |hub, request| async move {
                    hub.send_back_case(request).await
                })
                .await?
        }
        other => return Err(Status::invalid_argument(format!("unknown move `{other}`"))),
    };
    let target = views::with_lang(&format!("/case?{}", board::id_query(&case.id)), visit.lang);
    Ok(Redirect::to(&target).into_response())
}

// ---- applications ----

fn applications_list() -> List {
    List {
        path: "/applications",
        title: ("机构编制事项申请", "Staffing applications"),
        table_id: "applications-table",
        columns: vec![
            ("申请", "Application", Some("applied")),
            ("申请单位", "Department", Some("department")),
            ("事项", "Kind", Some("kind")),
            ("状态", "State", Some("state")),
            ("逾期事项闸门", "Gate of overdue items", Some("gate")),
            (
                "单位现逾期事项",
                "Department's overdue items now",
                Some("overdue"),
            ),
            ("审批", "Decision", None),
        ],
        default_sort: "applied",
        csv_header: vec![
            "id",
            "jurisdiction",
            "department_uscc",
            "kind",
            "state",
            "applied_at",
            "applied_by",
            "override_reason",
            "override_by",
            "overdue_items_now",
            "decided_at",
            "decided_by",
            "decision_note",
            "registry_record",
            "reason",
        ],
        csv_name: "applications.csv",
    }
}

/// 机构编制事项申请: the applications of the viewer's jurisdiction with the gate's answer (passed,
/// or let through by the staffing office's recorded override) and the department's overdue
/// ledger items now (what the gate would weigh against a new application), or their CSV.
pub async fn applications(
    visit: &mut Visit,
    query: &MatterQuery,
    csv: bool,
) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let lang = visit.lang;
    let request = proto::ListApplicationsRequest {
        jurisdiction: the_division(query),
        state: wire(&query.state, "APPLICATION_STATE_", |n| {
            proto::ApplicationState::from_str_name(n).map(|s| s as i32)
        })?,
        kind: wire(&query.kind, "APPLICATION_KIND_", |n| {
            proto::ApplicationKind::from_str_name(n).map(|k| k as i32)
        })?,
        department_uscc: query.department.trim().to_owned(),
        applied_from: query.from.trim().to_owned(),
        applied_to: query.to.trim().to_owned(),
        page_size: BULK_PAGE_SIZE,
        page_token: String::new(),
    };
    let found = every_page!(|token| {
        let page = visit
            .call(
                LIST_APPLICATIONS,
                proto::ListApplicationsRequest {
                    page_token: std::mem::take(&mut token),
                    ..request.clone()
                },
                |hub, request| async move { hub.list_applications(request).await },
            )
            .await?;
        (page.applications, page.next_page_token)
    });
    let mut overdue_now: BTreeMap<String, usize> = BTreeMap::new();
    for item in every_item(visit, query.department.trim(), true).await? {
        *overdue_now.entry(item.department_uscc).or_default() += 1;
    }
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Matters,
        "/applications",
        &query.query_string(&query.sort, query.page),
    );
    let rows = found
        .iter()
        .map(|application| {
            let kind = code_name(
                proto::ApplicationKind::try_from(application.kind)
                    .ok()
                    .map(|k| k.as_str_name()),
                "APPLICATION_KIND_",
            );
            let state = code_name(
                proto::ApplicationState::try_from(application.state)
                    .ok()
                    .map(|s| s.as_str_name()),
                "APPLICATION_STATE_",
            );
            let applied = views::timestamp(application.applied_at.as_ref());
            let gate = gate_answer(&chrome, application);
            let overdue = overdue_now
                .get(&application.department_uscc)
                .copied()
                .unwrap_or_default();
            let decision = if application.decided_by.is_empty() {
                String::new()
            } else {
                format!(
                    "{} {} {}",
                    views::timestamp(application.decided_at.as_ref()),
                    application.decided_by,
                    application.decision_note
                )
            };
            Row {
                cells: vec![
                    Cell::link(
                        format!(
                            "{applied} {}",
                            application.reason.chars().take(24).collect::<String>()
                        ),
                        id_href(&chrome, "/application", &application.id),
                        "",
                    ),
                    Cell::link(
                        application.department_uscc.clone(),
                        institution_href(&chrome, &application.department_uscc),
                        "mono",
                    ),
                    Cell::text(label(lang, &APPLICATION_KINDS, kind)),
                    Cell::text(label(lang, &APPLICATION_STATES, state)),
                    Cell::text(gate.clone()),
                    if overdue > 0 {
                        Cell::link(
                            overdue.to_string(),
                            chrome.href(&format!(
                                "/ledger?{}",
                                board::BoardQuery {
                                    department: application.department_uscc.clone(),
                                    overdue: "1".into(),
                                    ..board::BoardQuery::default()
                                }
                                .query_string("", 1)
                            )),
                            "num short",
                        )
                    } else {
                        Cell {
                            text: "0".into(),
                            href: None,
                            class: "num",
                        }
                    },
                    Cell::text(decision),
                ],
                overdue: false,
                sort: BTreeMap::from([
                    ("applied", format!("{applied} {}", application.id)),
                    ("department", application.department_uscc.clone()),
                    ("kind", kind.to_owned()),
                    ("state", format!("{:02}", application.state)),
                    (
                        "gate",
                        yes_no(&chrome, !application.override_reason.is_empty()),
                    ),
                    ("overdue", format!("{overdue:06}")),
                ]),
                csv: vec![
                    application.id.clone(),
                    application.jurisdiction.clone(),
                    application.department_uscc.clone(),
                    kind.to_owned(),
                    state.to_owned(),
                    applied,
                    application.applied_by.clone(),
                    application.override_reason.clone(),
                    application.override_by.clone(),
                    overdue.to_string(),
                    views::timestamp(application.decided_at.as_ref()),
                    application.decided_by.clone(),
                    application.decision_note.clone(),
                    application.registry_record.clone(),
                    application.reason.clone(),
                ],
            }
        })
        .collect();
    let mut filters = vec![
        select_filter(
            "state",
            chrome.t("状态", "State"),
            options(
                lang,
                &query.state,
                ("全部状态", "every state"),
                &APPLICATION_STATES,
            ),
        ),
        select_filter(
            "kind",
            chrome.t("事项", "Kind"),
            options(
                lang,
                &query.kind,
                ("全部事项", "every kind"),
                &APPLICATION_KINDS,
            ),
        ),
        text_filter(
            "department",
            chrome.t("申请单位", "Department (USCC)"),
            &query.department,
            "text",
        ),
    ];
    filters.extend(common_filters(
        &chrome,
        query,
        (chrome.t("申请日期自", "Filed from"), chrome.t("至", "to")),
    ));
    render(
        visit,
        chrome,
        &applications_list(),
        query,
        filters,
        rows,
        csv,
    )
}

/// The cases page.
pub async fn cases_page(visit: &mut Visit, query: &MatterQuery) -> Result<Response, Status> {
    cases(visit, query, false).await
}

/// The cases as CSV.
pub async fn cases_csv(visit: &mut Visit, query: &MatterQuery) -> Result<Response, Status> {
    cases(visit, query, true).await
}

/// The transfers page.
pub async fn transfers_page(visit: &mut Visit, query: &MatterQuery) -> Result<Response, Status> {
    transfers(visit, query, false).await
}

/// The transfers as CSV.
pub async fn transfers_csv(visit: &mut Visit, query: &MatterQuery) -> Result<Response, Status> {
    transfers(visit, query, true).await
}

/// The applications page.
pub async fn applications_page(visit: &mut Visit, query: &MatterQuery) -> Result<Response, Status> {
    applications(visit, query, false).await
}

/// The applications as CSV.
pub async fn applications_csv(visit: &mut Visit, query: &MatterQuery) -> Result<Response, Status> {
    applications(visit, query, true).await
}

/// 督办: the first of the lists the viewer may read.
pub async fn first_list(visit: &mut Visit, _: &MatterQuery) -> Result<Response, Status> {
    visit.viewer().await?;
    let path = [
        ("/cases", LIST_CASES),
        ("/transfers", LIST_TRANSFERS),
        ("/applications", LIST_APPLICATIONS),
    ]
    .into_iter()
    .find(|(_, method)| visit.may_call(method))
    .map(|(path, _)| path)
    .ok_or_else(|| Status::permission_denied("no follow-up list is open to your agency"))?;
    Ok(axum::response::Redirect::to(&views::with_lang(path, visit.lang)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(opened: &str, due: &str) -> Row {
        Row {
            cells: Vec::new(),
            overdue: false,
            sort: BTreeMap::from([("opened", opened.to_owned()), ("due", due.to_owned())]),
            csv: vec![opened.to_owned()],
        }
    }

    #[test]
    fn lists_sort_by_the_column_asked_and_keep_the_order_they_were_made_within_a_value() {
        let rows = || {
            vec![
                row("2024-06-01 a", "2024-07-01"),
                row("2024-06-02 b", "2024-06-15"),
                row("2024-06-03 c", "2024-07-01"),
            ]
        };
        let order = |rows: Vec<Row>| -> Vec<String> {
            rows.into_iter().map(|r| r.csv[0].clone()).collect()
        };
        assert_eq!(
            order(sorted(rows(), "", "opened")),
            ["2024-06-01 a", "2024-06-02 b", "2024-06-03 c"]
        );
        assert_eq!(
            order(sorted(rows(), "-opened", "opened")),
            ["2024-06-03 c", "2024-06-02 b", "2024-06-01 a"]
        );
        assert_eq!(
            order(sorted(rows(), "due", "opened")),
            ["2024-06-02 b", "2024-06-01 a", "2024-06-03 c"]
        );
    }

    #[test]
    fn a_list_link_keeps_its_filters_and_leaves_out_empty_ones() {
        let query = MatterQuery {
            division: "140105".into(),
            state: "PENDING".into(),
            from: " 2024-06-01 ".into(),
            ..MatterQuery::default()
        };
        assert_eq!(
            query.query_string("-applied", 2),
            "division=140105&state=PENDING&from=2024-06-01&sort=-applied&page=2"
        );
    }
}
