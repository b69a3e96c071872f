"""Coverage-guided fuzzing of ``threadline.protocol.Session.decode`` with atheris.

The promise under test (``threadline.protocol.errors``): whatever frames a peer
sends, ``decode`` returns a ``Message`` or raises ``RemoteProtocolError`` with a
known reason -- nothing else escapes. Also checked on every input:

* an accepted message has string ``msg_id`` and non-empty string ``msg_type``,
  and its identities are exactly the frames before the delimiter;
* a signed message accepted once is refused as a ``replay`` the second time;
* a session with a small size limit refuses anything over it as ``oversize``.

Input format (so libFuzzer's byte mutations map onto frames): the first byte
is a control byte, the rest is the frames joined by ``SEPARATOR`` (two bytes
that never occur in UTF-8 JSON, hex signatures or the delimiter). Control bit 0
re-signs the four signed frames with the key, so mutated JSON also reaches the
parser on the keyed path; bits 1-5 choose the slice size of the "sliced" split.

Each input is decoded split four ways (as given, all joined into one frame,
re-sliced into fixed-size frames, every frame cut in two), each with a keyed
session (twice: the replay check), a keyless one, and a keyed one with a
256-byte size limit.

Run ``python fuzz/fuzz_decode.py -help=1`` for libFuzzer's options, or see
fuzz/README.md. ``python fuzz/fuzz_decode.py --make-corpus DIR`` rewrites the
seed corpus.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

try:
    import atheris
except ImportError:  # the harness (one_input) still works without it, e.g. from hypothesis
    atheris = None

if atheris is not None and __name__ == "__main__":
    with atheris.instrument_imports(include=["threadline"]):
        from threadline.protocol import DELIMITER, Message, RemoteProtocolError, Session
else:
    from threadline.protocol import DELIMITER, Message, RemoteProtocolError, Session

KEY = b"threadline-fuzz-key"
SEPARATOR = b"\xff\xfe"
REASONS = frozenset({"signature", "replay", "json", "framing", "oversize", "header"})
SMALL_LIMIT = 256

#: Set by tests/test_fuzz.py to check that the harness really reports a failure.
PLANTED_BUG = os.environ.get("THREADLINE_FUZZ_PLANTED_BUG") == "1"


class HarnessError(AssertionError):
    """The decoder broke one of its promises on this input."""


def parse_input(data: bytes) -> tuple[int, list[bytes]]:
    """The control byte and the frames of one fuzz input."""
    if not data:
        return 0, []
    return data[0], data[1:].split(SEPARATOR)


def make_input(frames: Sequence[bytes], control: int = 0) -> bytes:
    """The fuzz input that ``parse_input`` turns back into ``(control, frames)``."""
    return bytes([control]) + SEPARATOR.join(frames)


def splittings(frames: list[bytes], control: int) -> Iterator[list[bytes]]:
    """The same bytes cut into frames four ways: whole and sliced."""
    yield frames
    joined = b"".join(frames)
    yield [joined]
    size = ((control >> 1) & 0x1F) + 1
    yield [joined[i : i + size] for i in range(0, len(joined), size)] or [b""]
    halves: list[bytes] = []
    for frame in frames:
        cut = len(frame) // 2
        halves += [frame[:cut], frame[cut:]]
    yield halves


def resign(frames: list[bytes], session: Session) -> list[bytes]:
    """``frames`` with the signature frame replaced by a valid one for the four frames after it."""
    try:
        split = frames.index(DELIMITER)
    except ValueError:
        return frames
    if len(frames) < split + 6:
        return frames
    signed = list(frames)
    signed[split + 1] = session.signer.sign(frames[split + 2 : split + 6])
    return signed


def decode(session: Session, frames: list[bytes]) -> Message | None:
    """Decode; check the invariants of an acceptance or a refusal."""
    try:
        message = session.decode(frames)
    except RemoteProtocolError as exc:
        if exc.reason not in REASONS:
            raise HarnessError(f"unknown refusal reason {exc.reason!r}") from exc
        if sum(map(len, frames)) > session.max_message_size and exc.reason != "oversize":
            raise HarnessError(f"oversize message refused for {exc.reason!r}") from exc
        return None
    if sum(map(len, frames)) > session.max_message_size:
        raise HarnessError("a message over the size limit was accepted")
    header = message.header
    if not isinstance(header.get("msg_id"), str) or not isinstance(header.get("msg_type"), str):
        raise HarnessError(f"accepted a header without string msg_id/msg_type: {header!r}")
    if not message.msg_type:
        raise HarnessError("accepted an empty msg_type")
    split = frames.index(DELIMITER)
    if list(message.identities) != frames[:split]:
        raise HarnessError("identities are not the frames before the delimiter")
    if PLANTED_BUG and message.msg_type == "kernel_info_request":
        raise ValueError("planted bug: the harness must report this")
    return message


def one_input(data: bytes) -> None:
    """The fuzz target: every way of decoding ``data`` keeps the decoder's promise."""
    control, frames = parse_input(data)
    if not frames:
        return
    for variant in splittings(frames, control):
        decode(Session(), variant)  # no key: nothing is signed, JSON always parsed
        keyed = Session(KEY)
        signed = resign(variant, keyed) if control & 1 else variant
        if decode(keyed, signed) is not None and decode(keyed, signed) is not None:
            raise HarnessError("a signed message was accepted twice (replay not refused)")
        decode(Session(KEY, max_message_size=SMALL_LIMIT), signed)


# -- the seed corpus -------------------------------------------------------------------------------


def seed_inputs() -> dict[str, bytes]:
    """Valid signed messages made by jupyter_client's Session, and a few mutations of them."""
    from jupyter_client.session import Session as ClientSession

    client = ClientSession(key=KEY, session="fuzz-seed", username="fuzz")

    def frames(msg_type: str, content: dict[str, object], **kwargs: object) -> list[bytes]:
        message = client.msg(msg_type, content, **kwargs)  # type: ignore[arg-type]
        return [bytes(f) for f in client.serialize(message, ident=[b"client-1"])]

    execute = frames("execute_request", {"code": "print(1)", "silent": False, "store_history": True})
    info = frames("kernel_info_request", {})
    comm = frames(
        "comm_msg",
        {"comm_id": "c0ffee", "data": {"method": "update", "state": {"value": 3}}},
        metadata={"version": "2.1.0"},
    )
    comm_with_buffer = [*comm, b"\x00\x01binary buffer"]
    split = execute.index(DELIMITER)

    def unsigned_body(header: bytes) -> list[bytes]:
        return [DELIMITER, b"", header, b"{}", b"{}", b"{}"]

    seeds = {
        "execute_request": make_input(execute),
        "kernel_info_request": make_input(info),
        "comm_msg": make_input(comm),
        "comm_msg_buffer": make_input(comm_with_buffer),
        # Mutations: what a broken or hostile peer sends.
        "bad_signature": make_input([*execute[: split + 1], b"0" * 64, *execute[split + 2 :]]),
        "unsigned": make_input([*execute[: split + 1], b"", *execute[split + 2 :]]),
        "resign_bad_json": make_input(unsigned_body(b'{"msg_id": "1", "msg_type"'), 1),
        "resign_array": make_input(unsigned_body(b"[1, 2]"), 1),
        "resign_header_types": make_input(unsigned_body(b'{"msg_id": 1, "msg_type": ""}'), 1),
        "missing_frames": make_input(execute[: split + 3]),
        "no_delimiter": make_input([f for f in execute if f != DELIMITER]),
        "oversize": make_input([*info[:-1], b'{"pad": "' + b"x" * 300 + b'"}'], 1),
    }
    return seeds


def write_seed_corpus(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in seed_inputs().items():
        (directory / name).write_bytes(data)


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--make-corpus":
        write_seed_corpus(Path(argv[2]))
        return
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris (tests/test_fuzz.py also drives one_input)")
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
