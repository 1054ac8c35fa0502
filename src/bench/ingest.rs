//! Measure 1: bulk ingest through the hub (client-streaming pushes over mutual TLS) against plain
//! writes of the same rows into a fresh database of the same kind and schema: multi-row INSERTs
//! on SQLite, `COPY` on PostgreSQL.
//!
//! The hub gets the data as the agencies deliver it ([`replay`]): the generator's delivery
//! timeline, day by day on the hub's own clock, from its first start (the agencies' initial load)
//! to the check date, so that what it decides of the data's freshness (LATE_PAYROLL,
//! BACKDATED_EVENT) is what the generator planted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use sqlx::any::{AnyArguments, AnyConnectOptions};
use sqlx::{AnyConnection, Arguments, ConnectOptions, Connection, Executor};
use tonic::transport::Channel;

use super::hub::BenchHub;
use super::progress;
use crate::api::convert::Pushed;
use crate::clock::Clock;
use crate::domain::{Agency, AgencyKind, Coded, Jurisdiction, Period};
use crate::generator::{Dataset, Delivery, Kind};
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
    /// Personnel events of the agencies' initial load (the history, in bulk).
    pub events: KindTally,
    /// Personnel events sent after the initial load, a day's few at a time.
    pub daily_events: KindTally,
    /// Appointments.
    pub appointments: KindTally,
    /// Payroll lines.
    pub payroll: KindTally,
    /// Payroll lines per period, in period order (each a file per finance agency).
    pub payroll_months: Vec<(String, KindTally)>,
    /// Fundings.
    pub fundings: KindTally,
    /// Deliveries replayed.
    pub deliveries: usize,
    /// Days the hub's clock stood on to receive them.
    pub days: usize,
    /// Passes of the freshness schedule run on the way (each month's due day, the check date).
    pub passes: usize,
}

impl HubIngest {
    /// `123 deliveries over 45 days, 3 freshness passes`.
    pub fn replay_summary(&self) -> String {
        format!(
            "replayed as delivered: {} deliveries over {} days, the hub's clock on each, {} freshness passes (each month's due day, the check date)",
            self.deliveries, self.days, self.passes
        )
    }
}

/// Pushes the dataset through the hub as its agencies deliver it ([`replay`]), each agency over
/// a mutual-TLS connection of its own (its certificate issued and registered first).
pub async fn through_hub(
    hub: &BenchHub,
    data: &Dataset,
    stream_size: usize,
) -> anyhow::Result<HubIngest> {
    let mut channels = HashMap::new();
    for delivery in &data.deliveries {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            channels.entry(delivery.agency.id())
        {
            entry.insert(hub.channel(&delivery.agency).await?);
        }
    }
    replay(data, &hub.store, &channels, stream_size).await
}

/// Replays the dataset's delivery timeline on a hub whose clock can be moved (`store`'s): day
/// by day, the clock set to the day (in this process: no call per record or per day), each
/// delivery pushed as its agency over `channels` (by agency id) in streams of `stream_size`; the
/// freshness schedule's pass run on each month's due day before that day's deliveries, as an
/// hourly schedule would, and on the check date after them. The clock is left on the check date.
pub async fn replay(
    data: &Dataset,
    store: &Store,
    channels: &HashMap<String, Channel>,
    stream_size: usize,
) -> anyhow::Result<HubIngest> {
    let clock = &store.checks().clock;
    anyhow::ensure!(
        matches!(clock, Clock::Manual(_)),
        "the replay needs a hub whose clock it can move"
    );
    let cadence = store.checks().cadence;
    let as_of: NaiveDate = data.as_of.parse().context("the dataset's check date")?;
    let mut due_days: BTreeSet<NaiveDate> = BTreeSet::new();
    for period in &data.periods {
        let period = Period::parse(period).map_err(anyhow::Error::msg)?;
        let due = cadence.payroll_late_from(period);
        if data.start < due && due <= as_of {
            due_days.insert(due);
        }
    }
    let mut due_days = due_days.into_iter().peekable();
    let mut ingest = HubIngest::default();
    let mut months: BTreeMap<String, KindTally> = BTreeMap::new();
    let mut today = None;
    for delivery in &data.deliveries {
        while let Some(due) = due_days.next_if(|due| *due <= delivery.on) {
            move_to(clock, due);
            store.check_freshness().await?;
            ingest.passes += 1;
        }
        if today != Some(delivery.on) {
            move_to(clock, delivery.on);
            today = Some(delivery.on);
            ingest.days += 1;
        }
        let channel = channels
            .get(&delivery.agency.id())
            .with_context(|| format!("no connection as {}", delivery.agency))?
            .clone();
        if delivery.kind == Kind::PayrollLine {
            let period = &data.payroll[delivery.records.start].period;
            if !months.contains_key(period) {
                // A mark in the progress to profile one month's pushes apart from another's.
                progress(&format!("  payroll month {period}: its first delivery"));
            }
        }
        let tally = push_delivery(channel, data, delivery, stream_size).await?;
        ingest.deliveries += 1;
        match delivery.kind {
            Kind::PersonnelEvent if delivery.on == data.start => ingest.events.add(&tally),
            Kind::PersonnelEvent => ingest.daily_events.add(&tally),
            Kind::Appointment => ingest.appointments.add(&tally),
            Kind::Funding => ingest.fundings.add(&tally),
            Kind::PayrollLine => {
                ingest.payroll.add(&tally);
                let period = data.payroll[delivery.records.start].period.clone();
                months.entry(period).or_default().add(&tally);
            }
            _ => ingest.staffing.add(&tally),
        }
    }
    for due in due_days {
        move_to(clock, due);
        store.check_freshness().await?;
        ingest.passes += 1;
    }
    move_to(clock, as_of);
    store.check_freshness().await?;
    ingest.passes += 1;
    ingest.payroll_months = months.into_iter().collect();
    for (label, tally) in [
        ("staffing office records", &ingest.staffing),
        ("personnel events, initial load", &ingest.events),
        ("personnel events, day by day", &ingest.daily_events),
        ("appointments", &ingest.appointments),
        ("payroll lines", &ingest.payroll),
        ("fundings", &ingest.fundings),
    ] {
        progress(&format!(
            "  {label}: {} in {:.2} s ({:.0} rows/s)",
            tally.summary(),
            tally.elapsed.as_secs_f64(),
            tally.rows_per_second()
        ));
    }
    progress(&format!("  {}", ingest.replay_summary()));
    Ok(ingest)
}

/// Sets a manual clock to noon (China time) of `day`, as [`Clock::on`] starts one.
fn move_to(clock: &Clock, day: NaiveDate) {
    let noon = day.and_hms_opt(4, 0, 0).expect("a valid time").and_utc();
    clock.advance(noon - clock.now());
}

/// Pushes one delivery's records as its agency.
async fn push_delivery(
    channel: Channel,
    data: &Dataset,
    delivery: &Delivery,
    stream_size: usize,
) -> anyhow::Result<KindTally> {
    macro_rules! push {
        ($client:ident, $records:expr, $method:ident) => {{
            let client = $client::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
            let records = &$records[delivery.records.clone()];
            let label = format!("{} of {}", delivery.kind.slug(), delivery.agency);
            push_streams(&label, records, stream_size, false, |chunk| {
                let mut client = client.clone();
                async move { client.$method(tokio_stream::iter(chunk)).await }
            })
            .await
        }};
    }
    match delivery.kind {
        Kind::Institution => push!(StaffingServiceClient, data.institutions, push_institutions),
        Kind::Quota => push!(StaffingServiceClient, data.quotas, push_quotas),
        Kind::LeaderPost => push!(StaffingServiceClient, data.leader_posts, push_leader_posts),
        Kind::StaffingPlan => push!(StaffingServiceClient, data.plans, push_staffing_plans),
        Kind::HiringApproval => push!(StaffingServiceClient, data.approvals, push_hiring_approvals),
        Kind::PersonnelEvent => {
            push!(PersonnelServiceClient, data.events, push_personnel_events)
        }
        Kind::Appointment => push!(
            OrganizationServiceClient,
            data.appointments,
            push_appointments
        ),
        Kind::PayrollLine => push!(FinanceServiceClient, data.payroll, push_payroll_lines),
        Kind::Funding => push!(FinanceServiceClient, data.fundings, push_fundings),
    }
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
        let tally = push_streams(&label, &lines, stream_size, true, |chunk| {
            let mut client = finance.clone();
            async move { client.push_payroll_lines(tokio_stream::iter(chunk)).await }
        })
        .await?;
        measured.push((tally, super::memory::read()));
    }
    Ok(measured)
}

/// Sends `records` in streams of `stream_size`, one stream at a time, and tallies the answers;
/// says how it went when `report`.
async fn push_streams<M, F, Fut>(
    label: &str,
    records: &[M],
    stream_size: usize,
    report: bool,
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
    if report {
        progress(&format!(
            "  {label}: {} in {:.2} s ({:.0} rows/s)",
            tally.summary(),
            tally.elapsed.as_secs_f64(),
            tally.rows_per_second()
        ));
    }
    Ok(tally)
}

/// What the plain writes did.
#[derive(Debug, Clone, Default)]
pub struct BaselineIngest {
    /// How the rows went in: `INSERT` (multi-row, SQLite) or `COPY` (PostgreSQL).
    pub method: &'static str,
    /// Personnel event rows inserted, and the wall time.
    pub events: (u64, Duration),
    /// Payroll line rows inserted, and the wall time.
    pub payroll: (u64, Duration),
    /// The same per month, in the order written (each month after the months before it, into
    /// the same table): how much plain writes slow as the table grows.
    pub payroll_months: Vec<(String, u64, Duration)>,
    /// Appointment rows inserted, and the wall time.
    pub appointments: (u64, Duration),
    /// Funding rows inserted, and the wall time.
    pub fundings: (u64, Duration),
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
        per_second(self.payroll)
    }

    /// Appointment rows per second.
    pub fn appointments_per_second(&self) -> f64 {
        per_second(self.appointments)
    }

    /// Funding rows per second.
    pub fn fundings_per_second(&self) -> f64 {
        per_second(self.fundings)
    }

    fn add_payroll_month(&mut self, period: &str, (rows, elapsed): (u64, Duration)) {
        self.payroll.0 += rows;
        self.payroll.1 += elapsed;
        self.payroll_months.push((period.to_owned(), rows, elapsed));
    }
}

fn per_second((rows, elapsed): (u64, Duration)) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(1e-9)
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
/// each kind, or all), written the fastest plain way the backend offers into the empty database at
/// `url`, whose schema `Store::connect` first migrates: on SQLite multi-row INSERTs of
/// `rows_per_statement` rows (one statement per transaction), on PostgreSQL one `COPY ... FROM
/// STDIN` per `rows_per_statement` rows (each its own transaction). The rows are built (validated
/// as the hub validates them) before the clock starts.
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
    // Per period, in the order the periods first come (a month after the months before it).
    let mut payroll_months: Vec<(String, Vec<Vec<Cell>>)> = Vec::new();
    for message in data.payroll.iter().take(limit) {
        let Ok(line) = message.to_record() else {
            baseline.invalid += 1;
            continue;
        };
        let period = line.period.to_string();
        let at = match payroll_months.iter().position(|(p, _)| *p == period) {
            Some(at) => at,
            None => {
                payroll_months.push((period, Vec::new()));
                payroll_months.len() - 1
            }
        };
        payroll_months[at].1.push(vec![
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

    let organization = Agency::new(root.clone(), AgencyKind::Organization).id();
    let mut appointment_rows: Vec<Vec<Cell>> = Vec::with_capacity(data.appointments.len());
    for message in data.appointments.iter().take(limit) {
        let Ok(a) = message.to_record() else {
            baseline.invalid += 1;
            continue;
        };
        let arrival = arrivals.entry(format!("a{}", a.resident_id)).or_insert(0);
        appointment_rows.push(vec![
            Cell::Text(organization.clone()),
            Cell::Text(message.record_id.clone()),
            Cell::Text(a.action.code().to_owned()),
            Cell::Text(a.resident_id.to_string()),
            Cell::Text(a.name.clone()),
            Cell::Text(a.institution.to_string()),
            Cell::Text(a.level.code().to_owned()),
            Cell::Text(a.position.code().to_owned()),
            Cell::Text(a.rank.code().to_owned()),
            Cell::Text(a.effective_on.to_string()),
            Cell::Text(a.document.clone()),
            Cell::Int(0), // accepted_at, set per statement
            Cell::Int(*arrival),
        ]);
        *arrival += 1;
    }
    let mut funding_rows: Vec<Vec<Cell>> = Vec::with_capacity(data.fundings.len());
    for message in data.fundings.iter().take(limit) {
        let Ok(f) = message.to_record() else {
            baseline.invalid += 1;
            continue;
        };
        funding_rows.push(vec![
            Cell::Text(finance.clone()),
            Cell::Text(message.record_id.clone()),
            Cell::Text(f.institution.to_string()),
            Cell::Text(f.category.code().to_owned()),
            Cell::Text(f.period.to_string()),
            Cell::Int(i64::from(f.funded_headcount)),
            Cell::Int(f.amount_fen),
            Cell::Int(0), // accepted_at, set per statement
        ]);
    }

    const APPOINTMENT_COLUMNS: &str = "appointments (agency_id, record_id, action, resident_id, name, institution_uscc, level, position, rank, effective_on, document, accepted_at, arrival)";
    const FUNDING_COLUMNS: &str = "fundings (agency_id, record_id, institution_uscc, category, period, funded_headcount, amount_fen, accepted_at)";
    const EVENT_COLUMNS: &str = "personnel_events (agency_id, record_id, event_type, resident_id, name, institution_uscc, category, rank, effective_on, approval_number, channel, target_uscc, accepted_at, arrival)";
    const PAYROLL_COLUMNS: &str = "payroll_lines (agency_id, record_id, period, institution_uscc, resident_id, name, gross_fen, accepted_at, reverses)";
    if !url.starts_with("sqlite:") {
        baseline.method = "COPY";
        let mut connection = url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .context("a bad baseline database URL")?
            .disable_statement_logging()
            .connect()
            .await
            .context("cannot connect to the baseline database")?;
        baseline.events = copy_all(
            &mut connection,
            EVENT_COLUMNS,
            12,
            &event_rows,
            rows_per_statement,
        )
        .await?;
        for (period, rows) in &payroll_months {
            let month = copy_all(
                &mut connection,
                PAYROLL_COLUMNS,
                7,
                rows,
                rows_per_statement,
            )
            .await?;
            baseline.add_payroll_month(period, month);
        }
        baseline.appointments = copy_all(
            &mut connection,
            APPOINTMENT_COLUMNS,
            11,
            &appointment_rows,
            rows_per_statement,
        )
        .await?;
        baseline.fundings = copy_all(
            &mut connection,
            FUNDING_COLUMNS,
            7,
            &funding_rows,
            rows_per_statement,
        )
        .await?;
        let _ = connection.close().await;
        report_baseline(&baseline, "COPY");
        return Ok(baseline);
    }
    baseline.method = "INSERT";

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
        &format!("INSERT INTO {EVENT_COLUMNS}"),
        12,
        event_rows,
        rows_per_statement,
        numbered,
    )
    .await?;
    for (period, rows) in payroll_months {
        let month = insert_all(
            &mut connection,
            &format!("INSERT INTO {PAYROLL_COLUMNS}"),
            7,
            rows,
            rows_per_statement,
            numbered,
        )
        .await?;
        baseline.add_payroll_month(&period, month);
    }
    baseline.appointments = insert_all(
        &mut connection,
        &format!("INSERT INTO {APPOINTMENT_COLUMNS}"),
        11,
        appointment_rows,
        rows_per_statement,
        numbered,
    )
    .await?;
    baseline.fundings = insert_all(
        &mut connection,
        &format!("INSERT INTO {FUNDING_COLUMNS}"),
        7,
        funding_rows,
        rows_per_statement,
        numbered,
    )
    .await?;
    let _ = connection.close().await;
    report_baseline(&baseline, &format!("INSERT, {placeholders:?} placeholders"));
    Ok(baseline)
}

fn report_baseline(baseline: &BaselineIngest, how: &str) {
    progress(&format!(
        "  baseline ({how}): {} personnel event rows in {:.2} s ({:.0} rows/s)",
        baseline.events.0,
        baseline.events.1.as_secs_f64(),
        baseline.events_per_second()
    ));
    for (what, (rows, elapsed)) in [
        ("payroll line", baseline.payroll),
        ("appointment", baseline.appointments),
        ("funding", baseline.fundings),
    ] {
        progress(&format!(
            "  baseline ({how}): {rows} {what} rows in {:.2} s ({:.0} rows/s)",
            elapsed.as_secs_f64(),
            per_second((rows, elapsed))
        ));
    }
}

/// Writes `rows` into `table (columns)` with one `COPY ... FROM STDIN` (text format) of
/// `per_copy` rows at a time, each its own transaction; `accepted_at` is the column whose value is
/// the time of each copy. Returns rows written and the wall time.
async fn copy_all(
    connection: &mut sqlx::PgConnection,
    table: &str,
    accepted_at: usize,
    rows: &[Vec<Cell>],
    per_copy: usize,
) -> anyhow::Result<(u64, Duration)> {
    let statement = format!("COPY {table} FROM STDIN");
    let started = Instant::now();
    let mut written = 0;
    let mut data = Vec::new();
    for chunk in rows.chunks(per_copy.max(1)) {
        let now = crate::store::now_micros().to_string();
        data.clear();
        for row in chunk {
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    data.push(b'\t');
                }
                match cell {
                    _ if c == accepted_at => data.extend_from_slice(now.as_bytes()),
                    Cell::Text(text) | Cell::OptText(Some(text)) => copy_text(&mut data, text),
                    Cell::OptText(None) => data.extend_from_slice(b"\\N"),
                    Cell::Int(int) => data.extend_from_slice(int.to_string().as_bytes()),
                }
            }
            data.push(b'\n');
        }
        let mut copy = connection
            .copy_in_raw(&statement)
            .await
            .context("a baseline COPY failed to start")?;
        copy.send(data.as_slice())
            .await
            .context("a baseline COPY failed")?;
        written += copy.finish().await.context("a baseline COPY failed")?;
    }
    Ok((written, started.elapsed()))
}

/// Appends `text` in COPY's text format, where backslash, tab, newline and carriage return are
/// escaped.
fn copy_text(data: &mut Vec<u8>, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'\\' => data.extend_from_slice(b"\\\\"),
            b'\t' => data.extend_from_slice(b"\\t"),
            b'\n' => data.extend_from_slice(b"\\n"),
            b'\r' => data.extend_from_slice(b"\\r"),
            other => data.push(other),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::copy_text;

    #[test]
    fn copy_text_escapes_what_the_text_format_reads_as_markup() {
        let mut data = Vec::new();
        copy_text(&mut data, "a\\b\tc\nd\re 张三");
        assert_eq!(data, "a\\\\b\\tc\\nd\\re 张三".as_bytes());
    }
}
