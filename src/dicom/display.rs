//! The grayscale display pipeline of DICOM PS3.3 C.11, on plain slices.
//!
//! Stored pixel values go through the Modality LUT (Rescale Slope and
//! Intercept, C.11.1), then a VOI stage (a window with its VOI LUT Function,
//! C.11.2.1.2, or a VOI LUT Sequence, C.11.2.1.1), and come out as 8-bit
//! display values; MONOCHROME1 is inverted after the VOI stage. When a file
//! gives no window, [`Voi::Auto`] picks one from percentiles of the
//! modality-LUT output. RGB data passes through ([`rgb_interleaved`]), and
//! [`downscale`] reduces a rendered image for a terminal preview.
//!
//! Nothing here knows about DICOM parsing: the reader hands over the decoded
//! attribute values and the pixel samples.
//!
//! Rendering stored values of at most 16 bits builds one table over every
//! possible stored value (at most 65 536 entries) and maps the image through
//! it, so the work per pixel is a mask and a lookup whatever the VOI function.

use std::fmt;

/// Why a display setting or a buffer cannot be used; the message is meant for
/// the user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DisplayError {
    #[error("the {what} is not a finite number ({value})")]
    NotFinite { what: &'static str, value: f64 },
    #[error("a Rescale Slope of 0 would show every pixel as the same value")]
    ZeroSlope,
    #[error("window width {width} is invalid for {function}: it must be {rule}")]
    WindowWidth {
        width: f64,
        function: VoiFunction,
        rule: &'static str,
    },
    #[error("unknown VOI LUT Function \"{0}\" (expected LINEAR, LINEAR_EXACT or SIGMOID)")]
    UnknownVoiFunction(String),
    #[error("the file gives {centers} window center(s) but {widths} window width(s)")]
    WindowCount { centers: usize, widths: usize },
    #[error("the VOI LUT has no entries")]
    EmptyLut,
    #[error("a VOI LUT entry must have between 1 and 16 bits (the LUT Descriptor says {0})")]
    LutBits(u16),
    #[error("the LUT Descriptor announces {expected} entries but the LUT Data holds {actual}")]
    LutLength { expected: usize, actual: usize },
    #[error(
        "VOI preset {index} was asked for, but the file has {count} (windows, then VOI LUTs, counted from 0)"
    )]
    PresetIndex { index: usize, count: usize },
    #[error("Bits Stored must be between 1 and 16 for display (the file says {0})")]
    BitsStored(u16),
    #[error(
        "the image is {width}x{height} ({expected} samples) but the pixel buffer holds {actual}"
    )]
    PixelCount {
        width: usize,
        height: usize,
        expected: usize,
        actual: usize,
    },
    #[error("Planar Configuration must be 0 or 1 (the file says {0})")]
    PlanarConfiguration(u16),
    #[error("cannot read the pixel data: {0}")]
    Read(String),
}

fn finite(what: &'static str, value: f64) -> Result<f64, DisplayError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(DisplayError::NotFinite { what, value })
    }
}

/// The Modality LUT given as Rescale Slope and Rescale Intercept (C.11.1.1.2):
/// output = slope * stored + intercept (Hounsfield units for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModalityLut {
    slope: f64,
    intercept: f64,
}

impl ModalityLut {
    /// Slope 1, intercept 0: what a file without rescale attributes means.
    pub const IDENTITY: ModalityLut = ModalityLut {
        slope: 1.0,
        intercept: 0.0,
    };

    /// A finite, non-zero slope and a finite intercept.
    pub fn new(slope: f64, intercept: f64) -> Result<Self, DisplayError> {
        let slope = finite("Rescale Slope", slope)?;
        let intercept = finite("Rescale Intercept", intercept)?;
        if slope == 0.0 {
            return Err(DisplayError::ZeroSlope);
        }
        Ok(ModalityLut { slope, intercept })
    }

    pub fn slope(&self) -> f64 {
        self.slope
    }

    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// The modality-LUT output of one stored value.
    pub fn apply(&self, stored: f64) -> f64 {
        self.slope * stored + self.intercept
    }
}

impl Default for ModalityLut {
    fn default() -> Self {
        Self::IDENTITY
    }
}

/// VOI LUT Function (0028,1056), C.11.2.1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    /// C.11.2.1.2.1; the default when the attribute is absent.
    #[default]
    Linear,
    /// C.11.2.1.3.2.
    LinearExact,
    /// C.11.2.1.3.1.
    Sigmoid,
}

impl VoiFunction {
    /// Parses the attribute's value; an empty value means LINEAR.
    pub fn from_dicom(value: &str) -> Result<Self, DisplayError> {
        let trimmed = value.trim_matches(|c: char| c == ' ' || c == '\0');
        match trimmed.to_ascii_uppercase().as_str() {
            "" | "LINEAR" => Ok(VoiFunction::Linear),
            "LINEAR_EXACT" => Ok(VoiFunction::LinearExact),
            "SIGMOID" => Ok(VoiFunction::Sigmoid),
            _ => Err(DisplayError::UnknownVoiFunction(trimmed.to_owned())),
        }
    }

    /// The defined term as the standard spells it.
    pub fn as_dicom(self) -> &'static str {
        match self {
            VoiFunction::Linear => "LINEAR",
            VoiFunction::LinearExact => "LINEAR_EXACT",
            VoiFunction::Sigmoid => "SIGMOID",
        }
    }
}

impl fmt::Display for VoiFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_dicom())
    }
}

/// A window (Window Center and Width, in modality-LUT output units) with its
/// VOI LUT Function. The width is checked against the function's rule:
/// at least 1 for LINEAR, greater than 0 for LINEAR_EXACT and SIGMOID.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    center: f64,
    width: f64,
    function: VoiFunction,
}

impl Window {
    pub fn new(center: f64, width: f64, function: VoiFunction) -> Result<Self, DisplayError> {
        let center = finite("window center", center)?;
        let width = finite("window width", width)?;
        let (ok, rule) = match function {
            VoiFunction::Linear => (width >= 1.0, "at least 1"),
            VoiFunction::LinearExact | VoiFunction::Sigmoid => (width > 0.0, "greater than 0"),
        };
        if !ok {
            return Err(DisplayError::WindowWidth {
                width,
                function,
                rule,
            });
        }
        Ok(Window {
            center,
            width,
            function,
        })
    }

    pub fn center(&self) -> f64 {
        self.center
    }

    pub fn width(&self) -> f64 {
        self.width
    }

    pub fn function(&self) -> VoiFunction {
        self.function
    }

    /// The VOI output for input `x` on the output range `ymin..=ymax`, by the
    /// formulas of C.11.2.1.2 and C.11.2.1.3 as the standard writes them.
    pub fn apply(&self, x: f64, ymin: f64, ymax: f64) -> f64 {
        let (c, w) = (self.center, self.width);
        match self.function {
            VoiFunction::Linear => {
                // With w = 1 the middle branch is empty: a threshold at c - 0.5.
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    ymin
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    ymax
                } else {
                    ((x - (c - 0.5)) / (w - 1.0) + 0.5) * (ymax - ymin) + ymin
                }
            }
            VoiFunction::LinearExact => {
                if x <= c - w / 2.0 {
                    ymin
                } else if x > c + w / 2.0 {
                    ymax
                } else {
                    ((x - c) / w + 0.5) * (ymax - ymin) + ymin
                }
            }
            VoiFunction::Sigmoid => (ymax - ymin) / (1.0 + (-4.0 * (x - c) / w).exp()) + ymin,
        }
    }
}

/// Pairs the values of Window Center (0028,1050) and Window Width (0028,1051),
/// which are multi-valued, under one VOI LUT Function.
pub fn windows_from_attributes(
    centers: &[f64],
    widths: &[f64],
    function: VoiFunction,
) -> Result<Vec<Window>, DisplayError> {
    if centers.len() != widths.len() {
        return Err(DisplayError::WindowCount {
            centers: centers.len(),
            widths: widths.len(),
        });
    }
    centers
        .iter()
        .zip(widths)
        .map(|(&c, &w)| Window::new(c, w, function))
        .collect()
}

/// One item of the VOI LUT Sequence (0028,3010): its LUT Descriptor
/// (number of entries, first input value mapped, bits per entry) and LUT Data.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiLut {
    first_mapped: i64,
    bits: u16,
    data: Vec<u16>,
}

impl VoiLut {
    /// A LUT whose entry `i` is the output for input `first_mapped + i`.
    /// Entries above the largest value of `bits` bits are clamped to it.
    pub fn new(first_mapped: i64, bits: u16, data: Vec<u16>) -> Result<Self, DisplayError> {
        if !(1..=16).contains(&bits) {
            return Err(DisplayError::LutBits(bits));
        }
        if data.is_empty() {
            return Err(DisplayError::EmptyLut);
        }
        let max = max_of_bits(bits);
        let data = data.into_iter().map(|v| v.min(max)).collect();
        Ok(VoiLut {
            first_mapped,
            bits,
            data,
        })
    }

    /// From the three raw values of LUT Descriptor (0028,3002) as read:
    /// a number of entries of 0 means 65 536 (C.11.2.1.1), and the first value
    /// mapped is read as signed when `first_signed` (it then shares the
    /// representation of the pixel data). LUT Data of 8-bit entries packed two
    /// to a 16-bit word (low byte first) is unpacked. LUT Data longer than
    /// announced is cut to the announced length.
    pub fn from_descriptor(
        descriptor: [u16; 3],
        first_signed: bool,
        data: &[u16],
    ) -> Result<Self, DisplayError> {
        let [entries, first, bits] = descriptor;
        let entries = if entries == 0 {
            65_536
        } else {
            usize::from(entries)
        };
        let first_mapped = if first_signed {
            i64::from(first as i16)
        } else {
            i64::from(first)
        };
        let data: Vec<u16> = if data.len() >= entries {
            data[..entries].to_vec()
        } else if bits <= 8 && !data.is_empty() && data.len() == entries.div_ceil(2) {
            data.iter()
                .flat_map(|w| [w & 0xFF, w >> 8])
                .take(entries)
                .collect()
        } else if data.is_empty() {
            return Err(DisplayError::EmptyLut);
        } else {
            return Err(DisplayError::LutLength {
                expected: entries,
                actual: data.len(),
            });
        };
        VoiLut::new(first_mapped, bits, data)
    }

    pub fn first_mapped(&self) -> i64 {
        self.first_mapped
    }

    pub fn bits(&self) -> u16 {
        self.bits
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Never true: [`VoiLut::new`] refuses an empty LUT.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The entry for input `x` (rounded to the nearest integer): inputs below
    /// the first value mapped take the first entry, inputs past the last take
    /// the last entry.
    pub fn lookup(&self, x: f64) -> u16 {
        let last = self.data.len() - 1;
        let offset = x.round() - self.first_mapped as f64;
        let index = if offset.is_nan() || offset <= 0.0 {
            0
        } else if offset >= last as f64 {
            last
        } else {
            offset as usize
        };
        self.data[index]
    }

    /// The entry for input `x` scaled from `bits` bits to `0.0..=255.0`.
    pub fn display(&self, x: f64) -> f64 {
        f64::from(self.lookup(x)) * 255.0 / f64::from(max_of_bits(self.bits))
    }
}

fn max_of_bits(bits: u16) -> u16 {
    (((1u32 << bits) - 1) & 0xFFFF) as u16
}

/// The VOI stage of the pipeline.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Voi {
    Window(Window),
    Lut(VoiLut),
    /// No window in the file: one from percentiles of the modality-LUT output
    /// (see [`auto_window`]).
    #[default]
    Auto,
}

impl Voi {
    /// Picks the file's VOI preset `index`, counting the windows first and
    /// then the items of the VOI LUT Sequence (the standard leaves the choice
    /// between the two to the application); index 0 is the default. A file
    /// with neither gives [`Voi::Auto`] for index 0.
    pub fn preset(windows: &[Window], luts: &[VoiLut], index: usize) -> Result<Voi, DisplayError> {
        let count = windows.len() + luts.len();
        if let Some(w) = windows.get(index) {
            Ok(Voi::Window(*w))
        } else if let Some(lut) = luts.get(index - windows.len()) {
            Ok(Voi::Lut(lut.clone()))
        } else if count == 0 && index == 0 {
            Ok(Voi::Auto)
        } else {
            Err(DisplayError::PresetIndex { index, count })
        }
    }

    /// The stage with `Auto` replaced by the window `auto` computes.
    fn resolve<E>(&self, auto: impl FnOnce() -> Result<Window, E>) -> Result<ResolvedVoi<'_>, E> {
        Ok(match self {
            Voi::Window(w) => ResolvedVoi::Window(*w),
            Voi::Lut(lut) => ResolvedVoi::Lut(lut),
            Voi::Auto => ResolvedVoi::Window(auto()?),
        })
    }
}

enum ResolvedVoi<'a> {
    Window(Window),
    Lut(&'a VoiLut),
}

impl ResolvedVoi<'_> {
    /// The 8-bit display value, before any inversion, of one modality-LUT
    /// output.
    fn display(&self, m: f64) -> f64 {
        match self {
            ResolvedVoi::Window(w) => w.apply(m, 0.0, 255.0),
            ResolvedVoi::Lut(lut) => lut.display(m),
        }
    }
}

/// The whole grayscale pipeline: Modality LUT, VOI stage, and the inversion
/// of MONOCHROME1 (`invert`), to 8-bit display values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GrayPipeline {
    pub modality: ModalityLut,
    pub voi: Voi,
    /// True for Photometric Interpretation MONOCHROME1 (0 shows as white).
    pub invert: bool,
}

impl GrayPipeline {
    /// Renders stored values held in 8-bit samples (Bits Allocated 8).
    pub fn render_u8(
        &self,
        stored: &[u8],
        bits_stored: u16,
        signed: bool,
    ) -> Result<Vec<u8>, DisplayError> {
        self.render_stored(stored, bits_stored, signed)
    }

    /// Renders stored values held in 16-bit samples (Bits Allocated 16).
    /// Each sample is masked to its low `bits_stored` bits (High Bit is taken
    /// to be Bits Stored - 1) and, when `signed` (Pixel Representation 1),
    /// read as two's complement of that width.
    pub fn render_u16(
        &self,
        stored: &[u16],
        bits_stored: u16,
        signed: bool,
    ) -> Result<Vec<u8>, DisplayError> {
        self.render_stored(stored, bits_stored, signed)
    }

    /// Renders stored values already decoded to integers (wider data, or
    /// samples a decoder has sign-extended).
    pub fn render_i32(&self, stored: &[i32]) -> Vec<u8> {
        let Some((min, max)) = min_max(stored) else {
            return Vec::new();
        };
        let Ok(voi) = self
            .voi
            .resolve(|| Ok::<_, std::convert::Infallible>(auto_window_i32(stored, &self.modality)));
        let range = (i64::from(max) - i64::from(min)) as usize;
        if range < TABLE_LIMIT {
            let table: Vec<u8> = (0..=range)
                .map(|i| self.pixel(f64::from(min) + i as f64, &voi))
                .collect();
            stored
                .iter()
                .map(|&v| table[(i64::from(v) - i64::from(min)) as usize])
                .collect()
        } else {
            stored
                .iter()
                .map(|&v| self.pixel(f64::from(v), &voi))
                .collect()
        }
    }

    fn pixel(&self, stored: f64, voi: &ResolvedVoi) -> u8 {
        let y = to_u8(voi.display(self.modality.apply(stored)));
        if self.invert { 255 - y } else { y }
    }

    fn render_stored<T: Copy + Into<u32>>(
        &self,
        stored: &[T],
        bits_stored: u16,
        signed: bool,
    ) -> Result<Vec<u8>, DisplayError> {
        let table = self.stored_table(bits_stored, signed, || {
            auto_window_stored(stored, bits_stored, signed, &self.modality)
        })?;
        let mask = (1u32 << bits_stored) - 1;
        Ok(stored
            .iter()
            .map(|&v| table[(v.into() & mask) as usize])
            .collect())
    }

    /// The display value of every stored value of `bits_stored` bits (1..=16), by
    /// raw sample masked to those bits: entry `raw` is the output for
    /// `stored_value(raw, bits_stored, signed)`. `auto` gives the window of
    /// [`Voi::Auto`].
    pub fn stored_table(
        &self,
        bits_stored: u16,
        signed: bool,
        auto: impl FnOnce() -> Result<Window, DisplayError>,
    ) -> Result<Vec<u8>, DisplayError> {
        check_bits(bits_stored)?;
        let voi = self.voi.resolve(auto)?;
        let mask = (1u32 << bits_stored) - 1;
        Ok((0..=mask)
            .map(|raw| self.pixel(f64::from(stored_value(raw, bits_stored, signed)), &voi))
            .collect())
    }
}

/// Stored samples read where they lie (in a decoded buffer or in the file's own
/// bytes), as indices into a table of `2^bits_stored` entries: each sample's raw
/// value with its unused high bits shifted off and masked to Bits Stored.
pub trait StoredRows: Sync {
    /// The indices of samples `start..start + out.len()`.
    fn indices(&self, start: usize, out: &mut [u32]);
}

/// Below this many samples, one thread does it all.
const PARALLEL_MIN: usize = 1 << 18;
/// Rows reduced together by [`map_fit`]: one accumulator per row, so the additions
/// of different rows overlap (each row's own sums keep their order).
const LANES: usize = 8;

/// The threads to split a large image over (the cores, at most 8).
fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
    })
}

/// Calls `f(first_row, band)` for bands of whole rows (`row_len` items each) of
/// `out`, on several threads when `parallel`; each band starts at a multiple of
/// [`LANES`] rows.
fn for_bands<T: Send>(
    out: &mut [T],
    row_len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    let n = if parallel { threads().min(rows) } else { 1 };
    if n <= 1 || row_len == 0 {
        f(0, out);
        return;
    }
    let band_rows = rows.div_ceil(n).next_multiple_of(LANES);
    let f = &f;
    std::thread::scope(|scope| {
        let mut bands = out.chunks_mut(band_rows * row_len).enumerate();
        let first = bands.next();
        for (k, band) in bands {
            scope.spawn(move || f(k * band_rows, band));
        }
        if let Some((_, band)) = first {
            f(0, band);
        }
    });
}

/// [`downscale`] of the image whose pixel `i` is `table[src.indices(i)]` (the
/// grayscale pipeline as a table, from [`GrayPipeline::stored_table`]), without
/// building that image first: source rows are mapped and reduced as they are
/// read, on every core. The arithmetic, and so every output value, is exactly
/// that of mapping the whole image and then calling [`downscale`]. An image that
/// fits is mapped at full size.
pub fn map_fit(
    src: &impl StoredRows,
    table: &[u8],
    width: usize,
    height: usize,
    max_width: usize,
    max_height: usize,
) -> Result<(Vec<u8>, usize, usize), DisplayError> {
    let (out_w, out_h) = fit_within(width, height, max_width, max_height);
    let parallel = width * height >= PARALLEL_MIN;
    if (out_w, out_h) == (width, height) || out_w == 0 {
        let mut out = vec![0u8; width * height];
        for_bands(&mut out, width, parallel, |first, band| {
            let mut idx = vec![0u32; width];
            for (r, row) in band.chunks_mut(width).enumerate() {
                src.indices((first + r) * width, &mut idx);
                for (o, &i) in row.iter_mut().zip(&idx) {
                    *o = table[i as usize];
                }
            }
        });
        return Ok((out, out_w, out_h));
    }
    // The table as the f32 values the box filter multiplies.
    let values: Vec<f32> = table.iter().map(|&v| f32::from(v)).collect();
    // For each output column: its first source column, and where its weights
    // (in ascending source order, the order [`downscale`] adds them in) start in
    // `weights`, and how many.
    let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(out_w);
    let mut weights: Vec<f32> = Vec::with_capacity(width + out_w);
    for (x, ox, w) in box_weights(width, out_w) {
        let same_output = spans.len() == ox + 1;
        match spans.last_mut() {
            Some((_, _, n)) if same_output => *n += 1,
            _ => spans.push((x, weights.len(), 1)),
        }
        weights.push(w);
    }
    // Horizontal pass: every source row to out_w sums, LANES rows at a time.
    let mut horizontal = vec![0f32; height * out_w];
    for_bands(&mut horizontal, out_w, parallel, |first, band| {
        let mut idx = vec![0u32; width];
        // LANES rows interleaved: lanes[x * LANES + k] is column x of row k.
        let mut lanes = vec![0f32; width * LANES];
        let rows = band.len() / out_w;
        let mut r = 0;
        while r < rows {
            let n = (rows - r).min(LANES);
            for k in 0..n {
                src.indices((first + r + k) * width, &mut idx);
                for (lane, &i) in lanes.chunks_exact_mut(LANES).zip(&idx) {
                    lane[k] = values[i as usize];
                }
            }
            let block = &mut band[r * out_w..(r + n) * out_w];
            for (ox, &(x, at, count)) in spans.iter().enumerate() {
                let mut acc = [0f32; LANES];
                let columns = lanes[x * LANES..(x + count) * LANES].chunks_exact(LANES);
                for (column, &w) in columns.zip(&weights[at..at + count]) {
                    for k in 0..LANES {
                        acc[k] += w * column[k];
                    }
                }
                for (k, &a) in acc.iter().enumerate().take(n) {
                    block[k * out_w + ox] = a;
                }
            }
            r += n;
        }
    });
    Ok((
        vertical_pass(&horizontal, height, out_w, out_h),
        out_w,
        out_h,
    ))
}

/// The vertical pass of the box filter over `height` rows of `row_len` sums, to
/// `out_h` rows of 8-bit values.
fn vertical_pass(horizontal: &[f32], height: usize, row_len: usize, out_h: usize) -> Vec<u8> {
    let mut out = vec![0f32; out_h * row_len];
    for &(y, oy, weight) in &box_weights(height, out_h) {
        let from = &horizontal[y * row_len..(y + 1) * row_len];
        let to = &mut out[oy * row_len..(oy + 1) * row_len];
        for (t, f) in to.iter_mut().zip(from) {
            *t += weight * f;
        }
    }
    out.into_iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Stored samples handed over a row at a time, for [`preview_fit`]: each row's raw
/// values with their unused high bits shifted off and masked to Bits Stored (at most
/// 16 bits), as [`StoredRows::indices`] gives them. The rows may come from memory or
/// from a file.
pub trait RowSource: Sync {
    /// Calls `f(y, indices)` for every row `y` of `first..first + n`, in order, each
    /// row `width` samples.
    fn each_row(
        &self,
        first: usize,
        n: usize,
        width: usize,
        f: &mut dyn FnMut(usize, &[u16]),
    ) -> Result<(), DisplayError>;
}

impl<T: StoredRows> RowSource for T {
    fn each_row(
        &self,
        first: usize,
        n: usize,
        width: usize,
        f: &mut dyn FnMut(usize, &[u16]),
    ) -> Result<(), DisplayError> {
        let mut idx = vec![0u32; width];
        let mut row = vec![0u16; width];
        for y in first..first + n {
            self.indices(y * width, &mut idx);
            for (r, &i) in row.iter_mut().zip(&idx) {
                *r = i as u16;
            }
            f(y, &row);
        }
        Ok(())
    }
}

/// Whether [`preview_fit`] is used for an image of `width x height` fitted within
/// `max_width x max_height`: only when it shrinks by at least 2 on both sides (below
/// that, averaging before the window saves little and the window is applied first).
pub fn preview_applies(width: usize, height: usize, max_width: usize, max_height: usize) -> bool {
    let (out_w, out_h) = fit_within(width, height, max_width, max_height);
    out_w > 0 && out_h > 0 && width >= 2 * out_w && height >= 2 * out_h
}

/// The output rows of [`preview_fit`] are cut into this many bands, which the
/// threads take one at a time: a thread the machine is slow to schedule leaves its
/// share to the others.
const PREVIEW_BANDS: usize = 8;

/// How a source row adds to the preview's output rows.
#[derive(Clone, Copy)]
struct RowWeights {
    /// The first output row it covers (`usize::MAX` when none).
    first: usize,
    /// Whether it lies wholly within that output row (weight `m / n`: its values
    /// are summed as integers and scaled once).
    whole: bool,
    /// Its weights for `first` and `first + 1` (when not whole).
    w0: f32,
    w1: f32,
}

/// One output row being summed: whole source rows as integers, partial ones
/// weighted.
struct RowSums {
    whole: Vec<u32>,
    partial: Vec<f32>,
}

impl RowSums {
    fn new(width: usize) -> Self {
        RowSums {
            whole: vec![0; width],
            partial: vec![0.0; width],
        }
    }

    fn clear(&mut self) {
        self.whole.fill(0);
        self.partial.fill(0.0);
    }
}

/// A preview: the image of stored samples fitted within `max_width x max_height`
/// by a box filter of the *stored values* (each output pixel the area-weighted
/// mean of the source pixels it covers, the weights of [`downscale`]), then the
/// pipeline (Modality LUT, VOI stage, inversion) applied to each mean. Every source
/// sample is read once, a row at a time; no full-size image is built. The
/// automatic window of [`Voi::Auto`] (then set in `pipeline.voi`) comes from a
/// histogram of a regular subsample (every `step`th sample of every `step`th row,
/// `step` about half the reduction factor).
///
/// Averaging before the window differs from [`map_fit`] (window, then average)
/// only where the window is not linear over a block: a block straddling the
/// window's ends, a SIGMOID window, a VOI LUT. For a preview that is the accepted
/// price (issue 3); the full-size image is always windowed pixel by pixel.
#[allow(clippy::too_many_arguments)]
pub fn preview_fit(
    pipeline: &mut GrayPipeline,
    src: &impl RowSource,
    bits_stored: u16,
    signed: bool,
    width: usize,
    height: usize,
    max_width: usize,
    max_height: usize,
) -> Result<(Vec<u8>, usize, usize), DisplayError> {
    check_bits(bits_stored)?;
    let (out_w, out_h) = fit_within(width, height, max_width, max_height);
    if out_w == 0 || out_h == 0 {
        return Ok((Vec::new(), out_w, out_h));
    }
    // Signed values become unsigned by flipping the sign bit (u = stored + 2^(bits-1)),
    // so the means are of non-negative numbers; the offset is taken off at the end.
    let flip: u16 = if signed { 1 << (bits_stored - 1) } else { 0 };
    let auto = matches!(pipeline.voi, Voi::Auto);
    let step = (width / out_w).min(height / out_h).div_ceil(2).max(1);
    // Source row y is [y m, (y + 1) m) and output row o is [o n, (o + 1) n), in
    // units of 1 / m of a source row (n = height, m = out_h).
    let mut rows = vec![
        RowWeights {
            first: usize::MAX,
            whole: false,
            w0: 0.0,
            w1: 0.0,
        };
        height
    ];
    for (y, oy, w) in box_weights(height, out_h) {
        let r = &mut rows[y];
        if r.first == usize::MAX {
            r.first = oy;
            r.w0 = w;
            r.whole = oy * height <= y * out_h && (y + 1) * out_h <= (oy + 1) * height;
        } else {
            r.w1 = w;
        }
    }
    let whole_weight = out_h as f32 / height as f32;
    // For each output column: its first source column, where its weights start in
    // `weights`, and how many (the columns of box_weights, grouped by output).
    let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(out_w);
    let mut weights: Vec<f32> = Vec::with_capacity(width + out_w);
    for (x, ox, w) in box_weights(width, out_w) {
        let same_output = spans.len() == ox + 1;
        match spans.last_mut() {
            Some((_, _, n)) if same_output => *n += 1,
            _ => spans.push((x, weights.len(), 1)),
        }
        weights.push(w);
    }
    let parallel = width * height >= PARALLEL_MIN;
    let bands = if parallel {
        PREVIEW_BANDS.min(out_h)
    } else {
        1
    };
    // Band k: output rows [o_lo, o_hi); it reads the source rows they cover (a row on
    // a boundary is read by both bands, each adding its own weight) and counts the
    // histogram over the source rows that start in its share.
    let band = |k: usize| -> Result<(Vec<f32>, Vec<u32>, usize), DisplayError> {
        let (o_lo, o_hi) = (k * out_h / bands, (k + 1) * out_h / bands);
        let y_lo = o_lo * height / out_h;
        let y_hi = (o_hi * height).div_ceil(out_h).min(height);
        let (h_lo, h_hi) = (y_lo, o_hi * height / out_h);
        let mut sums = vec![0f32; (o_hi - o_lo) * out_w];
        let mut histogram = if auto {
            vec![0u32; 1 << bits_stored]
        } else {
            Vec::new()
        };
        let mut counted = 0usize;
        // The sums of output rows `current` and `current + 1`.
        let mut acc = RowSums::new(width);
        let mut next = RowSums::new(width);
        let mut current = o_lo;
        let mut row = vec![0f32; width];
        let mut flush = |acc: &mut RowSums, o: usize, sums: &mut [f32]| {
            for ((r, &i), &p) in row.iter_mut().zip(&acc.whole).zip(&acc.partial) {
                // A sum of at most 65 535 rows of 16 bits: below 2^32, and through
                // i32 only when below 2^31 (the conversion SSE2 has).
                let i = if i <= i32::MAX as u32 {
                    i as i32 as f32
                } else {
                    i as f32
                };
                *r = whole_weight * i + p;
            }
            let out = &mut sums[(o - o_lo) * out_w..(o - o_lo + 1) * out_w];
            for (o, &(x, at, count)) in out.iter_mut().zip(&spans) {
                // Four running sums, so the additions do not wait on each other.
                let (r, w) = (&row[x..x + count], &weights[at..at + count]);
                let mut lanes = [0f32; 4];
                for (rc, wc) in r.chunks_exact(4).zip(w.chunks_exact(4)) {
                    for k in 0..4 {
                        lanes[k] += rc[k] * wc[k];
                    }
                }
                let tail = count - count % 4;
                let rest: f32 = r[tail..].iter().zip(&w[tail..]).map(|(a, b)| a * b).sum();
                *o = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + rest;
            }
            acc.clear();
        };
        src.each_row(y_lo, y_hi - y_lo, width, &mut |y, idx| {
            let r = rows[y];
            if r.first == usize::MAX {
                return; // covers no output row (cannot happen when shrinking)
            }
            // The first output row this row adds to within this band.
            let first = if r.first < o_lo { r.first + 1 } else { r.first };
            while current < first.min(o_hi) {
                flush(&mut acc, current, &mut sums);
                std::mem::swap(&mut acc, &mut next);
                current += 1;
            }
            if r.first >= o_lo && r.first < o_hi {
                if r.whole {
                    for (a, &i) in acc.whole.iter_mut().zip(idx) {
                        *a += u32::from(i ^ flip);
                    }
                } else {
                    for (a, &i) in acc.partial.iter_mut().zip(idx) {
                        *a += r.w0 * f32::from(i ^ flip);
                    }
                }
            }
            if r.w1 > 0.0 && r.first + 1 >= o_lo && r.first + 1 < o_hi {
                let target = if r.first < o_lo { &mut acc } else { &mut next };
                for (a, &i) in target.partial.iter_mut().zip(idx) {
                    *a += r.w1 * f32::from(i ^ flip);
                }
            }
            if auto && y >= h_lo && y < h_hi && y % step == 0 {
                for &i in idx.iter().step_by(step) {
                    histogram[usize::from(i)] += 1;
                }
                counted += idx.len().div_ceil(step);
            }
        })?;
        while current < o_hi {
            flush(&mut acc, current, &mut sums);
            std::mem::swap(&mut acc, &mut next);
            current += 1;
        }
        Ok((sums, histogram, counted))
    };
    type Band = (usize, Result<(Vec<f32>, Vec<u32>, usize), DisplayError>);
    let taken = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> Vec<Band> {
        let mut done = Vec::new();
        loop {
            let k = taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if k >= bands {
                return done;
            }
            done.push((k, band(k)));
        }
    };
    let mut results: Vec<Band> = if bands == 1 {
        work()
    } else {
        std::thread::scope(|scope| {
            let work = &work;
            let helpers: Vec<_> = (1..threads()).map(|_| scope.spawn(work)).collect();
            let mut all = work();
            for helper in helpers {
                all.extend(
                    helper
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            all
        })
    };
    results.sort_by_key(|(k, _)| *k);
    let mut means = Vec::with_capacity(out_w * out_h);
    let mut histogram: Vec<usize> = Vec::new();
    let mut counted = 0;
    for (_, result) in results {
        let (sums, h, n) = result?;
        means.extend_from_slice(&sums);
        if auto {
            histogram.resize(h.len(), 0);
            for (a, b) in histogram.iter_mut().zip(h) {
                *a += b as usize;
            }
            counted += n;
        }
    }
    if auto {
        // The histogram is by raw value, as window_of_histogram wants it.
        pipeline.voi = Voi::Window(if counted == 0 {
            window_from_range(0.0, 0.0)
        } else {
            window_of_histogram(&histogram, counted, bits_stored, signed, &pipeline.modality)
        });
    }
    let voi = pipeline
        .voi
        .resolve(|| Ok::<_, DisplayError>(window_from_range(0.0, 0.0)))?;
    let offset = f64::from(flip);
    let out = means
        .iter()
        .map(|&m| {
            let y = voi.display(pipeline.modality.apply(f64::from(m) - offset));
            // Rounded as to_u8 does, without a call to round (y + 0.5 truncated;
            // `as` saturates below 0, above 255 and for NaN).
            let y = (y + 0.5) as u8;
            if pipeline.invert { 255 - y } else { y }
        })
        .collect();
    Ok((out, out_w, out_h))
}

/// [`auto_window_stored`] of `count` samples read through [`StoredRows`] (rows of
/// `width`), the histogram counted on every core.
pub fn auto_window_rows(
    src: &impl StoredRows,
    count: usize,
    width: usize,
    bits_stored: u16,
    signed: bool,
    modality: &ModalityLut,
) -> Result<Window, DisplayError> {
    check_bits(bits_stored)?;
    if count == 0 || width == 0 {
        return Ok(window_from_range(0.0, 0.0));
    }
    let entries = 1usize << bits_stored;
    let rows = count.div_ceil(width);
    let n = if count >= PARALLEL_MIN {
        threads().min(rows)
    } else {
        1
    };
    let band = rows.div_ceil(n) * width;
    let count_band = |start: usize| {
        let mut h = vec![0usize; entries];
        let mut idx = vec![0u32; width];
        let end = (start + band).min(count);
        let mut at = start;
        while at < end {
            let len = width.min(end - at);
            src.indices(at, &mut idx[..len]);
            for &i in &idx[..len] {
                h[i as usize] += 1;
            }
            at += len;
        }
        h
    };
    let mut histogram = std::thread::scope(|scope| {
        let count_band = &count_band;
        let others: Vec<_> = (1..n)
            .map(|b| scope.spawn(move || count_band(b * band)))
            .collect();
        let mut h = count_band(0);
        for other in others {
            let o = other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (x, y) in h.iter_mut().zip(o) {
                *x += y;
            }
        }
        h
    });
    histogram.truncate(entries);
    Ok(window_of_histogram(
        &histogram,
        count,
        bits_stored,
        signed,
        modality,
    ))
}

/// Up to this many distinct integer values, a table or a histogram over the
/// range beats per-pixel work or a selection.
const TABLE_LIMIT: usize = 1 << 20;

fn to_u8(y: f64) -> u8 {
    // `as` saturates, and maps NaN to 0.
    y.round() as u8
}

fn check_bits(bits_stored: u16) -> Result<(), DisplayError> {
    if (1..=16).contains(&bits_stored) {
        Ok(())
    } else {
        Err(DisplayError::BitsStored(bits_stored))
    }
}

/// The stored value of a raw sample: its low `bits_stored` bits, read as
/// two's complement when `signed`. `bits_stored` must be 1..=16.
pub fn stored_value(raw: u32, bits_stored: u16, signed: bool) -> i32 {
    let v = raw & ((1u32 << bits_stored) - 1);
    if signed && v & (1u32 << (bits_stored - 1)) != 0 {
        v as i32 - (1i32 << bits_stored)
    } else {
        v as i32
    }
}

fn min_max(values: &[i32]) -> Option<(i32, i32)> {
    let first = *values.first()?;
    Some(
        values
            .iter()
            .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v))),
    )
}

/// The lower percentile of the automatic window.
pub const AUTO_LOW_PERCENTILE: f64 = 0.5;
/// The upper percentile of the automatic window.
pub const AUTO_HIGH_PERCENTILE: f64 = 99.5;

/// The 1-based nearest ranks of the automatic window's percentiles among `n`
/// values, in ascending order of the modality-LUT output.
fn percentile_ranks(n: usize) -> (usize, usize) {
    let rank = |p: f64| ((p / 100.0 * n as f64).ceil() as usize).clamp(1, n);
    (rank(AUTO_LOW_PERCENTILE), rank(AUTO_HIGH_PERCENTILE))
}

/// Ranks among stored values, ascending, for the ranks `(lo, hi)` among the
/// modality outputs: a negative slope reverses the order.
fn stored_ranks(n: usize, modality: &ModalityLut) -> (usize, usize) {
    let (lo, hi) = percentile_ranks(n);
    if modality.slope < 0.0 {
        (n + 1 - lo, n + 1 - hi)
    } else {
        (lo, hi)
    }
}

/// The window from the low and high percentiles: LINEAR_EXACT, which maps
/// `lo` to black and `hi` to white exactly and allows the widths below 1 of
/// finely rescaled data. A constant image (`hi == lo`) gets width 1 centred on
/// its value, so it shows mid-gray.
fn window_from_range(lo: f64, hi: f64) -> Window {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let width = hi - lo;
    if width > 0.0 && width.is_finite() {
        Window {
            center: lo + width / 2.0,
            width,
            function: VoiFunction::LinearExact,
        }
    } else {
        Window {
            center: if lo.is_finite() { lo } else { 0.0 },
            width: 1.0,
            function: VoiFunction::LinearExact,
        }
    }
}

/// The automatic window of any modality-LUT output values: the
/// [`AUTO_LOW_PERCENTILE`]th and [`AUTO_HIGH_PERCENTILE`]th percentiles
/// (nearest rank) become the window's black and white points, so a few
/// extreme pixels do not flatten the image. Non-finite values are ignored.
/// Average O(n) (two selections on a copy); integer data should use
/// [`auto_window_stored`] or [`auto_window_i32`], which count a histogram.
pub fn auto_window(values: &[f64]) -> Window {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return window_from_range(0.0, 0.0);
    }
    let (lo, hi) = percentile_ranks(v.len());
    let lo = *v.select_nth_unstable_by(lo - 1, f64::total_cmp).1;
    let hi = *v.select_nth_unstable_by(hi - 1, f64::total_cmp).1;
    window_from_range(lo, hi)
}

/// [`auto_window`] of the modality-LUT output of stored samples, by a
/// histogram of the at most 65 536 stored values: O(n).
pub fn auto_window_stored<T: Copy + Into<u32>>(
    stored: &[T],
    bits_stored: u16,
    signed: bool,
    modality: &ModalityLut,
) -> Result<Window, DisplayError> {
    check_bits(bits_stored)?;
    if stored.is_empty() {
        return Ok(window_from_range(0.0, 0.0));
    }
    let mask = (1u32 << bits_stored) - 1;
    let mut histogram = vec![0usize; mask as usize + 1];
    for &v in stored {
        histogram[(v.into() & mask) as usize] += 1;
    }
    Ok(window_of_histogram(
        &histogram,
        stored.len(),
        bits_stored,
        signed,
        modality,
    ))
}

/// The automatic window from a histogram of `n` raw values masked to
/// `bits_stored` bits.
fn window_of_histogram(
    histogram: &[usize],
    n: usize,
    bits_stored: u16,
    signed: bool,
    modality: &ModalityLut,
) -> Window {
    let mask = (1u32 << bits_stored) - 1;
    // Ascending stored values: for signed data the negatives (high raw values)
    // come first.
    let (min, max) = if signed {
        (
            -(1i32 << (bits_stored - 1)),
            (1i32 << (bits_stored - 1)) - 1,
        )
    } else {
        (0, mask as i32)
    };
    let ascending = (min..=max).map(|s| (s, histogram[(s as u32 & mask) as usize]));
    let (lo, hi) = values_at_ranks(ascending, stored_ranks(n, modality));
    window_from_range(modality.apply(f64::from(lo)), modality.apply(f64::from(hi)))
}

/// [`auto_window`] of the modality-LUT output of stored values already
/// decoded to integers: a histogram when their range is under a million
/// values, else two selections.
pub fn auto_window_i32(stored: &[i32], modality: &ModalityLut) -> Window {
    let Some((min, max)) = min_max(stored) else {
        return window_from_range(0.0, 0.0);
    };
    let (rank_a, rank_b) = stored_ranks(stored.len(), modality);
    let range = (i64::from(max) - i64::from(min)) as usize;
    let (a, b) = if range < TABLE_LIMIT {
        let mut histogram = vec![0usize; range + 1];
        for &v in stored {
            histogram[(i64::from(v) - i64::from(min)) as usize] += 1;
        }
        let ascending = histogram
            .iter()
            .enumerate()
            .map(|(i, &count)| ((i64::from(min) + i as i64) as i32, count));
        values_at_ranks(ascending, (rank_a, rank_b))
    } else {
        let mut v = stored.to_vec();
        let a = *v.select_nth_unstable(rank_a - 1).1;
        let b = *v.select_nth_unstable(rank_b - 1).1;
        (a, b)
    };
    window_from_range(modality.apply(f64::from(a)), modality.apply(f64::from(b)))
}

/// The values at two 1-based ranks of a histogram given as `(value, count)`
/// in ascending order of value. The ranks must be within the total count.
fn values_at_ranks(
    ascending: impl Iterator<Item = (i32, usize)>,
    (rank_a, rank_b): (usize, usize),
) -> (i32, i32) {
    let (mut a, mut b) = (None, None);
    let mut seen = 0usize;
    for (value, count) in ascending {
        if count == 0 {
            continue;
        }
        seen += count;
        if a.is_none() && seen >= rank_a {
            a = Some(value);
        }
        if b.is_none() && seen >= rank_b {
            b = Some(value);
        }
        if a.is_some() && b.is_some() {
            break;
        }
    }
    (a.unwrap_or_default(), b.unwrap_or_default())
}

/// Interleaves 8-bit RGB samples: Planar Configuration 0 (R1 G1 B1 R2 ...) is
/// copied as it is, 1 (all R, then all G, then all B) is interleaved. Samples
/// past the `width * height * 3` of the image are ignored.
pub fn rgb_interleaved(
    data: &[u8],
    width: usize,
    height: usize,
    planar_configuration: u16,
) -> Result<Vec<u8>, DisplayError> {
    let pixels = width * height;
    check_len(data.len(), width, height, 3)?;
    match planar_configuration {
        0 => Ok(data[..pixels * 3].to_vec()),
        1 => {
            let (r, rest) = data.split_at(pixels);
            let (g, b) = rest.split_at(pixels);
            Ok((0..pixels).flat_map(|i| [r[i], g[i], b[i]]).collect())
        }
        other => Err(DisplayError::PlanarConfiguration(other)),
    }
}

fn check_len(
    actual: usize,
    width: usize,
    height: usize,
    channels: usize,
) -> Result<(), DisplayError> {
    let expected = width * height * channels;
    if actual < expected {
        return Err(DisplayError::PixelCount {
            width,
            height,
            expected,
            actual,
        });
    }
    Ok(())
}

/// The size of `width x height` shrunk to fit within `max_width x max_height`
/// with its aspect ratio kept (each side rounded, at least 1); an image that
/// already fits keeps its size. Zero for an empty image or an empty target.
pub fn fit_within(
    width: usize,
    height: usize,
    max_width: usize,
    max_height: usize,
) -> (usize, usize) {
    if width == 0 || height == 0 || max_width == 0 || max_height == 0 {
        return (0, 0);
    }
    if width <= max_width && height <= max_height {
        return (width, height);
    }
    // Compare the scale factors max_width / width and max_height / height
    // exactly, in integers; round the other side to the nearest.
    let (w, h, mw, mh) = (
        width as u128,
        height as u128,
        max_width as u128,
        max_height as u128,
    );
    if mw * h <= mh * w {
        let out_h = (2 * h * mw + w) / (2 * w);
        (max_width, (out_h as usize).clamp(1, max_height))
    } else {
        let out_w = (2 * w * mh + h) / (2 * h);
        ((out_w as usize).clamp(1, max_width), max_height)
    }
}

/// Reduces an 8-bit grayscale image (row-major, `width x height`) to fit
/// within `max_width x max_height` with its aspect ratio kept
/// ([`fit_within`]), each output pixel the area-weighted mean of the source
/// pixels it covers (a box filter, exact for fractional factors too). An image
/// that already fits is returned unchanged: this never enlarges. Terminal
/// cells are about twice as tall as wide; the caller chooses the target in
/// pixels accordingly.
pub fn downscale(
    gray: &[u8],
    width: usize,
    height: usize,
    max_width: usize,
    max_height: usize,
) -> Result<(Vec<u8>, usize, usize), DisplayError> {
    downscale_channels(gray, width, height, 1, max_width, max_height)
}

/// [`downscale`] of interleaved 8-bit RGB.
pub fn downscale_rgb(
    rgb: &[u8],
    width: usize,
    height: usize,
    max_width: usize,
    max_height: usize,
) -> Result<(Vec<u8>, usize, usize), DisplayError> {
    downscale_channels(rgb, width, height, 3, max_width, max_height)
}

fn downscale_channels(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    max_width: usize,
    max_height: usize,
) -> Result<(Vec<u8>, usize, usize), DisplayError> {
    check_len(src.len(), width, height, channels)?;
    let src = &src[..width * height * channels];
    let (out_w, out_h) = fit_within(width, height, max_width, max_height);
    if (out_w, out_h) == (width, height) || out_w == 0 {
        return Ok((src.to_vec(), out_w, out_h));
    }
    let columns = box_weights(width, out_w);

    // Horizontal pass: every source row to out_w pixels.
    let mut horizontal = vec![0f32; height * out_w * channels];
    for (y, row) in src.chunks_exact(width * channels).enumerate() {
        let out_row = &mut horizontal[y * out_w * channels..(y + 1) * out_w * channels];
        for &(x, ox, weight) in &columns {
            for c in 0..channels {
                out_row[ox * channels + c] += weight * f32::from(row[x * channels + c]);
            }
        }
    }
    // Vertical pass: out_h rows from the weighted source rows.
    let out = vertical_pass(&horizontal, height, out_w * channels, out_h);
    Ok((out, out_w, out_h))
}

/// For a reduction of `n` source samples to `m < n`: `(source, output, weight)`
/// for every overlap of source sample `source` (the interval [s, s + 1)) with
/// output sample `output` (the interval [o n / m, (o + 1) n / m)), the
/// weight being the overlap's share of the output interval. The weights of
/// each output sum to 1. At most n + m entries.
fn box_weights(n: usize, m: usize) -> Vec<(usize, usize, f32)> {
    let mut weights = Vec::with_capacity(n + m);
    // Work in units of 1 / m of a source sample, so every bound is an integer.
    for o in 0..m {
        let start = o * n;
        let end = (o + 1) * n;
        let mut s = start / m;
        while s * m < end {
            let overlap = (end.min((s + 1) * m) - start.max(s * m)) as f32;
            weights.push((s, o, overlap / n as f32));
            s += 1;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(c: f64, w: f64) -> Window {
        Window::new(c, w, VoiFunction::Linear).unwrap()
    }

    fn pipeline(voi: Voi) -> GrayPipeline {
        GrayPipeline {
            modality: ModalityLut::IDENTITY,
            voi,
            invert: false,
        }
    }

    #[test]
    fn linear_lower_threshold_c2048_w4096() {
        let w = linear(2048.0, 4096.0);
        let threshold = 2048.0 - 0.5 - (4096.0 - 1.0) / 2.0;
        assert_eq!(threshold, 0.0);
        assert_eq!(w.apply(threshold, 0.0, 255.0), 0.0);
        assert_eq!(w.apply(-1000.0, 0.0, 255.0), 0.0);
        // The first value above the threshold is already above ymin.
        let above = w.apply(1.0, 0.0, 255.0);
        assert!(above > 0.0, "{above}");
        assert!((above - (1.0 - 2047.5) / 4095.0 * 255.0 - 127.5).abs() < 1e-12);
        assert!(w.apply(threshold + 1e-9, 0.0, 255.0) > 0.0);
    }

    #[test]
    fn linear_upper_threshold_c2048_w4096() {
        let w = linear(2048.0, 4096.0);
        let threshold = 2048.0 - 0.5 + (4096.0 - 1.0) / 2.0;
        assert_eq!(threshold, 4095.0);
        // x == threshold is still in the middle branch, and gives ymax there.
        assert_eq!(w.apply(threshold, 0.0, 255.0), 255.0);
        assert_eq!(w.apply(threshold + 0.001, 0.0, 255.0), 255.0);
        assert_eq!(w.apply(70_000.0, 0.0, 255.0), 255.0);
        assert!(w.apply(4094.0, 0.0, 255.0) < 255.0);
    }

    #[test]
    fn linear_midpoint_is_at_c_minus_half() {
        let w = linear(2048.0, 4096.0);
        assert_eq!(w.apply(2047.5, 0.0, 255.0), 127.5);
        assert!(w.apply(2048.0, 0.0, 255.0) > 127.5);
        // On another output range too.
        assert_eq!(w.apply(2047.5, 10.0, 20.0), 15.0);
    }

    #[test]
    fn linear_width_one_is_a_threshold_at_c_minus_half() {
        let w = linear(100.0, 1.0);
        assert_eq!(w.apply(99.5, 0.0, 255.0), 0.0);
        assert_eq!(w.apply(99.0, 0.0, 255.0), 0.0);
        assert_eq!(w.apply(99.5 + 1e-9, 0.0, 255.0), 255.0);
        assert_eq!(w.apply(100.0, 0.0, 255.0), 255.0);
        // Integer data: 99 black, 100 white.
        let out = pipeline(Voi::Window(w))
            .render_u16(&[98, 99, 100, 101], 16, false)
            .unwrap();
        assert_eq!(out, [0, 0, 255, 255]);
    }

    #[test]
    fn window_widths_are_checked_per_function() {
        let err = Window::new(40.0, 0.0, VoiFunction::Linear).unwrap_err();
        assert_eq!(
            err.to_string(),
            "window width 0 is invalid for LINEAR: it must be at least 1"
        );
        assert!(Window::new(40.0, 0.5, VoiFunction::Linear).is_err());
        assert!(Window::new(40.0, 1.0, VoiFunction::Linear).is_ok());
        assert!(Window::new(40.0, 0.5, VoiFunction::LinearExact).is_ok());
        let err = Window::new(40.0, 0.0, VoiFunction::LinearExact).unwrap_err();
        assert_eq!(
            err.to_string(),
            "window width 0 is invalid for LINEAR_EXACT: it must be greater than 0"
        );
        assert!(Window::new(40.0, -3.0, VoiFunction::Sigmoid).is_err());
        assert!(Window::new(f64::NAN, 3.0, VoiFunction::Sigmoid).is_err());
        assert!(Window::new(0.0, f64::INFINITY, VoiFunction::Linear).is_err());
    }

    #[test]
    fn linear_exact_boundaries() {
        let w = Window::new(40.0, 400.0, VoiFunction::LinearExact).unwrap();
        assert_eq!(w.apply(-160.0, 0.0, 255.0), 0.0);
        assert!(w.apply(-159.99, 0.0, 255.0) > 0.0);
        assert_eq!(w.apply(40.0, 0.0, 255.0), 127.5);
        // x == c + w/2 is in the middle branch and reaches ymax there.
        assert_eq!(w.apply(240.0, 0.0, 255.0), 255.0);
        assert!(w.apply(239.99, 0.0, 255.0) < 255.0);
        assert_eq!(w.apply(240.01, 0.0, 255.0), 255.0);
        // Fractional widths are allowed.
        let narrow = Window::new(1.0, 0.5, VoiFunction::LinearExact).unwrap();
        assert_eq!(narrow.apply(0.75, 0.0, 255.0), 0.0);
        assert_eq!(narrow.apply(1.0, 0.0, 255.0), 127.5);
        assert_eq!(narrow.apply(1.25, 0.0, 255.0), 255.0);
    }

    #[test]
    fn sigmoid_midpoint_symmetry_and_saturation() {
        let w = Window::new(40.0, 400.0, VoiFunction::Sigmoid).unwrap();
        assert_eq!(w.apply(40.0, 0.0, 255.0), 127.5);
        let below = w.apply(40.0 - 100.0, 0.0, 255.0);
        let above = w.apply(40.0 + 100.0, 0.0, 255.0);
        assert!((below + above - 255.0).abs() < 1e-9);
        // y = 255 / (1 + e^-1) at x = c + w/4.
        assert!((above - 255.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-9);
        assert!(w.apply(-1e6, 0.0, 255.0) < 1e-9);
        assert!(w.apply(1e6, 0.0, 255.0) > 255.0 - 1e-9);
        let out = pipeline(Voi::Window(w)).render_i32(&[40, -1_000_000, 1_000_000]);
        assert_eq!(out, [128, 0, 255]);
    }

    #[test]
    fn voi_function_from_dicom() {
        assert_eq!(VoiFunction::from_dicom("").unwrap(), VoiFunction::Linear);
        assert_eq!(
            VoiFunction::from_dicom("LINEAR ").unwrap(),
            VoiFunction::Linear
        );
        assert_eq!(
            VoiFunction::from_dicom("LINEAR_EXACT").unwrap(),
            VoiFunction::LinearExact
        );
        assert_eq!(
            VoiFunction::from_dicom("sigmoid\0").unwrap(),
            VoiFunction::Sigmoid
        );
        let err = VoiFunction::from_dicom("LOG").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown VOI LUT Function \"LOG\" (expected LINEAR, LINEAR_EXACT or SIGMOID)"
        );
    }

    #[test]
    fn signed_12_bit_ct_goes_to_hounsfield_units() {
        let ct = ModalityLut::new(1.0, -1024.0).unwrap();
        // 12-bit two's complement: 0x800 is -2048, 0xFE8 is -24, 0x7FF is 2047.
        let hu = |raw: u32| ct.apply(f64::from(stored_value(raw, 12, true)));
        assert_eq!(hu(0x800), -3072.0);
        assert_eq!(hu(0xFE8), -1048.0);
        assert_eq!(hu(0xFFF), -1025.0);
        assert_eq!(hu(0x000), -1024.0);
        assert_eq!(hu(0x400), 0.0);
        assert_eq!(hu(0x7FF), 1023.0);
        // A decoder that sign-extended to 16 bits gives the same values.
        assert_eq!(hu(0xFFE8), -1048.0);

        // Through the pipeline: a LINEAR threshold between -1048 and -1047 HU.
        let p = GrayPipeline {
            modality: ct,
            voi: Voi::Window(linear(-1048.0 + 0.5, 1.0)),
            invert: false,
        };
        let stored = [0x0FE8u16, 0xFFE8, 0x0FE9, 0x0800, 0x07FF];
        assert_eq!(
            p.render_u16(&stored, 12, true).unwrap(),
            [0, 0, 255, 0, 255]
        );
        let decoded = [-24, -24, -23, -2048, 2047];
        assert_eq!(p.render_i32(&decoded), [0, 0, 255, 0, 255]);

        // A soft-tissue window on HU: water (0 HU) at 40/400 is below the
        // centre.
        let p = GrayPipeline {
            modality: ct,
            voi: Voi::Window(Window::new(40.0, 400.0, VoiFunction::LinearExact).unwrap()),
            invert: false,
        };
        let out = p
            .render_u16(&[0x400, 0x400 - 200, 0x400 + 300], 12, true)
            .unwrap();
        assert_eq!(out, [to_u8(((0.0 - 40.0) / 400.0 + 0.5) * 255.0), 0, 255]);
    }

    #[test]
    fn garbage_high_bits_are_masked_off() {
        let p = pipeline(Voi::Window(linear(2048.0, 4096.0)));
        let clean = p.render_u16(&[0, 100, 2048, 4095], 12, false).unwrap();
        let dirty = p
            .render_u16(&[0xF000, 0xA000 | 100, 0x5000 | 2048, 0xFFFF], 12, false)
            .unwrap();
        assert_eq!(clean, dirty);
        assert_eq!(clean[3], 255);
        assert_eq!(stored_value(0xF000 | 100, 12, false), 100);
        assert_eq!(stored_value(0x7FFF, 15, true), -1);
        assert_eq!(stored_value(0x8000, 16, true), -32768);
        assert_eq!(stored_value(1, 1, false), 1);
        assert!(p.render_u16(&[1], 0, false).is_err());
        assert_eq!(
            p.render_u16(&[1], 17, false).unwrap_err().to_string(),
            "Bits Stored must be between 1 and 16 for display (the file says 17)"
        );
        // 8-bit samples.
        let eight = pipeline(Voi::Window(linear(128.0, 256.0)));
        assert_eq!(eight.render_u8(&[0, 255], 8, false).unwrap(), [0, 255]);
    }

    #[test]
    fn monochrome1_is_inverted_after_the_voi_stage() {
        let voi = Voi::Window(Window::new(40.0, 400.0, VoiFunction::LinearExact).unwrap());
        let normal = pipeline(voi.clone());
        let inverted = GrayPipeline {
            invert: true,
            ..pipeline(voi)
        };
        let stored: Vec<u16> = (0..1000).collect();
        let a = normal.render_u16(&stored, 16, false).unwrap();
        let b = inverted.render_u16(&stored, 16, false).unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| *x == 255 - *y));
        // Low values (below the window) are white on MONOCHROME1.
        assert_eq!(inverted.render_i32(&[-1000, 1000]), [255, 0]);
    }

    #[test]
    fn voi_lut_clamps_below_and_above_its_range() {
        let lut = VoiLut::new(100, 12, vec![0, 1000, 2000, 4095]).unwrap();
        assert_eq!(lut.lookup(-5000.0), 0);
        assert_eq!(lut.lookup(99.0), 0);
        assert_eq!(lut.lookup(100.0), 0);
        assert_eq!(lut.lookup(101.0), 1000);
        assert_eq!(lut.lookup(101.4), 1000);
        assert_eq!(lut.lookup(102.0), 2000);
        assert_eq!(lut.lookup(103.0), 4095);
        assert_eq!(lut.lookup(70_000.0), 4095);
        assert_eq!(lut.lookup(f64::NAN), 0);
        let out = pipeline(Voi::Lut(lut))
            .render_u16(&[50, 100, 101, 102, 103, 4000], 16, false)
            .unwrap();
        // 1000 / 4095 * 255 = 62.27, 2000 / 4095 * 255 = 124.54.
        assert_eq!(out, [0, 0, 62, 125, 255, 255]);
        // 8-bit entries pass as they are; entries too wide are clamped.
        let lut = VoiLut::new(0, 8, vec![0, 17, 300]).unwrap();
        assert_eq!(pipeline(Voi::Lut(lut)).render_i32(&[0, 1, 2]), [0, 17, 255]);
    }

    #[test]
    fn voi_lut_descriptor() {
        let data: Vec<u16> = (0..65_536u32).map(|i| (i >> 4) as u16).collect();
        let lut = VoiLut::from_descriptor([0, 0, 12], false, &data).unwrap();
        assert_eq!((lut.len(), lut.first_mapped(), lut.bits()), (65_536, 0, 12));
        // A signed first value mapped.
        let lut = VoiLut::from_descriptor([3, 0xFC00, 16], true, &[1, 2, 3]).unwrap();
        assert_eq!(lut.first_mapped(), -1024);
        assert_eq!(lut.lookup(-1023.0), 2);
        let lut = VoiLut::from_descriptor([3, 0xFC00, 16], false, &[1, 2, 3]).unwrap();
        assert_eq!(lut.first_mapped(), 0xFC00);
        // 8-bit entries packed two to a word, low byte first.
        let lut = VoiLut::from_descriptor([3, 0, 8], false, &[0x0201, 0x0003]).unwrap();
        assert_eq!(
            (0..3).map(|x| lut.lookup(f64::from(x))).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        // Errors a user can read.
        assert_eq!(
            VoiLut::from_descriptor([4, 0, 16], false, &[1, 2])
                .unwrap_err()
                .to_string(),
            "the LUT Descriptor announces 4 entries but the LUT Data holds 2"
        );
        assert_eq!(
            VoiLut::new(0, 16, vec![]).unwrap_err().to_string(),
            "the VOI LUT has no entries"
        );
        assert_eq!(
            VoiLut::from_descriptor([4, 0, 16], false, &[]).unwrap_err(),
            DisplayError::EmptyLut
        );
        assert_eq!(
            VoiLut::new(0, 0, vec![1]).unwrap_err(),
            DisplayError::LutBits(0)
        );
        assert_eq!(
            VoiLut::new(0, 17, vec![1]).unwrap_err(),
            DisplayError::LutBits(17)
        );
    }

    #[test]
    fn presets_pick_windows_then_luts() {
        let windows =
            windows_from_attributes(&[40.0, 400.0], &[400.0, 2000.0], VoiFunction::Linear).unwrap();
        let luts = vec![VoiLut::new(0, 8, vec![0, 255]).unwrap()];
        assert_eq!(
            Voi::preset(&windows, &luts, 0).unwrap(),
            Voi::Window(windows[0])
        );
        assert_eq!(
            Voi::preset(&windows, &luts, 1).unwrap(),
            Voi::Window(windows[1])
        );
        assert_eq!(
            Voi::preset(&windows, &luts, 2).unwrap(),
            Voi::Lut(luts[0].clone())
        );
        assert_eq!(
            Voi::preset(&windows, &luts, 3).unwrap_err().to_string(),
            "VOI preset 3 was asked for, but the file has 3 (windows, then VOI LUTs, counted from 0)"
        );
        assert_eq!(
            Voi::preset(&[], &luts, 0).unwrap(),
            Voi::Lut(luts[0].clone())
        );
        assert_eq!(Voi::preset(&[], &[], 0).unwrap(), Voi::Auto);
        assert!(Voi::preset(&[], &[], 1).is_err());
        assert_eq!(
            windows_from_attributes(&[40.0], &[400.0, 80.0], VoiFunction::Linear).unwrap_err(),
            DisplayError::WindowCount {
                centers: 1,
                widths: 2
            }
        );
        assert!(windows_from_attributes(&[40.0], &[0.0], VoiFunction::Linear).is_err());
    }

    #[test]
    fn modality_lut_is_checked() {
        assert_eq!(
            ModalityLut::new(0.0, 5.0).unwrap_err(),
            DisplayError::ZeroSlope
        );
        assert_eq!(
            ModalityLut::new(f64::NAN, 0.0).unwrap_err().to_string(),
            "the Rescale Slope is not a finite number (NaN)"
        );
        assert!(ModalityLut::new(1.0, f64::INFINITY).is_err());
        assert_eq!(ModalityLut::new(2.5, -10.0).unwrap().apply(4.0), 0.0);
    }

    #[test]
    fn auto_window_on_a_constant_image_is_mid_gray() {
        let stored = vec![1234u16; 64 * 64];
        let ct = ModalityLut::new(1.0, -1024.0).unwrap();
        let w = auto_window_stored(&stored, 12, false, &ct).unwrap();
        assert_eq!((w.center(), w.width()), (210.0, 1.0));
        assert!(w.width() >= 1.0);
        let p = GrayPipeline {
            modality: ct,
            voi: Voi::Auto,
            invert: false,
        };
        let out = p.render_u16(&stored, 12, false).unwrap();
        assert!(out.iter().all(|&v| v == 128));
        assert_eq!(auto_window(&[210.0; 10]), w);
        assert_eq!(auto_window_i32(&[1234; 10], &ct), w);
        assert_eq!(p.render_i32(&[1234; 10]), [128; 10]);
        // Nothing at all.
        assert_eq!(auto_window(&[]).width(), 1.0);
        assert_eq!(auto_window(&[f64::NAN]).width(), 1.0);
        assert!(p.render_u16(&[], 12, false).unwrap().is_empty());
        assert!(p.render_i32(&[]).is_empty());
    }

    #[test]
    fn auto_window_ignores_a_few_extreme_outliers() {
        // 10 000 pixels spread over 1000..=1999, and 20 pixels at each
        // extreme of 16 bits (0.2 % each, under the 0.5 % cut).
        let mut stored: Vec<u16> = (0..10_000u32).map(|i| 1000 + (i % 1000) as u16).collect();
        stored.extend([0u16; 20]);
        stored.extend([u16::MAX; 20]);
        let w = auto_window_stored(&stored, 16, false, &ModalityLut::IDENTITY).unwrap();
        assert_eq!(w.function(), VoiFunction::LinearExact);
        assert!((w.center() - 1500.0).abs() <= 10.0, "{w:?}");
        assert!((w.width() - 1000.0).abs() <= 20.0, "{w:?}");
        // The three estimators agree.
        let as_f64: Vec<f64> = stored.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(auto_window(&as_f64), w);
        let as_i32: Vec<i32> = stored.iter().map(|&v| i32::from(v)).collect();
        assert_eq!(auto_window_i32(&as_i32, &ModalityLut::IDENTITY), w);
        // A range too wide for a histogram takes the selection path.
        let mut wide = as_i32.clone();
        wide[10_000] = i32::MIN; // was 0
        wide[10_039] = i32::MAX; // was 65 535
        assert_eq!(auto_window_i32(&wide, &ModalityLut::IDENTITY), w);
        // Rendered: the bulk spans black to white.
        let p = pipeline(Voi::Auto);
        let out = p.render_u16(&stored, 16, false).unwrap();
        assert!(out[..10_000].contains(&0) && out[..10_000].contains(&255));
        assert!(out[..10_000].iter().any(|&v| v > 100 && v < 155));
    }

    #[test]
    fn auto_window_with_a_negative_slope_and_signed_data() {
        let stored: Vec<i32> = (-500..500).collect();
        let m = ModalityLut::new(-2.0, 10.0).unwrap();
        let w = auto_window_i32(&stored, &m);
        let outputs: Vec<f64> = stored.iter().map(|&s| m.apply(f64::from(s))).collect();
        assert_eq!(auto_window(&outputs), w);
        // The same through raw signed 12-bit samples.
        let raw: Vec<u16> = stored.iter().map(|&s| (s as u16) & 0x0FFF).collect();
        assert_eq!(auto_window_stored(&raw, 12, true, &m).unwrap(), w);
        assert!((w.center() - 10.0).abs() <= 4.0, "{w:?}");
        // Higher stored values are darker under a negative slope.
        let out = GrayPipeline {
            modality: m,
            voi: Voi::Auto,
            invert: false,
        }
        .render_u16(&raw, 12, true)
        .unwrap();
        assert_eq!((out[0], out[999]), (255, 0));
    }

    struct Plain<'a>(&'a [u16]);

    impl StoredRows for Plain<'_> {
        fn indices(&self, start: usize, out: &mut [u32]) {
            for (o, &v) in out.iter_mut().zip(&self.0[start..]) {
                *o = u32::from(v & 0x0FFF);
            }
        }
    }

    #[test]
    fn map_fit_equals_mapping_then_downscaling() {
        let p = pipeline(Voi::Window(linear(1500.0, 2500.0)));
        let table = p.stored_table(12, false, || unreachable!()).unwrap();
        // Sizes with fractional factors, a row count that is not a multiple of
        // LANES, and one large enough for several threads.
        for (w, h, mw, mh) in [
            (97, 61, 13, 13),
            (37, 19, 320, 180),
            (1841, 300, 170, 180),
            (700, 523, 64, 48),
        ] {
            let stored: Vec<u16> = (0..w * h)
                .map(|i| ((i * 7919 + i / w * 131) % 4096) as u16)
                .collect();
            let gray = p.render_u16(&stored, 12, false).unwrap();
            let expected = downscale(&gray, w, h, mw, mh).unwrap();
            assert_eq!(
                map_fit(&Plain(&stored), &table, w, h, mw, mh).unwrap(),
                expected,
                "{w}x{h} into {mw}x{mh}"
            );
            let auto = auto_window_stored(&stored, 12, false, &ModalityLut::IDENTITY).unwrap();
            let rows =
                auto_window_rows(&Plain(&stored), w * h, w, 12, false, &ModalityLut::IDENTITY);
            assert_eq!(rows.unwrap(), auto);
        }
    }

    /// A radiograph-like 12-bit image: smooth anatomy, deterministic noise and a
    /// bright collimator border on the left.
    fn phantom(w: usize, h: usize) -> Vec<u16> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if x < w / 20 {
                    return 4000;
                }
                let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
                let anatomy = 2048.0 + 1500.0 * (fx * 6.0).sin() * (fy * 4.0).cos();
                let noise = ((i * 7919 + y * 131) % 81) as f64 - 40.0;
                (anatomy + noise).clamp(0.0, 4095.0) as u16
            })
            .collect()
    }

    /// How far two previews are apart: the mean absolute difference and the share
    /// of pixels more than 2 levels apart.
    fn apart(a: &[u8], b: &[u8]) -> (f64, f64) {
        assert_eq!(a.len(), b.len());
        let diffs: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        let far = diffs.iter().filter(|&&d| d > 2).count() as f64 / diffs.len() as f64;
        (mean, far)
    }

    #[test]
    fn preview_downscaling_before_the_window_stays_close_to_windowing_first() {
        let (w, h) = (1203, 977);
        let stored = phantom(w, h);
        // Signed data: the same picture 2048 lower, as 12-bit two's complement.
        let signed: Vec<u16> = stored
            .iter()
            .map(|&v| ((i32::from(v) - 2048) as u16) & 0x0FFF)
            .collect();
        let window = |c: f64, wd: f64, f: VoiFunction| Voi::Window(Window::new(c, wd, f).unwrap());
        let cases = [
            // A window covering the anatomy, the border clipped to white.
            (window(2048.0, 3000.0, VoiFunction::Linear), false, false),
            // A narrow window clipping much of the image, inverted.
            (window(1800.0, 600.0, VoiFunction::LinearExact), true, false),
            (window(2048.0, 2000.0, VoiFunction::Sigmoid), false, false),
            (window(0.0, 3000.0, VoiFunction::Linear), false, true),
        ];
        for (voi, invert, is_signed) in cases {
            let p = GrayPipeline {
                modality: ModalityLut::IDENTITY,
                voi,
                invert,
            };
            let data = if is_signed { &signed } else { &stored };
            let full = p.render_u16(data, 12, is_signed).unwrap();
            let (expected, ew, eh) = downscale(&full, w, h, 320, 180).unwrap();
            let mut q = p.clone();
            let src = Plain(data);
            let (got, gw, gh) = preview_fit(&mut q, &src, 12, is_signed, w, h, 320, 180).unwrap();
            assert_eq!((gw, gh), (ew, eh));
            let (mean, far) = apart(&got, &expected);
            assert!(
                mean < 0.6 && far < 0.03,
                "{:?}: mean difference {mean:.3}, {:.2}% of pixels more than 2 apart",
                p.voi,
                far * 100.0
            );
        }
    }

    #[test]
    fn preview_automatic_window_comes_from_a_subsample_close_to_the_full_one() {
        let (w, h) = (1203, 977);
        let stored = phantom(w, h);
        let modality = ModalityLut::new(2.0, -1024.0).unwrap();
        let full = auto_window_stored(&stored, 12, false, &modality).unwrap();
        let mut p = GrayPipeline {
            modality,
            voi: Voi::Auto,
            invert: false,
        };
        let (got, _, _) = preview_fit(&mut p, &Plain(&stored), 12, false, w, h, 320, 180).unwrap();
        let Voi::Window(sub) = p.voi else {
            panic!("the automatic window is set: {:?}", p.voi)
        };
        assert!((sub.center() - full.center()).abs() < 0.01 * full.width());
        assert!((sub.width() - full.width()).abs() < 0.02 * full.width());
        // And the preview is close to the full image windowed with the full window.
        let q = GrayPipeline {
            modality,
            voi: Voi::Window(full),
            invert: false,
        };
        let (expected, _, _) =
            downscale(&q.render_u16(&stored, 12, false).unwrap(), w, h, 320, 180).unwrap();
        let (mean, far) = apart(&got, &expected);
        assert!(mean < 1.5 && far < 0.1, "mean {mean:.3}, far {far:.3}");
    }

    #[test]
    fn preview_of_blocks_is_the_window_of_their_means() {
        // 4x4 into 2x2: each output is the window of its block's mean, exactly.
        let stored: Vec<u16> = vec![
            0, 100, 200, 200, //
            100, 200, 200, 200, //
            1000, 1000, 4095, 0, //
            1000, 1000, 0, 4095,
        ];
        let mut p = GrayPipeline {
            modality: ModalityLut::IDENTITY,
            voi: Voi::Window(Window::new(1000.0, 2000.0, VoiFunction::LinearExact).unwrap()),
            invert: false,
        };
        let (out, w, h) = preview_fit(&mut p, &Plain(&stored), 12, false, 4, 4, 2, 2).unwrap();
        assert_eq!((w, h), (2, 2));
        // LINEAR_EXACT (C.11.2.1.3.2): ((x - c) / w + 0.5) * 255.
        let y = |mean: f64| (((mean - 1000.0) / 2000.0 + 0.5) * 255.0).round() as u8;
        assert_eq!(out, vec![y(100.0), y(200.0), y(1000.0), y(2047.5)]);
        // The last block's mean is past the window: white, where windowing first
        // would give 128 (two white pixels, two black).
        assert_eq!(out[3], 255);
    }

    #[test]
    fn downscale_4x4_to_2x2_averages_blocks() {
        #[rustfmt::skip]
        let gray = [
            10, 20, 100, 100,
            30, 40, 100, 101,
            0, 0, 255, 255,
            0, 1, 255, 254,
        ];
        let (out, w, h) = downscale(&gray, 4, 4, 2, 2).unwrap();
        assert_eq!((w, h), (2, 2));
        // (10+20+30+40)/4 = 25, 401/4 = 100.25, 1/4 = 0.25, 1019/4 = 254.75.
        assert_eq!(out, [25, 100, 0, 255]);
    }

    #[test]
    fn downscale_keeps_the_aspect_ratio() {
        assert_eq!(fit_within(8, 4, 4, 4), (4, 2));
        assert_eq!(fit_within(4, 8, 4, 4), (2, 4));
        assert_eq!(fit_within(512, 256, 80, 80), (80, 40));
        assert_eq!(fit_within(3, 9, 10, 3), (1, 3));
        assert_eq!(fit_within(1000, 3, 100, 100), (100, 1));
        assert_eq!(fit_within(4096, 3072, 200, 100), (133, 100));
        assert_eq!(fit_within(10, 10, 20, 20), (10, 10));
        assert_eq!(fit_within(10, 10, 0, 20), (0, 0));

        // 8x4 into 4x4: 2x2 blocks.
        let gray: Vec<u8> = (0..32).map(|i| if i % 8 < 4 { 0 } else { 200 }).collect();
        let (out, w, h) = downscale(&gray, 8, 4, 4, 4).unwrap();
        assert_eq!((w, h), (4, 2));
        assert_eq!(out, [0, 0, 200, 200, 0, 0, 200, 200]);

        // Fractional factor: 3 columns into 2, each output covering 1.5.
        let (out, w, h) = downscale(&[0, 90, 180], 3, 1, 2, 1).unwrap();
        assert_eq!((w, h), (2, 1));
        // (0 + 0.5 * 90) / 1.5 = 30, (0.5 * 90 + 180) / 1.5 = 150.
        assert_eq!(out, [30, 150]);

        // Already small enough: unchanged, never enlarged.
        let (out, w, h) = downscale(&[1, 2, 3, 4, 5, 6], 3, 2, 30, 30).unwrap();
        assert_eq!((out, w, h), (vec![1, 2, 3, 4, 5, 6], 3, 2));

        // A constant image stays constant whatever the factor.
        let gray = vec![77u8; 97 * 61];
        let (out, w, h) = downscale(&gray, 97, 61, 13, 13).unwrap();
        assert_eq!((w, h), (13, 8));
        assert!(out.iter().all(|&v| v == 77));

        assert_eq!(
            downscale(&[1, 2, 3], 2, 2, 1, 1).unwrap_err().to_string(),
            "the image is 2x2 (4 samples) but the pixel buffer holds 3"
        );
    }

    #[test]
    fn box_weights_sum_to_one_per_output() {
        for (n, m) in [(4, 2), (3, 2), (4096, 133), (97, 13), (5, 1)] {
            let mut sums = vec![0f64; m];
            let mut per_source = vec![0usize; n];
            for (s, o, w) in box_weights(n, m) {
                sums[o] += f64::from(w);
                per_source[s] += 1;
            }
            assert!(
                sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
                "{n}->{m}: {sums:?}"
            );
            assert!(per_source.iter().all(|&c| (1..=2).contains(&c)));
        }
    }

    #[test]
    fn rgb_passes_through_and_planar_is_interleaved() {
        let interleaved = [1, 2, 3, 4, 5, 6];
        assert_eq!(rgb_interleaved(&interleaved, 2, 1, 0).unwrap(), interleaved);
        let planar = [1, 4, 2, 5, 3, 6];
        assert_eq!(rgb_interleaved(&planar, 2, 1, 1).unwrap(), interleaved);
        // A trailing pad byte is ignored.
        assert_eq!(
            rgb_interleaved(&[1, 4, 2, 5, 3, 6, 0], 2, 1, 1).unwrap(),
            interleaved
        );
        assert!(rgb_interleaved(&[1, 2, 3], 2, 1, 0).is_err());
        assert_eq!(
            rgb_interleaved(&interleaved, 2, 1, 2).unwrap_err(),
            DisplayError::PlanarConfiguration(2)
        );
        let (out, w, h) = downscale_rgb(&[10, 20, 30, 30, 40, 50], 2, 1, 1, 1).unwrap();
        assert_eq!((out, w, h), (vec![20, 30, 40], 1, 1));
    }

    #[test]
    fn a_large_image_renders_through_one_table() {
        // 2048x2048 16-bit with an automatic window: one histogram pass and
        // one lookup pass.
        let n = 2048 * 2048;
        let stored: Vec<u16> = (0..n).map(|i| ((i * 7919) % 4096) as u16).collect();
        let p = GrayPipeline {
            modality: ModalityLut::new(1.0, -1024.0).unwrap(),
            voi: Voi::Auto,
            invert: true,
        };
        let out = p.render_u16(&stored, 12, false).unwrap();
        assert_eq!(out.len(), n);
        let (small, w, h) = downscale(&out, 2048, 2048, 64, 64).unwrap();
        assert_eq!((small.len(), w, h), (64 * 64, 64, 64));
    }
}
