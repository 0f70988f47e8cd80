"""nemo-curator-rs: Ray-native, Rust-cored execution backends, API-compatible with NeMo Curator v1.1.0."""

import os
import sys
import warnings

if sys.platform != "linux":
    msg = f"nemo_curator supports only Linux, not {sys.platform!r}."
    raise ValueError(msg)

# Set before anything imports RAPIDS or starts Ray, so that the driver and the Ray workers it spawns (which
# inherit this environment and import this package to unpickle stages) see the same values.
os.environ["RAPIDS_NO_INITIALIZE"] = "1"
# Curator takes this limit from cosmos_xenna's API_LIMIT (40000); it lets Ray's state API list large clusters.
_RAY_STATE_API_LIMIT = "40000"
os.environ["RAY_MAX_LIMIT_FROM_API_SERVER"] = _RAY_STATE_API_LIMIT
os.environ["RAY_MAX_LIMIT_FROM_DATA_SOURCE"] = _RAY_STATE_API_LIMIT

from nemo_curator import _core  # noqa: E402
from nemo_curator import package_info as _package_info  # noqa: E402
from nemo_curator.package_info import __core_version__, __version__  # noqa: E402

# Curator's package re-exports its metadata from package_info; export each of those names package_info defines.
_CURATOR_METADATA = (
    "__contact_emails__",
    "__contact_names__",
    "__description__",
    "__download_url__",
    "__homepage__",
    "__keywords__",
    "__license__",
    "__package_name__",
    "__repository_url__",
    "__shortversion__",
)
for _name in _CURATOR_METADATA:
    if hasattr(_package_info, _name):
        globals()[_name] = getattr(_package_info, _name)
del _name

if not _core.RELEASE_BUILD:
    warnings.warn(
        "nemo_curator._core was compiled in debug mode and will be slow; "
        "rebuild it with `maturin develop --release`.",
        RuntimeWarning,
        stacklevel=2,
    )

__all__ = ["__core_version__", "__version__", *(n for n in _CURATOR_METADATA if n in globals())]
