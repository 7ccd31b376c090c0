"""How the Firestore codec stores a payload (storage/firestore_codec.py): as a map when
Firestore can hold it as one, else as its JSON text. No emulator needed; the round trip
through the emulator is in tests/test_firestore_store.py."""

from __future__ import annotations

import pytest

from storage.firestore_codec import FIRESTORE_MAX_DEPTH, FIRESTORE_MAX_KEY_BYTES, payload_from_value, payload_value


def nested(levels: int, leaf: object = 1) -> dict:
    """A payload ``levels`` maps deep, the payload itself being the first."""
    value: object = leaf
    for _ in range(levels):
        value = {"m": value}
    return value  # type: ignore[return-value]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"a": [1, "x", None, True, 1.5, {"b": [2]}]},
        {"n": 2**63 - 1, "m": -(2**63)},
        {"___": 1, "__": 2, "_a__": 3, "a.b/c`": 4, "é😀": "é😀"},
        {"k" * FIRESTORE_MAX_KEY_BYTES: 1},
        nested(FIRESTORE_MAX_DEPTH),
        {"a": [nested(FIRESTORE_MAX_DEPTH - 2)]},
    ],
)
def test_what_firestore_holds_as_a_map_is_stored_as_the_payload_itself(payload):
    assert payload_value(payload) is payload


@pytest.mark.parametrize(
    "payload",
    [
        {"a": [[1]]},
        {"a": [{"b": [[]]}]},
        {"": 1},
        {"__name__": 1},
        {"____": 1},
        {"k" * (FIRESTORE_MAX_KEY_BYTES + 1): 1},
        {"é" * (FIRESTORE_MAX_KEY_BYTES // 2 + 1): 1},  # 1,502 bytes in UTF-8
        {"n": 2**63},
        {"n": -(2**63) - 1},
        nested(FIRESTORE_MAX_DEPTH + 1),
        {"a": [nested(FIRESTORE_MAX_DEPTH - 1)]},
    ],
)
def test_what_firestore_refuses_as_a_map_is_stored_as_json_text_and_reads_back_equal(payload):
    stored = payload_value(payload)
    assert isinstance(stored, str)
    assert payload_from_value(stored) == payload


@pytest.mark.parametrize("text", ["[1]", '"x"', "1", "null"])
def test_stored_text_that_is_not_a_json_object_is_refused(text):
    with pytest.raises(ValueError, match="not an object"):
        payload_from_value(text)
