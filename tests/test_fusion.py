"""Contract tests for every registered fusion method (parametrised over the registry) plus a few learning checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fusion
from fusion import FusionModule, ModalityFeatures, create_fusion, fusion_params, list_fusions, register_fusion
from fusion.registry import get_fusion_class

B, N_TEXT, N_IMAGE, TEXT_DIM, IMAGE_DIM, NUM_OUTPUTS = 4, 5, 7, 12, 20, 3
TEXT_LENGTHS, IMAGE_LENGTHS = [5, 3, 1, 4], [7, 7, 4, 2]  # padding on both sides, including a single-token row
SMALL = {"dim": 32, "dropout": 0.0}
METHODS = list_fusions()
MULTIMODAL = [name for name in METHODS if len(get_fusion_class(name).modalities) == 2]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny tensors: one thread is fastest, and avoids OpenMP spin-waiting when other jobs share the CPU cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def features(n: int, d: int, lengths: list[int], seed: int) -> ModalityFeatures:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    return ModalityFeatures(
        tokens=torch.randn(len(lengths), n, d, generator=g),
        mask=mask,
        pooled=torch.randn(len(lengths), d, generator=g),
        present=torch.ones(len(lengths), dtype=torch.bool),
    )


def batch(seed: int = 0) -> dict[str, ModalityFeatures]:
    return {
        "text": features(N_TEXT, TEXT_DIM, TEXT_LENGTHS, seed),
        "image": features(N_IMAGE, IMAGE_DIM, IMAGE_LENGTHS, seed + 1),
    }


def build(name: str, seed: int = 0, **kwargs) -> FusionModule:
    torch.manual_seed(seed)
    return create_fusion(name, TEXT_DIM, IMAGE_DIM, NUM_OUTPUTS, **{**SMALL, **kwargs})


def run(module: FusionModule, feats: dict[str, ModalityFeatures]) -> torch.Tensor:
    """Call the module, passing None for a modality it does not read (as a model without that tower would)."""
    return module(*(feats[m] if m in module.modalities else None for m in ("text", "image")))


def edit(feats: ModalityFeatures, rows: torch.Tensor, where: torch.Tensor | None = None) -> ModalityFeatures:
    """Copy of ``feats`` with new random tokens (at ``where`` if given) and pooled vectors in the selected rows."""
    tokens, pooled = feats.tokens.clone(), feats.pooled.clone()
    where = torch.ones_like(feats.mask) if where is None else where
    sel = rows[:, None] & where
    tokens[sel] = torch.randn_like(tokens[sel]) * 5
    pooled[rows] = torch.randn_like(pooled[rows]) * 5
    return ModalityFeatures(tokens, feats.mask, pooled, feats.present)


def select(feats: ModalityFeatures, i: int, n: int | None = None) -> ModalityFeatures:
    """Sample ``i`` as a batch of one, keeping its first ``n`` tokens (all if None)."""
    return ModalityFeatures(feats.tokens[i : i + 1, :n], feats.mask[i : i + 1, :n], feats.pooled[i : i + 1],
                            feats.present[i : i + 1])  # fmt: skip


def with_present(feats: ModalityFeatures, present: list[bool]) -> ModalityFeatures:
    return ModalityFeatures(feats.tokens, feats.mask, feats.pooled, torch.tensor(present))


@pytest.mark.parametrize("name", METHODS)
def test_output_shape_and_finite(name):
    module = build(name).eval()
    out = run(module, batch())
    expected = NUM_OUTPUTS if module.produces_logits else module.out_dim
    assert out.shape == (B, expected)
    assert torch.isfinite(out).all()
    assert module.__doc__ and "(B," in module.__doc__, "docstring must give tensor shapes"


def loss_of(out: torch.Tensor) -> torch.Tensor:
    # Random weights per element: a plain sum would be blind to anything before a final LayerNorm (its outputs sum
    # to a constant), hiding unused parameters.
    return (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum()


@pytest.mark.parametrize("name", METHODS)
def test_gradients_reach_every_parameter(name):
    module = build(name, dropout=0.1).train()
    feats = batch()
    # All present: every parameter except the missing-modality embeddings must be used.
    loss_of(run(module, feats)).backward()
    for pname, p in module.named_parameters():
        if pname.startswith("missing_"):
            continue
        assert p.grad is not None, f"{pname} unused"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 1e-6, f"{pname} gets no gradient"
    # Absent modalities: the missing embeddings of the modalities the method reads must now learn. Row 0 lacks both
    # (late fusion only uses missing embeddings when nothing was observed), row 1 lacks text, row 2 lacks the image.
    module.zero_grad()
    feats = {"text": with_present(feats["text"], [False, False, True, True])}
    feats["image"] = with_present(batch()["image"], [False, True, False, True])
    loss_of(run(module, feats)).backward()
    for m in module.modalities:
        grad = getattr(module, f"missing_{m}").grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 1e-6, m


@pytest.mark.parametrize("name", METHODS)
@torch.no_grad()
def test_padding_does_not_influence_output(name):
    module = build(name).eval()
    feats = batch()
    before = run(module, feats)
    everyone = torch.ones(B, dtype=torch.bool)
    padded = {m: edit(f, everyone, where=~f.mask) for m, f in feats.items()}
    for m, f in feats.items():  # only the padding tokens changed
        padded[m] = ModalityFeatures(padded[m].tokens, f.mask, f.pooled, f.present)
    assert not torch.equal(padded["text"].tokens, feats["text"].tokens)
    torch.testing.assert_close(run(module, padded), before, atol=1e-5, rtol=1e-5)
    # Stronger: each sample alone with its padding cut off gives the same output. This also catches a method that
    # zeroes padding features but still lets the padding positions take part (e.g. as attention keys or in a mean).
    for i, (n_text, n_image) in enumerate(zip(TEXT_LENGTHS, IMAGE_LENGTHS)):
        trimmed = {m: select(f, i, n) for (m, f), n in zip(feats.items(), (n_text, n_image))}
        torch.testing.assert_close(run(module, trimmed)[0], before[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", METHODS)
@torch.no_grad()
def test_missing_modality(name):
    module = build(name).eval()
    feats = batch()
    all_present = run(module, feats)
    present = torch.tensor([True, False, True, False])
    for m in ("text", "image"):
        if m not in module.modalities:
            continue
        mixed = {**feats, m: with_present(feats[m], present.tolist())}
        out = run(module, mixed)
        # Samples that have the modality are unaffected by other samples lacking it.
        torch.testing.assert_close(out[present], all_present[present], atol=1e-5, rtol=1e-5)
        # Whatever the absent samples' features hold, their outputs do not change.
        changed = {**mixed, m: edit(mixed[m], ~present)}
        torch.testing.assert_close(run(module, changed), out, atol=1e-5, rtol=1e-5)
        # A present modality does influence the output.
        changed_present = {**feats, m: edit(feats[m], present)}
        diff = (run(module, changed_present) - all_present)[present].abs().amax(dim=-1)
        assert (diff > 1e-4).all(), f"{m} has no influence on {name}"
    # A modality the method does not read may be None (a model builds no tower for it).
    assert run(module, feats).shape[0] == B


@pytest.mark.parametrize("name", METHODS)
@torch.no_grad()
def test_batch_independence(name):
    module = build(name).eval()
    feats = batch()
    out = run(module, feats)
    for i in range(B):
        alone = {m: select(f, i) for m, f in feats.items()}
        torch.testing.assert_close(run(module, alone)[0], out[i], atol=1e-5, rtol=1e-5)
    # Changing sample 0 leaves the others untouched.
    first = torch.zeros(B, dtype=torch.bool)
    first[0] = True
    changed = run(module, {m: edit(f, first) for m, f in feats.items()})
    torch.testing.assert_close(changed[1:], out[1:], atol=1e-5, rtol=1e-5)


def test_registry_names():
    expected = {
        "concat", "token_concat", "sum", "product", "late", "gated", "tfn", "lmf", "mfb", "mutan", "film",
        "cross_attention", "cross_attention_i2t", "co_attention", "single_stream", "bottleneck", "perceiver", "mult",
        "text_only", "image_only",
    }  # fmt: skip
    assert set(list_fusions()) == expected
    assert fusion.create_fusion is create_fusion


def test_unknown_name_suggests_nearest():
    with pytest.raises(KeyError, match="Did you mean 'cross_attention'"):
        create_fusion("cross_atention", TEXT_DIM, IMAGE_DIM, NUM_OUTPUTS)


def test_unknown_kwarg_is_an_error():
    with pytest.raises(TypeError, match="Did you mean 'layers'"):
        create_fusion("cross_attention", TEXT_DIM, IMAGE_DIM, NUM_OUTPUTS, layer=2)
    with pytest.raises(TypeError, match="no option 'rank'"):
        create_fusion("concat", TEXT_DIM, IMAGE_DIM, NUM_OUTPUTS, rank=2)


def test_fusion_params_is_the_config_schema():
    assert fusion_params("lmf")["rank"].default == 4
    assert set(fusion_params("cross_attention")) == {"dim", "dropout", "layers", "heads"}
    assert fusion_params("late")["weights"].default == "learned"


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):

        @register_fusion("concat")
        class Again(FusionModule):
            pass


def test_late_fusion_fixed_weights_and_renormalisation():
    module = build("late", weights=[1.0, 0.0]).eval()
    feats = batch()
    image_absent = {**feats, "image": with_present(feats["image"], [False] * B)}
    text_absent = {**feats, "text": with_present(feats["text"], [False] * B)}
    with torch.no_grad():
        torch.testing.assert_close(run(module, feats), module.text_head(feats["text"].pooled))
        # Text is absent, so the image carries all the weight despite its fixed weight 0.
        torch.testing.assert_close(run(module, text_absent), module.image_head(feats["image"].pooled))
        torch.testing.assert_close(run(module, image_absent), module.text_head(feats["text"].pooled))
    with pytest.raises(ValueError):
        build("late", weights=[1.0, -1.0])


def interaction_task(n: int, seed: int, op: str) -> tuple[dict[str, ModalityFeatures], torch.Tensor]:
    """Label = op(a . text > 0, b . image > 0): each modality alone is uninformative for XOR (and weak for AND).

    The per-modality signal is a sentence/image-level direction shared by all valid tokens (plus token noise), so
    token-level methods see it in every token and the pooled vector is the masked token mean.
    """
    g = torch.Generator().manual_seed(seed)

    def modality(length: int, d: int) -> tuple[ModalityFeatures, torch.Tensor]:
        direction = torch.randn(d, generator=torch.Generator().manual_seed(d))
        direction = direction / direction.norm()
        bit = torch.randint(0, 2, (n,), generator=g).bool()
        signal = (bit.float() * 2 - 1)[:, None] * direction * 2.0
        tokens = signal[:, None, :] + 0.5 * torch.randn(n, length, d, generator=g)
        lengths = torch.randint(1, length + 1, (n,), generator=g)
        mask = torch.arange(length)[None, :] < lengths[:, None]
        pooled = (tokens * mask[..., None]).sum(1) / lengths[:, None]
        return ModalityFeatures(tokens, mask, pooled, torch.ones(n, dtype=torch.bool)), bit

    text, t_bit = modality(N_TEXT, TEXT_DIM)
    image, i_bit = modality(N_IMAGE, IMAGE_DIM)
    label = t_bit ^ i_bit if op == "xor" else t_bit & i_bit
    return {"text": text, "image": image}, label.long()


def train_and_score(name: str, op: str, steps: int = 200, n: int = 256) -> float:
    torch.manual_seed(0)
    module = build(name)
    head = nn.Identity() if module.produces_logits else nn.Linear(module.out_dim, NUM_OUTPUTS)
    model = nn.ModuleDict({"fusion": module, "head": head})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    train, train_y = interaction_task(n, seed=1, op=op)
    test, test_y = interaction_task(n, seed=2, op=op)
    model.train()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(head(run(module, train)), train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (head(run(module, test)).argmax(-1) == test_y).float().mean().item()


@pytest.mark.parametrize("name", ["concat", "gated", "cross_attention"])
def test_learns_xor_interaction(name):
    assert train_and_score(name, "xor") > 0.9


@pytest.mark.parametrize("name", MULTIMODAL)
def test_learns_and_interaction(name):
    # Every method reading both modalities must express an AND across them (75% of labels are 0, so > 0.9 needs
    # both modalities). Short run to keep the suite fast.
    assert train_and_score(name, "and", steps=60, n=128) > 0.9


@pytest.mark.parametrize("name", ["text_only", "image_only"])
def test_xor_task_needs_both_modalities(name):
    # Sanity check of the task itself: one modality alone is at chance.
    assert train_and_score(name, "xor") < 0.65


@pytest.mark.parametrize("name", METHODS)
def test_idle_parameters_is_declared_truthfully(name):
    """DDP runs without find_unused_parameters unless a method declares ``idle_parameters``: every trainable
    parameter of a method that does not must get a gradient, with both modalities present and with either absent
    for the whole batch (the missing-modality embeddings then stand in)."""
    module = build(name)
    cls = get_fusion_class(name)
    idle = set()
    for absent in (None, "text", "image"):
        feats = batch()
        if absent in module.modalities and len(module.modalities) == 2:
            feats[absent] = feats[absent]._replace(present=torch.zeros(B, dtype=torch.bool))
        module.zero_grad(set_to_none=True)
        run(module, feats).sum().backward()
        idle |= {n for n, p in module.named_parameters() if p.requires_grad and p.grad is None}
    assert cls.idle_parameters or not idle, f"{name} leaves {sorted(idle)} without a gradient: set idle_parameters"
