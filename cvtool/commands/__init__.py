"""The CLI's commands, one module per group; each has ``register(app)``.

``train`` generates one command per registered trainable task; ``predict``, ``evaluate``,
``config``, ``data``, ``stylize`` and ``export`` read what they need from cvtool.tasks.registry;
``runs`` (``runs`` and ``compare``) reads run directories already on disk.
"""

from cvtool.callable import make_callable

make_callable(__name__)  # cvtool.commands(...) is cvtool.api.commands
