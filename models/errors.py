"""Errors a user can cause when building or loading models."""


class ModelNotAvailableError(OSError):
    """A pretrained model or checkpoint named in the config cannot be loaded on this machine."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not match the model they are loaded into."""


def offline_hint(kind: str, name: str, err: Exception) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"{kind} {name!r} could not be loaded: it is not a local path and is not in the local HuggingFace/timm "
        f"cache, and the Hub could not be reached (HF_HUB_OFFLINE=1 or no network). Fix: download it on a machine "
        f"with internet (e.g. `huggingface-cli download {name}`) and copy the cache (~/.cache/huggingface), or save "
        f"it with save_pretrained and set the config to that local directory. Original error: "
        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    )
