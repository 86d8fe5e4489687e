"""Image classification task shared by every classification experiment."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchvision.utils import make_grid
from typing_extensions import override

from lit_models import figures
from lit_models.channels_last import to_channels_last
from lit_models.inference import Inference, InferencePipeline
from lit_models.task import Task


class ImageClassifier(Task):
    """Cross-entropy on the net's logits; accuracy, confusion matrix and figures per stage.

    Arguments of its own: ``label_smoothing``, ``channels_last`` (images and weights in NHWC, which
    cuDNN's fastest convolutions want), ``tta_flip`` (evaluation averages the logits of the image and
    its mirror) and ``max_misclassified`` (images in the misclassified figure); the rest are the base
    task's (``**kwargs``).

    The data module is asked (duck-typed, no import) for ``num_classes``, ``class_names``,
    ``image_shape`` and ``denormalize``; a net that cannot take its images or predicts another
    number of classes is rejected in ``setup``, before any training.

    For imbalanced classes: ``class_weights`` weighs the training loss (``auto``: inverse class frequency
    in the training split, ``n / (K * n_k)``, as scikit-learn's "balanced"), validation and test also
    report balanced accuracy (the mean recall over classes) and macro F1, test prints and logs precision,
    recall and F1 per class, and ``monitor`` picks the metric that checkpoints, ``best``, sweeps and
    ``runs`` follow.

    Args:
        label_smoothing: weight of the uniform distribution mixed into the training targets (0 turns it off).
        class_weights: weights of the classes in the training loss: none, auto (inverse frequency) or one per class.
        monitor: the validation metric checkpoints, best, sweeps and runs follow (val/loss is minimised).
        channels_last: images and weights in NHWC, the layout fast convolution kernels want.
        tta_flip: evaluation averages the logits of each image and its mirror (test-time augmentation).
        max_misclassified: images shown in the misclassified figure.
        **kwargs: the base task's arguments (net, optimizer, schedule, figures; see ``Task``).
    """

    #: the defaults; ``--model.init_args.monitor`` sets them per run
    monitor = "val/acc"
    monitor_mode = "max"

    def __init__(
        self,
        label_smoothing: float = 0.0,
        class_weights: str | list[float] | None = None,
        monitor: Literal["val/acc", "val/balanced_acc", "val/f1_macro", "val/loss"] = "val/acc",
        channels_last: bool = False,
        tta_flip: bool = False,
        max_misclassified: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"--model.label_smoothing must be in [0, 1), got {label_smoothing}")
        if max_misclassified < 0:
            raise ValueError(f"--model.max_misclassified must be >= 0, got {max_misclassified}")
        self.label_smoothing = label_smoothing
        if isinstance(class_weights, str) and class_weights.lower() == "none":
            class_weights = None
        if isinstance(class_weights, str) and class_weights != "auto":
            raise ValueError(f"--model.class_weights must be none, auto or one weight per class, got {class_weights!r}")
        if isinstance(class_weights, list) and (not class_weights or min(class_weights) < 0):
            raise ValueError("--model.class_weights: one weight >= 0 per class")
        self.class_weights = class_weights
        self.register_buffer("loss_weights", None, persistent=False)
        if monitor not in MONITORS:
            raise ValueError(f"--model.monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")
        self.monitor, self.monitor_mode = monitor, MONITORS[monitor]
        self.channels_last = channels_last
        if channels_last:
            # weights too (cuDNN and oneDNN pick NHWC kernels only when both are NHWC), here rather than in
            # setup: callbacks copy the net in their own setup, which runs first (EMA's averaged model), and
            # a copy in another layout would fall off the fused multi-tensor update; the layers oneDNN gets
            # wrong in NHWC on the CPU stay NCHW there (lit_models/channels_last.py, oneDNN issue #6035)
            to_channels_last(self.net)
        self.tta_flip = tta_flip
        # divides the logits of every evaluation and prediction (1: none); fitted by `calibrate` on the validation
        # split and saved in the checkpoint (experiments/analysis/calibration.py)
        self.register_buffer("temperature", torch.ones(()))
        self.max_misclassified = max_misclassified
        self.num_classes: int | None = None
        self.class_names: list[str] = []
        self._misclassified: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    @classmethod
    def monitor_of(cls, init_args: dict[str, Any]) -> tuple[str, str]:
        """The monitored metric and its mode (``max``/``min``) that a config's model options choose."""
        monitor = init_args.get("monitor") or cls.monitor
        return monitor, MONITORS.get(monitor, cls.monitor_mode)

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)

    @override
    def setup(self, stage: str) -> None:
        """Read the classes from the data, check that net and data fit together, build the metrics."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        num_classes = getattr(datamodule, "num_classes", None)
        if num_classes is None:
            num_classes = getattr(self.net, "num_classes", None) or getattr(self.net, "out_features", None)
        if not num_classes:
            raise ValueError("ImageClassifier needs a data module with num_classes")
        self.class_names = list(getattr(datamodule, "class_names", None) or map(str, range(num_classes)))
        if hasattr(self.net, "match_classes"):  # a head sized by the data (TorchvisionClassifier)
            self.net.match_classes(num_classes)
            if self.channels_last:  # the new head in the same layout, guarded as the rest
                to_channels_last(self.net)
        check_data_fits_weights(self.net, datamodule)
        image_shape = getattr(datamodule, "image_shape", None)
        if image_shape is not None:
            check_net_fits_data(self.net, tuple(image_shape), num_classes, type(datamodule).__name__)
        if self.num_classes != num_classes:
            self.num_classes = num_classes
            self._metrics_built = False
        if stage == "fit":
            self.loss_weights = loss_weights(self.class_weights, datamodule, num_classes)
        super().setup(stage)

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A head sized by the data (``num_classes`` left unset) is recorded with its size, so the commands
        that rebuild the net from the checkpoint's hyperparameters build it with that head.
        """
        super().on_save_checkpoint(checkpoint)
        classes = getattr(self.net, "num_classes", None)
        hparams = checkpoint.get("hyper_parameters") or {}
        net = hparams.get("net")
        if hasattr(self.net, "match_classes") and classes and isinstance(net, dict) and \
                isinstance(net.get("init_args"), dict) and net["init_args"].get("num_classes") is None:
            checkpoint["hyper_parameters"] = {**hparams, "net": {**net, "init_args": {**net["init_args"],
                                                                                       "num_classes": classes}}}

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint written before temperatures existed loads with none (1)."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            state.setdefault("temperature", torch.ones(()))

    @override
    def on_fit_start(self) -> None:
        """Training changes the weights a temperature was fitted for: evaluate uncalibrated until calibrated again."""
        super().on_fit_start()
        self.temperature.fill_(1.0)

    @override
    def build_metrics(self) -> None:
        # validate_args / nan checks off: each check reads a value back from the GPU, a host-device
        # sync per step (found with torch.cuda.set_sync_debug_mode); labels were checked in setup.
        n, fast = self.num_classes, {"validate_args": False}
        self.train_acc = MulticlassAccuracy(n, average="micro", **fast)
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_acc = MulticlassAccuracy(n, average="micro", **fast)
        self.val_acc_best = MaxMetric(nan_strategy="disable")
        self.val_confusion = MulticlassConfusionMatrix(n, **fast)
        self.val_balanced = MetricCollection({"balanced_acc": MulticlassAccuracy(n, average="macro", **fast),
                                              "f1_macro": MulticlassF1Score(n, average="macro", **fast)},
                                             prefix="val/")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self.test_acc = MulticlassAccuracy(n, average="micro", **fast)
        self.test_acc_per_class = MulticlassAccuracy(n, average=None, **fast)
        self.test_confusion = MulticlassConfusionMatrix(n, **fast)
        # the expected calibration error: 15 equal-width confidence bins, L1 (Guo et al. 2017)
        self.test_ece = MulticlassCalibrationError(n, n_bins=15, norm="l1", **fast)
        # with tta_flip: the same scores of the image alone, so a test shows what the flip average changed
        self.test_no_tta = MetricCollection({"acc_no_tta": MulticlassAccuracy(n, average="micro", **fast),
                                             "ece_no_tta": MulticlassCalibrationError(n, n_bins=15, norm="l1",
                                                                                      **fast)}, prefix="test/")
        self.test_balanced = self.val_balanced.clone(prefix="test/")
        self.test_per_class = MetricCollection({"precision": MulticlassPrecision(n, average=None, **fast),
                                                "recall": MulticlassRecall(n, average=None, **fast),
                                                "f1": MulticlassF1Score(n, average=None, **fast)})
        if self._trainer is not None:
            self.to(self.device)

    # -- training -------------------------------------------------------------------------------

    @override
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, weight=self.loss_weights, label_smoothing=self.label_smoothing)
        self.log_train_loss(loss, batch_idx)
        self.train_acc.update(logits.detach(), y)
        return loss

    @override
    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("train/acc", self.train_acc)

    # -- validation -----------------------------------------------------------------------------

    @override
    def on_validation_epoch_start(self) -> None:
        self._misclassified.clear()

    @override
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        logits = self._evaluate(batch, self.val_loss, self.val_acc, self.val_confusion)
        self.val_balanced.update(logits, batch[1])
        return {"logits": logits}  # for callbacks (calibrate fits its temperature on them)

    @override
    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        self.log_dict({"val/loss": self.val_loss, "val/acc": self.val_acc}, prog_bar=True)
        self.log_dict(self.val_balanced)
        if not self.trainer.sanity_checking:
            self.val_acc_best(acc)
            self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True)  # equal on every rank
            if self.figures_due():
                # compute() syncs across ranks: every rank must call it, not only the one that draws
                self._log_figures("val", self.val_confusion.compute())
        self.val_confusion.reset()

    # -- test -----------------------------------------------------------------------------------

    @override
    def on_test_epoch_start(self) -> None:
        self._misclassified.clear()

    @override
    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Score the batch; its logits (as scored, test-time augmentation included) go to the callbacks
        (``experiments.callbacks.ErrorAnalysis`` writes the run's analysis from them).
        """
        single, logits = self._single_and_scored(batch[0])
        self._evaluate(batch, self.test_loss, self.test_acc, self.test_confusion, logits)
        self.test_acc_per_class.update(logits, batch[1])
        self.test_balanced.update(logits, batch[1])
        self.test_per_class.update(logits, batch[1])
        self.test_ece.update(logits.float().softmax(1), batch[1])
        if not self.tta_flip:
            return {"logits": logits}
        self.test_no_tta.update(single.float().softmax(1), batch[1])
        return {"logits": logits, "logits_no_tta": single}

    @override
    def on_test_epoch_end(self) -> None:
        per_class = self.test_acc_per_class.compute()  # collective calls: on every rank
        confusion = self.test_confusion.compute()
        scores = self.test_per_class.compute()
        self.log_dict({"test/loss": self.test_loss, "test/acc": self.test_acc, "test/ece": self.test_ece})
        self.log_dict(self.test_balanced)
        if self.tta_flip:
            self.log_dict(self.test_no_tta)
        for index, name in enumerate(self.class_names):
            self.log(f"test/acc_class/{tag_safe(name)}", per_class[index])
            for metric in ("precision", "recall", "f1"):
                self.log(f"test/{metric}_class/{tag_safe(name)}", scores[metric][index])
        if self.trainer.is_global_zero:
            print(per_class_table(self.class_names, per_class, confusion, scores))
        self._log_figures("test", confusion)
        self.test_acc_per_class.reset()
        self.test_confusion.reset()
        self.test_per_class.reset()

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """Class probabilities and the predicted class (the arg-max of the logits, as ``test`` scores it),
        with the batch's targets and sample indices when it carries them (the prediction writer's rows).
        """
        x, *rest = batch if isinstance(batch, (tuple, list)) else (batch,)
        logits = self._logits(x)
        out = {"prediction": logits.argmax(1), "probabilities": logits.float().softmax(1)}
        if rest:
            out["target"] = rest[0]
        if len(rest) > 1:
            out["index"] = rest[1]
        return out

    def inference(self, datamodule: Any) -> Inference:
        """Raw uint8 images of the data set's size -> class probabilities, through the data module's own
        evaluation preprocessing (duck-typed: ``preprocessor()``, ``raw_image_shape``, ``class_names``).
        """
        preprocess = datamodule.preprocessor()
        classes = list(datamodule.class_names)
        module = InferencePipeline(self.net, preprocess, self.tta_flip, head=nn.Softmax(dim=1),
                                   temperature=float(self.temperature))
        return Inference(
            module=module, task="classification",
            input_kind="image", input_name="images", input_dtype=torch.uint8,
            input_shape=tuple(datamodule.raw_image_shape),
            output_kind="probabilities", output_name="probabilities", labels=classes,
            preprocessing={"scale": 1 / 255, "mean": preprocess.mean.flatten().tolist(),
                           "std": preprocess.std.flatten().tolist(), "pad": preprocess.pad,
                           "resize_to": preprocess.size, "center_crop": preprocess.crop, "tta_flip": self.tta_flip,
                           # how a file of any size becomes the input (datamodules.images.preparation.RESIZE_RULES)
                           "resize_rule": getattr(datamodule, "resize_rule", "stretch")},
            temperature=float(self.temperature),
        )

    # -- shared ---------------------------------------------------------------------------------

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """The evaluation logits: the net's (averaged with the mirror image's under ``tta_flip``) over the
        temperature.
        """
        return self._single_and_scored(x)[1]

    def _single_and_scored(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the image's own logits, the logits scored: averaged with the mirror's under ``tta_flip``), both over
        the temperature.
        """
        single = self(x)
        logits = (single + self(x.flip(-1))) / 2 if self.tta_flip else single  # test-time augmentation
        temperature = self.temperature.to(single.dtype)
        return single / temperature, logits / temperature

    def _evaluate(self, batch, loss_metric, acc_metric, confusion, logits: torch.Tensor | None = None) -> torch.Tensor:
        x, y = batch
        logits = self._logits(x) if logits is None else logits
        # per-sample losses, not a batch mean with weight=len(y): MeanMetric(nan_strategy="disable")
        # drops weights (torchmetrics #3434), which skewed the mean towards a short last batch
        loss_metric.update(F.cross_entropy(logits, y, reduction="none"))
        acc_metric.update(logits, y)
        confusion.update(logits, y)
        room = self.max_misclassified - sum(len(part[0]) for part in self._misclassified)
        if room > 0 and self.figures_due():
            wrong = (logits.argmax(1) != y).nonzero().flatten()[:room]
            if len(wrong):
                self._misclassified.append((x[wrong].detach(), y[wrong], logits[wrong].argmax(1)))
        return logits

    def _log_figures(self, stage: str, confusion: torch.Tensor) -> None:
        target = self.figure_writer()
        if target is None:
            return
        writer, step = target
        names = self.class_names
        writer.add_figure(f"{stage}/confusion_matrix", figures.confusion_matrix(confusion, names), step)
        if self._misclassified:
            x, y, p = (torch.cat(parts) for parts in zip(*self._misclassified, strict=True))
            denormalize = getattr(self.trainer.datamodule, "denormalize", None)
            images = denormalize(x) if denormalize else _min_max(x)
            titles = [f"{names[int(t)]} → {names[int(q)]}" for t, q in zip(y, p, strict=True)]
            writer.add_figure(f"{stage}/misclassified", figures.labelled_images(images, titles), step)
        weights = first_layer_weight_images(self.net)
        if weights is not None:
            writer.add_image(f"{stage}/first_layer_weights", weights, step)


def tag_safe(name: str) -> str:
    """A class name as one TensorBoard tag level: '/' would nest ('T-shirt/top' -> 'T-shirt_top')."""
    return name.replace("/", "_")


def _min_max(x: torch.Tensor) -> torch.Tensor:
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp(min=1e-8)


def check_data_fits_weights(net: nn.Module, datamodule: Any) -> None:
    """Pretrained weights expect the normalisation and at least the input size they were trained with
    (``net.expects``, from torchvision's metadata): data that contradicts them is one line.
    """
    expects = getattr(net, "expects", None)
    if not expects or datamodule is None:
        return
    for name in ("mean", "std"):
        given = getattr(datamodule, name, None)
        if given is not None and (len(given) != len(expects[name]) or any(
                abs(float(a) - float(b)) > 1e-3 for a, b in zip(given, expects[name], strict=False))):
            raise ValueError(f"--data.{name} {list(given)} contradicts the {expects['weights']} weights, trained with "
                             f"{name} {expects[name]}; drop --data.{name} (or use weights: none)")
    size = getattr(datamodule, "image_size", None)
    low = max(expects["min_size"])
    if size is not None and size < low:
        raise ValueError(f"--data.image_size {size} is below the {low} px the {expects['weights']} weights need; "
                         f"use at least {low} (they were trained at {expects['crop_size']})")


def check_net_fits_data(net: nn.Module, image_shape: tuple[int, ...], num_classes: int, data_name: str) -> None:
    """Run the net on two blank images of the data's shape; explain any mismatch in one line."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *image_shape, device=device))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise ValueError(
            f"{type(net).__name__} cannot take {data_name}'s images of shape {image_shape} ({reason}); "
            "match the net's input size to the data (e.g. --data.init_args.pad 2 gives 28x28 images "
            "LeNet-5's 32x32, or set the net's in_features / in_channels)"
        ) from None
    finally:
        net.train(was_training)
    if out.dim() != 2 or out.shape[1] != num_classes:
        raise ValueError(
            f"{type(net).__name__} outputs {tuple(out.shape[1:])} values per image but {data_name} has "
            f"{num_classes} classes; set the net's num_classes (out_features for Feedforward) to {num_classes}"
        )


def first_layer_weight_images(net: nn.Module, limit: int = 256) -> torch.Tensor | None:
    """The first layer's filters as an image grid: conv kernels, or linear rows shown as images."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            w = module.weight.detach().float().cpu()
            if w.shape[1] not in (1, 3):
                w = w[:, :1]
            break
        if isinstance(module, nn.Linear):
            w = module.weight.detach().float().cpu()
            side = math.isqrt(w.shape[1])
            if side * side != w.shape[1]:
                return None  # not an image-shaped input (e.g. the regression MLP)
            w = w.view(-1, 1, side, side)
            break
    else:
        return None
    w = w[:limit]
    return make_grid(w, nrow=int(math.ceil(math.sqrt(len(w)))), normalize=True, scale_each=True, padding=1)


def per_class_table(names: list[str], accuracy: torch.Tensor, confusion: torch.Tensor,
                    scores: dict[str, torch.Tensor] | None = None) -> str:
    """A plain-text table: class, support, accuracy (its recall) and, given ``scores``, precision and F1."""
    support = confusion.sum(1).tolist()
    width = max(8, *(len(n) for n in names))
    extra = ("precision", "f1") if scores else ()
    lines = [f"{'class':<{width}}  {'support':>7}  {'accuracy':>8}" + "".join(f"  {m:>9}" for m in extra),
             "-" * (width + 19 + 11 * len(extra))]
    for index, (name, n, acc) in enumerate(zip(names, support, accuracy.tolist(), strict=True)):
        cells = "".join(f"  {float(scores[m][index]):>9.4f}" for m in extra)
        lines.append(f"{name:<{width}}  {int(n):>7}  {acc:>8.4f}{cells}")
    return "\n".join(lines)


#: the metrics ``monitor`` may name, and whether larger is better
MONITORS = {"val/acc": "max", "val/balanced_acc": "max", "val/f1_macro": "max", "val/loss": "min"}


def loss_weights(class_weights: str | list[float] | None, datamodule: Any, num_classes: int) -> torch.Tensor | None:
    """The training loss's class weights: None, given, or ``auto`` from the training labels (duck-typed:
    ``datamodule.train[1]``), ``n / (K * n_k)``.
    """
    if class_weights is None:
        return None
    if isinstance(class_weights, list):
        if len(class_weights) != num_classes:
            raise ValueError(f"--model.class_weights has {len(class_weights)} weights for {num_classes} classes")
        return torch.tensor(class_weights, dtype=torch.float32)
    train = getattr(datamodule, "train", None)
    if not isinstance(train, (tuple, list)) or len(train) < 2:
        raise ValueError("--model.class_weights auto needs a data module with its training labels in memory; "
                         "pass one weight per class instead")
    counts = torch.bincount(train[1].cpu(), minlength=num_classes).float()
    return (counts.sum() / (num_classes * counts.clamp(min=1))).float()
