"""This package installed over NeMo Curator 1.1.0: Curator's names still resolve, its stages run on our executors.

Runs only inside the venv ``make test-compat`` builds (``.venv-compat``): Curator 1.1.0 installed with the CPU
dependencies of its text stages, ``make_reference.py`` run there first (Curator alone), then this package
installed on top. ``NEMO_CURATOR_COMPAT_DIR`` names the reference's work directory. Anywhere else the module
is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

WORKDIR = os.environ.get("NEMO_CURATOR_COMPAT_DIR")


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


if not WORKDIR or not _installed("nemo-curator"):
    pytest.skip(
        "runs in the venv `make test-compat` builds (NeMo Curator 1.1.0 with this package on top)",
        allow_module_level=True,
    )

import curator_pipeline as cp  # noqa: E402
import ray  # noqa: E402

from nemo_curator.testing import ray_env  # noqa: E402

REFERENCE: dict[str, Any] = json.loads((Path(WORKDIR) / "reference.json").read_text())
INPUT_DIR = Path(WORKDIR) / "input"
RAY_CPUS = 2
OBJECT_STORE = 256 * 1024 * 1024


def test_this_package_is_installed_over_curator() -> None:
    import nemo_curator
    import nemo_curator._core

    assert _installed("nemo-curator-rs")
    site = Path(metadata.distribution("nemo-curator").locate_file("nemo_curator"))
    assert Path(nemo_curator.__file__).parent == site, "nemo_curator must come from site-packages"
    assert REFERENCE["nemo_curator"] == "1.1.0"


# ------------------------------------------------------------------------------------------------------------
# Every name Curator's package __init__ files export


def _importable_before() -> list[str]:
    return [m for m, v in REFERENCE["surface"].items() if "names" in v]


@pytest.mark.parametrize("module_name", _importable_before())
def test_curator_exports_still_resolve(module_name: str) -> None:
    """Each name that resolved with Curator alone resolves now, to the same kind of object (a stage is still
    a stage of the installed ``ProcessingStage``, a task still a ``Task``)."""
    before = {
        n: k for n, k in REFERENCE["surface"][module_name]["names"].items() if not k.startswith("error")
    }
    after = cp.import_surface({module_name: list(before)})[module_name]
    assert "error" not in after, f"{module_name} no longer imports: {after.get('error')}"
    changed = {n: (before[n], after["names"][n]) for n in before if after["names"][n] != before[n]}
    assert not changed, f"{module_name}: names whose (before, after) kind differ: {changed}"
    for name in before:  # `from module import name` too, which a lazy module __getattr__ must serve
        exec(f"from {module_name} import {name}", {})


def test_curator_modules_that_imported_alone_still_import() -> None:
    """Every module of Curator's that imported with Curator alone (its stage library included) imports over
    this package's core, which replaced the files they import from."""
    before = [name for name, error in REFERENCE["modules"].items() if not error]
    after = cp.import_errors(before)
    broken = {name: error for name, error in after.items() if error}
    assert not broken, f"{len(broken)} of {len(before)} Curator modules no longer import: {broken}"


def test_modules_that_failed_with_curator_alone_failed_for_missing_packages() -> None:
    """The reference's import failures are all missing optional packages (torch, cudf...), so the surface
    above covers every module whose dependencies this venv has."""
    failures = {m: v["error"] for m, v in REFERENCE["surface"].items() if "error" in v}
    failures.update({m: e for m, e in REFERENCE["modules"].items() if e})
    own = [e.removeprefix("parent package ").split(" fails: ")[-1] for e in failures.values()]
    assert all(e.startswith("ModuleNotFoundError") for e in own), failures
    assert len(_importable_before()) >= 40


OUR_INITS = [
    "nemo_curator",
    "nemo_curator.backends",
    "nemo_curator.backends.experimental",
    "nemo_curator.pipeline",
    "nemo_curator.tasks",
    "nemo_curator.stages.text.io.reader",
    "nemo_curator.stages.text.io.writer",
    "nemo_curator.stages.text.filters",
    "nemo_curator.stages.text.modifiers",
    "nemo_curator.stages.text.modules",
]
HEAVY = ["torch", "transformers", "cosmos_xenna", "fasttext", "sentencepiece", "huggingface_hub", "ray.data"]


def test_our_package_inits_import_no_heavy_optional_packages() -> None:
    code = (
        "import sys\n"
        f"for m in {OUR_INITS!r}: __import__(m)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {OUR_INITS} imported {out.stdout.strip()}"


# ------------------------------------------------------------------------------------------------------------
# Curator's stages on each of our executors, against Curator's own direct run


@pytest.fixture(scope="module", autouse=True)
def _ray_shutdown_at_end() -> Iterator[None]:
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_up() -> None:
    """A small local Ray, started again if an executor shut it down (Curator's Xenna executor does)."""
    ray_env.ensure_local_ray(num_cpus=RAY_CPUS, object_store_memory=OBJECT_STORE)


def _in_process() -> Any:
    from nemo_curator.backends.in_process import InProcessExecutor

    return InProcessExecutor()


def _actor_pool() -> Any:
    from nemo_curator.backends.experimental import RayActorPoolExecutor

    return RayActorPoolExecutor()


def _ray_data() -> Any:
    from nemo_curator.backends.experimental import RayDataExecutor

    return RayDataExecutor()


def _xenna(mode: str) -> Callable[[], Any]:
    def make() -> Any:
        from nemo_curator.backends.xenna import XennaExecutor

        return XennaExecutor(config={"execution_mode": mode})

    return make


def _run(executor: Any, out_dir: Path) -> dict[str, Any]:
    from nemo_curator.pipeline import Pipeline

    pipeline = Pipeline(name="beside_curator", stages=cp.build_stages(INPUT_DIR, out_dir))
    results = pipeline.run(executor=executor)
    return cp.collect_output(out_dir, results or [])


def _assert_same_output(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    assert sorted(got["files"]) == sorted(want["files"]), f"{what}: written file names differ"
    for name, rows in want["files"].items():
        assert got["columns"][name] == want["columns"][name], f"{what}: column order of {name} differs"
        assert got["files"][name] == rows, f"{what}: rows of {name} differ"
    assert got["tasks"] == want["tasks"], f"{what}: the writer's returned tasks differ"


@pytest.fixture(scope="module")
def in_process_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(_in_process(), tmp_path_factory.mktemp("in_process"))


def test_reference_is_meaningful() -> None:
    """Every filter had something to drop and something was kept, so the comparisons below can fail."""
    kept = [row for rows in REFERENCE["output"]["files"].values() for row in rows]
    assert 0 < len(kept) < cp.N_FILES * cp.DOCS_PER_FILE
    assert {row["kind"] for row in kept} == {5}
    assert not cp.id_problems(REFERENCE["output"])


def test_in_process_matches_curator(in_process_output: dict[str, Any]) -> None:
    _assert_same_output(in_process_output, REFERENCE["output"], "InProcessExecutor vs Curator")
    assert not cp.id_problems(in_process_output)


EXECUTORS = {
    "RayActorPoolExecutor": _actor_pool,
    "RayDataExecutor": _ray_data,
    "XennaExecutor-streaming": _xenna("streaming"),
    "XennaExecutor-batch": _xenna("batch"),
}


@pytest.mark.ray
@pytest.mark.parametrize("name", list(EXECUTORS))
def test_ray_executor_matches_curator_and_in_process(
    name: str, ray_up: None, in_process_output: dict[str, Any], tmp_path: Path
) -> None:
    got = _run(EXECUTORS[name](), tmp_path / "out")
    _assert_same_output(got, REFERENCE["output"], f"{name} vs Curator")
    _assert_same_output(got, in_process_output, f"{name} vs InProcessExecutor")
    assert not cp.id_problems(got)
