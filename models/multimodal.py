"""The model: text tower + vision tower -> fusion -> head, saved and loaded as safetensors + JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import AutoConfig

from fusion.registry import FUSIONS, create_fusion, get_fusion_class

from .errors import CheckpointMismatchError, ModelNotAvailableError
from .folder import CONFIG, TEXT_CONFIG, TOKENIZER, WEIGHTS, read_info, read_weights
from .heads import ClassificationHead
from .hub import resolve_pretrained, write_model_card
from .text_encoder import TextEncoder
from .vision_encoder import VisionEncoder

WEIGHTS_NAME, CONFIG_NAME = WEIGHTS, CONFIG  # the names older code imports from here


class MultimodalModel(nn.Module):
    """Encoders, fusion and head wired together.

    Parameter names are stable and readable (``text.model.encoder.layer.0...``, ``vision.model.blocks.0...``,
    ``fusion.*``, ``head.*``) so checkpoints can be matched tensor by tensor. A tower whose modality the fusion
    method does not read is not built.

    Args:
        model_cfg: the ``model`` section of the run config, as a plain dict.
        num_outputs: number of logits (classes, or labels for multi-label tasks).
        label_names: names of the outputs, saved with the model.
        multi_label: sigmoid/BCE outputs instead of softmax.
        vocab_size: tokenizer vocabulary size (only for the tiny text encoder).
        image_overrides: ``{"image_size", "mean", "std"}`` preprocessing overrides.
        text_hf_config: HF config that rebuilds the text tower without download (used when loading).
    """

    def __init__(
        self,
        model_cfg: dict[str, Any],
        num_outputs: int,
        label_names: list[str] | None = None,
        multi_label: bool = False,
        vocab_size: int | None = None,
        image_overrides: dict[str, Any] | None = None,
        text_hf_config: Any = None,
        pretrained: bool = True,
    ):
        super().__init__()
        self.model_cfg = copy.deepcopy(model_cfg)
        self.num_outputs = num_outputs
        self.label_names = list(label_names or [str(i) for i in range(num_outputs)])
        self.multi_label = multi_label
        self.image_overrides = dict(image_overrides or {})
        fusion_cfg = self.model_cfg["fusion"]
        fusion_cfg["name"] = FUSIONS.resolve(fusion_cfg["name"])  # a renamed method: warn once, save the new name
        modalities = get_fusion_class(fusion_cfg["name"]).modalities
        self.text = self.vision = None
        if "text" in modalities:
            text_cfg = dict(model_cfg["text"])
            if not pretrained:
                text_cfg["pretrained"] = False
            self.text = TextEncoder(**text_cfg, vocab_size=vocab_size, hf_config=text_hf_config)
        if "image" in modalities:
            vision_cfg = dict(model_cfg["vision"])
            if not pretrained:  # weights come from our own checkpoint: build the architecture only
                vision_cfg.update(pretrained=False, checkpoint=None)
            self.vision = VisionEncoder(**vision_cfg, **self.image_overrides)
        self.fusion = create_fusion(
            fusion_cfg["name"],
            text_dim=self.text.dim if self.text is not None else 0,
            image_dim=self.vision.dim if self.vision is not None else 0,
            num_outputs=num_outputs,
            dim=fusion_cfg["dim"],
            dropout=fusion_cfg["dropout"],
            **fusion_cfg.get("params", {}),
        )
        head_cfg = model_cfg["head"]
        self.head = (
            nn.Identity() if self.fusion.produces_logits
            else ClassificationHead(self.fusion.out_dim, num_outputs, head_cfg["hidden"], head_cfg["dropout"])
        )
        self.modality_dropout = dict(model_cfg.get("modality_dropout") or {})
        for key, p in self.modality_dropout.items():  # a typo would otherwise silently disable dropout
            if key not in ("text", "image") or not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"model.modality_dropout has {key}: {p}; use keys 'text' and/or 'image' with "
                                 "probabilities in [0, 1], e.g. model.modality_dropout={text: 0.1, image: 0.1}")

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.fusion.modalities

    @property
    def image_data_config(self) -> dict | None:
        return self.vision.data_config if self.vision is not None else None

    def encode(self, batch: dict[str, Tensor], drop: tuple[str, ...] = ()):
        """Run the towers. ``drop`` names modalities to mark absent for every sample (evaluation ablations)."""
        text = image = None
        if self.text is not None:
            present = batch["text_present"].bool() & ("text" not in drop)
            text = self.text(batch["input_ids"], batch["attention_mask"], present)
        if self.vision is not None:
            present = batch["image_present"].bool() & ("image" not in drop)
            image = self.vision(batch["pixel_values"], present)
        if self.training and self.modality_dropout and text is not None and image is not None:
            text, image = self._modality_dropout(text, image)
        return text, image

    def _modality_dropout(self, text, image):
        """Randomly mark a modality absent per sample; never both for the same sample."""
        b = text.present.shape[0]
        p_text, p_image = self.modality_dropout.get("text", 0.0), self.modality_dropout.get("image", 0.0)
        drop_text = torch.rand(b, device=text.present.device) < p_text
        drop_image = (torch.rand(b, device=text.present.device) < p_image) & ~drop_text
        text = text._replace(present=text.present & ~(drop_text & image.present))
        image = image._replace(present=image.present & ~(drop_image & text.present))
        return text, image

    def forward(self, batch: dict[str, Tensor], drop: tuple[str, ...] = ()) -> dict[str, Any]:
        """Args: a collated batch (``input_ids``, ``attention_mask``, ``pixel_values``, ``*_present``).

        Returns:
            ``logits`` ``(B, num_outputs)``, ``features`` ``(B, out_dim)`` (fused, before the head), and the
            per-modality ``text`` / ``image`` :class:`ModalityFeatures` (``None`` for a tower not built).
        """
        text, image = self.encode(batch, drop)
        fused = self.fusion(text, image)
        return {"logits": self.head(fused), "features": fused, "text": text, "image": image}

    def external_parameters(self) -> list[tuple[nn.Module, nn.Parameter]]:
        """(module, parameter) pairs where a module uses a parameter it does not own (for DeepSpeed ZeRO-3)."""
        return [(self.vision, p) for p in self.vision.external_parameters()] if self.vision is not None else []

    # ---------------------------------------------------------------- persistence
    def config_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_cfg,
            "num_outputs": self.num_outputs,
            "label_names": self.label_names,
            "multi_label": self.multi_label,
            "image_overrides": self.image_overrides,
            "image_data_config": _jsonable(self.image_data_config),
        }

    def save_pretrained(self, directory: str | Path, tokenizer: Any = None,
                        state_dict: dict[str, Tensor] | None = None) -> Path:
        """Write ``model.safetensors``, ``crossfuse.json``, the text tower's HF config and the tokenizer.

        ``state_dict``: the full weights when this module holds shards (ZeRO-3, FSDP), as gathered by
        ``Accelerator.get_state_dict``; by default the module's own.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in (state_dict or self.state_dict()).items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
        if self.text is not None:
            self.text.save_config(directory / TEXT_CONFIG)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory / TOKENIZER)
        (directory / CONFIG).write_text(json.dumps(self.config_dict(), indent=2))
        write_model_card(directory)  # the towers and labels; the trainer adds the run's metrics and command
        return directory

    @classmethod
    def from_pretrained(cls, path: str | Path, strict: bool = True, revision: str | None = None) -> MultimodalModel:
        """Load a model saved by :meth:`save_pretrained`: a model directory, a run folder holding ``model/``, or a
        HuggingFace Hub repo id (``org/name``, at ``revision``), resolved through the local cache (so it works with
        ``HF_HUB_OFFLINE=1`` once cached)."""
        directory = resolve_pretrained(path, revision)
        info = read_info(directory)
        text_dir = directory / TEXT_CONFIG
        try:
            hf_config = AutoConfig.from_pretrained(text_dir) if text_dir.is_dir() else None
            model = cls(
                info["model"], info["num_outputs"], info["label_names"], info["multi_label"],
                image_overrides=info.get("image_overrides"), text_hf_config=hf_config, pretrained=False,
            )
        except (KeyError, ValueError, TypeError, OSError) as err:  # a config edited by hand, or from another version
            raise ModelNotAvailableError(
                f"the model in {directory} cannot be rebuilt from {directory / CONFIG}"
                f"{' and ' + str(text_dir) if text_dir.is_dir() else ''}: {type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}; restore the files written by save_pretrained"
            ) from err
        load_state(model, read_weights(directory), strict=strict, source=str(directory))
        return model


def load_state(model: nn.Module, state: dict[str, Tensor], strict: bool = True, source: str = "checkpoint") -> None:
    """Load tensors by name; a missing, unexpected or differently shaped tensor is an error listing them all."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if strict and (missing or unexpected or shapes):
        lines = [f"{source} does not match the model:"]
        lines += [f"  missing:    {k}" for k in missing]
        lines += [f"  unexpected: {k}" for k in unexpected]
        lines += [f"  shape:      {k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in shapes]
        raise CheckpointMismatchError("\n".join(lines))
    model.load_state_dict({k: v for k, v in state.items() if k in own and k not in shapes}, strict=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value
