"""Where to cut a long text into chunks a model takes whole: a pure function of its token offsets.

The embedder's `EmbeddingModel.chunk` tokenizes a text with the model's own tokenizer and hands the
content tokens' character offsets (special tokens left out) and which of them start a word to
`chunk_spans`; each span it returns is a range of tokens and the substring of the text they cover
(`text[span.start:span.end]`). Rules:

- a chunk holds at most `room` tokens (the model's limit minus its special tokens);
- a chunk ends before a token that starts a word when one lies far enough on (more than `overlap`
  tokens after the chunk's start, so the next chunk starts later than this one); only a single word
  longer than the room is cut inside;
- the next chunk starts `overlap` tokens before the previous one ended, moved forward to the first
  word start at or after that token (so the overlap is at most `overlap` tokens, whole words; none
  when the chunk's last word is longer than the overlap);
- the chunks cover every token, in order; the last one ends with the text's last token.

No tokenizer, no I/O: unit-testable with made-up offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Tokens a chunk repeats from the one before it when a request does not say.
DEFAULT_OVERLAP_TOKENS = 32


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Tokens [first_token, end_token) of the content tokens, covering characters [start, end)."""

    first_token: int
    end_token: int
    start: int
    end: int

    @property
    def tokens(self) -> int:
        return self.end_token - self.first_token


def chunk_spans(offsets: Sequence[tuple[int, int]], word_starts: Sequence[bool], *, room: int,
                overlap: int, fits: Callable[[ChunkSpan], bool] = lambda span: True) -> list[ChunkSpan]:
    """The chunks of a text whose content tokens cover `offsets` (character [start, end) each, in
    order) and of which `word_starts[i]` says whether token i starts a word (see the module doc).

    `fits(span)` may refuse a chunk (its text, tokenized alone, is over the model's limit: a cut inside
    a word can split the rest of the word into more tokens); it is then one token shorter, until it fits.
    """
    if room < 1:
        raise ValueError(f"room {room}: a chunk must hold at least one token")
    if not 0 <= overlap < room:
        raise ValueError(f"overlap {overlap} must be at least 0 and below the room of {room} tokens")
    if len(word_starts) != len(offsets):
        raise ValueError("one word_starts entry per token is required")
    count = len(offsets)
    spans: list[ChunkSpan] = []
    first = 0
    while first < count:
        end = min(first + room, count)
        if end < count:
            # Back off to a word start, keeping the chunk longer than the overlap (progress).
            boundary = next((e for e in range(end, first + overlap, -1) if word_starts[e]), None)
            if boundary is not None:
                end = boundary
        span = ChunkSpan(first, end, offsets[first][0], offsets[end - 1][1])
        while not fits(span):
            if span.tokens <= overlap + 1:
                raise ValueError(f"no chunk from token {first} on fits the model")
            span = shortened(span, offsets)
        spans.append(span)
        end = span.end_token
        if end == count:
            break
        following = end - overlap
        # The first word start in the overlap, or `end` itself (no overlap) when the chunk ended before a
        # word; inside a word only when the chunk was cut inside one.
        first = next((s for s in range(following, end + 1) if word_starts[s]), following)
    return spans


def shortened(span: ChunkSpan, offsets: Sequence[tuple[int, int]]) -> ChunkSpan:
    """`span` one token shorter (for a chunk whose text, tokenized alone, came out longer: a cut inside
    a word may split its rest differently)."""
    if span.tokens <= 1:
        raise ValueError("a one-token chunk cannot be shortened")
    end = span.end_token - 1
    return ChunkSpan(span.first_token, end, span.start, offsets[end - 1][1])


__all__ = ["DEFAULT_OVERLAP_TOKENS", "ChunkSpan", "chunk_spans", "shortened"]
