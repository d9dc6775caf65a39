package io.nadi.flink.source;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.internal.ConnectionBuilder;
import java.time.Instant;
import java.util.Objects;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.connector.source.Boundedness;
import org.apache.flink.api.connector.source.Source;
import org.apache.flink.api.connector.source.SourceReader;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.util.UserCodeClassLoader;

/**
 * A Flink source (FLIP-27) of one Nadi stream. Segments are splits; the enumerator follows the
 * stream's splits and merges, handing out a successor only after all its predecessors were
 * read, so events of one key arrive in the order they were written. Each split's offset is in
 * Flink's checkpointed state, so after a failure the job re-reads exactly from its last
 * checkpoint: with an exactly-once sink, the pipeline is exactly-once.
 *
 * <pre>{@code
 * NadiSource<String> source = NadiSource.<String>builder()
 *         .controller("http://127.0.0.1:9090")
 *         .token(System.getenv("NADI_TOKEN")) // optional: with --auth required (read on the stream)
 *         .stream("demo/orders")
 *         .deserializer(new SimpleStringSchema())
 *         .boundedAtTail()            // optional: stop at the stream's tail as of the job's start
 *         .build();
 * env.fromSource(source, WatermarkStrategy.forBoundedOutOfOrderness(Duration.ofSeconds(1)), "orders");
 * }</pre>
 *
 * Event time: pass a {@code WatermarkStrategy} with a timestamp assigner to {@code fromSource};
 * watermarks are generated per split (segment), so an idle or newly started segment neither
 * stalls ({@code withIdleness}) nor rushes the watermark.
 */
public final class NadiSource<T> implements Source<T, NadiSplit, NadiEnumeratorState>, ResultTypeQueryable<T> {
    private static final long serialVersionUID = 1L;

    private final String controller;
    /** The token; shipped to the task managers with the source, never printed. */
    private final ClientSecurity security;
    private final StreamId stream;
    private final NadiDeserializationSchema<T> deserializer;
    private final StartMode startMode;
    /** With {@link StartMode#TIMESTAMP}: ms since the Unix epoch. */
    private final long startMs;
    private final boolean bounded;
    private final boolean writerWatermarks;

    /** Where the enumerator's first splits start. */
    enum StartMode {
        /** The head segments at their start offsets. */
        EARLIEST,
        /** The active segments at their lengths. */
        LATEST,
        /** The stream cut at a time ({@code GetStreamCut} with {@code WHICH_TIME}). */
        TIMESTAMP
    }

    private NadiSource(Builder<T> b) {
        this.controller = b.requireController();
        this.security = b.security();
        this.stream = b.requireStream();
        this.deserializer = Objects.requireNonNull(b.deserializer, "deserializer is required");
        this.startMode = b.startMode;
        this.startMs = b.startMs;
        this.bounded = b.bounded;
        this.writerWatermarks = b.writerWatermarks;
    }

    public static <T> Builder<T> builder() {
        return new Builder<>();
    }

    @Override
    public Boundedness getBoundedness() {
        return bounded ? Boundedness.BOUNDED : Boundedness.CONTINUOUS_UNBOUNDED;
    }

    @Override
    public SourceReader<T, NadiSplit> createReader(SourceReaderContext ctx) throws Exception {
        deserializer.open(new DeserializationSchema.InitializationContext() {
            @Override
            public MetricGroup getMetricGroup() {
                return ctx.metricGroup().addGroup("deserializer");
            }

            @Override
            public UserCodeClassLoader getUserCodeClassLoader() {
                return ctx.getUserCodeClassLoader();
            }
        });
        return new NadiSourceReader<>(controller, security, deserializer, writerWatermarks ? stream : null, ctx);
    }

    @Override
    public SplitEnumerator<NadiSplit, NadiEnumeratorState> createEnumerator(SplitEnumeratorContext<NadiSplit> ctx) {
        return new NadiSplitEnumerator(ctx, controller, security, stream, startMode, startMs, bounded,
                NadiEnumeratorState.empty());
    }

    @Override
    public SplitEnumerator<NadiSplit, NadiEnumeratorState> restoreEnumerator(SplitEnumeratorContext<NadiSplit> ctx,
            NadiEnumeratorState state) {
        return new NadiSplitEnumerator(ctx, controller, security, stream, startMode, startMs, bounded, state);
    }

    @Override
    public String toString() {
        return "NadiSource{controller=" + controller + ", stream=" + stream + ", " + security
                + ", start=" + (startMode == StartMode.TIMESTAMP ? Instant.ofEpochMilli(startMs).toString()
                : startMode.toString().toLowerCase(java.util.Locale.ROOT)) + ", bounded=" + bounded + (writerWatermarks ? ", watermarks=writers" : "") + "}";
    }

    @Override
    public SimpleVersionedSerializer<NadiSplit> getSplitSerializer() {
        return NadiSplitSerializer.INSTANCE;
    }

    @Override
    public SimpleVersionedSerializer<NadiEnumeratorState> getEnumeratorCheckpointSerializer() {
        return NadiEnumeratorState.Serializer.INSTANCE;
    }

    @Override
    public TypeInformation<T> getProducedType() {
        return deserializer.getProducedType();
    }

    /** Builds a {@link NadiSource}. */
    public static final class Builder<T> extends ConnectionBuilder<Builder<T>> {
        private NadiDeserializationSchema<T> deserializer;
        private StartMode startMode = StartMode.EARLIEST;
        private long startMs;
        private boolean bounded;
        private boolean writerWatermarks;

        public Builder<T> deserializer(NadiDeserializationSchema<T> d) {
            this.deserializer = d;
            return this;
        }

        public Builder<T> deserializer(DeserializationSchema<T> d) {
            this.deserializer = NadiDeserializationSchema.of(d);
            return this;
        }

        /** Start at the head of the stream (the default). */
        public Builder<T> fromEarliest() {
            this.startMode = StartMode.EARLIEST;
            return this;
        }

        /** Start at the current end of the active segments: only events written from now on. */
        public Builder<T> fromLatest() {
            this.startMode = StartMode.LATEST;
            return this;
        }

        /**
         * Start at the stream cut at {@code epochMillis}: the job reads exactly the events the
         * store appended at or after that time (its append time, in whole seconds; not an event
         * time), then follows the stream as usual. The cut is taken when the job first starts
         * (after a restore, the checkpointed offsets rule). A time before the stream was created
         * starts at the head; a time ahead of the controller's clock fails the job with
         * {@code TIME_IN_FUTURE}.
         */
        public Builder<T> startFromTimestamp(long epochMillis) {
            if (epochMillis < 0) {
                throw new IllegalArgumentException("start timestamp must be >= 0 ms since the epoch, got " + epochMillis);
            }
            this.startMode = StartMode.TIMESTAMP;
            this.startMs = epochMillis;
            return this;
        }

        /** {@link #startFromTimestamp(long)} with an {@link Instant}. */
        public Builder<T> startAt(Instant time) {
            return startFromTimestamp(time.toEpochMilli());
        }

        /** Bounded: read up to the stream's tail as it is when the job starts, then end. */
        public Builder<T> boundedAtTail() {
            this.bounded = true;
            return this;
        }

        /** Unbounded (the default): follow the tail and the stream's scaling for ever. */
        public Builder<T> unbounded() {
            this.bounded = false;
            return this;
        }

        /**
         * Event time from the stream's writers (docs/protocol.md, "Watermarks"): writers note
         * their time ({@code RoutedWriter.noteTime}, the Rust {@code EventWriter::note_time}, or
         * the sink's {@code noteWatermarks()}), the controller records the stream's watermarks,
         * and each split emits the highest one it has read past as its Flink watermark (minus
         * 1 ms), also while no event arrives, so a writer that goes idle (its idle timeout passes)
         * lets the watermark advance. A split that has passed none holds the watermark back.
         *
         * <p>Pass {@code WatermarkStrategy.<T>noWatermarks().withTimestampAssigner(...)} to
         * {@code fromSource}: the assigner gives records their event time, and no generator's
         * watermark mixes with the writers' (a generator's would run ahead of them). In SQL:
         * {@code 'scan.watermarks' = 'writers'}; the table's {@code WATERMARK FOR col AS col}
         * then only declares the event-time column (its expression is not used).
         */
        public Builder<T> watermarksFromWriters() {
            this.writerWatermarks = true;
            return this;
        }

        public NadiSource<T> build() {
            return new NadiSource<>(this);
        }
    }
}
