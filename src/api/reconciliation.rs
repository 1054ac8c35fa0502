//! The reconciliation service: findings, re-checks on demand, the regional balance report, and the
//! verdicts before the act.

use tonic::{Request, Response, Status};

use super::Hub;
use super::convert::{
    self as c, DEFAULT_PAGE, MAX_PAGE, Wire, page_size, request_date, request_jurisdiction,
    request_uscc,
};
use super::personal::Reader;
use super::policy::caller;
use crate::domain::findings::{FindingKey, RuleCode, Severity};
use crate::domain::ids::normalize_document_number;
use crate::domain::precheck::{FundingQuestion, HireQuestion, Reason, Verdict};
use crate::domain::{
    Agency, HiringChannel, LeaderLevel, LeaderPosition, Period, QuotaCategory, Rank, ResidentId,
};
use crate::error::Error;
use crate::proto;
use crate::store::recheck::{JobState, RecheckJob};
use crate::store::reconcile::FindingFilter;

/// Changes listed in a re-check's answer; the counts are always complete.
const MAX_LISTED_CHANGES: usize = 1_000;

/// The key of a page's last finding, sealed: it may hold a resident ID.
fn page_token(reader: &Reader, key: &FindingKey) -> String {
    reader.tokens().seal(
        &serde_json::to_vec(&(
            key.code.to_string(),
            &key.institution,
            &key.subject,
            &key.period,
        ))
        .expect("strings serialize"),
    )
}

fn parse_page_token(reader: &Reader, token: &str) -> Result<Option<FindingKey>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token this hub gave");
    let bytes = reader.tokens().open(token).ok_or_else(bad)?;
    let (code, institution, subject, period): (String, String, String, String) =
        serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let code = <RuleCode as crate::domain::Coded>::from_code(&code).ok_or_else(bad)?;
    Ok(Some(FindingKey {
        code,
        institution,
        subject,
        period,
    }))
}

fn verdict_message(verdict: Option<Verdict>) -> i32 {
    let verdict = match verdict.unwrap_or(Verdict::Allow) {
        Verdict::Allow => proto::Verdict::Allow,
        Verdict::Warn => proto::Verdict::Warn,
        Verdict::Deny => proto::Verdict::Deny,
    };
    verdict as i32
}

fn reason_messages(reader: &Reader, reasons: &[Reason]) -> Vec<proto::Reason> {
    reasons
        .iter()
        .map(|reason| proto::Reason {
            code: reason.code.map(Wire::to_wire).unwrap_or_default(),
            verdict: verdict_message(Some(reason.verdict)),
            message: reader.text(&reason.message),
        })
        .collect()
}

impl Hub {
    async fn check_hire(
        &self,
        agency: &Agency,
        message: &proto::CheckHireRequest,
    ) -> Result<proto::HireVerdict, Error> {
        let institution = request_uscc("institution_uscc", &message.institution_uscc)?;
        let category = QuotaCategory::from_wire(message.category)
            .ok_or_else(|| Error::invalid("category", "is required"))?;
        let resident_id = if message.resident_id.is_empty() {
            None
        } else {
            Some(
                ResidentId::parse(&message.resident_id)
                    .map_err(|reason| Error::invalid("resident_id", reason))?,
            )
        };
        let post = match (
            LeaderLevel::from_wire(message.leader_level),
            LeaderPosition::from_wire(message.leader_position),
        ) {
            (Some(level), Some(position)) => Some((level, position)),
            (None, None) => None,
            _ => {
                return Err(Error::invalid(
                    "leader_position",
                    "an appointment needs both leader_level and leader_position",
                ));
            }
        };
        let date = if message.date.is_empty() {
            self.store.checks().clock.today()
        } else {
            request_date("date", &message.date)?
        };
        self.check_oversees(agency, &institution).await?;
        let question = HireQuestion {
            institution: institution.clone(),
            category,
            channel: HiringChannel::from_wire(message.channel),
            approval_number: (!message.approval_number.trim().is_empty())
                .then(|| normalize_document_number(&message.approval_number)),
            resident_id: resident_id.clone(),
            post,
            rank: Rank::from_wire(message.rank),
            date,
        };
        let answer = self.store.check_hire(&question).await?;
        Ok(proto::HireVerdict {
            verdict: verdict_message(answer.verdict),
            reasons: reason_messages(&self.reader(agency).await?, &answer.reasons),
            approved_quota: answer.approved_quota,
            active: answer.active,
            vacancy: i64::from(answer.approved_quota) - i64::from(answer.active),
            plan_approved: answer.plan_approved,
            plan_used: answer.plan_used,
            approval_entries: answer.approval_entries,
            approval_used: answer.approval_used,
            posts_approved: answer.posts_approved,
            posts_occupied: answer.posts_occupied,
            other_institutions: answer.other_institutions,
        })
    }

    async fn verify_funding(
        &self,
        agency: &Agency,
        message: &proto::VerifyFundingRequest,
    ) -> Result<proto::FundingVerdict, Error> {
        let institution = request_uscc("institution_uscc", &message.institution_uscc)?;
        let category = QuotaCategory::from_wire(message.category)
            .ok_or_else(|| Error::invalid("category", "is required"))?;
        let period =
            Period::parse(&message.period).map_err(|reason| Error::invalid("period", reason))?;
        crate::domain::amount_fen(message.amount_fen)
            .map_err(|reason| Error::invalid("amount_fen", reason))?;
        self.check_oversees(agency, &institution).await?;
        let question = FundingQuestion {
            institution,
            category,
            period,
            headcount: message.requested_headcount,
            amount_fen: message.amount_fen,
        };
        let answer = self.store.verify_funding(&question).await?;
        Ok(proto::FundingVerdict {
            verdict: verdict_message(answer.verdict),
            reasons: reason_messages(&self.reader(agency).await?, &answer.reasons),
            approved_quota: answer.approved_quota,
            active: answer.active,
            already_funded: answer.already_funded,
            max_fundable: answer.max_fundable,
            funding_form: answer.funding_form.map(Wire::to_wire).unwrap_or_default(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Re-check jobs as operations.

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// How long a Reconcile call waits for its job: the client's `grpc-timeout` less a margin to
/// answer in, or just under the hub's own deadline of the call.
fn wait_within(metadata: &tonic::metadata::MetadataMap) -> std::time::Duration {
    use std::time::Duration;
    let asked = metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
            let n: u64 = digits.parse().ok()?;
            Some(match unit {
                "H" => Duration::from_secs(n.saturating_mul(3_600)),
                "M" => Duration::from_secs(n.saturating_mul(60)),
                "S" => Duration::from_secs(n),
                "m" => Duration::from_millis(n),
                "u" => Duration::from_micros(n),
                "n" => Duration::from_nanos(n),
                _ => return None,
            })
        });
    let most = Duration::from_secs(55 * 60);
    match asked {
        Some(asked) => asked.mul_f64(0.9).min(most),
        None => most,
    }
}

fn operation_id(name: &str) -> Result<&str, Error> {
    name.strip_prefix("operations/")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::invalid("name", "must be operations/{id}, as Reconcile answered"))
}

/// Whether an agency may see a job: one of its jurisdiction, or below; a re-check of everything
/// (the schedule's) only a province's.
fn may_see(agency: &Agency, job: &RecheckJob) -> bool {
    match &job.jurisdiction {
        Some(jurisdiction) => agency.oversees(jurisdiction),
        None => agency.jurisdiction.prefix().len() <= 2,
    }
}

fn visible(agency: &Agency, job: Option<RecheckJob>) -> Result<RecheckJob, Error> {
    job.filter(|job| may_see(agency, job))
        .ok_or_else(|| Error::NotFound("no such re-check operation".into()))
}

fn rfc3339(micros: Option<i64>) -> String {
    micros
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

fn operation_message(job: &RecheckJob) -> proto::ReconcileOperation {
    let state = match job.state {
        JobState::Running => proto::OperationState::Running,
        JobState::Succeeded => proto::OperationState::Succeeded,
        JobState::Failed => proto::OperationState::Failed,
        JobState::Cancelled => proto::OperationState::Cancelled,
    };
    proto::ReconcileOperation {
        name: format!("operations/{}", job.id),
        done: job.done(),
        state: state as i32,
        jurisdiction: job
            .jurisdiction
            .as_ref()
            .map_or(String::new(), ToString::to_string),
        as_of: job.as_of.to_string(),
        dry_run: job.dry_run,
        chunks_done: count(job.chunks_done),
        chunks_total: count(job.chunks_total),
        institutions: count(job.institutions),
        raised: count(job.raised),
        updated: count(job.updated),
        resolved: count(job.resolved),
        open: count(job.open.unwrap_or(0)),
        error: job.error.clone().unwrap_or_default(),
        cancel_requested: job.cancel_requested,
        requested_by: job.requested_by.clone(),
        create_time: rfc3339(Some(job.created_at)),
        update_time: rfc3339(Some(job.updated_at)),
        end_time: rfc3339(job.finished_at),
    }
}

#[tonic::async_trait]
impl proto::reconciliation_service_server::ReconciliationService for Hub {
    async fn check_hire(
        &self,
        request: Request<proto::CheckHireRequest>,
    ) -> Result<Response<proto::HireVerdict>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.check_hire(&caller.agency, request.get_ref()).await?,
        ))
    }

    async fn verify_funding(
        &self,
        request: Request<proto::VerifyFundingRequest>,
    ) -> Result<Response<proto::FundingVerdict>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(
            self.verify_funding(&caller.agency, request.get_ref())
                .await?,
        ))
    }

    async fn reconcile(
        &self,
        request: Request<proto::ReconcileRequest>,
    ) -> Result<Response<proto::ReconcileResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let as_of = if message.as_of.is_empty() {
            self.store.checks().clock.today()
        } else {
            request_date("as_of", &message.as_of)?
        };
        // The job runs in the runner (server::rechecks), never inside this call.
        let job = self
            .store
            .start_recheck(
                Some(&jurisdiction),
                as_of,
                message.dry_run,
                &caller.agency.to_string(),
            )
            .await?;
        let (job, changes) = if message.return_operation {
            (job, Vec::new())
        } else {
            let until = tokio::time::Instant::now() + wait_within(request.metadata());
            let (stands, changes) = self.store.wait_for_recheck(&job.id, until).await?;
            (stands.unwrap_or(job), changes)
        };
        let reader = self.reader(&caller.agency).await?;
        Ok(Response::new(proto::ReconcileResponse {
            jurisdiction: jurisdiction.to_string(),
            as_of: as_of.to_string(),
            institutions: count(job.institutions),
            raised: count(job.raised),
            updated: count(job.updated),
            resolved: count(job.resolved),
            open: count(job.open.unwrap_or(0)),
            kept: !message.dry_run,
            changes: changes
                .iter()
                .take(MAX_LISTED_CHANGES)
                .map(|change| {
                    let mut message = c::finding_change_message(change);
                    reader.finding_change(&mut message);
                    message
                })
                .collect(),
            operation: Some(operation_message(&job)),
        }))
    }

    async fn get_operation(
        &self,
        request: Request<proto::GetOperationRequest>,
    ) -> Result<Response<proto::ReconcileOperation>, Status> {
        let caller = caller(&request)?;
        let id = operation_id(&request.get_ref().name)?;
        let job = self.store.recheck_job(id).await?;
        Ok(Response::new(operation_message(&visible(
            &caller.agency,
            job,
        )?)))
    }

    async fn cancel_operation(
        &self,
        request: Request<proto::CancelOperationRequest>,
    ) -> Result<Response<proto::ReconcileOperation>, Status> {
        let caller = caller(&request)?;
        let id = operation_id(&request.get_ref().name)?;
        // Seen first: a caller may stop only what it may see.
        visible(&caller.agency, self.store.recheck_job(id).await?)?;
        let job = self.store.cancel_recheck(id).await?;
        Ok(Response::new(operation_message(&visible(
            &caller.agency,
            job,
        )?)))
    }

    async fn list_operations(
        &self,
        request: Request<proto::ListOperationsRequest>,
    ) -> Result<Response<proto::ListOperationsResponse>, Status> {
        let caller = caller(&request)?;
        let size = page_size(request.get_ref().page_size, 20, 100);
        // Newest first, those the caller may see; a few more are read for those it may not.
        let jobs = self.store.recheck_jobs(size.saturating_mul(5)).await?;
        Ok(Response::new(proto::ListOperationsResponse {
            operations: jobs
                .into_iter()
                .filter(|job| may_see(&caller.agency, job))
                .take(size as usize)
                .map(|job| operation_message(&job))
                .collect(),
        }))
    }

    async fn regional_balance(
        &self,
        request: Request<proto::RegionalBalanceRequest>,
    ) -> Result<Response<proto::RegionalBalanceResponse>, Status> {
        let caller = caller(&request)?;
        let jurisdiction = request_jurisdiction(
            &caller.agency,
            "jurisdiction",
            &request.get_ref().jurisdiction,
        )?;
        let as_of = if request.get_ref().as_of.is_empty() {
            self.store.checks().clock.today()
        } else {
            request_date("as_of", &request.get_ref().as_of)?
        };
        let rows = self
            .store
            .regional_balance(Some(&jurisdiction), as_of)
            .await?;
        Ok(Response::new(proto::RegionalBalanceResponse {
            as_of: as_of.to_string(),
            rows: rows
                .into_iter()
                .map(|row| proto::RegionalBalanceRow {
                    jurisdiction: row.jurisdiction.to_string(),
                    category: row.category.to_wire(),
                    approved: row.approved,
                    active: row.active,
                    surplus: row.surplus,
                })
                .collect(),
        }))
    }

    async fn list_findings(
        &self,
        request: Request<proto::ListFindingsRequest>,
    ) -> Result<Response<proto::ListFindingsResponse>, Status> {
        let caller = caller(&request)?;
        let reader = self.reader(&caller.agency).await?;
        let message = request.get_ref();
        let codes = message
            .codes
            .iter()
            .map(|&raw| {
                RuleCode::from_wire(raw)
                    .ok_or_else(|| Error::invalid("codes", format!("{raw} is not a rule code")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let min_severity = match message.min_severity {
            0 => None,
            raw => Some(
                Severity::from_wire(raw)
                    .ok_or_else(|| Error::invalid("min_severity", "is not a severity"))?,
            ),
        };
        let open = match proto::FindingState::try_from(message.state) {
            Ok(proto::FindingState::Resolved) => false,
            Ok(_) => true,
            Err(_) => return Err(Error::invalid("state", "is not a finding state").into()),
        };
        let limit = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let filter = FindingFilter {
            jurisdiction: Some(request_jurisdiction(
                &caller.agency,
                "jurisdiction",
                &message.jurisdiction,
            )?),
            codes,
            min_severity,
            open,
            institution: (!message.institution_uscc.is_empty())
                .then(|| message.institution_uscc.clone()),
            after: parse_page_token(&reader, &message.page_token)?,
            limit,
        };
        let findings = self.store.findings(&filter).await?;
        let next_page_token = if findings.len() == limit as usize {
            findings
                .last()
                .map(|f| page_token(&reader, &f.finding.key))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(proto::ListFindingsResponse {
            findings: findings
                .iter()
                .map(|finding| {
                    let mut message = c::finding_message(finding);
                    reader.finding(&mut message);
                    message
                })
                .collect(),
            next_page_token,
        }))
    }
}
