"""The wire protocol's shared parts, used by the server (`sandlot.api`), the agent
(`sandlot.agent`) and the SDK (`sandlot.sdk._core`) alike.

* `codes`: Connect codes, the one table of codes and HTTP statuses (`codes.Fault`), and the E2B
  REST error body ``{"code": <status>, "message": ...}``.
* `errors`: the exceptions a server side answers with, each naming its row of that table.
* `framing`: Connect envelopes (encode, incremental decode, end of stream) and content types.

Why one package: these existed four times (the Connect server, ``/files``, the SDK, the lifecycle
statuses) and had drifted apart. Nothing here does I/O or imports beyond the standard library, so
the SDK stays installable without the server's dependencies.
"""
