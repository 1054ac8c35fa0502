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
}
