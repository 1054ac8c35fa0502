//! The read service. Every read is scoped: an agency sees institutions of its own jurisdiction and
//! those below it, and a person's history only where it passed through them.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

use super::Hub;
use super::convert::{
    self as c, DEFAULT_PAGE, MAX_PAGE, Wire, page_size, request_date, request_uscc,
};
use super::policy::caller;
use crate::domain::{Agency, Period, Uscc};
use crate::error::Error;
use crate::proto;

impl Hub {
    /// Refuses a read about an institution outside the agency's jurisdiction. An institution the
    /// hub has never heard of reads as empty within the agency's own jurisdiction.
    pub(crate) async fn check_oversees(&self, agency: &Agency, uscc: &Uscc) -> Result<(), Error> {
        let jurisdiction = self.store.jurisdiction_of(uscc).await?;
        crate::store::query::overseen(agency, uscc, jurisdiction.as_ref())
    }
}

fn period(field: &str, value: &str) -> Result<Period, Error> {
    Period::parse(value).map_err(|reason| Error::invalid(field, reason))
}

#[tonic::async_trait]
impl proto::query_service_server::QueryService for Hub {
    async fn get_institution(
        &self,
        request: Request<proto::GetInstitutionRequest>,
    ) -> Result<Response<proto::InstitutionView>, Status> {
        let caller = caller(&request)?;
        let uscc = request_uscc("uscc", &request.get_ref().uscc)?;
        let as_of = request_date("as_of", &request.get_ref().as_of)?;
        let view = self
            .store
            .institution_view(&uscc, as_of)
            .await?
            .ok_or_else(|| Error::NotFound(format!("institution {uscc} is not in the registry")))?;
        if !caller
            .agency
            .oversees(&view.institution.record.jurisdiction)
        {
            return Err(Error::PermissionDenied(format!(
                "institution {uscc} lies outside the jurisdiction of {}",
                caller.agency
            ))
            .into());
        }
        let quotas = view
            .categories
            .iter()
            .map(|occupancy| {
                let approved = occupancy
                    .quota
                    .as_ref()
                    .map_or(0, |q| q.record.approved_count);
                proto::QuotaOccupancy {
                    category: occupancy.category.to_wire(),
                    quota: occupancy.quota.as_ref().map(c::quota_message),
                    approved_count: approved,
                    active_count: occupancy.active,
                    vacancy: i64::from(approved) - i64::from(occupancy.active),
                }
            })
            .collect();
        let leader_posts = view
            .posts
            .iter()
            .map(|occupancy| proto::LeaderPostOccupancy {
                post: occupancy.post.as_ref().map(c::leader_post_message),
                level: occupancy.level.to_wire(),
                position: occupancy.position.to_wire(),
                approved_count: occupancy
                    .post
                    .as_ref()
                    .map_or(0, |p| p.record.approved_count),
                occupied_count: occupancy.occupied,
            })
            .collect();
        Ok(Response::new(proto::InstitutionView {
            institution: Some(c::institution_message(&view.institution)),
            as_of: as_of.to_string(),
            quotas,
            leader_posts,
            plans: view.plans.iter().map(c::plan_message).collect(),
            approvals: view
                .approvals
                .iter()
                .map(|(approval, used)| proto::ApprovalUse {
                    approval: Some(c::approval_message(approval)),
                    used_entries: *used,
                })
                .collect(),
            child_usccs: view.children,
        }))
    }

    async fn list_roll(
        &self,
        request: Request<proto::ListRollRequest>,
    ) -> Result<Response<proto::ListRollResponse>, Status> {
        let caller = caller(&request)?;
        let message = request.get_ref();
        let uscc = request_uscc("uscc", &message.uscc)?;
        let as_of = request_date("as_of", &message.as_of)?;
        self.check_oversees(&caller.agency, &uscc).await?;
        let reader = self.reader(&caller.agency).await?;
        let page_size = page_size(message.page_size, DEFAULT_PAGE, MAX_PAGE);
        let after = if message.page_token.is_empty() {
            String::new()
        } else {
            // Sealed: a page token carries no resident ID.
            reader
                .tokens()
                .person_of(&message.page_token)
                .ok_or_else(|| Error::invalid("page_token", "is not a token this hub gave"))?
                .to_string()
        };
        let entries = self.store.roll(&uscc, as_of, &after, page_size).await?;
        let next_page_token = if entries.len() == page_size as usize {
            entries
                .last()
                .map(|e| reader.tokens().person(&e.resident_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let entries = entries
            .iter()
            .map(|entry| {
                let mut message = proto::RollEntry {
                    resident_id: entry.resident_id.to_string(),
                    name: entry.name.clone(),
                    category: entry.spell.category.to_wire(),
                    rank: entry.spell.rank.to_wire(),
                    status: entry.spell.status.to_wire(),
                    since: entry.spell.valid_from.to_string(),
                    leader_level: entry
                        .post
                        .map(|(level, _)| level.to_wire())
                        .unwrap_or_default(),
                    leader_position: entry
                        .post
                        .map(|(_, position)| position.to_wire())
                        .unwrap_or_default(),
                    approval_number: entry.spell.approval_number.clone().unwrap_or_default(),
                    person_token: String::new(),
                };
                reader.roll_entry(&mut message);
                message
            })
            .collect();
        Ok(Response::new(proto::ListRollResponse {
            uscc: uscc.to_string(),
            as_of: as_of.to_string(),
            entries,
            next_page_token,
        }))
    }

    async fn get_person_history(
        &self,
        request: Request<proto::GetPersonHistoryRequest>,
    ) -> Result<Response<proto::PersonHistory>, Status> {
        let caller = caller(&request)?;
        let reader = self.reader(&caller.agency).await?;
        let resident_id =
            reader.person_in_request("resident_id", &request.get_ref().resident_id)?;
        let not_found = || {
            Error::NotFound(format!(
                "no record of {} within your jurisdiction",
                resident_id.masked()
            ))
        };
        let history = self
            .store
            .person_history(&resident_id)
            .await?
            .ok_or_else(not_found)?;

        // Keep only what happened at institutions the caller oversees.
        let mut visible: HashMap<Uscc, bool> = HashMap::new();
        let mut institutions: Vec<&Uscc> = history.spells.iter().map(|s| &s.institution).collect();
        institutions.extend(history.events.iter().map(|e| &e.record.institution));
        institutions.extend(history.appointments.iter().map(|a| &a.record.institution));
        for uscc in institutions {
            if !visible.contains_key(uscc) {
                let sees = self
                    .store
                    .jurisdiction_of(uscc)
                    .await?
                    .is_some_and(|j| caller.agency.oversees(&j));
                visible.insert(uscc.clone(), sees);
            }
        }
        let sees = |uscc: &Uscc| visible.get(uscc).copied().unwrap_or(false);
        let spells: Vec<_> = history
            .spells
            .iter()
            .filter(|s| sees(&s.institution))
            .map(c::spell_message)
            .collect();
        let events: Vec<_> = history
            .events
            .iter()
            .filter(|e| sees(&e.record.institution))
            .map(c::event_message)
            .collect();
        let appointments: Vec<_> = history
            .appointments
            .iter()
            .filter(|a| sees(&a.record.institution))
            .map(c::appointment_message)
            .collect();
        if spells.is_empty() && events.is_empty() && appointments.is_empty() {
            return Err(not_found().into());
        }
        let mut message = proto::PersonHistory {
            resident_id: resident_id.to_string(),
            name: history.name,
            spells,
            events,
            appointments,
            first_seen: Some(c::timestamp(history.first_seen)),
            person_token: String::new(),
        };
        reader.person_history(&mut message);
        Ok(Response::new(message))
    }

    async fn list_payroll(
        &self,
        request: Request<proto::ListPayrollRequest>,
    ) -> Result<Response<proto::ListPayrollResponse>, Status> {
        let caller = caller(&request)?;
        let uscc = request_uscc("institution_uscc", &request.get_ref().institution_uscc)?;
        let period = period("period", &request.get_ref().period)?;
        self.check_oversees(&caller.agency, &uscc).await?;
        let lines = self.store.payroll(&uscc, period).await?;
        // Reversals and the lines they void do not count.
        let reversed: std::collections::HashSet<&str> = lines
            .iter()
            .filter_map(|l| l.record.reverses.as_deref())
            .collect();
        let total_gross_fen = crate::domain::total_fen(
            lines
                .iter()
                .filter(|l| l.record.reverses.is_none() && !reversed.contains(l.record_id.as_str()))
                .map(|l| l.record.gross_fen),
        )
        .ok_or_else(|| {
            Error::ResourceExhausted("the wage bill does not fit in 64 bits of fen".into())
        })?;
        let reader = self.reader(&caller.agency).await?;
        let mut amounts_masked = false;
        let lines = lines
            .iter()
            .map(|line| {
                let mut message = c::payroll_message(line);
                amounts_masked |= reader.payroll_line(&mut message);
                message
            })
            .collect();
        Ok(Response::new(proto::ListPayrollResponse {
            lines,
            total_gross_fen,
            amounts_masked,
        }))
    }

    async fn list_funding(
        &self,
        request: Request<proto::ListFundingRequest>,
    ) -> Result<Response<proto::ListFundingResponse>, Status> {
        let caller = caller(&request)?;
        let uscc = request_uscc("institution_uscc", &request.get_ref().institution_uscc)?;
        let period = period("period", &request.get_ref().period)?;
        self.check_oversees(&caller.agency, &uscc).await?;
        let fundings = self.store.fundings(&uscc, period).await?;
        Ok(Response::new(proto::ListFundingResponse {
            fundings: fundings.iter().map(c::funding_message).collect(),
        }))
    }
}
