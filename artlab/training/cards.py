"""Model cards, made in one place. A card says what a checkpoint is (architecture, labels, input
size), what it was trained on and how, what it measured on which split, and the command that
made it; `checkpoints.save_checkpoint` adds the date, the data licence and the storage dtype."""

import sys

WIKIART_NOTE = ("WikiArt images, titles and labels are for non-commercial research use only; "
                "SemArt descriptions are for research use")


def command_line(command: str | None) -> str:
    """What made the checkpoint: the command given (the CLI passes its own argv), else the process's."""
    return command or " ".join(sys.argv)


def make_card(name: str, *, architecture: str, config: dict, training: dict, metrics: dict,
              command: str | None, **fields) -> dict:
    """The fields every recipe's card has, in one order, then the recipe's own (`fields`: labels,
    input_size, training_data, ...). `metrics` maps a split ("val", "selection") to its figures."""
    return {"name": name, "architecture": architecture, "config": config, **fields,
            "training": training, "metrics": metrics, "command": command_line(command)}


def history_record(result, **extra) -> dict:
    """The training section's common part, from a loop.FitResult."""
    return {"epochs_run": len(result.history), "best_epoch": result.best_epoch, **extra,
            "history": result.history}
