"""The DICOM conformance corpus: every file shipped by the PyPI packages
pydicom and pydicom-data (pinned below), found in a virtual environment.

    python3 tests/conformance/corpus.py VENV      # prints one "name<TAB>path" per file

Names are stable across machines: "pydicom/<path under pydicom/data>" and
"pydicom-data/<path under data_store/data>". Python sources, READMEs and the
packages' own JSON indexes are not corpus files; everything else is, DICOM or not
(a few are deliberately broken or not DICOM at all).
"""

import pathlib
import sys

PYDICOM = "pydicom==3.0.2"
PYDICOM_DATA = "pydicom-data==1.0.0"
SKIP_SUFFIXES = {".py", ".pyc", ".md", ".txt", ".json", ".rst", ".cfg", ".toml"}


def site_packages(venv):
    found = sorted(pathlib.Path(venv).glob("lib/python3*/site-packages"))
    if not found:
        sys.exit(f"{venv}: no lib/python3*/site-packages (not a virtual environment?)")
    return found[0]


def corpus(venv):
    site = site_packages(venv)
    roots = [("pydicom", site / "pydicom" / "data"), ("pydicom-data", site / "data_store" / "data")]
    out = []
    for label, root in roots:
        if not root.is_dir():
            sys.exit(f"{root}: missing; install {PYDICOM} {PYDICOM_DATA} into {venv}")
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.suffix.lower() in SKIP_SUFFIXES:
                continue
            if "__pycache__" in path.parts:
                continue
            out.append((f"{label}/{path.relative_to(root).as_posix()}", path))
    return out


if __name__ == "__main__":
    for name, path in corpus(sys.argv[1]):
        print(f"{name}\t{path}")
