from fewlabel.retrieval.cli import main

raise SystemExit(main())
