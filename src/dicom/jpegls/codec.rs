//! A JPEG-LS decoder (ITU-T T.87 / ISO 14495-1) for any number of components:
//! one scan per component (ILV=0), line-interleaved (ILV=1) and
//! sample-interleaved (ILV=2) scans, lossless and near-lossless, 2 to 16 bits,
//! LSE coding-parameter presets, and the HP colour transforms of the APP8
//! "mrfx" marker (HP1, HP2, HP3).
//!
//! The sample arithmetic of regular and run mode (prediction, error mapping,
//! reconstruction, run-length and run-interruption coding) follows the
//! `pure_jpegls` crate 2.0.0 (src/decode.rs, src/run_mode.rs,
//! src/predictor.rs), by JP Fielding, <https://github.com/jpfielding/dicos.rs>,
//! licensed MIT OR Apache-2.0, from which it is copied; the marker parsing and
//! the interleaved scans are ours. Where T.87 leaves the run interruption of a
//! sample-interleaved scan to the implementation, this follows CharLS (the
//! codec behind most JPEG-LS files in DICOM): every component of the
//! interrupting pixel is coded with run context 0 and the sign of `Rb - Ra`
//! (positive when they are equal).

use super::bits::{BitError, BitReader};
use super::context::ContextModel;

/// Most samples (pixels times components) a stream may declare: 2^28, as
/// `pure_jpegls` allows for one component (512 MiB of 16-bit samples).
const MAX_SAMPLES: usize = 1 << 28;
/// Default RESET (T.87 A.2.1).
const DEFAULT_RESET: i32 = 64;
/// Smallest RESET an LSE segment may carry (T.87 C.2.4.1.1).
const MIN_RESET: i32 = 3;
/// Run-interruption contexts follow the 365 regular ones.
const RUN_CTX_BASE: usize = 365;
/// Most components a sample-interleaved scan may hold here (CharLS: 3 or 4).
const MAX_SAMPLE_INTERLEAVED: usize = 4;

/// A decoded JPEG-LS image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub components: usize,
    /// Sample precision P of the frame header (bits).
    pub precision: u8,
    /// Samples interleaved by pixel: components 0, 1, ... of pixel 0, then of
    /// pixel 1, row by row.
    pub samples: Vec<u16>,
}

/// The colour transform named by an APP8 "mrfx" segment (HP extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    None,
    Hp1,
    Hp2,
    Hp3,
}

struct Frame {
    precision: u8,
    width: usize,
    height: usize,
    ids: Vec<u8>,
}

/// LSE ID=1 coding-parameter presets (T.87 C.2.4.1.1); `None` = default.
#[derive(Default, Clone, Copy)]
struct Presets {
    maxval: Option<i32>,
    t1: Option<i32>,
    t2: Option<i32>,
    t3: Option<i32>,
    reset: Option<i32>,
}

/// Decodes a JPEG-LS stream whose frame must be `width` x `height` with
/// `components` components (what the DICOM header says); anything else is
/// refused before any sample buffer is allocated.
pub fn decode(
    data: &[u8],
    width: usize,
    height: usize,
    components: usize,
) -> Result<Decoded, String> {
    if data.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return Err("the stream does not start with SOI (FFD8)".into());
    }
    let mut pos = 2usize;
    let mut frame: Option<Frame> = None;
    let mut presets = Presets::default();
    let mut transform = Transform::None;
    let mut samples: Vec<u16> = Vec::new();
    let mut decoded: Vec<bool> = Vec::new();
    loop {
        // A marker: 0xFF (fill bytes allowed), then the code.
        if pos >= data.len() {
            return Err(format!(
                "the stream is truncated: it ends at offset {pos} before EOI (FFD9)"
            ));
        }
        if data[pos] != 0xFF {
            return Err(format!(
                "expected a marker at offset {pos}, found byte {:02X}",
                data[pos]
            ));
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&code) = data.get(pos) else {
            return Err("the stream is truncated inside a marker".into());
        };
        let at = pos - 1;
        pos += 1;
        match code {
            0xD9 => break,
            0xD8 => return Err(format!("a second SOI (FFD8) at offset {at}")),
            0xD0..=0xD7 => {
                return Err(format!(
                    "restart marker FF{code:02X} at offset {at} outside a scan"
                ));
            }
            0x00 | 0x01 => return Err(format!("invalid marker FF{code:02X} at offset {at}")),
            _ => {}
        }
        let len = data
            .get(pos..pos + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| format!("the stream is truncated in marker FF{code:02X}"))?;
        if len < 2 || pos + len > data.len() {
            return Err(format!(
                "marker segment FF{code:02X} at offset {at} declares {len} bytes, more than the {} left (truncated)",
                data.len() - pos
            ));
        }
        let body = &data[pos + 2..pos + len];
        pos += len;
        match code {
            0xF7 => {
                if frame.is_some() {
                    return Err("a second frame header (SOF55)".into());
                }
                let f = read_sof(body)?;
                if (f.width, f.height, f.ids.len()) != (width, height, components) {
                    return Err(format!(
                        "the JPEG-LS frame is {}x{} with {} component(s) but the image is {width}x{height} with {components}",
                        f.width,
                        f.height,
                        f.ids.len()
                    ));
                }
                let n = f.width * f.height * f.ids.len();
                if n > MAX_SAMPLES {
                    return Err(format!(
                        "the frame holds {n} samples, more than the {MAX_SAMPLES} allowed"
                    ));
                }
                samples = vec![0u16; n];
                decoded = vec![false; f.ids.len()];
                frame = Some(f);
            }
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(format!(
                    "a JPEG (T.81) frame header FF{code:02X}, not JPEG-LS"
                ));
            }
            0xF8 => read_lse(body, &mut presets)?,
            0xE8 if body.starts_with(b"mrfx") => {
                transform = match body.get(4) {
                    Some(0) => Transform::None,
                    Some(1) => Transform::Hp1,
                    Some(2) => Transform::Hp2,
                    Some(3) => Transform::Hp3,
                    Some(other) => {
                        return Err(format!(
                            "colour transform {other} of the APP8 \"mrfx\" marker is not one of HP1, HP2, HP3"
                        ));
                    }
                    None => return Err("an APP8 \"mrfx\" marker without its transform".into()),
                };
            }
            0xDD => {
                let interval = match body.len() {
                    2 => u32::from(u16::from_be_bytes([body[0], body[1]])),
                    3 => u32::from_be_bytes([0, body[0], body[1], body[2]]),
                    4 => u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    _ => return Err("a DRI segment of the wrong length".into()),
                };
                if interval != 0 {
                    return Err("restart intervals (DRI) are not supported".into());
                }
            }
            0xDA => {
                let f = frame
                    .as_ref()
                    .ok_or("a scan (SOS) before the frame header (SOF55)")?;
                pos = read_scan(data, pos, body, f, &presets, &mut samples, &mut decoded)?;
            }
            0xE0..=0xEF | 0xFE => {}
            other => {
                return Err(format!("unexpected marker FF{other:02X} at offset {at}"));
            }
        }
    }
    let frame = frame.ok_or("EOI (FFD9) before any frame header (SOF55)")?;
    if let Some(missing) = decoded.iter().position(|&d| !d) {
        return Err(format!(
            "EOI (FFD9) before the scan of component {} (id {})",
            missing, frame.ids[missing]
        ));
    }
    if transform != Transform::None {
        if frame.ids.len() != 3 {
            return Err(format!(
                "colour transform {transform:?} on {} components (it needs 3)",
                frame.ids.len()
            ));
        }
        inverse_transform(transform, frame.precision, &mut samples);
    }
    Ok(Decoded {
        width: frame.width,
        height: frame.height,
        components: frame.ids.len(),
        precision: frame.precision,
        samples,
    })
}

fn read_sof(body: &[u8]) -> Result<Frame, String> {
    if body.len() < 6 {
        return Err("a frame header (SOF55) too short".into());
    }
    let precision = body[0];
    if !(2..=16).contains(&precision) {
        return Err(format!(
            "sample precision {precision} (JPEG-LS allows 2..16)"
        ));
    }
    let height = usize::from(u16::from_be_bytes([body[1], body[2]]));
    let width = usize::from(u16::from_be_bytes([body[3], body[4]]));
    if width == 0 || height == 0 {
        return Err(format!(
            "frame dimensions {width}x{height} (a height defined later by DNL is not supported)"
        ));
    }
    let nf = usize::from(body[5]);
    if nf == 0 || body.len() < 6 + 3 * nf {
        return Err(format!(
            "a frame header with {nf} component(s) but {} bytes",
            body.len()
        ));
    }
    let mut ids = Vec::with_capacity(nf);
    for c in 0..nf {
        let spec = &body[6 + 3 * c..9 + 3 * c];
        if spec[1] != body[7] {
            return Err(
                "subsampled components (different sampling factors) are not supported".into(),
            );
        }
        if ids.contains(&spec[0]) {
            return Err(format!("component id {} appears twice", spec[0]));
        }
        ids.push(spec[0]);
    }
    Ok(Frame {
        precision,
        width,
        height,
        ids,
    })
}

fn read_lse(body: &[u8], presets: &mut Presets) -> Result<(), String> {
    match body.first() {
        Some(1) => {
            if body.len() < 11 {
                return Err("an LSE preset segment (ID 1) too short".into());
            }
            let v = |i: usize| i32::from(u16::from_be_bytes([body[1 + 2 * i], body[2 + 2 * i]]));
            let reset = v(4);
            if reset < MIN_RESET {
                return Err(format!("LSE RESET={reset} (must be >= {MIN_RESET})"));
            }
            *presets = Presets {
                maxval: Some(v(0)).filter(|&x| x > 0),
                t1: Some(v(1)).filter(|&x| x > 0),
                t2: Some(v(2)).filter(|&x| x > 0),
                t3: Some(v(3)).filter(|&x| x > 0),
                reset: Some(reset),
            };
            Ok(())
        }
        Some(id @ 2..=3) => Err(format!("LSE ID {id} (mapping tables) is not supported")),
        Some(id) => Err(format!("LSE ID {id} is not supported")),
        None => Err("an empty LSE segment".into()),
    }
}

/// Reads a scan header and decodes its scan; returns the offset of the marker
/// that follows the scan's data.
fn read_scan(
    data: &[u8],
    start: usize,
    body: &[u8],
    frame: &Frame,
    presets: &Presets,
    samples: &mut [u16],
    decoded: &mut [bool],
) -> Result<usize, String> {
    let ns = usize::from(*body.first().ok_or("an empty scan header (SOS)")?);
    if ns == 0 || body.len() < 1 + 2 * ns + 3 {
        return Err(format!(
            "a scan header (SOS) with {ns} component(s) but {} bytes",
            body.len()
        ));
    }
    let mut comps = Vec::with_capacity(ns);
    for i in 0..ns {
        let id = body[1 + 2 * i];
        let c = frame
            .ids
            .iter()
            .position(|&f| f == id)
            .ok_or_else(|| format!("the scan names component id {id}, not in the frame"))?;
        if decoded[c] || comps.contains(&c) {
            return Err(format!("component id {id} is coded twice"));
        }
        if body[2 + 2 * i] != 0 {
            return Err("mapping tables (palettised JPEG-LS) are not supported".into());
        }
        comps.push(c);
    }
    let near = i32::from(body[1 + 2 * ns]);
    let ilv = body[2 + 2 * ns];
    let point_transform = body[3 + 2 * ns];
    if point_transform != 0 {
        return Err(format!(
            "point transform {point_transform} is not supported"
        ));
    }
    match (ilv, ns) {
        (0, 1) | (1, _) => {}
        (2, n) if n <= MAX_SAMPLE_INTERLEAVED => {}
        (2, n) => {
            return Err(format!(
                "a sample-interleaved scan of {n} components (at most {MAX_SAMPLE_INTERLEAVED})"
            ));
        }
        (0, n) => return Err(format!("a non-interleaved scan (ILV=0) of {n} components")),
        (other, _) => return Err(format!("interleave mode ILV={other} (T.87 knows 0, 1, 2)")),
    }

    let sof_max = (1i32 << frame.precision) - 1;
    let max_val = presets.maxval.unwrap_or(sof_max);
    if max_val > sof_max {
        return Err(format!(
            "LSE MAXVAL={max_val} above {sof_max} for precision {}",
            frame.precision
        ));
    }
    if near > (max_val / 2).min(255) {
        return Err(format!("NEAR={near} too large for MAXVAL={max_val}"));
    }
    let (dt1, dt2, dt3) = ContextModel::default_thresholds(max_val, near);
    let (t1, t2, t3) = (
        presets.t1.unwrap_or(dt1),
        presets.t2.unwrap_or(dt2),
        presets.t3.unwrap_or(dt3),
    );
    if !(near < t1 && t1 <= t2 && t2 <= t3 && t3 <= max_val) {
        return Err(format!(
            "LSE thresholds violate NEAR<T1<=T2<=T3<=MAXVAL (NEAR={near}, T1={t1}, T2={t2}, T3={t3}, MAXVAL={max_val})"
        ));
    }
    let ctx = ContextModel::with_presets(
        max_val,
        near,
        presets.reset.unwrap_or(DEFAULT_RESET),
        presets.t1,
        presets.t2,
        presets.t3,
    );
    let mut scan = Scan {
        br: BitReader::new(&data[start..]),
        ctx,
        width: frame.width,
        components: frame.ids.len(),
    };
    let result = if ilv == 2 && ns > 1 {
        scan.sample_interleaved(&comps, frame.height, samples)
    } else {
        scan.line_interleaved(&comps, frame.height, samples)
    };
    let names = comps
        .iter()
        .map(|&c| frame.ids[c].to_string())
        .collect::<Vec<_>>()
        .join(", ");
    result.map_err(|e| {
        let offset = start + scan.br.pos();
        match e {
            BitError::End => format!(
                "the stream is truncated: it ends at offset {offset} inside the scan of component id(s) {names}"
            ),
            BitError::Marker(m @ 0xFFD0..=0xFFD7) => {
                format!("restart marker {m:04X} in the scan (restart intervals are not supported)")
            }
            BitError::Marker(m) => format!(
                "marker {m:04X} at offset {offset} before the scan of component id(s) {names} is complete (truncated or corrupt)"
            ),
            BitError::Invalid(what) => format!(
                "corrupt scan data of component id(s) {names} at offset {offset}: {what}"
            ),
        }
    })?;
    for &c in &comps {
        decoded[c] = true;
    }
    Ok(start + scan.br.marker_pos())
}

/// One scan being decoded.
struct Scan<'a> {
    br: BitReader<'a>,
    ctx: ContextModel,
    width: usize,
    /// Components in the frame (the stride of the output samples).
    components: usize,
}

impl Scan<'_> {
    /// Line buffers of `width + 2` reconstructed samples: logical sample `x`
    /// at index `x + 1`, the left border at 0, the right border at `width + 1`
    /// (T.87 A.2.1 edge rules, as in `pure_jpegls`).
    fn lines(&self, n: usize) -> (Vec<Vec<i32>>, Vec<Vec<i32>>) {
        (
            vec![vec![0i32; self.width + 2]; n],
            vec![vec![0i32; self.width + 2]; n],
        )
    }

    fn store(&self, samples: &mut [u16], y: usize, c: usize, line: &[i32]) {
        let row = &mut samples[y * self.width * self.components..][..self.width * self.components];
        for (x, &v) in line[1..=self.width].iter().enumerate() {
            row[x * self.components + c] = v as u16;
        }
    }

    /// One component (ILV=0) or several, line by line (ILV=1): the contexts
    /// are shared, RUNindex is kept per component (T.87 B.3, as CharLS).
    fn line_interleaved(
        &mut self,
        comps: &[usize],
        height: usize,
        samples: &mut [u16],
    ) -> Result<(), BitError> {
        let (mut prev, mut cur) = self.lines(comps.len());
        let mut run_index = vec![0usize; comps.len()];
        for y in 0..height {
            for (i, &c) in comps.iter().enumerate() {
                self.ctx.run_index = run_index[i];
                self.line(&mut cur[i], &mut prev[i])?;
                run_index[i] = self.ctx.run_index;
                self.store(samples, y, c, &cur[i]);
                std::mem::swap(&mut prev[i], &mut cur[i]);
            }
        }
        Ok(())
    }

    fn line(&mut self, cur: &mut [i32], prev: &mut [i32]) -> Result<(), BitError> {
        let width = self.width;
        let near = self.ctx.near;
        cur[0] = prev[1];
        prev[width + 1] = prev[width];
        let mut x = 0usize;
        while x < width {
            let ra = cur[x];
            let rb = prev[x + 1];
            let rc = prev[x];
            let rd = prev[x + 2];
            let (d1, d2, d3) = (rd - rb, rb - rc, rc - ra);
            if d1.abs() <= near && d2.abs() <= near && d3.abs() <= near {
                let run = self.run_length(width - x)?;
                cur[x + 1..=x + run].fill(ra);
                let end = x + run;
                if end == width {
                    break;
                }
                let rb = prev[end + 1];
                let (ri_type, px, sign) = if (ra - rb).abs() <= near {
                    (1, ra, 1)
                } else {
                    (0, rb, if rb > ra { 1 } else { -1 })
                };
                let err = self.interruption_error(ri_type)?;
                cur[end + 1] = self.reconstruct(px + sign * err * (2 * near + 1));
                self.ctx.decrement_run_index();
                x = end + 1;
                continue;
            }
            cur[x + 1] = self.regular(ra, rb, rc, d1, d2, d3)?;
            x += 1;
        }
        Ok(())
    }

    /// Several components, pixel by pixel (ILV=2): run mode when every
    /// component's gradients are flat; contexts and RUNindex shared.
    fn sample_interleaved(
        &mut self,
        comps: &[usize],
        height: usize,
        samples: &mut [u16],
    ) -> Result<(), BitError> {
        let n = comps.len();
        let width = self.width;
        let near = self.ctx.near;
        let (mut prev, mut cur) = self.lines(n);
        let mut d = [[0i32; 3]; MAX_SAMPLE_INTERLEAVED];
        for y in 0..height {
            for i in 0..n {
                cur[i][0] = prev[i][1];
                prev[i][width + 1] = prev[i][width];
            }
            let mut x = 0usize;
            while x < width {
                let mut flat = true;
                for i in 0..n {
                    let (ra, rb, rc, rd) = (cur[i][x], prev[i][x + 1], prev[i][x], prev[i][x + 2]);
                    d[i] = [rd - rb, rb - rc, rc - ra];
                    flat &= d[i].iter().all(|g| g.abs() <= near);
                }
                if flat {
                    let run = self.run_length(width - x)?;
                    for line in cur.iter_mut().take(n) {
                        let ra = line[x];
                        line[x + 1..=x + run].fill(ra);
                    }
                    let end = x + run;
                    if end == width {
                        break;
                    }
                    for i in 0..n {
                        let (ra, rb) = (cur[i][x], prev[i][end + 1]);
                        let err = self.interruption_error(0)?;
                        let sign = if rb >= ra { 1 } else { -1 };
                        cur[i][end + 1] = self.reconstruct(rb + sign * err * (2 * near + 1));
                    }
                    self.ctx.decrement_run_index();
                    x = end + 1;
                } else {
                    for i in 0..n {
                        let (ra, rb, rc) = (cur[i][x], prev[i][x + 1], prev[i][x]);
                        let [d1, d2, d3] = d[i];
                        cur[i][x + 1] = self.regular(ra, rb, rc, d1, d2, d3)?;
                    }
                    x += 1;
                }
            }
            for (i, &c) in comps.iter().enumerate() {
                self.store(samples, y, c, &cur[i]);
                std::mem::swap(&mut prev[i], &mut cur[i]);
            }
        }
        Ok(())
    }

    /// A regular-mode sample (T.87 A.3-A.6).
    #[inline]
    fn regular(
        &mut self,
        ra: i32,
        rb: i32,
        rc: i32,
        d1: i32,
        d2: i32,
        d3: i32,
    ) -> Result<i32, BitError> {
        let ctx = &mut self.ctx;
        let near = ctx.near;
        let (q, sign) = ctx.get_context_index(d1, d2, d3);
        let k = ctx.compute_k(q);
        let px = (predict_med(ra, rb, rc) + sign * ctx.c[q]).clamp(0, ctx.max_val);
        let correction = if k == 0 && near == 0 && 2 * ctx.b[q] <= -ctx.n[q] {
            -1
        } else {
            0
        };
        let mapped = self.br.read_limited_golomb(k, ctx.limit, ctx.qbpp)?;
        if i64::from(mapped) > 2 * i64::from(ctx.range) {
            // A valid error is within RANGE (T.87 A.4.5); as CharLS does,
            // refuse rather than let corrupt data overflow the statistics.
            return Err(BitError::Invalid("a prediction error out of range"));
        }
        let err = unmap_error(mapped, correction);
        ctx.update_stats(q, err);
        Ok(self.reconstruct(px + sign * err * (2 * near + 1)))
    }

    /// Folds a reconstructed value back into `0..=MAXVAL` (T.87 A.4.6).
    #[inline]
    fn reconstruct(&self, value: i32) -> i32 {
        let (near, range, max_val) = (self.ctx.near, self.ctx.range, self.ctx.max_val);
        let mut v = value;
        if v < -near {
            v += range * (2 * near + 1);
        } else if v > max_val + near {
            v -= range * (2 * near + 1);
        }
        v.clamp(0, max_val)
    }

    /// The length of a run of at most `pixels` samples (T.87 A.7.1).
    fn run_length(&mut self, pixels: usize) -> Result<usize, BitError> {
        let ctx = &mut self.ctx;
        let mut index = 0usize;
        while self.br.read_bit()? == 1 {
            let block = 1usize << ctx.j[ctx.run_index];
            let count = block.min(pixels - index);
            index += count;
            if count == block {
                ctx.increment_run_index();
            }
            if index == pixels {
                return Ok(index);
            }
        }
        let jbits = ctx.j[ctx.run_index];
        if jbits > 0 {
            index += self.br.read_bits(jbits)? as usize;
        }
        if index > pixels {
            return Err(BitError::Invalid("a run longer than the rest of the line"));
        }
        Ok(index)
    }

    /// The error of a run-interruption sample of type `ri_type` (T.87 A.7.2).
    fn interruption_error(&mut self, ri_type: usize) -> Result<i32, BitError> {
        let ctx = &mut self.ctx;
        let idx = RUN_CTX_BASE + ri_type;
        let k = ctx.compute_k_run(ri_type);
        let glimit = ctx.limit - ctx.j[ctx.run_index] - 1;
        let e_mapped = self.br.read_limited_golomb(k, glimit, ctx.qbpp)?;
        if i64::from(e_mapped) > 2 * i64::from(ctx.range) {
            return Err(BitError::Invalid("a run-interruption error out of range"));
        }
        let temp = e_mapped as i32 + ri_type as i32;
        let abs_e = (temp + (temp & 1)) >> 1;
        let map_positive = k == 0 && 2 * ctx.nn[ri_type] < ctx.n[idx];
        let err = if (temp & 1) == i32::from(map_positive) {
            abs_e
        } else {
            -abs_e
        };
        ctx.update_run_stats(ri_type, e_mapped, err < 0);
        Ok(err)
    }
}

/// The median edge detector (T.87 A.4.1).
#[inline]
fn predict_med(ra: i32, rb: i32, rc: i32) -> i32 {
    if rc >= ra.max(rb) {
        ra.min(rb)
    } else if rc <= ra.min(rb) {
        ra.max(rb)
    } else {
        ra + rb - rc
    }
}

/// Inverse of the error mapping (T.87 A.5.2).
#[inline]
fn unmap_error(mapped: u32, correction: i32) -> i32 {
    let m = mapped as i32;
    correction ^ ((m >> 1) ^ -(m & 1))
}

/// Undoes an HP colour transform (as CharLS's `transform_hp1..3::inverse`),
/// modulo 2^precision, on interleaved triplets.
fn inverse_transform(transform: Transform, precision: u8, samples: &mut [u16]) {
    let range = 1i32 << precision;
    let mask = range - 1;
    let half = range / 2;
    let quarter = range / 4;
    for px in samples.chunks_exact_mut(3) {
        let (v1, v2, v3) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
        let (r, g, b) = match transform {
            Transform::None => (v1, v2, v3),
            Transform::Hp1 => ((v1 + v2 - half) & mask, v2, (v3 + v2 - half) & mask),
            Transform::Hp2 => {
                let r = (v1 + v2 - half) & mask;
                (r, v2, (v3 + ((r + v2) >> 1) - half) & mask)
            }
            Transform::Hp3 => {
                let g = (v1 - ((v3 + v2) >> 2) + quarter) & mask;
                ((v3 + g - half) & mask, g, (v2 + g - half) & mask)
            }
        };
        px[0] = r as u16;
        px[1] = g as u16;
        px[2] = b as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 37;
    const H: usize = 23;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/jpegls/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Samples of a .raw / .charls fixture (8-bit: bytes, else u16 LE).
    fn samples(name: &str, bits: u8) -> Vec<u16> {
        let bytes = fixture(name);
        if bits <= 8 {
            bytes.iter().map(|&b| u16::from(b)).collect()
        } else {
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        }
    }

    /// (name, bits, NEAR) of every colour fixture, from fixtures/jpegls/fixtures.txt.
    fn colour_fixtures() -> Vec<(String, u8, u16)> {
        String::from_utf8(fixture("fixtures.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn every_colour_fixture_decodes_to_its_pixels() {
        let fixtures = colour_fixtures();
        assert_eq!(fixtures.len(), 12, "{fixtures:?}");
        for (name, bits, near) in fixtures {
            let d = decode(&fixture(&format!("{name}.jls")), W, H, 3)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((d.width, d.height, d.components), (W, H, 3), "{name}");
            assert_eq!(d.precision, bits, "{name}");
            let original = samples(&format!("{name}.raw"), bits);
            if near == 0 {
                assert!(d.samples == original, "{name}: not lossless");
            } else {
                let worst = d
                    .samples
                    .iter()
                    .zip(&original)
                    .map(|(&a, &b)| a.abs_diff(b))
                    .max()
                    .unwrap();
                assert!(worst <= near, "{name}: error {worst} > NEAR {near}");
                assert!(worst > 0, "{name}: a lossy stream came out lossless");
                let charls = samples(&format!("{name}.charls"), bits);
                assert!(d.samples == charls, "{name}: differs from CharLS");
            }
        }
    }

    fn gray_image(w: usize, h: usize, top: u16) -> Vec<u16> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if (3..9).contains(&y) {
                    top / 3 // flat rows: run mode
                } else {
                    ((x * 7 + y * y * 13 + (i * 2_654_435_761) % 17) % (usize::from(top) + 1))
                        as u16
                }
            })
            .collect()
    }

    fn pure_encode(pixels: &[u16], w: usize, h: usize, bits: u8, near: u8) -> Vec<u8> {
        let mut options = ::jpegls::EncodeOptions::default();
        options.near = near;
        options.precision = Some(bits);
        let mut out = Vec::new();
        ::jpegls::encode_with_options(pixels, w as u32, h as u32, &options, &mut out)
            .expect("encode");
        out
    }

    #[test]
    fn one_component_decodes_as_pure_jpegls_does() {
        let (w, h) = (29, 17);
        for (bits, near) in [(8u8, 0u8), (8, 3), (12, 0), (12, 5), (16, 0), (5, 1)] {
            let top = ((1u32 << bits) - 1) as u16;
            let pixels = gray_image(w, h, top);
            let stream = pure_encode(&pixels, w, h, bits, near);
            let ours = decode(&stream, w, h, 1).unwrap_or_else(|e| panic!("{bits}/{near}: {e}"));
            let (theirs, _, _) = ::jpegls::decode(&stream, w as u32, h as u32).expect("decode");
            assert_eq!(ours.samples, theirs, "{bits} bits, NEAR {near}");
            if near == 0 {
                assert_eq!(ours.samples, pixels);
            }
        }
    }

    /// The entropy-coded bytes of a one-component stream: after its SOS
    /// segment, up to its EOI.
    fn scan_bytes(stream: &[u8]) -> &[u8] {
        let mut pos = 2;
        loop {
            let code = stream[pos + 1];
            let len = usize::from(u16::from_be_bytes([stream[pos + 2], stream[pos + 3]]));
            pos += 2 + len;
            if code == 0xDA {
                return &stream[pos..stream.len() - 2];
            }
        }
    }

    #[test]
    fn one_scan_per_component_is_assembled_by_component_id() {
        // Three one-component streams of pure_jpegls as the three scans of
        // one ILV=0 frame, with component ids 7, 8, 9 and the scans out of
        // order (9, 7, 8), NEAR differing per scan.
        let (w, h) = (19, 11);
        let planes: Vec<Vec<u16>> = (0..3u16)
            .map(|c| {
                gray_image(w, h, 255)
                    .iter()
                    .map(|v| (v + 40 * c) % 256)
                    .collect()
            })
            .collect();
        let nears = [0u8, 2, 1];
        let mut s = vec![0xFF, 0xD8, 0xFF, 0xF7, 0, 17, 8, 0, h as u8, 0, w as u8, 3];
        for id in 7..=9 {
            s.extend_from_slice(&[id, 0x11, 0]);
        }
        for c in [2usize, 0, 1] {
            s.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 7 + c as u8, 0, nears[c], 0, 0]);
            s.extend_from_slice(scan_bytes(&pure_encode(&planes[c], w, h, 8, nears[c])));
        }
        s.extend_from_slice(&[0xFF, 0xD9]);
        let d = decode(&s, w, h, 3).unwrap();
        for (c, plane) in planes.iter().enumerate() {
            for (i, &v) in plane.iter().enumerate() {
                let got = d.samples[i * 3 + c];
                assert!(
                    got.abs_diff(v) <= u16::from(nears[c]),
                    "component {c} sample {i}"
                );
            }
        }
        // Without the third scan the image is incomplete.
        let cut = s.len() - 2 - scan_bytes(&pure_encode(&planes[1], w, h, 8, nears[1])).len() - 10;
        let mut short = s[..cut].to_vec();
        short.extend_from_slice(&[0xFF, 0xD9]);
        let e = decode(&short, w, h, 3).unwrap_err();
        assert!(e.contains("before the scan of component 1 (id 8)"), "{e}");
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        for name in ["rgb8_ilv1.jls", "rgb8_ilv2_near3.jls", "rgb8_hp2.jls"] {
            let stream = fixture(name);
            for cut in 0..stream.len() - 1 {
                let e = decode(&stream[..cut], W, H, 3).unwrap_err();
                assert!(!e.is_empty());
            }
        }
        let stream = fixture("rgb8_ilv2.jls");
        let e = decode(&stream[..stream.len() / 2], W, H, 3).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn a_marker_inside_a_scan_or_a_bad_marker_is_refused() {
        let stream = fixture("rgb8_ilv2.jls");
        // A DHT marker (JPEG, not JPEG-LS) half-way through the scan data.
        let mut bad = stream.clone();
        let mid = bad.len() / 2;
        bad[mid] = 0xFF;
        bad[mid + 1] = 0xC4;
        let e = decode(&bad, W, H, 3).unwrap_err();
        assert!(e.contains("FFC4"), "{e}");
        // Not a marker where one must be: the stream starts with junk.
        let e = decode(b"\x00\x11\x22\x33", W, H, 3).unwrap_err();
        assert!(e.contains("SOI"), "{e}");
        // Corrupting bytes one at a time never panics.
        for i in (0..stream.len()).step_by(3) {
            let mut c = stream.clone();
            c[i] ^= 0x5A;
            let _ = decode(&c, W, H, 3);
        }
    }

    #[test]
    fn the_frame_must_be_the_dicom_image() {
        let stream = fixture("rgb8_ilv1.jls");
        let e = decode(&stream, W + 1, H, 3).unwrap_err();
        assert!(e.contains("37x23 with 3 component(s)"), "{e}");
        let e = decode(&stream, W, H, 1).unwrap_err();
        assert!(e.contains("but the image is 37x23 with 1"), "{e}");
    }

    #[test]
    fn an_unknown_colour_transform_is_refused() {
        let mut stream = fixture("rgb8_hp1.jls");
        // SOI, then FF E8 00 07 m r f x <transform>.
        assert_eq!(&stream[2..10], b"\xFF\xE8\x00\x07mrfx");
        stream[10] = 4;
        let e = decode(&stream, W, H, 3).unwrap_err();
        assert!(e.contains("colour transform 4"), "{e}");
    }

    #[test]
    fn hp_transforms_invert_their_forward_form() {
        // The forward transforms as CharLS (and the fixture script) apply
        // them, on every 4-bit triplet.
        let bits = 4u8;
        let range = 1i32 << bits;
        let (half, quarter, mask) = (range / 2, range / 4, range - 1);
        for (kind, t) in [
            (1, Transform::Hp1),
            (2, Transform::Hp2),
            (3, Transform::Hp3),
        ] {
            let mut original = Vec::new();
            let mut coded = Vec::new();
            for r in 0..range {
                for g in 0..range {
                    for b in 0..range {
                        original.extend([r as u16, g as u16, b as u16]);
                        let v = match kind {
                            1 => [(r - g + half) & mask, g, (b - g + half) & mask],
                            2 => [(r - g + half) & mask, g, (b - ((r + g) >> 1) + half) & mask],
                            _ => {
                                let v2 = (b - g + half) & mask;
                                let v3 = (r - g + half) & mask;
                                [(g + ((v2 + v3) >> 2) - quarter) & mask, v2, v3]
                            }
                        };
                        coded.extend(v.map(|x| x as u16));
                    }
                }
            }
            inverse_transform(t, bits, &mut coded);
            assert_eq!(coded, original, "HP{kind}");
        }
    }
}
