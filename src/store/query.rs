//! Reads: the registry, the roll of an institution on a date, a person's history, payroll and
//! funding. Every read returns records as they were pushed, with the sender's record id.

use chrono::NaiveDate;
use sqlx::any::AnyRow;

use super::codec::{column, stored, stored_code};
use super::read::Columns;
use super::{Store, Value, bind_all};
use crate::domain::ids::{Period, parse_date};
use crate::domain::roll::Spell;
use crate::domain::*;
use crate::error::Result;

/// A record as stored, with who pushed it under which id.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// The pushing agency's id, e.g. `140100/hr`.
    pub agency_id: String,
    /// The sender's own record id.
    pub record_id: String,
    /// When the hub committed it (Unix microseconds).
    pub accepted_at: i64,
    /// The record.
    pub record: T,
}

/// One category of an institution on a date.
#[derive(Debug, Clone)]
pub struct CategoryOccupancy {
    /// The category.
    pub category: QuotaCategory,
    /// The quota in force, if any.
    pub quota: Option<Stored<Quota>>,
    /// People on the roll in this category.
    pub active: u32,
}

/// One kind of leader post of an institution on a date.
#[derive(Debug, Clone)]
pub struct PostOccupancy {
    /// 厅, 处 or 科.
    pub level: LeaderLevel,
    /// 正 or 副.
    pub position: LeaderPosition,
    /// The approval in force, if any.
    pub post: Option<Stored<LeaderPost>>,
    /// Leaders in such posts on the date.
    pub occupied: u32,
}

/// An institution with its approvals and their occupancy on a date.
#[derive(Debug, Clone)]
pub struct InstitutionView {
    /// The current registry record.
    pub institution: Stored<Institution>,
    /// Per category with a quota or people.
    pub categories: Vec<CategoryOccupancy>,
    /// Per post kind with an approval or leaders.
    pub posts: Vec<PostOccupancy>,
    /// Plans of the date's year.
    pub plans: Vec<Stored<StaffingPlan>>,
    /// Approvals valid on the date, with the entries citing each.
    pub approvals: Vec<(Stored<HiringApproval>, u32)>,
    /// Institutions whose parent it is.
    pub children: Vec<String>,
}

/// One person on a roll.
#[derive(Debug, Clone)]
pub struct RollEntry {
    /// Who.
    pub resident_id: ResidentId,
    /// Their latest name.
    pub name: String,
    /// Their spell on the date.
    pub spell: Spell,
    /// Leader post held on the date.
    pub post: Option<(LeaderLevel, LeaderPosition)>,
}

/// A person's history.
#[derive(Debug, Clone)]
pub struct PersonHistory {
    /// Latest name.
    pub name: String,
    /// When first heard of (Unix microseconds).
    pub first_seen: i64,
    /// Spells, oldest first.
    pub spells: Vec<Spell>,
    /// Personnel events in effective order.
    pub events: Vec<Stored<PersonnelEvent>>,
    /// Appointments in effective order.
    pub appointments: Vec<Stored<Appointment>>,
}

pub(crate) fn stored_meta<T>(row: &impl Columns, record: T) -> Result<Stored<T>> {
    Ok(Stored {
        agency_id: text(row, "agency_id")?,
        record_id: text(row, "record_id")?,
        accepted_at: int(row, "accepted_at")?,
        record,
    })
}

pub(crate) fn text(row: &impl Columns, name: &str) -> Result<String> {
    row.text(name)?.ok_or_else(|| null(name))
}

pub(crate) fn opt_text(row: &impl Columns, name: &str) -> Result<Option<String>> {
    row.text(name)
}

pub(crate) fn int(row: &impl Columns, name: &str) -> Result<i64> {
    row.int(name)?.ok_or_else(|| null(name))
}

fn null(name: &str) -> crate::error::Error {
    crate::error::Error::Internal(format!("stored column `{name}` is NULL"))
}

pub(crate) fn uscc(row: &impl Columns, name: &str) -> Result<Uscc> {
    stored(Uscc::parse(&text(row, name)?))
}

pub(crate) fn opt_uscc(row: &impl Columns, name: &str) -> Result<Option<Uscc>> {
    opt_text(row, name)?
        .map(|s| stored(Uscc::parse(&s)))
        .transpose()
}

pub(crate) fn date(row: &impl Columns, name: &str) -> Result<NaiveDate> {
    stored(parse_date(&text(row, name)?))
}

pub(crate) fn opt_date(row: &impl Columns, name: &str) -> Result<Option<NaiveDate>> {
    opt_text(row, name)?
        .map(|s| stored(parse_date(&s)))
        .transpose()
}

pub(crate) fn code<T: Coded>(row: &impl Columns, name: &str) -> Result<T> {
    stored_code(&text(row, name)?)
}

pub(crate) fn opt_code<T: Coded>(row: &impl Columns, name: &str) -> Result<Option<T>> {
    opt_text(row, name)?.map(|s| stored_code(&s)).transpose()
}

pub(crate) fn count(row: &impl Columns, name: &str) -> Result<u32> {
    let value = int(row, name)?;
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

pub(crate) fn resident_id(row: &impl Columns) -> Result<ResidentId> {
    stored(ResidentId::parse(&text(row, "resident_id")?))
}

/// Decodes a `personnel_events` row.
pub(crate) fn decode_event(row: &impl Columns) -> Result<PersonnelEvent> {
    Ok(PersonnelEvent {
        event_type: code(row, "event_type")?,
        resident_id: resident_id(row)?,
        name: text(row, "name")?,
        institution: uscc(row, "institution_uscc")?,
        category: opt_code(row, "category")?,
        rank: opt_code(row, "rank")?,
        effective_on: date(row, "effective_on")?,
        approval_number: opt_text(row, "approval_number")?,
        channel: opt_code(row, "channel")?,
        target: opt_uscc(row, "target_uscc")?,
        corrects: opt_text(row, "corrects")?,
    })
}

/// Decodes an `appointments` row.
pub(crate) fn decode_appointment(row: &impl Columns) -> Result<Appointment> {
    Ok(Appointment {
        action: code(row, "action")?,
        resident_id: resident_id(row)?,
        name: text(row, "name")?,
        institution: uscc(row, "institution_uscc")?,
        level: code(row, "level")?,
        position: code(row, "position")?,
        rank: code(row, "rank")?,
        effective_on: date(row, "effective_on")?,
        document: text(row, "document")?,
    })
}

pub(crate) fn decode_institution(row: &impl Columns) -> Result<Stored<Institution>> {
    let political_legal = int(row, "political_legal")?;
    let institution = Institution {
        uscc: uscc(row, "uscc")?,
        name: text(row, "name")?,
        jurisdiction: stored(Jurisdiction::parse(&text(row, "jurisdiction")?))?,
        parent: opt_uscc(row, "parent_uscc")?,
        kind: code(row, "kind")?,
        grade: code(row, "grade")?,
        funding_form: opt_code(row, "funding_form")?,
        status: code(row, "status")?,
        approval_document: text(row, "approval_document")?,
        established_on: opt_date(row, "established_on")?,
        status_since: opt_date(row, "status_since")?,
        political_legal: political_legal != 0,
    };
    stored_meta(row, institution)
}

pub(crate) fn decode_quota(row: &impl Columns) -> Result<Stored<Quota>> {
    let quota = Quota {
        institution: uscc(row, "institution_uscc")?,
        category: code(row, "category")?,
        approved_count: count(row, "approved_count")?,
        effective_from: date(row, "effective_from")?,
        effective_to: opt_date(row, "effective_to")?,
        approval_document: text(row, "approval_document")?,
    };
    stored_meta(row, quota)
}

pub(crate) fn decode_post(row: &impl Columns) -> Result<Stored<LeaderPost>> {
    let post = LeaderPost {
        institution: uscc(row, "institution_uscc")?,
        level: code(row, "level")?,
        position: code(row, "position")?,
        approved_count: count(row, "approved_count")?,
        effective_from: date(row, "effective_from")?,
        effective_to: opt_date(row, "effective_to")?,
        approval_document: text(row, "approval_document")?,
    };
    stored_meta(row, post)
}

pub(crate) fn decode_plan(row: &impl Columns) -> Result<Stored<StaffingPlan>> {
    let year = int(row, "year")?;
    let plan = StaffingPlan {
        institution: uscc(row, "institution_uscc")?,
        year: i32::try_from(year).unwrap_or_default(),
        category: code(row, "category")?,
        channel: code(row, "channel")?,
        approved_count: count(row, "approved_count")?,
        approval_document: text(row, "approval_document")?,
    };
    stored_meta(row, plan)
}

pub(crate) fn decode_approval(row: &impl Columns) -> Result<Stored<HiringApproval>> {
    let approval = HiringApproval {
        approval_number: text(row, "approval_number")?,
        institution: uscc(row, "institution_uscc")?,
        category: code(row, "category")?,
        approved_entries: count(row, "approved_entries")?,
        issued_on: date(row, "issued_on")?,
        valid_until: date(row, "valid_until")?,
    };
    stored_meta(row, approval)
}

/// Decodes a `payroll_lines` row.
pub(crate) fn decode_payroll_line(row: &impl Columns) -> Result<Stored<PayrollLine>> {
    let line = PayrollLine {
        period: stored(Period::parse(&text(row, "period")?))?,
        institution: uscc(row, "institution_uscc")?,
        resident_id: resident_id(row)?,
        name: text(row, "name")?,
        gross_fen: int(row, "gross_fen")?,
        reverses: opt_text(row, "reverses")?,
    };
    stored_meta(row, line)
}

/// Decodes a `fundings` row.
pub(crate) fn decode_funding(row: &impl Columns) -> Result<Stored<Funding>> {
    let funding = Funding {
        institution: uscc(row, "institution_uscc")?,
        category: code(row, "category")?,
        period: stored(Period::parse(&text(row, "period")?))?,
        funded_headcount: count(row, "funded_headcount")?,
        amount_fen: int(row, "amount_fen")?,
    };
    stored_meta(row, funding)
}

pub(crate) fn decode_spell(row: &impl Columns) -> Result<Spell> {
    Ok(Spell {
        institution: uscc(row, "institution_uscc")?,
        category: code(row, "category")?,
        rank: code(row, "rank")?,
        status: code(row, "status")?,
        valid_from: date(row, "valid_from")?,
        valid_to: opt_date(row, "valid_to")?,
        approval_number: opt_text(row, "approval_number")?,
        seconded_to: opt_uscc(row, "seconded_to")?,
    })
}

/// `[from, to)` covers `$n`.
pub(crate) fn in_force(from: &str, to: &str, n: usize) -> String {
    format!("{from} <= ${n} AND ({to} IS NULL OR {to} > ${n})")
}

impl Store {
    async fn rows(&self, sql: &'static str, values: Vec<Value>) -> Result<Vec<AnyRow>> {
        Ok(sqlx::query_with(sql, bind_all(values)?)
            .fetch_all(self.readers())
            .await?)
    }

    async fn rows_dynamic(&self, sql: String, values: Vec<Value>) -> Result<Vec<AnyRow>> {
        Ok(
            sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
                .fetch_all(self.readers())
                .await?,
        )
    }

    /// The current registry record of an institution.
    pub async fn institution(&self, uscc: &Uscc) -> Result<Option<Stored<Institution>>> {
        let rows = self
            .rows(
                "SELECT * FROM institutions WHERE uscc = $1",
                vec![Value::from(uscc.as_str())],
            )
            .await?;
        rows.first().map(decode_institution).transpose()
    }

    /// Where an institution sits: from the registry, or for an unregistered unit from its code.
    pub async fn jurisdiction_of(&self, uscc: &Uscc) -> Result<Option<Jurisdiction>> {
        let registered = self.institution(uscc).await?;
        Ok(placed(
            uscc,
            registered.map(|stored| stored.record.jurisdiction),
        ))
    }

    /// An institution with its quotas, posts, plans and approvals and their occupancy on `as_of`.
    #[tracing::instrument(name = "store.institution_view", skip_all)]
    pub async fn institution_view(
        &self,
        uscc: &Uscc,
        as_of: NaiveDate,
    ) -> Result<Option<InstitutionView>> {
        let Some(institution) = self.institution(uscc).await? else {
            return Ok(None);
        };
        let key = || Value::from(uscc.as_str());
        let day = || Value::Text(as_of.to_string());

        // The quota in force per category is the latest pushed among those covering the date.
        let quotas = self
            .rows_dynamic(
                format!(
                    "SELECT * FROM quotas WHERE institution_uscc = $1 AND {} ORDER BY category, accepted_at DESC, record_id DESC",
                    in_force("effective_from", "effective_to", 2)
                ),
                vec![key(), day()],
            )
            .await?;
        let active = self
            .rows_dynamic(
                format!(
                    "SELECT category, count(*) AS active FROM person_spells WHERE institution_uscc = $1 AND {} \
                     AND status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') GROUP BY category",
                    in_force("valid_from", "valid_to", 2)
                ),
                vec![key(), day()],
            )
            .await?;
        let mut categories: Vec<CategoryOccupancy> = Vec::new();
        for row in &quotas {
            let quota = decode_quota(row)?;
            if !categories
                .iter()
                .any(|c| c.category == quota.record.category)
            {
                categories.push(CategoryOccupancy {
                    category: quota.record.category,
                    quota: Some(quota),
                    active: 0,
                });
            }
        }
        for row in &active {
            let category: QuotaCategory = code(row, "category")?;
            let active = count(row, "active")?;
            match categories.iter_mut().find(|c| c.category == category) {
                Some(entry) => entry.active = active,
                None => categories.push(CategoryOccupancy {
                    category,
                    quota: None,
                    active,
                }),
            }
        }
        categories.sort_by_key(|c| c.category);

        let posts = self
            .rows_dynamic(
                format!(
                    "SELECT * FROM leader_posts WHERE institution_uscc = $1 AND {} ORDER BY level, position, accepted_at DESC, record_id DESC",
                    in_force("effective_from", "effective_to", 2)
                ),
                vec![key(), day()],
            )
            .await?;
        let leaders = self
            .rows_dynamic(
                format!(
                    "SELECT level, position, count(*) AS occupied FROM leader_terms WHERE institution_uscc = $1 AND {} GROUP BY level, position",
                    in_force("valid_from", "valid_to", 2)
                ),
                vec![key(), day()],
            )
            .await?;
        let mut post_occupancy: Vec<PostOccupancy> = Vec::new();
        for row in &posts {
            let post = decode_post(row)?;
            let (level, position) = (post.record.level, post.record.position);
            if !post_occupancy
                .iter()
                .any(|p| p.level == level && p.position == position)
            {
                post_occupancy.push(PostOccupancy {
                    level,
                    position,
                    post: Some(post),
                    occupied: 0,
                });
            }
        }
        for row in &leaders {
            let level: LeaderLevel = code(row, "level")?;
            let position: LeaderPosition = code(row, "position")?;
            let occupied = count(row, "occupied")?;
            match post_occupancy
                .iter_mut()
                .find(|p| p.level == level && p.position == position)
            {
                Some(entry) => entry.occupied = occupied,
                None => post_occupancy.push(PostOccupancy {
                    level,
                    position,
                    post: None,
                    occupied,
                }),
            }
        }
        post_occupancy.sort_by_key(|p| (p.level, p.position));

        let plans = self
            .rows(
                "SELECT * FROM staffing_plans WHERE institution_uscc = $1 AND year = $2 ORDER BY category, channel, accepted_at",
                vec![key(), Value::Int(i64::from(chrono::Datelike::year(&as_of)))],
            )
            .await?
            .iter()
            .map(decode_plan)
            .collect::<Result<Vec<_>>>()?;

        let approval_rows = self
            .rows(
                "SELECT a.*, (SELECT count(*) FROM personnel_events e WHERE e.approval_number = a.approval_number \
                 AND e.event_type IN ('HIRE', 'TRANSFER')) AS used \
                 FROM hiring_approvals a WHERE a.institution_uscc = $1 AND a.issued_on <= $2 AND a.valid_until >= $2 \
                 ORDER BY a.approval_number, a.accepted_at",
                vec![key(), day()],
            )
            .await?;
        let approvals = approval_rows
            .iter()
            .map(|row| Ok((decode_approval(row)?, count(row, "used")?)))
            .collect::<Result<Vec<_>>>()?;

        let children = self
            .rows(
                "SELECT uscc FROM institutions WHERE parent_uscc = $1 ORDER BY uscc",
                vec![key()],
            )
            .await?
            .iter()
            .map(|row| text(row, "uscc"))
            .collect::<Result<Vec<_>>>()?;

        Ok(Some(InstitutionView {
            institution,
            categories,
            posts: post_occupancy,
            plans,
            approvals,
            children,
        }))
    }

    /// The roll of an institution on a date, ordered by resident ID, starting after `after`.
    #[tracing::instrument(name = "store.roll", skip_all)]
    pub async fn roll(
        &self,
        uscc: &Uscc,
        as_of: NaiveDate,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RollEntry>> {
        // The page is cut on the spells (one per person on a date), before the join with the
        // posts, which gives a person holding several posts several rows.
        let sql = format!(
            "SELECT s.*, p.name, t.level AS leader_level, t.position AS leader_position FROM \
             (SELECT * FROM person_spells WHERE institution_uscc = $1 AND {} \
              AND status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') AND resident_id > $3 \
              ORDER BY resident_id LIMIT $4) s \
             JOIN persons p ON p.resident_id = s.resident_id \
             LEFT JOIN leader_terms t ON t.resident_id = s.resident_id AND t.institution_uscc = s.institution_uscc AND {} \
             ORDER BY s.resident_id, t.level, t.position",
            in_force("valid_from", "valid_to", 2),
            in_force("t.valid_from", "t.valid_to", 2),
        );
        let rows = self
            .rows_dynamic(
                sql,
                vec![
                    Value::from(uscc.as_str()),
                    Value::Text(as_of.to_string()),
                    Value::from(after),
                    Value::Int(i64::from(limit)),
                ],
            )
            .await?;
        let mut entries: Vec<RollEntry> = Vec::new();
        for row in &rows {
            let resident_id = resident_id(row)?;
            // One person holding two posts appears twice in the join; keep the senior post.
            if entries.last().is_some_and(|e| e.resident_id == resident_id) {
                continue;
            }
            let level: Option<LeaderLevel> = opt_code(row, "leader_level")?;
            let position: Option<LeaderPosition> = opt_code(row, "leader_position")?;
            entries.push(RollEntry {
                resident_id,
                name: text(row, "name")?,
                spell: decode_spell(row)?,
                post: level.zip(position),
            });
        }
        Ok(entries)
    }

    /// A person's whole history, or `None` if the hub has never heard of them.
    #[tracing::instrument(name = "store.person_history", skip_all)]
    pub async fn person_history(&self, resident: &ResidentId) -> Result<Option<PersonHistory>> {
        let key = || Value::from(resident.as_str());
        let person = self
            .rows(
                "SELECT name, first_seen FROM persons WHERE resident_id = $1",
                vec![key()],
            )
            .await?;
        let Some(person) = person.first() else {
            return Ok(None);
        };
        let spells = self
            .rows(
                "SELECT * FROM person_spells WHERE resident_id = $1 ORDER BY ordinal",
                vec![key()],
            )
            .await?
            .iter()
            .map(decode_spell)
            .collect::<Result<Vec<_>>>()?;
        let events = self
            .rows(
                "SELECT * FROM personnel_events WHERE resident_id = $1 ORDER BY effective_on, arrival",
                vec![key()],
            )
            .await?
            .iter()
            .map(|row| stored_meta(row, decode_event(row)?))
            .collect::<Result<Vec<_>>>()?;
        let appointments = self
            .rows(
                "SELECT * FROM appointments WHERE resident_id = $1 ORDER BY effective_on, arrival",
                vec![key()],
            )
            .await?
            .iter()
            .map(|row| stored_meta(row, decode_appointment(row)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(PersonHistory {
            name: text(person, "name")?,
            first_seen: column(person, "first_seen")?,
            spells,
            events,
            appointments,
        }))
    }

    /// Payroll lines of an institution for a period, by resident ID.
    #[tracing::instrument(name = "store.payroll", skip_all)]
    pub async fn payroll(
        &self,
        institution: &Uscc,
        period: Period,
    ) -> Result<Vec<Stored<PayrollLine>>> {
        self.rows(
            "SELECT * FROM payroll_lines WHERE institution_uscc = $1 AND period = $2 ORDER BY resident_id, record_id",
            vec![Value::from(institution.as_str()), Value::Text(period.to_string())],
        )
        .await?
        .iter()
        .map(decode_payroll_line)
        .collect()
    }

    /// The latest funding record per category of an institution for a period.
    #[tracing::instrument(name = "store.fundings", skip_all)]
    pub async fn fundings(
        &self,
        institution: &Uscc,
        period: Period,
    ) -> Result<Vec<Stored<Funding>>> {
        let rows = self
            .rows(
                "SELECT * FROM fundings WHERE institution_uscc = $1 AND period = $2 ORDER BY category, accepted_at DESC, record_id DESC",
                vec![Value::from(institution.as_str()), Value::Text(period.to_string())],
            )
            .await?;
        let mut fundings: Vec<Stored<Funding>> = Vec::new();
        for row in &rows {
            let funding = decode_funding(row)?;
            if fundings
                .last()
                .is_none_or(|f| f.record.category != funding.record.category)
            {
                fundings.push(funding);
            }
        }
        Ok(fundings)
    }
}

/// Where an institution sits: where the registry places it, or for an unregistered unit the
/// division its code names.
pub(crate) fn placed(uscc: &Uscc, registered: Option<Jurisdiction>) -> Option<Jurisdiction> {
    registered.or_else(|| Jurisdiction::parse(uscc.division_code()).ok())
}

/// Refuses what `agency` asks about an institution placed outside its jurisdiction (see
/// [`placed`]). An institution the hub has never heard of reads as empty within the agency's
/// own jurisdiction.
pub(crate) fn overseen(
    agency: &crate::domain::Agency,
    uscc: &Uscc,
    jurisdiction: Option<&Jurisdiction>,
) -> Result<()> {
    match jurisdiction {
        Some(jurisdiction) if agency.oversees(jurisdiction) => Ok(()),
        Some(jurisdiction) => Err(crate::error::Error::PermissionDenied(format!(
            "institution {uscc} lies in {jurisdiction}, outside the jurisdiction of {agency}"
        ))),
        None => Err(crate::error::Error::PermissionDenied(format!(
            "institution {uscc} names no division"
        ))),
    }
}
