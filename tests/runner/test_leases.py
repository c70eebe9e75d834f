"""The chunk lease protocol against moto S3 and local files: one winner per race, expired
leases taken over, live and done ones not, a stale holder refused."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from llmbatch.api.layout import OutputLayout
from llmbatch.api.plan import ChunkLease
from llmbatch.runner.leases import Busy, Claimed, Done, LeaseKeeper, LeaseLost, Leases
from llmbatch.storage import ObjectStore, StorageSettings, get_store
from llmbatch.storage.local import LocalStore


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["s3", "local"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ObjectStore, OutputLayout]:
    if request.param == "s3":
        settings: StorageSettings = request.getfixturevalue("s3_settings")
        bucket: str = request.getfixturevalue("s3_bucket")
        return get_store("s3://x/y", settings), OutputLayout(f"s3://{bucket}/out/")
    return LocalStore(), OutputLayout(f"file://{tmp_path}/out/")


def _lease(store: ObjectStore, layout: OutputLayout, chunk: int) -> ChunkLease:
    return ChunkLease.model_validate_json(store.read_bytes(layout.lease(chunk)))


def test_two_shards_racing_for_one_chunk_exactly_one_wins(
    place: tuple[ObjectStore, OutputLayout],
) -> None:
    store, layout = place
    for chunk in range(5):
        barrier = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def race(
            holder: str,
            chunk: int = chunk,
            barrier: threading.Barrier = barrier,
            outcomes: dict[str, object] = outcomes,
        ) -> None:
            leases = Leases(store, layout, holder, seconds=60)
            barrier.wait()
            outcomes[holder] = leases.claim(chunk)

        threads = [threading.Thread(target=race, args=(h,)) for h in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [h for h, o in outcomes.items() if isinstance(o, Claimed)]
        assert len(winners) == 1, outcomes
        loser = "b" if winners == ["a"] else "a"
        assert isinstance(outcomes[loser], Busy)
        assert _lease(store, layout, chunk).holder == winners[0]


def test_expired_lease_is_taken_over_a_live_one_is_not(
    place: tuple[ObjectStore, OutputLayout],
) -> None:
    store, layout = place
    clock = Clock()
    first = Leases(store, layout, "first", seconds=60, clock=clock)
    second = Leases(store, layout, "second", seconds=60, clock=clock)
    claimed = first.claim(3)
    assert isinstance(claimed, Claimed) and not claimed.takeover
    clock.now += 59
    busy = second.claim(3)
    assert isinstance(busy, Busy) and busy.holder == "first"
    assert busy.expires_at == pytest.approx(clock.now + 1, abs=0.01)
    clock.now += 2
    taken = second.claim(3)
    assert isinstance(taken, Claimed) and taken.takeover
    lease = _lease(store, layout, 3)
    assert (lease.holder, lease.takeovers, lease.state) == ("second", 1, "held")
    # The stalled first holder wakes up: its renew and its complete are refused.
    with pytest.raises(LeaseLost):
        first.renew(claimed.held)
    with pytest.raises(LeaseLost):
        first.complete(claimed.held)
    assert _lease(store, layout, 3).holder == "second"


def test_renewed_lease_stays_and_a_done_lease_is_never_taken_over(
    place: tuple[ObjectStore, OutputLayout],
) -> None:
    store, layout = place
    clock = Clock()
    owner = Leases(store, layout, "owner", seconds=10, clock=clock)
    other = Leases(store, layout, "other", seconds=10, clock=clock)
    claimed = owner.claim(0)
    assert isinstance(claimed, Claimed)
    held = claimed.held
    for _ in range(3):
        clock.now += 8
        held = owner.renew(held)
        assert isinstance(other.claim(0), Busy)
    owner.complete(held)
    clock.now += 10_000
    outcome = other.claim(0)
    assert isinstance(outcome, Done) and outcome.holder == "owner"
    assert _lease(store, layout, 0).state == "done"


def test_a_released_lease_is_free_at_once(place: tuple[ObjectStore, OutputLayout]) -> None:
    store, layout = place
    clock = Clock()
    owner = Leases(store, layout, "owner", seconds=60, clock=clock)
    claimed = owner.claim(1)
    assert isinstance(claimed, Claimed)
    owner.release(claimed.held)
    clock.now += 0.01
    assert isinstance(Leases(store, layout, "next", clock=clock).claim(1), Claimed)


def test_keeper_renews_on_a_timer_and_reports_loss(
    place: tuple[ObjectStore, OutputLayout],
) -> None:
    store, layout = place
    keeper = LeaseKeeper(Leases(store, layout, "keeper", seconds=1.0), renew_seconds=0.2)
    try:
        assert isinstance(keeper.claim(7), Claimed)
        time.sleep(1.5)  # longer than the lease: only the renewals keep it
        assert isinstance(Leases(store, layout, "thief").claim(7), Busy)
        # Someone overwrites the lease (as a takeover after a stall would): loss detected.
        store.write_bytes(
            layout.lease(7), ChunkLease(chunk=7, holder="thief").to_json(), "application/json"
        )
        assert not keeper.renew_now(7)
        assert keeper.lost(7)
        assert not keeper.complete(7)
    finally:
        keeper.close()
