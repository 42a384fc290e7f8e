//! Bit reader for JPEG-LS entropy-coded segments (ITU-T T.87 A.1 single-bit
//! stuffing, A.5.3 length-limited Golomb codes).
//!
//! Copied from the `pure_jpegls` crate 2.0.0 (src/bitstream.rs, the reader
//! half), by JP Fielding, <https://github.com/jpfielding/dicos.rs>, licensed
//! MIT OR Apache-2.0. Changes: its own small error type instead of the crate's
//! `CodecError`.

/// Why the reader stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BitError {
    /// A marker (0xFFxx, xx >= 0x80) where entropy-coded data was expected.
    Marker(u16),
    /// The data ended.
    End,
    /// The bits cannot be a valid code.
    Invalid(&'static str),
}

// BitReader
// ---------------------------------------------------------------------------

/// Reads bits from a byte slice, handling T.87 single-bit stuffing.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Bit accumulator (MSB-first, valid bits are the low `n_bits`).
    bits: u64,
    /// Number of valid bits in `bits`.
    n_bits: i32,
    /// Whether the most recently consumed byte was `0xFF` (so the next byte is
    /// a stuffed 7-bit byte or a marker).
    last_ff: bool,
    /// Set when a marker (0xFFxx, xx >= 0x80) was encountered mid-scan.
    pending_marker: Option<u16>,
}

impl<'a> BitReader<'a> {
    /// Create a new `BitReader` over the given byte slice.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            bits: 0,
            n_bits: 0,
            last_ff: false,
            pending_marker: None,
        }
    }

    /// Byte offset of the first unconsumed input byte.
    ///
    /// After a scan is fully decoded, any residual bits in the accumulator are
    /// the flush padding of the last consumed byte (always `< 8`), so this
    /// points at the byte following the entropy-coded data — i.e. the trailing
    /// marker (EOI).
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Byte offset of the marker terminating the scan.
    ///
    /// If the final consumed data byte was `0xFF`, its mandatory stuff byte
    /// (T.87 A.1) may not have been pulled into the accumulator yet; it sits at
    /// [`Self::pos`] and the marker begins immediately after it.
    pub fn marker_pos(&self) -> usize {
        if self.last_ff { self.pos + 1 } else { self.pos }
    }

    /// Fill the accumulator so it contains at least `n` bits.
    fn fill(&mut self, n: i32) -> Result<(), BitError> {
        while self.n_bits < n {
            if let Some(m) = self.pending_marker {
                return Err(BitError::Marker(m));
            }
            if self.pos >= self.data.len() {
                return Err(BitError::End);
            }
            let b = self.data[self.pos];

            if self.last_ff {
                // The previous byte was a `0xFF` data byte. By construction (we
                // only treat `0xFF` as data when the following byte is < 0x80)
                // this byte is a stuffed 7-bit byte: its MSB is the stuffed 0.
                self.pos += 1;
                self.bits = (self.bits << 7) | (u64::from(b) & 0x7F);
                self.n_bits += 7;
                self.last_ff = false; // b < 0x80, cannot be 0xFF
            } else if b == 0xFF {
                // Look ahead: a following byte >= 0x80 makes `0xFF` the first
                // half of a marker (0xFF is NOT data); a following byte < 0x80
                // makes `0xFF` an 8-bit data byte with a stuffed byte after it.
                match self.data.get(self.pos + 1).copied() {
                    Some(next) if next >= 0x80 => {
                        let marker = 0xFF00u16 | u16::from(next);
                        self.pending_marker = Some(marker);
                        return Err(BitError::Marker(marker));
                    }
                    _ => {
                        self.pos += 1;
                        self.bits = (self.bits << 8) | 0xFF;
                        self.n_bits += 8;
                        self.last_ff = true;
                    }
                }
            } else {
                self.pos += 1;
                self.bits = (self.bits << 8) | u64::from(b);
                self.n_bits += 8;
                self.last_ff = false;
            }
        }
        Ok(())
    }

    /// Read `n` bits (0..=32) and return them right-justified.
    pub fn read_bits(&mut self, n: i32) -> Result<u32, BitError> {
        if n == 0 {
            return Ok(0);
        }
        self.fill(n)?;
        let shift = self.n_bits - n;
        let mask = (1u64 << n) - 1;
        let val = (self.bits >> shift) & mask;
        self.n_bits -= n;
        Ok(val as u32)
    }

    /// Read a single bit.
    #[inline]
    pub fn read_bit(&mut self) -> Result<u32, BitError> {
        self.read_bits(1)
    }

    /// Read a length-limited Golomb code (T.87 A.5.3).
    ///
    /// Counts the zeros preceding the terminating `1`:
    /// - `count < glimit - qbpp - 1` → `(count << k) | read_bits(k)`;
    /// - `count == glimit - qbpp - 1` (escape) → `read_bits(qbpp) + 1`;
    /// - anything longer → [`BitError::Invalid`].
    pub fn read_limited_golomb(&mut self, k: i32, glimit: i32, qbpp: i32) -> Result<u32, BitError> {
        let escape = glimit - qbpp - 1;
        let mut count: i32 = 0;
        while self.read_bit()? == 0 {
            count += 1;
            if count > escape {
                return Err(BitError::Invalid("a Golomb code longer than its limit"));
            }
        }

        if count < escape {
            let r = if k > 0 { self.read_bits(k)? } else { 0 };
            Ok(((count as u32) << k) | r)
        } else {
            // count == escape: the escape carries (val - 1) in qbpp bits.
            Ok(self.read_bits(qbpp)?.wrapping_add(1))
        }
    }
}
