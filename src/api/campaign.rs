//! CampaignService: special inspections and self-inspection declarations (专项检查、检查和自查相结合).
//! Thin: messages become domain values here, the store keeps and compares them. Also the
//! campaign part of `ApplicationService.ReviewApplication`'s answer.

use tonic::{Request, Response, Status};

use super::Hub;
use super::convert::{
    DEFAULT_PAGE, MAX_PAGE, Wire, date, next_token, optional, page_size, request_jurisdiction,
    request_key, request_uscc, timestamp, visible, wire_enums,
};
use super::personal::Reader;
use super::policy::caller;
use crate::domain::Period;
use crate::domain::campaign::{CampaignPeriod, CampaignState, DeclaredProblem, Standing};
use crate::domain::findings::{FindingKey, RuleCode};
use crate::domain::ids::ResidentId;
use crate::error::Error;
use crate::proto;
use crate::store::campaign::{
    Campaign, CampaignProgress, Declaration, Institutions, NewCampaign, NewDeclaration, ReportLine,
};

wire_enums! {
    CampaignState => proto::CampaignState,
    Standing => proto::Standing,
}

/// Most campaigns a page lists: each one's counts are worked out over its whole scope.
const MAX_CAMPAIGNS: u32 = 500;
/// Campaigns a page lists when the request asks for no number.
const DEFAULT_CAMPAIGNS: u32 = 100;

fn month(field: &str, value: &str) -> Result<Period, Error> {
    Period::parse(value).map_err(|reason| Error::invalid(field, reason))
}

fn codes(field: &str, raw: &[i32]) -> Result<Vec<RuleCode>, Error> {
    let mut codes = raw
        .iter()
        .map(|&raw| {
            RuleCode::from_wire(raw)
                .filter(|code| *code != RuleCode::RegionalBalance)
                .ok_or_else(|| Error::invalid(field, format!("{raw} is not a rule of findings")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    codes.sort();
    codes.dedup();
    Ok(codes)
}

/// A declared subject as findings name it: a resident ID in its canonical form (a person token
/// stands for one), any other record as sent.
fn declared_subject(reader: &Reader, subject: &str) -> String {
    let subject = subject.trim();
    if let Ok(id) = ResidentId::parse(subject) {
        return id.as_str().to_owned();
    }
    reader
        .tokens()
        .person_of(subject)
        .map_or_else(|| subject.to_owned(), |id| id.as_str().to_owned())
}

/// A problem's subject as a reader sees it: a person token for a resident ID it sees masked.
fn read_problem(reader: &Reader, problem: &mut proto::Problem) {
    if !reader.sight.resident_ids
        && let Ok(person) = ResidentId::parse(&problem.subject)
    {
        problem.subject = reader.tokens().person(&person);
    }
    problem.note = reader.text(&problem.note);
}

fn declared_message(problem: &DeclaredProblem) -> proto::Problem {
    proto::Problem {
        code: problem.code.to_wire(),
        subject: problem.subject.clone(),
        period: problem.period.clone(),
        note: problem.note.clone(),
        institution_uscc: String::new(),
    }
}

fn found_message(key: &FindingKey) -> proto::Problem {
    proto::Problem {
        code: key.code.to_wire(),
        subject: key.subject.clone(),
        period: key.period.clone(),
        note: String::new(),
        institution_uscc: key.institution.clone(),
    }
}

/// A campaign as the contract carries it.
pub(super) fn campaign_message(campaign: &Campaign) -> proto::Campaign {
    proto::Campaign {
        id: campaign.id.clone(),
        jurisdiction: campaign.jurisdiction.clone(),
        title: campaign.title.clone(),
        codes: campaign.codes.iter().map(|c| c.to_wire()).collect(),
        period_from: campaign.period.from.to_string(),
        period_to: campaign.period.to.to_string(),
        deadline: campaign.deadline.to_string(),
        state: campaign.state.to_wire(),
        opened_by: campaign.opened_by.clone(),
        opened_at: Some(timestamp(campaign.opened_at)),
        closed_at: campaign.closed_at.map(timestamp),
        institutions: u32::try_from(campaign.institutions).unwrap_or(u32::MAX),
    }
}

fn progress_message(progress: &CampaignProgress) -> proto::CampaignProgress {
    let p = &progress.progress;
    proto::CampaignProgress {
        campaign: Some(campaign_message(&progress.campaign)),
        institutions: p.institutions,
        declared: p.declared,
        declared_late: p.declared_late,
        awaiting: p.awaiting,
        missing: p.missing,
        matching: p.matching,
        discrepant: p.discrepant,
        undeclared_problems: p.undeclared_problems,
        unconfirmed_problems: p.unconfirmed_problems,
        items_opened: progress.items_opened,
    }
}

/// One institution's comparison as a reader sees it.
pub(super) fn line_message(reader: &Reader, line: &ReportLine) -> proto::InstitutionComparison {
    let c = &line.comparison;
    let found = |keys: &[FindingKey]| -> Vec<proto::Problem> {
        keys.iter()
            .map(|key| {
                let mut problem = found_message(key);
                read_problem(reader, &mut problem);
                problem
            })
            .collect()
    };
    proto::InstitutionComparison {
        institution_uscc: c.institution.clone(),
        jurisdiction: line.jurisdiction.clone(),
        standing: c.standing.to_wire(),
        late: c.late,
        matched: found(&c.matched),
        undeclared: found(&c.undeclared),
        unconfirmed: c
            .unconfirmed
            .iter()
            .map(|p| {
                let mut problem = declared_message(p);
                read_problem(reader, &mut problem);
                problem
            })
            .collect(),
        shown: found(&c.shown),
        escalation_level: u32::try_from(line.escalation_level).unwrap_or_default(),
        ledger_item_ids: line.items.clone(),
    }
}

/// A declaration as a reader sees it.
pub(super) fn declaration_message(
    reader: &Reader,
    declaration: &Declaration,
) -> proto::Declaration {
    proto::Declaration {
        campaign_id: declaration.campaign_id.clone(),
        institution_uscc: declaration.institution.clone(),
        problems: declaration
            .problems
            .iter()
            .map(|p| {
                let mut problem = declared_message(p);
                read_problem(reader, &mut problem);
                problem
            })
            .collect(),
        nothing_found: declaration.nothing_found,
        signed_by: reader.text(&declaration.signed_by),
        declared_by: declaration.declared_by.clone(),
        declared_at: Some(timestamp(declaration.declared_at)),
        late: declaration.late,
    }
}

impl Hub {
    /// A campaign the caller may see.
    async fn visible_campaign(
        &self,
        agency: &crate::domain::Agency,
        id: &str,
    ) -> Result<Campaign, Error> {
        let campaign = self
            .store
            .campaign(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no campaign `{id}`")))?;
        // A district's agencies answer a city's campaign for their institutions: they see it too.
        let theirs = visible(agency, &campaign.jurisdiction).is_ok()
            || crate::domain::Jurisdiction::parse(&campaign.jurisdiction)
                .is_ok_and(|j| j.contains(&agency.jurisdiction));
        if theirs {
            Ok(campaign)
        } else {
            Err(Error::PermissionDenied(format!(
                "campaign `{id}` lies outside the jurisdiction of {agency}"
            )))
        }
    }

    /// The report of a campaign: the counts, and a page of its institutions.
    async fn report(
        &self,
        reader: &Reader,
        campaign: Campaign,
        standing: Option<Standing>,
        page_token: &str,
        page: u32,
    ) -> Result<proto::CampaignReport, Error> {
        let lines = self
            .store
            .campaign_lines(&campaign, Institutions::Page(page_token, page))
            .await?;
        let next_page_token = next_token(&lines, page, |l| &l.comparison.institution);
        let closing = campaign.state == CampaignState::Closed;
        let closing_note = campaign.closing_note.clone().unwrap_or_default();
        let progress = self.store.campaign_progress(campaign).await?;
        Ok(proto::CampaignReport {
            progress: Some(progress_message(&progress)),
            institutions: lines
                .iter()
                .filter(|l| standing.is_none_or(|s| l.comparison.standing == s))
                .map(|l| line_message(reader, l))
                .collect(),
            next_page_token,
            closing,
            closing_note: reader.text(&closing_note),
        })
    }
}

#[tonic::async_trait]
impl proto::campaign_service_server::CampaignService for Hub {
    async fn open_campaign(
        &self,
        request: Request<proto::OpenCampaignRequest>,
    ) -> Result<Response<proto::Campaign>, Status> {
        let caller = caller(&request)?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        let codes = codes("codes", &message.codes)?;
        let period = CampaignPeriod::new(
            month("period_from", &message.period_from)?,
            month("period_to", &message.period_to)?,
        )
        .map_err(|reason| Error::invalid("period_to", reason))?;
        let institutions = message
            .institution_usccs
            .iter()
            .map(|uscc| request_uscc("institution_usccs", uscc))
            .collect::<Result<Vec<_>, _>>()?;
        let campaign = self
            .store
            .open_campaign(
                &caller.agency,
                NewCampaign {
                    jurisdiction: request_jurisdiction(
                        &caller.agency,
                        "jurisdiction",
                        &message.jurisdiction,
                    )?,
                    title: message.title,
                    codes,
                    period,
                    deadline: date("deadline", &message.deadline)?,
                    institutions,
                },
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(campaign_message(&campaign)))
    }

    async fn get_campaign(
        &self,
        request: Request<proto::CampaignRef>,
    ) -> Result<Response<proto::CampaignProgress>, Status> {
        let caller = caller(&request)?;
        let campaign = self
            .visible_campaign(&caller.agency, &request.into_inner().campaign_id)
            .await?;
        let progress = self.store.campaign_progress(campaign).await?;
        Ok(Response::new(progress_message(&progress)))
    }

    async fn list_campaigns(
        &self,
        request: Request<proto::ListCampaignsRequest>,
    ) -> Result<Response<proto::ListCampaignsResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let limit = page_size(message.page_size, DEFAULT_CAMPAIGNS, MAX_CAMPAIGNS);
        let campaigns = self
            .store
            .campaigns_page(
                &jurisdiction,
                optional("state", message.state)?,
                &message.page_token,
                limit,
            )
            .await?;
        let next_page_token = next_token(&campaigns, limit, |c| &c.id);
        let mut listed = Vec::with_capacity(campaigns.len());
        for campaign in campaigns {
            listed.push(progress_message(
                &self.store.campaign_progress(campaign).await?,
            ));
        }
        Ok(Response::new(proto::ListCampaignsResponse {
            campaigns: listed,
            next_page_token,
        }))
    }

    async fn declare(
        &self,
        request: Request<proto::DeclareRequest>,
    ) -> Result<Response<proto::Declaration>, Status> {
        let caller = caller(&request)?;
        let reader = self.reader(&caller.agency).await?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        let problems = message
            .problems
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(DeclaredProblem {
                    code: RuleCode::from_wire(p.code).ok_or_else(|| {
                        Error::invalid(format!("problems[{i}].code"), "is required")
                    })?,
                    subject: declared_subject(&reader, &p.subject),
                    period: p.period.trim().to_owned(),
                    note: p.note.clone(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let declaration = self
            .store
            .declare(
                &caller.agency,
                NewDeclaration {
                    campaign_id: message.campaign_id,
                    institution: request_uscc("institution_uscc", &message.institution_uscc)?,
                    problems,
                    nothing_found: message.nothing_found,
                    signed_by: message.signed_by,
                },
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(declaration_message(&reader, &declaration)))
    }

    async fn list_declarations(
        &self,
        request: Request<proto::ListDeclarationsRequest>,
    ) -> Result<Response<proto::ListDeclarationsResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let campaign = self
            .visible_campaign(&caller.agency, &message.campaign_id)
            .await?;
        // Every declaration is the office's (and those who inspect it); a district's agency has
        // its own in the answers to its declarations.
        visible(&caller.agency, &campaign.jurisdiction)?;
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let declarations = self
            .store
            .declarations(&campaign.id, Institutions::Page(&message.page_token, limit))
            .await?;
        let reader = self.reader(&caller.agency).await?;
        Ok(Response::new(proto::ListDeclarationsResponse {
            next_page_token: next_token(&declarations, limit, |d| &d.institution),
            declarations: declarations
                .iter()
                .map(|d| declaration_message(&reader, d))
                .collect(),
        }))
    }

    async fn get_report(
        &self,
        request: Request<proto::CampaignReportRequest>,
    ) -> Result<Response<proto::CampaignReport>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let campaign = self
            .visible_campaign(&caller.agency, &message.campaign_id)
            .await?;
        // The whole comparison is the office's (and those who inspect it); a district's agency
        // reads its own institutions' lines through the review and its declarations.
        visible(&caller.agency, &campaign.jurisdiction)?;
        let reader = self.reader(&caller.agency).await?;
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let report = self
            .report(
                &reader,
                campaign,
                optional("standing", message.standing)?,
                &message.page_token,
                limit,
            )
            .await?;
        Ok(Response::new(report))
    }

    async fn open_undeclared_items(
        &self,
        request: Request<proto::OpenUndeclaredItemsRequest>,
    ) -> Result<Response<proto::OpenUndeclaredItemsResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let (item_ids, opened) = self
            .store
            .open_undeclared_items(
                &caller.agency,
                &message.campaign_id,
                date("due_on", &message.due_on)?,
            )
            .await?;
        Ok(Response::new(proto::OpenUndeclaredItemsResponse {
            item_ids,
            opened,
        }))
    }

    async fn close_campaign(
        &self,
        request: Request<proto::CloseCampaignRequest>,
    ) -> Result<Response<proto::CampaignReport>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let campaign = self
            .store
            .close_campaign(&caller.agency, &message.campaign_id, &message.note)
            .await?;
        let reader = self.reader(&caller.agency).await?;
        let report = self.report(&reader, campaign, None, "", MAX_PAGE).await?;
        Ok(Response::new(report))
    }
}
