//! A structural check run before dicom-rs parses a file: walks the element
//! headers (the file meta group, the data set, sequences, items, fragments) and
//! refuses a declared length that runs past the end of the file.
//!
//! dicom-rs reserves and zero-fills a buffer of the declared length before it
//! reads a value, so a 200-byte file declaring a 3 GB element would cost 3 GB
//! and seconds before the read fails. Here it is an error naming the element.

use dicom_core::VR;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = u32::MAX;
const MAX_DEPTH: usize = 32;

/// How far the walk got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every element header in the bytes given was checked (up to the Pixel
    /// Data when `stop_at_pixel_data`).
    Complete,
    /// The bytes given end before the walk did: check more of the file.
    NeedMore,
}

/// The encoding of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit: bool,
    pub big_endian: bool,
}

const IMPLICIT_LE: Encoding = Encoding {
    explicit: false,
    big_endian: false,
};
const EXPLICIT_LE: Encoding = Encoding {
    explicit: true,
    big_endian: false,
};

/// The encoding a transfer syntax UID names; `None` for deflated data sets,
/// which cannot be walked without inflating them.
pub fn encoding_of(ts: &str) -> Option<Encoding> {
    match ts.trim_end_matches(['\0', ' ']) {
        "1.2.840.10008.1.2" => Some(IMPLICIT_LE),
        "1.2.840.10008.1.2.2" => Some(Encoding {
            explicit: true,
            big_endian: true,
        }),
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => None,
        _ => Some(EXPLICIT_LE),
    }
}

/// Checks a file that starts with a preamble + "DICM" or with "DICM": the meta
/// group (explicit VR little endian), then the data set in the encoding its
/// transfer syntax names. `bytes` may be the start of a file of `file_len`
/// bytes.
pub fn check_file(
    bytes: &[u8],
    file_len: u64,
    stop_at_pixel_data: bool,
) -> Result<Checked, String> {
    let start = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        132
    } else if bytes.starts_with(b"DICM") {
        4
    } else {
        return Err("no DICM marker".into());
    };
    let mut w = Walker {
        bytes,
        file_len,
        pos: start,
        stop_at_pixel_data,
        transfer_syntax: None,
    };
    if let Some(early) = w.meta_group()? {
        return Ok(early);
    }
    let Some(ts) = w.transfer_syntax.clone() else {
        // dicom-rs reports the missing Transfer Syntax itself.
        return Ok(Checked::Complete);
    };
    let Some(encoding) = encoding_of(&ts) else {
        if ts.trim_end_matches(['\0', ' ']) == DEFLATED {
            if (bytes.len() as u64) < file_len {
                return Ok(Checked::NeedMore);
            }
            return check_deflated(&bytes[w.pos.min(bytes.len())..]);
        }
        return Ok(Checked::Complete);
    };
    w.data_set(encoding, bytes.len(), 0)
}

const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// The most a deflated data set may inflate to (a decompression bomb is refused).
const INFLATE_CAP: u64 = 512 << 20;

/// A Deflated Explicit VR Little Endian data set: inflated (up to
/// [`INFLATE_CAP`]) and walked like any other, since dicom-rs reserves each
/// declared length as it reads the inflated stream.
fn check_deflated(deflated: &[u8]) -> Result<Checked, String> {
    use std::io::Read;
    let mut inflated = Vec::new();
    let read = flate2::read::DeflateDecoder::new(deflated)
        .take(INFLATE_CAP + 1)
        .read_to_end(&mut inflated);
    if inflated.len() as u64 > INFLATE_CAP {
        return Err(format!(
            "the deflated data set inflates to more than {} MB",
            INFLATE_CAP >> 20
        ));
    }
    // What did inflate is checked first: a length past its end is the clearer
    // reason.
    check_data_set(&inflated, EXPLICIT_LE).map_err(|e| format!("in the inflated data set, {e}"))?;
    match read {
        Ok(_) => Ok(Checked::Complete),
        Err(e) => Err(format!(
            "the deflated data set is damaged after {} bytes: {e}",
            inflated.len()
        )),
    }
}

/// Checks the meta group alone, of bytes that start with "DICM" (what
/// dicom-rs's `FileMetaTable::from_reader` reads): a declared length past the
/// end of `bytes` is refused before dicom-rs would reserve it.
pub fn check_meta(from_dicm: &[u8]) -> Result<(), String> {
    if !from_dicm.starts_with(b"DICM") {
        return Err("no DICM marker".into());
    }
    let mut w = Walker {
        bytes: from_dicm,
        file_len: from_dicm.len() as u64,
        pos: 4,
        stop_at_pixel_data: false,
        transfer_syntax: None,
    };
    w.meta_group().map(|_| ())
}

/// Checks a bare data set (no preamble, no meta group) read as `encoding`.
pub fn check_data_set(bytes: &[u8], encoding: Encoding) -> Result<Checked, String> {
    let mut w = Walker {
        bytes,
        file_len: bytes.len() as u64,
        pos: 0,
        stop_at_pixel_data: false,
        transfer_syntax: None,
    };
    w.data_set(encoding, bytes.len(), 0)
}

/// Whether an explicit-VR element of this VR has a 4-byte length after two
/// reserved bytes.
fn long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV
    )
}

enum Step {
    Continue,
    /// The Pixel Data was reached and the caller asked to stop there.
    Stop,
    /// An item or sequence delimiter ended the current level.
    End,
    /// The bytes given end here.
    More,
}

struct Walker<'a> {
    bytes: &'a [u8],
    file_len: u64,
    pos: usize,
    stop_at_pixel_data: bool,
    transfer_syntax: Option<String>,
}

impl Walker<'_> {
    fn u16(&self, at: usize, be: bool) -> u16 {
        let b = [self.bytes[at], self.bytes[at + 1]];
        if be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32(&self, at: usize, be: bool) -> u32 {
        let b = [
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ];
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn remaining_in_file(&self) -> u64 {
        self.file_len.saturating_sub(self.pos as u64)
    }

    /// Elements until `end` (a byte offset; the end of an item of defined
    /// length) or a delimiter.
    fn data_set(&mut self, enc: Encoding, end: usize, depth: usize) -> Result<Checked, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "sequences are nested more than {MAX_DEPTH} deep (at byte {})",
                self.pos
            ));
        }
        while self.pos < end {
            if self.pos + 8 > self.bytes.len() {
                return Ok(if (self.pos as u64) + 8 <= self.file_len {
                    Checked::NeedMore
                } else {
                    // Trailing padding shorter than a header: dicom-rs judges it.
                    Checked::Complete
                });
            }
            match self.element(enc, depth)? {
                Step::Continue => {}
                Step::More => return Ok(Checked::NeedMore),
                Step::Stop | Step::End => return Ok(Checked::Complete),
            }
        }
        Ok(Checked::Complete)
    }

    fn too_long(&self, group: u16, elem: u16, len: u32) -> String {
        format!(
            "the file ends early: element ({group:04X},{elem:04X}) at byte {} declares {len} bytes, but only {} remain in the file",
            self.pos,
            self.remaining_in_file()
        )
    }

    /// The meta group from `self.pos` (just after "DICM"), explicit VR little
    /// endian. `Some` when the walk ends within it.
    fn meta_group(&mut self) -> Result<Option<Checked>, String> {
        // The meta group, explicit VR little endian. dicom-rs reads it the way
        // this walk does: when it starts with its group length (0002,0000) UL,
        // element after element until that many bytes are read, whatever their
        // group (an off-group element is skipped by its length); else group 0002
        // elements until another group starts.
        let group_length = (self.bytes.len() >= self.pos + 12
            && self.u16(self.pos, false) == 0x0002
            && self.u16(self.pos + 2, false) == 0x0000
            && &self.bytes[self.pos + 4..self.pos + 6] == b"UL"
            && self.u16(self.pos + 6, false) == 4)
            .then(|| u64::from(self.u32(self.pos + 8, false)));
        if group_length.is_some() {
            self.pos += 12;
        }
        let meta_start = self.pos;
        loop {
            if self.pos + 8 > self.bytes.len() {
                return Ok(Some(if (self.pos as u64) < self.file_len {
                    Checked::NeedMore
                } else {
                    Checked::Complete
                }));
            }
            let in_meta = match group_length {
                Some(len) => ((self.pos - meta_start) as u64) < len,
                None => self.u16(self.pos, false) == 0x0002,
            };
            if !in_meta {
                break;
            }
            match self.meta_element()? {
                Step::Continue => {}
                Step::More => return Ok(Some(Checked::NeedMore)),
                Step::Stop | Step::End => return Ok(Some(Checked::Complete)),
            }
        }
        Ok(None)
    }

    /// One element of the meta group at `self.pos`, skipped by its length as
    /// dicom-rs does (no descent into a sequence). A value of undefined length
    /// ends the walk: dicom-rs refuses it.
    fn meta_element(&mut self) -> Result<Step, String> {
        let group = self.u16(self.pos, false);
        let elem = self.u16(self.pos + 2, false);
        let short = VR::from_binary([self.bytes[self.pos + 4], self.bytes[self.pos + 5]])
            .is_some_and(|vr| !long_length(vr));
        let (len, header) = if short {
            (u32::from(self.u16(self.pos + 6, false)), 8)
        } else {
            if self.pos + 12 > self.bytes.len() {
                return Ok(Step::More);
            }
            (self.u32(self.pos + 8, false), 12)
        };
        if len == UNDEFINED {
            return Ok(Step::End);
        }
        let value_at = self.pos + header;
        if (len as u64) > self.file_len.saturating_sub(value_at as u64) {
            return Err(self.too_long(group, elem, len));
        }
        if (group, elem) == (0x0002, 0x0010)
            && let Some(v) = self.bytes.get(value_at..value_at + len as usize)
        {
            self.transfer_syntax = Some(String::from_utf8_lossy(v).into_owned());
        }
        self.pos = value_at + len as usize;
        Ok(Step::Continue)
    }

    /// One element (or item/delimiter) at `self.pos`.
    fn element(&mut self, enc: Encoding, depth: usize) -> Result<Step, String> {
        let be = enc.big_endian;
        let group = self.u16(self.pos, be);
        let elem = self.u16(self.pos + 2, be);
        if group == 0xFFFE {
            // Delimiters end the level; a stray item is skipped by its length.
            let len = self.u32(self.pos + 4, be);
            self.pos += 8;
            if elem == 0xE00D || elem == 0xE0DD {
                return Ok(Step::End);
            }
            if len != UNDEFINED {
                self.skip(group, elem, len)?;
            }
            return Ok(Step::Continue);
        }
        if self.stop_at_pixel_data && (group, elem) == (0x7FE0, 0x0010) {
            return Ok(Step::Stop);
        }
        let (vr, len, header) = if enc.explicit {
            let vr = VR::from_binary([self.bytes[self.pos + 4], self.bytes[self.pos + 5]]);
            match vr {
                Some(vr) if long_length(vr) => {
                    if self.pos + 12 > self.bytes.len() {
                        return Ok(Step::More);
                    }
                    (Some(vr), self.u32(self.pos + 8, be), 12)
                }
                Some(vr) => (Some(vr), u32::from(self.u16(self.pos + 6, be)), 8),
                // Not a VR: dicom-rs reads it as one with a 4-byte length after
                // two reserved bytes (UN), so that length is checked too.
                None => {
                    if self.pos + 12 > self.bytes.len() {
                        return Ok(Step::More);
                    }
                    (Some(VR::UN), self.u32(self.pos + 8, be), 12)
                }
            }
        } else {
            (None, self.u32(self.pos + 4, be), 8)
        };
        let value_at = self.pos + header;
        let is_sequence = match vr {
            Some(VR::SQ) => true,
            Some(VR::UN) => len == UNDEFINED,
            Some(_) => false,
            None => {
                len == UNDEFINED
                    || StandardDataDictionary
                        .by_tag(dicom_core::Tag(group, elem))
                        .is_some_and(|e| e.vr().relaxed() == VR::SQ)
            }
        };
        if len == UNDEFINED {
            self.pos = value_at;
            let is_pixel_data = (group, elem) == (0x7FE0, 0x0010);
            // PS3.5 6.2.2 says a UN sequence of undefined length holds implicit
            // VR items; dicom-rs reads them in the data set's own encoding, so
            // the walk does too (it checks what dicom-rs will allocate).
            return self
                .items(enc, usize::MAX, depth, is_pixel_data)
                .map(|c| match c {
                    Checked::Complete => Step::Continue,
                    Checked::NeedMore => Step::More,
                });
        }
        if (len as u64) > self.file_len.saturating_sub(value_at as u64) {
            return Err(self.too_long(group, elem, len));
        }
        if (group, elem) == (0x0002, 0x0010)
            && let Some(v) = self.bytes.get(value_at..value_at + len as usize)
        {
            self.transfer_syntax = Some(String::from_utf8_lossy(v).into_owned());
        }
        if is_sequence && len > 0 {
            self.pos = value_at;
            let end = value_at + len as usize;
            return self.items(enc, end, depth, false).map(|c| match c {
                Checked::Complete => {
                    self.pos = end;
                    Step::Continue
                }
                Checked::NeedMore => Step::More,
            });
        }
        self.pos = value_at + len as usize;
        Ok(Step::Continue)
    }

    /// Skips `len` bytes of a value.
    fn skip(&mut self, group: u16, elem: u16, len: u32) -> Result<(), String> {
        if (len as u64) > self.remaining_in_file() {
            self.pos -= 8;
            return Err(self.too_long(group, elem, len));
        }
        self.pos += len as usize;
        Ok(())
    }

    /// The items of a sequence (or the fragments of encapsulated Pixel Data)
    /// until a sequence delimiter or `end`.
    fn items(
        &mut self,
        enc: Encoding,
        end: usize,
        depth: usize,
        fragments: bool,
    ) -> Result<Checked, String> {
        let be = enc.big_endian;
        // Items are little endian in all but Explicit VR Big Endian.
        while self.pos < end {
            if self.pos + 8 > self.bytes.len() {
                return Ok(if (self.pos as u64) + 8 <= self.file_len {
                    Checked::NeedMore
                } else {
                    Checked::Complete
                });
            }
            let group = self.u16(self.pos, be);
            let elem = self.u16(self.pos + 2, be);
            let len = self.u32(self.pos + 4, be);
            if group != 0xFFFE {
                // Not an item: dicom-rs reports it.
                return Ok(Checked::Complete);
            }
            self.pos += 8;
            match elem {
                0xE0DD => return Ok(Checked::Complete),
                0xE00D => continue,
                _ => {}
            }
            if len == UNDEFINED {
                if fragments {
                    return Err(format!(
                        "a Pixel Data fragment at byte {} has an undefined length",
                        self.pos - 8
                    ));
                }
                match self.data_set(enc, usize::MAX, depth + 1)? {
                    Checked::Complete => {}
                    Checked::NeedMore => return Ok(Checked::NeedMore),
                }
                continue;
            }
            if (len as u64) > self.remaining_in_file() {
                self.pos -= 8;
                return Err(self.too_long(group, elem, len));
            }
            let item_end = self.pos + len as usize;
            if fragments {
                self.pos = item_end;
                continue;
            }
            match self.data_set(enc, item_end, depth + 1)? {
                Checked::Complete => self.pos = item_end,
                Checked::NeedMore => return Ok(Checked::NeedMore),
            }
        }
        Ok(Checked::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit_element(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&group.to_le_bytes());
        v.extend_from_slice(&elem.to_le_bytes());
        v.extend_from_slice(vr);
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    fn file(ts: &str, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        f.extend(explicit_element(0x0002, 0x0010, b"UI", &uid));
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn a_sane_file_passes() {
        let body = explicit_element(0x0010, 0x0010, b"PN", b"DOE^JOHN");
        let f = file("1.2.840.10008.1.2.1", &body);
        assert_eq!(check_file(&f, f.len() as u64, false), Ok(Checked::Complete));
    }

    #[test]
    fn a_length_past_the_end_is_refused_with_the_element() {
        let mut body = Vec::new();
        body.extend_from_slice(&0x7FE0u16.to_le_bytes());
        body.extend_from_slice(&0x0010u16.to_le_bytes());
        body.extend_from_slice(b"OW\0\0");
        body.extend_from_slice(&0xF000_0000u32.to_le_bytes());
        body.extend_from_slice(&[0; 16]);
        let f = file("1.2.840.10008.1.2.1", &body);
        let e = check_file(&f, f.len() as u64, false).unwrap_err();
        assert!(
            e.contains("(7FE0,0010)") && e.contains("4026531840 bytes"),
            "{e}"
        );
    }

    #[test]
    fn implicit_lengths_inside_sequences_are_checked() {
        // (0008,1115) Referenced Series Sequence, undefined length, one item of
        // undefined length holding an element that claims 1 GB.
        let mut ds = Vec::new();
        for (g, e, len) in [
            (0x0008u16, 0x1115u16, UNDEFINED),
            (0xFFFE, 0xE000, UNDEFINED),
            (0x0020, 0x000E, 1 << 30),
        ] {
            ds.extend_from_slice(&g.to_le_bytes());
            ds.extend_from_slice(&e.to_le_bytes());
            ds.extend_from_slice(&len.to_le_bytes());
        }
        ds.extend_from_slice(&[0; 8]);
        let e = check_data_set(&ds, IMPLICIT_LE).unwrap_err();
        assert!(e.contains("(0020,000E)"), "{e}");
    }

    #[test]
    fn a_prefix_asks_for_more_and_stops_at_pixel_data() {
        let mut body = explicit_element(0x0010, 0x0010, b"PN", b"DOE^JOHN");
        body.extend_from_slice(&0x7FE0u16.to_le_bytes());
        body.extend_from_slice(&0x0010u16.to_le_bytes());
        body.extend_from_slice(b"OW\0\0");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&[1, 2, 3, 4]);
        let f = file("1.2.840.10008.1.2.1", &body);
        assert_eq!(
            check_file(&f[..140], f.len() as u64, false),
            Ok(Checked::NeedMore)
        );
        assert_eq!(check_file(&f, f.len() as u64, true), Ok(Checked::Complete));
        assert_eq!(check_file(&f, f.len() as u64, false), Ok(Checked::Complete));
    }

    #[test]
    fn the_meta_group_is_read_by_its_length_as_dicom_rs_reads_it() {
        // A fuzzing finding: (0002,0001) turned into (0012,0001). dicom-rs
        // still reads the meta group by its length, so the data set after it
        // must be checked, and its bogus 2.9 GB length is refused.
        let mut meta = explicit_element(0x0012, 0x0001, b"US", &[0, 1]);
        meta.extend(explicit_element(
            0x0002,
            0x0010,
            b"UI",
            b"1.2.840.10008.1.2.1\0",
        ));
        let mut f = vec![0u8; 128];
        f.extend_from_slice(b"DICM");
        f.extend(explicit_element(
            0x0002,
            0x0000,
            b"UL",
            &(meta.len() as u32).to_le_bytes(),
        ));
        f.extend(meta);
        f.extend(explicit_element(0x0008, 0x0070, b"LO", b"MARROW"));
        f.extend_from_slice(&[0x1B, 0xED, 0x1C, 0x44, 0x1B, 0xF0, 0x1B, 0x2A]);
        f.extend_from_slice(&0xB01B_261Cu32.to_le_bytes());
        f.extend_from_slice(&[0; 32]);
        let e = check_file(&f, f.len() as u64, false).unwrap_err();
        assert!(e.contains("(ED1B,441C)") && e.contains("2954569244"), "{e}");
        // Without the group length, group 0002 ends the meta group as before.
        let body = explicit_element(0x0010, 0x0010, b"PN", b"DOE^JOHN");
        let f = file("1.2.840.10008.1.2.1", &body);
        assert_eq!(check_file(&f, f.len() as u64, false), Ok(Checked::Complete));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut ds = Vec::new();
        for _ in 0..40 {
            for (g, e) in [(0x0008u16, 0x1115u16), (0xFFFE, 0xE000)] {
                ds.extend_from_slice(&g.to_le_bytes());
                ds.extend_from_slice(&e.to_le_bytes());
                ds.extend_from_slice(&UNDEFINED.to_le_bytes());
            }
        }
        let e = check_data_set(&ds, IMPLICIT_LE).unwrap_err();
        assert!(e.contains("nested"), "{e}");
    }
}
