"""The uvicorn glue of `ledger serve`: each worker's listening socket, the HTTP protocol, and the
factory that builds a worker's app."""
