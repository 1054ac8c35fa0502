//! ReportService: the report to the leadership (向编委领导报告). The store reads the facts, the
//! domain computes the figures (`domain::leadership`), this module turns them into the contract's
//! message and asks `report` for the rendering; the PDF is made off the async threads.

use tonic::{Request, Response, Status};

use super::Hub;
use super::convert::{Wire, request_jurisdiction};
use super::policy::caller;
use crate::chart::Lang;
use crate::domain::ids::parse_date;
use crate::domain::leadership::{self, Period};
use crate::error::Error;
use crate::proto;
use crate::report;

/// The figures of the report from the store's facts.
pub fn figures(
    jurisdiction: &str,
    period: Period,
    facts: &crate::store::leadership::LeadershipFacts,
) -> proto::LeadershipReportResponse {
    let name = |uscc: &str| facts.names.get(uscc).cloned().unwrap_or_default();
    let departments = leadership::closure_by_department(&facts.items, period);
    let handled: u64 = departments.iter().map(|row| row.handled).sum();
    let closed: u64 = departments.iter().map(|row| row.closed).sum();
    proto::LeadershipReportResponse {
        jurisdiction: jurisdiction.to_owned(),
        from: period.from.to_string(),
        to: period.to.to_string(),
        balance: facts
            .balance
            .iter()
            .map(|row| proto::RegionalBalanceRow {
                jurisdiction: row.jurisdiction.to_string(),
                category: row.category.to_wire(),
                approved: row.approved,
                active: row.active,
                surplus: row.surplus,
            })
            .collect(),
        findings: leadership::tally_findings(&facts.findings, period)
            .into_iter()
            .map(|row| proto::RuleFindingsRow {
                code: row.code.to_wire(),
                raised: row.raised,
                closed: row.closed,
                open_at_end: row.open_at_end,
            })
            .collect(),
        closure_permille: leadership::permille(closed, handled),
        overdue: departments.iter().map(|row| row.overdue).sum(),
        departments: departments
            .iter()
            .map(|row| proto::DepartmentClosureRow {
                jurisdiction: row.jurisdiction.clone(),
                department_uscc: row.department.clone(),
                department_name: name(&row.department),
                handled: row.handled,
                closed: row.closed,
                overdue: row.overdue,
                closure_permille: row.permille(),
            })
            .collect(),
        penalties: facts
            .penalties
            .iter()
            .map(|row| proto::PenaltyLine {
                institution_uscc: row.institution.clone(),
                institution_name: name(&row.institution),
                kind: row.kind.to_wire(),
                cut: row.cut,
                text: row.text.clone(),
                imposed_on: row.imposed_on.to_string(),
            })
            .collect(),
        bulletins: facts
            .bulletins
            .iter()
            .map(|row| proto::BulletinLine {
                id: row.id.clone(),
                case_id: row.case_id.clone(),
                published_on: row.published_on.to_string(),
                text: row.text.clone(),
            })
            .collect(),
        campaigns_kept: true,
        campaigns: facts
            .campaigns
            .iter()
            .map(|row| proto::CampaignLine {
                id: row.id.clone(),
                title: row.title.clone(),
                closed: row.closed,
                opened_on: row.opened_on.to_string(),
                institutions: row.institutions,
                declared: row.declared,
                late: row.late,
                missing: row.institutions.saturating_sub(row.declared),
                undeclared_items: row.undeclared_items,
            })
            .collect(),
        document: Vec::new(),
        media_type: String::new(),
    }
}

/// The report rendered as `format` wants, with its media type.
pub fn render(
    figures: &proto::LeadershipReportResponse,
    format: proto::ReportFormat,
    lang: Lang,
    font: &std::path::Path,
) -> Result<(Vec<u8>, String), Error> {
    let document = report::layout(figures, lang);
    match format {
        proto::ReportFormat::Unspecified => Ok((Vec::new(), String::new())),
        proto::ReportFormat::Html => Ok((
            report::html::render(&document)?.into_bytes(),
            "text/html; charset=utf-8".into(),
        )),
        proto::ReportFormat::Pdf => {
            let font = report::pdf::load_font(font)?;
            Ok((
                report::pdf::render(&document, &font)?,
                "application/pdf".into(),
            ))
        }
    }
}

#[tonic::async_trait]
impl proto::report_service_server::ReportService for Hub {
    async fn leadership_report(
        &self,
        request: Request<proto::LeadershipReportRequest>,
    ) -> Result<Response<proto::LeadershipReportResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let from = parse_date(&message.from).map_err(|reason| Error::invalid("from", reason))?;
        let to = parse_date(&message.to).map_err(|reason| Error::invalid("to", reason))?;
        let period = Period::new(from, to).map_err(|reason| Error::invalid("to", reason))?;
        let format = proto::ReportFormat::try_from(message.format)
            .map_err(|_| Error::invalid("format", "is not a known format"))?;
        let lang = if message.language.trim() == "en" {
            Lang::En
        } else {
            Lang::Zh
        };
        let facts = self.store.leadership_facts(&jurisdiction, period).await?;
        let mut figures = figures(jurisdiction.as_str(), period, &facts);
        // Penalties' reasons are free text that may name someone: masked per reader.
        let reader = self.reader(&caller.agency).await?;
        for penalty in &mut figures.penalties {
            penalty.text = reader.text(&penalty.text);
        }
        let font = self.report_font.clone();
        let (document, media_type) = {
            let figures = figures.clone();
            tokio::task::spawn_blocking(move || render(&figures, format, lang, &font))
                .await
                .map_err(|error| {
                    Error::Internal(format!("the report's rendering failed: {error}"))
                })??
        };
        figures.document = document;
        figures.media_type = media_type;
        Ok(Response::new(figures))
    }
}
