"""Package what ``make develop`` built as a wheel, without compiling Rust again.

``make develop`` (``maturin develop --release``) leaves the compiled extension at
``python/nemo_curator/_core.abi3.so`` and installs the package's metadata into ``.venv``. This script, run
with ``.venv``'s interpreter, zips ``python/nemo_curator`` (sources, stubs, data and that extension) with the
installed metadata into ``OUTDIR/<name>-<version>-<tag>.whl``, a wheel pip installs and uninstalls like
maturin's own. ``make test-compat`` installs it over NeMo Curator.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "python" / "nemo_curator"
DIST = "nemo-curator-rs"


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def package_files() -> list[Path]:
    """Every file of the package but bytecode and stray native builds (only the extension maturin named)."""
    files = []
    for path in sorted(SOURCE.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        if path.suffix == ".so" and not (path.parent == SOURCE and path.name.startswith("_core.")):
            continue
        files.append(path)
    if not any(p.name.startswith("_core.") and p.suffix == ".so" for p in files):
        raise SystemExit(f"no compiled extension in {SOURCE}: run `make develop` first")
    return files


def main(outdir: Path) -> Path:
    dist = metadata.distribution(DIST)
    wheel_info = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_info.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise SystemExit(f"{DIST} in {sys.prefix} has no wheel tag: run `make develop` first")
    name = DIST.replace("-", "_")
    info = f"{name}-{dist.version}.dist-info"
    outdir.mkdir(parents=True, exist_ok=True)
    wheel_path = outdir / f"{name}-{dist.version}-{tags[0]}.whl"
    records = []
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:

        def add(arcname: str, data: bytes) -> None:
            wheel.writestr(arcname, data)
            records.append(_record_line(arcname, data))

        for path in package_files():
            add(path.relative_to(SOURCE.parent).as_posix(), path.read_bytes())
        add(f"{info}/METADATA", (dist.read_text("METADATA") or "").encode())
        wheel_text = "Wheel-Version: 1.0\nGenerator: nemo-curator-rs tests/compat/repack_wheel.py\n"
        wheel_text += "Root-Is-Purelib: false\n" + "".join(f"Tag: {t}\n" for t in tags)
        add(f"{info}/WHEEL", wheel_text.encode())
        records.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    print(wheel_path)
    return wheel_path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} OUTDIR")
    main(Path(sys.argv[1]))
