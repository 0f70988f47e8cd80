"""What README.md says ``pip uninstall nemo-curator-rs`` leaves behind, checked in ``.venv-compat``.

``check_uninstall.py removed``: after the uninstall, pip still lists nemo-curator 1.1.0 but the files both
packages shipped are gone, so Curator's core no longer imports. ``check_uninstall.py restored``: after
``pip install --force-reinstall --no-deps nemo-curator==1.1.0``, Curator alone imports again and its
pipeline gives the reference output (argument: the reference work directory).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import curator_pipeline as cp


def removed() -> None:
    assert metadata.version("nemo-curator") == "1.1.0", "pip should still list nemo-curator"
    try:
        from nemo_curator.tasks import DocumentBatch  # noqa: F401
    except ImportError as error:
        print(f"after uninstall, as documented: {error}")
        return
    raise SystemExit("nemo_curator.tasks still imports after `pip uninstall nemo-curator-rs`")


def restored(workdir: Path) -> None:
    if importlib.util.find_spec("nemo_curator._core") is not None:
        raise SystemExit("nemo-curator-rs files are still installed")
    reference = json.loads((workdir / "reference.json").read_text())["output"]
    with tempfile.TemporaryDirectory() as out:
        results = cp.run_directly(cp.build_stages(workdir / "input", Path(out)))
        again = cp.collect_output(Path(out), results)
    for key in ("files", "columns", "tasks"):
        if again[key] != reference[key]:
            raise SystemExit(f"reinstalled Curator's pipeline output differs from the reference ({key})")
    print("after `pip install --force-reinstall --no-deps nemo-curator==1.1.0`: Curator works again")


if __name__ == "__main__":
    if sys.argv[1:2] == ["removed"]:
        removed()
    elif sys.argv[1:2] == ["restored"] and len(sys.argv) == 3:
        restored(Path(sys.argv[2]))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} removed | restored WORKDIR")
