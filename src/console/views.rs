//! What the pages show, as askama templates (`templates/console/`, compiled into the binary and
//! escaped by default), and the labels of the contract's codes in both languages.

use askama::Template;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tonic::Status;

use super::{Lang, Visit};
use crate::chart::{Chart, category};
use crate::domain::{Agency, AgencyKind};
use crate::proto;

/// Renders a page.
pub fn html(page: &impl Template) -> Result<Response, Status> {
    let text = page
        .render()
        .map_err(|error| Status::internal(format!("the page did not render: {error}")))?;
    Ok(page_response(text))
}

/// Renders a page that runs the console's own script (the live page), and no other.
pub fn html_with_script(page: &impl Template) -> Result<Response, Status> {
    let text = page
        .render()
        .map_err(|error| Status::internal(format!("the page did not render: {error}")))?;
    Ok(secured(
        text,
        "default-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    ))
}

fn page_response(text: String) -> Response {
    secured(
        text,
        "default-src 'self'; script-src 'none'; frame-ancestors 'none'; form-action 'self'",
    )
}

fn secured(text: String, policy: &'static str) -> Response {
    (
        [
            // Nothing but the hub's own origin: no script, style or font from elsewhere, and no
            // framing by another site.
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(text),
    )
        .into_response()
}

/// Which part of the navigation a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// 总览.
    Overview,
    /// 问题线索.
    Findings,
    /// 实时预警.
    Live,
    /// 单位.
    Institution,
    /// 一事一账.
    Ledger,
    /// 督办: cases, transfers, applications.
    Matters,
    /// 审计日志.
    Audit,
    /// 专项检查.
    Campaigns,
}

/// What every page's frame shows: the viewer, the navigation, the language switch.
pub struct Chrome {
    /// The page's language.
    pub lang: Lang,
    /// The viewing agency, as a label.
    pub viewer: String,
    /// The viewer's jurisdiction code.
    pub jurisdiction: String,
    /// Which navigation entry is current.
    pub nav: Nav,
    /// This page in the other language.
    pub switch_href: String,
    /// The token the page's forms carry.
    pub form_token: String,
    /// Whether the viewer may read the audit trail (audit, discipline): the link is shown then.
    pub audits: bool,
    /// Whether the viewer may read campaigns (all but finance): the link is shown then.
    pub campaigns: bool,
}

impl Chrome {
    /// The frame of a page at `path` with `query` (without `lang`).
    pub fn new(visit: &Visit, agency: &Agency, nav: Nav, path: &str, query: &str) -> Chrome {
        let lang = visit.lang;
        let other = match lang {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        };
        Chrome {
            lang,
            viewer: format!("{} {}", agency.jurisdiction, kind_label(lang, agency.kind)),
            jurisdiction: agency.jurisdiction.to_string(),
            nav,
            switch_href: with_lang(&format!("{path}?{query}"), other),
            form_token: visit.form_token(),
            audits: visit.may_call(super::lists::QUERY_AUDIT),
            campaigns: visit.may_call(super::lists::LIST_CAMPAIGNS),
        }
    }

    /// The text in the page's language.
    pub fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        match self.lang {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// A link within the console, in the page's language.
    pub fn href(&self, target: &str) -> String {
        with_lang(target, self.lang)
    }

    /// Whether `nav` is the current navigation entry (for `aria-current`).
    pub fn is(&self, nav: Nav) -> bool {
        self.nav == nav
    }

    /// The `lang` attribute of the page.
    pub fn html_lang(&self) -> &'static str {
        match self.lang {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// `target` in `lang` (a `lang=en` parameter for English).
pub fn with_lang(target: &str, lang: Lang) -> String {
    let target = target.trim_end_matches('?');
    match lang {
        Lang::Zh => target.to_owned(),
        Lang::En if target.contains('?') => format!("{target}&lang=en"),
        Lang::En => format!("{target}?lang=en"),
    }
}

/// The overview (总览).
#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct Overview {
    pub c: Chrome,
    pub as_of: String,
    pub chart: Chart,
    pub rows: Vec<BalanceRow>,
    pub open: usize,
    pub counts: Vec<RuleCount>,
    pub escalations: Vec<DueRow>,
    pub due_total: usize,
    pub trend: crate::chart::TrendChart,
    pub mix: crate::chart::CountChart,
    pub overdue: Vec<DepartmentRow>,
    pub overdue_total: usize,
}

/// An alert whose next deadline falls this week.
pub struct DueRow {
    pub row: FindingRow,
    pub deadline: String,
    pub next_level: u32,
}

/// The severities, most severe first.
pub fn severity_levels() -> [i32; 5] {
    SEVERITIES.map(|(severity, _, _)| severity as i32)
}

/// Where a severity stands in [`severity_levels`].
pub fn severity_rank(severity: i32) -> Option<usize> {
    SEVERITIES
        .iter()
        .position(|(s, _, _)| *s as i32 == severity)
}

/// One row of the regional balance table.
pub struct BalanceRow {
    pub jurisdiction: String,
    pub category: String,
    pub approved: i64,
    pub active: i64,
    pub surplus: i64,
}

impl BalanceRow {
    /// A row of RegionalBalance.
    pub fn of(lang: Lang, row: &proto::RegionalBalanceRow) -> BalanceRow {
        BalanceRow {
            jurisdiction: row.jurisdiction.clone(),
            category: category(lang, row.category).to_owned(),
            approved: row.approved,
            active: row.active,
            surplus: row.surplus,
        }
    }
}

/// Open findings of one rule.
pub struct RuleCount {
    pub rule: String,
    pub severity: &'static str,
    pub severity_class: &'static str,
    pub count: u64,
    pub href: String,
}

/// The findings list.
#[derive(Template)]
#[template(path = "console/findings.html")]
pub struct Findings {
    pub c: Chrome,
    pub rules: Vec<SelectOption>,
    pub severities: Vec<SelectOption>,
    pub states: Vec<SelectOption>,
    pub institution: String,
    pub division: String,
    pub from: String,
    pub to: String,
    pub sort: String,
    /// The columns' headings: a sortable one's link, or a plain label.
    pub headers: Vec<Result<SortHeader, String>>,
    pub rows: Vec<FindingRow>,
    pub next: Option<String>,
    pub first: Option<String>,
    pub csv: String,
}

/// An option of a filter.
pub struct SelectOption {
    pub value: &'static str,
    pub label: String,
    pub selected: bool,
}

/// A finding as a row of the list.
pub struct FindingRow {
    pub href: String,
    pub rule: String,
    pub severity: &'static str,
    pub severity_class: &'static str,
    pub institution: String,
    pub subject: String,
    pub period: String,
    pub state: &'static str,
    pub alert_state: &'static str,
    pub raised_at: String,
}

impl FindingRow {
    /// A finding as the viewer reads it.
    pub fn of(lang: Lang, finding: &proto::Finding, href: &str) -> FindingRow {
        FindingRow {
            href: href.to_owned(),
            rule: rule_label(lang, finding.code),
            severity: severity_label(lang, finding.severity),
            severity_class: severity_class(finding.severity),
            institution: finding.institution_uscc.clone(),
            subject: finding.subject.clone(),
            period: finding.period.clone(),
            state: finding_state_label(lang, finding.state),
            alert_state: alert_state_label(lang, finding.alert_state),
            raised_at: timestamp(finding.raised_at.as_ref()),
        }
    }
}

/// A finding's page.
#[derive(Template)]
#[template(path = "console/finding.html")]
pub struct FindingPage {
    pub c: Chrome,
    pub row: FindingRow,
    pub key: FindingQuery,
    pub explanation: String,
    pub evidence: Vec<(String, String)>,
    pub jurisdiction: String,
    pub actual: i64,
    pub limit: i64,
    pub version: u64,
    pub escalation_level: u32,
    pub acknowledge_by: String,
    pub rectify_by: String,
    pub updated_at: String,
    pub masked: bool,
    pub transitions: Vec<TransitionButton>,
    pub may_transition: bool,
}

/// A transition the viewer may make.
pub struct TransitionButton {
    pub to: &'static str,
    pub label: &'static str,
}

/// The refusal page, in both languages (the viewer's language is not known to be trusted yet).
#[derive(Template)]
#[template(path = "console/refused.html")]
pub struct Refused {
    pub reason: String,
    /// No usable certificate (rather than an agency that may not do this).
    pub unauthenticated: bool,
}

/// A refusal page for `status`.
pub fn refused(status: &Status) -> Response {
    let page = Refused {
        reason: status.message().to_owned(),
        unauthenticated: status.code() == tonic::Code::Unauthenticated,
    };
    page_response(page.render().unwrap_or_else(|_| "403".to_owned()))
}

/// An error page.
#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub lang: Lang,
    pub code: &'static str,
    pub message: String,
    pub conflict: bool,
}

impl ErrorPage {
    /// The text in the page's language.
    pub fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        match self.lang {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// An error page for `status`.
pub fn error_page(lang: Lang, status: &Status) -> Response {
    let page = ErrorPage {
        lang,
        code: crate::api::status::grpc_code_name(status.code()),
        message: status.message().to_owned(),
        conflict: status.code() == tonic::Code::Aborted,
    };
    page_response(page.render().unwrap_or_else(|_| "error".to_owned()))
}

/// `2026-12-04 16:20` in China Standard Time, or empty.
pub fn timestamp(at: Option<&prost_types::Timestamp>) -> String {
    let Some(at) = at else {
        return String::new();
    };
    let china = chrono::FixedOffset::east_opt(8 * 3_600).expect("a valid offset");
    chrono::DateTime::from_timestamp(at.seconds, 0)
        .map(|at| {
            at.with_timezone(&china)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// A rule's name in `lang`.
pub fn rule_label(lang: Lang, code: i32) -> String {
    use crate::api::convert::Wire as _;
    let name = code_name(code);
    match lang {
        Lang::Zh => crate::domain::findings::RuleCode::from_wire(code)
            .map_or_else(|| name.to_owned(), |rule| rule.name_zh().to_owned()),
        Lang::En => name.replace('_', " ").to_lowercase(),
    }
}

const SEVERITIES: [(proto::Severity, &str, &str); 5] = [
    (proto::Severity::Critical, "严重", "critical"),
    (proto::Severity::High, "高", "high"),
    (proto::Severity::Medium, "中", "medium"),
    (proto::Severity::Low, "低", "low"),
    (proto::Severity::Info, "提示", "info"),
];

/// A severity in `lang`.
pub fn severity_label(lang: Lang, severity: i32) -> &'static str {
    SEVERITIES
        .iter()
        .find(|(s, _, _)| *s as i32 == severity)
        .map_or("", |(_, zh, en)| if lang == Lang::En { en } else { zh })
}

/// A severity's code name (`HIGH`).
pub fn severity_name(severity: i32) -> &'static str {
    proto::Severity::try_from(severity)
        .map(|s| s.as_str_name())
        .unwrap_or("")
        .trim_start_matches("SEVERITY_")
}

/// The style class of a severity.
pub fn severity_class(severity: i32) -> &'static str {
    SEVERITIES
        .iter()
        .find(|(s, _, _)| *s as i32 == severity)
        .map_or("info", |(_, _, en)| en)
}

/// A finding state's code name.
pub fn finding_state_name(state: i32) -> &'static str {
    proto::FindingState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("")
        .trim_start_matches("FINDING_STATE_")
}

fn finding_state_label(lang: Lang, state: i32) -> &'static str {
    match (finding_state_name(state), lang) {
        ("OPEN", Lang::Zh) => "未消除",
        ("OPEN", Lang::En) => "open",
        ("RESOLVED", Lang::Zh) => "已消除",
        ("RESOLVED", Lang::En) => "resolved",
        _ => "",
    }
}

/// An alert state's code name (`ACKNOWLEDGED`).
pub fn alert_state_name(state: i32) -> &'static str {
    proto::AlertState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("")
        .trim_start_matches("ALERT_STATE_")
}

/// An alert state in `lang`.
pub fn alert_state_label(lang: Lang, state: i32) -> &'static str {
    let (zh, en) = match alert_state_name(state) {
        "OPEN" => ("待处理", "open"),
        "ACKNOWLEDGED" => ("已签收", "acknowledged"),
        "RECTIFYING" => ("整改中", "rectifying"),
        "CLOSED" => ("已办结", "closed"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

pub fn kind_label(lang: Lang, kind: AgencyKind) -> &'static str {
    let (zh, en) = match kind {
        AgencyKind::StaffingOffice => ("编办", "staffing office"),
        AgencyKind::Organization => ("组织部", "organization department"),
        AgencyKind::Hr => ("人社", "human resources"),
        AgencyKind::Finance => ("财政", "finance"),
        AgencyKind::Discipline => ("纪检监察", "discipline inspection"),
        AgencyKind::Audit => ("审计", "audit"),
    };
    if lang == Lang::En { en } else { zh }
}

/// The rule filter's options.
pub fn rule_options(lang: Lang, selected: &str) -> Vec<SelectOption> {
    let mut options = vec![SelectOption {
        value: "",
        label: if lang == Lang::En {
            "every rule"
        } else {
            "全部规则"
        }
        .to_owned(),
        selected: selected.is_empty(),
    }];
    for code in 1..=15 {
        let value = code_name(code);
        options.push(SelectOption {
            value,
            label: rule_label(lang, code),
            selected: selected == value,
        });
    }
    options
}

/// The severity filter's options (the least severity shown).
pub fn severity_options(lang: Lang, selected: &str) -> Vec<SelectOption> {
    let mut options = vec![SelectOption {
        value: "",
        label: if lang == Lang::En {
            "any severity"
        } else {
            "全部级别"
        }
        .to_owned(),
        selected: selected.is_empty(),
    }];
    for (severity, zh, en) in SEVERITIES {
        let value = severity_name(severity as i32);
        let label = if lang == Lang::En {
            format!("{en} and above")
        } else {
            format!("{zh}及以上")
        };
        options.push(SelectOption {
            value,
            label,
            selected: selected == value,
        });
    }
    options
}

/// The state filter's options.
pub fn state_options(lang: Lang, selected: &str) -> Vec<SelectOption> {
    [
        ("OPEN", "未消除", "open"),
        ("RESOLVED", "已消除", "resolved"),
    ]
    .into_iter()
    .map(|(value, zh, en)| SelectOption {
        value,
        label: if lang == Lang::En { en } else { zh }.to_owned(),
        selected: selected == value || (selected.is_empty() && value == "OPEN"),
    })
    .collect()
}

/// A finding's key, as the links to its page carry it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct FindingQuery {
    /// The rule code name.
    pub code: String,
    /// The institution's USCC.
    pub institution: String,
    /// The subject as the viewer reads it (a person token in place of a masked resident ID).
    pub subject: String,
    /// The period.
    pub period: String,
    /// `OPEN` (default) or `RESOLVED`.
    pub state: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl FindingQuery {
    /// The query string of this finding's page in `lang`.
    pub fn query_string(&self, lang: Lang) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("code", &self.code)
            .append_pair("institution", &self.institution)
            .append_pair("subject", &self.subject)
            .append_pair("period", &self.period);
        if !self.state.is_empty() {
            query.append_pair("state", &self.state);
        }
        if lang == Lang::En {
            query.append_pair("lang", "en");
        }
        query.finish()
    }

    /// For the audit trail.
    pub fn summary(&self) -> String {
        self.query_string(Lang::Zh)
    }

    pub fn of(finding: &proto::Finding) -> FindingQuery {
        FindingQuery {
            code: code_name(finding.code).to_owned(),
            institution: finding.institution_uscc.clone(),
            subject: finding.subject.clone(),
            period: finding.period.clone(),
            state: if finding.state == proto::FindingState::Resolved as i32 {
                "RESOLVED".into()
            } else {
                String::new()
            },
            lang: None,
        }
    }
}

/// A rule's code name without its prefix (`OVER_QUOTA`).
pub fn code_name(code: i32) -> &'static str {
    proto::RuleCode::try_from(code)
        .map(|code| code.as_str_name())
        .unwrap_or("RULE_CODE_UNSPECIFIED")
        .trim_start_matches("RULE_CODE_")
}

/// A feed event's type in `lang`.
pub fn event_type_label(lang: Lang, event_type: i32) -> &'static str {
    use proto::FeedEventType as T;
    let (zh, en) = match proto::FeedEventType::try_from(event_type) {
        Ok(T::Raised) => ("新发现", "raised"),
        Ok(T::Updated) => ("有变化", "updated"),
        Ok(T::Resolved) => ("已消除", "resolved"),
        Ok(T::Escalated) => ("升级", "escalated"),
        Ok(T::Transitioned) => ("状态变更", "moved"),
        Ok(T::FollowUpEscalated) => ("跟踪事项升级", "follow-up escalated"),
        Ok(T::Transferred) => ("移送", "transferred"),
        Ok(T::Bulletin) => ("通报", "bulletin"),
        Ok(T::ReceiptAcknowledged) => ("已签收移送", "receipt acknowledged"),
        Ok(T::CampaignOpened) => ("专项检查启动", "campaign opened"),
        Ok(T::DeclarationMissing) => ("逾期未报自查", "declaration missing"),
        Ok(T::Assigned) => ("交办", "assigned"),
        Ok(T::LevelConfirmed) => ("逐级确认", "level confirmed"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// A matter's kind in `lang`.
pub fn matter_label(lang: Lang, matter: i32) -> &'static str {
    use proto::MatterKind as M;
    let (zh, en) = match proto::MatterKind::try_from(matter) {
        Ok(M::Alert) => ("预警", "alert"),
        Ok(M::LedgerItem) => ("整改台账事项", "ledger item"),
        Ok(M::Case) => ("举报案件", "case"),
        Ok(M::Campaign) => ("专项检查", "campaign"),
        Ok(M::Declaration) => ("自查申报", "declaration"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// An enum's code name without its prefix, in lower case with spaces (`bureau principal`), for
/// values the pages show as they are named in the contract.
pub fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map(|name| {
        name.trim_start_matches(prefix)
            .replace('_', " ")
            .to_lowercase()
    })
    .filter(|name| name != "unspecified")
    .unwrap_or_default()
}

/// A ledger item's state in `lang`.
pub fn item_state_label(lang: Lang, state: i32) -> &'static str {
    use proto::ItemState as S;
    let (zh, en) = match proto::ItemState::try_from(state) {
        Ok(S::Open) => ("待整改", "open"),
        Ok(S::Rectifying) => ("整改中", "rectifying"),
        Ok(S::Submitted) => ("已报送待核", "submitted"),
        Ok(S::Closed) => ("已销号", "closed"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// The ledger board's state filter.
pub fn item_state_options(lang: Lang, selected: &str) -> Vec<SelectOption> {
    let mut options = vec![SelectOption {
        value: "",
        label: if lang == Lang::En {
            "every state"
        } else {
            "全部状态"
        }
        .to_owned(),
        selected: selected.is_empty(),
    }];
    for (value, state) in [
        ("OPEN", proto::ItemState::Open),
        ("RECTIFYING", proto::ItemState::Rectifying),
        ("SUBMITTED", proto::ItemState::Submitted),
        ("CLOSED", proto::ItemState::Closed),
    ] {
        options.push(SelectOption {
            value,
            label: item_state_label(lang, state as i32).to_owned(),
            selected: selected == value,
        });
    }
    options
}

/// A person's status on the roll in `lang`.
pub fn person_status_label(lang: Lang, status: i32) -> &'static str {
    use proto::PersonStatus as S;
    let (zh, en) = match proto::PersonStatus::try_from(status) {
        Ok(S::Active) => ("在职", "active"),
        Ok(S::Seconded) => ("借调", "seconded"),
        Ok(S::OnLeave) => ("离岗", "on leave"),
        Ok(S::Retired) => ("退休", "retired"),
        Ok(S::Departed) => ("调离", "departed"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// A leader level in `lang`.
pub fn leader_level_label(lang: Lang, level: i32) -> &'static str {
    use proto::LeaderLevel as L;
    let (zh, en) = match proto::LeaderLevel::try_from(level) {
        Ok(L::Bureau) => ("厅局级", "bureau"),
        Ok(L::Division) => ("县处级", "division"),
        Ok(L::Section) => ("乡科级", "section"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// A leader position in `lang`.
pub fn leader_position_label(lang: Lang, position: i32) -> &'static str {
    use proto::LeaderPosition as P;
    let (zh, en) = match proto::LeaderPosition::try_from(position) {
        Ok(P::Principal) => ("正职", "principal"),
        Ok(P::Deputy) => ("副职", "deputy"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// An institution's kind in `lang`.
pub fn institution_kind_label(lang: Lang, kind: i32) -> &'static str {
    use proto::InstitutionKind as K;
    let (zh, en) = match proto::InstitutionKind::try_from(kind) {
        Ok(K::Organ) => ("机关", "organ"),
        Ok(K::PublicInstitution) => ("事业单位", "public institution"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

/// A column heading that sorts the list by its column: a link to the list in that order (the
/// other way round when it is the current order), and `aria-sort` for assistive technology.
pub struct SortHeader {
    pub label: String,
    pub href: String,
    /// `ascending`, `descending` or `none`.
    pub aria_sort: &'static str,
}

impl SortHeader {
    /// The heading of `key`, given the list's current `sort` and how a list link is made.
    pub fn new(
        chrome: &Chrome,
        key: &str,
        label: &str,
        sort: &str,
        link: impl Fn(&str) -> String,
    ) -> SortHeader {
        let (aria_sort, next) = if sort == key {
            ("ascending", format!("-{key}"))
        } else if sort.strip_prefix('-') == Some(key) {
            ("descending", key.to_owned())
        } else {
            ("none", key.to_owned())
        };
        SortHeader {
            label: label.to_owned(),
            href: chrome.href(&link(&next)),
            aria_sort,
        }
    }

    /// The arrow shown after the label.
    pub fn arrow(&self) -> &'static str {
        match self.aria_sort {
            "ascending" => " ▲",
            "descending" => " ▼",
            _ => "",
        }
    }
}

/// Numbered pages of a list paged by the console (the lists it sorts itself).
pub struct Pager {
    pub page: usize,
    pub pages: usize,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    /// Page `page` of `pages`, linked by `link`.
    pub fn new(
        chrome: &Chrome,
        page: usize,
        pages: usize,
        link: impl Fn(usize) -> String,
    ) -> Pager {
        let pages = pages.max(1);
        Pager {
            page,
            pages,
            previous: (page > 1).then(|| chrome.href(&link(page - 1))),
            next: (page < pages).then(|| chrome.href(&link(page + 1))),
        }
    }
}

/// One department's items by state.
pub struct DepartmentRow {
    pub uscc: String,
    pub href: String,
    pub counts: [usize; 4],
    pub overdue: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sorted_column_links_to_the_other_order() {
        let chrome = Chrome {
            lang: Lang::En,
            viewer: String::new(),
            jurisdiction: String::new(),
            nav: Nav::Ledger,
            switch_href: String::new(),
            form_token: String::new(),
            audits: false,
            campaigns: false,
        };
        let link = |sort: &str| format!("/ledger?sort={sort}");
        let unsorted = SortHeader::new(&chrome, "due", "Due", "", link);
        assert_eq!(
            (unsorted.aria_sort, unsorted.href.as_str()),
            ("none", "/ledger?sort=due&lang=en")
        );
        let up = SortHeader::new(&chrome, "due", "Due", "due", link);
        assert_eq!(
            (up.aria_sort, up.href.as_str()),
            ("ascending", "/ledger?sort=-due&lang=en")
        );
        let down = SortHeader::new(&chrome, "due", "Due", "-due", link);
        assert_eq!(
            (down.aria_sort, down.href.as_str()),
            ("descending", "/ledger?sort=due&lang=en")
        );
    }
}
