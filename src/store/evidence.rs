//! What an evidence bundle is made of, read from the store: a record as it was pushed (its stored
//! row, content hash, sender and time), the audit entry of its push, and inclusion proofs into the
//! log's tree. The bundle's format and verification are `domain::evidence`; sealing it is the
//! API's (`ReconciliationService.ExportEvidence`).

use std::collections::BTreeMap;

use sqlx::{Column, Row};

use super::{Store, Value, bind_all};
use crate::domain::audit::{ChainedEntry, Hash, TreeQuery};
use crate::error::{Error, Result};
use crate::store::trust::AuditFilter;

/// A pushed record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRecord {
    /// Its kind (`payroll_line`).
    pub kind: String,
    /// The evidence id the finding names it by.
    pub evidence_id: String,
    /// The sender.
    pub agency_id: String,
    /// The sender's record id.
    pub record_id: String,
    /// SHA-256 (hex) of the pushed message.
    pub content_hash: String,
    /// When it was accepted (Unix microseconds).
    pub accepted_at: i64,
    /// Its stored columns besides sender and id, as text (`None` for NULL).
    pub fields: Vec<(String, Option<String>)>,
    /// The audit entry of its push, when one is found.
    pub push_entry: Option<ChainedEntry>,
}

/// The table holding each kind's pushed records (an allow-list: names are never taken from input).
fn table_of(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "institution" => "institution_versions",
        "quota" => "quotas",
        "leader_post" => "leader_posts",
        "staffing_plan" => "staffing_plans",
        "hiring_approval" => "hiring_approvals",
        "personnel_event" => "personnel_events",
        "appointment" => "appointments",
        "payroll_line" => "payroll_lines",
        "funding" => "fundings",
        _ => return None,
    })
}

/// `payroll_line` -> `PayrollLine`: what the push methods of a kind are named after.
fn method_stem(kind: &str) -> String {
    kind.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A column's value as text, whatever its stored type.
fn text_of(row: &sqlx::any::AnyRow, index: usize) -> Result<Option<String>> {
    if let Ok(text) = row.try_get::<Option<String>, _>(index) {
        return Ok(text);
    }
    if let Ok(number) = row.try_get::<Option<i64>, _>(index) {
        return Ok(number.map(|n| n.to_string()));
    }
    row.try_get::<Option<f64>, _>(index)
        .map(|number| number.map(|n| n.to_string()))
        .map_err(Error::from)
}

impl Store {
    /// The record a finding's evidence names (`kind`, `id`): `None` when the kind is not a pushed
    /// record of its own (a person) or the hub no longer holds it.
    pub async fn pushed_record(&self, kind: &str, id: &str) -> Result<Option<PushedRecord>> {
        let Some(table) = table_of(kind) else {
            return Ok(None);
        };
        let (agency_id, record_id) = if kind == "institution" {
            let row = sqlx::query_with(
                "SELECT agency_id, record_id FROM institutions WHERE uscc = $1",
                bind_all(vec![Value::from(id)])?,
            )
            .fetch_optional(self.readers())
            .await?;
            match row {
                Some(row) => (row.try_get("agency_id")?, row.try_get("record_id")?),
                None => return Ok(None),
            }
        } else {
            // `{jurisdiction}/{agency kind}/{record id}`: the record id may hold `/` itself.
            let mut parts = id.splitn(3, '/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(jurisdiction), Some(agency), Some(record)) => {
                    (format!("{jurisdiction}/{agency}"), record.to_owned())
                }
                _ => return Ok(None),
            }
        };
        let row = sqlx::query_with(
            sqlx::AssertSqlSafe(format!(
                "SELECT * FROM {table} WHERE agency_id = $1 AND record_id = $2"
            )),
            bind_all(vec![
                Value::from(agency_id.as_str()),
                Value::from(record_id.as_str()),
            ])?,
        )
        .fetch_optional(self.readers())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut fields = Vec::new();
        for (index, column) in row.columns().iter().enumerate() {
            let name = column.name();
            if name != "agency_id" && name != "record_id" {
                fields.push((name.to_owned(), text_of(&row, index)?));
            }
        }
        let pushed = sqlx::query_with(
            "SELECT content_hash, accepted_at FROM pushed_records \
             WHERE agency_id = $1 AND kind = $2 AND record_id = $3",
            bind_all(vec![
                Value::from(agency_id.as_str()),
                Value::from(kind),
                Value::from(record_id.as_str()),
            ])?,
        )
        .fetch_optional(self.readers())
        .await?
        .ok_or_else(|| {
            Error::Internal(format!(
                "{kind} {id} is stored without its push being recorded"
            ))
        })?;
        let accepted_at: i64 = pushed.try_get("accepted_at")?;
        let push_entry = self
            .push_entry(&agency_id, kind, &record_id, accepted_at)
            .await?;
        Ok(Some(PushedRecord {
            kind: kind.to_owned(),
            evidence_id: id.to_owned(),
            agency_id,
            record_id,
            content_hash: pushed.try_get("content_hash")?,
            accepted_at,
            fields,
            push_entry,
        }))
    }

    /// The audit entry of a record's push: the sender's first successful call of a push method of
    /// the kind answered once the record was accepted, preferring one whose note names the record
    /// (a bulk push's note of record ids is cut after a few hundred characters).
    async fn push_entry(
        &self,
        agency_id: &str,
        kind: &str,
        record_id: &str,
        accepted_at: i64,
    ) -> Result<Option<ChainedEntry>> {
        let stem = format!("/Push{}", method_stem(kind));
        let candidates: Vec<ChainedEntry> = self
            .audit_entries(&AuditFilter {
                agency_id: Some(agency_id.to_owned()),
                from: Some(accepted_at),
                limit: 256,
                ..AuditFilter::default()
            })
            .await?
            .into_iter()
            .filter(|row| row.entry.outcome == "OK" && row.entry.method.contains(&stem))
            .collect();
        let names = |row: &&ChainedEntry| {
            row.entry
                .touched
                .split(|c: char| c.is_whitespace() || c == ',' || c == '"')
                .any(|word| word == record_id)
        };
        Ok(candidates
            .iter()
            .find(names)
            .or(candidates.first())
            .cloned())
    }

    /// Inclusion proofs of these entries into the tree of `size` entries.
    pub async fn inclusion_proofs(
        &self,
        seqs: &[i64],
        size: u64,
    ) -> Result<BTreeMap<i64, Vec<Hash>>> {
        let mut proofs = BTreeMap::new();
        for &seq in seqs {
            let index = u64::try_from(seq - 1)
                .map_err(|_| Error::Internal(format!("audit entry {seq} has no leaf")))?;
            let query = TreeQuery::Inclusion { index, size };
            query.check(size).map_err(Error::Internal)?;
            let hashes = self.audit_tree_hashes(&query.needs()).await?;
            proofs.insert(seq, query.answer(&hashes).map_err(Error::Internal)?);
        }
        Ok(proofs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_methods_are_named_after_the_kind() {
        assert_eq!(method_stem("payroll_line"), "PayrollLine");
        assert_eq!(method_stem("institution"), "Institution");
        assert!(table_of("person").is_none());
    }
}
