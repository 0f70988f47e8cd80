"""The reference for ``test_beside_curator.py``, computed where only NeMo Curator 1.1.0 is installed.

``python tests/compat/make_reference.py WORKDIR`` writes the input corpus to ``WORKDIR/input``, runs
``curator_pipeline``'s pipeline by calling Curator's stages directly (no executor) into
``WORKDIR/reference-output``, and saves what it wrote, what every Curator package ``__init__`` exports and
which of those names resolve here, and which of Curator's modules import here, to ``WORKDIR/reference.json``. ``make test-compat`` runs it before it
installs this package over Curator.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import curator_pipeline as cp


def main(workdir: Path) -> None:
    try:
        import nemo_curator._core  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("nemo_curator here is nemo-curator-rs; the reference needs NeMo Curator alone")
    from importlib import metadata

    if workdir.exists():
        shutil.rmtree(workdir)
    input_dir, output_dir = workdir / "input", workdir / "reference-output"
    cp.write_corpus(input_dir)
    results = cp.run_directly(cp.build_stages(input_dir, output_dir))
    output = cp.collect_output(output_dir, results)
    problems = cp.id_problems(output)
    if problems:
        raise SystemExit("Curator's own ids fail the id check:\n" + "\n".join(problems))
    modules = cp.curator_init_modules()
    reference = {
        "nemo_curator": metadata.version("nemo-curator"),
        "output": output,
        "init_exports": modules,
        "surface": cp.import_surface(modules),
        "modules": cp.import_errors(cp.curator_module_names()),
    }
    (workdir / "reference.json").write_text(json.dumps(reference, indent=1))
    rows = sum(len(r) for r in output["files"].values())
    importable = sum("names" in v for v in reference["surface"].values())
    imported = sum(not error for error in reference["modules"].values())
    print(
        f"reference: {len(output['files'])} files, {rows} rows kept of {cp.N_FILES * cp.DOCS_PER_FILE}; "
        f"{importable} of {len(modules)} Curator packages and {imported} of {len(reference['modules'])} "
        "Curator modules import here"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} WORKDIR")
    main(Path(sys.argv[1]))
