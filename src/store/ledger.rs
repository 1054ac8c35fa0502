//! Follow-through in storage: ledger items and their steps, applications and the gate of overdue
//! items, penalties, cases, transfers and their receipts, bulletins, and the escalation of
//! overdue items and cases on the feed.
//!
//! Steps are only ever inserted: no statement here updates or deletes a row of `ledger_steps` or
//! `case_steps`. A move is taken under the matter's lock and a version check, and its step, its
//! new state and any feed event commit together.

use chrono::{FixedOffset, NaiveDate, TimeZone};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

use super::codec::column;
use super::feed::{FeedEventType, FollowUp, FollowUpStep, append_follow_up};
use super::ledger_keys::{Creates, RequestKey, request_lock};
use super::push::{Submission, push_lock_keys};
use super::query as q;
pub use super::time_range::TimeRange;
use super::{Store, Tx, Value, bind_all};
use crate::domain::assignment;
use crate::domain::findings::{FindingKey, RuleCode};
use crate::domain::freshness;
use crate::domain::ledger::{
    self, ApplicationKind, ApplicationState, CaseState, ItemAction, ItemFacts, ItemState,
    MatterKind, MoveRefused, OverdueItem, PenaltyKind, ReportChannel, ReportRow, TransferKind,
};
use crate::domain::{
    Agency, AgencyKind, Coded, Grade, HiringApproval, Institution, InstitutionStatus, Jurisdiction,
    LeaderLevel, LeaderPosition, LeaderPost, Quota, QuotaCategory, Uscc,
};
use crate::error::{Error, Result};

/// A step of an item's or a case's history.
pub type Step = FollowUpStep;

/// A rectification ledger item with its history.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerItem {
    /// Its id.
    pub id: String,
    /// The department's jurisdiction.
    pub jurisdiction: String,
    /// The responsible department.
    pub department: String,
    /// What is wrong.
    pub title: String,
    /// The finding it was opened from.
    pub finding: Option<FindingKey>,
    /// Where it stands.
    pub state: ItemState,
    /// When it is due.
    pub due_on: NaiveDate,
    /// Steps climbed on the ladder.
    pub escalation_level: i64,
    /// When it was opened (Unix microseconds).
    pub opened_at: i64,
    /// When it was closed.
    pub closed_at: Option<i64>,
    /// Incremented at every move.
    pub version: i64,
    /// Every step, oldest first (empty in lists).
    pub history: Vec<Step>,
    /// The chain of levels it was assigned down, top first (empty if never assigned; empty in
    /// lists).
    pub levels: Vec<ItemLevel>,
}

/// One level of an item's or a case's assignment chain as kept (see
/// [`crate::domain::assignment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemLevel {
    /// The division whose staffing office holds the matter at this level.
    pub jurisdiction: String,
    /// Who assigned it to this level (for the top, who first assigned it).
    pub assigned_by: String,
    /// When (Unix microseconds).
    pub assigned_at: i64,
    /// Who confirmed it at this level in the current round, if anyone.
    pub confirmed_by: Option<String>,
    /// When.
    pub confirmed_at: Option<i64>,
}

/// What opening an item needs.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// The responsible department; `None` for the finding's institution.
    pub department: Option<Uscc>,
    /// What is wrong; empty for the finding's explanation.
    pub title: String,
    /// When it is due.
    pub due_on: NaiveDate,
    /// The finding it is opened from.
    pub finding: Option<FindingKey>,
}

/// A staffing application.
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    /// Its id.
    pub id: String,
    /// The department's jurisdiction.
    pub jurisdiction: String,
    /// The applying department.
    pub department: String,
    /// What for.
    pub kind: ApplicationKind,
    /// The details asked for.
    pub request: ApplicationRequest,
    /// Why.
    pub reason: String,
    /// Where it stands.
    pub state: ApplicationState,
    /// Who applied.
    pub applied_by: String,
    /// The override that let it past the gate.
    pub override_reason: Option<String>,
    /// Who overrode.
    pub override_by: Option<String>,
    /// The decision: note, by whom, the registry record it pushed.
    pub decision: Option<(String, String, Option<String>)>,
    /// When it was filed (Unix microseconds).
    pub applied_at: i64,
    /// When it was decided.
    pub decided_at: Option<i64>,
}

/// The details of an application, kept as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ApplicationRequest {
    /// Quota or approval category code.
    pub category: Option<String>,
    /// The new quota, the posts, or the entries.
    pub count: u32,
    /// Leader level code.
    pub level: Option<String>,
    /// Leader position code.
    pub position: Option<String>,
    /// Last day of a hiring approval (YYYY-MM-DD).
    pub valid_until: Option<String>,
    /// The new grade code, for a grade change.
    #[serde(default)]
    pub grade: Option<String>,
}

/// A penalty on record.
#[derive(Debug, Clone, PartialEq)]
pub struct Penalty {
    /// Its id.
    pub id: String,
    /// The ledger item.
    pub item_id: String,
    /// The institution.
    pub institution: String,
    /// What kind.
    pub kind: PenaltyKind,
    /// For a cut: the category.
    pub category: Option<QuotaCategory>,
    /// For a cut: places cut.
    pub cut: u32,
    /// Why.
    pub text: String,
    /// Who.
    pub imposed_by: String,
    /// When.
    pub imposed_at: i64,
}

/// A case from a public report.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its id.
    pub id: String,
    /// Its jurisdiction.
    pub jurisdiction: String,
    /// How the report came in.
    pub channel: ReportChannel,
    /// The institution concerned.
    pub institution: Option<String>,
    /// The person concerned.
    pub person: Option<String>,
    /// The report.
    pub text: String,
    /// Who is responsible.
    pub owner: String,
    /// Where it stands.
    pub state: CaseState,
    /// Deadline.
    pub due_on: NaiveDate,
    /// Steps climbed on the ladder.
    pub escalation_level: i64,
    /// The written outcome.
    pub outcome: Option<String>,
    /// Incremented at every move.
    pub version: i64,
    /// When it was taken in (Unix microseconds).
    pub opened_at: i64,
    /// Every step, oldest first (empty in lists).
    pub history: Vec<Step>,
    /// The chain of levels it was assigned down, top first (empty if never assigned; empty in
    /// lists).
    pub levels: Vec<ItemLevel>,
}

/// What taking in a report needs.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// Where.
    pub jurisdiction: Jurisdiction,
    /// How it came in.
    pub channel: ReportChannel,
    /// The institution concerned.
    pub institution: Option<Uscc>,
    /// The person concerned.
    pub person: Option<String>,
    /// The report.
    pub text: String,
    /// Who is responsible.
    pub owner: String,
    /// Deadline.
    pub due_on: NaiveDate,
}

/// A transfer or joint inspection with its receipts.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// Its id.
    pub id: String,
    /// Transfer or joint inspection.
    pub kind: TransferKind,
    /// What it is about.
    pub matter: MatterKind,
    /// The matter's id.
    pub matter_id: String,
    /// The matter's jurisdiction.
    pub jurisdiction: String,
    /// The covering note.
    pub text: String,
    /// Who sent it.
    pub sent_by: String,
    /// When (Unix microseconds).
    pub sent_at: i64,
    /// Per agency kind reached: who acknowledged, when.
    pub receipts: Vec<(AgencyKind, Option<String>, Option<i64>)>,
}

/// What a list of cases selects (besides the jurisdiction subtree).
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// Only in this state.
    pub state: Option<CaseState>,
    /// Only concerning this institution.
    pub institution: Option<String>,
    /// Only those overdue on this day.
    pub overdue_on: Option<NaiveDate>,
    /// Only those taken in within `[from, to)` (Unix microseconds).
    pub opened: TimeRange,
}

/// What a list of transfers selects (besides the jurisdiction subtree).
#[derive(Debug, Clone, Default)]
pub struct TransferFilter {
    /// Only those reaching this agency kind (every reader but the staffing office).
    pub reaching: Option<AgencyKind>,
    /// Only transfers or only joint inspections.
    pub kind: Option<TransferKind>,
    /// Only about this kind of matter.
    pub matter: Option<MatterKind>,
    /// Only those with a receipt not yet acknowledged.
    pub unacknowledged_only: bool,
    /// Only those sent within the range.
    pub sent: TimeRange,
}

/// What a list of applications selects (besides the jurisdiction subtree).
#[derive(Debug, Clone, Default)]
pub struct ApplicationFilter {
    /// Only in this state.
    pub state: Option<ApplicationState>,
    /// Only of this kind.
    pub kind: Option<ApplicationKind>,
    /// Only of this department.
    pub department: Option<String>,
    /// Only those filed within the range.
    pub applied: TimeRange,
}

/// A bulletin.
#[derive(Debug, Clone, PartialEq)]
pub struct Bulletin {
    /// Its id.
    pub id: String,
    /// The case.
    pub case_id: String,
    /// Where it goes.
    pub jurisdiction: String,
    /// The text, personal data removed.
    pub text: String,
}

/// Makes ids: the prefix and a UUIDv7 (milliseconds, then a counter seeded at random and random
/// bits), so ids sort by when they were made and two replicas never make the same one, whatever
/// their process ids (1 in every container). Each process (each replica) has its own maker.
struct IdMaker {
    /// Keeps the ids of one maker in the order they were made within a millisecond.
    context: std::sync::Mutex<uuid::ContextV7>,
}

impl IdMaker {
    const fn new() -> IdMaker {
        IdMaker {
            context: std::sync::Mutex::new(uuid::ContextV7::new()),
        }
    }

    /// A new id.
    fn make(&self, prefix: &str) -> String {
        let context = self
            .context
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = uuid::Uuid::new_v7(uuid::Timestamp::now(&*context));
        format!("{prefix}-{id}")
    }
}

/// This process's id maker.
static IDS: IdMaker = IdMaker::new();

/// A new id with its prefix.
pub(super) fn new_id(prefix: &str) -> String {
    IDS.make(prefix)
}

/// The China Standard Time date of an instant.
pub(super) fn day_of(micros: i64) -> NaiveDate {
    let china = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    china
        .timestamp_micros(micros)
        .single()
        .map_or(NaiveDate::MIN, |t| t.date_naive())
}

/// An alert's id as a transfer names it: `CODE|institution|subject|period`.
pub fn alert_id(key: &FindingKey) -> String {
    format!(
        "{}|{}|{}|{}",
        key.code.code(),
        key.institution,
        key.subject,
        key.period
    )
}

fn parse_alert_id(id: &str) -> Result<FindingKey> {
    let bad = || {
        Error::invalid(
            "matter_id",
            "an alert is named `CODE|institution|subject|period`",
        )
    };
    let mut parts = id.splitn(4, '|');
    let code = RuleCode::from_code(parts.next().ok_or_else(bad)?).ok_or_else(bad)?;
    let institution = parts.next().ok_or_else(bad)?.to_owned();
    let subject = parts.next().ok_or_else(bad)?.to_owned();
    let period = parts.next().ok_or_else(bad)?.to_owned();
    Ok(FindingKey {
        code,
        institution,
        subject,
        period,
    })
}

pub(super) fn date(row: &AnyRow, name: &str) -> Result<NaiveDate> {
    q::text(row, name)?
        .parse()
        .map_err(|_| Error::Internal(format!("a stored {name} is not a date")))
}

pub(super) fn decode_item(row: &AnyRow) -> Result<LedgerItem> {
    let finding = match q::opt_text(row, "finding_code")? {
        Some(code) => Some(FindingKey {
            code: RuleCode::from_code(&code)
                .ok_or_else(|| Error::Internal("a stored rule code is unknown".into()))?,
            institution: q::text(row, "department_uscc")?,
            subject: q::opt_text(row, "finding_subject")?.unwrap_or_default(),
            period: q::opt_text(row, "finding_period")?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(LedgerItem {
        id: q::text(row, "id")?,
        jurisdiction: q::text(row, "jurisdiction")?,
        department: q::text(row, "department_uscc")?,
        title: q::text(row, "title")?,
        finding,
        state: q::code(row, "state")?,
        due_on: date(row, "due_on")?,
        escalation_level: column(row, "escalation_level")?,
        opened_at: column(row, "opened_at")?,
        closed_at: column(row, "closed_at")?,
        version: column(row, "version")?,
        history: Vec::new(),
        levels: Vec::new(),
    })
}

fn decode_step(row: &AnyRow) -> Result<Step> {
    Ok(Step {
        agency_id: q::text(row, "agency_id")?,
        at: column(row, "at")?,
        from_state: q::text(row, "from_state")?,
        to_state: q::text(row, "to_state")?,
        text: q::text(row, "text")?,
    })
}

pub(super) fn decode_case(row: &AnyRow) -> Result<Case> {
    Ok(Case {
        id: q::text(row, "id")?,
        jurisdiction: q::text(row, "jurisdiction")?,
        channel: q::code(row, "channel")?,
        institution: q::opt_text(row, "institution_uscc")?,
        person: q::opt_text(row, "person")?,
        text: q::text(row, "text")?,
        owner: q::text(row, "owner")?,
        state: q::code(row, "state")?,
        due_on: date(row, "due_on")?,
        escalation_level: column(row, "escalation_level")?,
        outcome: q::opt_text(row, "outcome")?,
        version: column(row, "version")?,
        opened_at: column(row, "opened_at")?,
        history: Vec::new(),
        levels: Vec::new(),
    })
}

fn decode_application(row: &AnyRow) -> Result<Application> {
    let request: ApplicationRequest = serde_json::from_str(&q::text(row, "request")?)
        .map_err(|e| Error::Internal(format!("a stored application no longer parses: {e}")))?;
    let decision = match q::opt_text(row, "decided_by")? {
        Some(by) => Some((
            q::opt_text(row, "note")?.unwrap_or_default(),
            by,
            q::opt_text(row, "registry_record")?,
        )),
        None => None,
    };
    Ok(Application {
        id: q::text(row, "id")?,
        jurisdiction: q::text(row, "jurisdiction")?,
        department: q::text(row, "department_uscc")?,
        kind: q::code(row, "kind")?,
        request,
        reason: q::text(row, "reason")?,
        state: q::code(row, "state")?,
        applied_by: q::text(row, "applied_by")?,
        override_reason: q::opt_text(row, "override_reason")?,
        override_by: q::opt_text(row, "override_by")?,
        decision,
        applied_at: column(row, "applied_at")?,
        decided_at: column(row, "decided_at")?,
    })
}

fn decode_penalty(row: &AnyRow) -> Result<Penalty> {
    Ok(Penalty {
        id: q::text(row, "id")?,
        item_id: q::text(row, "item_id")?,
        institution: q::text(row, "institution_uscc")?,
        kind: q::code(row, "kind")?,
        category: q::opt_code(row, "category")?,
        cut: u32::try_from(column::<i64>(row, "cut")?).unwrap_or_default(),
        text: q::text(row, "text")?,
        imposed_by: q::text(row, "imposed_by")?,
        imposed_at: column(row, "imposed_at")?,
    })
}

/// Refuses a caller whose jurisdiction does not oversee `jurisdiction`.
pub(super) fn oversee(agency: &Agency, jurisdiction: &str) -> Result<()> {
    let jurisdiction = Jurisdiction::parse(jurisdiction).map_err(Error::Internal)?;
    if agency.oversees(&jurisdiction) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{jurisdiction} is outside the jurisdiction of {agency}"
        )))
    }
}

fn refused(refusal: MoveRefused, agency: &Agency, from: ItemState, action: ItemAction) -> Error {
    match refusal {
        MoveRefused::NotForAgency => Error::PermissionDenied(format!(
            "{} agency may not {action} an item",
            agency.kind.with_article()
        )),
        MoveRefused::NotFromState => {
            Error::FailedPrecondition(format!("an item in state {from} cannot {action}"))
        }
    }
}

pub(super) async fn insert_step(
    tx: &mut Tx,
    table: &str,
    key: &str,
    id: &str,
    step: &Step,
) -> Result<()> {
    // The next number after the matter's last step; the matter's lock (or SQLite's one writer)
    // keeps two moves from taking the same one.
    let sql = format!(
        "INSERT INTO {table} ({key}, seq, agency_id, at, from_state, to_state, text) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 FROM {table} WHERE {key} = $1"
    );
    sqlx::query_with(
        sqlx::AssertSqlSafe(sql),
        bind_all(vec![
            Value::from(id),
            Value::from(step.agency_id.as_str()),
            Value::Int(step.at),
            Value::from(step.from_state.as_str()),
            Value::from(step.to_state.as_str()),
            Value::from(step.text.as_str()),
        ])?,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn steps(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    table: &str,
    key: &str,
    id: &str,
) -> Result<Vec<Step>> {
    let sql = format!("SELECT * FROM {table} WHERE {key} = $1 ORDER BY seq");
    sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(vec![Value::from(id)])?)
        .fetch_all(executor)
        .await?
        .iter()
        .map(decode_step)
        .collect()
}

/// Refuses to close an item opened from a finding while the data still shows the finding; read
/// in the closing transaction, under the institution's lock.
pub(super) async fn refuse_while_shown(tx: &mut Tx, finding: Option<&FindingKey>) -> Result<()> {
    let Some(key) = finding else {
        return Ok(());
    };
    let still_shown = sqlx::query_with(
        "SELECT state FROM findings WHERE code = $1 AND institution_uscc = $2 AND subject = $3 AND period = $4",
        bind_all(vec![
            Value::from(key.code.code()),
            Value::from(key.institution.as_str()),
            Value::from(key.subject.as_str()),
            Value::from(key.period.as_str()),
        ])?,
    )
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| q::text(&row, "state"))
    .transpose()?
    .is_some_and(|state| state == "OPEN");
    if still_shown {
        return Err(Error::FailedPrecondition(format!(
            "the data still shows the finding {}; the item closes once it is resolved",
            alert_id(key)
        )));
    }
    Ok(())
}

/// A matter's steps, oldest first, read in `executor` (a move's transaction sees its own step).
pub(super) async fn steps_of(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    chained: Chained,
    id: &str,
) -> Result<Vec<Step>> {
    steps(executor, chained.steps_table(), chained.key(), id).await
}

/// The item not yet closed that a finding has, if any (one matter, one account: at most one).
pub(super) async fn open_item_of(tx: &mut Tx, key: &FindingKey) -> Result<Option<String>> {
    sqlx::query_with(
        "SELECT id FROM ledger_items WHERE finding_code = $1 AND department_uscc = $2 \
         AND finding_subject = $3 AND finding_period = $4 AND state <> 'CLOSED'",
        bind_all(vec![
            Value::from(key.code.code()),
            Value::from(key.institution.as_str()),
            Value::from(key.subject.as_str()),
            Value::from(key.period.as_str()),
        ])?,
    )
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| q::text(&row, "id"))
    .transpose()
}

/// What an item is opened with, once checked.
pub(super) struct Opening<'a> {
    /// The department's jurisdiction.
    pub jurisdiction: &'a str,
    /// The department.
    pub department: &'a str,
    /// What is wrong.
    pub title: String,
    /// When it is due.
    pub due_on: NaiveDate,
    /// The finding it is opened from.
    pub finding: Option<&'a FindingKey>,
}

/// Inserts an item and its first step in `tx`, which holds the department's lock: the one way an
/// item is opened, by hand (`Store::open_item`) or for a campaign's undeclared problems.
pub(super) async fn insert_item(
    tx: &mut Tx,
    agency: &Agency,
    id: &str,
    now: i64,
    opening: Opening<'_>,
) -> Result<()> {
    let finding = opening.finding;
    sqlx::query_with(
        "INSERT INTO ledger_items (id, jurisdiction, department_uscc, title, finding_code, finding_subject, finding_period, \
         state, due_on, escalation_level, opened_by, opened_at, closed_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'OPEN', $8, 0, $9, $10, NULL, 1)",
        bind_all(vec![
            Value::from(id),
            Value::from(opening.jurisdiction),
            Value::from(opening.department),
            Value::from(opening.title.as_str()),
            Value::OptText(finding.map(|k| k.code.code().to_owned())),
            Value::OptText(finding.map(|k| k.subject.clone())),
            Value::OptText(finding.map(|k| k.period.clone())),
            Value::Text(opening.due_on.to_string()),
            Value::Text(agency.id()),
            Value::Int(now),
        ])?,
    )
    .execute(&mut **tx)
    .await?;
    let step = Step {
        agency_id: agency.id(),
        at: now,
        from_state: String::new(),
        to_state: ItemState::Open.code().to_owned(),
        text: opening.title,
    };
    insert_step(tx, "ledger_steps", "item_id", id, &step).await
}

fn hash_of(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Store {
    /// Now, by the store's clock (tests move it by hand).
    pub(super) fn now(&self) -> i64 {
        self.checks().clock.now().timestamp_micros()
    }

    /// Opens a ledger item, from a finding or by hand, in the department's jurisdiction.
    pub async fn open_item(
        &self,
        agency: &Agency,
        new: NewItem,
        key: Option<&RequestKey>,
    ) -> Result<LedgerItem> {
        let (department, title) = match &new.finding {
            Some(key) => {
                let stored = self
                    .finding(key)
                    .await?
                    .ok_or_else(|| Error::NotFound("no such finding".into()))?;
                let department = match new.department {
                    Some(uscc) if uscc.as_str() != key.institution => {
                        return Err(Error::invalid(
                            "department_uscc",
                            "an item from a finding belongs to the finding's institution",
                        ));
                    }
                    _ => key.institution.clone(),
                };
                let title = if new.title.trim().is_empty() {
                    stored.finding.explanation_zh.clone()
                } else {
                    new.title.clone()
                };
                (department, title)
            }
            None => {
                let department = new.department.clone().ok_or_else(|| {
                    Error::invalid("department_uscc", "names the responsible department")
                })?;
                if new.title.trim().is_empty() {
                    return Err(Error::invalid("title", "says what is wrong"));
                }
                (department.to_string(), new.title.clone())
            }
        };
        let jurisdiction = match new.finding.as_ref().and_then(freshness::agency_of) {
            // An agency answers for the freshness of its own data: its id is the department.
            Some(late) => late.jurisdiction,
            None => {
                let uscc =
                    Uscc::parse(&department).map_err(|r| Error::invalid("department_uscc", r))?;
                self.jurisdiction_of(&uscc)
                    .await?
                    .ok_or_else(|| Error::invalid("department_uscc", "names no division"))?
            }
        };
        oversee(agency, jurisdiction.as_str())?;
        let id = new_id("LI");
        let now = self.now();
        // The request's key and the department's lock (the one pushes take, so the finding cannot
        // change under the check below), in one acquisition.
        let locks: Vec<String> = request_lock(agency, Creates::Item, key)
            .into_iter()
            .chain([format!("institution:{department}")])
            .collect();
        let mut tx = self.begin_locked(&locks).await?;
        // Before the check of one open item per finding, which the first request's item meets.
        if let Some(first) = self.recall(&mut tx, agency, Creates::Item, key).await? {
            drop(tx);
            return self
                .item(&first)
                .await?
                .ok_or_else(|| Error::Internal("a ledger item vanished".into()));
        }
        let finding = new.finding.as_ref();
        if let Some(key) = finding
            && let Some(open) = open_item_of(&mut tx, key).await?
        {
            return Err(Error::FailedPrecondition(format!(
                "the finding already has ledger item `{open}` open"
            )));
        }
        let opening = Opening {
            jurisdiction: jurisdiction.as_str(),
            department: &department,
            title,
            due_on: new.due_on,
            finding,
        };
        insert_item(&mut tx, agency, &id, now, opening).await?;
        self.remember(&mut tx, agency, Creates::Item, key, &id)
            .await?;
        tx.commit().await?;
        self.item(&id)
            .await?
            .ok_or_else(|| Error::Internal("a ledger item vanished".into()))
    }

    /// Moves an item one step. Closing an item opened from a finding re-reads the finding in the
    /// same transaction and is refused while the data still shows it.
    pub async fn move_item(
        &self,
        agency: &Agency,
        id: &str,
        action: ItemAction,
        expected_version: i64,
        text: &str,
    ) -> Result<LedgerItem> {
        let mut tx = self.begin().await?;
        let row = sqlx::query_with(
            "SELECT * FROM ledger_items WHERE id = $1",
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no ledger item `{id}`")))?;
        let mut item = decode_item(&row)?;
        oversee(agency, &item.jurisdiction)?;
        item.levels = levels(&mut *tx, Chained::Item, id).await?;
        // The institution's lock: the same one pushes take, so a push that resolves or raises the
        // finding cannot interleave with a close.
        self.lock_keys(&mut tx, &[format!("institution:{}", item.department)])
            .await?;
        let to = ledger::check_item_move(agency.kind, item.state, action)
            .map_err(|refusal| refused(refusal, agency, item.state, action))?;
        if item.version != expected_version {
            return Err(Error::Aborted(format!(
                "the item is at version {}, not {expected_version}; read it again",
                item.version
            )));
        }
        if action == ItemAction::Submit && text.trim().is_empty() {
            return Err(Error::invalid("text", "a submission explains the fix"));
        }
        if to == ItemState::Closed {
            if !assignment::closes_by_hand(&levels_of(&item.levels)?) {
                return Err(Error::FailedPrecondition(
                    "事项已交办，须逐级确认后销号 / an assigned item closes only when every level has confirmed it (ConfirmLevel)".into(),
                ));
            }
            refuse_while_shown(&mut tx, item.finding.as_ref()).await?;
        }
        if action == ItemAction::SendBack
            && !assignment::may_send_back(agency, &levels_of(&item.levels)?)
        {
            return Err(Error::FailedPrecondition(format!(
                "事项已交办，由等待确认的一级退回 / an assigned item is sent back by the level it waits on{}",
                assignment::waiting_on(&levels_of(&item.levels)?)
                    .map(|i| format!(" ({})", item.levels[i].jurisdiction))
                    .unwrap_or_default()
            )));
        }
        let now = self.now();
        let updated = sqlx::query_with(
            "UPDATE ledger_items SET state = $2, version = version + 1, closed_at = $3 WHERE id = $1 AND version = $4",
            bind_all(vec![
                Value::from(id),
                Value::from(to.code()),
                Value::OptInt((to == ItemState::Closed).then_some(now)),
                Value::Int(item.version),
            ])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the item changed meanwhile; read it again".into(),
            ));
        }
        let step = Step {
            agency_id: agency.id(),
            at: now,
            from_state: item.state.code().to_owned(),
            to_state: to.code().to_owned(),
            text: text.to_owned(),
        };
        insert_step(&mut tx, "ledger_steps", "item_id", id, &step).await?;
        if action == ItemAction::SendBack && !item.levels.is_empty() {
            // The level that found the fix wanting undoes the round: the levels confirm again
            // from the bottom once the department submits again.
            clear_confirmations(&mut tx, Chained::Item, id).await?;
        }
        tx.commit().await?;
        self.item(id)
            .await?
            .ok_or_else(|| Error::Internal("a ledger item vanished".into()))
    }

    /// An item with its whole history.
    pub async fn item(&self, id: &str) -> Result<Option<LedgerItem>> {
        let Some(row) = sqlx::query_with(
            "SELECT * FROM ledger_items WHERE id = $1",
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(self.readers())
        .await?
        else {
            return Ok(None);
        };
        let mut item = decode_item(&row)?;
        item.history = steps(self.readers(), "ledger_steps", "item_id", id).await?;
        item.levels = levels(self.readers(), Chained::Item, id).await?;
        Ok(Some(item))
    }

    /// Items in a jurisdiction subtree, optionally of one department, without their histories.
    pub async fn items(
        &self,
        jurisdiction: &Jurisdiction,
        department: Option<&str>,
    ) -> Result<Vec<LedgerItem>> {
        sqlx::query_with(
            "SELECT * FROM ledger_items WHERE jurisdiction LIKE $1 AND ($2 = '' OR department_uscc = $2) ORDER BY id",
            bind_all(vec![
                Value::Text(format!("{}%", jurisdiction.prefix())),
                Value::from(department.unwrap_or_default()),
            ])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_item)
        .collect()
    }

    /// A page of items in a jurisdiction subtree, by id from after `after`, optionally of one
    /// department and only those overdue on `overdue_on`; without their histories.
    pub async fn items_page(
        &self,
        jurisdiction: &Jurisdiction,
        department: Option<&str>,
        overdue_on: Option<NaiveDate>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<LedgerItem>> {
        sqlx::query_with(
            "SELECT * FROM ledger_items WHERE jurisdiction LIKE $1 AND ($2 = '' OR department_uscc = $2) \
             AND ($3 = '' OR (state <> 'CLOSED' AND due_on < $3)) AND id > $4 ORDER BY id LIMIT $5",
            bind_all(vec![
                Value::Text(format!("{}%", jurisdiction.prefix())),
                Value::from(department.unwrap_or_default()),
                Value::Text(overdue_on.map(|d| d.to_string()).unwrap_or_default()),
                Value::from(after),
                Value::Int(i64::from(limit)),
            ])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_item)
        .collect()
    }

    /// The ledger's reconciliation (定期对账) of a jurisdiction subtree for `from..=to`: the same
    /// function serves the RPC and `quotahub ledger report`.
    pub async fn ledger_report(
        &self,
        jurisdiction: &Jurisdiction,
        from: Option<NaiveDate>,
        to: NaiveDate,
    ) -> Result<Vec<ReportRow>> {
        let facts: Vec<ItemFacts> = self
            .items(jurisdiction, None)
            .await?
            .into_iter()
            .map(|item| ItemFacts {
                jurisdiction: item.jurisdiction,
                department: item.department,
                opened_on: day_of(item.opened_at),
                closed_on: item.closed_at.map(day_of),
                due_on: item.due_on,
            })
            .collect();
        Ok(ledger::reconcile_ledger(&facts, from, to))
    }

    /// Applies for a department. While the department has overdue items the application is
    /// refused, unless the staffing office records an override with its reason.
    // The request's fields one by one, as the RPC gives them, and its idempotency key.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply(
        &self,
        agency: &Agency,
        department: &Uscc,
        kind: ApplicationKind,
        request: ApplicationRequest,
        reason: &str,
        override_reason: Option<&str>,
        key: Option<&RequestKey>,
    ) -> Result<Application> {
        if override_reason.is_some() && agency.kind != AgencyKind::StaffingOffice {
            return Err(Error::PermissionDenied(
                "only the staffing office may override the gate of overdue items".into(),
            ));
        }
        let jurisdiction = self
            .institution(department)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no institution {department} in the registry")))?
            .record
            .jurisdiction;
        oversee(agency, jurisdiction.as_str())?;
        let today = self.checks().clock.today();
        let locks: Vec<String> = request_lock(agency, Creates::Application, key)
            .into_iter()
            .chain([format!("institution:{department}")])
            .collect();
        let mut tx = self.begin_locked(&locks).await?;
        // Before the gate: a resend answers the first result even if items fell overdue since.
        if let Some(first) = self
            .recall(&mut tx, agency, Creates::Application, key)
            .await?
        {
            drop(tx);
            return self
                .application(&first)
                .await?
                .ok_or_else(|| Error::Internal("an application vanished".into()));
        }
        let overdue: Vec<OverdueItem> = sqlx::query_with(
            "SELECT * FROM ledger_items WHERE department_uscc = $1 AND state <> 'CLOSED' AND due_on < $2 ORDER BY due_on, id",
            bind_all(vec![
                Value::from(department.as_str()),
                Value::Text(today.to_string()),
            ])?,
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(decode_item)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .map(|item| OverdueItem {
            id: item.id,
            due_on: item.due_on,
            title: item.title,
        })
        .collect();
        if !overdue.is_empty() && override_reason.is_none() {
            return Err(Error::OverdueItems(overdue));
        }
        let id = new_id("AP");
        let request_json = serde_json::to_string(&request)
            .map_err(|e| Error::Internal(format!("cannot write an application: {e}")))?;
        // An override is recorded only where it was needed to pass.
        let overridden = (!overdue.is_empty()).then_some(override_reason).flatten();
        sqlx::query_with(
            "INSERT INTO applications (id, jurisdiction, department_uscc, kind, request, reason, state, applied_by, applied_at, override_reason, override_by) \
             VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7, $8, $9, $10)",
            bind_all(vec![
                Value::from(id.as_str()),
                Value::from(jurisdiction.as_str()),
                Value::from(department.as_str()),
                Value::from(kind.code()),
                Value::Text(request_json),
                Value::from(reason),
                Value::Text(agency.id()),
                Value::Int(self.now()),
                Value::OptText(overridden.map(str::to_owned)),
                Value::OptText(overridden.map(|_| agency.id())),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        self.remember(&mut tx, agency, Creates::Application, key, &id)
            .await?;
        tx.commit().await?;
        self.application(&id)
            .await?
            .ok_or_else(|| Error::Internal("an application vanished".into()))
    }

    /// One application with its decision.
    pub async fn application(&self, id: &str) -> Result<Option<Application>> {
        sqlx::query_with(
            "SELECT a.*, d.note, d.decided_by, d.decided_at, d.registry_record FROM applications a \
             LEFT JOIN application_decisions d ON d.application_id = a.id WHERE a.id = $1",
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(self.readers())
        .await?
        .as_ref()
        .map(decode_application)
        .transpose()
    }

    /// Decides an application. An approval of a quota, leader posts or a hiring approval is
    /// pushed to the registry through the ordinary push path, with the application as its source
    /// (record id `application/{id}`), so the findings it changes are checked as for any push.
    ///
    /// The decision and its registry record commit together or not at all: the push joins the
    /// decision's transaction, which takes the push's locks with its own in one acquisition. The
    /// decision is claimed by a conditional update from PENDING, so of two concurrent decisions
    /// only one is made; a push that is refused leaves the application PENDING.
    pub async fn decide(
        &self,
        agency: &Agency,
        id: &str,
        approve: bool,
        note: &str,
    ) -> Result<Application> {
        let application = self
            .application(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no application `{id}`")))?;
        oversee(agency, &application.jurisdiction)?;
        if application.state != ApplicationState::Pending {
            return Err(Error::FailedPrecondition(format!(
                "the application is already {}",
                application.state
            )));
        }
        let decided = if approve {
            ApplicationState::Approved
        } else {
            ApplicationState::Rejected
        };
        let change = if approve {
            self.approved_change(&application).await?
        } else {
            None
        };
        let mut locks = vec![format!("institution:{}", application.department)];
        if let Some(change) = &change {
            locks.extend(change.lock_keys(agency));
        }
        let mut tx = self.begin_locked(&locks).await?;
        let claimed = sqlx::query_with(
            "UPDATE applications SET state = $2 WHERE id = $1 AND state = 'PENDING'",
            bind_all(vec![Value::from(id), Value::from(decided.code())])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Err(Error::Aborted(
                "the application was decided meanwhile; read it again".into(),
            ));
        }
        if let Some(change) = &change {
            change.push_in(self, &mut tx, agency).await?;
        }
        sqlx::query_with(
            "INSERT INTO application_decisions (application_id, approved, note, decided_by, decided_at, registry_record) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            bind_all(vec![
                Value::from(id),
                Value::from(approve),
                Value::from(note),
                Value::Text(agency.id()),
                Value::Int(self.now()),
                Value::OptText(change.as_ref().map(|c| c.registry_record(agency))),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if change.is_some() {
            self.feed_changed();
        }
        self.application(id)
            .await?
            .ok_or_else(|| Error::Internal("an application vanished".into()))
    }

    /// The registry record an approved application makes: a quota, leader posts, a hiring
    /// approval, or a new version of the department's institution (abolished, merged, regraded).
    /// `None` for a set-up, which is recorded only.
    async fn approved_change(&self, application: &Application) -> Result<Option<RegistryChange>> {
        let today = self.checks().clock.today();
        let record_id = format!("application/{}", application.id);
        let institution = Uscc::parse(&application.department).map_err(Error::Internal)?;
        let request = &application.request;
        let document = format!("application {}", application.id);
        let category = || {
            request
                .category
                .as_deref()
                .and_then(QuotaCategory::from_code)
                .ok_or_else(|| Error::invalid("category", "the application names no category"))
        };
        let hash = hash_of(&format!("{}{:?}", application.id, request));
        Ok(Some(match application.kind {
            ApplicationKind::ChangeQuota => RegistryChange::Quota(Submission {
                record_id: record_id.clone(),
                content_hash: hash.clone(),
                record: Quota {
                    institution,
                    category: category()?,
                    approved_count: request.count,
                    effective_from: today,
                    effective_to: None,
                    approval_document: document,
                },
            }),
            ApplicationKind::ChangeLeaderPosts => {
                let level = request
                    .level
                    .as_deref()
                    .and_then(LeaderLevel::from_code)
                    .ok_or_else(|| Error::invalid("level", "the application names no level"))?;
                let position = request
                    .position
                    .as_deref()
                    .and_then(LeaderPosition::from_code)
                    .ok_or_else(|| {
                        Error::invalid("position", "the application names no position")
                    })?;
                RegistryChange::LeaderPost(Submission {
                    record_id: record_id.clone(),
                    content_hash: hash.clone(),
                    record: LeaderPost {
                        institution,
                        level,
                        position,
                        approved_count: request.count,
                        effective_from: today,
                        effective_to: None,
                        approval_document: document,
                    },
                })
            }
            ApplicationKind::HiringApproval => RegistryChange::HiringApproval(Submission {
                record_id: record_id.clone(),
                content_hash: hash.clone(),
                record: HiringApproval {
                    approval_number: document,
                    institution,
                    category: category()?,
                    approved_entries: request.count,
                    issued_on: today,
                    valid_until: request
                        .valid_until
                        .as_deref()
                        .and_then(|d| d.parse().ok())
                        .unwrap_or(today),
                },
            }),
            ApplicationKind::Abolish | ApplicationKind::Merge | ApplicationKind::ChangeGrade => {
                // A new version of the department's registry record.
                let mut record = self
                    .institution(&institution)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no institution {institution}")))?
                    .record;
                match application.kind {
                    ApplicationKind::Abolish => record.status = InstitutionStatus::Abolished,
                    ApplicationKind::Merge => record.status = InstitutionStatus::Merged,
                    _ => {
                        record.grade = request
                            .grade
                            .as_deref()
                            .and_then(Grade::from_code)
                            .ok_or_else(|| {
                                Error::invalid("grade", "the application names no grade")
                            })?;
                    }
                }
                if application.kind != ApplicationKind::ChangeGrade {
                    record.status_since = Some(today);
                }
                record.approval_document = document;
                RegistryChange::Institution(Submission {
                    record_id: record_id.clone(),
                    content_hash: hash.clone(),
                    record,
                })
            }
            // A new institution's whole record is pushed with StaffingService.PushInstitution.
            ApplicationKind::SetUp => return Ok(None),
        }))
    }

    /// Penalizes the department of a ledger item. A cut of vacant quota (核减空余编制) pushes the
    /// lowered quota, in force from today, through the push path (record id `penalty/{id}`) in the
    /// penalty's own transaction: the penalty and the cut commit together or not at all, and the
    /// scope re-check that comes with the push sees the cut at once.
    // The request's fields one by one, as the RPC gives them, and its idempotency key.
    #[allow(clippy::too_many_arguments)]
    pub async fn impose_penalty(
        &self,
        agency: &Agency,
        item_id: &str,
        kind: PenaltyKind,
        category: Option<QuotaCategory>,
        cut: u32,
        text: &str,
        key: Option<&RequestKey>,
    ) -> Result<Penalty> {
        let item = self
            .item(item_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no ledger item `{item_id}`")))?;
        oversee(agency, &item.jurisdiction)?;
        // An item about an agency's data freshness has the agency as its department.
        let institution = Uscc::parse(&item.department).map_err(|_| {
            Error::FailedPrecondition(format!(
                "ledger item `{item_id}` is about agency `{}`'s data, not an institution: no quota to cut",
                item.department
            ))
        })?;
        let of_institution = &institution;
        let first_penalty = |first: String| async move {
            self.penalties(of_institution)
                .await?
                .into_iter()
                .find(|p| p.id == first)
                .ok_or_else(|| Error::Internal("a penalty vanished".into()))
        };
        // A resend answers the first penalty before the cut is worked out again from the quota
        // the first one lowered.
        if let Some(first) = self.recalled(agency, Creates::Penalty, key).await? {
            return first_penalty(first).await;
        }
        let id = new_id("PE");
        let today = self.checks().clock.today();
        let (category, cut, change) = match kind {
            PenaltyKind::CutVacantQuota => {
                let category = category
                    .ok_or_else(|| Error::invalid("category", "a cut names the quota category"))?;
                let view = self
                    .institution_view(&institution, today)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no institution {institution}")))?;
                let occupancy = view
                    .categories
                    .iter()
                    .find(|c| c.category == category)
                    .and_then(|c| c.quota.as_ref().map(|q| (q, c.active)))
                    .ok_or_else(|| {
                        Error::FailedPrecondition(format!(
                            "{institution} has no {category} quota in force"
                        ))
                    })?;
                let (quota, active) = occupancy;
                let lowered = ledger::quota_after_cut(quota.record.approved_count, active, cut)
                    .map_err(|reason| Error::invalid("cut", reason))?;
                let record_id = format!("penalty/{id}");
                let change = RegistryChange::Quota(Submission {
                    content_hash: hash_of(&record_id),
                    record_id,
                    record: Quota {
                        institution: institution.clone(),
                        category,
                        approved_count: lowered,
                        effective_from: today,
                        effective_to: quota.record.effective_to,
                        approval_document: format!("penalty {id}"),
                    },
                });
                (Some(category), cut, Some(change))
            }
            PenaltyKind::Admonition => (None, 0, None),
        };
        let now = self.now();
        let mut locks: Vec<String> = request_lock(agency, Creates::Penalty, key)
            .into_iter()
            .chain([format!("institution:{institution}")])
            .collect();
        if let Some(change) = &change {
            locks.extend(change.lock_keys(agency));
        }
        let mut tx = self.begin_locked(&locks).await?;
        // Of two concurrent resends, the second finds the first here and pushes nothing.
        if let Some(first) = self.recall(&mut tx, agency, Creates::Penalty, key).await? {
            drop(tx);
            return first_penalty(first).await;
        }
        if let Some(change) = &change {
            change.push_in(self, &mut tx, agency).await?;
        }
        sqlx::query_with(
            "INSERT INTO penalties (id, item_id, institution_uscc, kind, category, cut, text, imposed_by, imposed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            bind_all(vec![
                Value::from(id.as_str()),
                Value::from(item_id),
                Value::from(institution.as_str()),
                Value::from(kind.code()),
                Value::OptText(category.map(|c| c.code().to_owned())),
                Value::from(cut),
                Value::from(text),
                Value::Text(agency.id()),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        // The penalty is a step of the item's history too; its state does not change.
        let step = Step {
            agency_id: agency.id(),
            at: now,
            from_state: item.state.code().to_owned(),
            to_state: item.state.code().to_owned(),
            text: format!("{kind} {id}: {text}"),
        };
        insert_step(&mut tx, "ledger_steps", "item_id", item_id, &step).await?;
        self.remember(&mut tx, agency, Creates::Penalty, key, &id)
            .await?;
        tx.commit().await?;
        if change.is_some() {
            self.feed_changed();
        }
        first_penalty(id).await
    }

    /// A page of an institution's penalties, oldest first, from after `after` (the last one's
    /// imposition time and id).
    pub async fn penalties_page(
        &self,
        institution: &Uscc,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<Penalty>> {
        let (at, id) = after.unwrap_or((i64::MIN, ""));
        sqlx::query_with(
            "SELECT * FROM penalties WHERE institution_uscc = $1 AND (imposed_at > $2 OR (imposed_at = $2 AND id > $3)) \
             ORDER BY imposed_at, id LIMIT $4",
            bind_all(vec![
                Value::from(institution.as_str()),
                Value::Int(at),
                Value::from(id),
                Value::Int(i64::from(limit)),
            ])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_penalty)
        .collect()
    }

    /// An institution's penalties, oldest first.
    pub async fn penalties(&self, institution: &Uscc) -> Result<Vec<Penalty>> {
        sqlx::query_with(
            "SELECT * FROM penalties WHERE institution_uscc = $1 ORDER BY imposed_at, id",
            bind_all(vec![Value::from(institution.as_str())])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_penalty)
        .collect()
    }

    /// Takes in a public report: it becomes a case with an owner and a deadline.
    pub async fn take_report(
        &self,
        agency: &Agency,
        new: NewCase,
        key: Option<&RequestKey>,
    ) -> Result<Case> {
        oversee(agency, new.jurisdiction.as_str())?;
        let id = new_id("CA");
        let now = self.now();
        let locks: Vec<String> = request_lock(agency, Creates::Case, key)
            .into_iter()
            .collect();
        let mut tx = self.begin_locked(&locks).await?;
        if let Some(first) = self.recall(&mut tx, agency, Creates::Case, key).await? {
            drop(tx);
            return self
                .case(&first)
                .await?
                .ok_or_else(|| Error::Internal("a case vanished".into()));
        }
        sqlx::query_with(
            "INSERT INTO cases (id, jurisdiction, channel, institution_uscc, person, text, owner, state, due_on, escalation_level, outcome, opened_by, opened_at, closed_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'RECEIVED', $8, 0, NULL, $9, $10, NULL, 1)",
            bind_all(vec![
                Value::from(id.as_str()),
                Value::from(new.jurisdiction.as_str()),
                Value::from(new.channel.code()),
                Value::OptText(new.institution.as_ref().map(ToString::to_string)),
                Value::OptText(new.person.clone()),
                Value::from(new.text.as_str()),
                Value::from(new.owner.as_str()),
                Value::Text(new.due_on.to_string()),
                Value::Text(agency.id()),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        let step = Step {
            agency_id: agency.id(),
            at: now,
            from_state: String::new(),
            to_state: CaseState::Received.code().to_owned(),
            text: format!("{} report; owner {}", new.channel, new.owner),
        };
        insert_step(&mut tx, "case_steps", "case_id", &id, &step).await?;
        self.remember(&mut tx, agency, Creates::Case, key, &id)
            .await?;
        tx.commit().await?;
        self.case(&id)
            .await?
            .ok_or_else(|| Error::Internal("a case vanished".into()))
    }

    /// Moves a case; closing it needs a written outcome. An assigned case is worked only by the
    /// office that holds it (the bottom of its chain) and closes only by its levels'
    /// confirmations (`Store::confirm_case_level`).
    pub async fn move_case(
        &self,
        agency: &Agency,
        id: &str,
        to: CaseState,
        expected_version: i64,
        text: &str,
    ) -> Result<Case> {
        let case = self
            .case(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no case `{id}`")))?;
        oversee(agency, &case.jurisdiction)?;
        if !ledger::case_move_allowed(agency.kind, case.state, to) {
            return Err(Error::FailedPrecondition(format!(
                "{} agency cannot move a case from {} to {to}",
                agency.kind.with_article(),
                case.state
            )));
        }
        let chain = levels_of(&case.levels)?;
        if to == CaseState::Closed && !assignment::closes_by_hand(&chain) {
            return Err(Error::FailedPrecondition(
                "案件已交办，须逐级确认后办结 / an assigned case closes only when every level has confirmed it (ConfirmCaseLevel)".into(),
            ));
        }
        if let Err(holder) = assignment::check_work(agency, &chain) {
            return Err(Error::FailedPrecondition(format!(
                "案件由 {holder} 承办 / the case is held by {holder}, whose office works it"
            )));
        }
        if to == CaseState::Closed && text.trim().is_empty() {
            return Err(Error::invalid(
                "text",
                "a case closes with its written outcome",
            ));
        }
        let now = self.now();
        let mut tx = self.begin().await?;
        let updated = sqlx::query_with(
            "UPDATE cases SET state = $2, version = version + 1, outcome = $3, closed_at = $4 WHERE id = $1 AND version = $5",
            bind_all(vec![
                Value::from(id),
                Value::from(to.code()),
                Value::OptText((to == CaseState::Closed).then(|| text.to_owned())),
                Value::OptInt((to == CaseState::Closed).then_some(now)),
                Value::Int(expected_version),
            ])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(format!(
                "the case is at version {}, not {expected_version}; read it again",
                case.version
            )));
        }
        let step = Step {
            agency_id: agency.id(),
            at: now,
            from_state: case.state.code().to_owned(),
            to_state: to.code().to_owned(),
            text: text.to_owned(),
        };
        insert_step(&mut tx, "case_steps", "case_id", id, &step).await?;
        tx.commit().await?;
        self.case(id)
            .await?
            .ok_or_else(|| Error::Internal("a case vanished".into()))
    }

    /// A case with its whole history.
    pub async fn case(&self, id: &str) -> Result<Option<Case>> {
        let Some(row) = sqlx::query_with(
            "SELECT * FROM cases WHERE id = $1",
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(self.readers())
        .await?
        else {
            return Ok(None);
        };
        let mut case = decode_case(&row)?;
        case.history = steps(self.readers(), "case_steps", "case_id", id).await?;
        case.levels = levels(self.readers(), Chained::Case, id).await?;
        Ok(Some(case))
    }

    /// The follow-up payload of a matter, with its whole history.
    async fn matter(&self, matter: MatterKind, id: &str) -> Result<(String, FollowUp)> {
        Ok(match matter {
            MatterKind::LedgerItem => {
                let item = self
                    .item(id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no ledger item `{id}`")))?;
                (item.jurisdiction.clone(), item_follow_up(&item))
            }
            MatterKind::Case => {
                let case = self
                    .case(id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("no case `{id}`")))?;
                (case.jurisdiction.clone(), case_follow_up(&case))
            }
            MatterKind::Alert => {
                let key = parse_alert_id(id)?;
                let stored = self
                    .finding(&key)
                    .await?
                    .ok_or_else(|| Error::NotFound("no such finding".into()))?;
                let follow_up = FollowUp {
                    matter: MatterKind::Alert.code().to_owned(),
                    id: alert_id(&key),
                    state: stored.alert.state.code().to_owned(),
                    institution: key.institution.clone(),
                    escalation_level: stored.alert.escalation_level,
                    transfer_id: String::new(),
                    text: stored.finding.explanation_zh.clone(),
                    history: Vec::new(),
                };
                (stored.jurisdiction, follow_up)
            }
            MatterKind::Campaign | MatterKind::Declaration => {
                return Err(Error::invalid(
                    "matter",
                    "a campaign or a declaration is not transferred; transfer its ledger items",
                ));
            }
        })
    }

    /// Transfers a matter to the discipline agency of its jurisdiction, or opens it as a joint
    /// inspection: one receipt per agency kind reached, and a TRANSFERRED event on the feed that
    /// only those kinds see, carrying the matter's whole history.
    // The request's fields one by one, as the RPC gives them, and its idempotency key.
    #[allow(clippy::too_many_arguments)]
    pub async fn transfer(
        &self,
        agency: &Agency,
        kind: TransferKind,
        matter: MatterKind,
        matter_id: &str,
        agencies: &[AgencyKind],
        text: &str,
        key: Option<&RequestKey>,
    ) -> Result<Transfer> {
        let reach =
            ledger::transfer_reach(kind, agencies).map_err(|r| Error::invalid("agencies", r))?;
        let (jurisdiction, mut follow_up) = self.matter(matter, matter_id).await?;
        oversee(agency, &jurisdiction)?;
        let id = new_id("TR");
        follow_up.transfer_id.clone_from(&id);
        follow_up.text = text.to_owned();
        let now = self.now();
        let locks: Vec<String> = request_lock(agency, Creates::Transfer, key)
            .into_iter()
            .collect();
        let mut tx = self.begin_locked(&locks).await?;
        if let Some(first) = self.recall(&mut tx, agency, Creates::Transfer, key).await? {
            drop(tx);
            return self
                .transfer_record(&first)
                .await?
                .ok_or_else(|| Error::Internal("a transfer vanished".into()));
        }
        sqlx::query_with(
            "INSERT INTO transfers (id, jurisdiction, kind, subject_kind, subject_id, text, sent_by, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            bind_all(vec![
                Value::from(id.as_str()),
                Value::from(jurisdiction.as_str()),
                Value::from(kind.code()),
                Value::from(matter.code()),
                Value::from(matter_id),
                Value::from(text),
                Value::Text(agency.id()),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        for reached in &reach {
            sqlx::query_with(
                "INSERT INTO transfer_receipts (transfer_id, agency_kind, acknowledged_by, acknowledged_at) VALUES ($1, $2, NULL, NULL)",
                bind_all(vec![Value::from(id.as_str()), Value::from(reached.slug())])?,
            )
            .execute(&mut *tx)
            .await?;
        }
        append_follow_up(
            self,
            &mut tx,
            FeedEventType::Transferred,
            (&jurisdiction, &ledger::reach_text(&reach), ""),
            &follow_up,
        )
        .await?;
        self.remember(&mut tx, agency, Creates::Transfer, key, &id)
            .await?;
        tx.commit().await?;
        self.feed_changed();
        self.transfer_record(&id)
            .await?
            .ok_or_else(|| Error::Internal("a transfer vanished".into()))
    }

    /// A transfer with its receipts.
    pub async fn transfer_record(&self, id: &str) -> Result<Option<Transfer>> {
        let Some(row) = sqlx::query_with(
            "SELECT * FROM transfers WHERE id = $1",
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(self.readers())
        .await?
        else {
            return Ok(None);
        };
        Ok(self.with_receipts(vec![row]).await?.pop())
    }

    /// Transfers' rows with their receipts, read in one statement.
    async fn with_receipts(&self, rows: Vec<AnyRow>) -> Result<Vec<Transfer>> {
        let mut transfers = rows
            .iter()
            .map(|row| {
                Ok(Transfer {
                    id: q::text(row, "id")?,
                    kind: q::code(row, "kind")?,
                    matter: q::code(row, "subject_kind")?,
                    matter_id: q::text(row, "subject_id")?,
                    jurisdiction: q::text(row, "jurisdiction")?,
                    text: q::text(row, "text")?,
                    sent_by: q::text(row, "sent_by")?,
                    sent_at: column(row, "sent_at")?,
                    receipts: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if transfers.is_empty() {
            return Ok(transfers);
        }
        let list: Vec<String> = (1..=transfers.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT * FROM transfer_receipts WHERE transfer_id IN ({}) ORDER BY transfer_id, agency_kind",
            list.join(", ")
        );
        let receipts = sqlx::query_with(
            sqlx::AssertSqlSafe(sql),
            bind_all(
                transfers
                    .iter()
                    .map(|t| Value::from(t.id.as_str()))
                    .collect(),
            )?,
        )
        .fetch_all(self.readers())
        .await?;
        let by_id: std::collections::HashMap<String, usize> = transfers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        for r in &receipts {
            let kind = AgencyKind::from_slug(&q::text(r, "agency_kind")?)
                .ok_or_else(|| Error::Internal("a stored agency kind is unknown".into()))?;
            let receipt = (
                kind,
                q::opt_text(r, "acknowledged_by")?,
                column(r, "acknowledged_at")?,
            );
            if let Some(&i) = by_id.get(&q::text(r, "transfer_id")?) {
                transfers[i].receipts.push(receipt);
            }
        }
        Ok(transfers)
    }

    /// A page of transfers in a jurisdiction subtree, by id (the order they were sent) from
    /// after `after`, with their receipts.
    pub async fn transfers_page(
        &self,
        jurisdiction: &Jurisdiction,
        filter: &TransferFilter,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Transfer>> {
        let mut values = vec![
            Value::Text(format!("{}%", jurisdiction.prefix())),
            Value::from(after),
        ];
        let mut sql =
            String::from("SELECT t.* FROM transfers t WHERE t.jurisdiction LIKE $1 AND t.id > $2");
        if let Some(kind) = filter.reaching {
            values.push(Value::from(kind.slug()));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM transfer_receipts r WHERE r.transfer_id = t.id AND r.agency_kind = ${})",
                values.len()
            ));
        }
        if filter.unacknowledged_only {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM transfer_receipts u WHERE u.transfer_id = t.id AND u.acknowledged_by IS NULL)",
            );
        }
        if let Some(kind) = filter.kind {
            values.push(Value::from(kind.code()));
            sql.push_str(&format!(" AND t.kind = ${}", values.len()));
        }
        if let Some(matter) = filter.matter {
            values.push(Value::from(matter.code()));
            sql.push_str(&format!(" AND t.subject_kind = ${}", values.len()));
        }
        sql.push_str(&filter.sent.sql("t.sent_at", &mut values));
        values.push(Value::Int(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY t.id LIMIT ${}", values.len()));
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(self.readers())
            .await?;
        self.with_receipts(rows).await
    }

    /// A page of cases in a jurisdiction subtree, by id (the order they were taken in) from after
    /// `after`, without their histories.
    pub async fn cases_page(
        &self,
        jurisdiction: &Jurisdiction,
        filter: &CaseFilter,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Case>> {
        let mut values = vec![
            Value::Text(format!("{}%", jurisdiction.prefix())),
            Value::from(after),
        ];
        let mut sql = String::from("SELECT * FROM cases WHERE jurisdiction LIKE $1 AND id > $2");
        if let Some(state) = filter.state {
            values.push(Value::from(state.code()));
            sql.push_str(&format!(" AND state = ${}", values.len()));
        }
        if let Some(institution) = &filter.institution {
            values.push(Value::from(institution.as_str()));
            sql.push_str(&format!(" AND institution_uscc = ${}", values.len()));
        }
        if let Some(day) = filter.overdue_on {
            values.push(Value::Text(day.to_string()));
            sql.push_str(&format!(
                " AND state <> 'CLOSED' AND due_on < ${}",
                values.len()
            ));
        }
        sql.push_str(&filter.opened.sql("opened_at", &mut values));
        values.push(Value::Int(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY id LIMIT ${}", values.len()));
        sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(self.readers())
            .await?
            .iter()
            .map(decode_case)
            .collect()
    }

    /// A page of applications in a jurisdiction subtree with their decisions, by id (the order
    /// they were filed) from after `after`.
    pub async fn applications_page(
        &self,
        jurisdiction: &Jurisdiction,
        filter: &ApplicationFilter,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Application>> {
        let mut values = vec![
            Value::Text(format!("{}%", jurisdiction.prefix())),
            Value::from(after),
        ];
        let mut sql = String::from(
            "SELECT a.*, d.note, d.decided_by, d.decided_at, d.registry_record FROM applications a \
             LEFT JOIN application_decisions d ON d.application_id = a.id \
             WHERE a.jurisdiction LIKE $1 AND a.id > $2",
        );
        if let Some(state) = filter.state {
            values.push(Value::from(state.code()));
            sql.push_str(&format!(" AND a.state = ${}", values.len()));
        }
        if let Some(kind) = filter.kind {
            values.push(Value::from(kind.code()));
            sql.push_str(&format!(" AND a.kind = ${}", values.len()));
        }
        if let Some(department) = &filter.department {
            values.push(Value::from(department.as_str()));
            sql.push_str(&format!(" AND a.department_uscc = ${}", values.len()));
        }
        sql.push_str(&filter.applied.sql("a.applied_at", &mut values));
        values.push(Value::Int(i64::from(limit)));
        sql.push_str(&format!(" ORDER BY a.id LIMIT ${}", values.len()));
        sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(self.readers())
            .await?
            .iter()
            .map(decode_application)
            .collect()
    }

    /// Acknowledges receipt of a transfer for the caller's agency kind (idempotent). The first
    /// acknowledgement of each kind is a RECEIPT_ACKNOWLEDGED event that only the sender's agency
    /// kind sees, so the transferring office learns it on its feed.
    pub async fn acknowledge_receipt(&self, agency: &Agency, id: &str) -> Result<Transfer> {
        let transfer = self
            .transfer_record(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no transfer `{id}`")))?;
        oversee(agency, &transfer.jurisdiction)?;
        if !transfer
            .receipts
            .iter()
            .any(|(kind, _, _)| *kind == agency.kind)
        {
            return Err(Error::PermissionDenied(format!(
                "transfer `{id}` does not reach {} agency",
                agency.kind.with_article()
            )));
        }
        let (_, mut follow_up) = self.matter(transfer.matter, &transfer.matter_id).await?;
        follow_up.transfer_id.clone_from(&transfer.id);
        follow_up.text = format!("receipt acknowledged by {}", agency.id());
        // The sender has the history; the acknowledgement carries none.
        follow_up.history = Vec::new();
        let mut tx = self.begin().await?;
        let acknowledged = sqlx::query_with(
            "UPDATE transfer_receipts SET acknowledged_by = $3, acknowledged_at = $4 \
             WHERE transfer_id = $1 AND agency_kind = $2 AND acknowledged_by IS NULL",
            bind_all(vec![
                Value::from(id),
                Value::from(agency.kind.slug()),
                Value::Text(agency.id()),
                Value::Int(self.now()),
            ])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if acknowledged > 0 {
            let sent_by = sqlx::query_with(
                "SELECT sent_by FROM transfers WHERE id = $1",
                bind_all(vec![Value::from(id)])?,
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(Error::from)
            .and_then(|row| q::text(&row, "sent_by"))?;
            // An agency id is `jurisdiction/kind`.
            let sender = sent_by
                .rsplit_once('/')
                .and_then(|(_, slug)| AgencyKind::from_slug(slug))
                .ok_or_else(|| Error::Internal("a stored sender is not an agency id".into()))?;
            append_follow_up(
                self,
                &mut tx,
                FeedEventType::ReceiptAcknowledged,
                (&transfer.jurisdiction, &ledger::reach_text(&[sender]), ""),
                &follow_up,
            )
            .await?;
        }
        tx.commit().await?;
        if acknowledged > 0 {
            self.feed_changed();
        }
        self.transfer_record(id)
            .await?
            .ok_or_else(|| Error::Internal("a transfer vanished".into()))
    }

    /// Publishes a closed case as a bulletin, resident IDs and the person named masked, on the
    /// feed of the publisher's jurisdiction and every division under it (the warning by example).
    pub async fn publish_bulletin(
        &self,
        agency: &Agency,
        case_id: &str,
        text: &str,
        key: Option<&RequestKey>,
    ) -> Result<Bulletin> {
        let case = self
            .case(case_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no case `{case_id}`")))?;
        oversee(agency, &case.jurisdiction)?;
        if case.state != CaseState::Closed {
            return Err(Error::FailedPrecondition(
                "only a closed case is published as a bulletin".into(),
            ));
        }
        let mut text = ledger::redact(text);
        if let Some(person) = case.person.as_deref().filter(|p| !p.is_empty()) {
            text = text.replace(person, "***");
        }
        let bulletin = Bulletin {
            id: new_id("BU"),
            case_id: case_id.to_owned(),
            jurisdiction: agency.jurisdiction.to_string(),
            text,
        };
        let locks: Vec<String> = request_lock(agency, Creates::Bulletin, key)
            .into_iter()
            .collect();
        let mut tx = self.begin_locked(&locks).await?;
        if let Some(first) = self.recall(&mut tx, agency, Creates::Bulletin, key).await? {
            drop(tx);
            return self
                .bulletin(&first)
                .await?
                .ok_or_else(|| Error::Internal("a bulletin vanished".into()));
        }
        sqlx::query_with(
            "INSERT INTO bulletins (id, case_id, jurisdiction, text, published_by, published_at) VALUES ($1, $2, $3, $4, $5, $6)",
            bind_all(vec![
                Value::from(bulletin.id.as_str()),
                Value::from(case_id),
                Value::from(bulletin.jurisdiction.as_str()),
                Value::from(bulletin.text.as_str()),
                Value::Text(agency.id()),
                Value::Int(self.now()),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        let follow_up = FollowUp {
            matter: MatterKind::Case.code().to_owned(),
            id: case_id.to_owned(),
            state: case.state.code().to_owned(),
            institution: case.institution.clone().unwrap_or_default(),
            escalation_level: case.escalation_level,
            transfer_id: String::new(),
            text: bulletin.text.clone(),
            // A bulletin carries no history: the steps may name the person.
            history: Vec::new(),
        };
        append_follow_up(
            self,
            &mut tx,
            FeedEventType::Bulletin,
            (&bulletin.jurisdiction, "", agency.jurisdiction.prefix()),
            &follow_up,
        )
        .await?;
        self.remember(&mut tx, agency, Creates::Bulletin, key, &bulletin.id)
            .await?;
        tx.commit().await?;
        self.feed_changed();
        Ok(bulletin)
    }

    /// A bulletin.
    pub async fn bulletin(&self, id: &str) -> Result<Option<Bulletin>> {
        sqlx::query_with(
            "SELECT * FROM bulletins WHERE id = $1",
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(self.readers())
        .await?
        .map(|row| {
            Ok(Bulletin {
                id: q::text(&row, "id")?,
                case_id: q::text(&row, "case_id")?,
                jurisdiction: q::text(&row, "jurisdiction")?,
                text: q::text(&row, "text")?,
            })
        })
        .transpose()
    }

    /// Escalates overdue ledger items and cases as of `today`, one FOLLOW_UP_ESCALATED event per
    /// ladder step, each claimed by a conditional update as alerts' steps are. Returns the events.
    pub async fn escalate_follow_ups(&self, today: NaiveDate) -> Result<Vec<i64>> {
        let mut written = Vec::new();
        for (table, matter) in [
            ("ledger_items", MatterKind::LedgerItem),
            ("cases", MatterKind::Case),
        ] {
            let sql = format!(
                "SELECT id, due_on, escalation_level FROM {table} WHERE state <> 'CLOSED' AND escalation_level < 3 AND due_on < $1"
            );
            let due = sqlx::query_with(
                sqlx::AssertSqlSafe(sql),
                bind_all(vec![Value::Text(today.to_string())])?,
            )
            .fetch_all(self.readers())
            .await?;
            for row in &due {
                let id = q::text(row, "id")?;
                let level: i64 = column(row, "escalation_level")?;
                let target = ledger::overdue_level(date(row, "due_on")?, false, today);
                if target <= level {
                    continue;
                }
                let (jurisdiction, follow_up) = self.matter(matter, &id).await?;
                let mut tx = self.begin().await?;
                let sql = format!(
                    "UPDATE {table} SET escalation_level = $2 WHERE id = $1 AND escalation_level = $3 AND state <> 'CLOSED'"
                );
                let claimed = sqlx::query_with(
                    sqlx::AssertSqlSafe(sql),
                    bind_all(vec![
                        Value::from(id.as_str()),
                        Value::Int(target),
                        Value::Int(level),
                    ])?,
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed == 0 {
                    // Another replica climbed it first, or it was closed meanwhile.
                    tx.rollback().await?;
                    continue;
                }
                for step in level + 1..=target {
                    let event = FollowUp {
                        escalation_level: step,
                        ..follow_up.clone()
                    };
                    written.push(
                        append_follow_up(
                            self,
                            &mut tx,
                            FeedEventType::FollowUpEscalated,
                            (&jurisdiction, "", ""),
                            &event,
                        )
                        .await?,
                    );
                }
                tx.commit().await?;
                self.feed_changed();
            }
        }
        Ok(written)
    }
}

/// A registry record that a decision or a penalty makes, pushed in the decision's or penalty's
/// own transaction.
enum RegistryChange {
    /// A quota (a decided change, or a cut).
    Quota(Submission<Quota>),
    /// Leader posts.
    LeaderPost(Submission<LeaderPost>),
    /// A hiring approval.
    HiringApproval(Submission<HiringApproval>),
    /// A new version of an institution's registry record.
    Institution(Submission<Institution>),
}

impl RegistryChange {
    /// The locks its push takes, for the transaction's one acquisition.
    fn lock_keys(&self, agency: &Agency) -> Vec<String> {
        match self {
            RegistryChange::Quota(s) => push_lock_keys(agency, std::slice::from_ref(s)),
            RegistryChange::LeaderPost(s) => push_lock_keys(agency, std::slice::from_ref(s)),
            RegistryChange::HiringApproval(s) => push_lock_keys(agency, std::slice::from_ref(s)),
            RegistryChange::Institution(s) => push_lock_keys(agency, std::slice::from_ref(s)),
        }
    }

    /// How the decision names the record: `{agency}/{record id}`.
    fn registry_record(&self, agency: &Agency) -> String {
        let record_id = match self {
            RegistryChange::Quota(s) => &s.record_id,
            RegistryChange::LeaderPost(s) => &s.record_id,
            RegistryChange::HiringApproval(s) => &s.record_id,
            RegistryChange::Institution(s) => &s.record_id,
        };
        format!("{}/{record_id}", agency.id())
    }

    /// Pushes it in `tx`, which holds its locks; a refused record is the error.
    async fn push_in(&self, store: &Store, tx: &mut Tx, agency: &Agency) -> Result<()> {
        let mut verdicts = match self {
            RegistryChange::Quota(s) => store.push_in(tx, agency, std::slice::from_ref(s)).await?,
            RegistryChange::LeaderPost(s) => {
                store.push_in(tx, agency, std::slice::from_ref(s)).await?
            }
            RegistryChange::HiringApproval(s) => {
                store.push_in(tx, agency, std::slice::from_ref(s)).await?
            }
            RegistryChange::Institution(s) => {
                store.push_in(tx, agency, std::slice::from_ref(s)).await?
            }
        };
        verdicts
            .pop()
            .ok_or_else(|| Error::Internal("a push gave no verdict".into()))?
            .map(drop)
    }
}

/// A ledger item as the feed carries it.
pub fn item_follow_up(item: &LedgerItem) -> FollowUp {
    FollowUp {
        matter: MatterKind::LedgerItem.code().to_owned(),
        id: item.id.clone(),
        state: item.state.code().to_owned(),
        institution: item.department.clone(),
        escalation_level: item.escalation_level,
        transfer_id: String::new(),
        text: item.title.clone(),
        history: item.history.clone(),
    }
}

/// A case as the feed carries it.
pub fn case_follow_up(case: &Case) -> FollowUp {
    FollowUp {
        matter: MatterKind::Case.code().to_owned(),
        id: case.id.clone(),
        state: case.state.code().to_owned(),
        institution: case.institution.clone().unwrap_or_default(),
        escalation_level: case.escalation_level,
        transfer_id: String::new(),
        text: case.text.clone(),
        history: case.history.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// A matter's chain of levels (ledger_levels for items, case_levels for cases), read with the
// matter; its moves are `store::levels`.

/// A matter that can be assigned down the levels, and where its chain, steps and row are kept:
/// the two chains have the same columns and are read and moved by the same code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chained {
    /// A ledger item.
    Item,
    /// A case.
    Case,
}

impl Chained {
    /// The table of its chains.
    pub(super) fn levels_table(self) -> &'static str {
        match self {
            Chained::Item => "ledger_levels",
            Chained::Case => "case_levels",
        }
    }

    /// The table of its steps.
    pub(super) fn steps_table(self) -> &'static str {
        match self {
            Chained::Item => "ledger_steps",
            Chained::Case => "case_steps",
        }
    }

    /// The table of the matters themselves.
    pub(super) fn matters_table(self) -> &'static str {
        match self {
            Chained::Item => "ledger_items",
            Chained::Case => "cases",
        }
    }

    /// The column naming the matter in its chain and steps.
    pub(super) fn key(self) -> &'static str {
        match self {
            Chained::Item => "item_id",
            Chained::Case => "case_id",
        }
    }

    /// What it is called in messages.
    pub(super) fn noun(self) -> &'static str {
        match self {
            Chained::Item => "ledger item",
            Chained::Case => "case",
        }
    }
}

/// A matter's chain, top first.
pub(super) async fn levels(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    chained: Chained,
    id: &str,
) -> Result<Vec<ItemLevel>> {
    let sql = format!(
        "SELECT * FROM {} WHERE {} = $1 ORDER BY depth",
        chained.levels_table(),
        chained.key()
    );
    sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(vec![Value::from(id)])?)
        .fetch_all(executor)
        .await?
        .iter()
        .map(decode_level)
        .collect()
}

fn decode_level(row: &sqlx::any::AnyRow) -> Result<ItemLevel> {
    Ok(ItemLevel {
        jurisdiction: q::text(row, "jurisdiction")?,
        assigned_by: q::text(row, "assigned_by")?,
        assigned_at: column(row, "assigned_at")?,
        confirmed_by: q::opt_text(row, "confirmed_by")?,
        confirmed_at: column(row, "confirmed_at")?,
    })
}

/// A matter's chain as the domain's rules read it.
pub(super) fn levels_of(levels: &[ItemLevel]) -> Result<Vec<assignment::Level>> {
    levels
        .iter()
        .map(|level| {
            Ok(assignment::Level {
                jurisdiction: Jurisdiction::parse(&level.jurisdiction).map_err(Error::Internal)?,
                confirmed: level.confirmed_by.is_some(),
            })
        })
        .collect()
}

/// Undoes the current round of confirmations (a send-back); the steps keep what they were.
pub(super) async fn clear_confirmations(tx: &mut Tx, chained: Chained, id: &str) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET confirmed_by = NULL, confirmed_at = NULL WHERE {} = $1",
        chained.levels_table(),
        chained.key()
    );
    sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(vec![Value::from(id)])?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_id_survives_its_text_form() {
        let key = FindingKey {
            code: RuleCode::OverQuota,
            institution: "11140100MB0000001G".into(),
            subject: "ADMINISTRATIVE".into(),
            period: String::new(),
        };
        assert_eq!(parse_alert_id(&alert_id(&key)).unwrap(), key);
        assert!(parse_alert_id("NOPE|x|y|z").is_err());
    }

    #[test]
    fn ids_made_at_once_by_two_replicas_never_collide() {
        // Two replicas in containers: each its own maker, and the same process id (1) in both.
        let (first, second) = (IdMaker::new(), IdMaker::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            for maker in [&first, &second] {
                let id = maker.make("LI");
                assert!(id.starts_with("LI-"), "{id}");
                assert!(seen.insert(id.clone()), "{id} was made twice");
            }
        }
    }
}
