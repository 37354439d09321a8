"""position_tables: F7's rule on small synthetic tables, shared by notebooks 03 and 06.

Images on a 12 x 12 grid: a class template (a blob whose place depends on the class) plus
noise, so that tables built from their content are smooth on the grid without knowing where
a pixel is."""

from types import SimpleNamespace

import pytest
import torch

from hipcore import geometry
from hipcore.experiments import position_tables as pt

GRID = (12, 12)
SEEDS = (0, 1, 2)


def images(seed: int, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, 144, 1] in raster order, labels [n]) of three classes."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=gen)
    r, c = torch.meshgrid(torch.arange(GRID[0]).double(), torch.arange(GRID[1]).double(), indexing="ij")
    templates = torch.stack([torch.exp(-((r - 3 - 3 * k) ** 2 + (c - 6) ** 2) / 8) for k in range(3)])
    x = templates[labels] + 0.3 * torch.rand(n, *GRID, generator=gen, dtype=torch.double)
    return x.reshape(n, -1, 1), labels


def content_table(seed: int) -> torch.Tensor:
    """A table of content alone: the class-mean images of other images of the same kind [144, 3]."""
    return geometry.content_controls(*images(seed + 100))[geometry.CLASS_MEANS].float()


def per_seed(seeds=SEEDS, order: torch.Tensor | None = None) -> dict[int, list[dict]]:
    """{seed: geometry_scores} of the content-only table, in input order `order` (None: raster)."""
    spec = SimpleNamespace(grid=GRID, order=order)
    out = {}
    for seed in seeds:
        x, y = images(seed)
        table = content_table(seed)
        if order is not None:
            x, table = x[:, order], table[order]
        out[seed] = pt.geometry_scores({"content only": table}, spec, x, y, seed)
    return out


@pytest.fixture(scope="module")
def scored():
    return per_seed()


def test_a_content_only_table_is_not_structured_and_the_fourier_table_is(scored):
    rows = {r["table"]: r for r in pt.structure_rows(scored)}
    assert list(rows) == ["content only", pt.FOURIER]
    assert rows["content only"]["holds_geometry"] == pt.LACKS and rows["content only"]["seeds"] == 3
    assert rows[pt.FOURIER]["holds_geometry"] == pt.HOLDS
    assert rows[pt.FOURIER]["partial_score"] > 0.3 > rows[pt.FOURIER]["best_control"]
    assert "holds grid geometry beyond content" in pt.sentence("Fourier", rows[pt.FOURIER])
    assert "does not beat content alone" in pt.sentence("content", rows["content only"])


def test_each_table_is_held_against_the_shared_controls_and_its_own_rows_permuted(scored):
    scores = scored[0]
    kinds = {r["table"]: r["kind"] for r in scores}
    assert kinds["content only"] == pt.LEARNED and kinds[pt.FOURIER] == pt.GEOMETRIC
    assert {pt.permuted_name("content only"), pt.permuted_name(pt.FOURIER)} <= set(kinds)
    mine = pt.controls_of(scores, "content only")
    assert set(mine) == {geometry.PIXEL_STATISTICS, geometry.CLASS_MEANS, geometry.PCA_LOADINGS, geometry.PERMUTED}
    permuted = next(r["score"] for r in scores if r["table"] == pt.permuted_name("content only"))
    assert mine[geometry.PERMUTED] == permuted and pt.best_control(scores, "content only") == max(mine.values())
    assert pt.permuted_name(pt.FOURIER) not in mine and pt.permuted_name("content only") not in mine


def test_one_seed_cannot_be_decided_and_input_order_does_not_matter(scored):
    one = {r["table"]: r["holds_geometry"] for r in pt.structure_rows({0: scored[0]})}
    assert set(one.values()) == {pt.UNDECIDED}
    assert pt.decide([0.5], {"c": [0.1]}) == pt.UNDECIDED and pt.decide([0.5, 0.52], {"c": [0.1, 0.12]}) == pt.HOLDS
    order = torch.randperm(GRID[0] * GRID[1], generator=torch.Generator().manual_seed(5))
    shuffled = per_seed(seeds=(0,), order=order)[0]
    assert {r["table"]: round(r["score"], 6) for r in shuffled if r["kind"] != pt.CONTENT} == \
        {r["table"]: round(r["score"], 6) for r in scored[0] if r["kind"] != pt.CONTENT}


def test_the_table_shows_headed_columns_with_signed_scores(scored):
    text = pt.shown(pt.structure_rows(scored))
    assert text.splitlines()[0].startswith("| table | seeds | partial score (mean over seeds) |")
    assert "holds geometry (F7's rule)" in text and f"| {pt.HOLDS} |" in text and "| +0." in text
