package io.nadi.flink.client;

import com.google.protobuf.ByteString;
import io.grpc.stub.StreamObserver;
import io.nadi.proto.segment.v1.AppendBatch;
import io.nadi.proto.segment.v1.AppendRequest;
import io.nadi.proto.segment.v1.AppendResponse;
import io.nadi.proto.segment.v1.AppendSetup;
import java.io.ByteArrayOutputStream;
import java.util.List;

/**
 * One append stream to one segment for one writer id ({@code docs/protocol.md}, "Append").
 *
 * <pre>
 *   open:  setup{segment, writer_id} ──► setup_ack{last_event_number}   (numbering continues after it)
 *   send:  batch{last_event_number, event_count, data} ──►               (numbered, pipelined)
 *   await: ◄── ack{last_event_number}: every event up to it is durable (fsync'd)
 * </pre>
 *
 * The store drops events whose number it already holds for this writer id, so re-sending after
 * a lost connection stores nothing twice. After a failure, {@link #failure()} says why; the
 * caller reopens (the setup ack says what is stored) or, on {@code SEALED}, re-routes.
 */
final class SegmentAppender implements AutoCloseable {
    /** Batches are cut at this many bytes of framed events (the store accepts up to 16 MiB). */
    static final int MAX_BATCH_BYTES = 1024 * 1024;
    private static final long SETUP_TIMEOUT_MS = 30_000;

    private final String segment;
    private final StreamObserver<AppendRequest> requests;
    private long setupLast = Long.MIN_VALUE;
    private long acked = -1;
    /**
     * The highest durable segment length an acknowledgement reported: at or past the end of every
     * event of this writer acknowledged so far (a writer's position for {@code NoteWriterTime}).
     */
    private long durableLength;
    private long nextNumber;
    private NadiException failure;
    private boolean completed;

    SegmentAppender(NadiClient client, String endpoint, String segment, String writerId) throws NadiException {
        this.segment = segment;
        this.requests = client.store(endpoint).append(new StreamObserver<AppendResponse>() {
            @Override
            public void onNext(AppendResponse r) {
                synchronized (SegmentAppender.this) {
                    if (r.hasSetupAck()) {
                        setupLast = r.getSetupAck().getLastEventNumber();
                        acked = setupLast;
                        durableLength = Math.max(durableLength, r.getSetupAck().getSegmentLength());
                    } else if (r.hasAck()) {
                        acked = Math.max(acked, r.getAck().getLastEventNumber());
                        durableLength = Math.max(durableLength, r.getAck().getSegmentLength());
                    }
                    SegmentAppender.this.notifyAll();
                }
            }

            @Override
            public void onError(Throwable t) {
                synchronized (SegmentAppender.this) {
                    failure = NadiException.from(t, "append to " + segment);
                    SegmentAppender.this.notifyAll();
                }
            }

            @Override
            public void onCompleted() {
                synchronized (SegmentAppender.this) {
                    completed = true;
                    SegmentAppender.this.notifyAll();
                }
            }
        });
        requests.onNext(AppendRequest.newBuilder()
                .setSetup(AppendSetup.newBuilder().setSegment(segment).setWriterId(writerId)).build());
        synchronized (this) {
            long deadline = System.currentTimeMillis() + SETUP_TIMEOUT_MS;
            while (setupLast == Long.MIN_VALUE && failure == null) {
                waitUntil(deadline, "setup of an append stream to " + segment);
            }
            if (failure != null) {
                throw failure;
            }
            nextNumber = setupLast + 1;
        }
    }

    private void waitUntil(long deadline, String what) throws NadiException {
        long left = deadline - System.currentTimeMillis();
        if (left <= 0) {
            throw new NadiException("UNAVAILABLE", "timed out waiting for " + what);
        }
        try {
            wait(left);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new NadiException("UNAVAILABLE", "interrupted waiting for " + what);
        }
    }

    /** The last event number the store held for this writer when the stream was set up (-1: none). */
    synchronized long storedAtSetup() {
        return setupLast;
    }

    /**
     * A durable length of the segment at or past the end of this writer's acknowledged events
     * (each ack carries the segment's length, which may include other writers' later events).
     */
    synchronized long durableLength() {
        return durableLength;
    }

    /** The number the next event gets. */
    synchronized long nextNumber() {
        return nextNumber;
    }

    synchronized NadiException failure() {
        return failure;
    }

    /** Numbers and sends the payloads in batches; returns the number of the first one. */
    synchronized long send(List<byte[]> payloads) throws NadiException {
        if (failure != null) {
            throw failure;
        }
        long first = nextNumber;
        ByteArrayOutputStream data = new ByteArrayOutputStream();
        int count = 0;
        for (byte[] p : payloads) {
            EventFraming.put(data, p);
            count++;
            if (data.size() >= MAX_BATCH_BYTES) {
                sendBatch(data, count);
                data.reset();
                count = 0;
            }
        }
        if (count > 0) {
            sendBatch(data, count);
        }
        return first;
    }

    private void sendBatch(ByteArrayOutputStream data, int count) {
        nextNumber += count;
        requests.onNext(AppendRequest.newBuilder().setBatch(AppendBatch.newBuilder()
                .setLastEventNumber(nextNumber - 1).setEventCount(count)
                .setData(ByteString.copyFrom(data.toByteArray()))).build());
    }

    /** Waits until every event sent is durable, or throws the stream's failure. */
    synchronized void awaitAcked(long timeoutMs) throws NadiException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (acked < nextNumber - 1) {
            if (failure != null) {
                throw failure;
            }
            if (completed) {
                throw new NadiException("UNAVAILABLE", "append stream to " + segment + " ended early");
            }
            waitUntil(deadline, "acknowledgements from " + segment);
        }
    }

    @Override
    public void close() {
        synchronized (this) {
            if (failure != null || completed) {
                return;
            }
        }
        try {
            requests.onCompleted();
        } catch (RuntimeException e) {
            // the stream is gone already
        }
    }
}
