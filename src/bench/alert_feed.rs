//! Measure 6, pending: the alert feed (push-to-subscriber latency with 1 and 1,000 subscribers,
//! memory per idle subscriber). The hook the table already shows; fill it in when the feed is
//! built, with the same keys so that runs stay comparable.

use super::report::{Figure, Row};

/// What the rows say until the feed exists.
pub const PENDING: &str = "not measured: the alert feed is not built yet";

/// The alert feed's rows: pending for now.
pub fn rows() -> Vec<Row> {
    [
        (
            "alert_feed.latency.subscribers_1",
            "Alert feed: push-to-subscriber latency p50 / p99, 1 subscriber",
        ),
        (
            "alert_feed.latency.subscribers_1000",
            "Alert feed: push-to-subscriber latency p50 / p99, 1,000 subscribers",
        ),
        (
            "alert_feed.memory_per_idle_subscriber",
            "Alert feed: memory per idle subscriber",
        ),
    ]
    .into_iter()
    .map(|(key, measure)| Row::reported(key, "6", measure, Figure::text(PENDING)))
    .collect()
}
