"""Events through the unmodified Pravega Python client (`pravega==0.3.8`) against Nadi's Pravega
front end. Run by tests/tests/pravega_data.rs, one mode per run (with `pravega_client_auth_method=Basic` and `pravega_client_auth_token` in
the environment, as an application with auth on):

    python pravega_data.py URI create  SCOPE STREAM SEGMENTS [auto]
    python pravega_data.py URI write   SCOPE STREAM COUNT KEYS PREFIX [FIRST [PAUSE]]  # ACKED n once flushed
    python pravega_data.py URI read    SCOPE STREAM GROUP COUNT OUT [SLOW [READERS]]  # events to OUT
    python pravega_data.py URI txn     SCOPE STREAM                      # commits 100 events, aborts 100
    python pravega_data.py URI bytes   SCOPE STREAM
    python pravega_data.py URI finish  SCOPE STREAM                      # seal, list, delete
    python pravega_data.py URI bench   SCOPE STREAM SECONDS SIZE KEYS SEGMENTS INFLIGHT  # one JSON line

Events are `KEY SEQ PREFIX` text (SEQ counts each key's events from FIRST) with routing key KEY, so whoever reads them can check exactly
once and per-key order. Exits non-zero (an AssertionError or the client's exception) on the
first step that does not behave as on Pravega; prints one line per step.
"""

import asyncio
import os
import sys
import time

import pravega_client as pc


def step(name, got, want):
    print(f"{name}: {got!r}", flush=True)
    assert got == want, f"{name}: got {got!r}, want {want!r}"


def create(m, scope, stream, segments, auto=False):
    m.create_scope(scope)
    if auto:
        policy = pc.StreamScalingPolicy.auto_scaling_policy_by_event_rate(1000, 2, int(segments))
        step("create_stream_with_policy", m.create_stream_with_policy(scope, stream, scaling_policy=policy), True)
    else:
        step("create_stream", m.create_stream(scope, stream, int(segments)), True)


def write(m, scope, stream, count, keys, prefix, first=0, pause=0.0):
    w = m.create_writer(scope, stream, max_inflight_events=1000)
    start = time.time()
    for i in range(count):
        key = f"k{i % keys}"
        w.write_event(f"{key} {first + i // keys} {prefix}", key)
        if pause and i % 500 == 499:
            time.sleep(pause)  # a writer that is still writing when the test cuts it off
    w.flush()
    took = time.time() - start
    print(f"ACKED {count} in {took:.3f} s: {count / took:.0f} events/s", flush=True)


async def read_group(m, scope, stream, group, count, out, slow, readers=2):
    """READERS readers of one group read concurrently until COUNT events were read in all;
    each event goes to OUT as it is handed out (a segment moves between readers only after
    its slice was released, so each key's events stay in order in OUT)."""
    rg = m.create_reader_group(group, scope, stream)
    members = [rg.create_reader(f"r{i}") for i in range(readers)]
    seen = 0
    per_reader = [0] * readers
    done = asyncio.Event()
    with open(out, "w") as f:

        async def member(i, reader):
            nonlocal seen
            while not done.is_set():
                try:
                    slice_ = await asyncio.wait_for(reader.get_segment_slice_async(), 1)
                except asyncio.TimeoutError:
                    continue
                for event in slice_:
                    f.write(event.data().decode() + "\n")
                    seen += 1
                    per_reader[i] += 1
                f.flush()
                reader.release_segment(slice_)
                if slow:
                    print(f"READ {seen}", flush=True)
                    await asyncio.sleep(float(slow))
                if seen >= count:
                    done.set()

        await asyncio.wait_for(asyncio.gather(*(member(i, r) for i, r in enumerate(members))), 180)
    print(f"READ {seen}", flush=True)
    print(f"PER READER {' '.join(map(str, per_reader))}", flush=True)
    # Anything more would be a duplicate: nothing else is written.
    more = []
    for reader in members:
        try:
            extra = await asyncio.wait_for(reader.get_segment_slice_async(), 2)
            more += [e.data().decode() for e in extra]
        except asyncio.TimeoutError:
            pass
    step("events after the last one", more, [])
    for reader in members:
        reader.reader_offline()
    m.delete_reader_group(group, scope)


def txn(m, scope, stream):
    tw = m.create_transaction_writer(scope, stream, 1)
    t = tw.begin_txn()
    for i in range(100):
        t.write_event(f"t{i % 10} {i // 10} committed", f"t{i % 10}")
    t.commit()
    step("committed txn is open", t.is_open(), False)
    t2 = tw.begin_txn()
    for i in range(100):
        t2.write_event(f"t{i % 10} {i // 10} aborted", f"t{i % 10}")
    t2.abort()
    step("aborted txn is open", t2.is_open(), False)
    print("TXNS DONE", flush=True)


def byte_stream(m, scope, stream):
    bs = m.create_byte_stream(scope, stream)
    data = bytes(range(256)) * 40  # 10 KiB
    step("write", bs.write(data), len(data))
    bs.write(b"tail")
    bs.flush()
    step("current_tail_offset", bs.current_tail_offset(), len(data) + 4)
    step("seek 1000", bs.seek(1000, 0), 1000)
    buf = bytearray(500)
    got = bs.readinto(buf)
    assert got > 0
    step("bytes from 1000 match", bytes(buf[:got]) == data[1000 : 1000 + got], True)
    step("seek to the tail", bs.seek(-4, 2), len(data))
    buf = bytearray(4)
    step("the last write", (bs.readinto(buf), bytes(buf)), (4, b"tail"))
    bs.truncate(256)  # drops the data before offset 256
    step("current_head_offset", bs.current_head_offset(), 256)
    bs.seek(256, 0)
    buf = bytearray(256)
    got = bs.readinto(buf)
    step("bytes after truncation match", (got > 0, bytes(buf[:got]) == data[256 : 256 + got]), (True, True))
    bs.seek(0, 0)
    try:
        bs.readinto(bytearray(10))
        truncated_refused = False
    except Exception as e:
        print(f"read before the head: {type(e).__name__}: {e}", flush=True)
        truncated_refused = True
    step("read before the head refused", truncated_refused, True)
    print("BYTES DONE", flush=True)


def finish(m, scope, stream):
    step("list_stream has it", stream in m.list_stream(scope), True)
    w = m.create_writer(scope, stream)
    w.write_event("before seal", "k0")
    w.flush()
    step("seal_stream", m.seal_stream(scope, stream), True)
    try:
        w.write_event("after seal", "k0")
        w.flush()
        sealed_refused = False
    except Exception as e:  # the segment is sealed and has no successor
        print(f"write after seal: {type(e).__name__}: {e}", flush=True)
        sealed_refused = True
    step("write after seal refused", sealed_refused, True)
    step("delete_stream", m.delete_stream(scope, stream), True)
    step("list_stream lacks it", stream in m.list_stream(scope), False)
    print("FINISH DONE", flush=True)


def bench(m, scope, stream, seconds, size, keys, segments, inflight):
    """Writes SIZE-byte events over KEYS routing keys for SECONDS at the client's full speed,
    then flushes; prints one JSON object (bench/pravega.sh)."""
    import json
    import resource

    m.create_scope(scope)
    m.create_stream(scope, stream, segments)
    w = m.create_writer(scope, stream, max_inflight_events=inflight)
    payload = bytes(size)
    names = [f"key-{k}" for k in range(keys)]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.time()
    n = 0
    while time.time() - start < seconds:
        for _ in range(1000):
            w.write_event_bytes(payload, names[n % keys])
            n += 1
    w.flush()
    took = time.time() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps({
        "events": n,
        "seconds": round(took, 3),
        "events_per_sec": round(n / took),
        "mb_per_sec": round(n * size / took / 1e6, 1),
        "client_cpu_us_per_event": round(cpu * 1e6 / n, 3),
    }), flush=True)


def main():
    uri, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    # With a token in the environment (pravega_client_auth_method=Basic), as a Pravega
    # application with auth on.
    m = pc.StreamManager(uri, auth_enabled=bool(os.environ.get("pravega_client_auth_token")))
    if mode == "create":
        create(m, args[0], args[1], args[2], len(args) > 3 and args[3] == "auto")
    elif mode == "write":
        first = int(args[5]) if len(args) > 5 else 0
        pause = float(args[6]) if len(args) > 6 else 0.0
        write(m, args[0], args[1], int(args[2]), int(args[3]), args[4], first, pause)
    elif mode == "read":
        slow = float(args[5]) if len(args) > 5 and float(args[5]) > 0 else None
        readers = int(args[6]) if len(args) > 6 else 2
        asyncio.run(read_group(m, args[0], args[1], args[2], int(args[3]), args[4], slow, readers))
    elif mode == "txn":
        txn(m, args[0], args[1])
    elif mode == "bytes":
        byte_stream(m, args[0], args[1])
    elif mode == "bench":
        bench(m, args[0], args[1], float(args[2]), int(args[3]), int(args[4]), int(args[5]), int(args[6]))
    elif mode == "finish":
        finish(m, args[0], args[1])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
