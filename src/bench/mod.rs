//! `quotahub bench`: the hub measured against plain baselines in the same run, on data from the
//! generator ([`crate::generator`]), printed as one Markdown table.
//!
//! The real hub runs in this process on 127.0.0.1 port 0 over real mutual TLS (a fresh PKI held in
//! memory), on a fresh database: a temporary SQLite file, or a database made for the run on the
//! PostgreSQL server of `--database-url` and dropped after it. The measures:
//!
//! 1. [`ingest`]: bulk ingest through the client-streaming pushes (rows/s of personnel events and
//!    payroll lines) against plain writes of the same rows into a fresh database of the same kind
//!    and schema (multi-row INSERTs on SQLite, `COPY` on PostgreSQL). Target: hub ≥ 0.25 ×
//!    baseline with findings checked at every push (issue 14), ≥ 0.5 × for an initial load whose
//!    findings the re-check decides.
//! 2. [`recheck`]: a full re-check (`Store::reconcile`) against the core rules as plain SQL
//!    (`Store::plain_sql_findings`) on the same database. Target: hub ≤ 2 × baseline.
//! 3. [`calls::unary_pushes`]: p50/p99 of single pushes on the loaded hub (report only).
//! 4. [`calls::prechecks`]: CheckHire and VerifyFunding under 1, 16 and 64 callers against
//!    `grpc.health.v1.Health/Check` over the same connections. Target: each ≥ 0.25 × health at 16
//!    callers (issue 14); at 1 and 64 reported.
//! 5. [`memory`]: the process's resident memory (the hub, with the generated data).
//! 6. [`alert_feed`]: push-to-subscriber latency and memory per subscriber.
//! 7. [`audit_log`]: audit appends per second with the Merkle log and checkpoints against the hash
//!    chain alone. Target: log ≥ 0.8 × chain.
//! 8. [`console_pages`]: the supervision console's server time per page (target p95 < 300 ms).
//!
//! Every measure is bounded in time and count, everything stays on loopback, and nothing asserts on
//! a timing. Progress goes to stderr, the table to stdout.

pub mod alert_feed;
pub mod audit_log;
pub mod calls;
pub mod console_pages;
pub mod db;
pub mod hub;
pub mod ingest;
pub mod memory;
pub mod recheck;
pub mod report;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;

use self::calls::{LoadBounds, LoadPair, Precheck, Requests};
use self::db::{DatabaseServer, TempDatabase};
use self::hub::BenchHub;
use self::ingest::Placeholders;
use self::report::{BenchReport, Figure, Row, Target, thousands};
use crate::api::Limits;
use crate::domain::{Agency, AgencyKind, Period};
use crate::generator::{Dataset, GenConfig, generate};

/// Flags of `quotahub bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// small | city | province
    #[arg(long, default_value = "small")]
    pub scale: String,
    /// Database for the hub: empty means a temporary SQLite file; or a postgres:// URL of a server
    /// where the user may create databases (make a fresh database per run and drop it after).
    #[arg(long, env = "QUOTAHUB_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Write the table (Markdown) here as well as printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Load the data as an initial load, findings checked by the full re-check instead of at
    /// every push (true | false; default true for the province only).
    #[arg(long)]
    pub initial_load: Option<bool>,
    /// Payroll months to generate, up to the as-of date (default 3): one month of a province is
    /// the ~1,000,000 payroll lines of docs/DOMAIN.md.
    #[arg(long)]
    pub months: Option<usize>,
}

/// Everything a run does, with the defaults of `quotahub bench`; tests shrink it.
pub struct BenchOptions {
    /// Name of the scale, for the table.
    pub scale: String,
    /// What to generate.
    pub config: GenConfig,
    /// Where the hub's and the baseline's databases live.
    pub database: DatabaseServer,
    /// Records per bulk stream (5,000).
    pub stream_size: usize,
    /// Rows per statement of the plain-INSERT baseline (1,000).
    pub baseline_rows_per_statement: usize,
    /// Rows of each kind in the second, `$N`-placeholder baseline on SQLite (20,000): its rate
    /// per statement does not depend on the table's size, and all of them would take minutes.
    pub numbered_sample_rows: usize,
    /// Single pushes of each kind timed on the loaded hub (200).
    pub unary_pushes: usize,
    /// Concurrent callers of the pre-checks ([1, 16, 64]).
    pub concurrency: Vec<usize>,
    /// How long and how many calls each load runs (3 s, at most 1,000,000 calls).
    pub load: LoadBounds,
    /// Connections per agency the callers share (4).
    pub connections: usize,
    /// The hub's call limits (the defaults of `quotahub serve`).
    pub limits: Limits,
    /// Pushes timed per subscriber count on the alert feed (50).
    pub feed_samples: usize,
    /// Subscribers of the feed's "many" case (1,000).
    pub feed_subscribers: usize,
    /// Load the data as an initial load (`reconcile.check_on_push = false`), the re-check raising
    /// the findings: the province, whose millions of records would take hours checked one batch
    /// at a time. The single pushes after it are checked.
    pub defer_push_checks: bool,
    /// Ledger items opened from findings before the console's pages are timed (200).
    pub console_items: usize,
    /// Fetches per console page at most (30).
    pub console_samples: usize,
    /// Time per console page at most (20 s).
    pub console_budget: Duration,
}

impl BenchOptions {
    /// The defaults for a scale: `small`, `city` or `province`.
    pub fn for_scale(scale: &str, seed: u64) -> anyhow::Result<BenchOptions> {
        let config = match scale {
            "small" => GenConfig::small(seed),
            "city" => GenConfig::city(seed),
            "province" => GenConfig::province(seed),
            other => anyhow::bail!("--scale must be small, city or province, not `{other}`"),
        };
        Ok(BenchOptions {
            scale: scale.to_owned(),
            config,
            database: DatabaseServer::Sqlite,
            stream_size: 5_000,
            baseline_rows_per_statement: 1_000,
            numbered_sample_rows: 20_000,
            unary_pushes: 200,
            concurrency: vec![1, 16, 64],
            load: LoadBounds {
                duration: Duration::from_secs(3),
                max_calls: 1_000_000,
            },
            connections: 4,
            // The bench measures what the hub can take, not the per-agency rate limit.
            limits: Limits {
                calls_per_second: 0,
                ..Limits::default()
            },
            feed_samples: 50,
            feed_subscribers: 1_000,
            defer_push_checks: scale == "province",
            console_items: 200,
            console_samples: 30,
            console_budget: Duration::from_secs(20),
        })
    }
}

/// Runs `quotahub bench`: prints the table, and writes it to `--out` when given.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut options = BenchOptions::for_scale(&args.scale, args.seed)?;
    options.database = DatabaseServer::from_flag(args.database_url.as_deref())?;
    if let Some(initial_load) = args.initial_load {
        options.defer_push_checks = initial_load;
    }
    if let Some(months) = args.months {
        anyhow::ensure!(months >= 1, "--months must be at least 1");
        options.config.periods = crate::generator::months_up_to(options.config.as_of, months);
    }
    let report = run_with(options).await?;
    let table = report.to_markdown();
    println!("{table}");
    if let Some(path) = &args.out {
        std::fs::write(path, &table)
            .with_context(|| format!("cannot write the table to {}", path.display()))?;
        progress(&format!("table written to {}", path.display()));
    }
    Ok(())
}

/// Prints a progress line to stderr, with the time since the first one.
fn progress(message: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[bench {:>7.1} s] {message}", start.elapsed().as_secs_f64());
}

/// Runs every measure and returns the table's rows. The run's databases are removed at the end,
/// whether it succeeded, failed or was interrupted (Ctrl-C, SIGTERM).
pub async fn run_with(options: BenchOptions) -> anyhow::Result<BenchReport> {
    crate::tls::install_crypto_provider();
    let before_generating = memory::read();
    progress(&format!(
        "generating the {} dataset (seed {})",
        options.scale, options.config.seed
    ));
    let started = Instant::now();
    let data = generate(&options.config);
    let generated_in = started.elapsed();
    let after_generating = memory::read();
    let peak_reset = memory::reset_peak();
    progress(&format!(
        "generated {} institutions, {} personnel events, {} payroll lines in {:.1} s",
        data.institutions.len(),
        data.events.len(),
        data.payroll.len(),
        generated_in.as_secs_f64()
    ));

    let hub_db = TempDatabase::create(&options.database, "hub").await?;
    let baseline_db = match TempDatabase::create(&options.database, "baseline").await {
        Ok(db) => db,
        Err(error) => {
            let _ = hub_db.remove().await;
            return Err(error);
        }
    };
    // Ctrl-C or SIGTERM stops the run but still removes its databases.
    let measured = tokio::select! {
        measured = measure(&options, &data, &hub_db, &baseline_db) => measured,
        () = crate::server::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    let removed = (hub_db.remove().await, baseline_db.remove().await);
    let mut rows = measured?;
    if let (Err(error), _) | (_, Err(error)) = removed {
        progress(&format!(
            "could not remove a database of the run: {error:#}"
        ));
    }

    let memory_rows = memory_rows(
        before_generating,
        after_generating,
        &rows.peak,
        peak_reset,
        &rows.after_prechecks,
    );
    let mut report = BenchReport {
        context: context(&options, &data, generated_in),
        rows: Vec::new(),
    };
    report.rows.append(&mut rows.rows);
    // Memory goes after the calls in the table's order of sections (5 after 4).
    report.rows.extend(memory_rows);
    report
        .rows
        .extend(repeated_rows(&rows.repeated, after_generating));
    report.rows.append(&mut rows.feed);
    report.rows.append(&mut rows.audit);
    report.rows.append(&mut rows.console);
    progress("done");
    Ok(report)
}

/// Rows of measures 1–4, and the memory peak taken after ingest and re-check.
struct Measured {
    rows: Vec<Row>,
    peak: memory::ProcessMemory,
    /// Memory once the pre-checks have run (section 4): their readers map an SQLite file.
    after_prechecks: memory::ProcessMemory,
    /// Memory after each repeated import (section 5).
    repeated: Vec<(ingest::KindTally, memory::ProcessMemory)>,
    /// The console's pages (section 8, last).
    console: Vec<Row>,
    /// The alert feed's rows (they come after memory in the table).
    feed: Vec<Row>,
    /// The audit trail's rows.
    audit: Vec<Row>,
}

async fn measure(
    options: &BenchOptions,
    data: &Dataset,
    hub_db: &TempDatabase,
    baseline_db: &TempDatabase,
) -> anyhow::Result<Measured> {
    let config = &options.config;
    let root = &config.root;
    let as_of = config.as_of;
    let period = config
        .periods
        .last()
        .copied()
        .unwrap_or_else(|| Period::containing(as_of));
    let division = root.as_str();
    let mut rows = Vec::new();

    progress(&format!(
        "starting the hub on 127.0.0.1 (mutual TLS, {})",
        options.database.name()
    ));
    let hub = BenchHub::start(hub_db.url(), data.start, options.limits.clone()).await?;

    progress(&format!(
        "1. bulk ingest through the hub, streams of {}",
        options.stream_size
    ));
    if options.defer_push_checks {
        progress("  initial load: push-time checks deferred to the full re-check");
        hub.store.set_push_checks(false);
    }
    let ingested = ingest::through_hub(&hub, data, options.stream_size).await;
    hub.store.set_push_checks(true);
    let ingested = ingested?;

    progress("2. full re-check against the plain-SQL rules");
    let late = crate::generator::late_payroll(data);
    let recheck = recheck::measure(&hub.store, as_of, &data.truth, &late).await?;
    progress(&format!(
        "  re-check {:.2} s ({} findings), plain SQL {:.2} s ({} findings)",
        recheck.hub_time.as_secs_f64(),
        recheck.hub_findings,
        recheck.plain_time.as_secs_f64(),
        recheck.plain_findings
    ));
    let peak = memory::read();

    progress("5. the payroll imported again, three times, memory after each");
    let repeated = ingest::repeated_payroll(&hub, data, root, options.stream_size, 3).await?;

    progress(&format!(
        "3. {} single pushes of each kind on the loaded hub",
        options.unary_pushes
    ));
    let agency = |kind| Agency::new(root.clone(), kind);
    let pushes = calls::unary_pushes(
        hub.channel(&agency(AgencyKind::Hr)).await?,
        hub.channel(&agency(AgencyKind::Finance)).await?,
        data,
        division,
        as_of,
        period,
        options.unary_pushes,
    )
    .await?;

    progress(&format!(
        "4. pre-checks at {:?} callers, {:?} each, over {} connections per agency",
        options.concurrency, options.load.duration, options.connections
    ));
    let requests = Requests::from_dataset(data, division, as_of, period);
    let mut pairs = Vec::new();
    {
        let hr = hub
            .channels(&agency(AgencyKind::Hr), options.connections)
            .await?;
        pairs.extend(
            calls::prechecks(
                Precheck::CheckHire,
                &hr,
                &requests,
                &options.concurrency,
                options.load,
            )
            .await?,
        );
        let finance = hub
            .channels(&agency(AgencyKind::Finance), options.connections)
            .await?;
        pairs.extend(
            calls::prechecks(
                Precheck::VerifyFunding,
                &finance,
                &requests,
                &options.concurrency,
                options.load,
            )
            .await?,
        );
    }
    let after_prechecks = memory::read();
    progress("6. the alert feed");
    let ghost_unit = data
        .institutions
        .iter()
        .find(|i| i.jurisdiction == root.as_str())
        .or(data.institutions.first())
        .map(|i| i.uscc.clone())
        .context("the data has no institution")?;
    let feed = alert_feed::rows(&alert_feed::FeedBench {
        hub: &hub,
        institution: ghost_unit,
        root: root.clone(),
        samples: options.feed_samples,
        many: options.feed_subscribers,
    })
    .await?;

    let largest = {
        let mut people: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for event in &data.events {
            *people.entry(event.institution_uscc.as_str()).or_default() += 1;
        }
        people
            .into_iter()
            .max_by_key(|(uscc, count)| (*count, std::cmp::Reverse(*uscc)))
            .map(|(uscc, _)| uscc.to_owned())
            .context("the data has no personnel")?
    };
    let console = console_pages::rows(&console_pages::ConsoleBench {
        hub: &hub,
        root: root.clone(),
        institution: largest,
        as_of,
        items: options.console_items,
        samples: options.console_samples,
        budget: options.console_budget,
    })
    .await?;

    progress("stopping the hub");
    hub.stop().await?;

    progress(&format!(
        "1b. baseline: plain writes (multi-row INSERT on SQLite, COPY on PostgreSQL) of {} rows per statement into a fresh {} database",
        options.baseline_rows_per_statement,
        options.database.name()
    ));
    let baseline = ingest::plain_inserts(
        baseline_db.url(),
        data,
        root,
        options.baseline_rows_per_statement,
        Placeholders::Native,
        None,
    )
    .await?;
    // On SQLite the hub's `$N` placeholders cost more than `?`: measure that too, so the table
    // shows how much of the gap is the placeholders.
    let numbered = if options.database == DatabaseServer::Sqlite {
        let db = TempDatabase::create(&options.database, "baseline_numbered").await?;
        let numbered = ingest::plain_inserts(
            db.url(),
            data,
            root,
            options.baseline_rows_per_statement,
            Placeholders::Numbered,
            Some(options.numbered_sample_rows),
        )
        .await;
        let _ = db.remove().await;
        Some(numbered?)
    } else {
        None
    };

    rows.extend(ingest_rows(
        options,
        &ingested,
        &baseline,
        numbered.as_ref(),
    ));
    rows.extend(recheck_rows(&recheck));
    rows.extend(push_rows(&pushes));
    for pair in &pairs {
        rows.extend(precheck_rows(pair, options.connections));
    }
    progress(&format!(
        "7. audit appends, batches of {:?}: the Merkle log vs the chain alone",
        audit_log::BATCHES
    ));
    let audit = audit_log::rows(&audit_log::measure(&options.database, options.load).await?);
    Ok(Measured {
        rows,
        peak,
        after_prechecks,
        repeated,
        console,
        feed,
        audit,
    })
}

/// Resident memory after each repeated import, the last against the first (flat: ≤ 1.1×), and
/// what the process grew by over the generated data: the hub's memory and more.
fn repeated_rows(
    rounds: &[(ingest::KindTally, memory::ProcessMemory)],
    after_generating: memory::ProcessMemory,
) -> Vec<Row> {
    let mib = |m: &memory::ProcessMemory| m.rss_kib.map(|kib| kib as f64 / 1024.0);
    let mut rows: Vec<Row> = rounds
        .iter()
        .enumerate()
        .map(|(i, (tally, memory))| {
            Row::reported(
                format!("memory.rss_after_import_{}", i + 1),
                "5",
                format!(
                    "Resident memory (VmRSS) after the payroll is imported again, round {}",
                    i + 1
                ),
                memory.rss_kib.map_or_else(
                    || Figure::text("not available (no /proc/self/status)"),
                    Figure::memory_kib,
                ),
            )
            .note(format!(
                "{} at {} rows/s, checked at every push",
                tally.summary(),
                thousands(tally.rows_per_second())
            ))
        })
        .collect();
    if let (Some(first), Some(last)) = (
        rounds.first().and_then(|(_, m)| mib(m)),
        rounds.last().and_then(|(_, m)| mib(m)),
    ) {
        rows.push(
            Row::compared(
                "memory.repeated_imports_flat",
                "5",
                "Resident memory after the last repeated import vs after the first",
                Figure::memory_kib((last * 1024.0) as u64),
                Figure::memory_kib((first * 1024.0) as u64),
                Target::AtMost(1.1),
            )
            .note("each round stores as many lines again: the data grows, the hub's memory should not"),
        );
    }
    // The hub shares this process with the generated data, which stays held to the end, and with
    // the clients: what the process grew by since bounds the hub's own memory from above.
    if let (Some(last), Some(data)) = (
        rounds.last().and_then(|(_, m)| m.rss_kib),
        after_generating.rss_kib,
    ) {
        rows.push(
            Row::compared(
                "memory.hub_upper_bound",
                "5",
                "Hub memory holding the loaded data, at most: VmRSS after the last repeated import \
                 less VmRSS holding the generated data, vs 1 GiB",
                Figure::memory_kib(last.saturating_sub(data)),
                Figure::memory_kib(HUB_MEMORY_LIMIT_KIB),
                Target::AtMost(1.0),
            )
            .note(
                "an upper bound: the growth also holds the clients' buffers, the baseline \
                 databases' connections and what the allocator kept of freed memory; the \
                 baseline is the issue's limit, not a measure",
            ),
        );
    }
    rows
}

/// The hub's memory holding a loaded province: at most 1 GiB (issue 14).
const HUB_MEMORY_LIMIT_KIB: u64 = 1024 * 1024;

fn context(options: &BenchOptions, data: &Dataset, generated_in: Duration) -> Vec<String> {
    let people: std::collections::HashSet<&str> =
        data.events.iter().map(|e| e.resident_id.as_str()).collect();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    vec![
        format!(
            "quotahub bench, scale `{}`{}, seed {}, root jurisdiction {}, as of {}, {} {}",
            options.scale,
            if options.defer_push_checks {
                " loaded as an initial load (findings checked by the re-check, not at every push)"
            } else {
                ""
            },
            options.config.seed,
            options.config.root,
            options.config.as_of,
            if cfg!(debug_assertions) {
                "**debug build** (figures not representative)"
            } else {
                "release build"
            },
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        ),
        format!(
            "data (generated in {:.1} s): {} institutions, {} quotas, {} leader posts, {} plans, {} approvals; {} people in {} personnel events; {} appointments; {} payroll lines; {} fundings; {} planted anomalies",
            generated_in.as_secs_f64(),
            thousands(data.institutions.len() as f64),
            thousands(data.quotas.len() as f64),
            thousands(data.leader_posts.len() as f64),
            thousands(data.plans.len() as f64),
            thousands(data.approvals.len() as f64),
            thousands(people.len() as f64),
            thousands(data.events.len() as f64),
            thousands(data.appointments.len() as f64),
            thousands(data.payroll.len() as f64),
            thousands(data.fundings.len() as f64),
            thousands(data.truth.len() as f64),
        ),
        format!(
            "database: {} (a fresh one for the hub and one for the baseline, removed after the run); hub in this process on 127.0.0.1 over mutual TLS, sharing the tokio runtime and {cores} cores with the clients",
            match options.database {
                DatabaseServer::Sqlite => "SQLite, temporary files",
                DatabaseServer::Postgres { .. } => "PostgreSQL, databases made for the run",
            }
        ),
    ]
}

fn ingest_rows(
    options: &BenchOptions,
    hub: &ingest::HubIngest,
    baseline: &ingest::BaselineIngest,
    numbered: Option<&ingest::BaselineIngest>,
) -> Vec<Row> {
    let numbered_note = |rate: f64, rows: u64| {
        numbered.map_or_else(String::new, |_| {
            format!(
                "; baseline binds with `?`; with the hub's `$N` placeholders it makes {} rows/s (over {} rows)",
                thousands(rate),
                thousands(rows as f64)
            )
        })
    };
    // Checked at every push, a record costs its checks besides its row (issue 14's bar); an
    // initial load checked by the re-check afterwards keeps the older, plainer one.
    let bulk_target = Target::AtLeast(if options.defer_push_checks { 0.5 } else { 0.25 });
    let what_differs = if options.defer_push_checks {
        "the hub also validates and keeps idempotency keys; initial load: findings checked by the re-check (2), not per batch"
    } else {
        "the hub also validates, keeps idempotency keys and checks findings per batch"
    };
    let people = Row::compared(
        "ingest.people",
        "1",
        format!(
            "Bulk ingest, people (personnel events, the initial load): hub streams of {} vs plain {} of {} rows",
            thousands(options.stream_size as f64),
            baseline.method,
            thousands(options.baseline_rows_per_statement as f64)
        ),
        Figure::rate(hub.events.rows_per_second(), "rows"),
        Figure::rate(baseline.events_per_second(), "rows"),
        bulk_target,
    )
    .note(format!(
        "the agencies' initial load: {}; then day by day: {} ({:.0} rows/s, not in the figure); {}; the hub also derives the roll (person_spells); {what_differs}{}",
        hub.events.summary(),
        hub.daily_events.summary(),
        hub.daily_events.rows_per_second(),
        hub.replay_summary(),
        numbered_note(
            numbered.map_or(0.0, ingest::BaselineIngest::events_per_second),
            numbered.map_or(0, |n| n.events.0)
        )
    ));
    let payroll = Row::compared(
        "ingest.payroll",
        "1",
        format!(
            "Bulk ingest, payroll lines: hub streams of {} vs plain {} of {} rows",
            thousands(options.stream_size as f64),
            baseline.method,
            thousands(options.baseline_rows_per_statement as f64)
        ),
        Figure::rate(hub.payroll.rows_per_second(), "rows"),
        Figure::rate(baseline.payroll_per_second(), "rows"),
        bulk_target,
    )
    .note(format!(
        "{}; {what_differs}{}",
        hub.payroll.summary(),
        numbered_note(
            numbered.map_or(0.0, ingest::BaselineIngest::payroll_per_second),
            numbered.map_or(0, |n| n.payroll.0)
        )
    ));
    let staffing = Row::reported(
        "ingest.staffing_office",
        "1",
        "Bulk ingest, staffing office data (institutions, quotas, posts, plans, approvals), first",
        Figure::rate(hub.staffing.rows_per_second(), "records"),
    )
    .note(hub.staffing.summary());
    // Appointments and fundings arrive as their agencies deliver them, a division's file at a
    // time; the baseline writes the same rows in statements of its size.
    let delivered = |id: &str, what: &str, tally: &ingest::KindTally, plain: f64| {
        Row::compared(
            id,
            "1",
            format!(
                "Ingest, {what} as delivered: hub vs plain {} of {} rows",
                baseline.method,
                thousands(options.baseline_rows_per_statement as f64)
            ),
            Figure::rate(tally.rows_per_second(), "rows"),
            Figure::rate(plain, "rows"),
            Target::AtLeast(0.25),
        )
        .note(format!("{}; {what_differs}", tally.summary()))
    };
    let appointments = delivered(
        "ingest.appointments",
        "appointments",
        &hub.appointments,
        baseline.appointments_per_second(),
    );
    let fundings = delivered(
        "ingest.fundings",
        "fundings",
        &hub.fundings,
        baseline.fundings_per_second(),
    );
    let mut rows = vec![people, payroll];
    if let (Some((first_period, first)), Some((last_period, last))) =
        (hub.payroll_months.first(), hub.payroll_months.last())
        && hub.payroll_months.len() > 1
    {
        rows.push(
            Row::compared(
                "ingest.payroll_last_month",
                "1",
                format!(
                    "Payroll lines with checks, the last of {} months ({last_period}) vs the first ({first_period})",
                    hub.payroll_months.len()
                ),
                Figure::rate(last.rows_per_second(), "rows"),
                Figure::rate(first.rows_per_second(), "rows"),
                Target::AtLeast(0.8),
            )
            .note(format!(
                "each month a file per finance agency, pushed on its day; first: {}; last: {}",
                first.summary(),
                last.summary()
            )),
        );
    }
    // The same months written plainly, each after the months before it: how much of a later
    // month's slowdown is the growing table's own.
    if let (Some((first_period, first_rows, first_time)), Some((last_period, last_rows, last_time))) = (
        baseline.payroll_months.first(),
        baseline.payroll_months.last(),
    ) && baseline.payroll_months.len() > 1
    {
        let rate = |rows: &u64, time: &Duration| *rows as f64 / time.as_secs_f64().max(1e-9);
        rows.push(
            Row::compared(
                "ingest.payroll_last_month_plain",
                "1",
                format!(
                    "Payroll lines, plain {} of {} rows into the same table, the last of {} months ({last_period}) vs the first ({first_period})",
                    baseline.method,
                    thousands(options.baseline_rows_per_statement as f64),
                    baseline.payroll_months.len()
                ),
                Figure::rate(rate(last_rows, last_time), "rows"),
                Figure::rate(rate(first_rows, first_time), "rows"),
                Target::None,
            )
            .note(format!(
                "the baseline of the row above: the growing table's own slowdown; first: {first_rows} rows, last: {last_rows} rows"
            )),
        );
    }
    rows.extend([appointments, fundings, staffing]);
    if baseline.invalid > 0 {
        rows[0].note.push_str(&format!(
            "; {} records that do not validate left out of the baseline",
            baseline.invalid
        ));
    }
    rows
}

fn recheck_rows(recheck: &recheck::Recheck) -> Vec<Row> {
    let time = Row::compared(
        "recheck.time",
        "2",
        "Full re-check of the loaded data: reconcile(None, as_of), set-based, vs every rule as plain SQL (plain_sql_all)",
        Figure::time(recheck.hub_time),
        Figure::time(recheck.plain_time),
        Target::AtMost(2.0),
    )
    .note(format!(
        "{} institutions; the hub decides all {} rules with evidence and explanations, merges them with the stored findings and writes them, the plain SQL finds the keys of all {} ({} approximated); the {} core rules alone as plain SQL: {:.2} s",
        recheck.institutions,
        crate::store::plain_sql::CODES.len() + crate::store::plain_sql::MORE_CODES.len() - 1,
        crate::store::plain_sql::CODES.len() + crate::store::plain_sql::MORE_CODES.len(),
        crate::store::plain_sql::APPROXIMATE.len(),
        crate::store::plain_sql::CODES.len(),
        recheck.plain_core_time.as_secs_f64()
    ));
    let differences = if recheck.differences.is_empty() {
        "same counts per rule".to_owned()
    } else {
        recheck
            .differences
            .iter()
            .map(|(code, (hub, sql))| format!("{code}: hub {hub}, SQL {sql}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let findings = Row::compared(
        "recheck.findings",
        "2",
        "Findings found, rules the plain SQL computes exactly (hub vs plain SQL)",
        Figure::count(recheck.hub_core_findings, "findings"),
        Figure::count(recheck.plain_findings, "findings"),
        Target::None,
    )
    .note(format!(
        "hub, every rule: {}; {differences}",
        recheck.hub_findings
    ));
    let truth = Row::compared(
        "recheck.truth",
        "2",
        "Planted problems found by the re-check (hub vs the generator's ground truth)",
        Figure::count(recheck.planted - recheck.missed.0, "found"),
        Figure::count(recheck.planted, "planted"),
        Target::AtLeast(1.0),
    )
    .note(format!(
        "missed {}{}; raised but not planted {}{}; of the planted, {} about agencies' data freshness (LATE_PAYROLL, BACKDATED_EVENT), decided by the freshness schedule on the check date after the replay; late payroll months raised on their due day and resolved on arrival in the replay: {} of {} planted",
        recheck.missed.0,
        examples(&recheck.missed.1),
        recheck.extra.0,
        examples(&recheck.extra.1),
        recheck.planted_freshness,
        recheck.late_resolved.0,
        recheck.late_resolved.1
    ));
    vec![time, findings, truth]
}

/// ` (e.g. A; B)` when there are examples to show.
fn examples(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {})", names.join("; "))
    }
}

fn push_rows(pushes: &calls::UnaryPushes) -> Vec<Row> {
    let row = |key: &str, measure: &str, latencies: &calls::Latencies| {
        let mut note = format!("{} sequential calls", latencies.samples.len());
        let failures = latencies.failures();
        if !failures.is_empty() {
            note.push_str(&format!("; {failures}"));
        }
        Row::reported(
            key,
            "3",
            measure,
            Figure::latencies(latencies.quantile(0.5), latencies.quantile(0.99)),
        )
        .note(note)
    };
    vec![
        row(
            "push_cost.personnel_event",
            "One push on the loaded hub, p50 / p99: PushPersonnelEvent (a hire into an existing institution)",
            &pushes.hires,
        ),
        row(
            "push_cost.payroll_line",
            "One push on the loaded hub, p50 / p99: PushPayrollLine",
            &pushes.payroll,
        ),
    ]
}

fn precheck_rows(pair: &LoadPair, connections: usize) -> Vec<Row> {
    let (name, key) = match pair.precheck {
        Precheck::CheckHire => ("CheckHire", "check_hire"),
        Precheck::VerifyFunding => ("VerifyFunding", "verify_funding"),
    };
    // Issue 14's bar is at 16 callers; the other numbers of callers show how it scales.
    let target = if pair.callers == 16 {
        Target::AtLeast(0.25)
    } else {
        Target::None
    };
    let callers = pair.callers;
    let mut note = format!(
        "{} calls vs {} health checks over the same {connections} connections",
        pair.measured.samples.len(),
        pair.health.samples.len()
    );
    for failures in [pair.measured.failures(), pair.health.failures()] {
        if !failures.is_empty() {
            note.push_str(&format!("; {failures}"));
        }
    }
    let throughput = Row::compared(
        format!("prechecks.{key}.c{callers}.throughput"),
        "4",
        format!("{name} throughput, {callers} concurrent callers, vs health Check"),
        Figure::rate(pair.measured.throughput(), "calls"),
        Figure::rate(pair.health.throughput(), "calls"),
        target,
    )
    .note(note);
    let latency = Row::compared(
        format!("prechecks.{key}.c{callers}.latency"),
        "4",
        format!("{name} latency p50 / p99, {callers} concurrent callers, vs health Check"),
        Figure::latencies(pair.measured.quantile(0.5), pair.measured.quantile(0.99)),
        Figure::latencies(pair.health.quantile(0.5), pair.health.quantile(0.99)),
        Target::None,
    )
    .note("ratio of the p50s");
    vec![throughput, latency]
}

fn memory_rows(
    before: memory::ProcessMemory,
    after_generating: memory::ProcessMemory,
    peak: &memory::ProcessMemory,
    peak_reset: bool,
    after_prechecks: &memory::ProcessMemory,
) -> Vec<Row> {
    let figure = |kib: Option<u64>| {
        kib.map_or_else(
            || Figure::text("not available (no /proc/self/status)"),
            Figure::memory_kib,
        )
    };
    vec![
        Row::reported(
            "memory.rss_before_generating",
            "5",
            "Resident memory (VmRSS) before generating: the reference",
            figure(before.rss_kib),
        ),
        Row::reported(
            "memory.rss_after_generating",
            "5",
            "Resident memory (VmRSS) holding the generated data, before the hub starts",
            figure(after_generating.rss_kib),
        )
        .note(match after_generating.peak_kib {
            Some(kib) => format!("peak while generating: {:.1} MiB", kib as f64 / 1024.0),
            None => String::new(),
        }),
        Row::reported(
            "memory.peak_after_ingest_recheck",
            "5",
            "Peak resident memory (VmHWM) of the process after ingest and re-check",
            figure(peak.peak_kib),
        )
        .note(format!(
            "the hub runs in this process: includes the generated data and the clients; {}; VmRSS then: {}",
            if peak_reset {
                "peak counted from after generating"
            } else {
                "peak counted from the start (could not reset it)"
            },
            figure(peak.rss_kib).text
        )),
        Row::reported(
            "memory.rss_after_prechecks",
            "5",
            "Resident memory (VmRSS) after the pre-checks, and of it file pages (RssFile)",
            figure(after_prechecks.rss_kib),
        )
        .note(format!(
            "file pages {}: the program's own and, on SQLite, the pages of the database file its \
             pre-checks' readers map, which are the operating system's file cache (reading the \
             pages instead keeps them in the same cache, outside the process's count)",
            figure(after_prechecks.file_kib).text
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(database: DatabaseServer) -> BenchOptions {
        let mut options = BenchOptions::for_scale("small", 7).expect("a known scale");
        options.scale = "tiny".into();
        options.config.institutions = options.config.institutions.min(6);
        options.config.people = options.config.people.min(120);
        options.database = database;
        options.stream_size = 50;
        options.baseline_rows_per_statement = 40;
        options.numbered_sample_rows = 60;
        options.unary_pushes = 4;
        options.load = LoadBounds {
            duration: Duration::from_millis(50),
            max_calls: 40,
        };
        options.connections = 2;
        options.feed_samples = 3;
        options.feed_subscribers = 5;
        options.console_items = 4;
        options.console_samples = 3;
        options.console_budget = Duration::from_millis(50);
        options
    }

    fn expected_keys(options: &BenchOptions) -> Vec<String> {
        let mut keys: Vec<String> = [
            "ingest.people",
            "ingest.payroll",
            "ingest.payroll_last_month",
            "ingest.payroll_last_month_plain",
            "ingest.appointments",
            "ingest.fundings",
            "ingest.staffing_office",
            "recheck.time",
            "recheck.findings",
            "recheck.truth",
            "push_cost.personnel_event",
            "push_cost.payroll_line",
        ]
        .map(String::from)
        .to_vec();
        for precheck in ["check_hire", "verify_funding"] {
            for callers in &options.concurrency {
                for what in ["throughput", "latency"] {
                    keys.push(format!("prechecks.{precheck}.c{callers}.{what}"));
                }
            }
        }
        keys.extend(
            [
                "memory.rss_before_generating",
                "memory.rss_after_generating",
                "memory.peak_after_ingest_recheck",
                "memory.rss_after_prechecks",
                "memory.rss_after_import_1",
                "memory.rss_after_import_2",
                "memory.rss_after_import_3",
                "memory.repeated_imports_flat",
                "memory.hub_upper_bound",
                "alert_feed.latency.subscribers_1",
                "alert_feed.latency.subscribers_1000",
                "alert_feed.memory_per_idle_subscriber",
            ]
            .map(String::from),
        );
        keys.extend(
            audit_log::BATCHES
                .iter()
                .map(|batch| format!("audit.appends.batch_{batch}")),
        );
        keys.extend(
            [
                "console.page.overview",
                "console.page.findings",
                "console.page.findings_sorted",
                "console.page.finding",
                "console.page.institution",
                "console.page.institutions",
                "console.page.ledger",
                "console.page.applications",
                "console.page.audit",
            ]
            .map(String::from),
        );
        keys
    }

    async fn the_whole_bench_runs(options: BenchOptions) {
        let expected = expected_keys(&options);
        let report = run_with(options).await.expect("the bench runs");
        let keys: Vec<String> = report.rows.iter().map(|row| row.key.clone()).collect();
        assert_eq!(keys, expected);
        for row in &report.rows {
            if row.baseline.is_some() {
                let ratio = row.ratio.unwrap_or(f64::NAN);
                assert!(
                    ratio.is_finite() && ratio > 0.0,
                    "{}: ratio {ratio}",
                    row.key
                );
            }
        }
        let truth = report.row("recheck.truth").unwrap();
        assert_eq!(
            truth.met(),
            Some(true),
            "the re-check finds every planted problem: {}",
            truth.note
        );
        assert!(
            truth.note.contains("raised but not planted 0"),
            "and nothing else: {}",
            truth.note
        );
        for key in [
            "ingest.people",
            "ingest.payroll",
            "ingest.appointments",
            "ingest.fundings",
        ] {
            assert!(
                report.row(key).unwrap().note.contains(" stored, "),
                "{key} says what was stored"
            );
        }
        for row in report
            .rows
            .iter()
            .filter(|row| row.key.starts_with("alert_feed."))
        {
            assert!(
                !row.hub.text.is_empty() && !row.hub.text.contains("not measured"),
                "{}: {}",
                row.key,
                row.hub.text
            );
        }
        let table = report.to_markdown();
        assert_eq!(
            table.lines().filter(|line| line.starts_with("| ")).count(),
            expected.len() + 1,
            "a header and one line per row:\n{table}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_whole_bench_runs_at_a_tiny_scale_on_sqlite() {
        the_whole_bench_runs(tiny(DatabaseServer::Sqlite)).await;
    }

    /// The province's way: loaded without push-time checks, the re-check raising every finding.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_whole_bench_runs_as_an_initial_load() {
        let mut options = tiny(DatabaseServer::Sqlite);
        options.defer_push_checks = true;
        the_whole_bench_runs(options).await;
    }

    /// Runs where `QUOTAHUB_TEST_POSTGRES_URL` names a PostgreSQL server (read at run time, so
    /// that setting it rebuilds nothing), and passes at once without one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_whole_bench_runs_at_a_tiny_scale_on_postgres() {
        let Some(url) = std::env::var("QUOTAHUB_TEST_POSTGRES_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            return;
        };
        the_whole_bench_runs(tiny(DatabaseServer::Postgres { admin_url: url })).await;
    }
}
