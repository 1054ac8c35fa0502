//! 审计日志: the audit trail for audit and discipline inspection (AuditService), with what the
//! console can check of it: the latest signed checkpoint (GetCheckpoint), each shown entry's
//! inclusion in it (GetInclusionProof, checked here against a leaf hashed from the entry as shown),
//! and the hash chain between consecutive shown entries. The signature of the checkpoint is checked
//! with the log's public key by `quotahub audit verify` and by witnesses, not here: the console
//! shows the note for that.

use axum::response::Response;
use serde::Deserialize;
use tonic::Status;

use super::lists::{BULK_PAGE_SIZE, MAX_BULK_PAGES, QUERY_AUDIT, csv_response};
use super::views::{self, Chrome, Nav};
use super::{Lang, Visit};
use crate::domain::audit::{AuditEntry, Hash, verify_inclusion};
use crate::proto;
use crate::proto::audit_service_server::AuditService as _;

/// See [`super::pages::LIST_FINDINGS`].
pub const GET_CHECKPOINT: &str = "/quotahub.v1.AuditService/GetCheckpoint";
/// See [`super::pages::LIST_FINDINGS`].
pub const GET_INCLUSION_PROOF: &str = "/quotahub.v1.AuditService/GetInclusionProof";

/// Entries per page.
const PAGE_SIZE: u32 = 50;

/// The trail's filters and page.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct TrailQuery {
    /// An agency (`140100/finance`).
    pub agency: String,
    /// A method (a gRPC path, or `console GET /`).
    pub method: String,
    /// From this day (China Standard Time).
    pub from: String,
    /// Through this day.
    pub until: String,
    /// QueryAudit's page token.
    pub page: String,
    /// `en` for English.
    pub lang: Option<String>,
}

impl TrailQuery {
    /// The query string (without `lang`), with another page.
    pub fn query_string(&self, page: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("agency", self.agency.as_str()),
            ("method", self.method.as_str()),
            ("from", self.from.as_str()),
            ("until", self.until.as_str()),
            ("page", page),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }

    /// For the audit trail itself.
    pub fn summary(&self) -> String {
        self.query_string(&self.page)
    }

    fn request(
        &self,
        page_size: u32,
        page_token: String,
    ) -> Result<proto::QueryAuditRequest, Status> {
        Ok(proto::QueryAuditRequest {
            agency_id: self.agency.trim().to_owned(),
            method: self.method.trim().to_owned(),
            from: day_start(&self.from, 0)?,
            until: day_start(&self.until, 1)?,
            page_size,
            page_token,
        })
    }
}

/// The start of `day` plus `days_after` days in China Standard Time, as a timestamp.
fn day_start(day: &str, days_after: i64) -> Result<Option<prost_types::Timestamp>, Status> {
    if day.trim().is_empty() {
        return Ok(None);
    }
    let date = chrono::NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
        .map_err(|_| Status::invalid_argument("dates are written 2024-01-31"))?;
    let china = chrono::FixedOffset::east_opt(8 * 3_600).expect("a valid offset");
    let start = (date + chrono::Duration::days(days_after))
        .and_hms_opt(0, 0, 0)
        .and_then(|at| at.and_local_timezone(china).single())
        .ok_or_else(|| Status::invalid_argument("no such day"))?;
    Ok(Some(prost_types::Timestamp {
        seconds: start.timestamp(),
        nanos: 0,
    }))
}

/// An entry as the page shows it, with what was checked of it.
pub struct TrailRow {
    pub seq: i64,
    pub at: String,
    pub agency: String,
    pub method: String,
    pub touched: String,
    pub outcome: String,
    /// `ok`, `bad` or `pending` (not yet under a checkpoint).
    pub included: &'static str,
    /// Whether the chain from the entry shown before it holds (`ok`, `bad`, or `-` when the
    /// previous entry is not on the page).
    pub chained: &'static str,
}

/// The page.
#[derive(askama::Template)]
#[template(path = "console/audit.html")]
pub struct TrailPage {
    pub c: Chrome,
    pub agency: String,
    pub method: String,
    pub from: String,
    pub until: String,
    pub rows: Vec<TrailRow>,
    pub checkpoint_size: u64,
    pub checkpoint_root: String,
    pub checkpoint_at: String,
    pub checkpoint_note: String,
    pub verified: usize,
    pub failed: usize,
    pub pending: usize,
    pub next: Option<String>,
    pub first: Option<String>,
    pub csv: String,
}

/// The entry as it was hashed: the record's fields, its jurisdiction that of its agency.
fn entry_of(record: &proto::AuditRecord) -> AuditEntry {
    let at = record
        .at
        .as_ref()
        .map_or(0, |at| at.seconds * 1_000_000 + i64::from(at.nanos / 1_000));
    AuditEntry {
        at,
        agency_id: record.agency_id.clone(),
        jurisdiction: record
            .agency_id
            .split_once('/')
            .map(|(jurisdiction, _)| jurisdiction.to_owned())
            .unwrap_or_default(),
        fingerprint: record.fingerprint.clone(),
        peer: record.peer.clone(),
        method: record.method.clone(),
        touched: record.touched.clone(),
        outcome: record.outcome.clone(),
    }
}

fn hash_of(bytes: &[u8]) -> Option<Hash> {
    <[u8; 32]>::try_from(bytes).ok().map(Hash)
}

/// The trail, filtered and paged, with its verification state.
pub async fn page(visit: &mut Visit, query: &TrailQuery) -> Result<Response, Status> {
    let agency = visit.viewer().await?;
    let entries = visit
        .call_auditor(
            QUERY_AUDIT,
            query.request(PAGE_SIZE, query.page.clone())?,
            |hub, request| async move { hub.query_audit(request).await },
        )
        .await?;
    let checkpoint = match visit
        .call_auditor(
            GET_CHECKPOINT,
            proto::GetCheckpointRequest { tree_size: 0 },
            |hub, request| async move { hub.get_checkpoint(request).await },
        )
        .await
    {
        Ok(checkpoint) => Some(checkpoint),
        Err(status) if status.code() == tonic::Code::NotFound => None,
        Err(status) => return Err(status),
    };
    let size = checkpoint.as_ref().map_or(0, |c| c.tree_size);
    let root = checkpoint.as_ref().and_then(|c| hash_of(&c.root_hash));
    let mut rows = Vec::with_capacity(entries.entries.len());
    let mut previous: Option<&proto::AuditRecord> = None;
    for record in &entries.entries {
        let entry = entry_of(record);
        let included = match (u64::try_from(record.seq), root) {
            (Ok(seq), Some(root)) if seq >= 1 && seq <= size => {
                let proof = visit
                    .call_auditor(
                        GET_INCLUSION_PROOF,
                        proto::InclusionProofRequest {
                            seq: record.seq,
                            tree_size: size,
                        },
                        |hub, request| async move { hub.get_inclusion_proof(request).await },
                    )
                    .await?;
                let hashes: Option<Vec<Hash>> =
                    proof.hashes.iter().map(|hash| hash_of(hash)).collect();
                let holds = hashes.is_some_and(|hashes: Vec<Hash>| {
                    verify_inclusion(&hashes, size, root, seq - 1, entry.leaf_hash())
                });
                if holds { "ok" } else { "bad" }
            }
            _ => "pending",
        };
        let chained = match previous {
            Some(before) if before.seq + 1 == record.seq => {
                if entry.chain_hash(&before.hash) == record.hash {
                    "ok"
                } else {
                    "bad"
                }
            }
            _ => "-",
        };
        previous = Some(record);
        rows.push(TrailRow {
            seq: record.seq,
            at: views::timestamp(record.at.as_ref()),
            agency: record.agency_id.clone(),
            method: record.method.clone(),
            // The page shows the start of what a call touched; the CSV has all of it.
            touched: shortened(&record.touched, 120),
            outcome: record.outcome.clone(),
            included,
            chained,
        });
    }
    let lang = visit.lang;
    let chrome = Chrome::new(
        visit,
        &agency,
        Nav::Audit,
        "/audit",
        &query.query_string(&query.page),
    );
    let count = |state: &str| {
        rows.iter()
            .filter(|row| row.included == state || row.chained == state)
            .count()
    };
    let page = TrailPage {
        agency: query.agency.clone(),
        method: query.method.clone(),
        from: query.from.clone(),
        until: query.until.clone(),
        verified: rows.iter().filter(|row| row.included == "ok").count(),
        failed: count("bad"),
        pending: rows.iter().filter(|row| row.included == "pending").count(),
        checkpoint_size: size,
        checkpoint_root: checkpoint
            .as_ref()
            .map(|c| hex::encode(&c.root_hash))
            .unwrap_or_default(),
        checkpoint_at: checkpoint
            .as_ref()
            .map(|c| views::timestamp(c.issued_at.as_ref()))
            .unwrap_or_default(),
        checkpoint_note: checkpoint.map(|c| c.note).unwrap_or_default(),
        rows,
        next: (!entries.next_page_token.is_empty()).then(|| {
            views::with_lang(
                &format!("/audit?{}", query.query_string(&entries.next_page_token)),
                lang,
            )
        }),
        first: (!query.page.is_empty())
            .then(|| views::with_lang(&format!("/audit?{}", query.query_string("")), lang)),
        csv: views::with_lang(&format!("/audit.csv?{}", query.query_string("")), lang),
        c: chrome,
    };
    views::html(&page)
}

fn shortened(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(chars).collect::<String>())
    }
}

/// The filtered trail as CSV (at most 20 pages of 5,000 entries).
pub async fn csv(visit: &mut Visit, query: &TrailQuery) -> Result<Response, Status> {
    visit.viewer().await?;
    let mut out = csv::Writer::from_writer(vec![0xEF, 0xBB, 0xBF]);
    let internal = |error: csv::Error| Status::internal(error.to_string());
    out.write_record([
        "seq",
        "at",
        "agency_id",
        "fingerprint",
        "peer",
        "method",
        "touched",
        "outcome",
        "hash",
    ])
    .map_err(internal)?;
    let mut token = String::new();
    for _ in 0..MAX_BULK_PAGES {
        let page = visit
            .call_auditor(
                QUERY_AUDIT,
                query.request(BULK_PAGE_SIZE, token)?,
                |hub, request| async move { hub.query_audit(request).await },
            )
            .await?;
        for record in &page.entries {
            out.write_record([
                &record.seq.to_string(),
                &views::timestamp(record.at.as_ref()),
                &record.agency_id,
                &record.fingerprint,
                &record.peer,
                &record.method,
                &record.touched,
                &record.outcome,
                &record.hash,
            ])
            .map_err(internal)?;
        }
        if page.next_page_token.is_empty() {
            return csv_response(out, "audit.csv");
        }
        token = page.next_page_token;
    }
    Err(Status::resource_exhausted(
        "too many entries for one export; narrow the filters",
    ))
}
