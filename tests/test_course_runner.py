"""The course's one notebook runner (``diffcl_lite.course.runner``) and its fix for jupyter/nbclient#312."""
from __future__ import annotations

import asyncio
from queue import Empty

import pytest

from diffcl_lite.course import runner


class MissedWakeups:
    """A kernel channel whose poll misses the message's wake-up until it has been polled ``ready_after`` times."""

    def __init__(self, ready_after: int) -> None:
        self.ready_after = ready_after
        self.timeouts: list[float | None] = []

    async def get_msg(self, timeout: float | None = None) -> dict[str, str]:
        self.timeouts.append(timeout)
        if len(self.timeouts) > self.ready_after:
            return {"msg": "reply"}
        await asyncio.sleep(timeout or 0)
        raise Empty


def test_polling_in_steps_finds_a_waiting_message_and_keeps_the_timeout():
    chan = MissedWakeups(ready_after=2)
    polled = runner.poll_in_steps(chan.get_msg, step=0.01)
    # one 30 s poll would have been one call; here every poll is at most one step long
    assert asyncio.run(polled(timeout=30)) == {"msg": "reply"}
    assert len(chan.timeouts) == 3 and all(t is not None and t <= 0.01 for t in chan.timeouts)
    never = MissedWakeups(ready_after=10**9)
    with pytest.raises(Empty):  # nothing arrives: Empty once the caller's whole timeout has been spent
        asyncio.run(runner.poll_in_steps(never.get_msg, step=0.01)(timeout=0.05))
    assert all(t is not None and t <= 0.01 for t in never.timeouts) and sum(never.timeouts) <= 0.05 + 0.01
    waiting = MissedWakeups(ready_after=4)
    assert asyncio.run(runner.poll_in_steps(waiting.get_msg, step=0.01)(timeout=None)) == {"msg": "reply"}
    assert waiting.timeouts == [0.01] * 5  # timeout=None: polls in steps until a message comes


def test_client_class_wraps_the_channels_on_both_start_paths():
    from nbclient import NotebookClient

    cls = runner.client_class()
    assert issubclass(cls, NotebookClient)
    # nbclient's synchronous start (used by the grader's worker) is bound to the coroutine of the class
    # that defines it: the runner's class must rebind it, or the sync path would skip the fix
    assert cls.start_new_kernel_client is not NotebookClient.start_new_kernel_client
    assert cls.async_start_new_kernel_client is not NotebookClient.async_start_new_kernel_client

    class Base(NotebookClient):
        pass

    assert issubclass(runner.client_class(Base), Base)
