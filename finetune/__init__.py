"""finetune: training heads on top of the encoders, with sentence-transformers' trainers (no hand loops).

Now: STS cross-encoder regression and bi-encoder fine-tuning (`finetune.sts`), shared settings
(`finetune.settings`). Relation extraction, NLI and SetFit heads come with their own issues."""
