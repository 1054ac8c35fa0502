//! Measure 1: bulk ingest through the hub (client-streaming pushes over mutual TLS) against plain
//! multi-row INSERTs of the same rows into a fresh database of the same kind and schema.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::any::{AnyArguments, AnyConnectOptions};
use sqlx::{AnyConnection, Arguments, ConnectOptions, Connection, Executor};

use super::hub::BenchHub;
use super::progress;
use crate::api::convert::Pushed;
use crate::domain::{Agency, AgencyKind, Coded, Jurisdiction};
use crate::generator::Dataset;
use crate::proto;
use crate::proto::finance_service_client::FinanceServiceClient;
use crate::proto::organization_service_client::OrganizationServiceClient;
use crate::proto::personnel_service_client::PersonnelServiceClient;
use crate::proto::staffing_service_client::StaffingServiceClient;
use crate::store::{Store, StoreOptions};

/// Largest response a bulk push may get (one result per record, with its findings).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Longest one bulk stream may take before the run gives up.
const STREAM_TIMEOUT: Duration = Duration::from_secs(900);

/// What one kind of record did on its way in.
#[derive(Debug, Clone, Default)]
pub struct KindTally {
    /// Records sent.
    pub sent: u64,
    /// Records stored.
    pub accepted: u64,
    /// Records refused.
    pub rejected: u64,
    /// Records recognised as resends.
    pub replayed: u64,
    /// Wall time of all the kind's streams.
    pub elapsed: Duration,
    /// The first refusal, to show why.
    pub first_rejection: Option<String>,
}

impl KindTally {
    /// Records sent per second of wall time.
    pub fn rows_per_second(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds another part's tally (its time after this one's).
    pub fn add(&mut self, part: &KindTally) {
        self.sent += part.sent;
        self.accepted += part.accepted;
        self.rejected += part.rejected;
        self.replayed += part.replayed;
        self.elapsed += part.elapsed;
        if self.first_rejection.is_none() {
            self.first_rejection.clone_from(&part.first_rejection);
        }
    }

    /// `accepted 1,000, refused 3 (first: ...)`.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} sent, {} stored, {} refused",
            self.sent, self.accepted, self.rejected
        );
        if self.replayed > 0 {
            text.push_str(&format!(", {} resends", self.replayed));
        }
        if let Some(first) = &self.first_rejection {
            text.push_str(&format!(" (first refusal: {first})"));
        }
        text
    }
}

/// The whole ingest through the hub.
#[derive(Debug, Clone, Default)]
pub struct HubIngest {
    /// The staffing office's records (institutions, quotas, leader posts, plans, approvals).
    pub staffing: KindTally,
    /// Personnel events.
    pub events: KindTally,
    /// Appointments.
    pub appointments: KindTally,
    /// Payroll lines.
    pub payroll: KindTally,
    /// Payroll lines per period, in the order pushed (a month's file after the other).
    pub payroll_months: Vec<(String, KindTally)>,
    /// Fundings.
    pub fundings: KindTally,
}

/// Pushes the dataset through the hub in streams of `stream_size` records: the staffing office's
/// data first, then personnel events and appointments, then payroll lines and fundings. Every
/// agency is of the dataset's root jurisdiction.
pub async fn through_hub(
    hub: &BenchHub,
    data: &Dataset,
    root: &Jurisdiction,
    stream_size: usize,
) -> anyhow::Result<HubIngest> {
    let agency = |kind| Agency::new(root.clone(), kind);
    let staffing =
        StaffingServiceClient::new(hub.channel(&agency(AgencyKind::StaffingOffice)).await?)
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let hr = PersonnelServiceClient::new(hub.channel(&agency(AgencyKind::Hr)).await?)
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let organization =
        OrganizationServiceClient::new(hub.channel(&agency(AgencyKind::Organization)).await?)
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let finance = FinanceServiceClient::new(hub.channel(&agency(AgencyKind::Finance)).await?)
        .max_decoding_message_size(MAX_RESPONSE_BYTES);

    macro_rules! push {
        ($label:expr, $records:expr, $client:expr, $method:ident) => {
            push_streams($label, $records, stream_size, |chunk| {
                let mut client = $client.clone();
                async move { client.$method(tokio_stream::iter(chunk)).await }
            })
            .await?
        };
    }

    let mut ingest = HubIngest::default();
    let staffing_parts = [
        push!(
            "institutions",
            &data.institutions,
            staffing,
            push_institutions
        ),
        push!("quotas", &data.quotas, staffing, push_quotas),
        push!(
            "leader posts",
            &data.leader_posts,
            staffing,
            push_leader_posts
        ),
        push!("staffing plans", &data.plans, staffing, push_staffing_plans),
        push!(
            "hiring approvals",
            &data.approvals,
            staffing,
            push_hiring_approvals
        ),
    ];
    for part in &staffing_parts {
        ingest.staffing.add(part);
    }
    ingest.events = push!("personnel events", &data.events, hr, push_personnel_events);
    ingest.appointments = push!(
        "appointments",
        &data.appointments,
        organization,
        push_appointments
    );
    // A month's file at a time, as a finance system sends them: each month's rate is measured,
    // so that a later month can be set beside the first (it must not slow as history grows).
    let mut months: Vec<(String, Vec<proto::PayrollLine>)> = Vec::new();
    for line in &data.payroll {
        match months.last_mut() {
            Some((period, lines)) if *period == line.period => lines.push(line.clone()),
            _ => months.push((line.period.clone(), vec![line.clone()])),
        }
    }
    for (period, lines) in months {
        let label = format!("payroll lines of {period}");
        let month = push!(&label, &lines, finance, push_payroll_lines);
        ingest.payroll.add(&month);
        ingest.payroll_months.push((period, month));
    }
    ingest.fundings = push!("fundings", &data.fundings, finance, push_fundings);
    Ok(ingest)
}

/// Pushes the dataset's payroll lines again, `rounds` times, each round under new record ids (a
/// finance system importing a month's file of the same size again), with checks at every push, and
/// reads this process's resident memory after each round: what stays of an import once it is done.
pub async fn repeated_payroll(
    hub: &BenchHub,
    data: &Dataset,
    root: &Jurisdiction,
    stream_size: usize,
    rounds: usize,
) -> anyhow::Result<Vec<(KindTally, super::memory::ProcessMemory)>> {
    let finance = FinanceServiceClient::new(
        hub.channel(&Agency::new(root.clone(), AgencyKind::Finance))
            .await?,
    )
    .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let mut measured = Vec::new();
    for round in 1..=rounds {
        let lines: Vec<proto::PayrollLine> = data
            .payroll
            .iter()
            .map(|line| proto::PayrollLine {
                record_id: format!("{}-again{round}", line.record_id),
                reverses_record_id: if line.reverses_record_id.is_empty() {
                    String::new()
                } else {
                    format!("{}-again{round}", line.reverses_record_id)
                },
                ..line.clone()
            })
            .collect();
        let label = format!("payroll lines again, round {round}");
        let tally = push_streams(&label, &lines, stream_size, |chunk| {
            let mut client = finance.clone();
            async move { client.push_payroll_lines(tokio_stream::iter(chunk)).await }
        })
        .await?;
        measured.push((tally, super::memory::read()));
    }
    Ok(measured)
}

/// Sends `records` in streams of `stream_size`, one stream at a time, and tallies the answers.
async fn push_streams<M, F, Fut>(
    label: &str,
    records: &[M],
    stream_size: usize,
    mut send: F,
) -> anyhow::Result<KindTally>
where
    M: Clone,
    F: FnMut(Vec<M>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<proto::BulkPushResponse>, tonic::Status>>,
{
    let mut tally = KindTally::default();
    let started = Instant::now();
    let mut last_report = Instant::now();
    for chunk in records.chunks(stream_size.max(1)) {
        let response = tokio::time::timeout(STREAM_TIMEOUT, send(chunk.to_vec()))
            .await
            .with_context(|| format!("a stream of {label} took longer than {STREAM_TIMEOUT:?}"))?
            .with_context(|| format!("a stream of {label} failed"))?
            .into_inner();
        tally.sent += chunk.len() as u64;
        tally.accepted += response.accepted;
        tally.rejected += response.rejected;
        tally.replayed += response.replayed;
        if tally.first_rejection.is_none() {
            tally.first_rejection = response
                .results
                .iter()
                .find_map(|result| result.error.as_ref())
                .map(|error| format!("{}: {}", error.code, error.message));
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            progress(&format!(
                "  {label}: {}/{} sent, {:.0} rows/s",
                tally.sent,
                records.len(),
                tally.sent as f64 / started.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
    }
    tally.elapsed = started.elapsed();
    progress(&format!(
        "  {label}: {} in {:.2} s ({:.0} rows/s)",
        tally.summary(),
        tally.elapsed.as_secs_f64(),
        tally.rows_per_second()
    ));
    Ok(tally)
}

/// What the plain INSERTs did.
#[derive(Debug, Clone, Default)]
pub struct BaselineIngest {
    /// Personnel event rows inserted, and the wall time.
    pub events: (u64, Duration),
    /// Payroll line rows inserted, and the wall time.
    pub payroll: (u64, Duration),
    /// Records left out because they do not validate (the hub refuses them too).
    pub invalid: u64,
}

impl BaselineIngest {
    /// Personnel event rows per second.
    pub fn events_per_second(&self) -> f64 {
        self.events.0 as f64 / self.events.1.as_secs_f64().max(1e-9)
    }

    /// Payroll line rows per second.
    pub fn payroll_per_second(&self) -> f64 {
        self.payroll.0 as f64 / self.payroll.1.as_secs_f64().max(1e-9)
    }
}

/// A value of a baseline row.
#[derive(Debug, Clone)]
enum Cell {
    Text(String),
    OptText(Option<String>),
    Int(i64),
}

/// How the baseline's statements name their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// The backend's own: `?` on SQLite, `$1, $2, ...` on PostgreSQL.
    Native,
    /// `$1, $2, ...` everywhere, as the hub's store writes them. On SQLite, sqlx asks for each
    /// parameter's name and SQLite finds it by walking the statement's list of names from the
    /// start, so binding costs grow with the square of the values per statement.
    Numbered,
}

/// The same rows the hub stores in `personnel_events` and `payroll_lines` (the first `limit` of
/// each kind, or all), inserted with plain sqlx multi-row INSERTs of `rows_per_statement` rows (one
/// statement per transaction) into the empty database at `url`, whose schema `Store::connect`
/// first migrates. The rows are built (validated as the hub validates them) before the clock
/// starts.
pub async fn plain_inserts(
    url: &str,
    data: &Dataset,
    root: &Jurisdiction,
    rows_per_statement: usize,
    placeholders: Placeholders,
    limit: Option<usize>,
) -> anyhow::Result<BaselineIngest> {
    let limit = limit.unwrap_or(usize::MAX);
    let numbered = placeholders == Placeholders::Numbered || !url.starts_with("sqlite:");
    let store = Store::connect(url, &StoreOptions::default())
        .await
        .map_err(|error| anyhow::anyhow!("cannot migrate the baseline database: {error}"))?;
    store.close().await;

    let hr = Agency::new(root.clone(), AgencyKind::Hr).id();
    let finance = Agency::new(root.clone(), AgencyKind::Finance).id();
    let mut baseline = BaselineIngest::default();
    let mut arrivals: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut event_rows: Vec<Vec<Cell>> = Vec::with_capacity(data.events.len());
    for message in data.events.iter().take(limit) {
        let Ok(e) = message.to_record() else {
            baseline.invalid += 1;
            continue;
        };
        let arrival = arrivals.entry(e.resident_id.to_string()).or_insert(0);
        event_rows.push(vec![
            Cell::Text(hr.clone()),
            Cell::Text(message.record_id.clone()),
            Cell::Text(e.event_type.code().to_owned()),
            Cell::Text(e.resident_id.to_string()),
            Cell::Text(e.name.clone()),
            Cell::Text(e.institution.to_string()),
            Cell::OptText(e.category.map(|c| c.code().to_owned())),
            Cell::OptText(e.rank.map(|r| r.code().to_owned())),
            Cell::Text(e.effective_on.to_string()),
            Cell::OptText(e.approval_number.clone()),
            Cell::OptText(e.channel.map(|c| c.code().to_owned())),
            Cell::OptText(e.target.as_ref().map(ToString::to_string)),
            Cell::Int(0), // accepted_at, set per statement
            Cell::Int(*arrival),
        ]);
        *arrival += 1;
    }
    let mut payroll_rows: Vec<Vec<Cell>> = Vec::with_capacity(data.payroll.len());
    for message in data.payroll.iter().take(limit) {
        let Ok(line) = message.to_record() else {
            baseline.invalid += 1;
            continue;
        };
        payroll_rows.push(vec![
            Cell::Text(finance.clone()),
            Cell::Text(message.record_id.clone()),
            Cell::Text(line.period.to_string()),
            Cell::Text(line.institution.to_string()),
            Cell::Text(line.resident_id.to_string()),
            Cell::Text(line.name.clone()),
            Cell::Int(line.gross_fen),
            Cell::Int(0), // accepted_at, set per statement
            Cell::OptText(line.reverses.clone()),
        ]);
    }

    // Statement logging off: a slow multi-row INSERT would otherwise be logged whole.
    let mut connection = url
        .parse::<AnyConnectOptions>()
        .context("a bad baseline database URL")?
        .disable_statement_logging()
        .connect()
        .await
        .context("cannot connect to the baseline database")?;
    if url.starts_with("sqlite:") {
        // The hub's connection settings (src/store/sqlite.rs), so that only the work differs.
        connection
            .execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
            )
            .await?;
    }
    baseline.events = insert_all(
        &mut connection,
        "INSERT INTO personnel_events (agency_id, record_id, event_type, resident_id, name, institution_uscc, category, rank, effective_on, approval_number, channel, target_uscc, accepted_at, arrival)",
        12,
        event_rows,
        rows_per_statement,
        numbered,
    )
    .await?;
    progress(&format!(
        "  baseline ({placeholders:?} placeholders): {} personnel event rows in {:.2} s ({:.0} rows/s)",
        baseline.events.0,
        baseline.events.1.as_secs_f64(),
        baseline.events_per_second()
    ));
    baseline.payroll = insert_all(
        &mut connection,
        "INSERT INTO payroll_lines (agency_id, record_id, period, institution_uscc, resident_id, name, gross_fen, accepted_at, reverses)",
        7,
        payroll_rows,
        rows_per_statement,
        numbered,
    )
    .await?;
    progress(&format!(
        "  baseline ({placeholders:?} placeholders): {} payroll line rows in {:.2} s ({:.0} rows/s)",
        baseline.payroll.0,
        baseline.payroll.1.as_secs_f64(),
        baseline.payroll_per_second()
    ));
    let _ = connection.close().await;
    Ok(baseline)
}

/// Inserts `rows` in statements of `per_statement` rows, with `$N` placeholders when `numbered`
/// and `?` otherwise; `accepted_at` is the column whose value is the time of each statement.
/// Returns rows inserted and the wall time.
async fn insert_all(
    connection: &mut AnyConnection,
    head: &str,
    accepted_at: usize,
    rows: Vec<Vec<Cell>>,
    per_statement: usize,
    numbered: bool,
) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut inserted = 0;
    for chunk in rows.chunks(per_statement.max(1)) {
        let columns = chunk.first().map_or(0, Vec::len);
        let now = crate::store::now_micros();
        let mut sql = String::with_capacity(head.len() + chunk.len() * columns * 6);
        sql.push_str(head);
        sql.push_str(" VALUES ");
        let mut arguments = AnyArguments::default();
        let mut n = 0;
        for (r, row) in chunk.iter().enumerate() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for (c, cell) in row.iter().enumerate() {
                n += 1;
                if c > 0 {
                    sql.push_str(", ");
                }
                if numbered {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                } else {
                    sql.push('?');
                }
                let bound = match cell {
                    _ if c == accepted_at => arguments.add(now),
                    Cell::Text(text) => arguments.add(text.clone()),
                    Cell::OptText(text) => arguments.add(text.clone()),
                    Cell::Int(int) => arguments.add(*int),
                };
                bound.map_err(|error| anyhow::anyhow!("cannot bind a value: {error}"))?;
            }
            sql.push(')');
        }
        inserted += sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments)
            .execute(&mut *connection)
            .await
            .context("a baseline INSERT failed")?
            .rows_affected();
    }
    Ok((inserted, started.elapsed()))
}
