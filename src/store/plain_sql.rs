//! The core rules written a second time, as plain SQL over the same tables: an independent check of
//! the rules engine (both must find exactly the same findings) and the baseline the benchmark
//! measures a full re-check against. Only keys are computed here, not evidence or explanations.
//!
//! Dates are ISO text, so a month's bounds compare as strings: any date of `2024-02` is
//! `<= '2024-02-31'`, and any later date is `> '2024-02-31'`.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::codec::column;
use super::{Store, Value, bind_all};
use crate::domain::Coded;
use crate::domain::findings::{FindingKey, RuleCode};
use crate::error::Result;

/// The rules covered here.
pub const CODES: [RuleCode; 6] = [
    RuleCode::OverQuota,
    RuleCode::OverLeaderPosts,
    RuleCode::DuplicateEnrollment,
    RuleCode::PaidNotOnRoll,
    RuleCode::DoublePay,
    RuleCode::FundedOverQuota,
];

/// Every rule of docs/RULES.md about institutions, the report included: [`CODES`] and these.
/// (The freshness rules, about agencies' data, are not rules over the records.)
pub const MORE_CODES: [RuleCode; 11] = [
    RuleCode::QuotaFull,
    RuleCode::LeaderAboveGrade,
    RuleCode::MixedCategory,
    RuleCode::HireWithoutApproval,
    RuleCode::OverPlan,
    RuleCode::ReserveShortfall,
    RuleCode::PaidAfterExit,
    RuleCode::PayUnitMismatch,
    RuleCode::SelfFundedBudgetPay,
    RuleCode::UnregisteredInstitution,
    RuleCode::RegionalBalance,
];

/// Of [`MORE_CODES`], those whose plain SQL is not the rule exactly: HIRE_WITHOUT_APPROVAL's
/// allocation (each entry draws on the matching approval that expires first) is approximated by
/// numbering the entries of an approval number against all its places; REGIONAL_BALANCE is a
/// report (its rows are counted as keys: jurisdiction, category).
pub const APPROXIMATE: [RuleCode; 2] = [RuleCode::HireWithoutApproval, RuleCode::RegionalBalance];

/// `$1` the date, `$2` the QUOTA_FULL threshold in thousandths.
const QUOTA_FULL: &str = "
WITH active AS (
    SELECT institution_uscc, category, COUNT(DISTINCT resident_id) AS people
    FROM person_spells
    WHERE status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') AND valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1)
    GROUP BY institution_uscc, category
), in_force AS (
    SELECT institution_uscc, category, approved_count,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM quotas
    WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $1)
)
SELECT a.institution_uscc AS institution, a.category AS subject, '' AS period
FROM active a
LEFT JOIN in_force q ON q.institution_uscc = a.institution_uscc AND q.category = a.category AND q.latest = 1
WHERE (COALESCE(q.approved_count, 0) > 0 AND a.people * 1000 >= $2 * q.approved_count)
   OR (COALESCE(q.approved_count, 0) = 0 AND a.people > 0)";

/// The default ceilings of docs/RULES.md, ranks numbered from the highest.
const LEADER_ABOVE_GRADE: &str = "
SELECT DISTINCT t.institution_uscc AS institution, t.resident_id AS subject, '' AS period
FROM leader_terms t JOIN institutions i ON i.uscc = t.institution_uscc
WHERE t.valid_from <= $1 AND (t.valid_to IS NULL OR t.valid_to > $1)
  AND (CASE t.rank WHEN 'BUREAU_PRINCIPAL' THEN 1 WHEN 'BUREAU_DEPUTY' THEN 2
        WHEN 'DIVISION_PRINCIPAL' THEN 3 WHEN 'DIVISION_DEPUTY' THEN 4
        WHEN 'SECTION_PRINCIPAL' THEN 5 WHEN 'SECTION_DEPUTY' THEN 6
        WHEN 'CLERK' THEN 7 WHEN 'OFFICER' THEN 8 ELSE 9 END)
    < (CASE i.grade WHEN 'BUREAU_PRINCIPAL' THEN 1 WHEN 'BUREAU_DEPUTY' THEN 2
        WHEN 'DIVISION_PRINCIPAL' THEN 3 WHEN 'DIVISION_DEPUTY' THEN 4
        WHEN 'SECTION_PRINCIPAL' THEN 5 WHEN 'SECTION_DEPUTY' THEN 6 ELSE 7 END)";

const MIXED_CATEGORY: &str = "
SELECT DISTINCT s.institution_uscc AS institution, s.resident_id AS subject, '' AS period
FROM person_spells s JOIN institutions i ON i.uscc = s.institution_uscc
WHERE s.status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') AND s.valid_from <= $1 AND (s.valid_to IS NULL OR s.valid_to > $1)
  AND ((s.category = 'PUBLIC_INSTITUTION' AND i.kind = 'ORGAN')
    OR (s.category = 'POLITICAL_LEGAL' AND i.political_legal = 0))";

/// Entries: hires, and transfers where they arrive.
const ENTRIES: &str = "
WITH e AS (
    SELECT institution_uscc AS institution, category, approval_number, effective_on, resident_id,
           accepted_at, agency_id || '/' || record_id AS id, channel
    FROM personnel_events WHERE corrected_by IS NULL AND event_type = 'HIRE' AND category IS NOT NULL
    UNION ALL
    SELECT target_uscc AS institution, category, approval_number, effective_on, resident_id,
           accepted_at, agency_id || '/' || record_id AS id, channel
    FROM personnel_events WHERE corrected_by IS NULL AND event_type = 'TRANSFER' AND category IS NOT NULL
      AND target_uscc IS NOT NULL
)";

const HIRE_WITHOUT_APPROVAL: &str = "
, ranked AS (
    SELECT e.*, ROW_NUMBER() OVER (PARTITION BY institution, category, approval_number
                                   ORDER BY effective_on, accepted_at, id) AS nth
    FROM e
), places AS (
    SELECT institution_uscc, category, approval_number, SUM(approved_entries) AS places
    FROM hiring_approvals GROUP BY institution_uscc, category, approval_number
)
SELECT DISTINCT r.institution AS institution, r.resident_id AS subject, r.effective_on AS period
FROM ranked r
LEFT JOIN places a ON a.institution_uscc = r.institution AND a.category = r.category AND a.approval_number = r.approval_number
WHERE r.approval_number IS NULL OR a.places IS NULL OR r.nth > a.places
   OR NOT EXISTS (SELECT 1 FROM hiring_approvals h
                  WHERE h.institution_uscc = r.institution AND h.category = r.category
                    AND h.approval_number = r.approval_number
                    AND h.issued_on <= r.effective_on AND r.effective_on <= h.valid_until)";

const OVER_PLAN: &str = "
, taken AS (
    SELECT institution, category, SUBSTR(effective_on, 1, 4) AS year, COUNT(*) AS n
    FROM e GROUP BY institution, category, SUBSTR(effective_on, 1, 4)
), plans AS (
    SELECT institution_uscc, category, year, approved_count,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category, year, channel
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM staffing_plans
), planned AS (
    SELECT institution_uscc, category, year, SUM(approved_count) AS plan
    FROM plans WHERE latest = 1 GROUP BY institution_uscc, category, year
)
SELECT t.institution AS institution, t.category AS subject, t.year AS period
FROM taken t
LEFT JOIN planned p ON p.institution_uscc = t.institution AND p.category = t.category
                   AND p.year = CAST(t.year AS BIGINT)
WHERE t.n > COALESCE(p.plan, 0)";

/// The other channels took more than their plans while the policy-placement plan (the reserve)
/// has places left unfilled.
const RESERVE_SHORTFALL: &str = "
, taken AS (
    SELECT institution, category, SUBSTR(effective_on, 1, 4) AS year,
           SUM(CASE WHEN channel = 'POLICY_PLACEMENT' THEN 1 ELSE 0 END) AS placed,
           SUM(CASE WHEN channel = 'POLICY_PLACEMENT' THEN 0 ELSE 1 END) AS others
    FROM e GROUP BY institution, category, SUBSTR(effective_on, 1, 4)
), plans AS (
    SELECT institution_uscc, category, year, channel, approved_count,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category, year, channel
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM staffing_plans
), planned AS (
    SELECT institution_uscc, category, year,
           SUM(CASE WHEN channel = 'POLICY_PLACEMENT' THEN approved_count ELSE 0 END) AS reserve,
           SUM(CASE WHEN channel = 'POLICY_PLACEMENT' THEN 0 ELSE approved_count END) AS others_plan
    FROM plans WHERE latest = 1 GROUP BY institution_uscc, category, year
)
SELECT t.institution AS institution, t.category AS subject, t.year AS period
FROM taken t
JOIN planned p ON p.institution_uscc = t.institution AND p.category = t.category
              AND p.year = CAST(t.year AS BIGINT)
WHERE p.reserve > t.placed AND t.others > p.others_plan";

const PAID_AFTER_EXIT: &str = "
SELECT DISTINCT p.institution_uscc AS institution, p.resident_id AS subject, p.period AS period
FROM payroll_lines p
WHERE p.reverses IS NULL AND p.reversed_by IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM person_spells s
      WHERE s.resident_id = p.resident_id AND s.status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE')
        AND s.valid_from <= p.period || '-31' AND (s.valid_to IS NULL OR s.valid_to > p.period || '-01'))
  AND EXISTS (
      SELECT 1 FROM person_spells s
      WHERE s.resident_id = p.resident_id AND s.status IN ('RETIRED', 'DEPARTED', 'DECEASED')
        AND s.valid_from <= p.period || '-01')";

const PAY_UNIT_MISMATCH: &str = "
SELECT DISTINCT p.institution_uscc AS institution, p.resident_id AS subject, p.period AS period
FROM payroll_lines p
WHERE p.reverses IS NULL AND p.reversed_by IS NULL
  AND EXISTS (
      SELECT 1 FROM person_spells s
      WHERE s.resident_id = p.resident_id AND s.status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE')
        AND s.valid_from <= p.period || '-31' AND (s.valid_to IS NULL OR s.valid_to > p.period || '-01'))
  AND NOT EXISTS (
      SELECT 1 FROM person_spells s
      WHERE s.resident_id = p.resident_id AND s.status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE')
        AND (s.institution_uscc = p.institution_uscc
             OR (s.status = 'SECONDED' AND s.seconded_to = p.institution_uscc))
        AND s.valid_from <= p.period || '-31' AND (s.valid_to IS NULL OR s.valid_to > p.period || '-01'))";

const SELF_FUNDED_BUDGET_PAY: &str = "
WITH latest_funding AS (
    SELECT institution_uscc, category, period, funded_headcount, amount_fen,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category, period
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM fundings
)
SELECT f.institution_uscc AS institution, f.category AS subject, f.period AS period
FROM latest_funding f JOIN institutions i ON i.uscc = f.institution_uscc
WHERE f.latest = 1 AND i.funding_form = 'SELF_FUNDED' AND (f.amount_fen > 0 OR f.funded_headcount > 0)";

const UNREGISTERED_INSTITUTION: &str = "
WITH latest_funding AS (
    SELECT institution_uscc, period, funded_headcount, amount_fen,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category, period
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM fundings
), received AS (
    SELECT institution_uscc, period FROM payroll_lines WHERE reverses IS NULL AND reversed_by IS NULL
    UNION
    SELECT institution_uscc, period FROM latest_funding
    WHERE latest = 1 AND (funded_headcount > 0 OR amount_fen > 0)
)
SELECT DISTINCT s.institution_uscc AS institution, '' AS subject, '' AS period
FROM person_spells s LEFT JOIN institutions i ON i.uscc = s.institution_uscc
WHERE s.status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') AND s.valid_from <= $1 AND (s.valid_to IS NULL OR s.valid_to > $1)
  AND (i.uscc IS NULL OR (i.status <> 'ACTIVE' AND (i.status_since IS NULL OR i.status_since <= $1)))
UNION
SELECT r.institution_uscc AS institution, '' AS subject, r.period AS period
FROM received r LEFT JOIN institutions i ON i.uscc = r.institution_uscc
WHERE i.uscc IS NULL OR (i.status <> 'ACTIVE' AND (i.status_since IS NULL OR i.status_since <= r.period || '-01'))";

const REGIONAL_BALANCE: &str = "
WITH active AS (
    SELECT institution_uscc, category, COUNT(DISTINCT resident_id) AS people
    FROM person_spells
    WHERE status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') AND valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1)
    GROUP BY institution_uscc, category
), in_force AS (
    SELECT institution_uscc, category, approved_count,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM quotas
    WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $1)
), units AS (
    SELECT institution_uscc, category FROM active
    UNION
    SELECT institution_uscc, category FROM in_force WHERE latest = 1
)
SELECT i.jurisdiction AS institution, u.category AS subject, '' AS period,
       CAST(SUM(COALESCE(q.approved_count, 0)) AS BIGINT) AS approved,
       CAST(SUM(COALESCE(a.people, 0)) AS BIGINT) AS people
FROM units u JOIN institutions i ON i.uscc = u.institution_uscc
LEFT JOIN active a ON a.institution_uscc = u.institution_uscc AND a.category = u.category
LEFT JOIN in_force q ON q.institution_uscc = u.institution_uscc AND q.category = u.category AND q.latest = 1
GROUP BY i.jurisdiction, u.category";

const ON_ROLL: &str = "status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE')";

const OVER_QUOTA: &str = "
WITH active AS (
    SELECT institution_uscc, category, COUNT(DISTINCT resident_id) AS people
    FROM person_spells
    WHERE status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') AND valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1)
    GROUP BY institution_uscc, category
), in_force AS (
    SELECT institution_uscc, category, approved_count,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM quotas
    WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $1)
)
SELECT a.institution_uscc AS institution, a.category AS subject, '' AS period
FROM active a
LEFT JOIN in_force q ON q.institution_uscc = a.institution_uscc AND q.category = a.category AND q.latest = 1
WHERE a.people > COALESCE(q.approved_count, 0)";

const OVER_LEADER_POSTS: &str = "
WITH leaders AS (
    SELECT institution_uscc, level, position, COUNT(DISTINCT resident_id) AS people
    FROM leader_terms
    WHERE valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1)
    GROUP BY institution_uscc, level, position
), in_force AS (
    SELECT institution_uscc, level, position, approved_count,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, level, position
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM leader_posts
    WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $1)
)
SELECT l.institution_uscc AS institution, l.level || '/' || l.position AS subject, '' AS period
FROM leaders l
LEFT JOIN in_force p ON p.institution_uscc = l.institution_uscc AND p.level = l.level AND p.position = l.position AND p.latest = 1
WHERE l.people > COALESCE(p.approved_count, 0)";

const DUPLICATE_ENROLLMENT: &str = "
SELECT MIN(institution_uscc) AS institution, resident_id AS subject, '' AS period
FROM person_spells
WHERE status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE') AND valid_from <= $1 AND (valid_to IS NULL OR valid_to > $1)
GROUP BY resident_id
HAVING COUNT(DISTINCT institution_uscc) >= 2";

const PAID_NOT_ON_ROLL: &str = "
SELECT DISTINCT p.institution_uscc AS institution, p.resident_id AS subject, p.period AS period
FROM payroll_lines p
WHERE p.reverses IS NULL AND p.reversed_by IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM person_spells s
      WHERE s.resident_id = p.resident_id AND s.status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE')
        AND s.valid_from <= p.period || '-31' AND (s.valid_to IS NULL OR s.valid_to > p.period || '-01'))
  AND NOT EXISTS (
      SELECT 1 FROM person_spells s
      WHERE s.resident_id = p.resident_id AND s.status IN ('RETIRED', 'DEPARTED', 'DECEASED')
        AND s.valid_from <= p.period || '-01')";

const DOUBLE_PAY: &str = "
SELECT MIN(institution_uscc) AS institution, resident_id AS subject, period AS period
FROM payroll_lines
WHERE reverses IS NULL AND reversed_by IS NULL
GROUP BY resident_id, period
HAVING COUNT(DISTINCT institution_uscc) >= 2";

const FUNDED_OVER_QUOTA: &str = "
WITH latest_funding AS (
    SELECT institution_uscc, category, period, funded_headcount,
           ROW_NUMBER() OVER (PARTITION BY institution_uscc, category, period
                              ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC) AS latest
    FROM fundings
)
SELECT f.institution_uscc AS institution, f.category AS subject, f.period AS period
FROM latest_funding f
WHERE f.latest = 1
  AND f.funded_headcount > (
      SELECT CASE WHEN COALESCE(q.approved_count, 0) < COALESCE(a.people, 0)
                  THEN COALESCE(q.approved_count, 0) ELSE COALESCE(a.people, 0) END
      FROM (SELECT 1 AS one) AS anchor
      LEFT JOIN (
          SELECT approved_count FROM quotas
          WHERE institution_uscc = f.institution_uscc AND category = f.category
            AND effective_from <= f.period || '-31' AND (effective_to IS NULL OR effective_to > f.period || '-31')
          ORDER BY accepted_at DESC, agency_id || '/' || record_id DESC
          LIMIT 1
      ) AS q ON 1 = 1
      LEFT JOIN (
          SELECT COUNT(DISTINCT resident_id) AS people FROM person_spells
          WHERE institution_uscc = f.institution_uscc AND category = f.category AND status IN ('ACTIVE', 'SECONDED', 'ON_LEAVE')
            AND valid_from <= f.period || '-31' AND (valid_to IS NULL OR valid_to > f.period || '-31')
      ) AS a ON 1 = 1)";

impl Store {
    /// The findings of the core rules on `as_of` (payroll and funding: every period), computed by
    /// plain SQL alone.
    pub async fn plain_sql_findings(&self, as_of: NaiveDate) -> Result<BTreeSet<FindingKey>> {
        debug_assert!(ON_ROLL.contains("ON_LEAVE"));
        let mut keys = BTreeSet::new();
        let queries = [
            (RuleCode::OverQuota, OVER_QUOTA),
            (RuleCode::OverLeaderPosts, OVER_LEADER_POSTS),
            (RuleCode::DuplicateEnrollment, DUPLICATE_ENROLLMENT),
            (RuleCode::PaidNotOnRoll, PAID_NOT_ON_ROLL),
            (RuleCode::DoublePay, DOUBLE_PAY),
            (RuleCode::FundedOverQuota, FUNDED_OVER_QUOTA),
        ];
        for (code, sql) in queries {
            let values = if sql.contains("$1") {
                vec![Value::Text(as_of.to_string())]
            } else {
                Vec::new()
            };
            for row in sqlx::query_with(sql, bind_all(values)?)
                .fetch_all(self.readers())
                .await?
            {
                keys.insert(FindingKey {
                    code,
                    institution: column(&row, "institution")?,
                    subject: column(&row, "subject")?,
                    period: column(&row, "period")?,
                });
            }
        }
        debug_assert!(
            keys.iter()
                .all(|k| CODES.contains(&k.code) && !k.code.code().is_empty())
        );
        Ok(keys)
    }
    /// Every rule of docs/RULES.md as plain SQL ([`CODES`] and [`MORE_CODES`]; REGIONAL_BALANCE's
    /// rows as keys), QUOTA_FULL at `quota_full_threshold`: the benchmark's baseline of a full
    /// re-check. [`APPROXIMATE`] says which are not the rule exactly.
    pub async fn plain_sql_all(
        &self,
        as_of: NaiveDate,
        quota_full_threshold: f64,
    ) -> Result<BTreeSet<FindingKey>> {
        let mut keys = self.plain_sql_findings(as_of).await?;
        let hire = format!("{ENTRIES}{HIRE_WITHOUT_APPROVAL}");
        let plan = format!("{ENTRIES}{OVER_PLAN}");
        let reserve = format!("{ENTRIES}{RESERVE_SHORTFALL}");
        let queries: [(RuleCode, &str); 11] = [
            (RuleCode::QuotaFull, QUOTA_FULL),
            (RuleCode::LeaderAboveGrade, LEADER_ABOVE_GRADE),
            (RuleCode::MixedCategory, MIXED_CATEGORY),
            (RuleCode::HireWithoutApproval, &hire),
            (RuleCode::OverPlan, &plan),
            (RuleCode::ReserveShortfall, &reserve),
            (RuleCode::PaidAfterExit, PAID_AFTER_EXIT),
            (RuleCode::PayUnitMismatch, PAY_UNIT_MISMATCH),
            (RuleCode::SelfFundedBudgetPay, SELF_FUNDED_BUDGET_PAY),
            (RuleCode::UnregisteredInstitution, UNREGISTERED_INSTITUTION),
            (RuleCode::RegionalBalance, REGIONAL_BALANCE),
        ];
        // Thousandths, so that the comparison stays in integers on both backends.
        let threshold = (quota_full_threshold * 1000.0).round() as i64;
        for (code, sql) in queries {
            let mut values = Vec::new();
            if sql.contains("$1") {
                values.push(Value::Text(as_of.to_string()));
            }
            if sql.contains("$2") {
                values.push(Value::Int(threshold));
            }
            for row in sqlx::query_with(sqlx::AssertSqlSafe(sql.to_owned()), bind_all(values)?)
                .fetch_all(self.readers())
                .await?
            {
                keys.insert(FindingKey {
                    code,
                    institution: column(&row, "institution")?,
                    subject: column(&row, "subject")?,
                    period: column(&row, "period")?,
                });
            }
        }
        Ok(keys)
    }
}
