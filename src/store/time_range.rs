//! A span of instants a list is filtered by (the days findings were raised, items opened, cases
//! filed), as SQL: below every store module that filters by time.

use chrono::{FixedOffset, NaiveDate, TimeZone};

use super::Value;

/// Instants `[from, to)` in Unix microseconds; either end open when `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeRange {
    /// The first instant in the range.
    pub from: Option<i64>,
    /// The first instant after it.
    pub to: Option<i64>,
}

impl TimeRange {
    /// The days `from..=to` in China Standard Time, either end open.
    pub fn of_days(from: Option<NaiveDate>, to: Option<NaiveDate>) -> TimeRange {
        let china = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
        let start = |day: NaiveDate| {
            china
                .from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
                .single()
                .map(|t| t.timestamp_micros())
        };
        TimeRange {
            from: from.and_then(start),
            to: to.and_then(|day| day.succ_opt()).and_then(start),
        }
    }

    /// `AND column >= $n AND column < $m` for the set ends, binding their values.
    pub(super) fn sql(&self, column: &str, values: &mut Vec<Value>) -> String {
        let mut sql = String::new();
        if let Some(from) = self.from {
            values.push(Value::Int(from));
            sql.push_str(&format!(" AND {column} >= ${}", values.len()));
        }
        if let Some(to) = self.to {
            values.push(Value::Int(to));
            sql.push_str(&format!(" AND {column} < ${}", values.len()));
        }
        sql
    }
}
