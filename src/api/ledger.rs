//! The follow-through services: LedgerService (the rectification ledger, its reconciliation,
//! penalties), ApplicationService (applications and the gate of overdue items) and CaseService
//! (public reports, transfers, joint inspections, bulletins). Thin: messages become domain
//! values here, the store does the rest.

use chrono::NaiveDate;
use tonic::{Request, Response, Status};

use super::Hub;
use super::convert::{
    DEFAULT_PAGE, MAX_PAGE, Wire, date, day_range, next_token, optional, page_size,
    request_jurisdiction, request_key, request_uscc, timestamp, visible, wire_enums,
};
use super::personal::Reader;
use super::policy::caller;
use crate::domain::assignment::LevelRow;
use crate::domain::findings::{FindingKey, RuleCode};
use crate::domain::ids::ResidentId;
use crate::domain::ledger::{
    ApplicationKind, ApplicationState, CaseState, ItemAction, ItemState, MatterKind, PenaltyKind,
    ReportChannel, ReportRow, TransferKind, is_overdue,
};
use crate::domain::{
    Agency, AgencyKind, Coded, Grade, Jurisdiction, LeaderLevel, LeaderPosition, QuotaCategory,
};
use crate::error::Error;
use crate::proto;
use crate::store::feed::FollowUp;
use crate::store::ledger::{
    Application, ApplicationFilter, ApplicationRequest, Bulletin, Case, CaseFilter, Chained,
    ItemLevel, LedgerItem, NewCase, NewItem, Penalty, Step, Transfer, TransferFilter,
};

// The domain's enums of follow-through tied to the contract's by name, as `convert` ties the others.
wire_enums! {
    ItemState => proto::ItemState,
    ItemAction => proto::ItemAction,
    CaseState => proto::CaseState,
    ReportChannel => proto::ReportChannel,
    ApplicationKind => proto::ApplicationKind,
    ApplicationState => proto::ApplicationState,
    PenaltyKind => proto::PenaltyKind,
    TransferKind => proto::TransferKind,
    MatterKind => proto::MatterKind,
}

pub(super) fn required<T: Wire>(field: &str, raw: i32) -> Result<T, Error> {
    T::from_wire(raw).ok_or_else(|| Error::invalid(field, "is required"))
}

fn version(raw: u64) -> Result<i64, Error> {
    i64::try_from(raw).map_err(|_| Error::invalid("expected_version", "is too large"))
}

/// Refuses to show a transfer to an agency it does not reach (the staffing office, which sends
/// them, sees every one of its jurisdiction).
fn reaches(agency: &Agency, transfer: &Transfer) -> Result<(), Error> {
    visible(agency, &transfer.jurisdiction)?;
    if agency.kind == AgencyKind::StaffingOffice
        || transfer
            .receipts
            .iter()
            .any(|(kind, _, _)| *kind == agency.kind)
    {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "transfer `{}` does not reach {}",
            transfer.id,
            agency.kind.with_article()
        )))
    }
}

/// A case as a reader sees it: the person concerned, the report, the outcome and the steps'
/// texts may name someone.
fn read_case(reader: &Reader, case: &mut proto::Case) {
    case.person = reader.text(&case.person);
    case.text = reader.text(&case.text);
    case.outcome = reader.text(&case.outcome);
    for step in &mut case.history {
        step.text = reader.text(&step.text);
    }
}

/// A transfer as a reader sees it: the covering note may name someone, and an alert's id holds
/// the finding's subject, a person token in place of a resident ID the reader sees masked.
fn read_transfer(reader: &Reader, transfer: &mut proto::MatterTransfer) {
    transfer.text = reader.text(&transfer.text);
    if transfer.matter == MatterKind::Alert.to_wire() {
        let mut parts: Vec<String> = transfer
            .matter_id
            .splitn(4, '|')
            .map(str::to_owned)
            .collect();
        if let Some(subject) = parts.get_mut(2)
            && let Ok(person) = ResidentId::parse(subject)
            && reader.text(subject) != *subject
        {
            *subject = reader.tokens().person(&person);
        }
        transfer.matter_id = parts.join("|");
    }
}

/// An application as a reader sees it: its free texts may name someone.
pub(super) fn read_application(reader: &Reader, application: &mut proto::Application) {
    application.reason = reader.text(&application.reason);
    application.override_reason = reader.text(&application.override_reason);
    application.decision_note = reader.text(&application.decision_note);
}

fn step_message(step: &Step) -> proto::Step {
    proto::Step {
        agency_id: step.agency_id.clone(),
        at: Some(timestamp(step.at)),
        from_state: step.from_state.clone(),
        to_state: step.to_state.clone(),
        text: step.text.clone(),
    }
}

pub(super) fn item_message(item: &LedgerItem, today: NaiveDate) -> proto::LedgerItem {
    proto::LedgerItem {
        id: item.id.clone(),
        jurisdiction: item.jurisdiction.clone(),
        department_uscc: item.department.clone(),
        title: item.title.clone(),
        finding: item.finding.as_ref().map(|key| proto::FindingRef {
            code: key.code.to_wire(),
            institution_uscc: key.institution.clone(),
            subject: key.subject.clone(),
            period: key.period.clone(),
        }),
        state: item.state.to_wire(),
        due_on: item.due_on.to_string(),
        overdue: is_overdue(item.due_on, item.state == ItemState::Closed, today),
        escalation_level: u32::try_from(item.escalation_level).unwrap_or_default(),
        version: u64::try_from(item.version).unwrap_or_default(),
        history: item.history.iter().map(step_message).collect(),
        levels: level_messages(&item.levels),
        waiting_on: waiting_on(&item.levels),
    }
}

/// An item's or a case's chain, top first.
fn level_messages(levels: &[ItemLevel]) -> Vec<proto::ItemLevel> {
    levels
        .iter()
        .map(|level| proto::ItemLevel {
            jurisdiction: level.jurisdiction.clone(),
            assigned_by: level.assigned_by.clone(),
            assigned_at: Some(timestamp(level.assigned_at)),
            confirmed_by: level.confirmed_by.clone().unwrap_or_default(),
            confirmed_at: level.confirmed_at.map(timestamp),
        })
        .collect()
}

/// The lowest level of a chain not yet confirmed (confirmations go from the bottom up); empty
/// when none.
fn waiting_on(levels: &[ItemLevel]) -> String {
    levels
        .iter()
        .rev()
        .find(|level| level.confirmed_by.is_none())
        .map(|level| level.jurisdiction.clone())
        .unwrap_or_default()
}

/// One level's line of the report by level.
pub fn level_row_message(row: &LevelRow) -> proto::LevelReportRow {
    proto::LevelReportRow {
        jurisdiction: row.jurisdiction.clone(),
        waiting: row.waiting,
        overdue: row.overdue,
        working: row.working,
    }
}

fn case_message(case: &Case, today: NaiveDate) -> proto::Case {
    proto::Case {
        id: case.id.clone(),
        jurisdiction: case.jurisdiction.clone(),
        channel: case.channel.to_wire(),
        institution_uscc: case.institution.clone().unwrap_or_default(),
        person: case.person.clone().unwrap_or_default(),
        text: case.text.clone(),
        owner: case.owner.clone(),
        state: case.state.to_wire(),
        due_on: case.due_on.to_string(),
        overdue: is_overdue(case.due_on, case.state == CaseState::Closed, today),
        escalation_level: u32::try_from(case.escalation_level).unwrap_or_default(),
        outcome: case.outcome.clone().unwrap_or_default(),
        version: u64::try_from(case.version).unwrap_or_default(),
        history: case.history.iter().map(step_message).collect(),
        opened_at: Some(timestamp(case.opened_at)),
        levels: level_messages(&case.levels),
        waiting_on: waiting_on(&case.levels),
    }
}

pub(super) fn application_message(application: &Application) -> proto::Application {
    let (note, by, record) = application.decision.clone().unwrap_or_default();
    proto::Application {
        id: application.id.clone(),
        department_uscc: application.department.clone(),
        kind: application.kind.to_wire(),
        state: application.state.to_wire(),
        reason: application.reason.clone(),
        applied_by: application.applied_by.clone(),
        override_reason: application.override_reason.clone().unwrap_or_default(),
        override_by: application.override_by.clone().unwrap_or_default(),
        decision_note: note,
        decided_by: by,
        registry_record: record.unwrap_or_default(),
        jurisdiction: application.jurisdiction.clone(),
        applied_at: Some(timestamp(application.applied_at)),
        decided_at: application.decided_at.map(timestamp),
    }
}

pub(super) fn penalty_message(penalty: &Penalty) -> proto::Penalty {
    proto::Penalty {
        id: penalty.id.clone(),
        item_id: penalty.item_id.clone(),
        institution_uscc: penalty.institution.clone(),
        kind: penalty.kind.to_wire(),
        category: penalty.category.map(Wire::to_wire).unwrap_or_default(),
        cut: penalty.cut,
        text: penalty.text.clone(),
        imposed_by: penalty.imposed_by.clone(),
        imposed_at: Some(timestamp(penalty.imposed_at)),
    }
}

fn agency_kind_wire(kind: AgencyKind) -> i32 {
    AgencyKind::ALL
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| i32::try_from(i + 1).ok())
        .unwrap_or_default()
}

fn agency_kind_from_wire(raw: i32) -> Option<AgencyKind> {
    usize::try_from(raw)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| AgencyKind::ALL.get(i).copied())
}

fn transfer_message(transfer: &Transfer) -> proto::MatterTransfer {
    proto::MatterTransfer {
        id: transfer.id.clone(),
        kind: transfer.kind.to_wire(),
        matter: transfer.matter.to_wire(),
        matter_id: transfer.matter_id.clone(),
        jurisdiction: transfer.jurisdiction.clone(),
        text: transfer.text.clone(),
        evidence_bundle: String::new(),
        receipts: transfer
            .receipts
            .iter()
            .map(|(kind, by, at)| proto::Receipt {
                agency: agency_kind_wire(*kind),
                acknowledged_by: by.clone().unwrap_or_default(),
                acknowledged_at: at.map(timestamp),
            })
            .collect(),
        sent_by: transfer.sent_by.clone(),
        sent_at: Some(timestamp(transfer.sent_at)),
    }
}

fn bulletin_message(bulletin: &Bulletin) -> proto::Bulletin {
    proto::Bulletin {
        id: bulletin.id.clone(),
        case_id: bulletin.case_id.clone(),
        jurisdiction: bulletin.jurisdiction.clone(),
        text: bulletin.text.clone(),
    }
}

/// A follow-up event's payload; IDS mode leaves out the history and text, which may name people.
pub fn follow_up_message(follow_up: &FollowUp, ids_only: bool) -> proto::FollowUp {
    proto::FollowUp {
        matter: MatterKind::from_code(&follow_up.matter)
            .map(Wire::to_wire)
            .unwrap_or_default(),
        id: follow_up.id.clone(),
        state: follow_up.state.clone(),
        institution_uscc: follow_up.institution.clone(),
        escalation_level: u32::try_from(follow_up.escalation_level).unwrap_or_default(),
        transfer_id: follow_up.transfer_id.clone(),
        text: if ids_only {
            String::new()
        } else {
            follow_up.text.clone()
        },
        history: if ids_only {
            Vec::new()
        } else {
            follow_up.history.iter().map(step_message).collect()
        },
    }
}

/// One line of the ledger's reconciliation.
pub fn report_row_message(row: &ReportRow) -> proto::LedgerReportRow {
    proto::LedgerReportRow {
        jurisdiction: row.jurisdiction.clone(),
        department_uscc: row.department.clone(),
        opened: row.opened,
        closed: row.closed,
        overdue: row.overdue,
        oldest_open_on: row
            .oldest_open_on
            .map(|d| d.to_string())
            .unwrap_or_default(),
    }
}

impl Hub {
    fn today(&self) -> NaiveDate {
        self.store.checks().clock.today()
    }

    /// A case as the caller reads it, after a move of its chain.
    async fn case_answer(
        &self,
        agency: &Agency,
        case: &Case,
    ) -> Result<Response<proto::Case>, Status> {
        let mut message = case_message(case, self.today());
        read_case(&self.reader(agency).await?, &mut message);
        Ok(Response::new(message))
    }
}

#[tonic::async_trait]
impl proto::ledger_service_server::LedgerService for Hub {
    async fn open_item(
        &self,
        request: Request<proto::OpenItemRequest>,
    ) -> Result<Response<proto::LedgerItem>, Status> {
        let caller = caller(&request)?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        let finding = match &message.finding {
            Some(f) => Some(FindingKey {
                code: RuleCode::from_wire(f.code)
                    .ok_or_else(|| Error::invalid("finding.code", "is required"))?,
                institution: f.institution_uscc.clone(),
                subject: f.subject.clone(),
                period: f.period.clone(),
            }),
            None => None,
        };
        let department = if message.department_uscc.is_empty() {
            None
        } else {
            Some(request_uscc("department_uscc", &message.department_uscc)?)
        };
        let item = self
            .store
            .open_item(
                &caller.agency,
                NewItem {
                    department,
                    title: message.title,
                    due_on: date("due_on", &message.due_on)?,
                    finding,
                },
                key.as_ref(),
            )
            .await?;
        let mut message = item_message(&item, self.today());
        self.reader(&caller.agency).await?.ledger_item(&mut message);
        Ok(Response::new(message))
    }

    async fn move_item(
        &self,
        request: Request<proto::MoveItemRequest>,
    ) -> Result<Response<proto::LedgerItem>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let item = self
            .store
            .move_item(
                &caller.agency,
                &message.item_id,
                required("action", message.action)?,
                version(message.expected_version)?,
                &message.text,
            )
            .await?;
        let mut message = item_message(&item, self.today());
        self.reader(&caller.agency).await?.ledger_item(&mut message);
        Ok(Response::new(message))
    }

    async fn get_item(
        &self,
        request: Request<proto::IdRequest>,
    ) -> Result<Response<proto::LedgerItem>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().id;
        let item = self
            .store
            .item(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no ledger item `{id}`")))?;
        visible(&caller.agency, &item.jurisdiction)?;
        let mut message = item_message(&item, self.today());
        self.reader(&caller.agency).await?.ledger_item(&mut message);
        Ok(Response::new(message))
    }

    async fn list_items(
        &self,
        request: Request<proto::ListItemsRequest>,
    ) -> Result<Response<proto::ListItemsResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let department =
            (!message.department_uscc.is_empty()).then_some(message.department_uscc.as_str());
        let today = self.today();
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let items = self
            .store
            .items_page(
                &jurisdiction,
                department,
                message.overdue_only.then_some(today),
                &message.page_token,
                limit,
            )
            .await?;
        // Item ids say nothing about anyone: the last one is the token.
        let next_page_token = if items.len() == limit as usize {
            items.last().map(|i| i.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let reader = self.reader(&caller.agency).await?;
        Ok(Response::new(proto::ListItemsResponse {
            items: items
                .iter()
                .map(|item| {
                    let mut message = item_message(item, today);
                    reader.ledger_item(&mut message);
                    message
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn report(
        &self,
        request: Request<proto::LedgerReportRequest>,
    ) -> Result<Response<proto::LedgerReport>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let from = (!message.from.is_empty())
            .then(|| date("from", &message.from))
            .transpose()?;
        let to = if message.to.is_empty() {
            self.today()
        } else {
            date("to", &message.to)?
        };
        let rows = self.store.ledger_report(&jurisdiction, from, to).await?;
        let by_level = self
            .store
            .waiting_by_level(Chained::Item, &jurisdiction, to)
            .await?;
        let cases_by_level = self
            .store
            .waiting_by_level(Chained::Case, &jurisdiction, to)
            .await?;
        Ok(Response::new(proto::LedgerReport {
            rows: rows.iter().map(report_row_message).collect(),
            by_level: by_level.iter().map(level_row_message).collect(),
            cases_by_level: cases_by_level.iter().map(level_row_message).collect(),
        }))
    }

    async fn impose_penalty(
        &self,
        request: Request<proto::ImposePenaltyRequest>,
    ) -> Result<Response<proto::Penalty>, Status> {
        let caller = caller(&request)?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        let penalty = self
            .store
            .impose_penalty(
                &caller.agency,
                &message.item_id,
                required("kind", message.kind)?,
                QuotaCategory::from_wire(message.category),
                message.cut,
                &message.text,
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(penalty_message(&penalty)))
    }

    async fn list_penalties(
        &self,
        request: Request<proto::ListPenaltiesRequest>,
    ) -> Result<Response<proto::ListPenaltiesResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let uscc = request_uscc("institution_uscc", &message.institution_uscc)?;
        let jurisdiction = self
            .store
            .jurisdiction_of(&uscc)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no institution {uscc}")))?;
        visible(&caller.agency, jurisdiction.as_str())?;
        // The token is the last penalty's `imposed_at.id`.
        let after = if message.page_token.is_empty() {
            None
        } else {
            let bad = || Error::invalid("page_token", "is not a token this hub gave");
            let (at, id) = message.page_token.split_once('.').ok_or_else(bad)?;
            Some((at.parse::<i64>().map_err(|_| bad())?, id))
        };
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let penalties = self.store.penalties_page(&uscc, after, limit).await?;
        let next_page_token = if penalties.len() == limit as usize {
            penalties
                .last()
                .map(|p| format!("{}.{}", p.imposed_at, p.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListPenaltiesResponse {
            penalties: penalties.iter().map(penalty_message).collect(),
            next_page_token,
        }))
    }

    async fn assign_item(
        &self,
        request: Request<proto::AssignItemRequest>,
    ) -> Result<Response<proto::LedgerItem>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let to = Jurisdiction::parse(&message.to).map_err(|reason| Error::invalid("to", reason))?;
        let item = self
            .store
            .assign_item(
                &caller.agency,
                &message.item_id,
                &to,
                version(message.expected_version)?,
                &message.text,
            )
            .await?;
        let mut message = item_message(&item, self.today());
        self.reader(&caller.agency).await?.ledger_item(&mut message);
        Ok(Response::new(message))
    }

    async fn confirm_level(
        &self,
        request: Request<proto::ConfirmLevelRequest>,
    ) -> Result<Response<proto::LedgerItem>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let item = self
            .store
            .confirm_level(
                &caller.agency,
                &message.item_id,
                version(message.expected_version)?,
                &message.text,
            )
            .await?;
        let mut message = item_message(&item, self.today());
        self.reader(&caller.agency).await?.ledger_item(&mut message);
        Ok(Response::new(message))
    }
}

#[tonic::async_trait]
impl proto::application_service_server::ApplicationService for Hub {
    async fn apply(
        &self,
        request: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::Application>, Status> {
        let caller = caller(&request)?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        let department = request_uscc("department_uscc", &message.department_uscc)?;
        let kind: ApplicationKind = required("kind", message.kind)?;
        let details = ApplicationRequest {
            category: QuotaCategory::from_wire(message.category).map(|c| c.code().to_owned()),
            count: message.count,
            level: LeaderLevel::from_wire(message.level).map(|l| l.code().to_owned()),
            position: LeaderPosition::from_wire(message.position).map(|p| p.code().to_owned()),
            grade: Grade::from_wire(message.grade).map(|g| g.code().to_owned()),
            valid_until: (!message.valid_until.is_empty())
                .then(|| date("valid_until", &message.valid_until).map(|d| d.to_string()))
                .transpose()?,
        };
        let override_reason = message.override_reason.trim();
        let application = self
            .store
            .apply(
                &caller.agency,
                &department,
                kind,
                details,
                &message.reason,
                (!override_reason.is_empty()).then_some(override_reason),
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(application_message(&application)))
    }

    async fn decide(
        &self,
        request: Request<proto::DecideRequest>,
    ) -> Result<Response<proto::Application>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let application = self
            .store
            .decide(
                &caller.agency,
                &message.application_id,
                message.approve,
                &message.note,
            )
            .await?;
        Ok(Response::new(application_message(&application)))
    }

    async fn get_application(
        &self,
        request: Request<proto::IdRequest>,
    ) -> Result<Response<proto::Application>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().id;
        let application = self
            .store
            .application(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no application `{id}`")))?;
        visible(&caller.agency, &application.jurisdiction)?;
        let mut message = application_message(&application);
        read_application(&self.reader(&caller.agency).await?, &mut message);
        Ok(Response::new(message))
    }

    async fn list_applications(
        &self,
        request: Request<proto::ListApplicationsRequest>,
    ) -> Result<Response<proto::ListApplicationsResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let filter = ApplicationFilter {
            state: optional("state", message.state)?,
            kind: optional("kind", message.kind)?,
            department: (!message.department_uscc.trim().is_empty())
                .then(|| request_uscc("department_uscc", &message.department_uscc))
                .transpose()?
                .map(|uscc| uscc.as_str().to_owned()),
            applied: day_range(
                ("applied_from", &message.applied_from),
                ("applied_to", &message.applied_to),
            )?,
        };
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let applications = self
            .store
            .applications_page(&jurisdiction, &filter, &message.page_token, limit)
            .await?;
        let reader = self.reader(&caller.agency).await?;
        Ok(Response::new(proto::ListApplicationsResponse {
            next_page_token: next_token(&applications, limit, |a| &a.id),
            applications: applications
                .iter()
                .map(|application| {
                    let mut message = application_message(application);
                    read_application(&reader, &mut message);
                    message
                })
                .collect(),
        }))
    }
    async fn review_application(
        &self,
        request: Request<proto::ReviewApplicationRequest>,
    ) -> Result<Response<proto::ApplicationReview>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().application_id;
        let application = self
            .store
            .application(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no application `{id}`")))?;
        visible(&caller.agency, &application.jurisdiction)?;
        let review = self.store.application_review(application).await?;
        let reader = self.reader(&caller.agency).await?;
        let today = self.today();
        let application = |a: &Application| {
            let mut message = application_message(a);
            read_application(&reader, &mut message);
            message
        };
        Ok(Response::new(proto::ApplicationReview {
            application: Some(application(&review.application)),
            open_findings: review
                .open_findings
                .iter()
                .map(|finding| {
                    let mut message = super::convert::finding_message(finding);
                    reader.finding(&mut message);
                    message
                })
                .collect(),
            open_findings_total: review.open_findings_total,
            ledger_items: review
                .items
                .iter()
                .map(|item| {
                    let mut message = item_message(item, today);
                    reader.ledger_item(&mut message);
                    message
                })
                .collect(),
            penalties: review.penalties.iter().map(penalty_message).collect(),
            campaigns: review
                .campaigns
                .iter()
                .map(|(campaign, line, declaration)| proto::CampaignStanding {
                    campaign: Some(super::campaign::campaign_message(campaign)),
                    comparison: Some(super::campaign::line_message(&reader, line)),
                    declaration: declaration
                        .as_ref()
                        .map(|d| super::campaign::declaration_message(&reader, d)),
                })
                .collect(),
            earlier_applications: review.earlier.iter().map(application).collect(),
        }))
    }
}

#[tonic::async_trait]
impl proto::case_service_server::CaseService for Hub {
    async fn take_report(
        &self,
        request: Request<proto::ReportRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let caller = caller(&request)?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        if message.text.trim().is_empty() {
            return Err(Error::invalid("text", "says what is reported").into());
        }
        if message.owner.trim().is_empty() {
            return Err(Error::invalid("owner", "names who is responsible").into());
        }
        let institution = (!message.institution_uscc.is_empty())
            .then(|| request_uscc("institution_uscc", &message.institution_uscc))
            .transpose()?;
        let case = self
            .store
            .take_report(
                &caller.agency,
                NewCase {
                    jurisdiction: request_jurisdiction(
                        &caller.agency,
                        "jurisdiction",
                        &message.jurisdiction,
                    )?,
                    channel: required("channel", message.channel)?,
                    institution,
                    person: (!message.person.is_empty()).then_some(message.person),
                    text: message.text,
                    owner: message.owner,
                    due_on: date("due_on", &message.due_on)?,
                },
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(case_message(&case, self.today())))
    }

    async fn move_case(
        &self,
        request: Request<proto::MoveCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let case = self
            .store
            .move_case(
                &caller.agency,
                &message.case_id,
                required("to", message.to)?,
                version(message.expected_version)?,
                &message.text,
            )
            .await?;
        Ok(Response::new(case_message(&case, self.today())))
    }

    async fn get_case(
        &self,
        request: Request<proto::IdRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().id;
        let case = self
            .store
            .case(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no case `{id}`")))?;
        visible(&caller.agency, &case.jurisdiction)?;
        let mut message = case_message(&case, self.today());
        read_case(&self.reader(&caller.agency).await?, &mut message);
        Ok(Response::new(message))
    }

    async fn list_cases(
        &self,
        request: Request<proto::ListCasesRequest>,
    ) -> Result<Response<proto::ListCasesResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let today = self.today();
        let filter = CaseFilter {
            state: optional("state", message.state)?,
            institution: (!message.institution_uscc.trim().is_empty())
                .then(|| request_uscc("institution_uscc", &message.institution_uscc))
                .transpose()?
                .map(|uscc| uscc.as_str().to_owned()),
            overdue_on: message.overdue_only.then_some(today),
            opened: day_range(
                ("opened_from", &message.opened_from),
                ("opened_to", &message.opened_to),
            )?,
        };
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let cases = self
            .store
            .cases_page(&jurisdiction, &filter, &message.page_token, limit)
            .await?;
        let reader = self.reader(&caller.agency).await?;
        Ok(Response::new(proto::ListCasesResponse {
            next_page_token: next_token(&cases, limit, |c| &c.id),
            cases: cases
                .iter()
                .map(|case| {
                    let mut message = case_message(case, today);
                    read_case(&reader, &mut message);
                    message
                })
                .collect(),
        }))
    }

    async fn get_transfer(
        &self,
        request: Request<proto::IdRequest>,
    ) -> Result<Response<proto::MatterTransfer>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().id;
        let transfer = self
            .store
            .transfer_record(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no transfer `{id}`")))?;
        reaches(&caller.agency, &transfer)?;
        let mut message = transfer_message(&transfer);
        read_transfer(&self.reader(&caller.agency).await?, &mut message);
        Ok(Response::new(message))
    }

    async fn list_transfers(
        &self,
        request: Request<proto::ListTransfersRequest>,
    ) -> Result<Response<proto::ListTransfersResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let filter = TransferFilter {
            reaching: (caller.agency.kind != AgencyKind::StaffingOffice)
                .then_some(caller.agency.kind),
            kind: optional("kind", message.kind)?,
            matter: optional("matter", message.matter)?,
            unacknowledged_only: message.unacknowledged_only,
            sent: day_range(
                ("sent_from", &message.sent_from),
                ("sent_to", &message.sent_to),
            )?,
        };
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let transfers = self
            .store
            .transfers_page(&jurisdiction, &filter, &message.page_token, limit)
            .await?;
        let reader = self.reader(&caller.agency).await?;
        Ok(Response::new(proto::ListTransfersResponse {
            next_page_token: next_token(&transfers, limit, |t| &t.id),
            transfers: transfers
                .iter()
                .map(|transfer| {
                    let mut message = transfer_message(transfer);
                    read_transfer(&reader, &mut message);
                    message
                })
                .collect(),
        }))
    }

    async fn transfer(
        &self,
        request: Request<proto::TransferRequest>,
    ) -> Result<Response<proto::MatterTransfer>, Status> {
        let caller = caller(&request)?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        let agencies = message
            .agencies
            .iter()
            .map(|&raw| {
                agency_kind_from_wire(raw)
                    .ok_or_else(|| Error::invalid("agencies", "unknown agency kind"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let transfer = self
            .store
            .transfer(
                &caller.agency,
                required("kind", message.kind)?,
                required("matter", message.matter)?,
                &message.matter_id,
                &agencies,
                &message.text,
                key.as_ref(),
            )
            .await?;
        let mut answer = transfer_message(&transfer);
        // The matter's evidence goes with it, sealed at the transfer (when the hub signs its log).
        if self.store.checkpoint_interval().is_some() {
            match self
                .export_evidence(&caller, transfer.matter, &transfer.matter_id)
                .await
            {
                Ok(bundle) => answer.evidence_bundle = bundle.to_json(),
                Err(error) => {
                    tracing::warn!(%error, transfer = %transfer.id, "no evidence bundle for the transfer");
                }
            }
        }
        Ok(Response::new(answer))
    }

    async fn acknowledge_receipt(
        &self,
        request: Request<proto::IdRequest>,
    ) -> Result<Response<proto::MatterTransfer>, Status> {
        let caller = caller(&request)?;
        let transfer = self
            .store
            .acknowledge_receipt(&caller.agency, &request.into_inner().id)
            .await?;
        let mut message = transfer_message(&transfer);
        read_transfer(&self.reader(&caller.agency).await?, &mut message);
        Ok(Response::new(message))
    }

    async fn publish_bulletin(
        &self,
        request: Request<proto::BulletinRequest>,
    ) -> Result<Response<proto::Bulletin>, Status> {
        let caller = caller(&request)?;
        let mut message = request.into_inner();
        let key = request_key(std::mem::take(&mut message.idempotency_key), &message)?;
        let bulletin = self
            .store
            .publish_bulletin(
                &caller.agency,
                &message.case_id,
                &message.text,
                key.as_ref(),
            )
            .await?;
        Ok(Response::new(bulletin_message(&bulletin)))
    }

    async fn assign_case(
        &self,
        request: Request<proto::AssignCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let to = Jurisdiction::parse(&message.to).map_err(|reason| Error::invalid("to", reason))?;
        let case = self
            .store
            .assign_case(
                &caller.agency,
                &message.case_id,
                &to,
                version(message.expected_version)?,
                &message.text,
            )
            .await?;
        self.case_answer(&caller.agency, &case).await
    }

    async fn confirm_case_level(
        &self,
        request: Request<proto::ConfirmCaseLevelRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let case = self
            .store
            .confirm_case_level(
                &caller.agency,
                &message.case_id,
                version(message.expected_version)?,
                &message.text,
            )
            .await?;
        self.case_answer(&caller.agency, &case).await
    }

    async fn send_back_case(
        &self,
        request: Request<proto::SendBackCaseRequest>,
    ) -> Result<Response<proto::Case>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let case = self
            .store
            .send_back_case(
                &caller.agency,
                &message.case_id,
                version(message.expected_version)?,
                &message.text,
            )
            .await?;
        self.case_answer(&caller.agency, &case).await
    }
}
