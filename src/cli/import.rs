//! `quotahub import`: reads a CSV or JSONL file of one record kind, maps its columns onto the
//! contract's message by field name (through the contract's descriptors, so there is no parser per
//! kind), and pushes it through the bulk RPC in streams, as the agency whose certificate it is given.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor};
use serde_json::{Map, Value};
use tonic::transport::Channel;

use crate::domain::AgencyKind;
use crate::proto::{self, FILE_DESCRIPTOR_SET};

/// The kinds of record a file can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordKind {
    /// Institutions (staffing office).
    Institution,
    /// Quotas (staffing office).
    Quota,
    /// Leader posts (staffing office).
    LeaderPost,
    /// Staffing-use plans (staffing office).
    StaffingPlan,
    /// Hiring approvals (staffing office).
    HiringApproval,
    /// Personnel events (HR).
    PersonnelEvent,
    /// Appointments (organization department).
    Appointment,
    /// Payroll lines (finance).
    PayrollLine,
    /// Funding (finance).
    Funding,
}

impl RecordKind {
    fn message_name(self) -> &'static str {
        match self {
            RecordKind::Institution => "quotahub.v1.Institution",
            RecordKind::Quota => "quotahub.v1.Quota",
            RecordKind::LeaderPost => "quotahub.v1.LeaderPost",
            RecordKind::StaffingPlan => "quotahub.v1.StaffingPlan",
            RecordKind::HiringApproval => "quotahub.v1.HiringApproval",
            RecordKind::PersonnelEvent => "quotahub.v1.PersonnelEvent",
            RecordKind::Appointment => "quotahub.v1.Appointment",
            RecordKind::PayrollLine => "quotahub.v1.PayrollLine",
            RecordKind::Funding => "quotahub.v1.Funding",
        }
    }

    /// The agency kind that pushes this record kind.
    pub fn agency_kind(self) -> AgencyKind {
        match self {
            RecordKind::Institution
            | RecordKind::Quota
            | RecordKind::LeaderPost
            | RecordKind::StaffingPlan
            | RecordKind::HiringApproval => AgencyKind::StaffingOffice,
            RecordKind::PersonnelEvent => AgencyKind::Hr,
            RecordKind::Appointment => AgencyKind::Organization,
            RecordKind::PayrollLine | RecordKind::Funding => AgencyKind::Finance,
        }
    }
}

/// Flags of `quotahub import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// What the file holds.
    #[arg(long, value_enum)]
    pub kind: RecordKind,
    /// The file: `.csv` (a header row of field names) or `.jsonl` (one JSON object per line).
    pub file: PathBuf,
    /// How to reach the hub and as which agency.
    #[command(flatten)]
    pub client: super::ClientArgs,
    /// Records per bulk stream.
    #[arg(long, default_value_t = 5_000)]
    pub stream_size: usize,
    /// Write each refused record's error as a JSON line to this file.
    #[arg(long)]
    pub errors: Option<PathBuf>,
}

/// Totals of an import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Stored for the first time.
    pub accepted: u64,
    /// Already stored; nothing stored twice.
    pub replayed: u64,
    /// Refused by the hub.
    pub rejected: u64,
    /// Lines that could not be read into a record.
    pub unreadable: u64,
}

pub(super) async fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let channel = args.client.connect(args.kind.agency_kind()).await?;

    let records = read_records(&args.file, args.kind)?;
    let progress = ProgressBar::new(records.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} {msg}")
            .expect("valid template"),
    );
    let mut errors = match &args.errors {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let mut summary = Summary::default();
    let mut pending: Vec<DynamicMessage> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    let total = records.len();
    for (position, (line, record)) in records.into_iter().enumerate() {
        match record {
            Ok(message) => {
                pending.push(message);
                lines.push(line);
            }
            Err(reason) => {
                summary.unreadable += 1;
                report(&mut errors, line, "", "UNREADABLE", &reason, &[])?;
                progress.inc(1);
            }
        }
        if pending.len() >= args.stream_size || (position + 1 == total && !pending.is_empty()) {
            let response = push(&channel, args.kind, std::mem::take(&mut pending)).await?;
            summary.accepted += response.accepted;
            summary.replayed += response.replayed;
            summary.rejected += response.rejected;
            for result in &response.results {
                if let Some(error) = &result.error {
                    let line = lines
                        .get(result.index as usize)
                        .copied()
                        .unwrap_or_default();
                    let fields: Vec<String> = error
                        .field_violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect();
                    report(
                        &mut errors,
                        line,
                        &result.record_id,
                        &error.code,
                        &error.message,
                        &fields,
                    )?;
                }
            }
            progress.inc(response.results.len() as u64);
            lines.clear();
        }
    }
    progress.finish_and_clear();
    if let Some(errors) = &mut errors {
        errors.flush()?;
    }
    println!(
        "{}: {} accepted, {} already there, {} refused by the hub, {} unreadable",
        args.file.display(),
        summary.accepted,
        summary.replayed,
        summary.rejected,
        summary.unreadable
    );
    Ok(if summary.rejected + summary.unreadable > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn report(
    errors: &mut Option<impl Write>,
    line: usize,
    record_id: &str,
    code: &str,
    message: &str,
    fields: &[String],
) -> anyhow::Result<()> {
    let entry = serde_json::json!({
        "line": line, "record_id": record_id, "code": code, "message": message, "fields": fields
    });
    match errors {
        Some(out) => writeln!(out, "{entry}")?,
        None => eprintln!("line {line}: {code} {message} {}", fields.join("; ")),
    }
    Ok(())
}

async fn push(
    channel: &Channel,
    kind: RecordKind,
    messages: Vec<DynamicMessage>,
) -> anyhow::Result<proto::BulkPushResponse> {
    const MAX: usize = 64 * 1024 * 1024;
    macro_rules! send {
        ($client:ident, $method:ident, $message:ty) => {{
            let typed = messages
                .iter()
                .map(|m| m.transcode_to::<$message>())
                .collect::<Result<Vec<_>, _>>()
                .context("record does not fit the contract")?;
            let mut client = $client::new(channel.clone())
                .max_decoding_message_size(MAX)
                .max_encoding_message_size(MAX);
            client
                .$method(tokio_stream::iter(typed))
                .await?
                .into_inner()
        }};
    }
    use proto::finance_service_client::FinanceServiceClient;
    use proto::organization_service_client::OrganizationServiceClient;
    use proto::personnel_service_client::PersonnelServiceClient;
    use proto::staffing_service_client::StaffingServiceClient;
    Ok(match kind {
        RecordKind::Institution => {
            send!(StaffingServiceClient, push_institutions, proto::Institution)
        }
        RecordKind::Quota => send!(StaffingServiceClient, push_quotas, proto::Quota),
        RecordKind::LeaderPost => {
            send!(StaffingServiceClient, push_leader_posts, proto::LeaderPost)
        }
        RecordKind::StaffingPlan => send!(
            StaffingServiceClient,
            push_staffing_plans,
            proto::StaffingPlan
        ),
        RecordKind::HiringApproval => send!(
            StaffingServiceClient,
            push_hiring_approvals,
            proto::HiringApproval
        ),
        RecordKind::PersonnelEvent => send!(
            PersonnelServiceClient,
            push_personnel_events,
            proto::PersonnelEvent
        ),
        RecordKind::Appointment => send!(
            OrganizationServiceClient,
            push_appointments,
            proto::Appointment
        ),
        RecordKind::PayrollLine => {
            send!(FinanceServiceClient, push_payroll_lines, proto::PayrollLine)
        }
        RecordKind::Funding => send!(FinanceServiceClient, push_fundings, proto::Funding),
    })
}

/// The descriptor of a contract message.
fn descriptor(name: &str) -> anyhow::Result<MessageDescriptor> {
    let pool = DescriptorPool::decode(FILE_DESCRIPTOR_SET).context("the contract's descriptors")?;
    pool.get_message_by_name(name)
        .with_context(|| format!("{name} is not in the contract"))
}

/// Reads every record of a file, each with its line number, or why the line could not be read.
pub fn read_records(
    path: &Path,
    kind: RecordKind,
) -> anyhow::Result<Vec<(usize, Result<DynamicMessage, String>)>> {
    let descriptor = descriptor(kind.message_name())?;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut records = Vec::new();
    match extension.as_str() {
        "csv" => {
            let mut reader = csv::Reader::from_reader(file);
            let headers = reader.headers()?.clone();
            for (row, result) in reader.records().enumerate() {
                let line = row + 2;
                let record = result.map_err(|e| e.to_string()).and_then(|record| {
                    let object: Map<String, Value> = headers
                        .iter()
                        .zip(record.iter())
                        .filter(|(_, value)| !value.is_empty())
                        .map(|(name, value)| {
                            (name.trim().to_owned(), Value::String(value.to_owned()))
                        })
                        .collect();
                    to_message(&descriptor, object)
                });
                records.push((line, record));
            }
        }
        "jsonl" | "ndjson" | "json" => {
            for (row, text) in BufReader::new(file).lines().enumerate() {
                let text = text?;
                if text.trim().is_empty() {
                    continue;
                }
                let record = serde_json::from_str::<Map<String, Value>>(&text)
                    .map_err(|e| e.to_string())
                    .and_then(|object| to_message(&descriptor, object));
                records.push((row + 1, record));
            }
        }
        other => bail!(
            "cannot tell the format of {} (`.{other}`); use .csv or .jsonl",
            path.display()
        ),
    }
    Ok(records)
}

/// Maps a flat object of field names to values onto the message. Enum values may be written in
/// full (`QUOTA_CATEGORY_ADMINISTRATIVE`) or without the enum's prefix (`ADMINISTRATIVE`); booleans
/// and numbers may be strings, as CSV cells are.
pub fn to_message(
    descriptor: &MessageDescriptor,
    object: Map<String, Value>,
) -> Result<DynamicMessage, String> {
    let mut fixed = Map::new();
    for (name, value) in object {
        let field = descriptor
            .get_field_by_name(&name)
            .or_else(|| descriptor.get_field_by_json_name(&name))
            .ok_or_else(|| format!("`{name}` is not a field of {}", descriptor.name()))?;
        let value = match (field.kind(), value) {
            (Kind::Bool, Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Value::Bool(true),
                "false" | "0" | "no" => Value::Bool(false),
                _ => return Err(format!("`{name}`: `{text}` is not true or false")),
            },
            (Kind::Enum(enumeration), Value::String(text)) => {
                let text = text.trim().to_ascii_uppercase();
                let prefix = enumeration
                    .values()
                    .find(|v| v.number() == 0)
                    .map(|v| v.name().trim_end_matches("UNSPECIFIED").to_owned())
                    .unwrap_or_default();
                if enumeration.get_value_by_name(&text).is_some() {
                    Value::String(text)
                } else if enumeration
                    .get_value_by_name(&format!("{prefix}{text}"))
                    .is_some()
                {
                    Value::String(format!("{prefix}{text}"))
                } else if let Ok(number) = text.parse::<i32>() {
                    Value::from(number)
                } else {
                    return Err(format!(
                        "`{name}`: `{text}` is not a value of {}",
                        enumeration.name()
                    ));
                }
            }
            (_, value) => value,
        };
        fixed.insert(field.name().to_owned(), value);
    }
    DynamicMessage::deserialize(descriptor.clone(), Value::Object(fixed)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_become_a_typed_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quotas.csv");
        std::fs::write(
            &path,
            "record_id,institution_uscc,category,approved_count,effective_from,approval_document\n\
             q-1,12140100MB0000001X,ADMINISTRATIVE,12,2024-01-01,并编发〔2024〕1号\n\
             q-2,12140100MB0000001X,NOT_A_CATEGORY,3,2024-01-01,x\n",
        )
        .unwrap();
        let records = read_records(&path, RecordKind::Quota).unwrap();
        assert_eq!(records.len(), 2);
        let quota: proto::Quota = records[0].1.as_ref().unwrap().transcode_to().unwrap();
        assert_eq!(quota.category, proto::QuotaCategory::Administrative as i32);
        assert_eq!(quota.approved_count, 12);
        assert_eq!(records[1].0, 3);
        assert!(
            records[1]
                .1
                .as_ref()
                .unwrap_err()
                .contains("NOT_A_CATEGORY")
        );
    }

    #[test]
    fn jsonl_lines_accept_full_enum_names_and_booleans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("institutions.jsonl");
        std::fs::write(
            &path,
            "{\"record_id\":\"i-1\",\"uscc\":\"11140100MB0000001X\",\"kind\":\"INSTITUTION_KIND_ORGAN\",\"politicalLegal\":true}\n\
             {\"record_id\":\"i-2\",\"colour\":\"red\"}\n",
        )
        .unwrap();
        let records = read_records(&path, RecordKind::Institution).unwrap();
        let institution: proto::Institution =
            records[0].1.as_ref().unwrap().transcode_to().unwrap();
        assert_eq!(institution.kind, proto::InstitutionKind::Organ as i32);
        assert!(institution.political_legal);
        assert!(records[1].1.as_ref().unwrap_err().contains("colour"));
    }
}
