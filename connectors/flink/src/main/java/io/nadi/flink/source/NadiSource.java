package io.nadi.flink.source;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.internal.ConnectionBuilder;
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
    private final boolean fromStart;
    private final boolean bounded;

    private NadiSource(Builder<T> b) {
        this.controller = b.requireController();
        this.security = b.security();
        this.stream = b.requireStream();
        this.deserializer = Objects.requireNonNull(b.deserializer, "deserializer is required");
        this.fromStart = b.fromStart;
        this.bounded = b.bounded;
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
        return new NadiSourceReader<>(controller, security, deserializer, ctx);
    }

    @Override
    public SplitEnumerator<NadiSplit, NadiEnumeratorState> createEnumerator(SplitEnumeratorContext<NadiSplit> ctx) {
        return new NadiSplitEnumerator(ctx, controller, security, stream, fromStart, bounded,
                NadiEnumeratorState.empty());
    }

    @Override
    public SplitEnumerator<NadiSplit, NadiEnumeratorState> restoreEnumerator(SplitEnumeratorContext<NadiSplit> ctx,
            NadiEnumeratorState state) {
        return new NadiSplitEnumerator(ctx, controller, security, stream, fromStart, bounded, state);
    }

    @Override
    public String toString() {
        return "NadiSource{controller=" + controller + ", stream=" + stream + ", " + security
                + ", bounded=" + bounded + "}";
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
        private boolean fromStart = true;
        private boolean bounded;

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
            this.fromStart = true;
            return this;
        }

        /** Start at the current end of the active segments: only events written from now on. */
        public Builder<T> fromLatest() {
            this.fromStart = false;
            return this;
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

        public NadiSource<T> build() {
            return new NadiSource<>(this);
        }
    }
}
