//! JPEG-LS context model (ITU-T T.87 A.2-A.7): the A/B/C/N statistics, the
//! gradient quantiser, the Golomb parameter and the run-mode statistics.
//!
//! Copied from the `pure_jpegls` crate 2.0.0 (src/context.rs), by JP Fielding,
//! <https://github.com/jpfielding/dicos.rs>, licensed MIT OR Apache-2.0; trimmed
//! to what the decoder needs. Changes: crate-local visibility only.

/// Number of regular contexts (indices `0..=364`).
const NUM_REGULAR_CONTEXTS: usize = 365;
/// Two additional contexts for run-interruption samples (indices `365`, `366`).
const NUM_RUN_CONTEXTS: usize = 2;
/// Total context array size (`367`).
const NUM_CONTEXTS: usize = NUM_REGULAR_CONTEXTS + NUM_RUN_CONTEXTS;

/// Index of the run-interruption context with RItype = 0 (Ra == Rb).
const RUN_CTX_BASE: usize = 365;

/// Bias-correction bounds (T.87 A.6.2, MIN_C / MAX_C).
const MIN_C: i32 = -128;
const MAX_C: i32 = 127;

/// Default basic thresholds (T.87 A.2.1: BASIC_T1/T2/T3).
const BASIC_T1: i32 = 3;
const BASIC_T2: i32 = 7;
const BASIC_T3: i32 = 21;

/// J-table for run-length coding (T.87 A.7.1.1, Table A.16 — 32 entries).
const J_TABLE: [i32; 32] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13,
    14, 15,
];

/// Smallest `k` such that `2^k >= x` (ceil of log2), for `x >= 1`.
fn ceil_log2(x: i32) -> i32 {
    let mut k = 0;
    while (1i64 << k) < i64::from(x) {
        k += 1;
    }
    k
}

/// T.87 threshold clamp (A.2.1): returns `lo` when `i` falls outside
/// `[lo, hi]` (note: an over-`hi` value collapses to `lo`, not `hi`).
fn clamp_threshold(i: i32, lo: i32, hi: i32) -> i32 {
    if i > hi || i < lo { lo } else { i }
}

/// The T.87 context model state used during encoding and decoding.
pub(super) struct ContextModel {
    // --- Quantization thresholds (T.87 A.2.1 / A.3) ---
    pub t1: i32,
    pub t2: i32,
    pub t3: i32,

    /// Maximum sample value (`MAXVAL`).
    pub max_val: i32,
    /// Near-lossless error tolerance (`NEAR`; 0 for lossless).
    pub near: i32,
    /// Reconstruction range (`RANGE`, T.87 A.3.1).
    pub range: i32,
    /// Bits needed to represent a mapped/limited value (`qbpp`, T.87 A.5.3).
    pub qbpp: i32,
    /// Unary escape limit (`LIMIT`, T.87 A.5.3 / A.2).
    pub limit: i32,

    // --- Per-context statistics ---
    /// A[Q]: sum of absolute prediction errors.
    pub a: Vec<i32>,
    /// B[Q]: bias accumulator.
    pub b: Vec<i32>,
    /// C[Q]: bias correction value.
    pub c: Vec<i32>,
    /// N[Q]: occurrence count.
    pub n: Vec<i32>,
    /// Nn[RItype]: negative-error counters for the two run contexts (A.7.2).
    pub nn: [i32; 2],

    /// Reset threshold — halve statistics when `N[Q]` reaches this (`RESET`).
    pub reset: i32,

    // --- Run mode ---
    /// J-table for run-length coding.
    pub j: [i32; 32],
    /// Current run index (`RUNindex`).
    pub run_index: usize,
}

impl ContextModel {
    /// Create a context model, optionally overriding the T1/T2/T3 quantization
    /// thresholds (as carried by an LSE ID=1 preset segment, T.87 C.2.4.1.1).
    ///
    /// A `None` (or, in the marker, a zero) override selects the default
    /// threshold computed from `max_val`/`near` per T.87 A.2.1.
    pub fn with_presets(
        max_val: i32,
        near: i32,
        reset: i32,
        t1_override: Option<i32>,
        t2_override: Option<i32>,
        t3_override: Option<i32>,
    ) -> Self {
        // Derived parameters (T.87 A.2 / A.3.1 / A.5.3).
        let bpp = ceil_log2(max_val + 1).max(2);
        let limit = 2 * (bpp + bpp.max(8));
        let range = if near == 0 {
            max_val + 1
        } else {
            (max_val + 2 * near) / (2 * near + 1) + 1
        };
        let qbpp = ceil_log2(range);

        let (dt1, dt2, dt3) = Self::default_thresholds(max_val, near);
        let t1 = t1_override.unwrap_or(dt1);
        let t2 = t2_override.unwrap_or(dt2);
        let t3 = t3_override.unwrap_or(dt3);

        // A[Q] initialization (T.87 A.2.1 / A.8): max(2, floor((RANGE+32)/64))
        // for ALL contexts (regular AND run).
        let a_init = ((range + 32) / 64).max(2);

        // T.87 A.2.1 / A.8 initialization: A[Q] = a_init, N[Q] = 1,
        // B[Q] = C[Q] = 0, Nn = 0.
        Self {
            t1,
            t2,
            t3,
            max_val,
            near,
            range,
            qbpp,
            limit,
            a: vec![a_init; NUM_CONTEXTS],
            b: vec![0; NUM_CONTEXTS],
            c: vec![0; NUM_CONTEXTS],
            n: vec![1; NUM_CONTEXTS],
            nn: [0, 0],
            reset,
            j: J_TABLE,
            run_index: 0,
        }
    }

    /// Compute the default T1/T2/T3 thresholds (T.87 A.2.1).
    pub fn default_thresholds(max_val: i32, near: i32) -> (i32, i32, i32) {
        if max_val >= 128 {
            let factor = (max_val.min(4095) + 128) / 256;
            let t1 = clamp_threshold(factor * (BASIC_T1 - 2) + 2 + 3 * near, near + 1, max_val);
            let t2 = clamp_threshold(factor * (BASIC_T2 - 3) + 3 + 5 * near, t1, max_val);
            let t3 = clamp_threshold(factor * (BASIC_T3 - 4) + 4 + 7 * near, t2, max_val);
            (t1, t2, t3)
        } else {
            let factor = 256 / (max_val + 1);
            let t1 = clamp_threshold((BASIC_T1 / factor + 3 * near).max(2), near + 1, max_val);
            let t2 = clamp_threshold((BASIC_T2 / factor + 5 * near).max(3), t1, max_val);
            let t3 = clamp_threshold((BASIC_T3 / factor + 7 * near).max(4), t2, max_val);
            (t1, t2, t3)
        }
    }

    /// Near-aware gradient quantization into one of 9 buckets (-4..=4), T.87
    /// A.3.3.
    #[inline]
    pub fn quantize_gradient(&self, d: i32) -> i32 {
        if d <= -self.t3 {
            -4
        } else if d <= -self.t2 {
            -3
        } else if d <= -self.t1 {
            -2
        } else if d < -self.near {
            -1
        } else if d <= self.near {
            0
        } else if d < self.t1 {
            1
        } else if d < self.t2 {
            2
        } else if d < self.t3 {
            3
        } else {
            4
        }
    }

    /// Compute the context index `Q` and the `sign` from the three gradients.
    ///
    /// Returns `(Q, sign)` where `sign` is `1` or `-1`.
    pub fn get_context_index(&self, d1: i32, d2: i32, d3: i32) -> (usize, i32) {
        let mut q1 = self.quantize_gradient(d1);
        let mut q2 = self.quantize_gradient(d2);
        let mut q3 = self.quantize_gradient(d3);

        let mut sign = 1i32;
        if q1 < 0 || (q1 == 0 && q2 < 0) || (q1 == 0 && q2 == 0 && q3 < 0) {
            q1 = -q1;
            q2 = -q2;
            q3 = -q3;
            sign = -1;
        }

        let index = (q1 * 81 + q2 * 9 + q3) as usize;
        (index, sign)
    }

    /// Compute the Golomb-Rice parameter `k` for a regular context `q`
    /// (T.87 A.5.1): smallest `k` with `N[Q] << k >= A[Q]`.
    pub fn compute_k(&self, q: usize) -> i32 {
        let n = self.n[q];
        if n == 0 {
            return 0;
        }
        let a = self.a[q];
        let mut k = 0i32;
        while k < 31 && (n << k) < a {
            k += 1;
        }
        k
    }

    /// Update A/B/N (T.87 A.6.1, code segment A.12) then the bias C (A.6.2,
    /// A.13) for regular context `q` after observing corrected error `err_val`.
    pub fn update_stats(&mut self, q: usize, err_val: i32) {
        // A.12
        self.b[q] += err_val * (2 * self.near + 1);
        self.a[q] += err_val.abs();
        if self.n[q] == self.reset {
            self.a[q] >>= 1;
            self.b[q] = if self.b[q] >= 0 {
                self.b[q] >> 1
            } else {
                -((1 - self.b[q]) >> 1)
            };
            self.n[q] >>= 1;
        }
        self.n[q] += 1;

        self.update_bias(q);
    }

    /// Single-step bias update with clamping (T.87 A.6.2, code segment A.13).
    ///
    /// Uses `N[Q]` *after* the increment performed in [`Self::update_stats`].
    fn update_bias(&mut self, q: usize) {
        if self.b[q] <= -self.n[q] {
            if self.c[q] > MIN_C {
                self.c[q] -= 1;
            }
            self.b[q] += self.n[q];
            if self.b[q] <= -self.n[q] {
                self.b[q] = -self.n[q] + 1;
            }
        } else if self.b[q] > 0 {
            if self.c[q] < MAX_C {
                self.c[q] += 1;
            }
            self.b[q] -= self.n[q];
            if self.b[q] > 0 {
                self.b[q] = 0;
            }
        }
    }

    /// Advance `RUNindex` after coding a full run segment (T.87 A.7.1.2),
    /// saturating at 31.
    pub fn increment_run_index(&mut self) {
        if self.run_index < 31 {
            self.run_index += 1;
        }
    }

    /// Decrement `RUNindex` after coding a run-interruption sample (T.87
    /// A.7.2), saturating at 0.
    pub fn decrement_run_index(&mut self) {
        if self.run_index > 0 {
            self.run_index -= 1;
        }
    }

    /// Golomb parameter `k` for a run-interruption sample (T.87 A.7.2.2).
    ///
    /// `ri_type` is 0 (Ra == Rb) or 1 (Ra != Rb), selecting run context
    /// `365 + ri_type`.
    pub fn compute_k_run(&self, ri_type: usize) -> i32 {
        let ctx = RUN_CTX_BASE + ri_type;
        let temp = if ri_type == 1 {
            self.a[RUN_CTX_BASE + 1] + (self.n[RUN_CTX_BASE + 1] >> 1)
        } else {
            self.a[RUN_CTX_BASE]
        };
        let n = self.n[ctx];
        let mut k = 0i32;
        while k < 31 && (n << k) < temp {
            k += 1;
        }
        k
    }

    /// Update run-interruption statistics (T.87 A.7.2, code segment A.23).
    ///
    /// `e_mapped` is `EMErrval`; `err_negative` indicates the (corrected)
    /// error was negative.
    pub fn update_run_stats(&mut self, ri_type: usize, e_mapped: u32, err_negative: bool) {
        let ctx = RUN_CTX_BASE + ri_type;
        if err_negative {
            self.nn[ri_type] += 1;
        }
        self.a[ctx] += ((e_mapped + 1 - ri_type as u32) >> 1) as i32;
        if self.n[ctx] == self.reset {
            self.a[ctx] >>= 1;
            self.n[ctx] >>= 1;
            self.nn[ri_type] >>= 1;
        }
        self.n[ctx] += 1;
    }
}
