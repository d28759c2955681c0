"""Model files: weights as safetensors plus a JSON of hyper-parameters, written atomically."""

from __future__ import annotations

import json
import os

from safetensors.torch import load_file, save_file
from torch import nn

from ..data.atomic import atomic_path, write_json
from ..errors import InputError


def save_model(path: str, modules: dict[str, nn.Module], hparams: dict) -> None:
    """``path`` (…/name.safetensors) gets ``<module>.<param>`` tensors; ``hparams`` go into the
    safetensors metadata and a sibling ``.json``."""
    tensors = {
        f"{name}.{k}": v.detach().cpu().contiguous()
        for name, module in modules.items()
        for k, v in module.state_dict().items()
    }
    meta = {"hparams": json.dumps(hparams, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    write_json(os.path.splitext(path)[0] + ".json", hparams)


def read_hparams(path: str) -> dict:
    from safetensors import safe_open

    if not os.path.exists(path):
        raise InputError(f"{path}: model weights file not found")
    try:
        with safe_open(path, "pt") as fh:
            return json.loads(fh.metadata()["hparams"])
    except Exception as exc:
        raise InputError(f"{path}: not a readable fmrirecon model file ({exc})") from None


def load_into(path: str, modules: dict[str, nn.Module]) -> None:
    """Load ``save_model`` weights into freshly built ``modules`` (strict)."""
    tensors = load_file(path)
    for name, module in modules.items():
        prefix = f"{name}."
        sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(sub, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{path}: weights of '{name}' do not match the network "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
