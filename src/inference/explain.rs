//! Explanations of one prediction (issue 5, item 7).
//!
//! - [`shapley_groups`]: the contribution of each modality group (image,
//!   demographics, labs) to every class probability, as exact Shapley values over
//!   the three groups. The model is evaluated on all 2^3 coalitions in one forward
//!   pass; a group outside the coalition is *removed* by setting it to its training
//!   mean:
//!   - clinical features: `z = 0` with the missing indicator 0, which is exactly the
//!     training mean of the recorded values ([`super::model::ClinicalSpec::encode`]
//!     maps a recorded value `v` to `(v - mean) / std`). A value that is missing in
//!     the case is *not* the same as removed (it has indicator 1), so the fact that
//!     it is missing can carry a contribution of its own.
//!   - the image: the card stores no per-pixel mean image, only the scalar mean and
//!     standard deviation of the windowed training images
//!     ([`super::model::Preprocess`], fitted by `train::fit_spec`), and the network's
//!     input is `(windowed - mean) / std`. The training mean image is therefore
//!     taken as the constant plane at that mean, which is the plane of zeros in the
//!     network's input.
//!
//!   The values satisfy efficiency exactly (up to rounding):
//!   `base + image + demographics + labs = full` for every class, where `base` is the
//!   prediction with every group removed and `full` the ordinary prediction. A group
//!   the model has no input for (labs in the KL model) gets exactly 0.
//! - [`occlusion`]: a coarse map over the image of how much the predicted class's
//!   probability drops when a square patch of the network's input is set to the
//!   mean (0 in the normalised plane), for the viewer to overlay
//!   ([`Heatmap::crop`] says which part of the source image the map covers).
//!
//! Both work on any backend through [`LoadedModel::predict_prepared`]; the `_with`
//! variants take the forward function directly (a `Classifier` of any backend, or a
//! test double).

use serde::{Deserialize, Serialize};

use super::backend::LoadedModel;
use super::model::{ModelSpec, Prepared, argmax};
use super::{Clinical, Feature, Image, Prediction};

/// A modality group of the explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Image,
    /// Age, sex, BMI.
    Demographics,
    /// The laboratory values ([`Feature::is_lab`]).
    Labs,
}

impl Group {
    /// The groups, in the order of the coalition bits (bit `i` = `ALL[i]`).
    pub const ALL: [Group; 3] = [Group::Image, Group::Demographics, Group::Labs];

    pub fn name(self) -> &'static str {
        match self {
            Group::Image => "image",
            Group::Demographics => "demographics",
            Group::Labs => "labs",
        }
    }

    /// The group of a clinical feature.
    pub fn of(feature: Feature) -> Group {
        if feature.is_lab() {
            Group::Labs
        } else {
            Group::Demographics
        }
    }

    fn bit(self) -> usize {
        match self {
            Group::Image => 1,
            Group::Demographics => 2,
            Group::Labs => 4,
        }
    }
}

/// Exact Shapley values of `n` players from the value of every coalition:
/// `values[mask]` is the value of the coalition whose members are the set bits of
/// `mask` (so `values.len() == 2^n`).
///
/// `phi_i = sum over S without i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))`.
pub fn shapley_values(n: usize, values: &[f64]) -> Vec<f64> {
    assert_eq!(values.len(), 1 << n, "need the value of all 2^n coalitions");
    let fact = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
    let total = fact(n);
    (0..n)
        .map(|i| {
            let bit = 1usize << i;
            (0..values.len())
                .filter(|s| s & bit == 0)
                .map(|s| {
                    let size = s.count_ones() as usize;
                    let weight = fact(size) * fact(n - size - 1) / total;
                    weight * (values[s | bit] - values[s])
                })
                .sum()
        })
        .collect()
}

/// The Shapley decomposition of one prediction over the modality groups, per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupShapley {
    /// Class names, index = class.
    pub classes: Vec<String>,
    /// The prediction with every group removed (set to the training mean): the
    /// same for every case of a model.
    pub base: Vec<f32>,
    pub image: Vec<f32>,
    pub demographics: Vec<f32>,
    pub labs: Vec<f32>,
    /// The ordinary prediction: `base + image + demographics + labs`.
    pub full: Vec<f32>,
    /// The predicted class (largest `full`).
    pub predicted: usize,
    /// First class of the binary outcome (OA: KL >= 2; osteoporosis).
    pub positive_from: usize,
    /// Groups the model has inputs for; the others have contribution 0.
    pub groups: Vec<Group>,
}

/// One probability split into the groups' contributions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub base: f32,
    pub image: f32,
    pub demographics: f32,
    pub labs: f32,
    /// `base + image + demographics + labs`.
    pub full: f32,
}

impl Contribution {
    pub fn get(&self, g: Group) -> f32 {
        match g {
            Group::Image => self.image,
            Group::Demographics => self.demographics,
            Group::Labs => self.labs,
        }
    }
}

impl GroupShapley {
    /// The split of class `k`'s probability.
    pub fn class(&self, k: usize) -> Contribution {
        Contribution {
            base: self.base[k],
            image: self.image[k],
            demographics: self.demographics[k],
            labs: self.labs[k],
            full: self.full[k],
        }
    }

    /// The split of the predicted class's probability.
    pub fn predicted_class(&self) -> Contribution {
        self.class(self.predicted)
    }

    /// The split of the binary outcome's probability (the sum over the classes from
    /// [`GroupShapley::positive_from`]; Shapley values add up over classes).
    pub fn binary(&self) -> Contribution {
        let sum = |v: &[f32]| v[self.positive_from.min(v.len())..].iter().sum::<f32>();
        Contribution {
            base: sum(&self.base),
            image: sum(&self.image),
            demographics: sum(&self.demographics),
            labs: sum(&self.labs),
            full: sum(&self.full),
        }
    }

    /// The contributions of group `g`, per class.
    pub fn group(&self, g: Group) -> &[f32] {
        match g {
            Group::Image => &self.image,
            Group::Demographics => &self.demographics,
            Group::Labs => &self.labs,
        }
    }
}

/// The groups `spec` has inputs for (the image always).
pub fn groups_of(spec: &ModelSpec) -> Vec<Group> {
    Group::ALL
        .into_iter()
        .filter(|&g| {
            g == Group::Image
                || spec
                    .clinical
                    .features
                    .iter()
                    .any(|f| Group::of(f.feature) == g)
        })
        .collect()
}

/// The network inputs of the coalition `mask` (bit `i` set = `Group::ALL[i]`
/// present): the removed groups set to the training mean (image plane 0; clinical
/// `z = 0`, missing indicator 0).
pub fn coalition_inputs(
    spec: &ModelSpec,
    plane: &[f32],
    clinical: &[f32],
    mask: usize,
) -> (Vec<f32>, Vec<f32>) {
    let image = if mask & Group::Image.bit() != 0 {
        plane.to_vec()
    } else {
        vec![0.0; plane.len()]
    };
    let mut clin = clinical.to_vec();
    for (i, f) in spec.clinical.features.iter().enumerate() {
        if mask & Group::of(f.feature).bit() == 0 {
            clin[2 * i] = 0.0;
            clin[2 * i + 1] = 0.0;
        }
    }
    (image, clin)
}

/// [`shapley_groups_with`] on a loaded model (any backend).
pub fn shapley_groups(model: &LoadedModel, image: &Image, clinical: &Clinical) -> GroupShapley {
    shapley_groups_with(model.spec(), |p| model.predict_prepared(p), image, clinical)
}

/// Exact Shapley values of the three groups for one case, with `forward`
/// evaluating a prepared batch (the model of `spec`). One forward pass of 2^3 rows.
pub fn shapley_groups_with(
    spec: &ModelSpec,
    forward: impl Fn(&Prepared) -> Vec<Prediction>,
    image: &Image,
    clinical: &Clinical,
) -> GroupShapley {
    let (plane, clin) = spec.prepare_one(image, clinical);
    let groups = groups_of(spec);
    let effective: usize = groups.iter().map(|g| g.bit()).sum();
    let n = 1usize << Group::ALL.len();
    let size = spec.preprocess.input_size;
    let width = spec.clinical.width();
    let mut batch = Prepared {
        n,
        size,
        images: Vec::with_capacity(n * size * size),
        clinical_width: width,
        clinical: Vec::with_capacity(n * width),
    };
    for mask in 0..n {
        let (i, c) = coalition_inputs(spec, &plane, &clin, mask);
        batch.images.extend(i);
        batch.clinical.extend(c);
    }
    let preds = forward(&batch);
    assert_eq!(
        preds.len(),
        n,
        "the forward pass returned a wrong batch size"
    );
    let k = spec.classes.len();
    // A group the model has no input for changes nothing; its rows are the same
    // inputs, so take the same row to make its contribution exactly 0.
    let value = |mask: usize, class: usize| f64::from(preds[mask & effective].probs[class]);
    let mut out = GroupShapley {
        classes: spec.classes.clone(),
        base: Vec::with_capacity(k),
        image: Vec::with_capacity(k),
        demographics: Vec::with_capacity(k),
        labs: Vec::with_capacity(k),
        full: Vec::with_capacity(k),
        predicted: 0,
        positive_from: usize::from(spec.task.positive_from()),
        groups,
    };
    for class in 0..k {
        let values: Vec<f64> = (0..n).map(|m| value(m, class)).collect();
        let phi = shapley_values(Group::ALL.len(), &values);
        out.base.push(values[0] as f32);
        out.image.push(phi[0] as f32);
        out.demographics.push(phi[1] as f32);
        out.labs.push(phi[2] as f32);
        out.full.push(values[n - 1] as f32);
    }
    out.predicted = argmax(&out.full);
    out
}

/// Occlusion patch side on the network's input (48x48 for the shipped models).
pub const DEFAULT_PATCH: usize = 8;
/// Step between patch positions.
pub const DEFAULT_STRIDE: usize = 4;
/// Occluded copies per forward pass.
const OCCLUSION_BATCH: usize = 64;

/// The part of the source image the network's input covers (the preprocessing's
/// centre square crop), in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crop {
    pub x: usize,
    pub y: usize,
    pub side: usize,
}

/// An occlusion map: `values[row * width + col]` is the drop of `class`'s
/// probability when the patch at (`origins[col]`, `origins[row]`) of the network's
/// input is set to the mean; positive = that region supported the class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
    /// The class explained (the predicted one for [`occlusion`]).
    pub class: usize,
    /// Its probability without occlusion.
    pub probability: f32,
    /// Patch side and stride, in input pixels.
    pub patch: usize,
    pub stride: usize,
    /// Side of the network's input.
    pub input_size: usize,
    /// Top-left corner of each patch position along either axis, input pixels.
    pub origins: Vec<usize>,
    /// Where the input plane lies in the source image.
    pub crop: Crop,
}

impl Heatmap {
    /// The value of cell (`col`, `row`).
    pub fn at(&self, col: usize, row: usize) -> f32 {
        self.values[row * self.width + col]
    }

    /// The square of the network's input that cell (`col`, `row`) occluded:
    /// (x, y, side) in input pixels.
    pub fn cell_rect(&self, col: usize, row: usize) -> (usize, usize, usize) {
        (self.origins[col], self.origins[row], self.patch)
    }

    /// The map at the input's resolution (`input_size^2`, row-major): each pixel
    /// the mean of the cells whose patch covered it.
    pub fn per_pixel(&self) -> Vec<f32> {
        let s = self.input_size;
        let mut sum = vec![0.0f32; s * s];
        let mut count = vec![0u32; s * s];
        for row in 0..self.height {
            for col in 0..self.width {
                let (x0, y0, p) = self.cell_rect(col, row);
                let v = self.at(col, row);
                for y in y0..(y0 + p).min(s) {
                    for x in x0..(x0 + p).min(s) {
                        sum[y * s + x] += v;
                        count[y * s + x] += 1;
                    }
                }
            }
        }
        sum.iter()
            .zip(&count)
            .map(|(&v, &c)| if c == 0 { 0.0 } else { v / c as f32 })
            .collect()
    }

    /// The map in source-image pixels for an overlay over the whole image
    /// (`image_width x image_height`, row-major; outside the crop 0), nearest
    /// neighbour from [`Heatmap::per_pixel`].
    pub fn on_image(&self, image_width: usize, image_height: usize) -> Vec<f32> {
        let fine = self.per_pixel();
        let s = self.input_size;
        let c = self.crop;
        let mut out = vec![0.0f32; image_width * image_height];
        if c.side == 0 || s == 0 {
            return out;
        }
        for y in c.y..(c.y + c.side).min(image_height) {
            let iy = ((y - c.y) * s / c.side).min(s - 1);
            for x in c.x..(c.x + c.side).min(image_width) {
                let ix = ((x - c.x) * s / c.side).min(s - 1);
                out[y * image_width + x] = fine[iy * s + ix];
            }
        }
        out
    }

    /// The largest absolute value (for a colour scale); 0 for an empty map.
    pub fn max_abs(&self) -> f32 {
        self.values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
}

/// The image with the map over it, as 8-bit RGB (`(width, height, pixels)`,
/// row-major, 3 bytes a pixel): the radiograph in gray (windowed at its 1st and 99th
/// percentiles), tinted red where the occluded patch supported the explained class
/// and blue where it spoke against it, up to 60% at the map's largest value. What
/// `marrow explain --png` writes and the TUI's viewer overlays.
pub fn overlay_rgb(image: &Image, map: &Heatmap) -> (usize, usize, Vec<u8>) {
    let (w, h) = (image.width, image.height);
    let mut sorted: Vec<f32> = image
        .pixels
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    sorted.sort_by(f32::total_cmp);
    let at = |q: f64| {
        sorted
            .get(((sorted.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (lo, hi) = (at(0.01), at(0.99));
    let span = (hi - lo).max(1e-6);
    let heat = map.on_image(w, h);
    let scale = map.max_abs().max(1e-6);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for (i, v) in image.pixels.iter().enumerate() {
        let g = ((v - lo) / span).clamp(0.0, 1.0) * 255.0;
        let t = (heat.get(i).copied().unwrap_or(0.0) / scale).clamp(-1.0, 1.0) * 0.6;
        let (r, gg, b) = if t >= 0.0 {
            (g + (255.0 - g) * t, g * (1.0 - t), g * (1.0 - t))
        } else {
            (g * (1.0 + t), g * (1.0 + t), g + (255.0 - g) * -t)
        };
        rgb.extend([r as u8, gg as u8, b as u8]);
    }
    (w, h, rgb)
}

/// Patch origins along one axis of `size`: every `stride` pixels while the patch
/// fits, and the last position flush with the edge so the map covers the input.
pub fn patch_origins(size: usize, patch: usize, stride: usize) -> Vec<usize> {
    let patch = patch.clamp(1, size.max(1));
    let stride = stride.max(1);
    let last = size.saturating_sub(patch);
    let mut v: Vec<usize> = (0..=last).step_by(stride).collect();
    if v.last() != Some(&last) {
        v.push(last);
    }
    v
}

/// The preprocessing's centre square crop of a `w x h` image (as
/// `Preprocess::window_crop_resize` takes it).
pub fn crop_of(spec: &ModelSpec, w: usize, h: usize) -> Crop {
    let side = ((w.min(h) as f32) * spec.preprocess.crop_fraction.clamp(0.05, 1.0))
        .round()
        .max(1.0) as usize;
    let side = side.min(w).min(h);
    Crop {
        x: (w - side) / 2,
        y: (h - side) / 2,
        side,
    }
}

/// [`occlusion_with`] on a loaded model for its predicted class.
pub fn occlusion(
    model: &LoadedModel,
    image: &Image,
    clinical: &Clinical,
    patch: usize,
    stride: usize,
) -> Heatmap {
    occlusion_with(
        model.spec(),
        |p| model.predict_prepared(p),
        image,
        clinical,
        patch,
        stride,
        None,
    )
}

/// The occlusion map of one case: the drop of `class`'s probability (the
/// predicted class when `None`) with each `patch x patch` square of the network's
/// input, `stride` apart, set to the mean (0 in the normalised plane). The
/// occluded copies go through `forward` in batches.
pub fn occlusion_with(
    spec: &ModelSpec,
    forward: impl Fn(&Prepared) -> Vec<Prediction>,
    image: &Image,
    clinical: &Clinical,
    patch: usize,
    stride: usize,
    class: Option<usize>,
) -> Heatmap {
    let (plane, clin) = spec.prepare_one(image, clinical);
    let size = spec.preprocess.input_size;
    let patch = patch.clamp(1, size.max(1));
    let stride = stride.max(1);
    let origins = patch_origins(size, patch, stride);
    let cells: Vec<(usize, usize)> = origins
        .iter()
        .flat_map(|&y| origins.iter().map(move |&x| (x, y)))
        .collect();
    let width = spec.clinical.width();
    let batch_of = |planes: Vec<Vec<f32>>| {
        let n = planes.len();
        Prepared {
            n,
            size,
            images: planes.concat(),
            clinical_width: width,
            clinical: clin.repeat(n),
        }
    };
    // the unoccluded case rides in the first batch
    let mut probs: Vec<Vec<f32>> = Vec::with_capacity(cells.len() + 1);
    let mut planes = vec![plane.clone()];
    for (i, &(x0, y0)) in cells.iter().enumerate() {
        let mut p = plane.clone();
        for y in y0..y0 + patch {
            p[y * size + x0..y * size + x0 + patch].fill(0.0);
        }
        planes.push(p);
        if planes.len() == OCCLUSION_BATCH || i + 1 == cells.len() {
            let batch = batch_of(std::mem::take(&mut planes));
            let preds = forward(&batch);
            assert_eq!(
                preds.len(),
                batch.n,
                "the forward pass returned a wrong batch size"
            );
            probs.extend(preds.into_iter().map(|p| p.probs));
        }
    }
    if probs.is_empty() {
        // no cells (an empty input): still explain the unoccluded case
        let batch = batch_of(planes);
        probs.extend(forward(&batch).into_iter().map(|p| p.probs));
    }
    let full = &probs[0];
    let class = class
        .unwrap_or_else(|| argmax(full))
        .min(full.len().saturating_sub(1));
    let p0 = full[class];
    Heatmap {
        width: origins.len(),
        height: origins.len(),
        values: probs[1..].iter().map(|p| p0 - p[class]).collect(),
        class,
        probability: p0,
        patch,
        stride,
        input_size: size,
        origins,
        crop: crop_of(spec, image.width, image.height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_tints_the_hot_and_cold_cells_and_leaves_the_rest_gray() {
        // A 40x40 ramp; the map covers the whole image (an 8-pixel input, 4x4 cells
        // of 2 input pixels = 10 source pixels each).
        let image = Image {
            width: 40,
            height: 40,
            pixels: (0..40 * 40).map(|i| (i % 40) as f32).collect(),
        };
        let mut values = vec![0.0f32; 16];
        values[0] = 0.5; // top-left cell: supported the class
        values[15] = -0.5; // bottom-right cell: spoke against it
        let map = Heatmap {
            width: 4,
            height: 4,
            values,
            class: 1,
            probability: 0.7,
            patch: 2,
            stride: 2,
            input_size: 8,
            origins: vec![0, 2, 4, 6],
            crop: Crop {
                x: 0,
                y: 0,
                side: 40,
            },
        };
        let (w, h, rgb) = overlay_rgb(&image, &map);
        assert_eq!((w, h, rgb.len()), (40, 40, 40 * 40 * 3));
        let px = |x: usize, y: usize| {
            let i = (y * 40 + x) * 3;
            (rgb[i], rgb[i + 1], rgb[i + 2])
        };
        let (r, g, b) = px(5, 5);
        assert!(r > g + 50 && g == b, "hot cell red: {:?}", (r, g, b));
        let (r, g, b) = px(35, 35);
        assert!(b > r + 50 && r == g, "cold cell blue: {:?}", (r, g, b));
        for (x, y) in [(20, 20), (35, 5), (5, 35), (15, 25)] {
            let (r, g, b) = px(x, y);
            assert!(r == g && g == b, "({x},{y}) stays gray: {:?}", (r, g, b));
        }
        // The gray follows the radiograph (the ramp), not the map.
        assert!(px(30, 20).0 > px(10, 20).0);
    }
    use crate::inference::Task;
    use crate::inference::backend::{BackendChoice, Cpu};
    use crate::inference::model::{Architecture, Classifier, ClinicalSpec, Preprocess};
    use crate::inference::phantom;

    fn shipped(task: Task) -> LoadedModel {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(task.code());
        LoadedModel::load(&dir, BackendChoice::Cpu).unwrap()
    }

    /// An untrained OP-shaped classifier (all three groups present).
    fn untrained_op() -> Classifier<Cpu> {
        let cases: Vec<Clinical> = (0..6)
            .map(|s| phantom::generate(Task::Op, (s % 3) as u8, s).clinical)
            .collect();
        let refs: Vec<&Clinical> = cases.iter().collect();
        let spec = ModelSpec {
            task: Task::Op,
            classes: Task::Op.classes(),
            preprocess: Preprocess::default(),
            clinical: ClinicalSpec::fit(&Feature::ALL, &refs),
            architecture: Architecture::default(),
        };
        let device = Default::default();
        Classifier {
            net: spec.init::<Cpu>(&device),
            spec,
            device,
        }
    }

    fn assert_efficient(s: &GroupShapley) {
        for k in 0..s.classes.len() {
            let c = s.class(k);
            let total = c.base + c.image + c.demographics + c.labs;
            assert!((total - c.full).abs() < 1e-5, "class {k}: {c:?}");
        }
        let b = s.binary();
        assert!(
            (b.base + b.image + b.demographics + b.labs - b.full).abs() < 1e-5,
            "{b:?}"
        );
    }

    #[test]
    fn shapley_values_of_toy_games_are_efficient_symmetric_and_null_for_a_null_player() {
        // players 0 and 1 symmetric, with an interaction; player 2 a null player
        let v = |m: usize| {
            let a = (m & 1 != 0) as u8 as f64;
            let b = (m & 2 != 0) as u8 as f64;
            1.0 + 2.0 * a + 2.0 * b + 3.0 * a * b
        };
        let values: Vec<f64> = (0..8).map(v).collect();
        let phi = shapley_values(3, &values);
        assert!((phi[0] - phi[1]).abs() < 1e-12, "{phi:?}");
        assert_eq!(phi[2], 0.0);
        // the interaction is split equally: 2 + 3/2 each
        assert!((phi[0] - 3.5).abs() < 1e-12, "{phi:?}");
        assert!((phi.iter().sum::<f64>() - (values[7] - values[0])).abs() < 1e-12);
        // an additive game gives each player its own term, whatever the others do
        let add: Vec<f64> = (0..8)
            .map(|m| {
                [0.5, -2.0, 7.0]
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| m & (1 << i) != 0)
                    .map(|(_, w)| w)
                    .sum()
            })
            .collect();
        let phi = shapley_values(3, &add);
        for (p, w) in phi.iter().zip([0.5, -2.0, 7.0]) {
            assert!((p - w).abs() < 1e-12, "{phi:?}");
        }
        // a game where only the grand coalition pays: equal thirds
        let only_all: Vec<f64> = (0..8).map(|m| if m == 7 { 3.0 } else { 0.0 }).collect();
        assert!(
            shapley_values(3, &only_all)
                .iter()
                .all(|p| (p - 1.0).abs() < 1e-12)
        );
    }

    #[test]
    fn removed_groups_become_the_training_mean() {
        let c = untrained_op();
        let p = phantom::generate(Task::Op, 2, 5);
        let (plane, clin) = c.spec.prepare_one(&p.image(), &p.clinical);
        // nothing removed: the case itself
        assert_eq!(
            coalition_inputs(&c.spec, &plane, &clin, 7),
            (plane.clone(), clin.clone())
        );
        // all removed: the zero plane and exactly what the encoder gives the means
        let means = Clinical {
            age: Some(c.spec.clinical.features[0].mean),
            female: None,
            ..Clinical::default()
        };
        let enc = c.spec.clinical.encode(&means);
        let (img0, clin0) = coalition_inputs(&c.spec, &plane, &clin, 0);
        assert!(img0.iter().all(|&v| v == 0.0));
        assert!(clin0.iter().all(|&v| v == 0.0));
        assert_eq!(&enc[..2], &clin0[..2]);
        assert_eq!(enc[..2], [0.0, 0.0]);
        // demographics only: labs zeroed, demographics kept
        let (_, cd) = coalition_inputs(&c.spec, &plane, &clin, 2);
        for (i, f) in c.spec.clinical.features.iter().enumerate() {
            if f.feature.is_lab() {
                assert_eq!((cd[2 * i], cd[2 * i + 1]), (0.0, 0.0));
            } else {
                assert_eq!((cd[2 * i], cd[2 * i + 1]), (clin[2 * i], clin[2 * i + 1]));
            }
        }
    }

    #[test]
    fn shapley_of_a_real_network_adds_up_to_its_prediction() {
        let c = untrained_op();
        for seed in 0..3 {
            let p = phantom::generate(Task::Op, seed as u8 % 3, 100 + seed);
            let s =
                shapley_groups_with(&c.spec, |b| c.predict_prepared(b), &p.image(), &p.clinical);
            assert_efficient(&s);
            assert_eq!(s.groups, Group::ALL.to_vec());
            let alone = c.predict(&[crate::inference::Input {
                image: p.image(),
                clinical: p.clinical.clone(),
            }]);
            for (a, b) in s.full.iter().zip(&alone[0].probs) {
                assert!((a - b).abs() < 1e-5, "{:?} vs {:?}", s.full, alone[0].probs);
            }
            assert!((s.full.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn the_shipped_kl_model_gives_labs_nothing_and_the_same_base_for_every_case() {
        let model = shipped(Task::Kl);
        let a = phantom::generate(Task::Kl, 4, 9);
        let b = phantom::generate(Task::Kl, 0, 10);
        let sa = shapley_groups(&model, &a.image(), &a.clinical);
        let sb = shapley_groups(&model, &b.image(), &b.clinical);
        for s in [&sa, &sb] {
            assert_efficient(s);
            assert_eq!(s.groups, vec![Group::Image, Group::Demographics]);
            assert!(s.labs.iter().all(|&v| v == 0.0), "{:?}", s.labs);
        }
        assert_eq!(sa.base, sb.base);
        // The base is the mean plane, flat grey: no joint space at all, which the
        // phantom-trained model reads as KL4 (P(KL >= 2) ~ 1). A KL0 knee's image
        // then takes the binary outcome down, far more than its demographics do;
        // a KL4 knee's image leaves it where it is.
        assert!(sa.base[4] > 0.9, "{:?}", sa.base);
        assert_eq!(sa.predicted, 4);
        let (ba, bb) = (sa.binary(), sb.binary());
        assert!(ba.full > 0.9 && ba.image.abs() < 0.1, "{ba:?}");
        assert_eq!(sb.predicted_class().full, sb.full[sb.predicted]);
        assert!(bb.full < 0.1 && bb.image < -0.5, "{bb:?}");
        assert!(bb.image.abs() > 5.0 * bb.demographics.abs(), "{bb:?}");
    }

    #[test]
    fn the_shipped_op_model_is_explained_over_all_three_groups() {
        let model = shipped(Task::Op);
        let p = phantom::generate(Task::Op, 2, 31);
        let s = shapley_groups(&model, &p.image(), &p.clinical);
        assert_efficient(&s);
        assert_eq!(s.groups, Group::ALL.to_vec());
        assert_eq!(s.classes.len(), 3);
        assert_eq!(s.predicted, argmax(&s.full));
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"demographics\""));
    }

    #[test]
    fn patch_origins_cover_the_input() {
        assert_eq!(
            patch_origins(48, 8, 4),
            (0..=40).step_by(4).collect::<Vec<_>>()
        );
        assert_eq!(patch_origins(10, 4, 4), vec![0, 4, 6]);
        assert_eq!(patch_origins(4, 8, 2), vec![0]);
    }

    #[test]
    fn occlusion_finds_the_one_region_a_toy_model_looks_at() {
        // a "model" whose class-1 probability depends only on the input block at
        // x in 32..36, y in 8..12 (an upright, asymmetric spot: catches a swapped
        // row and column)
        let c = untrained_op();
        let spec = &c.spec;
        let s = spec.preprocess.input_size;
        let forward = |p: &Prepared| -> Vec<Prediction> {
            (0..p.n)
                .map(|i| {
                    let img = &p.images[i * s * s..(i + 1) * s * s];
                    let mut m = 0.0;
                    for y in 8..12 {
                        for x in 32..36 {
                            m += img[y * s + x];
                        }
                    }
                    let q = 1.0 / (1.0 + (-(m / 16.0 + 3.0)).exp());
                    Prediction {
                        probs: vec![1.0 - q, q, 0.0],
                        class: u8::from(q > 0.5),
                    }
                })
                .collect()
        };
        // a bright phantom: the block is positive in the normalised plane
        let image = Image {
            width: 60,
            height: 60,
            pixels: (0..3600)
                .map(|i| (if (i / 60) < 30 { 1000.0 } else { 0.0 }) + (i % 7) as f32)
                .collect(),
        };
        let h = occlusion_with(spec, forward, &image, &Clinical::default(), 8, 4, None);
        assert_eq!((h.width, h.height, h.values.len()), (11, 11, 121));
        assert_eq!(h.class, 1);
        for row in 0..h.height {
            for col in 0..h.width {
                let (x0, y0, p) = h.cell_rect(col, row);
                let overlaps = x0 < 36 && x0 + p > 32 && y0 < 12 && y0 + p > 8;
                let v = h.at(col, row);
                if overlaps {
                    assert!(v > 1e-4, "cell ({col},{row}) at ({x0},{y0}): {v}");
                } else {
                    assert_eq!(v, 0.0, "cell ({col},{row}) at ({x0},{y0})");
                }
            }
        }
        let fine = h.per_pixel();
        assert_eq!(fine.len(), s * s);
        assert!(fine[10 * s + 34] > 0.0 && fine[40 * s + 4] == 0.0);
        assert_eq!(
            h.crop,
            Crop {
                x: 0,
                y: 0,
                side: 60
            }
        );
        let over = h.on_image(60, 60);
        assert!(over[10 * 60 + 42] > 0.0 && over[50 * 60 + 5] == 0.0);
    }

    #[test]
    fn occlusion_of_a_knee_is_strongest_around_the_joint_not_in_the_corners() {
        // The joint (gap, tibial spines, condyle margins) lies in the middle of
        // the input; the corners hold soft tissue and background. One knee per grade.
        let model = shipped(Task::Kl);
        let central = |c: usize, r: usize| (3..=7).contains(&c) && (3..=7).contains(&r);
        let corners = [
            (0, 0),
            (1, 0),
            (0, 1),
            (10, 0),
            (9, 0),
            (10, 1),
            (0, 10),
            (1, 10),
            (0, 9),
            (10, 10),
            (9, 10),
            (10, 9),
        ];
        let (mut centre_mass, mut corner_mass, mut peaks_in_centre) = (0.0f32, 0.0f32, 0);
        for grade in 0..5u8 {
            let p = phantom::generate(Task::Kl, grade, 500 + u64::from(grade));
            let h = occlusion(
                &model,
                &p.image(),
                &p.clinical,
                DEFAULT_PATCH,
                DEFAULT_STRIDE,
            );
            assert_eq!((h.width, h.height, h.values.len()), (11, 11, 121));
            assert_eq!(h.origins, (0..=40).step_by(4).collect::<Vec<_>>());
            assert!(h.values.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
            assert_eq!(h.per_pixel().len(), 48 * 48);
            let cells = (0..11).flat_map(|r| (0..11).map(move |c| (c, r)));
            centre_mass += cells
                .clone()
                .filter(|&(c, r)| central(c, r))
                .map(|(c, r)| h.at(c, r).abs())
                .sum::<f32>()
                / 25.0;
            corner_mass += corners.iter().map(|&(c, r)| h.at(c, r).abs()).sum::<f32>() / 12.0;
            let peak = cells
                .max_by(|a, b| h.at(a.0, a.1).abs().total_cmp(&h.at(b.0, b.1).abs()))
                .unwrap();
            peaks_in_centre += usize::from(central(peak.0, peak.1));
        }
        assert!(
            centre_mass > 2.5 * corner_mass,
            "mean |drop| around the joint {centre_mass}, in the corners {corner_mass}"
        );
        assert!(
            peaks_in_centre >= 4,
            "{peaks_in_centre} of 5 peaks around the joint"
        );
    }
}
