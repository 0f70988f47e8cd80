"""Version information: the Curator API version this package implements and the native core's version."""

from nemo_curator import _core

__package_name__ = "nemo_curator"
__description__ = "Ray-native, Rust-cored execution backends for NeMo Curator pipelines"
__license__ = "Apache-2.0"

# The NeMo Curator API version whose public surface this package reproduces.
__version__ = "1.1.0"
# The version of the compiled Rust core (the nemo-curator-rs release).
__core_version__: str = _core.__version__
