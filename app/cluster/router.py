"""The engine deployment's request router (Ray Serve's custom request router API). A call that names
a replica (`replica=` keyword: the one holding the run it is about) goes to that replica and waits
for room there. Any other call (a new run) goes to the replica with the fewest ongoing requests, which
for the engine are its queued and running runs."""

from __future__ import annotations

from ray.serve.request_router import FIFOMixin, PendingRequest, RequestRouter, RunningReplica


def pinned_replica(pending: PendingRequest | None) -> str | None:
    """The replica a call names, if any."""
    if pending is None:
        return None
    replica = pending.kwargs.get("replica")
    return replica if isinstance(replica, str) and replica else None


class RunRouter(FIFOMixin, RequestRouter):
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
        return self.least_loaded_first(candidate_replicas)

    def least_loaded_first(self, replicas: list[RunningReplica]) -> list[list[RunningReplica]]:
        """One replica per rank, fewest ongoing requests first (Serve tries the next rank when one is
        full). A replica this router has no recent count for counts as idle, so a burst of new runs
        spreads over every replica instead of piling onto the ones it last heard from; ties go by id,
        so a burst alternates."""
        counts = self.replica_queue_len_cache
        return [[r] for r in sorted(replicas, key=lambda r: (counts.get(r.replica_id) or 0, r.replica_id.unique_id))]
