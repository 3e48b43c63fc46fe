"""`ringfence lsp`: the language server for editors (pygls over stdio).

server.py answers the LSP, workspace.py reads rules folders and open buffers, chunks.py
parses incrementally, worker.py checks in a separate process that checks.py runs with a
budget, features.py builds completion and hover, textmate.py generates the VS Code grammar.
"""
