//! The study protocol: sites, groups, phases, per-cohort enrollment targets and the DXA window.

use super::followup::FollowUpRules;
use super::reading::ReadingRules;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Study group of a patient: knee osteoarthritis, osteoporosis, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Group {
    Oa,
    Op,
    Control,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Oa, Group::Op, Group::Control];

    /// The code used in study IDs, CSVs and the database.
    pub fn code(self) -> &'static str {
        match self {
            Group::Oa => "OA",
            Group::Op => "OP",
            Group::Control => "CONTROL",
        }
    }

    /// Whether DXA is the gold standard for this group (criterion E5).
    pub fn needs_dxa(self) -> bool {
        matches!(self, Group::Op | Group::Control)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Group {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "OA" => Ok(Group::Oa),
            "OP" => Ok(Group::Op),
            "CONTROL" => Ok(Group::Control),
            other => Err(format!(
                "unknown group '{other}' (expected OA, OP or CONTROL)"
            )),
        }
    }
}

/// Study phase: retrospective (model development) or prospective (external validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Retrospective,
    Prospective,
}

impl Phase {
    pub const ALL: [Phase; 2] = [Phase::Retrospective, Phase::Prospective];

    pub fn code(self) -> &'static str {
        match self {
            Phase::Retrospective => "retrospective",
            Phase::Prospective => "prospective",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "retrospective" | "retro" => Ok(Phase::Retrospective),
            "prospective" | "pro" => Ok(Phase::Prospective),
            other => Err(format!(
                "unknown phase '{other}' (expected retrospective or prospective)"
            )),
        }
    }
}

/// One cohort's enrollment target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortTarget {
    pub site: String,
    pub group: Group,
    pub phase: Phase,
    pub target: u32,
}

/// The protocol the database was initialised with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    /// Site codes, e.g. PKUPH, SYSMH.
    pub sites: Vec<String>,
    /// A DXA scan counts as gold standard when it lies within this many days of the index date.
    pub dxa_window_days: i64,
    /// One target for every site x group x phase.
    pub targets: Vec<CohortTarget>,
    /// Blinded reading: reads per case and the disagreement rules (`[reading]`).
    #[serde(default)]
    pub reading: ReadingRules,
    /// Follow-up visits: the window around each planned visit (`[follow_up]`).
    #[serde(default)]
    pub follow_up: FollowUpRules,
    /// When each phase's index dates lie (`[periods]`).
    #[serde(default)]
    pub periods: Periods,
    /// The sites' time zone (`time_zone`): every study date, "today", due and overdue
    /// are local dates in it; audit timestamps stay UTC.
    #[serde(default)]
    pub time_zone: super::clock::TimeZone,
}

/// The study's periods (PROTOCOL.md: retrospective November 2005 to November 2025,
/// prospective recruitment from December 2025). An index date outside its phase's
/// period is refused on import. Inclusive at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Periods {
    pub retrospective_from: NaiveDate,
    pub retrospective_to: NaiveDate,
    pub prospective_from: NaiveDate,
}

impl Default for Periods {
    fn default() -> Self {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        Periods {
            retrospective_from: d(2005, 11, 1),
            retrospective_to: d(2025, 11, 30),
            prospective_from: d(2025, 12, 1),
        }
    }
}

impl Periods {
    pub fn validate(&self) -> Result<(), String> {
        if self.retrospective_from > self.retrospective_to {
            return Err(format!(
                "[periods] retrospective_from {} is after retrospective_to {}",
                self.retrospective_from, self.retrospective_to
            ));
        }
        Ok(())
    }

    /// Checks the index date of a patient of `phase` (named `column` in messages)
    /// against the phase's period and `today` (a date in the future is refused).
    pub fn check_index_date(
        &self,
        column: &str,
        phase: Phase,
        d: NaiveDate,
        today: NaiveDate,
    ) -> Result<(), String> {
        if d > today {
            return Err(format!(
                "{column} {d} is in the future (today at the site is {today})"
            ));
        }
        match phase {
            Phase::Retrospective if d < self.retrospective_from || d > self.retrospective_to => {
                Err(format!(
                    "{column} {d} is outside the retrospective period ({} to {})",
                    self.retrospective_from, self.retrospective_to
                ))
            }
            Phase::Prospective if d < self.prospective_from => Err(format!(
                "{column} {d} is before prospective recruitment began ({})",
                self.prospective_from
            )),
            _ => Ok(()),
        }
    }
}

/// Default per-cohort target of the retrospective phase.
pub const DEFAULT_TARGET_RETROSPECTIVE: u32 = 250;
/// Default per-cohort target of the prospective phase.
pub const DEFAULT_TARGET_PROSPECTIVE: u32 = 84;
/// Default DXA window: 12 months either side of the index imaging.
pub const DEFAULT_DXA_WINDOW_DAYS: i64 = 365;

impl Default for Protocol {
    fn default() -> Self {
        Protocol::with_sites(
            vec!["PKUPH".into(), "SYSMH".into()],
            DEFAULT_TARGET_RETROSPECTIVE,
            DEFAULT_TARGET_PROSPECTIVE,
            DEFAULT_DXA_WINDOW_DAYS,
        )
    }
}

/// The override file accepted by `marrow init --protocol FILE.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolOverride {
    pub sites: Option<Vec<String>>,
    pub dxa_window_days: Option<i64>,
    pub targets: Option<TargetsOverride>,
    /// `[reading]`: keys left out keep their defaults.
    pub reading: Option<ReadingRules>,
    /// `[follow_up]`: `window_months` (default 1), `phases` (default prospective).
    pub follow_up: Option<FollowUpRules>,
    /// `[periods]`: `retrospective_from`, `retrospective_to`, `prospective_from`
    /// (quoted "YYYY-MM-DD"; defaults 2005-11-01, 2025-11-30, 2025-12-01).
    pub periods: Option<Periods>,
    /// `time_zone`: "Asia/Shanghai" (the default) or a fixed offset "UTC+08:00".
    pub time_zone: Option<String>,
}

/// Targets in the override file: one per phase, and optionally per cohort.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsOverride {
    pub retrospective: Option<u32>,
    pub prospective: Option<u32>,
    #[serde(default)]
    pub cohort: Vec<CohortTarget>,
}

impl Protocol {
    /// A protocol with the same target for every cohort of a phase.
    pub fn with_sites(sites: Vec<String>, retro: u32, pro: u32, dxa_window_days: i64) -> Self {
        let mut targets = Vec::new();
        for site in &sites {
            for group in Group::ALL {
                for phase in Phase::ALL {
                    let target = match phase {
                        Phase::Retrospective => retro,
                        Phase::Prospective => pro,
                    };
                    targets.push(CohortTarget {
                        site: site.clone(),
                        group,
                        phase,
                        target,
                    });
                }
            }
        }
        Protocol {
            sites,
            dxa_window_days,
            targets,
            reading: ReadingRules::default(),
            follow_up: FollowUpRules::default(),
            periods: Periods::default(),
            time_zone: super::clock::TimeZone::default(),
        }
    }

    /// Applies an override file's text to the default protocol.
    pub fn from_override_toml(text: &str) -> Result<Self, String> {
        let o: ProtocolOverride = toml::from_str(text).map_err(|e| e.to_string())?;
        let sites = o
            .sites
            .unwrap_or_else(|| vec!["PKUPH".into(), "SYSMH".into()]);
        let mut normalised = Vec::new();
        for s in sites {
            let s = s.trim().to_ascii_uppercase();
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!(
                    "site code '{s}' must be letters and digits only (it becomes part of study IDs)"
                ));
            }
            if normalised.contains(&s) {
                return Err(format!("site '{s}' is listed twice"));
            }
            normalised.push(s);
        }
        if normalised.is_empty() {
            return Err("the protocol needs at least one site".into());
        }
        let window = o.dxa_window_days.unwrap_or(DEFAULT_DXA_WINDOW_DAYS);
        if !(0..=3660).contains(&window) {
            return Err(format!(
                "dxa_window_days = {window} is out of range (0 to 3660 days)"
            ));
        }
        let t = o.targets.unwrap_or_default();
        let mut p = Protocol::with_sites(
            normalised,
            t.retrospective.unwrap_or(DEFAULT_TARGET_RETROSPECTIVE),
            t.prospective.unwrap_or(DEFAULT_TARGET_PROSPECTIVE),
            window,
        );
        for c in t.cohort {
            let site = c.site.trim().to_ascii_uppercase();
            let slot = p
                .targets
                .iter_mut()
                .find(|x| x.site == site && x.group == c.group && x.phase == c.phase)
                .ok_or_else(|| {
                    format!(
                        "target for unknown cohort {site} {} {} (the site is not in `sites`)",
                        c.group, c.phase
                    )
                })?;
            slot.target = c.target;
        }
        if let Some(r) = o.reading {
            r.validate()?;
            p.reading = r;
        }
        if let Some(f) = o.follow_up {
            f.validate()?;
            p.follow_up = f;
        }
        if let Some(per) = o.periods {
            per.validate()?;
            p.periods = per;
        }
        if let Some(z) = o.time_zone {
            p.time_zone = super::clock::TimeZone::parse(&z)?;
        }
        Ok(p)
    }

    /// Normalises a site code and checks it is one of the protocol's sites.
    pub fn parse_site(&self, s: &str) -> Result<String, String> {
        let up = s.trim().to_ascii_uppercase();
        if self.sites.contains(&up) {
            Ok(up)
        } else {
            Err(format!(
                "unknown site '{}' (expected {})",
                s.trim(),
                self.sites.join(" or ")
            ))
        }
    }

    /// The target of one cohort (0 when the cohort is not in the protocol).
    pub fn target(&self, site: &str, group: Group, phase: Phase) -> u32 {
        self.targets
            .iter()
            .find(|t| t.site == site && t.group == group && t.phase == phase)
            .map(|t| t.target)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_targets_are_250_and_84_for_all_twelve_cohorts() {
        let p = Protocol::default();
        assert_eq!(p.targets.len(), 12);
        assert_eq!(p.target("PKUPH", Group::Oa, Phase::Retrospective), 250);
        assert_eq!(p.target("SYSMH", Group::Control, Phase::Prospective), 84);
        assert_eq!(p.dxa_window_days, 365);
    }

    #[test]
    fn override_changes_targets_window_and_sites() {
        let p = Protocol::from_override_toml(
            r#"
            sites = ["pkuph", "SYSMH", "XH"]
            dxa_window_days = 180
            [targets]
            prospective = 100
            [[targets.cohort]]
            site = "XH"
            group = "OP"
            phase = "retrospective"
            target = 7
            "#,
        )
        .unwrap();
        assert_eq!(p.sites, vec!["PKUPH", "SYSMH", "XH"]);
        assert_eq!(p.dxa_window_days, 180);
        assert_eq!(p.targets.len(), 18);
        assert_eq!(p.target("XH", Group::Op, Phase::Retrospective), 7);
        assert_eq!(p.target("XH", Group::Oa, Phase::Retrospective), 250);
        assert_eq!(p.target("PKUPH", Group::Oa, Phase::Prospective), 100);
    }

    #[test]
    fn override_rejects_unknown_keys_and_bad_cohorts() {
        assert!(Protocol::from_override_toml("dxa_windw_days = 3").is_err());
        let e = Protocol::from_override_toml(
            "[[targets.cohort]]\nsite='NOPE'\ngroup='OA'\nphase='prospective'\ntarget=1",
        )
        .unwrap_err();
        assert!(e.contains("NOPE"), "{e}");
    }

    #[test]
    fn reading_section_overrides_its_keys_and_defaults_the_rest() {
        let p = Protocol::from_override_toml("").unwrap();
        assert_eq!(p.reading, ReadingRules::default());
        let p =
            Protocol::from_override_toml("[reading]\nreads_per_case = 3\nkl_oa_split = false\n")
                .unwrap();
        assert_eq!(p.reading.reads_per_case, 3);
        assert!(!p.reading.kl_oa_split);
        assert_eq!(p.reading.kl_difference, 1);
        assert!(p.reading.not_assessable);
        assert!(Protocol::from_override_toml("[reading]\nreads_per_case = 0").is_err());
        assert!(Protocol::from_override_toml("[reading]\nreads = 2").is_err());
        // a protocol stored before the reading module still loads, with the defaults
        let old = r#"{"sites":["PKUPH"],"dxa_window_days":365,"targets":[]}"#;
        let p: Protocol = serde_json::from_str(old).unwrap();
        assert_eq!(p.reading, ReadingRules::default());
    }

    #[test]
    fn index_dates_must_lie_in_their_phase_period_and_not_in_the_future() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let per = Periods::default();
        let today = d("2026-12-04");
        let check = |ph, s: &str| per.check_index_date("index_date", ph, d(s), today);
        let retro = Phase::Retrospective;
        let pro = Phase::Prospective;
        assert_eq!(
            check(retro, "2005-10-31").unwrap_err(),
            "index_date 2005-10-31 is outside the retrospective period (2005-11-01 to 2025-11-30)"
        );
        assert!(check(retro, "2005-11-01").is_ok());
        assert!(check(retro, "2025-11-30").is_ok());
        assert!(check(retro, "2025-12-01").is_err());
        assert_eq!(
            check(pro, "2025-11-30").unwrap_err(),
            "index_date 2025-11-30 is before prospective recruitment began (2025-12-01)"
        );
        assert!(check(pro, "2025-12-01").is_ok());
        assert!(check(pro, "2026-12-04").is_ok());
        assert_eq!(
            check(pro, "2026-12-05").unwrap_err(),
            "index_date 2026-12-05 is in the future (today at the site is 2026-12-04)"
        );
        assert!(
            check(retro, "2030-01-01")
                .unwrap_err()
                .contains("in the future")
        );
        // configurable, and a protocol stored before the periods gets the defaults
        let p = Protocol::from_override_toml(
            "[periods]\nretrospective_from = \"2010-01-01\"\nprospective_from = \"2026-01-01\"\n",
        )
        .unwrap();
        assert_eq!(p.periods.retrospective_from, d("2010-01-01"));
        assert_eq!(p.periods.retrospective_to, d("2025-11-30"));
        assert_eq!(p.periods.prospective_from, d("2026-01-01"));
        assert!(
            Protocol::from_override_toml(
                "[periods]\nretrospective_from = \"2026-01-01\"\nretrospective_to = \"2025-01-01\"\n"
            )
            .is_err()
        );
        let old: Protocol =
            serde_json::from_str(r#"{"sites":["PKUPH"],"dxa_window_days":365,"targets":[]}"#)
                .unwrap();
        assert_eq!(old.periods, Periods::default());
    }

    #[test]
    fn parses_group_phase_and_site_case_insensitively() {
        assert_eq!("control".parse::<Group>().unwrap(), Group::Control);
        assert_eq!(
            " Prospective ".parse::<Phase>().unwrap(),
            Phase::Prospective
        );
        assert!("OX".parse::<Group>().is_err());
        let p = Protocol::default();
        assert_eq!(p.parse_site("sysmh").unwrap(), "SYSMH");
        assert!(p.parse_site("MGH").unwrap_err().contains("PKUPH or SYSMH"));
    }
}
