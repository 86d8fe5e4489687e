"""One-line errors and aligned tables (pure helpers, no subprocess)."""

from experiments.terminal import OneLineParser, condense_error, render_table


def test_condense_error_keeps_the_reasons_and_cuts_at_a_word():
    nested = ("Problem with given class_path 'x':\n  - Given value type\n"
              "  - Expected a <class 'NoneType'>\n  - lr must be > 0")
    assert condense_error(nested) == "lr must be > 0"
    long = "word " * 200
    cut = condense_error(long, limit=50)
    assert cut.endswith("...") and len(cut) <= 50 and "wor..." not in cut


def test_render_table_pads_columns():
    text = render_table(["a", "bb"], [["xxx", "y"], ["z", ""]])
    assert text.splitlines() == ["a    bb", "xxx  y", "z"]


def test_one_line_parser_raises_instead_of_exiting():
    parser = OneLineParser(prog="p")
    parser.add_argument("--n", type=int)
    try:
        parser.parse_args(["--n", "x"])
    except ValueError as err:
        assert str(err).startswith("p: argument --n")
    else:
        raise AssertionError("no error")


def test_options_lightning_has_and_this_cli_moved_say_where_they_live():
    from experiments.terminal import with_hint

    hinted = with_hint("unrecognized arguments: --optimizer Adam")
    assert hinted.endswith("--model.init_args.optimizer torch.optim.AdamW "
                           "--model.init_args.optimizer.init_args.lr 1e-3")
    assert "--model.init_args.lr_scheduler" in with_hint("unrecognized arguments: --lr_scheduler.init_args.T_max 9")
    assert with_hint("unrecognized arguments: --optimizers 1") == "unrecognized arguments: --optimizers 1"
    assert with_hint("--optimizer is fine elsewhere") == "--optimizer is fine elsewhere"


def test_rough_edges_are_one_line_each(tmp_path, monkeypatch, capsys):
    import pytest

    from experiments.entry import main
    from experiments.sweep.storage import driver_hint
    from tests.helpers import EXPERIMENTS

    monkeypatch.chdir(tmp_path)
    sin = str(EXPERIMENTS / "sin_mlp.yaml")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    cases = [
        (["fit", "-c", sin, "--optimizer", "Adam"], "--model.init_args.optimizer torch.optim.AdamW"),
        (["test", "-c", sin, "--ckpt_path", "notes.ckpt"], "notes.ckpt is not a checkpoint"),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as stopped:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert stopped.value.code == 2 and len(err) == 1 and expected in err[0], err
    # a database URL whose driver is missing names the package to install
    hint = driver_hint("postgresql+pg8000://u:p@host/db", ImportError())
    import importlib.util

    if importlib.util.find_spec("pg8000") is None:
        assert hint == "; postgresql+pg8000:// needs the pg8000 driver: pip install 'pg8000'"
    assert driver_hint("sqlite:///x.db", ImportError()) == ""
