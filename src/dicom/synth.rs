//! Synthetic radiograph phantoms as DICOM files, for the demo, the tests and the
//! benchmarks.
//!
//! Everything here is invented. Each file is a DX (or CR) image, 16-bit
//! MONOCHROME2 with 12 or 14 bits stored, Explicit VR Little Endian, whose pixels
//! show a plausible phantom (knee: two rounded bone ends with a joint space; hip:
//! femoral head, neck and trochanters under the acetabulum; lumbar spine: stacked
//! vertebrae), with quantum-like noise. The header carries identifier-like values
//! that `marrow import dicom` must strip: patient names in several scripts, birth
//! date, institution, referring physician, operator, accession number and a
//! private attribute with a name.
//!
//! The output depends only on the [`Spec`]: the same spec gives the same bytes on
//! every machine (the arithmetic uses only +, -, *, / and square roots, which are
//! exactly rounded, and a hand-written random generator).

use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use sha2::{Digest, Sha256};
use std::path::Path;

const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// Digital X-Ray Image Storage - For Presentation.
pub const DX_CLASS: &str = "1.2.840.10008.5.1.4.1.1.1.1";
/// Computed Radiography Image Storage.
pub const CR_CLASS: &str = "1.2.840.10008.5.1.4.1.1.1";
/// Implementation class of the generator (a fixed `2.25` UID), so the bytes do not
/// change with the dicom-rs version.
const IMPLEMENTATION_CLASS_UID: &str = "2.25.131453227262733915410284939581190455811";
const IMPLEMENTATION_VERSION_NAME: &str = "MARROW_SYNTH_1";

/// The region shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPart {
    Knee,
    Hip,
    LSpine,
}

impl BodyPart {
    /// BodyPartExamined (0018,0015).
    pub fn code(self) -> &'static str {
        match self {
            BodyPart::Knee => "KNEE",
            BodyPart::Hip => "HIP",
            BodyPart::LSpine => "LSPINE",
        }
    }

    /// The detector field across the image, in millimetres.
    fn field_mm(self) -> f64 {
        match self {
            BodyPart::Knee => 180.0,
            BodyPart::Hip => 260.0,
            BodyPart::LSpine => 320.0,
        }
    }
}

/// Laterality (0020,0060) and ImageLaterality (0020,0062).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Laterality {
    Left,
    Right,
}

impl Laterality {
    pub fn code(self) -> &'static str {
        match self {
            Laterality::Left => "L",
            Laterality::Right => "R",
        }
    }
}

/// ViewPosition (0018,5101).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Ap,
    Pa,
    Lat,
}

impl View {
    pub fn code(self) -> &'static str {
        match self {
            View::Ap => "AP",
            View::Pa => "PA",
            View::Lat => "LAT",
        }
    }
}

/// What to generate. The same spec always gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// PatientID: the MRN of `patients.csv`.
    pub patient_id: String,
    pub body_part: BodyPart,
    /// `None` for the spine (ImageLaterality U).
    pub laterality: Option<Laterality>,
    pub view: View,
    pub rows: u16,
    pub cols: u16,
    pub study_date: NaiveDate,
    /// Varies the phantom (positions, noise), the modality (DX or CR), the bits
    /// stored (12 or 14) and the identifier-like header values.
    pub seed: u64,
}

/// SplitMix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-a, a).
    fn jitter(&mut self, a: f64) -> f64 {
        (self.unit() * 2.0 - 1.0) * a
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A bone part: an ellipse (`p = 2`) or a rounded box (`p = 4`, a superellipse),
/// optionally rotated, in pixel coordinates, projected as a shell with a denser
/// cortex.
#[derive(Clone, Copy)]
struct Shape {
    cx: f64,
    cy: f64,
    rx: f64,
    ry: f64,
    /// Unit vector of the shape's x axis.
    ux: f64,
    uy: f64,
    boxy: bool,
    /// Density weight.
    weight: f64,
}

impl Shape {
    /// The normalised radius (0 at the centre, 1 on the outline), squared.
    fn q2(&self, x: f64, y: f64) -> f64 {
        let dx = x - self.cx;
        let dy = y - self.cy;
        let a = (dx * self.ux + dy * self.uy) / self.rx;
        let b = (-dx * self.uy + dy * self.ux) / self.ry;
        if self.boxy {
            let (a2, b2) = (a * a, b * b);
            (a2 * a2 + b2 * b2).sqrt()
        } else {
            a * a + b * b
        }
    }

    /// The projected density at (x, y): the chord through a shell whose inner
    /// part is less dense, so the outline (cortex) is brighter.
    fn density(&self, x: f64, y: f64) -> f64 {
        let q2 = self.q2(x, y);
        if q2 >= 1.0 {
            return 0.0;
        }
        const K: f64 = 0.78;
        let outer = (1.0 - q2).sqrt();
        let inner_q2 = q2 / (K * K);
        let inner = if inner_q2 < 1.0 {
            (1.0 - inner_q2).sqrt()
        } else {
            0.0
        };
        self.weight * (outer - 0.55 * K * inner)
    }

    /// The bounding box (x0, y0, x1, y1).
    fn bounds(&self) -> (f64, f64, f64, f64) {
        let (ex, ey) = if self.uy == 0.0 {
            (self.rx, self.ry)
        } else {
            let r = self.rx.max(self.ry);
            (r, r)
        };
        (self.cx - ex, self.cy - ey, self.cx + ex, self.cy + ey)
    }
}

/// A bone: the parts are merged by their maximum (no seams where they overlap);
/// bones add up where they overlap, as in a radiograph.
struct Bone(Vec<Shape>);

struct Scene {
    w: f64,
    h: f64,
    /// Soft-tissue silhouette: an ellipse (centre x, half width at top, half width at bottom).
    body_cx: f64,
    body_rx_top: f64,
    body_rx_bottom: f64,
    bones: Vec<(Bone, (f64, f64, f64, f64))>,
}

impl Scene {
    fn new(w: f64, h: f64) -> Scene {
        Scene {
            w,
            h,
            body_cx: 0.5 * w,
            body_rx_top: 0.3 * w,
            body_rx_bottom: 0.3 * w,
            bones: Vec::new(),
        }
    }

    /// Adds a bone from parts given in fractions of the width and height
    /// (radii in fractions of the width, `ry` of the height).
    fn bone(&mut self, parts: &[(f64, f64, f64, f64, bool, f64)], mirror: bool) {
        self.bone_rotated(
            &parts
                .iter()
                .map(|&(cx, cy, rx, ry, boxy, weight)| (cx, cy, rx, ry, boxy, weight, (1.0, 0.0)))
                .collect::<Vec<_>>(),
            mirror,
        );
    }

    #[allow(clippy::type_complexity)]
    fn bone_rotated(
        &mut self,
        parts: &[(f64, f64, f64, f64, bool, f64, (f64, f64))],
        mirror: bool,
    ) {
        let shapes: Vec<Shape> = parts
            .iter()
            .map(|&(cx, cy, rx, ry, boxy, weight, (ux, uy))| {
                let norm = (ux * ux + uy * uy).sqrt();
                let (mut ux, uy) = (ux / norm, uy / norm);
                let cx = if mirror { 1.0 - cx } else { cx };
                if mirror {
                    ux = -ux;
                }
                // keep ux == 1 exact for axis-aligned shapes
                let (ux, uy) = if uy == 0.0 { (1.0, 0.0) } else { (ux, uy) };
                Shape {
                    cx: cx * self.w,
                    cy: cy * self.h,
                    rx: rx * self.w,
                    ry: ry * self.h,
                    ux,
                    uy,
                    boxy,
                    weight,
                }
            })
            .collect();
        let b = shapes.iter().fold(
            (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
            |(a, b, c, d), s| {
                let (x0, y0, x1, y1) = s.bounds();
                (a.min(x0), b.min(y0), c.max(x1), d.max(y1))
            },
        );
        self.bones.push((Bone(shapes), b));
    }

    /// Soft-tissue thickness (0..1) and bone density at a pixel centre.
    fn sample(&self, x: f64, y: f64) -> (f64, f64) {
        let t = y / self.h;
        let rx = self.body_rx_top + (self.body_rx_bottom - self.body_rx_top) * t;
        let d = (x - self.body_cx) / rx;
        let soft = if d * d < 1.0 {
            (1.0 - d * d).sqrt()
        } else {
            0.0
        };
        let mut bone = 0.0;
        for (b, (x0, y0, x1, y1)) in &self.bones {
            if x < *x0 || x > *x1 || y < *y0 || y > *y1 {
                continue;
            }
            let mut m: f64 = 0.0;
            for s in &b.0 {
                m = m.max(s.density(x, y));
            }
            bone += m;
        }
        (soft, bone)
    }
}

/// The phantom of `spec` in fractions of the image, jittered by `rng`.
fn scene(spec: &Spec, rng: &mut Rng) -> Scene {
    let (w, h) = (f64::from(spec.cols), f64::from(spec.rows));
    let mut s = Scene::new(w, h);
    let mirror = spec.laterality == Some(Laterality::Left);
    let j = |rng: &mut Rng| rng.jitter(0.015);
    let (dx, dy) = (j(rng), j(rng));
    let lat = spec.view == View::Lat;
    match (spec.body_part, lat) {
        (BodyPart::Knee, false) => {
            s.body_cx = (0.5 + dx) * w;
            s.body_rx_top = 0.36 * w;
            s.body_rx_bottom = 0.30 * w;
            let gap = 0.035 + rng.jitter(0.01); // the joint space
            let cx = 0.5 + dx;
            let jy = 0.48 + dy;
            // femur: shaft, metaphysis, two condyles
            s.bone(
                &[
                    (cx, 0.10, 0.12, 0.40, true, 1.0),
                    (cx, jy - 0.12, 0.20, 0.10, true, 1.0),
                    (cx - 0.10, jy - 0.07, 0.11, 0.07, false, 1.0),
                    (cx + 0.10, jy - 0.07, 0.11, 0.07, false, 1.0),
                ],
                mirror,
            );
            // patella, seen through the femur
            s.bone(&[(cx, jy - 0.14, 0.09, 0.10, false, 0.35)], mirror);
            // tibia: plateau, eminence, shaft
            let ty = jy + gap;
            s.bone(
                &[
                    (cx, ty + 0.07, 0.21, 0.07, true, 1.0),
                    (cx, ty + 0.01, 0.035, 0.03, false, 0.8),
                    (cx - 0.01, ty + 0.40, 0.11, 0.33, true, 1.0),
                ],
                mirror,
            );
            // fibula: head and shaft, on the lateral side
            s.bone(
                &[
                    (cx + 0.20, ty + 0.14, 0.05, 0.045, false, 0.9),
                    (cx + 0.21, ty + 0.45, 0.03, 0.30, true, 0.9),
                ],
                mirror,
            );
        }
        (BodyPart::Knee, true) => {
            s.body_cx = (0.5 + dx) * w;
            s.body_rx_top = 0.40 * w;
            s.body_rx_bottom = 0.32 * w;
            let cx = 0.46 + dx;
            let jy = 0.48 + dy;
            let gap = 0.035 + rng.jitter(0.01);
            s.bone(
                &[
                    (cx, 0.10, 0.13, 0.40, true, 1.0),
                    (cx + 0.01, jy - 0.10, 0.18, 0.11, false, 1.0),
                ],
                mirror,
            );
            s.bone(&[(cx + 0.25, jy - 0.13, 0.06, 0.11, false, 0.9)], mirror);
            let ty = jy + gap;
            s.bone(
                &[
                    (cx + 0.01, ty + 0.06, 0.20, 0.06, true, 1.0),
                    (cx + 0.14, ty + 0.12, 0.05, 0.04, false, 0.9),
                    (cx, ty + 0.40, 0.12, 0.33, true, 1.0),
                ],
                mirror,
            );
        }
        (BodyPart::Hip, _) => {
            // the lateral side of the thigh shows air
            s.body_cx = if mirror { 0.38 - dx } else { 0.62 + dx } * w;
            s.body_rx_top = 0.56 * w;
            s.body_rx_bottom = 0.48 * w;
            let hx = 0.52 + dx;
            let hy = 0.38 + dy;
            let r = 0.11;
            let ry = r * w / h;
            // pelvis: ilium and acetabular roof
            s.bone(
                &[
                    (hx + 0.22, 0.02, 0.34, 0.22, false, 0.8),
                    (hx + 0.06, hy - 0.04, 0.19, 0.14, false, 0.8),
                    (hx + 0.28, hy + 0.22, 0.12, 0.12, false, 0.6),
                ],
                mirror,
            );
            // femur: head, neck (down and lateral), trochanters, shaft
            s.bone_rotated(
                &[
                    (hx, hy, r, ry, false, 1.0, (1.0, 0.0)),
                    (hx - 0.10, hy + 0.10, 0.13, 0.06, true, 1.0, (-0.7, 0.7)),
                    (hx - 0.22, hy + 0.14, 0.08, 0.10, false, 1.0, (1.0, 0.0)),
                    (hx - 0.10, hy + 0.30, 0.04, 0.04, false, 1.0, (1.0, 0.0)),
                    (hx - 0.17, hy + 0.55, 0.10, 0.35, true, 1.0, (1.0, 0.0)),
                ],
                mirror,
            );
        }
        (BodyPart::LSpine, _) => {
            s.body_cx = 0.5 * w;
            s.body_rx_top = 0.47 * w;
            s.body_rx_bottom = 0.5 * w;
            for i in 0..5 {
                let f = f64::from(i);
                let cy = 0.11 + f * 0.195 + dy;
                let rx = 0.15 + 0.01 * f + rng.jitter(0.005);
                let curve = 0.012 * (f - 2.0) * (f - 2.0);
                if lat {
                    let cx = 0.40 + dx - curve;
                    s.bone(&[(cx, cy, rx, 0.075, true, 1.0)], mirror);
                    // pedicle, lamina and spinous process behind the body
                    s.bone(
                        &[
                            (cx + rx + 0.05, cy - 0.02, 0.06, 0.035, true, 0.8),
                            (cx + rx + 0.17, cy + 0.01, 0.09, 0.04, true, 0.8),
                        ],
                        mirror,
                    );
                } else {
                    let cx = 0.5 + dx;
                    s.bone(&[(cx, cy, rx, 0.075, true, 1.0)], mirror);
                    for side in [-1.0, 1.0] {
                        // pedicle (an oval ring) and transverse process
                        s.bone(
                            &[(cx + side * (rx - 0.04), cy - 0.025, 0.03, 0.04, false, 0.8)],
                            mirror,
                        );
                        s.bone(
                            &[(cx + side * (rx + 0.05), cy - 0.01, 0.07, 0.018, true, 0.6)],
                            mirror,
                        );
                    }
                    s.bone(&[(cx, cy + 0.03, 0.02, 0.05, false, 0.6)], mirror);
                }
            }
        }
    }
    s
}

/// Bits Stored of a spec: 12 or 14.
pub fn bits_stored(spec: &Spec) -> u16 {
    if spec.seed.is_multiple_of(2) { 12 } else { 14 }
}

/// Modality of a spec: DX mostly, CR for one seed in three.
pub fn modality(spec: &Spec) -> &'static str {
    if spec.seed % 3 == 2 { "CR" } else { "DX" }
}

/// Window Center and Width of a spec: air below the window (black), bone near its top.
pub fn window(spec: &Spec) -> (f64, f64) {
    let max = f64::from((1u32 << bits_stored(spec)) - 1);
    let (lo, hi) = (0.10 * max, 0.75 * max);
    (((lo + hi) / 2.0).round(), (hi - lo).round())
}

/// The stored pixel values of a spec, row-major.
pub fn pixels(spec: &Spec) -> Vec<u16> {
    let mut rng = Rng(spec.seed ^ 0x6D61_7272_6F77_2170);
    let scene = scene(spec, &mut rng);
    let max = f64::from((1u32 << bits_stored(spec)) - 1);
    let (air, soft, bone) = (0.02 * max, 0.30 * max, 0.42 * max);
    let sigma = 0.006 * max;
    let (w, h) = (usize::from(spec.cols), usize::from(spec.rows));
    let mut out = Vec::with_capacity(w * h);
    let mut noise = Rng(spec.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    for y in 0..h {
        let yf = y as f64 + 0.5;
        // the heel effect: a little more signal towards the bottom
        let heel = 1.0 + 0.06 * (yf / scene.h - 0.5);
        for x in 0..w {
            let (t, b) = scene.sample(x as f64 + 0.5, yf);
            // Irwin-Hall: the sum of four uniforms, centred (sd 0.577)
            let n = noise.unit() + noise.unit() + noise.unit() + noise.unit() - 2.0;
            // noisier where more signal
            let v = (air + (t * soft + b * bone) * heel) + n * sigma * (1.0 + t) * 1.7;
            out.push(v.round().clamp(0.0, max) as u16);
        }
    }
    out
}

fn uid(parts: &[&str]) -> String {
    let mut d = Sha256::new();
    d.update(b"marrow/synth-uid/v1");
    for p in parts {
        d.update((p.len() as u64).to_le_bytes());
        d.update(p.as_bytes());
    }
    let digest = d.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // UUID version 8
    b[8] = (b[8] & 0x3f) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// Patient names in several scripts (all invented), as DICOM PN values.
const NAMES: &[&str] = &[
    "张^伟",
    "王^芳",
    "Dubois^Jean-Pierre",
    "Петров^Иван",
    "佐藤^花子",
    "김^민준",
    "Παπαδόπουλος^Νίκος",
    "Nguyễn^Văn An",
    "García^María José",
    "Zhang^Wei=张^伟",
];

const PHYSICIANS: &[&str] = &["LI^QIANG", "ZHAO^MIN", "Müller^Anna", "陈^医生"];
const OPERATORS: &[&str] = &["SUN^LEI", "刘^技师", "Okafor^Chidi", "Rossi^Maria"];

/// The data set and file meta group of a spec.
pub fn radiograph(spec: &Spec) -> Result<FileDicomObject<InMemDicomObject>> {
    let key = format!(
        "{}|{}|{}|{}|{}|{}x{}|{}",
        spec.patient_id,
        spec.body_part.code(),
        spec.laterality.map_or("U", Laterality::code),
        spec.view.code(),
        spec.study_date,
        spec.cols,
        spec.rows,
        spec.seed
    );
    let study_key = format!("{}|{}", spec.patient_id, spec.study_date);
    let study_uid = uid(&["study", &study_key]);
    let series_uid = uid(&["series", &key]);
    let sop_uid = uid(&["sop", &key]);
    let modality = modality(spec);
    let class = if modality == "CR" { CR_CLASS } else { DX_CLASS };
    let bits = bits_stored(spec);
    let (center, width) = window(spec);
    let mut rng = Rng(spec.seed ^ 0x4845_4144_4552);
    let pick = |rng: &mut Rng, list: &[&'static str]| list[rng.below(list.len() as u64) as usize];
    let name = pick(&mut rng, NAMES);
    let physician = pick(&mut rng, PHYSICIANS);
    let operator = pick(&mut rng, OPERATORS);
    let age = 45 + rng.below(40) as i32;
    let birth = NaiveDate::from_ymd_opt(
        spec.study_date.year() - age,
        1 + rng.below(12) as u32,
        1 + rng.below(28) as u32,
    )
    .context("birth date")?;
    let institution = if spec.patient_id.to_ascii_uppercase().starts_with("SY") {
        "Sun Yat-sen Memorial Hospital"
    } else {
        "Peking University People's Hospital"
    };
    let accession = format!(
        "ACC{}{:06}",
        spec.study_date.format("%Y%m%d"),
        rng.below(1_000_000)
    );
    let spacing = spec.body_part.field_mm() / f64::from(spec.cols.max(1));
    let spacing = format!("{spacing:.4}\\{spacing:.4}");
    let time = format!("{:02}{:02}00", 8 + rng.below(9), rng.below(60));
    let date = spec.study_date.format("%Y%m%d").to_string();

    let mut obj = InMemDicomObject::new_empty();
    let mut put = |g: u16, e: u16, vr: VR, v: &str| {
        obj.put(DataElement::new(Tag(g, e), vr, PrimitiveValue::from(v)));
    };
    put(0x0008, 0x0005, VR::CS, "ISO_IR 192");
    put(0x0008, 0x0008, VR::CS, "ORIGINAL\\PRIMARY");
    put(0x0008, 0x0016, VR::UI, class);
    put(0x0008, 0x0018, VR::UI, &sop_uid);
    put(0x0008, 0x0020, VR::DA, &date);
    put(0x0008, 0x0023, VR::DA, &date);
    put(0x0008, 0x0030, VR::TM, &time);
    put(0x0008, 0x0050, VR::SH, &accession);
    put(0x0008, 0x0060, VR::CS, modality);
    if modality == "DX" {
        put(0x0008, 0x0068, VR::CS, "FOR PRESENTATION");
    }
    put(0x0008, 0x0070, VR::LO, "MARROW PHANTOM WORKS");
    put(0x0008, 0x0080, VR::LO, institution);
    put(0x0008, 0x0090, VR::PN, physician);
    put(
        0x0008,
        0x1030,
        VR::LO,
        &format!("{} {} {}", spec.body_part.code(), spec.view.code(), name),
    );
    put(0x0008, 0x1070, VR::PN, operator);
    put(0x0009, 0x0010, VR::LO, "MARROW SYNTH PRIVATE");
    put(0x0009, 0x1001, VR::LO, &format!("technologist {operator}"));
    put(0x0010, 0x0010, VR::PN, name);
    put(0x0010, 0x0020, VR::LO, &spec.patient_id);
    put(0x0010, 0x0030, VR::DA, &birth.format("%Y%m%d").to_string());
    put(0x0018, 0x0015, VR::CS, spec.body_part.code());
    put(0x0018, 0x0060, VR::DS, "70");
    put(0x0018, 0x1164, VR::DS, &spacing);
    put(0x0018, 0x5101, VR::CS, spec.view.code());
    put(0x0020, 0x000D, VR::UI, &study_uid);
    put(0x0020, 0x000E, VR::UI, &series_uid);
    put(0x0020, 0x0010, VR::SH, &format!("S{}", rng.below(100_000)));
    put(0x0020, 0x0011, VR::IS, "1");
    put(0x0020, 0x0013, VR::IS, "1");
    let lat = spec.laterality.map_or("U", Laterality::code);
    if spec.laterality.is_some() {
        put(0x0020, 0x0060, VR::CS, lat);
    }
    put(0x0020, 0x0062, VR::CS, lat);
    put(0x0028, 0x0004, VR::CS, "MONOCHROME2");
    put(0x0028, 0x0030, VR::DS, &spacing);
    put(0x0028, 0x1050, VR::DS, &format!("{center}"));
    put(0x0028, 0x1051, VR::DS, &format!("{width}"));
    put(0x0028, 0x2110, VR::CS, "00");
    let mut us = |e: u16, v: u16| {
        obj.put(DataElement::new(
            Tag(0x0028, e),
            VR::US,
            PrimitiveValue::from(v),
        ));
    };
    us(0x0002, 1);
    us(0x0010, spec.rows);
    us(0x0011, spec.cols);
    us(0x0100, 16);
    us(0x0101, bits);
    us(0x0102, bits - 1);
    us(0x0103, 0);
    obj.put(DataElement::new(
        Tag(0x7FE0, 0x0010),
        VR::OW,
        PrimitiveValue::U16(pixels(spec).into()),
    ));
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(EXPLICIT_VR_LE)
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(sop_uid)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .context("cannot build the file meta group")?;
    Ok(obj.with_exact_meta(meta))
}

/// Writes the radiograph of `spec` to `path` (preamble, file meta group, Explicit VR
/// Little Endian data set).
pub fn write_radiograph(path: impl AsRef<Path>, spec: &Spec) -> Result<()> {
    let path = path.as_ref();
    radiograph(spec)?
        .write_to_file(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid fixture date")
}

/// The PatientID of the fixture that matches no patient of `fixtures/demo`.
pub const UNMATCHED_PATIENT_ID: &str = "PK199999";

/// The small set of `fixtures/dicom/` (and of `marrow demo`): file name and spec.
/// Knee, hip and spine radiographs of fixture patients of all six cohorts, dated
/// near their index dates, and one image whose PatientID matches no fixture
/// patient (it waits in quarantine).
pub fn fixture_specs() -> Vec<(&'static str, Spec)> {
    use BodyPart::*;
    use Laterality::*;
    let spec = |id: &str, part, lat, view, rows, cols, d: NaiveDate, seed| Spec {
        patient_id: id.to_string(),
        body_part: part,
        laterality: lat,
        view,
        rows,
        cols,
        study_date: d,
        seed,
    };
    vec![
        // PKUPH OA retro, index 2024-03-12
        (
            "PK100001_knee_R_AP.dcm",
            spec(
                "PK100001",
                Knee,
                Some(Right),
                View::Ap,
                80,
                64,
                date(2024, 3, 12),
                1,
            ),
        ),
        (
            "PK100001_knee_R_LAT.dcm",
            spec(
                "PK100001",
                Knee,
                Some(Right),
                View::Lat,
                80,
                64,
                date(2024, 3, 12),
                2,
            ),
        ),
        // PKUPH OP retro, index 2023-11-07
        (
            "PK100011_hip_L_AP.dcm",
            spec(
                "PK100011",
                Hip,
                Some(Left),
                View::Ap,
                64,
                80,
                date(2023, 11, 2),
                3,
            ),
        ),
        // PKUPH CONTROL retro, index 2024-09-03
        (
            "PK100021_lspine_AP.dcm",
            spec(
                "PK100021",
                LSpine,
                None,
                View::Ap,
                80,
                56,
                date(2024, 9, 3),
                4,
            ),
        ),
        // SYSMH OA retro, index 2024-07-22
        (
            "SY200001_knee_L_PA.dcm",
            spec(
                "SY200001",
                Knee,
                Some(Left),
                View::Pa,
                80,
                64,
                date(2024, 7, 19),
                5,
            ),
        ),
        // SYSMH OP retro, index 2023-08-29
        (
            "SY200011_lspine_LAT.dcm",
            spec(
                "SY200011",
                LSpine,
                None,
                View::Lat,
                80,
                56,
                date(2023, 8, 29),
                6,
            ),
        ),
        // SYSMH CONTROL retro, index 2024-12-03
        (
            "SY200021_hip_R_AP.dcm",
            spec(
                "SY200021",
                Hip,
                Some(Right),
                View::Ap,
                64,
                80,
                date(2024, 12, 5),
                7,
            ),
        ),
        // no such patient: waits in quarantine
        (
            "PK199999_knee_R_AP.dcm",
            spec(
                UNMATCHED_PATIENT_ID,
                Knee,
                Some(Right),
                View::Ap,
                80,
                64,
                date(2024, 5, 1),
                8,
            ),
        ),
    ]
}

/// Writes [`fixture_specs`] into `dir` and returns the paths written.
pub fn write_fixtures(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fixture_specs()
        .into_iter()
        .map(|(name, spec)| {
            let p = dir.join(name);
            write_radiograph(&p, &spec).map(|_| p)
        })
        .collect()
}

/// A spec for the `n`-th benchmark image: body parts, sides and views in turn,
/// fixture-style MRNs, dates in 2024.
pub fn bench_spec(n: usize, rows: u16, cols: u16, seed: u64) -> Spec {
    let parts = [BodyPart::Knee, BodyPart::Hip, BodyPart::LSpine];
    let part = parts[n % 3];
    let laterality = match part {
        BodyPart::LSpine => None,
        _ if n.is_multiple_of(2) => Some(Laterality::Right),
        _ => Some(Laterality::Left),
    };
    let view = [View::Ap, View::Lat, View::Pa][(n / 3) % 3];
    let start = date(2024, 1, 1);
    Spec {
        patient_id: format!(
            "{}{:06}",
            if n.is_multiple_of(2) { "PK" } else { "SY" },
            500_000 + n / 2
        ),
        body_part: part,
        laterality,
        view,
        rows,
        cols,
        study_date: start + chrono::Days::new((n * 7 % 360) as u64),
        seed: seed.wrapping_mul(1_000_003).wrapping_add(n as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knee() -> Spec {
        fixture_specs().remove(0).1
    }

    #[test]
    fn same_spec_same_pixels_other_seed_other_pixels() {
        let a = knee();
        assert_eq!(pixels(&a), pixels(&a));
        let b = Spec {
            seed: 99,
            ..a.clone()
        };
        assert_ne!(pixels(&a), pixels(&b));
    }

    #[test]
    fn pixels_fit_the_bits_and_air_is_below_the_window() {
        for (_, s) in fixture_specs() {
            let p = pixels(&s);
            let max = (1u16 << bits_stored(&s)) - 1;
            assert_eq!(p.len(), usize::from(s.rows) * usize::from(s.cols));
            assert!(p.iter().all(|&v| v <= max));
            let (c, w) = window(&s);
            // a corner is air, black in the window
            let (cols, n) = (usize::from(s.cols), p.len());
            let corner = [p[0], p[cols - 1], p[n - cols], p[n - 1]];
            let darkest = *corner.iter().min().unwrap();
            assert!(
                f64::from(darkest) < c - w / 2.0,
                "{}: {corner:?}",
                s.patient_id
            );
            // bone is above soft tissue somewhere
            assert!(f64::from(*p.iter().max().unwrap()) > c, "{}", s.patient_id);
        }
    }

    #[test]
    fn the_knee_has_a_joint_space() {
        let s = knee();
        let p = pixels(&s);
        let (w, h) = (usize::from(s.cols), usize::from(s.rows));
        let column: Vec<u16> = (0..h).map(|y| p[y * w + w / 2 - w / 8]).collect();
        // bright femur above, a darker gap, bright tibia below
        let above = column[h * 35 / 100];
        let below = column[h * 62 / 100];
        let gap = *column[h * 44 / 100..h * 56 / 100].iter().min().unwrap();
        assert!(gap < above && gap < below, "{above} {gap} {below}");
    }
}
