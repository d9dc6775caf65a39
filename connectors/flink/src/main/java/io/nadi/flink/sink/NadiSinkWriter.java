package io.nadi.flink.sink;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import io.nadi.proto.controller.v1.TxnInfo;
import java.io.IOException;
import java.util.Collection;
import java.util.List;
import org.apache.flink.api.connector.sink2.CommittingSinkWriter;
import org.apache.flink.api.connector.sink2.StatefulSinkWriter;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The sink's writer, one per subtask.
 *
 * <pre>
 * exactly-once:  write ─► current transaction (routed by key; flushed when its buffer is full)
 *   checkpoint:  prepareCommit: flush, hand the transaction id to the committer (if it has events)
 *                snapshotState: begin the next transaction now and record its id in the state
 *   restore:     every transaction id in the restored state was open after that checkpoint:
 *                its events will be written again, so it is aborted
 *   close:       the current transaction (never handed over) is aborted
 * at-least-once: write ─► routed writer; flush(at every checkpoint) makes every event durable
 *   noteWatermarks: watermark T ─► (at most every interval, and at checkpoints) flush, note T + 1
 * </pre>
 *
 * The lease of every transaction is pinged while it is open; after it is handed over, the lease
 * must outlast checkpoint completion plus any recovery until the committer commits it.
 */
final class NadiSinkWriter<T> implements CommittingSinkWriter<T, NadiCommittable>,
        StatefulSinkWriter<T, NadiCommittable> {
    private static final Logger LOG = LoggerFactory.getLogger(NadiSinkWriter.class);
    private final NadiClient client;
    private final StreamId stream;
    private final NadiSerializationSchema<T> schema;
    private final DeliveryGuarantee guarantee;
    private final long leaseMs;
    /** Flush the buffered events once they reach this many bytes. */
    private final long maxBufferedBytes;
    /** At-least-once / none: the stream writer. */
    private final RoutedWriter streamWriter;
    /** Exactly-once: the open transaction and its writer (null between transactions). */
    private TxnInfo txn;
    private RoutedWriter txnWriter;
    private long lastPing;
    /** Note the watermark at most this often; -1: never. */
    private final long noteIntervalMs;
    /** The latest Flink watermark seen; Long.MIN_VALUE: none. */
    private long watermark = Long.MIN_VALUE;
    private long lastNoteAt;

    /** A writer that does not note watermarks. */
    NadiSinkWriter(String controller, ClientSecurity security, StreamId stream, NadiSerializationSchema<T> schema,
            DeliveryGuarantee guarantee, long leaseMs, long maxBufferedBytes,
            Collection<NadiCommittable> openAtCheckpoint) throws IOException {
        this(controller, security, stream, schema, guarantee, leaseMs, maxBufferedBytes, -1, 0, openAtCheckpoint);
    }

    NadiSinkWriter(String controller, ClientSecurity security, StreamId stream, NadiSerializationSchema<T> schema,
            DeliveryGuarantee guarantee, long leaseMs, long maxBufferedBytes, long noteIntervalMs,
            long writerIdleTimeoutMs, Collection<NadiCommittable> openAtCheckpoint) throws IOException {
        this.client = new NadiClient(controller, security);
        this.stream = stream;
        this.schema = schema;
        this.guarantee = guarantee;
        this.leaseMs = leaseMs;
        this.maxBufferedBytes = maxBufferedBytes;
        this.noteIntervalMs = noteIntervalMs;
        try {
            client.getStream(stream.scope(), stream.stream()); // fails early and clearly if it does not exist
            for (NadiCommittable open : openAtCheckpoint) {
                abortAfterRestore(open);
            }
            this.streamWriter = guarantee == DeliveryGuarantee.EXACTLY_ONCE ? null : RoutedWriter.forStream(client, stream);
            if (streamWriter != null) {
                streamWriter.idleTimeout(java.time.Duration.ofMillis(writerIdleTimeoutMs));
            }
        } catch (IOException | RuntimeException e) {
            client.close();
            throw e;
        }
    }

    private void abortAfterRestore(NadiCommittable open) throws NadiException {
        try {
            client.abortTxn(open.txnId);
            LOG.info("aborted {}: it was open after the restored checkpoint", open);
        } catch (NadiException e) {
            if (e.reason().equals("TXN_NOT_FOUND")) {
                return; // long gone
            }
            if (e.reason().equals("TXN_NOT_OPEN")) {
                // Committed: only a transaction handed over at a completed checkpoint is committed,
                // and that one is never in the state as open. Report it rather than hide it.
                LOG.warn("{} was open at the restored checkpoint but is committed", open);
                return;
            }
            throw e;
        }
    }

    @Override
    public void write(T element, Context context) throws IOException {
        String key = schema.routingKey(element);
        byte[] payload = schema.serialize(element);
        RoutedWriter w;
        if (guarantee == DeliveryGuarantee.EXACTLY_ONCE) {
            w = currentTxn();
            keepAlive();
        } else {
            w = streamWriter;
        }
        w.write(key, payload);
        if (w.bufferedBytes() >= maxBufferedBytes) {
            w.flush();
        }
    }

    private RoutedWriter currentTxn() throws NadiException {
        if (txn == null) {
            txn = client.beginTxn(stream.scope(), stream.stream(), leaseMs);
            txnWriter = RoutedWriter.forTransaction(client, txn);
            lastPing = System.currentTimeMillis();
        }
        return txnWriter;
    }

    /** Pings the open transaction every third of its lease. */
    private void keepAlive() throws NadiException {
        long now = System.currentTimeMillis();
        if (txn != null && now - lastPing > leaseMs / 3) {
            client.pingTxn(txn.getTxnId(), leaseMs);
            lastPing = now;
        }
    }

    @Override
    public void flush(boolean endOfInput) throws IOException {
        if (streamWriter != null) {
            streamWriter.flush();
            noteWatermark(true);
        }
    }

    @Override
    public void writeWatermark(org.apache.flink.api.common.eventtime.Watermark wm) throws IOException {
        if (wm.getTimestamp() == Long.MAX_VALUE) {
            return; // end of input: close() says the writer is closed
        }
        watermark = Math.max(watermark, wm.getTimestamp());
        noteWatermark(false);
    }

    /**
     * Notes {@code watermark + 1} if it rose since the last note and (unless {@code now}) the
     * interval has passed. Every record written after Flink's watermark T has a timestamp above T.
     */
    private void noteWatermark(boolean now) throws NadiException {
        if (noteIntervalMs < 0 || watermark == Long.MIN_VALUE || watermark + 1 <= streamWriter.notedTime()
                || watermark < 0) {
            return;
        }
        long t = System.currentTimeMillis();
        if (!now && t - lastNoteAt < noteIntervalMs) {
            return;
        }
        streamWriter.noteTime(watermark + 1);
        lastNoteAt = t;
    }

    @Override
    public Collection<NadiCommittable> prepareCommit() throws IOException {
        if (txn == null) {
            return List.of();
        }
        if (txnWriter.written() == 0) {
            keepAlive(); // an empty transaction stays open for the next checkpoint
            return List.of();
        }
        txnWriter.flush();
        txnWriter.close();
        NadiCommittable c = new NadiCommittable(txn.getTxnId(), stream.toString());
        txn = null;
        txnWriter = null;
        return List.of(c);
    }

    @Override
    public List<NadiCommittable> snapshotState(long checkpointId) throws IOException {
        if (guarantee != DeliveryGuarantee.EXACTLY_ONCE) {
            return List.of();
        }
        currentTxn();
        return List.of(new NadiCommittable(txn.getTxnId(), stream.toString()));
    }

    @Override
    public void close() {
        try {
            if (txn != null) {
                txnWriter.close();
                client.abortTxn(txn.getTxnId());
            }
        } catch (NadiException e) {
            LOG.warn("could not abort transaction {} on close (its lease will end it): {}", txn.getTxnId(),
                    e.getMessage());
        } finally {
            if (streamWriter != null) {
                streamWriter.close();
            }
            client.close();
        }
    }
}
