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
#: ``COMMANDS``), and its one-line summary for ``medmat --help``. A module is imported only when one
#: of its commands runs or shows its own help, so that a command loads what its own module imports at
#: its top and no more: ``medmat --help`` loads no command module, ``medmat train`` neither the
#: classical solvers (pymatting, numba) nor ``medmat label`` scikit-learn. tests/test_cli.py keeps
#: the summaries equal to the commands' own.
COMMAND_MODULES = {
    "info": ("medmat.cli.data_commands", "Read and validate a dataset, and describe it in one line."),
    "split": ("medmat.cli.data_commands", "Make a k-fold split of a dataset and save it as JSON."),
    "label": ("medmat.cli.data_commands", "Build alpha-matte labels from the annotators' masks (trimap from "
              "consensus + dilation, then matting)."),
    "phantoms": ("medmat.cli.data_commands", "Write synthetic phantoms (image, annotators' masks, true alpha) as "
                 "a medmat folder dataset."),
    "baseline": ("medmat.cli.matting_commands", "Run classical matting methods on a dataset with ground-truth "
                 "alphas and tabulate SAD/MSE/Grad/Conn."),
    "train": ("medmat.cli.model_commands", "Train one fold and evaluate it on the held-out cases (works under "
              "torchrun too)."),
    "crossval": ("medmat.cli.model_commands", "k-fold cross-validation: the split JSON, one folder per fold, and "
                 "a summary table."),
    "predict": ("medmat.cli.model_commands", "Predict alpha mattes, uncertainty maps, lesion uncertainty and "
                "sampled masks for new images."),
    "evaluate": ("medmat.cli.model_commands", "Score a run's models on their held-out cases: Table IV / V-style "
                 "tables and a figure of examples."),
    "interact": ("medmat.cli.interaction_commands", "Simulate a user correcting a run's held-out cases and score "
                 "every interaction (Table IV)."),
    "serve": ("medmat.cli.app_commands", "Serve the browser app: open an image, see the matte and its "
              "uncertainty, correct it, save."),
    "offsets": ("medmat.cli.figure_commands", "Draw where a trained region-aware model reads its codes for a few "
                "query points of one case."),
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
        module = importlib.import_module(COMMAND_MODULES[name][0])
        return next(command for command in module.COMMANDS if command.name == name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing would import every command module for its short help.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, click.utils.make_default_short_help(COMMAND_MODULES[name][1], limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


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
