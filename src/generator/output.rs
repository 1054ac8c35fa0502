//! Writing a dataset as the files `quotahub import` reads: one JSONL file per record kind (proto
//! field names, enum values by name), `truth.jsonl`, `deliveries.jsonl` (the delivery timeline)
//! and `manifest.json`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde::{Deserialize, Serialize};

use super::{Dataset, Kind};
use crate::domain::Coded;
use crate::proto::FILE_DESCRIPTOR_SET;

/// What `write` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The root division.
    pub root: String,
    /// The check date the truth holds for, `YYYY-MM-DD`.
    pub as_of: String,
    /// The pay periods.
    pub periods: Vec<String>,
    /// The record files, in the order to import them.
    pub files: Vec<ManifestFile>,
    /// The file of expected findings (one JSON object per line: code, institution, subject,
    /// period).
    pub truth: String,
    /// Number of expected findings.
    pub truth_count: usize,
    /// The first delivery's day: the hub's first start the timeline assumes.
    #[serde(default)]
    pub start: String,
    /// The delivery timeline (one JSON object per line, by day: `on`, `jurisdiction` and
    /// `agency_kind` of the sender, `kind`, `file`, its first `line` (from 1) and `records`). The
    /// truth's LATE_PAYROLL and BACKDATED_EVENT hold for a hub that receives each delivery on its
    /// day, as `quotahub bench` replays them; `quotahub load` pushes every file now instead.
    #[serde(default)]
    pub deliveries: String,
    /// Number of deliveries.
    #[serde(default)]
    pub delivery_count: usize,
}

/// One record file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Position in the import order, from 1: the registry first (parents before children), then
    /// what refers to it; each person's events in date order.
    pub order: usize,
    /// The `--kind` of `quotahub import`.
    pub kind: String,
    /// File name within the directory.
    pub file: String,
    /// Jurisdiction of the agency certificate to push it with: the root, which oversees every
    /// division below it.
    pub jurisdiction: String,
    /// Kind of that agency (`staffing-office`, `hr`, `organization`, `finance`).
    pub agency_kind: String,
    /// Records in the file.
    pub records: usize,
}

/// Writes the dataset into `dir` (created if missing) and returns the manifest, also written as
/// `manifest.json`.
pub fn write(dataset: &Dataset, dir: &Path) -> std::io::Result<Manifest> {
    std::fs::create_dir_all(dir)?;
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .map_err(|e| std::io::Error::other(format!("the contract's descriptors: {e}")))?;
    let mut files = Vec::new();
    let messages = |kind: Kind| match kind {
        Kind::Institution => "quotahub.v1.Institution",
        Kind::Quota => "quotahub.v1.Quota",
        Kind::LeaderPost => "quotahub.v1.LeaderPost",
        Kind::StaffingPlan => "quotahub.v1.StaffingPlan",
        Kind::HiringApproval => "quotahub.v1.HiringApproval",
        Kind::PersonnelEvent => "quotahub.v1.PersonnelEvent",
        Kind::Appointment => "quotahub.v1.Appointment",
        Kind::PayrollLine => "quotahub.v1.PayrollLine",
        Kind::Funding => "quotahub.v1.Funding",
    };
    for kind in Kind::ALL {
        let message = messages(kind);
        let descriptor = pool
            .get_message_by_name(message)
            .ok_or_else(|| std::io::Error::other(format!("{message} is not in the contract")))?;
        let file = file_of(kind);
        let mut writer = Writer::new(&dir.join(&file), descriptor)?;
        let records = match kind {
            Kind::Institution => writer.all(&dataset.institutions),
            Kind::Quota => writer.all(&dataset.quotas),
            Kind::LeaderPost => writer.all(&dataset.leader_posts),
            Kind::StaffingPlan => writer.all(&dataset.plans),
            Kind::HiringApproval => writer.all(&dataset.approvals),
            Kind::PersonnelEvent => writer.all(&dataset.events),
            Kind::Appointment => writer.all(&dataset.appointments),
            Kind::PayrollLine => writer.all(&dataset.payroll),
            Kind::Funding => writer.all(&dataset.fundings),
        }?;
        writer.finish()?;
        files.push(ManifestFile {
            order: files.len() + 1,
            kind: kind.slug().to_owned(),
            file,
            jurisdiction: dataset.root.clone(),
            agency_kind: kind.sender().slug().to_owned(),
            records,
        });
    }

    let deliveries = "deliveries.jsonl".to_owned();
    let mut out = BufWriter::new(File::create(dir.join(&deliveries))?);
    for delivery in &dataset.deliveries {
        let line = serde_json::json!({
            "on": delivery.on.to_string(),
            "jurisdiction": delivery.agency.jurisdiction.as_str(),
            "agency_kind": delivery.agency.kind.slug(),
            "kind": delivery.kind.slug(),
            "file": file_of(delivery.kind),
            "line": delivery.records.start + 1,
            "records": delivery.records.len(),
        });
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;

    let truth = "truth.jsonl".to_owned();
    let mut out = BufWriter::new(File::create(dir.join(&truth))?);
    for planted in &dataset.truth {
        let line = serde_json::json!({
            "code": planted.code.code(),
            "institution": planted.institution,
            "subject": planted.subject,
            "period": planted.period,
        });
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;

    let manifest = Manifest {
        root: dataset.root.clone(),
        as_of: dataset.as_of.clone(),
        periods: dataset.periods.clone(),
        files,
        truth,
        truth_count: dataset.truth.len(),
        start: dataset.start.to_string(),
        deliveries,
        delivery_count: dataset.deliveries.len(),
    };
    let mut out = BufWriter::new(File::create(dir.join("manifest.json"))?);
    serde_json::to_writer_pretty(&mut out, &manifest)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(manifest)
}

/// The file of a kind's records.
fn file_of(kind: Kind) -> String {
    format!("{}.jsonl", kind.slug())
}

/// Writes messages of one kind as JSON lines through the contract's descriptor, so that field
/// and enum names are exactly the contract's.
struct Writer {
    out: BufWriter<File>,
    descriptor: MessageDescriptor,
    options: SerializeOptions,
    buffer: Vec<u8>,
}

impl Writer {
    fn new(path: &Path, descriptor: MessageDescriptor) -> std::io::Result<Writer> {
        Ok(Writer {
            out: BufWriter::with_capacity(1 << 20, File::create(path)?),
            descriptor,
            // Default fields (empty strings, zero enums, false) are left out; the importer reads
            // them as defaults. Amounts stay JSON numbers.
            options: SerializeOptions::new()
                .use_proto_field_name(true)
                .stringify_64_bit_integers(false),
            buffer: Vec::new(),
        })
    }

    fn all<M: Message>(&mut self, messages: &[M]) -> std::io::Result<usize> {
        for message in messages {
            self.buffer.clear();
            message
                .encode(&mut self.buffer)
                .map_err(std::io::Error::other)?;
            let dynamic = DynamicMessage::decode(self.descriptor.clone(), self.buffer.as_slice())
                .map_err(std::io::Error::other)?;
            let mut serializer = serde_json::Serializer::new(&mut self.out);
            dynamic
                .serialize_with_options(&mut serializer, &self.options)
                .map_err(std::io::Error::other)?;
            self.out.write_all(b"\n")?;
        }
        Ok(messages.len())
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
