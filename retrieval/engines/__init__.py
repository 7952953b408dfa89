"""Ways to run `fewlabel predict` over many texts: the local engine is the router itself
(`fewlabel.retrieval.router.Predictor`); `ray_batch` runs the same Predictor on Ray Data actors."""
