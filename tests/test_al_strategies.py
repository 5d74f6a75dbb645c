"""Selection strategies on synthetic arrays with known right answers."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning import committee, uncertainty
from active_learning.diversity import image_descriptor, kcenter_greedy
from active_learning.ranking import top_k
from active_learning.strategies import (
    PoolArrays,
    hybrid_selection,
    random_selection,
    run_strategy,
    stratified_random,
)
from core.geometry import Shape
from core.instances import Instances


def brute_kcenter(x: np.ndarray, k: int, labelled: list[int], first: int | None) -> list[int]:
    """Reference: full distance matrix, recomputed min over centres every step."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    centres = list(labelled)
    picks: list[int] = []
    for _ in range(k):
        if not centres:
            j = first
        else:
            m = d[:, centres].min(axis=1)
            m[centres] = -1
            j = int(np.argmax(m))
        picks.append(j)
        centres.append(j)
    return picks


@pytest.mark.parametrize("measure", ["least_confidence", "margin", "entropy"])
def test_most_uncertain_instance_ranks_first(measure):
    probs = np.array([[0.9, 0.05, 0.05], [0.34, 0.33, 0.33], [0.6, 0.3, 0.1], [1.0, 0.0, 0.0]])
    s = uncertainty.instance_uncertainty(probs, measure)
    assert int(np.argmax(s)) == 1
    assert int(np.argmin(s)) == 3
    assert np.all((s >= -1e-9) & (s <= 1 + 1e-9))


def test_known_values():
    assert uncertainty.least_confidence(np.array([[0.5, 0.5]]))[0] == pytest.approx(0.5)
    assert uncertainty.margin(np.array([[0.7, 0.2, 0.1]]))[0] == pytest.approx(0.5)
    assert uncertainty.entropy(np.array([[0.25] * 4]))[0] == pytest.approx(1.0)
    # binary entropy: p=0.5 is 1 bit, p=0/1 is 0; max over the 7 fake flags
    fake = np.zeros((2, 7))
    fake[1, 3] = 0.5
    assert uncertainty.binary_entropy(fake).tolist() == pytest.approx([0.0, 1.0])


def test_aggregation_max_mean_sum_and_class_weights():
    s = np.array([0.2, 0.8, 0.4, 0.1])
    idx = np.array([0, 0, 2, 2])
    assert uncertainty.aggregate(s, idx, 3, how="max").tolist() == pytest.approx([0.8, 0.0, 0.4])
    assert uncertainty.aggregate(s, idx, 3, how="mean").tolist() == pytest.approx([0.5, 0.0, 0.25])
    assert uncertainty.aggregate(s, idx, 3, how="sum").tolist() == pytest.approx([1.0, 0.0, 0.5])
    # a rare class (id 27, fake) weighted x3 lifts image 2 above image 0
    w = uncertainty.aggregate(
        s, idx, 3, how="max", class_ids=[1, 1, 27, 1], class_weights={27: 3.0}
    )
    assert top_k(w, 1).tolist() == [2]
    with pytest.raises(ValueError, match="image_index"):
        uncertainty.aggregate(s, np.array([0, 0, 5, 2]), 3)


def test_image_uncertainty_combines_heads():
    dmg = np.array([[0.98, 0.01, 0.01], [0.4, 0.3, 0.3]])
    fake = np.array([[0.01] * 7, [0.5] + [0.0] * 6])
    score = uncertainty.image_uncertainty(
        {"damage": (dmg, [0, 1]), "fake": (fake, [2, 0])}, 3, measure="entropy"
    )
    assert top_k(score, 3).tolist()[0] == 1 or score[1] > score[2]
    assert score[2] < 0.1 and score[0] > 0.1


def test_top_k_excludes_and_breaks_ties_by_index():
    s = np.array([0.5, 0.9, 0.9, np.nan, 0.1])
    assert top_k(s, 3).tolist() == [1, 2, 0]
    assert top_k(s, 3, exclude=np.array([1])).tolist() == [2, 0, 4]
    assert top_k(s, 10).tolist() == [1, 2, 0, 4, 3]


def test_kcenter_picks_far_cluster():
    rng = np.random.default_rng(0)
    near = rng.normal(0, 0.1, size=(200, 16))
    far = rng.normal(0, 0.1, size=(5, 16)) + 50
    x = np.concatenate([near, far]).astype(np.float32)
    picks = kcenter_greedy(x, 1, labelled=np.arange(10))
    assert picks[0] >= 200


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    labelled = [3, 17]
    got = kcenter_greedy(x, 12, labelled=labelled).tolist()
    assert got == brute_kcenter(x.astype(np.float64), 12, labelled, None)
    # no labelled set: first pick random (seeded), then greedy
    got2 = kcenter_greedy(x, 8, seed=seed).tolist()
    assert got2 == brute_kcenter(x.astype(np.float64), 8, [], got2[0])


def test_kcenter_chunked_initial_distances_match(monkeypatch):
    import active_learning.diversity as div

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    ref = kcenter_greedy(x, 20, labelled=np.arange(0, 300, 7))
    monkeypatch.setattr(div, "CHUNK", 16)
    assert kcenter_greedy(x, 20, labelled=np.arange(0, 300, 7)).tolist() == ref.tolist()


def test_kcenter_never_returns_excluded_or_labelled():
    x = np.random.default_rng(1).normal(size=(30, 4))
    picks = kcenter_greedy(x, 100, labelled=[0, 1], exclude=[2, 3])
    assert len(picks) == 26 and not set(picks) & {0, 1, 2, 3}
    assert len(set(picks.tolist())) == 26


def test_class_balance_takes_rare_class():
    rng = np.random.default_rng(0)
    # 95 common-class images spread widely, 5 rare-class images packed together and
    # moderately uncertain: plain hybrid skips them, balanced hybrid takes one.
    common = rng.normal(0, 10, size=(95, 8))
    rare = rng.normal(0, 0.01, size=(5, 8))
    x = np.concatenate([common, rare]).astype(np.float32)
    classes = np.array([0] * 95 + [7] * 5)
    scores = np.concatenate([rng.uniform(0.5, 1.0, 95), np.full(5, 0.55)])
    plain = hybrid_selection(scores, x, 5, labelled=[0])
    balanced = hybrid_selection(scores, x, 5, labelled=[0], groups=classes)
    assert not (set(plain.tolist()) & set(range(95, 100)))
    assert set(balanced.tolist()) & set(range(95, 100))
    strat = stratified_random(classes, 4, seed=3)
    assert (classes[strat] == 7).sum() == 2


def test_hybrid_picks_only_from_uncertain_pool_and_spreads():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 8)).astype(np.float32)
    scores = rng.uniform(size=1000)
    picks = hybrid_selection(scores, x, 10)
    pool = set(top_k(scores, 40).tolist())
    assert set(picks.tolist()) <= pool and len(set(picks.tolist())) == 10


def test_committee_mask_disagreement():
    a = np.zeros((2, 10, 10), bool)
    a[0, :5] = True
    a[1, 5:] = True
    assert committee.mask_disagreement(a, [40, 41], a, [40, 41]) == pytest.approx(0.0)
    # same masks, one class swapped: half the agreement lost
    assert committee.mask_disagreement(a, [40, 41], a, [40, 99]) == pytest.approx(0.5)
    # the other stage found nothing
    assert committee.mask_disagreement(a, [40, 41], a[:0], []) == 1.0
    assert committee.probability_disagreement([0.9, 0.1], [0.2, 0.1]) == pytest.approx(0.7)
    comb = committee.combine([0.2, np.nan, np.nan], [0.4, 0.5, np.nan])
    assert comb[0] == pytest.approx(0.3) and comb[1] == 0.5 and np.isnan(comb[2])
    ve = committee.vote_entropy(
        [np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.0, 1.0], [0.5, 0.5]])]
    )
    assert ve[0] > 0.5 and ve[1] == pytest.approx(0.0, abs=1e-9)


def _boxes(*boxes, classes=None, scores=None, damaged=None) -> Instances:
    """Instances of axis-aligned boxes ``(x0, y0, x1, y1)`` on an 8 x 8 photo."""
    inst = Instances(
        shapes=[Shape.from_box(*b) for b in boxes],
        class_ids=classes if classes is not None else [40] * len(boxes),
        scores=scores,
    )
    if damaged is not None:
        inst.probs["damaged"] = np.array([[1 - p, p] for p in damaged], dtype=np.float32)
    return inst


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (_boxes((0, 0, 4, 8), (4, 0, 8, 8)), _boxes((0, 0, 4, 8), (4, 0, 8, 8)), 0.0),
        (_boxes((0, 0, 4, 8)), _boxes((0, 0, 4, 8), classes=[41]), 1.0),  # class differs
        (_boxes((0, 0, 4, 8)), _boxes((0, 0, 2, 8)), 0.5),  # IoU 1/2
        (_boxes((0, 0, 4, 8), (4, 0, 8, 8)), Instances.empty(), 1.0),  # the other found none
        (Instances.empty(), Instances.empty(), 0.0),
    ],
)
def test_instances_disagreement_on_tiny_boxes(a, b, expected):
    # on the 8 x 8 photo a grid of 16 doubles every pixel: the IoU is the same as full size
    assert committee.instances_disagreement(a, b, 8, 8, grid=16) == pytest.approx(expected)
    brute = committee.mask_disagreement(a.masks(8, 8), a.class_ids, b.masks(8, 8), b.class_ids)
    assert committee.instances_disagreement(a, b, 8, 8, grid=8) == pytest.approx(brute)


@pytest.mark.parametrize(
    "damage, parts, expected",
    [
        # damage 0.9 on part 0, none on part 1; the classifier says 0.2 and 0.1
        (_boxes((1, 1, 3, 3), scores=[0.9]), _boxes((0, 0, 4, 8), (4, 0, 8, 8), damaged=[0.2, 0.1]), 0.7),
        # the most confident overlapping damage counts
        (_boxes((0, 0, 2, 2), (2, 2, 4, 4), scores=[0.3, 0.6]), _boxes((0, 0, 4, 8), damaged=[0.5]), 0.1),
        (Instances.empty(), _boxes((0, 0, 4, 8), damaged=[0.25]), 0.25),
        (_boxes((1, 1, 3, 3), scores=[0.9]), _boxes((0, 0, 4, 8)), 0.0),  # no P(damaged) at all
    ],
)  # fmt: skip
def test_damaged_disagreement_on_tiny_boxes(damage, parts, expected):
    assert committee.damaged_disagreement(damage, parts, 8, 8) == pytest.approx(expected)


def test_damaged_disagreement_leaves_out_parts_without_the_head():
    parts = _boxes((0, 0, 4, 8), (4, 0, 8, 8), damaged=[0.2, 0.1])
    parts.probs["damaged"][0] = np.nan  # stored without the head
    damage = _boxes((1, 1, 3, 3), (5, 1, 7, 3), scores=[0.9, 0.5])
    assert committee.damaged_disagreement(damage, parts, 8, 8) == pytest.approx(0.4)


def test_run_strategy_dispatch_and_errors():
    pool = PoolArrays(n=50, labelled=np.arange(50) < 5)
    r = run_strategy("random", pool, 10, seed=1)
    assert len(r) == 10 and r.min() >= 5
    assert r.tolist() == random_selection(50, 10, exclude=np.arange(50) < 5, seed=1).tolist()
    with pytest.raises(ValueError, match="choose one of"):
        run_strategy("nope", pool, 3)
    with pytest.raises(ValueError, match="needs image embeddings"):
        run_strategy("kcenter", pool, 3)


def test_image_descriptor_and_cold_start():
    rng = np.random.default_rng(0)
    imgs = [np.full((40, 60, 3), v, np.uint8) for v in (10, 12, 240)]
    imgs.append(rng.integers(0, 255, size=(30, 30, 3), dtype=np.uint8))
    d = np.stack([image_descriptor(i) for i in imgs])
    assert d.shape == (4, 64 + 24) and np.isfinite(d).all()
    picks = run_strategy(
        "cold_start", PoolArrays(n=4, descriptors=d, labelled=np.array([1, 0, 0, 0], bool)), 1
    )
    assert picks[0] != 0  # image 0 duplicates the labelled image 1's look
    with pytest.raises(ValueError, match="HWC"):
        image_descriptor(np.zeros((4, 4)))


@pytest.mark.parametrize("clustered", [True, False])
def test_blocked_kcenter_equals_plain(clustered):
    rng = np.random.default_rng(7)
    n = 3000
    x = rng.normal(size=(n, 16)).astype(np.float32)
    if clustered:
        x += rng.normal(0, 8, size=(20, 16)).astype(np.float32)[rng.integers(0, 20, n)]
    lab = np.arange(0, n, 97)
    ex = np.arange(5, n, 101)
    plain = kcenter_greedy(x, 150, labelled=lab, exclude=ex, blocked_search=False)
    fast = kcenter_greedy(x, 150, labelled=lab, exclude=ex, blocked_search=True)
    assert fast.tolist() == plain.tolist()
    # nothing labelled: same seeded first pick, then identical greedy picks
    assert (
        kcenter_greedy(x, 40, seed=3, blocked_search=True).tolist()
        == kcenter_greedy(x, 40, seed=3, blocked_search=False).tolist()
    )
