"""The offline text encoder of paper 003's text branch: all-MiniLM-L6-v2 token embeddings, pinned
by checksum, checked against sentence-transformers' own sentence embedding (mean pooling)."""

from __future__ import annotations

import numpy as np
import pytest

from fmrirecon.errors import InputError
from fmrirecon.features.text import N_TOKENS, WIDTH, TextEncoder, minilm_folder, verify_folder


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


def test_token_embeddings_shape_determinism_and_caption_means(encoder):
    caps = ["a red circle on a striped background", "a blue square", "a red circle on a striped background"]
    emb = encoder.encode(caps)
    assert emb.shape == (3, N_TOKENS, WIDTH) == (3, 15, 384) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb[0], emb[2])
    assert not np.allclose(emb[0], emb[1])
    per_image = encoder.encode_images([caps[:2], caps[1:2]])
    np.testing.assert_allclose(per_image[0], emb[:2].mean(0), rtol=1e-6, atol=1e-6)
    with pytest.raises(InputError, match="image b: no captions"):
        encoder.encode_images([caps[:1], []], names=["a", "b"])


def test_mean_pooled_tokens_equal_the_sentence_transformers_embedding(encoder):
    """Independent reference: sentence-transformers' all-MiniLM-L6-v2 = mean over real tokens of
    the same hidden states (then L2-normalised), at its own max length (long enough here)."""
    st = pytest.importorskip("sentence_transformers")
    caps = ["a green crescent", "two dotted stars above a ring"]
    ref = st.SentenceTransformer(str(minilm_folder()), device="cpu", local_files_only=True).encode(caps)
    tok = encoder.tokenizer(caps, padding="max_length", truncation=True, max_length=N_TOKENS, return_tensors="np")
    emb = encoder.encode(caps)
    mask = tok["attention_mask"][..., None]
    pooled = (emb * mask).sum(1) / mask.sum(1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, ref, rtol=1e-4, atol=1e-5)


def test_a_folder_with_other_weights_fails_with_one_line(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the model")
    with pytest.raises(InputError, match="model.safetensors: sha256 .* is not the pinned all-MiniLM-L6-v2"):
        verify_folder(tmp_path)
    with pytest.raises(InputError, match="missing"):
        verify_folder(tmp_path / "nowhere")
