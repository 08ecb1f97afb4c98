import numpy as np
import pytest
import torch

from explain.concepts import (
    Factorization,
    analyze_concepts,
    concept_condition,
    factorize,
    merge_duplicates,
    r_squared,
)

CPU = torch.device("cpu")


def test_nonnegative_activations_get_nmf_and_signed_ones_get_pca():
    rng = np.random.default_rng(0)
    parts = rng.uniform(size=(400, 3)) @ rng.uniform(size=(3, 10))  # rank 3, >= 0
    nmf = factorize(parts, 3)
    assert nmf.kind == "nmf"
    assert (nmf.scores(parts) >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(nmf.concepts, axis=1), 1.0)
    assert r_squared(parts, nmf.reconstruct(nmf.scores(parts))) > 0.99

    signed = rng.normal(size=(400, 6)) - rng.exponential(size=(400, 1)) * [[4, 0, 0, 0, 0, 0]]
    full = factorize(signed, 6)
    assert full.kind == "signed"
    np.testing.assert_allclose(full.reconstruct(full.scores(signed)), signed, atol=1e-8)
    scores = full.scores(signed)
    assert (np.mean(scores**3, axis=0) > 0).all()  # the long tail is where a concept is present
    np.testing.assert_allclose(np.abs(full.concepts[0]), [1, 0, 0, 0, 0, 0], atol=0.1)
    assert full.concepts[0][0] < 0  # the tail points to negative values of channel 0


def test_r_squared():
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    assert r_squared(truth, truth) == 1.0
    assert r_squared(truth, np.full(4, truth.mean())) == 0.0
    assert r_squared(truth, truth + 1) == pytest.approx(1 - 4 / 5)


def test_full_rank_concepts_reproduce_the_logit(tiny_model, test_images):
    channels = tiny_model.activations(torch.zeros(1, 3, 32, 32), 2).shape[1]
    # Without merging, the full-rank factorization reconstructs the activations exactly.
    no_merging = {"merge_threshold": np.inf, "shared_threshold": np.inf}
    analysis = analyze_concepts(tiny_model, test_images, CPU, k=channels, **no_merging)
    assert analysis.kind == "signed"  # flow activations take both signs
    assert analysis.fidelity["logit_r2"] == pytest.approx(1.0, abs=1e-4)
    assert analysis.fidelity["decision_agreement"] == 1.0


def test_fidelity_and_importance_match_their_definitions(tiny_model, test_images):
    analysis = analyze_concepts(tiny_model, test_images, CPU, k=4)
    layer = analysis.layer
    assert analysis.score_maps.shape[:2] == (len(test_images), 4)
    assert 0.0 <= analysis.fidelity["decision_agreement"] <= 1.0
    assert analysis.fidelity["logit_r2"] <= 1.0
    x = torch.from_numpy(test_images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        acts = tiny_model.activations(x, layer).double()
        logits = tiny_model.logit_from_activations(acts.float(), layer).double()
    # Fidelity recomputed by hand from the factorization's own reconstruction.
    n, c, h, w = acts.shape
    rows = acts.permute(0, 2, 3, 1).reshape(-1, c).numpy()
    from explain.concepts import factorize as refit

    fact = refit(rows, 4, seed=0)
    recon = torch.from_numpy(fact.reconstruct(fact.scores(rows)).reshape(n, h, w, c)).permute(
        0, 3, 1, 2
    )
    with torch.no_grad():
        recon_logits = tiny_model.logit_from_activations(recon.float(), layer).double().numpy()
    assert analysis.fidelity["logit_r2"] == pytest.approx(
        r_squared(logits.numpy(), recon_logits), abs=1e-6
    )
    # Importance = d logit / d (score of concept k at every pixel), by finite differences.
    eps = 1e-2
    for k in range(4):
        direction = torch.from_numpy(fact.concepts[k]).float()[None, :, None, None]
        with torch.no_grad():
            up = tiny_model.logit_from_activations(acts.float() + eps * direction, layer)
            down = tiny_model.logit_from_activations(acts.float() - eps * direction, layer)
        finite = ((up - down).double() / (2 * eps)).mean().item()
        assert analysis.importance[k] == pytest.approx(finite, rel=2e-2, abs=2e-3)
    assert list(np.abs(analysis.importance[analysis.order])) == sorted(
        np.abs(analysis.importance), reverse=True
    )


def test_condition_rows_are_concepts_by_importance_with_highest_then_lowest(
    tiny_model, test_images
):
    analysis = analyze_concepts(tiny_model, test_images, CPU, k=3)
    stored = []

    def store(image):
        stored.append(image)
        return f"images/{len(stored)}.png"

    entry = concept_condition(
        analysis, test_images, store, n_highest=2, n_lowest=2, overlay_size=64
    ).to_json()
    assert entry["factorisation"] == "signed"
    assert set(entry["fidelity"]) >= {"logit_r2", "decision_agreement"}
    assert (entry["layout"]["rows"], entry["layout"]["columns"]) == (3, 4)
    assert [abs(v) for v in entry["importance"]] == sorted(
        map(abs, entry["importance"]), reverse=True
    )
    assert all(image.shape == (64, 64, 3) and image.dtype == np.uint8 for image in stored)
    for row in range(3):
        scores = [s["concept_score"] for s in entry["stimuli"] if s["row"] == row]
        assert scores[0] >= scores[1] >= scores[3] >= scores[2]  # lowest 1 is the minimum
        column = analysis.image_scores[:, entry["concepts"][row]["index"]]
        assert scores[0] == max(column) and scores[2] == min(column)


def test_identical_concepts_are_merged_into_one_whose_scores_add():
    rng = np.random.default_rng(1)
    parts = rng.uniform(size=(3, 10))
    rows = rng.uniform(size=(600, 3)) @ parts  # 60 images of 10 pixels, rank 3, >= 0
    fact = factorize(rows, 3)
    # Split concept 0 into two identical halves: four concepts, two of them the same.
    split = np.zeros((3, 4))
    split[[0, 1, 2], [0, 1, 2]] = 1.0
    split[0, [0, 3]] = 0.5
    doubled = Factorization(
        kind=fact.kind,
        concepts=np.vstack([fact.concepts, fact.concepts[:1]]),
        offset=fact.offset,
        raw_transform=lambda m: fact.scores(m) @ split,
        scale=np.ones(4),
    )
    merged, members, records = merge_duplicates(doubled, rows, n_images=60, threshold=0.9)
    assert len(merged.concepts) == 3
    assert members == [[0, 3], [1], [2]]
    assert [r["concepts"] for r in records] == [[0, 3]]
    assert records[0]["correlation"] == pytest.approx(1.0)
    np.testing.assert_allclose(merged.concepts, fact.concepts, atol=1e-12)
    np.testing.assert_allclose(merged.scores(rows), fact.scores(rows), atol=1e-9)


def test_a_duplicated_concept_leaves_one_row(tiny_model, test_images, monkeypatch):
    import explain.concepts as concepts_module

    plain = analyze_concepts(tiny_model, test_images, CPU, k=3)
    real = concepts_module.factorize

    def with_duplicate(rows, k, seed=0):
        fact = real(rows, k, seed)
        split = np.hstack([np.eye(k), np.eye(k)[:, :1]])
        split[0, [0, k]] = 0.5
        return Factorization(
            kind=fact.kind,
            concepts=np.vstack([fact.concepts, fact.concepts[:1]]),
            offset=fact.offset,
            raw_transform=lambda m: fact.scores(m) @ split,
            scale=np.ones(k + 1),
        )

    monkeypatch.setattr(concepts_module, "factorize", with_duplicate)
    analysis = analyze_concepts(tiny_model, test_images, CPU, k=3)
    assert len(analysis.order) == 3 and analysis.members[0] == [0, 3]
    np.testing.assert_allclose(analysis.importance, plain.importance, rtol=1e-6, atol=1e-9)
    entry = concept_condition(
        analysis, test_images, lambda im: "images/x.png", n_highest=1, n_lowest=1, overlay_size=32
    ).to_json()
    assert entry["layout"]["rows"] == 3 and len(entry["stimuli"]) == 6
    assert [m["concepts"] for m in entry["merged"]] == [[0, 3]]
    row = next(c for c in entry["concepts"] if c["index"] == 0)
    assert row["merged_from"] == [0, 3]


def test_concepts_showing_the_same_strongest_images_are_merged():
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(40, 3))  # 40 images of one pixel, three channels
    rows[:, 1] = -rows[:, 0] + 0.3 * rows[:, 1]  # concepts 0 and 1 disagree on most images
    rows[:4, :2] = 4.0  # ... but share their four strongest images
    identity = Factorization(
        kind="signed",
        concepts=np.eye(3),
        offset=np.zeros(3),
        raw_transform=lambda m: m,
        scale=np.ones(3),
    )
    assert np.corrcoef(rows[:, 0], rows[:, 1])[0, 1] < 0.9
    merged, members, records = merge_duplicates(identity, rows, n_images=40, n_strongest=4)
    assert members == [[0, 1], [2]]
    assert records[0]["shared_strongest"] == 1.0 and records[0]["correlation"] < 0.9
