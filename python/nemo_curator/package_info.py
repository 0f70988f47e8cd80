"""Version and project metadata.

The names mirror Curator's ``package_info`` (the package ``__init__`` re-exports them); the values describe
this package, nemo-curator-rs. The version tuple is the NeMo Curator API version this package implements;
``__core_version__`` is the version of the compiled Rust core (the nemo-curator-rs release).
"""

from nemo_curator import _core

MAJOR = 1
MINOR = 1
PATCH = 0
PRE_RELEASE = ""
DEV = ""

# (major, minor, patch, pre-release, dev), laid out as Curator's VERSION tuple is.
VERSION = (MAJOR, MINOR, PATCH, PRE_RELEASE, DEV)

__shortversion__ = f"{MAJOR}.{MINOR}.{PATCH}"
# The NeMo Curator API version whose public surface this package reproduces, with any pre-release/dev tags.
__version__ = __shortversion__ + PRE_RELEASE + (f".{DEV}" if DEV else "")

# The version of the compiled Rust core (the nemo-curator-rs release).
__core_version__: str = _core.__version__

__package_name__ = "nemo_curator"
__description__ = "Ray-native, Rust-cored execution backends for NeMo Curator pipelines"
__license__ = "Apache-2.0"
__contact_names__ = "nemo-curator-rs maintainers"
# No contact address or source repository is published for this package; the strings stay empty (not
# Curator's, which would send reports about this package to NVIDIA).
__contact_emails__ = ""
__homepage__ = "https://pypi.org/project/nemo-curator-rs/"
__repository_url__ = ""
__download_url__ = "https://pypi.org/project/nemo-curator-rs/#files"
__keywords__ = (
    "data curation, NeMo, NeMo Curator, Ray, Rust, Apache Arrow, distributed computing, "
    "preprocessing, NLP, LLM, large language model, machine learning"
)
