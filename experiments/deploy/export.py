"""``export``: a checkpoint as ONNX and as a torch.export program, each proven equal to the checkpoint.

Both files hold the task's whole inference path (its :class:`~lit_models.inference.Inference`: for an
image classifier, raw uint8 images of the data set's size in, class probabilities out), with a dynamic
batch dimension. Nothing is reported as
exported until each file has been run (ONNX with onnxruntime, the program with torch) on a batch of
the data module's own data and compared with what the task computes from the checkpoint. The files
are written into a temporary folder that replaces ``<run>/export/`` only once they pass, so a failed
export never leaves files that look good.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from experiments.deploy import inference
from experiments.runs.checkpoints import EXPERIMENT_KEY
from experiments.runs.folder import RunFolder
from experiments.tracking import log_to_recorded_run
from lit_models.task import Task

#: the largest absolute difference accepted between an exported file and the checkpoint (fp32)
TOLERANCE = 1e-4
EXTRA_HINT = ('pip install "onnx>=1.17" "onnxruntime>=1.20" "onnxscript>=0.2" '
              '(or: pip install -e ".[results]" in the project)')


def require_onnx() -> tuple[Any, Any]:
    """(onnx, onnxruntime), or a one-line error naming what to install."""
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as err:
        raise ValueError(f"export needs {err.name}, which is not installed: {EXTRA_HINT}") from None
    return onnx, onnxruntime


def export_checkpoint(task: Task, datamodule: Any, ckpt_path: str, parity_batch: int = 32,
                      run: RunFolder | None = None) -> dict[str, Any]:
    """Write ``model.onnx``, ``model.pt2`` and ``model.json`` into the run's ``export/`` (``run``: default the
    run folder the checkpoint lies in); return model.json's content.
    """
    onnx, onnxruntime = require_onnx()
    if parity_batch < 2:
        raise ValueError(f"--parity_batch must be >= 2 (the batch dimension is checked as dynamic), got {parity_batch}")
    checkpoint = inference.load_net_weights(task, ckpt_path)
    shipped = inference.prepare(task, datamodule)
    model = shipped.module
    inputs = inference.example_inputs(datamodule, shipped, parity_batch)
    expected = inference.reference_outputs(task, datamodule, shipped, inputs)
    target = (run or RunFolder.of_checkpoint(ckpt_path)).export
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        batch = torch.export.Dim("batch", min=1)
        with torch.no_grad():
            program = torch.export.export(model, (inputs,), dynamic_shapes=({0: batch},))
        torch.export.save(program, staging / "model.pt2")
        _export_onnx(model, inputs, staging / "model.onnx", shipped.input_name, shipped.output_name)
        onnx.checker.check_model(str(staging / "model.onnx"))
        parity = {
            "model.pt2": _max_difference(_run_torch(staging / "model.pt2", inputs), expected),
            "model.onnx": _max_difference(_run_onnx(onnxruntime, staging / "model.onnx", inputs), expected),
        }
        # the batch dimension is dynamic: a smaller batch must give the same rows
        parity_small = {
            "model.pt2": _max_difference(_run_torch(staging / "model.pt2", inputs[:1]), expected[:1]),
            "model.onnx": _max_difference(_run_onnx(onnxruntime, staging / "model.onnx", inputs[:1]), expected[:1]),
        }
        worst = {name: max(parity[name], parity_small[name]) for name in parity}
        for name, difference in worst.items():
            print(f"parity {name}: largest absolute difference {difference:.3g} over {len(inputs)} samples "
                  f"(limit {TOLERANCE:g})")
        failed = [name for name, difference in worst.items() if not difference <= TOLERANCE]
        if failed:
            raise ValueError(
                f"export of {ckpt_path}: {', '.join(failed)} differ from the checkpoint by more than {TOLERANCE:g} "
                f"({', '.join(f'{worst[n]:.3g}' for n in failed)}); nothing was written to {target}"
            )
        description = {
            **shipped.describe(),
            "experiment": checkpoint.get(EXPERIMENT_KEY),
            "files": {"onnx": "model.onnx", "torch_export": "model.pt2"},
            "checkpoint": {"path": str(Path(ckpt_path).resolve()), "sha256": inference.sha256(ckpt_path),
                           "epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")},
            "parity": {"samples": len(inputs), "max_abs_difference": worst, "tolerance": TOLERANCE},
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                         "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        }
        (staging / "model.json").write_text(json.dumps(description, indent=2) + "\n")
        _replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"Exported: {target} (model.onnx, model.pt2, model.json)")
    tracked = log_to_recorded_run(run or RunFolder.of_checkpoint(ckpt_path), sorted(target.iterdir()), "export")
    if tracked:
        print(tracked)
    return description


def _export_onnx(model: torch.nn.Module, inputs: torch.Tensor, path: Path, name_in: str, name_out: str) -> None:
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(model, (inputs,), dynamo=True, dynamic_shapes=({0: batch},),
                                    input_names=[name_in], output_names=[name_out], verbose=False)
    program.save(str(path))


def _run_torch(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    module = torch.export.load(str(path)).module()
    with torch.no_grad():
        return module(inputs)


def _run_onnx(onnxruntime: Any, path: Path, inputs: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: inputs.numpy()})[0])


def _max_difference(got: torch.Tensor, expected: torch.Tensor) -> float:
    if got.shape != expected.shape:
        return float("inf")
    return float((got.float() - expected.float()).abs().max())


def _replace_folder(staging: Path, target: Path) -> None:
    """Swap the checked files into ``target``: the old export is moved aside first and removed last."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{staging.name}")
        target.rename(old)
    staging.rename(target)
    target.chmod(0o755)  # mkdtemp made it private
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
