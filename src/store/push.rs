//! Storing pushed records: idempotent, scoped to the pushing agency's jurisdiction, in batches.
//!
//! Every kind of record goes through [`Store::push`]: a batch is checked against the records the
//! agency already pushed (same id and content: the first result again; same id, other content:
//! refused), against the registry (is each named institution known, and within the agency's
//! jurisdiction), then the kind checks it against what is stored and writes what fits
//! ([`Writer::insert_rows`]). One transaction per batch; the caller answers only after it commits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;

use super::check::{self, FindingChange, Keep};
use super::codec::{stored, stored_code};
use super::freshness;
use super::postgres;
use super::query as q;
use super::reconcile::{self, scope_lock_keys};
use super::write::Writer;
use super::{Store, Tx, Value, lookup_keys, now_micros, select_in};
use crate::domain::aggregates::{Headcount, Plans};
use crate::domain::dirty::{Change, DirtyKey, DirtySet, Rewrite};
use crate::domain::findings::{Entry, FindingKey, InstitutionFacts, PersonTerm, RecordRef, Scope};
use crate::domain::freshness::Dated;
use crate::domain::roll::Spell;
use crate::domain::roll::{self, RollConflict};
use crate::domain::{
    Agency, Appointment, Coded, Funding, HiringApproval, Institution, InstitutionStatus,
    Jurisdiction, LeaderPost, PayrollLine, PersonnelEvent, Quota, ResidentId, StaffingPlan, Uscc,
};
use crate::error::{Error, Result};

/// A validated record, ready to store.
#[derive(Debug, Clone)]
pub struct Submission<R> {
    /// The sender's own id of the record.
    pub record_id: String,
    /// SHA-256 of the record as sent, to tell a resend from a reuse of the id.
    pub content_hash: String,
    /// The record.
    pub record: R,
}

/// What the hub did with a record it accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// When the record was first committed (Unix microseconds).
    pub accepted_at: i64,
    /// Whether this push was a resend of an already accepted record.
    pub replayed: bool,
    /// Findings the record raised, updated or resolved (a change several records of one batch
    /// brought about together is given to the first of them).
    pub findings: Vec<FindingChange>,
}

/// An institution named by a record.
#[derive(Debug, Clone)]
pub struct InstitutionRef<'a> {
    /// The field that names it, for error messages.
    pub field: &'static str,
    /// Its code.
    pub uscc: &'a Uscc,
    /// Whether the registry must already know it. Personnel, payroll and funding for an unknown
    /// institution are kept, because that is itself a finding (私设机构).
    pub must_be_registered: bool,
}

/// What the registry says about an institution.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Where it sits.
    pub jurisdiction: Jurisdiction,
    /// Registry status.
    pub status: InstitutionStatus,
}

/// The batch a kind is asked to check and write.
pub struct Batch<'a, R> {
    /// Who pushes.
    pub agency: &'a Agency,
    /// The commit's timestamp.
    pub accepted_at: i64,
    /// The hub's date (its clock's), as of which the kept counts are set.
    pub today: chrono::NaiveDate,
    /// The registry entries of the institutions the batch names.
    pub registry: &'a HashMap<String, Registered>,
    /// The records still in the running, in stream order.
    pub records: Vec<&'a Submission<R>>,
}

/// A kind of pushed record and how it is stored.
pub trait RecordKind: Clone + Sized + Send + Sync + 'static {
    /// The kind's name in the idempotency table.
    const KIND: &'static str;

    /// Institutions the record names.
    fn institutions(&self) -> Vec<InstitutionRef<'_>>;

    /// Jurisdictions the record claims itself, beyond those of its institutions.
    fn jurisdictions(&self) -> Vec<&Jurisdiction> {
        Vec::new()
    }

    /// Keys that concurrent writers on other replicas must not touch at the same time.
    fn lock_keys(&self) -> Vec<String> {
        Vec::new()
    }

    /// Adds to `scope` the institutions and people whose findings this record can change.
    fn scope(&self, scope: &mut Scope) {
        for reference in self.institutions() {
            scope.institutions.insert(reference.uscc.to_string());
        }
    }

    /// What storing this record changed, for its dirty keys: the record itself. A record of a
    /// person's history changed nothing by itself: the rewrite of the history does ([`Self::rewrites`]).
    fn changes(&self) -> Vec<Change>;

    /// The person whose history `apply` derives again when this record is stored, and reports the
    /// rewrite of in `rewrites`.
    fn rewrites(&self) -> Option<&ResidentId> {
        None
    }

    /// What the record tells the freshness check of its agency (a pay period, an effective date).
    fn dated(&self) -> Dated {
        Dated::Undated
    }

    /// Checks the batch's records against what is stored, writes those that fit, and returns a
    /// verdict per record. A kind that derives a person's history again reports each person's
    /// rewrite in `rewrites`.
    fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        rewrites: &mut Vec<Change>,
    ) -> impl Future<Output = Result<Vec<Result<()>>>> + Send;
}

/// Attempts before a batch that keeps colliding with concurrent pushes of the same ids gives up.
const RACE_RETRIES: usize = 3;

impl Store {
    /// Stores a batch of records pushed by `agency` and returns one verdict per submission, in order.
    /// The verdicts are final only once this returns: the batch has committed.
    #[tracing::instrument(name = "store.push", skip_all, fields(kind = R::KIND, records = submissions.len()))]
    pub async fn push<R: RecordKind>(
        &self,
        agency: &Agency,
        submissions: &[Submission<R>],
    ) -> Result<Vec<Result<Receipt>>> {
        for _ in 0..RACE_RETRIES {
            if let Some(verdicts) = self.try_push(agency, submissions).await? {
                return Ok(verdicts);
            }
        }
        Err(Error::Unavailable(
            "concurrent pushes of the same records kept colliding; retry".into(),
        ))
    }

    /// One attempt; `None` when another replica committed some of the same record ids, or changed
    /// a finding the batch re-checked, meanwhile.
    async fn try_push<R: RecordKind>(
        &self,
        agency: &Agency,
        submissions: &[Submission<R>],
    ) -> Result<Option<Vec<Result<Receipt>>>> {
        if self.native_writer().is_some() {
            // SQLite has one writer, so a push takes no lock keys: it holds the writer.
            let store = self.clone();
            let (agency, submissions) = (agency.clone(), submissions.to_vec());
            let runtime = tokio::runtime::Handle::current();
            let verdicts = self
                .native_transaction(true, move |tx| {
                    match runtime.block_on(store.push_locked(tx, &agency, &submissions)) {
                        Err(Error::Aborted(_)) => Ok(None),
                        done => done,
                    }
                })
                .await?;
            if verdicts.is_some() {
                self.feed_changed();
            }
            return Ok(verdicts);
        }
        let keys = push_lock_keys(agency, submissions);
        if let Some(native) = self.native_pool() {
            let mut tx = native.begin().await?;
            postgres::advisory_locks(&mut tx, &keys).await?;
            return self.push_and_commit(tx, agency, submissions).await;
        }
        let tx = self.begin_locked(&keys).await?;
        self.push_and_commit(tx, agency, submissions).await
    }

    /// Stores a batch in `tx`, which holds its locks, and commits; `None`, rolled back, when
    /// another replica committed some of the same record ids meanwhile.
    async fn push_and_commit<R: RecordKind, DB: sqlx::Database>(
        &self,
        mut tx: sqlx::Transaction<'static, DB>,
        agency: &Agency,
        submissions: &[Submission<R>],
    ) -> Result<Option<Vec<Result<Receipt>>>>
    where
        sqlx::Transaction<'static, DB>: Writer,
    {
        let verdicts = match self.push_locked(&mut tx, agency, submissions).await {
            Ok(Some(verdicts)) => verdicts,
            Ok(None) | Err(Error::Aborted(_)) => {
                tx.rollback().await?;
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        tx.commit().await?;
        self.feed_changed();
        Ok(Some(verdicts))
    }

    /// Stores a batch inside the caller's transaction, so that what the caller writes besides
    /// (a decision, a penalty) and the records commit together or not at all. The caller has taken
    /// [`push_lock_keys`] with the rest of its locks, in its one acquisition; the verdicts are
    /// final once it commits, and it signals the feed then.
    pub(crate) async fn push_in<R: RecordKind>(
        &self,
        tx: &mut Tx,
        agency: &Agency,
        submissions: &[Submission<R>],
    ) -> Result<Vec<Result<Receipt>>> {
        self.push_locked(tx, agency, submissions)
            .await?
            .ok_or_else(|| {
                Error::Aborted("a concurrent push stored some of the same records; retry".into())
            })
    }

    /// Stores a batch in `tx`, which holds the batch's locks; `None` when another replica
    /// committed some of the same record ids meanwhile (the caller then rolls back).
    async fn push_locked<R: RecordKind, W: Writer>(
        &self,
        tx: &mut W,
        agency: &Agency,
        submissions: &[Submission<R>],
    ) -> Result<Option<Vec<Result<Receipt>>>> {
        let agency_id = agency.id();
        let ids: Vec<String> = submissions.iter().map(|s| s.record_id.clone()).collect();
        let earlier: HashMap<String, (String, i64)> = lookup_keys(
            tx,
            "pushed_records",
            "record_id, content_hash, accepted_at",
            &[
                ("agency_id", Value::from(agency_id.as_str())),
                ("kind", Value::from(R::KIND)),
            ],
            "record_id",
            &ids,
        )
        .await?
        .iter()
        .map(|row| {
            Ok((
                q::text(row, "record_id")?,
                (q::text(row, "content_hash")?, q::int(row, "accepted_at")?),
            ))
        })
        .collect::<Result<_>>()?;

        let mut verdicts: Vec<Option<Result<Receipt>>> = submissions.iter().map(|_| None).collect();
        let mut first_in_batch: HashMap<&str, usize> = HashMap::new();
        let mut candidates = Vec::new();
        for (index, submission) in submissions.iter().enumerate() {
            if let Some((hash, accepted_at)) = earlier.get(&submission.record_id) {
                verdicts[index] = Some(if *hash == submission.content_hash {
                    Ok(Receipt {
                        accepted_at: *accepted_at,
                        replayed: true,
                        findings: Vec::new(),
                    })
                } else {
                    Err(Error::RecordConflict {
                        record_id: submission.record_id.clone(),
                    })
                });
            } else if first_in_batch.contains_key(submission.record_id.as_str()) {
                // Settled below, once the first occurrence has its verdict.
            } else {
                first_in_batch.insert(&submission.record_id, index);
                candidates.push(index);
            }
        }

        let registry = self
            .registry_entries(tx, candidates.iter().map(|&i| &submissions[i].record))
            .await?;
        let mut in_scope = Vec::new();
        for index in candidates {
            match check_jurisdiction(agency, &registry, &submissions[index].record) {
                Ok(()) => in_scope.push(index),
                Err(error) => verdicts[index] = Some(Err(error)),
            }
        }

        let accepted_at = now_micros();
        let batch = Batch {
            agency,
            accepted_at,
            today: self.checks().clock.today(),
            registry: &registry,
            records: in_scope.iter().map(|&i| &submissions[i]).collect(),
        };
        let mut rewrites = Vec::new();
        let applied = R::apply(tx, &batch, &mut rewrites).await?;
        let mut accepted_rows = Vec::new();
        for (&index, verdict) in in_scope.iter().zip(applied) {
            let submission = &submissions[index];
            if verdict.is_ok() {
                accepted_rows.push([
                    Value::from(agency_id.as_str()),
                    Value::from(R::KIND),
                    Value::from(submission.record_id.as_str()),
                    Value::from(submission.content_hash.as_str()),
                    Value::Int(accepted_at),
                ]);
            }
            verdicts[index] = Some(verdict.map(|()| Receipt {
                accepted_at,
                replayed: false,
                findings: Vec::new(),
            }));
        }

        let expected = accepted_rows.len() as u64;
        let inserted = tx.insert_rows(
            "INSERT INTO pushed_records (agency_id, kind, record_id, content_hash, accepted_at)",
            "ON CONFLICT DO NOTHING",
            accepted_rows,
        )
        .await?;
        if inserted != expected {
            return Ok(None);
        }

        // Check the findings the accepted records can change (their dirty keys), and give each
        // change to the first record whose own keys cover it.
        let accepted: Vec<usize> = in_scope
            .iter()
            .copied()
            .filter(|&i| verdicts[i].as_ref().is_some_and(Result::is_ok))
            .collect();
        let noted: Vec<(&str, Dated)> = accepted
            .iter()
            .map(|&i| {
                (
                    submissions[i].record_id.as_str(),
                    submissions[i].record.dated(),
                )
            })
            .collect();
        let decides = freshness::note_push(self, tx, agency, R::KIND, &noted).await?;
        let changes = if self.push_checks() {
            let mut dirty = DirtySet::new();
            let mut own_keys: Vec<(usize, DirtySet)> = Vec::new();
            // A person's rewrites are their first record's keys: the keys' first records are
            // what is sought below, and a batch holds many records of one person.
            let mut rewrites_of: HashMap<&ResidentId, Vec<&Change>> = HashMap::new();
            for change in &rewrites {
                if let Change::Roll { resident, .. } | Change::Terms { resident, .. } = change {
                    rewrites_of.entry(resident).or_default().push(change);
                }
            }
            for &index in &accepted {
                let record = &submissions[index].record;
                let mut own = DirtySet::new();
                for change in record.changes() {
                    own.add(&change);
                }
                let rewritten = record
                    .rewrites()
                    .and_then(|person| rewrites_of.remove(person));
                for change in rewritten.into_iter().flatten() {
                    own.add(change);
                }
                dirty.extend(own.keys().cloned());
                own_keys.push((index, own));
            }
            let mut known = check::resolve_draws(tx, self.check_reads(), &mut dirty, &[]).await?;
            for change in &rewrites {
                if let Change::Roll {
                    resident, spells, ..
                } = change
                {
                    known
                        .spells
                        .insert(resident.to_string(), spells.after.clone());
                }
            }
            let today = self.checks().clock.today();
            let changes = self.check_pushed(tx, &dirty, &known, today).await?;
            // The first record (in stream order) each key is one of; an entry's key a draw added
            // is the draw's.
            let mut first_owner: HashMap<&DirtyKey, usize> = HashMap::new();
            for (index, own) in &own_keys {
                for key in own.keys() {
                    first_owner.entry(key).or_insert(*index);
                }
            }
            for (draw, entered) in &known.added {
                if let Some(&owner) = first_owner.get(draw) {
                    let first = first_owner.entry(entered).or_insert(owner);
                    *first = (*first).min(owner);
                }
            }
            let keys = dirty.index();
            changes
                .into_iter()
                .map(|change| {
                    let owner = keys
                        .covering(&change.finding.finding.key)
                        .filter_map(|key| first_owner.get(key).copied())
                        .min()
                        .or(own_keys.first().map(|(index, _)| *index));
                    (owner, change)
                })
                .collect()
        } else {
            Vec::new()
        };
        // The agency's own freshness (a month's payroll arrived, an event came late): the first
        // accepted record's.
        let fresh = match decides {
            Some(decides) if self.push_checks() => {
                freshness::check_agency(self, tx, agency, &|key| decides.covers(key)).await?
            }
            _ => Vec::new(),
        };
        let first = accepted.first().copied();
        let changes = changes
            .into_iter()
            .chain(fresh.into_iter().map(|change| (first, change)));
        for (owner, change) in changes {
            if let Some(Some(Ok(receipt))) = owner.map(|index| &mut verdicts[index]) {
                receipt.findings.push(change);
            }
        }

        // Repeated ids within the batch share the verdict of their first occurrence.
        for (index, submission) in submissions.iter().enumerate() {
            if verdicts[index].is_none() {
                let first = first_in_batch[submission.record_id.as_str()];
                verdicts[index] = Some(match &verdicts[first] {
                    Some(Ok(receipt))
                        if submissions[first].content_hash == submission.content_hash =>
                    {
                        Ok(Receipt {
                            accepted_at: receipt.accepted_at,
                            replayed: true,
                            findings: Vec::new(),
                        })
                    }
                    _ => Err(Error::RecordConflict {
                        record_id: submission.record_id.clone(),
                    }),
                });
            }
        }
        Ok(Some(
            verdicts
                .into_iter()
                .map(|v| v.expect("every record has a verdict"))
                .collect(),
        ))
    }

    /// Decides the findings a push's dirty keys cover, as of today: by the keys, and for keys that
    /// read an institution's registry entry as a whole (a new entry), by the institution's scope.
    async fn check_pushed<W: Writer>(
        &self,
        tx: &mut W,
        dirty: &DirtySet,
        known: &check::Known,
        today: chrono::NaiveDate,
    ) -> Result<Vec<FindingChange>> {
        let mut changes =
            check::check_dirty(self, tx, dirty, known, today, Keep::Everything).await?;
        let mut registry = Scope::default();
        for key in dirty.keys() {
            if let DirtyKey::Registry { institution, .. } = key {
                registry.institutions.insert(institution.to_string());
            }
        }
        if !registry.institutions.is_empty() {
            let done: HashSet<FindingKey> = changes
                .iter()
                .map(|c| c.finding.finding.key.clone())
                .collect();
            let whole =
                reconcile::check_scope(self, tx, &registry, today, Keep::Everything).await?;
            changes.extend(
                whole
                    .into_iter()
                    .filter(|c| !done.contains(&c.finding.finding.key)),
            );
        }
        Ok(changes)
    }

    /// Registry entries of the institutions the records name.
    async fn registry_entries<'r, R: RecordKind, W: Writer>(
        &self,
        tx: &mut W,
        records: impl Iterator<Item = &'r R>,
    ) -> Result<HashMap<String, Registered>> {
        let usccs: HashSet<String> = records
            .flat_map(|record| {
                record
                    .institutions()
                    .into_iter()
                    .map(|r| r.uscc.to_string())
            })
            .collect();
        let usccs: Vec<String> = usccs.into_iter().collect();
        let rows = select_in(
            tx,
            "SELECT uscc, jurisdiction, status FROM institutions WHERE uscc",
            "",
            &[],
            &usccs,
        )
        .await?;
        rows.iter()
            .map(|row| {
                let jurisdiction = q::text(row, "jurisdiction")?;
                let status = q::text(row, "status")?;
                Ok((
                    q::text(row, "uscc")?,
                    Registered {
                        jurisdiction: stored(Jurisdiction::parse(&jurisdiction))?,
                        status: stored_code(&status)?,
                    },
                ))
            })
            .collect()
    }
}

/// The locks a push of `submissions` takes: one agency's pushes of one kind are taken one
/// transaction at a time (on PostgreSQL; SQLite has one writer anyway), so that two replicas
/// receiving the same resend cannot both find a record new. The kind's own keys (people,
/// institutions) guard what other agencies share, and the findings a batch can change are checked
/// under the locks of their scope, so that two pushes to the same institution cannot both miss
/// what their sum makes true.
pub(crate) fn push_lock_keys<R: RecordKind>(
    agency: &Agency,
    submissions: &[Submission<R>],
) -> Vec<String> {
    let mut keys: Vec<String> = vec![format!("push:{}:{}", agency.id(), R::KIND)];
    let mut whole_scope = Scope::default();
    for submission in submissions {
        keys.extend(submission.record.lock_keys());
        submission.record.scope(&mut whole_scope);
    }
    keys.extend(scope_lock_keys(&whole_scope));
    keys
}

/// Whether the agency may push a record about these institutions and jurisdictions.
fn check_jurisdiction<R: RecordKind>(
    agency: &Agency,
    registry: &HashMap<String, Registered>,
    record: &R,
) -> Result<()> {
    for reference in record.institutions() {
        let jurisdiction = match registry.get(reference.uscc.as_str()) {
            Some(registered) => registered.jurisdiction.clone(),
            None if reference.must_be_registered => {
                return Err(Error::invalid(
                    reference.field,
                    format!("institution {} is not in the registry", reference.uscc),
                ));
            }
            // An unregistered unit is placed by the registering authority's code in its USCC.
            None => Jurisdiction::parse(reference.uscc.division_code()).map_err(|_| {
                Error::PermissionDenied(format!(
                    "institution {} is not in the registry and its code names no division",
                    reference.uscc
                ))
            })?,
        };
        if !agency.oversees(&jurisdiction) {
            return Err(outside(agency, reference.uscc.as_str(), &jurisdiction));
        }
    }
    for jurisdiction in record.jurisdictions() {
        if !agency.oversees(jurisdiction) {
            return Err(Error::PermissionDenied(format!(
                "jurisdiction {jurisdiction} is outside {}'s jurisdiction",
                agency
            )));
        }
    }
    Ok(())
}

fn outside(agency: &Agency, uscc: &str, jurisdiction: &Jurisdiction) -> Error {
    Error::PermissionDenied(format!(
        "institution {uscc} lies in {jurisdiction}, outside the jurisdiction of {agency}"
    ))
}

fn opt_date(date: Option<chrono::NaiveDate>) -> Value {
    Value::OptText(date.map(|d| d.to_string()))
}

fn ok_all<R>(batch: &Batch<'_, R>) -> Vec<Result<()>> {
    batch.records.iter().map(|_| Ok(())).collect()
}

fn key_values(batch_agency: &Agency, submission_id: &str) -> [Value; 2] {
    [Value::Text(batch_agency.id()), Value::from(submission_id)]
}

impl RecordKind for Institution {
    const KIND: &'static str = "institution";

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        // The institution itself, when already registered, must be in scope: an agency cannot take
        // over another jurisdiction's unit by pushing it with its own code.
        let mut refs = vec![InstitutionRef {
            field: "uscc",
            uscc: &self.uscc,
            must_be_registered: false,
        }];
        if let Some(parent) = &self.parent {
            refs.push(InstitutionRef {
                field: "parent_uscc",
                uscc: parent,
                must_be_registered: false,
            });
        }
        refs
    }

    fn jurisdictions(&self) -> Vec<&Jurisdiction> {
        vec![&self.jurisdiction]
    }

    fn lock_keys(&self) -> Vec<String> {
        vec![format!("institution:{}", self.uscc)]
    }

    /// A new registry entry: every rule that reads one (the entry before is not needed to say
    /// which, only to narrow them, and institutions are pushed rarely).
    fn changes(&self) -> Vec<Change> {
        vec![Change::Institution {
            before: None,
            after: InstitutionFacts {
                uscc: self.uscc.clone(),
                jurisdiction: self.jurisdiction.clone(),
                kind: self.kind,
                grade: self.grade,
                funding_form: self.funding_form,
                status: self.status,
                status_since: self.status_since,
                political_legal: self.political_legal,
                record: RecordRef(String::new()),
            },
        }]
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        _: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let mut known: HashSet<&str> = batch.registry.keys().map(String::as_str).collect();
        let mut verdicts = Vec::new();
        let mut versions = Vec::new();
        let mut current: BTreeMap<&str, [Value; 15]> = BTreeMap::new();
        for submission in &batch.records {
            let record = &submission.record;
            if let Some(parent) = &record.parent
                && !known.contains(parent.as_str())
            {
                verdicts.push(Err(Error::invalid(
                    "parent_uscc",
                    format!("institution {parent} is not in the registry"),
                )));
                continue;
            }
            known.insert(record.uscc.as_str());
            let [agency_id, record_id] = key_values(batch.agency, &submission.record_id);
            let row = [
                agency_id,
                record_id,
                Value::from(record.uscc.as_str()),
                Value::from(record.name.as_str()),
                Value::from(record.jurisdiction.as_str()),
                Value::OptText(record.parent.as_ref().map(ToString::to_string)),
                Value::from(record.kind.code()),
                Value::from(record.grade.code()),
                Value::OptText(record.funding_form.map(|f| f.code().to_owned())),
                Value::from(record.status.code()),
                Value::from(record.approval_document.as_str()),
                opt_date(record.established_on),
                opt_date(record.status_since),
                Value::from(record.political_legal),
                Value::Int(batch.accepted_at),
            ];
            versions.push(row.clone());
            current.insert(record.uscc.as_str(), row);
            verdicts.push(Ok(()));
        }
        const COLUMNS: &str = "(agency_id, record_id, uscc, name, jurisdiction, parent_uscc, kind, grade, funding_form, status, approval_document, established_on, status_since, political_legal, accepted_at)";
        tx.insert_rows(
            &format!("INSERT INTO institution_versions {COLUMNS}"),
            "",
            versions,
        )
        .await?;
        tx.insert_rows(
            &format!("INSERT INTO institutions {COLUMNS}"),
            "ON CONFLICT (uscc) DO UPDATE SET agency_id = excluded.agency_id, record_id = excluded.record_id, \
             name = excluded.name, jurisdiction = excluded.jurisdiction, parent_uscc = excluded.parent_uscc, \
             kind = excluded.kind, grade = excluded.grade, funding_form = excluded.funding_form, \
             status = excluded.status, approval_document = excluded.approval_document, \
             established_on = excluded.established_on, status_since = excluded.status_since, \
             political_legal = excluded.political_legal, accepted_at = excluded.accepted_at",
            current.into_values().collect(),
        )
        .await?;
        Ok(verdicts)
    }
}

fn registered<'a>(field: &'static str, uscc: &'a Uscc) -> InstitutionRef<'a> {
    InstitutionRef {
        field,
        uscc,
        must_be_registered: true,
    }
}

fn unregistered<'a>(field: &'static str, uscc: &'a Uscc) -> InstitutionRef<'a> {
    InstitutionRef {
        field,
        uscc,
        must_be_registered: false,
    }
}

impl RecordKind for Quota {
    const KIND: &'static str = "quota";

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        vec![registered("institution_uscc", &self.institution)]
    }

    fn changes(&self) -> Vec<Change> {
        vec![Change::Quota(self.clone())]
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        _: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let rows = batch.records.iter().map(|s| {
            let [agency_id, record_id] = key_values(batch.agency, &s.record_id);
            let q = &s.record;
            [
                agency_id,
                record_id,
                Value::from(q.institution.as_str()),
                Value::from(q.category.code()),
                Value::from(q.approved_count),
                Value::Text(q.effective_from.to_string()),
                opt_date(q.effective_to),
                Value::from(q.approval_document.as_str()),
                Value::Int(batch.accepted_at),
            ]
        });
        tx.insert_rows(
            "INSERT INTO quotas (agency_id, record_id, institution_uscc, category, approved_count, effective_from, effective_to, approval_document, accepted_at)",
            "",
            rows.collect(),
        )
        .await?;
        Ok(ok_all(batch))
    }
}

impl RecordKind for LeaderPost {
    const KIND: &'static str = "leader_post";

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        vec![registered("institution_uscc", &self.institution)]
    }

    fn changes(&self) -> Vec<Change> {
        vec![Change::LeaderPost(self.clone())]
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        _: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let rows = batch.records.iter().map(|s| {
            let [agency_id, record_id] = key_values(batch.agency, &s.record_id);
            let p = &s.record;
            [
                agency_id,
                record_id,
                Value::from(p.institution.as_str()),
                Value::from(p.level.code()),
                Value::from(p.position.code()),
                Value::from(p.approved_count),
                Value::Text(p.effective_from.to_string()),
                opt_date(p.effective_to),
                Value::from(p.approval_document.as_str()),
                Value::Int(batch.accepted_at),
            ]
        });
        tx.insert_rows(
            "INSERT INTO leader_posts (agency_id, record_id, institution_uscc, level, position, approved_count, effective_from, effective_to, approval_document, accepted_at)",
            "",
            rows.collect(),
        )
        .await?;
        Ok(ok_all(batch))
    }
}

impl RecordKind for StaffingPlan {
    const KIND: &'static str = "staffing_plan";

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        vec![registered("institution_uscc", &self.institution)]
    }

    fn changes(&self) -> Vec<Change> {
        vec![Change::Plan(self.clone())]
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        _: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let rows = batch.records.iter().map(|s| {
            let [agency_id, record_id] = key_values(batch.agency, &s.record_id);
            let p = &s.record;
            [
                agency_id,
                record_id,
                Value::from(p.institution.as_str()),
                Value::Int(i64::from(p.year)),
                Value::from(p.category.code()),
                Value::from(p.channel.code()),
                Value::from(p.approved_count),
                Value::from(p.approval_document.as_str()),
                Value::Int(batch.accepted_at),
            ]
        });
        tx.insert_rows(
            "INSERT INTO staffing_plans (agency_id, record_id, institution_uscc, year, category, channel, approved_count, approval_document, accepted_at)",
            "",
            rows.collect(),
        )
        .await?;
        Ok(ok_all(batch))
    }
}

impl RecordKind for HiringApproval {
    const KIND: &'static str = "hiring_approval";

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        vec![registered("institution_uscc", &self.institution)]
    }

    fn changes(&self) -> Vec<Change> {
        vec![Change::Approval(self.clone())]
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        _: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let rows = batch.records.iter().map(|s| {
            let [agency_id, record_id] = key_values(batch.agency, &s.record_id);
            let a = &s.record;
            [
                agency_id,
                record_id,
                Value::from(a.approval_number.as_str()),
                Value::from(a.institution.as_str()),
                Value::from(a.category.code()),
                Value::from(a.approved_entries),
                Value::Text(a.issued_on.to_string()),
                Value::Text(a.valid_until.to_string()),
                Value::Int(batch.accepted_at),
            ]
        });
        tx.insert_rows(
            "INSERT INTO hiring_approvals (agency_id, record_id, approval_number, institution_uscc, category, approved_entries, issued_on, valid_until, accepted_at)",
            "",
            rows.collect(),
        )
        .await?;
        Ok(ok_all(batch))
    }
}

impl RecordKind for PayrollLine {
    const KIND: &'static str = "payroll_line";

    /// A line of the period delivers it; a reversal delivers nothing.
    fn dated(&self) -> Dated {
        match self.reverses {
            Some(_) => Dated::Undated,
            None => Dated::Paid(self.period),
        }
    }

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        vec![unregistered("institution_uscc", &self.institution)]
    }

    fn scope(&self, scope: &mut Scope) {
        scope.institutions.insert(self.institution.to_string());
        scope.residents.insert(self.resident_id.to_string());
    }

    /// A reversal dirties what the line it voids did: same person, period and payer.
    fn changes(&self) -> Vec<Change> {
        vec![Change::Payroll(self.clone())]
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        _: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        // A reversal must name a live line of the same agency, period, institution and person.
        let agency_id = batch.agency.id();
        let targets: Vec<String> = batch
            .records
            .iter()
            .filter_map(|s| s.record.reverses.clone())
            .collect();
        let mut live: HashMap<String, (String, String, String, bool)> = HashMap::new();
        for row in lookup_keys(
            tx,
            "payroll_lines",
            "record_id, period, institution_uscc, resident_id, reverses, reversed_by",
            &[("agency_id", Value::from(agency_id.as_str()))],
            "record_id",
            &targets,
        )
        .await?
        {
            let reverses = q::opt_text(&row, "reverses")?;
            let reversed_by = q::opt_text(&row, "reversed_by")?;
            live.insert(
                q::text(&row, "record_id")?,
                (
                    q::text(&row, "period")?,
                    q::text(&row, "institution_uscc")?,
                    q::text(&row, "resident_id")?,
                    reverses.is_none() && reversed_by.is_none(),
                ),
            );
        }
        let mut verdicts = Vec::new();
        let mut rows = Vec::new();
        let mut reversed: Vec<(String, String)> = Vec::new();
        for submission in &batch.records {
            let line = &submission.record;
            if let Some(target) = &line.reverses {
                let fits =
                    live.get(target)
                        .is_some_and(|(period, institution, resident, is_live)| {
                            *is_live
                                && *period == line.period.to_string()
                                && institution == line.institution.as_str()
                                && resident == line.resident_id.as_str()
                        });
                if !fits {
                    verdicts.push(Err(Error::FailedPrecondition(format!(
                        "no live payroll line `{target}` of this agency for {} at {} in {} to reverse",
                        line.resident_id.masked(),
                        line.institution,
                        line.period
                    ))));
                    continue;
                }
                if let Some(entry) = live.get_mut(target) {
                    entry.3 = false;
                }
                reversed.push((target.clone(), submission.record_id.clone()));
            }
            let [agency, record_id] = key_values(batch.agency, &submission.record_id);
            rows.push([
                agency,
                record_id,
                Value::Text(line.period.to_string()),
                Value::from(line.institution.as_str()),
                Value::from(line.resident_id.as_str()),
                Value::from(line.name.as_str()),
                Value::Int(line.gross_fen),
                Value::Int(batch.accepted_at),
                Value::OptText(line.reverses.clone()),
            ]);
            verdicts.push(Ok(()));
        }
        tx.insert_rows(
            "INSERT INTO payroll_lines (agency_id, record_id, period, institution_uscc, resident_id, name, gross_fen, accepted_at, reverses)",
            "",
            rows,
        )
        .await?;
        for (target, by) in reversed {
            tx.execute(
                "UPDATE payroll_lines SET reversed_by = $1 WHERE agency_id = $2 AND record_id = $3",
                vec![
                    Value::Text(by),
                    Value::from(agency_id.as_str()),
                    Value::Text(target),
                ],
            )
            .await?;
        }
        Ok(verdicts)
    }
}

impl RecordKind for Funding {
    const KIND: &'static str = "funding";

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        vec![unregistered("institution_uscc", &self.institution)]
    }

    fn changes(&self) -> Vec<Change> {
        vec![Change::Funding(self.clone())]
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        _: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let rows = batch.records.iter().map(|s| {
            let [agency_id, record_id] = key_values(batch.agency, &s.record_id);
            let f = &s.record;
            [
                agency_id,
                record_id,
                Value::from(f.institution.as_str()),
                Value::from(f.category.code()),
                Value::Text(f.period.to_string()),
                Value::from(f.funded_headcount),
                Value::Int(f.amount_fen),
                Value::Int(batch.accepted_at),
            ]
        });
        tx.insert_rows(
            "INSERT INTO fundings (agency_id, record_id, institution_uscc, category, period, funded_headcount, amount_fen, accepted_at)",
            "",
            rows.collect(),
        )
        .await?;
        Ok(ok_all(batch))
    }
}

/// Records that belong to one person's history, which is derived again from all of them whenever
/// one arrives.
trait PersonHistoryKind: RecordKind {
    fn resident_id(&self) -> &ResidentId;
    fn conflict_message(existing: &Self, conflict: &RollConflict) -> String;
    /// The sender's record id of the record this one corrects, if any.
    fn corrects(&self) -> Option<&str> {
        None
    }
}

impl PersonHistoryKind for PersonnelEvent {
    fn resident_id(&self) -> &ResidentId {
        &self.resident_id
    }

    fn corrects(&self) -> Option<&str> {
        self.corrects.as_deref()
    }

    fn conflict_message(existing: &Self, conflict: &RollConflict) -> String {
        format!(
            "does not fit with the {} of {} already recorded: {}",
            existing.event_type.code().to_lowercase(),
            existing.effective_on,
            conflict.reason
        )
    }
}

impl PersonHistoryKind for Appointment {
    fn resident_id(&self) -> &ResidentId {
        &self.resident_id
    }

    fn conflict_message(existing: &Self, conflict: &RollConflict) -> String {
        format!(
            "does not fit with the {} of {} already recorded: {}",
            existing.action.code().to_lowercase(),
            existing.effective_on,
            conflict.reason
        )
    }
}

/// Per person: their live records (`{agency}/{record id}` and the record), in arrival order.
type Histories<R> = HashMap<String, Vec<(String, R)>>;

/// What fitting a batch into people's histories decided.
struct Fitted<R> {
    /// One per record of the batch.
    verdicts: Vec<Result<()>>,
    /// The live histories of the batch's people afterwards.
    histories: Histories<R>,
    /// (record id corrected, record id of its correction), for this agency.
    corrections: Vec<(String, String)>,
}

/// Accepts the new records of a person's history that the history still derives with. A person's
/// records in one batch are first tried together, so that a backdated pair (a leave and the return
/// from it) is taken even though neither fits without the other; failing that, or when the batch
/// corrects earlier records, one by one. A correction replaces the record it names.
fn fit_histories<R: PersonHistoryKind + Clone, D>(
    batch: &Batch<'_, R>,
    mut stored: Histories<R>,
    derive: impl Fn(&[&R]) -> Result<D, RollConflict>,
) -> Fitted<R> {
    let agency_id = batch.agency.id();
    let mut by_person: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, submission) in batch.records.iter().enumerate() {
        by_person
            .entry(submission.record.resident_id().to_string())
            .or_default()
            .push(index);
    }
    let mut verdicts: Vec<Option<Result<()>>> = batch.records.iter().map(|_| None).collect();
    let mut histories: Histories<R> = HashMap::new();
    let mut corrections = Vec::new();
    for (person, indexes) in by_person {
        let mut history = stored.remove(&person).unwrap_or_default();
        let own_id = |index: usize| format!("{agency_id}/{}", batch.records[index].record_id);
        let corrects_any = indexes
            .iter()
            .any(|&i| batch.records[i].record.corrects().is_some());
        let mut together: Vec<&R> = history.iter().map(|(_, r)| r).collect();
        together.extend(indexes.iter().map(|&i| &batch.records[i].record));
        if !corrects_any && derive(&together).is_ok() {
            for &index in &indexes {
                history.push((own_id(index), batch.records[index].record.clone()));
                verdicts[index] = Some(Ok(()));
            }
        } else {
            for &index in &indexes {
                let record = &batch.records[index].record;
                let replaced = match record.corrects() {
                    None => None,
                    Some(target) => {
                        let target_id = format!("{agency_id}/{target}");
                        match history.iter().position(|(id, _)| *id == target_id) {
                            Some(position) => Some(position),
                            None => {
                                verdicts[index] = Some(Err(Error::FailedPrecondition(format!(
                                    "no record `{target}` of this agency for this person to correct"
                                ))));
                                continue;
                            }
                        }
                    }
                };
                let mut candidate: Vec<&R> = history
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != replaced)
                    .map(|(_, (_, r))| r)
                    .collect();
                candidate.push(record);
                verdicts[index] = Some(match derive(&candidate) {
                    Ok(_) => Ok(()),
                    Err(conflict) if conflict.index == candidate.len() - 1 => {
                        Err(Error::FailedPrecondition(conflict.reason))
                    }
                    Err(conflict) => Err(Error::FailedPrecondition(R::conflict_message(
                        candidate[conflict.index],
                        &conflict,
                    ))),
                });
                if verdicts[index].as_ref().is_some_and(Result::is_ok) {
                    if let Some(position) = replaced {
                        let (corrected, _) = history.remove(position);
                        let corrected = corrected
                            .rsplit_once('/')
                            .map_or(corrected.clone(), |(_, id)| id.to_owned());
                        corrections.push((corrected, batch.records[index].record_id.clone()));
                    }
                    history.push((own_id(index), record.clone()));
                }
            }
        }
        histories.insert(person, history);
    }
    Fitted {
        verdicts: verdicts
            .into_iter()
            .map(|v| v.expect("every record has a verdict"))
            .collect(),
        histories,
        corrections,
    }
}

/// The next arrival number of each person in `table` (one past the highest, corrected rows included).
async fn next_arrivals<W: Writer>(
    tx: &mut W,
    table: &str,
    people: &[String],
) -> Result<HashMap<String, i64>> {
    let mut next: HashMap<String, i64> = people.iter().map(|p| (p.clone(), 0)).collect();
    let sql = format!("SELECT resident_id, MAX(arrival) AS last FROM {table} WHERE resident_id");
    for row in select_in(tx, &sql, "GROUP BY resident_id", &[], people).await? {
        next.insert(q::text(&row, "resident_id")?, q::int(&row, "last")? + 1);
    }
    Ok(next)
}

/// The live (uncorrected) stored events of these people, in arrival order.
async fn stored_events<W: Writer>(
    tx: &mut W,
    people: Vec<String>,
) -> Result<Histories<PersonnelEvent>> {
    let rows = select_in(
        tx,
        "SELECT * FROM personnel_events WHERE corrected_by IS NULL AND resident_id",
        "ORDER BY resident_id, arrival",
        &[],
        &people,
    )
    .await?;
    let mut events: Histories<PersonnelEvent> = HashMap::new();
    for row in &rows {
        let event = super::query::decode_event(row)?;
        let id = format!(
            "{}/{}",
            q::text(row, "agency_id")?,
            q::text(row, "record_id")?
        );
        events
            .entry(event.resident_id.to_string())
            .or_default()
            .push((id, event));
    }
    Ok(events)
}

/// The stored spells of these people, in order, before a rewrite.
async fn stored_spells<W: Writer>(
    tx: &mut W,
    people: &[String],
) -> Result<HashMap<String, Vec<Spell>>> {
    let rows = select_in(
        tx,
        "SELECT * FROM person_spells WHERE resident_id",
        "ORDER BY resident_id, ordinal",
        &[],
        people,
    )
    .await?;
    let mut spells: HashMap<String, Vec<Spell>> = HashMap::new();
    for row in &rows {
        spells
            .entry(q::text(row, "resident_id")?)
            .or_default()
            .push(super::query::decode_spell(row)?);
    }
    Ok(spells)
}

/// The stored leader terms of these people, before a rewrite (the opening appointment is not
/// needed to say which keys moved: an unchanged term is the same term).
async fn stored_terms<W: Writer>(
    tx: &mut W,
    people: &[String],
) -> Result<HashMap<String, Vec<PersonTerm>>> {
    let rows = select_in(
        tx,
        "SELECT * FROM leader_terms WHERE resident_id",
        "ORDER BY resident_id, ordinal",
        &[],
        people,
    )
    .await?;
    let mut terms: HashMap<String, Vec<PersonTerm>> = HashMap::new();
    for row in &rows {
        let term = check::term(row, &HashMap::new())?;
        terms
            .entry(term.resident_id.to_string())
            .or_default()
            .push(PersonTerm {
                record: RecordRef(String::new()),
                ..term
            });
    }
    Ok(terms)
}

/// The entries (hires, transfers arriving) of a person's live events, for the keys a rewrite
/// moved: the same event gives the same entry before and after.
fn entries_of<'a>(events: impl Iterator<Item = &'a (String, PersonnelEvent)>) -> Vec<Entry> {
    events
        .filter_map(|(id, event)| {
            let institution = match event.event_type {
                crate::domain::PersonnelEventType::Hire => event.institution.clone(),
                crate::domain::PersonnelEventType::Transfer => {
                    event.target.clone().unwrap_or(event.institution.clone())
                }
                _ => return None,
            };
            Some(Entry {
                resident_id: event.resident_id.clone(),
                institution,
                category: event.category?,
                channel: event.channel,
                date: event.effective_on,
                approval_number: event.approval_number.clone(),
                arrival: 0,
                record: RecordRef(id.clone()),
            })
        })
        .collect()
}

fn people<R: PersonHistoryKind>(batch: &Batch<'_, R>) -> Vec<String> {
    let set: HashSet<String> = batch
        .records
        .iter()
        .map(|s| s.record.resident_id().to_string())
        .collect();
    set.into_iter().collect()
}

async fn upsert_persons<R: PersonHistoryKind, W: Writer>(
    tx: &mut W,
    batch: &Batch<'_, R>,
    verdicts: &[Result<()>],
    name: impl Fn(&R) -> &str,
) -> Result<()> {
    let mut latest: BTreeMap<String, [Value; 3]> = BTreeMap::new();
    for (submission, verdict) in batch.records.iter().zip(verdicts) {
        if verdict.is_ok() {
            let id = submission.record.resident_id().to_string();
            latest.insert(
                id.clone(),
                [
                    Value::Text(id),
                    Value::from(name(&submission.record)),
                    Value::Int(batch.accepted_at),
                ],
            );
        }
    }
    tx.insert_rows(
        "INSERT INTO persons (resident_id, name, first_seen)",
        "ON CONFLICT (resident_id) DO UPDATE SET name = excluded.name",
        latest.into_values().collect(),
    )
    .await
    .map(drop)
}

async fn delete_for_people<W: Writer>(tx: &mut W, table: &str, people: &[String]) -> Result<()> {
    if people.is_empty() {
        return Ok(());
    }
    // One statement text per backend and one parameter, whatever the number of people: an `IN`
    // list of a parameter each was a new text for every batch's number of people.
    let (matched, set) = super::key_match(tx.backend(), 1, people);
    tx.execute(
        &format!("DELETE FROM {table} WHERE resident_id {matched}"),
        vec![set],
    )
    .await?;
    Ok(())
}

impl RecordKind for PersonnelEvent {
    const KIND: &'static str = "personnel_event";

    /// An event reports what happened on its effective date; a correction restates an old one.
    fn dated(&self) -> Dated {
        match self.corrects {
            Some(_) => Dated::Undated,
            None => Dated::Effective(self.effective_on),
        }
    }

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        let mut refs = vec![unregistered("institution_uscc", &self.institution)];
        if let Some(target) = &self.target {
            refs.push(unregistered("target_institution_uscc", target));
        }
        refs
    }

    fn lock_keys(&self) -> Vec<String> {
        vec![format!("person:{}", self.resident_id)]
    }

    fn scope(&self, scope: &mut Scope) {
        scope.institutions.insert(self.institution.to_string());
        if let Some(target) = &self.target {
            scope.institutions.insert(target.to_string());
        }
        scope.residents.insert(self.resident_id.to_string());
    }

    fn changes(&self) -> Vec<Change> {
        Vec::new()
    }

    fn rewrites(&self) -> Option<&ResidentId> {
        Some(&self.resident_id)
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        rewrites: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let people = people(batch);
        let stored = stored_events(tx, people.clone()).await?;
        let stored_histories = stored.clone();
        let Fitted {
            verdicts,
            histories,
            corrections,
        } = fit_histories(batch, stored, roll::derive_spells);

        let mut event_rows = Vec::new();
        let mut next_arrival = next_arrivals(tx, "personnel_events", &people).await?;
        for (submission, verdict) in batch.records.iter().zip(&verdicts) {
            if verdict.is_err() {
                continue;
            }
            let e = &submission.record;
            let arrival = next_arrival
                .get_mut(e.resident_id.as_str())
                .expect("every person has a history");
            let [agency_id, record_id] = key_values(batch.agency, &submission.record_id);
            event_rows.push([
                agency_id,
                record_id,
                Value::from(e.event_type.code()),
                Value::from(e.resident_id.as_str()),
                Value::from(e.name.as_str()),
                Value::from(e.institution.as_str()),
                Value::OptText(e.category.map(|c| c.code().to_owned())),
                Value::OptText(e.rank.map(|r| r.code().to_owned())),
                Value::Text(e.effective_on.to_string()),
                Value::OptText(e.approval_number.clone()),
                Value::OptText(e.channel.map(|c| c.code().to_owned())),
                Value::OptText(e.target.as_ref().map(ToString::to_string)),
                Value::Int(batch.accepted_at),
                Value::Int(*arrival),
                Value::OptText(e.corrects.clone()),
            ]);
            *arrival += 1;
        }
        tx.insert_rows(
            "INSERT INTO personnel_events (agency_id, record_id, event_type, resident_id, name, institution_uscc, category, rank, effective_on, approval_number, channel, target_uscc, accepted_at, arrival, corrects)",
            "",
            event_rows,
        )
        .await?;
        for (corrected, by) in corrections {
            tx.execute(
                "UPDATE personnel_events SET corrected_by = $1 WHERE agency_id = $2 AND record_id = $3",
                vec![Value::Text(by), Value::Text(batch.agency.id()), Value::Text(corrected)],
            )
            .await?;
        }
        upsert_persons(tx, batch, &verdicts, |e| &e.name).await?;

        let changed: Vec<String> = histories.keys().cloned().collect();
        let mut before = stored_spells(tx, &changed).await?;
        delete_for_people(tx, "person_spells", &changed).await?;
        let mut spell_rows = Vec::new();
        let mut shifts = Vec::new();
        let mut entry_moves = Vec::new();
        for (resident_id, events) in &histories {
            let spells = roll::derive_spells(&events.iter().map(|(_, e)| e).collect::<Vec<_>>())
                .map_err(|c| {
                    Error::Internal(format!("accepted history no longer derives: {}", c.reason))
                })?;
            let resident = super::codec::stored(ResidentId::parse(resident_id))?;
            let spells = Rewrite {
                before: before.remove(resident_id).unwrap_or_default(),
                after: spells,
            };
            shifts.extend(Headcount::shifts(&spells));
            let entries = Rewrite {
                before: entries_of(stored_histories.get(resident_id).into_iter().flatten()),
                after: entries_of(events.iter()),
            };
            entry_moves.extend(Plans::moves(&entries));
            let written = spells.after.clone();
            rewrites.push(Change::Roll {
                resident,
                spells,
                entries,
            });
            for (ordinal, spell) in written.into_iter().enumerate() {
                spell_rows.push([
                    Value::from(resident_id.as_str()),
                    Value::Int(ordinal as i64),
                    Value::from(spell.institution.as_str()),
                    Value::from(spell.category.code()),
                    Value::from(spell.rank.code()),
                    Value::from(spell.status.code()),
                    Value::Text(spell.valid_from.to_string()),
                    opt_date(spell.valid_to),
                    Value::OptText(spell.approval_number),
                    Value::OptText(spell.seconded_to.map(|s| s.to_string())),
                ]);
            }
        }
        tx.insert_rows(
            "INSERT INTO person_spells (resident_id, ordinal, institution_uscc, category, rank, status, valid_from, valid_to, approval_number, seconded_to)",
            "",
            spell_rows,
        )
        .await?;
        check::shift_roll_counts(tx, &shifts, batch.today).await?;
        check::count_plan_entries(tx, &entry_moves).await?;
        Ok(verdicts)
    }
}

impl RecordKind for Appointment {
    const KIND: &'static str = "appointment";

    fn institutions(&self) -> Vec<InstitutionRef<'_>> {
        vec![unregistered("institution_uscc", &self.institution)]
    }

    fn lock_keys(&self) -> Vec<String> {
        vec![format!("person:{}", self.resident_id)]
    }

    fn scope(&self, scope: &mut Scope) {
        scope.institutions.insert(self.institution.to_string());
        scope.residents.insert(self.resident_id.to_string());
    }

    fn changes(&self) -> Vec<Change> {
        Vec::new()
    }

    fn rewrites(&self) -> Option<&ResidentId> {
        Some(&self.resident_id)
    }

    async fn apply<W: Writer>(
        tx: &mut W,
        batch: &Batch<'_, Self>,
        rewrites: &mut Vec<Change>,
    ) -> Result<Vec<Result<()>>> {
        let people = people(batch);
        let rows = select_in(
            tx,
            "SELECT agency_id, record_id, action, resident_id, name, institution_uscc, level, position, rank, effective_on, document FROM appointments WHERE resident_id",
            "ORDER BY resident_id, arrival",
            &[],
            &people,
        )
        .await?;
        let mut stored: Histories<Appointment> = HashMap::new();
        for row in &rows {
            let appointment = super::query::decode_appointment(row)?;
            let id = format!(
                "{}/{}",
                q::text(row, "agency_id")?,
                q::text(row, "record_id")?
            );
            stored
                .entry(appointment.resident_id.to_string())
                .or_default()
                .push((id, appointment));
        }
        let Fitted {
            verdicts,
            histories,
            ..
        } = fit_histories(batch, stored, roll::derive_terms);

        let mut next_arrival = next_arrivals(tx, "appointments", &people).await?;
        let mut appointment_rows = Vec::new();
        for (submission, verdict) in batch.records.iter().zip(&verdicts) {
            if verdict.is_err() {
                continue;
            }
            let a = &submission.record;
            let arrival = next_arrival
                .get_mut(a.resident_id.as_str())
                .expect("every person has a history");
            let [agency_id, record_id] = key_values(batch.agency, &submission.record_id);
            appointment_rows.push([
                agency_id,
                record_id,
                Value::from(a.action.code()),
                Value::from(a.resident_id.as_str()),
                Value::from(a.name.as_str()),
                Value::from(a.institution.as_str()),
                Value::from(a.level.code()),
                Value::from(a.position.code()),
                Value::from(a.rank.code()),
                Value::Text(a.effective_on.to_string()),
                Value::from(a.document.as_str()),
                Value::Int(batch.accepted_at),
                Value::Int(*arrival),
            ]);
            *arrival += 1;
        }
        tx.insert_rows(
            "INSERT INTO appointments (agency_id, record_id, action, resident_id, name, institution_uscc, level, position, rank, effective_on, document, accepted_at, arrival)",
            "",
            appointment_rows,
        )
        .await?;
        upsert_persons(tx, batch, &verdicts, |a| &a.name).await?;

        let changed: Vec<String> = histories.keys().cloned().collect();
        let mut before = stored_terms(tx, &changed).await?;
        delete_for_people(tx, "leader_terms", &changed).await?;
        let mut term_rows = Vec::new();
        for (resident_id, appointments) in &histories {
            let terms =
                roll::derive_terms(&appointments.iter().map(|(_, a)| a).collect::<Vec<_>>())
                    .map_err(|c| {
                        Error::Internal(format!("accepted history no longer derives: {}", c.reason))
                    })?;
            let resident = super::codec::stored(ResidentId::parse(resident_id))?;
            let rewrite = Rewrite {
                before: before.remove(resident_id).unwrap_or_default(),
                after: terms
                    .iter()
                    .map(|term| PersonTerm {
                        resident_id: resident.clone(),
                        term: term.clone(),
                        record: RecordRef(String::new()),
                    })
                    .collect(),
            };
            rewrites.push(Change::Terms {
                resident,
                terms: rewrite,
            });
            for (ordinal, term) in terms.into_iter().enumerate() {
                term_rows.push([
                    Value::from(resident_id.as_str()),
                    Value::Int(ordinal as i64),
                    Value::from(term.institution.as_str()),
                    Value::from(term.level.code()),
                    Value::from(term.position.code()),
                    Value::from(term.rank.code()),
                    Value::Text(term.valid_from.to_string()),
                    opt_date(term.valid_to),
                ]);
            }
        }
        tx.insert_rows(
            "INSERT INTO leader_terms (resident_id, ordinal, institution_uscc, level, position, rank, valid_from, valid_to)",
            "",
            term_rows,
        )
        .await?;
        Ok(verdicts)
    }
}
