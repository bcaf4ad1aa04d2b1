"""``cvtool config show|validate``: every registered task's config schema."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cvtool import config as cfglib
from cvtool.errors import CvtoolError
from cvtool.tasks import registry

app = typer.Typer(no_args_is_help=True, help="Show or check task configs.")


@app.command("show")
def show(task: str = typer.Argument(..., help="A train command, e.g. finetune-hotdog.")) -> None:
    """Print the full default config with comments."""
    schema = registry.get(task).config
    typer.echo(f"# cvtool {task} defaults", nl=True)
    typer.echo(cfglib.render(schema()), nl=False)


@app.command("validate")
def validate(file: Path = typer.Argument(..., help="A YAML config file."),
             task: Optional[str] = typer.Option(None, "--task", help="Check against this task only.")) -> None:
    """Check a config file; with no --task, against every task."""
    names = [task] if task else [spec.command for spec in registry.specs()]
    errors: dict[str, CvtoolError] = {}
    fits = []
    for name in names:
        try:
            cfglib.load(registry.get(name).config, file)
            fits.append(name)
        except CvtoolError as exc:
            errors[name] = exc
    if fits:
        typer.echo(f"{file}: valid config for {', '.join(fits)}")
        return
    guess = next((n for n in names if n.split("-")[-1] in file.stem), names[0])
    raise errors[guess]


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="config")
