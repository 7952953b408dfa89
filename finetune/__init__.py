"""finetune: cross-encoder heads (STS, relation extraction, NLI) and SetFit.

Empty in this release: the training heads arrive with the STS, NLI and relation-extraction work."""
