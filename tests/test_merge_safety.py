"""merge.py never loses an input, refuses models whose configs differ, and reports a user's mistake in one line.

Each case is one the issue measured on the old code (``output=`` an input run, a silent ``product``/``sum`` merge,
tracebacks for a missing folder, a ``pytorch_model.bin``, a pickle named ``.safetensors``, a truncated file, an
empty output folder left by a failed merge)."""

import copy
import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from crossfuse.cli import run
from crossfuse.commands import merge
from merging import MergeMismatchError, merge_checkpoints
from models import ModelNotAvailableError, MultimodalModel


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes: an input must come out of a merge byte for byte."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy(tiny_run: Path, dst: Path, scale: float = 0.0, seed: int = 0) -> Path:
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("checkpoints", "model_*"))
    if scale:
        path = dst / "model" / "model.safetensors"
        gen = torch.Generator().manual_seed(seed)
        state = {k: v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
                 for k, v in load_file(str(path)).items()}
        from safetensors.torch import save_file
        save_file(state, str(path))
    return dst


def _with_fusion(tiny_run: Path, dst: Path, fusion: str, seed: int = 0, **params) -> Path:
    """A saved model like the tiny run but with another fusion method (random weights)."""
    net = MultimodalModel.from_pretrained(tiny_run)
    cfg = copy.deepcopy(net.model_cfg)
    cfg["fusion"].update(name=fusion, params=params)
    torch.manual_seed(seed)
    other = MultimodalModel(cfg, net.num_outputs, net.label_names, net.multi_label,
                            image_overrides=net.image_overrides, pretrained=False,
                            text_hf_config=AutoConfig.from_pretrained(tiny_run / "model" / "text_config"))
    return other.save_pretrained(dst)


def _recipe(tmp_path: Path, models: list[Path], output: Path, method: str = "linear") -> list[str]:
    return [f"method={method}", f"models=[{','.join(map(str, models))}]", f"output={output}"]


def _cli_error(argv: list[str], capsys) -> str:
    """Run merge as the command does; a user error exits 2 with one ``error:`` line (plus the --debug hint)."""
    with pytest.raises(SystemExit) as exit_:
        run(merge.main, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 2, err
    return err.splitlines()[0]


# ---------------------------------------------------------------------------------------------- never lose an input
def test_output_the_reference_input_run_is_refused_and_the_input_is_intact(tiny_run, tmp_path, capsys):
    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b", scale=0.05)
    before = _digest(a)
    line = _cli_error(_recipe(tmp_path, [a, b], a), capsys)
    assert str(a) in line and "input" in line
    assert _digest(a) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_output_another_input_run_is_refused_even_with_overwrite(tiny_run, tmp_path, capsys, overwrite):
    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b", scale=0.05)
    before = _digest(b)
    _cli_error(_recipe(tmp_path, [a, b], b) + (["--overwrite"] if overwrite else []), capsys)
    assert _digest(b) == before  # weights and metrics.json untouched


def test_existing_folder_needs_overwrite_then_is_replaced_whole(tiny_run, tmp_path, capsys):
    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b", scale=0.05)
    out = tmp_path / "merged"
    merge.main(_recipe(tmp_path, [a, b], out))
    (out / "notes.txt").write_text("mine")
    first = _digest(out)
    line = _cli_error(_recipe(tmp_path, [a, b], out, method="task_arithmetic") + [f"base={a}"], capsys)
    assert "--overwrite" in line and _digest(out) == first
    merge.main(_recipe(tmp_path, [a, b], out, method="task_arithmetic") + [f"base={a}", "--overwrite"])
    assert not (out / "notes.txt").exists() and "task_arithmetic" in (out / "merge.yaml").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_failed_merge_leaves_nothing_behind(tiny_run, tmp_path, monkeypatch):
    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b", scale=0.05)
    import merging.checkpoints as ckpts

    calls = {"n": 0}
    real = ckpts.read_tensor

    def failing(path, key):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk went away")
        return real(path, key)

    monkeypatch.setattr(ckpts, "read_tensor", failing)
    out = tmp_path / "merged"
    with pytest.raises(OSError, match="disk went away"):
        merge.main(_recipe(tmp_path, [a, b], out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_mismatch_leaves_no_empty_output_folder(tiny_run, tmp_path):
    a = _copy(tiny_run, tmp_path / "a")
    s = _with_fusion(tiny_run, tmp_path / "s", "sum")
    with pytest.raises(MergeMismatchError):
        merge.main(_recipe(tmp_path, [a, s], tmp_path / "merged"))
    assert not (tmp_path / "merged").exists()


# ------------------------------------------------------------------------------- refuse what does not match
@pytest.mark.parametrize("pair", [("product", "sum"), ("cross_attention", "cross_attention_i2t")])
def test_same_tensors_different_fusion_is_refused_naming_the_difference(tiny_run, tmp_path, pair):
    x = _with_fusion(tiny_run, tmp_path / "x", pair[0])
    y = _with_fusion(tiny_run, tmp_path / "y", pair[1], seed=1)
    assert {k: v.shape for k, v in load_file(str(x / "model.safetensors")).items()} == \
        {k: v.shape for k, v in load_file(str(y / "model.safetensors")).items()}  # shapes alone cannot tell
    with pytest.raises(MergeMismatchError) as err:
        merge_checkpoints([x, y], "linear")
    message = str(err.value)
    assert f"model.fusion.name: {pair[1]!r} in {y}" in message and repr(pair[0]) in message
    # Merging only what they share is allowed: the towers, keeping the reference's fusion and head.
    merge_checkpoints([x, y], "linear", policies={"fusion.*": "keep_base", "head.*": "keep_base"})


def test_training_only_settings_do_not_block_a_merge(tiny_run, tmp_path):
    import json

    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b", scale=0.05)
    info = json.loads((b / "model/crossfuse.json").read_text())
    info["model"]["fusion"]["dropout"] = 0.3
    info["model"]["vision"]["freeze"] = True
    (b / "model/crossfuse.json").write_text(json.dumps(info))
    merge_checkpoints([a, b], "linear")


def test_fusion_option_difference_is_named(tiny_run, tmp_path):
    import json

    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b", scale=0.05)
    info = json.loads((b / "model/crossfuse.json").read_text())
    info["model"]["fusion"]["params"] = {"rank": 4}
    (b / "model/crossfuse.json").write_text(json.dumps(info))
    with pytest.raises(MergeMismatchError, match=r"model\.fusion\.params\.rank: 4 in .* \(missing\) in the ref"):
        merge_checkpoints([a, b], "linear")


# ------------------------------------------------------------------------------- a user's mistakes, one line each
def test_missing_folder(tiny_run, tmp_path, capsys):
    a = _copy(tiny_run, tmp_path / "a")
    line = _cli_error(_recipe(tmp_path, [a, tmp_path / "nowhere"], tmp_path / "out"), capsys)
    assert f"{tmp_path / 'nowhere'}" in line and "does not exist" in line
    assert not (tmp_path / "out").exists()


def test_folder_with_only_pytorch_model_bin(tiny_run, tmp_path, capsys):
    a = _copy(tiny_run, tmp_path / "a")
    hf = tmp_path / "hf_model"
    hf.mkdir()
    torch.save({"w": torch.zeros(2)}, hf / "pytorch_model.bin")
    line = _cli_error(_recipe(tmp_path, [a, hf], tmp_path / "out"), capsys)
    assert "pytorch_model.bin" in line and str(hf) in line and "safetensors" in line
    with pytest.raises(ModelNotAvailableError, match="never unpickle"):
        merge_checkpoints([a, hf], "linear")


def test_pickle_named_safetensors(tiny_run, tmp_path, capsys):
    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b")
    weights = b / "model" / "model.safetensors"
    pickled = weights.with_name("pickled.tmp")  # a new file, then renamed: the old one may still be mapped
    torch.save({k: v.clone() for k, v in load_file(str(weights)).items()}, pickled)
    pickled.replace(weights)
    line = _cli_error(_recipe(tmp_path, [a, b], tmp_path / "out"), capsys)
    assert str(weights) in line and "pickle" in line


def test_truncated_file_names_the_file(tiny_run, tmp_path, capsys):
    a, b = _copy(tiny_run, tmp_path / "a"), _copy(tiny_run, tmp_path / "b")
    weights = b / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.with_name("cut.tmp").write_bytes(data[: len(data) // 2])
    weights.with_name("cut.tmp").replace(weights)
    line = _cli_error(_recipe(tmp_path, [a, b], tmp_path / "out"), capsys)
    assert str(weights) in line and "truncated" in line
    assert not (tmp_path / "out").exists()
