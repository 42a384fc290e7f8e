"""Reference pixel checksums for the DICOM conformance corpus, computed with pydicom.

    VENV=~/.cache/marrow-conformance/venv
    $VENV/bin/pip install pydicom==3.0.2 pydicom-data==1.0.0 numpy \
        pylibjpeg==2.1.0 pylibjpeg-libjpeg==2.5.0 pylibjpeg-openjpeg==2.6.0 pylibjpeg-rle==2.2.0
    $VENV/bin/python tests/conformance/reference.py $VENV > tests/conformance/reference.json

For every corpus file (tests/conformance/corpus.py): whether pydicom decodes its
pixels (`dcmread(force=True).pixel_array`, pydicom's defaults: unused high bits
masked, signed values sign-extended, YCbCr converted to RGB) and, when it does, a
fingerprint of the decoded values that tests/dicom_conformance.rs recomputes from
marrow's decoder:

- sha256: SHA-256 of every sample as a little-endian signed 64-bit integer, in
  the order frame, row, column, sample (interleaved colour);
- min, max: the extreme values;
- grid: frame 0 cut into 8 x 8 blocks (block i covers rows floor(i*rows/8) to
  floor((i+1)*rows/8), columns likewise), the mean of every sample in each
  block, row-major. Lossy codecs may differ from pydicom's by rounding; the
  grid lets the test say how close they are.

The decoders pydicom used are the pylibjpeg plugins above (JPEG, JPEG-LS,
JPEG 2000, RLE) and its own native, deflate and RLE code.
"""

import hashlib
import json
import sys
import warnings

import numpy as np
import pydicom

sys.path.insert(0, __import__("os").path.dirname(__file__))
from corpus import corpus  # noqa: E402


def grid(frame):
    rows, cols = frame.shape[0], frame.shape[1]
    out = []
    for i in range(8):
        r0, r1 = i * rows // 8, (i + 1) * rows // 8
        for j in range(8):
            c0, c1 = j * cols // 8, (j + 1) * cols // 8
            block = frame[r0:r1, c0:c1]
            out.append(round(float(block.mean()), 4) if block.size else None)
    return out


def reference(path):
    warnings.simplefilter("ignore")
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as e:  # noqa: BLE001
        return {"pydicom": "unreadable", "reason": f"{type(e).__name__}: {e}"[:200]}
    entry = {}
    try:
        entry["transfer_syntax"] = str(ds.file_meta.TransferSyntaxUID)
    except Exception:  # noqa: BLE001
        entry["transfer_syntax"] = None
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        entry["pydicom"] = "no pixel data" if not other else "float pixel data"
        return entry
    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001
        entry["pydicom"] = "not decoded"
        entry["reason"] = f"{type(e).__name__}: {e}"[:200]
        return entry
    if arr.dtype.kind == "f":
        entry["pydicom"] = "float pixel data"
        return entry
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    shape = (frames, rows, cols, spp)
    try:
        values = arr.astype("<i8").reshape(shape)
    except ValueError:
        entry["pydicom"] = "not decoded"
        entry["reason"] = f"pixel_array shape {arr.shape} does not match {shape}"
        return entry
    entry.update(
        pydicom="decoded",
        frames=frames,
        rows=rows,
        columns=cols,
        samples_per_pixel=spp,
        photometric=str(getattr(ds, "PhotometricInterpretation", "")),
        sha256=hashlib.sha256(values.tobytes()).hexdigest(),
        min=int(values.min()),
        max=int(values.max()),
        grid=grid(values[0].astype(np.float64).mean(axis=2)),
    )
    return entry


def main():
    venv = sys.argv[1]
    out = {
        "generator": "tests/conformance/reference.py",
        "pydicom": pydicom.__version__,
        "numpy": np.__version__,
        "files": {},
    }
    for name, path in corpus(venv):
        out["files"][name] = reference(str(path))
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
