"""fewlabel.indexing: data in, vectors, storage, and the contracts every package shares.

Read labelled data (CSV/TSV/JSONL rows, sentence pairs, NLI pairs, relations), encode it with mean-pooled
transformer encoders, and keep it in a self-describing FAISS label index. Knows nothing of `retrieval`,
`finetune` or `benchmarks`.

    from fewlabel.indexing import Encoder, LabelIndex, read_rows

The names below load on first use (nothing heavy is imported with the package)."""

from typing import TYPE_CHECKING

from fewlabel.indexing.lazy import lazy_exports

_EXPORTS = {
    # encoders and the label index
    "Encoder": "fewlabel.indexing.encoders.encoder",
    "EmbeddingCache": "fewlabel.indexing.encoders.cache",
    "LabelIndex": "fewlabel.indexing.store.label_index",
    # readers
    "Row": "fewlabel.indexing.readers",
    "read_rows": "fewlabel.indexing.readers",
    "read_texts": "fewlabel.indexing.readers",
    "label_matrix": "fewlabel.indexing.readers",
    "PairRow": "fewlabel.indexing.sts.pairs",
    "read_pairs": "fewlabel.indexing.sts.pairs",
    "NLIPair": "fewlabel.indexing.nli.data",
    "read_nli": "fewlabel.indexing.nli.data",
    "RelationRow": "fewlabel.indexing.relation.data",
    "read_relations": "fewlabel.indexing.relation.data",
    # errors
    "FewlabelError": "fewlabel.indexing.errors",
    "DataError": "fewlabel.indexing.errors",
    "ModelError": "fewlabel.indexing.errors",
    "IndexMismatchError": "fewlabel.indexing.errors",
}

if TYPE_CHECKING:  # the real types for checkers and IDEs; at run time the names stay lazy
    from fewlabel.indexing.encoders.cache import EmbeddingCache as EmbeddingCache
    from fewlabel.indexing.encoders.encoder import Encoder as Encoder
    from fewlabel.indexing.errors import (
        DataError as DataError,
        FewlabelError as FewlabelError,
        IndexMismatchError as IndexMismatchError,
        ModelError as ModelError,
    )
    from fewlabel.indexing.nli.data import NLIPair as NLIPair, read_nli as read_nli
    from fewlabel.indexing.readers import (
        Row as Row,
        label_matrix as label_matrix,
        read_rows as read_rows,
        read_texts as read_texts,
    )
    from fewlabel.indexing.relation.data import RelationRow as RelationRow, read_relations as read_relations
    from fewlabel.indexing.store.label_index import LabelIndex as LabelIndex
    from fewlabel.indexing.sts.pairs import PairRow as PairRow, read_pairs as read_pairs

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
