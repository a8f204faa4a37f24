"""The actors of jewelry-fanout as plain classes: models, Producer, Dispatcher and six stages.

Nothing here applies `ray.remote`; `orchestration` does that at wiring time, so every class can
be built and unit-tested in a plain Python process.
"""
