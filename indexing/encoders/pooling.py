"""Mean pooling, the one pooling every fewlabel encoder uses, shared by the torch path and the ONNX export (which
traces it into the graph), so both pool the same way."""

from __future__ import annotations


def mean_pool(hidden, mask):
    """Average the token vectors where `mask` is 1: padding contributes nothing."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
