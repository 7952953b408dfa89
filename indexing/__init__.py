"""indexing: read labelled data, encode it with mean-pooled transformer encoders, and keep it in a
self-describing FAISS label index. Knows nothing of `retrieval`, `finetune` or `benchmarks`."""
