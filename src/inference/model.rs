//! The network and its preprocessing (issue 5).
//!
//! A small CNN turns the preprocessed image into features, a small MLP does the
//! same for the clinical values (each normalised with the training mean and
//! standard deviation, a missing value set to the training mean and flagged by a
//! missing-indicator input), and a head classifies the concatenation.
//!
//! Preprocessing is part of the model: [`Preprocess`] and [`ClinicalSpec`] are
//! stored in the model card, and both training ([`super::train`]) and inference
//! ([`Classifier::predict`]) go through [`ModelSpec::prepare`], so the two cannot
//! drift apart.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use serde::{Deserialize, Serialize};

use super::{Clinical, Feature, Image, Input, Prediction, Task};

/// Image preprocessing: window by percentiles to [0, 1], centre crop, resize,
/// normalise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the square network input, pixels.
    pub input_size: usize,
    /// The window maps this percentile of the image's values to 0 ...
    pub window_low_percentile: f32,
    /// ... and this one to 1 (values outside are clamped).
    pub window_high_percentile: f32,
    /// Side of the centre square crop as a fraction of the shorter image side
    /// (1.0 = the largest centred square).
    pub crop_fraction: f32,
    /// Normalisation after the window: `(x - mean) / std` (training-set values).
    pub mean: f32,
    pub std: f32,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            input_size: 48,
            window_low_percentile: 1.0,
            window_high_percentile: 99.0,
            crop_fraction: 1.0,
            mean: 0.5,
            std: 0.25,
        }
    }
}

impl Preprocess {
    /// Window, crop and resize, without the final normalisation: values in [0, 1],
    /// `input_size^2` of them, row-major.
    pub fn window_crop_resize(&self, image: &Image) -> Vec<f32> {
        let (w, h) = (image.width, image.height);
        let n = self.input_size;
        if w == 0 || h == 0 || image.pixels.len() != w * h {
            return vec![0.0; n * n];
        }
        // percentiles on a strided sample (at most ~16k values)
        let step = (image.pixels.len() / 16_384).max(1);
        let mut sample: Vec<f32> = image
            .pixels
            .iter()
            .step_by(step)
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if sample.is_empty() {
            return vec![0.0; n * n];
        }
        sample.sort_by(f32::total_cmp);
        let pick = |p: f32| {
            let i = ((p / 100.0).clamp(0.0, 1.0) * (sample.len() - 1) as f32).round() as usize;
            sample[i]
        };
        let (lo, hi) = (
            pick(self.window_low_percentile),
            pick(self.window_high_percentile),
        );
        let span = (hi - lo).max(1e-6);
        // centre square crop
        let side = ((w.min(h) as f32) * self.crop_fraction.clamp(0.05, 1.0))
            .round()
            .max(1.0) as usize;
        let (x0, y0) = ((w - side.min(w)) / 2, (h - side.min(h)) / 2);
        let windowed = |x: usize, y: usize| {
            let v = image.pixels[(y0 + y) * w + x0 + x];
            if v.is_finite() {
                ((v - lo) / span).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let crop: Vec<f32> = (0..side)
            .flat_map(|y| (0..side).map(move |x| (x, y)))
            .map(|(x, y)| windowed(x, y))
            .collect();
        resize_square(&crop, side, n)
    }

    /// The full image preprocessing: the network's input plane.
    pub fn apply(&self, image: &Image) -> Vec<f32> {
        let std = if self.std > 1e-6 { self.std } else { 1.0 };
        self.window_crop_resize(image)
            .into_iter()
            .map(|v| (v - self.mean) / std)
            .collect()
    }
}

/// Antialiased separable resize (triangle filter widened by the scale, as in
/// PIL's bilinear) of a `src x src` square to `dst x dst`.
pub fn resize_square(pixels: &[f32], src: usize, dst: usize) -> Vec<f32> {
    if src == dst {
        return pixels.to_vec();
    }
    let weights = axis_weights(src, dst);
    // rows: src x src -> src rows x dst cols
    let mut tmp = vec![0.0f32; src * dst];
    for y in 0..src {
        let row = &pixels[y * src..(y + 1) * src];
        for (x, ws) in weights.iter().enumerate() {
            tmp[y * dst + x] = ws.iter().map(|&(i, wt)| row[i] * wt).sum();
        }
    }
    let mut out = vec![0.0f32; dst * dst];
    for (y, ws) in weights.iter().enumerate() {
        for x in 0..dst {
            out[y * dst + x] = ws.iter().map(|&(i, wt)| tmp[i * dst + x] * wt).sum();
        }
    }
    out
}

fn axis_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    let support = scale.max(1.0);
    (0..dst)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale;
            let lo = (centre - support).floor().max(0.0) as usize;
            let hi = ((centre + support).ceil() as usize).min(src);
            let mut ws: Vec<(usize, f64)> = (lo..hi)
                .map(|i| {
                    let d = ((i as f64 + 0.5 - centre) / support).abs();
                    (i, (1.0 - d).max(0.0))
                })
                .filter(|&(_, w)| w > 0.0)
                .collect();
            let total: f64 = ws.iter().map(|&(_, w)| w).sum();
            if total <= 0.0 {
                let i = (centre.floor() as usize).min(src - 1);
                ws = vec![(i, 1.0)];
            } else {
                for w in &mut ws {
                    w.1 /= total;
                }
            }
            ws.into_iter().map(|(i, w)| (i, w as f32)).collect()
        })
        .collect()
}

/// Normalisation of one clinical feature (training-set mean and standard
/// deviation of the recorded values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureNorm {
    pub feature: Feature,
    pub mean: f64,
    pub std: f64,
}

/// The clinical inputs: for each feature `(x - mean) / std` and a missing
/// indicator (a missing value becomes the training mean, i.e. 0, with indicator 1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClinicalSpec {
    pub features: Vec<FeatureNorm>,
}

impl ClinicalSpec {
    /// Means and standard deviations from the training cases.
    pub fn fit(features: &[Feature], cases: &[&Clinical]) -> Self {
        let features = features
            .iter()
            .map(|&feature| {
                let vals: Vec<f64> = cases.iter().filter_map(|c| c.get(feature)).collect();
                let n = vals.len() as f64;
                let mean = if vals.is_empty() {
                    0.0
                } else {
                    vals.iter().sum::<f64>() / n
                };
                let var = if vals.len() < 2 {
                    1.0
                } else {
                    vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
                };
                let std = if var.sqrt() > 1e-9 { var.sqrt() } else { 1.0 };
                FeatureNorm { feature, mean, std }
            })
            .collect();
        ClinicalSpec { features }
    }

    /// Number of network inputs: two per feature.
    pub fn width(&self) -> usize {
        2 * self.features.len()
    }

    /// `[z_1, missing_1, z_2, missing_2, ...]`.
    pub fn encode(&self, c: &Clinical) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.width());
        for f in &self.features {
            match c.get(f.feature) {
                Some(v) => {
                    out.push((((v - f.mean) / f.std) as f32).clamp(-6.0, 6.0));
                    out.push(0.0);
                }
                None => {
                    out.push(0.0);
                    out.push(1.0);
                }
            }
        }
        out
    }
}

/// The network's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// Output channels of the four 3x3 convolutions (each followed by batch norm,
    /// ReLU and, for the first three, a 2x2 max pool).
    pub channels: [usize; 4],
    /// Side of the adaptive average pool grid before the image features.
    pub grid: usize,
    pub image_features: usize,
    pub clinical_hidden: usize,
    pub fusion_hidden: usize,
    pub dropout: f64,
}

impl Default for Architecture {
    fn default() -> Self {
        Architecture {
            channels: [8, 16, 24, 32],
            grid: 3,
            image_features: 48,
            clinical_hidden: 16,
            fusion_hidden: 32,
            dropout: 0.2,
        }
    }
}

/// Everything that defines a model apart from its weights: what the card stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub task: Task,
    pub classes: Vec<String>,
    pub preprocess: Preprocess,
    pub clinical: ClinicalSpec,
    pub architecture: Architecture,
}

/// A batch ready for the network: images `[n, 1, s, s]` and clinical `[n, c]`,
/// flattened row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub n: usize,
    pub size: usize,
    pub images: Vec<f32>,
    pub clinical_width: usize,
    pub clinical: Vec<f32>,
}

impl ModelSpec {
    /// The preprocessing of one case: the image plane and the clinical inputs.
    /// Training and inference both call this.
    pub fn prepare_one(&self, image: &Image, clinical: &Clinical) -> (Vec<f32>, Vec<f32>) {
        (self.preprocess.apply(image), self.clinical.encode(clinical))
    }

    /// The preprocessing of a batch (in parallel on the CPU).
    pub fn prepare(&self, cases: &[(&Image, &Clinical)]) -> Prepared {
        use rayon::prelude::*;
        let parts: Vec<(Vec<f32>, Vec<f32>)> = cases
            .par_iter()
            .map(|(i, c)| self.prepare_one(i, c))
            .collect();
        let mut images = Vec::with_capacity(cases.len() * self.preprocess.input_size.pow(2));
        let mut clinical = Vec::with_capacity(cases.len() * self.clinical.width());
        for (i, c) in parts {
            images.extend(i);
            clinical.extend(c);
        }
        Prepared {
            n: cases.len(),
            size: self.preprocess.input_size,
            images,
            clinical_width: self.clinical.width(),
            clinical,
        }
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Net<B> {
        Net::new(
            &self.architecture,
            self.clinical.width(),
            self.classes.len(),
            device,
        )
    }
}

/// The CNN with clinical fusion.
#[derive(Module, Debug)]
pub struct Net<B: Backend> {
    conv1: Conv2d<B>,
    bn1: BatchNorm<B>,
    conv2: Conv2d<B>,
    bn2: BatchNorm<B>,
    conv3: Conv2d<B>,
    bn3: BatchNorm<B>,
    conv4: Conv2d<B>,
    bn4: BatchNorm<B>,
    pool: MaxPool2d,
    grid: AdaptiveAvgPool2d,
    image_fc: Linear<B>,
    clinical_fc: Option<Linear<B>>,
    fusion: Linear<B>,
    head: Linear<B>,
    dropout: Dropout,
}

impl<B: Backend> Net<B> {
    pub fn new(
        a: &Architecture,
        clinical_width: usize,
        classes: usize,
        device: &B::Device,
    ) -> Self {
        let conv = |i: usize, o: usize| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        let [c1, c2, c3, c4] = a.channels;
        let clinical_fc = (clinical_width > 0)
            .then(|| LinearConfig::new(clinical_width, a.clinical_hidden).init(device));
        let clin_out = if clinical_width > 0 {
            a.clinical_hidden
        } else {
            0
        };
        Net {
            conv1: conv(1, c1),
            bn1: BatchNormConfig::new(c1).init(device),
            conv2: conv(c1, c2),
            bn2: BatchNormConfig::new(c2).init(device),
            conv3: conv(c2, c3),
            bn3: BatchNormConfig::new(c3).init(device),
            conv4: conv(c3, c4),
            bn4: BatchNormConfig::new(c4).init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            grid: AdaptiveAvgPool2dConfig::new([a.grid, a.grid]).init(),
            image_fc: LinearConfig::new(c4 * a.grid * a.grid, a.image_features).init(device),
            clinical_fc,
            fusion: LinearConfig::new(a.image_features + clin_out, a.fusion_hidden).init(device),
            head: LinearConfig::new(a.fusion_hidden, classes).init(device),
            dropout: DropoutConfig::new(a.dropout).init(),
        }
    }

    /// Image features `[n, image_features]` from images `[n, 1, s, s]`.
    pub fn image_features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self
            .pool
            .forward(relu(self.bn1.forward(self.conv1.forward(images))));
        let x = self
            .pool
            .forward(relu(self.bn2.forward(self.conv2.forward(x))));
        let x = self
            .pool
            .forward(relu(self.bn3.forward(self.conv3.forward(x))));
        let x = relu(self.bn4.forward(self.conv4.forward(x)));
        let x = self.grid.forward(x);
        let x: Tensor<B, 2> = x.flatten(1, 3);
        relu(self.image_fc.forward(self.dropout.forward(x)))
    }

    /// The network frozen for CPU inference: plain arrays, batch norms folded into
    /// their convolutions (see [`super::frozen`]).
    pub fn freeze(&self, a: &Architecture) -> super::frozen::FrozenNet {
        fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("f32 tensor data")
        }
        let conv = |c: &Conv2d<B>, bn: &BatchNorm<B>| {
            let [cout, cin, kh, kw] = c.weight.val().dims();
            assert_eq!((kh, kw), (3, 3), "3x3 convolutions");
            super::frozen::FrozenConv::fold(
                cin,
                cout,
                values(c.weight.val()),
                c.bias.as_ref().map(|b| values(b.val())),
                &values(bn.gamma.val()),
                &values(bn.beta.val()),
                &values(bn.running_mean.value()),
                &values(bn.running_var.value()),
                bn.epsilon,
            )
        };
        let linear = |l: &Linear<B>| {
            let [d_in, d_out] = l.weight.val().dims();
            super::frozen::FrozenLinear {
                d_in,
                d_out,
                weight: values(l.weight.val()),
                bias: l
                    .bias
                    .as_ref()
                    .map(|b| values(b.val()))
                    .unwrap_or_else(|| vec![0.0; d_out]),
            }
        };
        super::frozen::FrozenNet {
            convs: vec![
                conv(&self.conv1, &self.bn1),
                conv(&self.conv2, &self.bn2),
                conv(&self.conv3, &self.bn3),
                conv(&self.conv4, &self.bn4),
            ],
            grid: a.grid,
            image_fc: linear(&self.image_fc),
            clinical_fc: self.clinical_fc.as_ref().map(linear),
            fusion: linear(&self.fusion),
            head: linear(&self.head),
        }
    }

    /// Logits `[n, classes]`.
    pub fn forward(&self, images: Tensor<B, 4>, clinical: Tensor<B, 2>) -> Tensor<B, 2> {
        let img = self.image_features(images);
        let fused = match &self.clinical_fc {
            Some(fc) => Tensor::cat(vec![img, relu(fc.forward(clinical))], 1),
            None => img,
        };
        let h = relu(self.fusion.forward(self.dropout.forward(fused)));
        self.head.forward(h)
    }
}

/// Tensors of a prepared batch on `device`.
pub fn tensors<B: Backend>(p: &Prepared, device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 2>) {
    let images = Tensor::<B, 4>::from_data(
        TensorData::new(p.images.clone(), [p.n, 1, p.size, p.size]),
        device,
    );
    let clinical = if p.clinical_width == 0 {
        Tensor::<B, 2>::zeros([p.n, 1], device)
    } else {
        Tensor::<B, 2>::from_data(
            TensorData::new(p.clinical.clone(), [p.n, p.clinical_width]),
            device,
        )
    };
    (images, clinical)
}

/// A trained model on a backend: its spec (from the card) and its weights.
#[derive(Debug)]
pub struct Classifier<B: Backend> {
    pub spec: ModelSpec,
    pub net: Net<B>,
    pub device: B::Device,
}

impl<B: Backend> Classifier<B> {
    /// The model's own preprocessing of one case (the same function training uses).
    pub fn preprocess(&self, image: &Image, clinical: &Clinical) -> (Vec<f32>, Vec<f32>) {
        self.spec.prepare_one(image, clinical)
    }

    /// Class probabilities of a prepared batch.
    pub fn predict_prepared(&self, p: &Prepared) -> Vec<Prediction> {
        if p.n == 0 {
            return Vec::new();
        }
        let (images, clinical) = tensors::<B>(p, &self.device);
        let probs = softmax(self.net.forward(images, clinical), 1);
        let k = self.spec.classes.len();
        let flat: Vec<f32> = probs
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        flat.chunks(k)
            .map(|row| Prediction {
                probs: row.to_vec(),
                class: argmax(row) as u8,
            })
            .collect()
    }

    /// Class probabilities of a batch of cases (preprocessing included).
    pub fn predict(&self, inputs: &[Input]) -> Vec<Prediction> {
        let cases: Vec<(&Image, &Clinical)> =
            inputs.iter().map(|i| (&i.image, &i.clinical)).collect();
        self.predict_prepared(&self.spec.prepare(&cases))
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_a_constant_image_constant_and_averages_downscale() {
        let flat = vec![0.25f32; 90 * 90];
        let out = resize_square(&flat, 90, 64);
        assert_eq!(out.len(), 64 * 64);
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-5));
        // a 2x downscale of a checkerboard is grey
        let cb: Vec<f32> = (0..128 * 128)
            .map(|i| ((i % 128 + i / 128) % 2) as f32)
            .collect();
        let out = resize_square(&cb, 128, 64);
        assert!(out.iter().all(|v| (v - 0.5).abs() < 0.3), "{:?}", &out[..4]);
    }

    #[test]
    fn window_maps_percentiles_to_unit_range() {
        let img = Image {
            width: 10,
            height: 10,
            pixels: (0..100).map(|v| v as f32 * 40.0).collect(),
        };
        let p = Preprocess {
            input_size: 10,
            window_low_percentile: 0.0,
            window_high_percentile: 100.0,
            ..Preprocess::default()
        };
        let out = p.window_crop_resize(&img);
        assert!((out[0] - 0.0).abs() < 1e-6 && (out[99] - 1.0).abs() < 1e-6);
        // exposure (gain and offset) does not change the preprocessed image
        let brighter = Image {
            pixels: img.pixels.iter().map(|v| v * 1.3 + 200.0).collect(),
            ..img.clone()
        };
        let a = p.apply(&img);
        let b = p.apply(&brighter);
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4));
    }

    #[test]
    fn missing_values_become_the_mean_with_an_indicator() {
        let a = Clinical {
            age: Some(60.0),
            ..Clinical::default()
        };
        let b = Clinical {
            age: Some(80.0),
            bmi: Some(25.0),
            ..Clinical::default()
        };
        let spec = ClinicalSpec::fit(&[Feature::Age, Feature::Bmi], &[&a, &b]);
        assert_eq!(spec.features[0].mean, 70.0);
        assert_eq!(spec.width(), 4);
        let e = spec.encode(&a);
        assert!(e[0] < 0.0 && e[1] == 0.0);
        assert_eq!((e[2], e[3]), (0.0, 1.0)); // BMI missing
    }
}
