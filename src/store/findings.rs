//! Findings as the hub keeps them: the stored row of a finding and its alert, read back and
//! written with a version guard. Below the checks (`reconcile`) and the feed, which both use it.

use super::Value;
use super::query as q;
use super::read::Columns;
use super::write::Writer;
use crate::domain::Coded;
use crate::domain::alerts::{AlertState, EscalationPolicy};
use crate::domain::findings::{Evidence, Finding, FindingKey, Severity};
use crate::error::{Error, Result};

/// A finding as kept by the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFinding {
    /// What the rules said.
    pub finding: Finding,
    /// The institution's jurisdiction (from the registry, or the USCC's division code).
    pub jurisdiction: String,
    /// Whether the data still shows it.
    pub open: bool,
    /// When it was (last) raised, Unix microseconds.
    pub raised_at: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// When the data stopped showing it.
    pub resolved_at: Option<i64>,
    /// Incremented at every change.
    pub version: i64,
    /// Its follow-up.
    pub alert: Alert,
}

/// The follow-up of a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Where it stands.
    pub state: AlertState,
    /// Steps climbed on the escalation ladder (0 to 3).
    pub escalation_level: i64,
    /// Whether it was acknowledged (stops the first clock).
    pub acknowledged: bool,
    /// Acknowledge by then (Unix microseconds), if that clock runs.
    pub acknowledge_by: Option<i64>,
    /// Rectify by then, if that clock runs.
    pub rectify_by: Option<i64>,
}

impl Alert {
    /// A new alert for a finding of `severity` raised at `now`.
    pub fn raised(policy: &EscalationPolicy, severity: Severity, now: i64) -> Alert {
        let deadlines = policy.deadlines(severity, now);
        Alert {
            state: AlertState::Open,
            escalation_level: 0,
            acknowledged: false,
            acknowledge_by: deadlines.acknowledge_by,
            rectify_by: deadlines.rectify_by,
        }
    }
}

/// What a check did to one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Newly shown, or shown again.
    Raised,
    /// Still shown, with other numbers or evidence.
    Updated,
    /// No longer shown.
    Resolved,
}

/// The static name of an evidence kind read back from storage.
pub(crate) fn evidence_kind(kind: &str) -> &'static str {
    const KINDS: [&str; 10] = [
        "institution",
        "quota",
        "leader_post",
        "staffing_plan",
        "hiring_approval",
        "personnel_event",
        "appointment",
        "payroll_line",
        "funding",
        "person",
    ];
    KINDS.into_iter().find(|k| *k == kind).unwrap_or("record")
}

pub(crate) fn decode_finding(row: &impl Columns) -> Result<StoredFinding> {
    let evidence: Vec<(String, String)> = serde_json::from_str(&q::text(row, "evidence")?)
        .map_err(|e| Error::Internal(format!("stored evidence no longer parses: {e}")))?;
    let finding = Finding {
        key: FindingKey {
            code: q::code(row, "code")?,
            institution: q::text(row, "institution_uscc")?,
            subject: q::text(row, "subject")?,
            period: q::text(row, "period")?,
        },
        severity: q::code(row, "severity")?,
        actual: q::int(row, "actual")?,
        limit: q::int(row, "limit_value")?,
        explanation_zh: q::text(row, "explanation_zh")?,
        explanation_en: q::text(row, "explanation_en")?,
        evidence: evidence
            .into_iter()
            .map(|(kind, id)| Evidence {
                kind: evidence_kind(&kind),
                id,
            })
            .collect(),
    };
    let state = q::text(row, "state")?;
    Ok(StoredFinding {
        finding,
        jurisdiction: q::text(row, "jurisdiction")?,
        open: state == "OPEN",
        raised_at: q::int(row, "raised_at")?,
        updated_at: q::int(row, "updated_at")?,
        resolved_at: row.int("resolved_at")?,
        version: q::int(row, "version")?,
        alert: Alert {
            state: q::code(row, "alert_state")?,
            escalation_level: q::int(row, "escalation_level")?,
            acknowledged: q::int(row, "acknowledged")? != 0,
            acknowledge_by: row.int("acknowledge_by")?,
            rectify_by: row.int("rectify_by")?,
        },
    })
}

fn finding_row(stored: &StoredFinding) -> [Value; 21] {
    let f = &stored.finding;
    let evidence: Vec<(&str, &str)> = f.evidence.iter().map(|e| (e.kind, e.id.as_str())).collect();
    [
        Value::from(f.key.code.code()),
        Value::from(f.key.institution.as_str()),
        Value::from(f.key.subject.as_str()),
        Value::from(f.key.period.as_str()),
        Value::from(stored.jurisdiction.as_str()),
        Value::from(f.severity.code()),
        Value::from(if stored.open { "OPEN" } else { "RESOLVED" }),
        Value::Int(f.actual),
        Value::Int(f.limit),
        Value::from(f.explanation_zh.as_str()),
        Value::from(f.explanation_en.as_str()),
        Value::Text(serde_json::to_string(&evidence).expect("pairs of strings serialize")),
        Value::Int(stored.raised_at),
        Value::Int(stored.updated_at),
        Value::OptInt(stored.resolved_at),
        Value::Int(stored.version),
        Value::from(stored.alert.state.code()),
        Value::Int(stored.alert.escalation_level),
        Value::from(stored.alert.acknowledged),
        Value::OptInt(stored.alert.acknowledge_by),
        Value::OptInt(stored.alert.rectify_by),
    ]
}

/// Writes findings (new rows, or new versions of stored ones). Each is the version after the one
/// its writer read (1 for a new finding), and a stored row is changed only from that version: a
/// writer that read a finding before another transaction changed it (an escalation step, say)
/// fails with `Aborted` instead of writing the older alert back over the change.
pub(crate) async fn write_findings<W: Writer>(
    tx: &mut W,
    findings: &[&StoredFinding],
) -> Result<()> {
    let rows: Vec<[Value; 21]> = findings
        .iter()
        .map(|finding| finding_row(finding))
        .collect();
    let written = tx.insert_rows(
        "INSERT INTO findings (code, institution_uscc, subject, period, jurisdiction, severity, state, actual, limit_value, explanation_zh, explanation_en, evidence, raised_at, updated_at, resolved_at, version, alert_state, escalation_level, acknowledged, acknowledge_by, rectify_by)",
        "ON CONFLICT (code, institution_uscc, subject, period) DO UPDATE SET jurisdiction = excluded.jurisdiction, \
         severity = excluded.severity, state = excluded.state, actual = excluded.actual, limit_value = excluded.limit_value, \
         explanation_zh = excluded.explanation_zh, explanation_en = excluded.explanation_en, evidence = excluded.evidence, \
         raised_at = excluded.raised_at, updated_at = excluded.updated_at, resolved_at = excluded.resolved_at, \
         version = excluded.version, alert_state = excluded.alert_state, escalation_level = excluded.escalation_level, \
         acknowledged = excluded.acknowledged, acknowledge_by = excluded.acknowledge_by, rectify_by = excluded.rectify_by \
         WHERE findings.version = excluded.version - 1",
        rows,
    )
    .await?;
    if written != findings.len() as u64 {
        return Err(Error::Aborted(
            "a finding changed while it was being checked; retry".into(),
        ));
    }
    Ok(())
}
