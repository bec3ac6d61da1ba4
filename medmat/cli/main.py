"""The ``medmat`` command.

Every sub-command reads its data through :func:`medmat.data.load.load_dataset` (which validates
it), writes through :mod:`medmat.io.atomic`, and reports user errors as one line on stderr with
a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from medmat import __version__
from medmat.errors import MedmatError

#: Where each sub-command's code sits, beside the others of its kind (each module lists its
#: ``COMMANDS``). A module is imported when one of its commands runs or is listed by ``--help``, so
#: that a command loads what its own module imports at its top and no more: ``medmat train`` does not
#: load the classical solvers (pymatting, numba), nor ``medmat label`` scikit-learn.
COMMAND_MODULES = {
    "info": "medmat.cli.data_commands",
    "split": "medmat.cli.data_commands",
    "label": "medmat.cli.data_commands",
    "phantoms": "medmat.cli.data_commands",
    "baseline": "medmat.cli.matting_commands",
    "train": "medmat.cli.model_commands",
    "crossval": "medmat.cli.model_commands",
    "predict": "medmat.cli.model_commands",
    "evaluate": "medmat.cli.model_commands",
    "interact": "medmat.cli.interaction_commands",
    "serve": "medmat.cli.app_commands",
    "offsets": "medmat.cli.figure_commands",
}

#: Exit status for a user error (bad input, bad option value); click itself uses 2 for usage errors.
EXIT_USER_ERROR = 1


class CommandGroup(click.Group):
    """The ``medmat`` group: its sub-commands are looked up in :data:`COMMAND_MODULES` when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMAND_MODULES:
            return None
        module = importlib.import_module(COMMAND_MODULES[name])
        return next(command for command in module.COMMANDS if command.name == name)


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="medmat")
def cli() -> None:
    """medmat: medical image matting — alpha mattes of ambiguous lesions, with uncertainty.

    Datasets (--data) are: a Medical Matting release (.pkl or .zip), a folder of LIDC-IDRI slices,
    a medmat folder dataset (with dataset.json, see docs/data-format.md), the alphamatting.com
    low-resolution folder, or `phantom[:N]` for N built-in synthetic phantoms.
    """


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the CLI, turning user errors into one line and exit 1."""
    try:
        cli.main(args=argv, prog_name="medmat", standalone_mode=False)
    except MedmatError as error:
        click.echo(f"medmat: error: {error}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("medmat: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("medmat: interrupted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Exit as done:
        return done.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
