"""The ``cvtool`` command line: the app, ``main`` and the mapping of errors to exit codes.

The commands live in cvtool.commands; the train commands, ``stylize``, the ``data synth``
kinds and ``predict``'s option checks are generated from cvtool.tasks.registry when
``main`` runs, so a task registered before then is a command. Building them reads only the
tasks' declarations, so ``--help``, ``config show``, ``runs`` and shell completion answer
without importing torch; a command that needs it imports it when it runs. This module and
cvtool.commands are the only ones that print results or read argv; everything below
raises cvtool.errors, and ``main`` turns those into one line on stderr and the documented
exit code (0 ok, 2 bad input, 3 missing, 4 quality gate failed, 130 interrupted).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback

from typing import TYPE_CHECKING

import typer

import cvtool
from cvtool.errors import CvtoolError, GateFailed, Interrupted

if TYPE_CHECKING:
    from cvtool.engine import signals

FLAGS_BEFORE_COMMAND = {"--debug", "--version"}


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cvtool {cvtool.__version__}")
        raise typer.Exit()


def root(version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                      help="Print the version and exit."),
         debug: bool = typer.Option(False, "--debug", help="Show a traceback for unexpected errors.")) -> None:
    if debug:
        os.environ["CVTOOL_DEBUG"] = "1"


def make_app() -> typer.Typer:
    """The app for the tasks registered now."""
    from cvtool.commands import benchmark, config, data, evaluate, export, predict, runs, stylize, train
    from cvtool.tasks import registry

    registry.discover()
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Train and run the classic computer-vision tasks end to end.")
    app.callback()(root)
    for group in (train, stylize, predict, evaluate, config, data, export, benchmark, runs):
        group.register(app)
    return app


def version_only(args: list[str]) -> bool:
    """``cvtool --version`` answers before the commands are built."""
    return "--version" in args and all(a in FLAGS_BEFORE_COMMAND for a in args)


def normalize_argv(argv: list[str]) -> list[str]:
    """Let ``--resume`` stand alone: click options cannot take an optional value."""
    if "--resume" not in argv:
        return argv
    from cvtool.engine.run import RESUME_LAST  # a training command's: it loads torch anyway

    out = []
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--resume" and (following is None or following.startswith("-")):
            out.append(f"--resume={RESUME_LAST}")
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command. A first SIGINT/SIGTERM stops it at once (the trainer defers it to a step
    boundary), later ones are ignored, so an interrupt always ends in one line and exit 130.
    ``argv`` None means this process is the command (the console script): once the outcome is
    reported, signals are ignored until it exits."""
    args = list(sys.argv[1:] if argv is None else argv)
    if version_only(args):
        print(f"cvtool {cvtool.__version__}")
        return 0
    from cvtool.engine import signals

    rank = os.environ.get("RANK", "0")
    who = "cvtool" if rank == "0" else f"cvtool[rank {rank}]"  # under torchrun a failure may be one rank's
    with contextlib.ExitStack() as stack:
        guard = signals.StopFlag(immediate=True)
        if argv is None:
            guard.__enter__()
        else:
            stack.enter_context(guard)
        try:
            code, line = dispatch(args, guard, rank)
        except KeyboardInterrupt:  # a signal while an error was being reported
            code, line = 130, interrupted(guard)
        guard.immediate = False  # nothing cuts the report short
        for text in (line or "").splitlines():  # a failed quality gate each on its line
            print(f"{who}: {text}", file=sys.stderr)
        if argv is None:  # the outcome is decided: a signal while the interpreter shuts down must not change it
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        return code


def interrupted(guard: signals.StopFlag) -> str:
    return f"interrupted: {signal.Signals(guard.signum).name if guard.signum else 'SIGINT'} received"


def dispatch(args: list[str], guard: signals.StopFlag, rank: str) -> tuple[int, str | None]:
    """The exit code and the one line to print for it."""
    from cvtool.commands.common import one_line, tidy_help, unexpected

    try:
        args = normalize_argv(args)
        command = typer.main.get_command(make_app())
        tidy_help(command)
        code = command.main(args=args, prog_name="cvtool", standalone_mode=False)
        if code == 130:  # typer turns KeyboardInterrupt into a silent exit 130
            raise KeyboardInterrupt
        return (code if isinstance(code, int) else 0), None
    except Interrupted as exc:  # every rank stops together; rank 0 saved and says how to resume
        return exc.exit_code, f"interrupted: {exc}" if rank == "0" else None
    except GateFailed as exc:  # a verdict on the model, not an error: "cvtool: gate failed: ..."
        return exc.exit_code, str(exc)
    except CvtoolError as exc:
        return exc.exit_code, f"error: {one_line(exc)}"
    except typer.Abort:
        return 130, "aborted"
    except typer.TyperException as exc:
        message = exc.format_message()
        return 2, f"error: {message}" if message else None
    except KeyboardInterrupt:
        return 130, interrupted(guard)
    except Exception as exc:  # noqa: BLE001 - the last line of defence, by design
        if os.environ.get("CVTOOL_DEBUG"):
            traceback.print_exc()
        return 1, f"unexpected error: {unexpected(exc)} (rerun with --debug for a traceback)"


def run() -> None:
    sys.exit(main())
