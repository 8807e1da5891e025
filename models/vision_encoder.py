"""Vision tower: any ``timm`` model (ViT, ResNet, ConvNeXt, ...) behind one small adapter."""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from fusion.base import ModalityFeatures

from .errors import CheckpointMismatchError, missing_file_hint, timm_model_hint


def load_weights_file(path: str | Path, key: str = "model.vision.checkpoint") -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file, never unpickling arbitrary objects.

    ``key``: the config key that named the file, for the error when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_hint(path, key)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            return state[key]
    return state


def unknown_model_message(name: str) -> str:
    """``unknown timm model 'resnet-18'. Did you mean 'resnet18', ...?`` with the nearest timm names."""
    import timm

    archs = timm.list_models()
    base = name.split(".")[0]
    near = difflib.get_close_matches(base, archs, n=5, cutoff=0.5)
    near += [n for n in difflib.get_close_matches(base.replace("-", "_"), archs, n=5, cutoff=0.5) if n not in near]
    hint = f" Did you mean {', '.join(map(repr, near[:5]))}?" if near else " No timm model has a similar name."
    return (f"unknown timm model {name!r} (model.vision.name).{hint} timm.list_models('<pattern>') lists the "
            f"{len(archs)} names, e.g. timm.list_models('*{base.split('_')[0].rstrip('-0123456789')}*')")


HUB_PREFIXES = ("hf-hub:", "hf_hub:")  # timm's prefixes for a model whose config and weights live in a Hub repo


class VisionEncoder(nn.Module):
    """Wraps a timm model; returns token features (ViT patch tokens or a CNN's flattened map) and a pooled vector.

    Args:
        name: any ``timm.list_models()`` name, with a pretrained tag or not (``vit_base_patch16_224.augreg_in21k``),
            or a timm model on the Hub (``hf-hub:timm/<name>.<tag>``: its config and weights come from that repo,
            through the local HuggingFace cache).
        pretrained: load timm's pretrained weights (from the local cache when offline).
        checkpoint: a local weights file loaded into the model (classifier weights are ignored).
        kwargs: extra ``timm.create_model`` arguments (``img_size``, ``depth``, ``embed_dim``, ...).
        freeze: freeze every weight of the tower.
        gradient_checkpointing: trade compute for activation memory.
        channels_last: NHWC memory format (faster convolutions on GPUs).
        image_size, mean, std: override the preprocessing of the model's own timm data config.
    """

    def __init__(
        self,
        name: str = "vit_tiny_patch16_224",
        pretrained: bool = False,
        checkpoint: str | None = None,
        kwargs: dict | None = None,
        freeze: bool = False,
        gradient_checkpointing: bool = False,
        channels_last: bool = False,
        image_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ):
        super().__init__()
        import timm  # here, not at import: a model without a vision tower (text-only) never loads timm

        on_hub = name.startswith(HUB_PREFIXES)
        if not on_hub and not timm.is_model(name):
            raise ValueError(unknown_model_message(name))
        try:
            self.model = timm.create_model(name, pretrained=pretrained, num_classes=0, **dict(kwargs or {}))
        except (OSError, RuntimeError) as err:
            if pretrained or on_hub:  # a Hub name reads its config from the Hub even without pretrained weights
                raise timm_model_hint(name, err) from err
            raise
        if checkpoint:
            self.load_checkpoint(checkpoint)
        self.dim = self.model.num_features
        self.num_prefix_tokens = getattr(self.model, "num_prefix_tokens", 0)
        self.channels_last = False
        self.set_channels_last(channels_last)
        if gradient_checkpointing:
            self.model.set_grad_checkpointing(True)
        if freeze:
            self.model.requires_grad_(False)
        data_config = timm.data.resolve_model_data_config(self.model)
        if image_size is not None:
            data_config["input_size"] = (3, image_size, image_size)
            data_config["crop_pct"] = 1.0
        if mean is not None:
            data_config["mean"] = tuple(mean)
        if std is not None:
            data_config["std"] = tuple(std)
        self.data_config = data_config

    def set_channels_last(self, enabled: bool) -> None:
        """Keep the weights and the input images in NHWC (``enabled``) or the default NCHW memory format."""
        self.channels_last = enabled
        self.model.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def external_parameters(self) -> list[nn.Parameter]:
        """The timm model's own parameters (a ViT's ``pos_embed``, ``cls_token``): :meth:`forward` reaches them
        through ``forward_features`` / ``forward_head``, never the model's ``__call__``, so DeepSpeed ZeRO-3, which
        gathers a module's parameters when that module is called, must be told this module uses them."""
        return list(self.model.parameters(recurse=False))

    def load_checkpoint(self, path: str | Path) -> None:
        state = load_weights_file(path)
        result = self.model.load_state_dict(state, strict=False)
        head = {k for k in result.unexpected_keys if k.split(".")[0] in ("head", "fc", "classifier", "last_linear")}
        unexpected = sorted(set(result.unexpected_keys) - head)
        if result.missing_keys or unexpected:
            raise CheckpointMismatchError(
                f"checkpoint {str(path)!r} does not match timm model {type(self.model).__name__}: "
                f"missing {result.missing_keys[:10]}, unexpected {unexpected[:10]}"
            )

    def forward(self, pixel_values: Tensor, present: Tensor | None = None) -> ModalityFeatures:
        """``(B, 3, H, W)`` -> tokens ``(B, N, D)``, mask ``(B, N)`` (all True), pooled ``(B, D)``."""
        # Under autocast the weights stay float32 and this is a no-op; DeepSpeed's bf16/fp16 modes cast the weights
        # themselves and leave inputs alone, so the images must follow.
        pixel_values = pixel_values.to(next(self.model.parameters()).dtype)
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        feats = self.model.forward_features(pixel_values)
        pooled = self.model.forward_head(feats, pre_logits=True)
        if feats.ndim == 4:
            pattern = "b h w c -> b (h w) c" if getattr(self.model, "output_fmt", "NCHW") == "NHWC" else (
                "b c h w -> b (h w) c")
            tokens = rearrange(feats, pattern)
        else:
            tokens = feats[:, self.num_prefix_tokens:]
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        if present is None:
            present = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
        return ModalityFeatures(tokens=tokens, mask=mask, pooled=pooled, present=present)
