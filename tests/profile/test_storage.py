"""Storage bytes: dense dtypes, int8 dynamic quantization, and modules that describe their own."""

import torch
from torch import nn

from weightwise.profile.storage import TensorStorage, module_storage
from weightwise.profile.trace import Tracer


def test_dense_dtypes():
    lin = nn.Linear(8, 4)
    assert module_storage(lin)["weight"].nbytes == 32 * 4 and module_storage(lin)["bias"].nbytes == 16
    assert module_storage(lin.half())["weight"].nbytes == 32 * 2
    assert module_storage(lin.to(torch.bfloat16))["weight"].dtype == "bf16"


def test_int8_dynamic_linear_counts_scales():
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = quantize_dynamic(
        nn.Sequential(nn.Linear(8, 4)), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
    )
    st = module_storage(model[0])
    assert st["weight"].format == "int8-per-channel"
    # 32 int8 weights + 4 fp32 per-channel scales (zero points are 0: none stored) ; fp32 bias
    assert st["weight"].dtype == "int8" and st["weight"].nbytes == 32 + 4 * 4
    assert st["bias"].nbytes == 16
    per_tensor = quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear}, dtype=torch.qint8)
    assert module_storage(per_tensor[0])["weight"].nbytes == 32 + 4  # one fp32 scale


class LowRank(nn.Module):
    """W (out x in) as U (out x r) @ V (r x in): stores and reads both factors."""

    def __init__(self, n_in=6, n_out=5, rank=2):
        super().__init__()
        self.u = nn.Parameter(torch.randn(n_out, rank))
        self.v = nn.Parameter(torch.randn(rank, n_in))

    def forward(self, x):
        return x @ self.v.T @ self.u.T

    def weightwise_storage(self):
        return {
            "u": TensorStorage((5, 2), "fp32", 40, "lowrank-u", id(self.u)),
            "v": TensorStorage((2, 6), "fp32", 48, "lowrank-v", id(self.v)),
        }

    def weightwise_macs(self, inp, out):
        rows = inp.numel() // inp.shape[-1]
        return rows * (6 * 2 + 2 * 5)


def test_profiler_sees_custom_storage():
    model = nn.Sequential(LowRank())
    tracer = Tracer(model)
    with tracer:
        tracer.on_file("x", 1.0)
        model(torch.randn(3, 6))
    rows = {t.name: t for t in tracer.result("m", "fp32", True).tensors}
    assert rows["0.u"].nbytes == 40 and rows["0.v"].nbytes == 48
    assert rows["0.u"].bytes_read == 40 and rows["0.v"].bytes_read == 48
    assert rows["0.u"].macs == 3 * 22 and rows["0.v"].macs == 0  # all MACs on the first factor
    assert rows["0.u"].format == "lowrank-u"
