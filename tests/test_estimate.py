"""The time a notebook's training will take, estimated from one timed step per model."""

from hipcore.experiments import common, estimate
from hipcore.train import train

TINY = dict(variant="small3", epochs=2, pretrain_epochs=1, limit_train=96, limit_test=32, batch_size=32,
            lr=1e-3, warmup_epochs=0.5, precision="fp32", val_fraction=0.25, val_size=24)
DATA = dict(dataset="fashion_mnist", data_dir=None, data_options={})


def test_a_step_is_timed_on_the_runs_own_batch():
    cfg = common.train_configs(common.Arm("plain"), 0, TINY, runs_dir="/nonexistent", **DATA)[1]
    from hipcore.train.engine import load_data

    assert 0 < estimate.step_seconds(cfg, load_data(cfg)[0]) < 60


def test_runs_are_counted_once_by_their_steps_and_finished_ones_cost_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(estimate, "step_seconds", lambda cfg, train_set: 1.0 if cfg.task == "supervised" else 10.0)
    mae, plain = common.Arm("mae", mae=True), common.Arm("plain")
    plan = [(mae, 0), (plain, 0), (common.Arm("mae, again", mae=True, transfer="positions"), 0)]
    jobs = [([c for c in common.train_configs(a, s, TINY, runs_dir=tmp_path, **DATA) if c], None, None)
            for a, s in plan]
    seconds, to_train, total = estimate.plan_seconds(jobs)
    # one MAE pretraining shared by the two MAE arms (1 epoch x 3 steps x 10 s), three
    # classification runs (2 epochs x 3 steps x 1 s each)
    assert (to_train, total, seconds) == (3, 3, 1 * 3 * 10.0 + 3 * 6 * 1.0)
    # 96 images trained on (the 24 validation ones are others): 96 // 32 = 3 steps an epoch;
    # 2 epochs classification, 1 of MAE
    cfgs = jobs[0][0]
    assert [estimate.run_steps(c, 96) for c in cfgs] == [3, 6]
    train(jobs[1][0][0])                                              # the plain arm, now in the cache
    after, to_train, _ = estimate.plan_seconds(jobs)
    assert (to_train, after) == (2, seconds - 6.0)
    line = estimate.plan_line(jobs)
    assert line.startswith("training 2 of 3 runs (1 finished in the run cache): about ") and " s on this" in line
