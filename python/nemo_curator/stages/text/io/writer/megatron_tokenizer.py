"""``MegatronTokenizerWriter``: tokenize documents and write Megatron-LM ``.bin`` / ``.idx`` pairs.

``transformers`` and ``huggingface_hub`` are imported only when the stage sets up, so importing this module
(and the writer package) does not need them.
"""

from __future__ import annotations

import importlib
import struct
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from nemo_curator.stages.text.io.writer.base import BaseWriter
from nemo_curator.tasks import DocumentBatch, FileGroupTask

if TYPE_CHECKING:
    from nemo_curator.backends.base import NodeInfo, WorkerMetadata

# Megatron-LM's ``MMIDIDX`` index layout: header, version, dtype code, counts, then three arrays.
_INDEX_HEADER = b"MMIDIDX\x00\x00"
_INDEX_VERSION = 1
_DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}
# Megatron stores tokens as uint16 when every id fits comfortably, else int32.
_UINT16_VOCAB_LIMIT = 65500


def _import_optional(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        msg = (
            f"MegatronTokenizerWriter needs the '{module}' package, which is not installed "
            "(pip install transformers huggingface_hub)"
        )
        raise ImportError(msg) from err


def write_megatron_index(fs: Any, path: str, sequence_lengths: np.ndarray, token_dtype: np.dtype) -> None:
    """Write an ``MMIDIDX`` index for documents of one sequence each."""
    lengths = np.asarray(sequence_lengths, dtype=np.int32)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * token_dtype.itemsize, out=pointers[1:])
    document_indices = np.arange(len(lengths) + 1, dtype=np.int64)
    with fs.open(path, "wb") as handle:
        handle.write(_INDEX_HEADER)
        handle.write(struct.pack("<Q", _INDEX_VERSION))
        handle.write(struct.pack("<B", _DTYPE_CODES[token_dtype]))
        handle.write(struct.pack("<Q", len(lengths)))
        handle.write(struct.pack("<Q", len(document_indices)))
        handle.write(lengths.tobytes(order="C"))
        handle.write(pointers.tobytes(order="C"))
        handle.write(document_indices.tobytes(order="C"))


@dataclass
class MegatronTokenizerWriter(BaseWriter):
    """Tokenize ``text_field`` with a Hugging Face tokenizer and write ``<hash>.bin`` and ``<hash>.idx``.

    Each document becomes one sequence (followed by the EOS token when ``append_eod``). The returned task
    lists both files and carries ``file_prefix``, ``num_tokens``, ``token_size`` (bytes per token) and
    ``eod_token_id`` in its metadata.
    """

    file_extension: list[str] = field(default_factory=lambda: [".bin", ".idx"])  # type: ignore[assignment]
    write_kwargs: dict[str, Any] = field(default_factory=dict)
    fields: list[str] | None = field(init=False, default=None)
    name: str = "megatron_tokenizer_writer"
    model_identifier: str | None = None
    cache_dir: str | None = None
    hf_token: str | None = None
    text_field: str = "text"
    tokenization_batch_size: int = 1000
    append_eod: bool = False

    def __post_init__(self) -> None:
        if self.model_identifier is None:
            raise ValueError("model_identifier is required and must be provided")
        super().__post_init__()

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field]

    def setup_on_node(
        self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
    ) -> None:
        hub = _import_optional("huggingface_hub")
        hub.snapshot_download(repo_id=self.model_identifier, cache_dir=self.cache_dir, token=self.hf_token)

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        transformers = _import_optional("transformers")
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(
            self.model_identifier, cache_dir=self.cache_dir, token=self.hf_token, local_files_only=True
        )

    def _token_dtype(self) -> np.dtype:
        vocab_size = len(self._tokenizer)
        return np.dtype(np.uint16) if vocab_size < _UINT16_VOCAB_LIMIT else np.dtype(np.int32)

    def write_data(self, task: DocumentBatch, file_path: str) -> None:
        self._write_pair(task, file_path)

    def _write_pair(self, task: DocumentBatch, file_prefix: str) -> dict[str, Any]:
        if getattr(self, "_tokenizer", None) is None:
            self.setup()
        token_dtype = self._token_dtype()
        eod = self._tokenizer.eos_token_id
        if self.append_eod and eod is None:
            raise ValueError(f"Tokenizer {self.model_identifier} has no EOS token to append")
        texts = task.to_pyarrow().column(self.text_field).to_pylist()
        lengths: list[int] = []
        with self.fs.open(f"{file_prefix}.bin", "wb") as handle:
            for start in range(0, len(texts), self.tokenization_batch_size):
                batch = [text or "" for text in texts[start : start + self.tokenization_batch_size]]
                for ids in self._tokenizer(batch)["input_ids"]:
                    tokens = [*ids, eod] if self.append_eod else list(ids)
                    handle.write(np.asarray(tokens, dtype=token_dtype).tobytes(order="C"))
                    lengths.append(len(tokens))
        write_megatron_index(self.fs, f"{file_prefix}.idx", np.asarray(lengths), token_dtype)
        return {"num_tokens": int(sum(lengths)), "token_size": token_dtype.itemsize, "eod_token_id": eod}

    def process(self, task: DocumentBatch) -> FileGroupTask:
        file_prefix = self.fs.sep.join([self._fs_path, self._base_filename(task)])
        stats = self._write_pair(task, file_prefix)
        logger.debug(f"Written {task.num_items} documents ({stats['num_tokens']} tokens) to {file_prefix}")
        return FileGroupTask(
            task_id=task.task_id,
            dataset_name=task.dataset_name,
            data=[f"{file_prefix}.bin", f"{file_prefix}.idx"],
            _metadata={**task._metadata, "format": "megatron", "file_prefix": file_prefix, **stats},
            _stage_perf=task._stage_perf,
            reader_config={},
        )
