//! Pre-checks (CheckHire, VerifyFunding) as a handful of indexed reads on a read connection,
//! outside the writer: the act's dirty keys are decided without it and with it
//! ([`check::decide`] with an [`Act`]), the same rule functions a push uses, and the answer is
//! assembled by the domain ([`precheck::hire_answer`], [`precheck::funding_answer`]).

use chrono::Datelike;

use super::check::{self, Act, CheckReads, fetch, headcount_on, plans_of, pushed};
use super::query as q;
use super::read::{ReadOnce, Reader};
use super::{Store, Value};
use crate::domain::aggregates::{Headcount, Plans, Posts, Quotas};
use crate::domain::dirty::{Change, DirtySet, Rewrite};
use crate::domain::findings::{Entry, Finding, PersonSpell, PersonTerm, Pushed, RecordRef};
use crate::domain::ids::resident_id_with_check;
use crate::domain::precheck::{
    self, FundingAnswer, FundingNumbers, FundingQuestion, HYPOTHETICAL, HireAnswer, HireNumbers,
    HireQuestion,
};
use crate::domain::roll::{LeaderTerm, Spell};
use crate::domain::{Agency, Coded, PersonStatus, QuotaCategory, Rank, Uscc};
use crate::error::Result;

impl Store {
    /// Would this hire or appointment break a rule? Read on a read connection; nothing is written.
    /// Refused unless `asker` oversees the institution (read in the same snapshot).
    #[tracing::instrument(name = "store.check_hire", skip_all)]
    pub async fn check_hire(&self, asker: &Agency, question: &HireQuestion) -> Result<HireAnswer> {
        self.ask(asker, question).await
    }

    /// Would this funding break a rule? Read on a read connection; nothing is written.
    #[tracing::instrument(name = "store.verify_funding", skip_all)]
    pub async fn verify_funding(
        &self,
        asker: &Agency,
        question: &FundingQuestion,
    ) -> Result<FundingAnswer> {
        self.ask(asker, question).await
    }

    /// Answers a pre-check within one snapshot of the data: on an SQLite file, on a native read
    /// connection, in place on the runtime's worker; on PostgreSQL, in a repeatable-read
    /// transaction of the native pool; in memory, in a read transaction of the pool.
    /// Whether `asker` oversees the institution is read there too: a separate read would cost a
    /// pool's hand-off of its own (on SQLite, `sqlx`'s worker thread).
    ///
    /// The native reads block the worker, by design: they are a dozen indexed reads of pages the
    /// connection mostly holds (a fifth of a millisecond of CPU for a CheckHire), and handing them
    /// to a blocking thread cost more than they do (`quotahub bench --scale small`: CheckHire at
    /// 16 callers 22-25% more calls/s in place than on `spawn_blocking`, `block_in_place` no
    /// better than it). The permits bound the reads at once to the connections.
    async fn ask<Q: Question>(&self, asker: &Agency, question: &Q) -> Result<Q::Answer> {
        if let Some(native) = &self.native {
            let permit = native.wait().await?;
            let mut read = native.begin(permit)?;
            return self
                .answer(&mut ReadOnce::new(&mut read), asker, question)
                .await;
        }
        if let Some(native) = self.native_pool() {
            // PostgreSQL's default isolation gives each statement a snapshot of its own.
            let mut tx = native
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await?;
            // Dropped, not rolled back: `sqlx` sends the rollback with the ping it returns the
            // connection to the pool with, one round trip the answer does not wait for.
            return self
                .answer(&mut ReadOnce::new(&mut tx), asker, question)
                .await;
        }
        let mut tx = self.readers().begin().await?;
        let answer = self
            .answer(&mut ReadOnce::new(&mut tx), asker, question)
            .await;
        tx.rollback().await?;
        answer
    }

    /// The question answered if `asker` may ask it: the registry entry is read by the statement
    /// the decision reads it with, so that it is read once.
    async fn answer<Q: Question, R: Reader>(
        &self,
        tx: &mut R,
        asker: &Agency,
        question: &Q,
    ) -> Result<Q::Answer> {
        let uscc = question.institution();
        let rows = check::fetch_in(
            tx,
            self.check_reads(),
            check::INSTITUTIONS,
            "",
            &[],
            &[uscc.to_string()],
        )
        .await?;
        let registered = rows.first().map(check::facts).transpose()?;
        let jurisdiction = q::placed(uscc, registered.map(|facts| facts.jurisdiction));
        q::overseen(asker, uscc, jurisdiction.as_ref())?;
        question.answer(self, tx).await
    }

    async fn hire_on<R: Reader>(&self, tx: &mut R, question: &HireQuestion) -> Result<HireAnswer> {
        let reads = self.check_reads();
        let date = question.date;
        let person = question.resident_id.clone().unwrap_or_else(|| {
            // Someone nobody has heard of: a syntactically valid ID in no real division.
            resident_id_with_check("99999919000101000").expect("a valid placeholder")
        });
        let unit = (&question.institution, question.category);

        // The statement the decision reads the person's spells with, so that it is read once.
        let mut theirs: Vec<(i64, Spell)> = check::fetch_in(
            tx,
            reads,
            "SELECT * FROM person_spells WHERE resident_id",
            "",
            &[],
            &[person.to_string()],
        )
        .await?
        .iter()
        .map(|row| Ok((q::int(row, "ordinal")?, q::decode_spell(row)?)))
        .collect::<Result<_>>()?;
        theirs.sort_by_key(|(ordinal, _)| *ordinal);
        let theirs: Vec<Spell> = theirs.into_iter().map(|(_, spell)| spell).collect();
        let on_roll_here = |s: &Spell| {
            s.institution == question.institution && s.status.is_on_roll() && s.covers(date)
        };
        // An appointment of someone already on this roll is not an entry.
        let already_here = theirs.iter().any(on_roll_here);

        let record = RecordRef(HYPOTHETICAL.to_owned());
        let rank = question.rank.unwrap_or(Rank::Clerk);
        let mut act = Act::default();
        let mut after = theirs.clone();
        if !already_here {
            let spell = Spell {
                institution: question.institution.clone(),
                category: question.category,
                rank,
                status: PersonStatus::Active,
                valid_from: date,
                valid_to: None,
                approval_number: question.approval_number.clone(),
                seconded_to: None,
            };
            after.push(spell.clone());
            act.spells.push(PersonSpell {
                resident_id: person.clone(),
                spell,
            });
            act.entries.push(Entry {
                resident_id: person.clone(),
                institution: question.institution.clone(),
                category: question.category,
                channel: question.channel,
                date,
                approval_number: question.approval_number.clone(),
                arrival: i64::MAX,
                record: record.clone(),
            });
        }
        if let Some((level, position)) = question.post {
            act.terms.push(PersonTerm {
                resident_id: person.clone(),
                term: LeaderTerm {
                    institution: question.institution.clone(),
                    level,
                    position,
                    rank,
                    valid_from: date,
                    valid_to: None,
                },
                record,
            });
        }
        let spells = Rewrite {
            before: theirs.clone(),
            after,
        };
        let entries = Rewrite {
            before: Vec::new(),
            after: act.entries.clone(),
        };
        act.shifts = Headcount::shifts(&spells);
        act.moves = Plans::moves(&entries);
        let mut dirty = DirtySet::new();
        dirty.add(&Change::Roll {
            resident: person.clone(),
            spells,
            entries,
        });
        dirty.add(&Change::Terms {
            resident: person.clone(),
            terms: Rewrite {
                before: Vec::new(),
                after: act.terms.clone(),
            },
        });

        // A backdated hire moves the draws of later entries citing its approval.
        let known = check::resolve_draws(tx, self.check_reads(), &mut dirty, &act.entries).await?;
        let decided = check::decide_pair(self, tx, &dirty, &known, date, Some(&act)).await?;

        // The numbers beside the verdict.
        let quotas = quotas_of(tx, reads, &question.institution).await?;
        let approved_quota = quotas
            .in_force(&(question.institution.clone(), question.category), date)
            .map_or(0, |q| q.record.approved_count);
        let active = headcount_on(tx, reads, &decided, unit, date).await?;
        let year = (&question.institution, question.category, date.year());
        let (taken, plans) = plans_of(tx, reads, year).await?;
        let plan_used = taken.0;
        let (by, placed) = act
            .moves
            .iter()
            .filter(|(key, _)| (&key.0, key.1, key.2) == year)
            .fold((0, 0), |(n, p), (_, (b, q))| (n + b, p + q));
        let entered = Plans::known(year, (taken.0 + by, taken.1 + placed), &plans);
        let plans = Plans::known(year, taken, &plans);
        let reserve = (
            plans.reserve(year.0, year.1, year.2),
            entered.reserve(year.0, year.1, year.2),
        );
        let plan_approved: u32 = plans
            .counted(year.0, year.1, year.2)
            .map(|p| p.record.approved_count)
            .sum();
        let (approval_entries, approval_used) = match &question.approval_number {
            Some(number) => match known.approval_use(unit.0, unit.1, number) {
                Some(read) => read,
                None => approval_use(tx, reads, unit, number).await?,
            },
            None => (0, 0),
        };
        let (posts_approved, posts_occupied) = match question.post {
            Some((level, position)) => {
                let posts: Vec<Pushed<_>> = fetch(
                    tx,
                    reads,
                    "SELECT * FROM leader_posts WHERE institution_uscc = $1",
                    vec![Value::from(question.institution.as_str())],
                )
                .await?
                .iter()
                .map(|row| q::decode_post(row).map(pushed))
                .collect::<Result<_>>()?;
                let approved = Posts::from_records(&posts)
                    .in_force(&(question.institution.clone(), level, position), date)
                    .map_or(0, |p| p.record.approved_count);
                let day = date.to_string();
                let occupied = count(
                    tx,
                    reads,
                    "SELECT COUNT(*) AS n FROM leader_terms WHERE institution_uscc = $1 AND level = $2 \
                     AND position = $3 AND valid_from <= $4 AND (valid_to IS NULL OR valid_to > $5)",
                    vec![
                        Value::from(question.institution.as_str()),
                        Value::from(level.code()),
                        Value::from(position.code()),
                        Value::Text(day.clone()),
                        Value::Text(day),
                    ],
                )
                .await?;
                (approved, occupied)
            }
            None => (0, 0),
        };
        let mut other_institutions: Vec<String> = theirs
            .iter()
            .filter(|s| {
                s.status.is_on_roll() && s.covers(date) && s.institution != question.institution
            })
            .map(|s| s.institution.to_string())
            .collect();
        other_institutions.sort();
        other_institutions.dedup();

        Ok(precheck::hire_answer(
            &findings(decided.without),
            findings(decided.with),
            HireNumbers {
                approved_quota,
                active: u32::try_from(active).unwrap_or(u32::MAX),
                plan_approved,
                plan_used: u32::try_from(plan_used).unwrap_or(u32::MAX),
                approval_entries,
                approval_used,
                posts_approved,
                posts_occupied,
                other_institutions,
                reserve,
            },
        ))
    }

    async fn funding_on<R: Reader>(
        &self,
        tx: &mut R,
        question: &FundingQuestion,
    ) -> Result<FundingAnswer> {
        let reads = self.check_reads();
        let last_day = question.period.last_day();
        let funding = precheck::hypothetical_funding(question);
        let mut dirty = DirtySet::new();
        dirty.add(&Change::Funding(funding.record.clone()));
        let act = Act {
            funding: Some(funding),
            ..Act::default()
        };
        let known = check::Known::default();
        let decided = check::decide_pair(self, tx, &dirty, &known, last_day, Some(&act)).await?;

        let unit = (&question.institution, question.category);
        let quotas = quotas_of(tx, reads, &question.institution).await?;
        let approved_quota = quotas
            .in_force(&(question.institution.clone(), question.category), last_day)
            .map_or(0, |q| q.record.approved_count);
        let active = headcount_on(tx, reads, &decided, unit, last_day).await?;
        // The statements the decision read these with (answered again, not read twice).
        let already_funded = check::fundings_from(
            tx,
            reads,
            &[(
                &question.institution,
                question.category,
                Some(question.period),
            )],
        )
        .await?
        .into_values()
        .flatten()
        .filter(|f| f.record.period == question.period)
        .max_by(|a, b| (a.accepted_at, &a.id).cmp(&(b.accepted_at, &b.id)))
        .map_or(0, |f| f.record.funded_headcount);
        let funding_form = check::fetch_in(
            tx,
            reads,
            check::INSTITUTIONS,
            "",
            &[],
            &[question.institution.to_string()],
        )
        .await?
        .first()
        .map(check::facts)
        .transpose()?
        .and_then(|facts| facts.funding_form);

        Ok(precheck::funding_answer(
            findings(decided.with),
            FundingNumbers {
                approved_quota,
                active: u32::try_from(active).unwrap_or(u32::MAX),
                already_funded,
                funding_form,
            },
        ))
    }
}

/// A pre-check's question: answered the same way on any [`Reader`].
trait Question {
    type Answer;

    /// The institution asked about.
    fn institution(&self) -> &Uscc;

    fn answer<R: Reader>(
        &self,
        store: &Store,
        tx: &mut R,
    ) -> impl std::future::Future<Output = Result<Self::Answer>> + Send;
}

impl Question for HireQuestion {
    type Answer = HireAnswer;

    fn institution(&self) -> &Uscc {
        &self.institution
    }

    async fn answer<R: Reader>(&self, store: &Store, tx: &mut R) -> Result<HireAnswer> {
        store.hire_on(tx, self).await
    }
}

impl Question for FundingQuestion {
    type Answer = FundingAnswer;

    fn institution(&self) -> &Uscc {
        &self.institution
    }

    async fn answer<R: Reader>(&self, store: &Store, tx: &mut R) -> Result<FundingAnswer> {
        store.funding_on(tx, self).await
    }
}

fn findings(decided: Vec<(Finding, String)>) -> Vec<Finding> {
    decided.into_iter().map(|(finding, _)| finding).collect()
}

async fn quotas_of<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    institution: &Uscc,
) -> Result<Quotas> {
    // The statement the decision reads them with, so that they are read once.
    let records: Vec<Pushed<_>> = check::fetch_in(
        tx,
        reads,
        check::QUOTAS,
        "",
        &[],
        &[institution.to_string()],
    )
    .await?
    .iter()
    .map(|row| q::decode_quota(row).map(pushed))
    .collect::<Result<_>>()?;
    Ok(Quotas::from_records(&records))
}

async fn count<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    sql: &'static str,
    values: Vec<Value>,
) -> Result<u32> {
    let rows = fetch(tx, reads, sql, values).await?;
    let n = rows.first().map_or(Ok(0), |row| q::int(row, "n"))?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The entries an approval grants and the entries at the institution citing it.
async fn approval_use<R: Reader>(
    tx: &mut R,
    reads: &CheckReads,
    (institution, category): (&Uscc, QuotaCategory),
    number: &str,
) -> Result<(u32, u32)> {
    let sql = format!(
        "SELECT * FROM hiring_approvals WHERE {} = $1 AND category = $2 AND approval_number = $3",
        check::not_sought(tx.backend(), "institution_uscc")
    );
    let approvals: Vec<Pushed<_>> = fetch(
        tx,
        reads,
        &sql,
        vec![
            Value::from(institution.as_str()),
            Value::from(category.code()),
            Value::from(number),
        ],
    )
    .await?
    .iter()
    .map(|row| q::decode_approval(row).map(pushed))
    .collect::<Result<_>>()?;
    let granted = check::granting(&approvals, institution, category, number)
        .map(|a| a.record.approved_entries);
    let Some(granted) = granted else {
        return Ok((0, 0));
    };
    let used = count(
        tx,
        reads,
        "SELECT COUNT(*) AS n FROM personnel_events WHERE corrected_by IS NULL AND category IS NOT NULL \
         AND approval_number = $1 AND ((event_type = 'HIRE' AND institution_uscc = $2) \
         OR (event_type = 'TRANSFER' AND target_uscc = $3))",
        vec![
            Value::from(number),
            Value::from(institution.as_str()),
            Value::from(institution.as_str()),
        ],
    )
    .await?;
    Ok((granted, used))
}
