//! AdminService (the agency registry) and AuditService (the audit trail), over the store.
//!
//! The registry is kept by the staffing office of a province-level jurisdiction (a code ending in
//! `0000`), for the agencies in its jurisdiction: the hub has no identity above the agencies, and
//! the province's 编办 is the one that answers for the agencies below it. The trail is read by audit
//! and discipline agencies, for the calls of agencies in their jurisdiction.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{page_size, timestamp};
use super::guard::Guard;
use super::policy::{Caller, caller};
use crate::domain::audit::TreeQuery;
use crate::domain::{Agency, AgencyKind};
use crate::error::Error;
use crate::proto;
use crate::store::Store;
use crate::store::trust::{AuditFilter, RegisteredAgency};

/// Default and largest page of the audit trail.
/// Audit entries per page: smaller than other lists, each entry carries what the call touched.
const DEFAULT_AUDIT_PAGE: u32 = 100;
const MAX_AUDIT_PAGE: u32 = 1_000;

/// The handlers of AdminService and AuditService.
#[derive(Debug, Clone)]
pub struct AdminApi {
    store: Store,
    guard: Arc<Guard>,
}

impl AdminApi {
    /// Handlers over `store`; changes through them drop `guard`'s cached registry answers.
    pub fn new(store: Store, guard: Arc<Guard>) -> AdminApi {
        AdminApi { store, guard }
    }

    /// Answers a query of the log's tree from its stored hashes, within its current size.
    async fn tree(&self, query: TreeQuery) -> Result<Vec<Vec<u8>>, Error> {
        let (size, _) = self.store.audit_tree_head().await?;
        query
            .check(size)
            .map_err(|reason| Error::invalid("tree_size", reason))?;
        let hashes = self.store.audit_tree_hashes(&query.needs()).await?;
        Ok(query
            .answer(&hashes)
            .map_err(Error::Internal)?
            .into_iter()
            .map(|hash| hash.0.to_vec())
            .collect())
    }

    async fn entry(&self, agency_id: &str) -> Result<proto::AgencyEntry, Error> {
        self.store
            .agencies()
            .await?
            .into_iter()
            .find(|registered| registered.agency.id() == agency_id)
            .map(agency_entry)
            .ok_or_else(|| Error::NotFound(format!("no agency {agency_id} is registered")))
    }
}

/// Refuses an operator outside a province-level staffing office, or an agency outside its
/// jurisdiction; returns the agency named.
fn managed(operator: &Caller, agency_id: &str) -> Result<Agency, Error> {
    if !operator.agency.jurisdiction.as_str().ends_with("0000") {
        return Err(Error::PermissionDenied(
            "the registry is kept by the staffing office of a province".into(),
        ));
    }
    let agency = Agency::from_uri(&format!(
        "{}{agency_id}",
        crate::domain::agency::AGENCY_URI_PREFIX
    ))
    .map_err(|reason| Error::invalid("agency_id", reason))?;
    if !operator.agency.oversees(&agency.jurisdiction) {
        return Err(Error::PermissionDenied(format!(
            "agency {agency_id} lies outside the jurisdiction of {}",
            operator.agency
        )));
    }
    Ok(agency)
}

/// The fingerprint of a certificate that must name `agency`.
fn fingerprint_for(agency: &Agency, certificate_pem: &str) -> Result<String, Error> {
    let (named, fingerprint) = crate::tls::certificate_identity(certificate_pem.as_bytes())
        .map_err(|reason| Error::invalid("certificate_pem", reason))?;
    if named != *agency {
        return Err(Error::invalid(
            "certificate_pem",
            format!("the certificate names {named}, not {agency}"),
        ));
    }
    Ok(fingerprint)
}

fn agency_entry(registered: RegisteredAgency) -> proto::AgencyEntry {
    proto::AgencyEntry {
        agency_id: registered.agency.id(),
        kind: registered.agency.kind.slug().to_owned(),
        jurisdiction: registered.agency.jurisdiction.to_string(),
        enabled: registered.enabled,
        certificates: registered
            .certificates
            .into_iter()
            .map(|certificate| proto::AgencyCertificate {
                fingerprint: certificate.fingerprint,
                added_at: Some(timestamp(certificate.added_at)),
                revoked_at: certificate.revoked_at.map(timestamp),
            })
            .collect(),
    }
}

fn micros(at: Option<&prost_types::Timestamp>) -> Option<i64> {
    at.map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
}

#[tonic::async_trait]
impl proto::admin_service_server::AdminService for AdminApi {
    async fn add_agency(
        &self,
        request: Request<proto::AddAgencyRequest>,
    ) -> Result<Response<proto::AgencyEntry>, Status> {
        let operator = caller(&request)?;
        let message = request.into_inner();
        let agency = managed(&operator, &message.agency_id)?;
        let fingerprint = fingerprint_for(&agency, &message.certificate_pem)?;
        self.store.add_agency(&agency, Some(&fingerprint)).await?;
        self.guard.registry.invalidate();
        Ok(Response::new(self.entry(&agency.id()).await?))
    }

    async fn disable_agency(
        &self,
        request: Request<proto::AgencyRef>,
    ) -> Result<Response<proto::AgencyEntry>, Status> {
        let operator = caller(&request)?;
        let agency = managed(&operator, &request.get_ref().agency_id)?;
        self.store.set_agency_enabled(&agency.id(), false).await?;
        self.guard.registry.invalidate();
        Ok(Response::new(self.entry(&agency.id()).await?))
    }

    async fn enable_agency(
        &self,
        request: Request<proto::AgencyRef>,
    ) -> Result<Response<proto::AgencyEntry>, Status> {
        let operator = caller(&request)?;
        let agency = managed(&operator, &request.get_ref().agency_id)?;
        self.store.set_agency_enabled(&agency.id(), true).await?;
        self.guard.registry.invalidate();
        Ok(Response::new(self.entry(&agency.id()).await?))
    }

    async fn rekey_agency(
        &self,
        request: Request<proto::RekeyAgencyRequest>,
    ) -> Result<Response<proto::AgencyEntry>, Status> {
        let operator = caller(&request)?;
        let message = request.into_inner();
        let agency = managed(&operator, &message.agency_id)?;
        let fingerprint = fingerprint_for(&agency, &message.certificate_pem)?;
        self.store
            .rekey_agency(&agency.id(), &fingerprint, message.revoke_others)
            .await?;
        self.guard.registry.invalidate();
        Ok(Response::new(self.entry(&agency.id()).await?))
    }

    async fn list_agencies(
        &self,
        request: Request<proto::ListAgenciesRequest>,
    ) -> Result<Response<proto::ListAgenciesResponse>, Status> {
        let operator = caller(&request)?;
        managed(&operator, &operator.agency.id())?;
        let agencies = self
            .store
            .agencies()
            .await?
            .into_iter()
            .filter(|registered| operator.agency.oversees(&registered.agency.jurisdiction))
            .map(agency_entry)
            .collect();
        Ok(Response::new(proto::ListAgenciesResponse { agencies }))
    }
}

#[tonic::async_trait]
impl proto::audit_service_server::AuditService for AdminApi {
    async fn query_audit(
        &self,
        request: Request<proto::QueryAuditRequest>,
    ) -> Result<Response<proto::QueryAuditResponse>, Status> {
        let auditor = caller(&request)?;
        let message = request.into_inner();
        let after_seq = if message.page_token.is_empty() {
            0
        } else {
            message
                .page_token
                .parse::<i64>()
                .map_err(|_| Error::invalid("page_token", "not a token this service gave"))?
        };
        let agency_id = (!message.agency_id.is_empty()).then(|| message.agency_id.clone());
        if let Some(agency_id) = &agency_id {
            let agency = Agency::from_uri(&format!(
                "{}{agency_id}",
                crate::domain::agency::AGENCY_URI_PREFIX
            ))
            .map_err(|reason| Error::invalid("agency_id", reason))?;
            if !auditor.agency.oversees(&agency.jurisdiction) {
                return Err(Error::PermissionDenied(format!(
                    "agency {agency_id} lies outside the jurisdiction of {}",
                    auditor.agency
                ))
                .into());
            }
        }
        let limit = page_size(message.page_size, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE);
        let entries = self
            .store
            .audit_entries(&AuditFilter {
                within: Some(auditor.agency.jurisdiction.clone()),
                unattributed: sees_unattributed(&auditor.agency),
                agency_id,
                method: (!message.method.is_empty()).then(|| message.method.clone()),
                from: micros(message.from.as_ref()),
                until: micros(message.until.as_ref()),
                after_seq,
                through_seq: None,
                limit,
            })
            .await?;
        let next_page_token = match entries.last() {
            Some(last) if entries.len() == limit as usize => last.seq.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(proto::QueryAuditResponse {
            entries: entries
                .into_iter()
                .map(|row| proto::AuditRecord {
                    seq: row.seq,
                    at: Some(timestamp(row.entry.at)),
                    agency_id: row.entry.agency_id,
                    fingerprint: row.entry.fingerprint,
                    peer: row.entry.peer,
                    method: row.entry.method,
                    touched: row.entry.touched,
                    outcome: row.entry.outcome,
                    hash: row.hash,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::SignedCheckpoint>, Status> {
        Ok(Response::new(
            AdminApi::get_checkpoint(self, request.into_inner()).await?,
        ))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<proto::InclusionProofRequest>,
    ) -> Result<Response<proto::InclusionProof>, Status> {
        Ok(Response::new(
            self.inclusion_proof(request.into_inner()).await?,
        ))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<proto::ConsistencyProofRequest>,
    ) -> Result<Response<proto::ConsistencyProof>, Status> {
        Ok(Response::new(
            self.consistency_proof(request.into_inner()).await?,
        ))
    }
}

/// The log's checkpoints and proofs (AuditService).
impl AdminApi {
    async fn get_checkpoint(
        &self,
        message: proto::GetCheckpointRequest,
    ) -> Result<proto::SignedCheckpoint, Error> {
        let size = (message.tree_size > 0).then_some(message.tree_size);
        let stored = self.store.audit_checkpoint(size).await?.ok_or_else(|| {
            Error::NotFound(match size {
                Some(size) => format!("no checkpoint of {size} entries was issued"),
                None => "no checkpoint was issued yet".into(),
            })
        })?;
        Ok(checkpoint_message(stored))
    }

    async fn inclusion_proof(
        &self,
        message: proto::InclusionProofRequest,
    ) -> Result<proto::InclusionProof, Error> {
        if message.seq < 1 {
            return Err(Error::invalid("seq", "entries are numbered from 1"));
        }
        let index = message.seq as u64 - 1;
        let size = match message.tree_size {
            0 => self.store.audit_tree_head().await?.0,
            size => size,
        };
        let hashes = self.tree(TreeQuery::Inclusion { index, size }).await?;
        let leaf = self
            .store
            .audit_tree_hashes(&[tlog_tiles::stored_hash_index(0, index)])
            .await?;
        Ok(proto::InclusionProof {
            leaf_index: index,
            tree_size: size,
            leaf_hash: leaf
                .0
                .values()
                .next()
                .map(|hash| hash.0.to_vec())
                .unwrap_or_default(),
            hashes,
        })
    }

    async fn consistency_proof(
        &self,
        message: proto::ConsistencyProofRequest,
    ) -> Result<proto::ConsistencyProof, Error> {
        let new = match message.new_size {
            0 => self.store.audit_tree_head().await?.0,
            size => size,
        };
        let old = message.old_size;
        Ok(proto::ConsistencyProof {
            old_size: old,
            new_size: new,
            hashes: self.tree(TreeQuery::Consistency { old, new }).await?,
        })
    }
}

/// A stored checkpoint as sent: by `GetCheckpoint`, on the feed, in evidence bundles.
pub fn checkpoint_message(
    stored: crate::store::trust::StoredCheckpoint,
) -> proto::SignedCheckpoint {
    proto::SignedCheckpoint {
        note: stored.note,
        tree_size: stored.size,
        root_hash: stored.root.0.to_vec(),
        issued_at: Some(timestamp(stored.issued_at)),
    }
}

/// Whether an agency reading the trail also sees the entries that name no agency: the handshakes
/// this hub refused and the calls of certificates that name none. They are the hub's own, and the
/// hub serves a province (the auditor is registered with it): its audit agency at the province
/// level (`140000` for a hub of `14xxxx` agencies) sees them.
fn sees_unattributed(agency: &Agency) -> bool {
    agency.kind == AgencyKind::Audit && agency.jurisdiction.as_str().ends_with("0000")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Jurisdiction;

    fn agency(code: &str, kind: AgencyKind) -> Agency {
        Agency::new(Jurisdiction::parse(code).unwrap(), kind)
    }

    #[test]
    fn only_a_provinces_audit_agency_sees_the_entries_naming_no_agency() {
        assert!(sees_unattributed(&agency("140000", AgencyKind::Audit)));
        assert!(!sees_unattributed(&agency("140100", AgencyKind::Audit)));
        assert!(!sees_unattributed(&agency("140105", AgencyKind::Audit)));
        assert!(!sees_unattributed(&agency(
            "140000",
            AgencyKind::Discipline
        )));
    }
}
