"""Each weight-space merge method's defining property, on plain tensors (registry-driven where it is shared)."""

from pathlib import Path

import pytest
import torch

from merging import get_merge_method, list_merge_methods
from merging.methods.dare import dare
from merging.methods.fisher import fisher
from merging.methods.linear import linear
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
    assert list_merge_methods() == ["dare", "fisher", "linear", "slerp", "task_arithmetic", "ties"]


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
