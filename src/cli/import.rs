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
    let mut errors = ErrorReport::open(args.errors.as_deref())?;
    let summary = push_file(
        &channel,
        args.kind,
        &args.file,
        args.stream_size,
        &mut errors,
    )
    .await?;
    errors.flush()?;
    println!("{}: {summary}", args.file.display());
    Ok(summary.exit_code())
}

impl Summary {
    /// Adds another file's totals.
    pub fn add(&mut self, other: Summary) {
        self.accepted += other.accepted;
        self.replayed += other.replayed;
        self.rejected += other.rejected;
        self.unreadable += other.unreadable;
    }

    /// 0 when every record was stored (or was already there); 2 when any was refused or
    /// unreadable, so that a script can tell a partial import from a whole one (1 is left to
    /// errors that stopped the import).
    pub fn exit_code(self) -> ExitCode {
        if self.rejected + self.unreadable > 0 {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} accepted, {} already there, {} refused by the hub, {} unreadable",
            self.accepted, self.replayed, self.rejected, self.unreadable
        )
    }
}

/// Where refusals go: JSON lines in the `--errors` file, or one line each on stderr.
pub struct ErrorReport {
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl ErrorReport {
    /// Refusals as JSON lines in `path`, or on stderr without one.
    pub fn open(path: Option<&Path>) -> anyhow::Result<ErrorReport> {
        let file = match path {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => None,
        };
        Ok(ErrorReport { file })
    }

    /// One refusal. On stderr the message alone: the hub's message already names each field
    /// and its reason (the violations are kept apart in the file, for programs).
    fn refusal(&mut self, refusal: &Refusal<'_>) -> anyhow::Result<()> {
        match &mut self.file {
            Some(out) => {
                let entry = serde_json::json!({
                    "file": refusal.file, "line": refusal.line, "record_id": refusal.record_id,
                    "code": refusal.code, "message": refusal.message, "fields": refusal.fields,
                });
                writeln!(out, "{entry}")?;
            }
            None => eprintln!("{}", refusal.line_for_people()),
        }
        Ok(())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(out) = &mut self.file {
            out.flush()?;
        }
        Ok(())
    }
}

/// A record the hub refused or the file could not give.
struct Refusal<'a> {
    file: &'a str,
    line: usize,
    record_id: &'a str,
    code: &'a str,
    message: &'a str,
    fields: Vec<String>,
}

impl Refusal<'_> {
    /// `FILE line N (RECORD): CODE message`, each reason once.
    fn line_for_people(&self) -> String {
        let record = if self.record_id.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.record_id)
        };
        format!(
            "{} line {}{record}: {} {}",
            self.file, self.line, self.code, self.message
        )
    }
}

/// Pushes every record of one file through the bulk RPC of its kind, in streams of
/// `stream_size`, reporting each refusal and unreadable line.
pub async fn push_file(
    channel: &Channel,
    kind: RecordKind,
    path: &Path,
    stream_size: usize,
    errors: &mut ErrorReport,
) -> anyhow::Result<Summary> {
    let records = read_records(path, kind)?;
    let file_name = path.display().to_string();
    let progress = ProgressBar::new(records.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} {msg}")
            .expect("valid template"),
    );
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
            Err(unreadable) => {
                summary.unreadable += 1;
                errors.refusal(&Refusal {
                    file: &file_name,
                    line,
                    record_id: &unreadable.record_id,
                    code: "UNREADABLE",
                    message: &unreadable.reason,
                    fields: Vec::new(),
                })?;
                progress.inc(1);
            }
        }
        if pending.len() >= stream_size.max(1) || (position + 1 == total && !pending.is_empty()) {
            let response = push(channel, kind, std::mem::take(&mut pending)).await?;
            summary.accepted += response.accepted;
            summary.replayed += response.replayed;
            summary.rejected += response.rejected;
            for result in &response.results {
                if let Some(error) = &result.error {
                    let line = lines
                        .get(result.index as usize)
                        .copied()
                        .unwrap_or_default();
                    errors.refusal(&Refusal {
                        file: &file_name,
                        line,
                        record_id: &result.record_id,
                        code: &error.code,
                        message: &error.message,
                        fields: error
                            .field_violations
                            .iter()
                            .map(|v| format!("{}: {}", v.field, v.description))
                            .collect(),
                    })?;
                }
            }
            progress.inc(response.results.len() as u64);
            lines.clear();
        }
    }
    progress.finish_and_clear();
    Ok(summary)
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

/// A line that could not be read into a record: its record id when the line names one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The `record_id` cell or field of the line, empty when the line has none.
    pub record_id: String,
    /// Why the line is not a record.
    pub reason: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The record id a line names, read before the rest of the line is, so that a refusal of an
/// unreadable line still says which record it was.
fn named_record_id(object: &Map<String, Value>) -> String {
    match object.get("record_id").or_else(|| object.get("recordId")) {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => String::new(),
    }
}

/// Reads every record of a file, each with its line number, or why the line could not be read.
pub fn read_records(
    path: &Path,
    kind: RecordKind,
) -> anyhow::Result<Vec<(usize, Result<DynamicMessage, Unreadable>)>> {
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
                let record = match result {
                    Err(error) => Err(Unreadable {
                        record_id: String::new(),
                        reason: error.to_string(),
                    }),
                    Ok(record) => {
                        let object: Map<String, Value> = headers
                            .iter()
                            .zip(record.iter())
                            .filter(|(_, value)| !value.is_empty())
                            .map(|(name, value)| {
                                (name.trim().to_owned(), Value::String(value.to_owned()))
                            })
                            .collect();
                        let record_id = named_record_id(&object);
                        to_message(&descriptor, object)
                            .map_err(|reason| Unreadable { record_id, reason })
                    }
                };
                records.push((line, record));
            }
        }
        "jsonl" | "ndjson" | "json" => {
            for (row, text) in BufReader::new(file).lines().enumerate() {
                let text = text?;
                if text.trim().is_empty() {
                    continue;
                }
                let record = match serde_json::from_str::<Map<String, Value>>(&text) {
                    Err(error) => Err(Unreadable {
                        record_id: String::new(),
                        reason: error.to_string(),
                    }),
                    Ok(object) => {
                        let record_id = named_record_id(&object);
                        to_message(&descriptor, object)
                            .map_err(|reason| Unreadable { record_id, reason })
                    }
                };
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
        assert_eq!(records[1].1.as_ref().unwrap_err().record_id, "q-2");
        assert!(
            records[1]
                .1
                .as_ref()
                .unwrap_err()
                .reason
                .contains("NOT_A_CATEGORY")
        );
    }

    #[test]
    fn a_refusal_on_stderr_gives_each_reason_once() {
        let refusal = Refusal {
            file: "payroll.csv",
            line: 7,
            record_id: "line-bad",
            code: "INVALID_ARGUMENT",
            message: "invalid record: resident_id: check digit is 1, not X",
            fields: vec!["resident_id: check digit is 1, not X".to_owned()],
        };
        let line = refusal.line_for_people();
        assert_eq!(
            line,
            "payroll.csv line 7 (line-bad): INVALID_ARGUMENT invalid record: resident_id: check digit is 1, not X"
        );
        assert_eq!(line.matches("check digit").count(), 1);
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
        let unreadable = records[1].1.as_ref().unwrap_err();
        assert!(unreadable.reason.contains("colour"));
        assert_eq!(
            unreadable.record_id, "i-2",
            "an unreadable line keeps its record id"
        );
    }
}
