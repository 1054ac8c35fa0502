//! Measure 7, the audit trail's cost: entries appended per second through `Store::append_audit` (the hash
//! chain, the Merkle log's tree and a checkpoint signed every 1,000 entries, as `quotahub serve`
//! does by default) against `Store::append_audit_chain_only` (the chain alone, as the trail was
//! before the log), each on a fresh database of its own, one appender as the hub's writer task is,
//! at the batch sizes the writer makes: 1 (one call at a time), 32 and 512 (its most). Target: the
//! log keeps at least 0.8 of the chain's throughput (it costs at most 20%).

use std::time::{Duration, Instant};

use super::calls::LoadBounds;
use super::db::{DatabaseServer, TempDatabase};
use super::report::{Figure, Row, Target, thousands};
use crate::domain::audit::{AuditEntry, LogSigner};
use crate::store::trust::CheckpointPolicy;
use crate::store::{Store, StoreOptions};

/// Batch sizes measured.
pub const BATCHES: [usize; 3] = [1, 32, 512];

/// One batch size's figures: entries appended and how long it took, log and chain alone.
#[derive(Debug, Clone, Copy)]
pub struct Appends {
    /// Entries per append transaction.
    pub batch: usize,
    /// With the log: entries and time.
    pub log: (u64, Duration),
    /// The chain alone.
    pub chain: (u64, Duration),
}

fn rate((entries, elapsed): (u64, Duration)) -> f64 {
    entries as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// A call's entry, of a typical size (a push naming its record).
fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        at: crate::store::now_micros(),
        agency_id: "140100/finance".into(),
        jurisdiction: "140100".into(),
        fingerprint: "9f".repeat(32),
        peer: "127.0.0.1:50123".into(),
        method: "/quotahub.v1.FinanceService/PushPayrollLine".into(),
        touched: format!("record_id pay-2024-03-{n:08}"),
        outcome: "OK".into(),
    }
}

/// Appends batches back to back until the bounds are reached.
async fn append(
    server: &DatabaseServer,
    with_log: bool,
    batch: usize,
    bounds: LoadBounds,
) -> anyhow::Result<(u64, Duration)> {
    let label = if with_log { "audit_log" } else { "audit_chain" };
    let db = TempDatabase::create(server, label).await?;
    let measured = async {
        let mut store = Store::connect(db.url(), &StoreOptions::default())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        if with_log {
            use ring::signature::KeyPair;
            let seed = [11u8; 32];
            let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|_| anyhow::anyhow!("no Ed25519 key"))?;
            let (private, _) =
                LogSigner::from_seed("bench.quotahub/audit-log", seed, pair.public_key().as_ref())
                    .map_err(anyhow::Error::msg)?;
            store = store.with_log(CheckpointPolicy {
                signer: LogSigner::parse(&private).map_err(anyhow::Error::msg)?,
                every_entries: 1_000,
                every_micros: 60_000_000,
            });
        }
        let mut appended = 0u64;
        let started = Instant::now();
        while started.elapsed() < bounds.duration && appended < bounds.max_calls {
            let entries = (appended..appended + batch as u64).map(entry).collect();
            if with_log {
                store.append_audit(entries).await?;
            } else {
                store.append_audit_chain_only(entries).await?;
            }
            appended += batch as u64;
        }
        let elapsed = started.elapsed();
        store.close().await;
        anyhow::Ok((appended, elapsed))
    }
    .await;
    let _ = db.remove().await;
    measured
}

/// Measures every batch size, log and chain alternately (twice each, the better kept), so that
/// both see the same load on the machine.
pub async fn measure(server: &DatabaseServer, bounds: LoadBounds) -> anyhow::Result<Vec<Appends>> {
    let mut results = Vec::new();
    for batch in BATCHES {
        let mut best = Appends {
            batch,
            log: (0, Duration::MAX),
            chain: (0, Duration::MAX),
        };
        for _ in 0..2 {
            let chain = append(server, false, batch, bounds).await?;
            if rate(chain) > rate(best.chain) {
                best.chain = chain;
            }
            let log = append(server, true, batch, bounds).await?;
            if rate(log) > rate(best.log) {
                best.log = log;
            }
        }
        results.push(best);
    }
    Ok(results)
}

/// The table's rows of measure 7.
pub fn rows(results: &[Appends]) -> Vec<Row> {
    results
        .iter()
        .map(|appends| {
            Row::compared(
                format!("audit.appends.batch_{}", appends.batch),
                "7",
                format!(
                    "Audit appends, batches of {}: chain + Merkle log + checkpoints vs chain alone",
                    appends.batch
                ),
                Figure::rate(rate(appends.log), "entries"),
                Figure::rate(rate(appends.chain), "entries"),
                Target::AtLeast(0.8),
            )
            .note(format!(
                "{} entries with the log, {} with the chain alone (better of two runs each, a fresh database each); a checkpoint signed every 1,000 entries",
                thousands(appends.log.0 as f64),
                thousands(appends.chain.0 as f64)
            ))
        })
        .collect()
}
