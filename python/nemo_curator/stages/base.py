"""``ProcessingStage`` (one step of a pipeline), ``CompositeStage`` and the stage registry."""

from __future__ import annotations

import copy
import inspect
import numbers
from abc import ABC, ABCMeta, abstractmethod
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, final

from loguru import logger

from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import Task

if TYPE_CHECKING:
    from nemo_curator.backends.base import NodeInfo, WorkerMetadata

X = TypeVar("X", bound=Task)
Y = TypeVar("Y", bound=Task)

_STAGE_REGISTRY: dict[str, type] = {}


class StageMeta(ABCMeta):
    """Registers every concrete stage class by its class name."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        if namespace.get("_is_abstract_root", False):
            return cls
        # Matching by name keeps classes built from reloaded modules registrable.
        derives_from_stage = any(base.__name__ == "ProcessingStage" for base in cls.__mro__[1:])
        if derives_from_stage and not inspect.isabstract(cls):
            _STAGE_REGISTRY[cls.__name__] = cls
        return cls


def get_stage_class(name: str) -> type[ProcessingStage]:
    """The registered stage class called ``name``; ``KeyError`` if there is none."""
    if name not in _STAGE_REGISTRY:
        msg = f"Stage {name!r} is not registered"
        raise KeyError(msg)
    return cast("type[ProcessingStage]", _STAGE_REGISTRY[name])


_UNSET: Any = object()


class _Returns:
    """A picklable stand-in for a stage method that returns a fixed value (a copy of it for dicts)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return copy.deepcopy(self.value)


class ProcessingStage(ABC, Generic[X, Y], metaclass=StageMeta):
    """One step of a pipeline: turns each input task into zero, one or many output tasks.

    Subclasses set the class (or instance) attributes ``name``, ``resources`` and ``batch_size`` and implement
    ``process``. ``process`` may return one task, a list of tasks, or ``None`` (or ``[]``) to drop the input.
    """

    _is_abstract_root = True
    name: str = "ProcessingStage"
    resources: Resources = Resources(cpus=1.0)
    batch_size: int | None = 1
    #: Ray runtime environment of this stage's workers (Ray's format: `env_vars`, `pip`, `conda`, ...),
    #: merged over the executor's `runtime_env` (`env_vars` key by key, the stage's value winning).
    runtime_env: dict[str, Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in ("_name", "_resources", "_batch_size"):
            if attr in cls.__dict__:
                msg = f"{cls.__name__} must not override '{attr}'"
                raise TypeError(msg)

    @property
    @final
    def _name(self) -> str:
        return self.name

    @property
    @final
    def _resources(self) -> Resources:
        return self.resources

    @property
    @final
    def _batch_size(self) -> int | None:
        return self.batch_size

    def num_workers(self) -> int | None:
        """A fixed number of workers for this stage, or ``None`` to let the executor decide."""
        return None

    def validate_input(self, task: X) -> bool:
        """Whether ``task`` has the attributes and columns listed in ``inputs()``; logs what is missing."""
        top_level_attrs, data_attrs = self.inputs()
        missing_top = [attr for attr in top_level_attrs if not hasattr(task, attr)]
        columns: list[str] = []
        get_columns = getattr(task, "get_columns", None)
        if data_attrs and callable(get_columns):
            try:
                columns = list(get_columns())
            except TypeError:
                columns = []
        # Columns count as present through the task's columns too, so pyarrow tables validate like pandas.
        missing_data = [attr for attr in data_attrs if not hasattr(task.data, attr) and attr not in columns]
        if missing_top:
            logger.error(f"Task {task} is missing attributes {missing_top} required by stage {self}")
        if missing_data:
            logger.error(f"Task {task} data is missing {missing_data} required by stage {self}")
        return not missing_top and not missing_data

    @abstractmethod
    def process(self, task: X) -> Y | list[Y] | None:
        """Process one task: return one task, a list of tasks, or ``None``/``[]`` to filter it out."""

    def process_batch(self, tasks: list[X]) -> list[Y]:
        """Process a batch; the default validates and processes each task and concatenates the results."""
        results: list[Any] = []
        for task in tasks:
            if not self.validate_input(task):
                msg = f"Task {task!s} failed validation for stage {self}"
                raise ValueError(msg)
            result = self.process(task)
            if isinstance(result, list):
                results.extend(result)
            else:
                results.append(result)
        return results

    def setup_on_node(
        self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
    ) -> None:
        """Once per node before any worker of this stage starts there (e.g. download a model)."""

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        """Once per worker before its first batch (e.g. load a model)."""

    def teardown(self) -> None:
        """Once per worker after its last batch."""

    def supports_batch_processing(self) -> bool:
        """Whether the stage overrides ``process_batch``."""
        return type(self).process_batch is not ProcessingStage.process_batch

    def __repr__(self) -> str:
        return type(self).__name__

    def inputs(self) -> tuple[list[str], list[str]]:
        """``(task attributes, data attributes/columns)`` the stage needs."""
        return [], []

    def outputs(self) -> tuple[list[str], list[str]]:
        """``(task attributes, data attributes/columns)`` the stage produces."""
        return [], []

    def xenna_stage_spec(self) -> dict[str, Any]:
        return {}

    def ray_stage_spec(self) -> dict[str, Any]:
        """Hints for the Ray executors; keys are ``RayStageSpecKeys`` values."""
        return {}

    def with_(
        self,
        name: str | None = None,
        resources: Resources | None = None,
        batch_size: int | None = None,
        runtime_env: dict[str, Any] | None = None,
        ray_stage_spec: dict[str, Any] | None = None,
        xenna_stage_spec: dict[str, Any] | None = None,
        num_workers: Any = _UNSET,
    ) -> ProcessingStage[X, Y]:
        """A copy of this stage with the given (non-``None``) settings; the original is unchanged.

        ``ray_stage_spec`` / ``xenna_stage_spec`` are merged over the stage's own (the given keys win);
        ``num_workers=N`` makes ``num_workers()`` return N (an explicit ``None``: the executor decides).
        """
        if xenna_stage_spec is not None and "num_workers" in xenna_stage_spec:
            msg = (
                f"Stage '{self.name}': xenna_stage_spec must not set num_workers; use with_(num_workers=...)"
            )
            raise ValueError(msg)
        new_stage = copy.deepcopy(self)
        if name is not None:
            new_stage.name = name
        if resources is not None:
            new_stage.resources = resources
        if batch_size is not None:
            new_stage.batch_size = batch_size
        if runtime_env is not None:
            new_stage.runtime_env = copy.deepcopy(runtime_env)
        # Instance attributes shadow the methods; `_Returns` keeps the copy picklable for Ray workers.
        if ray_stage_spec is not None:
            new_stage.ray_stage_spec = _Returns({**(self.ray_stage_spec() or {}), **ray_stage_spec})  # type: ignore[method-assign]
        if xenna_stage_spec is not None:
            new_stage.xenna_stage_spec = _Returns({**(self.xenna_stage_spec() or {}), **xenna_stage_spec})  # type: ignore[method-assign]
        if num_workers is not _UNSET:
            new_stage.num_workers = _Returns(num_workers)  # type: ignore[method-assign]
        return new_stage

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resources": self.resources,
            "batch_size": self.batch_size,
            "supports_batch_processing": self.supports_batch_processing(),
        }

    def _log_metrics(self, metrics: dict[str, Any]) -> None:
        """Record numeric custom metrics for the batch being processed (attached to its perf stats)."""
        store: dict[str, float] | None = getattr(self, "_custom_metrics", None)
        if store is None:
            store = {}
            self._custom_metrics = store
        for metric, value in metrics.items():
            if isinstance(value, numbers.Real):
                store[metric] = float(value)
            else:
                logger.warning(
                    f"Stage {self.name}: ignoring custom metric {metric!r} with non-numeric value {value!r}"
                )

    def _log_metric(self, name: str, value: float) -> None:
        self._log_metrics({name: value})

    def _consume_custom_metrics(self) -> dict[str, float]:
        """Return the recorded custom metrics and forget them."""
        store: dict[str, float] | None = getattr(self, "_custom_metrics", None)
        if store is None:
            return {}
        metrics = dict(store)
        del self._custom_metrics
        return metrics


class CompositeStage(ProcessingStage[X, Y], ABC):
    """A stage that stands for a sequence of stages; pipelines replace it by ``decompose()`` when built."""

    def __init__(self) -> None:
        self._with_operations: list[dict[str, dict[str, Any]]] = []

    def inputs(self) -> tuple[list[str], list[str]]:
        return self.decompose()[0].inputs()

    def outputs(self) -> tuple[list[str], list[str]]:
        return self.decompose()[-1].outputs()

    @abstractmethod
    def decompose(self) -> list[ProcessingStage]:
        """The stages this composite runs, in order."""

    def with_(self, stage_with_dict: dict[str, dict[str, Any]]) -> CompositeStage[X, Y]:  # type: ignore[override]
        """Queue ``{sub-stage name: with_() kwargs}`` changes, applied at decomposition. Mutates and returns self."""
        if not hasattr(self, "_with_operations"):
            self._with_operations = []
        self._with_operations.append(stage_with_dict)
        return self

    def decompose_and_apply_with(self) -> list[ProcessingStage]:
        return self._apply_with_(self.decompose())

    def _apply_with_(self, stages: list[ProcessingStage]) -> list[ProcessingStage]:
        stages = list(stages)
        for operation in getattr(self, "_with_operations", []):
            names = [stage.name for stage in stages]
            if len(set(names)) != len(names):
                msg = (
                    "All stages must have unique names in composite stage to apply configuration changes "
                    "using with_()."
                )
                raise ValueError(msg)
            position = {stage_name: index for index, stage_name in enumerate(names)}
            for stage_name, config in operation.items():
                if stage_name not in position:
                    msg = (
                        f"Stage {stage_name} not found in composite stage to apply configuration changes "
                        "using with_()."
                    )
                    raise ValueError(msg)
                index = position[stage_name]
                stages[index] = stages[index].with_(**config)
        return stages

    def process(self, task: X) -> Y | list[Y]:
        msg = (
            f"Composite stage '{self.name}' should not be executed directly. "
            "It is decomposed into its stages when the pipeline is built."
        )
        raise RuntimeError(msg)

    def get_description(self) -> str:
        return f"Composite stage: {self.name}"
