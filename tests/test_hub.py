"""The HuggingFace Hub, offline: model cards, ``from_pretrained("org/name")`` through a local cache laid out the way
huggingface_hub lays it out, ``crossfuse push`` against a fake Hub behind huggingface_hub's own HTTP client, and
timm ``hf-hub:`` vision towers."""

import base64
import hashlib
import importlib
import json
from pathlib import Path

import huggingface_hub
import pytest
import torch
from conftest import tiny_overrides
from huggingface_hub import ModelCard
from huggingface_hub import constants as hub_constants
from test_models import batch, model_cfg

from crossfuse.commands import push
from models import MultimodalModel
from models.errors import HubError, ModelNotAvailableError
from models.vision_encoder import VisionEncoder


# ------------------------------------------------------------------------------------------------ helpers
def cache_repo(cache: Path, repo_id: str, files: Path, revision: str = "main", sha: str | None = None) -> str:
    """Lay out ``files`` (a folder) as huggingface_hub caches a model repo: content-addressed ``blobs/``,
    ``snapshots/<commit>/`` of links into them, ``refs/<revision>`` naming the commit. Returns the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    sha = sha or hashlib.sha1(f"{repo_id}@{revision}@{files}".encode()).hexdigest()
    for file in sorted(p for p in files.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / sha / file.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (len(file.relative_to(files).parts) + 1), "blobs", blob.name))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(sha)
    return sha


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


def tiny_model(labels=("no", "yes"), seed: int = 0) -> MultimodalModel:
    torch.manual_seed(seed)
    return MultimodalModel(model_cfg("concat"), len(labels), list(labels), vocab_size=50)


def logits(model) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(batch())["logits"]


# ------------------------------------------------------------------------------------------------ model card
def test_save_pretrained_writes_a_model_card_with_metadata(tmp_path):
    folder = tiny_model(labels=("cat", "dog", "fish")).save_pretrained(tmp_path / "m")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "crossfuse" and card.data.license == "other"
    assert card.data.label_names == ["cat", "dog", "fish"] and "fusion:concat" in card.data.tags
    assert card.data.base_model is None  # both towers start from random weights: no base model to name
    assert "`vit_tiny_patch16_224`" in card.text and "`cat`, `dog`, `fish`" in card.text


def test_a_trained_run_card_holds_its_metrics_and_command(tiny_run):
    card = ModelCard.load(tiny_run / "model" / "README.md")
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    accuracy = metrics["results"]["val"]["overall"]["accuracy"]
    assert card.data.datasets == ["shapes"] and "accuracy" in card.data.metrics
    assert f"| val | accuracy | {accuracy:.4f} |" in card.text
    assert "python train.py " in card.text and "run.name=tiny" in card.text


def test_base_models_name_pretrained_towers_only(tmp_path):
    from models.hub import _base_models

    cfg = {"text": {"name": "sentence-transformers/all-MiniLM-L6-v2", "pretrained": True},
           "vision": {"name": "vit_base_patch16_224.augreg_in21k", "pretrained": True}}
    assert _base_models(cfg) == ["sentence-transformers/all-MiniLM-L6-v2", "timm/vit_base_patch16_224.augreg_in21k"]
    assert _base_models({"vision": {"name": "hf-hub:timm/resnet18.a1_in1k", "pretrained": True}}) == [
        "timm/resnet18.a1_in1k"]
    assert _base_models({"text": {"name": "/local/bert", "pretrained": True}, "vision": {"name": "resnet18"}}) == []


# ------------------------------------------------------------------------------------------------ from the cache
def test_from_pretrained_resolves_a_hub_repo_through_the_offline_cache(tmp_path, hub_cache):
    assert hub_constants.is_offline_mode()  # HF_HUB_OFFLINE=1: nothing may touch the network
    first, second = tiny_model(seed=0), tiny_model(labels=("false", "true"), seed=1)
    first.save_pretrained(tmp_path / "v0")
    second.save_pretrained(tmp_path / "v1")
    sha0 = cache_repo(hub_cache, "acme/shapes-fusion", tmp_path / "v0")
    sha1 = cache_repo(hub_cache, "acme/shapes-fusion", tmp_path / "v1", revision="v1")

    main = MultimodalModel.from_pretrained("acme/shapes-fusion")
    assert main.label_names == ["no", "yes"] and torch.allclose(logits(main), logits(first))
    tagged = MultimodalModel.from_pretrained("acme/shapes-fusion", revision="v1")
    assert tagged.label_names == ["false", "true"] and torch.allclose(logits(tagged), logits(second))
    by_commit = MultimodalModel.from_pretrained("acme/shapes-fusion", revision=sha1)
    assert by_commit.label_names == ["false", "true"]
    assert sha0 != sha1

    with pytest.raises(ModelNotAvailableError, match=r"'acme/other'.*HF_HUB_OFFLINE=1.*hf download acme/other"):
        MultimodalModel.from_pretrained("acme/other")
    with pytest.raises(ModelNotAvailableError, match="acme/shapes-fusion@nosuch"):
        MultimodalModel.from_pretrained("acme/shapes-fusion", revision="nosuch")


def test_a_local_folder_wins_over_a_hub_id_and_a_foreign_repo_is_named(tmp_path, hub_cache, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_model().save_pretrained(tmp_path / "acme" / "local")
    assert MultimodalModel.from_pretrained("acme/local").label_names == ["no", "yes"]  # the folder, no Hub lookup
    other = tmp_path / "bert-only"
    other.mkdir()
    (other / "config.json").write_text("{}")
    cache_repo(hub_cache, "bertco/bert", other)
    with pytest.raises(ModelNotAvailableError, match="'bertco/bert' is not a crossfuse model"):
        MultimodalModel.from_pretrained("bertco/bert")


# ------------------------------------------------------------------------------------------------ push
class FakeHub:
    """The Hub's HTTP API as ``HfApi.create_repo`` / ``create_commit`` use it, answered in-process: each commit's
    files are written under ``root/<repo>/<revision>/``. Requests go through huggingface_hub's own client."""

    def __init__(self, root: Path, token_required: bool = False):
        self.root, self.token_required, self.requests = root, token_required, []

    def __call__(self, request):
        httpx = importlib.import_module(type(request).__module__.split(".")[0])  # httpx (or huggingface's httpx2)
        path = request.url.path
        self.requests.append(f"{request.method} {path}")
        if self.token_required and "authorization" not in request.headers:
            return httpx.Response(401, json={"error": "Invalid credentials in Authorization header"})
        if path == "/api/repos/create":
            body = json.loads(request.content)
            return httpx.Response(200, json={"url": f"https://huggingface.co/{body['organization']}/{body['name']}"})
        if path == "/api/validate-yaml":  # the card's metadata, checked before the commit
            return httpx.Response(200, json={"errors": [], "warnings": []})
        parts = path.split("/")  # /api/models/<org>/<name>/<action>/<revision>
        if len(parts) < 7 or parts[2] != "models":
            return httpx.Response(404, json={"error": f"not faked: {request.method} {path}"})
        repo, action, revision = "/".join(parts[3:5]), parts[5], "/".join(parts[6:])
        if action == "preupload":
            files = json.loads(request.content)["files"]
            return httpx.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
        if action == "branch":
            return httpx.Response(200, json={})
        if action == "commit":
            target = self.root / repo / revision
            for line in request.content.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    out = target / item["value"]["path"]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(base64.b64decode(item["value"]["content"]))
            return httpx.Response(200, json={"commitUrl": f"https://huggingface.co/{repo}/commit/abc",
                                              "commitOid": "a" * 40})
        return httpx.Response(404, json={"error": f"not faked: {request.method} {path}"})


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    httpx = importlib.import_module(type(huggingface_hub.get_session()).__module__.split(".")[0])
    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    huggingface_hub.set_client_factory(lambda: httpx.Client(transport=httpx.MockTransport(hub)))
    yield hub
    huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


def test_push_uploads_a_run_and_it_loads_back_from_the_cache(tiny_run, tmp_path, fake_hub, hub_cache, monkeypatch):
    before = {p.name: p.read_bytes() for p in (tiny_run / "model").iterdir() if p.is_file()}
    url = push.main([str(tiny_run), "acme/tiny", "--license", "apache-2.0"])
    assert url.endswith("/commit/abc") and "POST /api/repos/create" in fake_hub.requests
    uploaded = tmp_path / "hub" / "acme" / "tiny" / "main"
    for name, data in before.items():
        if name != "README.md":
            assert (uploaded / name).read_bytes() == data, name
    assert (uploaded / "run" / "config.yaml").read_bytes() == (tiny_run / "config.yaml").read_bytes()
    assert (uploaded / "run" / "metrics.json").is_file() and (uploaded / "tokenizer").is_dir()
    card = ModelCard.load(uploaded / "README.md")
    assert card.data.license == "apache-2.0" and "| val | accuracy |" in card.text
    assert {p.name: p.read_bytes() for p in (tiny_run / "model").iterdir() if p.is_file()} == before  # untouched

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # a colleague's machine, offline, with it cached
    cache_repo(hub_cache, "acme/tiny", uploaded)
    loaded, original = MultimodalModel.from_pretrained("acme/tiny"), MultimodalModel.from_pretrained(tiny_run)
    assert loaded.label_names == original.label_names
    for (name, a), (_, b) in zip(sorted(loaded.state_dict().items()), sorted(original.state_dict().items())):
        assert torch.equal(a, b), name

    from crossfuse.commands import train  # and a new run starts from it by its repo id
    train.main(tiny_overrides(tmp_path / "runs", "reuse", **{"train.init_from": "acme/tiny", "train.max_steps": 1,
                                                             "model.fusion.name": "concat"}))
    report = json.loads((tmp_path / "runs" / "reuse" / "init_report.json").read_text())
    assert report["source"].startswith(str(hub_cache)) and len(report["loaded"]) > 10


def test_push_to_a_branch_and_a_refused_push_is_one_clear_error(tmp_path, fake_hub, monkeypatch):
    folder = tiny_model().save_pretrained(tmp_path / "m")
    push.main([str(folder), "acme/tiny", "--revision", "experiment"])
    assert "POST /api/models/acme/tiny/branch/experiment" in fake_hub.requests
    assert (tmp_path / "hub" / "acme" / "tiny" / "experiment" / "model.safetensors").is_file()
    assert not (tmp_path / "hub" / "acme" / "tiny" / "experiment" / "run").exists()  # a model folder: no run files

    fake_hub.token_required = True
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubError, match=r"HTTP 401.*hf auth login"):
        push.main([str(folder), "acme/tiny"])
    with pytest.raises(ValueError, match="not a Hub repo id"):
        push.main([str(folder), "just-a-name"])


# ------------------------------------------------------------------------------------------------ timm hf-hub
def test_a_timm_hf_hub_vision_tower_loads_from_the_cache(tmp_path, hub_cache):
    import timm
    from safetensors.torch import save_file

    args = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}
    torch.manual_seed(3)
    source = timm.create_model("vit_tiny_patch16_224", num_classes=0, **args)
    repo = tmp_path / "timm-repo"
    repo.mkdir()
    (repo / "config.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 0, "model_args": args,
        "pretrained_cfg": {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "num_classes": 0}}))
    save_file(source.state_dict(), str(repo / "model.safetensors"))
    cache_repo(hub_cache, "timm/vit_test_tiny.shapes", repo)

    tower = VisionEncoder("hf-hub:timm/vit_test_tiny.shapes", pretrained=True)
    for name, value in source.state_dict().items():
        assert torch.equal(tower.model.state_dict()[name], value), name
    assert tuple(tower.data_config["input_size"]) == (3, 32, 32)
    with pytest.raises(ModelNotAvailableError, match="hf download timm/missing"):
        VisionEncoder("hf-hub:timm/missing", pretrained=True)
