//! The CONSORT flow of the study: assessed -> excluded (a count per criterion) and
//! pending -> eligible -> imaged -> read -> final grade -> model prediction ->
//! analysed. One pure function ([`build`]) turns per-patient facts gathered by the
//! database layer into the boxes; every box keeps the ids of the patients it counts,
//! so a screen can list exactly the patients behind a number. [`svg`] draws the flow
//! as a hand-written SVG (no browser or drawing library needed). Pure: no I/O.

use super::eligibility::{Criterion, Decision};
use serde::Serialize;
use std::fmt::Write;

/// A step of the main flow, or a side box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Assessed,
    Excluded,
    Pending,
    Eligible,
    Imaged,
    Read,
    Adjudicated,
    Predicted,
    Analysed,
}

impl Step {
    pub const ALL: [Step; 9] = [
        Step::Assessed,
        Step::Excluded,
        Step::Pending,
        Step::Eligible,
        Step::Imaged,
        Step::Read,
        Step::Adjudicated,
        Step::Predicted,
        Step::Analysed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Step::Assessed => "assessed",
            Step::Excluded => "excluded",
            Step::Pending => "pending",
            Step::Eligible => "eligible",
            Step::Imaged => "imaged",
            Step::Read => "read",
            Step::Adjudicated => "adjudicated",
            Step::Predicted => "predicted",
            Step::Analysed => "analysed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Step::Assessed => "Assessed for eligibility",
            Step::Excluded => "Excluded (ineligible)",
            Step::Pending => "Screening pending (criteria unknown)",
            Step::Eligible => "Eligible",
            Step::Imaged => "Imaged (an image in the study's store)",
            Step::Read => "Read (all reads in on a case)",
            Step::Adjudicated => "Final grade (consensus or adjudicated)",
            Step::Predicted => "Model prediction",
            Step::Analysed => "Analysed (final grade and model, same case)",
        }
    }
}

/// Which box: a step, or the exclusions for one criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BoxKey {
    Step(Step),
    ExcludedBy(Criterion),
}

impl BoxKey {
    /// `eligible`, `excluded_I4`, ...
    pub fn code(self) -> String {
        match self {
            BoxKey::Step(s) => s.code().to_string(),
            BoxKey::ExcludedBy(c) => format!("excluded_{}", c.code()),
        }
    }

    pub fn label(self) -> String {
        match self {
            BoxKey::Step(s) => s.label().to_string(),
            BoxKey::ExcludedBy(c) => {
                let verb = if c.is_inclusion() {
                    "not met"
                } else {
                    "applies"
                };
                format!("{} {verb}: {}", c.code(), c.title())
            }
        }
    }

    pub fn parse(s: &str) -> Result<BoxKey, String> {
        let t = s.trim();
        if let Some(step) = Step::ALL.into_iter().find(|x| x.code() == t.to_lowercase()) {
            return Ok(BoxKey::Step(step));
        }
        if let Some(c) = t
            .strip_prefix("excluded_")
            .or_else(|| t.strip_prefix("EXCLUDED_"))
        {
            return c.parse::<Criterion>().map(BoxKey::ExcludedBy);
        }
        Err(format!(
            "unknown CONSORT box '{t}' (expected {} or excluded_I1 ... excluded_E5)",
            Step::ALL.map(|s| s.code()).join(", ")
        ))
    }
}

impl Serialize for BoxKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.code())
    }
}

/// What the database knows of one patient, for the flow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowFacts {
    pub patient_id: i64,
    pub decision: Option<Decision>,
    /// The criteria that make the patient ineligible.
    pub reasons: Vec<Criterion>,
    /// An image of the patient is in the store.
    pub imaged: bool,
    /// A reading case of the patient has all its reads in (waiting for adjudication or final).
    pub read: bool,
    /// A case of the patient has a final grade.
    pub adjudicated: bool,
    /// The model predicted on an image of the patient.
    pub predicted: bool,
    /// One case of the patient has both a final grade and a model prediction.
    pub analysed: bool,
}

/// One box of the diagram. `patients` are database ids (never shown or exported:
/// the screens turn them into study IDs); JSON carries the count only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsortBox {
    pub key: BoxKey,
    pub label: String,
    pub count: u64,
    #[serde(skip)]
    pub patients: Vec<i64>,
}

/// The whole flow: the main steps in order, the exclusions per criterion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consort {
    pub boxes: Vec<ConsortBox>,
    /// The boxes of the criteria that excluded at least one patient (a patient with
    /// several reasons counts under each).
    pub excluded_by: Vec<ConsortBox>,
}

impl Consort {
    /// The box of a key, if it is in the diagram (a criterion nobody failed is not).
    pub fn get(&self, key: BoxKey) -> Option<&ConsortBox> {
        self.boxes
            .iter()
            .chain(self.excluded_by.iter())
            .find(|b| b.key == key)
    }

    /// The count of a step.
    pub fn count(&self, step: Step) -> u64 {
        self.get(BoxKey::Step(step)).map(|b| b.count).unwrap_or(0)
    }
}

/// Builds the flow. Each step of the main column is a subset of the one above it:
/// imaged counts eligible patients with an image, read counts those of the imaged
/// with a read case, and so on, so the boxes always narrow down.
pub fn build(facts: &[FlowFacts]) -> Consort {
    let mut lists: Vec<(Step, Vec<i64>)> = Step::ALL.iter().map(|s| (*s, Vec::new())).collect();
    let mut push = |s: Step, id: i64| {
        if let Some((_, v)) = lists.iter_mut().find(|(x, _)| *x == s) {
            v.push(id);
        }
    };
    let mut by_criterion: Vec<(Criterion, Vec<i64>)> =
        Criterion::ALL.iter().map(|c| (*c, Vec::new())).collect();
    let mut sorted: Vec<&FlowFacts> = facts.iter().collect();
    sorted.sort_by_key(|f| f.patient_id);
    for f in sorted {
        let id = f.patient_id;
        push(Step::Assessed, id);
        match f.decision {
            Some(Decision::Ineligible) => {
                push(Step::Excluded, id);
                for c in &f.reasons {
                    if let Some((_, v)) = by_criterion.iter_mut().find(|(x, _)| x == c)
                        && v.last() != Some(&id)
                    {
                        v.push(id);
                    }
                }
            }
            Some(Decision::Pending) | None => push(Step::Pending, id),
            Some(Decision::Eligible) => {
                push(Step::Eligible, id);
                let chain = [
                    (Step::Imaged, f.imaged),
                    (Step::Read, f.read),
                    (Step::Adjudicated, f.adjudicated),
                    (Step::Predicted, f.predicted),
                    (Step::Analysed, f.analysed),
                ];
                for (step, yes) in chain {
                    if !yes {
                        break;
                    }
                    push(step, id);
                }
            }
        }
    }
    let boxes = lists
        .into_iter()
        .map(|(s, patients)| ConsortBox {
            key: BoxKey::Step(s),
            label: s.label().to_string(),
            count: patients.len() as u64,
            patients,
        })
        .collect();
    let excluded_by = by_criterion
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(c, patients)| ConsortBox {
            key: BoxKey::ExcludedBy(c),
            label: BoxKey::ExcludedBy(c).label(),
            count: patients.len() as u64,
            patients,
        })
        .collect();
    Consort { boxes, excluded_by }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: i32 = 910;
const MAIN_X: i32 = 30;
const MAIN_W: i32 = 380;
const BOX_H: i32 = 52;
const GAP: i32 = 34;
const SIDE_X: i32 = 440;
const SIDE_W: i32 = 450;
const LINE: i32 = 16;

fn main_box(out: &mut String, y: i32, label: &str, count: u64, key: &str) {
    let cx = MAIN_X + MAIN_W / 2;
    let _ = writeln!(
        out,
        r##"<g id="box-{key}"><rect x="{MAIN_X}" y="{y}" width="{MAIN_W}" height="{BOX_H}" rx="4" fill="#ffffff" stroke="#1f3b57" stroke-width="1.5"/><text x="{cx}" y="{}" text-anchor="middle" font-size="13">{}</text><text x="{cx}" y="{}" text-anchor="middle" font-size="15" font-weight="bold">n = {count}</text></g>"##,
        y + 20,
        esc(label),
        y + 41
    );
}

fn arrow_down(out: &mut String, y1: i32, y2: i32) {
    let x = MAIN_X + MAIN_W / 2;
    let _ = writeln!(
        out,
        r##"<line x1="{x}" y1="{y1}" x2="{x}" y2="{}" stroke="#1f3b57" stroke-width="1.5"/><polygon points="{},{} {},{} {x},{y2}" fill="#1f3b57"/>"##,
        y2 - 6,
        x - 5,
        y2 - 7,
        x + 5,
        y2 - 7
    );
}

fn arrow_right(out: &mut String, y: i32) {
    let x1 = MAIN_X + MAIN_W / 2;
    let x2 = SIDE_X;
    let _ = writeln!(
        out,
        r##"<line x1="{x1}" y1="{y}" x2="{}" y2="{y}" stroke="#1f3b57" stroke-width="1.5"/><polygon points="{},{} {},{} {x2},{y}" fill="#1f3b57"/>"##,
        x2 - 6,
        x2 - 7,
        y - 5,
        x2 - 7,
        y + 5
    );
}

/// The flow as a standalone SVG document (opens in any browser). Every count is
/// written as text (`n = 123`), so a reader of the file finds the same numbers as
/// `marrow export consort --format json`.
pub fn svg(c: &Consort, title: &str) -> String {
    let mut body = String::new();
    let mut y = 56;
    main_box(
        &mut body,
        y,
        Step::Assessed.label(),
        c.count(Step::Assessed),
        "assessed",
    );
    let top_bottom = y + BOX_H;
    // Side boxes: excluded (with its criteria), then pending.
    let mut sy = top_bottom + GAP / 2;
    let several = !c.excluded_by.is_empty();
    let excl_h = 44 + LINE * (c.excluded_by.len() as i32 + i32::from(several));
    let _ = writeln!(
        body,
        r##"<g id="box-excluded"><rect x="{SIDE_X}" y="{sy}" width="{SIDE_W}" height="{excl_h}" rx="4" fill="#fff7f0" stroke="#9a4a12" stroke-width="1.5"/><text x="{}" y="{}" font-size="13">{}</text><text x="{}" y="{}" font-size="15" font-weight="bold">n = {}</text>"##,
        SIDE_X + 10,
        sy + 18,
        esc(Step::Excluded.label()),
        SIDE_X + 10,
        sy + 36,
        c.count(Step::Excluded)
    );
    for (i, b) in c.excluded_by.iter().enumerate() {
        let _ = writeln!(
            body,
            r##"<text id="box-{}" x="{}" y="{}" font-size="11">{}: n = {}</text>"##,
            b.key.code(),
            SIDE_X + 16,
            sy + 54 + LINE * i as i32,
            esc(&b.label),
            b.count
        );
    }
    if several {
        let _ = writeln!(
            body,
            r##"<text x="{}" y="{}" font-size="10" font-style="italic" fill="#555555">(a patient with several reasons counts under each)</text>"##,
            SIDE_X + 16,
            sy + 54 + LINE * c.excluded_by.len() as i32
        );
    }
    body.push_str("</g>\n");
    arrow_right(&mut body, sy + 26);
    sy += excl_h + 14;
    let _ = writeln!(
        body,
        r##"<g id="box-pending"><rect x="{SIDE_X}" y="{sy}" width="{SIDE_W}" height="44" rx="4" fill="#f6f6f6" stroke="#666666" stroke-width="1.5" stroke-dasharray="4 3"/><text x="{}" y="{}" font-size="13">{}</text><text x="{}" y="{}" font-size="15" font-weight="bold">n = {}</text></g>"##,
        SIDE_X + 10,
        sy + 18,
        esc(Step::Pending.label()),
        SIDE_X + 10,
        sy + 36,
        c.count(Step::Pending)
    );
    arrow_right(&mut body, sy + 22);
    sy += 44;
    y = (sy + GAP / 2).max(top_bottom + 2 * GAP);
    arrow_down(&mut body, top_bottom, y);
    let chain = [
        Step::Eligible,
        Step::Imaged,
        Step::Read,
        Step::Adjudicated,
        Step::Predicted,
        Step::Analysed,
    ];
    for (i, s) in chain.iter().enumerate() {
        if i > 0 {
            arrow_down(&mut body, y - GAP, y);
        }
        main_box(&mut body, y, s.label(), c.count(*s), s.code());
        y += BOX_H + GAP;
    }
    let h = y - GAP + 24;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif" fill="#1a1a1a">
<rect x="0" y="0" width="{W}" height="{h}" fill="#ffffff"/>
<text x="{}" y="30" font-size="17" font-weight="bold">{}</text>"##,
        MAIN_X,
        esc(title)
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: i64, d: Decision) -> FlowFacts {
        FlowFacts {
            patient_id: id,
            decision: Some(d),
            ..Default::default()
        }
    }

    #[test]
    fn boxes_narrow_down_and_keep_their_patients() {
        let mut facts = vec![
            f(1, Decision::Eligible),
            f(2, Decision::Eligible),
            f(3, Decision::Eligible),
            FlowFacts {
                reasons: vec![Criterion::I1, Criterion::E3],
                ..f(4, Decision::Ineligible)
            },
            FlowFacts {
                reasons: vec![Criterion::E3],
                ..f(5, Decision::Ineligible)
            },
            f(6, Decision::Pending),
        ];
        facts[0].imaged = true;
        facts[0].read = true;
        facts[0].adjudicated = true;
        facts[0].predicted = true;
        facts[0].analysed = true;
        facts[1].imaged = true;
        // not imaged: a prediction alone does not carry the patient down the flow
        facts[2].predicted = true;
        let c = build(&facts);
        assert_eq!(c.count(Step::Assessed), 6);
        assert_eq!(c.count(Step::Excluded), 2);
        assert_eq!(c.count(Step::Pending), 1);
        assert_eq!(c.count(Step::Eligible), 3);
        assert_eq!(c.count(Step::Imaged), 2);
        assert_eq!(c.count(Step::Read), 1);
        assert_eq!(c.count(Step::Predicted), 1);
        assert_eq!(c.count(Step::Analysed), 1);
        assert_eq!(
            c.count(Step::Assessed),
            c.count(Step::Excluded) + c.count(Step::Pending) + c.count(Step::Eligible)
        );
        let e3 = c.get(BoxKey::ExcludedBy(Criterion::E3)).unwrap();
        assert_eq!((e3.count, e3.patients.clone()), (2, vec![4, 5]));
        assert_eq!(
            c.get(BoxKey::ExcludedBy(Criterion::I1)).unwrap().patients,
            vec![4]
        );
        assert!(c.get(BoxKey::ExcludedBy(Criterion::I4)).is_none());
        for b in c.boxes.iter().chain(&c.excluded_by) {
            assert_eq!(b.count as usize, b.patients.len(), "{:?}", b.key);
        }
        assert_eq!(
            c.get(BoxKey::Step(Step::Imaged)).unwrap().patients,
            vec![1, 2]
        );
    }

    #[test]
    fn keys_round_trip() {
        for s in Step::ALL {
            assert_eq!(BoxKey::parse(s.code()).unwrap(), BoxKey::Step(s));
        }
        assert_eq!(
            BoxKey::parse("excluded_e4").unwrap(),
            BoxKey::ExcludedBy(Criterion::E4)
        );
        assert_eq!(BoxKey::ExcludedBy(Criterion::I4).code(), "excluded_I4");
        assert!(BoxKey::parse("nope").is_err());
    }

    #[test]
    fn json_has_counts_but_no_patient_ids() {
        let c = build(&[f(41, Decision::Eligible)]);
        let j = serde_json::to_string(&c).unwrap();
        assert!(j.contains("\"key\":\"eligible\""), "{j}");
        assert!(!j.contains("41"), "{j}");
    }

    #[test]
    fn svg_writes_every_count_and_escapes_text() {
        let mut facts: Vec<FlowFacts> = (1..=12).map(|i| f(i, Decision::Eligible)).collect();
        facts.push(FlowFacts {
            reasons: vec![Criterion::E2],
            ..f(13, Decision::Ineligible)
        });
        let c = build(&facts);
        let s = svg(&c, "Flow <A&B>");
        assert!(s.starts_with("<?xml"));
        assert!(s.contains("n = 13"), "assessed");
        assert!(s.contains("n = 12"), "eligible");
        assert!(s.contains("E2 applies: Bone tumour or systemic malignancy: n = 1"));
        assert!(s.contains("Flow &lt;A&amp;B&gt;"));
        assert!(s.trim_end().ends_with("</svg>"));
    }
}
