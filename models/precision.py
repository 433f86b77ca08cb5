"""Layer and group norms kept in float32 under autocast, as CUDA's autocast runs them (and as
fairseq's Fp32LayerNorm / Fp32GroupNorm do) wherever the model runs: a CPU's autocast would run
them in bf16. benchmarks/amp_check.py measured why (docs/benchmarks.md): in bf16 the transformer
layers' gradient norm shrank to 0.924 of fp32's by step 10; with the norms in float32, 0.987, at the
same step time. In float32 without autocast they are the plain modules, bit for bit."""

import torch
import torch.nn as nn

LOW = (torch.float16, torch.bfloat16)


class Float32Norm:
    """The norm of the class it is mixed into, run on a float32 input with autocast off when the
    input is low precision or autocast is on; otherwise the class's own forward, untouched."""

    def forward(self, input):
        if input.dtype not in LOW and not torch.is_autocast_enabled(input.device.type):
            return super().forward(input)
        with torch.autocast(input.device.type, enabled=False):
            return super().forward(input.float() if input.dtype in LOW else input)


class Float32LayerNorm(Float32Norm, nn.LayerNorm):
    pass


class Float32GroupNorm(Float32Norm, nn.GroupNorm):
    pass


FLOAT32 = {nn.LayerNorm: Float32LayerNorm, nn.GroupNorm: Float32GroupNorm}
PLAIN = {float32: plain for plain, float32 in FLOAT32.items()}


def norms_in_float32(model):
    """Makes every nn.LayerNorm and nn.GroupNorm of model a float32 one, in place (the same
    parameters and state-dict keys); returns model."""
    for module in model.modules():
        if type(module) in FLOAT32:
            module.__class__ = FLOAT32[type(module)]
    return model
