"""Property tests: whatever bytes arrive, ``Session.decode`` raises only its own error.

The decoder's promise (``threadline.protocol.errors``) is that a peer can make it
raise ``RemoteProtocolError`` and nothing else. These tests feed it random frame
lists and valid signed messages mutated the ways a broken or hostile peer (or a
broken network stack) would: flipped bits, truncated, dropped, duplicated,
reordered, sliced and joined frames. Any other exception is a decoder bug.

They also check the other half of the promise for signed messages: a mutation
that touches the signature or a signed frame is never accepted unless it is
re-signed with the key.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadline.protocol import DELIMITER, Message, RemoteProtocolError, Session

KEY = b"fuzz-key"
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REASONS = {"signature", "replay", "json", "framing", "oversize", "header"}

# Bytes that look a little like the real thing, so the fuzzer gets past the
# first checks more often than random bytes would.
json_ish = st.sampled_from(
    [b"{}", b"[]", b"null", b"1", b'"s"', b'{"msg_id": "1", "msg_type": "x"}', b'{"msg_id": 1}', b"{", b""]
)
frame = st.one_of(st.binary(max_size=48), json_ish, st.just(DELIMITER))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def decode_or_refuse(session: Session, frames: list[bytes]) -> Message | None:
    """Decode; a refusal must be a RemoteProtocolError with a known reason."""
    try:
        return session.decode(frames)
    except RemoteProtocolError as exc:
        assert exc.reason in REASONS, exc
        return None


def valid_frames(sender: Session, content: dict[str, Any]) -> list[bytes]:
    frames = sender.encode(
        "execute_request",
        content,
        parent={"msg_id": "p", "msg_type": "execute_request"},
        identities=[b"ident-1", b"ident-2"],
        buffers=[b"buffer-0"],
    )
    return [bytes(f) for f in frames]


@st.composite
def mutated(draw: st.DrawFn, frames: list[bytes]) -> list[bytes]:
    """``frames`` after one to four random mutations."""
    frames = list(frames)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "truncate", "drop", "duplicate", "swap", "slice", "join", "insert"])
        )
        if not frames:
            kind = "insert"
        index = draw(st.integers(0, len(frames) - 1)) if frames else 0
        if kind == "flip" and frames[index]:
            data = bytearray(frames[index])
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= 1 << draw(st.integers(0, 7))
            frames[index] = bytes(data)
        elif kind == "truncate":
            frames[index] = frames[index][: draw(st.integers(0, max(0, len(frames[index]) - 1)))]
        elif kind == "drop":
            del frames[index]
        elif kind == "duplicate":
            frames.insert(draw(st.integers(0, len(frames))), frames[index])
        elif kind == "swap":
            other = draw(st.integers(0, len(frames) - 1))
            frames[index], frames[other] = frames[other], frames[index]
        elif kind == "slice":
            cut = draw(st.integers(0, len(frames[index])))
            frames[index : index + 1] = [frames[index][:cut], frames[index][cut:]]
        elif kind == "join" and index + 1 < len(frames):
            frames[index : index + 2] = [frames[index] + frames[index + 1]]
        elif kind == "insert":
            frames.insert(draw(st.integers(0, len(frames))), draw(frame))
    return frames


@SETTINGS
@given(frames=st.lists(frame, max_size=10), keyed=st.booleans())
def test_random_frames_raise_only_remote_protocol_errors(frames: list[bytes], keyed: bool) -> None:
    decode_or_refuse(Session(KEY if keyed else b""), frames)


@SETTINGS
@given(data=st.data(), content=st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_mutated_signed_messages_are_refused_unless_untouched(data: st.DataObject, content: Any) -> None:
    original = valid_frames(Session(KEY), content)
    frames = data.draw(mutated(original))
    message = decode_or_refuse(Session(KEY), frames)
    if message is not None:
        # Accepted: the signature and the four signed frames must be the originals.
        split = frames.index(DELIMITER)
        assert frames[split + 1 : split + 6] == original[3:8]
        assert message.content == content


@SETTINGS
@given(data=st.data(), content=st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_mutated_unsigned_messages_raise_only_remote_protocol_errors(
    data: st.DataObject, content: Any
) -> None:
    """Without a key every mutation reaches the JSON and header checks."""
    frames = data.draw(mutated(valid_frames(Session(b""), content)))
    decode_or_refuse(Session(b""), frames)


@SETTINGS
@given(
    parts=st.lists(
        st.one_of(json_ish, st.binary(max_size=24), json_values.map(orjson.dumps)), min_size=4, max_size=4
    ),
    header=st.dictionaries(st.sampled_from(["msg_id", "msg_type", "subshell_id", "x"]), json_values),
    use_header=st.booleans(),
)
def test_correctly_signed_nonsense_raises_only_remote_protocol_errors(
    parts: list[bytes], header: dict[str, Any], use_header: bool
) -> None:
    """A peer that holds the key can still send anything at all inside the frames."""
    signer = Session(KEY)
    if use_header:
        parts[0] = orjson.dumps(header)
    frames = [DELIMITER, signer.signer.sign(parts), *parts]
    message = decode_or_refuse(Session(KEY), frames)
    if message is not None:
        assert isinstance(message.msg_id, str) and isinstance(message.msg_type, str)
        assert message.subshell_id is None or isinstance(message.subshell_id, str)


@SETTINGS
@given(content=st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_valid_messages_round_trip_and_replays_are_refused(content: Any) -> None:
    receiver = Session(KEY)
    frames = valid_frames(Session(KEY), content)
    message = receiver.decode(frames)
    assert (message.content, message.identities, message.buffers) == (
        content,
        (b"ident-1", b"ident-2"),
        (b"buffer-0",),
    )
    assert decode_or_refuse(receiver, frames) is None
