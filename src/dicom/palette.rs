//! Photometric Interpretation PALETTE COLOR (PS3.3 C.7.6.3.1.5): each stored value
//! is an index into three lookup tables (red, green, blue), given by their
//! descriptors (0028,1101-1103) and either their data (0028,1201-1203) or their
//! segmented data (0028,1221-1223, C.7.9.2).
//!
//! The tables are read as pydicom's `apply_color_lut` reads them (the reference the
//! conformance test compares with): entries of 8 or 16 bits as the length of the
//! data says, a first value mapped (values below it take the first entry, values
//! past the last entry take the last), segmented tables expanded with its rounding.

use dicom_core::Tag;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The three tables of a palette.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    /// The stored value mapped to the first entry (may be negative).
    pub first_mapped: i64,
    /// Red, green and blue entries, all of the same length.
    pub tables: [Vec<u16>; 3],
    /// Bits per entry: the nominal depth of the descriptor (8 or 16).
    pub bits: u16,
}

/// The longest table expanded from segments (a 16-bit table has 65 536 entries).
const MAX_ENTRIES: usize = 1 << 17;

impl Palette {
    /// Reads the palette of a data set; `signed` is Pixel Representation 1 (the
    /// first value mapped is then read as a signed 16-bit value).
    pub fn from_object(obj: &InMemDicomObject, signed: bool) -> Result<Palette, String> {
        let colours = [
            (
                "Red",
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
            (
                "Green",
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
            (
                "Blue",
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
        ];
        // As pydicom: the red descriptor describes all three.
        let descriptor: Vec<i64> = obj
            .get(colours[0].1)
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .unwrap_or_default();
        let [entries, first, bits] = descriptor[..] else {
            return Err(
                "PALETTE COLOR without a Red Palette Color Lookup Table Descriptor (0028,1101) of 3 values"
                    .into(),
            );
        };
        let entries = if entries == 0 {
            1 << 16
        } else {
            entries as usize
        };
        let first_mapped = if signed && first > i64::from(i16::MAX) {
            first - (1 << 16)
        } else {
            first
        };
        let bits = u16::try_from(bits)
            .ok()
            .filter(|b| [8, 16].contains(b))
            .ok_or_else(|| {
                format!("the palette descriptor gives {bits} bits an entry (8 or 16 expected)")
            })?;
        let mut tables: [Vec<u16>; 3] = Default::default();
        for (table, &(name, _, data, segmented)) in tables.iter_mut().zip(&colours) {
            *table = if let Some(words) = words(obj, data) {
                plain_table(&words, entries)
                    .map_err(|e| format!("{name} Palette Color Lookup Table Data: {e}"))?
            } else if let Some(words) = words(obj, segmented) {
                expand_segmented(&segment_values(&words, bits), None, None, 0)
                    .map_err(|e| format!("Segmented {name} Palette Color Lookup Table Data: {e}"))?
            } else {
                return Err(format!(
                    "PALETTE COLOR without {name} Palette Color Lookup Table Data"
                ));
            };
            if table.is_empty() {
                return Err(format!("the {name} palette table has no entries"));
            }
        }
        if tables[1].len() != tables[0].len() || tables[2].len() != tables[0].len() {
            return Err(format!(
                "the palette tables differ in length: {}, {} and {} entries",
                tables[0].len(),
                tables[1].len(),
                tables[2].len()
            ));
        }
        Ok(Palette {
            first_mapped,
            tables,
            bits,
        })
    }

    /// The table index of a stored value: below the first value mapped, the first
    /// entry; past the last, the last.
    pub fn index(&self, stored: i64) -> usize {
        let last = self.tables[0].len() as i64 - 1;
        (stored - self.first_mapped).clamp(0, last) as usize
    }

    /// The entries (red, green, blue) of a stored value, as the tables hold them.
    pub fn rgb(&self, stored: i64) -> [u16; 3] {
        let i = self.index(stored);
        [self.tables[0][i], self.tables[1][i], self.tables[2][i]]
    }

    /// The same, scaled to 8 bits for display (16-bit entries keep their high byte).
    pub fn rgb8(&self, stored: i64) -> [u8; 3] {
        let shift = self.bits.saturating_sub(8);
        self.rgb(stored).map(|v| (v >> shift).min(255) as u8)
    }
}

/// The 16-bit words of an OW element (dicom-rs has already put them in the
/// machine's order), or its bytes taken two at a time, least significant first.
fn words(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<u16>> {
    match obj.get(tag)?.value() {
        DicomValue::Primitive(PrimitiveValue::U16(w)) => Some(w.to_vec()),
        DicomValue::Primitive(PrimitiveValue::U8(b)) => Some(
            b.chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                .collect(),
        ),
        DicomValue::Primitive(p) => p
            .to_multi_int::<i64>()
            .ok()
            .map(|v| v.into_iter().map(|x| x as u16).collect()),
        _ => None,
    }
}

/// A plain table of `entries` entries: 16-bit entries when the data holds two
/// bytes an entry, else 8-bit entries (two in each word, the first in the low byte).
fn plain_table(words: &[u16], entries: usize) -> Result<Vec<u16>, String> {
    let bytes = words.len() * 2;
    if bytes >= 2 * entries {
        Ok(words[..entries].to_vec())
    } else if bytes >= entries {
        Ok(words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(entries)
            .map(u16::from)
            .collect())
    } else {
        Err(format!(
            "{bytes} bytes cannot hold the {entries} entries of the descriptor"
        ))
    }
}

/// The values of segmented data: 16-bit words, or for 8-bit entries each byte
/// (least significant first).
fn segment_values(words: &[u16], bits: u16) -> Vec<u32> {
    if bits == 8 {
        words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .map(u32::from)
            .collect()
    } else {
        words.iter().map(|&w| u32::from(w)).collect()
    }
}

/// Expands segmented table data (PS3.3 C.7.9.2) as pydicom's
/// `_expand_segmented_lut` does: discrete segments copied, linear segments from
/// the previous value to the segment's end value rounded half to even, indirect
/// segments (16-bit: the offset, in values, low word first) expanded in place;
/// `segments` limits the segments read and `last` is the value before them (for an
/// indirect segment).
fn expand_segmented(
    data: &[u32],
    segments: Option<usize>,
    last: Option<u32>,
    depth: usize,
) -> Result<Vec<u16>, String> {
    if depth > 8 {
        return Err("indirect segments nest too deeply".into());
    }
    let mut lut: Vec<u16> = Vec::new();
    let mut at = 0usize;
    let mut read = 0usize;
    // `at + 1`: data may end with a padding value.
    while at + 1 < data.len() {
        let (opcode, length) = (data[at], data[at + 1] as usize);
        at += 2;
        match opcode {
            0 => {
                let values = data
                    .get(at..at + length)
                    .ok_or("a discrete segment runs past the end of the data")?;
                lut.extend(values.iter().map(|&v| v as u16));
                at += length;
            }
            1 => {
                let y0 = match (lut.last(), last) {
                    (Some(&v), _) => u32::from(v),
                    (None, Some(v)) if v != 0 => v,
                    _ => return Err("the first segment cannot be a linear segment".into()),
                };
                let y1 = *data
                    .get(at)
                    .ok_or("a linear segment runs past the end of the data")?;
                at += 1;
                if y0 == y1 {
                    lut.extend(std::iter::repeat_n(y1 as u16, length));
                } else if length > 0 {
                    // numpy.around(numpy.linspace(y0 + step, y1, length)).
                    let step = (f64::from(y1) - f64::from(y0)) / length as f64;
                    let start = f64::from(y0) + step;
                    let stop = f64::from(y1);
                    let spacing = if length > 1 {
                        (stop - start) / (length - 1) as f64
                    } else {
                        0.0
                    };
                    for i in 0..length {
                        let v = if i + 1 == length && length > 1 {
                            stop
                        } else {
                            i as f64 * spacing + start
                        };
                        lut.push(v.round_ties_even().clamp(0.0, 65535.0) as u16);
                    }
                }
            }
            2 => {
                let Some(&previous) = lut.last() else {
                    return Err("the first segment cannot be an indirect segment".into());
                };
                let (lo, hi) = (
                    *data.get(at).ok_or("an indirect segment is cut short")?,
                    *data.get(at + 1).ok_or("an indirect segment is cut short")?,
                );
                at += 2;
                let offset = ((hi << 16) | lo) as usize;
                let rest = data
                    .get(offset..)
                    .ok_or("an indirect segment points past the end of the data")?;
                let more =
                    expand_segmented(rest, Some(length), Some(u32::from(previous)), depth + 1)?;
                lut.extend(more);
            }
            other => return Err(format!("unknown segment type {other}")),
        }
        if lut.len() > MAX_ENTRIES {
            return Err(format!("the table expands past {MAX_ENTRIES} entries"));
        }
        read += 1;
        if Some(read) == segments {
            break;
        }
    }
    Ok(lut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, VR};

    fn object(descriptor: [u16; 3], data: [&[u16]; 3], segmented: bool) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        let descriptors = [
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        ];
        let tables = if segmented {
            [
                tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ]
        } else {
            [
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ]
        };
        for ((d, t), words) in descriptors.into_iter().zip(tables).zip(data) {
            obj.put(DataElement::new(
                d,
                VR::US,
                PrimitiveValue::U16(descriptor.to_vec().into()),
            ));
            obj.put(DataElement::new(
                t,
                VR::OW,
                PrimitiveValue::U16(words.to_vec().into()),
            ));
        }
        obj
    }

    #[test]
    fn sixteen_bit_entries_with_a_first_mapped_value() {
        // 4 entries from stored value 10.
        let obj = object(
            [4, 10, 16],
            [
                &[0, 0x4000, 0x8000, 0xFFFF],
                &[0xFFFF, 0x8000, 0x4000, 0],
                &[0x1234, 0x1234, 0x1234, 0x1234],
            ],
            false,
        );
        let p = Palette::from_object(&obj, false).unwrap();
        assert_eq!(p.rgb(10), [0, 0xFFFF, 0x1234]);
        assert_eq!(p.rgb(12), [0x8000, 0x4000, 0x1234]);
        // Below the first value: the first entry; past the last: the last.
        assert_eq!(p.rgb(0), p.rgb(10));
        assert_eq!(p.rgb(200), [0xFFFF, 0, 0x1234]);
        assert_eq!(p.rgb8(11), [0x40, 0x80, 0x12]);
    }

    #[test]
    fn eight_bit_entries_packed_two_a_word() {
        // 4 entries of 8 bits in 2 words, the first entry in the low byte.
        let obj = object(
            [4, 0, 8],
            [&[0x2010, 0x4030], &[0x0201, 0x0403], &[0xFF00, 0x00FF]],
            false,
        );
        let p = Palette::from_object(&obj, false).unwrap();
        assert_eq!(p.tables[0], vec![0x10, 0x20, 0x30, 0x40]);
        assert_eq!(p.rgb8(1), [0x20, 0x02, 0xFF]);
        assert_eq!(p.rgb8(3), [0x40, 0x04, 0x00]);
    }

    #[test]
    fn segmented_discrete_linear_and_indirect() {
        // Discrete [0, 10], linear to 50 over 4 (20, 30, 40, 50), then an indirect
        // segment repeating the first (discrete) segment at offset 0.
        let data: &[u16] = &[0, 2, 0, 10, 1, 4, 50, 2, 1, 0, 0];
        let obj = object([0, 0, 16], [data, data, data], true);
        let p = Palette::from_object(&obj, false).unwrap();
        assert_eq!(p.tables[0], vec![0, 10, 20, 30, 40, 50, 0, 10]);
        // Linear with a fractional step rounds half to even, as numpy does:
        // from 0 to 5 over 2 gives 2.5 -> 2 and 5.
        let lut = expand_segmented(&[0, 1, 0, 1, 2, 5], None, None, 0).unwrap();
        assert_eq!(lut, vec![0, 2, 5]);
        assert!(expand_segmented(&[1, 2, 5], None, None, 0).is_err());
        assert!(expand_segmented(&[3, 1, 0], None, None, 0).is_err());
    }

    #[test]
    fn a_missing_or_odd_descriptor_is_refused_with_a_reason() {
        let obj = InMemDicomObject::new_empty();
        let e = Palette::from_object(&obj, false).unwrap_err();
        assert!(e.contains("Descriptor"), "{e}");
        let obj = object([4, 0, 12], [&[0; 4], &[0; 4], &[0; 4]], false);
        let e = Palette::from_object(&obj, false).unwrap_err();
        assert!(e.contains("12 bits"), "{e}");
        let obj = object([8, 0, 16], [&[0; 2], &[0; 2], &[0; 2]], false);
        assert!(Palette::from_object(&obj, false).is_err());
    }
}
