"""The one-shot code runner behind ``POST /execute``: languages, runner sandboxes, the queue.

Modules: `languages` (the language files and their catalog), `models` (request and answer
bodies), `steps` (compile and run one program in one sandbox), `service` (the `Executor`:
pools of runner sandboxes per template, and the queue in front of them).
"""
