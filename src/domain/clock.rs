//! The sites' "today". Dates in the study are the sites' local dates (PROTOCOL.md: both
//! hospitals are in China, UTC+8); the audit trail keeps UTC times. Every rule that
//! needs today (a date in the future is refused, a visit is due or overdue, the export
//! and report date) takes it as a parameter; [`today_local`] is the one place that reads
//! the clock, and `MARROW_TODAY=YYYY-MM-DD` overrides it (for tests and for replaying
//! a day: an override that is not a date is ignored, the clock is used).

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// The sites' offset from UTC, in hours (both sites: China Standard Time).
pub const SITE_UTC_OFFSET_HOURS: i64 = 8;

/// The environment variable that overrides today's date.
pub const TODAY_ENV: &str = "MARROW_TODAY";

/// The local date at the sites at the instant `now`.
pub fn local_date(now: DateTime<Utc>) -> NaiveDate {
    (now + Duration::hours(SITE_UTC_OFFSET_HOURS)).date_naive()
}

/// Today at the sites: `override_value` when it is a YYYY-MM-DD date, else the local
/// date of `now`. Pure.
pub fn today_from(override_value: Option<&str>, now: DateTime<Utc>) -> NaiveDate {
    override_value
        .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
        .unwrap_or_else(|| local_date(now))
}

/// Today at the sites (UTC+8), or `MARROW_TODAY` when set to a date.
pub fn today_local() -> NaiveDate {
    today_from(std::env::var(TODAY_ENV).ok().as_deref(), Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_site_date_turns_at_16_00_utc() {
        let before = Utc.with_ymd_and_hms(2026, 3, 1, 15, 59, 59).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 3, 1, 16, 0, 0).unwrap();
        assert_eq!(
            local_date(before),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        assert_eq!(
            local_date(after),
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
    }

    #[test]
    fn an_override_that_is_a_date_wins_anything_else_is_ignored() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(
            today_from(Some("2025-12-31"), now),
            NaiveDate::from_ymd_opt(2025, 12, 31).unwrap()
        );
        assert_eq!(
            today_from(Some("tomorrow"), now),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
        assert_eq!(
            today_from(None, now),
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
        );
    }
}
