"""One module per command: ``build(cfg, rank_zero=True) -> cvtool.engine.task.Task``,
``build_model(cfg)`` and ``predict(...)``.

Each command's ``Config`` and ``TaskSpec`` (name, summary, options) live in
cvtool.tasks.specs, which imports no torch, so the CLI lists the tasks without loading them
(see cvtool.tasks.registry). Modules without a spec (``classify``, ``detect``, ``segment``)
hold what several tasks share.
"""
