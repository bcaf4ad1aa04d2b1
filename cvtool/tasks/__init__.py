"""One module per command, each ending with ``SPEC = registry.register(TaskSpec(...))``.

A task module holds its ``Config`` dataclass, ``build(cfg, rank_zero=True) ->
cvtool.engine.task.Task``, ``build_model(cfg)`` and ``predict(...)``; its ``TaskSpec``
tells the CLI the command name, summary and options (see cvtool.tasks.registry).
Modules without a SPEC (``classify``, ``registry``) hold what several tasks share.
"""
