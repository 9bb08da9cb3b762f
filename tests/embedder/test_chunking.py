"""Chunk boundaries: the pure chunker on made-up offsets, and `EmbeddingModel.chunk` with the real tokenizer."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from searchgw.embedder.chunking import ChunkSpan, chunk_spans
from searchgw.embedder.model import DEFAULT_MODEL_NAME, EmbeddingModel, default_model_dir
from tests.conftest import MODEL_CACHE


def words(count: int, pieces: int = 1) -> tuple[list[tuple[int, int]], list[bool]]:
    """Offsets and word starts of `count` words of `pieces` tokens each, 'aaaa ' per token-word."""
    offsets, starts = [], []
    for word in range(count):
        for piece in range(pieces):
            start = word * (4 * pieces + 1) + piece * 4
            offsets.append((start, start + 4))
            starts.append(piece == 0)
    return offsets, starts


def test_chunks_cover_every_token_in_order_and_repeat_exactly_the_overlap():
    offsets, starts = words(100)
    spans = chunk_spans(offsets, starts, room=30, overlap=5)
    assert [(s.first_token, s.end_token) for s in spans] == [(0, 30), (25, 55), (50, 80), (75, 100)]
    assert spans[1].start == offsets[25][0] and spans[1].end == offsets[54][1]


def test_a_chunk_ends_before_a_word_start_rather_than_inside_a_word():
    offsets, starts = words(40, pieces=3)  # every word is 3 tokens
    spans = chunk_spans(offsets, starts, room=10, overlap=4)
    for span in spans:
        assert span.tokens <= 10
        assert starts[span.first_token]  # starts at a word
        assert span.end_token == len(offsets) or starts[span.end_token]  # ends before a word
    assert spans[-1].end_token == len(offsets)
    assert all(a.end_token - b.first_token == 3 for a, b in zip(spans, spans[1:]))  # one whole word repeated
    # A last word longer than the overlap is not cut to make one: the next chunk starts after it.
    spans = chunk_spans(offsets, starts, room=10, overlap=2)
    assert all(starts[s.first_token] for s in spans) and all(a.end_token == b.first_token for a, b in zip(spans, spans[1:]))


def test_a_word_longer_than_a_chunk_is_cut_inside_and_progress_continues():
    offsets, starts = [(i, i + 1) for i in range(50)], [True] + [False] * 49  # one 50-token word
    spans = chunk_spans(offsets, starts, room=20, overlap=4)
    assert [(s.first_token, s.end_token) for s in spans] == [(0, 20), (16, 36), (32, 50)]


def test_a_chunk_the_model_refuses_alone_is_shortened_until_it_fits():
    offsets, starts = words(30)
    refused = {(0, 10)}
    spans = chunk_spans(offsets, starts, room=10, overlap=2, fits=lambda s: (s.first_token, s.end_token) not in refused)
    assert (spans[0].first_token, spans[0].end_token) == (0, 9)
    assert spans[1].first_token == 7  # the overlap counts from the shortened end


@pytest.mark.parametrize(("room", "overlap"), [(0, 0), (5, 5), (5, -1)])
def test_impossible_settings_are_refused(room, overlap):
    with pytest.raises(ValueError):
        chunk_spans([(0, 1)], [True], room=room, overlap=overlap)


# -- the real tokenizer ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model() -> EmbeddingModel:
    return EmbeddingModel.load(default_model_dir(MODEL_CACHE), DEFAULT_MODEL_NAME, intra_op_threads=1)


@pytest.fixture(scope="module")
def tokenizer(model) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(model.spec.source / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


DOCUMENT = " ".join(
    f"Paragraph {i}: the ledger code ZX-{i:04d} was reconciled; naïve café résumés, "
    "well-known e-mail addresses (ops@example.org) and unbelievably-hyphenated-compounds appear here."
    for i in range(40))


def test_real_chunks_are_substrings_within_the_limit_with_the_overlap_asked(model, tokenizer):
    assert model.spec.max_input_tokens == 256 and model.special_tokens == 2  # [CLS] … [SEP]
    chunked = model.chunk(DOCUMENT, 256, 32)
    assert chunked.tokens == len(tokenizer.encode(DOCUMENT).ids) > 256
    previous_end = 0
    for chunk in chunked.chunks:
        assert DOCUMENT[chunk.start:chunk.end] == chunk.text
        assert chunk.tokens == len(tokenizer.encode(chunk.text).ids) <= 256  # counted alone, specials included
        assert chunk.start <= previous_end  # no gap
        previous_end = chunk.end
    assert chunked.chunks[0].start == 0 and chunked.chunks[-1].end == len(DOCUMENT)
    # The overlap: the text a chunk repeats from the one before it is at most 32 tokens, and not empty.
    for before, after in zip(chunked.chunks, chunked.chunks[1:]):
        repeated = DOCUMENT[after.start:before.end]
        assert 0 < len(tokenizer.encode(repeated, add_special_tokens=False).ids) <= 32
    # Chunks are as full as whole words allow: every chunk but the last holds more than 240 tokens.
    assert all(chunk.tokens > 240 for chunk in chunked.chunks[:-1])


def test_a_text_that_fits_is_one_chunk_itself_and_smaller_chunks_obey_their_limit(model, tokenizer):
    fits = model.chunk("  a short text, with spaces around  ", 256, 32)
    assert [(c.text, c.start, c.end) for c in fits.chunks] == [("  a short text, with spaces around  ", 0, 36)]
    small, large = model.chunk(DOCUMENT, 64, 8), model.chunk(DOCUMENT, 256, 32)
    assert all(c.tokens <= 64 for c in small.chunks) and len(small.chunks) > 3 * len(large.chunks)


def test_non_ascii_offsets_are_code_points(model):
    text = "日本語のテキスト " * 200 + "🙂 " * 300
    for chunk in model.chunk(text, 128, 16).chunks:
        assert text[chunk.start:chunk.end] == chunk.text and chunk.tokens <= 128


def test_chunk_span_token_count():
    assert ChunkSpan(3, 10, 0, 0).tokens == 7
