//! The audit trail (全程留痕): every call and every refused handshake is appended to `audit_log`,
//! chained by SHA-256 (see [`crate::domain::audit`]).
//!
//! Calls hand their entries to an [`AuditSink`]; one writer task per process appends them in
//! batches, one transaction each, so that auditing costs the hub one commit per batch rather than
//! one per call (group commit). [`AuditSink::record`] returns only once the transaction holding
//! the entry has committed, and a call is answered only after that: no call is answered whose
//! entry a crash could still lose. The channel between them is bounded: when it is full, a call
//! waits for room (back-pressure). No entry is ever dropped; if the database is down, the writer
//! retries, the channel fills, and calls wait with it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::domain::audit::{
    AuditEntry, ChainBreak, ChainWalk, Checkpoint, LogBreak, TreeWalk, judge, open_checkpoint,
};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::trust::AuditFilter;

/// Entries waiting for the writer before calls wait for room.
pub const AUDIT_QUEUE: usize = 8_192;

/// Entries appended per transaction at most.
pub const AUDIT_BATCH: usize = 512;

/// Pause before the writer retries a failed append.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

enum Message {
    /// An entry, and whom to tell once the transaction holding it has committed.
    Entry(AuditEntry, oneshot::Sender<()>),
    /// Answered once every entry sent before it is committed.
    Flush(oneshot::Sender<()>),
}

/// Where calls send their audit entries. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditSink {
    queue: mpsc::Sender<Message>,
    /// True while the writer's last append failed (the database does not answer).
    database_away: watch::Receiver<bool>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Entry(entry, _) => entry.fmt(f),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// The writer task; [`AuditWriter::finish`] appends what is queued and stops it.
#[derive(Debug)]
pub struct AuditWriter {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AuditSink {
    /// Starts the writer on `store`.
    pub fn start(store: Store) -> (AuditSink, AuditWriter) {
        let (queue, entries) = mpsc::channel(AUDIT_QUEUE);
        let (stop, stopped) = watch::channel(false);
        let (away, database_away) = watch::channel(false);
        let task = tokio::spawn(write_entries(store, entries, stopped, away));
        (
            AuditSink {
                queue,
                database_away,
            },
            AuditWriter { stop, task },
        )
    }

    /// Appends an entry: queues it (waiting for room when the queue is full) and returns once the
    /// transaction holding it has committed. UNAVAILABLE only when the writer has stopped, i.e.
    /// the hub is shutting down; the entry is then in the log only.
    pub async fn record(&self, entry: AuditEntry) -> Result<()> {
        let (done, committed) = oneshot::channel();
        let sent = self.queue.send(Message::Entry(entry, done)).await;
        if sent.is_err() || committed.await.is_err() {
            return Err(writer_stopped());
        }
        Ok(())
    }

    /// As [`AuditSink::record`], but while the database does not answer it returns once the entry
    /// is queued; the writer appends it, in order, when the database is back. For answers that
    /// carry nothing from the database (a refusal, UNAVAILABLE, health's NOT_SERVING), which must
    /// still be given while it is away.
    pub async fn record_unless_database_away(&self, entry: AuditEntry) -> Result<()> {
        let (done, committed) = oneshot::channel();
        if self.queue.send(Message::Entry(entry, done)).await.is_err() {
            return Err(writer_stopped());
        }
        let mut away = self.database_away.clone();
        tokio::select! {
            committed = committed => committed.map_err(|_| writer_stopped()),
            _ = away.wait_for(|away| *away) => Ok(()),
        }
    }

    /// Waits until every entry queued so far is committed.
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = committed.await;
        }
    }
}

impl AuditWriter {
    /// Appends every queued entry, then stops.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn writer_stopped() -> Error {
    tracing::error!("audit writer stopped; entry not recorded");
    Error::Unavailable(
        "the hub is stopping and can no longer record calls in the audit trail".into(),
    )
}

async fn write_entries(
    store: Store,
    mut queue: mpsc::Receiver<Message>,
    mut stopped: watch::Receiver<bool>,
    away: watch::Sender<bool>,
) {
    let mut batch = Vec::with_capacity(AUDIT_BATCH);
    let mut waiting = Vec::new();
    let mut stopping = false;
    // An idle hub signs what it appended since the last checkpoint once the interval has passed
    // (appends do it themselves when busy): looked at every interval, so within two of them.
    let interval = store.checkpoint_interval();
    let mut idle = tokio::time::interval(
        interval
            .unwrap_or(Duration::from_secs(86_400))
            .max(Duration::from_millis(100)),
    );
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    idle.tick().await;
    loop {
        stopping |= tokio::select! {
            first = queue.recv() => match first {
                Some(message) => {
                    take(message, &mut batch, &mut waiting);
                    false
                }
                None => true,
            },
            _ = stopped.changed(), if !stopping => true,
            _ = idle.tick(), if interval.is_some() && !stopping => {
                if let Err(error) = store.issue_checkpoint(false).await {
                    tracing::warn!(%error, "cannot sign the audit log's checkpoint");
                }
                false
            }
        };
        while batch.len() < AUDIT_BATCH {
            match queue.try_recv() {
                Ok(message) => take(message, &mut batch, &mut waiting),
                Err(_) => break,
            }
        }
        append(&store, &mut batch, &away).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if stopping && queue.is_empty() {
            return;
        }
    }
}

fn take(message: Message, batch: &mut Vec<AuditEntry>, waiting: &mut Vec<oneshot::Sender<()>>) {
    match message {
        Message::Entry(entry, done) => {
            batch.push(entry);
            waiting.push(done);
        }
        Message::Flush(done) => waiting.push(done),
    }
}

/// Appends the batch, retrying until the database takes it; `away` says meanwhile that it does
/// not answer.
async fn append(store: &Store, batch: &mut Vec<AuditEntry>, away: &watch::Sender<bool>) {
    if batch.is_empty() {
        return;
    }
    loop {
        match store.append_audit(batch.clone()).await {
            Ok(_) => {
                away.send_if_modified(|away| std::mem::replace(away, false));
                batch.clear();
                return;
            }
            Err(error) => {
                away.send_if_modified(|away| !std::mem::replace(away, true));
                tracing::warn!(%error, entries = batch.len(), "cannot append to the audit trail; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// What `quotahub audit verify` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The chain is whole: this many entries.
    Whole(i64),
    /// The first break.
    Broken(ChainBreak),
}

/// Re-walks the whole chain from the first entry and names the first entry that was changed,
/// removed or inserted. Hubs may keep appending meanwhile: the walk goes up to the head read at
/// its start, and an entry past the head is reported only if it is past the head read after it
/// (the head moves in the transaction that appends, so no entry the hub wrote is ever past it).
pub async fn verify(store: &Store) -> Result<Verdict> {
    const PAGE: u32 = 10_000;
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut walk = ChainWalk::default();
    let mut after_seq = 0;
    loop {
        let page = store
            .audit_entries(&AuditFilter {
                after_seq,
                through_seq: Some(head_seq),
                limit: PAGE,
                ..AuditFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for row in page {
            if let Err(found) = walk.next(row) {
                return Ok(Verdict::Broken(found));
            }
        }
    }
    if let Err(found) = walk.finish(head_seq, &head_hash) {
        return Ok(Verdict::Broken(found));
    }
    verify_past_head(store, head_seq).await
}

/// What `quotahub audit verify` found of the chain and of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogReport {
    /// The chain's verdict.
    pub chain: Verdict,
    /// Entries in the log (its head).
    pub size: u64,
    /// Signed checkpoints held against the log: the witnesses' and the hub's own.
    pub checkpoints: usize,
    /// Every way the log fails them, or its stored tree fails its entries.
    pub breaks: Vec<LogBreak>,
}

/// Walks the chain as [`verify`] does and rebuilds the log's tree from the entries alone (nothing
/// stored is trusted but them), then holds it against signed checkpoints: `witnesses` (kept
/// outside the hub) and, when the log's public key `vkey` is given, every checkpoint the hub
/// stored. Checkpoints whose signature does not check are refused before (`open_checkpoint`).
pub async fn verify_log(
    store: &Store,
    witnesses: &[Checkpoint],
    vkey: Option<&str>,
) -> Result<LogReport> {
    const PAGE: u32 = 10_000;
    let mut checkpoints = witnesses.to_vec();
    let mut unsigned = Vec::new();
    if let Some(vkey) = vkey {
        for stored in store.audit_checkpoints().await? {
            match open_checkpoint(&stored.note, vkey) {
                Ok(checkpoint) if checkpoint.size == stored.size => checkpoints.push(checkpoint),
                _ => unsigned.push(LogBreak::Unsigned { size: stored.size }),
            }
        }
    }
    let (head_seq, head_hash) = store.audit_head().await?;
    let (tree_size, stored_root) = store.audit_tree_head().await?;
    let mut wanted: std::collections::BTreeSet<u64> = checkpoints.iter().map(|c| c.size).collect();
    wanted.insert(tree_size);
    let mut roots = std::collections::BTreeMap::new();
    let mut tree = TreeWalk::default();
    if wanted.contains(&0) {
        roots.insert(0, tree.root());
    }
    let mut walk = Some(ChainWalk::default());
    let mut broken = None;
    let mut after_seq = 0;
    loop {
        let page = store
            .audit_entries(&AuditFilter {
                after_seq,
                through_seq: Some(head_seq),
                limit: PAGE,
                ..AuditFilter::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after_seq = last.seq;
        for row in page {
            tree.push(row.entry.leaf_hash());
            if wanted.contains(&tree.size()) {
                roots.insert(tree.size(), tree.root());
            }
            if let Some(chain) = walk.as_mut()
                && let Err(found) = chain.next(row)
            {
                broken = Some(found);
                walk = None;
            }
        }
    }
    if let Some(chain) = walk
        && let Err(found) = chain.finish(head_seq, &head_hash)
    {
        broken = Some(found);
    }
    let chain = match broken {
        Some(found) => Verdict::Broken(found),
        None => verify_past_head(store, head_seq).await?,
    };
    let size = tree.size();
    let mut breaks = judge(&checkpoints, size, &roots);
    breaks.extend(unsigned);
    if tree_size <= size && roots.get(&tree_size) != Some(&stored_root) {
        breaks.push(LogBreak::TreeDiffers { size: tree_size });
    }
    Ok(LogReport {
        chain,
        size,
        checkpoints: checkpoints.len(),
        breaks,
    })
}

/// The chain's verdict once walked whole up to `head_seq`: an entry past the head was not
/// written by the hub.
async fn verify_past_head(store: &Store, head_seq: i64) -> Result<Verdict> {
    let last_seq = store.audit_last_seq().await?;
    let (head_now, _) = store.audit_head().await?;
    Ok(if last_seq > head_now {
        let past_head = store
            .audit_entries(&AuditFilter {
                after_seq: head_now,
                limit: 1,
                ..AuditFilter::default()
            })
            .await?;
        Verdict::Broken(ChainBreak::Inserted(
            past_head.first().map_or(head_now + 1, |row| row.seq),
        ))
    } else {
        Verdict::Whole(head_seq)
    })
}
