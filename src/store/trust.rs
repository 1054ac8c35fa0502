//! The agency registry and the audit trail's storage. Appends to the trail lock the one row of
//! `audit_head`, so that replicas on one PostgreSQL take turns and keep one chain, or move it by a
//! compare-and-set from the head the hub's last append left; on SQLite the single writer does the
//! same.

use sqlx::Row;

use super::query as q;
use super::read::Columns;
use super::write::Writer;
use super::{Store, Value, bind_all, now_micros, postgres};
pub use crate::domain::audit::CheckpointPolicy;
use crate::domain::audit::{
    AuditEntry, ChainedEntry, Hash, SignedCheckpoint, StoredHashes, TrailAppend, TrailHead,
    edge_from_text, edge_to_text, kept, leaves_under, subtree_hash,
};
use crate::domain::{Agency, AgencyKind, Jurisdiction};
use crate::error::{Error, Result};

/// The statement that locks the trail's one head row until commit and reads it, in one round
/// trip: a no-op update (a row lock on PostgreSQL; SQLite has one writer) returning it.
const LOCK_HEAD: &str = "UPDATE audit_head SET seq = seq WHERE id = 1 \
     RETURNING seq, hash, tree_size, root, edge, checkpoint_size, checkpoint_at";

/// An agency as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredAgency {
    /// The agency.
    pub agency: Agency,
    /// Whether its calls are served.
    pub enabled: bool,
    /// Its certificates, oldest first.
    pub certificates: Vec<RegisteredCertificate>,
}

/// A certificate an agency may present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredCertificate {
    /// SHA-256 (hex) of the certificate's DER.
    pub fingerprint: String,
    /// When it was registered (Unix microseconds).
    pub added_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// What the registry says about one presented certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateStanding {
    /// The agency it is registered for.
    pub agency_id: String,
    /// Whether that agency is enabled.
    pub enabled: bool,
    /// Whether this certificate was revoked (replaced by a re-key).
    pub revoked: bool,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Entries of agencies in this jurisdiction or below (by the agency's division code prefix).
    pub within: Option<Jurisdiction>,
    /// With `within`, also the entries that name no agency: handshakes the hub refused and calls
    /// of certificates that name no agency (for the audit agencies of the hub's province).
    pub unattributed: bool,
    /// Only this agency.
    pub agency_id: Option<String>,
    /// Only this method (gRPC path).
    pub method: Option<String>,
    /// From this instant (Unix microseconds, inclusive).
    pub from: Option<i64>,
    /// Until this instant (exclusive).
    pub until: Option<i64>,
    /// Entries after this sequence number.
    pub after_seq: i64,
    /// Entries up to this sequence number (inclusive).
    pub through_seq: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed note.
    pub note: String,
    /// When it was issued (Unix microseconds).
    pub issued_at: i64,
}

fn hash_from_hex(text: &str) -> Result<Hash> {
    let bytes =
        hex::decode(text).map_err(|_| Error::Internal("a stored tree hash is not hex".into()))?;
    Ok(Hash(bytes.try_into().map_err(|_| {
        Error::Internal("a stored tree hash is not 32 bytes".into())
    })?))
}

fn size_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn agency_from_row(id: &str, kind: &str, jurisdiction: &str) -> Result<Agency> {
    let kind = AgencyKind::from_slug(kind)
        .ok_or_else(|| Error::Internal(format!("agency {id} has an unknown kind `{kind}`")))?;
    let jurisdiction = Jurisdiction::parse(jurisdiction).map_err(Error::Internal)?;
    Ok(Agency::new(jurisdiction, kind))
}

fn chained_from_row(row: &impl Columns) -> Result<ChainedEntry> {
    Ok(ChainedEntry {
        seq: q::int(row, "seq")?,
        entry: AuditEntry {
            at: q::int(row, "at")?,
            agency_id: q::text(row, "agency_id")?,
            jurisdiction: q::text(row, "jurisdiction")?,
            fingerprint: q::text(row, "fingerprint")?,
            peer: q::text(row, "peer")?,
            method: q::text(row, "method")?,
            touched: q::text(row, "touched")?,
            outcome: q::text(row, "outcome")?,
        },
        prev_hash: q::text(row, "prev_hash")?,
        hash: q::text(row, "hash")?,
    })
}

impl Store {
    /// Registers an agency (enabled) if it is new, and the certificate if one is given. Adding an
    /// agency or certificate already there changes nothing.
    pub async fn add_agency(&self, agency: &Agency, fingerprint: Option<&str>) -> Result<()> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        sqlx::query_with(
            "INSERT INTO agencies (id, kind, jurisdiction, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (id) DO NOTHING",
            bind_all(vec![
                Value::from(agency.id()),
                Value::from(agency.kind.slug()),
                Value::from(agency.jurisdiction.as_str()),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        if let Some(fingerprint) = fingerprint {
            add_certificate(&mut tx, &agency.id(), fingerprint, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enables or disables an agency; NOT_FOUND when the registry has none of that id.
    pub async fn set_agency_enabled(&self, agency_id: &str, enabled: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query_with(
            "UPDATE agencies SET enabled = $1, updated_at = $2 WHERE id = $3",
            bind_all(vec![
                Value::from(enabled),
                Value::Int(now_micros()),
                Value::from(agency_id),
            ])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if changed == 0 {
            return Err(Error::NotFound(format!(
                "no agency {agency_id} is registered"
            )));
        }
        Ok(())
    }

    /// Registers a new certificate for an agency and, if asked, revokes every other one it had.
    pub async fn rekey_agency(
        &self,
        agency_id: &str,
        fingerprint: &str,
        revoke_others: bool,
    ) -> Result<()> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        let known = sqlx::query_with(
            "SELECT id FROM agencies WHERE id = $1",
            bind_all(vec![Value::from(agency_id)])?,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if known.is_none() {
            return Err(Error::NotFound(format!(
                "no agency {agency_id} is registered"
            )));
        }
        add_certificate(&mut tx, agency_id, fingerprint, now).await?;
        if revoke_others {
            sqlx::query_with(
                "UPDATE agency_certificates SET revoked_at = $1 \
                 WHERE agency_id = $2 AND fingerprint <> $3 AND revoked_at IS NULL",
                bind_all(vec![
                    Value::Int(now),
                    Value::from(agency_id),
                    Value::from(fingerprint),
                ])?,
            )
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query_with(
            "UPDATE agencies SET updated_at = $1 WHERE id = $2",
            bind_all(vec![Value::Int(now), Value::from(agency_id)])?,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every registered agency with its certificates, by id.
    pub async fn agencies(&self) -> Result<Vec<RegisteredAgency>> {
        let rows = sqlx::query(
            "SELECT a.id, a.kind, a.jurisdiction, a.enabled, c.fingerprint, c.added_at, c.revoked_at \
             FROM agencies a LEFT JOIN agency_certificates c ON c.agency_id = a.id \
             ORDER BY a.id, c.added_at, c.fingerprint",
        )
        .fetch_all(self.readers())
        .await?;
        let mut agencies: Vec<RegisteredAgency> = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            if agencies.last().is_none_or(|last| last.agency.id() != id) {
                agencies.push(RegisteredAgency {
                    agency: agency_from_row(
                        &id,
                        &row.try_get::<String, _>("kind")?,
                        &row.try_get::<String, _>("jurisdiction")?,
                    )?,
                    enabled: row.try_get::<i64, _>("enabled")? != 0,
                    certificates: Vec::new(),
                });
            }
            if let Some(fingerprint) = row.try_get::<Option<String>, _>("fingerprint")? {
                let last = agencies.last_mut().expect("pushed above");
                last.certificates.push(RegisteredCertificate {
                    fingerprint,
                    added_at: row.try_get("added_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                });
            }
        }
        Ok(agencies)
    }

    /// What the registry says about the certificate with this fingerprint; `None` when it is not
    /// registered for any agency.
    pub async fn certificate_standing(
        &self,
        fingerprint: &str,
    ) -> Result<Option<CertificateStanding>> {
        let row = sqlx::query_with(
            "SELECT c.agency_id, a.enabled, c.revoked_at FROM agency_certificates c \
             JOIN agencies a ON a.id = c.agency_id WHERE c.fingerprint = $1",
            bind_all(vec![Value::from(fingerprint)])?,
        )
        .fetch_optional(self.readers())
        .await?;
        row.map(|row| {
            Ok(CertificateStanding {
                agency_id: row.try_get("agency_id")?,
                enabled: row.try_get::<i64, _>("enabled")? != 0,
                revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// Appends entries to the audit trail in one transaction, chained after the current head and
    /// added to the log's tree; issues a checkpoint when one is due. Answers the last entry's
    /// `seq` (0 when none was given).
    ///
    /// On an SQLite file, on the native writer, as a push: the pool's SQLite worker cost a
    /// hand-off between threads for each of the append's statements (`perf` of CheckHire at 16
    /// callers: the trail's writer a fifth of the process, a third of that in those hand-offs).
    /// It changes no data, so the pre-checks' kept reads outlive it.
    pub async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<i64> {
        self.append_trail(entries, AppendKind::Log(self.log.clone()))
            .await
    }

    /// Appends entries to the hash chain alone, as the trail was kept before the Merkle log: the
    /// baseline `quotahub bench` weighs the log's cost against (on a database of its own; the
    /// tree is left behind and the log would take these entries in at its next append). Written
    /// on the connection [`Store::append_audit`] writes on, so that the two differ by the log.
    pub async fn append_audit_chain_only(&self, entries: Vec<AuditEntry>) -> Result<i64> {
        self.append_trail(entries, AppendKind::ChainOnly).await
    }

    /// One append of `entries` to the trail, in a transaction that writes the trail only: on the
    /// native writer on an SQLite file, on the trail's own connection on PostgreSQL (in one
    /// statement when the head is where this process's last append left it), otherwise on the
    /// pool's.
    async fn append_trail(&self, entries: Vec<AuditEntry>, append: AppendKind) -> Result<i64> {
        if entries.is_empty() {
            return Ok(0);
        }
        if self.native_writer().is_some() {
            let runtime = tokio::runtime::Handle::current();
            let appended = self.native_transaction(false, move |tx| {
                runtime
                    .block_on(append.on(tx, entries))
                    .map(|(_, left)| Some(left))
            });
            return Ok(appended.await?.map_or(0, |head| head.seq));
        }
        if let Some((pool, trail)) = self.native_trail() {
            let mut trail = trail.lock().await;
            let appended = append.on_postgres(&mut trail, pool, entries).await;
            if appended.is_err() {
                // The connection may be broken and the head is unknown: both are found again.
                *trail = postgres::Trail::default();
            }
            return appended;
        }
        let mut tx = self.begin_trail().await?;
        let (_, left) = append.on(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(left.seq)
    }

    /// How long after the last checkpoint one is due when entries are waiting unsigned; `None`
    /// when this hub signs none.
    pub fn checkpoint_interval(&self) -> Option<std::time::Duration> {
        self.log.as_ref().map(|log| {
            std::time::Duration::from_micros(u64::try_from(log.every_micros).unwrap_or(0))
        })
    }

    /// Signs a checkpoint of the log as it stands, under the head's lock: when `force`, unless
    /// one of its size exists; otherwise only when entries are waiting unsigned and the interval
    /// since the last checkpoint has passed (an idle hub's timer). Answers the checkpoint of the
    /// log's current size when there is one (`None` when this hub signs none, or none is due).
    pub async fn issue_checkpoint(&self, force: bool) -> Result<Option<StoredCheckpoint>> {
        let Some(log) = &self.log else {
            return Ok(None);
        };
        if !force {
            // Most looks find nothing to sign: those take no lock.
            let head = sqlx::query(
                "SELECT tree_size, checkpoint_size, checkpoint_at FROM audit_head WHERE id = 1",
            )
            .fetch_one(self.readers())
            .await?;
            let waiting =
                head.try_get::<i64, _>("tree_size")? > head.try_get::<i64, _>("checkpoint_size")?;
            let since = now_micros().saturating_sub(head.try_get("checkpoint_at")?);
            if !waiting || since < log.every_micros {
                return Ok(None);
            }
        }
        let signed = if let Some((pool, trail)) = self.native_trail() {
            // On the trail's own connection, so that the head its appends continue from moves
            // with the checkpoint and the next append stays one statement.
            let mut trail = trail.lock().await;
            let signed = checkpoint_on_postgres(&mut trail, pool, log, force).await;
            if signed.is_err() {
                *trail = postgres::Trail::default();
            }
            signed?
        } else {
            let mut tx = self.begin_trail().await?;
            let signed = checkpoint_on(&mut tx, log, force).await?;
            tx.commit().await?;
            signed
        };
        match signed {
            Some(head) => self.audit_checkpoint(Some(size_of(head.tree_size))).await,
            None => Ok(None),
        }
    }

    /// The log's tree as recorded: its size and root (the empty tree's when there is none).
    pub async fn audit_tree_head(&self) -> Result<(u64, Hash)> {
        let row = sqlx::query("SELECT tree_size, root FROM audit_head WHERE id = 1")
            .fetch_one(self.readers())
            .await?;
        let root: String = row.try_get("root")?;
        Ok((
            size_of(row.try_get("tree_size")?),
            if root.is_empty() {
                tlog_tiles::EMPTY_HASH
            } else {
                hash_from_hex(&root)?
            },
        ))
    }

    /// The stored tree hashes with these indexes (those missing are left out).
    pub async fn audit_tree_hashes(&self, indexes: &[u64]) -> Result<StoredHashes> {
        let mut conn = self.readers().acquire().await?;
        tree_hashes(&mut conn, indexes).await
    }

    /// A stored checkpoint: of this tree size, or the latest.
    pub async fn audit_checkpoint(&self, size: Option<u64>) -> Result<Option<StoredCheckpoint>> {
        let row = match size {
            Some(size) => {
                sqlx::query_with(
                    "SELECT tree_size, root, note, issued_at FROM audit_checkpoints WHERE tree_size = $1",
                    bind_all(vec![Value::Int(i64::try_from(size).unwrap_or(i64::MAX))])?,
                )
                .fetch_optional(self.readers())
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT tree_size, root, note, issued_at FROM audit_checkpoints \
                     ORDER BY tree_size DESC LIMIT 1",
                )
                .fetch_optional(self.readers())
                .await?
            }
        };
        row.map(|row| {
            Ok(StoredCheckpoint {
                size: size_of(row.try_get("tree_size")?),
                root: hash_from_hex(&row.try_get::<String, _>("root")?)?,
                note: row.try_get("note")?,
                issued_at: row.try_get("issued_at")?,
            })
        })
        .transpose()
    }

    /// Every stored checkpoint, by size.
    pub async fn audit_checkpoints(&self) -> Result<Vec<StoredCheckpoint>> {
        let rows = sqlx::query(
            "SELECT tree_size, root, note, issued_at FROM audit_checkpoints ORDER BY tree_size",
        )
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredCheckpoint {
                    size: size_of(row.try_get("tree_size")?),
                    root: hash_from_hex(&row.try_get::<String, _>("root")?)?,
                    note: row.try_get("note")?,
                    issued_at: row.try_get("issued_at")?,
                })
            })
            .collect()
    }

    /// The highest sequence number in the audit log (0 when empty).
    pub async fn audit_last_seq(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS last FROM audit_log")
            .fetch_one(self.readers())
            .await?;
        Ok(row.try_get("last")?)
    }

    /// The recorded end of the audit chain: its last sequence number and hash.
    pub async fn audit_head(&self) -> Result<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.readers())
            .await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    /// Audit entries in sequence order, filtered.
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<ChainedEntry>> {
        let mut sql = String::from(
            "SELECT seq, at, agency_id, jurisdiction, fingerprint, peer, method, touched, outcome, \
             prev_hash, hash FROM audit_log WHERE seq > $1",
        );
        let mut values = vec![Value::Int(filter.after_seq)];
        if let Some(within) = &filter.within {
            values.push(Value::Text(format!("{}%", within.prefix())));
            sql.push_str(&if filter.unattributed {
                format!(
                    " AND (jurisdiction LIKE ${} OR jurisdiction = '')",
                    values.len()
                )
            } else {
                format!(" AND jurisdiction LIKE ${}", values.len())
            });
        }
        let mut condition = |sql: &mut String, clause: &str, value: Value| {
            values.push(value);
            sql.push_str(&format!(" AND {clause} ${}", values.len()));
        };
        if let Some(agency_id) = &filter.agency_id {
            condition(&mut sql, "agency_id =", Value::Text(agency_id.clone()));
        }
        if let Some(method) = &filter.method {
            condition(&mut sql, "method =", Value::Text(method.clone()));
        }
        if let Some(through) = filter.through_seq {
            condition(&mut sql, "seq <=", Value::Int(through));
        }
        if let Some(from) = filter.from {
            condition(&mut sql, "at >=", Value::Int(from));
        }
        if let Some(until) = filter.until {
            condition(&mut sql, "at <", Value::Int(until));
        }
        values.push(Value::Int(i64::from(filter.limit.max(1))));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", values.len()));
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(self.readers())
            .await?;
        rows.iter().map(chained_from_row).collect()
    }
}

/// An entry as the columns of `audit_log`.
fn audit_row(row: ChainedEntry) -> [Value; 11] {
    let e = row.entry;
    [
        Value::Int(row.seq),
        Value::Int(e.at),
        Value::Text(e.agency_id),
        Value::Text(e.jurisdiction),
        Value::Text(e.fingerprint),
        Value::Text(e.peer),
        Value::Text(e.method),
        Value::Text(e.touched),
        Value::Text(e.outcome),
        Value::Text(row.prev_hash),
        Value::Text(row.hash),
    ]
}

fn head_from_row(row: &impl Columns) -> Result<TrailHead> {
    Ok(TrailHead {
        seq: q::int(row, "seq")?,
        hash: q::text(row, "hash")?,
        tree_size: q::int(row, "tree_size")?,
        root: q::text(row, "root")?,
        edge: edge_from_text(&q::text(row, "edge")?).map_err(Error::Internal)?,
        checkpoint_size: q::int(row, "checkpoint_size")?,
        checkpoint_at: q::int(row, "checkpoint_at")?,
    })
}

/// What an append keeps: the chain and the log's tree, checkpointed by the hub's policy if it
/// has one, or the chain alone (the bench's baseline).
enum AppendKind {
    Log(Option<std::sync::Arc<CheckpointPolicy>>),
    ChainOnly,
}

impl AppendKind {
    /// Appends `entries` (not empty) inside the writer's transaction `tx`, under the head's lock;
    /// answers the head it found and the head it leaves.
    async fn on<W: Writer>(
        &self,
        tx: &mut W,
        entries: Vec<AuditEntry>,
    ) -> Result<(TrailHead, TrailHead)> {
        let head = head_of(tx).await?;
        let mut older = Vec::new();
        if matches!(self, AppendKind::Log(_)) && !head.tree_is_whole() {
            // Entries from before the tree existed (a trail older than the log) join it first.
            let rows = tx
                .rows(
                    "SELECT seq, at, agency_id, jurisdiction, fingerprint, peer, method, touched, \
                     outcome, prev_hash, hash FROM audit_log WHERE seq > $1 AND seq <= $2 \
                     ORDER BY seq",
                    vec![Value::Int(head.tree_size), Value::Int(head.seq)],
                )
                .await?;
            for row in &rows {
                older.push(chained_from_row(row)?.entry.leaf_hash());
            }
        }
        let append = self.after(&head, &older, entries)?;
        let left = append.head.clone();
        write_append(tx, append).await?;
        Ok((head, left))
    }

    /// The append of `entries` after `head`, the tree's `older` leaves first.
    fn after(
        &self,
        head: &TrailHead,
        older: &[Hash],
        entries: Vec<AuditEntry>,
    ) -> Result<TrailAppend> {
        match self {
            AppendKind::Log(policy) => head
                .log(older, entries, policy.as_deref(), now_micros())
                .map_err(Error::Internal),
            AppendKind::ChainOnly => Ok(head.chain_only(entries)),
        }
    }

    /// Appends on PostgreSQL, on the trail's own connection. When this process's last append
    /// left the head at hand, the append is one statement that writes only if the head is still
    /// there (`postgres::append_at`): one round trip, where a transaction under the head's lock
    /// takes six (its begin, the head, the entries, the tree, the head moved, the commit). Another
    /// replica's append or checkpoint since makes it write nothing; then, as for the first append,
    /// the head is locked and read. While replicas take turns, so that the statement would write
    /// nothing each time, appends lock and read the head at once, until one finds it where this
    /// hub left it.
    async fn on_postgres(
        &self,
        trail: &mut postgres::Trail,
        pool: &sqlx::PgPool,
        mut entries: Vec<AuditEntry>,
    ) -> Result<i64> {
        let (connection, at_hand, shared) = trail.parts(pool).await?;
        let held = at_hand.take();
        let continued = held.as_ref().filter(|head| {
            !*shared
                && match self {
                    AppendKind::Log(_) => head.tree_is_whole(),
                    AppendKind::ChainOnly => true,
                }
        });
        if let Some(head) = continued {
            let append = self.after(head, &[], entries)?;
            if postgres::append_at(connection, head, &append).await? {
                let seq = append.head.seq;
                *at_hand = Some(append.head);
                return Ok(seq);
            }
            entries = append.rows.into_iter().map(|row| row.entry).collect();
        }
        let mut tx = sqlx::Connection::begin(connection).await?;
        let (found, left) = self.on(&mut tx, entries).await?;
        tx.commit().await?;
        // Another replica moved the head since this hub's last append: they may be taking turns.
        if let Some(held) = &held {
            *shared = *held != found;
        }
        let seq = left.seq;
        *at_hand = Some(left);
        Ok(seq)
    }
}

/// Signs a checkpoint of the log as it stands in `tx`, under the head's lock: if one is due, or
/// when `force` and none of its size exists. Answers the head after it, or `None` when the log
/// is empty or nothing is due.
async fn checkpoint_on<W: Writer>(
    tx: &mut W,
    log: &CheckpointPolicy,
    force: bool,
) -> Result<Option<TrailHead>> {
    let mut head = head_of(tx).await?;
    let size = head.tree_size;
    let now = now_micros();
    let due = size > head.checkpoint_size
        && (force || now.saturating_sub(head.checkpoint_at) >= log.every_micros);
    if size == 0 || !(due || force) {
        return Ok(None);
    }
    if due {
        let signed = log
            .sign(size, hash_from_hex(&head.root)?, now)
            .map_err(Error::Internal)?;
        store_checkpoint(tx, signed).await?;
        tx.execute(
            "UPDATE audit_head SET checkpoint_size = $1, checkpoint_at = $2 WHERE id = 1",
            vec![Value::Int(size), Value::Int(now)],
        )
        .await?;
        (head.checkpoint_size, head.checkpoint_at) = (size, now);
    }
    Ok(Some(head))
}

/// [`checkpoint_on`] on PostgreSQL, on the trail's own connection; the head it leaves is the one
/// the next append continues from.
async fn checkpoint_on_postgres(
    trail: &mut postgres::Trail,
    pool: &sqlx::PgPool,
    log: &CheckpointPolicy,
    force: bool,
) -> Result<Option<TrailHead>> {
    let (connection, at_hand, _) = trail.parts(pool).await?;
    let mut tx = sqlx::Connection::begin(connection).await?;
    let signed = checkpoint_on(&mut tx, log, force).await?;
    tx.commit().await?;
    if let Some(head) = &signed {
        *at_hand = Some(head.clone());
    }
    Ok(signed)
}

/// Writes an append worked out under the head's lock in `tx`: the entries, the tree's kept
/// hashes, the checkpoint that fell due, the head moved.
async fn write_append<W: Writer>(tx: &mut W, append: TrailAppend) -> Result<()> {
    let TrailAppend {
        rows,
        nodes,
        checkpoint,
        head,
    } = append;
    tx.insert_rows(
        "INSERT INTO audit_log (seq, at, agency_id, jurisdiction, fingerprint, peer, method, \
         touched, outcome, prev_hash, hash)",
        "",
        rows.into_iter().map(audit_row).collect(),
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO audit_tree (idx, hash)",
        "",
        nodes
            .into_iter()
            .map(|(index, hash)| {
                [
                    Value::Int(i64::try_from(index).unwrap_or(i64::MAX)),
                    Value::Text(hex::encode(hash.0)),
                ]
            })
            .collect(),
    )
    .await?;
    if let Some(checkpoint) = checkpoint {
        store_checkpoint(tx, checkpoint).await?;
    }
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2, tree_size = $3, root = $4, edge = $5, \
         checkpoint_size = $6, checkpoint_at = $7 WHERE id = 1",
        vec![
            Value::Int(head.seq),
            Value::Text(head.hash),
            Value::Int(head.tree_size),
            Value::Text(head.root),
            Value::Text(edge_to_text(&head.edge)),
            Value::Int(head.checkpoint_size),
            Value::Int(head.checkpoint_at),
        ],
    )
    .await?;
    Ok(())
}

/// The trail's one head row, locked until commit and read ([`LOCK_HEAD`]).
async fn head_of<W: Writer>(tx: &mut W) -> Result<TrailHead> {
    let rows = tx.rows(LOCK_HEAD, Vec::new()).await?;
    head_from_row(
        rows.first()
            .ok_or_else(|| Error::Internal("the audit trail has no head".into()))?,
    )
}

/// Stores a signed checkpoint (once per size).
async fn store_checkpoint(tx: &mut impl Writer, checkpoint: SignedCheckpoint) -> Result<()> {
    tx.execute(
        "INSERT INTO audit_checkpoints (tree_size, root, note, issued_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING",
        vec![
            Value::Int(checkpoint.size),
            Value::Text(hex::encode(checkpoint.root.0)),
            Value::Text(checkpoint.note),
            Value::Int(checkpoint.at),
        ],
    )
    .await?;
    Ok(())
}

/// Reads stored tree hashes by index: those kept from `audit_tree` in one statement, the others
/// (subtrees of at most 16 entries) computed from the entries under them. An index whose entries
/// are not all there is left out.
async fn tree_hashes(conn: &mut sqlx::AnyConnection, indexes: &[u64]) -> Result<StoredHashes> {
    let mut hashes = StoredHashes::default();
    let (stored, computed): (Vec<u64>, Vec<u64>) = indexes.iter().partition(|&&i| kept(i));
    if !stored.is_empty() {
        let placeholders: Vec<String> = (1..=stored.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT idx, hash FROM audit_tree WHERE idx IN ({})",
            placeholders.join(", ")
        );
        let values = stored
            .iter()
            .map(|&index| Value::Int(i64::try_from(index).unwrap_or(i64::MAX)))
            .collect();
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            hashes.0.insert(
                size_of(row.try_get("idx")?),
                hash_from_hex(&row.try_get::<String, _>("hash")?)?,
            );
        }
    }
    // Those of one append (the right edge's small subtrees) lie within 16 entries: one read.
    let span = computed
        .iter()
        .map(|&i| leaves_under(i))
        .fold(None, |span, (lo, hi)| {
            Some(span.map_or((lo, hi), |(a, b): (u64, u64)| (a.min(lo), b.max(hi))))
        });
    let ranges: Vec<(u64, u64)> = match span {
        None => Vec::new(),
        Some((lo, hi)) if hi - lo <= 64 => vec![(lo, hi)],
        Some(_) => computed.iter().map(|&i| leaves_under(i)).collect(),
    };
    for (lo, hi) in ranges {
        let rows = sqlx::query_with(
            "SELECT seq, at, agency_id, jurisdiction, fingerprint, peer, method, touched, \
             outcome, prev_hash, hash FROM audit_log WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            bind_all(vec![
                Value::Int(i64::try_from(lo).unwrap_or(i64::MAX)),
                Value::Int(i64::try_from(hi).unwrap_or(i64::MAX)),
            ])?,
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut leaves = std::collections::BTreeMap::new();
        for row in &rows {
            let row = chained_from_row(row)?;
            leaves.insert(size_of(row.seq - 1), row.entry.leaf_hash());
        }
        for &index in &computed {
            let (a, b) = leaves_under(index);
            if a < lo || b > hi || hashes.0.contains_key(&index) {
                continue;
            }
            let under: Vec<Hash> = leaves.range(a..b).map(|(_, hash)| *hash).collect();
            if under.len() as u64 == b - a {
                hashes.0.insert(index, subtree_hash(&under));
            }
        }
    }
    Ok(hashes)
}

async fn add_certificate(
    tx: &mut super::Tx,
    agency_id: &str,
    fingerprint: &str,
    now: i64,
) -> Result<()> {
    let fingerprint = fingerprint.to_ascii_lowercase();
    sqlx::query_with(
        "INSERT INTO agency_certificates (fingerprint, agency_id, added_at) VALUES ($1, $2, $3) \
         ON CONFLICT (fingerprint) DO NOTHING",
        bind_all(vec![
            Value::from(fingerprint.clone()),
            Value::from(agency_id),
            Value::Int(now),
        ])?,
    )
    .execute(&mut **tx)
    .await?;
    let owner = sqlx::query_with(
        "SELECT agency_id FROM agency_certificates WHERE fingerprint = $1",
        bind_all(vec![Value::from(fingerprint)])?,
    )
    .fetch_one(&mut **tx)
    .await?;
    let owner: String = owner.try_get("agency_id")?;
    if owner != agency_id {
        return Err(Error::FailedPrecondition(format!(
            "that certificate is already registered for {owner}"
        )));
    }
    Ok(())
}
