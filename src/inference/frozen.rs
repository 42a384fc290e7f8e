//! The CPU inference path: the trained network frozen into plain `f32` arrays, with
//! each batch norm folded into its convolution, run by a direct implementation of the
//! same layers (im2col + SGEMM from `matrixmultiply`, ReLU and max pool fused after
//! it, adaptive average pool, the linear layers, softmax).
//!
//! Why: burn-ndarray runs this small network's forward pass as ~20 separate tensor
//! ops with an allocation each, batch norm as four elementwise passes, and layout
//! permutes around each convolution; at batch 16 on one core that was about half the
//! speed of PyTorch (docs/BENCHMARKS.md). Training still runs on burn (autodiff),
//! and the weights, the card and the preprocessing are the same: this is the network
//! of [`super::model::Net`] evaluated in inference mode (dropout off, batch norm with
//! its running statistics), and a test checks it against burn's forward pass on the
//! shipped models.

use super::Prediction;
use super::model::{Prepared, argmax};
use rayon::prelude::*;

/// A 3x3 convolution (stride 1, padding 1) with its batch norm folded in.
#[derive(Debug, Clone)]
pub struct FrozenConv {
    pub cin: usize,
    pub cout: usize,
    /// `[cout][cin * 9]`, row-major, kernel index `ci * 9 + ky * 3 + kx`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl FrozenConv {
    /// Folds `y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta` into the
    /// convolution's weights and bias.
    #[allow(clippy::too_many_arguments)]
    pub fn fold(
        cin: usize,
        cout: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        epsilon: f64,
    ) -> FrozenConv {
        let k = cin * 9;
        assert_eq!(weight.len(), cout * k, "conv weight shape");
        let mut w = weight;
        let mut b = bias.unwrap_or_else(|| vec![0.0; cout]);
        for o in 0..cout {
            let s = (gamma[o] as f64 / (var[o] as f64 + epsilon).sqrt()) as f32;
            for x in &mut w[o * k..(o + 1) * k] {
                *x *= s;
            }
            b[o] = (b[o] - mean[o]) * s + beta[o];
        }
        FrozenConv {
            cin,
            cout,
            weight: w,
            bias: b,
        }
    }

    /// `x` `[cin][h][w]` to ReLU(conv(x)) `[cout][h][w]`, through `cols` (scratch).
    fn forward(&self, x: &[f32], h: usize, w: usize, cols: &mut Vec<f32>) -> Vec<f32> {
        let hw = h * w;
        let k = self.cin * 9;
        cols.clear();
        cols.resize(k * hw, 0.0);
        for ci in 0..self.cin {
            let plane = &x[ci * hw..(ci + 1) * hw];
            for ky in 0..3 {
                for kx in 0..3 {
                    let row = &mut cols[(ci * 9 + ky * 3 + kx) * hw..][..hw];
                    for y in 0..h {
                        let sy = y as isize + ky as isize - 1;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        let src = &plane[sy as usize * w..][..w];
                        let dst = &mut row[y * w..][..w];
                        match kx {
                            0 => dst[1..].copy_from_slice(&src[..w - 1]),
                            1 => dst.copy_from_slice(src),
                            _ => dst[..w - 1].copy_from_slice(&src[1..]),
                        }
                    }
                }
            }
        }
        let mut out = vec![0.0f32; self.cout * hw];
        for (o, b) in self.bias.iter().enumerate() {
            out[o * hw..(o + 1) * hw].fill(*b);
        }
        // SAFETY: the strides describe `weight` [cout x k], `cols` [k x hw] and `out`
        // [cout x hw], all row-major and of exactly those lengths (checked above).
        unsafe {
            matrixmultiply::sgemm(
                self.cout,
                k,
                hw,
                1.0,
                self.weight.as_ptr(),
                k as isize,
                1,
                cols.as_ptr(),
                hw as isize,
                1,
                1.0,
                out.as_mut_ptr(),
                hw as isize,
                1,
            );
        }
        for v in &mut out {
            *v = v.max(0.0);
        }
        out
    }
}

/// A linear layer: `y = x W + b`, `W` `[d_in][d_out]` row-major (burn's layout).
#[derive(Debug, Clone)]
pub struct FrozenLinear {
    pub d_in: usize,
    pub d_out: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl FrozenLinear {
    fn forward(&self, x: &[f32], relu: bool, out: &mut Vec<f32>) {
        debug_assert_eq!(x.len(), self.d_in);
        let start = out.len();
        out.extend_from_slice(&self.bias);
        let y = &mut out[start..];
        for (i, xi) in x.iter().enumerate() {
            if *xi == 0.0 {
                continue;
            }
            let row = &self.weight[i * self.d_out..(i + 1) * self.d_out];
            for (yo, wo) in y.iter_mut().zip(row) {
                *yo += xi * wo;
            }
        }
        if relu {
            for v in y {
                *v = v.max(0.0);
            }
        }
    }
}

/// The whole network, frozen for inference.
#[derive(Debug, Clone)]
pub struct FrozenNet {
    /// Four convolutions; a 2x2 max pool follows each of the first three.
    pub convs: Vec<FrozenConv>,
    pub grid: usize,
    pub image_fc: FrozenLinear,
    pub clinical_fc: Option<FrozenLinear>,
    pub fusion: FrozenLinear,
    pub head: FrozenLinear,
}

/// 2x2 max pool, stride 2 (odd edges dropped, as burn's `MaxPool2d` without padding).
fn max_pool(x: &[f32], c: usize, h: usize, w: usize) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for y in 0..oh {
            let r0 = &plane[2 * y * w..][..w];
            let r1 = &plane[(2 * y + 1) * w..][..w];
            for xx in 0..ow {
                let m = r0[2 * xx]
                    .max(r0[2 * xx + 1])
                    .max(r1[2 * xx])
                    .max(r1[2 * xx + 1]);
                out.push(m);
            }
        }
    }
    (out, oh, ow)
}

/// Adaptive average pool to `g x g`, with burn-ndarray's start/end indices.
fn adaptive_avg_pool(x: &[f32], c: usize, h: usize, w: usize, g: usize, out: &mut Vec<f32>) {
    let start = |i: usize, n: usize| ((i as f32 * n as f32) / g as f32).floor() as usize;
    let end =
        |i: usize, n: usize| ((((i + 1) as f32 * n as f32) / g as f32).ceil() as usize).min(n);
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for gy in 0..g {
            let (y0, y1) = (start(gy, h), end(gy, h));
            for gx in 0..g {
                let (x0, x1) = (start(gx, w), end(gx, w));
                let mut sum = 0.0f32;
                for y in y0..y1 {
                    for v in &plane[y * w + x0..y * w + x1] {
                        sum += v;
                    }
                }
                out.push(sum / ((y1 - y0) * (x1 - x0)) as f32);
            }
        }
    }
}

/// Softmax of a row, in place (max subtracted first).
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

impl FrozenNet {
    /// Logits of one case: image `[1][s][s]`, clinical inputs (may be empty).
    pub fn logits(&self, image: &[f32], size: usize, clinical: &[f32]) -> Vec<f32> {
        let mut cols = Vec::new();
        let (mut x, mut h, mut w) = (image.to_vec(), size, size);
        let last = self.convs.len() - 1;
        for (i, conv) in self.convs.iter().enumerate() {
            x = conv.forward(&x, h, w, &mut cols);
            if i < last {
                (x, h, w) = max_pool(&x, conv.cout, h, w);
            }
        }
        let c = self.convs[last].cout;
        let mut pooled = Vec::with_capacity(c * self.grid * self.grid);
        adaptive_avg_pool(&x, c, h, w, self.grid, &mut pooled);
        let mut fused = Vec::with_capacity(self.fusion.d_in);
        self.image_fc.forward(&pooled, true, &mut fused);
        if let Some(fc) = &self.clinical_fc {
            fc.forward(clinical, true, &mut fused);
        }
        let mut hidden = Vec::with_capacity(self.fusion.d_out);
        self.fusion.forward(&fused, true, &mut hidden);
        let mut logits = Vec::with_capacity(self.head.d_out);
        self.head.forward(&hidden, false, &mut logits);
        logits
    }

    /// Class probabilities of a prepared batch (the cases in parallel on rayon's pool).
    pub fn predict_prepared(&self, p: &Prepared) -> Vec<Prediction> {
        let plane = p.size * p.size;
        (0..p.n)
            .into_par_iter()
            .map(|i| {
                let image = &p.images[i * plane..(i + 1) * plane];
                let clinical = &p.clinical[i * p.clinical_width..(i + 1) * p.clinical_width];
                let mut probs = self.logits(image, p.size, clinical);
                softmax(&mut probs);
                Prediction {
                    class: argmax(&probs) as u8,
                    probs,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_a_batch_norm_gives_the_same_output_as_applying_it() {
        // One input channel, one output channel, a 3x3 image.
        let x: Vec<f32> = (0..9).map(|v| v as f32 - 3.0).collect();
        let weight: Vec<f32> = (0..9).map(|v| (v as f32 - 4.0) * 0.1).collect();
        let bias = 0.3f32;
        let (gamma, beta, mean, var, eps) = (1.7f32, -0.2f32, 0.4f32, 2.5f32, 1e-5);
        // Reference: convolution with zero padding, then batch norm, then ReLU.
        let mut expected = Vec::new();
        for y in 0..3i32 {
            for xx in 0..3i32 {
                let mut s = bias;
                for ky in 0..3i32 {
                    for kx in 0..3i32 {
                        let (sy, sx) = (y + ky - 1, xx + kx - 1);
                        if (0..3).contains(&sy) && (0..3).contains(&sx) {
                            s += x[(sy * 3 + sx) as usize] * weight[(ky * 3 + kx) as usize];
                        }
                    }
                }
                let bn = (s - mean) / (var + eps as f32).sqrt() * gamma + beta;
                expected.push(bn.max(0.0));
            }
        }
        let conv = FrozenConv::fold(
            1,
            1,
            weight,
            Some(vec![bias]),
            &[gamma],
            &[beta],
            &[mean],
            &[var],
            eps,
        );
        let got = conv.forward(&x, 3, 3, &mut Vec::new());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
        assert!(expected.iter().any(|v| *v > 0.0) && expected.contains(&0.0));
    }

    #[test]
    fn adaptive_pool_of_a_6x6_plane_to_3x3_averages_2x2_blocks_and_5x5_overlaps() {
        let x: Vec<f32> = (0..36).map(|v| v as f32).collect();
        let mut out = Vec::new();
        adaptive_avg_pool(&x, 1, 6, 6, 3, &mut out);
        assert_eq!(out[0], (0.0 + 1.0 + 6.0 + 7.0) / 4.0);
        let mut odd = Vec::new();
        let y: Vec<f32> = (0..25).map(|v| v as f32).collect();
        adaptive_avg_pool(&y, 1, 5, 5, 3, &mut odd);
        // rows/cols 0..2, 1..4, 3..5 (floor and ceil of i*5/3)
        assert_eq!(odd[0], (0.0 + 1.0 + 5.0 + 6.0) / 4.0);
        let centre: f32 = [6.0, 7.0, 8.0, 11.0, 12.0, 13.0, 16.0, 17.0, 18.0]
            .iter()
            .sum::<f32>()
            / 9.0;
        assert_eq!(odd[4], centre);
    }

    #[test]
    fn max_pool_drops_an_odd_edge() {
        let x: Vec<f32> = (0..15).map(|v| v as f32).collect(); // 3 x 5
        let (out, h, w) = max_pool(&x, 1, 3, 5);
        assert_eq!((h, w), (1, 2));
        assert_eq!(out, vec![6.0, 8.0]);
    }
}
