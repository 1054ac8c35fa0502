//! Assignment down the levels (交办) and closure level by level (逐级对账销号) in storage: an item's
//! chain in `ledger_levels`, the moves that extend it and confirm it, each a step of the item and
//! an event on the feed for the staffing offices concerned. The rules are
//! [`crate::domain::assignment`]'s; a move is taken under the department's lock and the item's
//! version, as the ledger's other moves are.

use chrono::NaiveDate;

use super::feed::{FeedEventType, append_follow_up};
use super::ledger::{
    LedgerItem, Step, decode_item, insert_step, item_follow_up, item_levels, levels_of, oversee,
    refuse_while_shown,
};
use super::query as q;
use super::{Store, Tx, Value, bind_all};
use crate::domain::assignment::{self, AssignedFacts, Level, LevelRow};
use crate::domain::ledger::{ItemState, reach_text};
use crate::domain::{Agency, AgencyKind, Coded, Jurisdiction};
use crate::error::{Error, Result};

/// The staffing offices concerned with an item's levels: the feed shows the event in the item's
/// division, so every level of the chain (each lies above it or is it) sees it.
fn office_reach() -> String {
    reach_text(&[AgencyKind::StaffingOffice])
}

impl Store {
    /// Reads an item for a move of its chain, under the department's lock, with its chain.
    async fn item_for_level_move(
        &self,
        agency: &Agency,
        id: &str,
        expected_version: i64,
    ) -> Result<(Tx, LedgerItem)> {
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
        // The lock pushes take, as MoveItem does: a close re-reads the item's finding.
        self.lock_keys(&mut tx, &[format!("institution:{}", item.department)])
            .await?;
        if item.version != expected_version {
            return Err(Error::Aborted(format!(
                "the item is at version {}, not {expected_version}; read it again",
                item.version
            )));
        }
        item.levels = item_levels(&mut *tx, id).await?;
        Ok((tx, item))
    }

    /// Moves the item's version on, with the new state and closing time; refused if another
    /// move came first.
    async fn bump_item(tx: &mut Tx, item: &LedgerItem, to: ItemState, now: i64) -> Result<()> {
        let updated = sqlx::query_with(
            "UPDATE ledger_items SET state = $2, version = version + 1, closed_at = $3 WHERE id = $1 AND version = $4",
            bind_all(vec![
                Value::from(item.id.as_str()),
                Value::from(to.code()),
                Value::OptInt((to == ItemState::Closed).then_some(now)),
                Value::Int(item.version),
            ])?,
        )
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Aborted(
                "the item changed meanwhile; read it again".into(),
            ));
        }
        Ok(())
    }

    /// Assigns an item to the staffing office of the division directly below the caller (交办):
    /// the chain grows by that level (and by the caller's own when it is the first assignment),
    /// the item keeps its state, and the assignment is a step and an event for the offices.
    pub async fn assign_item(
        &self,
        agency: &Agency,
        id: &str,
        to: &Jurisdiction,
        expected_version: i64,
        text: &str,
    ) -> Result<LedgerItem> {
        let (mut tx, item) = self
            .item_for_level_move(agency, id, expected_version)
            .await?;
        let item_jurisdiction = Jurisdiction::parse(&item.jurisdiction).map_err(Error::Internal)?;
        let added = assignment::check_assign(
            agency,
            &item_jurisdiction,
            item.state,
            &levels_of(&item)?,
            to,
        )
        .map_err(|refusal| match refusal {
            assignment::AssignRefused::NotStaffingOffice | assignment::AssignRefused::Outside => {
                Error::PermissionDenied(refusal.explain())
            }
            assignment::AssignRefused::NotDirectlyBelow
            | assignment::AssignRefused::NotInTarget => Error::invalid("to", refusal.explain()),
            _ => Error::FailedPrecondition(refusal.explain()),
        })?;
        let now = self.now_micros();
        for (depth, level) in (item.levels.len()..).zip(&added) {
            sqlx::query_with(
                "INSERT INTO ledger_levels (item_id, depth, jurisdiction, assigned_by, assigned_at, confirmed_by, confirmed_at) \
                 VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
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
        Self::bump_item(&mut tx, &item, item.state, now).await?;
        let note = format!("交办 {} → {to}", agency.jurisdiction);
        let step = Step {
            agency_id: agency.id(),
            at: now,
            from_state: item.state.code().to_owned(),
            to_state: item.state.code().to_owned(),
            text: joined(&note, text),
        };
        insert_step(&mut tx, "ledger_steps", "item_id", id, &step).await?;
        self.feed_level_move(tx, &item, FeedEventType::Assigned, step)
            .await
    }

    /// Confirms an item at the caller's level (逐级对账销号): the lowest level first (its report
    /// back, 上报), then each level above; the top level's confirmation closes the item, once
    /// the data no longer shows the finding it was opened from.
    pub async fn confirm_level(
        &self,
        agency: &Agency,
        id: &str,
        expected_version: i64,
        text: &str,
    ) -> Result<LedgerItem> {
        let (mut tx, item) = self
            .item_for_level_move(agency, id, expected_version)
            .await?;
        let confirmation = assignment::check_confirm(agency, item.state, &levels_of(&item)?)
            .map_err(|refusal| match refusal {
                assignment::ConfirmRefused::NotStaffingOffice
                | assignment::ConfirmRefused::NotALevel => {
                    Error::PermissionDenied(refusal.explain())
                }
                _ => Error::FailedPrecondition(refusal.explain()),
            })?;
        let to = if confirmation.closes {
            refuse_while_shown(&mut tx, item.finding.as_ref()).await?;
            ItemState::Closed
        } else {
            item.state
        };
        let now = self.now_micros();
        sqlx::query_with(
            "UPDATE ledger_levels SET confirmed_by = $3, confirmed_at = $4 WHERE item_id = $1 AND depth = $2 AND confirmed_by IS NULL",
            bind_all(vec![
                Value::from(id),
                Value::Int(i64::try_from(confirmation.depth).unwrap_or(i64::MAX)),
                Value::Text(agency.id()),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        Self::bump_item(&mut tx, &item, to, now).await?;
        let note = if confirmation.closes {
            format!("{} 确认销号", agency.jurisdiction)
        } else if confirmation.reports_back {
            format!("{} 上报", agency.jurisdiction)
        } else {
            format!("{} 确认", agency.jurisdiction)
        };
        let step = Step {
            agency_id: agency.id(),
            at: now,
            from_state: item.state.code().to_owned(),
            to_state: to.code().to_owned(),
            text: joined(&note, text),
        };
        insert_step(&mut tx, "ledger_steps", "item_id", id, &step).await?;
        self.feed_level_move(tx, &item, FeedEventType::LevelConfirmed, step)
            .await
    }

    /// Appends the move's event, commits, and answers the item as it now stands.
    async fn feed_level_move(
        &self,
        mut tx: Tx,
        before: &LedgerItem,
        event_type: FeedEventType,
        step: Step,
    ) -> Result<LedgerItem> {
        let mut follow_up = item_follow_up(before);
        follow_up.state = step.to_state.clone();
        follow_up.text = step.text.clone();
        follow_up.history = super::ledger::steps_of_item(&mut *tx, &before.id).await?;
        append_follow_up(
            self,
            &mut tx,
            event_type,
            (&before.jurisdiction, &office_reach(), ""),
            &follow_up,
        )
        .await?;
        tx.commit().await?;
        self.feed_changed();
        self.item(&before.id)
            .await?
            .ok_or_else(|| Error::Internal("a ledger item vanished".into()))
    }

    /// Assigned items of a jurisdiction subtree not yet closed, by the level they wait on, as of
    /// `today` (for the overdue count).
    pub async fn waiting_by_level(
        &self,
        jurisdiction: &Jurisdiction,
        today: NaiveDate,
    ) -> Result<Vec<LevelRow>> {
        let rows = sqlx::query_with(
            "SELECT l.item_id, l.depth, l.jurisdiction, l.confirmed_by, i.state, i.due_on \
             FROM ledger_levels l JOIN ledger_items i ON i.id = l.item_id \
             WHERE i.jurisdiction LIKE $1 AND i.state <> 'CLOSED' ORDER BY l.item_id, l.depth",
            bind_all(vec![Value::Text(format!("{}%", jurisdiction.prefix()))])?,
        )
        .fetch_all(self.readers())
        .await?;
        let mut items: Vec<(String, AssignedFacts)> = Vec::new();
        for row in &rows {
            let id = q::text(row, "item_id")?;
            let level = Level {
                jurisdiction: Jurisdiction::parse(&q::text(row, "jurisdiction")?)
                    .map_err(Error::Internal)?,
                confirmed: q::opt_text(row, "confirmed_by")?.is_some(),
            };
            match items.last_mut() {
                Some((last, facts)) if *last == id => facts.chain.push(level),
                _ => items.push((
                    id,
                    AssignedFacts {
                        chain: vec![level],
                        closed: false,
                        due_on: super::ledger::date(row, "due_on")?,
                    },
                )),
            }
        }
        let facts: Vec<AssignedFacts> = items.into_iter().map(|(_, facts)| facts).collect();
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
