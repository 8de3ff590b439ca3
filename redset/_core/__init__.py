"""redset's sans-I/O core: every operation as a plan that drivers run.

A *plan* is a generator. It yields requests (:mod:`redset._core.steps`):
commands to send, replies to read, a pause; it receives what each request
produced (a reply, decoded items, ``None``), and returns the operation's
result. Network errors are thrown into it at the request that failed, so the
plan alone decides what may be re-sent. Plans never touch a socket, a clock
they do not read themselves, a thread or an event loop: the sync and asyncio
drivers in :mod:`redset._io` run the same plans, and tests run them on
scripted replies.
"""
