//! The hub's sense of time. Dates are China Standard Time (UTC+8), the domain's calendar: a roll
//! changes at local midnight. Tests replace the system clock with one they move by hand.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

/// Where the hub reads the time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The machine's clock.
    #[default]
    System,
    /// A clock that stands still until moved (tests, replays).
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// A manual clock set to `now`.
    pub fn manual(now: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(Mutex::new(now)))
    }

    /// A manual clock at noon (China time) of `date`.
    pub fn on(date: NaiveDate) -> Clock {
        let noon = date.and_hms_opt(4, 0, 0).expect("a valid time").and_utc();
        Clock::manual(noon)
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(now) => *now.lock().expect("clock not poisoned"),
        }
    }

    /// Today's date in China Standard Time.
    pub fn today(&self) -> NaiveDate {
        let china = FixedOffset::east_opt(8 * 3600).expect("a valid offset");
        self.now().with_timezone(&china).date_naive()
    }

    /// Moves a manual clock; a system clock cannot be moved.
    pub fn advance(&self, by: chrono::Duration) {
        if let Clock::Manual(now) = self {
            *now.lock().expect("clock not poisoned") += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_is_the_china_date() {
        let late_evening_utc = "2024-03-31T17:30:00Z".parse::<DateTime<Utc>>().unwrap();
        let clock = Clock::manual(late_evening_utc);
        assert_eq!(clock.today().to_string(), "2024-04-01");
        clock.advance(chrono::Duration::days(1));
        assert_eq!(clock.today().to_string(), "2024-04-02");
        assert_eq!(
            Clock::on(NaiveDate::from_ymd_opt(2024, 5, 6).unwrap())
                .today()
                .to_string(),
            "2024-05-06"
        );
    }
}
