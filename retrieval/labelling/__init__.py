"""The labelling loop: which pool texts to label next (:mod:`.suggest`), which labelled rows look wrong
(:mod:`.check`), the index's method as a probability model (:mod:`.model`), the pool's vectors cached as one
matrix (:mod:`.pool`) and the selection rules themselves (:mod:`.strategies`, plain numpy and FAISS)."""
