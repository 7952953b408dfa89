"""The method names, with nothing heavy imported, so the CLI's parser can offer them and `fewlabel --help` stays
light."""

CANDIDATES = ("knn", "linear", "nb", "ensemble")  # the fast candidates auto scores; ties go to the first
TRAINED = ("setfit", "finetune")  # trained heads: auto scores them only within --budget (and with --valid)
METHOD_CHOICES = ("auto", *CANDIDATES, *TRAINED)
MIN_CV_ROWS = 6  # three folds of two rows: fit, tune and score each need one
