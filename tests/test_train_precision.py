"""Precision: how 'auto' (by the hardware, one function every caller asks) and explicit choices
resolve per device, runs that store what they
computed in, low-precision training with float32 master weights, and runs from before the
setting existed."""

import json
import re

import pytest
import torch
from test_train_engine import config, run
from test_train_faults import run_until

from hipcore import device as prec
from hipcore import provenance
from hipcore.bench import suite as bench_suite
from hipcore.experiments import common, image_arms
from hipcore.experiments import precision_parity as parity
from hipcore.model import HiP
from hipcore.train import ConfigMismatchError, TrainConfig

CPU = torch.device("cpu")
NO_BF16 = frozenset({"avx2", "fma"})
AMX = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})


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


@pytest.mark.parametrize("cpu, expected", [(AMX, "bf16"), (AVX512_BF16, "bf16"), (NO_BF16, "fp32"),
                                           (frozenset(), "fp32")])           # empty: flags unknown
def test_auto_on_a_cpu_is_bf16_exactly_where_its_flags_compute_it_and_nothing_is_timed(flags, monkeypatch,
                                                                                     cpu, expected):
    def never(*args, **kwargs):
        raise AssertionError("'auto' ran a model: precision is decided by the hardware, not by timing")
    monkeypatch.setattr(HiP, "forward", never)
    flags(cpu)
    assert prec.resolve("auto", CPU) == expected


def test_cpu_flags_are_read_from_cpuinfo_and_unknown_without_it(tmp_path):
    head = "processor\t: 0\nmodel name\t: Some CPU\n"
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text(head + "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n\n" + head)
    without.write_text(head + "flags\t\t: fpu sse avx2 fma\n")
    assert {"avx512_bf16", "amx_tile", "fpu"} <= prec.cpu_flags(str(with_bf16))
    assert prec.native_on_cpu("bf16", prec.cpu_flags(str(with_bf16)))
    assert not prec.native_on_cpu("bf16", prec.cpu_flags(str(without)))
    assert prec.cpu_flags(str(tmp_path / "no cpuinfo")) == frozenset()


def test_auto_on_a_gpu_is_bf16_where_torch_says_it_is_supported(monkeypatch):
    gpu = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert prec.resolve("auto", gpu) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)     # e.g. a T4
    assert prec.resolve("auto", gpu) == "fp32"


@pytest.mark.parametrize("cpu", [AMX, NO_BF16])
def test_every_former_caller_gets_the_answer_of_the_one_function(tmp_path, flags, cpu):
    flags(cpu)
    answer = prec.resolve("auto", CPU)
    result = run(config(tmp_path, "run", max_steps=1))                        # the loop
    assert result.precision == answer == json.loads((result.run_dir / "config.json").read_text())["precision"]
    settings = {**common.IMAGE_TABLE["smoke"], "precision": "auto"}
    _, sup = common.train_configs(image_arms.HIP_MAE, 0, settings, dataset="fashion_mnist", runs_dir=tmp_path)
    assert sup.precision == answer                                             # the notebooks' runs
    assert provenance.machine({"precision": "auto"})["precision"] == answer    # a record with no runs
    assert parity.fastest_precision("cpu") == answer
    assert bench_suite._Run({"precision": "auto"}, 1, {}, print).precision == answer


def test_provenance_reads_the_precision_the_runs_recorded(tmp_path, flags):
    flags(NO_BF16)                                       # this machine would answer fp32
    rows = [{"arm": "a", "seed": 0, "precision": "bf16"}, {"arm": "a", "seed": 1, "precision": "bf16"}]
    (tmp_path / provenance.RUNS).write_text(json.dumps(rows))
    record = json.loads(provenance.write(tmp_path, {"precision": "auto"}).read_text())
    assert record["machine"]["precision"] == "bf16"
    (tmp_path / provenance.RUNS).write_text(json.dumps(rows + [{"arm": "b", "seed": 0, "precision": "fp32"}]))
    assert provenance.machine({}, tmp_path)["precision"] == "bf16+fp32"
    (tmp_path / provenance.RUNS).write_text(json.dumps([{"arm": "a", "seed": 0}]))    # written before runs recorded it
    assert provenance.machine({"precision": "bf16"}, tmp_path)["precision"] == "bf16"
    assert provenance.machine({}, tmp_path)["precision"] == "fp32"


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
