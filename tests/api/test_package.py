"""Package import: environment variables, versions, platform check, lazy experimental exports."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import nemo_curator
from nemo_curator import _core, package_info


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_env_vars_set_at_import() -> None:
    assert os.environ["RAPIDS_NO_INITIALIZE"] == "1"
    assert os.environ["RAY_MAX_LIMIT_FROM_API_SERVER"] == "40000"
    assert os.environ["RAY_MAX_LIMIT_FROM_DATA_SOURCE"] == "40000"


def test_env_vars_override_existing_values() -> None:
    env = {**os.environ, "RAY_MAX_LIMIT_FROM_API_SERVER": "5", "RAPIDS_NO_INITIALIZE": "0"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, nemo_curator; print(os.environ['RAY_MAX_LIMIT_FROM_API_SERVER'], "
            "os.environ['RAPIDS_NO_INITIALIZE'])",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert result.stdout.split() == ["40000", "1"]


def test_versions() -> None:
    assert nemo_curator.__version__ == "1.1.0"
    assert package_info.__version__ == "1.1.0"
    assert nemo_curator.__core_version__ == _core.__version__
    assert isinstance(_core.__version__, str) and _core.__version__


def test_import_does_not_need_cosmos_xenna() -> None:
    result = _run_python(
        """
        import sys
        import nemo_curator, nemo_curator.pipeline, nemo_curator.backends.xenna
        assert "cosmos_xenna" not in sys.modules
        """
    )
    assert result.returncode == 0, result.stderr


def test_non_linux_platform_raises_value_error() -> None:
    result = _run_python(
        """
        import sys
        sys.platform = "darwin"
        try:
            import nemo_curator
        except ValueError as err:
            print("ValueError:", err)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "ValueError:" in result.stdout
    assert "darwin" in result.stdout


@pytest.mark.parametrize(("release", "warns"), [(False, True), (True, False)])
def test_debug_build_warns(release: bool, warns: bool) -> None:
    result = _run_python(
        f"""
        import sys, types, warnings
        fake = types.ModuleType("nemo_curator._core")
        fake.__version__ = "0.0.0-test"
        fake.RELEASE_BUILD = {release}
        sys.modules["nemo_curator._core"] = fake
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import nemo_curator
        print([(w.category.__name__, str(w.message)) for w in caught if "debug mode" in str(w.message)])
        print(nemo_curator.__core_version__)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert ("RuntimeWarning" in lines[0]) is warns
    assert lines[1] == "0.0.0-test"


def test_experimental_package_import_is_lazy() -> None:
    result = _run_python(
        """
        import sys
        import nemo_curator.backends.experimental as experimental
        assert "ray.data" not in sys.modules, "importing the package imported ray.data"
        assert "nemo_curator.backends.experimental.ray_data" not in sys.modules
        assert "nemo_curator.backends.experimental.ray_actor_pool" not in sys.modules
        assert sorted(experimental.__all__) == ["RayActorPoolExecutor", "RayDataExecutor"]
        try:
            experimental.NotAnExecutor
        except AttributeError:
            print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("RayDataExecutor", "nemo_curator.backends.experimental.ray_data"),
        ("RayActorPoolExecutor", "nemo_curator.backends.experimental.ray_actor_pool"),
    ],
)
def test_experimental_reexports_match_subpackages(name: str, module: str) -> None:
    import importlib

    import nemo_curator.backends.experimental as experimental

    try:
        subpackage = importlib.import_module(module)
    except ImportError:
        # Until the subpackage exists, the re-export fails the same way (no placeholder class).
        with pytest.raises(ImportError):
            getattr(experimental, name)
        return
    assert getattr(experimental, name) is getattr(subpackage, name)


# Curator's package_info names, each with the type Curator gives it; the package re-exports the dunder ones.
CURATOR_METADATA_TYPES: dict[str, type] = {
    "__contact_emails__": str,
    "__contact_names__": str,
    "__description__": str,
    "__download_url__": str,
    "__homepage__": str,
    "__keywords__": str,
    "__license__": str,
    "__package_name__": str,
    "__repository_url__": str,
    "__shortversion__": str,
    "__version__": str,
}


@pytest.mark.parametrize(("name", "kind"), sorted(CURATOR_METADATA_TYPES.items()))
def test_curator_metadata_names_are_defined_and_reexported(name: str, kind: type) -> None:
    value = getattr(package_info, name)
    assert isinstance(value, kind)
    assert getattr(nemo_curator, name) is value
    assert name in nemo_curator.__all__
    exec(f"from nemo_curator import {name}", {})


def test_metadata_describes_this_package_not_curator() -> None:
    assert package_info.__package_name__ == "nemo_curator"
    assert "nemo-curator-rs" in package_info.__homepage__
    assert "nemo-curator-rs" in package_info.__download_url__
    assert "nemo-curator-rs" in package_info.__contact_names__
    for name in ("__contact_emails__", "__homepage__", "__repository_url__", "__download_url__"):
        assert "nvidia" not in getattr(package_info, name).lower(), name
    assert package_info.__contact_names__ != "NVIDIA"
    keywords = [k.strip() for k in package_info.__keywords__.split(",")]
    assert all(keywords) and "Rust" in keywords and "Ray" in keywords


def test_version_tuple_matches_version_strings() -> None:
    major, minor, patch, pre, dev = package_info.VERSION
    assert (major, minor, patch, pre, dev) == (
        package_info.MAJOR,
        package_info.MINOR,
        package_info.PATCH,
        package_info.PRE_RELEASE,
        package_info.DEV,
    )
    assert all(isinstance(part, int) for part in (major, minor, patch))
    assert isinstance(pre, str) and isinstance(dev, str)
    assert package_info.__shortversion__ == f"{major}.{minor}.{patch}"
    assert package_info.__version__ == package_info.__shortversion__ + pre + (f".{dev}" if dev else "")
