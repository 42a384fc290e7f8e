//! Opening a DICOM image and turning one frame into display-ready 8-bit pixels.
//!
//! The codecs of dicom-pixeldata (pure Rust only: native, RLE, JPEG, JPEG 2000
//! through openjp2, deflate) and, for JPEG-LS, [`super::jpegls`] turn the
//! Pixel Data into raw samples; the display pipeline of [`super::display`]
//! (Modality LUT, window or VOI LUT, MONOCHROME1 inversion, automatic window)
//! makes them 8-bit. dicom-pixeldata's own windowing is never used.
//!
//! Files without the 128-byte preamble, and bare data sets without a file
//! meta group (read as Implicit VR Little Endian, else Explicit VR Little
//! Endian), are opened too.

use super::deid::text;
use super::display::{
    self, DisplayError, GrayPipeline, ModalityLut, StoredRows, Voi, VoiFunction, VoiLut, Window,
};
use super::store::NativePixels;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemElement;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Why a file cannot be shown; the message names the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct DecodeError {
    pub path: PathBuf,
    pub reason: String,
}

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
/// JPEG-LS Lossless and JPEG-LS Near-Lossless.
pub const JPEG_LS_UIDS: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];

/// How the file was laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// 128-byte preamble, "DICM", file meta group.
    Standard,
    /// "DICM" and the file meta group without the preamble.
    NoPreamble,
    /// A bare data set; the transfer syntax was guessed.
    NoMeta,
}

/// The attributes of an image that the display needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub rows: usize,
    pub columns: usize,
    pub frames: usize,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
    pub photometric: String,
    pub planar_configuration: u16,
    pub transfer_syntax: String,
    pub transfer_syntax_name: String,
    pub modality: Option<String>,
    pub layout: Layout,
}

/// An opened image: its attributes, VOI presets and the data set.
#[derive(Debug, Clone)]
pub struct Image {
    pub path: PathBuf,
    pub info: ImageInfo,
    pub modality_lut: ModalityLut,
    pub windows: Vec<Window>,
    pub luts: Vec<VoiLut>,
    /// The data set; without its Pixel Data when `raw` holds it.
    obj: FileDicomObject<InMemDicomObject>,
    /// Native Pixel Data left in the file's bytes (read in place).
    raw: Option<RawPixels>,
    /// The whole data set, parsed on first need when `raw` is set.
    full: OnceLock<FileDicomObject<InMemDicomObject>>,
}

/// A file with native Pixel Data (little endian, defined length) that ends the
/// file: its value is bytes `value_at..` of the file. Only the header was parsed;
/// the samples are read from the open file when needed (a preview reads them a
/// few rows at a time, without holding the whole file), or from the whole file's
/// bytes once they have been read.
#[derive(Debug, Clone)]
struct RawPixels {
    file: Arc<std::fs::File>,
    file_len: u64,
    /// Where the file meta group starts ("DICM").
    skip: usize,
    value_at: usize,
    /// The whole file, read on first need (at once for a small file).
    bytes: OnceLock<Result<Arc<Vec<u8>>, String>>,
}

/// What is read of a file before deciding how to open it.
const HEAD: u64 = 64 * 1024;

fn read_at(file: &std::fs::File, at: u64, len: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(len).map_err(|_| "the file is too large".to_string())?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at)
        .map_err(|e| format!("cannot read it: {e}"))?;
    Ok(buf)
}

impl RawPixels {
    /// The whole file's bytes.
    fn all(&self) -> Result<&[u8], String> {
        self.bytes
            .get_or_init(|| read_at(&self.file, 0, self.file_len).map(Arc::new))
            .as_ref()
            .map(|b| b.as_slice())
            .map_err(|e| e.clone())
    }

    /// `len` bytes of the file at `at`, read from the file unless the whole file
    /// is in memory.
    fn range(&self, at: u64, len: usize) -> Result<std::borrow::Cow<'_, [u8]>, String> {
        if let Some(Ok(bytes)) = self.bytes.get() {
            let at = at as usize;
            return bytes
                .get(at..at + len)
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| "the Pixel Data ends early".to_string());
        }
        read_at(&self.file, at, len as u64).map(std::borrow::Cow::Owned)
    }

    /// The whole file parsed as when the Pixel Data is not read in place.
    fn parse_all(&self) -> Result<FileDicomObject<InMemDicomObject>, String> {
        OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .from_reader(&self.all()?[self.skip..])
            .map_err(|e| format!("malformed DICOM: {}", chain(&e)))
    }
}

/// 8-bit display samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pixels {
    /// One byte a pixel, row-major.
    Gray(Vec<u8>),
    /// Interleaved R G B, row-major.
    Rgb(Vec<u8>),
}

/// One rendered frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub pixels: Pixels,
    pub width: usize,
    pub height: usize,
    /// The VOI stage used, in words ("window 0 of 2: C 40 W 400 LINEAR",
    /// "automatic window ...", "VOI LUT 1 ...", "colour (no window)").
    pub voi: String,
    /// The window applied (center, width), when the VOI stage was a window: what a
    /// viewer adjusts from.
    pub window: Option<(f64, f64)>,
    /// The size the codec produced before downscaling: smaller than the image
    /// when JPEG 2000 was decoded at a reduced resolution for a preview.
    pub decoded_width: usize,
    pub decoded_height: usize,
}

impl Image {
    /// The whole data set, Pixel Data included.
    fn obj(&self) -> &FileDicomObject<InMemDicomObject> {
        match &self.raw {
            None => &self.obj,
            Some(raw) => self
                .full
                .get_or_init(|| raw.parse_all().unwrap_or_else(|_| self.obj.clone())),
        }
    }

    fn error(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// The number of VOI presets (windows, then VOI LUTs).
    pub fn presets(&self) -> usize {
        self.windows.len() + self.luts.len()
    }

    /// A one-line description: size, modality, photometric interpretation,
    /// bit depth, transfer syntax and frames.
    pub fn describe(&self) -> String {
        let i = &self.info;
        let depth = if i.bits_stored == i.bits_allocated {
            format!("{}-bit", i.bits_allocated)
        } else {
            format!("{}-bit ({} stored)", i.bits_allocated, i.bits_stored)
        };
        format!(
            "{}x{}, {}, {}, {} {}, {} ({}){}, {} frame{}",
            i.columns,
            i.rows,
            i.modality.as_deref().unwrap_or("modality unknown"),
            i.photometric,
            depth,
            if i.signed { "signed" } else { "unsigned" },
            i.transfer_syntax_name,
            i.transfer_syntax,
            match i.layout {
                Layout::Standard => "",
                Layout::NoPreamble => ", no preamble",
                Layout::NoMeta => ", no file meta (transfer syntax guessed)",
            },
            i.frames,
            if i.frames == 1 { "" } else { "s" },
        )
    }
}

/// Opens a DICOM file (with or without preamble and file meta group) and
/// reads the attributes the display needs.
pub fn load(path: impl AsRef<Path>) -> Result<Image, DecodeError> {
    let path = path.as_ref();
    let err = |reason: String| DecodeError {
        path: path.to_path_buf(),
        reason,
    };
    let (obj, layout, raw) = open_any(path).map_err(err)?;
    from_object(path, obj, layout, raw).map_err(err)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = inner.source();
    }
    s
}

type Opened = (FileDicomObject<InMemDicomObject>, Layout, Option<RawPixels>);

/// The preamble and "DICM" (or "DICM" alone) at the start of `bytes`: where the
/// file meta group starts, and the layout.
fn dicm(bytes: &[u8]) -> Option<(usize, Layout)> {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some((128, Layout::Standard))
    } else if bytes.starts_with(b"DICM") {
        Some((0, Layout::NoPreamble))
    } else {
        None
    }
}

/// A large file whose native Pixel Data ends it, opened from its first [`HEAD`]
/// bytes (`head`): the structure checked and the header parsed up to the Pixel
/// Data, which stays in the file. `None` for anything else.
fn open_header_only(file: &Arc<std::fs::File>, head: &[u8], file_len: u64) -> Option<Opened> {
    let (skip, layout) = dicm(head)?;
    match super::guard::check_file(head, file_len, true) {
        Ok(super::guard::Checked::Complete) => {}
        _ => return None,
    }
    let px = native_pixels(head, file_len)?;
    let header = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(&head[skip..])
        .ok()?;
    let raw = RawPixels {
        file: Arc::clone(file),
        file_len,
        skip,
        value_at: usize::try_from(px.value_at).ok()?,
        bytes: OnceLock::new(),
    };
    Some((header, layout, Some(raw)))
}

fn open_any(path: &Path) -> Result<Opened, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let file_len = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?
        .len();
    let file = Arc::new(file);
    let head = read_at(&file, 0, file_len.min(HEAD))?;
    if (head.len() as u64) < file_len
        && let Some(opened) = open_header_only(&file, &head, file_len)
    {
        return Ok(opened);
    }
    // Read once; the structural check runs on the bytes before dicom-rs does.
    let bytes = if head.len() as u64 == file_len {
        head
    } else {
        read_at(&file, 0, file_len)?
    };
    let with_meta = |skip: usize, layout: Layout| {
        let parsed = match super::guard::check_file(&bytes, bytes.len() as u64, false) {
            Ok(_) => OpenFileOptions::new()
                .read_preamble(ReadPreamble::Never)
                .from_reader(&bytes[skip..])
                .map_err(|e| format!("malformed DICOM: {}", chain(&e))),
            Err(e) => Err(format!("malformed DICOM: {e}")),
        };
        parsed.map(|o| (o, layout, None)).or_else(|e| {
            implicit_behind_meta(&bytes[skip..], path)
                .map(|o| (o, layout, None))
                .ok_or(e)
        })
    };
    if let Some((skip, layout)) = dicm(&bytes) {
        // Native Pixel Data that ends the file stays in the bytes and only the
        // header is parsed; anything else (or a failure) is parsed whole.
        let header = super::guard::check_file(&bytes, bytes.len() as u64, false)
            .ok()
            .and_then(|_| native_pixels(&bytes, bytes.len() as u64))
            .and_then(|px| {
                OpenFileOptions::new()
                    .read_preamble(ReadPreamble::Never)
                    .read_until(tags::PIXEL_DATA)
                    .from_reader(&bytes[skip..])
                    .ok()
                    .map(|h| (h, px.value_at as usize))
            });
        return match header {
            Some((header, value_at)) => {
                let raw = RawPixels {
                    file,
                    file_len,
                    skip,
                    value_at,
                    bytes: OnceLock::from(Ok(Arc::new(bytes))),
                };
                Ok((header, layout, Some(raw)))
            }
            None => with_meta(skip, layout),
        };
    }
    // A bare data set: the VR letters after the first tag tell explicit VR.
    // Refuse early what cannot start a data set: the first element needs an
    // even, standard group and (read as implicit VR) a length within the
    // file, else a text file would be read as a multi-gigabyte element.
    let plausible = bytes.len() >= 8 && {
        let group = u16::from_le_bytes([bytes[0], bytes[1]]);
        let implicit_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let explicit = VR::from_binary([bytes[4], bytes[5]]).is_some();
        group % 2 == 0
            && (0x0002..=0x7FE0).contains(&group)
            && (explicit || implicit_len == u32::MAX || (implicit_len as usize) <= bytes.len())
    };
    if !plausible {
        return Err(
            "not a DICOM file: no DICM marker, and it does not start like a data set".into(),
        );
    }
    let explicit_first = VR::from_binary([bytes[4], bytes[5]]).is_some();
    let order = if explicit_first {
        [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
    } else {
        [IMPLICIT_VR_LE, EXPLICIT_VR_LE]
    };
    let mut last = String::new();
    for uid in order {
        let ts = TransferSyntaxRegistry
            .get(uid)
            .ok_or_else(|| format!("transfer syntax {uid} is not registered"))?;
        let encoding = super::guard::encoding_of(uid).expect("a native transfer syntax");
        if let Err(e) = super::guard::check_data_set(&bytes, encoding) {
            if last.is_empty() {
                last = format!("read as {uid}: {e}");
            }
            continue;
        }
        match InMemDicomObject::read_dataset_with_ts(&bytes[..], ts) {
            Ok(obj) if obj.get(tags::PIXEL_DATA).is_some() && obj.get(tags::ROWS).is_some() => {
                let obj = obj
                    .with_meta(FileMetaTableBuilder::new().transfer_syntax(uid))
                    .map_err(|e| format!("cannot build a file meta group: {}", chain(&e)))?;
                return Ok((obj, Layout::NoMeta, None));
            }
            Ok(_) if last.is_empty() => {
                last = format!("read as {uid} it has no Rows or Pixel Data")
            }
            Err(e) if last.is_empty() => last = format!("read as {uid}: {}", chain(&e)),
            _ => {}
        }
    }
    Err(format!(
        "not a DICOM file: no DICM marker, and not a bare data set ({last})"
    ))
}

/// Where the native Pixel Data of a file starts, when it ends the file and the
/// bytes `head` (the start of a file of `file_len` bytes) hold every element before
/// it: a data set in Explicit or Implicit VR Little Endian, Pixel Data of defined,
/// even length whose value runs exactly to the end of the file. `None` for anything
/// else (the whole file is then parsed).
pub(super) fn native_pixels(head: &[u8], file_len: u64) -> Option<NativePixels> {
    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
    const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
    let mut pos = if head.get(128..132) == Some(b"DICM") {
        132
    } else if head.starts_with(b"DICM") {
        4
    } else {
        return None;
    };
    // The file meta group, explicit VR little endian.
    let mut ts = None;
    while le16(head, pos)? == 0x0002 {
        let (value_at, len) = explicit_header(head, pos)?;
        let len = usize::try_from(len).ok()?;
        if le16(head, pos + 2)? == 0x0010 {
            let v = head.get(value_at..value_at.checked_add(len)?)?;
            ts = Some(std::str::from_utf8(v).ok()?.trim_end_matches(['\0', ' ']));
        }
        pos = value_at.checked_add(len)?;
    }
    let explicit = match ts? {
        EXPLICIT_LE => true,
        IMPLICIT_LE => false,
        _ => return None,
    };
    loop {
        let tag = (le16(head, pos)?, le16(head, pos + 2)?);
        if tag == (0x7FE0, 0x0010) {
            let (explicit_vr, value_at, len) = if explicit {
                let vr = [*head.get(pos + 4)?, *head.get(pos + 5)?];
                if &vr != b"OW" && &vr != b"OB" {
                    return None;
                }
                (Some(vr), pos + 12, le32(head, pos + 8)?)
            } else {
                (None, pos + 8, le32(head, pos + 4)?)
            };
            let fits = value_at <= head.len()
                && len != u32::MAX
                && len % 2 == 0
                && value_at as u64 + u64::from(len) == file_len;
            return fits.then_some(NativePixels {
                value_at: value_at as u64,
                len,
                explicit_vr,
            });
        }
        if tag > (0x7FE0, 0x0010) || tag.0 == 0xFFFE {
            return None;
        }
        pos = skip_element(head, pos, explicit, 0)?;
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// An explicit VR little-endian element header at `pos`: where its value starts and
/// its length (`u32::MAX` when undefined). `None` when the VR is not one.
fn explicit_header(b: &[u8], pos: usize) -> Option<(usize, u32)> {
    let vr = dicom_core::VR::from_binary([*b.get(pos + 4)?, *b.get(pos + 5)?])?;
    use dicom_core::VR::*;
    match vr {
        OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV => {
            Some((pos + 12, le32(b, pos + 8)?))
        }
        _ => Some((pos + 8, u32::from(le16(b, pos + 6)?))),
    }
}

/// The position after the element (with all its items) at `pos` of a
/// little-endian data set.
fn skip_element(b: &[u8], pos: usize, explicit: bool, depth: usize) -> Option<usize> {
    if depth > 32 {
        return None;
    }
    let (value_at, len) = if explicit {
        explicit_header(b, pos)?
    } else {
        (pos + 8, le32(b, pos + 4)?)
    };
    if len == u32::MAX {
        // A sequence of undefined length: items until the sequence delimiter.
        let mut at = value_at;
        loop {
            let (group, elem, item_len) = (le16(b, at)?, le16(b, at + 2)?, le32(b, at + 4)?);
            if group != 0xFFFE {
                return None;
            }
            at += 8;
            match elem {
                0xE0DD => return Some(at),
                0xE000 if item_len == u32::MAX => {
                    // Elements until the item delimiter.
                    while (le16(b, at)?, le16(b, at + 2)?) != (0xFFFE, 0xE00D) {
                        at = skip_element(b, at, explicit, depth + 1)?;
                    }
                    at += 8;
                }
                0xE000 => at = at.checked_add(usize::try_from(item_len).ok()?)?,
                _ => return None,
            }
        }
    }
    let end = value_at.checked_add(usize::try_from(len).ok()?)?;
    (end <= b.len()).then_some(end)
}

/// A data set written in Implicit VR Little Endian behind a file meta group
/// that names an explicit VR little-endian transfer syntax (some writers do
/// this; pydicom reads such files with a warning). The meta group's transfer
/// syntax is kept, so encapsulated Pixel Data is still decoded by its codec.
fn implicit_behind_meta(
    from_dicm: &[u8],
    path: &Path,
) -> Option<FileDicomObject<InMemDicomObject>> {
    // dicom-rs reserves each meta value's declared length before reading it.
    super::guard::check_meta(from_dicm).ok()?;
    let mut rest = from_dicm;
    let meta = dicom_object::meta::FileMetaTable::from_reader(&mut rest).ok()?;
    let ts = meta.transfer_syntax();
    // Every registered transfer syntax but these three is explicit VR little endian.
    let explicit_le = TransferSyntaxRegistry.get(ts).is_some()
        && ![IMPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_LE].contains(&ts);
    // Implicit VR: the two bytes after the first tag are not VR letters.
    if !explicit_le || rest.len() < 8 || VR::from_binary([rest[4], rest[5]]).is_some() {
        return None;
    }
    let implicit = TransferSyntaxRegistry.get(IMPLICIT_VR_LE)?;
    super::guard::check_data_set(
        rest,
        super::guard::Encoding {
            explicit: false,
            big_endian: false,
        },
    )
    .ok()?;
    let obj = InMemDicomObject::read_dataset_with_ts(rest, implicit).ok()?;
    obj.get(tags::PIXEL_DATA)?;
    tracing::warn!(
        "{}: the data set is in implicit VR although the file meta names {ts}",
        path.display()
    );
    Some(obj.with_exact_meta(meta))
}

/// The element `tag` at the top level, else in the first item of a sequence
/// of the Shared Functional Groups (enhanced multi-frame objects).
fn find(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemElement> {
    if let Some(e) = obj.get(tag) {
        return Some(e);
    }
    let shared = obj.get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)?.items()?;
    shared
        .iter()
        .flat_map(|item| item.iter())
        .filter_map(|e| e.items())
        .flat_map(|items| items.iter())
        .find_map(|inner| inner.get(tag))
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    find(obj, tag)
        .and_then(|e| e.to_multi_float64().ok())
        .unwrap_or_default()
}

fn u16_attr(obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<Option<u16>, String> {
    match int(obj, tag) {
        None => Ok(None),
        Some(v) => u16::try_from(v)
            .map(Some)
            .map_err(|_| format!("{name} {v} is out of range")),
    }
}

fn display_err(e: DisplayError) -> String {
    e.to_string()
}

fn from_object(
    path: &Path,
    obj: FileDicomObject<InMemDicomObject>,
    layout: Layout,
    raw: Option<RawPixels>,
) -> Result<Image, String> {
    if raw.is_none() && obj.get(tags::PIXEL_DATA).is_none() {
        let other = [tags::FLOAT_PIXEL_DATA, tags::DOUBLE_FLOAT_PIXEL_DATA]
            .iter()
            .any(|t| obj.get(*t).is_some());
        return Err(if other {
            "float Pixel Data (7FE0,0008/0009) is not supported for display".into()
        } else {
            "not an image: it has no Pixel Data (7FE0,0010)".into()
        });
    }
    let rows = u16_attr(&obj, tags::ROWS, "Rows")?.ok_or("it has no Rows (0028,0010)")?;
    let columns =
        u16_attr(&obj, tags::COLUMNS, "Columns")?.ok_or("it has no Columns (0028,0011)")?;
    let bits_allocated = u16_attr(&obj, tags::BITS_ALLOCATED, "Bits Allocated")?
        .ok_or("it has no Bits Allocated (0028,0100)")?;
    let bits_stored = u16_attr(&obj, tags::BITS_STORED, "Bits Stored")?.unwrap_or(bits_allocated);
    let high_bit =
        u16_attr(&obj, tags::HIGH_BIT, "High Bit")?.unwrap_or(bits_stored.saturating_sub(1));
    let samples_per_pixel =
        u16_attr(&obj, tags::SAMPLES_PER_PIXEL, "Samples per Pixel")?.unwrap_or(1);
    let signed = int(&obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let planar_configuration =
        u16_attr(&obj, tags::PLANAR_CONFIGURATION, "Planar Configuration")?.unwrap_or(0);
    let frames = match int(&obj, tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(n) if n >= 1 => n as usize,
        Some(n) => return Err(format!("Number of Frames is {n}")),
    };
    let photometric = text(&obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| {
        if samples_per_pixel == 3 {
            "RGB".into()
        } else {
            "MONOCHROME2".into()
        }
    });
    if bits_stored == 0 || bits_stored > bits_allocated || high_bit >= bits_allocated {
        return Err(format!(
            "inconsistent bit depth: Bits Allocated {bits_allocated}, Bits Stored {bits_stored}, High Bit {high_bit}"
        ));
    }
    let transfer_syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let transfer_syntax_name = TransferSyntaxRegistry
        .get(&transfer_syntax)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| "unknown transfer syntax".into());

    let slope = floats(&obj, tags::RESCALE_SLOPE).first().copied();
    let intercept = floats(&obj, tags::RESCALE_INTERCEPT).first().copied();
    let modality_lut =
        ModalityLut::new(slope.unwrap_or(1.0), intercept.unwrap_or(0.0)).map_err(display_err)?;

    let function = match find(&obj, tags::VOILUT_FUNCTION).and_then(|e| e.to_str().ok()) {
        Some(f) if !f.trim().is_empty() => {
            VoiFunction::from_dicom(f.trim_end_matches(['\0', ' '])).map_err(display_err)?
        }
        _ => VoiFunction::Linear,
    };
    let windows = display::windows_from_attributes(
        &floats(&obj, tags::WINDOW_CENTER),
        &floats(&obj, tags::WINDOW_WIDTH),
        function,
    )
    .map_err(display_err)?;
    let luts = voi_luts(&obj, signed)?;

    Ok(Image {
        path: path.to_path_buf(),
        info: ImageInfo {
            rows: usize::from(rows),
            columns: usize::from(columns),
            frames,
            samples_per_pixel,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            photometric,
            planar_configuration,
            transfer_syntax,
            transfer_syntax_name,
            modality: text(&obj, tags::MODALITY),
            layout,
        },
        modality_lut,
        windows,
        luts,
        obj,
        raw,
        full: OnceLock::new(),
    })
}

/// The items of the VOI LUT Sequence (0028,3010).
fn voi_luts(obj: &InMemDicomObject, signed: bool) -> Result<Vec<VoiLut>, String> {
    let Some(items) = find(obj, tags::VOILUT_SEQUENCE).and_then(|e| e.items()) else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let descriptor: Vec<i64> = item
                .get(tags::LUT_DESCRIPTOR)
                .and_then(|e| e.to_multi_int::<i64>().ok())
                .unwrap_or_default();
            let [entries, first, bits] = descriptor[..] else {
                return Err(format!(
                    "VOI LUT {i}: the LUT Descriptor (0028,3002) must have 3 values"
                ));
            };
            let data: Vec<u16> = match item.get(tags::LUT_DATA).map(|e| e.value()) {
                Some(DicomValue::Primitive(PrimitiveValue::U8(b))) => b
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                    .collect(),
                Some(DicomValue::Primitive(p)) => p
                    .to_multi_int::<i64>()
                    .map_err(|e| format!("VOI LUT {i}: LUT Data: {e}"))?
                    .into_iter()
                    .map(|v| v as u16)
                    .collect(),
                _ => Vec::new(),
            };
            VoiLut::from_descriptor([entries as u16, first as u16, bits as u16], signed, &data)
                .map_err(|e| format!("VOI LUT {i}: {e}"))
        })
        .collect()
}

/// Decoded samples of one frame.
pub(super) enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

/// A frame's samples: decoded, or native little-endian bytes read where they lie.
enum FrameSamples<'a> {
    Decoded(Samples),
    /// 8-bit samples.
    Le8(&'a [u8]),
    /// 16-bit samples, two bytes each, least significant first.
    Le16(&'a [u8]),
    /// Native little-endian samples of `bytes_per_sample` (1 or 2) bytes not read
    /// yet: `len` bytes at `at` in the file.
    InFile {
        raw: &'a RawPixels,
        at: u64,
        len: usize,
        bytes_per_sample: usize,
    },
}

impl FrameSamples<'_> {
    fn into_samples(self) -> Result<Samples, String> {
        let le16 = |b: &[u8]| {
            Samples::U16(
                b.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            )
        };
        Ok(match self {
            FrameSamples::Decoded(s) => s,
            FrameSamples::Le8(b) => Samples::U8(b.to_vec()),
            FrameSamples::Le16(b) => le16(b),
            FrameSamples::InFile {
                raw,
                at,
                len,
                bytes_per_sample,
            } => {
                let b = raw.range(at, len)?;
                if bytes_per_sample == 2 {
                    le16(&b)
                } else {
                    Samples::U8(b.into_owned())
                }
            }
        })
    }
}

/// A frame's samples, the photometric interpretation they are in after
/// decoding, and their planar configuration.
struct Frame<'a> {
    samples: FrameSamples<'a>,
    photometric: String,
    planar_configuration: u16,
    width: usize,
    height: usize,
}

fn decode_frame(
    image: &Image,
    frame: usize,
    max_w: usize,
    max_h: usize,
) -> Result<Frame<'_>, DecodeError> {
    let info = &image.info;
    let ts = info.transfer_syntax.as_str();
    let ts_label = format!("transfer syntax {ts} ({})", info.transfer_syntax_name);
    if JPEG_LS_UIDS.contains(&ts) {
        let samples = super::jpegls::decode_frame(image.obj(), info, frame)
            .map_err(|e| image.error(format!("{ts_label} cannot be decoded: {e}")))?;
        return Ok(Frame {
            samples: FrameSamples::Decoded(samples),
            photometric: info.photometric.clone(),
            planar_configuration: 0,
            width: info.columns,
            height: info.rows,
        });
    }
    if ts == RLE_LOSSLESS && info.bits_allocated == 32 {
        // dicom-pixeldata's RLE decoder takes 8 and 16 bits only.
        let samples = decode_rle_32(image, frame)
            .map_err(|e| image.error(format!("{ts_label} cannot be decoded: {e}")))?;
        return Ok(Frame {
            samples: FrameSamples::Decoded(samples),
            photometric: info.photometric.clone(),
            planar_configuration: 0,
            width: info.columns,
            height: info.rows,
        });
    }
    if JPEG_2000_UIDS.contains(&ts) {
        let reduce = j2k_reduce(info, max_w, max_h);
        if reduce > 0 {
            match decode_j2k_reduced(image, frame, reduce) {
                Ok(f) => return Ok(f),
                // The full decode below reports what is wrong, if anything.
                Err(e) => tracing::debug!("reduced JPEG 2000 decode failed: {e}"),
            }
        }
    }
    if let Some(frame) = decode_special(image, frame)
        .map_err(|e| image.error(format!("{ts_label} cannot be decoded: {e}")))?
    {
        return Ok(frame);
    }
    let supported = TransferSyntaxRegistry
        .get(ts)
        .map(|t| t.can_decode_all())
        .unwrap_or(false);
    if !supported {
        return Err(image.error(format!(
            "{ts_label} cannot be decoded: {}",
            if TransferSyntaxRegistry.get(ts).is_none() {
                "the transfer syntax is unknown"
            } else {
                "no pure-Rust decoder for it is built into marrow"
            }
        )));
    }
    if let Some(f) = frame_in_place(image, frame) {
        return Ok(f);
    }
    let px = image.obj().decode_pixel_data_frame(frame as u32).map_err(|e| {
        let mut reason = format!("{ts_label} cannot be decoded: {}", chain(&e));
        if reason.contains("SamplePrecision(12)") {
            reason.push_str(
                " (12-bit JPEG, as in JPEG Extended 1.2.840.10008.1.2.4.51, is not supported by the pure-Rust JPEG decoder)",
            );
        }
        image.error(reason)
    })?;
    let data = px.data();
    let bits = px.bits_allocated();
    let samples = match bits {
        1 | 8 => Samples::U8(data.to_vec()),
        16 => Samples::U16(
            data.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        32 => Samples::U32(
            data.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        other => {
            return Err(image.error(format!("Bits Allocated {other} is not supported")));
        }
    };
    Ok(Frame {
        samples: FrameSamples::Decoded(samples),
        photometric: px.photometric_interpretation().as_str().to_string(),
        planar_configuration: match px.planar_configuration() {
            dicom_pixeldata::PlanarConfiguration::Standard => 0,
            dicom_pixeldata::PlanarConfiguration::PixelFirst => 1,
        },
        width: info.columns,
        height: info.rows,
    })
}

/// A frame of native Pixel Data read in place from the file's bytes, exactly as
/// dicom-pixeldata would decode it: `None` leaves the frame to it (anything but
/// 8 or 16 bits, a frame past the end of the data, or attributes it refuses).
fn frame_in_place(image: &Image, frame: usize) -> Option<Frame<'_>> {
    let raw = image.raw.as_ref()?;
    let info = &image.info;
    let bytes_per_sample = match info.bits_allocated {
        8 => 1,
        16 => 2,
        _ => return None,
    };
    let size = info.rows * info.columns * usize::from(info.samples_per_pixel) * bytes_per_sample;
    let at = raw.value_at.checked_add(frame.checked_mul(size)?)?;
    if at.checked_add(size)? as u64 > raw.file_len {
        return None;
    }
    // dicom-pixeldata's own checks of the attributes, on a 1x1 stand-in: what it
    // refuses, it refuses (with its words) on the real frame below.
    let mut probe = image.obj.clone();
    probe.put(InMemElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    probe.put(InMemElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    let one = vec![0u8; usize::from(info.samples_per_pixel) * bytes_per_sample];
    probe.put(InMemElement::new(
        tags::PIXEL_DATA,
        if bytes_per_sample == 2 {
            VR::OW
        } else {
            VR::OB
        },
        PrimitiveValue::U8(one.into()),
    ));
    let px = probe.decode_pixel_data_frame(0).ok()?;
    if px.bits_allocated() != info.bits_allocated {
        return None;
    }
    let samples = match raw.bytes.get() {
        Some(Ok(bytes)) if bytes_per_sample == 2 => FrameSamples::Le16(&bytes[at..at + size]),
        Some(Ok(bytes)) => FrameSamples::Le8(&bytes[at..at + size]),
        _ => FrameSamples::InFile {
            raw,
            at: at as u64,
            len: size,
            bytes_per_sample,
        },
    };
    Some(Frame {
        samples,
        photometric: px.photometric_interpretation().as_str().to_string(),
        planar_configuration: match px.planar_configuration() {
            dicom_pixeldata::PlanarConfiguration::Standard => 0,
            dicom_pixeldata::PlanarConfiguration::PixelFirst => 1,
        },
        width: info.columns,
        height: info.rows,
    })
}

/// The cases dicom-pixeldata gets wrong or refuses, decoded here; `None`
/// leaves the frame to dicom-pixeldata.
fn decode_special(image: &Image, frame: usize) -> Result<Option<Frame<'_>>, String> {
    let info = &image.info;
    let ts = info.transfer_syntax.as_str();
    let native = [IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_LE].contains(&ts);
    let whole = |samples: Samples, photometric: &str| Frame {
        samples: FrameSamples::Decoded(samples),
        photometric: photometric.to_string(),
        planar_configuration: 0,
        width: info.columns,
        height: info.rows,
    };
    // Only the cases below need the Pixel Data element itself.
    let big_endian_32 = ts == EXPLICIT_VR_BE && info.bits_allocated == 32;
    let ybr_422 = native && info.photometric == "YBR_FULL_422" && info.bits_allocated == 8;
    let element = if big_endian_32 || ybr_422 {
        Some(
            image
                .obj()
                .get(tags::PIXEL_DATA)
                .ok_or("it has no Pixel Data (7FE0,0010)")?,
        )
    } else {
        None
    };
    // Explicit VR Big Endian, 32-bit samples in an OW element: the parser has
    // swapped the bytes of each 16-bit word already; the words of a sample are
    // still most significant first.
    if big_endian_32
        && let Some(element) = element
        && let DicomValue::Primitive(PrimitiveValue::U16(words)) = element.value()
    {
        {
            let per_frame = info.rows * info.columns * usize::from(info.samples_per_pixel) * 2;
            let words = words
                .get(frame * per_frame..(frame + 1) * per_frame)
                .ok_or_else(|| format!("the Pixel Data is too short for frame {frame}"))?;
            let samples = words
                .chunks_exact(2)
                .map(|w| (u32::from(w[0]) << 16) | u32::from(w[1]))
                .collect();
            let mut f = whole(Samples::U32(samples), &info.photometric);
            f.planar_configuration = info.planar_configuration;
            return Ok(Some(f));
        }
    }
    // Native YBR_FULL_422: two luma samples share one Cb and one Cr
    // (Y1 Y2 Cb Cr); expanded to YBR_FULL.
    if ybr_422 && let Some(element) = element {
        let bytes = element
            .to_bytes()
            .map_err(|e| format!("the Pixel Data cannot be read as bytes: {e}"))?;
        let (w, h) = (info.columns, info.rows);
        if w % 2 != 0 {
            return Err(format!(
                "YBR_FULL_422 needs an even number of columns, not {w}"
            ));
        }
        let per_frame = w * h * 2;
        let src = bytes
            .get(frame * per_frame..(frame + 1) * per_frame)
            .ok_or_else(|| {
                format!(
                    "the Pixel Data holds {} bytes; frame {frame} of YBR_FULL_422 {w}x{h} needs {}",
                    bytes.len(),
                    (frame + 1) * per_frame
                )
            })?;
        let mut out = Vec::with_capacity(w * h * 3);
        for q in src.chunks_exact(4) {
            out.extend_from_slice(&[q[0], q[2], q[3], q[1], q[2], q[3]]);
        }
        return Ok(Some(whole(Samples::U8(out), "YBR_FULL")));
    }
    // 12-bit JPEG Extended, which jpeg-decoder refuses.
    if JPEG_DCT_UIDS.contains(&ts) {
        let bytes = super::jpegls::frame_bytes(image.obj(), info.frames, frame)?;
        if super::jpeg12::precision(&bytes) == Some(12) {
            let (samples, w, h, components) = super::jpeg12::decode(&bytes)?;
            if (w, h, components) != (info.columns, info.rows, usize::from(info.samples_per_pixel))
            {
                return Err(format!(
                    "the 12-bit JPEG stream is {w}x{h} with {components} component(s), but the image is {}x{} with {}",
                    info.columns, info.rows, info.samples_per_pixel
                ));
            }
            let photometric = if components == 3 {
                "RGB"
            } else {
                info.photometric.as_str()
            };
            return Ok(Some(whole(Samples::U16(samples), photometric)));
        }
    }
    // JPEG with three components labelled RGB and neither an Adobe nor a JFIF
    // marker: the components are R, G and B as they stand (what libjpeg and
    // pydicom do); jpeg-decoder would convert them from YCbCr.
    if JPEG_DCT_UIDS.contains(&ts) && info.samples_per_pixel == 3 && info.photometric == "RGB" {
        let bytes = super::jpegls::frame_bytes(image.obj(), info.frames, frame)?;
        // An Adobe marker too short to hold its transform flag counts as none.
        let adobe = jpeg_app_marker(&bytes, 0xEE, b"Adobe").is_some_and(|data| data.len() >= 12);
        if jpeg_app_marker(&bytes, 0xE0, b"JFIF").is_none() && !adobe {
            let mut decoder = jpeg_decoder::Decoder::new(&bytes[..]);
            decoder.set_color_transform(jpeg_decoder::ColorTransform::None);
            let data = decoder.decode().map_err(|e| format!("JPEG: {e}"))?;
            return Ok(Some(whole(Samples::U8(data), "RGB")));
        }
    }
    Ok(None)
}

/// The data of the JPEG stream's first APPn marker `marker` whose data starts
/// with `id`, before the first scan.
fn jpeg_app_marker<'a>(stream: &'a [u8], marker: u8, id: &[u8]) -> Option<&'a [u8]> {
    let mut i = 2;
    while i + 4 <= stream.len() && stream[i] == 0xFF {
        let m = stream[i + 1];
        if m == 0xDA {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([stream[i + 2], stream[i + 3]]));
        let data = stream.get(i + 4..(i + 2 + len).min(stream.len()))?;
        if m == marker && data.starts_with(id) {
            return Some(data);
        }
        i += 2 + len;
    }
    None
}

const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
/// JPEG Baseline and JPEG Extended (DCT).
const JPEG_DCT_UIDS: [&str; 2] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"];
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
/// JPEG 2000 Lossless Only and JPEG 2000.
const JPEG_2000_UIDS: [&str; 2] = ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"];

/// The JPEG 2000 resolution reduction for a preview within `max_w x max_h`:
/// the largest (at most 5) whose image still covers the size the preview is
/// downscaled to.
fn j2k_reduce(info: &ImageInfo, max_w: usize, max_h: usize) -> u32 {
    if max_w == 0 && max_h == 0 {
        return 0;
    }
    let (mw, mh) = limits(max_w, max_h);
    let (ow, oh) = display::fit_within(info.columns, info.rows, mw, mh);
    if ow == 0 {
        return 0;
    }
    let mut r = 0;
    while r < 5 && (info.columns >> (r + 1)) >= ow && (info.rows >> (r + 1)) >= oh {
        r += 1;
    }
    r
}

/// Decodes a grayscale JPEG 2000 frame at 1 / 2^reduce of its size.
fn decode_j2k_reduced(image: &Image, frame: usize, reduce: u32) -> Result<Frame<'_>, String> {
    let info = &image.info;
    if info.samples_per_pixel != 1 {
        return Err("reduced decoding is for grayscale only".into());
    }
    let bytes = super::jpegls::frame_bytes(image.obj(), info.frames, frame)?;
    let j2k =
        jpeg2k::Image::from_bytes_with(&bytes, jpeg2k::DecodeParameters::new().reduce(reduce))
            .map_err(|e| e.to_string())?;
    let comp = j2k.components().first().ok_or("no component")?;
    let (width, height) = (comp.width() as usize, comp.height() as usize);
    let data = comp.data();
    if width == 0 || height == 0 || data.len() < width * height {
        return Err(format!("{width}x{height} with {} samples", data.len()));
    }
    let data = &data[..width * height];
    // Two's complement truncation: the pipeline masks to Bits Stored and
    // sign-extends signed data again.
    let samples = match info.bits_allocated {
        8 => Samples::U8(data.iter().map(|&v| v as u8).collect()),
        16 => Samples::U16(data.iter().map(|&v| v as u16).collect()),
        other => return Err(format!("Bits Allocated {other}")),
    };
    Ok(Frame {
        samples: FrameSamples::Decoded(samples),
        photometric: info.photometric.clone(),
        planar_configuration: 0,
        width,
        height,
    })
}

/// RLE Lossless (PS3.5 Annex G) of 32-bit samples: four segments a sample, most
/// significant byte first (for colour, the four of red, then green, then blue);
/// colour comes out interleaved.
fn decode_rle_32(image: &Image, frame: usize) -> Result<Samples, String> {
    let info = &image.info;
    let spp = usize::from(info.samples_per_pixel);
    if spp != 1 && spp != 3 {
        return Err(format!(
            "32-bit RLE with {spp} samples per pixel is not supported"
        ));
    }
    let fragment = super::jpegls::frame_bytes(image.obj(), info.frames, frame)?;
    let pixels = info.rows * info.columns;
    let word = |at: usize| {
        fragment
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("the RLE header is truncated")
    };
    let segments = word(0)?;
    if segments != 4 * spp {
        return Err(format!(
            "the RLE header announces {segments} segments; 32-bit samples, {spp} a pixel, need {}",
            4 * spp
        ));
    }
    let offsets = (1..=segments)
        .map(|i| word(4 * i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = vec![0u32; pixels * spp];
    for (s, &start) in offsets.iter().enumerate() {
        let end = offsets.get(s + 1).copied().unwrap_or(fragment.len());
        let segment = fragment
            .get(start..end.min(fragment.len()))
            .ok_or_else(|| format!("RLE segment {s} lies outside the fragment"))?;
        let bytes = packbits(segment, pixels);
        if bytes.len() < pixels {
            return Err(format!(
                "RLE segment {s} decodes to {} bytes, {pixels} expected",
                bytes.len()
            ));
        }
        let (sample, shift) = (s / 4, 8 * (3 - (s % 4) as u32));
        for (v, &b) in out.iter_mut().skip(sample).step_by(spp).zip(&bytes) {
            *v |= u32::from(b) << shift;
        }
    }
    Ok(Samples::U32(out))
}

/// Decodes a PackBits segment, stopping at `want` bytes.
fn packbits(src: &[u8], want: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(want);
    let mut i = 0;
    while i < src.len() && out.len() < want {
        let h = src[i] as i8;
        i += 1;
        if h >= 0 {
            let end = (i + h as usize + 1).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if h != -128 {
            if let Some(&b) = src.get(i) {
                out.resize(out.len() + (1 - isize::from(h)) as usize, b);
            }
            i += 1;
        }
    }
    out.truncate(want);
    out
}

fn describe_window(w: &Window) -> String {
    format!("C {} W {} {}", w.center(), w.width(), w.function())
}

/// Which VOI stage to use: one of the file's presets (windows first, then VOI LUTs;
/// 0 is the default, the automatic window when the file has none), or a window the
/// user chose (center, width; LINEAR as the standard writes it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VoiChoice {
    Preset(usize),
    Window { center: f64, width: f64 },
}

/// Renders frame `frame` (from 0) with VOI preset `voi_index` to 8-bit pixels
/// fitting `max_w x max_h` (0 = no limit on that side).
pub fn render(
    image: &Image,
    frame: usize,
    voi_index: usize,
    max_w: usize,
    max_h: usize,
) -> Result<Rendered, DecodeError> {
    render_with(image, frame, VoiChoice::Preset(voi_index), max_w, max_h)
}

/// [`render`] with any [`VoiChoice`].
pub fn render_with(
    image: &Image,
    frame: usize,
    choice: VoiChoice,
    max_w: usize,
    max_h: usize,
) -> Result<Rendered, DecodeError> {
    let info = &image.info;
    if frame >= info.frames {
        return Err(image.error(format!(
            "frame {frame} is out of range: the file has {} frame{} (counted from 0)",
            info.frames,
            if info.frames == 1 { "" } else { "s" }
        )));
    }
    let Frame {
        samples,
        photometric,
        planar_configuration,
        width: w,
        height: h,
    } = decode_frame(image, frame, max_w, max_h)?;
    let derr = |e: DisplayError| image.error(e.to_string());
    let (pixels, width, height, voi) = match info.samples_per_pixel {
        1 if photometric == "PALETTE COLOR" => {
            let palette = palette_of(image)?;
            let samples = samples.into_samples().map_err(|e| image.error(e))?;
            let mut rgb = Vec::with_capacity(w * h * 3);
            for_stored(info, &samples, w * h, |v| {
                rgb.extend_from_slice(&palette.rgb8(v));
            })
            .map_err(|e| image.error(e))?;
            let (mw, mh) = limits(max_w, max_h);
            let (c, ow, oh) = display::downscale_rgb(&rgb, w, h, mw, mh).map_err(derr)?;
            (
                Pixels::Rgb(c),
                ow,
                oh,
                ("palette colour (no window)".to_string(), None),
            )
        }
        1 => {
            let invert = match photometric.as_str() {
                "MONOCHROME1" => true,
                "MONOCHROME2" => false,
                other => {
                    return Err(image.error(format!(
                        "Photometric Interpretation {other} is not supported for display"
                    )));
                }
            };
            let (gray, (ow, oh), voi, window) =
                render_gray(image, samples, invert, choice, (w, h), limits(max_w, max_h))?;
            (Pixels::Gray(gray), ow, oh, (voi, window))
        }
        3 => {
            let bytes = match samples.into_samples().map_err(|e| image.error(e))? {
                Samples::U8(b) => b,
                Samples::U16(v) => {
                    let shift = info.bits_stored.saturating_sub(8).min(8);
                    v.iter().map(|&s| (s >> shift).min(255) as u8).collect()
                }
                Samples::U32(v) => {
                    // The top 8 of the bits in use (High Bit down).
                    let shift = u32::from(info.high_bit + 1).saturating_sub(8).min(24);
                    v.iter().map(|&s| (s >> shift).min(255) as u8).collect()
                }
            };
            let mut rgb =
                display::rgb_interleaved(&bytes, w, h, planar_configuration).map_err(derr)?;
            match photometric.as_str() {
                "RGB" => {}
                "YBR_FULL" => ybr_full_to_rgb(&mut rgb),
                other => {
                    return Err(image.error(format!(
                        "Photometric Interpretation {other} is not supported for display"
                    )));
                }
            }
            let (mw, mh) = limits(max_w, max_h);
            let (c, ow, oh) = display::downscale_rgb(&rgb, w, h, mw, mh).map_err(derr)?;
            (
                Pixels::Rgb(c),
                ow,
                oh,
                ("colour (no window)".to_string(), None),
            )
        }
        other => {
            return Err(image.error(format!(
                "Samples per Pixel {other} is not supported for display"
            )));
        }
    };
    let (voi, window) = voi;
    Ok(Rendered {
        pixels,
        width,
        height,
        voi,
        window,
        decoded_width: w,
        decoded_height: h,
    })
}

/// The palette of a PALETTE COLOR image, read from its header.
fn palette_of(image: &Image) -> Result<super::palette::Palette, DecodeError> {
    super::palette::Palette::from_object(&image.obj, image.info.signed)
        .map_err(|e| image.error(format!("PALETTE COLOR: {e}")))
}

/// Calls `f` with the stored value of each of the first `count` samples (unused
/// high bits removed, signed values sign-extended).
fn for_stored(
    info: &ImageInfo,
    samples: &Samples,
    count: usize,
    mut f: impl FnMut(i64),
) -> Result<(), String> {
    let shift = u32::from(info.high_bit + 1 - info.bits_stored);
    let (bits, signed) = (info.bits_stored, info.signed);
    let stored = |raw: u32| i64::from(stored_value_32(raw >> shift, bits, signed));
    let available = match samples {
        Samples::U8(v) => v.len(),
        Samples::U16(v) => v.len(),
        Samples::U32(v) => v.len(),
    };
    if available < count {
        return Err(format!(
            "the frame holds {available} samples but the image needs {count}"
        ));
    }
    match samples {
        Samples::U8(v) => v[..count].iter().for_each(|&x| f(stored(u32::from(x)))),
        Samples::U16(v) => v[..count].iter().for_each(|&x| f(stored(u32::from(x)))),
        Samples::U32(v) => v[..count].iter().for_each(|&x| f(stored(x))),
    }
    Ok(())
}

/// The colours of frame `frame` of a PALETTE COLOR image as the palette holds them
/// (8- or 16-bit entries, not scaled for display), interleaved R G B: what
/// pydicom's `apply_color_lut` gives, which the conformance test compares with.
pub fn palette_values(image: &Image, frame: usize) -> Result<FrameValues, DecodeError> {
    let palette = palette_of(image)?;
    let stored = decode_values(image, frame)?;
    if stored.samples_per_pixel != 1 {
        return Err(image.error("a palette image has one sample a pixel"));
    }
    let values = stored
        .values
        .iter()
        .flat_map(|&v| palette.rgb(v).map(i64::from))
        .collect();
    Ok(FrameValues {
        values,
        width: stored.width,
        height: stored.height,
        samples_per_pixel: 3,
        photometric: "RGB".into(),
    })
}

/// The stored values of one frame at full resolution, as a conformance check
/// compares them with another toolkit's: unused high bits removed (High Bit
/// above Bits Stored - 1 shifted down), signed values sign-extended, 1-bit
/// samples as 0 / 1, colour interleaved (R G B per pixel) and YBR_FULL
/// converted to RGB. No Modality LUT, no window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameValues {
    pub values: Vec<i64>,
    pub width: usize,
    pub height: usize,
    pub samples_per_pixel: usize,
    /// The photometric interpretation of `values`.
    pub photometric: String,
}

/// Decodes frame `frame` (from 0) to its stored values; see [`FrameValues`].
pub fn decode_values(image: &Image, frame: usize) -> Result<FrameValues, DecodeError> {
    let info = &image.info;
    if frame >= info.frames {
        return Err(image.error(format!(
            "frame {frame} is out of range: the file has {} frame(s), counted from 0",
            info.frames
        )));
    }
    let Frame {
        samples,
        photometric,
        planar_configuration,
        width,
        height,
    } = decode_frame(image, frame, 0, 0)?;
    let samples = samples.into_samples().map_err(|e| image.error(e))?;
    let spp = usize::from(info.samples_per_pixel.max(1));
    let expected = width * height * spp;
    let shift = u32::from(info.high_bit + 1 - info.bits_stored);
    let bits = info.bits_stored;
    let signed = info.signed;
    let stored = |raw: u32| -> i64 { i64::from(stored_value_32(raw >> shift, bits, signed)) };
    let mut values: Vec<i64> = match samples {
        Samples::U8(v) if info.bits_allocated == 1 => {
            v.iter().map(|&x| i64::from(x != 0)).collect()
        }
        Samples::U8(v) => v.iter().map(|&x| stored(u32::from(x))).collect(),
        Samples::U16(v) => v.iter().map(|&x| stored(u32::from(x))).collect(),
        Samples::U32(v) if bits == 32 && !signed => v.iter().map(|&x| i64::from(x)).collect(),
        Samples::U32(v) => v.iter().map(|&x| stored(x)).collect(),
    };
    if values.len() < expected {
        return Err(image.error(format!(
            "frame {frame} holds {} samples but the image is {width}x{height} with {spp} sample(s) a pixel ({expected})",
            values.len()
        )));
    }
    values.truncate(expected);
    let mut photometric = photometric;
    if spp == 3 {
        if planar_configuration == 1 {
            let pixels = width * height;
            values = (0..expected)
                .map(|i| values[(i % 3) * pixels + i / 3])
                .collect();
        }
        if photometric == "YBR_FULL" && info.bits_allocated == 8 {
            let mut bytes: Vec<u8> = values.iter().map(|&v| v.clamp(0, 255) as u8).collect();
            ybr_full_to_rgb(&mut bytes);
            values = bytes.into_iter().map(i64::from).collect();
            photometric = "RGB".into();
        }
    }
    Ok(FrameValues {
        values,
        width,
        height,
        samples_per_pixel: spp,
        photometric,
    })
}

fn limits(max_w: usize, max_h: usize) -> (usize, usize) {
    let f = |m: usize| if m == 0 { usize::MAX } else { m };
    (f(max_w), f(max_h))
}

/// A windowed gray frame, the VOI stage in words, and the window (center, width) if any.
type GrayFrame = (Vec<u8>, (usize, usize), String, Option<(f64, f64)>);

/// The gray frame through the pipeline and fitted within `fit` (its size is
/// returned with it).
fn render_gray(
    image: &Image,
    samples: FrameSamples<'_>,
    invert: bool,
    choice: VoiChoice,
    (width, height): (usize, usize),
    (max_w, max_h): (usize, usize),
) -> Result<GrayFrame, DecodeError> {
    let pixels = width * height;
    let info = &image.info;
    let derr = |e: DisplayError| image.error(e.to_string());
    let (voi, voi_index, chosen) = match choice {
        VoiChoice::Preset(i) => (
            Voi::preset(&image.windows, &image.luts, i).map_err(derr)?,
            i,
            false,
        ),
        VoiChoice::Window { center, width } => (
            Voi::Window(Window::new(center, width, VoiFunction::Linear).map_err(derr)?),
            0,
            true,
        ),
    };
    let mut pipeline = GrayPipeline {
        modality: image.modality_lut,
        voi,
        invert,
    };
    let count = |n: usize| {
        if n < pixels {
            Err(image.error(format!(
                "the frame holds {n} samples but the image is {width}x{height} ({pixels} samples)"
            )))
        } else {
            Ok(())
        }
    };
    // Samples whose High Bit is above Bits Stored - 1 are shifted down.
    let shift = u32::from(info.high_bit + 1 - info.bits_stored);
    let bits = info.bits_stored;
    let signed = info.signed;
    let describe = |pipeline: &GrayPipeline| -> String {
        let presets = image.presets();
        match &pipeline.voi {
            Voi::Window(w) if chosen => format!("chosen window {}", describe_window(w)),
            Voi::Window(w) if presets == 0 => format!("automatic window {}", describe_window(w)),
            Voi::Window(w) => format!("window {voi_index} of {presets}: {}", describe_window(w)),
            Voi::Lut(l) => format!(
                "VOI LUT {voi_index} of {presets} ({} entries from {}, {} bits)",
                l.len(),
                l.first_mapped(),
                l.bits()
            ),
            Voi::Auto => "automatic window".to_string(),
        }
    };
    let fit = |gray: Vec<u8>| {
        display::downscale(&gray, width, height, max_w, max_h)
            .map(|(g, w, h)| (g, (w, h)))
            .map_err(derr)
    };
    // 8- and 16-bit samples go through one table, read where they lie and fitted
    // as they are mapped (the same values as mapping, then downscaling).
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let (gray, size) = match samples {
        FrameSamples::Decoded(Samples::U8(v)) if info.bits_allocated == 1 => {
            count(v.len())?;
            // Already expanded to 0 / 255 by the decoder: no windowing.
            let v = &v[..pixels];
            let out = if invert {
                v.iter().map(|&x| 255 - x).collect()
            } else {
                v.to_vec()
            };
            let (out, size) = fit(out)?;
            return Ok((out, size, "1-bit (no window)".into(), None));
        }
        FrameSamples::Decoded(Samples::U8(v)) => {
            count(v.len())?;
            let src = StoredSamples { v: &v, shift, mask };
            map_gray(
                &mut pipeline,
                &src,
                bits,
                signed,
                (width, height),
                (max_w, max_h),
            )
            .map_err(derr)?
        }
        FrameSamples::Le8(v) => {
            count(v.len())?;
            let src = StoredSamples { v, shift, mask };
            map_gray(
                &mut pipeline,
                &src,
                bits,
                signed,
                (width, height),
                (max_w, max_h),
            )
            .map_err(derr)?
        }
        FrameSamples::Decoded(Samples::U16(v)) => {
            count(v.len())?;
            let src = StoredSamples { v: &v, shift, mask };
            map_gray(
                &mut pipeline,
                &src,
                bits,
                signed,
                (width, height),
                (max_w, max_h),
            )
            .map_err(derr)?
        }
        FrameSamples::Le16(b) => {
            count(b.len() / 2)?;
            let src = Le16 { b, shift, mask };
            map_gray(
                &mut pipeline,
                &src,
                bits,
                signed,
                (width, height),
                (max_w, max_h),
            )
            .map_err(derr)?
        }
        FrameSamples::InFile {
            raw,
            at,
            len,
            bytes_per_sample,
        } => {
            count(len / bytes_per_sample)?;
            if display::preview_applies(width, height, max_w, max_h) {
                // Read a few rows at a time, never the whole frame.
                let src = FileRows {
                    file: &raw.file,
                    at,
                    bytes_per_sample,
                    shift,
                    mask,
                };
                let (g, w, h) = display::preview_fit(
                    &mut pipeline,
                    &src,
                    bits,
                    signed,
                    width,
                    height,
                    max_w,
                    max_h,
                )
                .map_err(derr)?;
                (g, (w, h))
            } else {
                let b = raw.range(at, len).map_err(|e| image.error(e))?;
                let sizes = ((width, height), (max_w, max_h));
                if bytes_per_sample == 2 {
                    let src = Le16 { b: &b, shift, mask };
                    map_gray(&mut pipeline, &src, bits, signed, sizes.0, sizes.1)
                } else {
                    let src = StoredSamples { v: &b, shift, mask };
                    map_gray(&mut pipeline, &src, bits, signed, sizes.0, sizes.1)
                }
                .map_err(derr)?
            }
        }
        FrameSamples::Decoded(Samples::U32(v)) => {
            count(v.len())?;
            let stored: Vec<i32> = v[..pixels]
                .iter()
                .map(|&x| stored_value_32(x >> shift, bits, signed))
                .collect();
            if matches!(pipeline.voi, Voi::Auto) {
                pipeline.voi = Voi::Window(display::auto_window_i32(&stored, &pipeline.modality));
            }
            fit(pipeline.render_i32(&stored))?
        }
    };
    let window = match &pipeline.voi {
        Voi::Window(w) => Some((w.center(), w.width())),
        _ => None,
    };
    Ok((gray, size, describe(&pipeline), window))
}

/// The automatic window if the pipeline needs one, the pipeline's table, and the
/// frame mapped through it and fitted within `max_w x max_h`.
fn map_gray(
    pipeline: &mut GrayPipeline,
    src: &impl StoredRows,
    bits: u16,
    signed: bool,
    (width, height): (usize, usize),
    (max_w, max_h): (usize, usize),
) -> Result<(Vec<u8>, (usize, usize)), DisplayError> {
    let auto = |modality: &ModalityLut| {
        display::auto_window_rows(src, width * height, width, bits, signed, modality)
    };
    if display::preview_applies(width, height, max_w, max_h) {
        let (gray, w, h) =
            display::preview_fit(pipeline, src, bits, signed, width, height, max_w, max_h)?;
        return Ok((gray, (w, h)));
    }
    if matches!(pipeline.voi, Voi::Auto) {
        pipeline.voi = Voi::Window(auto(&pipeline.modality)?);
    }
    let table = pipeline.stored_table(bits, signed, || auto(&pipeline.modality))?;
    let (gray, w, h) = display::map_fit(src, &table, width, height, max_w, max_h)?;
    Ok((gray, (w, h)))
}

/// 8- or 16-bit stored samples, decoded.
struct StoredSamples<'a, T> {
    v: &'a [T],
    shift: u32,
    mask: u32,
}

impl<T: Copy + Into<u32> + Sync> StoredRows for StoredSamples<'_, T> {
    fn indices(&self, start: usize, out: &mut [u32]) {
        let v = &self.v[start..start + out.len()];
        for (o, &x) in out.iter_mut().zip(v) {
            *o = (x.into() >> self.shift) & self.mask;
        }
    }
}

/// Native little-endian samples in the file at `at`, read a few rows at a time into
/// one small buffer kept by the thread (the kernel copies them from the page cache;
/// no buffer the size of the frame is allocated, zeroed or faulted in).
struct FileRows<'a> {
    file: &'a std::fs::File,
    at: u64,
    bytes_per_sample: usize,
    shift: u32,
    mask: u32,
}

/// The bytes [`FileRows`] reads at a time.
const ROWS_CHUNK: usize = 128 * 1024;

thread_local! {
    /// [`FileRows`]' read buffer, kept between calls.
    static ROWS_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl display::RowSource for FileRows<'_> {
    fn each_row(
        &self,
        first: usize,
        n: usize,
        width: usize,
        f: &mut dyn FnMut(usize, &[u16]),
    ) -> Result<(), DisplayError> {
        use std::os::unix::fs::FileExt;
        let row_bytes = width * self.bytes_per_sample;
        if row_bytes == 0 || n == 0 {
            return Ok(());
        }
        let per_chunk = (ROWS_CHUNK / row_bytes).clamp(1, n);
        let mut buf = ROWS_BUFFER.take();
        if buf.len() < per_chunk * row_bytes {
            buf.resize(per_chunk * row_bytes, 0);
        }
        let mut idx = vec![0u16; width];
        // At most 16 bits stored: the shift and mask work in 16 bits.
        let (shift, mask) = (self.shift, self.mask as u16);
        let mut y = first;
        let mut result = Ok(());
        while y < first + n {
            let k = per_chunk.min(first + n - y);
            let chunk = &mut buf[..k * row_bytes];
            if let Err(e) = self
                .file
                .read_exact_at(chunk, self.at + (y * row_bytes) as u64)
            {
                result = Err(DisplayError::Read(e.to_string()));
                break;
            }
            for (r, row) in chunk.chunks_exact(row_bytes).enumerate() {
                if self.bytes_per_sample == 2 {
                    for (o, c) in idx.iter_mut().zip(row.chunks_exact(2)) {
                        *o = (u16::from_le_bytes([c[0], c[1]]) >> shift) & mask;
                    }
                } else {
                    for (o, &b) in idx.iter_mut().zip(row) {
                        *o = (u16::from(b) >> shift) & mask;
                    }
                }
                f(y + r, &idx);
            }
            y += k;
        }
        ROWS_BUFFER.set(buf);
        result
    }
}

/// 16-bit stored samples as little-endian bytes.
struct Le16<'a> {
    b: &'a [u8],
    shift: u32,
    mask: u32,
}

impl StoredRows for Le16<'_> {
    fn indices(&self, start: usize, out: &mut [u32]) {
        let b = &self.b[2 * start..2 * (start + out.len())];
        for (o, c) in out.iter_mut().zip(b.chunks_exact(2)) {
            *o = (u32::from(u16::from_le_bytes([c[0], c[1]])) >> self.shift) & self.mask;
        }
    }
}

/// The stored value of a 32-bit sample of `bits` bits; unsigned values above
/// `i32::MAX` are clamped.
fn stored_value_32(raw: u32, bits: u16, signed: bool) -> i32 {
    let bits = u32::from(bits.clamp(1, 32));
    let v = if bits == 32 {
        raw
    } else {
        raw & ((1u32 << bits) - 1)
    };
    if signed {
        if bits == 32 {
            v as i32
        } else if v & (1u32 << (bits - 1)) != 0 {
            (i64::from(v) - (1i64 << bits)) as i32
        } else {
            v as i32
        }
    } else {
        v.min(i32::MAX as u32) as i32
    }
}

/// YBR_FULL (PS3.3 C.7.6.3.1.2) to RGB, in place on interleaved samples.
fn ybr_full_to_rgb(data: &mut [u8]) {
    for px in data.chunks_exact_mut(3) {
        let y = f64::from(px[0]);
        let cb = f64::from(px[1]) - 128.0;
        let cr = f64::from(px[2]) - 128.0;
        let r = y + 1.402 * cr;
        let g = y - 0.344_136 * cb - 0.714_136 * cr;
        let b = y + 1.772 * cb;
        px[0] = r.round().clamp(0.0, 255.0) as u8;
        px[1] = g.round().clamp(0.0, 255.0) as u8;
        px[2] = b.round().clamp(0.0, 255.0) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a check: the in-process time of the preview pipeline (read, decode,
    /// window, fit within 320x180) for the files named in `MARROW_PREVIEW_BENCH`
    /// (comma-separated), for bench/dicom.py to set beside pydicom's. Run with
    /// `cargo test --release --lib preview_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing for bench/dicom.py, not a check"]
    fn preview_timing() {
        let Ok(files) = std::env::var("MARROW_PREVIEW_BENCH") else {
            return;
        };
        let runs: usize = std::env::var("MARROW_PREVIEW_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(21);
        for path in files.split(',').filter(|p| !p.is_empty()) {
            let mut times = Vec::with_capacity(runs);
            let mut size = (0, 0);
            for _ in 0..runs + 1 {
                let t = std::time::Instant::now();
                let image = load(path).unwrap_or_else(|e| panic!("{e}"));
                let r = render(&image, 0, 0, 320, 180).unwrap_or_else(|e| panic!("{e}"));
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                size = (r.width, r.height);
            }
            times.remove(0);
            times.sort_by(f64::total_cmp);
            println!(
                "preview_timing {path} {:.2} {:.2} {}x{}",
                times[times.len() / 2],
                times[0],
                size.0,
                size.1
            );
        }
    }

    #[test]
    fn ybr_full_gray_and_red() {
        let mut px = [128, 128, 128, 76, 85, 255];
        ybr_full_to_rgb(&mut px);
        assert_eq!(&px[..3], &[128, 128, 128]);
        assert!(px[3] >= 250 && px[4] <= 5 && px[5] <= 5, "{px:?}");
    }

    #[test]
    fn packbits_literal_and_repeat() {
        assert_eq!(packbits(&[1, 7, 8, 0xFE, 9, 0x80], 10), vec![7, 8, 9, 9, 9]);
        assert_eq!(packbits(&[0xFD, 1], 2), vec![1, 1]);
    }

    #[test]
    fn stored_32() {
        assert_eq!(stored_value_32(0xFFFF_FFFF, 32, true), -1);
        assert_eq!(stored_value_32(0x0000_0FFF, 12, true), -1);
        assert_eq!(stored_value_32(0xFFFF_FFFF, 32, false), i32::MAX);
        assert_eq!(stored_value_32(5, 16, false), 5);
    }
}
