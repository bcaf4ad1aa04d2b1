"""The CLI's commands, one module per group; each has ``register(app)``.

``train`` generates one command per registered trainable task; ``predict``, ``evaluate``,
``config``, ``data``, ``stylize`` and ``export`` read what they need from cvtool.tasks.registry;
``runs`` (``runs`` and ``compare``) reads run directories already on disk.
"""
