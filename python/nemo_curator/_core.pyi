# Hand-written stub for the native module `nemo_curator._core`; checked by `python -m mypy.stubtest`.
# Each section belongs to one Rust module of rust/curator-py/src.

# --- lib.rs -------------------------------------------------------------------------------------
__version__: str
RELEASE_BUILD: bool

# --- errors.rs ----------------------------------------------------------------------------------
class CuratorCoreError(RuntimeError): ...
class ConfigError(CuratorCoreError): ...
class InfeasibleError(CuratorCoreError): ...
class ProtocolError(CuratorCoreError): ...

# --- scheduler.rs -------------------------------------------------------------------------------

# --- arrow.rs -----------------------------------------------------------------------------------

# --- codec.rs -----------------------------------------------------------------------------------
