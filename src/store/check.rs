//! Deciding the findings of the rule inputs a push changed (its dirty keys, [`DirtySet`]), at the
//! cost of the change rather than of the history it touches.
//!
//! A key is decided from the few rows it names, read by index: a person's spells and pay of the
//! period, an institution's quotas, the entries of one year, the terms on one post. The numbers
//! that grow with an institution (the people on a roll on a date) are kept as counts in the
//! push's transaction (`roll_counts`, [`Headcount::shifts`]) and read as one row, so a hire into a
//! 5,000-person institution reads what a hire into a 10-person one does. Keys whose rule is a
//! function of such a count are decided by [`aggregates`]; the rest by the oracle
//! ([`rules::check`]) over the rows read, keeping only the findings the keys cover. A key that
//! reads an institution's registry entry (a new entry can move every finding of it) is decided by
//! the scope path in [`super::reconcile`], over the whole institution.
//!
//! Then [`settle`] compares with the findings stored for the keys, writes what changed (under the
//! version guard) and appends the changes to the feed, as every check does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use sqlx::any::AnyRow;

use super::codec::{column, stored};
use super::feed::{self, FeedEventType};
use super::findings::{Alert, ChangeKind, StoredFinding, decode_finding, write_findings};
use super::query::{self as q, Stored};
use super::read::{Columns, Reader};
use super::roll_now;
use super::write::Writer;
use super::{Backend, Value, now_micros, select_in};
use crate::domain::aggregates::{self, Aggregates, Headcount, Plans, Quotas};
use crate::domain::dirty::{DirtyIndex, DirtyKey, DirtySet, Rewrite, draws_settled};
use crate::domain::findings::{
    EVIDENCE_SAMPLE, Entry, Finding, FindingKey, InstitutionFacts, PersonSpell, PersonTerm, Pushed,
    RecordRef, RuleCode, Scope, Snapshot,
};
use crate::domain::roll::LeaderTerm;
use crate::domain::roll::Spell;
use crate::domain::{
    Coded, InstitutionStatus, PersonStatus, PersonnelEventType, QuotaCategory, ResidentId, Uscc,
    rules,
};
use crate::error::Result;
use crate::store::Store;

/// The text of a statement that depends on the backend alone, built the first time its site runs
/// on each backend and kept for the process: a pre-check issues a dozen such statements, and
/// building each again with `format!` at every call was about a fiftieth of its time (`perf`).
macro_rules! statement {
    ($backend:expr, $build:expr) => {{
        static TEXTS: [std::sync::OnceLock<String>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let text = match $backend {
            Backend::Sqlite => &TEXTS[0],
            Backend::Postgres => &TEXTS[1],
        };
        text.get_or_init(|| $build).as_str()
    }};
}

/// [`per_key`]'s statement for a site, built once ([`statement!`]).
macro_rules! per_key_once {
    ($backend:expr, $parts:expr, $table:expr, $on:expr $(,)?) => {{
        let backend: Backend = $backend;
        statement!(backend, per_key(backend, $parts, $table, $on))
    }};
}

/// One change to one finding.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingChange {
    /// What happened.
    pub kind: ChangeKind,
    /// The finding after the change.
    pub finding: StoredFinding,
}

/// Which of a check's changes are kept. Every change is reported, whatever is kept; findings of
/// the current roll (period ""), which describe today only, are kept only by a check as of today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Keep every change (a check as of today).
    Everything,
    /// Keep changes to dated findings only; a check as of another day cannot speak for today.
    DatedOnly,
    /// Keep nothing: report what would change.
    Nothing,
}

/// Rows the checks have read, and the statements they issued, since the store started: what the
/// complexity test holds to the dirty keys (a count of work, not of time).
#[derive(Debug, Default)]
pub struct CheckReads {
    rows: AtomicU64,
    statements: AtomicU64,
    steps: AtomicU64,
}

impl CheckReads {
    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Statements issued so far. On SQLite each is a hand-off to the connection's thread and back,
    /// which is most of a pre-check's cost, so their number is held as well as the rows'.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Steps SQLite's virtual machine took for the checks read natively (the pre-checks on an
    /// SQLite file): the rows the database looked at, where `rows` counts those it returned.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Counts the statement `tx` ran last and its rows, unless `tx` answered it from what it had
    /// read before ([`ReadOnce`](super::read::ReadOnce)).
    fn add<R: Reader>(&self, tx: &R, rows: usize) {
        if tx.went_to_database() {
            self.rows.fetch_add(rows as u64, Ordering::Relaxed);
            self.statements.fetch_add(1, Ordering::Relaxed);
            self.steps.fetch_add(tx.last_steps(), Ordering::Relaxed);
        }
    }
}

/// An act a pre-check adds to the data as if it had happened: its rows, and what it would move
/// in the kept counts. Decided with it, the keys give the findings the act would leave.
#[derive(Debug, Clone, Default)]
pub struct Act {
    /// Spells it would add.
    pub spells: Vec<PersonSpell>,
    /// Entries it would add.
    pub entries: Vec<Entry>,
    /// Leader terms it would add.
    pub terms: Vec<PersonTerm>,
    /// A funding it would restate.
    pub funding: Option<Pushed<crate::domain::Funding>>,
    /// What it would move in the roll counts.
    pub shifts: Vec<aggregates::Shift<(Uscc, QuotaCategory)>>,
    /// What it would move in the entries (and placements) per year.
    pub moves: Vec<((Uscc, QuotaCategory, i32), aggregates::Taken)>,
}

impl Act {
    fn people_moved(&self, (uscc, category): (&Uscc, QuotaCategory), on: NaiveDate) -> i64 {
        self.shifts
            .iter()
            .filter(|s| {
                s.key.0 == *uscc
                    && s.key.1 == category
                    && s.from <= on
                    && s.to.is_none_or(|to| on < to)
            })
            .map(|s| s.by)
            .sum()
    }

    fn entries_moved(
        &self,
        (uscc, category, year): (&Uscc, QuotaCategory, i32),
    ) -> aggregates::Taken {
        self.moves
            .iter()
            .filter(|((u, c, y), _)| u == uscc && *c == category && *y == year)
            .fold((0, 0), |(n, p), (_, (by, placed))| (n + by, p + placed))
    }
}

// ---------------------------------------------------------------------------------------------
// Rows into the rules' types (shared with the scope snapshot).

pub(super) fn record_ref(row: &impl Columns) -> Result<RecordRef> {
    let agency: String = q::text(row, "agency_id")?;
    let record: String = q::text(row, "record_id")?;
    Ok(RecordRef(format!("{agency}/{record}")))
}

pub(super) fn pushed<T>(stored: Stored<T>) -> Pushed<T> {
    Pushed {
        id: RecordRef(format!("{}/{}", stored.agency_id, stored.record_id)),
        record: stored.record,
        accepted_at: stored.accepted_at,
    }
}

pub(super) fn list(set: impl IntoIterator<Item = String>) -> Vec<String> {
    let unique: BTreeSet<String> = set.into_iter().collect();
    unique.into_iter().collect()
}

/// The records of `table` that belong to these institutions.
pub(super) async fn load<T, R: Reader>(
    tx: &mut R,
    table: &str,
    institutions: &[String],
    decode: fn(&R::Row) -> Result<Stored<T>>,
) -> Result<Vec<Pushed<T>>> {
    let sql = format!("SELECT * FROM {table} WHERE institution_uscc");
    select_in(tx, &sql, "", &[], institutions)
        .await?
        .iter()
        .map(|row| decode(row).map(pushed))
        .collect()
}

/// A registry row as the rules see it.
pub(super) fn facts(row: &impl Columns) -> Result<InstitutionFacts> {
    let stored = q::decode_institution(row)?;
    let i = &stored.record;
    Ok(InstitutionFacts {
        uscc: i.uscc.clone(),
        jurisdiction: i.jurisdiction.clone(),
        kind: i.kind,
        grade: i.grade,
        funding_form: i.funding_form,
        status: i.status,
        status_since: i.status_since,
        political_legal: i.political_legal,
        record: RecordRef(format!("{}/{}", stored.agency_id, stored.record_id)),
    })
}

/// An entry (a hire, or a transfer arriving) from a `personnel_events` row; `None` without a
/// category.
pub(super) fn entry(row: &impl Columns) -> Result<Option<Entry>> {
    let event = q::decode_event(row)?;
    let institution = match event.event_type {
        PersonnelEventType::Transfer => event.target.clone().unwrap_or(event.institution.clone()),
        _ => event.institution.clone(),
    };
    let Some(category) = event.category else {
        return Ok(None);
    };
    Ok(Some(Entry {
        resident_id: event.resident_id,
        institution,
        category,
        channel: event.channel,
        date: event.effective_on,
        approval_number: event.approval_number,
        arrival: q::int(row, "accepted_at")?,
        record: record_ref(row)?,
    }))
}

/// The appointment that opened each term: (resident, institution, level, position, from).
pub(super) type Openings = HashMap<(String, String, String, String, String), RecordRef>;

pub(super) fn opening(row: &impl Columns, openings: &mut Openings) -> Result<()> {
    let key = (
        q::text(row, "resident_id")?,
        q::text(row, "institution_uscc")?,
        q::text(row, "level")?,
        q::text(row, "position")?,
        q::text(row, "effective_on")?,
    );
    openings.insert(key, record_ref(row)?);
    Ok(())
}

/// A `leader_terms` row, with the appointment that opened it as its evidence.
pub(super) fn term(row: &impl Columns, openings: &Openings) -> Result<PersonTerm> {
    let term = LeaderTerm {
        institution: q::uscc(row, "institution_uscc")?,
        level: q::code(row, "level")?,
        position: q::code(row, "position")?,
        rank: q::code(row, "rank")?,
        valid_from: q::date(row, "valid_from")?,
        valid_to: q::opt_date(row, "valid_to")?,
    };
    let resident_id = q::resident_id(row)?;
    let key = (
        resident_id.to_string(),
        term.institution.to_string(),
        term.level.code().to_owned(),
        term.position.code().to_owned(),
        term.valid_from.to_string(),
    );
    let record = openings
        .get(&key)
        .cloned()
        .unwrap_or_else(|| RecordRef(format!("term/{}", key.0)));
    Ok(PersonTerm {
        resident_id,
        term,
        record,
    })
}

// ---------------------------------------------------------------------------------------------
// The roll counts.

/// Moves the stored counts of the rolls a batch's rewrites moved, in two statements whatever
/// their number: the shifts merged into runs that do not overlap ([`Headcount::merged`]), each
/// run's ends become change dates (with the count they had), then every change date in a run
/// moves by its run. A count read is then the last change on or before the date, one row.
pub(crate) async fn shift_roll_counts<W: Writer>(
    tx: &mut W,
    shifts: &[aggregates::Shift<(Uscc, QuotaCategory)>],
    today: NaiveDate,
) -> Result<()> {
    let runs = Headcount::merged(shifts);
    if runs.is_empty() {
        return Ok(());
    }
    let backend = tx.backend();
    let ends = runs.iter().flat_map(|run| {
        let (uscc, category) = &run.key;
        std::iter::once(run.from)
            .chain(run.to)
            .map(move |day| (uscc.as_str(), category.code(), day.to_string()))
    });
    let sql = statement!(
        backend,
        format!(
            "{} INSERT INTO roll_counts (institution_uscc, category, on_date, people) \
             SELECT k.k0, k.k1, k.k2, COALESCE((SELECT r.people FROM roll_counts r \
             WHERE r.institution_uscc = k.k0 AND r.category = k.k1 AND r.on_date <= k.k2 \
             ORDER BY r.on_date DESC LIMIT 1), 0) FROM k WHERE true ON CONFLICT DO NOTHING",
            with_keys(backend, &[Part::Text, Part::Text, Part::Text])
        )
    );
    execute(tx, sql, vec![key_rows(ends)]).await?;
    // Open runs end after any date: dates are written YYYY-MM-DD.
    let moves = runs.iter().map(|run| {
        let (uscc, category) = &run.key;
        let to = run
            .to
            .map_or_else(|| "9999-12-31".to_owned(), |to| to.to_string());
        (
            uscc.as_str(),
            category.code(),
            run.from.to_string(),
            to,
            run.by,
        )
    });
    let parts = [Part::Text, Part::Text, Part::Text, Part::Text, Part::Int];
    let sql = statement!(
        backend,
        format!(
            "{} UPDATE roll_counts SET people = people + k.k4 FROM k \
             WHERE roll_counts.institution_uscc = k.k0 AND roll_counts.category = k.k1 \
             AND roll_counts.on_date >= k.k2 AND roll_counts.on_date < k.k3",
            with_keys(backend, &parts)
        )
    );
    execute(tx, sql, vec![key_rows(moves)]).await?;
    // Each moved roll's kept row, set again as of today: one statement text whatever the number
    // of rolls (a `VALUES` list of two parameters a roll was a new text, parsed and planned, for
    // every number of rolls a push moved).
    let moved = runs
        .iter()
        .map(|run| (run.key.0.as_str(), run.key.1.code()));
    let sql = statement!(
        backend,
        roll_now::set_rolls(&key_select(backend, &[Part::Text, Part::Text]), 2)
    );
    let mut values = vec![key_rows(moved)];
    values.extend(roll_now::on(today));
    execute(tx, sql, values).await
}

/// Moves the stored count of entries, and of policy placements, per (institution, category,
/// year) ([`Plans::moves`]), in one statement: the moves summed per year first.
pub(crate) async fn count_plan_entries<W: Writer>(
    tx: &mut W,
    moves: &[((Uscc, QuotaCategory, i32), aggregates::Taken)],
) -> Result<()> {
    let mut summed: BTreeMap<(&str, &str, i32), (i64, i64)> = BTreeMap::new();
    for ((uscc, category, year), (by, placed)) in moves {
        let sum = summed
            .entry((uscc.as_str(), category.code(), *year))
            .or_default();
        sum.0 += by;
        sum.1 += placed;
    }
    let rows: Vec<_> = summed
        .into_iter()
        .filter(|(_, moved)| *moved != (0, 0))
        .map(|((uscc, category, year), (by, placed))| (uscc, category, year, by, placed))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let parts = [Part::Text, Part::Text, Part::Int, Part::Int, Part::Int];
    let sql = statement!(
        tx.backend(),
        format!(
            "{} INSERT INTO plan_entries (institution_uscc, category, year, entries, placements) \
             SELECT k.k0, k.k1, k.k2, k.k3, k.k4 FROM k WHERE true \
             ON CONFLICT (institution_uscc, category, year) DO UPDATE SET \
             entries = plan_entries.entries + excluded.entries, \
             placements = plan_entries.placements + excluded.placements",
            with_keys(tx.backend(), &parts)
        )
    );
    execute(tx, sql, vec![key_rows(rows)]).await
}

/// Fills the kept counts from the stored spells and events when they are empty and the spells are
/// not: a database from before the counts existed. Each person's spells are put on as one rewrite
/// from nothing, exactly as the pushes would have.
pub(crate) async fn rebuild_counts(store: &Store) -> Result<()> {
    // Replicas starting together fill them once.
    let mut tx = store.begin_locked(&["counts".to_owned()]).await?;
    let counted: Vec<AnyRow> = sqlx::query("SELECT 1 AS one FROM roll_counts LIMIT 1")
        .fetch_all(&mut *tx)
        .await?;
    let spelled: Vec<AnyRow> = sqlx::query("SELECT 1 AS one FROM person_spells LIMIT 1")
        .fetch_all(&mut *tx)
        .await?;
    if !counted.is_empty() || spelled.is_empty() {
        return Ok(());
    }
    tracing::info!("filling the roll and entry counts from the stored history (once)");
    let mut headcount = Headcount::default();
    let rows = sqlx::query("SELECT * FROM person_spells ORDER BY resident_id, ordinal")
        .fetch_all(&mut *tx)
        .await?;
    let mut person: Option<String> = None;
    let mut spells: Vec<Spell> = Vec::new();
    let put_on = |spells: &mut Vec<Spell>, headcount: &mut Headcount| {
        let rewrite = Rewrite {
            before: Vec::new(),
            after: std::mem::take(spells),
        };
        Headcount::shifts(&rewrite)
            .iter()
            .for_each(|s| headcount.shift_by(s));
    };
    for row in &rows {
        let resident: String = column(row, "resident_id")?;
        if person.as_ref() != Some(&resident) {
            put_on(&mut spells, &mut headcount);
            person = Some(resident);
        }
        spells.push(q::decode_spell(row)?);
    }
    put_on(&mut spells, &mut headcount);
    drop(rows);
    let counts: Vec<[Value; 4]> = headcount
        .counts()
        .map(|((uscc, category), day, n)| {
            [
                Value::from(uscc.as_str()),
                Value::from(category.code()),
                Value::Text(day.to_string()),
                Value::Int(n),
            ]
        })
        .collect();
    tx.insert_rows(
        "INSERT INTO roll_counts (institution_uscc, category, on_date, people)",
        "",
        counts,
    )
    .await?;
    sqlx::query(
        "INSERT INTO plan_entries (institution_uscc, category, year, entries, placements) \
         SELECT CASE WHEN event_type = 'TRANSFER' THEN COALESCE(target_uscc, institution_uscc) ELSE institution_uscc END, \
         category, CAST(SUBSTR(effective_on, 1, 4) AS BIGINT), COUNT(*), \
         SUM(CASE WHEN channel = 'POLICY_PLACEMENT' THEN 1 ELSE 0 END) FROM personnel_events \
         WHERE corrected_by IS NULL AND event_type IN ('HIRE', 'TRANSFER') AND category IS NOT NULL \
         GROUP BY 1, 2, 3",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn execute<W: Writer>(tx: &mut W, sql: &str, values: Vec<Value>) -> Result<()> {
    tx.execute_in_order(sql, values).await.map(drop)
}

pub(super) async fn fetch<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<R::Row>> {
    let rows = tx.rows(sql, values).await?;
    reads.add(tx, rows.len());
    Ok(rows)
}

pub(super) async fn fetch_in<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    head: &str,
    tail: &str,
    fixed: &[Value],
    keys: &[String],
) -> Result<Vec<R::Row>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = select_in(tx, head, tail, fixed, keys).await?;
    reads.add(tx, rows.len());
    Ok(rows)
}

/// The registry entries of a key set (bound by [`select_in`]).
pub(super) const INSTITUTIONS: &str = "SELECT * FROM institutions WHERE uscc";

/// The quotas of a key set of institutions (bound by [`select_in`]).
pub(super) const QUOTAS: &str = "SELECT * FROM quotas WHERE institution_uscc";

/// The fundings of each (institution, category) from a period on (none: every period), in one
/// statement: (USCC, category code) -> its fundings.
pub(super) async fn fundings_from<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    units: &[(&Uscc, QuotaCategory, Option<crate::domain::Period>)],
) -> Result<HashMap<(String, String), Vec<Pushed<crate::domain::Funding>>>> {
    let mut fundings: HashMap<(String, String), Vec<Pushed<crate::domain::Funding>>> =
        HashMap::new();
    if units.is_empty() {
        return Ok(fundings);
    }
    let keys = units.iter().map(|(uscc, category, first)| {
        let first = first.map(|p| p.to_string()).unwrap_or_default();
        (uscc.as_str(), category.code(), first)
    });
    let sql = per_key_once!(
        tx.backend(),
        &[Part::Text, Part::Text, Part::Text],
        "fundings",
        "t.institution_uscc = k.k0 AND t.category = k.k1 AND t.period >= k.k2",
    );
    for row in fetch(tx, reads, sql, vec![key_rows(keys)]).await? {
        let funding = pushed(q::decode_funding(&row)?);
        let unit = (
            funding.record.institution.to_string(),
            funding.record.category.code().to_owned(),
        );
        fundings.entry(unit).or_default().push(funding);
    }
    Ok(fundings)
}

/// The live payroll lines of people, each within a range of periods, in one statement whatever
/// their number; `$1` binds [`pay_bounds`]. The lines are indexed by (period, person), not by
/// person first (migration 0026): a month's lines then land together at the index's end, where
/// by person each line went to a leaf of its own and a month's push wrote most of the index again
/// (plain INSERTs of a city's twelfth month ran at 0.25-0.43x of its first). So a person's lines
/// are sought once per stored period within the bounds, the periods walked on the same index
/// (`periods`: a seek each, a loose index scan), each key the outer loop as in [`per_key`].
pub(super) fn live_lines_of(backend: Backend) -> &'static str {
    statement!(backend, {
        let keys = key_select(backend, &[Part::Text, Part::Text, Part::Text]);
        let periods = "periods(p) AS (\
             SELECT (SELECT period FROM payroll_lines WHERE period >= (SELECT MIN(k1) FROM k) \
               ORDER BY period LIMIT 1) \
             UNION ALL \
             SELECT (SELECT period FROM payroll_lines WHERE period > periods.p \
               ORDER BY period LIMIT 1) FROM periods WHERE periods.p < (SELECT MAX(k2) FROM k))";
        let live = "t.reverses IS NULL AND t.reversed_by IS NULL";
        let lines = match backend {
            Backend::Sqlite => format!(
                "SELECT t.* FROM k CROSS JOIN periods CROSS JOIN payroll_lines t \
                 ON t.period = periods.p AND t.resident_id = k.k0 \
                 WHERE periods.p >= k.k1 AND periods.p <= k.k2 AND {live}"
            ),
            Backend::Postgres => format!(
                "SELECT t.* FROM k CROSS JOIN periods CROSS JOIN LATERAL \
                 (SELECT * FROM payroll_lines t WHERE t.period = periods.p \
                 AND t.resident_id = k.k0 AND periods.p >= k.k1 AND periods.p <= k.k2 \
                 AND {live} OFFSET 0) t"
            ),
        };
        // `k` is read three times: SQLite scans the JSON again rather than copy it into a
        // temporary B-tree ([`with_keys_again`]); PostgreSQL keeps it once, parsed.
        let kept = match backend {
            Backend::Sqlite => "NOT MATERIALIZED ",
            Backend::Postgres => "",
        };
        format!("WITH RECURSIVE k AS {kept}({keys}), {periods} {lines}")
    })
}

/// The live payroll lines of exact (person, period) keys, in one statement whatever their
/// number; `$1` binds [`pay_keys`]. Each key is one seek on the index by (period, person), where
/// [`live_lines_of`] would walk every stored period between the keys' first and last and pair
/// each key with each of them.
pub(super) fn live_lines_at(backend: Backend) -> &'static str {
    per_key_once!(
        backend,
        &[Part::Text, Part::Text],
        "payroll_lines",
        "t.period = k.k1 AND t.resident_id = k.k0 AND t.reverses IS NULL AND t.reversed_by IS NULL",
    )
}

/// The (person, period) keys [`live_lines_at`] reads.
pub(super) fn pay_keys(keys: impl IntoIterator<Item = (String, String)>) -> Value {
    key_rows(keys)
}

/// The bounds [`live_lines_of`] reads: (resident, first period, last period), `None` for no
/// bound (from the first stored period, or to the last).
pub(super) fn pay_bounds<'a>(
    bounds: impl IntoIterator<Item = (&'a str, Option<&'a str>, Option<&'a str>)>,
) -> Value {
    key_rows(
        bounds.into_iter().map(|(resident, first, last)| {
            (resident, first.unwrap_or(""), last.unwrap_or("9999-99"))
        }),
    )
}

/// A part of a composite key: how its JSON value is read back.
#[derive(Debug, Clone, Copy)]
enum Part {
    Text,
    Int,
}

/// Composite keys bound as one JSON array of arrays (`$1`), as the common table `k` with columns
/// `k0`, `k1`, ...: a statement reads a set of keys in one go, its text the same whatever their
/// number (as [`select_in`] for single keys). The statement's own parameters number from `$2`.
fn with_keys(backend: Backend, parts: &[Part]) -> String {
    keys_as(backend, parts, "")
}

/// [`with_keys`] for a statement that reads `k` more than once: SQLite would otherwise copy the
/// set into a temporary table first (a B-tree and a page cache of its own), where scanning the
/// JSON again costs less.
fn with_keys_again(backend: Backend, parts: &[Part]) -> String {
    keys_as(backend, parts, "NOT MATERIALIZED ")
}

fn keys_as(backend: Backend, parts: &[Part], materialized: &str) -> String {
    format!("WITH k AS {materialized}({})", key_select(backend, parts))
}

/// The keys bound as `$1` (a JSON array of arrays) as rows, with columns `k0`, `k1`, ...: the
/// query [`with_keys`] names `k`, for a statement that names it itself.
fn key_select(backend: Backend, parts: &[Part]) -> String {
    let columns: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| match (backend, part) {
            (Backend::Sqlite, _) => format!("json_extract(value, '$[{i}]') AS k{i}"),
            (Backend::Postgres, Part::Text) => format!("v->>{i} AS k{i}"),
            (Backend::Postgres, Part::Int) => format!("(v->>{i})::bigint AS k{i}"),
        })
        .collect();
    let columns = columns.join(", ");
    match backend {
        Backend::Sqlite => format!("SELECT {columns} FROM json_each($1)"),
        Backend::Postgres => format!("SELECT {columns} FROM json_array_elements($1::json) AS v"),
    }
}

/// The rows `t` of `table` that `on` (conditions on `t` and `k.kN`) pairs with each key of the
/// set, each key sought by itself by index: on SQLite a `CROSS JOIN`, which keeps the keys the
/// outer loop (a plain join let the planner scan the table by a constant condition, such as a
/// finding's code, and look each row up in the keys); on PostgreSQL a lateral subquery that
/// `OFFSET 0` keeps from being flattened into a join, which its planner, without statistics,
/// answers by hashing the whole table against the set.
fn per_key(backend: Backend, parts: &[Part], table: &str, on: &str) -> String {
    per_key_each(backend, parts, table, &[on])
}

/// [`per_key`] of each condition of `ons`, in one statement (`UNION ALL`): for conditions that
/// no row meets two of, each sought by its own index.
fn per_key_each(backend: Backend, parts: &[Part], table: &str, ons: &[&str]) -> String {
    let with = if ons.len() > 1 {
        with_keys_again(backend, parts)
    } else {
        with_keys(backend, parts)
    };
    let arms: Vec<String> = ons
        .iter()
        .map(|on| match backend {
            Backend::Sqlite => format!("SELECT t.* FROM k CROSS JOIN {table} t ON {on}"),
            Backend::Postgres => format!(
                "SELECT t.* FROM k CROSS JOIN LATERAL \
                 (SELECT * FROM {table} t WHERE {on} OFFSET 0) t"
            ),
        })
        .collect();
    format!("{with} {}", arms.join(" UNION ALL "))
}

/// Keys as the JSON array of arrays [`with_keys`] reads, in order and once each, so that the
/// same set binds the same text (a pre-check's [`ReadOnce`](super::read::ReadOnce) knows it again).
/// Each key is a tuple or array of strings and numbers, written once as JSON and sorted as text:
/// built as `serde_json::Value`s, sorted by their text and written again, they were a twentieth
/// of a CheckHire's own work (`perf`, SQLite, 16 callers).
fn key_rows<K: serde::Serialize>(keys: impl IntoIterator<Item = K>) -> Value {
    let mut rows: Vec<String> = keys
        .into_iter()
        .map(|key| serde_json::to_string(&key).expect("keys of strings and numbers are JSON"))
        .collect();
    rows.sort_unstable();
    rows.dedup();
    Value::Text(format!("[{}]", rows.join(",")))
}

/// The people on each (institution, category)'s roll on its date, from the kept counts, in one
/// statement whatever the keys' number and dates: (USCC, category code, date) -> people.
pub(super) async fn headcounts_on<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    rolls: &[(&Uscc, QuotaCategory, NaiveDate)],
) -> Result<HashMap<(String, String, NaiveDate), i64>> {
    if rolls.is_empty() {
        return Ok(HashMap::new());
    }
    let backend = tx.backend();
    let sql = statement!(
        backend,
        format!(
            "{} SELECT k.k0 AS institution_uscc, k.k1 AS category, k.k2 AS on_date, \
             (SELECT r.people FROM roll_counts r WHERE r.institution_uscc = k.k0 \
             AND r.category = k.k1 AND r.on_date <= k.k2 ORDER BY r.on_date DESC LIMIT 1) \
             AS people FROM k",
            with_keys(backend, &[Part::Text, Part::Text, Part::Text])
        )
    );
    let keys = rolls
        .iter()
        .map(|(uscc, category, on)| (uscc.as_str(), category.code(), on.to_string()));
    let rows = fetch(tx, reads, sql, vec![key_rows(keys)]).await?;
    rows.iter()
        .map(|row| {
            let roll = (
                q::text(row, "institution_uscc")?,
                q::text(row, "category")?,
                q::date(row, "on_date")?,
            );
            Ok((roll, row.int("people")?.unwrap_or(0)))
        })
        .collect()
}

/// The people of one roll on `on` among counts [`headcounts_on`] read (none kept: nobody).
fn people_on(
    counts: &HashMap<(String, String, NaiveDate), i64>,
    uscc: &Uscc,
    category: QuotaCategory,
    on: NaiveDate,
) -> i64 {
    counts
        .get(&(uscc.to_string(), category.code().to_owned(), on))
        .copied()
        .unwrap_or(0)
}

/// The people on (institution, category)'s roll on `on`: the count `decided` read, or, where
/// the decisions did not count that roll (a move within it), read from the kept counts.
pub(super) async fn headcount_on<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    decided: &Decisions,
    (uscc, category): (&Uscc, QuotaCategory),
    on: NaiveDate,
) -> Result<i64> {
    if decided
        .counts
        .contains_key(&(uscc.to_string(), category.code().to_owned(), on))
    {
        return Ok(people_on(&decided.counts, uscc, category, on));
    }
    let counts = headcounts_on(tx, reads, &[(uscc, category, on)]).await?;
    Ok(people_on(&counts, uscc, category, on))
}

/// The first [`EVIDENCE_SAMPLE`] people on (institution, category)'s roll on `on`, by resident ID.
async fn roll_sample<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    backend: Backend,
    (uscc, category): (&Uscc, QuotaCategory),
    on: NaiveDate,
) -> Result<BTreeSet<ResidentId>> {
    let day = on.to_string();
    let statuses = [
        PersonStatus::Active,
        PersonStatus::Seconded,
        PersonStatus::OnLeave,
    ];
    let mut values = vec![Value::from(uscc.as_str()), Value::from(category.code())];
    values.extend(statuses.iter().map(|s| Value::from(s.code())));
    values.extend([Value::Text(day.clone()), Value::Text(day)]);
    values.push(Value::Int(EVIDENCE_SAMPLE as i64));
    // By the roll's index, in resident order: the scan stops at the sample's last person. On
    // PostgreSQL the start stays sought, as it was: taking it out there is not measured (the
    // 92 ms CheckHire first blamed on it was the JIT's, see `postgres::connect`).
    let started = match backend {
        Backend::Sqlite => not_sought(backend, "valid_from"),
        Backend::Postgres => "valid_from".to_owned(),
    };
    let sql = format!(
        "SELECT resident_id FROM person_spells WHERE institution_uscc = $1 AND category = $2 \
         AND status IN ($3, $4, $5) AND {started} <= $6 AND (valid_to IS NULL OR valid_to > $7) \
         GROUP BY resident_id ORDER BY {} LIMIT $8",
        by_id(backend, "resident_id")
    );
    let rows = tx.rows(&sql, values).await?;
    reads.add(tx, rows.len());
    rows.iter().map(q::resident_id).collect()
}

/// `column` in a condition the database must not seek by: without statistics a planner prefers
/// an index on two equalities (an institution and an event type: everything the institution ever
/// had) to the selective one on a single column (an approval number, a person's roll), and
/// reads the institution's history to keep a few rows. So does PostgreSQL's, on a table that was
/// never analyzed (a bulk load, autovacuum behind or off): on the city, a CheckHire's count of
/// an approval's use read 89 pages on average, all of the institution's hires (`EXPLAIN` of the
/// largest: 126 pages by the institution, 32 by the approval). An expression of the column
/// (SQLite's unary `+`, an empty string appended on PostgreSQL) takes it out of the choice.
pub(super) fn not_sought(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Sqlite => format!("+{column}"),
        Backend::Postgres => format!("({column} || '')"),
    }
}

/// How a sample's rows are ordered: by their id as bytes, as the domain orders evidence, whatever
/// the PostgreSQL database's collation.
pub(super) fn by_id(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Sqlite => column.to_owned(),
        Backend::Postgres => format!("({column}) COLLATE \"C\""),
    }
}

/// What [`plans_for`] reads of a year: the entries (and of them the policy placements) counted
/// for (institution, category, year), and the plans of that year.
pub(super) type YearPlans = (aggregates::Taken, Vec<Pushed<crate::domain::StaffingPlan>>);

/// [`YearPlans`] of each (institution, category, year), in two statements whatever their number:
/// (USCC, category code, year) -> what was read (nothing read: no entries, no plans).
pub(super) async fn plans_for<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    units: &[(&Uscc, QuotaCategory, i32)],
) -> Result<HashMap<(String, String, i32), YearPlans>> {
    let mut found: HashMap<(String, String, i32), YearPlans> = HashMap::new();
    if units.is_empty() {
        return Ok(found);
    }
    let backend = tx.backend();
    let parts = [Part::Text, Part::Text, Part::Int];
    let keys = || {
        key_rows(
            units
                .iter()
                .map(|(uscc, category, year)| (uscc.as_str(), category.code(), year)),
        )
    };
    let on = "t.institution_uscc = k.k0 AND t.category = k.k1 AND t.year = k.k2";
    for row in fetch(
        tx,
        reads,
        per_key_once!(backend, &parts, "plan_entries", on),
        vec![keys()],
    )
    .await?
    {
        let year = i32::try_from(q::int(&row, "year")?).unwrap_or(i32::MAX);
        let unit = (
            q::text(&row, "institution_uscc")?,
            q::text(&row, "category")?,
            year,
        );
        found.entry(unit).or_default().0 = (q::int(&row, "entries")?, q::int(&row, "placements")?);
    }
    for row in fetch(
        tx,
        reads,
        per_key_once!(backend, &parts, "staffing_plans", on),
        vec![keys()],
    )
    .await?
    {
        let plan = pushed(q::decode_plan(&row)?);
        let unit = (
            plan.record.institution.to_string(),
            plan.record.category.code().to_owned(),
            plan.record.year,
        );
        found.entry(unit).or_default().1.push(plan);
    }
    Ok(found)
}

/// The entries counted for (institution, category, year) and the plans of that year.
pub(super) async fn plans_of<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    (uscc, category, year): (&Uscc, QuotaCategory, i32),
) -> Result<YearPlans> {
    let mut found = plans_for(tx, reads, &[(uscc, category, year)]).await?;
    Ok(found
        .remove(&(uscc.to_string(), category.code().to_owned(), year))
        .unwrap_or_default())
}

/// The first [`EVIDENCE_SAMPLE`] entries of (institution, category, year), by record id.
async fn entry_sample<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    backend: Backend,
    (uscc, category, year): (&Uscc, QuotaCategory, i32),
) -> Result<BTreeSet<RecordRef>> {
    let order = by_id(backend, "agency_id || '/' || record_id");
    let mut sample = BTreeSet::new();
    for (kind, column) in ENTRIES {
        let sql = format!(
            "SELECT agency_id, record_id FROM personnel_events WHERE corrected_by IS NULL AND event_type = '{kind}' \
             AND {column} = $1 AND category = $2 AND effective_on >= $3 AND effective_on <= $4 \
             ORDER BY {order} LIMIT {EVIDENCE_SAMPLE}"
        );
        let values = vec![
            Value::from(uscc.as_str()),
            Value::from(category.code()),
            Value::Text(format!("{year:04}-01-01")),
            Value::Text(format!("{year:04}-12-31")),
        ];
        let rows = tx.rows(&sql, values).await?;
        reads.add(tx, rows.len());
        for row in &rows {
            sample.insert(record_ref(row)?);
        }
    }
    Ok(sample.into_iter().take(EVIDENCE_SAMPLE).collect())
}

// ---------------------------------------------------------------------------------------------
// Deciding dirty keys.

/// Whether a key is decided from counts (and so by [`aggregates`]) rather than from rows.
fn counted(key: &DirtyKey) -> bool {
    matches!(
        key,
        DirtyKey::Headcount { .. }
            | DirtyKey::Funding { .. }
            | DirtyKey::FundedLimit { .. }
            | DirtyKey::PlanUse { .. }
    )
}

/// Whether a key reads a registry entry as a whole (decided by the scope path).
pub(crate) fn reads_registry(key: &DirtyKey) -> bool {
    matches!(key, DirtyKey::Registry { .. })
}

/// Decides the findings `dirty` covers as of `as_of` and reports every change; writes those `keep`
/// keeps. Keys that read a registry entry as a whole are not decided here (see
/// [`reads_registry`]); the caller checks their institutions' scope.
pub(crate) async fn check_dirty<W: Writer>(
    store: &Store,
    tx: &mut W,
    dirty: &DirtySet,
    known: &Known,
    as_of: NaiveDate,
    keep: Keep,
) -> Result<Vec<FindingChange>> {
    let computed = decide(store, tx, dirty, known, as_of).await?;
    let decided = DirtyIndex::new(dirty.keys().filter(|k| !reads_registry(k)));
    let covers = |key: &FindingKey| decided.covers(key);
    let existing = stored_findings(tx, store.check_reads(), dirty, &covers).await?;
    settle(store, tx, computed, existing, keep).await
}

/// The findings the keys cover, decided as of `as_of`, each with its jurisdiction.
pub(crate) async fn decide<R: Reader>(
    store: &Store,
    tx: &mut R,
    dirty: &DirtySet,
    known: &Known,
    as_of: NaiveDate,
) -> Result<Vec<(Finding, String)>> {
    Ok(decide_pair(store, tx, dirty, known, as_of, None)
        .await?
        .without)
}

/// A pair of decisions ([`decide_pair`]): the findings without the act and with it, each with
/// its jurisdiction, and the rolls' counts they were decided by (a pre-check's headcount,
/// [`headcount_on`], is taken from them rather than read again).
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    pub without: Vec<(Finding, String)>,
    pub with: Vec<(Finding, String)>,
    counts: HashMap<(String, String, NaiveDate), i64>,
}

/// The findings the keys cover as of `as_of`, with the act (empty without an act) and without
/// it, each with its jurisdiction: one read of the keys' rows and counts serves both. With an
/// act, the findings without it are only those of keys found with it, all a pre-check compares
/// ([`precheck::hire_answer`](crate::domain::precheck::hire_answer)).
pub(crate) async fn decide_pair<R: Reader>(
    store: &Store,
    tx: &mut R,
    dirty: &DirtySet,
    known: &Known,
    as_of: NaiveDate,
    act: Option<&Act>,
) -> Result<Decisions> {
    let reads = store.check_reads();
    let config = &store.checks().rules;
    let keys: Vec<&DirtyKey> = dirty.keys().filter(|k| !reads_registry(k)).collect();
    if keys.is_empty() {
        return Ok(Decisions::default());
    }

    // The registry entries the keys name: they place the findings, and say whether an
    // institution's roster and receipts can be findings at all.
    let named: Vec<String> = list(keys.iter().filter_map(|k| institution_of(k)));
    let mut registry: HashMap<String, InstitutionFacts> = HashMap::new();
    for row in fetch_in(tx, reads, INSTITUTIONS, "", &[], &named).await? {
        let f = facts(&row)?;
        registry.insert(f.uscc.to_string(), f);
    }

    // A decision may find more than its key covers (funding decides SELF_FUNDED_BUDGET_PAY too):
    // only what some key covers is kept.
    let by_counts = DirtyIndex::new(keys.iter().copied().filter(|k| counted(k)));
    let counted_by_keys = |f: &Finding| by_counts.covers(&f.key);
    let Decided {
        mut without,
        mut with,
        counts,
    } = decide_counted(store, tx, &keys, &registry, as_of, act).await?;
    without.retain(counted_by_keys);
    with.retain(counted_by_keys);

    let row_keys: Vec<&DirtyKey> = keys.iter().copied().filter(|k| !counted(k)).collect();
    let snapshot = rows_of(tx, reads, &row_keys, known, &registry, as_of, act).await?;
    let everything = Scope {
        everything: true,
        ..Scope::default()
    };
    let by_rows = DirtyIndex::new(row_keys.iter().copied());
    // No row key covers a rule of counts (`rules::COUNTED`): those are the counted keys'.
    let oracle = |snapshot: &Snapshot| {
        rules::check_rows(snapshot, &everything, as_of, config)
            .into_iter()
            .filter(|f| by_rows.covers(&f.key))
            .collect::<Vec<_>>()
    };
    match act {
        Some(act) => {
            let mut after = snapshot.clone();
            after.spells.extend(act.spells.iter().cloned());
            after.entries.extend(act.entries.iter().cloned());
            after.terms.extend(act.terms.iter().cloned());
            after.fundings.extend(act.funding.iter().cloned());
            let found = oracle(&after);
            // An answer compares only the keys found with the act (`precheck::brought`), so
            // the rows are decided without it only when they find something with it: deciding
            // them twice was a tenth of a CheckHire's own work.
            if !found.is_empty() {
                without.extend(oracle(&snapshot));
            }
            with.extend(found);
            let decided: HashSet<&FindingKey> = with.iter().map(|f| &f.key).collect();
            without.retain(|f| decided.contains(&f.key));
        }
        None => without.extend(oracle(&snapshot)),
    }

    let place = |decided: Vec<Finding>| -> Vec<(Finding, String)> {
        decided
            .into_iter()
            .map(|finding| {
                let facts = registry.get(&finding.key.institution);
                let jurisdiction = jurisdiction_of(facts, &finding.key.institution);
                (finding, jurisdiction)
            })
            .collect()
    };
    Ok(Decisions {
        without: place(without),
        with: place(with),
        counts,
    })
}

fn institution_of(key: &DirtyKey) -> Option<String> {
    Some(
        match key {
            DirtyKey::Headcount { institution, .. }
            | DirtyKey::Roster { institution }
            | DirtyKey::Placement { institution, .. }
            | DirtyKey::Receipts { institution, .. }
            | DirtyKey::Funding { institution, .. }
            | DirtyKey::FundedLimit { institution, .. }
            | DirtyKey::PlanUse { institution, .. }
            | DirtyKey::Entered { institution, .. }
            | DirtyKey::Draws { institution, .. }
            | DirtyKey::LeaderPosts { institution, .. }
            | DirtyKey::LeaderGrade { institution, .. }
            | DirtyKey::Registry { institution, .. } => institution,
            DirtyKey::Person { .. } | DirtyKey::PersonPeriod { .. } => return None,
        }
        .to_string(),
    )
}

/// OVER_QUOTA and QUOTA_FULL of the headcount keys, FUNDED_OVER_QUOTA and SELF_FUNDED_BUDGET_PAY
/// of the funding keys: the kept counts, the quotas and the latest funding, by
/// [`aggregates::decide_headcount`] and [`aggregates::decide_funding`].
async fn decide_counted<R: Reader>(
    store: &Store,
    tx: &mut R,
    keys: &[&DirtyKey],
    registry: &HashMap<String, InstitutionFacts>,
    as_of: NaiveDate,
    act: Option<&Act>,
) -> Result<Decided> {
    let (reads, backend, config) = (store.check_reads(), store.backend(), &store.checks().rules);
    // A pre-check (an act) answers with the findings' codes, numbers and explanations, none of
    // which cites the sampled roll or entries, and compares its two decisions' evidence only by
    // length, which one shared sample or none keeps equal: it reads no sample.
    let cites_evidence = act.is_none();
    let mut found = Decided::default();
    let institutions: Vec<String> = list(
        keys.iter()
            .filter(|k| counted(k))
            .filter_map(|k| institution_of(k)),
    );
    if institutions.is_empty() {
        return Ok(found);
    }
    let quotas = {
        let rows = fetch_in(tx, reads, QUOTAS, "", &[], &institutions).await?;
        let records: Vec<Pushed<_>> = rows
            .iter()
            .map(|row| q::decode_quota(row).map(pushed))
            .collect::<Result<_>>()?;
        Quotas::from_records(&records)
    };

    let years: Vec<(&Uscc, QuotaCategory, i32)> = keys
        .iter()
        .filter_map(|key| match key {
            DirtyKey::PlanUse {
                institution,
                category,
                year,
            } => Some((institution, *category, *year)),
            _ => None,
        })
        .collect();
    let mut year_plans = plans_for(tx, reads, &years).await?;

    // Funding periods to decide, per (institution, category): every period a funding key names.
    let mut funded: BTreeMap<(Uscc, QuotaCategory), Vec<&DirtyKey>> = BTreeMap::new();
    for key in keys {
        if let DirtyKey::Funding {
            institution,
            category,
            ..
        }
        | DirtyKey::FundedLimit {
            institution,
            category,
            ..
        } = key
        {
            funded
                .entry((institution.clone(), *category))
                .or_default()
                .push(key);
        }
    }

    // Each unit's fundings from the earliest period a key names (none: every period).
    let firsts: Vec<(&Uscc, QuotaCategory, Option<crate::domain::Period>)> = funded
        .iter()
        .map(|((institution, category), unit_keys)| {
            let first = unit_keys
                .iter()
                .map(|key| match key {
                    DirtyKey::Funding { period, .. } => Some(*period),
                    DirtyKey::FundedLimit { periods, .. } => periods.first,
                    _ => None,
                })
                .min()
                .flatten();
            (institution, *category, first)
        })
        .collect();
    let mut stored_fundings = fundings_from(tx, reads, &firsts).await?;
    // Each unit's fundings as of its keys' periods, without the act and with it.
    let mut units = Vec::new();
    for ((institution, category), unit_keys) in funded {
        let stored = stored_fundings
            .remove(&(institution.to_string(), category.code().to_owned()))
            .unwrap_or_default();
        let added = act
            .and_then(|act| act.funding.clone())
            .filter(|f| f.record.institution == institution && f.record.category == category);
        let named = |period: crate::domain::Period| {
            let key = FindingKey {
                code: RuleCode::FundedOverQuota,
                institution: institution.to_string(),
                subject: category.code().to_owned(),
                period: period.to_string(),
            };
            unit_keys.iter().any(|k| k.covers(&key))
        };
        // The unit's quotas only: a bulk push decides thousands of units, each with its own.
        let mut without = Aggregates {
            quotas: quotas.only(&(institution.clone(), category)),
            ..Aggregates::default()
        };
        let mut periods = BTreeSet::new();
        for funding in stored.iter().filter(|f| named(f.record.period)) {
            periods.insert(funding.record.period);
            without.fundings.restate(funding);
        }
        let mut with = act.map(|_| without.clone());
        if let (Some(with), Some(added)) = (&mut with, &added)
            && named(added.record.period)
        {
            periods.insert(added.record.period);
            with.fundings.restate(added);
        }
        units.push((institution, category, periods, without, with));
    }

    // The rolls' counts: the headcount keys' on `as_of`, the funded units' on their periods' last
    // days, all in one statement whatever their number.
    let mut rolls: Vec<(&Uscc, QuotaCategory, NaiveDate)> = keys
        .iter()
        .filter_map(|key| match key {
            DirtyKey::Headcount {
                institution,
                category,
            } => Some((institution, *category, as_of)),
            _ => None,
        })
        .collect();
    rolls.extend(
        units
            .iter()
            .flat_map(|(institution, category, periods, ..)| {
                periods
                    .iter()
                    .map(move |period| (institution, *category, period.last_day()))
            }),
    );
    let counts = headcounts_on(tx, reads, &rolls).await?;

    for key in keys {
        match key {
            DirtyKey::Headcount {
                institution,
                category,
            } => {
                let unit = (institution, *category);
                let people = people_on(&counts, institution, *category, as_of);
                let decide = |people: i64, sample: &BTreeSet<ResidentId>| {
                    let headcount =
                        Headcount::known((institution.clone(), *category), as_of, people);
                    aggregates::decide_headcount(
                        institution,
                        *category,
                        &headcount,
                        &quotas,
                        sample,
                        config,
                        as_of,
                    )
                };
                let moved = act.map(|act| people + act.people_moved(unit, as_of));
                let mut without = decide(people, &BTreeSet::new());
                let mut with = moved.map(|people| decide(people, &BTreeSet::new()));
                if cites_evidence
                    && (!without.is_empty() || with.as_ref().is_some_and(|w| !w.is_empty()))
                {
                    // Only a finding cites the roll.
                    let sample = roll_sample(tx, reads, backend, unit, as_of).await?;
                    without = decide(people, &sample);
                    with = moved.map(|people| decide(people, &sample));
                }
                found.add(without, with);
            }
            DirtyKey::PlanUse {
                institution,
                category,
                year,
            } => {
                let unit = (institution, *category, *year);
                let (taken, plans) = year_plans
                    .remove(&(institution.to_string(), category.code().to_owned(), *year))
                    .unwrap_or_default();
                let decide = |taken: aggregates::Taken, sample: &BTreeSet<RecordRef>| {
                    let known = Plans::known(unit, taken, &plans);
                    let over = aggregates::decide_plan(unit, &known, sample);
                    let short = aggregates::decide_reserve(unit, &known, sample);
                    over.into_iter().chain(short).collect::<Vec<_>>()
                };
                let moved = act.map(|act| {
                    let (by, placed) = act.entries_moved(unit);
                    (taken.0 + by, taken.1 + placed)
                });
                let mut without = decide(taken, &BTreeSet::new());
                let mut with = moved.map(|taken| decide(taken, &BTreeSet::new()));
                if cites_evidence
                    && (!without.is_empty() || with.as_ref().is_some_and(|w| !w.is_empty()))
                {
                    let sample = entry_sample(tx, reads, backend, unit).await?;
                    without = decide(taken, &sample);
                    with = moved.map(|taken| decide(taken, &sample));
                }
                found.add(without, with);
            }
            _ => {}
        }
    }

    for (institution, category, periods, mut without, mut with) in units {
        for period in periods {
            let day = period.last_day();
            let unit = (&institution, category);
            let people = people_on(&counts, &institution, category, day);
            let facts = registry.get(institution.as_str());
            let decide = |aggregates: &mut Aggregates, people: i64| {
                aggregates.headcount =
                    Headcount::known((institution.clone(), category), day, people);
                aggregates::decide_funding((&institution, category, period), aggregates, facts)
            };
            let after = with.as_mut().map(|with| {
                let moved = act.map_or(0, |act| act.people_moved(unit, day));
                decide(with, people + moved)
            });
            found.add(decide(&mut without, people), after);
        }
    }
    found.counts = counts;
    Ok(found)
}

/// Findings decided without an act, and with it (when there is one).
#[derive(Debug, Default)]
struct Decided {
    without: Vec<Finding>,
    with: Vec<Finding>,
    /// The rolls' counts read: (USCC, category code, date) -> people.
    counts: HashMap<(String, String, NaiveDate), i64>,
}

impl Decided {
    fn add<I: IntoIterator<Item = Finding>>(&mut self, without: I, with: Option<I>) {
        self.without.extend(without);
        self.with.extend(with.into_iter().flatten());
    }
}

/// An entry is a hire into `institution_uscc` or a transfer into `target_uscc`.
const ENTRIES: [(&str, &str); 2] = [("HIRE", "institution_uscc"), ("TRANSFER", "target_uscc")];

/// Every entry of each (institution, person, date), sought by the person (see [`not_sought`]).
async fn entries_entered<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    entered: &BTreeSet<(String, String, String)>,
) -> Result<Vec<Entry>> {
    let keys = key_rows(
        entered
            .iter()
            .map(|(institution, resident, date)| (resident, date, institution)),
    );
    let backend = tx.backend();
    let sql = statement!(
        backend,
        entries_per_key(backend, &[Part::Text, Part::Text, Part::Text], |at| {
            format!("t.resident_id = k.k0 AND t.effective_on = k.k1 AND {at} = k.k2")
        })
    );
    entries_of(tx, reads, sql, keys).await
}

/// Every entry citing each (institution, approval number), sought by the number.
async fn entries_citing<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    numbers: &BTreeSet<(String, String)>,
) -> Result<Vec<Entry>> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let backend = tx.backend();
    let sql = statement!(
        backend,
        entries_per_key(backend, &[Part::Text, Part::Text], |at| {
            format!("{at} = k.k0 AND t.approval_number = k.k1")
        })
    );
    entries_of(tx, reads, sql, numbered(numbers)).await
}

/// The statement of the entries each key pairs with by `on` (given the column naming the
/// institution entered, taken out of the planner's choice), in one statement whatever their
/// number.
fn entries_per_key(backend: Backend, parts: &[Part], on: impl Fn(&str) -> String) -> String {
    let conditions = ENTRIES.map(|(kind, column)| {
        let at = not_sought(backend, &format!("t.{column}"));
        format!(
            "t.corrected_by IS NULL AND t.event_type = '{kind}' AND {}",
            on(&at)
        )
    });
    let conditions = conditions.each_ref().map(String::as_str);
    per_key_each(backend, parts, "personnel_events", &conditions)
}

/// The entries an [`entries_per_key`] statement reads for `keys`.
async fn entries_of<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    sql: &str,
    keys: Value,
) -> Result<Vec<Entry>> {
    let mut found = Vec::new();
    for row in fetch(tx, reads, sql, vec![keys]).await? {
        found.extend(entry(&row)?);
    }
    Ok(found)
}

/// The hiring approvals of each (institution, approval number), in one statement.
async fn approvals_numbered<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    numbers: &BTreeSet<(String, String)>,
) -> Result<Vec<Pushed<crate::domain::HiringApproval>>> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let sql = per_key_once!(
        tx.backend(),
        &[Part::Text, Part::Text],
        "hiring_approvals",
        &format!(
            "{} = k.k0 AND t.approval_number = k.k1",
            not_sought(tx.backend(), "t.institution_uscc")
        ),
    );
    fetch(tx, reads, sql, vec![numbered(numbers)])
        .await?
        .iter()
        .map(|row| Ok(pushed(q::decode_approval(row)?)))
        .collect()
}

fn numbered(numbers: &BTreeSet<(String, String)>) -> Value {
    key_rows(numbers)
}

/// What a check knows before it decides, and does not read again: what resolving the approval
/// draws added and read ([`resolve_draws`]), and the spells the push itself wrote.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// The spells of each person whose history the push derived again, as it wrote them: the
    /// people a people push's keys name (reading them back was a tenth of its statements' time).
    pub(crate) spells: HashMap<String, Vec<Spell>>,
    /// Each entry key added, beside the draw it came from.
    pub(crate) added: Vec<(DirtyKey, DirtyKey)>,
    /// The (institution, approval number) pairs read.
    numbers: BTreeSet<(String, String)>,
    /// The (institution, approval number) pairs settled ([`draws_settled`]): deciding an entry
    /// citing one reads none of the others.
    settled: BTreeSet<(String, String)>,
    /// The pairs whose approvals were read to settle them, and those approvals.
    approved: (
        BTreeSet<(String, String)>,
        Vec<Pushed<crate::domain::HiringApproval>>,
    ),
    /// Every entry citing them: deciding the keys does not read them again.
    entries: Vec<Entry>,
    /// The stored entries citing each pair of `approved`, counted to settle it.
    cited: HashMap<(String, String), u64>,
}

impl Known {
    /// The entries the earliest `category` approval of (`institution`, `number`) grants and the
    /// stored entries citing the number, where resolving the draws read them (`None`: not read).
    pub(crate) fn approval_use(
        &self,
        institution: &Uscc,
        category: QuotaCategory,
        number: &str,
    ) -> Option<(u32, u32)> {
        let pair = (institution.to_string(), number.to_owned());
        let cited = *self.cited.get(&pair)?;
        let granted = granting(&self.approved.1, institution, category, number);
        Some(granted.map_or((0, 0), |a| {
            (
                a.record.approved_entries,
                u32::try_from(cited).unwrap_or(u32::MAX),
            )
        }))
    }
}

/// Of `approvals`, the one of (`institution`, `category`, `number`) whose entries a pre-check
/// shows as granted: the earliest accepted (of one batch, one agency's, the first record id).
pub(super) fn granting<'a>(
    approvals: impl IntoIterator<Item = &'a Pushed<crate::domain::HiringApproval>>,
    institution: &Uscc,
    category: QuotaCategory,
    number: &str,
) -> Option<&'a Pushed<crate::domain::HiringApproval>> {
    approvals
        .into_iter()
        .filter(|a| {
            let a = &a.record;
            a.institution == *institution && a.approval_number == number && a.category == category
        })
        .min_by(|a, b| (a.accepted_at, &a.id).cmp(&(b.accepted_at, &b.id)))
}

/// Resolves the approval draws of `dirty` ([`DirtySet::resolve`]) against the stored entries
/// citing their numbers, before anything is decided; `acted` are entries not stored (a
/// pre-check's). Numbers only entries added draw on are settled first when their entries still
/// fit ([`draws_settled`]), from counts: a city's initial load draws on each approval batch after
/// batch, and read every entry citing it each time (`sqlx` log: a sixth of a people push).
pub(crate) async fn resolve_draws<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    dirty: &mut DirtySet,
    acted: &[Entry],
) -> Result<Known> {
    let candidates = owned(dirty.drawn_by_additions());
    let approvals = approvals_numbered(tx, reads, &candidates).await?;
    let (settled, cited) = settled_numbers(tx, reads, &candidates, &approvals, acted).await?;
    dirty.settle(|institution, number| {
        settled.contains(&(institution.to_string(), number.to_owned()))
    });
    let numbers = owned(dirty.drawn());
    let entries = entries_citing(tx, reads, &numbers).await?;
    Ok(Known {
        spells: HashMap::new(),
        added: dirty.resolve(&entries),
        numbers,
        settled,
        approved: (candidates, approvals),
        entries,
        cited,
    })
}

/// (institution, approval number) pairs as the statements bind them.
fn owned(pairs: BTreeSet<(&Uscc, &str)>) -> BTreeSet<(String, String)> {
    pairs
        .into_iter()
        .map(|(institution, number)| (institution.to_string(), number.to_owned()))
        .collect()
}

/// Of `numbers` (institution, approval number), those whose entries, stored and `acted`, fit in
/// each of their `approvals` ([`draws_settled`]), and the stored entries citing each: one
/// statement for the counts, whatever their number.
async fn settled_numbers<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    numbers: &BTreeSet<(String, String)>,
    approvals: &[Pushed<crate::domain::HiringApproval>],
    acted: &[Entry],
) -> Result<(BTreeSet<(String, String)>, HashMap<(String, String), u64>)> {
    let (mut settled, mut cited) = (BTreeSet::new(), HashMap::new());
    if numbers.is_empty() {
        return Ok((settled, cited));
    }
    let mut approved: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
    for approval in approvals {
        let a = &approval.record;
        approved
            .entry((a.institution.as_str(), a.approval_number.as_str()))
            .or_default()
            .push(a.approved_entries);
    }
    let backend = tx.backend();
    let sql = statement!(backend, {
        let counted = ENTRIES.map(|(kind, column)| {
            format!(
                "(SELECT COUNT(*) FROM personnel_events t WHERE t.corrected_by IS NULL \
                 AND t.event_type = '{kind}' AND t.category IS NOT NULL AND {} = k.k0 \
                 AND t.approval_number = k.k1)",
                not_sought(backend, &format!("t.{column}"))
            )
        });
        format!(
            "{} SELECT k.k0 AS institution_uscc, k.k1 AS approval_number, {} AS entries FROM k",
            with_keys(backend, &[Part::Text, Part::Text]),
            counted.join(" + ")
        )
    });
    for row in fetch(tx, reads, sql, vec![numbered(numbers)]).await? {
        let number = (
            q::text(&row, "institution_uscc")?,
            q::text(&row, "approval_number")?,
        );
        let acted = acted.iter().filter(|e| {
            e.institution.as_str() == number.0 && e.approval_number.as_ref() == Some(&number.1)
        });
        let stored = u64::try_from(row.int("entries")?.unwrap_or(0)).unwrap_or(u64::MAX);
        let entries = stored + acted.count() as u64;
        let approved = approved
            .get(&(number.0.as_str(), number.1.as_str()))
            .into_iter()
            .flatten()
            .copied();
        if draws_settled(entries, approved) {
            settled.insert(number.clone());
        }
        cited.insert(number, stored);
    }
    Ok((settled, cited))
}

/// The rows the oracle needs to decide the row keys: each key's own, read by index.
async fn rows_of<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    keys: &[&DirtyKey],
    known: &Known,
    registry: &HashMap<String, InstitutionFacts>,
    as_of: NaiveDate,
    act: Option<&Act>,
) -> Result<Snapshot> {
    // An active registry entry vouches for an institution's roster and receipts.
    let vouched = |uscc: &Uscc| {
        registry
            .get(uscc.as_str())
            .is_some_and(|f| f.status == InstitutionStatus::Active)
    };
    let mut snapshot = Snapshot {
        institutions: registry.values().cloned().collect(),
        ..Snapshot::default()
    };
    let day = as_of.to_string();

    // People whose every spell the keys read, and rolls read on `as_of`.
    let mut people: BTreeSet<String> = BTreeSet::new();
    let mut rosters: BTreeSet<String> = BTreeSet::new();
    // Pay: (resident, first period, last period) to read.
    let mut pay: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    let mut receipts: Vec<(String, String)> = Vec::new();
    let mut entered: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut posts: BTreeSet<String> = BTreeSet::new();
    let mut grades: BTreeSet<(String, String)> = BTreeSet::new();
    for key in keys {
        match key {
            DirtyKey::Roster { institution } if !vouched(institution) => {
                rosters.insert(institution.to_string());
            }
            DirtyKey::Roster { .. } => {}
            DirtyKey::Placement { resident, .. } => {
                people.insert(resident.to_string());
            }
            DirtyKey::Person { resident, periods } => {
                people.insert(resident.to_string());
                pay.push((
                    resident.to_string(),
                    periods.first.map(|p| p.to_string()),
                    periods.last.map(|p| p.to_string()),
                ));
            }
            DirtyKey::PersonPeriod { resident, period } => {
                people.insert(resident.to_string());
                let period = Some(period.to_string());
                pay.push((resident.to_string(), period.clone(), period));
            }
            DirtyKey::Receipts {
                institution,
                period,
            } if !vouched(institution) => {
                receipts.push((institution.to_string(), period.to_string()));
            }
            DirtyKey::Receipts { .. } => {}
            DirtyKey::Entered {
                institution,
                resident,
                date,
            } => {
                entered.insert((
                    institution.to_string(),
                    resident.to_string(),
                    date.to_string(),
                ));
            }
            DirtyKey::LeaderPosts { institution, .. } => {
                posts.insert(institution.to_string());
            }
            DirtyKey::LeaderGrade {
                institution,
                resident,
            } => {
                grades.insert((institution.to_string(), resident.to_string()));
            }
            DirtyKey::Headcount { .. }
            | DirtyKey::Funding { .. }
            | DirtyKey::FundedLimit { .. }
            | DirtyKey::PlanUse { .. }
            | DirtyKey::Draws { .. }
            | DirtyKey::Registry { .. } => {}
        }
    }

    // Spells, once each.
    let mut spells: BTreeMap<(String, i64), PersonSpell> = BTreeMap::new();
    // Those the push wrote, as it wrote them; the others read.
    let (written, people): (Vec<String>, Vec<String>) = people
        .into_iter()
        .partition(|resident| known.spells.contains_key(resident));
    for resident in written {
        let resident_id = stored(ResidentId::parse(&resident))?;
        for (ordinal, spell) in known.spells[&resident].iter().enumerate() {
            spells.insert(
                (resident.clone(), ordinal as i64),
                PersonSpell {
                    resident_id: resident_id.clone(),
                    spell: spell.clone(),
                },
            );
        }
    }
    let mut keep_spell = |row: &R::Row| -> Result<()> {
        let resident = q::resident_id(row)?;
        let ordinal: i64 = q::int(row, "ordinal")?;
        spells.insert(
            (resident.to_string(), ordinal),
            PersonSpell {
                resident_id: resident,
                spell: q::decode_spell(row)?,
            },
        );
        Ok(())
    };
    for row in fetch_in(
        tx,
        reads,
        "SELECT * FROM person_spells WHERE resident_id",
        "",
        &[],
        &people,
    )
    .await?
    {
        keep_spell(&row)?;
    }
    let rosters: Vec<String> = rosters.into_iter().collect();
    for row in fetch_in(
        tx,
        reads,
        "SELECT * FROM person_spells WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $2) AND institution_uscc",
        "",
        &[Value::Text(day.clone()), Value::Text(day.clone())],
        &rosters,
    )
    .await?
    {
        keep_spell(&row)?;
    }
    snapshot.spells = spells.into_values().collect();

    // Live payroll lines, once each: every person's periods in one statement, within their
    // bounds (none: from the first / to the last).
    let mut lines: BTreeMap<RecordRef, Pushed<crate::domain::PayrollLine>> = BTreeMap::new();
    if !pay.is_empty() {
        let bounds =
            pay_bounds(pay.iter().map(|(resident, first, last)| {
                (resident.as_str(), first.as_deref(), last.as_deref())
            }));
        for row in fetch(tx, reads, live_lines_of(tx.backend()), vec![bounds]).await? {
            let line = pushed(q::decode_payroll_line(&row)?);
            lines.insert(line.id.clone(), line);
        }
    }
    for (institution, period) in &receipts {
        let values = || {
            vec![
                Value::from(institution.as_str()),
                Value::from(period.as_str()),
            ]
        };
        for row in fetch(
            tx,
            reads,
            "SELECT * FROM payroll_lines WHERE reverses IS NULL AND reversed_by IS NULL \
             AND institution_uscc = $1 AND period = $2",
            values(),
        )
        .await?
        {
            let line = pushed(q::decode_payroll_line(&row)?);
            lines.insert(line.id.clone(), line);
        }
        for row in fetch(
            tx,
            reads,
            "SELECT * FROM fundings WHERE institution_uscc = $1 AND period = $2",
            values(),
        )
        .await?
        {
            snapshot.fundings.push(pushed(q::decode_funding(&row)?));
        }
    }
    snapshot.payroll = lines.into_values().collect();

    // Entries and what they draw on.
    // HIRE_WITHOUT_APPROVAL of (institution, person, date): every entry of those, and every
    // entry citing their numbers (the allocation of a number is decided over all of them).
    let mut entries: BTreeMap<RecordRef, Entry> = BTreeMap::new();
    if !entered.is_empty() {
        for entry in entries_entered(tx, reads, &entered).await? {
            entries.insert(entry.record.clone(), entry);
        }
        let mut numbers: BTreeSet<(String, String)> = entries
            .values()
            .filter_map(|e| Some((e.institution.to_string(), e.approval_number.clone()?)))
            .collect();
        // The act's entries cite approvals too (a pre-check's entry is not stored).
        let acted = act.into_iter().flat_map(|act| &act.entries).filter(|e| {
            entered.contains(&(
                e.institution.to_string(),
                e.resident_id.to_string(),
                e.date.to_string(),
            ))
        });
        numbers.extend(
            acted.filter_map(|e| Some((e.institution.to_string(), e.approval_number.clone()?))),
        );
        // Those resolving the draws read are not read again.
        let read = known.entries.iter().filter(|e| {
            e.approval_number
                .as_ref()
                .is_some_and(|n| numbers.contains(&(e.institution.to_string(), n.clone())))
        });
        for entry in read.cloned() {
            entries.insert(entry.record.clone(), entry);
        }
        let unread = numbers
            .difference(&known.numbers)
            .filter(|number| !known.settled.contains(*number))
            .cloned()
            .collect();
        for entry in entries_citing(tx, reads, &unread).await? {
            entries.insert(entry.record.clone(), entry);
        }
        // Those settling the draws read are not read again.
        let (approved, approvals) = &known.approved;
        let cited = |a: &&Pushed<crate::domain::HiringApproval>| {
            numbers.contains(&(
                a.record.institution.to_string(),
                a.record.approval_number.clone(),
            ))
        };
        snapshot.approvals = approvals.iter().filter(cited).cloned().collect();
        let unread = numbers.difference(approved).cloned().collect();
        snapshot
            .approvals
            .extend(approvals_numbered(tx, reads, &unread).await?);
    }
    snapshot.entries = entries.into_values().collect();

    // Leader terms on the posts (as of `as_of`) and of the leaders the keys name.
    let posts: Vec<String> = posts.into_iter().collect();
    if !posts.is_empty() {
        snapshot.leader_posts = load(tx, "leader_posts", &posts, q::decode_post).await?;
        reads.add(tx, snapshot.leader_posts.len());
    }
    let mut term_rows = fetch_in(
        tx,
        reads,
        "SELECT * FROM leader_terms WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $2) AND institution_uscc",
        "",
        &[Value::Text(day.clone()), Value::Text(day)],
        &posts,
    )
    .await?;
    let leaders: Vec<String> = list(grades.iter().map(|(_, r)| r.clone()));
    for row in fetch_in(
        tx,
        reads,
        "SELECT * FROM leader_terms WHERE resident_id",
        "",
        &[],
        &leaders,
    )
    .await?
    {
        let at: String = q::text(&row, "institution_uscc")?;
        let resident: String = q::text(&row, "resident_id")?;
        if grades.contains(&(at, resident)) {
            term_rows.push(row);
        }
    }
    if !term_rows.is_empty() {
        let holders: Vec<String> = list(
            term_rows
                .iter()
                .map(|row| q::text(row, "resident_id"))
                .collect::<Result<Vec<_>>>()?,
        );
        let mut openings = Openings::new();
        for row in fetch_in(
            tx,
            reads,
            "SELECT agency_id, record_id, resident_id, institution_uscc, level, position, effective_on FROM appointments WHERE action = 'APPOINT' AND resident_id",
            "",
            &[],
            &holders,
        )
        .await?
        {
            opening(&row, &mut openings)?;
        }
        let mut terms: BTreeMap<(String, i64), PersonTerm> = BTreeMap::new();
        for row in &term_rows {
            let ordinal: i64 = q::int(row, "ordinal")?;
            let term = term(row, &openings)?;
            terms.insert((term.resident_id.to_string(), ordinal), term);
        }
        snapshot.terms = terms.into_values().collect();
    }
    Ok(snapshot)
}

/// The stored findings `covers` holds: those about the keys' people by subject (only the named
/// period's, for a person named only by the pay of a period), the rest by institution and code
/// from the earliest period a key names, so that what is read is bounded by the keys, not by the
/// findings an institution or a person collected over the years.
async fn stored_findings<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    dirty: &DirtySet,
    covers: &(dyn Fn(&FindingKey) -> bool + Sync),
) -> Result<BTreeMap<FindingKey, StoredFinding>> {
    use RuleCode as R;
    let mut residents: BTreeSet<String> = BTreeSet::new();
    // A pay period's key covers that period's findings only (period -> people).
    let mut paid: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // (code, earliest period or "" for all) -> institutions.
    let mut by_code: BTreeMap<(RuleCode, String), BTreeSet<String>> = BTreeMap::new();
    // HIRE_WITHOUT_APPROVAL of (person, date, institution).
    let mut entered = Vec::new();
    let mut at = |code: RuleCode, institution: &Uscc, from: String| {
        by_code
            .entry((code, from))
            .or_default()
            .insert(institution.to_string());
    };
    for key in dirty.keys().filter(|k| !reads_registry(k)) {
        match key {
            DirtyKey::Headcount { institution, .. } => {
                at(R::OverQuota, institution, String::new());
                at(R::QuotaFull, institution, String::new());
            }
            DirtyKey::Roster { institution } => {
                at(R::UnregisteredInstitution, institution, String::new());
            }
            DirtyKey::Receipts {
                institution,
                period,
            } => at(R::UnregisteredInstitution, institution, period.to_string()),
            DirtyKey::Funding {
                institution,
                period,
                ..
            } => {
                at(R::FundedOverQuota, institution, period.to_string());
                at(R::SelfFundedBudgetPay, institution, period.to_string());
            }
            DirtyKey::FundedLimit {
                institution,
                periods,
                ..
            } => at(
                R::FundedOverQuota,
                institution,
                periods.first.map(|p| p.to_string()).unwrap_or_default(),
            ),
            DirtyKey::PlanUse {
                institution, year, ..
            } => {
                at(R::OverPlan, institution, format!("{year:04}"));
                at(R::ReserveShortfall, institution, format!("{year:04}"));
            }
            DirtyKey::Entered {
                institution,
                resident,
                date,
            } => {
                entered.push((resident.as_str(), date.to_string(), institution.as_str()));
            }
            DirtyKey::Draws { .. } => {}
            DirtyKey::LeaderPosts { institution, .. } => {
                at(R::OverLeaderPosts, institution, String::new());
            }
            DirtyKey::PersonPeriod { resident, period } => {
                paid.entry(period.to_string())
                    .or_default()
                    .insert(resident.to_string());
            }
            DirtyKey::Placement { resident, .. }
            | DirtyKey::Person { resident, .. }
            | DirtyKey::LeaderGrade { resident, .. } => {
                residents.insert(resident.to_string());
            }
            DirtyKey::Registry { .. } => {}
        }
    }
    // One query per code, from the earliest period any key names for it.
    let mut per_code: BTreeMap<RuleCode, (String, BTreeSet<String>)> = BTreeMap::new();
    for ((code, from), institutions) in by_code {
        let (earliest, all) = per_code
            .entry(code)
            .or_insert((from.clone(), BTreeSet::new()));
        if from < *earliest {
            *earliest = from;
        }
        all.extend(institutions);
    }
    let mut rows = Vec::new();
    for (code, (from, institutions)) in per_code {
        let institutions: Vec<String> = institutions.into_iter().collect();
        rows.extend(
            fetch_in(
                tx,
                reads,
                "SELECT * FROM findings WHERE code = $1 AND period >= $2 AND institution_uscc",
                "",
                &[Value::from(code.code()), Value::Text(from)],
                &institutions,
            )
            .await?,
        );
    }
    for (period, people) in paid {
        let people: Vec<String> = people.difference(&residents).cloned().collect();
        rows.extend(
            fetch_in(
                tx,
                reads,
                "SELECT * FROM findings WHERE period = $1 AND subject",
                "",
                &[Value::Text(period)],
                &people,
            )
            .await?,
        );
    }
    if !entered.is_empty() {
        let sql = per_key_once!(
            tx.backend(),
            &[Part::Text, Part::Text, Part::Text],
            "findings",
            &format!(
                "t.code = '{}' AND t.institution_uscc = k.k2 AND t.subject = k.k0 \
                 AND t.period = k.k1",
                R::HireWithoutApproval.code(),
            ),
        );
        rows.extend(fetch(tx, reads, sql, vec![key_rows(entered)]).await?);
    }
    let residents: Vec<String> = residents.into_iter().collect();
    if tx.backend() == Backend::Postgres && !residents.is_empty() {
        // Each subject sought by itself. As `= ANY` of the set, the statement (prepared once
        // on a push's connection) ran on a generic plan made while the table was small, which
        // read all of it: 1.5 ms a hire on the city, against 8 us planned for the value.
        let sql = per_key_once!(tx.backend(), &[Part::Text], "findings", "t.subject = k.k0");
        let keys = residents.iter().map(|r| [r]);
        rows.extend(fetch(tx, reads, sql, vec![key_rows(keys)]).await?);
    } else {
        rows.extend(
            fetch_in(
                tx,
                reads,
                "SELECT * FROM findings WHERE subject",
                "",
                &[],
                &residents,
            )
            .await?,
        );
    }
    let mut existing = BTreeMap::new();
    for row in &rows {
        let stored = decode_finding(row)?;
        if covers(&stored.finding.key) {
            existing.insert(stored.finding.key.clone(), stored);
        }
    }
    Ok(existing)
}

impl Keep {
    /// Whether a change to a finding of `key` is kept. Findings of the current roll (period "")
    /// describe today only.
    pub(crate) fn keeps(self, key: &FindingKey) -> bool {
        match self {
            Keep::Everything => true,
            Keep::DatedOnly => !key.period.is_empty(),
            Keep::Nothing => false,
        }
    }
}

/// Where a finding's institution sits: its registry entry's jurisdiction, or for an institution
/// the registry does not know, the division code in its USCC.
pub(crate) fn jurisdiction_of(facts: Option<&InstitutionFacts>, uscc: &str) -> String {
    match facts {
        Some(facts) => facts.jurisdiction.to_string(),
        None if uscc.len() == 18 => uscc[2..8].to_owned(),
        None => String::new(),
    }
}

/// Compares what a check decided with what is stored for the same keys: new findings are raised,
/// changed ones updated, vanished ones resolved, and a resolved one that shows again is raised
/// again. Reports every change; writes and appends to the feed those `keep` keeps.
pub(crate) async fn settle<W: Writer>(
    store: &Store,
    tx: &mut W,
    computed: Vec<(Finding, String)>,
    mut existing: BTreeMap<FindingKey, StoredFinding>,
    keep: Keep,
) -> Result<Vec<FindingChange>> {
    let now = now_micros();
    let escalation = &store.checks().escalation;
    let mut changes = Vec::new();
    for (finding, jurisdiction) in computed {
        let severity = finding.severity;
        let raised = |version: i64, finding: Finding, jurisdiction: String| StoredFinding {
            finding,
            jurisdiction,
            open: true,
            raised_at: now,
            updated_at: now,
            resolved_at: None,
            version,
            alert: Alert::raised(escalation, severity, now),
        };
        match existing.remove(&finding.key) {
            None => changes.push(FindingChange {
                kind: ChangeKind::Raised,
                finding: raised(1, finding, jurisdiction),
            }),
            Some(old) if !old.open => changes.push(FindingChange {
                kind: ChangeKind::Raised,
                finding: raised(old.version + 1, finding, jurisdiction),
            }),
            Some(old) if old.finding != finding || old.jurisdiction != jurisdiction => changes
                .push(FindingChange {
                    kind: ChangeKind::Updated,
                    finding: StoredFinding {
                        finding,
                        jurisdiction,
                        updated_at: now,
                        version: old.version + 1,
                        ..old
                    },
                }),
            Some(_) => {}
        }
    }
    for old in existing.into_values() {
        if old.open {
            changes.push(FindingChange {
                kind: ChangeKind::Resolved,
                finding: StoredFinding {
                    open: false,
                    updated_at: now,
                    resolved_at: Some(now),
                    version: old.version + 1,
                    ..old
                },
            });
        }
    }

    let kept: Vec<&FindingChange> = changes
        .iter()
        .filter(|change| keep.keeps(&change.finding.finding.key))
        .collect();
    if !kept.is_empty() {
        let stored: Vec<&StoredFinding> = kept.iter().map(|change| &change.finding).collect();
        write_findings(tx, &stored).await?;
        let events = kept
            .iter()
            .map(|change| (FeedEventType::from(change.kind), &change.finding));
        feed::append(store, tx, events).await?;
    }
    Ok(changes)
}
