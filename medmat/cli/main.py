"""The ``medmat`` command.

Every sub-command reads its data through :func:`medmat.data.load.load_dataset` (which validates
it), writes through :mod:`medmat.io.atomic`, and reports user errors as one line on stderr with
a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import sys

import click

from medmat import __version__
from medmat.cli import (
    app_commands,
    data_commands,
    figure_commands,
    interaction_commands,
    matting_commands,
    model_commands,
)
from medmat.errors import MedmatError

#: The modules of the sub-commands, each with its ``COMMANDS``: each command's code sits beside the
#: others of its kind. They import torch and the engine inside the commands, so importing the CLI stays cheap.
COMMAND_MODULES = (data_commands, matting_commands, model_commands, interaction_commands, app_commands, figure_commands)

#: Exit status for a user error (bad input, bad option value); click itself uses 2 for usage errors.
EXIT_USER_ERROR = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="medmat")
def cli() -> None:
    """medmat: medical image matting — alpha mattes of ambiguous lesions, with uncertainty.

    Datasets (--data) are: a Medical Matting release (.pkl or .zip), a folder of LIDC-IDRI slices,
    a medmat folder dataset (with dataset.json, see docs/data-format.md), the alphamatting.com
    low-resolution folder, or `phantom[:N]` for N built-in synthetic phantoms.
    """


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()


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
