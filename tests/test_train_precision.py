"""Precision: how 'auto' and explicit choices resolve per device, runs that store what they
computed in, low-precision training with float32 master weights, and runs from before the
setting existed."""

import re

import pytest
import torch
from test_train_engine import config, run
from test_train_faults import run_until

from hipcore import device as prec
from hipcore.train import ConfigMismatchError, TrainConfig

CPU = torch.device("cpu")
NO_BF16 = frozenset({"avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has the given /proc/cpuinfo flags."""
    def use(value):
        monkeypatch.setattr(prec, "cpu_flags", lambda: value)
    return use


def test_explicit_choices_resolve_to_themselves_or_fail_naming_the_cpu_flags(flags):
    flags(NO_BF16)
    assert prec.resolve("fp32", CPU) == "fp32"
    for name in ("bf16", "fp16"):
        with pytest.raises(prec.PrecisionError, match=rf"'{name}' is not available on cpu.*{re.escape(prec.cpu_name())}"
                                                      rf".*{prec.NATIVE_CPU_FLAGS[name][0]}"):
            prec.resolve(name, CPU)
    flags(AMX)
    assert prec.resolve("bf16", CPU) == "bf16"
    with pytest.raises(prec.PrecisionError, match="fp16"):
        prec.resolve("fp16", CPU)                      # AMX-BF16 alone does not compute fp16
    with pytest.raises(prec.PrecisionError, match="must be one of"):
        prec.resolve("float16", CPU)


def test_auto_on_a_cpu_takes_bf16_only_where_native_and_measured_faster(flags):
    def never():
        raise AssertionError("no timing on a CPU without native bf16")
    flags(NO_BF16)
    assert prec.resolve("auto", CPU, measure=never) == "fp32"
    flags(AMX)
    assert prec.resolve("auto", CPU, measure=lambda: {"fp32": 0.30, "bf16": 0.12}) == "bf16"
    assert prec.resolve("auto", CPU, measure=lambda: {"fp32": 0.30, "bf16": 0.54}) == "fp32"


def test_the_cpu_timing_leaves_the_callers_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    seconds = prec.time_steps(CPU, batch=4, repeats=1)
    assert set(seconds) == {"fp32", "bf16"} and all(s > 0 for s in seconds.values())
    assert torch.equal(torch.rand(3), expected)


def test_autocast_and_the_scaler_follow_the_precision():
    layer = torch.nn.Linear(8, 8)
    with prec.autocast("bf16", CPU):
        assert layer(torch.randn(2, 8)).dtype == torch.bfloat16
    with prec.autocast("fp32", CPU):
        assert layer(torch.randn(2, 8)).dtype == torch.float32
    assert not prec.grad_scaler("bf16", CPU).is_enabled()
    assert prec.grad_scaler("fp16", CPU).is_enabled()


def test_configs_from_before_precision_existed_map_the_bf16_field():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "precision"}
    assert TrainConfig.from_dict({**old, "bf16": False}).precision == "fp32"
    assert TrainConfig.from_dict({**old, "bf16": True}).precision == "bf16"
    assert TrainConfig(precision="fp32").differences({**old, "bf16": False}) == []
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="half")


def test_a_run_stores_the_resolved_precision_and_bf16_keeps_float32_weights(tmp_path, flags):
    flags(NO_BF16)
    auto = run(config(tmp_path, "auto", max_steps=2))
    assert TrainConfig.from_dict(torch.load(auto.last_checkpoint, weights_only=True)["config"]).precision == "fp32"
    flags(AMX)                                           # torch emulates bf16 where it is not native
    low = run(config(tmp_path, "bf16", max_steps=4, precision="bf16"))
    state = torch.load(low.last_checkpoint, weights_only=True)
    assert state["config"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(torch.tensor(v)) for k, v in low.metrics.items() if isinstance(v, float))
    full = run(config(tmp_path, "fp32", max_steps=4, precision="fp32"))
    assert low.metrics["train_loss"] != full.metrics["train_loss"]          # it did compute in bf16
    assert abs(low.metrics["train_loss"] - full.metrics["train_loss"]) < 0.1


def test_a_bf16_run_resumes_exactly_and_refuses_a_machine_resolving_otherwise(tmp_path, flags):
    flags(AMX)
    reference = run_until(config(tmp_path, "reference", precision="bf16"))
    run_until(config(tmp_path, "run", precision="bf16"), stop_at=6)
    assert run_until(config(tmp_path, "run", precision="bf16")).metrics == reference.metrics
    flags(NO_BF16)                                       # the same run directory on another CPU
    with pytest.raises(ConfigMismatchError, match=r"(?s)precision: 'bf16' -> 'fp32'.*trained in bf16"):
        run_until(config(tmp_path, "run"))


def test_auto_on_a_gpu_is_chosen_by_a_timed_step_too(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = torch.device("cuda")
    assert prec.resolve("auto", gpu, measure=lambda: {"fp32": 0.0127, "bf16": 0.0155}) == "fp32"
    assert prec.resolve("auto", gpu, measure=lambda: {"fp32": 0.0127, "bf16": 0.0040}) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)     # a T4: fp16 or fp32
    assert prec.resolve("auto", gpu, measure=lambda: {"fp32": 0.02, "fp16": 0.01}) == "fp16"
