//! Keeping findings true to the data. A check decides the findings of a [`Scope`]: it loads
//! everything the rules need about the scope's institutions and people (in the caller's
//! transaction, so it sees what the push just wrote and, on PostgreSQL, under the scope's locks),
//! runs the rules, and compares with the findings stored for the scope: new ones are raised,
//! changed ones updated, vanished ones resolved, and a resolved one that shows again is raised
//! again. The push path checks the scope of what it stored; the full re-check walks a jurisdiction
//! in chunks of institutions through the same code, which is why both always agree.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;

pub use super::check::{FindingChange, Keep};
use super::check::{
    Openings, entry, facts, jurisdiction_of, list, live_lines_of, load, opening, pay_bounds,
    pushed, record_ref, settle, term,
};
use super::codec::column;
use super::findings::decode_finding;
pub use super::findings::{Alert, ChangeKind, StoredFinding};
use super::query as q;
use super::read::Reader;
use super::time_range::TimeRange;
use super::write::Writer;
use super::{Store, Value, now_micros, select_in};
use crate::domain::alerts::AlertState;
use crate::domain::findings::{
    FindingKey, InstitutionFacts, PersonSpell, RecordRef, RuleCode, Scope, Severity, Snapshot,
};
use crate::domain::{Coded, Jurisdiction, rules};
use crate::error::Result;

/// What a full re-check did.
#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    /// Institutions checked.
    pub institutions: u64,
    /// Every change, in order.
    pub changes: Vec<FindingChange>,
    /// Findings open after the check (in the checked jurisdiction).
    pub open: u64,
}

/// Institutions checked per transaction in a snapshot re-check.
const CHUNK: usize = 300;

/// Loads what the rules need to decide the findings of `scope` (institutions and residents).
pub(crate) async fn snapshot<R: Reader>(tx: &mut R, scope: &Scope) -> Result<Snapshot> {
    let institutions = list(scope.institutions.iter().cloned());
    let mut people: BTreeSet<String> = scope.residents.iter().cloned().collect();
    for table in ["person_spells", "payroll_lines", "leader_terms"] {
        let sql = format!("SELECT DISTINCT resident_id FROM {table} WHERE institution_uscc");
        for row in select_in(tx, &sql, "", &[], &institutions).await? {
            people.insert(q::text(&row, "resident_id")?);
        }
    }
    let people: Vec<String> = people.into_iter().collect();
    let mut snapshot = Snapshot::default();

    let mut involved: BTreeSet<String> = scope.institutions.iter().cloned().collect();
    for row in select_in(
        tx,
        "SELECT * FROM person_spells WHERE resident_id",
        "ORDER BY resident_id, ordinal",
        &[],
        &people,
    )
    .await?
    {
        let spell = q::decode_spell(&row)?;
        involved.insert(spell.institution.to_string());
        snapshot.spells.push(PersonSpell {
            resident_id: q::resident_id(&row)?,
            spell,
        });
    }

    let mut seen_lines: HashSet<RecordRef> = HashSet::new();
    let residents = list(scope.residents.iter().cloned());
    let by_institution = select_in(
        tx,
        // Reversals and the lines they void count for nothing.
        "SELECT * FROM payroll_lines WHERE reverses IS NULL AND reversed_by IS NULL AND institution_uscc",
        "",
        &[],
        &institutions,
    )
    .await?;
    let by_resident = if residents.is_empty() {
        Vec::new()
    } else {
        let bounds = pay_bounds(residents.iter().map(|r| (r.as_str(), None, None)));
        tx.rows(live_lines_of(tx.backend()), vec![bounds]).await?
    };
    for row in by_institution.iter().chain(&by_resident) {
        let id = record_ref(row)?;
        if seen_lines.insert(id) {
            let line = pushed(q::decode_payroll_line(row)?);
            involved.insert(line.record.institution.to_string());
            snapshot.payroll.push(line);
        }
    }

    for row in select_in(
        tx,
        "SELECT * FROM institutions WHERE uscc",
        "",
        &[],
        &list(involved),
    )
    .await?
    {
        snapshot.institutions.push(facts(&row)?);
    }

    snapshot.quotas = load(tx, "quotas", &institutions, q::decode_quota).await?;
    snapshot.leader_posts = load(tx, "leader_posts", &institutions, q::decode_post).await?;
    snapshot.plans = load(tx, "staffing_plans", &institutions, q::decode_plan).await?;
    snapshot.approvals = load(tx, "hiring_approvals", &institutions, q::decode_approval).await?;
    snapshot.fundings = load(tx, "fundings", &institutions, q::decode_funding).await?;

    // Leader terms, with the appointment that opened each as its evidence.
    let mut openings = Openings::new();
    for row in select_in(
        tx,
        "SELECT agency_id, record_id, resident_id, institution_uscc, level, position, effective_on FROM appointments WHERE action = 'APPOINT' AND institution_uscc",
        "",
        &[],
        &institutions,
    )
    .await?
    {
        opening(&row, &mut openings)?;
    }
    for row in select_in(
        tx,
        "SELECT * FROM leader_terms WHERE institution_uscc",
        "",
        &[],
        &institutions,
    )
    .await?
    {
        snapshot.terms.push(term(&row, &openings)?);
    }

    // Entries: hires into the scope's institutions and transfers arriving there.
    let hires = select_in(
        tx,
        "SELECT * FROM personnel_events WHERE corrected_by IS NULL AND event_type = 'HIRE' AND institution_uscc",
        "",
        &[],
        &institutions,
    )
    .await?;
    let arrivals = select_in(
        tx,
        "SELECT * FROM personnel_events WHERE corrected_by IS NULL AND event_type = 'TRANSFER' AND target_uscc",
        "",
        &[],
        &institutions,
    )
    .await?;
    for row in hires.iter().chain(&arrivals) {
        snapshot.entries.extend(entry(row)?);
    }
    Ok(snapshot)
}

/// Decides the findings of `scope` as of `as_of` and reports every change; writes those `keep` keeps.
pub(crate) async fn check_scope<W: Writer>(
    store: &Store,
    tx: &mut W,
    scope: &Scope,
    as_of: NaiveDate,
    keep: Keep,
) -> Result<Vec<FindingChange>> {
    if scope.institutions.is_empty() && scope.residents.is_empty() {
        return Ok(Vec::new());
    }
    let snapshot = snapshot(tx, scope).await?;
    let computed = rules::check(&snapshot, scope, as_of, &store.checks().rules);
    let facts: HashMap<&str, &InstitutionFacts> = snapshot
        .institutions
        .iter()
        .map(|f| (f.uscc.as_str(), f))
        .collect();

    let institutions = list(scope.institutions.iter().cloned());
    let residents = list(scope.residents.iter().cloned());
    let mut existing: BTreeMap<FindingKey, StoredFinding> = BTreeMap::new();
    let by_institution = select_in(
        tx,
        "SELECT * FROM findings WHERE institution_uscc",
        "",
        &[],
        &institutions,
    )
    .await?;
    let by_subject = select_in(
        tx,
        "SELECT * FROM findings WHERE subject",
        "",
        &[],
        &residents,
    )
    .await?;
    for row in by_institution.iter().chain(&by_subject) {
        let stored = decode_finding(row)?;
        if scope.covers(&stored.finding.key) {
            existing.insert(stored.finding.key.clone(), stored);
        }
    }

    // Every change is reported, roll findings included, as of `as_of`; `keep` decides only which
    // are written.
    let computed = computed
        .into_iter()
        .map(|finding| {
            let place = facts.get(finding.key.institution.as_str()).copied();
            let jurisdiction = jurisdiction_of(place, &finding.key.institution);
            (finding, jurisdiction)
        })
        .collect();
    settle(store, tx, computed, existing, keep).await
}

/// The lock keys of a scope: what concurrent checks of overlapping scopes must not read apart.
pub(crate) fn scope_lock_keys(scope: &Scope) -> Vec<String> {
    scope
        .institutions
        .iter()
        .map(|uscc| format!("institution:{uscc}"))
        .chain(scope.residents.iter().map(|id| format!("person:{id}")))
        .collect()
}

/// Filters for listing findings.
#[derive(Debug, Clone, Default)]
pub struct FindingFilter {
    /// Jurisdiction (and those below it).
    pub jurisdiction: Option<Jurisdiction>,
    /// Only these codes (all when empty).
    pub codes: Vec<RuleCode>,
    /// Only this severity and above.
    pub min_severity: Option<Severity>,
    /// Open (true) or resolved (false) findings.
    pub open: bool,
    /// Only this institution.
    pub institution: Option<String>,
    /// Start after this key (paging in key order).
    pub after: Option<FindingKey>,
    /// Only findings raised in this range.
    pub raised: TimeRange,
    /// Sorted by a column instead of by key; then paged by `offset`.
    pub order: Option<FindingOrder>,
    /// Findings of the sorted list to skip.
    pub offset: u64,
    /// Page size.
    pub limit: u32,
}

/// A column the findings can be sorted by (ListFindingsRequest.order_by); findings of one value
/// keep their key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingColumn {
    Code,
    /// Most severe first when ascending, as the severity filter reads.
    Severity,
    Institution,
    Period,
    AlertState,
    RaisedAt,
}

/// A sort of the findings list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindingOrder {
    pub column: FindingColumn,
    pub descending: bool,
}

impl FindingOrder {
    /// The ORDER BY clause: the column (ranks for severity and alert state, in their domain
    /// order), then the key, so that pages by offset are stable.
    fn clause(self) -> String {
        let ranked = |codes: &[&str]| {
            let arms: Vec<String> = codes
                .iter()
                .enumerate()
                .map(|(rank, code)| format!("WHEN '{code}' THEN {rank}"))
                .collect();
            arms.join(" ")
        };
        let column = match self.column {
            FindingColumn::Code => "code".to_owned(),
            FindingColumn::Severity => {
                let codes: Vec<&str> = Severity::ALL.iter().rev().map(|s| s.code()).collect();
                format!("CASE severity {} END", ranked(&codes))
            }
            FindingColumn::Institution => "institution_uscc".to_owned(),
            FindingColumn::Period => "period".to_owned(),
            FindingColumn::AlertState => {
                let codes: Vec<&str> = AlertState::ALL.iter().map(|s| s.code()).collect();
                format!("CASE alert_state {} END", ranked(&codes))
            }
            FindingColumn::RaisedAt => "raised_at".to_owned(),
        };
        let direction = if self.descending { "DESC" } else { "ASC" };
        format!("{column} {direction}, code, institution_uscc, subject, period")
    }
}

/// The open findings of a jurisdiction in numbers, for an overview: counted in SQL, so that its
/// cost is the findings' count, not their rows through the API.
#[derive(Debug, Clone, Default)]
pub struct FindingSummary {
    /// Open findings per (rule, severity).
    pub open_by_rule: Vec<(RuleCode, Severity, u64)>,
    /// Per instant asked: the findings open then (raised by it, not resolved by it).
    pub open_at: Vec<(i64, u64)>,
    /// Open alerts whose next deadline (acknowledge, or rectify once acknowledged) falls in the
    /// window asked: the first few by deadline, with the deadline.
    pub due: Vec<(i64, StoredFinding)>,
    /// How many fall in the window.
    pub due_total: u64,
    /// The institutions with the most open findings, most first (at most the number asked).
    pub most_findings: Vec<(String, u64)>,
    /// How many institutions have open findings.
    pub institutions: u64,
}

impl Store {
    /// Re-checks a jurisdiction (or everything) as of `as_of` with the snapshot engine, chunk by
    /// chunk of institutions: the oracle the set-based re-check (`Store::reconcile`,
    /// `store::recheck`) is held to. Slow: every chunk loads everything ever at its institutions.
    #[tracing::instrument(name = "store.reconcile_by_snapshot", skip_all)]
    pub async fn reconcile_by_snapshot(
        &self,
        jurisdiction: Option<&Jurisdiction>,
        as_of: NaiveDate,
        dry_run: bool,
    ) -> Result<ReconcileReport> {
        let keep = if dry_run {
            Keep::Nothing
        } else if as_of == self.checks().clock.today() {
            Keep::Everything
        } else {
            Keep::DatedOnly
        };
        let institutions = self.institutions_in(jurisdiction).await?;
        let mut report = ReconcileReport {
            institutions: institutions.len() as u64,
            ..ReconcileReport::default()
        };
        for chunk in institutions.chunks(CHUNK) {
            let mut tx = self.begin().await?;
            let chunk: Vec<String> = chunk.to_vec();
            let mut residents: BTreeSet<String> = BTreeSet::new();
            for table in ["person_spells", "payroll_lines"] {
                let sql =
                    format!("SELECT DISTINCT resident_id FROM {table} WHERE institution_uscc");
                for row in select_in(&mut tx, &sql, "", &[], &chunk).await? {
                    residents.insert(column(&row, "resident_id")?);
                }
            }
            // People whose cross-institution findings sit at these institutions, even if their
            // data has moved elsewhere since.
            for row in select_in(
                &mut tx,
                "SELECT subject FROM findings WHERE code IN ('DUPLICATE_ENROLLMENT', 'DOUBLE_PAY') AND institution_uscc",
                "",
                &[],
                &chunk,
            )
            .await?
            {
                residents.insert(column(&row, "subject")?);
            }
            let scope = Scope {
                everything: false,
                institutions: chunk.into_iter().collect(),
                residents,
            };
            self.lock_keys(&mut tx, &scope_lock_keys(&scope)).await?;
            report
                .changes
                .extend(check_scope(self, &mut tx, &scope, as_of, keep).await?);
            if keep == Keep::Nothing {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
                self.feed_changed();
            }
        }
        let prefix = jurisdiction.map_or(String::new(), |j| j.prefix().to_owned());
        let open: i64 = column(
            &sqlx::query_with(
                "SELECT count(*) AS n FROM findings WHERE state = 'OPEN' AND jurisdiction LIKE $1",
                super::bind_all(vec![Value::Text(format!("{prefix}%"))])?,
            )
            .fetch_one(self.readers())
            .await?,
            "n",
        )?;
        report.open = u64::try_from(open).unwrap_or_default();
        Ok(report)
    }

    /// Every institution with data or findings in a jurisdiction (everything for `None`), sorted.
    pub(crate) async fn institutions_in(
        &self,
        jurisdiction: Option<&Jurisdiction>,
    ) -> Result<Vec<String>> {
        let mut all: BTreeSet<String> = BTreeSet::new();
        for sql in [
            "SELECT uscc AS u FROM institutions",
            "SELECT DISTINCT institution_uscc AS u FROM person_spells",
            "SELECT DISTINCT institution_uscc AS u FROM payroll_lines",
            "SELECT DISTINCT institution_uscc AS u FROM fundings",
            "SELECT DISTINCT institution_uscc AS u FROM leader_terms",
            // An agency's freshness findings name the agency, no institution.
            "SELECT DISTINCT institution_uscc AS u FROM findings WHERE code NOT IN ('LATE_PAYROLL', 'BACKDATED_EVENT')",
        ] {
            for row in sqlx::query(sql).fetch_all(self.readers()).await? {
                all.insert(column(&row, "u")?);
            }
        }
        let Some(jurisdiction) = jurisdiction else {
            return Ok(all.into_iter().collect());
        };
        let mut registered: HashMap<String, String> = HashMap::new();
        for row in sqlx::query("SELECT uscc, jurisdiction FROM institutions")
            .fetch_all(self.readers())
            .await?
        {
            registered.insert(column(&row, "uscc")?, column(&row, "jurisdiction")?);
        }
        Ok(all
            .into_iter()
            .filter(|uscc| {
                let code = registered
                    .get(uscc)
                    .cloned()
                    .unwrap_or_else(|| uscc.get(2..8).unwrap_or_default().to_owned());
                Jurisdiction::parse(&code).is_ok_and(|j| jurisdiction.contains(&j))
            })
            .collect())
    }

    /// A page of the findings matching a filter: by key, after `filter.after`, at most
    /// `filter.limit` (filtered and cut in SQL).
    #[tracing::instrument(name = "store.findings", skip_all)]
    pub async fn findings(&self, filter: &FindingFilter) -> Result<Vec<StoredFinding>> {
        let mut sql =
            String::from("SELECT * FROM findings WHERE state = $1 AND jurisdiction LIKE $2");
        let mut values = vec![
            Value::from(if filter.open { "OPEN" } else { "RESOLVED" }),
            Value::Text(format!(
                "{}%",
                filter.jurisdiction.as_ref().map_or("", |j| j.prefix())
            )),
        ];
        if let Some(institution) = &filter.institution {
            values.push(Value::from(institution.as_str()));
            sql.push_str(&format!(" AND institution_uscc = ${}", values.len()));
        }
        if !filter.codes.is_empty() {
            let first = values.len() + 1;
            values.extend(filter.codes.iter().map(|c| Value::from(c.code())));
            let list: Vec<String> = (first..=values.len()).map(|i| format!("${i}")).collect();
            sql.push_str(&format!(" AND code IN ({})", list.join(", ")));
        }
        if let Some(min) = filter.min_severity {
            let first = values.len() + 1;
            values.extend(
                Severity::ALL
                    .iter()
                    .filter(|s| **s >= min)
                    .map(|s| Value::from(s.code())),
            );
            let list: Vec<String> = (first..=values.len()).map(|i| format!("${i}")).collect();
            sql.push_str(&format!(" AND severity IN ({})", list.join(", ")));
        }
        sql.push_str(&filter.raised.sql("raised_at", &mut values));
        if let Some(order) = filter.order {
            values.push(Value::Int(i64::from(filter.limit)));
            values.push(Value::Int(i64::try_from(filter.offset).unwrap_or(i64::MAX)));
            let rows = sqlx::query_with(
                sqlx::AssertSqlSafe(format!(
                    "{sql} ORDER BY {} LIMIT ${} OFFSET ${}",
                    order.clause(),
                    values.len() - 1,
                    values.len()
                )),
                super::bind_all(values)?,
            )
            .fetch_all(self.readers())
            .await?;
            return rows.iter().map(decode_finding).collect();
        }
        if let Some(after) = &filter.after {
            let n = values.len();
            values.extend([
                Value::from(after.code.code()),
                Value::from(after.institution.as_str()),
                Value::from(after.subject.as_str()),
                Value::from(after.period.as_str()),
            ]);
            // Row-value comparison, which both backends support.
            sql.push_str(&format!(
                " AND (code, institution_uscc, subject, period) > (${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ));
        }
        values.push(Value::Int(i64::from(filter.limit)));
        let rows = sqlx::query_with(
            sqlx::AssertSqlSafe(format!(
                "{sql} ORDER BY code, institution_uscc, subject, period LIMIT ${}",
                values.len()
            )),
            super::bind_all(values)?,
        )
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(decode_finding).collect()
    }

    /// The open findings of a jurisdiction in numbers (see [`FindingSummary`]): open at each of
    /// `instants`, and due in `[due_from, due_to)`; at most `listed` due findings and
    /// institutions listed.
    #[tracing::instrument(name = "store.finding_summary", skip_all)]
    pub async fn finding_summary(
        &self,
        jurisdiction: &Jurisdiction,
        instants: &[i64],
        (due_from, due_to): (i64, i64),
        listed: u32,
    ) -> Result<FindingSummary> {
        let within = Value::Text(format!("{}%", jurisdiction.prefix()));
        let mut summary = FindingSummary::default();
        let deadline = "CASE WHEN alert_state = 'OPEN' THEN acknowledge_by ELSE rectify_by END";
        // One pass over the jurisdiction's findings, per rule and severity: those open, those due,
        // and those open at each instant (a resolved finding was open from its raising until its
        // resolution, its last change). `$N` run in the text's order, as SQLite numbers them.
        let mut values = vec![Value::Int(due_from), Value::Int(due_to)];
        let mut sums = vec![format!(
            "SUM(CASE WHEN state = 'OPEN' AND alert_state <> 'CLOSED' AND {deadline} >= $1 \
             AND {deadline} < $2 THEN 1 ELSE 0 END) AS due"
        )];
        for (n, at) in instants.iter().enumerate() {
            values.push(Value::Int(*at));
            sums.push(format!(
                "SUM(CASE WHEN raised_at <= ${a} AND (state = 'OPEN' OR updated_at > ${b}) \
                 THEN 1 ELSE 0 END) AS w{n}",
                a = values.len(),
                b = values.len() + 1,
            ));
            values.push(Value::Int(*at));
        }
        values.push(within.clone());
        let rows = sqlx::query_with(
            sqlx::AssertSqlSafe(format!(
                "SELECT code, severity, SUM(CASE WHEN state = 'OPEN' THEN 1 ELSE 0 END) AS open, {} \
                 FROM findings WHERE jurisdiction LIKE ${} GROUP BY code, severity",
                sums.join(", "),
                values.len()
            )),
            super::bind_all(values)?,
        )
        .fetch_all(self.readers())
        .await?;
        let count = |row: &sqlx::any::AnyRow, name: &str| -> Result<u64> {
            let n: Option<i64> = column(row, name)?;
            Ok(u64::try_from(n.unwrap_or_default()).unwrap_or_default())
        };
        let mut open_at = vec![0; instants.len()];
        for row in &rows {
            let open = count(row, "open")?;
            if open > 0 {
                summary
                    .open_by_rule
                    .push((q::code(row, "code")?, q::code(row, "severity")?, open));
            }
            summary.due_total += count(row, "due")?;
            for (n, total) in open_at.iter_mut().enumerate() {
                *total += count(row, &format!("w{n}"))?;
            }
        }
        summary.open_at = instants.iter().copied().zip(open_at).collect();

        let due = format!(
            "FROM findings WHERE state = 'OPEN' AND jurisdiction LIKE $1 AND alert_state <> 'CLOSED' \
             AND {deadline} >= $2 AND {deadline} < $3"
        );
        let values = vec![
            within.clone(),
            Value::Int(due_from),
            Value::Int(due_to),
            Value::Int(i64::from(listed)),
        ];
        for row in sqlx::query_with(
            sqlx::AssertSqlSafe(format!(
                "SELECT *, {deadline} AS due_at {due} \
                 ORDER BY due_at, code, institution_uscc, subject, period LIMIT $4"
            )),
            super::bind_all(values)?,
        )
        .fetch_all(self.readers())
        .await?
        {
            summary
                .due
                .push((column(&row, "due_at")?, decode_finding(&row)?));
        }
        // The institutions with the most open findings, and (a window over the groups, before the
        // limit) how many have any.
        for row in sqlx::query_with(
            "SELECT institution_uscc, COUNT(*) AS n, COUNT(*) OVER () AS institutions \
             FROM findings WHERE state = 'OPEN' AND jurisdiction LIKE $1 GROUP BY institution_uscc \
             ORDER BY n DESC, institution_uscc LIMIT $2",
            super::bind_all(vec![within, Value::Int(i64::from(listed.max(1)))])?,
        )
        .fetch_all(self.readers())
        .await?
        {
            summary.institutions = count(&row, "institutions")?;
            if summary.most_findings.len() < listed as usize {
                summary
                    .most_findings
                    .push((column(&row, "institution_uscc")?, count(&row, "n")?));
            }
        }
        Ok(summary)
    }

    /// Loads the rules' data for a scope in a read-only transaction (pre-checks change nothing).
    pub async fn snapshot_for(&self, scope: &Scope) -> Result<Snapshot> {
        let mut tx = self.readers().begin().await?;
        let loaded = snapshot(&mut tx, scope).await;
        tx.rollback().await?;
        loaded
    }

    /// Takes or renews a lease on background work for `holder`; true when it holds the lease.
    #[tracing::instrument(name = "store.take_lease", skip_all)]
    pub async fn take_lease(&self, name: &str, holder: &str, seconds: i64) -> Result<bool> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        let taken = sqlx::query_with(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
            super::bind_all(vec![
                Value::from(name),
                Value::from(holder),
                Value::Int(now + seconds * 1_000_000),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(taken > 0)
    }
}
