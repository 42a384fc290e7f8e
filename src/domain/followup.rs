//! Follow-up visits (the secondary outcomes): at 6, 12, 24 and 36 months after the
//! index date, each with a window (plus or minus `window_months`, one by default, set
//! in the protocol's `[follow_up]` section). A visit is `done` once recorded; before
//! its window opens it is `not_yet_due`, while the window is open `due`, after it
//! closes `overdue`. Windows are inclusive at both ends. Pure: no I/O.

use super::protocol::Phase;
use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The months after the index date at which a visit is planned.
pub const VISIT_MONTHS: [u32; 4] = [6, 12, 24, 36];
/// The baseline visit (month 0, at the index date): VAS and OKS change from it. It
/// may be recorded like a planned visit, but nothing is chased for it.
pub const BASELINE_MONTH: u32 = 0;

/// Whether a visit month may be recorded: the baseline or a planned visit.
pub fn is_recordable_month(m: u32) -> bool {
    m == BASELINE_MONTH || VISIT_MONTHS.contains(&m)
}
/// The widest half-width that keeps the 6- and 12-month windows apart.
pub const MAX_WINDOW_MONTHS: u32 = 2;

/// Default half-width of a visit window, in months.
pub const DEFAULT_WINDOW_MONTHS: u32 = 1;
/// Highest VAS pain score (0-10).
pub const VAS_MAX: f64 = 10.0;
/// Highest Oxford Knee Score (0-48).
pub const OKS_MAX: u8 = 48;

/// The protocol's `[follow_up]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowUpRules {
    /// A visit counts when it lies within this many months either side of its target date.
    pub window_months: u32,
    /// The phases whose patients are followed up (visits due, overdue). Visits recorded
    /// for a patient of another phase (e.g. taken from the records of a retrospective
    /// patient) are kept, shown and exported, but nothing is chased for them.
    pub phases: Vec<Phase>,
}

impl Default for FollowUpRules {
    fn default() -> Self {
        FollowUpRules {
            window_months: DEFAULT_WINDOW_MONTHS,
            phases: vec![Phase::Prospective],
        }
    }
}

impl FollowUpRules {
    pub fn validate(&self) -> Result<(), String> {
        // The 6-month window closes at 6 + w, the 12-month one opens at 12 - w: they
        // meet at w = 3.
        if self.window_months > MAX_WINDOW_MONTHS {
            return Err(format!(
                "[follow_up] window_months = {} is out of range (0 to {MAX_WINDOW_MONTHS}: from 3 the windows of the 6- and 12-month visits overlap)",
                self.window_months
            ));
        }
        Ok(())
    }
}

/// Where a planned visit stands on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitState {
    /// Recorded.
    Done,
    /// Not recorded and the window is open.
    Due,
    /// Not recorded and the window has closed.
    Overdue,
    /// The window has not opened yet.
    NotYetDue,
}

impl VisitState {
    pub const ALL: [VisitState; 4] = [
        VisitState::Done,
        VisitState::Due,
        VisitState::Overdue,
        VisitState::NotYetDue,
    ];

    pub fn code(self) -> &'static str {
        match self {
            VisitState::Done => "done",
            VisitState::Due => "due",
            VisitState::Overdue => "overdue",
            VisitState::NotYetDue => "not_yet_due",
        }
    }
}

impl fmt::Display for VisitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The window of one planned visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VisitWindow {
    pub month: u32,
    pub target: NaiveDate,
    pub opens: NaiveDate,
    pub closes: NaiveDate,
}

impl VisitWindow {
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.opens <= d && d <= self.closes
    }
}

/// Checks a visit month (0 for the baseline, or 6, 12, 24 or 36).
pub fn parse_visit_month(s: &str) -> Result<u32, String> {
    let m: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("visit_month '{}' is not a number", s.trim()))?;
    if is_recordable_month(m) {
        Ok(m)
    } else {
        Err(format!(
            "visit_month {m} is not the baseline (0) or a planned visit (6, 12, 24 or 36)"
        ))
    }
}

/// `d` plus `m` calendar months, a month end kept (31 January + 1 = 28/29 February).
pub(crate) fn add_months(d: NaiveDate, m: u32) -> NaiveDate {
    d.checked_add_months(Months::new(m))
        .unwrap_or(NaiveDate::MAX)
}

/// `d` minus `m` calendar months, a month end kept (31 March - 1 = 28/29 February).
pub(crate) fn sub_months(d: NaiveDate, m: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(m))
        .unwrap_or(NaiveDate::MIN)
}

/// The window of the visit `month` months after `index` (a month end is kept: 31
/// January plus one month is 28 or 29 February).
pub fn window(index: NaiveDate, month: u32, rules: &FollowUpRules) -> VisitWindow {
    let target = add_months(index, month);
    VisitWindow {
        month,
        target,
        opens: sub_months(target, rules.window_months),
        closes: add_months(target, rules.window_months),
    }
}

/// The windows of every planned visit.
pub fn schedule(index: NaiveDate, rules: &FollowUpRules) -> Vec<VisitWindow> {
    VISIT_MONTHS
        .iter()
        .map(|m| window(index, *m, rules))
        .collect()
}

/// The state of a visit on `today`, given whether it was recorded.
pub fn state(w: &VisitWindow, recorded: bool, today: NaiveDate) -> VisitState {
    if recorded {
        VisitState::Done
    } else if today < w.opens {
        VisitState::NotYetDue
    } else if today <= w.closes {
        VisitState::Due
    } else {
        VisitState::Overdue
    }
}

/// Whether a visit not yet done belongs on the coordinator's list for the next
/// `days` days: its window is open, or opens within `days` days.
pub fn on_due_list(w: &VisitWindow, st: VisitState, today: NaiveDate, days: i64) -> bool {
    match st {
        VisitState::Due => true,
        VisitState::NotYetDue => (w.opens - today).num_days() <= days,
        _ => false,
    }
}

/// What a recorded visit holds (entered by hand or imported).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitInput {
    pub visit_date: NaiveDate,
    /// VAS pain, 0-10.
    pub vas: Option<f64>,
    /// Oxford Knee Score, 0-48.
    pub oks: Option<u8>,
    pub new_fragility_fracture: Option<bool>,
}

/// Checks a VAS pain score.
pub fn parse_vas(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("vas '{}' is not a number", s.trim()))?;
    if !v.is_finite() || !(0.0..=VAS_MAX).contains(&v) {
        return Err(format!("vas {v} is outside 0 to 10"));
    }
    Ok(v)
}

/// Checks an Oxford Knee Score (a whole number 0-48).
pub fn parse_oks(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let v: i64 = t
        .parse()
        .map_err(|_| format!("oks '{t}' is not a whole number"))?;
    if !(0..=i64::from(OKS_MAX)).contains(&v) {
        return Err(format!("oks {v} is outside 0 to 48"));
    }
    Ok(v as u8)
}

/// Why a visit without any outcome is refused (the import, the screen's form and
/// `marrow followup record` all say it).
pub const NO_OUTCOME: &str =
    "the visit has no outcome (vas, oks and new_fragility_fracture are all empty)";

impl VisitInput {
    /// Checks what the visit holds, on its own: at least one outcome, VAS 0-10, OKS 0-48.
    pub fn check_values(&self) -> Result<(), String> {
        if self.vas.is_none() && self.oks.is_none() && self.new_fragility_fracture.is_none() {
            return Err(NO_OUTCOME.into());
        }
        if let Some(v) = self.vas
            && (!v.is_finite() || !(0.0..=VAS_MAX).contains(&v))
        {
            return Err(format!("vas {v} is outside 0 to 10"));
        }
        if let Some(o) = self.oks
            && o > OKS_MAX
        {
            return Err(format!("oks {o} is outside 0 to 48"));
        }
        Ok(())
    }

    /// The one check of a visit to be stored, for every path that stores one (the
    /// import, the screen's form, `marrow followup record`: `db::followup` calls it
    /// before any write): the values ([`Self::check_values`]), a visit date not in
    /// the future of `today` (the sites' local date) and not before the patient's
    /// index date. A visit dated outside its window is accepted; the screens and the
    /// export flag it "out of window".
    pub fn check(&self, index: Option<NaiveDate>, today: NaiveDate) -> Result<(), String> {
        self.check_values()?;
        if self.visit_date > today {
            return Err(format!(
                "visit_date {} is in the future (today at the site is {today}); a visit is recorded once it took place",
                self.visit_date
            ));
        }
        if let Some(i) = index
            && self.visit_date < i
        {
            return Err(format!(
                "visit_date {} is before the patient's index date {i}",
                self.visit_date
            ));
        }
        Ok(())
    }
}

/// The columns a follow-up export must have.
pub const FOLLOWUP_COLUMNS: &[&str] = &["mrn", "visit_month", "visit_date"];

/// Checks one followup.csv row (`mrn`, `visit_month`, `visit_date`, `vas`, `oks`,
/// `new_fragility_fracture`); returns the MRN (only to be hashed), the month and the visit.
pub fn parse_visit_row(
    row: &dyn super::records::RowFields,
) -> Result<(String, u32, VisitInput), String> {
    let get = |name: &str| row.field(name).map(str::trim).filter(|s| !s.is_empty());
    let mrn = get("mrn").ok_or("mrn is empty")?.to_string();
    let month = parse_visit_month(get("visit_month").ok_or("visit_month is empty")?)?;
    let visit_date = super::records::parse_date(
        "visit_date",
        get("visit_date").ok_or("visit_date is empty")?,
    )?;
    let vas = get("vas").map(parse_vas).transpose()?;
    let oks = get("oks").map(parse_oks).transpose()?;
    let new_fragility_fracture = match get("new_fragility_fracture") {
        None => None,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "yes" => Some(true),
            "no" => Some(false),
            _ => {
                return Err(format!(
                    "new_fragility_fracture '{s}' must be yes, no or empty"
                ));
            }
        },
    };
    let visit = VisitInput {
        visit_date,
        vas,
        oks,
        new_fragility_fracture,
    };
    visit.check_values()?;
    Ok((mrn, month, visit))
}

/// Follow-up compliance: visits per state, over the eligible patients with an index date.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpCounts {
    pub done: u64,
    pub due: u64,
    pub overdue: u64,
    pub not_yet_due: u64,
    /// Recorded visits dated outside their window.
    pub done_out_of_window: u64,
}

impl FollowUpCounts {
    pub fn add(&mut self, s: VisitState) {
        match s {
            VisitState::Done => self.done += 1,
            VisitState::Due => self.due += 1,
            VisitState::Overdue => self.overdue += 1,
            VisitState::NotYetDue => self.not_yet_due += 1,
        }
    }

    /// Done among the visits whose window has opened (done + due + overdue), when any.
    pub fn compliance(&self) -> Option<f64> {
        let denom = self.done + self.due + self.overdue;
        (denom > 0).then(|| self.done as f64 / denom as f64)
    }
}

impl FromStr for VisitState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VisitState::ALL
            .into_iter()
            .find(|v| v.code() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown visit state '{s}' (done, due, overdue, not_yet_due)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn windows_are_target_plus_minus_the_configured_months() {
        let r = FollowUpRules::default();
        let s = schedule(d("2026-01-15"), &r);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].target, d("2026-07-15"));
        assert_eq!(
            (s[0].opens, s[0].closes),
            (d("2026-06-15"), d("2026-08-15"))
        );
        assert_eq!(s[3].target, d("2029-01-15"));
        let wide = FollowUpRules {
            window_months: 2,
            ..Default::default()
        };
        let w = window(d("2026-01-15"), 12, &wide);
        assert_eq!((w.opens, w.closes), (d("2026-11-15"), d("2027-03-15")));
    }

    #[test]
    fn month_ends_are_clamped() {
        let r = FollowUpRules::default();
        let w = window(d("2025-08-31"), 6, &r);
        assert_eq!(w.target, d("2026-02-28"));
        assert_eq!((w.opens, w.closes), (d("2026-01-28"), d("2026-03-28")));
        let w = window(d("2023-08-31"), 6, &r);
        assert_eq!(w.target, d("2024-02-29"));
    }

    #[test]
    fn states_at_the_window_boundaries() {
        let r = FollowUpRules::default();
        let w = window(d("2026-01-15"), 6, &r); // 2026-06-15 ..= 2026-08-15
        assert_eq!(state(&w, false, d("2026-06-14")), VisitState::NotYetDue);
        assert_eq!(state(&w, false, d("2026-06-15")), VisitState::Due);
        assert_eq!(state(&w, false, d("2026-08-15")), VisitState::Due);
        assert_eq!(state(&w, false, d("2026-08-16")), VisitState::Overdue);
        assert_eq!(state(&w, true, d("2026-08-16")), VisitState::Done);
        assert_eq!(state(&w, true, d("2020-01-01")), VisitState::Done);
        assert!(w.contains(d("2026-06-15")) && w.contains(d("2026-08-15")));
        assert!(!w.contains(d("2026-06-14")) && !w.contains(d("2026-08-16")));
    }

    #[test]
    fn zero_window_is_the_target_day_only() {
        let r = FollowUpRules {
            window_months: 0,
            ..Default::default()
        };
        let w = window(d("2026-01-15"), 6, &r);
        assert_eq!(state(&w, false, d("2026-07-14")), VisitState::NotYetDue);
        assert_eq!(state(&w, false, d("2026-07-15")), VisitState::Due);
        assert_eq!(state(&w, false, d("2026-07-16")), VisitState::Overdue);
    }

    #[test]
    fn due_list_takes_open_windows_and_those_opening_soon() {
        let r = FollowUpRules::default();
        let w = window(d("2026-01-15"), 6, &r); // opens 2026-06-15
        let today = d("2026-05-16"); // 30 days before
        let st = state(&w, false, today);
        assert!(on_due_list(&w, st, today, 30));
        assert!(!on_due_list(&w, st, today, 29));
        let today = d("2026-07-01");
        assert!(on_due_list(&w, state(&w, false, today), today, 0));
        let today = d("2026-09-01");
        assert!(!on_due_list(&w, state(&w, false, today), today, 30));
        assert!(!on_due_list(&w, VisitState::Done, d("2026-07-01"), 30));
    }

    #[test]
    fn scores_are_checked_at_their_bounds() {
        assert_eq!(parse_vas("0").unwrap(), 0.0);
        assert_eq!(parse_vas("10").unwrap(), 10.0);
        assert_eq!(parse_vas("3.5").unwrap(), 3.5);
        assert!(parse_vas("11").unwrap_err().contains("outside 0 to 10"));
        assert!(parse_vas("-0.5").is_err());
        assert!(parse_vas("NaN").is_err());
        assert_eq!(parse_oks("48").unwrap(), 48);
        assert_eq!(parse_oks("0").unwrap(), 0);
        assert!(parse_oks("49").unwrap_err().contains("outside 0 to 48"));
        assert!(parse_oks("12.5").is_err());
        assert!(parse_oks("-1").is_err());
        assert_eq!(parse_visit_month(" 24 ").unwrap(), 24);
        assert!(parse_visit_month("18").is_err());
        assert!(parse_visit_month("x").is_err());
    }

    #[test]
    fn a_visit_before_the_index_date_is_refused() {
        let v = VisitInput {
            visit_date: d("2026-01-14"),
            vas: Some(2.0),
            oks: Some(40),
            new_fragility_fracture: Some(false),
        };
        let today = d("2026-12-04");
        assert_eq!(
            v.check(Some(d("2026-01-15")), today).unwrap_err(),
            "visit_date 2026-01-14 is before the patient's index date 2026-01-15"
        );
        assert!(v.check(Some(d("2026-01-14")), today).is_ok());
        assert!(v.check(None, today).is_ok());
        let bad = VisitInput {
            oks: Some(49),
            ..v.clone()
        };
        assert!(bad.check(None, today).is_err());
    }

    #[test]
    fn a_visit_in_the_future_or_without_an_outcome_is_refused() {
        let today = d("2026-12-04");
        let v = |date: &str| VisitInput {
            visit_date: d(date),
            vas: Some(2.0),
            oks: None,
            new_fragility_fracture: None,
        };
        assert!(v("2026-12-04").check(Some(d("2026-01-15")), today).is_ok());
        assert_eq!(
            v("2026-12-05")
                .check(Some(d("2026-01-15")), today)
                .unwrap_err(),
            "visit_date 2026-12-05 is in the future (today at the site is 2026-12-04); a visit is recorded once it took place"
        );
        assert!(
            v("2030-01-01")
                .check(None, today)
                .unwrap_err()
                .contains("in the future")
        );
        // dated outside its window (a 36-month visit six months after the index
        // date): accepted, the window check flags it
        let early = v("2026-07-15");
        assert!(early.check(Some(d("2026-01-15")), today).is_ok());
        assert!(!window(d("2026-01-15"), 36, &FollowUpRules::default()).contains(early.visit_date));
        let empty = VisitInput {
            vas: None,
            ..v("2026-06-01")
        };
        assert_eq!(empty.check(None, today).unwrap_err(), NO_OUTCOME);
        assert_eq!(empty.check_values().unwrap_err(), NO_OUTCOME);
    }

    #[test]
    fn compliance_counts_only_opened_windows() {
        let mut c = FollowUpCounts::default();
        assert_eq!(c.compliance(), None);
        for s in [
            VisitState::Done,
            VisitState::Done,
            VisitState::Overdue,
            VisitState::Due,
            VisitState::NotYetDue,
        ] {
            c.add(s);
        }
        assert_eq!(c.compliance(), Some(0.5));
    }

    struct Row(Vec<(&'static str, &'static str)>);
    impl crate::domain::records::RowFields for Row {
        fn field(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        }
    }

    fn row(vas: &'static str, oks: &'static str, frac: &'static str) -> Row {
        Row(vec![
            ("mrn", " PK1 "),
            ("visit_month", "12"),
            ("visit_date", "2026-03-01"),
            ("vas", vas),
            ("oks", oks),
            ("new_fragility_fracture", frac),
        ])
    }

    #[test]
    fn rows_are_checked_whole() {
        let (mrn, m, v) = parse_visit_row(&row("3", "40", "no")).unwrap();
        assert_eq!((mrn.as_str(), m), ("PK1", 12));
        assert_eq!(v.oks, Some(40));
        assert_eq!(v.new_fragility_fracture, Some(false));
        assert!(
            parse_visit_row(&row("11", "40", "no"))
                .unwrap_err()
                .contains("vas 11")
        );
        assert!(
            parse_visit_row(&row("3", "49", "no"))
                .unwrap_err()
                .contains("oks 49")
        );
        assert!(parse_visit_row(&row("3", "40", "maybe")).is_err());
        assert!(
            parse_visit_row(&row("", "", ""))
                .unwrap_err()
                .contains("no outcome")
        );
        let (_, _, v) = parse_visit_row(&row("", "", "YES")).unwrap();
        assert_eq!((v.vas, v.new_fragility_fracture), (None, Some(true)));
    }

    #[test]
    fn the_protocol_file_sets_the_window() {
        let p = crate::domain::protocol::Protocol::from_override_toml(
            "[follow_up]\nwindow_months = 2\n",
        )
        .unwrap();
        assert_eq!(p.follow_up.window_months, 2);
        assert_eq!(p.follow_up.phases, vec![Phase::Prospective]);
        let p = crate::domain::protocol::Protocol::from_override_toml(
            "[follow_up]\nphases = [\"retrospective\", \"prospective\"]\n",
        )
        .unwrap();
        assert_eq!(p.follow_up.phases.len(), 2);
        assert_eq!(p.follow_up.window_months, 1);
        let p = crate::domain::protocol::Protocol::from_override_toml("").unwrap();
        assert_eq!(p.follow_up, FollowUpRules::default());
        assert!(
            crate::domain::protocol::Protocol::from_override_toml(
                "[follow_up]\nwindow_months = 9\n"
            )
            .is_err()
        );
        assert!(
            crate::domain::protocol::Protocol::from_override_toml("[follow_up]\nwindow = 1\n")
                .is_err()
        );
        // a protocol stored before follow-up existed still loads, with the default window
        let old = r#"{"sites":["PKUPH"],"dxa_window_days":365,"targets":[]}"#;
        let p: crate::domain::protocol::Protocol = serde_json::from_str(old).unwrap();
        assert_eq!(p.follow_up.window_months, 1);
    }

    #[test]
    fn rules_validate_and_default() {
        assert_eq!(FollowUpRules::default().window_months, 1);
        assert_eq!(FollowUpRules::default().phases, vec![Phase::Prospective]);
        let r = |w| FollowUpRules {
            window_months: w,
            ..Default::default()
        };
        assert!(r(6).validate().is_err());
        assert!(r(2).validate().is_ok());
        // At 3 the 6-month window closes on the day the 12-month one opens.
        let e = r(3).validate().unwrap_err();
        assert!(e.contains("0 to 2") && e.contains("overlap"), "{e}");
        let index = d("2026-01-15");
        for (w, apart) in [(2, true), (3, false)] {
            let six = window(index, 6, &r(w));
            let twelve = window(index, 12, &r(w));
            assert_eq!(six.closes < twelve.opens, apart, "window {w}");
        }
    }
}
