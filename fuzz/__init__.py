"""Fuzzers for the parsers that read what clients and sandboxes send (issue 11, "Fuzzing").

Three targets, each a libFuzzer binary in effect (atheris for the Python ones):

* ``connect``: the Connect envelope and message parser of the sandbox plane
  (`sandlot.api.connect`) for unary, server-stream and client-stream calls, and the SDK's
  own parser of what comes back (`sandlot.sdk._core.connect`).
* ``files``: ``POST /files`` with raw and multipart bodies, plain or gzip, and ``GET /files``
  with gzip, through the sandbox plane's ASGI app.
* ``init_frames``: sandlot-init's frame parser (fuzz/init_frames.c), compiled with clang under
  AddressSanitizer and UBSan.

``python -m fuzz`` runs each for a bounded time with a fixed seed (see fuzz/__main__.py);
the seeds in fuzz/corpus/ are small on purpose.
"""
