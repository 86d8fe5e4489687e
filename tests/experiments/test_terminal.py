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
