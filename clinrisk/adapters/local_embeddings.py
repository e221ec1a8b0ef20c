"""Local embeddings: WordLlama 0.4 (256-d), whose weights and tokenizer ship inside its wheel.

Its default lookup misses the packaged tokenizer and reaches for the network; loading with the
package's own folder as `cache_dir` and downloads disabled finds both files in the wheel, needs
only numpy, safetensors and tokenizers (no torch), takes about 0.1 s, and never downloads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIMENSIONS = 256
WORDLLAMA_ID = f"wordllama-0.4/{WORDLLAMA_CONFIG}-{WORDLLAMA_DIMENSIONS}"


def _import_wordllama() -> Any:
    """wordllama calls `logging.basicConfig` on import, which would install a root handler in our
    processes; with a handler already in place that call does nothing, so one stands in meanwhile."""
    root = logging.getLogger()
    stand_in = logging.NullHandler()
    root.addHandler(stand_in)
    try:
        import wordllama
    finally:
        root.removeHandler(stand_in)
    return wordllama


def wordllama_folder() -> Path:
    return Path(_import_wordllama().__file__).resolve().parent


class WordLlamaEmbedder:
    model_id = WORDLLAMA_ID
    dimensions = WORDLLAMA_DIMENSIONS

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _import_wordllama().WordLlama.load(
                    WORDLLAMA_CONFIG, cache_dir=wordllama_folder(), dim=WORDLLAMA_DIMENSIONS, disable_download=True
                )
            return self._model

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        vectors = np.asarray(self._loaded().embed(list(texts), norm=True), dtype=np.float32)
        return vectors.reshape(len(texts), self.dimensions)
