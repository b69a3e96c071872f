"""threadline.protocol against itself and against jupyter_client, with no sockets.

Wire compatibility is checked both ways with ``jupyter_client.session.Session``,
the reference implementation every front end uses: what we encode it must
deserialize and verify, and what it serializes we must decode. Then every way a
message can be wrong must come out as ``RemoteProtocolError`` with a stable
``reason``, and every way our own code can ask for something impossible as
``LocalProtocolError``.
"""

from __future__ import annotations

import threading
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jupyter_client.connect import write_connection_file
from jupyter_client.session import Session as JupyterSession

from threadline.protocol import (
    DELIMITER,
    PROTOCOL_VERSION,
    ConnectionInfo,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    ReplayGuard,
    Session,
    Signer,
    pack,
)

KEY = b"5ecret-key-for-tests"
SCHEMES = ["hmac-sha256", "hmac-sha1", "hmac-md5", "hmac-sha512"]
KEYS = [pytest.param(KEY, id="keyed"), pytest.param(b"", id="unkeyed")]

CONTENT = {"code": "print('héllo ✓')", "silent": False, "nested": {"list": [1, 2.5, None, True]}}
PARENT = {"msg_id": "parent-1", "msg_type": "execute_request", "session": "s", "username": "u"}
METADATA = {"deletedCells": [], "recordTiming": False}
BUFFERS = [b"\x00\x01\x02binary\xff", b"", b"second buffer"]


def as_wire(frames: list[Any]) -> list[bytes]:
    """What a peer receives: every frame as bytes (memoryviews included)."""
    return [bytes(frame) for frame in frames]


def jupyter_session(key: bytes, scheme: str = "hmac-sha256") -> JupyterSession:
    return JupyterSession(key=key, signature_scheme=scheme, username="jc-test")


def signed(session: Session, parts: list[bytes], *, identities: tuple[bytes, ...] = ()) -> list[bytes]:
    """Frames carrying ``parts`` verbatim (even invalid ones), correctly signed."""
    return [*identities, DELIMITER, session.signer.sign(parts), *parts]


def reason_of(session: Session, frames: list[bytes]) -> str:
    with pytest.raises(RemoteProtocolError) as caught:
        session.decode(frames)
    return caught.value.reason


# -- wire compatibility with jupyter_client ----------------------------------------------


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_jupyter_client_reads_what_we_encode(key: bytes, scheme: str) -> None:
    ours = Session(key, scheme)
    frames = ours.encode(
        "execute_request",
        CONTENT,
        parent=PARENT,
        metadata=METADATA,
        identities=[b"route-a", b"route-b"],
        buffers=[BUFFERS[0], bytearray(BUFFERS[1]), memoryview(BUFFERS[2])],
    )
    theirs = jupyter_session(key, scheme)
    identities, rest = theirs.feed_identities(as_wire(frames), copy=True)
    msg = theirs.deserialize(rest, content=True, copy=True)

    assert identities == [b"route-a", b"route-b"]
    assert msg["msg_type"] == "execute_request"
    assert msg["header"]["msg_type"] == "execute_request"
    assert msg["header"]["session"] == ours.session_id
    assert msg["header"]["version"] == PROTOCOL_VERSION
    assert isinstance(msg["header"]["date"], datetime)
    assert msg["header"]["date"].tzinfo is not None
    assert msg["msg_id"] == msg["header"]["msg_id"]
    assert msg["content"] == CONTENT
    assert msg["parent_header"]["msg_id"] == "parent-1"
    assert msg["metadata"] == METADATA
    assert [bytes(b) for b in msg["buffers"]] == BUFFERS
    if key:
        assert len(frames[3]) == 2 * len(theirs.auth.digest())  # hex of that scheme's digest
    else:
        assert frames[3] == b""


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_we_read_what_jupyter_client_serializes(key: bytes, scheme: str) -> None:
    theirs = jupyter_session(key, scheme)
    sent = theirs.msg("execute_request", content=CONTENT, parent=PARENT, metadata=METADATA)
    frames = as_wire([*theirs.serialize(sent, ident=[b"client-id"]), *BUFFERS])

    msg = Session(key, scheme).decode(frames)

    assert isinstance(msg, Message)
    assert msg.identities == (b"client-id",)
    assert msg.msg_id == sent["header"]["msg_id"]
    assert msg.msg_type == "execute_request"
    assert msg.header["session"] == theirs.session
    assert msg.content == CONTENT
    assert msg.parent_header["msg_id"] == "parent-1"
    assert msg.metadata == METADATA
    assert msg.buffers == tuple(BUFFERS)
    assert msg.subshell_id is None


@pytest.mark.parametrize("size", [10, 20_000, 300_000], ids=["small", "over-the-join-limit", "large"])
def test_a_reply_carries_its_request_header_exactly_as_received(size: int) -> None:
    """A decoded request keeps its header frame; used as the parent of a reply it is
    sent verbatim, and jupyter_client reads and verifies the reply -- for small
    messages (signed joined, frames cut from the joined bytes) and large ones
    (signed part by part) alike."""
    theirs = jupyter_session(KEY, "hmac-sha256")
    sent = theirs.msg("execute_request", content=CONTENT, parent=PARENT)
    wire = as_wire(theirs.serialize(sent, ident=[b"client-id"]))
    ours = Session(KEY)
    request = ours.decode(wire)
    assert request.header_json == wire[wire.index(DELIMITER) + 2]
    assert request.parent_part is request.header_json

    content = {"text": "x" * size}
    frames = ours.encode("execute_reply", content, parent=request.parent_part, metadata={"status": "ok"})
    assert frames[frames.index(DELIMITER) + 3] == request.header_json
    _, rest = theirs.feed_identities(as_wire(frames), copy=True)
    reply = theirs.deserialize(rest, content=True, copy=True)  # verifies the signature
    assert reply["parent_header"]["msg_id"] == sent["header"]["msg_id"]
    assert reply["parent_header"]["session"] == theirs.session
    assert reply["content"] == content
    assert reply["metadata"] == {"status": "ok"}


def test_a_message_built_here_has_its_header_as_parent_part() -> None:
    message = Message(header={"msg_id": "m", "msg_type": "x"}, parent_header={}, metadata={}, content={})
    assert message.parent_part == {"msg_id": "m", "msg_type": "x"}


def test_subshell_id_round_trips_through_jupyter_client() -> None:
    ours = Session(KEY)
    header = ours.new_header("execute_request", subshell_id="sub-1")
    frames = ours.encode("execute_request", {}, header=header)
    theirs = jupyter_session(KEY)
    _, rest = theirs.feed_identities(as_wire(frames), copy=True)
    assert theirs.deserialize(rest)["header"]["subshell_id"] == "sub-1"
    assert Session(KEY).decode(as_wire(frames)).subshell_id == "sub-1"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_jupyter_client_rejects_our_message_under_another_key(scheme: str) -> None:
    frames = as_wire(Session(KEY, scheme).encode("kernel_info_request", {}))
    theirs = jupyter_session(b"another key", scheme)
    _, rest = theirs.feed_identities(frames, copy=True)
    with pytest.raises(ValueError, match="Invalid Signature"):
        theirs.deserialize(rest)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_we_reject_jupyter_client_message_under_another_key_or_scheme(scheme: str) -> None:
    theirs = jupyter_session(KEY, scheme)
    frames = as_wire(theirs.serialize(theirs.msg("kernel_info_request", content={})))
    assert reason_of(Session(b"another key", scheme), frames) == "signature"
    other_scheme = "hmac-sha384"
    assert reason_of(Session(KEY, other_scheme), frames) == "signature"


def test_our_session_talks_to_itself() -> None:
    sender, receiver = Session(KEY), Session(KEY)
    frames = sender.encode("comm_msg", {"data": {"x": 1}}, identities=[b"id"], buffers=[b"buf"])
    msg = receiver.decode(as_wire(frames))
    assert (msg.identities, msg.content, msg.buffers) == ((b"id",), {"data": {"x": 1}}, (b"buf",))
    assert msg.parent_header == {} and msg.metadata == {}


def test_decode_accepts_a_tuple_of_frames() -> None:
    frames = tuple(as_wire(Session(KEY).encode("status", {"execution_state": "idle"})))
    assert Session(KEY).decode(frames).content == {"execution_state": "idle"}


def test_message_ids_are_unique_across_threads() -> None:
    """4 threads x 500 encodes on one Session: 2,000 distinct msg_ids."""
    session = Session(KEY)
    ids: list[list[str]] = [[] for _ in range(4)]

    def produce(out: list[str]) -> None:
        for _ in range(500):
            out.append(orjson.loads(session.encode("stream", {"text": "x"})[2])["msg_id"])

    threads = [threading.Thread(target=produce, args=(out,)) for out in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len({msg_id for out in ids for msg_id in out}) == 2000


# -- authentication ---------------------------------------------------------------------


def test_bad_signature_is_refused() -> None:
    frames = as_wire(Session(KEY).encode("execute_request", CONTENT))
    frames[1] = b"0" * len(frames[1])
    assert reason_of(Session(KEY), frames) == "signature"


def test_content_changed_after_signing_is_refused() -> None:
    frames = as_wire(Session(KEY).encode("execute_request", {"code": "1"}))
    frames[-1] = pack({"code": "import os; os.system('boom')"})
    assert reason_of(Session(KEY), frames) == "signature"


def test_unsigned_message_is_refused_when_a_key_is_set() -> None:
    frames = as_wire(Session(b"").encode("execute_request", CONTENT))
    assert frames[1] == b""
    assert reason_of(Session(KEY), frames) == "signature"


def test_without_a_key_signatures_are_not_checked() -> None:
    frames = as_wire(Session(KEY).encode("execute_request", CONTENT))
    frames[1] = b"whatever"
    assert Session(b"").decode(frames).content == CONTENT


def test_replayed_frames_are_refused() -> None:
    frames = as_wire(Session(KEY).encode("execute_request", CONTENT))
    receiver = Session(KEY)
    receiver.decode(frames)
    with pytest.raises(RemoteProtocolError) as caught:
        receiver.decode(frames)
    assert caught.value.reason == "replay"
    assert "replay" in str(caught.value)


def test_replay_of_a_jupyter_client_message_is_refused() -> None:
    theirs = jupyter_session(KEY)
    frames = as_wire(theirs.serialize(theirs.msg("kernel_info_request", content={})))
    receiver = Session(KEY)
    receiver.decode(frames)
    assert reason_of(receiver, frames) == "replay"


def test_forged_signatures_do_not_enter_the_replay_window() -> None:
    """A refused forgery must not poison the window (or evict real signatures)."""
    receiver = Session(KEY, replay_window=1)
    good = as_wire(Session(KEY).encode("execute_request", CONTENT))
    forged = [*good[:1], b"f" * 64, *good[2:]]
    assert reason_of(receiver, forged) == "signature"
    assert reason_of(receiver, forged) == "signature"  # not "replay": never remembered
    receiver.decode(good)
    assert reason_of(receiver, forged) == "signature"
    assert reason_of(receiver, good) == "replay"  # the forgery did not evict it


def test_replay_window_is_bounded() -> None:
    """Capacity N: after N+1 distinct signatures the first is forgotten, the rest kept."""
    capacity = 3
    sender, receiver = Session(KEY), Session(KEY, replay_window=capacity)
    messages = [as_wire(sender.encode("status", {"n": n})) for n in range(capacity + 1)]
    for frames in messages:
        receiver.decode(frames)
    assert receiver.decode(messages[0]).content == {"n": 0}  # forgotten, so accepted
    for frames in messages[2:]:
        assert reason_of(receiver, frames) == "replay"


def test_replay_guard_forgets_the_oldest() -> None:
    guard = ReplayGuard(2)
    for signature in (b"a", b"b", b"a", b"c"):  # remembering "a" twice changes nothing
        guard.remember(signature)
    assert len(guard) == 2
    assert not guard.seen(b"a")
    assert guard.seen(b"b") and guard.seen(b"c")
    with pytest.raises(LocalProtocolError):
        ReplayGuard(0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signer_matches_jupyter_client(scheme: str) -> None:
    theirs = jupyter_session(KEY, scheme)
    parts = [pack({"a": 1}), b"{}", b"{}", pack({"b": [2]})]
    signer = Signer(KEY, scheme)
    assert signer.sign(parts) == theirs.sign(parts)
    assert signer.verify(signer.sign(parts), parts)
    assert not signer.verify(signer.sign(parts), [*parts[:3], b"{}"])
    assert Signer(b"", scheme).sign(parts) == b""


@pytest.mark.parametrize("scheme", ["sha256", "hmac-nonexistent", "hmac-shake_128", ""])
def test_unusable_signature_schemes_are_refused_up_front(scheme: str) -> None:
    with pytest.raises(LocalProtocolError):
        Signer(KEY, scheme)
    with pytest.raises(LocalProtocolError):
        Session(KEY, scheme)


# -- framing and parsing ------------------------------------------------------------------


def test_missing_delimiter_is_a_framing_error() -> None:
    frames = as_wire(Session(KEY).encode("status", {}))
    assert reason_of(Session(KEY), [f for f in frames if f != DELIMITER]) == "framing"


@pytest.mark.parametrize("keep", range(6))
def test_too_few_frames_is_a_framing_error(keep: int) -> None:
    frames = as_wire(Session(KEY).encode("status", {}, identities=[b"id"]))
    assert reason_of(Session(KEY), frames[: 1 + keep]) == "framing"


def test_empty_input_is_a_framing_error() -> None:
    assert reason_of(Session(KEY), []) == "framing"


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("bad", [b"{not json", b"", b"\xff\xfe", b'{"a": 1} trailing'])
def test_invalid_json_is_refused(position: int, bad: bytes) -> None:
    session = Session(KEY)
    parts = [pack(session.new_header("status")), b"{}", b"{}", b"{}"]
    parts[position] = bad
    assert reason_of(Session(KEY), signed(session, parts)) == "json"


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("value", [b"[]", b"null", b"1", b'"a string"', b"true"])
def test_json_that_is_not_an_object_is_refused(position: int, value: bytes) -> None:
    session = Session(KEY)
    parts = [pack(session.new_header("status")), b"{}", b"{}", b"{}"]
    parts[position] = value
    assert reason_of(Session(KEY), signed(session, parts)) == "json"


@pytest.mark.parametrize(
    "header",
    [
        {"msg_type": "status"},
        {"msg_id": "1"},
        {"msg_id": 1, "msg_type": "status"},
        {"msg_id": "1", "msg_type": ""},
        {"msg_id": "1", "msg_type": ["status"]},
        {},
    ],
)
def test_header_without_string_msg_id_and_msg_type_is_refused(header: dict[str, Any]) -> None:
    session = Session(KEY)
    parts = [pack(header), b"{}", b"{}", b"{}"]
    assert reason_of(Session(KEY), signed(session, parts)) == "header"


def test_oversize_is_refused_before_anything_is_parsed() -> None:
    frames = as_wire(Session(KEY).encode("status", {"text": "x" * 50}))
    size = sum(map(len, frames))
    assert Session(KEY, max_message_size=size).decode(frames).content == {"text": "x" * 50}
    assert reason_of(Session(KEY, max_message_size=size - 1), frames) == "oversize"
    # Garbage that would fail framing and JSON checks is refused for its size first.
    assert reason_of(Session(KEY, max_message_size=10), [b"{" * 11]) == "oversize"
    assert reason_of(Session(KEY, max_message_size=10), [b"x"] * 11) == "oversize"


def test_max_message_size_must_be_positive() -> None:
    with pytest.raises(LocalProtocolError):
        Session(KEY, max_message_size=0)


def test_decode_refuses_frames_that_are_not_bytes() -> None:
    frames: list[Any] = [memoryview(f) for f in as_wire(Session(KEY).encode("status", {}))]
    with pytest.raises(LocalProtocolError):
        Session(KEY).decode(frames)


# -- encoding ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [{"x": object()}, {"n": 2**70}, {"f": lambda: None}, {"nested": [{"deep": threading.Lock()}]}],
    ids=["object", "huge-int", "function", "nested-lock"],
)
@pytest.mark.parametrize("where", ["content", "parent", "metadata", "header"])
def test_non_serialisable_values_raise_local_protocol_error(bad: dict[str, Any], where: str) -> None:
    session = Session(KEY)
    kwargs: dict[str, Any] = {}
    if where == "header":
        kwargs["header"] = {**session.new_header("status"), **bad}
    elif where != "content":
        kwargs[where] = bad
    with pytest.raises(LocalProtocolError):
        session.encode("status", bad if where == "content" else {}, **kwargs)


def test_pack_handles_what_jupyter_sends_routinely() -> None:
    packed = orjson.loads(pack({"raw": b"\x00\xff", "tags": {"a"}, 3: "non-str key"}))
    assert packed == {"raw": "AP8=", "tags": ["a"], "3": "non-str key"}


def test_new_header_refuses_an_empty_msg_type() -> None:
    with pytest.raises(LocalProtocolError):
        Session(KEY).new_header("")


# -- connection files -------------------------------------------------------------------


def test_connection_file_written_by_jupyter_client(tmp_path: Path) -> None:
    path, _cfg = write_connection_file(
        str(tmp_path / "kernel.json"),
        ip="127.0.0.1",
        key=KEY,
        shell_port=50001,
        iopub_port=50002,
        stdin_port=50003,
        control_port=50004,
        hb_port=50005,
        signature_scheme="hmac-sha512",
        kernel_name="threadline",
    )
    info = ConnectionInfo.from_json(Path(path).read_bytes())
    assert info.key == KEY.decode()
    assert info.signature_scheme == "hmac-sha512"
    assert info.kernel_name == "threadline"
    assert [info.port(c) for c in ("shell", "iopub", "stdin", "control", "hb")] == [
        50001,
        50002,
        50003,
        50004,
        50005,
    ]
    assert info.url("shell") == "tcp://127.0.0.1:50001"
    assert ConnectionInfo.from_json(info.to_json()) == info


def test_connection_file_defaults_and_unknown_fields() -> None:
    info = ConnectionInfo.from_json('{"shell_port": 1, "something_new": [1, 2]}')
    assert info == ConnectionInfo(shell_port=1)
    assert info.ip == "127.0.0.1" and info.transport == "tcp" and info.key == ""


@pytest.mark.parametrize("text", [b"{", b"", b"\xff", b"{'single': 'quotes'}"])
def test_connection_file_that_is_not_json(text: bytes) -> None:
    with pytest.raises(LocalProtocolError, match="not valid JSON"):
        ConnectionInfo.from_json(text)


@pytest.mark.parametrize("text", ["[]", "1", "null", '"tcp"'])
def test_connection_file_that_is_not_an_object(text: str) -> None:
    with pytest.raises(LocalProtocolError, match="JSON object"):
        ConnectionInfo.from_json(text)


@pytest.mark.parametrize("port", ["5555", 55.5, True, -1, 65536, None, [1]])
@pytest.mark.parametrize("channel", ["shell", "iopub", "stdin", "control", "hb"])
def test_connection_file_with_a_bad_port(channel: str, port: object) -> None:
    with pytest.raises(LocalProtocolError, match=f"{channel}_port"):
        ConnectionInfo.from_json(orjson.dumps({f"{channel}_port": port}))


@pytest.mark.parametrize("transport", ["udp", "TCP", "", "inproc"])
def test_connection_file_with_a_bad_transport(transport: str) -> None:
    with pytest.raises(LocalProtocolError, match="transport"):
        ConnectionInfo.from_json(orjson.dumps({"transport": transport}))


@pytest.mark.parametrize("field", ["ip", "transport", "key", "signature_scheme", "kernel_name"])
def test_connection_file_with_a_non_string_field(field: str) -> None:
    with pytest.raises(LocalProtocolError, match=field):
        ConnectionInfo.from_json(orjson.dumps({field: 1}))


def test_urls_for_tcp_and_ipc() -> None:
    tcp = ConnectionInfo(shell_port=5, iopub_port=6, stdin_port=7, control_port=8, hb_port=9, ip="10.0.0.1")
    assert [tcp.url(c) for c in ("shell", "iopub", "stdin", "control", "hb")] == [
        f"tcp://10.0.0.1:{port}" for port in (5, 6, 7, 8, 9)
    ]
    ipc = ConnectionInfo.from_json('{"transport": "ipc", "ip": "/tmp/kernel-x", "iopub_port": 2}')
    assert ipc.url("iopub") == "ipc:///tmp/kernel-x-2"  # as jupyter_client spells it
    with pytest.raises(LocalProtocolError):
        tcp.url("nonsense")


def test_with_ports_replaces_only_the_given_channels() -> None:
    info = ConnectionInfo(shell_port=1, key="k").with_ports({"iopub": 2, "hb": 3})
    assert (info.shell_port, info.iopub_port, info.hb_port, info.key) == (1, 2, 3, "k")


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024])
def test_a_large_message_holds_no_more_memory_than_its_frames(size: int) -> None:
    """orjson writes into a buffer 8-16 times the size of its result and returns it
    that way; a message waiting to be sent must not hold that (see ``Session._sign``)."""
    session = Session(KEY)
    content = {"name": "stdout", "text": "x" * size}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        frames = session.encode("stream", content, parent=PARENT)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    frame_bytes = sum(len(frame) for frame in frames)
    assert frame_bytes > size
    assert held < frame_bytes + 64 * 1024  # the frames, and a little besides
