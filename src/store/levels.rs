//! Assignment down the levels (交办) and closure level by level (逐级对账销号) in storage: a
//! matter's chain (an item's in `ledger_levels`, a case's in `case_levels`), the moves that extend
//! it, confirm it and send the matter back, each a step of the matter and an event on the feed for
//! the staffing offices concerned. Items and cases go through the same code here; what differs
//! (which table, how the matter is read and locked, what closing it writes) is [`Chained`]'s and
//! [`Held`]'s. The rules are [`crate::domain::assignment`]'s; a move is taken under the matter's
//! lock and its version, as the ledger's other moves are.

use chrono::NaiveDate;

use super::feed::{FeedEventType, FollowUp, append_follow_up};
use super::ledger::{
    Case, Chained, ItemLevel, LedgerItem, Step, case_follow_up, clear_confirmations, decode_case,
    decode_item, insert_step, item_follow_up, levels, levels_of, oversee, refuse_while_shown,
    steps_of,
};
use super::query as q;
use super::{Store, Tx, Value, bind_all};
use crate::domain::assignment::{self, AssignedFacts, Level, LevelRow, MatterState};
use crate::domain::findings::FindingKey;
use crate::domain::ledger::reach_text;
use crate::domain::{Agency, AgencyKind, Jurisdiction};
use crate::error::{Error, Result};

/// The staffing offices concerned with a matter's levels: the feed shows the event in the
/// matter's division, so every level of the chain (each lies above it or is it) sees it.
fn office_reach() -> String {
    reach_text(&[AgencyKind::StaffingOffice])
}

/// A matter read for a move of its chain, under its lock: what the rules, the step and the feed
/// need of it.
struct Held {
    /// An item or a case.
    chained: Chained,
    /// Its id.
    id: String,
    /// Its division (for an item, its department's).
    jurisdiction: String,
    /// Where it stands.
    state: MatterState,
    /// The version the move was asked from (and found).
    version: i64,
    /// Its chain, top first.
    levels: Vec<ItemLevel>,
    /// The finding an item was opened from: the top's confirmation waits until the data no
    /// longer shows it.
    finding: Option<FindingKey>,
    /// The matter as the feed carries it, before the move.
    follow_up: FollowUp,
}

impl Held {
    fn chain(&self) -> Result<Vec<Level>> {
        levels_of(&self.levels)
    }

    fn matter_jurisdiction(&self) -> Result<Jurisdiction> {
        Jurisdiction::parse(&self.jurisdiction).map_err(Error::Internal)
    }
}

/// A refused assignment as an error: the caller's kind or reach is a permission, the target a
/// field of the request, the rest the matter's state.
fn assign_refused(refusal: &assignment::AssignRefused) -> Error {
    use assignment::AssignRefused as R;
    match refusal {
        R::NotStaffingOffice | R::Outside => Error::PermissionDenied(refusal.explain()),
        R::NotDirectlyBelow | R::NotInTarget => Error::invalid("to", refusal.explain()),
        _ => Error::FailedPrecondition(refusal.explain()),
    }
}

/// A refused confirmation as an error: an office that is no level of the chain is refused the
/// permission; confirming out of order or before the work is done is the matter's state.
fn confirm_refused(refusal: &assignment::ConfirmRefused) -> Error {
    use assignment::ConfirmRefused as R;
    match refusal {
        R::NotStaffingOffice | R::NotALevel => Error::PermissionDenied(refusal.explain()),
        _ => Error::FailedPrecondition(refusal.explain()),
    }
}

impl Store {
    /// Reads a matter for a move of its chain, under its lock, with its chain; refused unless
    /// it is at `expected_version`.
    async fn hold(
        &self,
        agency: &Agency,
        chained: Chained,
        id: &str,
        expected_version: i64,
    ) -> Result<(Tx, Held)> {
        let mut tx = self.begin().await?;
        let select = format!("SELECT * FROM {} WHERE id = $1", chained.matters_table());
        let missing = || Error::NotFound(format!("no {} `{id}`", chained.noun()));
        let mut held = match chained {
            Chained::Item => {
                let row = sqlx::query_with(
                    sqlx::AssertSqlSafe(select),
                    bind_all(vec![Value::from(id)])?,
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(missing)?;
                let item = decode_item(&row)?;
                oversee(agency, &item.jurisdiction)?;
                // The lock pushes take, as MoveItem does: a close re-reads the item's finding.
                self.lock_keys(&mut tx, &[format!("institution:{}", item.department)])
                    .await?;
                Held {
                    chained,
                    id: item.id.clone(),
                    jurisdiction: item.jurisdiction.clone(),
                    state: item.state.into(),
                    version: item.version,
                    levels: Vec::new(),
                    finding: item.finding.clone(),
                    follow_up: item_follow_up(&item),
                }
            }
            Chained::Case => {
                // A case touches no institution's data: its own lock keeps two moves of its
                // chain apart (on PostgreSQL; SQLite has one writer).
                self.lock_keys(&mut tx, &[format!("case:{id}")]).await?;
                let row = sqlx::query_with(
                    sqlx::AssertSqlSafe(select),
                    bind_all(vec![Value::from(id)])?,
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(missing)?;
                let case: Case = decode_case(&row)?;
                oversee(agency, &case.jurisdiction)?;
                Held {
                    chained,
                    id: case.id.clone(),
                    jurisdiction: case.jurisdiction.clone(),
                    state: case.state.into(),
                    version: case.version,
                    levels: Vec::new(),
                    finding: None,
                    follow_up: case_follow_up(&case),
                }
            }
        };
        if held.version != expected_version {
            return Err(Error::Aborted(format!(
                "expected_version: the {} is at version {}, not {expected_version}; read it again",
                chained.noun(),
                held.version
            )));
        }
        held.levels = levels(&mut *tx, chained, id).await?;
        Ok((tx, held))
    }

    /// Moves the matter's version on, with its new state; closing it stamps the time (and, for a
    /// case, keeps `outcome` as its written outcome). Refused if another move came first.
    async fn bump(
        tx: &mut Tx,
        held: &Held,
        to: MatterState,
        outcome: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let closed_at = to.closed().then_some(now);
        let (sql, mut values) = match held.chained {
            Chained::Item => (
                "UPDATE ledger_items SET state = $2, version = version + 1, closed_at = $3 WHERE id = $1 AND version = $4",
                Vec::new(),
            ),
            Chained::Case => (
                "UPDATE cases SET state = $2, version = version + 1, closed_at = $3, outcome = $5 WHERE id = $1 AND version = $4",
                vec![Value::OptText(outcome.map(str::to_owned))],
            ),
        };
        let mut bound = vec![
            Value::from(held.id.as_str()),
            Value::from(to.code()),
            Value::OptInt(closed_at),
            Value::Int(held.version),
        ];
        bound.append(&mut values);
        let updated = sqlx::query_with(sql, bind_all(bound)?)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(format!(
                "expected_version: the {} changed meanwhile; read it again",
                held.chained.noun()
            )));
        }
        Ok(())
    }

    /// Assigns a matter to the staffing office of the division directly below the caller (交办):
    /// the chain grows by that level (and by the caller's own when it is the first assignment),
    /// the matter keeps its state, and the assignment is a step and an event for the offices.
    async fn assign(
        &self,
        agency: &Agency,
        chained: Chained,
        id: &str,
        to: &Jurisdiction,
        expected_version: i64,
        text: &str,
    ) -> Result<()> {
        let (mut tx, held) = self.hold(agency, chained, id, expected_version).await?;
        let added = assignment::check_assign(
            agency,
            &held.matter_jurisdiction()?,
            held.state,
            &held.chain()?,
            to,
        )
        .map_err(|refusal| assign_refused(&refusal))?;
        let now = self.now_micros();
        let insert = format!(
            "INSERT INTO {} ({}, depth, jurisdiction, assigned_by, assigned_at, confirmed_by, confirmed_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
            chained.levels_table(),
            chained.key()
        );
        for (depth, level) in (held.levels.len()..).zip(&added) {
            sqlx::query_with(
                sqlx::AssertSqlSafe(insert.clone()),
                bind_all(vec![
                    Value::from(id),
                    Value::Int(i64::try_from(depth).unwrap_or(i64::MAX)),
                    Value::from(level.as_str()),
                    Value::Text(agency.id()),
                    Value::Int(now),
                ])?,
            )
            .execute(&mut *tx)
            .await?;
        }
        Self::bump(&mut tx, &held, held.state, None, now).await?;
        let note = format!("交办 {} → {to}", agency.jurisdiction);
        self.record_level_move(
            tx,
            &held,
            FeedEventType::Assigned,
            agency,
            held.state,
            &note,
            text,
            now,
        )
        .await
    }

    /// Confirms a matter at the caller's level (逐级对账销号): the lowest level first (its report
    /// back, 上报), then each level above; the top level's confirmation closes it — an item once
    /// the data no longer shows the finding it was opened from, a case with the top's note as
    /// its written outcome.
    async fn confirm(
        &self,
        agency: &Agency,
        chained: Chained,
        id: &str,
        expected_version: i64,
        text: &str,
    ) -> Result<()> {
        let (mut tx, held) = self.hold(agency, chained, id, expected_version).await?;
        let confirmation = assignment::check_confirm(agency, held.state, &held.chain()?)
            .map_err(|refusal| confirm_refused(&refusal))?;
        if let Some(reason) = confirmation.note_required(held.state)
            && text.trim().is_empty()
        {
            return Err(Error::invalid("text", reason));
        }
        let to = if confirmation.closes {
            refuse_while_shown(&mut tx, held.finding.as_ref()).await?;
            held.state.closing()
        } else {
            held.state
        };
        let now = self.now_micros();
        let update = format!(
            "UPDATE {} SET confirmed_by = $3, confirmed_at = $4 WHERE {} = $1 AND depth = $2 AND confirmed_by IS NULL",
            chained.levels_table(),
            chained.key()
        );
        sqlx::query_with(
            sqlx::AssertSqlSafe(update),
            bind_all(vec![
                Value::from(id),
                Value::Int(i64::try_from(confirmation.depth).unwrap_or(i64::MAX)),
                Value::Text(agency.id()),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        let outcome = (confirmation.closes && chained == Chained::Case).then(|| text.trim());
        Self::bump(&mut tx, &held, to, outcome, now).await?;
        let note = if confirmation.closes {
            format!("{} 确认销号", agency.jurisdiction)
        } else if confirmation.reports_back {
            format!("{} 上报", agency.jurisdiction)
        } else {
            format!("{} 确认", agency.jurisdiction)
        };
        self.record_level_move(
            tx,
            &held,
            FeedEventType::LevelConfirmed,
            agency,
            to,
            &note,
            text,
            now,
        )
        .await
    }

    /// Appends the move's step and event, and commits.
    // The move as its parts: what it acted on, the event, who, the state it leads to, what it
    // did and what the office wrote, when.
    #[allow(clippy::too_many_arguments)]
    async fn record_level_move(
        &self,
        mut tx: Tx,
        held: &Held,
        event_type: FeedEventType,
        agency: &Agency,
        to: MatterState,
        note: &str,
        text: &str,
        now: i64,
    ) -> Result<()> {
        let step = Step {
            agency_id: agency.id(),
            at: now,
            from_state: held.state.code().to_owned(),
            to_state: to.code().to_owned(),
            text: joined(note, text),
        };
        let chained = held.chained;
        insert_step(
            &mut tx,
            chained.steps_table(),
            chained.key(),
            &held.id,
            &step,
        )
        .await?;
        let mut follow_up = held.follow_up.clone();
        follow_up.state = step.to_state.clone();
        follow_up.text = step.text.clone();
        follow_up.history = steps_of(&mut *tx, chained, &held.id).await?;
        append_follow_up(
            self,
            &mut tx,
            event_type,
            (&held.jurisdiction, &office_reach(), ""),
            &follow_up,
        )
        .await?;
        tx.commit().await?;
        self.feed_changed();
        Ok(())
    }

    /// Assigns an item to the staffing office of the division directly below the caller (交办).
    pub async fn assign_item(
        &self,
        agency: &Agency,
        id: &str,
        to: &Jurisdiction,
        expected_version: i64,
        text: &str,
    ) -> Result<LedgerItem> {
        self.assign(agency, Chained::Item, id, to, expected_version, text)
            .await?;
        self.item_after_move(id).await
    }

    /// Confirms an item at the caller's level (逐级对账销号).
    pub async fn confirm_level(
        &self,
        agency: &Agency,
        id: &str,
        expected_version: i64,
        text: &str,
    ) -> Result<LedgerItem> {
        self.confirm(agency, Chained::Item, id, expected_version, text)
            .await?;
        self.item_after_move(id).await
    }

    /// Assigns a case to the staffing office of the division directly below the caller (交办),
    /// which investigates it; the case's division must lie in it.
    pub async fn assign_case(
        &self,
        agency: &Agency,
        id: &str,
        to: &Jurisdiction,
        expected_version: i64,
        text: &str,
    ) -> Result<Case> {
        self.assign(agency, Chained::Case, id, to, expected_version, text)
            .await?;
        self.case_after_move(id).await
    }

    /// Confirms a case at the caller's level: the office that investigates it reports back
    /// (上报, with what it found), each level above checks the report, and the top closes the
    /// case with its written outcome.
    pub async fn confirm_case_level(
        &self,
        agency: &Agency,
        id: &str,
        expected_version: i64,
        text: &str,
    ) -> Result<Case> {
        self.confirm(agency, Chained::Case, id, expected_version, text)
            .await?;
        self.case_after_move(id).await
    }

    /// Sends a case's report back to the office at the bottom of its chain (退回重办): only the
    /// level it waits on, once the bottom has reported; the round of confirmations is undone and
    /// the bottom investigates and reports again. A step, and an `ASSIGNED` event: the case is
    /// handed down again.
    pub async fn send_back_case(
        &self,
        agency: &Agency,
        id: &str,
        expected_version: i64,
        text: &str,
    ) -> Result<Case> {
        let (mut tx, held) = self
            .hold(agency, Chained::Case, id, expected_version)
            .await?;
        assignment::check_send_back(agency, held.state, &held.chain()?).map_err(|refusal| {
            match refusal {
                assignment::SendBackRefused::NotStaffingOffice
                | assignment::SendBackRefused::NotALevel => {
                    Error::PermissionDenied(refusal.explain())
                }
                _ => Error::FailedPrecondition(refusal.explain()),
            }
        })?;
        if text.trim().is_empty() {
            return Err(Error::invalid(
                "text",
                "a send-back says what the report lacks",
            ));
        }
        clear_confirmations(&mut tx, Chained::Case, id).await?;
        let now = self.now_micros();
        Self::bump(&mut tx, &held, held.state, None, now).await?;
        let bottom = held
            .levels
            .last()
            .map(|level| level.jurisdiction.clone())
            .unwrap_or_default();
        let note = format!("{} 退回 {bottom} 重办", agency.jurisdiction);
        self.record_level_move(
            tx,
            &held,
            FeedEventType::Assigned,
            agency,
            held.state,
            &note,
            text,
            now,
        )
        .await?;
        self.case_after_move(id).await
    }

    async fn item_after_move(&self, id: &str) -> Result<LedgerItem> {
        self.item(id)
            .await?
            .ok_or_else(|| Error::Internal("a ledger item vanished".into()))
    }

    async fn case_after_move(&self, id: &str) -> Result<Case> {
        self.case(id)
            .await?
            .ok_or_else(|| Error::Internal("a case vanished".into()))
    }

    /// Assigned matters (items or cases) of a jurisdiction subtree not yet closed, by the level
    /// they wait on, as of `today` (for the overdue count).
    pub async fn waiting_by_level(
        &self,
        chained: Chained,
        jurisdiction: &Jurisdiction,
        today: NaiveDate,
    ) -> Result<Vec<LevelRow>> {
        let sql = format!(
            "SELECT l.{key} AS matter_id, l.depth, l.jurisdiction, l.confirmed_by, m.due_on \
             FROM {levels} l JOIN {matters} m ON m.id = l.{key} \
             WHERE m.jurisdiction LIKE $1 AND m.state <> 'CLOSED' ORDER BY l.{key}, l.depth",
            key = chained.key(),
            levels = chained.levels_table(),
            matters = chained.matters_table(),
        );
        let rows = sqlx::query_with(
            sqlx::AssertSqlSafe(sql),
            bind_all(vec![Value::Text(format!("{}%", jurisdiction.prefix()))])?,
        )
        .fetch_all(self.readers())
        .await?;
        let mut matters: Vec<(String, AssignedFacts)> = Vec::new();
        for row in &rows {
            let id = q::text(row, "matter_id")?;
            let level = Level {
                jurisdiction: Jurisdiction::parse(&q::text(row, "jurisdiction")?)
                    .map_err(Error::Internal)?,
                confirmed: q::opt_text(row, "confirmed_by")?.is_some(),
            };
            match matters.last_mut() {
                Some((last, facts)) if *last == id => facts.chain.push(level),
                _ => matters.push((
                    id,
                    AssignedFacts {
                        chain: vec![level],
                        closed: false,
                        due_on: super::ledger::date(row, "due_on")?,
                    },
                )),
            }
        }
        let facts: Vec<AssignedFacts> = matters.into_iter().map(|(_, facts)| facts).collect();
        Ok(assignment::waiting_by_level(&facts, today))
    }

    /// Now, by the store's clock, in Unix microseconds.
    fn now_micros(&self) -> i64 {
        self.checks().clock.now().timestamp_micros()
    }
}

/// The step's text: what the move did, then the office's note if it wrote one.
fn joined(note: &str, text: &str) -> String {
    if text.trim().is_empty() {
        note.to_owned()
    } else {
        format!("{note}：{}", text.trim())
    }
}
