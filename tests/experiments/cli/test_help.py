"""``--help`` describes the options of tasks, nets and data modules, from their ``Args:`` docstrings."""

import pytest

from experiments.entry import main


@pytest.mark.parametrize("args, options", [
    (["--model.help", "lit_models.ImageClassifier"], ["figure_every_n_epochs", "label_smoothing"]),
    (["--data.help", "datamodules.MNISTDataModule"], ["translate"]),
    (["--model.net.help", "lit_models.nets.LeNet5"], ["batch_norm"]),
])
def test_class_help_describes_each_option(args, options, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "-c", "experiments/mnist_lenet.yaml", *args])
    lines = capsys.readouterr().out.splitlines()
    for option in options:
        # the option's entry: "  --model.<option> VALUE" then its description, before "(type: ..., default: ...)"
        at = next(i for i, line in enumerate(lines) if line.strip().startswith("--") and f".{option} " in line + " ")
        description = lines[at + 1].strip()
        assert description and not description.startswith("(type"), (option, lines[at:at + 2])


def test_top_level_help_lists_every_subcommand(capsys):
    main(["--help"])
    text = capsys.readouterr().out
    for name in ("fit", "test", "predict", "export", "serve", "runs", "sweep"):
        assert f"  {name} " in text


def test_every_option_a_config_can_set_has_a_description():
    """Each __init__ parameter of the classes the YAMLs name is described in its class's ``Args:``."""
    import inspect

    import docstring_parser

    import datamodules
    import lit_models
    import lit_models.nets as nets
    from lit_models.task import Task

    classes = [Task, lit_models.ImageClassifier, nets.Feedforward, nets.LeNet5, nets.CifarCNN, nets.CifarResNet,
               nets.AlexNetClassifier, datamodules.SinDataModule, datamodules.MNISTDataModule,
               datamodules.CIFAR10DataModule]
    for cls in classes:
        described = {p.arg_name for p in docstring_parser.parse(cls.__doc__ or "").params}
        options = [name for name, p in inspect.signature(cls.__init__).parameters.items()
                   if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        missing = [name for name in options if name not in described]
        assert not missing, f"{cls.__name__} does not describe {missing}"
