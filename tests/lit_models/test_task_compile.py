"""``compile: true`` trains through torch.compile, and its checkpoints are those of the plain net."""

from functools import partial

import lightning as L
import pytest
import torch

from datamodules import SinDataModule
from lit_models import Regressor
from lit_models.nets import Feedforward


@pytest.mark.slow
def test_compiled_run_trains_through_dynamo_and_keeps_plain_checkpoint_keys(tmp_path, monkeypatch):
    traced = []

    def recording_backend(graph_module, example_inputs):  # what dynamo hands a compiler: proof it ran
        traced.append(graph_module)
        return graph_module.forward

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: real_compile(model, backend=recording_backend))
    torch.manual_seed(0)
    task = Regressor(net=Feedforward(1, 1, [8]), optimizer=partial(torch.optim.Adam, lr=1e-2), compile_net=True,
                     figure_every_n_epochs=0)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, SinDataModule(train_size=64, val_size=32, test_size=32, batch_size=32))
    assert traced, "the net was not run through torch.compile"
    assert set(task.state_dict()) == {f"net.{k}" for k in Feedforward(1, 1, [8]).state_dict()}
    # the checkpoint loads into a task without compile and computes the same function
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    plain = Regressor.load_from_checkpoint(tmp_path / "compiled.ckpt", net=Feedforward(1, 1, [8]))
    x = torch.rand(16, 1)
    torch.testing.assert_close(plain(x), task.net(x))
