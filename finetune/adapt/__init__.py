"""Domain adaptation without labels: train an encoder on a user's unlabelled texts (chapter 9's third question,
"is there unlabelled data?") so that kNN, zero-shot and every other consumer of the encoder see the domain.
The result is an encoder folder that works wherever a model name does.

    from fewlabel.finetune.adapt.trainer import adapt_encoder"""
