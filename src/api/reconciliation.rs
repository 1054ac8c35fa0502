//! The reconciliation service: findings, re-checks on demand, the regional balance report, and the
//! verdicts before the act.

use tonic::{Request, Response, Status};

use super::Hub;
use super::convert::{
    self as c, DEFAULT_PAGE, MAX_PAGE, Wire, day_range, page_size, request_date,
    request_jurisdiction, request_uscc,
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
use crate::store::reconcile::{FindingColumn, FindingFilter, FindingOrder};

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

/// Where the next page of a sorted list starts, sealed with the sort it belongs to.
fn offset_token(reader: &Reader, order_by: &str, offset: u64) -> String {
    reader
        .tokens()
        .seal(&serde_json::to_vec(&(order_by, offset)).expect("strings serialize"))
}

fn parse_offset_token(reader: &Reader, order_by: &str, token: &str) -> Result<u64, Error> {
    if token.is_empty() {
        return Ok(0);
    }
    let bad = || {
        Error::invalid(
            "page_token",
            "is not a token this hub gave for this order_by",
        )
    };
    let bytes = reader.tokens().open(token).ok_or_else(bad)?;
    let (sorted_by, offset): (String, u64) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if sorted_by != order_by {
        return Err(bad());
    }
    Ok(offset)
}

/// ListFindingsRequest.order_by: one field, then `asc` (the default) or `desc` (AIP-132).
fn parse_order_by(order_by: &str) -> Result<Option<FindingOrder>, Error> {
    let words: Vec<&str> = order_by.split_whitespace().collect();
    let Some(field) = words.first() else {
        return Ok(None);
    };
    let bad = |reason: &str| Error::invalid("order_by", reason);
    let column = match *field {
        "code" => FindingColumn::Code,
        "severity" => FindingColumn::Severity,
        "institution_uscc" => FindingColumn::Institution,
        "period" => FindingColumn::Period,
        "alert_state" => FindingColumn::AlertState,
        "raised_at" => FindingColumn::RaisedAt,
        _ => {
            return Err(bad(
                "sorts by one of code, severity, institution_uscc, period, alert_state, raised_at",
            ));
        }
    };
    let descending = match words.get(1..) {
        Some([]) | Some(["asc"]) => false,
        Some(["desc"]) => true,
        _ => return Err(bad("is a field, then asc or desc")),
    };
    Ok(Some(FindingOrder { column, descending }))
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
        let answer = self.store.check_hire(agency, &question).await?;
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
            reserve_kept: answer.reserve_kept,
            reserve_needed: answer.reserve_needed,
            reserve_eaten: answer.reserve_eaten,
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
        let question = FundingQuestion {
            institution,
            category,
            period,
            headcount: message.requested_headcount,
            amount_fen: message.amount_fen,
        };
        let answer = self.store.verify_funding(agency, &question).await?;
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
        let order = parse_order_by(&message.order_by)?;
        let order_by = message
            .order_by
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let (after, offset) = match order {
            Some(_) => (
                None,
                parse_offset_token(&reader, &order_by, &message.page_token)?,
            ),
            None => (parse_page_token(&reader, &message.page_token)?, 0),
        };
        let raised = day_range(
            ("raised_from", &message.raised_from),
            ("raised_to", &message.raised_to),
        )?;
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
            after,
            raised,
            order,
            offset,
            limit,
        };
        let findings = self.store.findings(&filter).await?;
        let next_page_token = if findings.len() < limit as usize {
            String::new()
        } else if order.is_some() {
            offset_token(&reader, &order_by, offset + u64::from(limit))
        } else {
            findings
                .last()
                .map(|f| page_token(&reader, &f.finding.key))
                .unwrap_or_default()
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

    async fn summarize_findings(
        &self,
        request: Request<proto::SummarizeFindingsRequest>,
    ) -> Result<Response<proto::FindingSummary>, Status> {
        const WEEK: i64 = 7 * 24 * 3_600 * 1_000_000;
        const LISTED: u32 = 20;
        let caller = caller(&request)?;
        let reader = self.reader(&caller.agency).await?;
        let message = request.get_ref();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let weeks = match message.weeks {
            0 => 12,
            weeks @ 1..=104 => i64::from(weeks),
            _ => return Err(Error::invalid("weeks", "is at most 104").into()),
        };
        let now = crate::store::now_micros();
        let instants: Vec<i64> = (0..weeks).rev().map(|back| now - back * WEEK).collect();
        let summary = self
            .store
            .finding_summary(&jurisdiction, &instants, (now, now + WEEK), LISTED)
            .await?;
        let mut open_by_rule: Vec<proto::finding_summary::RuleCount> = summary
            .open_by_rule
            .iter()
            .map(|(code, severity, open)| proto::finding_summary::RuleCount {
                code: code.to_wire(),
                severity: severity.to_wire(),
                open: *open,
            })
            .collect();
        open_by_rule.sort_by_key(|count| (std::cmp::Reverse(count.severity), count.code));
        Ok(Response::new(proto::FindingSummary {
            open_total: open_by_rule.iter().map(|count| count.open).sum(),
            open_by_rule,
            trend: summary
                .open_at
                .iter()
                .map(|(at, open)| proto::finding_summary::OpenAt {
                    at: Some(c::timestamp(*at)),
                    open: *open,
                })
                .collect(),
            due_this_week: summary
                .due
                .iter()
                .map(|(deadline, finding)| {
                    let mut message = c::finding_message(finding);
                    reader.finding(&mut message);
                    proto::finding_summary::Due {
                        finding: Some(message),
                        deadline: Some(c::timestamp(*deadline)),
                    }
                })
                .collect(),
            due_this_week_total: summary.due_total,
            most_findings: summary
                .most_findings
                .into_iter()
                .map(
                    |(institution_uscc, open)| proto::finding_summary::InstitutionCount {
                        institution_uscc,
                        open,
                    },
                )
                .collect(),
            institutions_with_findings: summary.institutions,
        }))
    }

    async fn freshness_report(
        &self,
        request: Request<proto::FreshnessReportRequest>,
    ) -> Result<Response<proto::FreshnessReportResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let jurisdiction =
            request_jurisdiction(&caller.agency, "jurisdiction", &message.jurisdiction)?;
        let report = self.store.freshness_report(&jurisdiction).await?;
        let cadence = self.store.checks().cadence;
        let share = |part: i64, whole: i64| {
            if whole > 0 {
                part as f64 / whole as f64
            } else {
                0.0
            }
        };
        let agencies: Vec<proto::AgencyFreshness> = report
            .iter()
            .map(|row| proto::AgencyFreshness {
                agency_id: row.agency.id(),
                kind: crate::domain::AgencyKind::ALL
                    .iter()
                    .position(|kind| *kind == row.agency.kind)
                    .map_or(0, |i| i32::try_from(i + 1).unwrap_or_default()),
                jurisdiction: row.agency.jurisdiction.to_string(),
                last_pushes: row
                    .last_pushes
                    .iter()
                    .map(|(kind, on)| proto::LastPush {
                        record_kind: kind.clone(),
                        pushed_on: on.to_string(),
                    })
                    .collect(),
                latest_payroll_period: row.latest_period.map(|p| p.to_string()).unwrap_or_default(),
                awaited_payroll_periods: row.awaited.iter().map(ToString::to_string).collect(),
                next_payroll_period: row.next_due.map(|(p, _)| p.to_string()).unwrap_or_default(),
                next_payroll_late_from: row
                    .next_due
                    .map(|(_, on)| on.to_string())
                    .unwrap_or_default(),
                payroll_lag_days: u32::try_from(row.payroll_lag_days).unwrap_or(u32::MAX),
                events_in_window: u64::try_from(row.events).unwrap_or_default(),
                timed_in_window: u64::try_from(row.timed).unwrap_or_default(),
                backdated_in_window: u64::try_from(row.backdated).unwrap_or_default(),
                backdated_share: share(row.backdated, row.timed),
                mean_event_lag_days: share(row.lag_days, row.timed),
                waiting: row.waiting(),
            })
            .collect();
        Ok(Response::new(proto::FreshnessReportResponse {
            as_of: self.store.checks().clock.today().to_string(),
            window_days: cadence.window_days,
            payroll_due_day: cadence.payroll_due_day,
            event_due_days: cadence.event_due_days,
            waiting_for: report
                .iter()
                .filter(|row| row.waiting())
                .map(|row| row.agency.id())
                .collect(),
            agencies,
        }))
    }

    async fn export_evidence(
        &self,
        request: Request<proto::ExportEvidenceRequest>,
    ) -> Result<Response<proto::EvidenceBundle>, Status> {
        let caller = caller(&request)?;
        let message = request.into_inner();
        let matter = evidence::matter_kind(message.matter)?;
        let bundle = self
            .export_evidence(&caller, matter, &message.matter_id)
            .await?;
        Ok(Response::new(proto::EvidenceBundle {
            json: bundle.to_json(),
            tree_size: checkpoint_size(&bundle.checkpoint),
            seal_seq: bundle.seal.seq,
        }))
    }
}

/// The tree size a checkpoint note states (its second line).
fn checkpoint_size(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .unwrap_or_default()
}

/// Evidence bundles: the matter as the caller reads it, the records behind it, their pushes'
/// audit entries, all proven into one signed checkpoint and sealed by an entry of the export.
pub(crate) mod evidence {
    use std::collections::BTreeMap;

    use ring::rand::{SecureRandom, SystemRandom};

    use super::super::Hub;
    use super::super::convert::finding_message;
    use super::super::personal::Reader;
    use super::super::policy::Caller;
    use crate::domain::audit::AuditEntry;
    use crate::domain::evidence::{
        Bundle, FORMAT, Field, Fields, Matter, ProvenEntry, Record, SEAL_METHOD, personal_field,
    };
    use crate::domain::findings::{FindingKey, RuleCode};
    use crate::domain::ledger::MatterKind;
    use crate::domain::{Coded, Jurisdiction};
    use crate::error::Error;
    use crate::proto;
    use crate::store::feed::FollowUpStep;

    /// The matter kind a request names.
    pub(crate) fn matter_kind(raw: i32) -> Result<MatterKind, Error> {
        match proto::MatterKind::try_from(raw) {
            Ok(proto::MatterKind::Alert) => Ok(MatterKind::Alert),
            Ok(proto::MatterKind::LedgerItem) => Ok(MatterKind::LedgerItem),
            Ok(proto::MatterKind::Case) => Ok(MatterKind::Case),
            _ => Err(Error::invalid(
                "matter",
                "is required: ALERT, LEDGER_ITEM or CASE",
            )),
        }
    }

    /// Random salts for the fields' commitments.
    struct Salts(SystemRandom);

    impl Salts {
        fn next(&self) -> Result<[u8; 16], Error> {
            let mut salt = [0; 16];
            self.0
                .fill(&mut salt)
                .map_err(|_| Error::Internal("no randomness for the evidence's salts".into()))?;
            Ok(salt)
        }

        /// A field the reader sees as `shown` of the value `whole`.
        fn field(&self, whole: &str, shown: &str) -> Result<Field, Error> {
            Ok(if whole == shown {
                Field::clear(whole, self.next()?)
            } else {
                Field::hidden(whole, shown, self.next()?)
            })
        }
    }

    fn finding_key(reader: &Reader, id: &str) -> Result<FindingKey, Error> {
        let bad = || {
            Error::invalid(
                "matter_id",
                "an alert is named `CODE|institution|subject|period`",
            )
        };
        let mut parts = id.splitn(4, '|');
        let code = RuleCode::from_code(parts.next().ok_or_else(bad)?).ok_or_else(bad)?;
        let institution = parts.next().ok_or_else(bad)?.to_owned();
        let subject = parts.next().ok_or_else(bad)?;
        let period = parts.next().ok_or_else(bad)?.to_owned();
        // A reader that sees a person's findings with a token names the person by it.
        let subject = reader
            .tokens()
            .person_of(subject)
            .map_or_else(|| subject.to_owned(), |person| person.to_string());
        Ok(FindingKey {
            code,
            institution,
            subject,
            period,
        })
    }

    /// A finding's fields, each as the reader sees it (`Reader::finding`, the one masking).
    fn finding_fields(
        salts: &Salts,
        reader: &Reader,
        prefix: &str,
        whole: &proto::Finding,
        fields: &mut Fields,
    ) -> Result<(), Error> {
        let mut shown = whole.clone();
        reader.finding(&mut shown);
        let pairs = |f: &proto::Finding| -> Vec<(String, String)> {
            let mut pairs = vec![
                ("code".to_owned(), f.code.to_string()),
                ("institution_uscc".into(), f.institution_uscc.clone()),
                ("subject".into(), f.subject.clone()),
                ("period".into(), f.period.clone()),
                ("jurisdiction".into(), f.jurisdiction.clone()),
                ("severity".into(), f.severity.to_string()),
                ("state".into(), f.state.to_string()),
                ("actual".into(), f.actual.to_string()),
                ("limit".into(), f.limit.to_string()),
                ("explanation_zh".into(), f.explanation_zh.clone()),
                ("explanation_en".into(), f.explanation_en.clone()),
                ("version".into(), f.version.to_string()),
                ("alert_state".into(), f.alert_state.to_string()),
                ("escalation_level".into(), f.escalation_level.to_string()),
                (
                    "raised_at".into(),
                    f.raised_at
                        .map(|t| t.seconds)
                        .unwrap_or_default()
                        .to_string(),
                ),
                (
                    "resolved_at".into(),
                    f.resolved_at
                        .map(|t| t.seconds)
                        .unwrap_or_default()
                        .to_string(),
                ),
            ];
            for (n, evidence) in f.evidence.iter().enumerate() {
                pairs.push((
                    format!("evidence.{:03}", n + 1),
                    format!("{} {}", evidence.kind, evidence.id),
                ));
            }
            pairs
        };
        let code = proto::RuleCode::try_from(whole.code)
            .map(|c| c.as_str_name().to_owned())
            .unwrap_or_default();
        for ((name, whole_value), (_, shown_value)) in pairs(whole).into_iter().zip(pairs(&shown)) {
            let (whole_value, shown_value) = if name == "code" {
                (code.clone(), code.clone())
            } else {
                (whole_value, shown_value)
            };
            fields.insert(
                format!("{prefix}{name}"),
                salts.field(&whole_value, &shown_value)?,
            );
        }
        Ok(())
    }

    fn steps(
        salts: &Salts,
        reader: &Reader,
        history: &[FollowUpStep],
        fields: &mut Fields,
    ) -> Result<(), Error> {
        for (n, step) in history.iter().enumerate() {
            let line = |text: &str| {
                format!(
                    "{} {} {} -> {}: {text}",
                    step.at, step.agency_id, step.from_state, step.to_state
                )
            };
            fields.insert(
                format!("step.{:03}", n + 1),
                salts.field(&line(&step.text), &line(&reader.text(&step.text)))?,
            );
        }
        Ok(())
    }

    impl Hub {
        /// Exports and seals the evidence bundle of a matter as `caller` reads it.
        pub(crate) async fn export_evidence(
            &self,
            caller: &Caller,
            matter: MatterKind,
            id: &str,
        ) -> Result<Bundle, Error> {
            if self.store.checkpoint_interval().is_none() {
                return Err(Error::FailedPrecondition(
                    "this hub signs no audit log checkpoints (audit.log_key): evidence cannot be proven".into(),
                ));
            }
            let reader = self.reader(&caller.agency).await?;
            let salts = Salts(SystemRandom::new());
            let mut fields = Fields::new();
            let text = |whole: &str| salts.field(whole, &reader.text(whole));
            let (jurisdiction, finding, matter_id) = match matter {
                MatterKind::Alert => {
                    let key = finding_key(&reader, id)?;
                    let stored = self
                        .store
                        .finding(&key)
                        .await?
                        .ok_or_else(|| Error::NotFound("no such finding".into()))?;
                    let shown_id = crate::store::ledger::alert_id(&{
                        let mut shown = finding_message(&stored);
                        reader.finding(&mut shown);
                        FindingKey {
                            subject: shown.subject,
                            ..key.clone()
                        }
                    });
                    (stored.jurisdiction.clone(), Some(stored), shown_id)
                }
                MatterKind::LedgerItem => {
                    let item = self
                        .store
                        .item(id)
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("no ledger item `{id}`")))?;
                    fields.insert(
                        "department".into(),
                        salts.field(&item.department, &item.department)?,
                    );
                    fields.insert("title".into(), text(&item.title)?);
                    fields.insert(
                        "state".into(),
                        salts.field(item.state.code(), item.state.code())?,
                    );
                    let due = item.due_on.to_string();
                    fields.insert("due_on".into(), salts.field(&due, &due)?);
                    let version = item.version.to_string();
                    fields.insert("version".into(), salts.field(&version, &version)?);
                    steps(&salts, &reader, &item.history, &mut fields)?;
                    let finding = match &item.finding {
                        Some(key) => self.store.finding(key).await?,
                        None => None,
                    };
                    (item.jurisdiction.clone(), finding, item.id.clone())
                }
                MatterKind::Case => {
                    let case = self
                        .store
                        .case(id)
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("no case `{id}`")))?;
                    let institution = case.institution.clone().unwrap_or_default();
                    fields.insert(
                        "institution".into(),
                        salts.field(&institution, &institution)?,
                    );
                    let person = case.person.clone().unwrap_or_default();
                    fields.insert(
                        "person".into(),
                        personal_field(reader.sight, "person", &person, salts.next()?),
                    );
                    fields.insert("text".into(), text(&case.text)?);
                    fields.insert(
                        "state".into(),
                        salts.field(case.state.code(), case.state.code())?,
                    );
                    fields.insert(
                        "outcome".into(),
                        text(case.outcome.as_deref().unwrap_or(""))?,
                    );
                    let version = case.version.to_string();
                    fields.insert("version".into(), salts.field(&version, &version)?);
                    steps(&salts, &reader, &case.history, &mut fields)?;
                    (case.jurisdiction.clone(), None, case.id.clone())
                }
                MatterKind::Campaign | MatterKind::Declaration => {
                    return Err(Error::invalid(
                        "matter",
                        "campaigns and declarations have no evidence bundle; export their ledger items'",
                    ));
                }
            };
            let within =
                Jurisdiction::parse(&jurisdiction).is_ok_and(|j| caller.agency.oversees(&j));
            if !within {
                return Err(Error::PermissionDenied(format!(
                    "the {} lies outside the jurisdiction of {}",
                    matter.code().to_lowercase().replace('_', " "),
                    caller.agency
                )));
            }
            let mut records = Vec::new();
            let mut not_records = Vec::new();
            let mut pushes: BTreeMap<i64, AuditEntry> = BTreeMap::new();
            if let Some(stored) = &finding {
                let prefix = if matter == MatterKind::Alert {
                    ""
                } else {
                    "finding."
                };
                finding_fields(
                    &salts,
                    &reader,
                    prefix,
                    &finding_message(stored),
                    &mut fields,
                )?;
                for evidence in &stored.finding.evidence {
                    let shown_id = if reader.sight.resident_ids {
                        evidence.id.clone()
                    } else {
                        crate::domain::privacy::mask_resident_ids_in(&evidence.id)
                    };
                    let Some(record) = self
                        .store
                        .pushed_record(evidence.kind, &evidence.id)
                        .await?
                    else {
                        not_records.push(if evidence.kind == "person" {
                            format!(
                                "person {}: the roll is derived from personnel events",
                                if reader.sight.resident_ids {
                                    evidence.id.clone()
                                } else {
                                    crate::domain::privacy::mask_resident_id(&evidence.id)
                                }
                            )
                        } else {
                            format!("{} {shown_id}: the hub holds no such record", evidence.kind)
                        });
                        continue;
                    };
                    let mut record_fields = Fields::new();
                    for (name, value) in &record.fields {
                        let value = value.clone().unwrap_or_default();
                        record_fields.insert(
                            name.clone(),
                            personal_field(reader.sight, name, &value, salts.next()?),
                        );
                    }
                    let push_entry = record.push_entry.as_ref().map(|row| row.seq);
                    if let Some(row) = record.push_entry {
                        pushes.insert(row.seq, row.entry);
                    }
                    let mut bundled = Record {
                        kind: record.kind,
                        evidence_id: shown_id,
                        agency_id: record.agency_id,
                        record_id: personal_field(
                            reader.sight,
                            "record_id",
                            &record.record_id,
                            salts.next()?,
                        ),
                        content_hash: record.content_hash,
                        accepted_at: record.accepted_at,
                        fields: record_fields,
                        push_entry,
                        digest: String::new(),
                    };
                    bundled.digest = bundled.computed_digest().map_err(Error::Internal)?;
                    records.push(bundled);
                }
            } else if matter == MatterKind::Case {
                not_records.push(
                    "a case is a public report taken in by the hub, not pushed records".into(),
                );
            } else {
                not_records.push("the ledger item was opened without a finding".into());
            }
            let shown_touched = |touched: &str| reader.text(touched);
            let matter_code = match matter {
                MatterKind::Alert => "alert",
                MatterKind::LedgerItem => "ledger_item",
                MatterKind::Case => "case",
                MatterKind::Campaign => "campaign",
                MatterKind::Declaration => "declaration",
            };
            let now = crate::store::now_micros();
            // The seal: an entry of the log committing to all of the rest (its text is set once
            // the rest is complete), then a checkpoint that holds it, then every entry's proof
            // into that checkpoint.
            let mut seal = AuditEntry {
                at: now,
                agency_id: caller.agency.id(),
                jurisdiction: caller.agency.jurisdiction.to_string(),
                fingerprint: caller.cert_fingerprint.clone(),
                peer: String::new(),
                method: SEAL_METHOD.into(),
                touched: String::new(),
                outcome: "OK".into(),
            };
            let mut bundle = Bundle {
                format: FORMAT.into(),
                exported_by: caller.agency.id(),
                exported_at: now,
                personal_data_masked: !reader.sight.is_whole(),
                matter: Matter::new(matter_code, &matter_id, fields).map_err(Error::Internal)?,
                records,
                not_records,
                entries: pushes
                    .iter()
                    .map(|(&seq, entry)| {
                        ProvenEntry::new(seq, entry.clone(), shown_touched(&entry.touched), &[])
                    })
                    .collect(),
                seal: ProvenEntry::new(0, seal.clone(), String::new(), &[]),
                checkpoint: String::new(),
            };
            seal.touched = bundle.seal_text();
            let seal_seq = self.store.append_audit(vec![seal.clone()]).await?;
            let checkpoint = self.store.issue_checkpoint(true).await?.ok_or_else(|| {
                Error::Internal("no checkpoint could be signed for the evidence".into())
            })?;
            let mut seqs: Vec<i64> = pushes.keys().copied().collect();
            seqs.push(seal_seq);
            let proofs = self.store.inclusion_proofs(&seqs, checkpoint.size).await?;
            for entry in &mut bundle.entries {
                entry.proof = proofs[&entry.seq]
                    .iter()
                    .map(|h| hex::encode(h.0))
                    .collect();
            }
            let touched = seal.touched.clone();
            bundle.seal = ProvenEntry::new(seal_seq, seal, touched, &proofs[&seal_seq]);
            bundle.checkpoint = checkpoint.note;
            Ok(bundle)
        }
    }
}
