"""parts3d: assemblies of the same parts whose classes differ only in where the parts stand."""

import numpy as np
import pytest
import torch

from hipcore.data import load_dataset
from hipcore.data import parts3d as P
from hipcore.data.registry import dataset_fingerprint, num_classes

SMALL = dict(num_points=128, train_per_class=6, test_per_class=3)


def test_classes_are_the_upper_layers_and_come_in_mirror_pairs():
    assert len(P.CLASS_NAMES) == len(set(P.CLASS_NAMES)) == num_classes("parts3d") == 10
    for upper, lower in P.CLASS_LAYERS:
        assert len(upper) == len(lower) == P.LAYER and sorted(upper + lower) == sorted(P.PARTS)
        assert (lower, upper) in P.CLASS_LAYERS and (lower, upper) != (upper, lower)
    kinds = P.arrangements("bjjs", "bjss", 50, np.random.default_rng(0))
    assert kinds.shape == (50, 8)
    assert all(sorted(row[:4]) == list("bjjs") and sorted(row[4:]) == list("bjss") for row in kinds)
    assert len({"".join(row) for row in kinds}) > 5                    # places within a layer vary


def test_sizes_dtypes_and_normalisation():
    ds = load_dataset("parts3d", "train", **SMALL)
    assert ds.num_classes == 10 and len(ds) == 60
    assert torch.equal(torch.bincount(ds.labels), torch.full((10,), 6))
    spec = ds.modalities["points"]
    assert (spec.num_inputs, spec.channels, spec.grid) == (128, 3, (128,))
    x, labels = ds.get_batch(torch.arange(len(ds)))
    assert x["points"].shape == (60, 128, 3) and x["points"].dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.allclose(x["points"].norm(dim=-1).amax(1), torch.ones(60), atol=1e-5)
    assert x["points"].mean(1).abs().max() < 1e-5
    assert ds.describe()["partial"] is True


def test_deterministic_in_seed_split_and_options():
    a = load_dataset("parts3d", "train", seed=1, **SMALL)
    b = load_dataset("parts3d", "train", seed=1, **SMALL)
    assert torch.equal(a.points, b.points) and torch.equal(a.labels, b.labels) and a.fingerprint == b.fingerprint
    others = [load_dataset("parts3d", "train", seed=2, **SMALL), load_dataset("parts3d", "test", seed=1, **SMALL),
              load_dataset("parts3d", "train", seed=1, partial=False, **SMALL)]
    for other in others:
        assert other.fingerprint != a.fingerprint and not torch.equal(other.points[:3], a.points[:3])


def test_fingerprint_changes_with_options():
    base = dataset_fingerprint("parts3d", **SMALL)
    assert base == dataset_fingerprint("parts3d", **SMALL)
    assert base != dataset_fingerprint("shapes3d", **SMALL)
    for change in (dict(num_points=256), dict(train_per_class=7), dict(test_per_class=4), dict(partial=False)):
        assert dataset_fingerprint("parts3d", **{**SMALL, **change}) != base


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="takes no data_dir"):
        load_dataset("parts3d", "train", data_dir="/nowhere")
    with pytest.raises(ValueError, match="num_points must be a positive int"):
        load_dataset("parts3d", "train", num_points=0)
    with pytest.raises(ValueError, match="partial must be true or false"):
        load_dataset("parts3d", "train", partial="yes", **SMALL)
    with pytest.raises(ValueError, match="parts3d has no option 'resolution'"):
        load_dataset("parts3d", "train", resolution=8)
    with pytest.raises(ValueError, match="8 parts"):
        P.place_parts(np.array([list("bjs")]), 4, np.random.default_rng(0))


def test_parts_share_size_and_isotropic_second_moments():
    rng = np.random.default_rng(0)
    for kind in "bjs":
        x = P.sample_part(kind, 50, 4000, rng).reshape(-1, 3)
        assert np.abs(x.mean(0)).max() < 2e-3
        cov = x.T @ x / len(x)
        assert np.allclose(cov, np.eye(3) * P.GYRATION ** 2 / 3, atol=1e-3), (kind, cov)


def test_a_parts_radii_do_not_depend_on_its_corner():
    """Every corner poses a part alike relative to the direction from the centre, so the same
    local points have the same radii wherever they stand: the radial profile cannot tell places."""
    rng = np.random.default_rng(1)
    for kind in "bjs":
        local = P.sample_part(kind, 1, 500, rng)[0]                                   # [500, 3]
        radii = np.linalg.norm(P.SLOT_CENTRES[:, None] + local @ P.SLOT_FRAMES.swapaxes(-1, -2), axis=-1)
        assert np.allclose(radii, radii[0], atol=1e-12)


def test_class_means_of_radius_histograms_agree_where_shapes3d_differ():
    def spread(name):
        ds = load_dataset(name, "train", num_points=256, train_per_class=40)
        x = ds.points.double() - ds.points.double().mean(1, keepdim=True)
        r = x.norm(dim=-1) / x.norm(dim=-1).amax(1, keepdim=True)
        hist = torch.stack([torch.histc(row, 16, 0, 1) / len(row) for row in r])
        means = torch.stack([hist[ds.labels == c].mean(0) for c in range(ds.num_classes)])
        return (means - means.mean(0)).abs().max().item()
    assert spread("parts3d") < 0.05 < 0.1 < spread("shapes3d")


def test_hidden_points_own_back_faces_and_parts_in_front():
    rng = np.random.default_rng(2)
    kinds = np.full((1, 8), "s")
    centre = P.SLOT_CENTRES[0]
    sphere = centre + P.sample_part("s", 1, 2000, rng)                               # [1, 2000, 3] at corner 0
    outward = centre[None] / np.linalg.norm(centre)
    facing = ((sphere - centre) @ outward[0]) / P.SPHERE_RADIUS                         # cos to the camera
    hidden = P.hidden_points(sphere, kinds, outward)[0]
    assert (hidden[facing[0] < -1e-3]).all() and not (hidden[facing[0] > 1e-3]).any()
    towards = (P.SLOT_CENTRES[1] - centre) / np.linalg.norm(P.SLOT_CENTRES[1] - centre)
    hidden = P.hidden_points(sphere, kinds, towards[None])[0]
    along = (sphere[0] - centre) @ towards
    lateral = np.linalg.norm(sphere[0] - centre - along[:, None] * towards, axis=1)
    front = along > 1e-3 * P.SPHERE_RADIUS                                             # faces corner 1
    shadowed = front & hidden
    assert shadowed.any() and (lateral[shadowed] <= P.SPHERE_RADIUS + 1e-6).all()      # only by the part there
    assert not (front & (lateral > P.SPHERE_RADIUS + 1e-3) & hidden).any()


def test_jack_rays_hit_rods_and_pass_between_them():
    d = np.array([0.0, 0.0, 1.0])[:, None]
    o = np.array([[0.3, 0.3, -1.0], [0.3, 0.0, -1.0], [0.0, 0.0, -1.0]]).T            # between, rod x, centre
    t_in, t_out = P.ray_hits("j", o, d)
    assert t_in[0] > t_out[0]
    w = P.ROD_HALF_WIDTH
    assert np.allclose([t_in[1], t_out[1]], [1 - w, 1 + w])
    assert np.allclose([t_in[2], t_out[2]], [1 - P.JACK_LENGTH, 1 + P.JACK_LENGTH])


def test_views_leave_enough_visible_points():
    """Partial views keep num_points visible points: a view hides at most 1 - 1/OVERSAMPLE."""
    rng = np.random.default_rng(3)
    kinds = np.concatenate([P.arrangements(upper, lower, 20, rng) for upper, lower in P.CLASS_LAYERS])
    points = P.place_parts(kinds, 60, rng)
    visible = 1 - P.hidden_points(points, kinds, P.uniform_directions(rng, len(kinds))).mean(1)
    assert 0.3 < visible.mean() < 0.6 and visible.min() * P.OVERSAMPLE > 1.1


def test_upright_rotations_turn_and_tilt_a_little():
    r = P.upright_rotations(np.random.default_rng(4), 500)
    assert np.allclose(r @ r.swapaxes(1, 2), np.eye(3), atol=1e-12) and np.allclose(np.linalg.det(r), 1)
    tilt = np.degrees(np.arccos(np.clip(r[:, 2, 2], -1, 1)))
    assert tilt.max() <= np.degrees(P.MAX_TILT) + 1e-9 and tilt.max() > 10
    yaw = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    assert yaw.min() < -2.5 and yaw.max() > 2.5                                       # all the way round


def test_stored_order_puts_the_upper_layer_first():
    ds = load_dataset("parts3d", "test", augment=False, **SMALL)
    half = ds.points.shape[1] // 2
    height = ds.points[..., 2]                                   # up stays up, up to a small tilt
    assert (height[:, :half].mean(1) > height[:, half:].mean(1)).all()


def test_every_seed_trains_on_its_own_clouds_and_is_scored_on_the_same_test_clouds():
    from hipcore.data import load_dataset

    small = dict(num_points=64, train_per_class=2, test_per_class=2)
    tests = [load_dataset("parts3d", "test", seed=s, **small) for s in (0, 1)]
    trains = [load_dataset("parts3d", "train", seed=s, **small) for s in (0, 1)]
    assert tests[0].fingerprint == tests[1].fingerprint
    assert trains[0].fingerprint != trains[1].fingerprint
    assert load_dataset("shapes3d", "test", seed=3, num_points=64, train_per_class=2, test_per_class=2).fingerprint \
        == load_dataset("shapes3d", "test", seed=4, num_points=64, train_per_class=2, test_per_class=2).fingerprint
