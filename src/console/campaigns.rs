//! 专项检查: the campaigns of the viewer's jurisdiction with their progress (ListCampaigns), and a
//! campaign's comparison institution by institution (GetReport): who declared, who matches, who
//! left something out (瞒报), who never answered.

use axum::response::Response;
use serde::Deserialize;
use tonic::Status;

use super::views::{self, Chrome, Nav, rule_label};
use super::{Lang, Visit};
use crate::proto;
use crate::proto::campaign_service_server::CampaignService as _;

pub use super::lists::LIST_CAMPAIGNS;
/// See [`super::pages::LIST_FINDINGS`].
pub const GET_REPORT: &str = "/quotahub.v1.CampaignService/GetReport";

/// Campaigns per page.
const PAGE_SIZE: u32 = 50;

/// The list's page, as its links carry it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// From the previous page.
    pub page: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl ListQuery {
    /// What the audit entry names.
    pub fn summary(&self) -> String {
        format!("page={}", self.page)
    }
}

/// A campaign's report page.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct CampaignQuery {
    /// The campaign.
    pub id: String,
    /// From the previous page of institutions.
    pub page: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl CampaignQuery {
    /// What the audit entry names.
    pub fn summary(&self) -> String {
        format!("id={} page={}", self.id, self.page)
    }
}

/// One campaign's line of the list.
pub struct CampaignRow {
    pub href: String,
    pub title: String,
    pub jurisdiction: String,
    pub months: String,
    pub deadline: String,
    pub state: &'static str,
    pub codes: String,
    pub institutions: u64,
    pub declared: u64,
    pub declared_late: u64,
    pub awaiting: u64,
    pub missing: u64,
    pub matching: u64,
    pub discrepant: u64,
    pub undeclared: u64,
    pub unconfirmed: u64,
    pub items: u64,
}

fn state_label(lang: Lang, state: i32) -> &'static str {
    let closed = state == proto::CampaignState::Closed as i32;
    match (lang, closed) {
        (Lang::Zh, false) => "进行中",
        (Lang::Zh, true) => "已结束",
        (Lang::En, false) => "open",
        (Lang::En, true) => "closed",
    }
}

fn standing_label(lang: Lang, standing: i32) -> &'static str {
    use proto::Standing as S;
    let (zh, en) = match proto::Standing::try_from(standing) {
        Ok(S::Awaiting) => ("待报送", "awaiting"),
        Ok(S::Missing) => ("逾期未报", "missing"),
        Ok(S::Matching) => ("自查与核查一致", "matching"),
        Ok(S::Discrepant) => ("不一致", "discrepant"),
        _ => ("", ""),
    };
    if lang == Lang::En { en } else { zh }
}

impl CampaignRow {
    fn of(chrome: &Chrome, progress: &proto::CampaignProgress) -> CampaignRow {
        let campaign = progress.campaign.clone().unwrap_or_default();
        CampaignRow {
            href: chrome.href(&format!("/campaign?id={}", campaign.id)),
            title: campaign.title,
            jurisdiction: campaign.jurisdiction,
            months: format!("{} – {}", campaign.period_from, campaign.period_to),
            deadline: campaign.deadline,
            state: state_label(chrome.lang, campaign.state),
            codes: campaign
                .codes
                .iter()
                .map(|&code| rule_label(chrome.lang, code))
                .collect::<Vec<_>>()
                .join(", "),
            institutions: progress.institutions,
            declared: progress.declared,
            declared_late: progress.declared_late,
            awaiting: progress.awaiting,
            missing: progress.missing,
            matching: progress.matching,
            discrepant: progress.discrepant,
            undeclared: progress.undeclared_problems,
            unconfirmed: progress.unconfirmed_problems,
            items: progress.items_opened,
        }
    }
}

/// The list of campaigns.
#[derive(askama::Template)]
#[template(path = "console/campaigns.html")]
pub struct ListPage {
    pub c: Chrome,
    pub rows: Vec<CampaignRow>,
    pub next: String,
}

/// 专项检查: every campaign of the viewer's jurisdiction, a page at a time, with its counts.
pub async fn list(visit: &mut Visit, query: &ListQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let answer = visit
        .call(
            LIST_CAMPAIGNS,
            proto::ListCampaignsRequest {
                page_size: PAGE_SIZE,
                page_token: query.page.trim().to_owned(),
                ..Default::default()
            },
            |hub, request| async move { hub.list_campaigns(request).await },
        )
        .await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Campaigns,
        "/campaigns",
        &format!("page={}", query.page),
    );
    let page = ListPage {
        rows: answer
            .campaigns
            .iter()
            .map(|p| CampaignRow::of(&chrome, p))
            .collect(),
        next: if answer.next_page_token.is_empty() {
            String::new()
        } else {
            chrome.href(&format!("/campaigns?page={}", answer.next_page_token))
        },
        c: chrome,
    };
    views::html(&page)
}

/// One problem as a report line shows it.
pub struct ProblemText {
    pub rule: String,
    pub subject: String,
    pub period: String,
}

impl ProblemText {
    fn of(lang: Lang, problem: &proto::Problem) -> ProblemText {
        ProblemText {
            rule: rule_label(lang, problem.code),
            subject: problem.subject.clone(),
            period: problem.period.clone(),
        }
    }
}

/// One institution's line of a campaign's report.
pub struct InstitutionRow {
    pub institution: String,
    pub institution_href: String,
    pub jurisdiction: String,
    pub standing: &'static str,
    /// `missing`, `discrepant`, or empty: how the row is marked.
    pub mark: &'static str,
    pub late: bool,
    pub matched: usize,
    pub undeclared: Vec<ProblemText>,
    pub unconfirmed: Vec<ProblemText>,
    pub shown: usize,
    pub escalation_level: u32,
    pub items: Vec<(String, String)>,
}

/// A campaign's report.
#[derive(askama::Template)]
#[template(path = "console/campaign.html")]
pub struct ReportPage {
    pub c: Chrome,
    pub row: CampaignRow,
    pub closing: bool,
    pub closing_note: String,
    pub institutions: Vec<InstitutionRow>,
    pub next: String,
}

/// A campaign's comparison, institution by institution.
pub async fn report(visit: &mut Visit, query: &CampaignQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let answer = visit
        .call(
            GET_REPORT,
            proto::CampaignReportRequest {
                campaign_id: query.id.trim().to_owned(),
                page_size: PAGE_SIZE * 4,
                page_token: query.page.trim().to_owned(),
                ..Default::default()
            },
            |hub, request| async move { hub.get_report(request).await },
        )
        .await?;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Campaigns,
        "/campaign",
        &format!("id={}&page={}", query.id, query.page),
    );
    let lang = chrome.lang;
    let progress = answer.progress.clone().unwrap_or_default();
    let institutions = answer
        .institutions
        .iter()
        .map(|line| InstitutionRow {
            institution: line.institution_uscc.clone(),
            institution_href: chrome.href(&format!("/institution?uscc={}", line.institution_uscc)),
            jurisdiction: line.jurisdiction.clone(),
            standing: standing_label(lang, line.standing),
            mark: match proto::Standing::try_from(line.standing) {
                Ok(proto::Standing::Missing) => "missing",
                Ok(proto::Standing::Discrepant) => "discrepant",
                _ => "",
            },
            late: line.late,
            matched: line.matched.len(),
            undeclared: line
                .undeclared
                .iter()
                .map(|p| ProblemText::of(lang, p))
                .collect(),
            unconfirmed: line
                .unconfirmed
                .iter()
                .map(|p| ProblemText::of(lang, p))
                .collect(),
            shown: line.shown.len(),
            escalation_level: line.escalation_level,
            items: line
                .ledger_item_ids
                .iter()
                .map(|id| (chrome.href(&format!("/ledger/item?id={id}")), id.clone()))
                .collect(),
        })
        .collect();
    let page = ReportPage {
        row: CampaignRow::of(&chrome, &progress),
        closing: answer.closing,
        closing_note: answer.closing_note,
        institutions,
        next: if answer.next_page_token.is_empty() {
            String::new()
        } else {
            chrome.href(&format!(
                "/campaign?id={}&page={}",
                query.id.trim(),
                answer.next_page_token
            ))
        },
        c: chrome,
    };
    views::html(&page)
}
