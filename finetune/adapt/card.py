"""The model card (``README.md``) of an adapted encoder: what it was adapted on, how, for how many steps and how
long, so a folder found later says where its vectors come from. Laid out by the one card layout of
:mod:`fewlabel.finetune.model_card`."""

from __future__ import annotations

from fewlabel.finetune.model_card import ModelCard, number, render

COSTS = {
    "mlm": ("The base checkpoint has no masked-LM head: its output matrix is tied to the word embeddings, but its "
            "dense transform and layer norm ({n} weights: {names}) started at random. The first steps train that "
            "head, and until it is trained the encoder's gradients pass through a random layer. First logged loss "
            "{first}, last {last}."),
    "tsdae": ("The decoder was built from the encoder's own config and shares its weights (tie_encoder_decoder); "
              "its cross-attention layers and LM-head transform started at random. First logged loss {first}, "
              "last {last}."),
    "simcse": "First logged loss {first}, last {last} (in-batch contrastive loss; ln(batch size) is chance).",
}


def model_card(info: dict) -> str:
    data, s = info["data"], info["settings"]
    head = info.get("mlm_head") or {}
    names = ", ".join(f"`{n}`" for n in head.get("new_weights", [])[:6]) or "none reported"
    cost = COSTS[info["method"]].format(n=f"{head.get('head_parameters', 0):,}", names=names,
                                        first=number(info["first_loss"]), last=number(info["last_loss"]))
    rows: list[tuple[str, object]] = [*s.items(), ("steps", f"{info['steps']:,}"), ("device", info["device"]),
                                      ("wall time", f"{info['train_seconds']} s"),
                                      ("CPU time (all threads)", f"{info['cpu_seconds']} s")]
    if info.get("resumed_from"):
        rows.append(("resumed from", f"`{info['resumed_from']}`"))
    card = ModelCard(
        title=f"fewlabel adapted encoder ({info['method']})",
        intro=[f"Adapted from `{info['base']}` on unlabelled texts by fewlabel ({info['trained_at']}), with "
               f"sentence-transformers {info['versions']['sentence_transformers']} and transformers "
               f"{info['versions']['transformers']}. Embeddings are mean-pooled (prefix {info['prefix']!r}, at most "
               f"{info['max_length']} tokens), as fewlabel's `Encoder` computes them."],
        data=[f"- source: `{data.get('source', '(given in Python)')}`",
              f"- {data['texts_read']:,} texts read; {data['empty']:,} empty and {data['duplicates']:,} duplicates "
              f"dropped; {data['texts_used']:,} used (fingerprint `{data['fingerprint']}`)",
              f"- {info['texts_seen']:,} texts seen in training ({info['steps']:,} steps x batch {s['batch_size']})"],
        method=[f"- objective: {info['objective']}", f"- {cost}"],
        settings_title="Settings and time", settings=rows, use_lead="Anywhere a model name goes:",
        use_shell=["fewlabel index build train.csv --model THIS_FOLDER --valid valid.csv --out my-index",
                   "fewlabel bench slices train.csv --test test.csv --encoders e5-small,THIS_FOLDER --out slices"],
        use_python=["from fewlabel.indexing import Encoder", "Encoder(\"THIS_FOLDER\").encode([\"a text\"])"])
    return render(card)
