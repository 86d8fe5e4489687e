"""The NHWC (``channels_last``) layout, with the one kind of layer that oneDNN gets wrong in it kept NCHW.

oneDNN issue #6035 (open; torch 2.14.1 ships the affected kernels): the weight gradient of a 1x1
convolution with stride 2 on an NHWC input whose channel count is below the ISA's block (8 for AVX2,
16 for AVX-512) writes past its workspace. On an AVX2 CPU it hangs (an OpenMP worker spins in
``jit_avx2_1x1_convolution_bwd_weights`` while the others wait at the barrier), aborts, or returns a
weight gradient off by half its norm, silently. NCHW is always right. A ResNet's shortcut with small
``widths`` is such a layer, so the guard lives where the layout is chosen: every other layer goes NHWC,
and such a convolution keeps NCHW weights and gets its CPU input in NCHW (oneDNN takes the NHWC path when
either is NHWC; a 1x1 weight converted to NHWC is still "contiguous" but carries NHWC strides, so it is
re-strided explicitly). Those layers have fewer than 16 input channels: the copy costs next to nothing.
On a GPU the input passes untouched.
"""

from __future__ import annotations

import torch
from torch import nn

#: the widest oneDNN channel block on x86 (AVX-512); fewer input channels per group is the hazard
ONEDNN_WIDEST_BLOCK = 16


def onednn_nhwc_hazard(module: nn.Module) -> bool:
    """Whether oneDNN's NHWC weight gradient may hang or be wrong for this layer (issue #6035).

    Returns:
        True for a 2-d convolution with a 1x1 kernel, a stride above 1 and fewer than 16 input
        channels per group; stride 1 and larger kernels take other, correct kernels.
    """
    if not isinstance(module, nn.Conv2d):
        return False
    return (tuple(module.kernel_size) == (1, 1) and max(module.stride) > 1
            and module.in_channels // module.groups < ONEDNN_WIDEST_BLOCK)


def _nchw_on_cpu(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook: a CPU input in NHWC is handed to the convolution as NCHW."""
    x = args[0]
    if x.device.type == "cpu" and x.dim() == 4 and not x.is_contiguous():
        return (x.contiguous(), *args[1:])
    return None


def to_channels_last(net: nn.Module) -> list[str]:
    """Put ``net``'s weights in NHWC and keep the layers oneDNN gets wrong in NCHW on the CPU.

    Idempotent: a layer added later (a head sized by the data) is guarded by calling it again. Call it
    again too after anything that converts the whole net to NHWC.

    Returns:
        The names of the convolutions whose CPU input is kept NCHW.
    """
    net.to(memory_format=torch.channels_last)
    guarded = []
    for name, module in net.named_modules():
        if onednn_nhwc_hazard(module):
            weight = module.weight
            weight.data = weight.data.clone(memory_format=torch.contiguous_format)
            if not getattr(module, "_litexp_nchw_on_cpu", False):
                module.register_forward_pre_hook(_nchw_on_cpu)
                module._litexp_nchw_on_cpu = True
            guarded.append(name)
    return guarded
