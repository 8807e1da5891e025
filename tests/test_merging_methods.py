"""Each weight-space merge method's defining property, on plain tensors (registry-driven where it is shared)."""

from pathlib import Path

import pytest
import torch

from merging import get_merge_method, list_merge_methods
from merging.methods.dare import dare
from merging.methods.fisher import fisher
from merging.methods.linear import linear
from merging.methods.regmean import regmean
from merging.methods.slerp import slerp
from merging.methods.task_arithmetic import task_arithmetic
from merging.methods.ties import ties
from merging.recipe import load_recipe
from merging.registry import check_params


def _call(name, tensors, base=None, **kw):
    method = get_merge_method(name)
    if method.needs_base:
        kw["base"] = base if base is not None else tensors[0]
    if method.needs_fisher:
        kw["fishers"] = [torch.ones_like(t) for t in tensors]
    return method.fn(tensors, **kw)


def test_registry_lists_every_method():
    assert list_merge_methods() == ["adamerging", "breadcrumbs", "dare", "della", "fisher", "linear", "model_stock",
                                    "regmean", "slerp", "task_arithmetic", "ties"]


@pytest.mark.parametrize("name", list_merge_methods())
def test_identical_inputs_return_the_input(name):
    x = torch.randn(5, 7)
    n = get_merge_method(name).num_models or 3
    out = _call(name, [x.clone() for _ in range(n)], base=x.clone())
    torch.testing.assert_close(out, x)


@pytest.mark.parametrize("name", list_merge_methods())
def test_unknown_option_names_the_nearest(name):
    method = get_merge_method(name)
    valid = next(iter(method.params))
    with pytest.raises(TypeError, match=f"Did you mean '{valid}'"):
        check_params(method, {valid + "x": 1})


def test_unknown_method_names_the_nearest():
    with pytest.raises(KeyError, match="Did you mean 'ties'"):
        get_merge_method("tie")


def test_uniform_soup_of_two_is_the_elementwise_mean():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(linear([a, b]), (a + b) / 2)
    torch.testing.assert_close(linear([a, b], weights=[3, 1]), 0.75 * a + 0.25 * b)


def test_task_arithmetic_lambda_zero_returns_base():
    base, a, b = torch.randn(6), torch.randn(6), torch.randn(6)
    torch.testing.assert_close(task_arithmetic([a, b], base, scale=0.0), base)
    torch.testing.assert_close(task_arithmetic([a, b], base, scale=1.0), a + b - base)


def test_ties_elects_sign_and_zeros_do_not_dilute():
    base = torch.zeros(3)
    a = torch.tensor([3.0, 3.0, 0.0])
    b = torch.tensor([-1.0, 0.0, 0.0])
    out = ties([a, b], base, density=1.0)
    torch.testing.assert_close(out, torch.tensor([3.0, 3.0, 0.0]))  # (+3,-1) -> +3; (+3,0) -> +3, not 1.5


def test_ties_trims_per_tensor_by_magnitude():
    base = torch.zeros(10)
    a = torch.arange(1.0, 11.0)
    out = ties([a], base, density=0.2)
    assert (out != 0).sum() == 2 and set(out[out != 0].tolist()) == {9.0, 10.0}


def test_dare_p_zero_is_identity_and_drops_about_p():
    base, a = torch.randn(200, 50), torch.randn(200, 50)
    torch.testing.assert_close(dare([a], base, p=0.0), a)
    out = dare([a], base, p=0.3, seed=1, key="w")
    delta = out - base
    zeros = (delta.abs() < 1e-6).float().mean().item()
    assert abs(zeros - 0.3) < 0.02
    kept = delta.abs() > 1e-6
    torch.testing.assert_close(delta[kept], (a - base)[kept] / 0.7)  # survivors rescaled by 1/(1-p)
    torch.testing.assert_close(dare([a], base, p=0.3, seed=1, key="w"), out)  # seeded
    assert not torch.equal(dare([a], base, p=0.3, seed=2, key="w"), out)


def test_slerp_ends_and_colinear_fallback():
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    torch.testing.assert_close(slerp([a, b], t=0.0), a)
    torch.testing.assert_close(slerp([a, b], t=1.0), b)
    mid = slerp([a, b], t=0.5)
    assert abs(mid.norm() - (a.norm() + b.norm()) / 2) < abs((a + b).norm() / 2 - (a.norm() + b.norm()) / 2)
    torch.testing.assert_close(slerp([a, 2 * a], t=0.25), torch.lerp(a, 2 * a, 0.25))
    with pytest.raises(ValueError, match="exactly two"):
        slerp([a, b, a])


def test_fisher_with_equal_fishers_equals_linear():
    a, b = torch.randn(5, 5), torch.randn(5, 5)
    f = torch.rand(5, 5) + 0.1
    torch.testing.assert_close(fisher([a, b], [f, f], weights=[1, 3]), linear([a, b], weights=[1, 3]))
    out = fisher([a, b], [torch.full_like(a, 100.0), torch.full_like(b, 1e-3)])
    assert (out - a).abs().max() < 1e-3  # the confident model wins


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parent.parent.glob("configs/merge/*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    cfg = load_recipe(path)
    if cfg.method != "greedy_soup":
        method = get_merge_method(cfg.method)
        check_params(method, dict(cfg.params))
        assert cfg.base is not None or not method.needs_base


# ------------------------------------------------------------------------------------------- issue 15's methods
def test_regmean_on_one_linear_layer_is_least_squares_over_the_concatenated_inputs():
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(40, 6, generator=gen, dtype=torch.float64), torch.randn(25, 6, generator=gen,
                                                                               dtype=torch.float64)]
    ws = [torch.randn(3, 6, generator=gen), torch.randn(3, 6, generator=gen)]
    merged = regmean(ws, grams=[x.T @ x for x in xs], alpha=1.0)
    inputs = torch.cat(xs)
    targets = torch.cat([x @ w.double().T for x, w in zip(xs, ws)])
    expected = torch.linalg.lstsq(inputs, targets).solution.T  # min_W ||X W^T - Y||^2
    torch.testing.assert_close(merged, expected.float(), rtol=1e-5, atol=1e-5)
    # alpha = 0 keeps only the diagonal: each input dimension's column is an energy-weighted mean of the models'
    g = [torch.diag(torch.diagonal(x.T @ x)).float() for x in xs]
    energy = torch.stack([torch.diagonal(x) for x in g])  # (2, in)
    col_mean = (energy[:, None, :] * torch.stack(ws)).sum(0) / energy.sum(0)
    torch.testing.assert_close(regmean(ws, grams=[x.T @ x for x in xs], alpha=0.0), col_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(regmean([ws[0][0], ws[1][0]], grams=None), (ws[0][0] + ws[1][0]) / 2)  # a bias


def test_collect_grams_streams_in_eval_mode_and_equals_xtx_of_the_examples_read():
    from merging.activations import collect_grams

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.drop, self.modes = torch.nn.Linear(4, 2), torch.nn.Dropout(0.5), []

        def forward(self, batch):
            self.modes.append(self.training)
            return {"logits": self.lin(self.drop(batch["x"]))}

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(23, 4, generator=gen)
    loader = [{"x": x[i:i + 5], "labels": torch.zeros(len(x[i:i + 5]))} for i in range(0, 23, 5)]
    toy = Toy().train()
    grams = collect_grams(toy, loader, max_examples=13)  # stops inside the third batch
    torch.testing.assert_close(grams["lin.weight"], x[:13].double().T @ x[:13].double())  # dropout off: eval mode
    assert toy.modes == [False, False, False] and toy.training  # mode restored
    assert list(grams) == ["lin.weight"] and grams["lin.weight"].shape == (4, 4)  # one (in, in) sum per layer


def test_model_stock_ratio_follows_the_angle_between_deltas():
    from merging.methods.model_stock import interpolation_ratio, model_stock

    base = torch.zeros(2)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 3 ** 0.5 / 2])  # unit deltas at 60 degrees: cos = 1/2
    t = 2 * 0.5 / (1 + 0.5)
    assert interpolation_ratio(0.5, 2) == pytest.approx(t)
    torch.testing.assert_close(model_stock([a, b], base), t * (a + b) / 2)
    torch.testing.assert_close(model_stock([a, 2 * a], base), 1.5 * a)  # same direction: t = 1, the average
    torch.testing.assert_close(model_stock([a, torch.tensor([0.0, 1.0])], base), base)  # orthogonal: the base
    c = torch.tensor([0.5, -(3 ** 0.5) / 2])  # a third delta: mean pairwise cos = (0.5 + 0.5 - 0.5) / 3
    cos = (0.5 + 0.5 - 0.5) / 3
    torch.testing.assert_close(model_stock([a, b, c], base), interpolation_ratio(cos, 3) * (a + b + c) / 3)
    assert interpolation_ratio(cos, 3) == pytest.approx(3 * cos / (1 + 2 * cos))


def test_breadcrumbs_drops_both_the_largest_and_the_smallest():
    from merging.methods.breadcrumbs import breadcrumbs

    base = torch.zeros(100)
    a = torch.randperm(100, generator=torch.Generator().manual_seed(0)).float() + 1  # magnitudes 1..100, shuffled
    out = breadcrumbs([a], base, density=0.1, gamma=0.02)
    assert sorted(out[out != 0].tolist()) == list(map(float, range(89, 99)))  # 99, 100 and 1..88 dropped
    b = -a.flip(0)
    both = breadcrumbs([a, b], base, density=0.1, gamma=0.02, scale=0.5)
    torch.testing.assert_close(both, 0.5 * (breadcrumbs([a], base, 0.1, 0.02) + breadcrumbs([b], base, 0.1, 0.02)))


def test_della_drop_probabilities_are_magnitude_ranked_and_survivors_rescaled():
    from merging.methods.della import della, keep_probabilities

    delta = torch.tensor([0.1, -5.0, 2.0, -0.5, 1.0])
    k = keep_probabilities(delta, density=0.6, epsilon=0.2)
    order = delta.abs().argsort()
    assert torch.all(k[order][1:] > k[order][:-1])  # larger magnitude: kept more often
    assert k.mean().item() == pytest.approx(0.6) and (k.max() - k.min()).item() == pytest.approx(0.2)
    base = torch.zeros(400, 50)
    a = torch.randn(400, 50, generator=torch.Generator().manual_seed(3))
    out = della([a], base, density=0.6, epsilon=0.2, seed=1, key="w")
    kept = out != 0
    probs = keep_probabilities(a, 0.6, 0.2)
    torch.testing.assert_close(out[kept], (a / probs)[kept])  # survivors divided by their own keep probability
    assert abs(kept.float().mean().item() - 0.6) < 0.01
    big = a.abs() > a.abs().median()
    assert kept[big].float().mean() > kept[~big].float().mean() + 0.05  # magnitude-ranked, not uniform
    mean = torch.stack([della([a], base, 0.6, 0.2, seed=s, key="w") for s in range(200)]).mean(0)
    slope = float((mean * a).sum() / (a * a).sum())  # regression of the average on the task vector
    assert abs(slope - 1.0) < 0.02  # unbiased, E[out] = delta (without the rescaling it would be 0.6)
    assert torch.equal(della([a], base, 0.6, 0.2, seed=1, key="w"), out)  # seeded
    # Elect and fuse: opposite signs cancel to the side with more mass, zeros do not dilute.
    x, y = torch.tensor([3.0, 3.0]), torch.tensor([-1.0, 0.0])
    torch.testing.assert_close(della([x, y], torch.zeros(2), density=1.0, epsilon=0.0), torch.tensor([3.0, 3.0]))


def test_adamerging_method_applies_learned_coefficients_per_tensor():
    from merging.methods.adamerging import adamerging

    base, a, b = torch.zeros(3), torch.ones(3), 2 * torch.ones(3)
    torch.testing.assert_close(adamerging([a, b], base, {"w": [0.5, 0.25]}, key="w"), torch.full((3,), 1.0))
    torch.testing.assert_close(adamerging([a, b], base, {"*": [1.0, 0.0]}, key="v"), a)
    torch.testing.assert_close(adamerging([a, b], base, key="v"), torch.full((3,), 0.9))  # init 0.3 each


def test_model_stock_filter_wise_gives_each_row_its_own_ratio():
    from merging.methods.model_stock import interpolation_ratio, model_stock

    base = torch.zeros(2, 2)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # row 0: same direction (t = 1), row 1: orthogonal (t = 0)
    torch.testing.assert_close(model_stock([a, b], base, filter_wise=True), torch.tensor([[1.5, 0.0], [0.0, 0.0]]))
    whole = float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))  # per tensor: one angle for all rows
    torch.testing.assert_close(model_stock([a, b], base), interpolation_ratio(whole, 2) * (a + b) / 2)


def test_ties_matches_the_three_steps_of_the_paper_written_out():
    """The streamed TIES equals trim, elect, disjoint mean on the stacked task vectors, zero-sum entries included."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(40, 30, generator=gen)
    base[0, :5] = 0.0  # so that the +2 / -2 task vectors below are exact in float32
    tensors = [base + torch.randn(40, 30, generator=gen) for _ in range(5)]
    tensors[1][0, :5] = base[0, :5] + 2.0  # entries where two task vectors cancel exactly (+2, -2): no side elected
    tensors[2][0, :5] = base[0, :5] - 2.0
    for t in tensors[3:]:
        t[0, :5] = base[0, :5]
    tensors[0][0, :5] = base[0, :5]
    for density in (1.0, 0.3):
        deltas = torch.stack([t - base for t in tensors])
        if density < 1.0:
            k = round(density * deltas[0].numel())
            thresholds = deltas.abs().flatten(1).topk(k, dim=1).values[:, -1]
            deltas = deltas * (deltas.abs() >= thresholds.view(-1, 1, 1))
        sign = torch.sign(deltas.sum(0))
        agree = (torch.sign(deltas) == sign) & (deltas != 0)
        expected = base + (deltas * agree).sum(0) / agree.sum(0).clamp_min(1)
        out = ties(tensors, base, density=density)
        torch.testing.assert_close(out, expected)
        if density == 1.0:
            torch.testing.assert_close(out[0, :5], base[0, :5])  # +2 and -2 cancel: the base entry is kept
