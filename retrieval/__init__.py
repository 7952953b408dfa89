"""retrieval: kNN label voting with tuned (k, m), and the `fewlabel` command line."""
