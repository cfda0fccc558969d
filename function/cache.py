"""The response cache: a settled tenant's reconciles send the same request every time."""

import collections
import hashlib
import os
from collections.abc import Callable

from crossplane.function.proto.v1 import run_function_pb2 as fnv1

ENTRIES = int(os.environ.get("TCP_ACCESS_RESPONSE_CACHE", "4096"))
BYTES = int(os.environ.get("TCP_ACCESS_RESPONSE_CACHE_BYTES", str(64 << 20)))
MAX_CACHED_REQUEST = 1 << 20
HIT, MISS, SKIP = "hit", "miss", "skip"

Compute = Callable[[fnv1.RunFunctionRequest], tuple[fnv1.RunFunctionResponse, bool]]


class ResponseCache:
    """Answers repeated requests from a bounded LRU instead of computing them again. Not
    state: the response is a pure function of the request, so a hit returns exactly what
    the computation would (TCP_ACCESS_RESPONSE_CACHE=0 turns it off). A response that also
    depends on the time (a waiting tenant's tickets, judged and renewed by the clock) is not
    kept: the same request may need another answer later.

    Bounded twice: by entries, and by the responses' bytes (TCP_ACCESS_RESPONSE_CACHE_BYTES,
    64 MiB by default). A response carries every earlier step's desired state, so its size
    is the caller's to choose: one above an eighth of the byte budget (at most 1 MiB) is
    never kept, and the oldest entries go until the rest fit."""

    def __init__(self, size: int = ENTRIES, max_bytes: int = BYTES):
        self.size = size
        self.max_bytes = max_bytes
        self.max_response = min(MAX_CACHED_REQUEST, max_bytes // 8)
        self.bytes = 0
        self._entries: collections.OrderedDict[bytes, tuple[fnv1.RunFunctionResponse, int]] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, req, compute: Compute) -> fnv1.RunFunctionResponse:
        return self.answer(req, compute)[0]

    def answer(self, req, compute: Compute) -> tuple[fnv1.RunFunctionResponse, str]:
        """The response, and how the cache took part: HIT, MISS (computed, and kept if it
        may be) or SKIP (computed, never looked up: the cache is off or the request large)."""
        # A pool step's request of thousands of claims is neither repeated often nor cheap to
        # hash and keep: compute it.
        if self.size <= 0 or self.max_bytes <= 0 or req.ByteSize() > MAX_CACHED_REQUEST:
            return compute(req)[0], SKIP
        # The bytes as they came (not re-sorted): a request that serialises differently only
        # misses the cache. A hit returns the stored message itself: it is only serialised.
        key = hashlib.sha256(req.SerializeToString()).digest()
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit[0], HIT
        rsp, cacheable = compute(req)
        cost = rsp.ByteSize() + len(key)
        if not cacheable or cost > self.max_response:
            return rsp, MISS
        self._entries[key] = (rsp, cost)
        self.bytes += cost
        while len(self._entries) > self.size or self.bytes > self.max_bytes:
            _, (_, freed) = self._entries.popitem(last=False)
            self.bytes -= freed
        return rsp, MISS
