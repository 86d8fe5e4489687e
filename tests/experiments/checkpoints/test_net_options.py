"""Net options from a checkpoint: the command line's, merged over the saved net."""

from experiments.checkpoints.net_options import explicit_net_options, merge_net, saved_net


def test_explicit_options_in_both_spellings():
    tokens = ["--model.init_args.net.init_args.widths", "[8]", "--model.net.dropout=0.1", "--model.lr", "1"]
    assert explicit_net_options(tokens) == {"widths", "dropout"}
    assert explicit_net_options(["--model.net.class_path", "x.Y"]) == {"*"}


def test_merge_keeps_the_saved_architecture_and_takes_typed_options():
    saved = {"class_path": "n.Net", "init_args": {"widths": [64], "dropout": 0.0}}
    configured = {"class_path": "n.Net", "init_args": {"widths": [8], "dropout": 0.3}}
    assert merge_net(saved, configured, {"dropout"}) == {"class_path": "n.Net",
                                                        "init_args": {"widths": [64], "dropout": 0.3}}
    assert merge_net(saved, configured, {"*"}) == configured
    assert saved_net({"hyper_parameters": {"net": saved}}) == saved and saved_net({}) is None
