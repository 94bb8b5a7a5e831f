"""Callback tasks on both stores: one per number and queue while open, attempts counted,
closed by the callback's outcome or by the caller ringing again; none for do-not-call."""

from __future__ import annotations

from crm_core.callbacks import CallbackBook
from crm_core.testing import empty_store

NUMBER = "+442071234567"


async def test_repeated_abandons_are_one_task_per_number_and_queue(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        ada = await store.upsert_customer(name="Ada Byron", phones=[NUMBER])
        book = CallbackBook(store.engine)
        first = await book.abandoned(queue="tier1", e164=NUMBER, customer_id=ada.customer_id,
                                     call_id="c1", wait_s=40.0, at=1000.0)  # fmt: skip
        again = await book.abandoned(queue="tier1", e164=NUMBER, customer_id=ada.customer_id,
                                     call_id="c2", wait_s=75.0, at=1200.0)  # fmt: skip
        same = await book.abandoned(queue="tier1", e164=NUMBER, customer_id=ada.customer_id,
                                    call_id="c2", wait_s=75.0, at=1200.0)  # fmt: skip
        other = await book.abandoned(queue="tier2", e164=NUMBER, customer_id=None,
                                     call_id="c3", wait_s=5.0, at=1300.0)  # fmt: skip
        assert first is not None and again is not None and same is not None and other is not None
        assert again.task_id == first.task_id == same.task_id != other.task_id
        assert (same.attempts, same.wait_s, same.last_call_id) == (2, 75.0, "c2")
        assert same.customer_name == "Ada Byron"
        assert [t.task_id for t in await book.for_queues(["tier1"])] == [first.task_id]
        assert len(await book.for_queues(None)) == 2
    finally:
        await store.close()


async def test_a_callback_records_who_dialled_and_the_outcome_then_closes(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        book = CallbackBook(store.engine)
        task = await book.abandoned(queue="tier1", e164=NUMBER, customer_id=None,
                                    call_id="c1", wait_s=40.0, at=1000.0)  # fmt: skip
        assert task is not None
        dialling = await book.start_dialling(task.task_id, agent="Agent 1001", at=1100.0)
        assert (dialling.status, dialling.dialled_by) == ("dialling", "Agent 1001")
        # Not this agent's call out to the number: the task is left alone.
        assert await book.outbound_ended(NUMBER, agents=["Agent 1002"], outcome="busy",
                                         at=1110.0) == []  # fmt: skip
        done = await book.outbound_ended(NUMBER, agents=["Agent 1001"], outcome="no_answer",
                                         at=1120.0)  # fmt: skip
        assert done == [task.task_id]
        closed = await book.get(task.task_id)
        assert closed is not None
        assert (closed.status, closed.outcome, closed.dialled_by) == (
            "closed", "no_answer", "Agent 1001")  # fmt: skip
        assert await book.for_queues(["tier1"]) == []
        # The number gives up again: a new task, the closed one is kept as it was.
        fresh = await book.abandoned(queue="tier1", e164=NUMBER, customer_id=None,
                                     call_id="c9", wait_s=3.0, at=1300.0)  # fmt: skip
        assert fresh is not None and fresh.task_id != task.task_id and fresh.attempts == 1
    finally:
        await store.close()


async def test_a_repeat_call_closes_the_task_and_do_not_call_gets_none(db_url: str) -> None:
    store = await empty_store(db_url)
    try:
        await store.upsert_customer(name="Nell Quiet", phones=["+441632960999"],
                                    flags=["do_not_call"])  # fmt: skip
        book = CallbackBook(store.engine)
        assert await book.abandoned(queue="tier1", e164="+441632960999", customer_id=None,
                                    call_id="d1", wait_s=40.0, at=1000.0) is None  # fmt: skip
        assert await book.for_queues(None) == []
        task = await book.abandoned(queue="tier1", e164=NUMBER, customer_id=None,
                                    call_id="c1", wait_s=40.0, at=1000.0)  # fmt: skip
        assert task is not None
        assert await book.called_again(NUMBER, call_id="c2", at=1500.0) == [task.task_id]
        closed = await book.get(task.task_id)
        assert closed is not None
        assert (closed.status, closed.closed_reason, closed.closed_at) == (
            "closed", "called again", 1500.0)  # fmt: skip
    finally:
        await store.close()
