"""Training: supervised classification, MAE pretraining and fine-tuning, in one loop.

    from hipcore.train import TrainConfig, train
    mae = train(TrainConfig(task="pretrain", dataset="fashion_mnist", epochs=20, run_dir="runs/mae"))
    ft = train(TrainConfig(init_from=str(mae.last_checkpoint), transfer="positions", run_dir="runs/ft"))
    ft.metrics["test_accuracy"], ft.wall_time, ft.throughput

    test_set = hipcore.data.load_dataset("fashion_mnist", "test")
    rec = reconstruct_examples(load_model(mae.last_checkpoint), test_set, [0, 1, 2], mask_ratio=0.85)
    plot_reconstructions(rec)             # rows: input | masked input | reconstruction
"""

from .checkpoint import CheckpointError, load_model
from .config import TrainConfig
from .engine import ConfigMismatchError, NonFiniteLossError, RunResult, evaluate, model_config, train
from .mae import Reconstructions, forward_loss, random_masking, reconstruct_examples
from .metrics import read_metrics
from .optim import Lamb
from .plots import plot_reconstructions
from .rundir import RunDirError
from .transfer import transfer

__all__ = ["CheckpointError", "ConfigMismatchError", "Lamb", "NonFiniteLossError", "Reconstructions", "RunResult",
           "TrainConfig", "evaluate", "forward_loss", "load_model", "model_config", "plot_reconstructions",
           "random_masking", "read_metrics", "reconstruct_examples", "RunDirError", "train", "transfer"]
