//! Alerts: a finding as the agencies follow it up. Its state moves open → acknowledged →
//! rectifying → closed by hand; the data resolves it by itself. Two clocks run from when it was
//! raised: acknowledge by one deadline, rectify by another (which keeps running after the
//! acknowledgement). Each missed deadline moves it one step up the founding document's ladder:
//! phone reminder (电话提醒) → written warning (书面警示) → on-site inspection (实地督查).

use super::coded_enum;
use super::findings::Severity;

coded_enum! {
    /// Where an alert stands in its follow-up.
    AlertState, "ALERT_STATE_" {
        /// Raised, nobody has taken it up yet.
        Open = "OPEN",
        /// Someone has taken it up.
        Acknowledged = "ACKNOWLEDGED",
        /// The institution is putting it right.
        Rectifying = "RECTIFYING",
        /// Done with.
        Closed = "CLOSED",
    }
}

coded_enum! {
    /// A step of the escalation ladder.
    EscalationStep, "ESCALATION_STEP_" {
        /// 电话提醒.
        PhoneReminder = "PHONE_REMINDER",
        /// 书面警示.
        WrittenWarning = "WRITTEN_WARNING",
        /// 实地督查.
        OnSiteInspection = "ON_SITE_INSPECTION",
    }
}

impl EscalationStep {
    /// The step at a level (1, 2, 3).
    pub fn at(level: i64) -> Option<EscalationStep> {
        match level {
            1 => Some(EscalationStep::PhoneReminder),
            2 => Some(EscalationStep::WrittenWarning),
            3 => Some(EscalationStep::OnSiteInspection),
            _ => None,
        }
    }
}

/// Whether a hand transition is allowed. Closing is allowed from any state but closed; going back
/// is not (a new problem is a new finding).
pub fn may_transition(from: AlertState, to: AlertState) -> bool {
    use AlertState as S;
    matches!(
        (from, to),
        (S::Open, S::Acknowledged)
            | (S::Open | S::Acknowledged, S::Rectifying)
            | (S::Open | S::Acknowledged | S::Rectifying, S::Closed)
    )
}

/// How long an alert of each severity may wait, in seconds; `None` means that clock does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationPolicy {
    /// Per severity: (acknowledgement deadline, rectification deadline) after raising.
    pub deadlines: Vec<(Severity, Option<i64>, Option<i64>)>,
}

const HOUR: i64 = 3_600;

impl Default for EscalationPolicy {
    fn default() -> EscalationPolicy {
        EscalationPolicy {
            deadlines: vec![
                (Severity::Critical, Some(24 * HOUR), Some(7 * 24 * HOUR)),
                (Severity::High, Some(72 * HOUR), Some(30 * 24 * HOUR)),
                (Severity::Medium, Some(7 * 24 * HOUR), Some(60 * 24 * HOUR)),
                (Severity::Low, Some(14 * 24 * HOUR), None),
            ],
        }
    }
}

/// The deadlines of one alert, as instants in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadlines {
    /// Acknowledge by then.
    pub acknowledge_by: Option<i64>,
    /// Rectify (close, or the data resolves it) by then.
    pub rectify_by: Option<i64>,
}

impl EscalationPolicy {
    /// The deadlines of an alert of `severity` raised at `raised_at` (microseconds).
    pub fn deadlines(&self, severity: Severity, raised_at: i64) -> Deadlines {
        let (ack, rectify) = self
            .deadlines
            .iter()
            .find(|(s, _, _)| *s == severity)
            .map_or((None, None), |(_, ack, rectify)| (*ack, *rectify));
        Deadlines {
            acknowledge_by: ack.map(|secs| raised_at + secs * 1_000_000),
            rectify_by: rectify.map(|secs| raised_at + secs * 1_000_000),
        }
    }
}

/// What the ladder says an alert's level should be at `now`: one step per deadline missed, the
/// third step when the rectification deadline has passed by its own length again. An alert that
/// is closed or resolved by the data escalates no further.
pub fn due_level(
    deadlines: &Deadlines,
    raised_at: i64,
    state: AlertState,
    acknowledged: bool,
    still_shown: bool,
    now: i64,
) -> i64 {
    if state == AlertState::Closed || !still_shown {
        return 0;
    }
    let mut missed = 0;
    if deadlines.acknowledge_by.is_some_and(|by| now >= by) && !acknowledged {
        missed += 1;
    }
    if let Some(by) = deadlines.rectify_by {
        if now >= by {
            missed += 1;
        }
        if now >= by + (by - raised_at) {
            missed += 1;
        }
    }
    missed.min(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    #[test]
    fn each_missed_deadline_is_one_step_and_the_ladder_stops_at_three() {
        let policy = EscalationPolicy::default();
        let raised = 1_000 * H;
        let d = policy.deadlines(Severity::Critical, raised);
        assert_eq!(d.acknowledge_by, Some(raised + 24 * H));
        let level = |hours: i64, acknowledged: bool| {
            due_level(
                &d,
                raised,
                AlertState::Open,
                acknowledged,
                true,
                raised + hours * H,
            )
        };
        assert_eq!(level(23, false), 0);
        assert_eq!(level(24, false), 1);
        assert_eq!(
            level(24, true),
            0,
            "acknowledged in time: the first clock never fires"
        );
        assert_eq!(level(7 * 24, false), 2);
        assert_eq!(
            level(7 * 24, true),
            1,
            "the rectification clock runs on after acknowledgement"
        );
        assert_eq!(level(14 * 24, false), 3);
        assert_eq!(level(1000 * 24, false), 3);
    }

    #[test]
    fn closed_or_resolved_alerts_do_not_escalate_and_low_ones_only_once() {
        let policy = EscalationPolicy::default();
        let d = policy.deadlines(Severity::Critical, 0);
        assert_eq!(
            due_level(&d, 0, AlertState::Closed, false, true, 100 * 24 * H),
            0
        );
        assert_eq!(
            due_level(&d, 0, AlertState::Open, false, false, 100 * 24 * H),
            0
        );
        let low = policy.deadlines(Severity::Low, 0);
        assert_eq!(
            due_level(&low, 0, AlertState::Open, false, true, 1000 * 24 * H),
            1
        );
        assert_eq!(policy.deadlines(Severity::Info, 0), Deadlines::default());
    }

    #[test]
    fn transitions_go_forward_only() {
        use AlertState as S;
        assert!(may_transition(S::Open, S::Acknowledged));
        assert!(may_transition(S::Acknowledged, S::Rectifying));
        assert!(may_transition(S::Rectifying, S::Closed));
        assert!(!may_transition(S::Closed, S::Open));
        assert!(!may_transition(S::Rectifying, S::Acknowledged));
        assert!(!may_transition(S::Closed, S::Closed));
    }
}
