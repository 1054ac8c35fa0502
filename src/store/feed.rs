//! The alert feed as a durable log. Every change to a finding or its alert is appended to
//! `feed_events` in the transaction that made it (an outbox), so an event exists exactly when its
//! change was committed. Sequence numbers are taken under one lock held until commit: on
//! PostgreSQL a transaction numbering events waits for the one before it to commit, so no reader
//! can ever see number N and later find a committed N−1; SQLite's single writer gives the same.
//! Streams are woken in process after each commit and, on PostgreSQL, by NOTIFY from other replicas.

use serde_json::json;
use sqlx::any::AnyRow;

use super::codec::column;
use super::findings::{
    Alert, ChangeKind, StoredFinding, decode_finding, evidence_kind, write_findings,
};
use super::query as q;
use super::write::Writer;
use super::{Backend, Store, Tx, Value, bind_all, now_micros};
use crate::domain::alerts::{self, AlertState};
use crate::domain::findings::{Evidence, Finding, FindingKey, RuleCode, Severity};
use crate::domain::{AgencyKind, Coded, Jurisdiction, coded_enum};
use crate::error::{Error, Result};

coded_enum! {
    /// What an event on the feed says happened.
    FeedEventType, "FEED_EVENT_TYPE_" {
        /// A finding was raised (or raised again).
        Raised = "RAISED",
        /// A finding still holds, with other numbers or evidence.
        Updated = "UPDATED",
        /// The data no longer shows a finding.
        Resolved = "RESOLVED",
        /// An alert climbed a step of the escalation ladder.
        Escalated = "ESCALATED",
        /// An alert was moved by hand (acknowledged, rectifying, closed).
        Transitioned = "TRANSITIONED",
        /// An overdue ledger item or case climbed a step of the ladder.
        FollowUpEscalated = "FOLLOW_UP_ESCALATED",
        /// A matter was transferred to discipline inspection or opened as a joint inspection.
        Transferred = "TRANSFERRED",
        /// A closed case was published as a bulletin (通报).
        Bulletin = "BULLETIN",
        /// An agency acknowledged receipt of a transfer; only the sender's kind sees it.
        ReceiptAcknowledged = "RECEIPT_ACKNOWLEDGED",
        /// A staffing office opened a special inspection campaign.
        CampaignOpened = "CAMPAIGN_OPENED",
        /// An institution's declaration is missing past a campaign's deadline (one per step).
        DeclarationMissing = "DECLARATION_MISSING",
        /// A ledger item was assigned to the staffing office of a division below (交办).
        Assigned = "ASSIGNED",
        /// A level confirmed an assigned item (上报, 确认, and at the top 销号).
        LevelConfirmed = "LEVEL_CONFIRMED",
    }
}

impl From<ChangeKind> for FeedEventType {
    fn from(kind: ChangeKind) -> FeedEventType {
        match kind {
            ChangeKind::Raised => FeedEventType::Raised,
            ChangeKind::Updated => FeedEventType::Updated,
            ChangeKind::Resolved => FeedEventType::Resolved,
        }
    }
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    /// Gap-free position in the feed.
    pub seq: i64,
    /// Unique id of the event.
    pub event_id: String,
    /// What happened.
    pub event_type: FeedEventType,
    /// The finding and its alert after the event; `None` for an event about follow-up.
    pub finding: Option<StoredFinding>,
    /// The ledger item, case or transfer an event about follow-up is about.
    pub follow_up: Option<FollowUp>,
    /// The division whose readers see the event (a subscriber sees its own and those below).
    pub jurisdiction: String,
    /// The agency kinds that see the event: empty for all, otherwise `,discipline,audit,`
    /// (see [`crate::domain::ledger::reaches`]).
    pub reach: String,
    /// For a bulletin, the publisher's division prefix: readers in divisions under it see the
    /// event too. Empty otherwise.
    pub below: String,
    /// When it was written (Unix microseconds).
    pub created_at: i64,
}

/// What an event about follow-up carries: the matter as it stands, with its whole history, so
/// that an agency it reaches needs nothing else to take it up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FollowUp {
    /// `LEDGER_ITEM`, `CASE` or `ALERT` ([`crate::domain::ledger::MatterKind`]).
    pub matter: String,
    /// The matter's id (a finding's key for an alert).
    pub id: String,
    /// Its state.
    pub state: String,
    /// The institution concerned, if any.
    pub institution: String,
    /// Steps climbed on the ladder.
    pub escalation_level: i64,
    /// The transfer, if the event is one.
    pub transfer_id: String,
    /// What the event says (a transfer's note, a bulletin's redacted text).
    pub text: String,
    /// The matter's steps, oldest first.
    pub history: Vec<FollowUpStep>,
}

/// One step of a matter's history as carried on the feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FollowUpStep {
    /// Who.
    pub agency_id: String,
    /// When (Unix microseconds).
    pub at: i64,
    /// From state.
    pub from_state: String,
    /// To state.
    pub to_state: String,
    /// What they wrote.
    pub text: String,
}

/// The PostgreSQL advisory lock that orders the feed (outside the hub's hashed key range).
const FEED_LOCK: i64 = 0x5148_FEED;

/// The channel other replicas' commits are announced on.
pub const NOTIFY_CHANNEL: &str = "quotahub_feed";

fn finding_json(stored: &StoredFinding) -> String {
    let f = &stored.finding;
    let evidence: Vec<(&str, &str)> = f.evidence.iter().map(|e| (e.kind, e.id.as_str())).collect();
    json!({
        "code": f.key.code.code(), "institution": f.key.institution, "subject": f.key.subject, "period": f.key.period,
        "severity": f.severity.code(), "actual": f.actual, "limit": f.limit,
        "zh": f.explanation_zh, "en": f.explanation_en, "evidence": evidence,
        "jurisdiction": stored.jurisdiction, "open": stored.open, "raised_at": stored.raised_at,
        "updated_at": stored.updated_at, "resolved_at": stored.resolved_at, "version": stored.version,
        "alert_state": stored.alert.state.code(), "escalation_level": stored.alert.escalation_level,
        "acknowledged": stored.alert.acknowledged, "acknowledge_by": stored.alert.acknowledge_by,
        "rectify_by": stored.alert.rectify_by,
    })
    .to_string()
}

fn finding_from_json(text: &str) -> Result<StoredFinding> {
    let bad = |what: &str| Error::Internal(format!("a feed event's finding lacks {what}"));
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("a feed event no longer parses: {e}")))?;
    let text_of = |name: &str| v[name].as_str().map(str::to_owned).ok_or_else(|| bad(name));
    let int_of = |name: &str| v[name].as_i64().ok_or_else(|| bad(name));
    let code_of = |name: &str| text_of(name);
    let evidence: Vec<(String, String)> =
        serde_json::from_value(v["evidence"].clone()).map_err(|_| bad("evidence"))?;
    Ok(StoredFinding {
        finding: Finding {
            key: FindingKey {
                code: RuleCode::from_code(&code_of("code")?).ok_or_else(|| bad("code"))?,
                institution: text_of("institution")?,
                subject: text_of("subject")?,
                period: text_of("period")?,
            },
            severity: Severity::from_code(&code_of("severity")?).ok_or_else(|| bad("severity"))?,
            actual: int_of("actual")?,
            limit: int_of("limit")?,
            explanation_zh: text_of("zh")?,
            explanation_en: text_of("en")?,
            evidence: evidence
                .into_iter()
                .map(|(kind, id)| Evidence {
                    kind: evidence_kind(&kind),
                    id,
                })
                .collect(),
        },
        jurisdiction: text_of("jurisdiction")?,
        open: v["open"].as_bool().ok_or_else(|| bad("open"))?,
        raised_at: int_of("raised_at")?,
        updated_at: int_of("updated_at")?,
        resolved_at: v["resolved_at"].as_i64(),
        version: int_of("version")?,
        alert: Alert {
            state: AlertState::from_code(&code_of("alert_state")?)
                .ok_or_else(|| bad("alert_state"))?,
            escalation_level: int_of("escalation_level")?,
            acknowledged: v["acknowledged"].as_bool().unwrap_or(false),
            acknowledge_by: v["acknowledge_by"].as_i64(),
            rectify_by: v["rectify_by"].as_i64(),
        },
    })
}

fn decode_event(row: &AnyRow) -> Result<FeedEvent> {
    let follow_up = q::opt_text(row, "follow_up")?
        .map(|text| {
            serde_json::from_str::<FollowUp>(&text).map_err(|e| {
                Error::Internal(format!("a feed event's follow-up no longer parses: {e}"))
            })
        })
        .transpose()?;
    Ok(FeedEvent {
        seq: column(row, "seq")?,
        event_id: column(row, "event_id")?,
        event_type: q::code(row, "event_type")?,
        finding: match &follow_up {
            Some(_) => None,
            None => Some(finding_from_json(&q::text(row, "finding")?)?),
        },
        follow_up,
        jurisdiction: column(row, "jurisdiction")?,
        reach: column(row, "reach")?,
        below: column(row, "below")?,
        created_at: column(row, "created_at")?,
    })
}

/// Appends events to the feed inside `tx`. Takes the feed lock first on PostgreSQL: it is the last
/// lock any transaction takes, so it cannot deadlock with the others.
pub(crate) async fn append<'a, W: Writer>(
    store: &Store,
    tx: &mut W,
    events: impl Iterator<Item = (FeedEventType, &'a StoredFinding)>,
) -> Result<Vec<i64>> {
    let events: Vec<(FeedEventType, &StoredFinding)> = events.collect();
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let head = locked_head(store, tx).await?;
    let now = now_micros();
    let mut seqs = Vec::new();
    let rows: Vec<[Value; 11]> = events
        .iter()
        .enumerate()
        .map(|(i, (event_type, stored))| {
            let seq = head + 1 + i64::try_from(i).expect("a batch fits in i64");
            seqs.push(seq);
            let key = &stored.finding.key;
            [
                Value::Int(seq),
                Value::Text(format!("{now:x}-{seq:x}")),
                Value::from(event_type.code()),
                Value::from(key.code.code()),
                Value::from(key.institution.as_str()),
                Value::from(key.subject.as_str()),
                Value::from(key.period.as_str()),
                Value::from(stored.jurisdiction.as_str()),
                Value::from(stored.finding.severity.code()),
                Value::Text(finding_json(stored)),
                Value::Int(now),
            ]
        })
        .collect();
    tx.insert_rows(
        "INSERT INTO feed_events (seq, event_id, event_type, code, institution_uscc, subject, period, jurisdiction, severity, finding, created_at)",
        "",
        rows,
    )
    .await?;
    notify(store, tx, seqs.last().copied().unwrap_or_default()).await?;
    Ok(seqs)
}

/// Takes the feed lock (on PostgreSQL; the last lock any transaction takes, so it cannot
/// deadlock with the others) and reads the highest number written.
async fn locked_head<W: Writer>(store: &Store, tx: &mut W) -> Result<i64> {
    if store.backend() == Backend::Postgres {
        tx.execute(
            "SELECT count(*) FROM (SELECT pg_advisory_xact_lock($1)) AS locked",
            vec![Value::Int(FEED_LOCK)],
        )
        .await?;
    }
    let rows = tx
        .rows("SELECT MAX(head) AS head FROM (SELECT COALESCE(MAX(seq), 0) AS head FROM feed_events \
         UNION ALL SELECT COALESCE(MAX(value), 0) AS head FROM feed_state WHERE name = 'trimmed_through') AS heads", Vec::new())
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::Internal("the feed's head was not read".into()))?;
    q::int(row, "head")
}

/// On PostgreSQL, announces `seq` to the listeners of every replica when (and only if) the
/// transaction commits.
async fn notify<W: Writer>(store: &Store, tx: &mut W, seq: i64) -> Result<()> {
    if store.backend() == Backend::Postgres {
        tx.execute(
            "SELECT count(*) FROM (SELECT pg_notify($1, $2)) AS notified",
            vec![Value::from(NOTIFY_CHANNEL), Value::Text(seq.to_string())],
        )
        .await?;
    }
    Ok(())
}

/// Appends one event about follow-up inside `tx`, seen in `jurisdiction` and above it by the
/// agency kinds of `reach` (empty: all) and, when `below` is a division prefix, in the divisions
/// under it as well.
pub(crate) async fn append_follow_up(
    store: &Store,
    tx: &mut Tx,
    event_type: FeedEventType,
    (jurisdiction, reach, below): (&str, &str, &str),
    follow_up: &FollowUp,
) -> Result<i64> {
    let seq = locked_head(store, tx).await? + 1;
    let now = now_micros();
    let payload = serde_json::to_string(follow_up)
        .map_err(|e| Error::Internal(format!("cannot write a follow-up event: {e}")))?;
    sqlx::query_with(
        "INSERT INTO feed_events (seq, event_id, event_type, code, institution_uscc, subject, period, jurisdiction, severity, finding, created_at, follow_up, reach, below) \
         VALUES ($1, $2, $3, $4, $5, $6, '', $7, '', '', $8, $9, $10, $11)",
        bind_all(vec![
            Value::Int(seq),
            Value::Text(format!("{now:x}-{seq:x}")),
            Value::from(event_type.code()),
            Value::from(follow_up.matter.as_str()),
            Value::from(follow_up.institution.as_str()),
            Value::from(follow_up.id.as_str()),
            Value::from(jurisdiction),
            Value::Int(now),
            Value::Text(payload),
            Value::from(reach),
            Value::from(below),
        ])?,
    )
    .execute(&mut **tx)
    .await?;
    notify(store, tx, seq).await?;
    Ok(seq)
}

/// A named, durable subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Owning agency's id.
    pub agency_id: String,
    /// Its name, unique per agency.
    pub name: String,
    /// The filter, as JSON (the API layer owns its shape).
    pub filter: String,
    /// `FULL` or `IDS`.
    pub content_mode: String,
    /// Everything up to this sequence number is acknowledged.
    pub acked_seq: i64,
}

fn decode_subscription(row: &AnyRow) -> Result<Subscription> {
    Ok(Subscription {
        agency_id: column(row, "agency_id")?,
        name: column(row, "name")?,
        filter: column(row, "filter")?,
        content_mode: column(row, "content_mode")?,
        acked_seq: column(row, "acked_seq")?,
    })
}

/// A hand transition of an alert.
#[derive(Debug, Clone)]
pub struct Transition {
    /// Which finding's alert.
    pub key: FindingKey,
    /// The version the caller last saw; a different stored version refuses the transition.
    pub expected_version: i64,
    /// The state to move to.
    pub to: AlertState,
    /// Makes a resend harmless.
    pub idempotency_key: String,
    /// Why, in the caller's words.
    pub note: String,
}

impl Store {
    /// Announces to this process's streams that the feed may have grown (called after commits).
    pub fn feed_changed(&self) {
        self.feed_signal.send_modify(|generation| *generation += 1);
    }

    /// A receiver that changes whenever the feed may have grown.
    pub fn feed_wakeups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed_signal.subscribe()
    }

    /// The highest sequence number written.
    pub async fn feed_head(&self) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(head) AS head FROM (SELECT COALESCE(MAX(seq), 0) AS head FROM feed_events \
         UNION ALL SELECT COALESCE(MAX(value), 0) AS head FROM feed_state WHERE name = 'trimmed_through') AS heads")
            .fetch_one(self.readers())
            .await?;
        column(&row, "head")
    }

    /// Everything up to this number has been trimmed away.
    pub async fn feed_trimmed_through(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(value), 0) AS trimmed FROM feed_state WHERE name = 'trimmed_through'")
            .fetch_one(self.readers())
            .await?;
        column(&row, "trimmed")
    }

    /// The last sequence number written before `micros`.
    pub async fn feed_seq_before(&self, micros: i64) -> Result<i64> {
        let row = sqlx::query_with(
            "SELECT COALESCE(MAX(seq), 0) AS seq FROM feed_events WHERE created_at < $1",
            bind_all(vec![Value::Int(micros)])?,
        )
        .fetch_one(self.readers())
        .await?;
        let seq: i64 = column(&row, "seq")?;
        Ok(seq.max(self.feed_trimmed_through().await?))
    }

    /// Events after `after` that a reader (an agency kind in a jurisdiction) sees, all when
    /// `None`, in order, at most `limit`.
    #[tracing::instrument(name = "store.feed_after", skip_all)]
    pub async fn feed_after(
        &self,
        after: i64,
        reader: Option<(&Jurisdiction, AgencyKind)>,
        limit: i64,
    ) -> Result<Vec<FeedEvent>> {
        let prefix = format!("{}%", reader.map_or("", |(j, _)| j.prefix()));
        let code = reader.map_or("", |(j, _)| j.as_str());
        // An empty reach is seen by every kind; `%` matches any reach for a reader of all.
        let reach = reader.map_or("%".to_owned(), |(_, kind)| format!("%,{},%", kind.slug()));
        sqlx::query_with(
            "SELECT * FROM feed_events WHERE seq > $1 \
             AND (jurisdiction LIKE $2 OR (below <> '' AND $3 LIKE (below || '%'))) \
             AND (reach = '' OR reach LIKE $4) ORDER BY seq LIMIT $5",
            bind_all(vec![
                Value::Int(after),
                Value::Text(prefix),
                Value::from(code),
                Value::Text(reach),
                Value::Int(limit),
            ])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_event)
        .collect()
    }

    /// Creates a subscription, or replaces its filter and content mode (keeping its cursor).
    #[tracing::instrument(name = "store.put_subscription", skip_all)]
    pub async fn put_subscription(
        &self,
        agency_id: &str,
        name: &str,
        filter: &str,
        content_mode: &str,
    ) -> Result<Subscription> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        sqlx::query_with(
            "INSERT INTO subscriptions (agency_id, name, filter, content_mode, acked_seq, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5) \
             ON CONFLICT (agency_id, name) DO UPDATE SET filter = excluded.filter, content_mode = excluded.content_mode, updated_at = excluded.updated_at",
            bind_all(vec![Value::from(agency_id), Value::from(name), Value::from(filter), Value::from(content_mode), Value::Int(now)])?,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.subscription(agency_id, name)
            .await?
            .ok_or_else(|| Error::Internal("a subscription vanished".into()))
    }

    /// A subscription of an agency.
    pub async fn subscription(&self, agency_id: &str, name: &str) -> Result<Option<Subscription>> {
        sqlx::query_with(
            "SELECT * FROM subscriptions WHERE agency_id = $1 AND name = $2",
            bind_all(vec![Value::from(agency_id), Value::from(name)])?,
        )
        .fetch_optional(self.readers())
        .await?
        .as_ref()
        .map(decode_subscription)
        .transpose()
    }

    /// The subscriptions of an agency.
    pub async fn subscriptions(&self, agency_id: &str) -> Result<Vec<Subscription>> {
        sqlx::query_with(
            "SELECT * FROM subscriptions WHERE agency_id = $1 ORDER BY name",
            bind_all(vec![Value::from(agency_id)])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_subscription)
        .collect()
    }

    /// Deletes a subscription; true if it existed.
    pub async fn delete_subscription(&self, agency_id: &str, name: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query_with(
            "DELETE FROM subscriptions WHERE agency_id = $1 AND name = $2",
            bind_all(vec![Value::from(agency_id), Value::from(name)])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Acknowledges everything up to `seq` (cumulative, idempotent; never moves back). Returns the
    /// cursor after the acknowledgement.
    #[tracing::instrument(name = "store.ack", skip_all)]
    pub async fn ack(&self, agency_id: &str, name: &str, seq: i64) -> Result<i64> {
        // Events a stream sent came from the tail: most acks are checked without a query.
        if seq > self.feed_tail_through().await {
            let head = self.feed_head().await?;
            if seq > head {
                return Err(Error::invalid(
                    "seq",
                    format!("{seq} is beyond the feed's head {head}"),
                ));
            }
        }
        self.write_ack(agency_id, name, seq)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no subscription `{name}`")))
    }

    /// Escalates every alert whose deadlines have passed by `now` (Unix microseconds), one ladder
    /// step per event. Each step is claimed by a conditional update, so two replicas running this
    /// at once never escalate the same alert twice. Returns the events written.
    #[tracing::instrument(name = "store.escalate_due", skip_all)]
    pub async fn escalate_due(&self, now: i64) -> Result<Vec<i64>> {
        let candidates = sqlx::query(
            "SELECT * FROM findings WHERE state = 'OPEN' AND alert_state <> 'CLOSED' AND escalation_level < 3 \
             AND (acknowledge_by IS NOT NULL OR rectify_by IS NOT NULL)",
        )
        .fetch_all(self.readers())
        .await?;
        let mut written = Vec::new();
        for row in &candidates {
            let stored = decode_finding(row)?;
            let deadlines = alerts::Deadlines {
                acknowledge_by: stored.alert.acknowledge_by,
                rectify_by: stored.alert.rectify_by,
            };
            let due = alerts::due_level(
                &deadlines,
                stored.raised_at,
                stored.alert.state,
                stored.alert.acknowledged,
                stored.open,
                now,
            );
            if due <= stored.alert.escalation_level {
                continue;
            }
            let key = &stored.finding.key;
            // The institution's lock, as pushes and transitions take it: a push that re-checks the
            // finding meanwhile either comes first (and the claim below finds a new version) or
            // reads the step once it is committed.
            let mut tx = self
                .begin_locked(&[format!("institution:{}", key.institution)])
                .await?;
            let claimed = sqlx::query_with(
                "UPDATE findings SET escalation_level = $5, version = version + $6, updated_at = $7 \
                 WHERE code = $1 AND institution_uscc = $2 AND subject = $3 AND period = $4 AND escalation_level = $8 AND version = $9",
                bind_all(vec![
                    Value::from(key.code.code()),
                    Value::from(key.institution.as_str()),
                    Value::from(key.subject.as_str()),
                    Value::from(key.period.as_str()),
                    Value::Int(due),
                    Value::Int(due - stored.alert.escalation_level),
                    Value::Int(now),
                    Value::Int(stored.alert.escalation_level),
                    Value::Int(stored.version),
                ])?,
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                // Another replica (or a push) changed it first.
                tx.rollback().await?;
                continue;
            }
            let steps: Vec<StoredFinding> = (stored.alert.escalation_level + 1..=due)
                .map(|level| StoredFinding {
                    version: stored.version + (level - stored.alert.escalation_level),
                    updated_at: now,
                    alert: Alert {
                        escalation_level: level,
                        ..stored.alert.clone()
                    },
                    ..stored.clone()
                })
                .collect();
            written.extend(
                append(
                    self,
                    &mut tx,
                    steps.iter().map(|s| (FeedEventType::Escalated, s)),
                )
                .await?,
            );
            tx.commit().await?;
            self.feed_changed();
        }
        Ok(written)
    }

    /// Moves an alert by hand. A resend with the same idempotency key returns the same result; a
    /// stale `expected_version` is refused with the stored version named.
    #[tracing::instrument(name = "store.transition", skip_all)]
    pub async fn transition(
        &self,
        agency_id: &str,
        transition: &Transition,
    ) -> Result<StoredFinding> {
        let key = &transition.key;
        let key_values = || {
            vec![
                Value::from(key.code.code()),
                Value::from(key.institution.as_str()),
                Value::from(key.subject.as_str()),
                Value::from(key.period.as_str()),
            ]
        };
        let mut tx = self
            .begin_locked(&[
                format!("institution:{}", key.institution),
                format!("alert-transition:{agency_id}"),
            ])
            .await?;
        let earlier = sqlx::query_with(
            "SELECT * FROM alert_transitions WHERE agency_id = $1 AND idempotency_key = $2",
            bind_all(vec![
                Value::from(agency_id),
                Value::from(transition.idempotency_key.as_str()),
            ])?,
        )
        .fetch_optional(&mut *tx)
        .await?;
        let row = sqlx::query_with(
            "SELECT * FROM findings WHERE code = $1 AND institution_uscc = $2 AND subject = $3 AND period = $4",
            bind_all(key_values())?,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound("no such finding".into()))?;
        let stored = decode_finding(&row)?;
        if let Some(earlier) = earlier {
            tx.rollback().await?;
            let same = q::text(&earlier, "to_state")? == transition.to.code()
                && q::text(&earlier, "code")? == key.code.code()
                && q::text(&earlier, "institution_uscc")? == key.institution
                && q::text(&earlier, "subject")? == key.subject
                && q::text(&earlier, "period")? == key.period;
            return if same {
                Ok(stored)
            } else {
                Err(Error::RecordConflict {
                    record_id: transition.idempotency_key.clone(),
                })
            };
        }
        if stored.version != transition.expected_version {
            return Err(Error::Aborted(format!(
                "the alert is at version {}, not {}; read it again",
                stored.version, transition.expected_version
            )));
        }
        if !alerts::may_transition(stored.alert.state, transition.to) {
            return Err(Error::FailedPrecondition(format!(
                "an alert cannot go from {} to {}",
                stored.alert.state, transition.to
            )));
        }
        let now = now_micros();
        let after = StoredFinding {
            version: stored.version + 1,
            updated_at: now,
            alert: Alert {
                state: transition.to,
                acknowledged: stored.alert.acknowledged || transition.to != AlertState::Open,
                ..stored.alert.clone()
            },
            ..stored.clone()
        };
        write_findings(&mut tx, &[&after]).await?;
        let mut values = vec![
            Value::from(agency_id),
            Value::from(transition.idempotency_key.as_str()),
        ];
        values.extend(key_values());
        values.extend([
            Value::from(stored.alert.state.code()),
            Value::from(transition.to.code()),
            Value::Int(after.version),
            Value::from(transition.note.as_str()),
            Value::Int(now),
        ]);
        sqlx::query_with(
            "INSERT INTO alert_transitions (agency_id, idempotency_key, code, institution_uscc, subject, period, from_state, to_state, version_after, note, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            bind_all(values)?,
        )
        .execute(&mut *tx)
        .await?;
        append(
            self,
            &mut tx,
            std::iter::once((FeedEventType::Transitioned, &after)),
        )
        .await?;
        tx.commit().await?;
        self.feed_changed();
        Ok(after)
    }

    /// One finding with its alert.
    pub async fn finding(&self, key: &FindingKey) -> Result<Option<StoredFinding>> {
        sqlx::query_with(
            "SELECT * FROM findings WHERE code = $1 AND institution_uscc = $2 AND subject = $3 AND period = $4",
            bind_all(vec![
                Value::from(key.code.code()),
                Value::from(key.institution.as_str()),
                Value::from(key.subject.as_str()),
                Value::from(key.period.as_str()),
            ])?,
        )
        .fetch_optional(self.readers())
        .await?
        .as_ref()
        .map(decode_finding)
        .transpose()
    }

    /// Drops events written before `micros`, remembering how far the feed was trimmed.
    #[tracing::instrument(name = "store.trim_feed", skip_all)]
    pub async fn trim_feed(&self, micros: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let row = sqlx::query_with(
            "SELECT COALESCE(MAX(seq), 0) AS upto FROM feed_events WHERE created_at < $1",
            bind_all(vec![Value::Int(micros)])?,
        )
        .fetch_one(&mut *tx)
        .await?;
        let upto: i64 = column(&row, "upto")?;
        if upto == 0 {
            tx.rollback().await?;
            return Ok(0);
        }
        let deleted = sqlx::query_with(
            "DELETE FROM feed_events WHERE seq <= $1",
            bind_all(vec![Value::Int(upto)])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query_with(
            "INSERT INTO feed_state (name, value) VALUES ('trimmed_through', $1) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            bind_all(vec![Value::Int(upto)])?,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_survives_its_json_form() {
        let stored = StoredFinding {
            finding: Finding {
                key: FindingKey {
                    code: RuleCode::OverQuota,
                    institution: "11140100MB0000001G".into(),
                    subject: "ADMINISTRATIVE".into(),
                    period: String::new(),
                },
                severity: Severity::High,
                actual: 3,
                limit: 2,
                explanation_zh: "超编".into(),
                explanation_en: "over".into(),
                evidence: [Evidence {
                    kind: "quota",
                    id: "140100/staffing-office/q1".into(),
                }]
                .into_iter()
                .collect(),
            },
            jurisdiction: "140100".into(),
            open: true,
            raised_at: 1,
            updated_at: 2,
            resolved_at: None,
            version: 3,
            alert: Alert {
                state: AlertState::Acknowledged,
                escalation_level: 1,
                acknowledged: true,
                acknowledge_by: Some(5),
                rectify_by: None,
            },
        };
        assert_eq!(finding_from_json(&finding_json(&stored)).unwrap(), stored);
    }
}
