"""mrl-index: approximate maximum-inner-product search over Matryoshka embeddings.

numpy in, numpy out::

    import mrl_index
    index = mrl_index.Index.build("items.idx", vectors)          # float32 [n, dim]
    ids, scores = index.search(queries, k=10)                    # uint64 / float32 [n, 10]
    truth, _ = index.exact_search(queries, k=10)
    print(mrl_index.recall_at_k(ids, truth))

and, with ONNX Runtime (``pip install onnxruntime``), a recommender's users::

    vectors = mrl_index.ItemEncoder("item_encoder.onnx").encode(item_features)
    index = mrl_index.Index.build("items.idx", vectors, ids=item_ids)
    encoder = mrl_index.QueryEncoder("query_encoder.onnx")
    ids, scores = index.recommend([[12, 7, 301], [5]], k=10, encoder=encoder)
"""

from ._mrl_index import Index, IndexCorrupt, ItemEncoder, QueryEncoder, recall_at_k

__all__ = ["Index", "IndexCorrupt", "ItemEncoder", "QueryEncoder", "recall_at_k"]
