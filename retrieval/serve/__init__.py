"""`fewlabel serve`: the label index as an HTTP service (FastAPI, run by uvicorn).

`app.create_app` builds the application; `service.Service` holds what it serves (the index, its encoder, the
optional STS and NLI models, loaded once at start) and does the work; `schemas` holds the request and response
models, so a bad field is a 422 that names it. Nothing here is imported by `fewlabel --help`."""
