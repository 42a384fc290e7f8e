"""Reference colours of the PALETTE COLOR files of the conformance corpus, computed
with pydicom's `apply_color_lut` (the palette's own 8- or 16-bit entries, not scaled
for display).

    VENV=~/.cache/marrow-conformance/venv
    $VENV/bin/python tests/conformance/palette.py $VENV > tests/conformance/palette.json

reference.json holds what `pixel_array` gives for these files: the palette indices
(the stored values). This file holds what the palette makes of them, for every
frame: sha256 of every value as a little-endian signed 64-bit integer in the order
frame, row, column, sample (R G B), with min and max, which
tests/dicom_conformance.rs recomputes from marrow's `decode::palette_values`. A
file pydicom cannot colour is listed with its reason.
"""

import hashlib
import json
import sys
import warnings

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut

sys.path.insert(0, __import__("os").path.dirname(__file__))
from corpus import corpus  # noqa: E402


def colours(path):
    warnings.simplefilter("ignore")
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:  # noqa: BLE001
        return None
    if str(getattr(ds, "PhotometricInterpretation", "")) != "PALETTE COLOR":
        return None
    if "PixelData" not in ds:
        return None
    try:
        arr = ds.pixel_array
        rgb = apply_color_lut(arr, ds)
    except Exception as e:  # noqa: BLE001
        return {"pydicom": "not coloured", "reason": f"{type(e).__name__}: {e}"[:200]}
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    values = rgb.astype("<i8").reshape(frames, int(ds.Rows), int(ds.Columns), rgb.shape[-1])
    return {
        "pydicom": "coloured",
        "samples_per_pixel": int(values.shape[-1]),
        "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        "min": int(values.min()),
        "max": int(values.max()),
    }


def main():
    venv = sys.argv[1]
    out = {
        "generator": "tests/conformance/palette.py",
        "pydicom": pydicom.__version__,
        "numpy": np.__version__,
        "files": {},
    }
    for name, path in corpus(venv):
        entry = colours(str(path))
        if entry is not None:
            out["files"][name] = entry
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
