"""Low-budget selection: MaxHerding, TypiClust, stratified noisy entropy, auto, and the
nearest-neighbour purity check of an embedding."""

from __future__ import annotations

import time

import numpy as np
import pytest

from active_learning import strategies as st
from active_learning.coverage import maxherding, typicality, typiclust
from active_learning.purity import neighbour_purity
from active_learning.strategies import PoolArrays, auto_choice, run_strategy
from active_learning.stratified import noise_temperature, noisy_scores, stratified_entropy


def blobs(n_blobs: int = 5, per: int = 40, d: int = 8, seed: int = 0):
    """Well-separated Gaussian blobs: ``(x, blob id of each row)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 30, size=(n_blobs, d))
    lab = np.repeat(np.arange(n_blobs), per)
    return (centres[lab] + rng.normal(0, 1, size=(len(lab), d))).astype(np.float32), lab


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_maxherding_covers_every_blob(seed):
    x, blob = blobs(seed=seed)
    picks = maxherding(x, 5, seed=seed)
    assert sorted(blob[picks]) == [0, 1, 2, 3, 4]


def test_maxherding_skips_blobs_already_labelled():
    x, blob = blobs()
    labelled = np.flatnonzero(blob < 3)[::40]  # one labelled photo in blobs 0, 1, 2
    picks = maxherding(x, 2, labelled=labelled)
    assert sorted(blob[picks]) == [3, 4]
    assert not set(picks) & set(labelled)


def test_typiclust_picks_unlabelled_clusters_first():
    x, blob = blobs()
    labelled = np.array([0, 40])  # blobs 0 and 1 each hold a labelled photo
    picks = typiclust(x, 3, labelled=labelled)
    assert sorted(blob[picks]) == [2, 3, 4]


def test_typiclust_prefers_the_dense_core_to_outliers():
    rng = np.random.default_rng(0)
    core = rng.normal(0, 0.1, size=(60, 4))
    outliers = rng.normal(0, 3, size=(10, 4))
    x = np.concatenate([outliers, core]).astype(np.float32)
    picks = typiclust(x, 1)
    assert picks[0] >= 10  # a core point, not one of the first 10 rows (outliers)
    typ = typicality(x)
    assert typ[10:].min() > typ[:10].max()


def test_typiclust_skips_clusters_under_the_minimum_size():
    x, _ = blobs(n_blobs=2, per=30)
    tiny = np.array([[500.0] * 8, [500.5] * 8], dtype=np.float32)  # a 2-point far cluster
    x = np.concatenate([x, tiny])
    picks = typiclust(x, 3, min_cluster=5)
    assert not set(picks) & {60, 61}


def rare_pool(seed: int = 0):
    """200 photos: classes 0 (common) and 1 (rare, 20 photos); class 1 has 1 labelled
    instance, class 0 has 50. Entropy is highest on class-0 photos."""
    rng = np.random.default_rng(seed)
    classes = np.zeros(200, dtype=np.int64)
    classes[180:] = 1
    scores = np.where(classes == 0, 0.8, 0.2) + rng.uniform(0, 0.05, 200)
    return scores, classes, {0: 50, 1: 1}


def test_stratified_entropy_reserves_its_share_for_rare_classes():
    scores, classes, counts = rare_pool()
    late = {"labelled_counts": counts, "round_index": 20}  # noise gone: the shares are exact
    picks = stratified_entropy(scores, classes, 20, rare_share=0.25, **late)
    assert len(set(picks)) == 20
    assert (classes[picks] == 1).sum() == 5  # 25% of 20
    # without the reserve, pure entropy would take no rare photo at all
    none = stratified_entropy(scores, classes, 20, rare_share=0.0, **late)
    assert (classes[none] == 1).sum() == 0


def test_stratified_entropy_never_picks_excluded():
    scores, classes, counts = rare_pool()
    exclude = np.arange(170, 200)
    picks = stratified_entropy(scores, classes, 20, labelled_counts=counts, exclude=exclude)
    assert not set(picks) & set(exclude) and len(picks) == 20


def test_noise_shrinks_round_by_round():
    assert noise_temperature(1) == noise_temperature(0) / 2
    s = np.zeros(5000)
    spread = [np.std(noisy_scores(s, r, seed=0)) for r in range(4)]
    assert all(a > b for a, b in zip(spread, spread[1:], strict=False))
    assert spread[3] < spread[0] / 6


def test_late_rounds_follow_entropy_early_rounds_do_not():
    scores = np.linspace(0, 1, 1000)
    classes = np.zeros(1000, dtype=np.int64)
    top = set(range(900, 1000))
    early = stratified_entropy(scores, classes, 100, labelled_counts={}, round_index=0)
    late = stratified_entropy(scores, classes, 100, labelled_counts={}, round_index=12)
    assert len(set(late) & top) == 100
    assert len(set(early) & top) < 90


def pool_with(n_labelled: int, n_classes: int, n: int = 200) -> PoolArrays:
    rng = np.random.default_rng(0)
    labelled = np.zeros(n, dtype=bool)
    labelled[:n_labelled] = True
    return PoolArrays(
        n=n,
        uncertainty=rng.random(n),
        embeddings=rng.normal(size=(n, 8)).astype(np.float32),
        classes=np.arange(n) % n_classes,
        labelled=labelled,
        exclude=np.zeros(n, dtype=bool),
    )


def test_auto_switches_at_its_threshold():
    limit = st.AUTO_LABELLED_PER_CLASS * 5
    assert auto_choice(pool_with(limit - 1, 5)) == st.AUTO_COVERAGE
    assert auto_choice(pool_with(limit, 5)) == st.AUTO_UNCERTAINTY
    # no model yet (no predicted classes) and nothing labelled: coverage
    assert auto_choice(PoolArrays(n=10, labelled=np.zeros(10, bool))) == st.AUTO_COVERAGE


def test_auto_runs_what_it_chose():
    for n_lab in (3, 60):
        p = pool_with(n_lab, 5)
        assert list(run_strategy("auto", p, 10, seed=3)) == list(
            run_strategy(auto_choice(p), p, 10, seed=3)
        )


def test_auto_is_nobodys_default():
    import inspect

    from cli.al_cmd import round_start, select_cmd
    from jobs.rounds import run_round
    from services.training.selection import select

    assert inspect.signature(select).parameters["strategy"].default != "auto"
    assert inspect.signature(run_round).parameters["strategy"].default != "auto"
    assert select_cmd.__defaults__[0].default != "auto"
    assert round_start.__defaults__[4].default != "auto"


@pytest.mark.parametrize("name", ["maxherding", "typiclust", "stratified_entropy", "auto"])
def test_registered_strategies_are_deterministic_and_respect_the_pool(name):
    p = pool_with(20, 4)
    p.exclude[20:40] = True
    a = run_strategy(name, p, 15, seed=7)
    b = run_strategy(name, p, 15, seed=7)
    assert list(a) == list(b) and len(set(a)) == 15
    assert not set(a) & set(range(40))  # neither labelled (0..19) nor excluded (20..39)


@pytest.mark.parametrize("name", ["maxherding", "typiclust"])
def test_coverage_without_embeddings_says_what_is_missing(name):
    with pytest.raises(ValueError, match="embeddings"):
        run_strategy(name, PoolArrays(n=5), 2)


@pytest.mark.parametrize("name", ["maxherding", "typiclust", "stratified_entropy"])
def test_scale_1000_of_20000_at_256d(name):
    rng = np.random.default_rng(0)
    n, d = 20_000, 256
    centres = rng.normal(0, 4, size=(32, d)).astype(np.float32)
    classes = rng.integers(0, 32, n)
    x = centres[classes] + rng.normal(0, 1, size=(n, d)).astype(np.float32)
    labelled = np.zeros(n, dtype=bool)
    labelled[::200] = True
    p = PoolArrays(n=n, uncertainty=rng.random(n), embeddings=x, classes=classes, labelled=labelled)
    t0 = time.perf_counter()
    picks = run_strategy(name, p, 1000)
    # generous on purpose: the machine may be loaded; bench/ prints the real figure
    assert time.perf_counter() - t0 < 10.0
    assert len(set(picks)) == 1000 and not labelled[picks].any()


def test_neighbour_purity_against_random_pairs():
    x, blob = blobs(n_blobs=4, per=50)
    pure = neighbour_purity(x, blob)
    assert pure.neighbour == 1.0 and pure.n == 200
    assert 0.1 < pure.random < 0.45  # chance is about 1/4
    shuffled = neighbour_purity(x, np.random.default_rng(1).permutation(blob))
    assert shuffled.neighbour < 0.5


def test_neighbour_purity_leaves_out_photos_without_a_class():
    x, blob = blobs(n_blobs=2, per=10)
    cls = blob.copy()
    cls[:5] = -1
    assert neighbour_purity(x, cls).n == 15
    with pytest.raises(ValueError, match="entries"):
        neighbour_purity(x, cls[:3])
