//! The full re-check, set-based (issue 14, step 4). A jurisdiction is walked in chunks of
//! institutions (sorted USCCs; a chunk is the range from its first to its last, so every statement
//! text is the same whatever the chunk). For a chunk, SQL counts what the rules compare (people on
//! a roll on a date, leaders on a post, entries of a year, the latest funding against the roll on
//! the period's last day) and names the candidate keys of the rules without numbers (placements
//! in a wrong category or on two rolls, entries whose approvals may not cover them, pay no
//! placement explains); only the rows of those keys are read back, and
//! [`crate::domain::recheck`] turns counts and rows into findings with the same decisions (and
//! words) as a dirty key's. Nothing reads everything ever at an institution, which is what the
//! snapshot engine (`reconcile::snapshot`, the oracle) does.
//!
//! The findings of a chunk are those whose institution is one of the chunk's: each finding belongs
//! to exactly one chunk. They are merged with the stored findings of the chunk by key, and the
//! changes are written and put on the feed in the chunk's transaction, as a push's check does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::check::{jurisdiction_of, live_lines_at, pay_keys, settle};
use super::codec::column;
use super::findings::{ChangeKind, StoredFinding, decode_finding};
use super::query::{self as q, Stored};
use super::reconcile::{FindingChange, Keep, ReconcileReport};
use super::{Backend, Store, Tx, Value, bind_all, now_micros, select_in};
use crate::domain::aggregates::{Plans, Posts, Quotas};
use crate::domain::findings::{
    EVIDENCE_SAMPLE, Entry, Finding, FindingKey, InstitutionFacts, PersonSpell, PersonTerm, Pushed,
    RecordRef, RuleCode, RulesConfig, Snapshot,
};
use crate::domain::recheck::{self as decide, FundedKey, Unit};
use crate::domain::roll::{LeaderTerm, Spell};
use crate::domain::rules::Reserve;
use crate::domain::{
    Coded, FundingForm, InstitutionStatus, Jurisdiction, Period, PersonnelEventType, Uscc,
};
use crate::error::Result;

/// On the roll: the statuses that count (docs/RULES.md, `active`).
const ON_ROLL: &str = "('ACTIVE', 'SECONDED', 'ON_LEAVE')";

async fn fetch(tx: &mut Tx, sql: &str, values: Vec<Value>) -> Result<Vec<AnyRow>> {
    Ok(
        sqlx::query_with(AssertSqlSafe(sql.to_owned()), bind_all(values)?)
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// Sorts by an id in byte order, as the evidence is (PostgreSQL's default collation may not).
fn by_id(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Sqlite => column.to_owned(),
        Backend::Postgres => format!("({column}) COLLATE \"C\""),
    }
}

/// The date twice, for `select_in` statements that compare with it twice (on SQLite their
/// placeholders become plain `?`, one value each).
fn twice_on(as_of: NaiveDate) -> [Value; 2] {
    [
        Value::Text(as_of.to_string()),
        Value::Text(as_of.to_string()),
    ]
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn pushed<T>(stored: Stored<T>) -> Pushed<T> {
    Pushed {
        id: RecordRef(format!("{}/{}", stored.agency_id, stored.record_id)),
        record: stored.record,
        accepted_at: stored.accepted_at,
    }
}

/// One chunk: sorted USCCs, the first and last bounding every range statement.
struct Chunk<'a> {
    institutions: HashSet<&'a str>,
    lo: &'a str,
    hi: &'a str,
}

impl<'a> Chunk<'a> {
    fn new(institutions: &'a [String]) -> Chunk<'a> {
        Chunk {
            institutions: institutions.iter().map(String::as_str).collect(),
            lo: institutions.first().map_or("", String::as_str),
            hi: institutions.last().map_or("", String::as_str),
        }
    }

    fn range(&self) -> Vec<Value> {
        vec![text(self.lo), text(self.hi)]
    }

    /// `$1` the date, `$2` and `$3` the range. SQLite numbers `$N` parameters in order of first
    /// appearance, so a statement's first parameter must be `$1`, and so on: statements that name
    /// the range first use [`Chunk::range_on`].
    fn dated(&self, as_of: NaiveDate) -> Vec<Value> {
        vec![Value::Text(as_of.to_string()), text(self.lo), text(self.hi)]
    }

    /// `$1` and `$2` the range, `$3` the date.
    fn range_on(&self, as_of: NaiveDate) -> Vec<Value> {
        vec![text(self.lo), text(self.hi), Value::Text(as_of.to_string())]
    }

    fn holds(&self, key: &FindingKey) -> bool {
        !key.code.about_agency() && self.institutions.contains(key.institution.as_str())
    }
}

/// Decides every finding of a chunk as of `as_of`; also returns the chunk's registry entries.
async fn decide_chunk(
    tx: &mut Tx,
    backend: Backend,
    chunk: &Chunk<'_>,
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Result<(Vec<Finding>, HashMap<String, InstitutionFacts>)> {
    let facts = registry(tx, chunk).await?;
    let mut found = Vec::new();
    let quotas: Vec<Pushed<_>> = fetch(
        tx,
        "SELECT * FROM quotas WHERE institution_uscc BETWEEN $1 AND $2",
        chunk.range(),
    )
    .await?
    .iter()
    .map(|row| q::decode_quota(row).map(pushed))
    .collect::<Result<_>>()?;
    let quota_book = Quotas::from_records(&quotas);
    found.extend(headcount(tx, backend, chunk, as_of, config, &quotas, &quota_book).await?);
    found.extend(leaders(tx, chunk, as_of, config, &facts).await?);
    found.extend(roll_rows(tx, chunk, as_of, config, &facts).await?);
    found.extend(entries(tx, chunk, as_of, config).await?);
    found.extend(pay(tx, backend, chunk).await?);
    found.extend(funding(tx, chunk, quota_book, &facts).await?);
    found.retain(|f| chunk.holds(&f.key));
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((found, facts))
}

/// The registry entries of the chunk's range.
async fn registry(tx: &mut Tx, chunk: &Chunk<'_>) -> Result<HashMap<String, InstitutionFacts>> {
    let rows = fetch(
        tx,
        "SELECT * FROM institutions WHERE uscc BETWEEN $1 AND $2",
        chunk.range(),
    )
    .await?;
    rows.iter()
        .map(|row| {
            let stored = q::decode_institution(row)?;
            let i = &stored.record;
            Ok((
                i.uscc.to_string(),
                InstitutionFacts {
                    uscc: i.uscc.clone(),
                    jurisdiction: i.jurisdiction.clone(),
                    kind: i.kind,
                    grade: i.grade,
                    funding_form: i.funding_form,
                    status: i.status,
                    status_since: i.status_since,
                    political_legal: i.political_legal,
                    record: RecordRef(format!("{}/{}", stored.agency_id, stored.record_id)),
                },
            ))
        })
        .collect()
}

/// OVER_QUOTA and QUOTA_FULL: people per roll on `as_of` counted in SQL; the people themselves
/// are read only for the rolls that fire (their evidence).
async fn headcount(
    tx: &mut Tx,
    backend: Backend,
    chunk: &Chunk<'_>,
    as_of: NaiveDate,
    config: &RulesConfig,
    quotas: &[Pushed<crate::domain::Quota>],
    book: &Quotas,
) -> Result<Vec<Finding>> {
    let sql = format!(
        "SELECT institution_uscc, category, COUNT(DISTINCT resident_id) AS n FROM person_spells \
         WHERE institution_uscc BETWEEN $1 AND $2 AND status IN {ON_ROLL} \
         AND valid_from <= $3 AND (valid_to IS NULL OR valid_to > $3) \
         GROUP BY institution_uscc, category"
    );
    let mut active: BTreeMap<Unit, i64> = BTreeMap::new();
    for row in fetch(tx, &sql, chunk.range_on(as_of)).await? {
        let unit = (
            q::uscc(&row, "institution_uscc")?,
            q::code(&row, "category")?,
        );
        active.insert(unit, column(&row, "n")?);
    }
    let mut units: BTreeSet<Unit> = active.keys().cloned().collect();
    units.extend(
        quotas
            .iter()
            .map(|q| (q.record.institution.clone(), q.record.category)),
    );
    let firing = decide::headcount(&units, &active, book, &BTreeMap::new(), config, as_of);
    if firing.is_empty() {
        return Ok(firing);
    }
    let wanted = decide::firing_units(&firing);
    let at: Vec<String> = wanted
        .iter()
        .map(|(uscc, _)| uscc.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The evidence cites the first few people of a roll (EVIDENCE_SAMPLE, by resident ID): only
    // those are read.
    let head = format!(
        "SELECT institution_uscc, category, resident_id FROM ( \
           SELECT institution_uscc, category, resident_id, ROW_NUMBER() OVER ( \
             PARTITION BY institution_uscc, category ORDER BY {}) AS nth \
           FROM person_spells \
           WHERE status IN {ON_ROLL} AND valid_from <= $1 AND (valid_to IS NULL OR valid_to > $2) \
           AND institution_uscc",
        by_id(backend, "resident_id")
    );
    let tail = format!(
        "GROUP BY institution_uscc, category, resident_id) cited WHERE nth <= {EVIDENCE_SAMPLE}"
    );
    let mut people: BTreeMap<Unit, BTreeSet<_>> = BTreeMap::new();
    for row in select_in(tx, &head, &tail, &twice_on(as_of), &at).await? {
        let (uscc, category): (String, String) =
            (column(&row, "institution_uscc")?, column(&row, "category")?);
        if wanted.contains(&(uscc, category)) {
            let unit = (
                q::uscc(&row, "institution_uscc")?,
                q::code(&row, "category")?,
            );
            people
                .entry(unit)
                .or_default()
                .insert(q::resident_id(&row)?);
        }
    }
    let units: BTreeSet<Unit> = people.keys().cloned().collect();
    Ok(decide::headcount(
        &units, &active, book, &people, config, as_of,
    ))
}

/// OVER_LEADER_POSTS and LEADER_ABOVE_GRADE: the terms in force on `as_of` (leaders are few), each
/// with the appointment that opened it.
async fn leaders(
    tx: &mut Tx,
    chunk: &Chunk<'_>,
    as_of: NaiveDate,
    config: &RulesConfig,
    facts: &HashMap<String, InstitutionFacts>,
) -> Result<Vec<Finding>> {
    let posts: Vec<Pushed<_>> = fetch(
        tx,
        "SELECT * FROM leader_posts WHERE institution_uscc BETWEEN $1 AND $2",
        chunk.range(),
    )
    .await?
    .iter()
    .map(|row| q::decode_post(row).map(pushed))
    .collect::<Result<_>>()?;
    let rows = fetch(
        tx,
        "SELECT t.resident_id, t.ordinal, t.institution_uscc, t.level, t.position, t.rank, \
         t.valid_from, t.valid_to, a.agency_id AS opened_by, a.record_id AS opening, \
         a.accepted_at AS opened_at, a.arrival AS opened_arrival \
         FROM leader_terms t LEFT JOIN appointments a ON a.action = 'APPOINT' \
         AND a.resident_id = t.resident_id AND a.institution_uscc = t.institution_uscc \
         AND a.level = t.level AND a.position = t.position AND a.effective_on = t.valid_from \
         WHERE t.institution_uscc BETWEEN $1 AND $2 \
         AND t.valid_from <= $3 AND (t.valid_to IS NULL OR t.valid_to > $3)",
        chunk.range_on(as_of),
    )
    .await?;
    // Per term, the opening appointment stored last (the oracle's look-up keeps the last row).
    // (resident, ordinal) -> the term, and when its opening was stored (accepted_at, arrival).
    type Opened = (PersonTerm, Option<(i64, i64)>);
    let mut terms: BTreeMap<(String, i64), Opened> = BTreeMap::new();
    for row in rows {
        let resident_id = q::resident_id(&row)?;
        let ordinal: i64 = column(&row, "ordinal")?;
        let opened: Option<(i64, i64, String)> = match column::<Option<String>>(&row, "opened_by")?
        {
            Some(agency) => Some((
                column(&row, "opened_at")?,
                column(&row, "opened_arrival")?,
                format!("{agency}/{}", q::text(&row, "opening")?),
            )),
            None => None,
        };
        let term = LeaderTerm {
            institution: q::uscc(&row, "institution_uscc")?,
            level: q::code(&row, "level")?,
            position: q::code(&row, "position")?,
            rank: q::code(&row, "rank")?,
            valid_from: q::date(&row, "valid_from")?,
            valid_to: q::opt_date(&row, "valid_to")?,
        };
        let fallback = RecordRef(format!("term/{resident_id}"));
        let slot = terms
            .entry((resident_id.to_string(), ordinal))
            .or_insert_with(|| {
                (
                    PersonTerm {
                        resident_id,
                        term,
                        record: fallback,
                    },
                    None,
                )
            });
        if let Some((at, arrival, record)) = opened
            && slot.1.is_none_or(|seen| seen < (at, arrival))
        {
            slot.0.record = RecordRef(record);
            slot.1 = Some((at, arrival));
        }
    }
    let terms: Vec<PersonTerm> = terms.into_values().map(|(term, _)| term).collect();
    Ok(decide::leaders(
        &terms,
        &Posts::from_records(&posts),
        facts,
        config,
        as_of,
    ))
}

fn spells_of(rows: &[AnyRow]) -> Result<Vec<PersonSpell>> {
    rows.iter()
        .map(|row| {
            Ok(PersonSpell {
                resident_id: q::resident_id(row)?,
                spell: q::decode_spell(row)?,
            })
        })
        .collect()
}

/// MIXED_CATEGORY, DUPLICATE_ENROLLMENT and UNREGISTERED_INSTITUTION: the placements in a wrong
/// category, the people on two rolls or more, and what an institution outside the active registry
/// has, found in SQL and decided by the oracle over those rows alone.
async fn roll_rows(
    tx: &mut Tx,
    chunk: &Chunk<'_>,
    as_of: NaiveDate,
    config: &RulesConfig,
    facts: &HashMap<String, InstitutionFacts>,
) -> Result<Vec<Finding>> {
    let covering = "s.valid_from <= $1 AND (s.valid_to IS NULL OR s.valid_to > $1)";
    let mut found = Vec::new();

    let misplaced = fetch(
        tx,
        &format!(
            "SELECT s.* FROM person_spells s JOIN institutions i ON i.uscc = s.institution_uscc \
             WHERE s.institution_uscc BETWEEN $1 AND $2 AND s.status IN {ON_ROLL} \
             AND s.valid_from <= $3 AND (s.valid_to IS NULL OR s.valid_to > $3) \
             AND ((s.category = 'PUBLIC_INSTITUTION' AND i.kind = 'ORGAN') \
             OR (s.category = 'POLITICAL_LEGAL' AND i.political_legal = 0))"
        ),
        chunk.range_on(as_of),
    )
    .await?;
    if !misplaced.is_empty() {
        let spells = spells_of(&misplaced)?;
        let rows = Snapshot {
            institutions: institutions_of(
                spells.iter().map(|s| s.spell.institution.as_str()),
                facts,
            ),
            spells,
            ..Snapshot::default()
        };
        found.extend(decide::rows(
            &rows,
            &[RuleCode::MixedCategory],
            as_of,
            config,
            |_| true,
        ));
    }

    let twice: Vec<String> = fetch(
        tx,
        &format!(
            "SELECT s.resident_id FROM person_spells s WHERE s.status IN {ON_ROLL} AND {covering} \
             AND s.resident_id IN (SELECT c.resident_id FROM person_spells c \
               WHERE c.institution_uscc BETWEEN $2 AND $3 AND c.status IN {ON_ROLL} \
               AND c.valid_from <= $1 AND (c.valid_to IS NULL OR c.valid_to > $1)) \
             GROUP BY s.resident_id \
             HAVING COUNT(DISTINCT s.institution_uscc) >= 2 AND MIN(s.institution_uscc) BETWEEN $2 AND $3"
        ),
        chunk.dated(as_of),
    )
    .await?
    .iter()
    .map(|row| column(row, "resident_id"))
    .collect::<Result<_>>()?;
    if !twice.is_empty() {
        let head = format!(
            "SELECT * FROM person_spells WHERE status IN {ON_ROLL} \
             AND valid_from <= $1 AND (valid_to IS NULL OR valid_to > $2) AND resident_id"
        );
        let rows = select_in(tx, &head, "", &twice_on(as_of), &twice).await?;
        let rows = Snapshot {
            spells: spells_of(&rows)?,
            ..Snapshot::default()
        };
        found.extend(decide::rows(
            &rows,
            &[RuleCode::DuplicateEnrollment],
            as_of,
            config,
            |_| true,
        ));
    }

    // Institutions of the chunk the registry does not vouch for (missing, merged or abolished).
    let outside: Vec<String> = chunk
        .institutions
        .iter()
        .filter(|uscc| {
            facts
                .get(**uscc)
                .is_none_or(|f| f.status != InstitutionStatus::Active)
        })
        .map(|uscc| (*uscc).to_owned())
        .collect();
    if !outside.is_empty() {
        let head = format!(
            "SELECT * FROM person_spells WHERE status IN {ON_ROLL} \
             AND valid_from <= $1 AND (valid_to IS NULL OR valid_to > $2) AND institution_uscc"
        );
        let spells = select_in(tx, &head, "", &twice_on(as_of), &outside).await?;
        let lines = select_in(
            tx,
            "SELECT * FROM payroll_lines WHERE reverses IS NULL AND reversed_by IS NULL AND institution_uscc",
            "",
            &[],
            &outside,
        )
        .await?;
        let fundings = select_in(
            tx,
            "SELECT * FROM fundings WHERE institution_uscc",
            "",
            &[],
            &outside,
        )
        .await?;
        let rows = Snapshot {
            institutions: institutions_of(outside.iter().map(String::as_str), facts),
            spells: spells_of(&spells)?,
            payroll: lines
                .iter()
                .map(|row| q::decode_payroll_line(row).map(pushed))
                .collect::<Result<_>>()?,
            fundings: fundings
                .iter()
                .map(|row| q::decode_funding(row).map(pushed))
                .collect::<Result<_>>()?,
            ..Snapshot::default()
        };
        let outside: HashSet<&str> = outside.iter().map(String::as_str).collect();
        found.extend(decide::rows(
            &rows,
            &[RuleCode::UnregisteredInstitution],
            as_of,
            config,
            |key| outside.contains(key.institution.as_str()),
        ));
    }
    Ok(found)
}

/// The registry entries of these institutions, those it has.
fn institutions_of<'a>(
    usccs: impl Iterator<Item = &'a str>,
    facts: &HashMap<String, InstitutionFacts>,
) -> Vec<InstitutionFacts> {
    let usccs: BTreeSet<&str> = usccs.collect();
    usccs
        .into_iter()
        .filter_map(|uscc| facts.get(uscc).cloned())
        .collect()
}

/// The entries of the chunk's range: hires there and transfers arriving there.
const ENTRIES: &str = "WITH e AS ( \
    SELECT institution_uscc AS institution, category, approval_number, effective_on, channel FROM personnel_events \
    WHERE corrected_by IS NULL AND event_type = 'HIRE' AND category IS NOT NULL \
    AND institution_uscc BETWEEN $1 AND $2 \
    UNION ALL \
    SELECT target_uscc AS institution, category, approval_number, effective_on, channel FROM personnel_events \
    WHERE corrected_by IS NULL AND event_type = 'TRANSFER' AND category IS NOT NULL \
    AND target_uscc BETWEEN $1 AND $2)";

/// HIRE_WITHOUT_APPROVAL, OVER_PLAN and RESERVE_SHORTFALL. An entry group (institution, category,
/// approval cited) is clean when approvals of that number cover every entry's date and have
/// places for all of them: then the allocation gives every entry one. The others, and the years
/// with more entries than their plan or a reserve short, are decided by the oracle over their
/// entries, approvals and plans.
async fn entries(
    tx: &mut Tx,
    chunk: &Chunk<'_>,
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Result<Vec<Finding>> {
    type Group = (String, String, Option<String>);
    let groups = fetch(
        tx,
        &format!(
            "{ENTRIES}, g AS (SELECT institution, category, approval_number, COUNT(*) AS n, \
               MIN(effective_on) AS first_on, MAX(effective_on) AS last_on FROM e \
               GROUP BY institution, category, approval_number), \
             a AS (SELECT institution_uscc, category, approval_number, SUM(approved_entries) AS places, \
               MAX(issued_on) AS issued, MIN(valid_until) AS until FROM hiring_approvals \
               WHERE institution_uscc BETWEEN $1 AND $2 GROUP BY institution_uscc, category, approval_number) \
             SELECT g.institution, g.category, g.approval_number FROM g LEFT JOIN a \
               ON a.institution_uscc = g.institution AND a.category = g.category AND a.approval_number = g.approval_number \
             WHERE g.approval_number IS NULL OR a.places IS NULL OR g.n > a.places \
               OR g.first_on < a.issued OR g.last_on > a.until"
        ),
        chunk.range(),
    )
    .await?;
    let unclean: BTreeSet<Group> = groups
        .iter()
        .map(|row| {
            Ok((
                column(row, "institution")?,
                column(row, "category")?,
                column(row, "approval_number")?,
            ))
        })
        .collect::<Result<_>>()?;

    let plans: Vec<Pushed<_>> = fetch(
        tx,
        "SELECT * FROM staffing_plans WHERE institution_uscc BETWEEN $1 AND $2",
        chunk.range(),
    )
    .await?
    .iter()
    .map(|row| q::decode_plan(row).map(pushed))
    .collect::<Result<_>>()?;
    let mut book = Plans::default();
    plans.iter().for_each(|p| book.push(p));
    let mut over: BTreeSet<(String, String, i32)> = BTreeSet::new();
    for row in fetch(
        tx,
        &format!(
            "{ENTRIES} SELECT institution, category, SUBSTR(effective_on, 1, 4) AS year, COUNT(*) AS n, \
             SUM(CASE WHEN channel = 'POLICY_PLACEMENT' THEN 1 ELSE 0 END) AS placed \
             FROM e GROUP BY institution, category, SUBSTR(effective_on, 1, 4)"
        ),
        chunk.range(),
    )
    .await?
    {
        let uscc = q::uscc(&row, "institution")?;
        let category = q::code(&row, "category")?;
        let year: i32 = q::text(&row, "year")?.parse().unwrap_or_default();
        let taken: i64 = column(&row, "n")?;
        let placed: i64 = column(&row, "placed")?;
        let plan: i64 = book
            .counted(&uscc, category, year)
            .map(|p| i64::from(p.record.approved_count))
            .sum();
        let reserve = Reserve::of(
            book.counted(&uscc, category, year)
                .map(|p| (p.record.channel, p.record.approved_count)),
            taken,
            placed,
        );
        if taken > plan || reserve.short() {
            over.insert((uscc.to_string(), category.code().to_owned(), year));
        }
    }
    if unclean.is_empty() && over.is_empty() {
        return Ok(Vec::new());
    }

    let at: Vec<String> = unclean
        .iter()
        .map(|(uscc, _, _)| uscc.clone())
        .chain(over.iter().map(|(uscc, _, _)| uscc.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let all = entries_at(tx, &at).await?;
    let mut found = Vec::new();
    if !unclean.is_empty() {
        let at: Vec<String> = unclean
            .iter()
            .map(|(uscc, _, _)| uscc.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let approvals = select_in(
            tx,
            "SELECT * FROM hiring_approvals WHERE institution_uscc",
            "",
            &[],
            &at,
        )
        .await?;
        let rows = Snapshot {
            entries: all
                .iter()
                .filter(|e| {
                    unclean.contains(&(
                        e.institution.to_string(),
                        e.category.code().to_owned(),
                        e.approval_number.clone(),
                    ))
                })
                .cloned()
                .collect(),
            approvals: approvals
                .iter()
                .map(|row| q::decode_approval(row).map(pushed))
                .collect::<Result<_>>()?,
            ..Snapshot::default()
        };
        found.extend(decide::rows(
            &rows,
            &[RuleCode::HireWithoutApproval],
            as_of,
            config,
            |_| true,
        ));
    }
    if !over.is_empty() {
        let year_of = |uscc: &Uscc, category: crate::domain::QuotaCategory, year: i32| {
            over.contains(&(uscc.to_string(), category.code().to_owned(), year))
        };
        let rows = Snapshot {
            entries: all
                .iter()
                .filter(|e| year_of(&e.institution, e.category, chrono::Datelike::year(&e.date)))
                .cloned()
                .collect(),
            plans: plans
                .into_iter()
                .filter(|p| year_of(&p.record.institution, p.record.category, p.record.year))
                .collect(),
            ..Snapshot::default()
        };
        found.extend(decide::rows(
            &rows,
            &[RuleCode::OverPlan, RuleCode::ReserveShortfall],
            as_of,
            config,
            |_| true,
        ));
    }
    Ok(found)
}

/// Every entry into these institutions (as `reconcile::snapshot` reads them).
async fn entries_at(tx: &mut Tx, institutions: &[String]) -> Result<Vec<Entry>> {
    let hires = select_in(
        tx,
        "SELECT * FROM personnel_events WHERE corrected_by IS NULL AND event_type = 'HIRE' AND institution_uscc",
        "",
        &[],
        institutions,
    )
    .await?;
    let arrivals = select_in(
        tx,
        "SELECT * FROM personnel_events WHERE corrected_by IS NULL AND event_type = 'TRANSFER' AND target_uscc",
        "",
        &[],
        institutions,
    )
    .await?;
    let mut entries = Vec::new();
    for row in hires.iter().chain(&arrivals) {
        let event = q::decode_event(row)?;
        let institution = match event.event_type {
            PersonnelEventType::Transfer => {
                event.target.clone().unwrap_or(event.institution.clone())
            }
            _ => event.institution.clone(),
        };
        let Some(category) = event.category else {
            continue;
        };
        let agency: String = column(row, "agency_id")?;
        let record: String = column(row, "record_id")?;
        entries.push(Entry {
            resident_id: event.resident_id,
            institution,
            category,
            channel: event.channel,
            date: event.effective_on,
            approval_number: event.approval_number,
            arrival: column(row, "accepted_at")?,
            record: RecordRef(format!("{agency}/{record}")),
        });
    }
    Ok(entries)
}

/// The pay rules: the (person, period) keys with a line the chunk paid that no placement of the
/// person explains (not on the payer's roll, nor seconded to it, on any day of the period), or
/// with two payers; decided from those keys' lines and the people's spells.
async fn pay(tx: &mut Tx, backend: Backend, chunk: &Chunk<'_>) -> Result<Vec<Finding>> {
    let unexplained = format!(
        "SELECT DISTINCT p.resident_id, p.period FROM payroll_lines p \
         WHERE p.institution_uscc BETWEEN $1 AND $2 AND p.reverses IS NULL AND p.reversed_by IS NULL \
         AND NOT EXISTS (SELECT 1 FROM person_spells s WHERE s.resident_id = p.resident_id \
           AND s.status IN {ON_ROLL} \
           AND (s.institution_uscc = p.institution_uscc OR (s.status = 'SECONDED' AND s.seconded_to = p.institution_uscc)) \
           AND s.valid_from <= p.period || '-31' \
           AND (s.valid_to IS NULL OR (s.valid_to > p.period || '-01' AND s.valid_to > s.valid_from)))"
    );
    let twice = "SELECT DISTINCT p.resident_id, p.period FROM payroll_lines p \
         WHERE p.institution_uscc BETWEEN $1 AND $2 AND p.reverses IS NULL AND p.reversed_by IS NULL \
         AND EXISTS (SELECT 1 FROM payroll_lines o WHERE o.resident_id = p.resident_id \
           AND o.period = p.period AND o.reverses IS NULL AND o.reversed_by IS NULL \
           AND o.institution_uscc <> p.institution_uscc)";
    let mut candidates = BTreeSet::new();
    for sql in [unexplained.as_str(), twice] {
        for row in fetch(tx, sql, chunk.range()).await? {
            let period = crate::store::codec::stored(Period::parse(&q::text(&row, "period")?))?;
            candidates.insert((q::resident_id(&row)?, period));
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let people: Vec<String> = candidates
        .iter()
        .map(|(r, _)| r.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The candidates' own lines: each (person, period) one seek on the index by (period, person).
    let keys = pay_keys(
        candidates
            .iter()
            .map(|(resident, period)| (resident.to_string(), period.to_string())),
    );
    let lines: Vec<Pushed<_>> = fetch(tx, live_lines_at(backend), vec![keys])
        .await?
        .iter()
        .map(|row| q::decode_payroll_line(row).map(pushed))
        .collect::<Result<_>>()?;
    let mut spells: BTreeMap<_, Vec<Spell>> = BTreeMap::new();
    for row in select_in(
        tx,
        "SELECT * FROM person_spells WHERE resident_id",
        "ORDER BY resident_id, ordinal",
        &[],
        &people,
    )
    .await?
    {
        spells
            .entry(q::resident_id(&row)?)
            .or_default()
            .push(q::decode_spell(&row)?);
    }
    Ok(decide::pay(&candidates, &lines, &spells))
}

/// FUNDED_OVER_QUOTA and SELF_FUNDED_BUDGET_PAY: per latest funding, the people on the roll on the
/// period's last day and the smallest quota covering it, in SQL; a key whose funding could exceed
/// min(quota in force, people) (the quota in force is at least the smallest), or of a self-funded
/// institution, is decided from its fundings.
async fn funding(
    tx: &mut Tx,
    chunk: &Chunk<'_>,
    quotas: Quotas,
    facts: &HashMap<String, InstitutionFacts>,
) -> Result<Vec<Finding>> {
    let sql = format!(
        "SELECT l.institution_uscc, l.category, l.period, l.funded_headcount, i.funding_form, \
           (SELECT COUNT(DISTINCT s.resident_id) FROM person_spells s \
             WHERE s.institution_uscc = l.institution_uscc AND s.category = l.category \
             AND s.status IN {ON_ROLL} AND s.valid_from <= l.period || '-31' \
             AND (s.valid_to IS NULL OR s.valid_to > l.period || '-31')) AS active, \
           (SELECT MIN(q.approved_count) FROM quotas q \
             WHERE q.institution_uscc = l.institution_uscc AND q.category = l.category \
             AND q.effective_from <= l.period || '-31' \
             AND (q.effective_to IS NULL OR q.effective_to > l.period || '-31')) AS least \
         FROM fundings l LEFT JOIN institutions i ON i.uscc = l.institution_uscc \
         WHERE l.institution_uscc BETWEEN $1 AND $2 AND (l.funded_headcount > 0 OR l.amount_fen > 0) \
         AND l.accepted_at = (SELECT MAX(g.accepted_at) FROM fundings g \
           WHERE g.institution_uscc = l.institution_uscc AND g.category = l.category AND g.period = l.period)"
    );
    let self_funded = FundingForm::SelfFunded.code();
    let mut candidates: BTreeMap<_, i64> = BTreeMap::new();
    for row in fetch(tx, &sql, chunk.range()).await? {
        let funded: i64 = column(&row, "funded_headcount")?;
        let active: i64 = column(&row, "active")?;
        let least: Option<i64> = column(&row, "least")?;
        let form: Option<String> = column(&row, "funding_form")?;
        if form.as_deref() == Some(self_funded) || funded > least.unwrap_or(0).min(active) {
            let period = crate::store::codec::stored(Period::parse(&q::text(&row, "period")?))?;
            let key = (
                q::uscc(&row, "institution_uscc")?,
                q::code(&row, "category")?,
                period,
            );
            candidates.insert(key, active);
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let at: Vec<String> = candidates
        .keys()
        .map(|(uscc, _, _)| uscc.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let fundings: Vec<Pushed<_>> = select_in(
        tx,
        "SELECT * FROM fundings WHERE institution_uscc",
        "",
        &[],
        &at,
    )
    .await?
    .iter()
    .map(|row| q::decode_funding(row).map(pushed))
    .collect::<Result<Vec<_>>>()?
    .into_iter()
    .filter(|f: &Pushed<crate::domain::Funding>| {
        let r = &f.record;
        candidates.contains_key(&(r.institution.clone(), r.category, r.period))
    })
    .collect();
    let candidates: Vec<FundedKey> = candidates.into_iter().collect();
    Ok(decide::funding(&candidates, &fundings, quotas, facts))
}

/// The lock keys of a chunk on PostgreSQL: its institutions and everyone on their rolls or
/// payrolls or named by their cross-institution findings (what a push of theirs locks), so that no
/// push's check interleaves with the chunk's.
async fn lock_keys(tx: &mut Tx, chunk: &Chunk<'_>) -> Result<Vec<String>> {
    let mut keys: BTreeSet<String> = chunk
        .institutions
        .iter()
        .map(|uscc| format!("institution:{uscc}"))
        .collect();
    for sql in [
        "SELECT DISTINCT resident_id AS r FROM person_spells WHERE institution_uscc BETWEEN $1 AND $2",
        "SELECT DISTINCT resident_id AS r FROM payroll_lines WHERE institution_uscc BETWEEN $1 AND $2",
        "SELECT subject AS r FROM findings WHERE code IN ('DUPLICATE_ENROLLMENT', 'DOUBLE_PAY') \
         AND institution_uscc BETWEEN $1 AND $2",
    ] {
        for row in fetch(tx, sql, chunk.range()).await? {
            keys.insert(format!("person:{}", column::<String>(&row, "r")?));
        }
    }
    Ok(keys.into_iter().collect())
}

/// Re-checks one chunk of sorted institutions as of `as_of` in one transaction: decides its
/// findings set-based, merges them with the stored ones and writes (and feeds) what `keep` keeps.
/// Returns every change, kept or not.
pub(crate) async fn recheck_chunk(
    store: &Store,
    institutions: &[String],
    as_of: NaiveDate,
    keep: Keep,
) -> Result<Vec<FindingChange>> {
    if institutions.is_empty() {
        return Ok(Vec::new());
    }
    let chunk = Chunk::new(institutions);
    let mut tx = store.begin().await?;
    if store.backend == Backend::Postgres {
        let keys = lock_keys(&mut tx, &chunk).await?;
        store.lock_keys(&mut tx, &keys).await?;
    }
    let (computed, facts) =
        decide_chunk(&mut tx, store.backend, &chunk, as_of, &store.checks().rules).await?;
    let existing: BTreeMap<FindingKey, StoredFinding> = fetch(
        &mut tx,
        "SELECT * FROM findings WHERE institution_uscc BETWEEN $1 AND $2",
        chunk.range(),
    )
    .await?
    .iter()
    .map(decode_finding)
    .filter(|stored| {
        stored
            .as_ref()
            .map_or(true, |s| chunk.holds(&s.finding.key))
    })
    .map(|stored| stored.map(|s| (s.finding.key.clone(), s)))
    .collect::<Result<_>>()?;
    let computed = computed
        .into_iter()
        .map(|finding| {
            let place = facts.get(&finding.key.institution);
            let jurisdiction = jurisdiction_of(place, &finding.key.institution);
            (finding, jurisdiction)
        })
        .collect();
    let changes = settle(store, &mut tx, computed, existing, keep).await?;
    if changes.iter().any(|c| keep.keeps(&c.finding.finding.key)) {
        tx.commit().await?;
        store.feed_changed();
    } else {
        tx.rollback().await?;
    }
    Ok(changes)
}

/// The findings of a chunk as the set-based re-check decides them, read-only (for tests holding
/// it to the oracle).
pub async fn decide_findings(
    store: &Store,
    institutions: &[String],
    as_of: NaiveDate,
) -> Result<Vec<Finding>> {
    let chunk = Chunk::new(institutions);
    let mut tx = store.begin().await?;
    let (found, _) =
        decide_chunk(&mut tx, store.backend, &chunk, as_of, &store.checks().rules).await?;
    tx.rollback().await?;
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// The re-check as a job.

/// Institutions per chunk: one transaction each, and the unit of progress and of resumption.
const CHUNK: usize = 500;

/// Changes a waiter of a job is told at most (the counts are complete).
pub const LISTED_CHANGES: usize = 1_000;

/// Where a re-check job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Started, not finished (possibly waiting for a hub to go on with it).
    Running,
    /// Every chunk checked.
    Succeeded,
    /// Stopped by an error (in the hub's log).
    Failed,
    /// Stopped on request, after the chunk it was checking.
    Cancelled,
}

impl JobState {
    fn code(self) -> &'static str {
        match self {
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    fn parse(code: &str) -> JobState {
        match code {
            "SUCCEEDED" => JobState::Succeeded,
            "FAILED" => JobState::Failed,
            "CANCELLED" => JobState::Cancelled,
            _ => JobState::Running,
        }
    }
}

fn keep_code(keep: Keep) -> &'static str {
    match keep {
        Keep::Everything => "EVERYTHING",
        Keep::DatedOnly => "DATED_ONLY",
        Keep::Nothing => "NOTHING",
    }
}

fn keep_parse(code: &str) -> Keep {
    match code {
        "EVERYTHING" => Keep::Everything,
        "DATED_ONLY" => Keep::DatedOnly,
        _ => Keep::Nothing,
    }
}

/// A full re-check run as a job (a long-running operation): what it checks and how far it got.
#[derive(Debug, Clone, PartialEq)]
pub struct RecheckJob {
    /// Its id (a UUIDv7).
    pub id: String,
    /// The jurisdiction re-checked; none for everything (the schedule's).
    pub jurisdiction: Option<Jurisdiction>,
    /// The date checked.
    pub as_of: NaiveDate,
    /// Whether nothing is kept.
    pub dry_run: bool,
    /// Which changes are kept, decided when it started.
    pub keep: Keep,
    /// Where it stands.
    pub state: JobState,
    /// Whether someone asked to cancel it.
    pub cancel_requested: bool,
    /// The agency that asked for it, or `schedule`.
    pub requested_by: String,
    /// Chunks of institutions to check (known once a hub has started on it).
    pub chunks_total: i64,
    /// Chunks checked.
    pub chunks_done: i64,
    /// Institutions to check.
    pub institutions: i64,
    /// Findings raised so far.
    pub raised: i64,
    /// Findings updated so far.
    pub updated: i64,
    /// Findings resolved so far.
    pub resolved: i64,
    /// Findings open in the jurisdiction when it ended.
    pub open: Option<i64>,
    /// Why it failed, for the caller (the details are in the log).
    pub error: Option<String>,
    /// When it was started, Unix microseconds.
    pub created_at: i64,
    /// When it last moved.
    pub updated_at: i64,
    /// When it ended.
    pub finished_at: Option<i64>,
    done_through: String,
}

impl RecheckJob {
    /// Whether it has ended (succeeded, failed or cancelled).
    pub fn done(&self) -> bool {
        self.state != JobState::Running
    }
}

fn decode_job(row: &AnyRow) -> Result<RecheckJob> {
    let jurisdiction = q::text(row, "jurisdiction")?;
    Ok(RecheckJob {
        id: q::text(row, "id")?,
        jurisdiction: if jurisdiction.is_empty() {
            None
        } else {
            Some(crate::store::codec::stored(Jurisdiction::parse(
                &jurisdiction,
            ))?)
        },
        as_of: q::date(row, "as_of")?,
        dry_run: column::<i64>(row, "dry_run")? != 0,
        keep: keep_parse(&q::text(row, "keep")?),
        state: JobState::parse(&q::text(row, "state")?),
        cancel_requested: column::<i64>(row, "cancel_requested")? != 0,
        requested_by: q::text(row, "requested_by")?,
        chunks_total: column(row, "chunks_total")?,
        chunks_done: column(row, "chunks_done")?,
        institutions: column(row, "institutions")?,
        raised: column(row, "raised")?,
        updated: column(row, "updated")?,
        resolved: column(row, "resolved")?,
        open: column(row, "open_after")?,
        error: column(row, "error")?,
        created_at: column(row, "created_at")?,
        updated_at: column(row, "updated_at")?,
        finished_at: column(row, "finished_at")?,
        done_through: q::text(row, "done_through")?,
    })
}

/// The jobs this process runs or waits for.
#[derive(Debug)]
pub(crate) struct Runs {
    /// Wakes this process's runner when a job is started here.
    wake: tokio::sync::Notify,
    /// Bumped whenever a job this process runs moves.
    moved: tokio::sync::watch::Sender<u64>,
    /// The changes of the jobs someone here waits for, at most [`LISTED_CHANGES`] each.
    listened: std::sync::Mutex<HashMap<String, Vec<FindingChange>>>,
}

impl Default for Runs {
    fn default() -> Runs {
        Runs {
            wake: tokio::sync::Notify::new(),
            moved: tokio::sync::watch::channel(0).0,
            listened: std::sync::Mutex::default(),
        }
    }
}

/// Who renews the re-check lease while running a job, and for how long.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The lease's name (the scheduled re-check's).
    pub name: &'static str,
    /// This replica.
    pub holder: String,
    /// Seconds a renewal holds it.
    pub seconds: i64,
}

impl Store {
    /// Re-checks a jurisdiction (or everything) as of `as_of` set-based, chunk by chunk, here and
    /// now (tests, the benchmark; the RPC and the schedule run the same chunks as a job).
    #[tracing::instrument(name = "store.reconcile", skip_all)]
    pub async fn reconcile(
        &self,
        jurisdiction: Option<&Jurisdiction>,
        as_of: NaiveDate,
        dry_run: bool,
    ) -> Result<ReconcileReport> {
        let keep = self.keep_for(as_of, dry_run);
        let institutions = self.institutions_in(jurisdiction).await?;
        let mut report = ReconcileReport {
            institutions: institutions.len() as u64,
            ..ReconcileReport::default()
        };
        for chunk in institutions.chunks(CHUNK) {
            report
                .changes
                .extend(self.recheck_retrying(chunk, as_of, keep).await?);
        }
        report.open = self.open_in(jurisdiction).await?;
        Ok(report)
    }

    fn keep_for(&self, as_of: NaiveDate, dry_run: bool) -> Keep {
        if dry_run {
            Keep::Nothing
        } else if as_of == self.checks().clock.today() {
            Keep::Everything
        } else {
            Keep::DatedOnly
        }
    }

    /// A chunk, again when a finding changed under it (a push's check or an escalation wrote it
    /// first: the chunk is decided again on the newer data).
    async fn recheck_retrying(
        &self,
        chunk: &[String],
        as_of: NaiveDate,
        keep: Keep,
    ) -> Result<Vec<FindingChange>> {
        let mut tries = 0;
        loop {
            match recheck_chunk(self, chunk, as_of, keep).await {
                Err(crate::error::Error::Aborted(_)) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    async fn open_in(&self, jurisdiction: Option<&Jurisdiction>) -> Result<u64> {
        let prefix = jurisdiction.map_or(String::new(), |j| j.prefix().to_owned());
        let open: i64 = column(
            &sqlx::query_with(
                "SELECT count(*) AS n FROM findings WHERE state = 'OPEN' AND jurisdiction LIKE $1",
                bind_all(vec![Value::Text(format!("{prefix}%"))])?,
            )
            .fetch_one(self.readers())
            .await?,
            "n",
        )?;
        Ok(u64::try_from(open).unwrap_or_default())
    }

    /// Starts a re-check job, or returns the running one that checks the same (jurisdiction,
    /// date, dry run), and wakes this process's runner.
    pub async fn start_recheck(
        &self,
        jurisdiction: Option<&Jurisdiction>,
        as_of: NaiveDate,
        dry_run: bool,
        requested_by: &str,
    ) -> Result<RecheckJob> {
        let code = jurisdiction.map_or(String::new(), ToString::to_string);
        let mut tx = self.begin_locked(&["recheck_jobs".to_owned()]).await?;
        let running = fetch(
            &mut tx,
            "SELECT * FROM recheck_jobs WHERE state = 'RUNNING' AND jurisdiction = $1 \
             AND as_of = $2 AND dry_run = $3 ORDER BY created_at LIMIT 1",
            vec![
                Value::Text(code.clone()),
                Value::Text(as_of.to_string()),
                Value::from(dry_run),
            ],
        )
        .await?;
        let id = match running.first() {
            Some(row) => {
                tx.rollback().await?;
                q::text(row, "id")?
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                let now = now_micros();
                fetch(
                    &mut tx,
                    "INSERT INTO recheck_jobs (id, jurisdiction, as_of, dry_run, keep, state, \
                     cancel_requested, requested_by, chunks_total, chunks_done, done_through, \
                     institutions, raised, updated, resolved, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'RUNNING', 0, $6, 0, 0, '', 0, 0, 0, 0, $7, $7)",
                    vec![
                        Value::Text(id.clone()),
                        Value::Text(code),
                        Value::Text(as_of.to_string()),
                        Value::from(dry_run),
                        Value::from(keep_code(self.keep_for(as_of, dry_run))),
                        Value::from(requested_by),
                        Value::Int(now),
                    ],
                )
                .await?;
                tx.commit().await?;
                id
            }
        };
        self.rechecks.wake.notify_one();
        self.recheck_job(&id)
            .await?
            .ok_or_else(|| crate::error::Error::Internal("a started job vanished".into()))
    }

    /// A re-check job by id.
    pub async fn recheck_job(&self, id: &str) -> Result<Option<RecheckJob>> {
        let row = sqlx::query_with(
            "SELECT * FROM recheck_jobs WHERE id = $1",
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(decode_job).transpose()
    }

    /// The latest re-check jobs, newest first.
    pub async fn recheck_jobs(&self, limit: u32) -> Result<Vec<RecheckJob>> {
        sqlx::query_with(
            "SELECT * FROM recheck_jobs ORDER BY created_at DESC, id DESC LIMIT $1",
            bind_all(vec![Value::from(limit)])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_job)
        .collect()
    }

    /// Asks a running job to stop after its current chunk (what it kept stays kept). Returns the
    /// job as it stands, none if there is no such job.
    pub async fn cancel_recheck(&self, id: &str) -> Result<Option<RecheckJob>> {
        let mut tx = self.begin().await?;
        fetch(
            &mut tx,
            "UPDATE recheck_jobs SET cancel_requested = 1, updated_at = $2 \
             WHERE id = $1 AND state = 'RUNNING'",
            vec![Value::from(id), Value::Int(now_micros())],
        )
        .await?;
        tx.commit().await?;
        self.rechecks.wake.notify_one();
        self.recheck_job(id).await
    }

    /// Resolves when a job was started or cancelled in this process (the runner's wake-up).
    pub async fn recheck_started(&self) {
        self.rechecks.wake.notified().await;
    }

    /// Starts the schedule's job unless one was started less than `every` ago (by any replica).
    pub async fn schedule_recheck(&self, every: std::time::Duration) -> Result<Option<RecheckJob>> {
        let since = now_micros() - i64::try_from(every.as_micros()).unwrap_or(i64::MAX / 2);
        let recent = sqlx::query_with(
            "SELECT id FROM recheck_jobs WHERE requested_by = 'schedule' AND created_at > $1 LIMIT 1",
            bind_all(vec![Value::Int(since)])?,
        )
        .fetch_optional(self.readers())
        .await?;
        if recent.is_some() {
            return Ok(None);
        }
        let today = self.checks().clock.today();
        // The rolls whose next change has come are kept as of today again, before the day's reads.
        self.refresh_rolls(today).await?;
        self.start_recheck(None, today, false, "schedule")
            .await
            .map(Some)
    }

    /// Runs every running job to its end, oldest first, renewing `lease` at every chunk; returns
    /// early (the jobs stay running, to go on later) when `stopped` turns true or the lease is
    /// lost. The caller holds the lease.
    pub async fn run_rechecks(
        &self,
        lease: &Lease,
        stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        loop {
            let next = sqlx::query(
                "SELECT * FROM recheck_jobs WHERE state = 'RUNNING' ORDER BY created_at, id LIMIT 1",
            )
            .fetch_optional(self.readers())
            .await?;
            let Some(job) = next.as_ref().map(decode_job).transpose()? else {
                return Ok(());
            };
            if !self.run_job(job, lease, stopped).await? {
                return Ok(());
            }
        }
    }

    /// Runs one job from where it stands; false when it stopped short (shutdown, lease lost).
    async fn run_job(
        &self,
        mut job: RecheckJob,
        lease: &Lease,
        stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<bool> {
        let all = self.institutions_in(job.jurisdiction.as_ref()).await?;
        if job.chunks_total == 0 && job.chunks_done == 0 {
            job.chunks_total = i64::try_from(all.len().div_ceil(CHUNK)).unwrap_or(i64::MAX);
            job.institutions = i64::try_from(all.len()).unwrap_or(i64::MAX);
            self.save_job(&job).await?;
        }
        // Resumed: the institutions after the last finished chunk (the list may have grown since).
        let rest: Vec<String> = all
            .into_iter()
            .filter(|uscc| job.done_through.is_empty() || *uscc > job.done_through)
            .collect();
        for chunk in rest.chunks(CHUNK) {
            if *stopped.borrow() {
                return Ok(false);
            }
            if self
                .recheck_job(&job.id)
                .await?
                .is_some_and(|now| now.cancel_requested)
            {
                job.state = JobState::Cancelled;
                job.finished_at = Some(now_micros());
                self.save_job(&job).await?;
                tracing::info!(id = %job.id, chunks = job.chunks_done, "re-check job cancelled");
                return Ok(true);
            }
            if !self
                .take_lease(lease.name, &lease.holder, lease.seconds)
                .await?
            {
                tracing::info!("re-check lease lost; another replica goes on with the job");
                return Ok(false);
            }
            let changes = match self.recheck_retrying(chunk, job.as_of, job.keep).await {
                Ok(changes) => changes,
                Err(error) => {
                    tracing::warn!(id = %job.id, %error, "re-check job failed");
                    job.state = JobState::Failed;
                    job.error = Some("the re-check failed; the hub's log says why".into());
                    job.finished_at = Some(now_micros());
                    self.save_job(&job).await?;
                    return Ok(true);
                }
            };
            for change in &changes {
                match change.kind {
                    ChangeKind::Raised => job.raised += 1,
                    ChangeKind::Updated => job.updated += 1,
                    ChangeKind::Resolved => job.resolved += 1,
                }
            }
            if let Some(listed) = self
                .rechecks
                .listened
                .lock()
                .expect("the listeners' lock is never poisoned")
                .get_mut(&job.id)
            {
                let room = LISTED_CHANGES.saturating_sub(listed.len());
                listed.extend(changes.into_iter().take(room));
            }
            job.chunks_done += 1;
            job.chunks_total = job.chunks_total.max(job.chunks_done);
            job.done_through = chunk.last().cloned().unwrap_or_default();
            self.save_job(&job).await?;
        }
        job.open = Some(i64::try_from(self.open_in(job.jurisdiction.as_ref()).await?).unwrap_or(0));
        job.state = JobState::Succeeded;
        job.finished_at = Some(now_micros());
        self.save_job(&job).await?;
        tracing::info!(
            id = %job.id,
            raised = job.raised,
            updated = job.updated,
            resolved = job.resolved,
            "re-check job done"
        );
        Ok(true)
    }

    async fn save_job(&self, job: &RecheckJob) -> Result<()> {
        let mut tx = self.begin().await?;
        fetch(
            &mut tx,
            "UPDATE recheck_jobs SET state = $2, chunks_total = $3, chunks_done = $4, \
             done_through = $5, institutions = $6, raised = $7, updated = $8, resolved = $9, \
             open_after = $10, error = $11, updated_at = $12, finished_at = $13 WHERE id = $1",
            vec![
                Value::from(job.id.as_str()),
                Value::from(job.state.code()),
                Value::Int(job.chunks_total),
                Value::Int(job.chunks_done),
                Value::from(job.done_through.as_str()),
                Value::Int(job.institutions),
                Value::Int(job.raised),
                Value::Int(job.updated),
                Value::Int(job.resolved),
                Value::OptInt(job.open),
                Value::OptText(job.error.clone()),
                Value::Int(now_micros()),
                Value::OptInt(job.finished_at),
            ],
        )
        .await?;
        tx.commit().await?;
        self.rechecks.moved.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Waits until the job ends or `until` passes, whichever is first, and returns it as it
    /// stands with the changes this process saw it make since the wait began (at most
    /// [`LISTED_CHANGES`]; a job run by another replica lists none).
    pub async fn wait_for_recheck(
        &self,
        id: &str,
        until: tokio::time::Instant,
    ) -> Result<(Option<RecheckJob>, Vec<FindingChange>)> {
        self.rechecks
            .listened
            .lock()
            .expect("the listeners' lock is never poisoned")
            .entry(id.to_owned())
            .or_default();
        let mut moved = self.rechecks.moved.subscribe();
        let job = loop {
            let job = self.recheck_job(id).await;
            match &job {
                Ok(Some(job)) if !job.done() && tokio::time::Instant::now() < until => {}
                _ => break job,
            }
            // Another replica's progress is seen by reading again now and then.
            let poll = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
            let _ = tokio::time::timeout_at(poll.min(until), moved.changed()).await;
        };
        let changes = self
            .rechecks
            .listened
            .lock()
            .expect("the listeners' lock is never poisoned")
            .remove(id)
            .unwrap_or_default();
        Ok((job?, changes))
    }
}
