"""Local HTTP servers that stand in for the internet in Zoo's download tests.

- `tests.servers.static`: a storage.googleapis.com-style static file server (Keras weights).
- `tests.servers.hub`: a Hugging Face Hub-compatible server for `huggingface_hub`.
- `tests.servers.base`: what both share: `Fault` injection, the request log, `ServerProcess`.

Import from the submodules: importing them here would make `python -m tests.servers.static`
load its module twice.
"""
