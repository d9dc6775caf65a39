package io.nadi.flink.sink;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.internal.ConnectionBuilder;
import java.io.IOException;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import org.apache.flink.api.connector.sink2.Committer;
import org.apache.flink.api.connector.sink2.CommitterInitContext;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.StatefulSinkWriter;
import org.apache.flink.api.connector.sink2.SupportsCommitter;
import org.apache.flink.api.connector.sink2.SupportsWriterState;
import org.apache.flink.api.connector.sink2.WriterInitContext;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.core.io.SimpleVersionedSerializer;

/**
 * A Flink sink (Sink V2 with a committer) into one Nadi stream.
 *
 * <ul>
 *   <li>{@link DeliveryGuarantee#EXACTLY_ONCE}: one Nadi transaction per subtask per checkpoint.
 *       At the checkpoint the writer flushes it and hands its id over; the committer commits it
 *       once the checkpoint is complete (an already committed transaction is success). After a
 *       restore, transactions of the restored checkpoint are committed and those opened after
 *       it are aborted, so every record is in the stream exactly once. Readers see a
 *       checkpoint's events when it completes. The transaction lease
 *       ({@link Builder#transactionLease}) must outlast the checkpoint interval plus recovery.</li>
 *   <li>{@link DeliveryGuarantee#AT_LEAST_ONCE} (and {@code NONE}): a routed writer, flushed at
 *       every checkpoint; after a failure, events since the last checkpoint are written again.</li>
 * </ul>
 *
 * Records are routed by the key of {@link NadiSerializationSchema#routingKey}: one key, one
 * segment at a time, order kept, also while the stream scales.
 *
 * <p>With {@link Builder#noteWatermarks()} (at-least-once only), each writer notes Flink's
 * watermark as its time on the stream (docs/protocol.md, "Watermarks"), so that jobs reading
 * the stream with {@code NadiSource.Builder.watermarksFromWriters()} get this job's event time.
 */
public final class NadiSink<T> implements Sink<T>, SupportsCommitter<NadiCommittable>,
        SupportsWriterState<T, NadiCommittable> {
    private static final long serialVersionUID = 1L;
    /** Default transaction lease: 10 minutes. */
    public static final Duration DEFAULT_LEASE = Duration.ofMinutes(10);

    private final String controller;
    /** The token; shipped to the task managers with the sink, never printed. */
    private final ClientSecurity security;
    private final StreamId stream;
    private final NadiSerializationSchema<T> schema;
    private final DeliveryGuarantee guarantee;
    private final long leaseMs;
    private final long maxBufferedBytes;
    /** Note the watermark at most this often; -1: never. */
    private final long noteIntervalMs;
    private final long writerIdleTimeoutMs;

    private NadiSink(Builder<T> b) {
        this.controller = b.requireController();
        this.security = b.security();
        this.stream = b.requireStream();
        this.schema = Objects.requireNonNull(b.schema, "serialization schema is required");
        this.guarantee = b.guarantee;
        this.leaseMs = b.lease.toMillis();
        this.maxBufferedBytes = b.maxBufferedBytes;
        if (leaseMs < 100 || leaseMs > 86_400_000L) {
            throw new IllegalArgumentException("transaction lease must be 100 ms ..= 1 day, got " + b.lease);
        }
        this.noteIntervalMs = b.noteInterval == null ? -1 : b.noteInterval.toMillis();
        this.writerIdleTimeoutMs = b.writerIdleTimeout.toMillis();
        if (noteIntervalMs >= 0 && guarantee == DeliveryGuarantee.EXACTLY_ONCE) {
            throw new IllegalArgumentException("noteWatermarks() needs an at-least-once sink: a transaction's events"
                    + " have no position in the stream before the commit, so a writer cannot note a time for them");
        }
    }

    public static <T> Builder<T> builder() {
        return new Builder<>();
    }

    @Override
    public SinkWriter<T> createWriter(WriterInitContext context) throws IOException {
        return restoreWriter(context, List.of());
    }

    @Override
    public StatefulSinkWriter<T, NadiCommittable> restoreWriter(WriterInitContext context,
            Collection<NadiCommittable> openAtCheckpoint) throws IOException {
        try {
            schema.open(context.asSerializationSchemaInitializationContext());
        } catch (Exception e) {
            throw new IOException("cannot open the serialization schema", e);
        }
        return new NadiSinkWriter<>(controller, security, stream, schema, guarantee, leaseMs, maxBufferedBytes,
                noteIntervalMs, writerIdleTimeoutMs, openAtCheckpoint);
    }

    @Override
    public SimpleVersionedSerializer<NadiCommittable> getWriterStateSerializer() {
        return NadiCommittable.Serializer.INSTANCE;
    }

    @Override
    public Committer<NadiCommittable> createCommitter(CommitterInitContext context) {
        return new NadiCommitter(controller, security, leaseMs);
    }

    @Override
    public SimpleVersionedSerializer<NadiCommittable> getCommittableSerializer() {
        return NadiCommittable.Serializer.INSTANCE;
    }

    @Override
    public String toString() {
        return "NadiSink{controller=" + controller + ", stream=" + stream + ", " + security + ", " + guarantee + "}";
    }

    /** Builds a {@link NadiSink}. */
    public static final class Builder<T> extends ConnectionBuilder<Builder<T>> {
        private NadiSerializationSchema<T> schema;
        private DeliveryGuarantee guarantee = DeliveryGuarantee.EXACTLY_ONCE;
        private Duration lease = DEFAULT_LEASE;
        private long maxBufferedBytes = 4L * 1024 * 1024;
        private Duration noteInterval;
        private Duration writerIdleTimeout = Duration.ZERO;

        public Builder<T> serializer(NadiSerializationSchema<T> s) {
            this.schema = s;
            return this;
        }

        /** Exactly-once (the default), at-least-once, or none (same as at-least-once here). */
        public Builder<T> deliveryGuarantee(DeliveryGuarantee g) {
            this.guarantee = g;
            return this;
        }

        /** Lease of each transaction (default 10 min): above checkpoint interval plus recovery time. */
        public Builder<T> transactionLease(Duration d) {
            this.lease = d;
            return this;
        }

        /**
         * Events are sent (made durable; in a transaction still invisible) whenever this many
         * bytes are buffered, and at every checkpoint. Default 4 MiB.
         */
        public Builder<T> maxBufferedBytes(long bytes) {
            this.maxBufferedBytes = Math.max(1, bytes);
            return this;
        }

        /**
         * Each writer notes Flink's watermark as its time on the stream: on a watermark T (at
         * most every 200 ms) and at checkpoints it flushes and notes {@code T + 1} (every later
         * record has a timestamp above T). Readers with {@code watermarksFromWriters()} then get
         * the stream's watermark: the minimum over its noting writers. At-least-once only. The
         * records' event time in the payload must be their Flink timestamp, and late records
         * (behind the watermark) break the promise: drop them before the sink.
         */
        public Builder<T> noteWatermarks() {
            return noteWatermarks(Duration.ofMillis(200));
        }

        /** {@link #noteWatermarks()} at most every {@code minInterval}. */
        public Builder<T> noteWatermarks(Duration minInterval) {
            this.noteInterval = minInterval;
            return this;
        }

        /**
         * With {@link #noteWatermarks()}: how long after a writer's last note it stops holding the
         * stream's watermark back (while Flink's watermark does not move). Default (zero): the
         * controller's, 10 s.
         */
        public Builder<T> writerIdleTimeout(Duration timeout) {
            this.writerIdleTimeout = timeout;
            return this;
        }

        public NadiSink<T> build() {
            return new NadiSink<>(this);
        }
    }
}
