from fewlabel.retrieval.cli import run

run()
