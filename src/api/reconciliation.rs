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
        let report = self
            .store
            .reconcile(Some(&jurisdiction), as_of, message.dry_run)
            .await?;
        let count = |kind| {
            report
                .changes
                .iter()
                .filter(|change| change.kind == kind)
                .count() as u64
        };
        use crate::store::reconcile::ChangeKind;
        let reader = self.reader(&caller.agency).await?;
        Ok(Response::new(proto::ReconcileResponse {
            jurisdiction: jurisdiction.to_string(),
            as_of: as_of.to_string(),
            institutions: report.institutions,
            raised: count(ChangeKind::Raised),
            updated: count(ChangeKind::Updated),
            resolved: count(ChangeKind::Resolved),
            open: report.open,
            kept: !message.dry_run,
            changes: report
                .changes
                .iter()
                .take(MAX_LISTED_CHANGES)
                .map(|change| {
                    let mut message = c::finding_change_message(change);
                    reader.finding_change(&mut message);
                    message
                })
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
        let raised = raised_range(&message.raised_from, &message.raised_to)?;
        let mut findings = self.store.findings(&filter).await?;
        let next_page_token = if findings.len() == limit as usize {
            findings
                .last()
                .map(|f| page_token(&reader, &f.finding.key))
                .unwrap_or_default()
        } else {
            String::new()
        };
        // The date filter is applied to the page read by key, so a page may come out short; its
        // token still continues after the last finding read.
        if let Some((from, to)) = raised {
            findings.retain(|f| {
                from.is_none_or(|from| f.raised_at >= from) && to.is_none_or(|to| f.raised_at < to)
            });
        }
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

/// The instants `[from, to)` of ListFindings' days `raised_from..=raised_to` (China Standard
/// Time), or `None` without a date filter.
#[allow(clippy::type_complexity)]
fn raised_range(from: &str, to: &str) -> Result<Option<(Option<i64>, Option<i64>)>, Error> {
    let day = |field: &str, value: &str| {
        let value = value.trim();
        (!value.is_empty())
            .then(|| {
                crate::domain::ids::parse_date(value)
                    .map_err(|reason| Error::invalid(field, reason))
            })
            .transpose()
    };
    let (from, to) = (day("raised_from", from)?, day("raised_to", to)?);
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(Error::invalid("raised_to", "is before raised_from"));
    }
    let range = crate::store::ledger::TimeRange::of_days(from, to);
    Ok(Some((range.from, range.to)))
}
