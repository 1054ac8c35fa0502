//! Special inspections in storage: campaigns and the institutions they must hear from, the
//! declarations (never edited), the comparison read from them and the findings as kept, the
//! ledger items opened for what a declaration left out, the escalation of missing declarations,
//! and the review of an application (关口前移), which reads a department's whole record.
//!
//! The comparison is not stored while a campaign is open: it is worked out on each read from the
//! declarations and the open findings, so it follows the data. Closing a campaign keeps the
//! findings it compared against, so its closing report stays what it was.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sqlx::any::AnyRow;

use super::codec::column;
use super::feed::{FeedEventType, FollowUp, append_follow_up};
use super::ledger::{
    Application, ApplicationFilter, LedgerItem, Opening, Penalty, day_of, insert_item, new_id,
    open_item_of, oversee,
};
use super::ledger_keys::{Creates, RequestKey, request_lock};
use super::query as q;
use super::reconcile::StoredFinding;
use super::reconcile::{FindingColumn, FindingFilter, FindingOrder};
use super::write::Writer as _;
use super::{Store, Value, bind_all};
use crate::domain::campaign::{
    self, CampaignPeriod, CampaignState, Comparison, Declared, DeclaredProblem, Progress,
};
use crate::domain::findings::{FindingKey, RuleCode};
use crate::domain::ledger::{MatterKind, overdue_level, reach_text};
use crate::domain::{Agency, AgencyKind, Coded, Jurisdiction, Period, Uscc};
use crate::error::{Error, Result};

/// A campaign as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    /// Its id.
    pub id: String,
    /// The jurisdiction subtree it covers.
    pub jurisdiction: String,
    /// Its title.
    pub title: String,
    /// The rules it is about.
    pub codes: Vec<RuleCode>,
    /// The months it looks at.
    pub period: CampaignPeriod,
    /// Last day for a declaration on time.
    pub deadline: NaiveDate,
    /// Open or closed.
    pub state: CampaignState,
    /// Who opened it.
    pub opened_by: String,
    /// When (Unix microseconds).
    pub opened_at: i64,
    /// When it was closed.
    pub closed_at: Option<i64>,
    /// The closing note.
    pub closing_note: Option<String>,
    /// Institutions in scope.
    pub institutions: u64,
}

/// What opening a campaign needs.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    /// The jurisdiction subtree.
    pub jurisdiction: Jurisdiction,
    /// Its title.
    pub title: String,
    /// The rules.
    pub codes: Vec<RuleCode>,
    /// The months.
    pub period: CampaignPeriod,
    /// Last day on time.
    pub deadline: NaiveDate,
    /// Only these institutions; empty for every active one of the jurisdiction.
    pub institutions: Vec<Uscc>,
}

/// A declaration as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// The campaign.
    pub campaign_id: String,
    /// The institution.
    pub institution: String,
    /// The problems declared.
    pub problems: Vec<DeclaredProblem>,
    /// Nothing found.
    pub nothing_found: bool,
    /// Who signs for the institution.
    pub signed_by: String,
    /// The agency that sent it.
    pub declared_by: String,
    /// When (Unix microseconds).
    pub declared_at: i64,
    /// After the deadline.
    pub late: bool,
}

/// What declaring needs.
#[derive(Debug, Clone)]
pub struct NewDeclaration {
    /// The campaign.
    pub campaign_id: String,
    /// The institution.
    pub institution: Uscc,
    /// The problems (empty with `nothing_found`).
    pub problems: Vec<DeclaredProblem>,
    /// Nothing found.
    pub nothing_found: bool,
    /// Who signs for the institution.
    pub signed_by: String,
}

/// One institution's line of a campaign's report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportLine {
    /// The institution's jurisdiction.
    pub jurisdiction: String,
    /// The comparison.
    pub comparison: Comparison,
    /// Steps its missing declaration has climbed (as claimed, not as due).
    pub escalation_level: i64,
    /// Ledger items the campaign opened for its undeclared problems.
    pub items: Vec<String>,
}

/// A campaign with its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignProgress {
    /// The campaign.
    pub campaign: Campaign,
    /// The counts.
    pub progress: Progress,
    /// Ledger items opened for undeclared problems.
    pub items_opened: u64,
}

/// Which institutions of a scope to read.
#[derive(Debug, Clone, Copy)]
pub enum Institutions<'a> {
    /// All of them.
    All,
    /// A page: after this USCC, at most this many.
    Page(&'a str, u32),
    /// One.
    One(&'a str),
}

impl Institutions<'_> {
    /// `AND {column} ...` with its values bound after `values`.
    fn sql(self, column: &str, values: &mut Vec<Value>) -> String {
        match self {
            Institutions::All => String::new(),
            Institutions::Page(after, _) => {
                values.push(Value::from(after));
                format!(" AND {column} > ${}", values.len())
            }
            Institutions::One(uscc) => {
                values.push(Value::from(uscc));
                format!(" AND {column} = ${}", values.len())
            }
        }
    }
}

/// What the supervision division weighs before deciding an application.
#[derive(Debug, Clone)]
pub struct ApplicationReview {
    /// The application.
    pub application: Application,
    /// The department's open findings (at most [`REVIEW_FINDINGS`]).
    pub open_findings: Vec<StoredFinding>,
    /// How many it has in all.
    pub open_findings_total: u64,
    /// Its ledger items, without their histories.
    pub items: Vec<LedgerItem>,
    /// Its penalties.
    pub penalties: Vec<Penalty>,
    /// The campaigns whose scope holds it: its line and its declaration.
    pub campaigns: Vec<(Campaign, ReportLine, Option<Declaration>)>,
    /// Its applications filed before this one.
    pub earlier: Vec<Application>,
}

/// Most open findings a review lists.
pub const REVIEW_FINDINGS: u32 = 500;

/// The agency kinds that see a campaign's events: those that open campaigns, those that declare,
/// those that read. Finance neither declares nor reads campaigns.
const CAMPAIGN_REACH: &[AgencyKind] = &[
    AgencyKind::StaffingOffice,
    AgencyKind::Organization,
    AgencyKind::Hr,
    AgencyKind::Discipline,
    AgencyKind::Audit,
];

/// A declared problem as kept in `campaign_declarations.problems`.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredProblem {
    code: String,
    subject: String,
    period: String,
    note: String,
}

fn problems_json(problems: &[DeclaredProblem]) -> Result<String> {
    let stored: Vec<StoredProblem> = problems
        .iter()
        .map(|p| StoredProblem {
            code: p.code.code().to_owned(),
            subject: p.subject.clone(),
            period: p.period.clone(),
            note: p.note.clone(),
        })
        .collect();
    serde_json::to_string(&stored)
        .map_err(|e| Error::Internal(format!("cannot write a declaration: {e}")))
}

fn problems_from_json(text: &str) -> Result<Vec<DeclaredProblem>> {
    let stored: Vec<StoredProblem> = serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("a stored declaration no longer parses: {e}")))?;
    stored
        .into_iter()
        .map(|p| {
            Ok(DeclaredProblem {
                code: RuleCode::from_code(&p.code)
                    .ok_or_else(|| Error::Internal("a stored rule code is unknown".into()))?,
                subject: p.subject,
                period: p.period,
                note: p.note,
            })
        })
        .collect()
}

/// Finding keys as a closing report keeps them: `[code, institution, subject, period]`.
fn keys_json(keys: &[FindingKey]) -> Result<String> {
    let rows: Vec<[&str; 4]> = keys
        .iter()
        .map(|k| {
            [
                k.code.code(),
                k.institution.as_str(),
                k.subject.as_str(),
                k.period.as_str(),
            ]
        })
        .collect();
    serde_json::to_string(&rows)
        .map_err(|e| Error::Internal(format!("cannot write a closing report: {e}")))
}

fn keys_from_json(text: &str) -> Result<Vec<FindingKey>> {
    let rows: Vec<[String; 4]> = serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("a closing report no longer parses: {e}")))?;
    rows.into_iter()
        .map(|[code, institution, subject, period]| {
            Ok(FindingKey {
                code: RuleCode::from_code(&code)
                    .ok_or_else(|| Error::Internal("a stored rule code is unknown".into()))?,
                institution,
                subject,
                period,
            })
        })
        .collect()
}

fn codes_text(codes: &[RuleCode]) -> String {
    codes.iter().map(|c| c.code()).collect::<Vec<_>>().join(",")
}

fn period(row: &AnyRow, name: &str) -> Result<Period> {
    Period::parse(&q::text(row, name)?)
        .map_err(|_| Error::Internal(format!("a stored {name} is not a month")))
}

fn decode_campaign(row: &AnyRow) -> Result<Campaign> {
    let codes = q::text(row, "codes")?
        .split(',')
        .map(|c| {
            RuleCode::from_code(c)
                .ok_or_else(|| Error::Internal("a stored rule code is unknown".into()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Campaign {
        id: q::text(row, "id")?,
        jurisdiction: q::text(row, "jurisdiction")?,
        title: q::text(row, "title")?,
        codes,
        period: CampaignPeriod::new(period(row, "period_from")?, period(row, "period_to")?)
            .map_err(Error::Internal)?,
        deadline: q::date(row, "deadline")?,
        state: q::code(row, "state")?,
        opened_by: q::text(row, "opened_by")?,
        opened_at: column(row, "opened_at")?,
        closed_at: column(row, "closed_at")?,
        closing_note: q::opt_text(row, "closing_note")?,
        institutions: u64::try_from(column::<i64>(row, "institutions")?).unwrap_or_default(),
    })
}

fn decode_declaration(row: &AnyRow) -> Result<Declaration> {
    Ok(Declaration {
        campaign_id: q::text(row, "campaign_id")?,
        institution: q::text(row, "institution_uscc")?,
        problems: problems_from_json(&q::text(row, "problems")?)?,
        nothing_found: column::<i64>(row, "nothing_found")? != 0,
        signed_by: q::text(row, "signed_by")?,
        declared_by: q::text(row, "declared_by")?,
        declared_at: column(row, "declared_at")?,
        late: column::<i64>(row, "late")? != 0,
    })
}

fn finding_key(row: &AnyRow) -> Result<FindingKey> {
    Ok(FindingKey {
        code: q::code(row, "code")?,
        institution: q::text(row, "institution_uscc")?,
        subject: q::text(row, "subject")?,
        period: q::text(row, "period")?,
    })
}

/// The lock that keeps one institution's declaration and the escalation of its absence apart.
fn declaration_lock(campaign_id: &str, institution: &str) -> String {
    format!("declaration:{campaign_id}:{institution}")
}

/// A declaration's id as the feed and the idempotency keys name it.
pub fn declaration_id(campaign_id: &str, institution: &str) -> String {
    format!("{campaign_id}|{institution}")
}

const CAMPAIGN_COLUMNS: &str = "SELECT c.*, (SELECT COUNT(*) FROM campaign_scope s WHERE s.campaign_id = c.id) AS institutions FROM campaigns c";

impl Store {
    /// Opens a campaign over a jurisdiction the caller oversees, fixing its scope (the active
    /// institutions of the registry, or those named), with a CAMPAIGN_OPENED event that the
    /// agencies of the jurisdiction and of the divisions under it see.
    pub async fn open_campaign(
        &self,
        agency: &Agency,
        new: NewCampaign,
        key: Option<&RequestKey>,
    ) -> Result<Campaign> {
        oversee(agency, new.jurisdiction.as_str())?;
        if new.title.trim().is_empty() {
            return Err(Error::invalid("title", "says what the campaign is"));
        }
        if new.codes.is_empty() {
            return Err(Error::invalid("codes", "names at least one rule"));
        }
        if new.deadline < self.checks().clock.today() {
            return Err(Error::invalid("deadline", "is in the past"));
        }
        let locks: Vec<String> = request_lock(agency, Creates::Campaign, key)
            .into_iter()
            .collect();
        let mut tx = self.begin_locked(&locks).await?;
        if let Some(first) = self.recall(&mut tx, agency, Creates::Campaign, key).await? {
            drop(tx);
            return self
                .campaign(&first)
                .await?
                .ok_or_else(|| Error::Internal("a campaign vanished".into()));
        }
        let mut scope: Vec<(String, String)> = Vec::new();
        if new.institutions.is_empty() {
            let rows = sqlx::query_with(
                "SELECT uscc, jurisdiction FROM institutions WHERE jurisdiction LIKE $1 AND status = 'ACTIVE' ORDER BY uscc",
                bind_all(vec![Value::Text(format!("{}%", new.jurisdiction.prefix()))])?,
            )
            .fetch_all(&mut *tx)
            .await?;
            for row in &rows {
                scope.push((q::text(row, "uscc")?, q::text(row, "jurisdiction")?));
            }
        } else {
            for uscc in &new.institutions {
                let row = sqlx::query_with(
                    "SELECT jurisdiction FROM institutions WHERE uscc = $1",
                    bind_all(vec![Value::from(uscc.as_str())])?,
                )
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    Error::invalid(
                        "institution_usccs",
                        format!("{uscc} is not in the registry"),
                    )
                })?;
                let jurisdiction = q::text(&row, "jurisdiction")?;
                if !jurisdiction.starts_with(new.jurisdiction.prefix()) {
                    return Err(Error::invalid(
                        "institution_usccs",
                        format!(
                            "{uscc} lies in {jurisdiction}, outside {}",
                            new.jurisdiction
                        ),
                    ));
                }
                scope.push((uscc.to_string(), jurisdiction));
            }
            scope.sort();
            scope.dedup();
        }
        if scope.is_empty() {
            return Err(Error::invalid(
                "jurisdiction",
                "holds no active institution in the registry",
            ));
        }
        let id = new_id("CP");
        let now = self.now();
        sqlx::query_with(
            "INSERT INTO campaigns (id, jurisdiction, title, codes, period_from, period_to, deadline, state, opened_by, opened_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'OPEN', $8, $9)",
            bind_all(vec![
                Value::from(id.as_str()),
                Value::from(new.jurisdiction.as_str()),
                Value::from(new.title.trim()),
                Value::Text(codes_text(&new.codes)),
                Value::Text(new.period.from.to_string()),
                Value::Text(new.period.to.to_string()),
                Value::Text(new.deadline.to_string()),
                Value::Text(agency.id()),
                Value::Int(now),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        let rows: Vec<[Value; 4]> = scope
            .iter()
            .map(|(uscc, jurisdiction)| {
                [
                    Value::from(id.as_str()),
                    Value::from(uscc.as_str()),
                    Value::from(jurisdiction.as_str()),
                    Value::Int(0),
                ]
            })
            .collect();
        tx.insert_rows(
            "INSERT INTO campaign_scope (campaign_id, institution_uscc, jurisdiction, escalation_level)",
            "",
            rows,
        )
        .await?;
        let follow_up = FollowUp {
            matter: MatterKind::Campaign.code().to_owned(),
            id: id.clone(),
            state: CampaignState::Open.code().to_owned(),
            institution: String::new(),
            escalation_level: 0,
            transfer_id: String::new(),
            text: format!(
                "专项检查「{}」: {} 家单位须于 {} 前报送自查情况 / special inspection: {} institutions to declare by {}",
                new.title.trim(),
                scope.len(),
                new.deadline,
                scope.len(),
                new.deadline
            ),
            history: Vec::new(),
        };
        append_follow_up(
            self,
            &mut tx,
            FeedEventType::CampaignOpened,
            (
                new.jurisdiction.as_str(),
                &reach_text(CAMPAIGN_REACH),
                new.jurisdiction.prefix(),
            ),
            &follow_up,
        )
        .await?;
        self.remember(&mut tx, agency, Creates::Campaign, key, &id)
            .await?;
        tx.commit().await?;
        self.feed_changed();
        self.campaign(&id)
            .await?
            .ok_or_else(|| Error::Internal("a campaign vanished".into()))
    }

    /// A campaign.
    pub async fn campaign(&self, id: &str) -> Result<Option<Campaign>> {
        sqlx::query_with(
            sqlx::AssertSqlSafe(format!("{CAMPAIGN_COLUMNS} WHERE c.id = $1")),
            bind_all(vec![Value::from(id)])?,
        )
        .fetch_optional(self.readers())
        .await?
        .as_ref()
        .map(decode_campaign)
        .transpose()
    }

    /// A page of the campaigns of a jurisdiction subtree, by id (the order they were opened).
    pub async fn campaigns_page(
        &self,
        jurisdiction: &Jurisdiction,
        state: Option<CampaignState>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<Campaign>> {
        sqlx::query_with(
            sqlx::AssertSqlSafe(format!(
                "{CAMPAIGN_COLUMNS} WHERE c.jurisdiction LIKE $1 AND ($2 = '' OR c.state = $2) AND c.id > $3 ORDER BY c.id LIMIT $4"
            )),
            bind_all(vec![
                Value::Text(format!("{}%", jurisdiction.prefix())),
                Value::from(state.map(Coded::code).unwrap_or_default()),
                Value::from(after),
                Value::Int(i64::from(limit)),
            ])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(decode_campaign)
        .collect()
    }

    /// Takes an institution's declaration, sent by an agency whose jurisdiction covers it. One
    /// per institution and campaign, never edited; after the deadline it is taken and marked late,
    /// after the close it is refused.
    pub async fn declare(
        &self,
        agency: &Agency,
        new: NewDeclaration,
        key: Option<&RequestKey>,
    ) -> Result<Declaration> {
        let campaign = self
            .campaign(&new.campaign_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no campaign `{}`", new.campaign_id)))?;
        let institution = new.institution.as_str();
        let jurisdiction = sqlx::query_with(
            "SELECT jurisdiction FROM campaign_scope WHERE campaign_id = $1 AND institution_uscc = $2",
            bind_all(vec![Value::from(campaign.id.as_str()), Value::from(institution)])?,
        )
        .fetch_optional(self.readers())
        .await?
        .map(|row| q::text(&row, "jurisdiction"))
        .transpose()?
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{institution} is not in the scope of campaign `{}`",
                campaign.id
            ))
        })?;
        // The responsible agency: one whose jurisdiction covers the institution.
        oversee(agency, &jurisdiction)?;
        if new.problems.is_empty() != new.nothing_found {
            return Err(Error::invalid(
                "nothing_found",
                "is set exactly when no problem is declared",
            ));
        }
        for (i, problem) in new.problems.iter().enumerate() {
            campaign::check_problem(problem, &campaign.codes, &campaign.period).map_err(
                |(field, reason)| Error::invalid(format!("problems[{i}].{field}"), reason),
            )?;
        }
        let id = declaration_id(&campaign.id, institution);
        let locks: Vec<String> = request_lock(agency, Creates::Declaration, key)
            .into_iter()
            .chain([declaration_lock(&campaign.id, institution)])
            .collect();
        let mut tx = self.begin_locked(&locks).await?;
        if self
            .recall(&mut tx, agency, Creates::Declaration, key)
            .await?
            .is_some()
        {
            drop(tx);
            return self
                .declaration(&campaign.id, institution)
                .await?
                .ok_or_else(|| Error::Internal("a declaration vanished".into()));
        }
        let state: CampaignState = sqlx::query_with(
            "SELECT state FROM campaigns WHERE id = $1",
            bind_all(vec![Value::from(campaign.id.as_str())])?,
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::from)
        .and_then(|row| q::code(&row, "state"))?;
        if state == CampaignState::Closed {
            return Err(Error::FailedPrecondition(format!(
                "campaign `{}` is closed",
                campaign.id
            )));
        }
        let earlier = sqlx::query_with(
            "SELECT declared_by FROM campaign_declarations WHERE campaign_id = $1 AND institution_uscc = $2",
            bind_all(vec![Value::from(campaign.id.as_str()), Value::from(institution)])?,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = earlier {
            return Err(Error::FailedPrecondition(format!(
                "{institution} was already declared for by {}; a declaration is never edited",
                q::text(&row, "declared_by")?
            )));
        }
        let late = campaign::is_late(campaign.deadline, self.checks().clock.today());
        sqlx::query_with(
            "INSERT INTO campaign_declarations (campaign_id, institution_uscc, problems, nothing_found, signed_by, declared_by, declared_at, late) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            bind_all(vec![
                Value::from(campaign.id.as_str()),
                Value::from(institution),
                Value::Text(problems_json(&new.problems)?),
                Value::from(new.nothing_found),
                Value::from(new.signed_by.trim()),
                Value::Text(agency.id()),
                Value::Int(self.now()),
                Value::from(late),
            ])?,
        )
        .execute(&mut *tx)
        .await?;
        self.remember(&mut tx, agency, Creates::Declaration, key, &id)
            .await?;
        tx.commit().await?;
        self.declaration(&campaign.id, institution)
            .await?
            .ok_or_else(|| Error::Internal("a declaration vanished".into()))
    }

    /// An institution's declaration in a campaign.
    pub async fn declaration(
        &self,
        campaign_id: &str,
        institution: &str,
    ) -> Result<Option<Declaration>> {
        Ok(self
            .declarations(campaign_id, Institutions::One(institution))
            .await?
            .pop())
    }

    /// A campaign's declarations, by institution.
    pub async fn declarations(
        &self,
        campaign_id: &str,
        which: Institutions<'_>,
    ) -> Result<Vec<Declaration>> {
        let mut values = vec![Value::from(campaign_id)];
        let mut sql = String::from("SELECT * FROM campaign_declarations WHERE campaign_id = $1");
        sql.push_str(&which.sql("institution_uscc", &mut values));
        sql.push_str(" ORDER BY institution_uscc");
        if let Institutions::Page(_, limit) = which {
            values.push(Value::Int(i64::from(limit)));
            sql.push_str(&format!(" LIMIT ${}", values.len()));
        }
        sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(self.readers())
            .await?
            .iter()
            .map(decode_declaration)
            .collect()
    }

    /// The campaign's comparison for some of its institutions, by USCC: as of today while it is
    /// open, as it stood at the close once closed.
    pub async fn campaign_lines(
        &self,
        campaign: &Campaign,
        which: Institutions<'_>,
    ) -> Result<Vec<ReportLine>> {
        let mut values = vec![Value::from(campaign.id.as_str())];
        let mut sql = String::from(
            "SELECT institution_uscc, jurisdiction, escalation_level FROM campaign_scope WHERE campaign_id = $1",
        );
        sql.push_str(&which.sql("institution_uscc", &mut values));
        sql.push_str(" ORDER BY institution_uscc");
        if let Institutions::Page(_, limit) = which {
            values.push(Value::Int(i64::from(limit)));
            sql.push_str(&format!(" LIMIT ${}", values.len()));
        }
        let scope_rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(self.readers())
            .await?;
        let mut scope = Vec::with_capacity(scope_rows.len());
        let mut facts: BTreeMap<String, (String, i64)> = BTreeMap::new();
        for row in &scope_rows {
            let uscc = q::text(row, "institution_uscc")?;
            facts.insert(
                uscc.clone(),
                (
                    q::text(row, "jurisdiction")?,
                    column(row, "escalation_level")?,
                ),
            );
            scope.push(uscc);
        }
        let (Some(first), Some(last)) = (scope.first(), scope.last()) else {
            return Ok(Vec::new());
        };
        // The rest is read over the page's range of USCCs.
        let range = |column: &str, values: &mut Vec<Value>| {
            values.push(Value::from(first.as_str()));
            values.push(Value::from(last.as_str()));
            format!(
                " AND {column} >= ${} AND {column} <= ${}",
                values.len() - 1,
                values.len()
            )
        };
        let mut values = vec![Value::from(campaign.id.as_str())];
        let mut sql = String::from("SELECT * FROM campaign_declarations WHERE campaign_id = $1");
        sql.push_str(&range("institution_uscc", &mut values));
        let declarations: BTreeMap<String, Declared> =
            sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
                .fetch_all(self.readers())
                .await?
                .iter()
                .map(|row| {
                    let declaration = decode_declaration(row)?;
                    Ok((
                        declaration.institution,
                        Declared {
                            problems: declaration.problems,
                            late: declaration.late,
                        },
                    ))
                })
                .collect::<Result<_>>()?;
        let (findings, today) = match campaign.state {
            CampaignState::Open => {
                let mut values = vec![Value::from(campaign.id.as_str())];
                let mut sql = String::from(
                    "SELECT f.code, f.institution_uscc, f.subject, f.period FROM campaign_scope s \
                     JOIN findings f ON f.institution_uscc = s.institution_uscc \
                     WHERE s.campaign_id = $1 AND f.state = 'OPEN'",
                );
                sql.push_str(&range("s.institution_uscc", &mut values));
                let keys = sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
                    .fetch_all(self.readers())
                    .await?
                    .iter()
                    .map(finding_key)
                    .collect::<Result<Vec<_>>>()?;
                (keys, self.checks().clock.today())
            }
            CampaignState::Closed => {
                let row = sqlx::query_with(
                    "SELECT closing_report FROM campaigns WHERE id = $1",
                    bind_all(vec![Value::from(campaign.id.as_str())])?,
                )
                .fetch_one(self.readers())
                .await?;
                let keys =
                    keys_from_json(&q::opt_text(&row, "closing_report")?.unwrap_or_default())?
                        .into_iter()
                        .filter(|k| facts.contains_key(&k.institution))
                        .collect();
                (keys, day_of(campaign.closed_at.unwrap_or_default()))
            }
        };
        let mut values = vec![Value::from(campaign.id.as_str())];
        let mut sql = String::from("SELECT * FROM campaign_items WHERE campaign_id = $1");
        sql.push_str(&range("institution_uscc", &mut values));
        sql.push_str(" ORDER BY item_id");
        let mut items: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in sqlx::query_with(sqlx::AssertSqlSafe(sql), bind_all(values)?)
            .fetch_all(self.readers())
            .await?
        {
            items
                .entry(q::text(&row, "institution_uscc")?)
                .or_default()
                .push(q::text(&row, "item_id")?);
        }
        let comparisons = campaign::compare_all(
            &scope,
            &declarations,
            &findings,
            &campaign.codes,
            &campaign.period,
            campaign.deadline,
            today,
        );
        Ok(comparisons
            .into_iter()
            .map(|comparison| {
                let (jurisdiction, escalation_level) = facts
                    .get(&comparison.institution)
                    .cloned()
                    .unwrap_or_default();
                ReportLine {
                    jurisdiction,
                    escalation_level,
                    items: items.remove(&comparison.institution).unwrap_or_default(),
                    comparison,
                }
            })
            .collect())
    }

    /// A campaign's counts over its whole scope.
    pub async fn campaign_progress(&self, campaign: Campaign) -> Result<CampaignProgress> {
        let lines = self.campaign_lines(&campaign, Institutions::All).await?;
        let comparisons: Vec<Comparison> = lines.iter().map(|l| l.comparison.clone()).collect();
        let items_opened = lines.iter().map(|l| l.items.len() as u64).sum();
        Ok(CampaignProgress {
            progress: campaign::progress(&comparisons),
            items_opened,
            campaign,
        })
    }

    /// Opens, in one step, a ledger item for every problem the campaign's declarations left out
    /// (瞒报), through the ledger's own opening (`ledger::insert_item`): one transaction under the
    /// departments' locks. A finding that already has an item open is linked to it, not given a
    /// second; a problem the campaign has an item for is skipped, so a resend opens nothing.
    /// Returns every item of the campaign and how many this call opened.
    pub async fn open_undeclared_items(
        &self,
        agency: &Agency,
        campaign_id: &str,
        due_on: NaiveDate,
    ) -> Result<(Vec<String>, u32)> {
        let campaign = self
            .campaign(campaign_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no campaign `{campaign_id}`")))?;
        oversee(agency, &campaign.jurisdiction)?;
        let lines = self.campaign_lines(&campaign, Institutions::All).await?;
        let mut undeclared: Vec<(String, FindingKey, String)> = Vec::new();
        for line in &lines {
            for key in &line.comparison.undeclared {
                // The finding's own explanation names the problem in the item's title.
                let Some(stored) = self.finding(key).await? else {
                    continue;
                };
                undeclared.push((
                    line.jurisdiction.clone(),
                    key.clone(),
                    campaign::undeclared_item_title(
                        &campaign.title,
                        &stored.finding.explanation_zh,
                    ),
                ));
            }
        }
        let mut locks: Vec<String> = undeclared
            .iter()
            .map(|(_, key, _)| format!("institution:{}", key.institution))
            .chain([format!("campaign:{campaign_id}")])
            .collect();
        locks.sort();
        locks.dedup();
        let mut tx = self.begin_locked(&locks).await?;
        let now = self.now();
        let mut opened = 0;
        for (jurisdiction, key, title) in undeclared {
            let linked = sqlx::query_with(
                "SELECT item_id FROM campaign_items WHERE campaign_id = $1 AND finding_code = $2 \
                 AND institution_uscc = $3 AND finding_subject = $4 AND finding_period = $5",
                bind_all(vec![
                    Value::from(campaign_id),
                    Value::from(key.code.code()),
                    Value::from(key.institution.as_str()),
                    Value::from(key.subject.as_str()),
                    Value::from(key.period.as_str()),
                ])?,
            )
            .fetch_optional(&mut *tx)
            .await?;
            if linked.is_some() {
                continue;
            }
            let item_id = match open_item_of(&mut tx, &key).await? {
                Some(open) => open,
                None => {
                    let id = new_id("LI");
                    let opening = Opening {
                        jurisdiction: &jurisdiction,
                        department: &key.institution,
                        title,
                        due_on,
                        finding: Some(&key),
                    };
                    insert_item(&mut tx, agency, &id, now, opening).await?;
                    opened += 1;
                    id
                }
            };
            sqlx::query_with(
                "INSERT INTO campaign_items (campaign_id, finding_code, institution_uscc, finding_subject, finding_period, item_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                bind_all(vec![
                    Value::from(campaign_id),
                    Value::from(key.code.code()),
                    Value::from(key.institution.as_str()),
                    Value::from(key.subject.as_str()),
                    Value::from(key.period.as_str()),
                    Value::from(item_id.as_str()),
                ])?,
            )
            .execute(&mut *tx)
            .await?;
        }
        let items = sqlx::query_with(
            "SELECT item_id FROM campaign_items WHERE campaign_id = $1 ORDER BY item_id",
            bind_all(vec![Value::from(campaign_id)])?,
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| q::text(row, "item_id"))
        .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok((items, opened))
    }

    /// Closes a campaign, keeping the findings it compared against so that its closing report
    /// no longer moves. Declarations are refused after, and missing ones escalate no further.
    pub async fn close_campaign(
        &self,
        agency: &Agency,
        campaign_id: &str,
        note: &str,
    ) -> Result<Campaign> {
        let campaign = self
            .campaign(campaign_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no campaign `{campaign_id}`")))?;
        oversee(agency, &campaign.jurisdiction)?;
        if campaign.state == CampaignState::Closed {
            return Err(Error::FailedPrecondition(format!(
                "campaign `{campaign_id}` is already closed"
            )));
        }
        let shown: Vec<FindingKey> = self
            .campaign_lines(&campaign, Institutions::All)
            .await?
            .into_iter()
            .flat_map(|line| line.comparison.shown)
            .collect();
        let mut tx = self
            .begin_locked(&[format!("campaign:{campaign_id}")])
            .await?;
        let closed = sqlx::query_with(
            "UPDATE campaigns SET state = 'CLOSED', closed_by = $2, closed_at = $3, closing_note = $4, closing_report = $5 \
             WHERE id = $1 AND state = 'OPEN'",
            bind_all(vec![
                Value::from(campaign_id),
                Value::Text(agency.id()),
                Value::Int(self.now()),
                Value::from(note),
                Value::Text(keys_json(&shown)?),
            ])?,
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if closed == 0 {
            return Err(Error::FailedPrecondition(format!(
                "campaign `{campaign_id}` was closed meanwhile"
            )));
        }
        tx.commit().await?;
        self.campaign(campaign_id)
            .await?
            .ok_or_else(|| Error::Internal("a campaign vanished".into()))
    }

    /// Escalates the declarations missing past their campaign's deadline as of `today`, one
    /// DECLARATION_MISSING event per step of the ledger's ladder, each claimed by a conditional
    /// update (so replicas never repeat one) under the declaration's lock (so a declaration that
    /// arrives meanwhile stops it). Returns the events.
    pub async fn escalate_declarations(&self, today: NaiveDate) -> Result<Vec<i64>> {
        let due = sqlx::query_with(
            "SELECT s.campaign_id, s.institution_uscc, s.jurisdiction, s.escalation_level, c.deadline, c.title \
             FROM campaign_scope s JOIN campaigns c ON c.id = s.campaign_id \
             WHERE c.state = 'OPEN' AND c.deadline < $1 AND s.escalation_level < 3 \
             AND NOT EXISTS (SELECT 1 FROM campaign_declarations d \
                 WHERE d.campaign_id = s.campaign_id AND d.institution_uscc = s.institution_uscc) \
             ORDER BY s.campaign_id, s.institution_uscc",
            bind_all(vec![Value::Text(today.to_string())])?,
        )
        .fetch_all(self.readers())
        .await?;
        let mut written = Vec::new();
        for row in &due {
            let campaign_id = q::text(row, "campaign_id")?;
            let institution = q::text(row, "institution_uscc")?;
            let level: i64 = column(row, "escalation_level")?;
            let deadline = q::date(row, "deadline")?;
            let target = overdue_level(deadline, false, today);
            if target <= level {
                continue;
            }
            let mut tx = self
                .begin_locked(&[declaration_lock(&campaign_id, &institution)])
                .await?;
            let claimed = sqlx::query_with(
                "UPDATE campaign_scope SET escalation_level = $3 \
                 WHERE campaign_id = $1 AND institution_uscc = $2 AND escalation_level = $4 \
                 AND NOT EXISTS (SELECT 1 FROM campaign_declarations d \
                     WHERE d.campaign_id = $1 AND d.institution_uscc = $2)",
                bind_all(vec![
                    Value::from(campaign_id.as_str()),
                    Value::from(institution.as_str()),
                    Value::Int(target),
                    Value::Int(level),
                ])?,
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                // Another replica climbed it first, or the declaration came meanwhile.
                tx.rollback().await?;
                continue;
            }
            let title = q::text(row, "title")?;
            let jurisdiction = q::text(row, "jurisdiction")?;
            for step in level + 1..=target {
                let follow_up = FollowUp {
                    matter: MatterKind::Declaration.code().to_owned(),
                    id: declaration_id(&campaign_id, &institution),
                    state: campaign::Standing::Missing.code().to_owned(),
                    institution: institution.clone(),
                    escalation_level: step,
                    transfer_id: String::new(),
                    text: format!(
                        "专项检查「{title}」: {institution} 逾期未报送自查情况(截止 {deadline}) / \
                         no self-inspection declaration by the deadline {deadline}"
                    ),
                    history: Vec::new(),
                };
                written.push(
                    append_follow_up(
                        self,
                        &mut tx,
                        FeedEventType::DeclarationMissing,
                        (&jurisdiction, &reach_text(CAMPAIGN_REACH), ""),
                        &follow_up,
                    )
                    .await?,
                );
            }
            tx.commit().await?;
            self.feed_changed();
        }
        Ok(written)
    }

    /// Everything the supervision division weighs before deciding an application: the
    /// department's open findings, ledger items, penalties, campaigns and earlier applications.
    pub async fn application_review(&self, application: Application) -> Result<ApplicationReview> {
        let department = application.department.clone();
        let uscc = Uscc::parse(&department).map_err(Error::Internal)?;
        let open_findings = self
            .findings(&FindingFilter {
                open: true,
                institution: Some(department.clone()),
                // Most severe first: what the division weighs first.
                order: Some(FindingOrder {
                    column: FindingColumn::Severity,
                    descending: false,
                }),
                limit: REVIEW_FINDINGS,
                ..FindingFilter::default()
            })
            .await?;
        let total = sqlx::query_with(
            "SELECT COUNT(*) AS n FROM findings WHERE institution_uscc = $1 AND state = 'OPEN'",
            bind_all(vec![Value::from(department.as_str())])?,
        )
        .fetch_one(self.readers())
        .await?;
        let open_findings_total = u64::try_from(column::<i64>(&total, "n")?).unwrap_or_default();
        let jurisdiction =
            Jurisdiction::parse(&application.jurisdiction).map_err(Error::Internal)?;
        let items = self.items(&jurisdiction, Some(&department)).await?;
        let penalties = self.penalties(&uscc).await?;
        let campaign_ids = sqlx::query_with(
            "SELECT campaign_id FROM campaign_scope WHERE institution_uscc = $1 ORDER BY campaign_id",
            bind_all(vec![Value::from(department.as_str())])?,
        )
        .fetch_all(self.readers())
        .await?
        .iter()
        .map(|row| q::text(row, "campaign_id"))
        .collect::<Result<Vec<_>>>()?;
        let mut campaigns = Vec::with_capacity(campaign_ids.len());
        for id in campaign_ids {
            let Some(campaign) = self.campaign(&id).await? else {
                continue;
            };
            let Some(line) = self
                .campaign_lines(&campaign, Institutions::One(&department))
                .await?
                .pop()
            else {
                continue;
            };
            let declaration = self.declaration(&id, &department).await?;
            campaigns.push((campaign, line, declaration));
        }
        // Applications ids are UUIDv7: an earlier id is an earlier filing.
        let filter = ApplicationFilter {
            department: Some(department.clone()),
            ..ApplicationFilter::default()
        };
        let mut earlier = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .applications_page(&jurisdiction, &filter, &after, 1_000)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            let full = page.len() == 1_000;
            earlier.extend(page.into_iter().filter(|a| a.id < application.id));
            if !full || after >= application.id {
                break;
            }
        }
        Ok(ApplicationReview {
            application,
            open_findings,
            open_findings_total,
            items,
            penalties,
            campaigns,
            earlier,
        })
    }
}
