"""The engine deployment's request router (Ray Serve's custom request router API). A call that names
a replica (`replica=` keyword: the one holding the run it is about) goes to that replica and waits
for room there. Any other call (a new run) goes to the replica with the fewest runs this router has
placed there and not yet seen finish; for the engine those are its queued and running runs, since
every run is one streaming call that lasts as long as the run."""

from __future__ import annotations

from collections import Counter

from ray.serve.request_router import FIFOMixin, PendingRequest, ReplicaID, RequestRouter, RunningReplica


def pinned_replica(pending: PendingRequest | None) -> str | None:
    """The replica a call names, if any."""
    if pending is None:
        return None
    replica = pending.kwargs.get("replica")
    return replica if isinstance(replica, str) and replica else None


class RunRouter(FIFOMixin, RequestRouter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._placed: dict[str, str] = {}  # request id -> replica, for the unpinned calls still going
        self._load: Counter[str] = Counter()  # replica -> unpinned calls placed there still going

    def initialize_state(self, **kwargs) -> None:
        pass

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        target = pinned_replica(pending_request)
        if target is not None:
            pinned = [r for r in candidate_replicas if r.replica_id.unique_id == target]
            if pinned:
                return [pinned]
            # The replica is gone: the ingress answers `replica_lost` itself once it has seen that; until
            # then any replica answers, with `not_found`, as for a run it does not hold.
        ranks = self.least_loaded_first(candidate_replicas)
        if ranks and pending_request is not None:
            # Counted now, not when Serve reports the send: a burst of new runs is routed concurrently,
            # and each must see the ones before it.
            self._place(pending_request.metadata.internal_request_id, ranks[0][0].replica_id.unique_id)
        return ranks

    def least_loaded_first(self, replicas: list[RunningReplica]) -> list[list[RunningReplica]]:
        """One replica per rank, least loaded first (Serve tries the next rank when one is full): the runs
        this router placed there, then the ongoing requests Serve last counted; ties go by id."""
        counts = self.replica_queue_len_cache

        def load(r: RunningReplica) -> tuple[int, int, str]:
            return self._load[r.replica_id.unique_id], counts.get(r.replica_id) or 0, r.replica_id.unique_id

        return [[r] for r in sorted(replicas, key=load)]

    def _place(self, request_id: str, replica: str) -> None:
        self._forget(request_id)  # a request routed again (its first choice was full) counts once
        self._placed[request_id] = replica
        self._load[replica] += 1

    def _forget(self, request_id: str) -> None:
        replica = self._placed.pop(request_id, None)
        if replica is not None:
            self._load[replica] -= 1
            if self._load[replica] <= 0:
                del self._load[replica]

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        self._forget(internal_request_id)
