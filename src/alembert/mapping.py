"""Which student layer learns from which teacher layer.

Index conventions (shared with the models module):
- hidden states: 0 is the embedding output, i is the output of transformer layer i, so a model
  with L layers has hidden indices 0..L;
- attention: the transformer layer number, 1..L (there is no attention at the embeddings).

Both functions return a list of ``(student_index, teacher_index)`` pairs.

Kinds (M = student layers, N = teacher layers):
- ``uniform``: TinyBERT's g(m) = m * N / M for m = 1..M, plus (0, 0) for hidden states. When N is
  not a multiple of M the teacher index is m * N / M rounded half up (never below 1), so 6 -> 4
  uses teacher layers 2, 3, 5, 6. Student extraction ``uniform`` copies the same layers
  (``scaled_layer`` is the one rule for both), so a student learns from the layers it started as.
- ``last``: only the last layers, (M, N); never the embeddings.
- ``skip``: PKD-Skip, m <-> m * N / M (rounded as above) for the intermediate layers m = 1..M-1;
  the last layer is left to the prediction loss, so a 1-layer student has nothing to map.
- ``top``: PKD-Last, m <-> N - M + m for the intermediate layers m = 1..M-1 (teacher layers
  N-M+1..N-1); as in PKD-Skip the last layer is left to the prediction loss and the embeddings are
  not paired, so a 1-layer student has nothing to map.
- ``top_aligned``: XtremeDistil's multi-layer map, top-aligned: m <-> N - M + m for every student index, hidden
  states 0..M (so the student's embedding output learns from teacher layer N - M) and attention layers 1..M.
- ``explicit``: ``explicit`` is either one teacher index per student index (hidden: M + 1 entries
  for students 0..M, or M entries for 1..M; attention: M entries for 1..M) or a list of
  ``[student, teacher]`` pairs.

``include_embeddings=False`` drops the (0, x) pair from hidden maps.
"""

from __future__ import annotations

from typing import Sequence

from alembert.errors import AlembertError

MAP_KINDS = ("uniform", "last", "skip", "top", "top_aligned", "explicit")


def layer_map(
    kind: str,
    student_layers: int,
    teacher_layers: int,
    explicit: Sequence | None = None,
    include_embeddings: bool = True,
) -> list[tuple[int, int]]:
    """(student, teacher) pairs of hidden-state indices (0 = embeddings)."""
    pairs = _build(kind, student_layers, teacher_layers, explicit, attention=False)
    if not include_embeddings:
        pairs = [(s, t) for s, t in pairs if s != 0]
    return pairs


def attention_map(
    kind: str,
    student_layers: int,
    teacher_layers: int,
    explicit: Sequence | None = None,
) -> list[tuple[int, int]]:
    """(student, teacher) pairs of attention layer numbers (1-based)."""
    return _build(kind, student_layers, teacher_layers, explicit, attention=True)


def _build(kind, student_layers, teacher_layers, explicit, attention: bool) -> list[tuple[int, int]]:
    what = "attention map" if attention else "layer map"
    _check_count(what, "student_layers", student_layers)
    _check_count(what, "teacher_layers", teacher_layers)
    if kind not in MAP_KINDS:
        raise AlembertError(
            f"{what} kind {kind!r} is not known (expected one of {', '.join(MAP_KINDS)})"
        )
    if kind != "explicit" and explicit is not None:
        raise AlembertError(f"{what} {kind!r}: explicit is only used with kind 'explicit'")
    m_count, n_count = student_layers, teacher_layers
    label = f"{what} {kind!r}"

    if kind == "uniform":
        pairs = [(m, scaled_layer(m, m_count, n_count)) for m in range(1, m_count + 1)]
        if not attention:
            pairs.insert(0, (0, 0))
    elif kind == "last":
        pairs = [(m_count, n_count)]
    elif kind in ("skip", "top"):
        if m_count < 2:
            raise AlembertError(
                f"{label}: a student with {m_count} layer has no intermediate layers to map "
                "(expected student_layers >= 2)"
            )
        if kind == "skip":
            pairs = [(m, scaled_layer(m, m_count, n_count)) for m in range(1, m_count)]
        else:
            if m_count > n_count:
                raise AlembertError(
                    f"{label}: needs student_layers <= teacher_layers, got {m_count} > {n_count}"
                )
            pairs = [(m, n_count - m_count + m) for m in range(1, m_count)]
    elif kind == "top_aligned":
        if m_count > n_count:
            raise AlembertError(f"{label}: needs student_layers <= teacher_layers, got {m_count} > {n_count}")
        pairs = [(m, n_count - m_count + m) for m in range(0 if not attention else 1, m_count + 1)]
    else:
        pairs = _explicit_pairs(label, explicit, m_count, attention)

    low = 1 if attention else 0
    layer_word = "attention layer" if attention else "layer"
    for s, t in pairs:
        if not low <= s <= m_count:
            raise AlembertError(
                f"{label}: student {layer_word} {s} is out of range for a student with "
                f"{m_count} layers (expected {low}..{m_count})"
            )
        if not low <= t <= n_count:
            raise AlembertError(
                f"{label}: teacher {layer_word} {t} is out of range for a teacher with "
                f"{n_count} layers (expected {low}..{n_count})"
            )
    return pairs


def _check_count(what: str, field: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AlembertError(f"{what}: {field} must be an integer >= 1, got {value!r}")


def scaled_layer(m: int, m_count: int, n_count: int) -> int:
    """Teacher layer m * N / M (1-based) for student layer m, rounded half up: the uniform map's and uniform
    extraction's one rule."""
    # Integer arithmetic, so no float rounding decides a tie; clamp to 1 so a layer never maps to the
    # embeddings (possible only when the student is much deeper than the teacher).
    return max(1, (2 * m * n_count + m_count) // (2 * m_count))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _explicit_pairs(label: str, explicit, m_count: int, attention: bool) -> list[tuple[int, int]]:
    if explicit is None or isinstance(explicit, (str, bytes)) or len(explicit) == 0:
        raise AlembertError(f"{label}: explicit must be a non-empty list, got {explicit!r}")
    if all(_is_int(t) for t in explicit):
        # One teacher index per student index; the length says where the student side starts.
        if attention:
            starts = {m_count: 1}
        else:
            starts = {m_count + 1: 0, m_count: 1}
        if len(explicit) not in starts:
            expected = " or ".join(str(n) for n in starts)
            raise AlembertError(
                f"{label}: explicit has {len(explicit)} teacher indices, expected {expected} "
                f"for a student with {m_count} layers"
            )
        first = starts[len(explicit)]
        return [(first + i, t) for i, t in enumerate(explicit)]
    pairs = []
    for item in explicit:
        if (
            isinstance(item, (str, bytes))
            or not hasattr(item, "__len__")
            or len(item) != 2
            or not all(_is_int(v) for v in item)
        ):
            raise AlembertError(
                f"{label}: explicit entry {item!r} is not valid (expected an integer teacher "
                "index or a [student, teacher] pair of integers)"
            )
        pairs.append((item[0], item[1]))
    return pairs
