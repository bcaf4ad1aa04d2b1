"""Each built-in task's declaration: its ``Config`` schema and ``SPEC``, importable without torch.

``cvtool --help``, ``config show`` and shell completion read these; a spec names its task's
code ("cvtool.tasks.ssd:build") so that torch loads only when a command runs. ``classify`` and
``detect`` hold config sections several tasks share.
"""
