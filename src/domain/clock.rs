//! The sites' "today". Dates in the study are the sites' local dates, in the time zone
//! the protocol names (`time_zone`, default Asia/Shanghai: both hospitals are in China,
//! UTC+8 all year); the audit trail keeps UTC times. Every rule that needs today (a
//! date in the future is refused, a visit is due or overdue, the export and report
//! date) takes it as a parameter; [`today_local`] is the one place that reads the
//! clock. Opening a study sets the zone ([`set_zone`]). `MARROW_TODAY=YYYY-MM-DD`
//! overrides the date and `MARROW_NOW=2026-03-01T16:30:00Z` the instant (for tests and
//! for replaying a day: an override that does not parse is ignored, the clock is used).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI32, Ordering};

/// The sites' offset from UTC, in hours, by default (China Standard Time).
pub const SITE_UTC_OFFSET_HOURS: i64 = 8;
/// The default time zone of the protocol.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";

/// The environment variable that overrides today's date.
pub const TODAY_ENV: &str = "MARROW_TODAY";
/// The environment variable that overrides the current instant (RFC 3339).
pub const NOW_ENV: &str = "MARROW_NOW";

/// A time zone marrow can keep: a fixed offset from UTC, by its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeZone {
    /// As the protocol names it ("Asia/Shanghai", "UTC+08:00").
    pub name: String,
    /// Minutes east of UTC.
    pub offset_minutes: i32,
}

impl Default for TimeZone {
    fn default() -> Self {
        TimeZone {
            name: DEFAULT_TIME_ZONE.into(),
            offset_minutes: (SITE_UTC_OFFSET_HOURS * 60) as i32,
        }
    }
}

/// Zones without daylight saving time, by name (the study's sites and their
/// neighbours); anything else is given as a fixed offset.
const FIXED_ZONES: [(&str, i32); 9] = [
    ("Asia/Shanghai", 480),
    ("Asia/Chongqing", 480),
    ("Asia/Harbin", 480),
    ("Asia/Urumqi", 360),
    ("Asia/Hong_Kong", 480),
    ("Asia/Macau", 480),
    ("Asia/Taipei", 480),
    ("Asia/Singapore", 480),
    ("UTC", 0),
];

impl TimeZone {
    /// Parses a protocol's `time_zone`: a name of [`FIXED_ZONES`] or a fixed offset
    /// `UTC+HH:MM` / `UTC-HH:MM` (also `+08:00`). Zones with daylight saving time are
    /// refused: a study date must not move with the clocks.
    pub fn parse(s: &str) -> Result<TimeZone, String> {
        let t = s.trim();
        if let Some((name, off)) = FIXED_ZONES.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
            return Ok(TimeZone {
                name: (*name).to_string(),
                offset_minutes: *off,
            });
        }
        let rest = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("GMT"))
            .unwrap_or(t);
        let bad = || {
            format!(
                "time_zone '{t}' is not a zone marrow knows: give Asia/Shanghai (or another zone \
                 without daylight saving time: {}) or a fixed offset such as UTC+08:00",
                FIXED_ZONES
                    .iter()
                    .map(|z| z.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let (sign, hm) = match rest.chars().next() {
            Some('+') => (1, &rest[1..]),
            Some('-') => (-1, &rest[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = hm.split_once(':').unwrap_or((hm, "0"));
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..=14).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(TimeZone {
            name: t.to_string(),
            offset_minutes: sign * (h * 60 + m),
        })
    }
}

static OFFSET_MINUTES: AtomicI32 = AtomicI32::new((SITE_UTC_OFFSET_HOURS * 60) as i32);

/// Sets the zone of [`today_local`] (opening a study sets its protocol's).
pub fn set_zone(z: &TimeZone) {
    OFFSET_MINUTES.store(z.offset_minutes, Ordering::Relaxed);
}

/// The local date at `offset_minutes` east of UTC at the instant `now`.
pub fn local_date_at(now: DateTime<Utc>, offset_minutes: i32) -> NaiveDate {
    (now + Duration::minutes(i64::from(offset_minutes))).date_naive()
}

/// The local date at the sites (the default zone, UTC+8) at the instant `now`.
pub fn local_date(now: DateTime<Utc>) -> NaiveDate {
    local_date_at(now, (SITE_UTC_OFFSET_HOURS * 60) as i32)
}

/// Today at the sites: `override_value` when it is a YYYY-MM-DD date, else the local
/// date of `now`. Pure.
pub fn today_from(override_value: Option<&str>, now: DateTime<Utc>) -> NaiveDate {
    today_in(override_value, now, (SITE_UTC_OFFSET_HOURS * 60) as i32)
}

/// Today in the zone `offset_minutes` east of UTC: `override_value` when it is a
/// YYYY-MM-DD date, else the local date of `now`. Pure.
pub fn today_in(
    override_value: Option<&str>,
    now: DateTime<Utc>,
    offset_minutes: i32,
) -> NaiveDate {
    override_value
        .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
        .unwrap_or_else(|| local_date_at(now, offset_minutes))
}

/// The current instant: `MARROW_NOW` when it is an RFC 3339 time, else the clock.
pub fn now() -> DateTime<Utc> {
    std::env::var(NOW_ENV)
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}

/// Today at the sites, in the open study's zone, or `MARROW_TODAY` when set to a date.
pub fn today_local() -> NaiveDate {
    today_in(
        std::env::var(TODAY_ENV).ok().as_deref(),
        now(),
        OFFSET_MINUTES.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

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
    fn at_00_30_local_time_today_is_the_local_date_not_the_utc_one() {
        // 00:30 at the sites on 5 December is 16:30 UTC on 4 December
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 16, 30, 0).unwrap();
        let shanghai = TimeZone::parse("Asia/Shanghai").unwrap();
        assert_eq!(
            today_in(None, now, shanghai.offset_minutes),
            NaiveDate::from_ymd_opt(2026, 12, 5).unwrap()
        );
        assert_eq!(
            today_in(None, now, 0),
            NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
        );
        // a fixed offset west of UTC
        let z = TimeZone::parse("UTC-05:00").unwrap();
        assert_eq!(z.offset_minutes, -300);
        assert_eq!(
            today_in(None, now, z.offset_minutes),
            NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
        );
    }

    #[test]
    fn zones_with_daylight_saving_or_nonsense_are_refused() {
        for bad in ["Europe/London", "UTC+25:00", "eight", "UTC+8:75"] {
            let e = TimeZone::parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("UTC+08:00"), "{e}");
        }
        assert_eq!(TimeZone::parse("+08:00").unwrap().offset_minutes, 480);
        assert_eq!(TimeZone::parse("utc").unwrap().name, "UTC");
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
