//! Blinded reading: what a read records (KL grade per knee or "not assessable",
//! optional OARSI scores, OP impression, confidence), how it is checked, and the
//! disagreement rules that turn the reads of a case into either a consensus final
//! grade or a case for adjudication. Pure: no database, no terminal.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The Kellgren-Lawrence grades, as the read and adjudication screens show them
/// beside the image (PROTOCOL.md).
pub const KL_REFERENCE: [(u8, &str); 5] = [
    (0, "none"),
    (
        1,
        "doubtful joint-space narrowing (JSN), possible osteophytic lipping",
    ),
    (2, "definite osteophytes, possible JSN"),
    (
        3,
        "moderate multiple osteophytes, definite JSN, some sclerosis, possible bone-end deformity",
    ),
    (
        4,
        "large osteophytes, marked JSN, severe sclerosis, definite deformity",
    ),
];

/// Radiographic OA: KL at or above this grade.
pub const KL_OA_THRESHOLD: u8 = 2;

/// What a case is: one knee of a patient (KL grade) or the patient (OP stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
    /// The patient as a whole: the OP impression / stage.
    Patient,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::Left, Side::Right, Side::Patient];

    pub fn code(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
            Side::Patient => "patient",
        }
    }

    /// Whether the case is a knee (graded with KL).
    pub fn is_knee(self) -> bool {
        matches!(self, Side::Left | Side::Right)
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "left" | "l" => Ok(Side::Left),
            "right" | "r" => Ok(Side::Right),
            "patient" | "p" => Ok(Side::Patient),
            other => Err(format!(
                "unknown side '{other}' (expected left, right or patient)"
            )),
        }
    }
}

/// A reader's impression of bone density from the image (or an adjudicated OP stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpImpression {
    Normal,
    Osteopenia,
    Osteoporosis,
}

impl OpImpression {
    pub const ALL: [OpImpression; 3] = [
        OpImpression::Normal,
        OpImpression::Osteopenia,
        OpImpression::Osteoporosis,
    ];

    pub fn code(self) -> &'static str {
        match self {
            OpImpression::Normal => "normal",
            OpImpression::Osteopenia => "osteopenia",
            OpImpression::Osteoporosis => "osteoporosis",
        }
    }
}

impl fmt::Display for OpImpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for OpImpression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.trim().to_ascii_lowercase();
        OpImpression::ALL
            .into_iter()
            .find(|o| o.code() == l)
            .ok_or_else(|| {
                format!("unknown OP impression '{l}' (expected normal, osteopenia or osteoporosis)")
            })
    }
}

/// The grade of a read or of a final decision: a value, or "not assessable" with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade<T> {
    Value(T),
    NotAssessable(String),
}

impl<T: Copy> Grade<T> {
    pub fn value(&self) -> Option<T> {
        match self {
            Grade::Value(v) => Some(*v),
            Grade::NotAssessable(_) => None,
        }
    }
}

/// OARSI atlas scores (0-3), each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Oarsi {
    pub jsn_medial: Option<u8>,
    pub jsn_lateral: Option<u8>,
    pub osteophyte_medial: Option<u8>,
    pub osteophyte_lateral: Option<u8>,
}

impl Oarsi {
    pub fn is_empty(&self) -> bool {
        *self == Oarsi::default()
    }
}

/// What one reader records for one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadInput {
    /// Knee cases: the KL grade (0-4) or "not assessable". Patient cases: `None`
    /// (the grade is the OP impression), unless the image is not assessable.
    pub kl: Option<Grade<u8>>,
    pub oarsi: Oarsi,
    /// The OP impression: optional on a knee case, the grade of a patient case.
    pub op_impression: Option<OpImpression>,
    /// 1 (unsure) to 5 (certain); `None` only for reads imported from before marrow.
    pub confidence: Option<u8>,
}

/// A read in words: "KL 2, JSN medial 1, confidence 4".
pub fn read_words(r: &ReadInput) -> String {
    let mut parts = Vec::new();
    match &r.kl {
        Some(Grade::Value(k)) => parts.push(format!("KL {k}")),
        Some(Grade::NotAssessable(why)) => parts.push(format!("not assessable ({why})")),
        None => {}
    }
    let o = &r.oarsi;
    for (name, v) in [
        ("JSN medial", o.jsn_medial),
        ("JSN lateral", o.jsn_lateral),
        ("osteophyte medial", o.osteophyte_medial),
        ("osteophyte lateral", o.osteophyte_lateral),
    ] {
        if let Some(v) = v {
            parts.push(format!("{name} {v}"));
        }
    }
    if let Some(op) = r.op_impression {
        parts.push(format!("OP {op}"));
    }
    if let Some(c) = r.confidence {
        parts.push(format!("confidence {c}"));
    }
    parts.join(", ")
}

impl ReadInput {
    /// Whether the reader called the image not assessable (and why).
    pub fn not_assessable(&self) -> Option<&str> {
        match &self.kl {
            Some(Grade::NotAssessable(r)) => Some(r),
            _ => None,
        }
    }

    /// Checks a read of a case of `side`. `imported` relaxes the confidence (old
    /// reads have none).
    pub fn validate(&self, side: Side, imported: bool) -> Result<(), String> {
        match &self.kl {
            Some(Grade::Value(k)) if *k > 4 => {
                return Err(format!("KL grade {k} is outside 0-4"));
            }
            Some(Grade::Value(_)) if !side.is_knee() => {
                return Err(
                    "a patient (OP) case has no KL grade: give the OP impression, or not assessable"
                        .into(),
                );
            }
            Some(Grade::NotAssessable(r)) if r.trim().is_empty() => {
                return Err("\"not assessable\" needs a reason".into());
            }
            None if side.is_knee() => {
                return Err(format!(
                    "the {side} knee needs a KL grade (0-4) or \"not assessable\" with a reason"
                ));
            }
            _ => {}
        }
        if side == Side::Patient && self.op_impression.is_none() && self.not_assessable().is_none()
        {
            return Err(
                "a patient (OP) case needs an OP impression (normal, osteopenia, osteoporosis) or \"not assessable\" with a reason"
                    .into(),
            );
        }
        if self.not_assessable().is_some() && !self.oarsi.is_empty() {
            return Err("OARSI scores cannot go with \"not assessable\"".into());
        }
        if !side.is_knee() && !self.oarsi.is_empty() {
            return Err("OARSI scores belong to a knee case".into());
        }
        for (name, v) in [
            ("JSN medial", self.oarsi.jsn_medial),
            ("JSN lateral", self.oarsi.jsn_lateral),
            ("osteophyte medial", self.oarsi.osteophyte_medial),
            ("osteophyte lateral", self.oarsi.osteophyte_lateral),
        ] {
            if let Some(v) = v
                && v > 3
            {
                return Err(format!("OARSI {name} score {v} is outside 0-3"));
            }
        }
        match self.confidence {
            Some(c) if !(1..=5).contains(&c) => Err(format!("confidence {c} is outside 1-5")),
            None if !imported => Err("a read needs a confidence from 1 to 5".into()),
            _ => Ok(()),
        }
    }
}

/// The `[reading]` section of the protocol file: how many reads a case needs and
/// which disagreements send it to adjudication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadingRules {
    /// Independent reads per case, each by a different reader.
    pub reads_per_case: u8,
    /// Adjudicate when two KL grades differ by this much or more (0: never for
    /// the difference alone).
    pub kl_difference: u8,
    /// Adjudicate when two KL grades fall on different sides of KL 2 (OA / no OA).
    pub kl_oa_split: bool,
    /// Adjudicate when two OP impressions differ.
    pub op_impression_differs: bool,
    /// Adjudicate when any reader says "not assessable".
    pub not_assessable: bool,
}

impl Default for ReadingRules {
    fn default() -> Self {
        ReadingRules {
            reads_per_case: 2,
            kl_difference: 1,
            kl_oa_split: true,
            op_impression_differs: true,
            not_assessable: true,
        }
    }
}

impl ReadingRules {
    /// Checks values a protocol file may hold.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=5).contains(&self.reads_per_case) {
            return Err(format!(
                "[reading] reads_per_case = {} is out of range (1 to 5)",
                self.reads_per_case
            ));
        }
        if self.kl_difference > 4 {
            return Err(format!(
                "[reading] kl_difference = {} is out of range (0 to 4; 0 turns the rule off)",
                self.kl_difference
            ));
        }
        Ok(())
    }
}

/// Why a case needs adjudication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Disagreement {
    KlDifference {
        grades: (u8, u8),
        difference: u8,
    },
    KlOaSplit {
        grades: (u8, u8),
    },
    OpImpressionDiffers {
        impressions: (OpImpression, OpImpression),
    },
    NotAssessable {
        reason: String,
    },
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disagreement::KlDifference { grades, difference } => write!(
                f,
                "KL grades {} and {} differ by {difference}",
                grades.0, grades.1
            ),
            Disagreement::KlOaSplit { grades } => write!(
                f,
                "KL grades {} and {} fall on different sides of KL {KL_OA_THRESHOLD} (OA / no OA)",
                grades.0, grades.1
            ),
            Disagreement::OpImpressionDiffers { impressions } => write!(
                f,
                "OP impressions {} and {} differ",
                impressions.0, impressions.1
            ),
            Disagreement::NotAssessable { reason } => {
                write!(f, "a reader found the image not assessable: {reason}")
            }
        }
    }
}

/// The grade the reads agree on (a consensus final).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalGrade {
    /// Knee cases: the final KL grade or not assessable. Patient cases: `None`,
    /// unless not assessable.
    pub kl: Option<Grade<u8>>,
    pub op_stage: Option<OpImpression>,
}

/// What the rules make of the reads of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Fewer reads than the protocol asks for.
    Incomplete {
        have: usize,
        need: usize,
    },
    Adjudicate {
        reasons: Vec<Disagreement>,
    },
    Consensus {
        grade: FinalGrade,
    },
}

/// The middle value (the higher of the two middles for an even count: with two
/// reads the more severe grade, when the rules let a difference through).
pub(crate) fn median<T: Ord + Copy>(mut v: Vec<T>) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    Some(v[v.len() / 2])
}

/// Applies the disagreement rules to the current reads of a case.
pub fn evaluate(rules: &ReadingRules, side: Side, reads: &[ReadInput]) -> Outcome {
    let need = rules.reads_per_case.max(1) as usize;
    if reads.len() < need {
        return Outcome::Incomplete {
            have: reads.len(),
            need,
        };
    }
    let mut reasons = Vec::new();
    if rules.not_assessable
        && let Some(r) = reads.iter().find_map(|r| r.not_assessable())
    {
        reasons.push(Disagreement::NotAssessable {
            reason: r.to_string(),
        });
    }
    let kls: Vec<u8> = reads
        .iter()
        .filter_map(|r| r.kl.as_ref().and_then(|g| g.value()))
        .collect();
    // The widest pair decides both KL rules.
    if let (Some(&lo), Some(&hi)) = (kls.iter().min(), kls.iter().max()) {
        let first = kls[0];
        let pair = if first == lo { (lo, hi) } else { (hi, lo) };
        if rules.kl_difference > 0 && hi - lo >= rules.kl_difference {
            reasons.push(Disagreement::KlDifference {
                grades: pair,
                difference: hi - lo,
            });
        }
        if rules.kl_oa_split && lo < KL_OA_THRESHOLD && hi >= KL_OA_THRESHOLD {
            reasons.push(Disagreement::KlOaSplit { grades: pair });
        }
    }
    let ops: Vec<OpImpression> = reads.iter().filter_map(|r| r.op_impression).collect();
    if rules.op_impression_differs
        && let Some(other) = ops.iter().find(|o| **o != ops[0])
    {
        reasons.push(Disagreement::OpImpressionDiffers {
            impressions: (ops[0], *other),
        });
    }
    if !reasons.is_empty() {
        return Outcome::Adjudicate { reasons };
    }
    let kl = if side.is_knee() {
        Some(match median(kls) {
            Some(k) => Grade::Value(k),
            None => Grade::NotAssessable(
                reads
                    .iter()
                    .find_map(|r| r.not_assessable())
                    .unwrap_or("not assessable")
                    .to_string(),
            ),
        })
    } else if ops.is_empty() {
        Some(Grade::NotAssessable(
            reads
                .iter()
                .find_map(|r| r.not_assessable())
                .unwrap_or("not assessable")
                .to_string(),
        ))
    } else {
        None
    };
    Outcome::Consensus {
        grade: FinalGrade {
            kl,
            op_stage: median(ops),
        },
    }
}

/// What the study knows of one of a patient's images: enough to decide which case
/// it can grade ([`image_fits_case`]) and whether a model may read it
/// ([`image_fits_model`]). Every field as stored at import (`db/imaging.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// Modality (0008,0060): DX, CR, CT, MR, OT, SC...
    pub modality: Option<String>,
    /// BodyPartExamined, e.g. KNEE.
    pub body_part: Option<String>,
    /// ImageLaterality (else Laterality): L, R, B (both) or empty.
    pub laterality: Option<String>,
    /// ViewPosition (0018,5101): AP, PA, LAT...
    pub view_position: Option<String>,
    /// SOP Class UID: a secondary capture (1.2.840.10008.5.1.4.1.1.7...) is a screenshot.
    pub sop_class_uid: Option<String>,
    /// Why the image waits for a burned-in text review, when it does.
    pub burned_in: Option<String>,
}

impl ImageFacts {
    fn is_knee(&self) -> bool {
        self.body_part
            .as_deref()
            .is_some_and(|b| b.to_ascii_uppercase().contains("KNEE"))
    }

    /// The knee(s) the image shows by its laterality: `Some(&[Left])`, `Some(&[Right])`,
    /// both for a bilateral film (B), `None` when it does not say (U, empty, missing).
    pub fn knees(&self) -> Option<&'static [Side]> {
        match norm(self.laterality.as_deref()?).as_str() {
            "L" | "LEFT" => Some(&[Side::Left]),
            "R" | "RIGHT" => Some(&[Side::Right]),
            "B" | "BOTH" | "BILATERAL" => Some(&[Side::Left, Side::Right]),
            _ => None,
        }
    }
}

/// Upper case, letters and digits only: `l-spine` and `L SPINE` are `LSPINE`.
fn norm(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The modalities a case is graded on: projection radiographs.
pub const RADIOGRAPH_MODALITIES: [&str; 2] = ["DX", "CR"];
/// BodyPartExamined of a knee case's images (compared upper case, letters and digits
/// only). A long-leg film (LEG, LOWER LIMB, EXTREMITY) is not a knee film: it is
/// listed apart.
pub const KNEE_BODY_PARTS: [&str; 2] = ["KNEE", "KNEEJOINT"];
/// BodyPartExamined of a patient (OP) case's images: hip, pelvis and lumbar spine.
pub const OP_BODY_PARTS: [&str; 5] = ["HIP", "PELVIS", "LSPINE", "LUMBARSPINE", "SPINE"];
/// SOP Class UID of Secondary Capture Image Storage; its multi-frame kin extend it.
const SECONDARY_CAPTURE_CLASS: &str = "1.2.840.10008.5.1.4.1.1.7";

/// What a model's card says it reads: the modalities, body parts and views
/// (compared upper case, letters and digits only). An empty list of views accepts
/// any view, stated or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInputs {
    pub modalities: Vec<String>,
    pub body_parts: Vec<String>,
    #[serde(default)]
    pub views: Vec<String>,
}

impl ImageInputs {
    /// The shipped KL model's: DX and CR knee radiographs, AP or PA.
    pub fn knee_default() -> ImageInputs {
        ImageInputs {
            modalities: RADIOGRAPH_MODALITIES.map(String::from).to_vec(),
            body_parts: vec!["KNEE".into()],
            views: vec!["AP".into(), "PA".into()],
        }
    }

    /// The shipped OP model's: DX and CR hip and pelvis radiographs, AP.
    pub fn op_default() -> ImageInputs {
        ImageInputs {
            modalities: RADIOGRAPH_MODALITIES.map(String::from).to_vec(),
            body_parts: vec!["HIP".into(), "PELVIS".into()],
            views: vec!["AP".into()],
        }
    }

    /// Checks the lists: none empty but the views, no empty value.
    pub fn validate(&self) -> Result<(), String> {
        for (name, list, may_be_empty) in [
            ("modalities", &self.modalities, false),
            ("body_parts", &self.body_parts, false),
            ("views", &self.views, true),
        ] {
            if list.is_empty() && !may_be_empty {
                return Err(format!(
                    "inputs.{name} is empty: the model would read nothing"
                ));
            }
            if let Some(v) = list.iter().find(|v| norm(v).is_empty()) {
                return Err(format!("inputs.{name} holds {v:?}, which names nothing"));
            }
        }
        Ok(())
    }
}

/// Why an image cannot grade a case, or may not be read by a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "misfit", rename_all = "snake_case")]
pub enum Misfit {
    /// Not one of the accepted modalities (CT, MR, OT, SC...; `None`: not stated).
    Modality {
        found: Option<String>,
        accepted: Vec<String>,
    },
    /// A secondary capture (a screenshot), whatever its modality says.
    SecondaryCapture,
    /// Flagged at import for a burned-in text review.
    BurnedInText { reason: String },
    /// Not a body part of the case (a hip on a knee case) or of the model.
    BodyPart {
        found: Option<String>,
        accepted: Vec<String>,
    },
    /// The other knee.
    OtherSide { image: Side, case: Side },
    /// A knee film whose laterality is not stated (or U).
    SideUnknown,
    /// Not a view the model reads (`None`: not stated).
    View {
        found: Option<String>,
        accepted: Vec<String>,
    },
    /// A bilateral film: it serves both knee cases, but a model reads one knee.
    Bilateral,
}

impl Misfit {
    /// A short label to count skipped images by: `CT`, `secondary capture`, `view LAT`...
    pub fn label(&self) -> String {
        let or = |v: &Option<String>, none: &str| v.clone().unwrap_or_else(|| none.to_string());
        match self {
            Misfit::Modality { found, .. } => or(found, "no modality"),
            Misfit::SecondaryCapture => "secondary capture".into(),
            Misfit::BurnedInText { .. } => "burned-in text".into(),
            Misfit::BodyPart { found, .. } => {
                format!("body part {}", or(found, "not stated"))
            }
            Misfit::OtherSide { image, .. } => format!("{image} knee"),
            Misfit::SideUnknown => "side unknown".into(),
            Misfit::View { found, .. } => format!("view {}", or(found, "not stated")),
            Misfit::Bilateral => "bilateral film".into(),
        }
    }
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| v.join(", ");
        match self {
            Misfit::Modality { found, accepted } => match found {
                Some(m) => write!(f, "modality {m}, not a radiograph ({})", list(accepted)),
                None => write!(f, "no modality stated ({} expected)", list(accepted)),
            },
            Misfit::SecondaryCapture => f.write_str("a secondary capture (screenshot)"),
            Misfit::BurnedInText { reason } => {
                write!(f, "flagged for a burned-in text review ({reason})")
            }
            Misfit::BodyPart { found, accepted } => match found {
                Some(b) => write!(f, "body part {b}, not {}", list(accepted)),
                None => write!(f, "body part not stated ({} expected)", list(accepted)),
            },
            Misfit::OtherSide { image, case } => {
                write!(f, "the {image} knee, not the {case}")
            }
            Misfit::SideUnknown => f.write_str("side unknown (no laterality L, R or B)"),
            Misfit::View { found, accepted } => match found {
                Some(v) => write!(f, "view {v}, the model reads {}", list(accepted)),
                None => write!(f, "view not stated, the model reads {}", list(accepted)),
            },
            Misfit::Bilateral => {
                f.write_str("a bilateral film: the model reads one knee per image")
            }
        }
    }
}

fn listed(value: Option<&str>, accepted: &[String]) -> bool {
    value.is_some_and(|v| {
        let v = norm(v);
        !v.is_empty() && accepted.iter().any(|a| norm(a) == v)
    })
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn kind_checks(
    img: &ImageFacts,
    modalities: &[String],
    body_parts: &[String],
) -> Result<(), Misfit> {
    if !listed(img.modality.as_deref(), modalities) {
        return Err(Misfit::Modality {
            found: img.modality.clone().filter(|m| !m.trim().is_empty()),
            accepted: modalities.to_vec(),
        });
    }
    let class = img.sop_class_uid.as_deref().unwrap_or("").trim();
    if class == SECONDARY_CAPTURE_CLASS || class.starts_with(&format!("{SECONDARY_CAPTURE_CLASS}."))
    {
        return Err(Misfit::SecondaryCapture);
    }
    if let Some(reason) = &img.burned_in {
        return Err(Misfit::BurnedInText {
            reason: reason.clone(),
        });
    }
    if !listed(img.body_part.as_deref(), body_parts) {
        return Err(Misfit::BodyPart {
            found: img.body_part.clone().filter(|b| !b.trim().is_empty()),
            accepted: body_parts.to_vec(),
        });
    }
    Ok(())
}

/// Whether an image can grade a case of `side`: a projection radiograph (DX, CR), not
/// a secondary capture, not waiting for a burned-in text review; for a knee case a
/// knee film of that side (ImageLaterality, else Laterality) or a bilateral one (B,
/// serving both knees); for a patient (OP) case a hip, pelvis or lumbar spine film.
/// Pure; the reasons are [`Misfit`].
pub fn image_fits_case(side: Side, img: &ImageFacts) -> Result<(), Misfit> {
    let (modalities, parts) = (
        owned(&RADIOGRAPH_MODALITIES),
        match side {
            Side::Left | Side::Right => owned(&KNEE_BODY_PARTS),
            Side::Patient => owned(&OP_BODY_PARTS),
        },
    );
    kind_checks(img, &modalities, &parts)?;
    if side.is_knee() {
        let knees = img.knees().ok_or(Misfit::SideUnknown)?;
        if !knees.contains(&side) {
            return Err(Misfit::OtherSide {
                image: knees[0],
                case: side,
            });
        }
    }
    Ok(())
}

/// The first case of the patient the image can grade, else why it fits none of them.
pub fn image_fits_any(sides: &[Side], img: &ImageFacts) -> Result<Side, Misfit> {
    let mut why = None;
    for &s in sides {
        match image_fits_case(s, img) {
            Ok(()) => return Ok(s),
            Err(e) => {
                why.get_or_insert(e);
            }
        }
    }
    Err(why.unwrap_or(Misfit::BodyPart {
        found: img.body_part.clone(),
        accepted: Vec::new(),
    }))
}

/// Whether a model whose card accepts `inputs` may read the image, and for which
/// case: a knee model (`knee`) the knee the film shows (L or R; a bilateral film is
/// refused), an OP model the patient. The image must also fit that case
/// ([`image_fits_case`]): a card can narrow what a case accepts, never widen it.
pub fn image_fits_model(
    inputs: &ImageInputs,
    knee: bool,
    img: &ImageFacts,
) -> Result<Side, Misfit> {
    kind_checks(img, &inputs.modalities, &inputs.body_parts)?;
    if !inputs.views.is_empty() && !listed(img.view_position.as_deref(), &inputs.views) {
        return Err(Misfit::View {
            found: img.view_position.clone().filter(|v| !v.trim().is_empty()),
            accepted: inputs.views.clone(),
        });
    }
    let side = if knee {
        match img.knees() {
            None => return Err(Misfit::SideUnknown),
            Some([one]) => *one,
            Some(_) => return Err(Misfit::Bilateral),
        }
    } else {
        Side::Patient
    };
    image_fits_case(side, img)?;
    Ok(side)
}

/// The knees the images show: the sides named when every image names one side
/// (L or R), both knees when any image is bilateral or does not say.
fn knee_sides(images: &[&ImageFacts]) -> Vec<Side> {
    if images.is_empty() {
        return Vec::new();
    }
    let mut sides = Vec::new();
    for i in images {
        match i
            .laterality
            .as_deref()
            .map(|l| l.trim().to_ascii_uppercase())
        {
            Some(l) if l == "L" => sides.push(Side::Left),
            Some(l) if l == "R" => sides.push(Side::Right),
            _ => return vec![Side::Left, Side::Right],
        }
    }
    sides.sort();
    sides.dedup();
    sides
}

/// The cases of an eligible patient with images: OA, a case per knee (left and
/// right; only the imaged knee when every knee image names one side); OP, one case
/// for the patient (the OP stage); CONTROL (neither OA nor OP: the negatives both
/// tasks need, read blinded among the others), a case per imaged knee and a patient
/// case when there is a hip, spine or other non-knee image. No images, no case.
pub fn case_sides(group: super::protocol::Group, images: &[ImageFacts]) -> Vec<Side> {
    use super::protocol::Group;
    if images.is_empty() {
        return Vec::new();
    }
    let knees: Vec<&ImageFacts> = images.iter().filter(|i| i.is_knee()).collect();
    match group {
        Group::Op => vec![Side::Patient],
        Group::Oa if knees.is_empty() => vec![Side::Left, Side::Right],
        Group::Oa => knee_sides(&knees),
        Group::Control => {
            let mut sides = knee_sides(&knees);
            if knees.len() < images.len() {
                sides.push(Side::Patient);
            }
            sides
        }
    }
}

/// Checks an adjudicator's final grade for a case of `side`.
pub fn validate_final(side: Side, f: &FinalGrade) -> Result<(), String> {
    match (&f.kl, side.is_knee()) {
        (Some(Grade::Value(k)), true) if *k > 4 => Err(format!("KL grade {k} is outside 0-4")),
        (Some(Grade::Value(_)), false) => {
            Err("a patient (OP) case has no KL grade: give the OP stage".into())
        }
        (Some(Grade::NotAssessable(r)), _) if r.trim().is_empty() => {
            Err("\"not assessable\" needs a reason".into())
        }
        (None, true) => Err(format!(
            "the final grade of the {side} knee needs a KL grade (0-4) or \"not assessable\""
        )),
        (None, false) if f.op_stage.is_none() => Err(
            "the final grade of a patient (OP) case needs an OP stage or \"not assessable\"".into(),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kl(k: u8) -> ReadInput {
        ReadInput {
            kl: Some(Grade::Value(k)),
            oarsi: Oarsi::default(),
            op_impression: None,
            confidence: Some(3),
        }
    }

    fn op(o: OpImpression) -> ReadInput {
        ReadInput {
            kl: None,
            oarsi: Oarsi::default(),
            op_impression: Some(o),
            confidence: Some(4),
        }
    }

    fn na(reason: &str) -> ReadInput {
        ReadInput {
            kl: Some(Grade::NotAssessable(reason.into())),
            oarsi: Oarsi::default(),
            op_impression: None,
            confidence: Some(2),
        }
    }

    fn rules() -> ReadingRules {
        ReadingRules::default()
    }

    fn consensus_kl(o: &Outcome) -> Option<u8> {
        match o {
            Outcome::Consensus { grade } => grade.kl.as_ref().and_then(|g| g.value()),
            _ => None,
        }
    }

    #[test]
    fn defaults_are_two_reads_and_every_rule_on() {
        let r = rules();
        assert_eq!(r.reads_per_case, 2);
        assert_eq!(r.kl_difference, 1);
        assert!(r.kl_oa_split && r.op_impression_differs && r.not_assessable);
        assert!(r.validate().is_ok());
        let bad = ReadingRules {
            reads_per_case: 0,
            ..rules()
        };
        assert!(bad.validate().is_err());
        let bad = ReadingRules {
            kl_difference: 5,
            ..rules()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn one_read_is_incomplete() {
        assert_eq!(
            evaluate(&rules(), Side::Left, &[kl(2)]),
            Outcome::Incomplete { have: 1, need: 2 }
        );
    }

    #[test]
    fn equal_kl_grades_are_a_consensus() {
        for k in 0..=4 {
            let o = evaluate(&rules(), Side::Right, &[kl(k), kl(k)]);
            assert_eq!(consensus_kl(&o), Some(k), "{o:?}");
        }
    }

    #[test]
    fn kl_difference_of_one_is_adjudicated_by_default() {
        // 2 vs 3: same side of KL 2, differ by one
        let o = evaluate(&rules(), Side::Left, &[kl(2), kl(3)]);
        assert_eq!(
            o,
            Outcome::Adjudicate {
                reasons: vec![Disagreement::KlDifference {
                    grades: (2, 3),
                    difference: 1
                }]
            }
        );
    }

    #[test]
    fn kl_difference_threshold_is_configurable_with_its_boundary() {
        let r = ReadingRules {
            kl_difference: 2,
            kl_oa_split: false,
            ..rules()
        };
        // difference 1 < 2: consensus, the more severe grade
        assert_eq!(
            consensus_kl(&evaluate(&r, Side::Left, &[kl(3), kl(2)])),
            Some(3)
        );
        // difference 2 == 2: adjudicate
        assert!(matches!(
            evaluate(&r, Side::Left, &[kl(1), kl(3)]),
            Outcome::Adjudicate { .. }
        ));
        // 0 turns the rule off
        let off = ReadingRules {
            kl_difference: 0,
            kl_oa_split: false,
            ..rules()
        };
        assert_eq!(
            consensus_kl(&evaluate(&off, Side::Left, &[kl(0), kl(4)])),
            Some(4)
        );
    }

    #[test]
    fn kl_oa_split_fires_across_kl_2_only() {
        let r = ReadingRules {
            kl_difference: 0,
            ..rules()
        };
        // 1 vs 2: different sides of KL 2
        assert_eq!(
            evaluate(&r, Side::Left, &[kl(1), kl(2)]),
            Outcome::Adjudicate {
                reasons: vec![Disagreement::KlOaSplit { grades: (1, 2) }]
            }
        );
        // 2 vs 4 and 0 vs 1: same side
        assert_eq!(
            consensus_kl(&evaluate(&r, Side::Left, &[kl(2), kl(4)])),
            Some(4)
        );
        assert_eq!(
            consensus_kl(&evaluate(&r, Side::Left, &[kl(0), kl(1)])),
            Some(1)
        );
        // with the defaults both KL rules are named
        let o = evaluate(&rules(), Side::Left, &[kl(1), kl(2)]);
        let Outcome::Adjudicate { reasons } = o else {
            panic!("{o:?}")
        };
        assert_eq!(reasons.len(), 2);
    }

    #[test]
    fn op_impressions_that_differ_are_adjudicated() {
        use OpImpression::*;
        let o = evaluate(&rules(), Side::Patient, &[op(Normal), op(Osteopenia)]);
        assert_eq!(
            o,
            Outcome::Adjudicate {
                reasons: vec![Disagreement::OpImpressionDiffers {
                    impressions: (Normal, Osteopenia)
                }]
            }
        );
        let o = evaluate(
            &rules(),
            Side::Patient,
            &[op(Osteoporosis), op(Osteoporosis)],
        );
        assert_eq!(
            o,
            Outcome::Consensus {
                grade: FinalGrade {
                    kl: None,
                    op_stage: Some(Osteoporosis)
                }
            }
        );
        let off = ReadingRules {
            op_impression_differs: false,
            ..rules()
        };
        assert!(matches!(
            evaluate(&off, Side::Patient, &[op(Normal), op(Osteoporosis)]),
            Outcome::Consensus { .. }
        ));
        // on a knee case an OP impression given by one reader only is no disagreement
        let mut a = kl(2);
        a.op_impression = Some(Osteopenia);
        let o = evaluate(&rules(), Side::Left, &[a, kl(2)]);
        assert_eq!(
            o,
            Outcome::Consensus {
                grade: FinalGrade {
                    kl: Some(Grade::Value(2)),
                    op_stage: Some(Osteopenia)
                }
            }
        );
    }

    #[test]
    fn not_assessable_by_one_reader_is_adjudicated() {
        let o = evaluate(&rules(), Side::Left, &[kl(2), na("rotated")]);
        assert_eq!(
            o,
            Outcome::Adjudicate {
                reasons: vec![Disagreement::NotAssessable {
                    reason: "rotated".into()
                }]
            }
        );
        // by both readers as well
        assert!(matches!(
            evaluate(&rules(), Side::Left, &[na("a"), na("b")]),
            Outcome::Adjudicate { .. }
        ));
        // with the rule off, the assessable read decides; both off: not assessable
        let off = ReadingRules {
            not_assessable: false,
            ..rules()
        };
        assert_eq!(
            consensus_kl(&evaluate(&off, Side::Left, &[kl(2), na("x")])),
            Some(2)
        );
        assert_eq!(
            evaluate(&off, Side::Left, &[na("blurred"), na("x")]),
            Outcome::Consensus {
                grade: FinalGrade {
                    kl: Some(Grade::NotAssessable("blurred".into())),
                    op_stage: None
                }
            }
        );
    }

    #[test]
    fn three_reads_use_the_widest_pair_and_the_median() {
        let r = ReadingRules {
            reads_per_case: 3,
            kl_difference: 2,
            kl_oa_split: false,
            ..rules()
        };
        assert_eq!(
            evaluate(&r, Side::Left, &[kl(2), kl(3)]),
            Outcome::Incomplete { have: 2, need: 3 }
        );
        assert_eq!(
            consensus_kl(&evaluate(&r, Side::Left, &[kl(2), kl(3), kl(2)])),
            Some(2)
        );
        assert!(matches!(
            evaluate(&r, Side::Left, &[kl(2), kl(3), kl(4)]),
            Outcome::Adjudicate { .. }
        ));
    }

    #[test]
    fn reads_are_validated() {
        assert!(kl(4).validate(Side::Left, false).is_ok());
        assert!(
            kl(5)
                .validate(Side::Left, false)
                .unwrap_err()
                .contains("0-4")
        );
        assert!(kl(2).validate(Side::Patient, false).is_err());
        assert!(
            op(OpImpression::Normal)
                .validate(Side::Patient, false)
                .is_ok()
        );
        assert!(
            op(OpImpression::Normal)
                .validate(Side::Left, false)
                .is_err()
        );
        assert!(
            na("")
                .validate(Side::Left, false)
                .unwrap_err()
                .contains("reason")
        );
        assert!(na("cut off").validate(Side::Patient, false).is_ok());
        let mut r = kl(2);
        r.confidence = Some(0);
        assert!(r.validate(Side::Left, false).unwrap_err().contains("1-5"));
        r.confidence = Some(6);
        assert!(r.validate(Side::Left, false).is_err());
        r.confidence = None;
        assert!(r.validate(Side::Left, false).is_err());
        assert!(r.validate(Side::Left, true).is_ok());
        let mut r = kl(2);
        r.oarsi.jsn_medial = Some(3);
        r.oarsi.osteophyte_lateral = Some(0);
        assert!(r.validate(Side::Left, false).is_ok());
        r.oarsi.jsn_lateral = Some(4);
        assert!(r.validate(Side::Left, false).unwrap_err().contains("0-3"));
        let mut n = na("x");
        n.oarsi.jsn_medial = Some(1);
        assert!(n.validate(Side::Left, false).is_err());
    }

    #[test]
    fn finals_are_validated() {
        let f = |kl, op| FinalGrade { kl, op_stage: op };
        assert!(validate_final(Side::Left, &f(Some(Grade::Value(3)), None)).is_ok());
        assert!(validate_final(Side::Left, &f(Some(Grade::Value(5)), None)).is_err());
        assert!(validate_final(Side::Left, &f(None, Some(OpImpression::Normal))).is_err());
        assert!(validate_final(Side::Patient, &f(None, Some(OpImpression::Normal))).is_ok());
        assert!(validate_final(Side::Patient, &f(Some(Grade::Value(1)), None)).is_err());
        assert!(validate_final(Side::Patient, &f(None, None)).is_err());
        assert!(
            validate_final(
                Side::Patient,
                &f(Some(Grade::NotAssessable("x".into())), None)
            )
            .is_ok()
        );
    }

    fn facts(modality: &str, part: &str, lat: &str, view: &str) -> ImageFacts {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        ImageFacts {
            modality: some(modality),
            body_part: some(part),
            laterality: some(lat),
            view_position: some(view),
            sop_class_uid: Some("1.2.840.10008.5.1.4.1.1.1.1".into()),
            burned_in: None,
        }
    }

    #[test]
    fn a_knee_case_takes_radiographs_of_its_knee_and_nothing_else() {
        use Side::*;
        let left_dx = facts("DX", "KNEE", "L", "PA");
        assert_eq!(image_fits_case(Left, &left_dx), Ok(()));
        assert_eq!(
            image_fits_case(Right, &left_dx),
            Err(Misfit::OtherSide {
                image: Left,
                case: Right
            })
        );
        assert_eq!(image_fits_case(Left, &facts("CR", "knee", "l", "")), Ok(()));
        // a bilateral film serves both knees
        let both = facts("DX", "KNEE", "B", "AP");
        assert_eq!(image_fits_case(Left, &both), Ok(()));
        assert_eq!(image_fits_case(Right, &both), Ok(()));
        // CT and MR slices of the knee, a screenshot, a flagged image, no side
        for (img, label) in [
            (facts("CT", "KNEE", "L", ""), "CT"),
            (facts("MR", "KNEE", "L", ""), "MR"),
            (facts("OT", "KNEE", "L", ""), "OT"),
            (facts("", "KNEE", "L", ""), "no modality"),
            (facts("DX", "HIP", "L", "AP"), "body part HIP"),
            (facts("DX", "LEG", "L", "AP"), "body part LEG"),
            (facts("DX", "KNEE", "", "AP"), "side unknown"),
            (facts("DX", "KNEE", "U", "AP"), "side unknown"),
        ] {
            let e = image_fits_case(Left, &img).unwrap_err();
            assert_eq!(e.label(), label, "{img:?}: {e}");
        }
        let mut sc = facts("DX", "KNEE", "L", "AP");
        sc.sop_class_uid = Some("1.2.840.10008.5.1.4.1.1.7.4".into());
        assert_eq!(image_fits_case(Left, &sc), Err(Misfit::SecondaryCapture));
        let mut flagged = facts("DX", "KNEE", "L", "AP");
        flagged.burned_in = Some("BurnedInAnnotation is YES".into());
        let e = image_fits_case(Left, &flagged).unwrap_err();
        assert!(e.to_string().contains("burned-in text"), "{e}");
        assert_eq!(
            image_fits_case(Left, &facts("CT", "KNEE", "R", ""))
                .unwrap_err()
                .to_string(),
            "modality CT, not a radiograph (DX, CR)"
        );
    }

    #[test]
    fn a_patient_case_takes_hip_pelvis_and_spine_radiographs() {
        for part in ["HIP", "PELVIS", "LSPINE", "L-SPINE", "L SPINE", "spine"] {
            assert_eq!(
                image_fits_case(Side::Patient, &facts("DX", part, "", "AP")),
                Ok(()),
                "{part}"
            );
        }
        for part in ["KNEE", "CHEST", "CSPINE", ""] {
            assert!(matches!(
                image_fits_case(Side::Patient, &facts("DX", part, "", "AP")),
                Err(Misfit::BodyPart { .. })
            ));
        }
        assert!(matches!(
            image_fits_case(Side::Patient, &facts("CT", "LSPINE", "", "")),
            Err(Misfit::Modality { .. })
        ));
    }

    #[test]
    fn a_model_reads_only_what_its_card_names_and_its_case_takes() {
        use Side::*;
        let kl = ImageInputs::knee_default();
        assert_eq!(
            image_fits_model(&kl, true, &facts("DX", "KNEE", "L", "PA")),
            Ok(Left)
        );
        assert_eq!(
            image_fits_model(&kl, true, &facts("CR", "KNEE", "R", "AP")),
            Ok(Right)
        );
        for (img, label) in [
            (facts("MR", "KNEE", "L", ""), "MR"),
            (facts("CT", "KNEE", "R", ""), "CT"),
            (facts("DX", "KNEE", "R", "LAT"), "view LAT"),
            (facts("DX", "KNEE", "R", ""), "view not stated"),
            (facts("DX", "KNEE", "B", "AP"), "bilateral film"),
            (facts("DX", "KNEE", "", "AP"), "side unknown"),
            (facts("DX", "HIP", "L", "AP"), "body part HIP"),
        ] {
            assert_eq!(
                image_fits_model(&kl, true, &img).map_err(|e| e.label()),
                Err(label.to_string()),
                "{img:?}"
            );
        }
        let op = ImageInputs::op_default();
        assert_eq!(
            image_fits_model(&op, false, &facts("DX", "HIP", "L", "AP")),
            Ok(Patient)
        );
        // the OP case takes the spine, the shipped OP model does not read it
        assert!(matches!(
            image_fits_model(&op, false, &facts("DX", "LSPINE", "", "AP")),
            Err(Misfit::BodyPart { .. })
        ));
        // a card cannot widen what a case takes
        let wide = ImageInputs {
            modalities: vec!["DX".into(), "MR".into()],
            body_parts: vec!["KNEE".into(), "LEG".into()],
            views: Vec::new(),
        };
        assert!(image_fits_model(&wide, true, &facts("MR", "KNEE", "L", "")).is_err());
        assert!(image_fits_model(&wide, true, &facts("DX", "LEG", "L", "")).is_err());
        assert_eq!(
            image_fits_model(&wide, true, &facts("DX", "KNEE", "L", "")),
            Ok(Left)
        );
        assert!(wide.validate().is_ok());
        let empty = ImageInputs {
            modalities: Vec::new(),
            ..wide
        };
        assert!(empty.validate().unwrap_err().contains("modalities"));
    }

    #[test]
    fn cases_follow_the_cohort_and_the_images() {
        use crate::domain::protocol::Group;
        let img = |part: &str, lat: &str| ImageFacts {
            body_part: Some(part.into()),
            laterality: (!lat.is_empty()).then(|| lat.to_string()),
            ..ImageFacts::default()
        };
        use Side::*;
        assert_eq!(case_sides(Group::Oa, &[]), Vec::<Side>::new());
        assert_eq!(case_sides(Group::Op, &[]), Vec::<Side>::new());
        assert_eq!(case_sides(Group::Oa, &[img("KNEE", "")]), vec![Left, Right]);
        assert_eq!(
            case_sides(Group::Oa, &[img("KNEE", "B")]),
            vec![Left, Right]
        );
        assert_eq!(case_sides(Group::Oa, &[img("KNEE", "R")]), vec![Right]);
        assert_eq!(
            case_sides(Group::Oa, &[img("KNEE", "R"), img("knee", "L")]),
            vec![Left, Right]
        );
        // an OA patient whose image does not say it is a knee: both knees
        assert_eq!(case_sides(Group::Oa, &[img("HIP", "L")]), vec![Left, Right]);
        assert_eq!(case_sides(Group::Op, &[img("HIP", "L")]), vec![Patient]);
        assert_eq!(case_sides(Group::Op, &[img("KNEE", "L")]), vec![Patient]);
        assert_eq!(
            case_sides(Group::Control, &[img("LSPINE", "")]),
            vec![Patient]
        );
        assert_eq!(
            case_sides(Group::Control, &[img("KNEE", "L"), img("HIP", "R")]),
            vec![Left, Patient]
        );
    }

    #[test]
    fn sides_and_impressions_parse() {
        assert_eq!("Left".parse::<Side>().unwrap(), Side::Left);
        assert_eq!("patient".parse::<Side>().unwrap(), Side::Patient);
        assert!("both".parse::<Side>().is_err());
        assert_eq!(
            " Osteopenia".parse::<OpImpression>().unwrap(),
            OpImpression::Osteopenia
        );
        assert!("osteo".parse::<OpImpression>().is_err());
        assert_eq!(KL_REFERENCE.len(), 5);
    }
}
