"""The response cache: a settled tenant's reconciles send the same request every time."""

import collections
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crossplane.function.proto.v1 import run_function_pb2 as fnv1

ENTRIES = int(os.environ.get("TCP_ACCESS_RESPONSE_CACHE", "4096"))
BYTES = int(os.environ.get("TCP_ACCESS_RESPONSE_CACHE_BYTES", str(64 << 20)))
MAX_CACHED_REQUEST = 1 << 20
HIT, MISS, SKIP = "hit", "miss", "skip"

# The response, whether it may be kept, and a note about it kept with it (the labels the
# shell counts it under): a hit must not pay to read it out of the response again.
Compute = Callable[[fnv1.RunFunctionRequest], tuple[fnv1.RunFunctionResponse, bool, Any]]


@dataclass(frozen=True)
class Answer:
    response: fnv1.RunFunctionResponse
    note: Any  # what compute said about the response
    cache: str  # HIT, MISS (computed, and kept if it may be) or SKIP (computed, not looked up)
    request_bytes: int


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
        self._entries: collections.OrderedDict[bytes, tuple[fnv1.RunFunctionResponse, int, Any]] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, req, compute: Compute) -> fnv1.RunFunctionResponse:
        return self.answer(req, compute).response

    def answer(self, req, compute: Compute) -> Answer:
        if self.size <= 0 or self.max_bytes <= 0:
            rsp, _, note = compute(req)
            return Answer(rsp, note, SKIP, req.ByteSize())
        size = req.ByteSize()
        if size > MAX_CACHED_REQUEST:
            # A pool step's request of thousands of claims is neither repeated often nor
            # cheap to serialise, hash and keep: compute it.
            rsp, _, note = compute(req)
            return Answer(rsp, note, SKIP, size)
        # The bytes as they came (not re-sorted): a request that serialises differently only
        # misses the cache. A hit returns the stored message itself: it is only serialised.
        key = hashlib.sha256(req.SerializeToString()).digest()
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return Answer(hit[0], hit[2], HIT, size)
        rsp, cacheable, note = compute(req)
        cost = rsp.ByteSize() + len(key)
        if not cacheable or cost > self.max_response:
            return Answer(rsp, note, MISS, size)
        self._entries[key] = (rsp, cost, note)
        self.bytes += cost
        while len(self._entries) > self.size or self.bytes > self.max_bytes:
            _, (_, freed, _) = self._entries.popitem(last=False)
            self.bytes -= freed
        return Answer(rsp, note, MISS, size)
