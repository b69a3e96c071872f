"""Message authentication: HMAC signatures and replay refusal.

The signature covers the four JSON frames (header, parent, metadata, content),
hex-encoded, exactly as ``jupyter_client.session.Session`` computes it. The keyed
HMAC object is built once and copied per message, which skips re-keying.

``Signer`` is safe to use from many threads at once: ``sign`` only copies the
prepared HMAC object. ``ReplayGuard`` is not: it belongs to the one thread that
receives (the IO thread).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections import deque
from collections.abc import Sequence

from threadline.protocol.errors import LocalProtocolError

DEFAULT_SCHEME = "hmac-sha256"
#: Up to this many bytes, the parts are joined for one HMAC update (cheaper than four);
#: above it they are fed one by one, so large content is never copied to be signed.
JOIN_LIMIT = 16 * 1024


class Signer:
    """Signs and verifies the four JSON frames of a message.

    With an empty key, messages are neither signed nor checked (the signature
    frame is empty), as the messaging spec allows. Whether an empty key is
    acceptable at all is decided by the caller, not here.
    """

    def __init__(self, key: bytes, scheme: str = DEFAULT_SCHEME) -> None:
        if not scheme.startswith("hmac-"):
            raise LocalProtocolError(f"signature scheme must start with 'hmac-', got {scheme!r}")
        digest_name = scheme[len("hmac-") :]
        if digest_name not in hashlib.algorithms_available:
            raise LocalProtocolError(f"unknown signature scheme {scheme!r}")
        try:
            # Some available digests cannot key an HMAC or give a fixed-size
            # hex digest (shake_*): refuse them here, not at the first message.
            prototype = hmac.new(key or b"probe", digestmod=digest_name)
            prototype.copy().hexdigest()
        except (ValueError, TypeError) as exc:
            raise LocalProtocolError(f"signature scheme {scheme!r} cannot sign: {exc}") from None
        self.scheme = scheme
        # hmac.HMAC is a Python wrapper around OpenSSL's HMAC object; copying
        # and updating the C object directly saves ~0.3 us per message (where
        # the stdlib built one; otherwise the wrapper does the same job).
        core = getattr(prototype, "_hmac", None)
        self._prototype = (core or prototype) if key else None

    @property
    def enabled(self) -> bool:
        return self._prototype is not None

    def sign(self, parts: Sequence[bytes]) -> bytes:
        """The hex signature of ``parts`` (the four JSON frames), or b"" without a key."""
        if self._prototype is None:
            return b""
        if sum(map(len, parts)) <= JOIN_LIMIT:
            return self.sign_joined(b"".join(parts))  # one update through hmac's wrapper, not four
        mac = self._prototype.copy()
        for part in parts:  # large: do not copy the content just to sign it
            mac.update(part)
        return mac.hexdigest().encode("ascii")

    def sign_joined(self, joined: bytes) -> bytes:
        """The signature of four JSON frames already joined into one ``bytes``."""
        if self._prototype is None:
            return b""
        mac = self._prototype.copy()
        mac.update(joined)
        return mac.hexdigest().encode("ascii")

    def verify(self, signature: bytes, parts: Sequence[bytes]) -> bool:
        """Whether ``signature`` is right for ``parts``, compared in constant time."""
        if self._prototype is None:
            return True
        return hmac.compare_digest(signature, self.sign(parts))


class ReplayGuard:
    """Remembers the most recent signatures and refuses to see one twice.

    Bounded: after ``capacity`` signatures the oldest is forgotten, so memory
    stays fixed under any traffic. A replay of a message older than the window
    is not caught; the window (65,536 by default, as in jupyter_client) is far
    longer than any legitimate retransmission delay.

    What is remembered is each signature's 64-bit ``hash``, not the signature
    itself: 76 bytes an entry instead of 137, so a full window holds 4.7 MiB
    rather than 8.6 (tracemalloc). Two different messages with equal hashes would
    make the second look like a replay; with only verified signatures ever
    remembered (the caller's rule) and a keyed hash, that is a chance of about
    one in 2**64 / 65,536 per message.
    """

    def __init__(self, capacity: int = 65536) -> None:
        if capacity < 1:
            raise LocalProtocolError("replay window must hold at least one signature")
        self._capacity = capacity
        # Each remembered key, with the number of the ``remember`` call that added it.
        self._seen: dict[int, int] = {}
        self._order: deque[int] = deque()
        self._calls = itertools.count()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, signature: bytes) -> bool:
        return hash(signature) in self._seen

    def remember(self, signature: bytes) -> bool:
        """Remember ``signature``; False if it was already remembered (a replay)."""
        key = hash(signature)
        # Messages are decoded on more than one thread (the IO thread, and the
        # main thread for the shell requests it receives itself): ``setdefault``
        # checks and adds in one step, so of two threads remembering the same
        # signature exactly one succeeds.
        call = next(self._calls)
        if self._seen.setdefault(key, call) != call:
            return False
        self._order.append(key)
        if len(self._order) > self._capacity:
            self._seen.pop(self._order.popleft(), None)
        return True
