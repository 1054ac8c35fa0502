//! Evidence bundles (证据包): a matter (a finding, a ledger item, a case) as it stands, every record
//! behind its evidence as pushed, the audit entries of those pushes with their inclusion proofs,
//! and the checkpoint they prove into, in one JSON file that checks itself offline with nothing
//! but the hub's public log key. Pure: the store reads what goes in, the API seals it.
//!
//! What binds what:
//! - The checkpoint is a signed note of the log key (`audit::open_checkpoint`).
//! - Every audit entry in the bundle (the pushes', and the export's own *seal*) is proven into the
//!   checkpoint's tree by its inclusion proof (RFC 9162), its leaf recomputed from its fields.
//! - A push entry names who called which push RPC, when, answered OK, and (unless a bulk push's
//!   note was cut) the record's id: it binds a record's sender, kind, id and time at push time.
//! - The seal is the audit entry the hub appended when it exported the bundle: its text is the
//!   SHA-256 of everything else in the bundle ([`Bundle::digest`]). So every field, masked or not,
//!   is bound by the log from the export on, and witnesses holding later checkpoints hold the hub
//!   to it.
//! - Personal data follows the reader's masking: a masked field keeps only its masked form and a
//!   salted SHA-256 commitment (`commitment`), a clear one its value and salt, from which the
//!   commitment is recomputed; digests are over commitments, so a masked bundle verifies as a
//!   whole one does, and the salt keeps a masked resident ID from being guessed from its hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::audit::{AuditEntry, Hash, open_checkpoint, verify_inclusion};
use super::privacy::{Visibility, mask_name, mask_resident_id, mask_resident_ids_in};

/// The bundle format's name and version (the file's `format`).
pub const FORMAT: &str = "quotahub-evidence-bundle/1";

/// The method recorded for the seal of an exported bundle.
pub const SEAL_METHOD: &str = "evidence-seal";

/// One field of a record or matter: its value and salt, or, masked for this reader, its masked
/// form and commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Field {
    /// The value, when the reader sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Its salt (hex, 16 bytes), with the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// What the reader sees instead (`110105********002X`, `王*`), when masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked: Option<String>,
    /// The commitment to the value, when masked: hex SHA-256 of the field's salt and value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<String>,
}

impl Field {
    /// A field the reader sees.
    pub fn clear(value: &str, salt: [u8; 16]) -> Field {
        Field {
            value: Some(value.to_owned()),
            salt: Some(hex::encode(salt)),
            ..Field::default()
        }
    }

    /// A field shown as `masked`, committed to `value`.
    pub fn hidden(value: &str, masked: &str, salt: [u8; 16]) -> Field {
        Field {
            masked: Some(masked.to_owned()),
            commitment: Some(commit(&salt, value)),
            ..Field::default()
        }
    }

    /// The commitment: recomputed from a clear value, taken as given when masked.
    pub fn commitment(&self) -> Result<String, String> {
        match (&self.value, &self.salt, &self.commitment) {
            (Some(value), Some(salt), None) => {
                let salt = hex::decode(salt).map_err(|_| "its salt is not hex".to_owned())?;
                Ok(commit(&salt, value))
            }
            (None, None, Some(commitment)) => Ok(commitment.clone()),
            _ => Err("it is neither a value with its salt nor a masked commitment".into()),
        }
    }

    /// What a reader sees of it.
    pub fn shown(&self) -> &str {
        self.value
            .as_deref()
            .or(self.masked.as_deref())
            .unwrap_or("")
    }
}

/// A stored field as a reader with `sight` sees it: a person's resident ID, name and pay by the
/// table's row (`api::policy::PERSONAL_DATA`), and resident IDs anywhere else in text.
pub fn personal_field(sight: Visibility, name: &str, value: &str, salt: [u8; 16]) -> Field {
    let masked = match name {
        "resident_id" | "person" if !sight.resident_ids => Some(mask_resident_id(value)),
        "name" if !sight.names => Some(mask_name(value)),
        "gross_fen" if !sight.pay => Some("****".to_owned()),
        _ if !sight.resident_ids => {
            Some(mask_resident_ids_in(value)).filter(|masked| masked != value)
        }
        _ => None,
    };
    match masked {
        Some(masked) => Field::hidden(value, &masked, salt),
        None => Field::clear(value, salt),
    }
}

fn commit(salt: &[u8], value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"quotahub-evidence-field\0");
    hasher.update(salt);
    hasher.update(value.as_bytes());
    hex::encode(hasher.finalize())
}

/// Length-prefixed parts, hashed: no two different lists of parts hash alike.
fn digest_of<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Named fields, by name.
pub type Fields = BTreeMap<String, Field>;

fn fields_digest(head: &[&str], fields: &Fields) -> Result<String, String> {
    let mut parts: Vec<String> = head.iter().map(|s| (*s).to_owned()).collect();
    for (name, field) in fields {
        parts.push(name.clone());
        parts.push(
            field
                .commitment()
                .map_err(|reason| format!("field `{name}`: {reason}"))?,
        );
    }
    Ok(digest_of(parts.iter().map(String::as_str)))
}

/// The matter the bundle is evidence for, as it stands at export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matter {
    /// `alert` (a finding), `ledger_item` or `case`.
    pub kind: String,
    /// Its id as the hub names it (an alert: `CODE|institution|subject|period`).
    pub id: String,
    /// Its fields (a finding's code, subject, explanations, evidence, state, version, ...).
    pub fields: Fields,
    /// SHA-256 over its kind, id and fields' commitments.
    pub digest: String,
}

impl Matter {
    /// The matter, its digest computed.
    pub fn new(kind: &str, id: &str, fields: Fields) -> Result<Matter, String> {
        let digest = fields_digest(&[kind, id], &fields)?;
        Ok(Matter {
            kind: kind.to_owned(),
            id: id.to_owned(),
            fields,
            digest,
        })
    }
}

/// A pushed record as the hub keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record kind (`payroll_line`, `institution`, ...).
    pub kind: String,
    /// The evidence id the matter names it by (`140100/finance/p1`, a USCC).
    pub evidence_id: String,
    /// The sending agency (`140100/finance`).
    pub agency_id: String,
    /// The sender's record id (masked for a reader who does not see the resident ID in it).
    pub record_id: Field,
    /// SHA-256 (hex) of the pushed message, as the hub recorded it for idempotency.
    pub content_hash: String,
    /// When the hub accepted it (Unix microseconds).
    pub accepted_at: i64,
    /// Its fields as stored (dates, codes, amounts as text).
    pub fields: Fields,
    /// The `seq` of the audit entry of its push, when one was found.
    pub push_entry: Option<i64>,
    /// SHA-256 over everything above but `push_entry`.
    pub digest: String,
}

impl Record {
    /// Recomputes the digest.
    pub fn computed_digest(&self) -> Result<String, String> {
        let at = self.accepted_at.to_string();
        let record_id = self
            .record_id
            .commitment()
            .map_err(|reason| format!("its record id: {reason}"))?;
        fields_digest(
            &[
                &self.kind,
                &self.evidence_id,
                &self.agency_id,
                &record_id,
                &self.content_hash,
                &at,
            ],
            &self.fields,
        )
    }
}

/// An audit entry with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenEntry {
    /// Its place in the log (leaf `seq - 1`).
    pub seq: i64,
    /// When (Unix microseconds).
    pub at: i64,
    /// The calling agency.
    pub agency_id: String,
    /// Its jurisdiction.
    pub jurisdiction: String,
    /// SHA-256 of its certificate.
    pub fingerprint: String,
    /// The peer's address.
    pub peer: String,
    /// The gRPC path, or `evidence-seal`.
    pub method: String,
    /// What the call touched; masked (see `touched_masked`) when it names a person the reader
    /// does not see.
    pub touched: String,
    /// True when `touched` is masked: the leaf hash is then taken as given.
    #[serde(default)]
    pub touched_masked: bool,
    /// The gRPC code name of the answer.
    pub outcome: String,
    /// Its leaf hash (hex): SHA-256(0x00 || the entry's canonical bytes).
    pub leaf_hash: String,
    /// The inclusion proof into the bundle's checkpoint, hex hashes from the leaf up.
    pub proof: Vec<String>,
}

impl ProvenEntry {
    /// The entry with its proof (hex) and its `touched` as the reader sees it.
    pub fn new(seq: i64, entry: AuditEntry, shown_touched: String, proof: &[Hash]) -> ProvenEntry {
        let leaf = entry.leaf_hash();
        ProvenEntry {
            seq,
            at: entry.at,
            touched_masked: shown_touched != entry.touched,
            agency_id: entry.agency_id,
            jurisdiction: entry.jurisdiction,
            fingerprint: entry.fingerprint,
            peer: entry.peer,
            method: entry.method,
            touched: shown_touched,
            outcome: entry.outcome,
            leaf_hash: hex::encode(leaf.0),
            proof: proof.iter().map(|hash| hex::encode(hash.0)).collect(),
        }
    }

    fn entry(&self) -> AuditEntry {
        AuditEntry {
            at: self.at,
            agency_id: self.agency_id.clone(),
            jurisdiction: self.jurisdiction.clone(),
            fingerprint: self.fingerprint.clone(),
            peer: self.peer.clone(),
            method: self.method.clone(),
            touched: self.touched.clone(),
            outcome: self.outcome.clone(),
        }
    }

    /// Checks the leaf against the fields (unless masked) and the proof against the checkpoint.
    fn check(&self, size: u64, root: Hash) -> Result<(), String> {
        let given = parse_hash(&self.leaf_hash).ok_or("its leaf hash is not 32 bytes of hex")?;
        if !self.touched_masked && self.entry().leaf_hash() != given {
            return Err("its fields do not hash to its leaf hash (the entry was changed)".into());
        }
        let proof: Option<Vec<Hash>> = self.proof.iter().map(|h| parse_hash(h)).collect();
        let proof = proof.ok_or("its inclusion proof is not hashes of 32 bytes")?;
        let index = u64::try_from(self.seq - 1).map_err(|_| "its seq is not from 1")?;
        if index >= size || !verify_inclusion(&proof, size, root, index, given) {
            return Err(format!(
                "its inclusion proof does not prove it into the checkpoint of {size} entries"
            ));
        }
        Ok(())
    }
}

fn parse_hash(text: &str) -> Option<Hash> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .map(Hash)
}

/// One file: the matter, the records behind it, the audit entries that prove their pushes, the
/// seal of the export, and the checkpoint all of them are proven into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: String,
    /// The agency that exported it.
    pub exported_by: String,
    /// When (Unix microseconds).
    pub exported_at: i64,
    /// Whether some personal data is masked for that agency.
    pub personal_data_masked: bool,
    /// The matter.
    pub matter: Matter,
    /// The records behind its evidence.
    pub records: Vec<Record>,
    /// Evidence the matter names that is not a pushed record of its own (a person, whose roll is
    /// derived from personnel events), or that the hub no longer holds, with why.
    pub not_records: Vec<String>,
    /// The audit entries of the records' pushes.
    pub entries: Vec<ProvenEntry>,
    /// The export's own audit entry: its `touched` is `evidence {kind} {id} sha256:{digest}`.
    pub seal: ProvenEntry,
    /// The signed checkpoint (a C2SP signed note) every entry is proven into.
    pub checkpoint: String,
}

impl Bundle {
    /// The SHA-256 the seal carries: over the format, exporter, time, masking, the matter's and
    /// records' digests (with the entry each cites), what is not a record, and every entry's
    /// fields and leaf.
    pub fn digest(&self) -> String {
        let at = self.exported_at.to_string();
        let mut parts: Vec<String> = vec![
            self.format.clone(),
            self.exported_by.clone(),
            at,
            self.personal_data_masked.to_string(),
            self.matter.digest.clone(),
        ];
        for record in &self.records {
            parts.push(record.digest.clone());
            parts.push(
                record
                    .push_entry
                    .map_or(String::new(), |seq| seq.to_string()),
            );
        }
        parts.extend(self.not_records.iter().cloned());
        for entry in &self.entries {
            let e = entry.entry();
            parts.extend([
                entry.seq.to_string(),
                hex::encode(e.canonical_bytes()),
                entry.touched_masked.to_string(),
                entry.leaf_hash.clone(),
            ]);
        }
        digest_of(parts.iter().map(String::as_str))
    }

    /// The seal's text for this bundle.
    pub fn seal_text(&self) -> String {
        format!(
            "evidence {} {} sha256:{}",
            self.matter.kind,
            self.matter.id,
            self.digest()
        )
    }

    /// Reads a bundle file.
    pub fn from_json(text: &str) -> Result<Bundle, String> {
        serde_json::from_str(text).map_err(|error| format!("not an evidence bundle: {error}"))
    }

    /// The bundle as a file (pretty JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a bundle serializes")
    }
}

/// What verifying a bundle found: what it proves, in plain words, and what failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// What holds.
    pub proven: Vec<String>,
    /// What does not, each naming the part that failed.
    pub failed: Vec<String>,
}

impl Verification {
    /// Whether everything checked.
    pub fn sound(&self) -> bool {
        self.failed.is_empty()
    }
}

fn micros_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|at| {
            at.with_timezone(&chrono::FixedOffset::east_opt(8 * 3_600).expect("UTC+8"))
                .format("%Y-%m-%d %H:%M:%S%.6f +08:00")
                .to_string()
        })
        .unwrap_or_else(|| micros.to_string())
}

/// Whether `touched` names `record_id` as a whole word.
fn names(touched: &str, record_id: &str) -> bool {
    touched
        .split(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .any(|word| word == record_id)
}

/// Checks a bundle with the log's public key (`origin+id+key`) and nothing else.
pub fn verify(bundle: &Bundle, vkey: &str) -> Verification {
    let mut found = Verification::default();
    if bundle.format != FORMAT {
        found
            .failed
            .push(format!("format: `{}` is not {FORMAT}", bundle.format));
        return found;
    }
    let checkpoint = match open_checkpoint(&bundle.checkpoint, vkey) {
        Ok(checkpoint) => checkpoint,
        Err(reason) => {
            found.failed.push(format!("checkpoint: {reason}"));
            return found;
        }
    };
    found.proven.push(format!(
        "The checkpoint is signed by the hub's log key ({}): its log held {} entries with root {}.",
        checkpoint.origin,
        checkpoint.size,
        hex::encode(checkpoint.root.0)
    ));
    // The matter and records: each digest recomputed from its fields, so a changed byte is named
    // where it is.
    match fields_digest(
        &[&bundle.matter.kind, &bundle.matter.id],
        &bundle.matter.fields,
    ) {
        Ok(digest) if digest == bundle.matter.digest => {}
        Ok(_) => found.failed.push(format!(
            "matter {} {}: its fields do not match its digest (it was changed)",
            bundle.matter.kind, bundle.matter.id
        )),
        Err(reason) => found.failed.push(format!(
            "matter {} {}: {reason}",
            bundle.matter.kind, bundle.matter.id
        )),
    }
    let mut entries = BTreeMap::new();
    for entry in &bundle.entries {
        match entry.check(checkpoint.size, checkpoint.root) {
            Ok(()) => {
                entries.insert(entry.seq, entry);
            }
            Err(reason) => found
                .failed
                .push(format!("audit entry {}: {reason}", entry.seq)),
        }
    }
    for (n, record) in bundle.records.iter().enumerate() {
        let name = format!("record {} ({} {})", n + 1, record.kind, record.evidence_id);
        match record.computed_digest() {
            Ok(digest) if digest == record.digest => {}
            Ok(_) => {
                found.failed.push(format!(
                    "{name}: its fields do not match its digest (the record was changed)"
                ));
                continue;
            }
            Err(reason) => {
                found.failed.push(format!("{name}: {reason}"));
                continue;
            }
        }
        let Some(seq) = record.push_entry else {
            found.proven.push(format!(
                "{name}: sent by {}, accepted {}, content hash {} — the hub found no audit entry of its push (pushed before the trail began); it is bound by the seal only.",
                record.agency_id, micros_text(record.accepted_at), record.content_hash
            ));
            continue;
        };
        let Some(entry) = entries.get(&seq) else {
            if !bundle.entries.iter().any(|entry| entry.seq == seq) {
                found.failed.push(format!(
                    "{name}: the audit entry {seq} it cites is not in the bundle"
                ));
            }
            continue;
        };
        let push = entry.method.rsplit('/').next().unwrap_or("");
        if entry.agency_id != record.agency_id || !push.starts_with("Push") || entry.outcome != "OK"
        {
            found.failed.push(format!(
                "{name}: audit entry {seq} is not a successful push by {} ({} called {}, answered {})",
                record.agency_id, entry.agency_id, entry.method, entry.outcome
            ));
            continue;
        }
        if entry.at < record.accepted_at {
            found.failed.push(format!(
                "{name}: audit entry {seq} was answered before the record was accepted"
            ));
            continue;
        }
        let named = match &record.record_id.value {
            Some(id) if !entry.touched_masked => {
                if names(&entry.touched, id) {
                    format!("naming record `{id}`")
                } else {
                    "(a bulk push whose note of record ids was cut before this one)".to_owned()
                }
            }
            _ => "(the record id is masked for this reader)".to_owned(),
        };
        found.proven.push(format!(
            "{name}: {} called {} {named} at {}, answered OK — audit entry {seq}, in the signed log. The record was accepted at {} with content hash {}.",
            entry.agency_id,
            entry.method,
            micros_text(entry.at),
            micros_text(record.accepted_at),
            record.content_hash
        ));
    }
    // The seal binds everything to the log at the export.
    let seal = &bundle.seal;
    match seal.check(checkpoint.size, checkpoint.root) {
        Err(reason) => found.failed.push(format!("seal (audit entry {}): {reason}", seal.seq)),
        Ok(()) if seal.method != SEAL_METHOD || seal.agency_id != bundle.exported_by => {
            found.failed.push(format!(
                "seal (audit entry {}): it is not the export's seal by {}",
                seal.seq, bundle.exported_by
            ));
        }
        Ok(()) if seal.touched != bundle.seal_text() => found.failed.push(format!(
            "seal (audit entry {}): the bundle's contents do not match the digest the hub logged when it exported them (something in the bundle was changed)",
            seal.seq
        )),
        Ok(()) => found.proven.push(format!(
            "The export by {} at {} is audit entry {} of the signed log, committing to the {} {} and the {} record(s) exactly as they stand in this file{}.",
            bundle.exported_by,
            micros_text(bundle.exported_at),
            seal.seq,
            bundle.matter.kind,
            bundle.matter.id,
            bundle.records.len(),
            if bundle.personal_data_masked {
                " (personal data masked for the exporter, committed to by salted hashes)"
            } else {
                ""
            }
        )),
    }
    for what in &bundle.not_records {
        found
            .proven
            .push(format!("Not a pushed record of its own: {what}."));
    }
    if found.sound() {
        found.proven.push(format!(
            "Any witness holding a checkpoint of this log can check it against this one of {} entries (`quotahub audit verify --checkpoint`, or a consistency proof from AuditService): the hub cannot later remove or change what is proven here without being caught.",
            checkpoint.size
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{LogSigner, TreeQuery, TreeWalk};

    fn entry(n: i64, method: &str, touched: &str) -> AuditEntry {
        AuditEntry {
            at: 2_000_000 + n,
            agency_id: "140100/finance".into(),
            jurisdiction: "140100".into(),
            fingerprint: "ab".into(),
            peer: "127.0.0.1:1".into(),
            method: method.into(),
            touched: touched.into(),
            outcome: "OK".into(),
        }
    }

    /// A log of ten entries, entry 4 the push of `p1`, entry 10 the seal, and its bundle.
    fn sealed(masked: bool) -> (Bundle, String) {
        let seed = [3u8; 32];
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        use ring::signature::KeyPair;
        let (private, public) =
            LogSigner::from_seed("test/log", seed, pair.public_key().as_ref()).unwrap();
        let signer = LogSigner::parse(&private).unwrap();
        let mut fields = Fields::new();
        fields.insert("code".into(), Field::clear("PAID_NOT_ON_ROLL", [1; 16]));
        let matter = Matter::new("alert", "PAID_NOT_ON_ROLL|x||2024-03", fields).unwrap();
        let mut record_fields = Fields::new();
        record_fields.insert("gross_fen".into(), Field::clear("812345", [2; 16]));
        record_fields.insert(
            "resident_id".into(),
            if masked {
                Field::hidden("11010519491231002X", "110105********002X", [3; 16])
            } else {
                Field::clear("11010519491231002X", [3; 16])
            },
        );
        let mut record = Record {
            kind: "payroll_line".into(),
            evidence_id: "140100/finance/p1".into(),
            agency_id: "140100/finance".into(),
            record_id: Field::clear("p1", [4; 16]),
            content_hash: "cd".repeat(32),
            accepted_at: 2_000_000,
            fields: record_fields,
            push_entry: Some(4),
            digest: String::new(),
        };
        record.digest = record.computed_digest().unwrap();
        let mut log: Vec<AuditEntry> = (1..=9)
            .map(|n| entry(n, "/quotahub.v1.QueryService/GetRoll", "read"))
            .collect();
        log[3] = entry(
            4,
            "/quotahub.v1.FinanceService/PushPayrollLine",
            "record_id p1",
        );
        let mut bundle = Bundle {
            format: FORMAT.into(),
            exported_by: "140100/discipline".into(),
            exported_at: 3_000_000,
            personal_data_masked: masked,
            matter,
            records: vec![record],
            not_records: vec![],
            entries: Vec::new(),
            seal: ProvenEntry::new(0, entry(0, "", ""), String::new(), &[]),
            checkpoint: String::new(),
        };
        // The entries' proofs are into the tree that includes the seal, which needs the digest
        // of the bundle with the entries: so entries first, then the seal, then the proofs.
        let push = log[3].clone();
        bundle.entries = vec![ProvenEntry::new(4, push.clone(), push.touched.clone(), &[])];
        let mut seal = entry(10, SEAL_METHOD, "");
        seal.agency_id = "140100/discipline".into();
        seal.touched = bundle.seal_text();
        log.push(seal.clone());
        let mut tree = TreeWalk::default();
        let mut stored = crate::domain::audit::StoredHashes::default();
        let mut edge = Vec::new();
        for (n, e) in log.iter().enumerate() {
            tree.push(e.leaf_hash());
            let appended =
                crate::domain::audit::append_leaves(n as u64, &edge, &[e.leaf_hash()]).unwrap();
            stored.0.extend(appended.added);
            edge = appended.edge;
        }
        let proof = |seq: u64| {
            TreeQuery::Inclusion {
                index: seq - 1,
                size: 10,
            }
            .answer(&stored)
            .unwrap()
        };
        bundle.entries = vec![ProvenEntry::new(4, push.clone(), push.touched, &proof(4))];
        bundle.seal = ProvenEntry::new(10, seal.clone(), seal.touched, &proof(10));
        bundle.checkpoint = signer.sign(10, tree.root()).unwrap();
        (bundle, public)
    }

    #[test]
    fn a_bundle_verifies_offline_and_says_what_it_proves() {
        for masked in [false, true] {
            let (bundle, key) = sealed(masked);
            let again = Bundle::from_json(&bundle.to_json()).unwrap();
            let found = verify(&again, &key);
            assert!(found.sound(), "{found:?}");
            let said = found.proven.join("\n");
            assert!(said.contains("audit entry 4"), "{said}");
            assert!(said.contains("naming record `p1`"), "{said}");
            assert!(said.contains("audit entry 10 of the signed log"), "{said}");
        }
    }

    #[test]
    fn personal_fields_follow_the_readers_sight_and_commit_to_the_value() {
        let id = "11010519491231002X";
        let finance = Visibility {
            resident_ids: false,
            names: false,
            pay: true,
        };
        let masked = personal_field(finance, "resident_id", id, [9; 16]);
        assert_eq!(masked.shown(), "110105********002X");
        assert_eq!(
            masked.commitment().unwrap(),
            Field::clear(id, [9; 16]).commitment().unwrap()
        );
        assert_eq!(
            personal_field(finance, "name", "王小明", [9; 16]).shown(),
            "王**"
        );
        assert_eq!(
            personal_field(finance, "gross_fen", "812345", [9; 16]).shown(),
            "812345"
        );
        let record_id = format!("pay-{id}-2024-03");
        assert!(
            personal_field(finance, "record_id", &record_id, [9; 16])
                .value
                .is_none()
        );
        assert_eq!(
            personal_field(Visibility::WHOLE, "resident_id", id, [9; 16])
                .value
                .as_deref(),
            Some(id)
        );
        assert_eq!(
            personal_field(Visibility::MASKED, "gross_fen", "812345", [9; 16]).shown(),
            "****"
        );
    }

    #[test]
    fn a_changed_byte_of_a_record_an_entry_a_proof_or_the_seal_is_named() {
        let (bundle, key) = sealed(true);
        let failed = |bundle: &Bundle| verify(bundle, &key).failed.join("\n");
        let mut changed = bundle.clone();
        changed.records[0]
            .fields
            .get_mut("gross_fen")
            .unwrap()
            .value = Some("812346".into());
        assert!(failed(&changed).contains(
            "record 1 (payroll_line 140100/finance/p1): its fields do not match its digest"
        ));
        // The digest recomputed too: the seal tells.
        changed.records[0].digest = changed.records[0].computed_digest().unwrap();
        assert!(
            failed(&changed).contains("seal (audit entry 10): the bundle's contents do not match")
        );
        let mut changed = bundle.clone();
        changed.records[0]
            .fields
            .get_mut("resident_id")
            .unwrap()
            .commitment = Some("00".repeat(32));
        assert!(failed(&changed).contains("record 1"));
        let mut changed = bundle.clone();
        let mut byte = hex::decode(&changed.entries[0].proof[0]).unwrap();
        byte[5] ^= 1;
        changed.entries[0].proof[0] = hex::encode(byte);
        assert!(failed(&changed).contains("audit entry 4: its inclusion proof does not prove it"));
        let mut changed = bundle.clone();
        changed.entries[0].at += 1;
        assert!(failed(&changed).contains("audit entry 4: its fields do not hash to its leaf"));
        let mut changed = bundle.clone();
        changed.matter.fields.get_mut("code").unwrap().value = Some("GHOST".into());
        assert!(failed(&changed).contains("matter alert"));
        let mut changed = bundle.clone();
        changed.checkpoint = changed.checkpoint.replacen("\n10\n", "\n11\n", 1);
        assert!(failed(&changed).contains("checkpoint: not signed by the log key"));
    }
}
