"""The README's "Extending" recipe, done from outside the package: a data module and a net defined in a
module of the user's own, named by class_path in a YAML of the user's own, fit and tested through the CLI.
"""

from __future__ import annotations

import textwrap

import yaml

from experiments.entry import main
from tests.helpers import event_data

USER_MODULE = '''
"""A user's own experiment: 8x8 grey images whose class is the brighter half (top, bottom, left, right)."""
import torch
from torch import nn

from datamodules.base.image_classification import ImageClassificationDataModule


class QuadrantDataModule(ImageClassificationDataModule):
    class_names = ("top", "bottom", "left", "right")
    mean, std = (0.3,), (0.3,)

    def __init__(self, samples: int = 400, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__(data_dir="unused", download=False, batch_size=batch_size, eval_batch_size=100, seed=seed)
        self.samples = samples

    @property
    def raw_image_shape(self):
        return 1, 8, 8

    def setup(self, stage=None):
        if self.train is not None:
            return
        g = torch.Generator().manual_seed(self.seed)
        labels = torch.randint(0, 4, (3 * self.samples,), generator=g)
        images = torch.randint(0, 80, (3 * self.samples, 8, 8), generator=g, dtype=torch.uint8)
        for i, label in enumerate(labels.tolist()):
            rows = slice(0, 4) if label == 0 else slice(4, 8) if label == 1 else slice(None)
            cols = slice(0, 4) if label == 2 else slice(4, 8) if label == 3 else slice(None)
            images[i, rows, cols] += 150
        n = self.samples
        self.train, self.val, self.test = ((images[k * n:(k + 1) * n], labels[k * n:(k + 1) * n]) for k in range(3))


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 4, hidden: int = 16) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.layers(x)
'''

USER_YAML = '''
experiment: quadrants
seed_everything: 1
model:
  class_path: lit_models.ImageClassifier
  init_args:
    net:
      class_path: user_experiment.TinyNet
      init_args:
        hidden: 16
    optimizer:
      class_path: torch.optim.Adam
      init_args:
        lr: 0.01
data:
  class_path: user_experiment.QuadrantDataModule
  init_args:
    samples: 400
trainer:
  max_epochs: 5
  log_every_n_steps: 5
'''


def test_a_data_module_net_and_yaml_of_ones_own(tmp_path, monkeypatch):
    (tmp_path / "user_experiment.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "quadrants.yaml").write_text(USER_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    main(["fit", "-c", "quadrants.yaml", *quiet])
    main(["test", "-c", "quadrants.yaml", "--ckpt_path", "best", *quiet])
    run_dir = tmp_path / "lightning_logs" / "quadrants" / "version_0"
    scalars, images = event_data(run_dir)
    assert scalars["test/acc"][-1][1] >= 0.9  # chance is 0.25
    assert "test/acc_class/left" in scalars and "val/confusion_matrix" in images
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["init_args"]["net"]["class_path"] == "user_experiment.TinyNet"
