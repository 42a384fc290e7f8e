#!/usr/bin/env python3
"""Writes the colour JPEG-LS fixtures of fixtures/jpegls/ (not run in CI).

Each fixture is a bare JPEG-LS stream NAME.jls encoded by CharLS (through
pyjpegls) and NAME.raw, the original samples it was made from, interleaved by
pixel (R G B R G B ...), one byte a sample up to 8 bits, else two bytes little
endian. tests/dicom_decode.rs wraps each stream in a DICOM file and checks
that marrow decodes it to the original samples exactly (lossless) or within
NEAR (near-lossless), and for near-lossless streams that it gives exactly
what CharLS decodes (NAME.charls, same layout as NAME.raw); the unit tests of src/dicom/jpegls/codec.rs use them too.

The HP1/HP2/HP3 fixtures carry the HP colour transforms: the samples are
transformed here (as CharLS's forward transforms do), encoded as plain
components, and the APP8 "mrfx" marker naming the transform is inserted
after SOI; CharLS decoding them back to the original RGB is asserted below.

    python3 -m venv /tmp/jlsvenv
    /tmp/jlsvenv/bin/pip install pyjpegls numpy
    /tmp/jlsvenv/bin/python tests/conformance/make_jpegls_fixtures.py
"""

import hashlib
from pathlib import Path

import jpeg_ls
import numpy as np

OUT = Path(__file__).resolve().parents[2] / "fixtures" / "jpegls"

W, H = 37, 23  # odd sizes: no accidental alignment


def image(bits: int, seed: int) -> np.ndarray:
    """A (H, W, 3) RGB image with smooth ramps, flat areas (run mode), edges
    and noise, in 0 .. 2**bits - 1."""
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    y, x = np.mgrid[0:H, 0:W]
    r = (x * top) // (W - 1)
    g = (y * top) // (H - 1)
    b = ((x + y) * top) // (W + H - 2)
    img = np.stack([r, g, b], axis=-1).astype(np.int64)
    # flat block: all three components constant (runs in every mode)
    img[2:9, 3:30, :] = [top // 3, top // 2, top // 5]
    # a flat block in one component only
    img[12:20, 5:15, 1] = top // 7
    # noise in the lower right corner
    noise = rng.integers(0, top + 1, size=(8, 12, 3))
    img[H - 8 :, W - 12 :, :] = noise
    # a sharp edge
    img[:, 20, :] = top
    return np.clip(img, 0, top)


def transform(kind: int, img: np.ndarray, bits: int) -> np.ndarray:
    """CharLS's forward HP colour transforms, modulo 2**bits."""
    rng = 1 << bits
    mask = rng - 1
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    if kind == 1:
        v1 = (r - g + rng // 2) & mask
        v2 = g
        v3 = (b - g + rng // 2) & mask
    elif kind == 2:
        v1 = (r - g + rng // 2) & mask
        v2 = g
        v3 = (b - ((r + g) >> 1) + rng // 2) & mask
    elif kind == 3:
        v2 = (b - g + rng // 2) & mask
        v3 = (r - g + rng // 2) & mask
        v1 = (g + ((v2 + v3) >> 2) - rng // 4) & mask
    else:
        raise ValueError(kind)
    return np.stack([v1, v2, v3], axis=-1)


def layout(img: np.ndarray, ilv: int) -> np.ndarray:
    """The sample order encode_buffer expects for interleave mode `ilv`: by
    plane for ILV=0; by pixel for ILV=1 and 2 (CharLS makes the lines of a
    line-interleaved scan itself, whatever pyjpegls's docstring says)."""
    if ilv == 0:
        return np.ascontiguousarray(img.transpose(2, 0, 1))
    return np.ascontiguousarray(img)


def encode(img: np.ndarray, bits: int, near: int, ilv: int) -> bytes:
    dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
    src = layout(img, ilv).astype(dtype).tobytes()
    return bytes(jpeg_ls.encode_buffer(src, H, W, 3, bits, near, ilv))


def decode(stream: bytes, bits: int) -> np.ndarray:
    data, info = jpeg_ls.decode_buffer(stream)
    dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
    arr = np.frombuffer(bytes(data), dtype=dtype).astype(np.int64)
    ilv = info.get("interleave_mode", 2)
    if ilv == 0:
        return arr.reshape(3, H, W).transpose(1, 2, 0)
    return arr.reshape(H, W, 3)


def write(name: str, img: np.ndarray, bits: int, stream: bytes) -> None:
    dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
    raw = img.astype(dtype).tobytes()
    (OUT / f"{name}.jls").write_bytes(stream)
    (OUT / f"{name}.raw").write_bytes(raw)
    print(
        f"{name}: {len(stream)} bytes, raw sha256 {hashlib.sha256(raw).hexdigest()[:16]}"
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cases = [
        # name, bits, near, ilv
        ("rgb8_ilv0", 8, 0, 0),
        ("rgb8_ilv1", 8, 0, 1),
        ("rgb8_ilv2", 8, 0, 2),
        ("rgb8_ilv0_near2", 8, 2, 0),
        ("rgb8_ilv1_near3", 8, 3, 1),
        ("rgb8_ilv2_near3", 8, 3, 2),
        ("rgb12_ilv1", 12, 0, 1),
        ("rgb12_ilv2_near4", 12, 4, 2),
        ("rgb16_ilv2", 16, 0, 2),
    ]
    for i, (name, bits, near, ilv) in enumerate(cases):
        img = image(bits, seed=i)
        stream = encode(img, bits, near, ilv)
        back = decode(stream, bits)
        err = np.abs(back - img).max()
        assert err <= near, (name, err)
        write(name, img, bits, stream)
        if near > 0:
            # What CharLS decodes: marrow must give exactly this too.
            dtype = np.uint8 if bits <= 8 else np.dtype("<u2")
            (OUT / f"{name}.charls").write_bytes(back.astype(dtype).tobytes())
    for kind in (1, 2, 3):
        bits = 8
        img = image(bits, seed=10 + kind)
        stream = encode(transform(kind, img, bits), bits, 0, 2)
        app8 = b"\xff\xe8\x00\x07mrfx" + bytes([kind])
        stream = stream[:2] + app8 + stream[2:]
        back = decode(stream, bits)
        assert (back == img).all(), f"CharLS does not undo HP{kind} as written here"
        write(f"rgb8_hp{kind}", img, bits, stream)
    # The list the tests read (src/dicom/jpegls/codec.rs, tests/dicom_decode.rs).
    listed = [(name, bits, near) for name, bits, near, _ in cases]
    listed += [(f"rgb8_hp{kind}", 8, 0) for kind in (1, 2, 3)]
    (OUT / "fixtures.txt").write_text(
        "# name bits NEAR (written by tests/conformance/make_jpegls_fixtures.py)\n"
        + "".join(f"{n} {b} {near}\n" for n, b, near in listed)
    )


if __name__ == "__main__":
    main()
