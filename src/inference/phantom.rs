//! Synthetic radiograph phantoms whose anatomy follows the label (issue 5).
//!
//! There is no public knee or hip dataset on the study's machines, so the shipped
//! weights are trained on these, and the tests check that a model learned the
//! anatomy. Everything is invented; nothing here is for clinical use.
//!
//! - Knee AP ([`knee`]): femoral condyles over the tibial plateau with the fibular
//!   head and a faint patella. By Kellgren-Lawrence grade: joint-space narrowing
//!   (mostly medial), marginal osteophytes on the tibia and the femur, subchondral
//!   sclerosis, and from KL 3 bone-end deformity (varus tilt, flattened and
//!   irregular plateau).
//! - Hip AP ([`hip`]): femoral head, neck, trochanter and shaft under the
//!   acetabulum. By a latent DXA T-score (drawn inside the WHO band of the stage):
//!   shaft cortical thickness, trabecular density and the contrast and spacing of
//!   the compressive and tensile trabecular groups.
//!
//! Every phantom varies in size (84 to 112 pixels a side), magnification,
//! position, rotation, laterality, exposure (gain and offset of a 12-bit
//! detector), blur, quantum noise and the heel effect, and comes with clinical
//! values (age, sex, BMI, labs with some missing) that are loosely tied to the
//! label. The output depends only on the seed and the label (a hand-written
//! SplitMix64 and plain arithmetic).

use super::{Clinical, Example, Image, Task};
use crate::dicom::synth::{BodyPart, Laterality};
use anyhow::Context;
use chrono::NaiveDate;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use std::path::Path;

/// SplitMix64 with a few distributions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x7068_616E_746F_6D21)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Bits stored of every phantom.
pub const BITS_STORED: u16 = 12;

/// What the phantom drew, for tests and for looking at the labels' effect.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Anatomy {
    /// Knee: medial and lateral joint-space width, as a fraction of the image side.
    pub jsw_medial: f64,
    pub jsw_lateral: f64,
    /// Knee: the largest osteophyte's radius (fraction of the side); 0 = none.
    pub osteophyte: f64,
    /// Knee: added density of the subchondral band (0 = none).
    pub sclerosis: f64,
    /// Knee: varus tilt of the tibia, degrees.
    pub deformity_deg: f64,
    /// Hip: latent T-score.
    pub t_score: f64,
    /// Hip: shaft cortical thickness, fraction of the side.
    pub cortex: f64,
    /// Hip: trabecular density (relative to cortical bone).
    pub trabecular: f64,
}

/// One generated case.
#[derive(Debug, Clone)]
pub struct Phantom {
    pub task: Task,
    pub label: u8,
    pub width: usize,
    pub height: usize,
    /// 12-bit stored values, row-major, MONOCHROME2.
    pub pixels: Vec<u16>,
    pub clinical: Clinical,
    pub anatomy: Anatomy,
}

impl Phantom {
    pub fn image(&self) -> Image {
        Image::from_u16(self.width, self.height, &self.pixels)
    }

    /// The phantom as a training example of patient `group`.
    pub fn example(&self, group: u64) -> Example {
        Example {
            image: self.image(),
            clinical: self.clinical.clone(),
            label: self.label,
            group,
        }
    }
}

/// A phantom of `task` with class `label`, from `seed`.
pub fn generate(task: Task, label: u8, seed: u64) -> Phantom {
    match task {
        Task::Kl => knee(label, seed),
        Task::Op => hip(label, seed),
    }
}

/// `n` phantoms with labels cycling through the classes (balanced), seeds
/// derived from `seed`.
pub fn dataset(task: Task, n: usize, seed: u64) -> Vec<Phantom> {
    let k = task.num_classes();
    (0..n)
        .map(|i| {
            let s = seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(i as u64);
            generate(task, (i % k) as u8, s)
        })
        .collect()
}

/// Same as [`dataset`], as training examples.
pub fn examples(task: Task, n: usize, seed: u64) -> Vec<Example> {
    // each phantom is a patient of its own
    dataset(task, n, seed)
        .iter()
        .enumerate()
        .map(|(i, p)| p.example(i as u64))
        .collect()
}

/// The common frame: image size, magnification, position, rotation, mirror.
struct Frame {
    w: usize,
    h: usize,
    cx: f64,
    cy: f64,
    scale: f64,
    cos: f64,
    sin: f64,
    mirror: bool,
}

impl Frame {
    fn random(rng: &mut Rng) -> Frame {
        let w = 84 + rng.below(29) as usize;
        let h = (w as f64 * rng.range(0.92, 1.08)).round() as usize;
        let theta = rng.range(-6.0, 6.0).to_radians();
        Frame {
            w,
            h,
            cx: 0.5 + 0.035 * rng.normal().clamp(-2.0, 2.0),
            cy: 0.5 + 0.035 * rng.normal().clamp(-2.0, 2.0),
            scale: rng.range(0.88, 1.12),
            cos: theta.cos(),
            sin: theta.sin(),
            mirror: rng.chance(0.5),
        }
    }

    /// Phantom coordinates (fractions of the shorter side, centred) of a pixel centre.
    fn coords(&self, x: usize, y: usize) -> (f64, f64) {
        let side = self.w.min(self.h) as f64;
        let px = (x as f64 + 0.5 - self.cx * self.w as f64) / side / self.scale;
        let py = (y as f64 + 0.5 - self.cy * self.h as f64) / side / self.scale;
        let u = self.cos * px - self.sin * py;
        let v = self.sin * px + self.cos * py;
        (if self.mirror { -u } else { u }, v)
    }

    /// One pixel in phantom units.
    fn pixel(&self) -> f64 {
        1.0 / (self.w.min(self.h) as f64 * self.scale)
    }
}

/// Coverage of a pixel by a region whose signed margin (inside > 0) is `m`.
fn cover(m: f64, px: f64) -> f64 {
    (0.5 + m / px).clamp(0.0, 1.0)
}

/// Signed margin of an ellipse (approximate distance, inside > 0).
fn ellipse(u: f64, v: f64, cu: f64, cv: f64, ru: f64, rv: f64) -> f64 {
    let d = ((u - cu) / ru).powi(2) + ((v - cv) / rv).powi(2);
    (1.0 - d.sqrt()) * ru.min(rv)
}

/// Smoothly band-limited noise: a sum of random plane waves.
struct Texture {
    waves: Vec<(f64, f64, f64, f64)>,
}

impl Texture {
    fn new(rng: &mut Rng, n: usize, freq: (f64, f64), angle: Option<(f64, f64)>) -> Texture {
        let waves = (0..n)
            .map(|_| {
                let f = rng.range(freq.0, freq.1);
                let a = match angle {
                    Some((a0, spread)) => a0 + rng.range(-spread, spread),
                    None => rng.range(0.0, std::f64::consts::PI),
                };
                (
                    f * a.cos(),
                    f * a.sin(),
                    rng.range(0.0, std::f64::consts::TAU),
                    rng.range(0.5, 1.0),
                )
            })
            .collect();
        Texture { waves }
    }

    /// Roughly in [-1, 1].
    fn at(&self, u: f64, v: f64) -> f64 {
        let mut s = 0.0;
        let mut norm = 0.0;
        for &(fu, fv, p, a) in &self.waves {
            s += a * (std::f64::consts::TAU * (fu * u + fv * v) + p).sin();
            norm += a * a;
        }
        s / (norm / 2.0).sqrt().max(1e-9)
    }
}

/// Detector model: turns a field of (soft tissue thickness, bone density) into
/// 12-bit stored values with exposure, heel effect, blur and quantum noise.
fn expose(frame: &Frame, field: &[(f64, f64)], rng: &mut Rng) -> Vec<u16> {
    let (w, h) = (frame.w, frame.h);
    let max = f64::from((1u32 << BITS_STORED) - 1);
    let gain = rng.range(0.75, 1.25);
    let offset = rng.range(0.01, 0.06) * max;
    let soft = rng.range(0.22, 0.32) * max * gain;
    let bone = rng.range(0.36, 0.46) * max * gain;
    let heel = rng.range(-0.08, 0.08);
    let noise = rng.range(0.5, 1.6);
    // signal before blur
    let mut sig: Vec<f64> = field
        .iter()
        .enumerate()
        .map(|(i, &(t, b))| {
            let y = (i / w) as f64 / h as f64;
            offset + (t * soft + b * bone) * (1.0 + heel * (y - 0.5))
        })
        .collect();
    // [1 2 1]/4 blur, applied 0..2 times (focal spot and detector)
    let passes = rng.below(3);
    for _ in 0..passes {
        let src = sig.clone();
        for y in 0..h {
            for x in 0..w {
                let xl = x.saturating_sub(1);
                let xr = (x + 1).min(w - 1);
                sig[y * w + x] = (src[y * w + xl] + 2.0 * src[y * w + x] + src[y * w + xr]) / 4.0;
            }
        }
        let src = sig.clone();
        for y in 0..h {
            let yu = y.saturating_sub(1);
            let yd = (y + 1).min(h - 1);
            for x in 0..w {
                sig[y * w + x] = (src[yu * w + x] + 2.0 * src[y * w + x] + src[yd * w + x]) / 4.0;
            }
        }
    }
    sig.iter()
        .map(|&s| {
            // quantum noise grows with the square root of the signal, plus a floor
            let sd = noise * (0.9 * s.max(0.0).sqrt() + 4.0);
            (s + sd * rng.normal()).round().clamp(0.0, max) as u16
        })
        .collect()
}

/// Soft tissue: a limb of half-width `r` (phantom units) centred at u = `c`.
fn limb(u: f64, c: f64, r: f64) -> f64 {
    let d = (u - c) / r;
    if d.abs() < 1.0 {
        (1.0 - d * d).sqrt()
    } else {
        0.0
    }
}

/// Per-grade anatomy of the knee (index = KL grade).
const KL_JSW_MEDIAL: [f64; 5] = [1.0, 0.84, 0.68, 0.44, 0.14];
const KL_JSW_LATERAL: [f64; 5] = [1.0, 0.97, 0.92, 0.82, 0.62];
const KL_OSTEOPHYTE: [f64; 5] = [0.0, 0.012, 0.026, 0.040, 0.058];
const KL_SCLEROSIS: [f64; 5] = [0.0, 0.03, 0.12, 0.30, 0.50];

/// A knee AP phantom of Kellgren-Lawrence grade `kl` (0..=4; larger is clamped).
pub fn knee(kl: u8, seed: u64) -> Phantom {
    let g = usize::from(kl.min(4));
    let mut rng = Rng::new(seed ^ 0x4B4C_0000);
    let frame = Frame::random(&mut rng);
    let px = frame.pixel();

    // joint space: a normal width per person, narrowed by grade
    let base = rng.range(0.068, 0.090);
    let jitter = |rng: &mut Rng| (1.0 + 0.10 * rng.normal()).clamp(0.7, 1.3);
    let gap_m = (base * KL_JSW_MEDIAL[g] * jitter(&mut rng)).max(0.004);
    let gap_l = (base * 1.1 * KL_JSW_LATERAL[g] * jitter(&mut rng)).max(0.004);
    // osteophytes: KL1 only possibly ("possible lipping")
    let ost_present = g >= 2 || (g == 1 && rng.chance(0.6));
    let ost = if ost_present {
        KL_OSTEOPHYTE[g] * rng.range(0.7, 1.3)
    } else {
        0.0
    };
    let ost_sizes = [
        ost,
        ost * rng.range(0.5, 1.0),
        ost * rng.range(0.4, 0.9),
        ost * rng.range(0.3, 0.8),
    ];
    let scl = KL_SCLEROSIS[g] * rng.range(0.7, 1.3);
    let scl_depth = 0.02 + 0.01 * g as f64 * rng.range(0.8, 1.2);
    // deformity: possible at KL3, definite at KL4
    let deformed = g == 4 || (g == 3 && rng.chance(0.4));
    let tilt_deg = if deformed {
        rng.range(2.5, 6.0) * if g == 4 { 1.4 } else { 1.0 }
    } else {
        rng.range(-1.0, 1.0)
    };
    let irregular = if deformed {
        rng.range(0.006, 0.012)
    } else {
        0.0
    };
    let flatten = if deformed { rng.range(0.4, 0.8) } else { 1.0 };
    let shift = if deformed { rng.range(0.0, 0.03) } else { 0.0 };
    let tex = Texture::new(&mut rng, 10, (6.0, 14.0), None);
    let wobble_phase = rng.range(0.0, std::f64::consts::TAU);
    let cortex = rng.range(0.018, 0.026);
    let limb_r = rng.range(0.46, 0.56);
    let (sin_t, cos_t) = tilt_deg.to_radians().sin_cos();

    let mut field = Vec::with_capacity(frame.w * frame.h);
    for y in 0..frame.h {
        for x in 0..frame.w {
            // medial compartment at u < 0
            let (u, v) = frame.coords(x, y);
            let soft = limb(u, 0.0, limb_r);
            // femur: condyles (|u| < 0.40 near the joint) tapering to the shaft
            let half_f = if v > -0.12 {
                0.40
            } else if v > -0.38 {
                0.40 - (0.40 - 0.17) * (-0.12 - v) / 0.26
            } else {
                0.17
            };
            let gap_f = if u < 0.0 { gap_m } else { gap_l };
            let cu = (u.abs() - 0.2) / 0.2;
            let mut f_bottom = -gap_f / 2.0 - 0.05 * flatten * cu * cu;
            if u.abs() < 0.055 {
                f_bottom -= 0.05 * (1.0 - u.abs() / 0.055); // intercondylar notch
            }
            let m_femur = (half_f - u.abs()).min(f_bottom - v);
            // tibia, tilted (varus) about the joint centre and shifted laterally
            let ut = (u - shift) * cos_t + v * sin_t;
            let vt = v * cos_t - (u - shift) * sin_t;
            let half_t = if vt < 0.12 {
                0.42
            } else if vt < 0.36 {
                0.42 - (0.42 - 0.16) * (vt - 0.12) / 0.24
            } else {
                0.16
            };
            let gap_t = if ut < 0.0 { gap_m } else { gap_l };
            let ct = (ut.abs() - 0.2) / 0.2;
            let mut t_top = gap_t / 2.0 + 0.008 * ct * ct;
            if ut < 0.0 && irregular > 0.0 {
                t_top += irregular * (ut * 60.0 + wobble_phase).sin();
            }
            if ut.abs() < 0.05 {
                t_top -= (0.035 + 0.01 * g as f64) * (1.0 - ut.abs() / 0.05); // spines
            }
            let m_tibia = (half_t - ut.abs()).min(vt - t_top);
            // osteophytes at the four margins (medial larger)
            let mut m_ost = f64::NEG_INFINITY;
            if ost > 0.0 {
                let spots = [
                    (
                        -0.42 - 0.5 * ost_sizes[0],
                        gap_m / 2.0 + 0.012,
                        ost_sizes[0],
                    ),
                    (
                        -0.40 - 0.5 * ost_sizes[1],
                        -gap_m / 2.0 - 0.03,
                        ost_sizes[1],
                    ),
                    (0.42 + 0.5 * ost_sizes[2], gap_l / 2.0 + 0.012, ost_sizes[2]),
                    (0.40 + 0.5 * ost_sizes[3], -gap_l / 2.0 - 0.03, ost_sizes[3]),
                ];
                for (su, sv, r) in spots {
                    m_ost = m_ost.max(ellipse(u, v, su, sv, r, r * 0.55));
                }
            }
            // fibular head and shaft (lateral, behind the tibia)
            let m_fib = ellipse(ut, vt, 0.35, 0.20, 0.065, 0.055)
                .max((0.035 - (ut - 0.36).abs()).min(vt - 0.2));
            let m_pat = ellipse(u, v, 0.0, -0.16, 0.13, 0.11);

            let c_f = cover(m_femur, px);
            let c_t = cover(m_tibia, px);
            let c_o = cover(m_ost, px);
            let c_fib = cover(m_fib, px);
            let c_pat = cover(m_pat, px);
            let trab = 0.72 + 0.07 * tex.at(u, v);
            let rim = |m: f64| if m < cortex { 0.45 } else { 0.0 };
            let mut b = c_f * (trab + rim(m_femur)) + c_t * (trab + rim(m_tibia));
            // subchondral sclerosis under both surfaces, mostly medial
            if scl > 0.0 {
                let side = if u < 0.0 { 1.0 } else { 0.35 };
                if (0.0..scl_depth).contains(&(f_bottom - v)) && u.abs() < 0.40 {
                    b += c_f * scl * side * (1.0 - (f_bottom - v) / scl_depth);
                }
                if (0.0..scl_depth).contains(&(vt - t_top)) && ut.abs() < 0.42 {
                    b += c_t * scl * side * (1.0 - (vt - t_top) / scl_depth);
                }
            }
            b = b.max(c_o * 1.05);
            b += 0.55 * c_fib * (1.0 - 0.6 * c_t) + 0.22 * c_pat * c_f;
            field.push((soft, b));
        }
    }
    let pixels = expose(&frame, &field, &mut rng);

    // clinical values, loosely tied to the grade
    let age = (48.0 + 6.0 * g as f64 + 9.0 * rng.normal()).clamp(18.0, 90.0);
    let female = rng.chance(0.55 + 0.04 * g as f64);
    let bmi = (24.5 + 1.1 * g as f64 + 3.5 * rng.normal()).clamp(16.0, 45.0);
    let clinical = Clinical {
        age: rng.chance(0.97).then_some(age.round()),
        female: rng.chance(0.99).then_some(female),
        bmi: rng.chance(0.85).then_some((bmi * 10.0).round() / 10.0),
        ..Clinical::default()
    };
    Phantom {
        task: Task::Kl,
        label: g as u8,
        width: frame.w,
        height: frame.h,
        pixels,
        clinical,
        anatomy: Anatomy {
            jsw_medial: gap_m,
            jsw_lateral: gap_l,
            osteophyte: ost,
            sclerosis: scl,
            deformity_deg: tilt_deg,
            ..Anatomy::default()
        },
    }
}

/// A hip AP phantom of WHO stage `stage` (0 normal, 1 osteopenia, 2 osteoporosis).
pub fn hip(stage: u8, seed: u64) -> Phantom {
    let s = stage.min(2);
    let mut rng = Rng::new(seed ^ 0x4F50_0000);
    let frame = Frame::random(&mut rng);
    let px = frame.pixel();
    // latent T-score inside the WHO band of the stage
    let t = match s {
        0 => rng.range(-0.95, 1.5),
        1 => rng.range(-2.45, -1.05),
        _ => rng.range(-4.2, -2.55),
    };
    // cortex and trabeculae follow T with person-to-person scatter
    let cortex = (0.046 + 0.0075 * t) * (1.0 + 0.07 * rng.normal()).clamp(0.8, 1.2);
    let cortex = cortex.max(0.008);
    let trab = (0.62 + 0.085 * t) * (1.0 + 0.06 * rng.normal()).clamp(0.8, 1.2);
    let trab = trab.clamp(0.12, 0.95);
    // fewer, thinner trabeculae: higher threshold on the stripe pattern
    let sparsity = (0.05 - 0.16 * t).clamp(-0.3, 0.9);
    let compressive = Texture::new(&mut rng, 4, (11.0, 15.0), Some((0.35, 0.15)));
    let tensile = Texture::new(&mut rng, 4, (11.0, 15.0), Some((-0.9, 0.15)));
    let marrow_tex = Texture::new(&mut rng, 8, (4.0, 9.0), None);
    let limb_r = rng.range(0.62, 0.75);
    let neck_len = rng.range(0.26, 0.32);
    let head_r = rng.range(0.12, 0.15);
    // neck axis from the shaft top (0.06, -0.02) up and medial at ~130 degrees
    let ang = rng.range(40.0, 50.0).to_radians();
    let (na, nb) = (-(ang.cos()), -(ang.sin()));
    let (n0u, n0v) = (0.06, -0.02);
    let (hu, hv) = (n0u + na * neck_len, n0v + nb * neck_len);

    let mut field = Vec::with_capacity(frame.w * frame.h);
    for y in 0..frame.h {
        for x in 0..frame.w {
            let (u, v) = frame.coords(x, y);
            let soft = limb(u, 0.12, limb_r);
            // shaft: vertical tube, hollow (medullary canal) inside the cortex
            let shaft_half = 0.13;
            let m_shaft = (shaft_half - (u - 0.08).abs()).min(v - 0.02);
            // neck: a band along the axis; head: a circle; trochanter: an ellipse
            let (du, dv) = (u - n0u, v - n0v);
            let along = du * na + dv * nb;
            let across = -du * nb + dv * na;
            let m_neck = (0.085 - across.abs())
                .min(along + 0.05)
                .min(neck_len - along);
            let m_head = ellipse(u, v, hu, hv, head_r, head_r);
            let m_troch = ellipse(u, v, 0.19, -0.03, 0.085, 0.11);
            let m_top = ellipse(u, v, 0.08, 0.02, 0.15, 0.10);
            let m_femur = m_neck.max(m_head).max(m_troch).max(m_top);
            // acetabulum / pelvis above and medial of the head
            let m_pelvis = ellipse(u, v, hu - 0.05, hv - 0.17, 0.30, 0.12)
                .max(-((u - hu).powi(2) + (v - hv).powi(2)).sqrt() + head_r + 0.05)
                .min(-(v - hv + 0.02));
            let c_shaft = cover(m_shaft, px);
            let c_femur = cover(m_femur, px);
            let c_pelvis = cover(m_pelvis, px);
            // trabecular bone in the proximal femur
            let p1 = compressive.at(u, v) * 0.5 + 0.5;
            let p2 = tensile.at(u, v) * 0.5 + 0.5;
            let stripes = (p1.max(p2 * 0.8) - sparsity * 0.5).clamp(0.0, 1.0);
            let spongy = trab * (0.55 + 0.6 * stripes) + 0.05 * marrow_tex.at(u, v);
            let mut b = 0.0;
            // shaft: cortex ring (projected tube: two dense walls), canal inside
            if c_shaft > 0.0 {
                let wall = (shaft_half - (u - 0.08).abs()).min(v - 0.02 + cortex);
                let cw = if wall < cortex {
                    1.25
                } else {
                    0.35 * trab + 0.1
                };
                b += c_shaft * cw;
            }
            if c_femur > 0.0 {
                let rim = if m_femur < cortex * 0.6 { 0.45 } else { 0.0 };
                b = b.max(c_femur * (spongy + rim));
            }
            b += 0.6 * c_pelvis * (0.7 + 0.1 * marrow_tex.at(v, u));
            field.push((soft, b));
        }
    }
    let pixels = expose(&frame, &field, &mut rng);

    // clinical values loosely tied to the T-score (PROTOCOL.md's labs)
    let age = (62.0 - 5.0 * t + 9.0 * rng.normal()).clamp(18.0, 90.0);
    let female = rng.chance((0.55 - 0.08 * t).clamp(0.1, 0.9));
    let bmi = (24.0 + 0.9 * t + 3.2 * rng.normal()).clamp(15.0, 42.0);
    let lab = |rng: &mut Rng, mean: f64, per_t: f64, sd: f64, lo: f64| {
        let present = rng.chance(0.7);
        let v = (mean + per_t * t + sd * rng.normal()).max(lo);
        present.then_some((v * 100.0).round() / 100.0)
    };
    let clinical = Clinical {
        age: rng.chance(0.98).then_some(age.round()),
        female: rng.chance(0.99).then_some(female),
        bmi: rng.chance(0.85).then_some((bmi * 10.0).round() / 10.0),
        p1np: lab(&mut rng, 48.0, -5.0, 16.0, 5.0),
        beta_ctx: lab(&mut rng, 0.42, -0.06, 0.16, 0.05),
        calcium: lab(&mut rng, 2.36, 0.0, 0.10, 1.8),
        phosphorus: lab(&mut rng, 1.15, 0.0, 0.15, 0.5),
        vitamin_d: lab(&mut rng, 27.0, 2.5, 8.0, 4.0),
        pth: lab(&mut rng, 46.0, -4.0, 15.0, 8.0),
        alp: lab(&mut rng, 76.0, -4.0, 20.0, 25.0),
    };
    Phantom {
        task: Task::Op,
        label: s,
        width: frame.w,
        height: frame.h,
        pixels,
        clinical,
        anatomy: Anatomy {
            t_score: t,
            cortex,
            trabecular: trab,
            ..Anatomy::default()
        },
    }
}

/// Writes a phantom as a DICOM radiograph (12-bit MONOCHROME2, no window in the file,
/// so viewers window it from its histogram), the patient ID being `mrn`: the demo
/// imports these like any hospital export, and `fixtures/phantoms.rs` writes sets of
/// them.
pub fn write_dicom(
    path: &Path,
    mrn: &str,
    part: BodyPart,
    laterality: Laterality,
    date: NaiveDate,
    p: &Phantom,
    seed: u64,
) -> anyhow::Result<()> {
    let spec = crate::dicom::synth::Spec {
        patient_id: mrn.to_string(),
        body_part: part,
        laterality: Some(laterality),
        view: crate::dicom::synth::View::Ap,
        rows: p.height as u16,
        cols: p.width as u16,
        study_date: date,
        seed,
    };
    let mut obj = crate::dicom::synth::radiograph(&spec)?;
    obj.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(12u16),
    ));
    obj.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(11u16),
    ));
    obj.remove_element(tags::WINDOW_CENTER);
    obj.remove_element(tags::WINDOW_WIDTH);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(p.pixels.clone().into()),
    ));
    obj.write_to_file(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a phantom as an 8-bit binary PGM (for looking at them).
pub fn to_pgm(p: &Phantom) -> Vec<u8> {
    let max = f64::from((1u32 << BITS_STORED) - 1);
    let mut out = format!("P5\n{} {}\n255\n", p.width, p.height).into_bytes();
    out.extend(
        p.pixels
            .iter()
            .map(|&v| (f64::from(v) / max * 255.0).round().clamp(0.0, 255.0) as u8),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_pixels_other_seed_other_pixels() {
        for task in [Task::Kl, Task::Op] {
            let a = generate(task, 2, 42);
            let b = generate(task, 2, 42);
            let c = generate(task, 2, 43);
            assert_eq!(a.pixels, b.pixels);
            assert_eq!(a.clinical, b.clinical);
            assert_ne!(a.pixels, c.pixels);
            assert_eq!(a.pixels.len(), a.width * a.height);
            assert!((84..=121).contains(&a.width));
        }
    }

    #[test]
    fn joint_space_narrows_and_osteophytes_grow_with_kl() {
        let mean = |kl: u8, f: fn(&Anatomy) -> f64| {
            (0..20).map(|s| f(&knee(kl, s).anatomy)).sum::<f64>() / 20.0
        };
        let jsw: Vec<f64> = (0..5).map(|g| mean(g, |a| a.jsw_medial)).collect();
        let ost: Vec<f64> = (0..5).map(|g| mean(g, |a| a.osteophyte)).collect();
        let scl: Vec<f64> = (0..5).map(|g| mean(g, |a| a.sclerosis)).collect();
        for g in 1..5 {
            assert!(jsw[g] < jsw[g - 1], "JSW {jsw:?}");
            assert!(ost[g] > ost[g - 1], "osteophytes {ost:?}");
            assert!(scl[g] > scl[g - 1], "sclerosis {scl:?}");
        }
        assert_eq!(ost[0], 0.0);
        assert!(knee(4, 1).anatomy.deformity_deg > 2.0);
    }

    #[test]
    fn cortex_thins_with_op_stage_and_t_score_stays_in_its_band() {
        for seed in 0..15 {
            assert!(hip(0, seed).anatomy.t_score > -1.0);
            let t1 = hip(1, seed).anatomy.t_score;
            assert!(t1 > -2.5 && t1 < -1.0);
            assert!(hip(2, seed).anatomy.t_score <= -2.5);
        }
        let mean = |s: u8| (0..15).map(|i| hip(s, i).anatomy.cortex).sum::<f64>() / 15.0;
        assert!(mean(0) > mean(1) && mean(1) > mean(2));
    }
}
