"""Reference baselines: each learns a separable toy problem, and none learns shuffled labels."""

import matplotlib
import pytest
import torch

from hipcore import ModalitySpec
from hipcore.experiments import baselines as B
from hipcore.train import TrainConfig

matplotlib.use("Agg")


class Images:
    """8 x 8 images, class (0-3) = the bright quadrant, stored in a shuffled pixel order."""

    def __init__(self, n, seed=0, shuffle_labels=False):
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % 4
        images = 0.5 * torch.randn(n, 8, 8, generator=g)
        for q in range(4):
            r, c = divmod(q, 2)
            images[labels == q, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.0
        order = torch.randperm(64, generator=g)
        self.data = images.reshape(n, 64, 1)[:, order]
        self.modalities = {"image": ModalitySpec(64, 1, (8, 8), order)}
        self.labels = labels[torch.randperm(n, generator=g)] if shuffle_labels else labels
        self.class_names = list("abcd")

    num_classes = property(lambda self: len(self.class_names))

    def __len__(self):
        return len(self.labels)

    def get_batch(self, indices, *, train=False, generator=None):
        return {"image": self.data[indices].clone()}, self.labels[indices]


def rod(n, p, g):      # along the up axis: linear neighbourhoods
    return torch.stack([0.02 * torch.randn(n, p, generator=g), 0.02 * torch.randn(n, p, generator=g),
                        0.4 * torch.rand(n, p, generator=g)], -1)


def disk(n, p, g):     # across the up axis: planar neighbourhoods
    return torch.stack([0.4 * torch.rand(n, p, generator=g) - 0.2, 0.4 * torch.rand(n, p, generator=g) - 0.2,
                        0.01 * torch.randn(n, p, generator=g)], -1)


class Clouds:
    """Two classes of 64 points: a rod above a disk, or a disk above a rod (mirror images),
    points in a random order per cloud."""

    up_axis = 2

    def __init__(self, n, seed=0, shuffle_labels=False):
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % 2
        top = torch.where(labels[:, None, None] == 0, rod(n, 32, g), disk(n, 32, g)) + torch.tensor([0, 0, 0.3])
        bottom = torch.where(labels[:, None, None] == 0, disk(n, 32, g), rod(n, 32, g)) - torch.tensor([0, 0, 0.7])
        points = torch.cat([top, bottom], 1)
        self.points = torch.stack([c[torch.randperm(64, generator=g)] for c in points])
        self.modalities = {"points": ModalitySpec(64, 3)}
        self.labels = labels[torch.randperm(n, generator=g)] if shuffle_labels else labels
        self.class_names = ["rod on disk", "disk on rod"]

    num_classes = property(lambda self: len(self.class_names))

    def __len__(self):
        return len(self.labels)

    def get_batch(self, indices, *, train=False, generator=None):
        return {"points": self.points[indices].clone()}, self.labels[indices]


def by_model(rows):
    return {r["model"]: r for r in rows}


SHORT = {"MLP (256 hidden)": B.Knobs(l2=(0.0, 1e-3), epochs=(5, 15)), "small CNN": B.Knobs(epochs=(5, 15))}


def test_image_baselines_learn_the_quadrants_and_not_shuffled_labels():
    learned = by_model(B.image_baselines(Images(160), Images(40, seed=2), Images(80, seed=1), seed=0, knobs=SHORT))
    shuffled = by_model(B.image_baselines(Images(160, shuffle_labels=True), Images(40, seed=2, shuffle_labels=True),
                                          Images(80, seed=1), seed=0, knobs=SHORT))
    assert set(learned) == set(B.IMAGE_MODELS)
    for name in B.IMAGE_MODELS:
        assert learned[name]["test_accuracy"] >= 90, learned[name]       # chance: 25
        assert shuffled[name]["test_accuracy"] <= 50, shuffled[name]
        assert (learned[name]["train_size"], learned[name]["val_size"], learned[name]["test_size"]) == (160, 40, 80)
        assert learned[name]["seconds"] > 0
    assert learned["logistic regression"]["l2"] in B.L2_GRID and learned["logistic regression"]["epochs"] is None
    assert learned["small CNN"]["l2"] is None and learned["small CNN"]["epochs"] in (5, 15)


class Noisy(Images):
    """The quadrant images with 30% of the training labels replaced at random: unregularised
    logistic regression memorises them, a stronger L2 does not."""

    def __init__(self, n, seed=0):
        super().__init__(n, seed)
        g = torch.Generator().manual_seed(seed + 100)
        flip = torch.rand(n, generator=g) < 0.3
        self.labels = torch.where(flip, torch.randint(0, 4, (n,), generator=g), self.labels)
        self.data = self.data + 1.5 * torch.randn(self.data.shape, generator=g)


def test_the_l2_strength_is_chosen_on_validation_and_the_test_set_is_scored_once():
    train, val, test = Noisy(120), Images(200, seed=2), Images(200, seed=1)
    val.data = val.data + 1.5 * torch.randn(val.data.shape, generator=torch.Generator().manual_seed(5))
    grid = (1e-4, 1e-2, 1.0, 100.0)
    row = by_model(B.image_baselines(train, val, test, 0, models=("logistic regression",),
                                     knobs={"logistic regression": B.Knobs(l2=grid)}))["logistic regression"]
    fixed = [by_model(B.image_baselines(train, val, test, 0, models=("logistic regression",),
                                        knobs={"logistic regression": B.Knobs(l2=(l2,))}))["logistic regression"]
             for l2 in grid]
    best = max(fixed, key=lambda r: (r["val_accuracy"], r["l2"]))
    assert row["l2"] == best["l2"] and row["val_accuracy"] == best["val_accuracy"]
    assert row["test_accuracy"] == pytest.approx(best["test_accuracy"])
    assert fixed[0]["train_accuracy"] > row["train_accuracy"] >= fixed[-1]["train_accuracy"]  # less memorised
    assert fixed[0]["edge"] == "l2 0.0001 is the lowest of its grid"                          # a one-value grid
    assert (row["edge"] == "") == (row["l2"] not in (min(grid), max(grid)))


def test_the_epochs_are_read_off_one_run_and_equal_a_run_of_that_length():
    train, val, test = Images(160), Images(40, seed=2), Images(80, seed=1)
    one = B.image_baselines(train, val, test, 0, models=("small CNN",), knobs={"small CNN": B.Knobs(epochs=(3,))})[0]
    read_off = B.candidates(B.Knobs(epochs=(3, 6)), 0, *[(B.image_grid(d), d.labels) for d in (train, val)],
                            lambda: B.small_cnn(1, 4, 8, 8))
    assert [c[2] for c in read_off] == [3, 6] and read_off[0][0] == one["val_accuracy"]
    assert one["edge"] == "epochs 3 is the lowest of its grid"


def test_an_empty_grid_and_an_unknown_model_are_one_clear_error():
    data = Images(16), Images(8, seed=2), Images(8, seed=1)
    with pytest.raises(ValueError, match="'small CNN': its epochs grid is empty"):
        B.image_baselines(*data, 0, knobs={"small CNN": B.Knobs(epochs=())})
    with pytest.raises(ValueError, match="'logistic regression': its l2 grid is empty"):
        B.image_baselines(*data, 0, models=("logistic regression",), knobs={"logistic regression": B.Knobs(l2=())})
    with pytest.raises(ValueError, match="unknown image baseline"):
        B.image_baselines(*data, 0, models=("SVM",))


def test_point_baselines_learn_which_part_is_on_top_and_not_shuffled_labels():
    short = B.Knobs(epochs=(15, 30))
    options = dict(centres=8, k=8, knobs={"PointNet": short, "PointNet++-style": short})
    learned = by_model(B.point_baselines(Clouds(120), Clouds(40, seed=2), Clouds(60, seed=1), seed=0, **options))
    shuffled = by_model(B.point_baselines(Clouds(120, shuffle_labels=True), Clouds(40, seed=2, shuffle_labels=True),
                                          Clouds(60, seed=1), seed=0, **options))
    assert set(learned) == set(B.POINT_MODELS)
    for name in B.POINT_MODELS:
        assert learned[name]["test_accuracy"] >= 90, learned[name]       # chance: 50
        assert shuffled[name]["test_accuracy"] <= 72, shuffled[name]


def test_the_descriptor_is_order_free_and_knows_up_from_down():
    clouds = Clouds(4).points
    features = B.local_shape(clouds, k=8)
    reordered = B.local_shape(clouds[:, torch.randperm(64)], k=8)
    assert torch.allclose(features, reordered, atol=1e-5)
    flipped = B.local_shape(clouds * torch.tensor([1, 1, -1]), k=8)       # upside down: halves swap
    half = features.shape[1] // 2
    assert torch.allclose(flipped[:, :half], features[:, half:], atol=1e-4)
    assert not torch.allclose(flipped, features, atol=1e-2)


def test_baselines_use_exactly_the_runs_training_subset_without_its_validation_part(tmp_path):
    cfg = TrainConfig(limit_train=100, val_fraction=0.2, seed=3, run_dir=str(tmp_path))
    train, val, test = B.arm_data(cfg, Images(150), Images(40, seed=1))
    assert (len(train), len(val), len(test)) == (80, 20, 40)
    rows = B.run_baselines({3: cfg}, family="images", train_data=Images(150), test_data=Images(40, seed=1),
                           models=("logistic regression",))
    assert [(r["model"], r["seed"], r["train_size"], r["val_size"]) for r in rows] == \
        [("logistic regression", 3, 80, 20)]
    path = B.write_baselines(tmp_path / "results", rows)
    assert path.name == "baselines.csv"
    assert path.read_text().splitlines()[0] == ",".join(B.COLUMNS)
    back = B.read_baselines(path.parent)
    assert back[0]["test_accuracy"] == pytest.approx(rows[0]["test_accuracy"]) and back[0]["tuned"]
    assert back[0]["l2"] == rows[0]["l2"] and back[0]["epochs"] is None and back[0]["edge"] == rows[0]["edge"]
    with pytest.raises(ValueError, match="seed 3"):
        B.run_baselines({4: cfg}, family="images", train_data=Images(150), test_data=Images(40))
    with pytest.raises(ValueError, match="val_fraction > 0"):
        B.run_baselines({3: cfg.replace(val_fraction=0.0)}, family="images", train_data=Images(150),
                        test_data=Images(40))


def test_a_baselines_file_of_the_old_shape_still_reads_and_says_so(tmp_path):
    old = ",".join(B.OLD_COLUMNS) + "\nlogistic regression,0,78.6,99.5,1.2,5400,2000\n"
    (tmp_path / "baselines.csv").write_text(old)
    (row,) = B.read_baselines(tmp_path)
    assert (row["test_accuracy"], row["train_size"], row["tuned"], row["l2"], row["val_accuracy"]) == \
        (78.6, 5400, False, None, None)
    (tmp_path / "baselines.csv").write_text("model,seed\nMLP,0\n")
    with pytest.raises(ValueError, match="missing column"):
        B.read_baselines(tmp_path)


def test_the_baselines_figure_draws_one_line_per_baseline_and_the_arms_dots():
    from hipcore.plots import draw_baselines

    rows = [{"model": "MLP", "seed": s, "test_accuracy": 80.0 + s} for s in (0, 1)]
    rows += [{"model": "small CNN", "seed": 0, "test_accuracy": 85.0}]
    fig = draw_baselines({"HiP": [70.0, 72.0], "Perceiver IO": [60.0]}, rows, "toy", chance=10)
    ax = fig.axes[0]
    lines = [line.get_label() for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert lines == ["MLP (80.5)", "small CNN (85.0)"]
    assert [len(c.get_offsets()) for c in ax.collections if len(c.get_offsets())][:2] == [2, 1]
    with pytest.raises(ValueError):
        draw_baselines({}, rows, "toy")
