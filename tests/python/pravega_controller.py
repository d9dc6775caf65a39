"""Controller-only operations of the unmodified Pravega Python client (`pravega==0.3.8`) against
Nadi's Pravega front end. Run by tests/tests/pravega_controller.rs:

    python pravega_controller.py tcp://HOST:PORT SCOPE

Prints one line per step; exits non-zero (an AssertionError or the client's exception) on the
first step that does not answer as a Pravega controller would.
"""

import sys

import pravega_client as pc


def step(name, got, want):
    print(f"{name}: {got!r}", flush=True)
    assert got == want, f"{name}: got {got!r}, want {want!r}"


def main():
    uri, scope = sys.argv[1], sys.argv[2]
    m = pc.StreamManager(uri)

    step("create_scope", m.create_scope(scope), True)
    step("create_scope again", m.create_scope(scope), False)
    step("list_scope has it", scope in m.list_scope(), True)

    step("create_stream fixed", m.create_stream(scope, "fixed", 3), True)
    step("create_stream fixed again", m.create_stream(scope, "fixed", 3), False)
    by_events = pc.StreamScalingPolicy.auto_scaling_policy_by_event_rate(100, 2, 2)
    step(
        "create_stream_with_policy by events",
        m.create_stream_with_policy(scope, "by-events", scaling_policy=by_events,
                                    retention_policy=pc.StreamRetentionPolicy.by_time(3_600_000)),
        True,
    )
    by_data = pc.StreamScalingPolicy.auto_scaling_policy_by_data_rate(1024, 3, 1)
    step(
        "create_stream_with_policy by data",
        m.create_stream_with_policy(scope, "by-data", scaling_policy=by_data,
                                    retention_policy=pc.StreamRetentionPolicy.by_size(1 << 30)),
        True,
    )
    step("list_stream", sorted(m.list_stream(scope)), ["by-data", "by-events", "fixed"])
    step("get_stream_tags", m.get_stream_tags(scope, "fixed"), None)
    step(
        "update_stream_with_policy",
        m.update_stream_with_policy(scope, "by-events", scaling_policy=pc.StreamScalingPolicy.fixed_scaling_policy(2),
                                    retention_policy=pc.StreamRetentionPolicy.none(), tags=None),
        True,
    )

    # Transactions' bookkeeping is the controller's: begin, commit and abort without events.
    tw = m.create_transaction_writer(scope, "fixed", 7)
    t = tw.begin_txn()
    txn_id = t.get_txn_id()
    step("txn id's epoch (top 32 bits)", txn_id >> 96, 0)
    step("txn is open", t.is_open(), True)
    t.commit()
    step("txn after commit is open", t.is_open(), False)
    t2 = tw.begin_txn()
    t2.abort()
    step("txn after abort is open", t2.is_open(), False)

    step("seal_stream", m.seal_stream(scope, "fixed"), True)
    step("delete_stream", m.delete_stream(scope, "fixed"), True)
    step("list_stream after delete", sorted(m.list_stream(scope)), ["by-data", "by-events"])
    print("READY-FOR-NADI-CHECK", flush=True)
    # The Rust test checks Nadi's own view now and tells us to go on.
    sys.stdin.readline()

    for s in ["by-data", "by-events"]:
        step(f"seal_stream {s}", m.seal_stream(scope, s), True)
        step(f"delete_stream {s}", m.delete_stream(scope, s), True)
    step("delete_scope", m.delete_scope(scope), True)
    step("delete_scope again", m.delete_scope(scope), False)
    step("list_scope lacks it", scope in m.list_scope(), False)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
