"""The SDK's code that does no I/O: request building, answer parsing, error mapping, models.

Both the async SDK and the sync SDK generated from it call into these modules, so a protocol
detail is fixed in one place and tested without a server.
"""
