"""mrl-index: approximate maximum-inner-product search over Matryoshka embeddings.

numpy in, numpy out::

    import mrl_index
    index = mrl_index.Index.build("items.idx", vectors)          # float32 [n, dim]
    ids, scores = index.search(queries, k=10)                    # uint64 / float32 [n, 10]
    truth, _ = index.exact_search(queries, k=10)
    print(mrl_index.recall_at_k(ids, truth))
"""

from ._mrl_index import Index, IndexCorrupt, recall_at_k

__all__ = ["Index", "IndexCorrupt", "recall_at_k"]
