"""The fault suite: what SPEC's Guarantees promise, shown under load with Jepsen-style figures.

Every test runs against the private RabbitMQ node (``private_rabbit``) and reports sent,
confirmed, received unique, lost, duplicated deliveries, duplicated effects, dead-lettered and
the time to recover (printed, and summed up at the end of the session), then asserts lost = 0,
duplicated effects = 0, the queues drained and the consumer count back to what it was.

1. broker restart under publish and consume load — ``test_broker_restart.py``
2. ``close_all_connections`` with RPC calls in flight — ``test_rpc_connections.py``
3. TCP reset and blackhole through ``TcpProxy`` under load — ``test_tcp_faults.py``
4. kill -9 of a worker process before and after its commit, in a loop — ``test_worker_kill.py``
5. the outbox relay killed between commit and publish: the manager's own test,
   ``tests/integration/test_manager_store.py::
   test_a_change_committed_before_a_crash_is_published_once_by_the_next_relay`` (SIGKILL of a
   real manager process after its commit, SQLite and PostgreSQL), is not duplicated here
6. a poison message: retries then the DLQ with the reason while others flow, and a message
   that kills its worker every time dead-lettered by the delivery limit — ``test_poison.py``
7. the consumer count is asserted after every fault, in each test above.
"""
