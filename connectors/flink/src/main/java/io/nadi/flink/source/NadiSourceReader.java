package io.nadi.flink.source;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.StreamId;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Consumer;
import org.apache.flink.api.connector.source.SourceEvent;
import org.apache.flink.api.connector.source.SourceOutput;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.connector.base.source.reader.RecordEmitter;
import org.apache.flink.connector.base.source.reader.SingleThreadMultiplexSourceReaderBase;

/**
 * The source reader: reads its assigned segments (splits) with {@link NadiSplitReader} and keeps
 * each split's next offset in Flink's checkpointed state. Per-split watermarks come from Flink's
 * {@code SourceReaderBase}: each split has its own watermark output, so an idle or new segment
 * neither stalls nor rushes the reader's watermark (with {@code WatermarkStrategy.withIdleness}
 * for idle ones).
 *
 * <p>When a segment is read to its sealed end (drained), the reader tells the enumerator
 * ({@link SegmentsFinishedEvent}), which hands out successors once all their predecessors are
 * finished. The drained split keeps its watermark until the enumerator releases it
 * ({@link ReleaseSegmentsEvent}) after handing out its successors, whose splits then hold the
 * watermark from their start: it never runs ahead in between. The reader also keeps a
 * <em>finished marker</em> for it in its state and repeats the report after a restore: the
 * enumerator's state is taken before the readers', so a report that reached the enumerator after
 * its snapshot would otherwise be lost with the restore, and the successors never assigned.
 *
 * <p>With writers' watermarks, the split reader adds a watermark marker to a split's records
 * when it passed a writers' watermark W (Nadi's W: no more events with an event time below W);
 * the emitter emits Flink's watermark {@code W - 1} on that split's output (Flink's T: no more
 * records with a timestamp at or below T), and no record.
 */
final class NadiSourceReader<T> extends SingleThreadMultiplexSourceReaderBase<NadiRecord, T, NadiSplit, NadiSplitState> {
    private final Map<String, NadiSplit> finishedMarkers = new LinkedHashMap<>();
    /** Drained splits already reported to the enumerator (not reported again when released). */
    private final Set<String> reported = new HashSet<>();
    /** The split reader's queue, for releases. */
    private final LinkedBlockingQueue<Object> queue;
    /** Writers' watermarks: a reader without splits marks its output idle. */
    private final boolean idleWithoutSplits;

    /** {@code watermarksOf}: the stream whose writers' watermarks to follow, or null for none. */
    NadiSourceReader(String controller, ClientSecurity security, NadiDeserializationSchema<T> deserializer,
            StreamId watermarksOf, SourceReaderContext context) {
        this(controller, security, new Emitter<>(deserializer), new LinkedBlockingQueue<>(), watermarksOf, context);
    }

    private NadiSourceReader(String controller, ClientSecurity security, Emitter<T> emitter,
            LinkedBlockingQueue<Object> queue, StreamId watermarksOf, SourceReaderContext context) {
        super(() -> new NadiSplitReader(new NadiClient(controller, security), queue, watermarksOf), emitter,
                context.getConfiguration(), context);
        this.queue = queue;
        this.idleWithoutSplits = watermarksOf != null;
        emitter.onDrained = this::drained;
    }

    /**
     * With writers' watermarks, a reader holding no split (more readers than segments) marks its
     * output idle, or it would hold the job's watermark at its start for ever. When a split comes
     * (a successor), its watermark output becomes active again; none of its events is behind the
     * watermark the others moved on to: a predecessor passes a writers' watermark only if no
     * event below it was noted in a newer segment of its key range.
     */
    @Override
    public org.apache.flink.core.io.InputStatus pollNext(org.apache.flink.api.connector.source.ReaderOutput<T> output)
            throws Exception {
        org.apache.flink.core.io.InputStatus status = super.pollNext(output);
        if (idleWithoutSplits && getNumberOfCurrentlyAssignedSplits() == 0) {
            output.markIdle();
        }
        return status;
    }

    /** A segment was read to its sealed end: the enumerator may hand out its successors. */
    private void drained(NadiSplitState state) {
        if (reported.add(state.split.splitId())) {
            report(List.of(state.split));
        }
    }

    @Override
    public void handleSourceEvents(SourceEvent event) {
        if (event instanceof ReleaseSegmentsEvent) {
            List<String> ids = new ArrayList<>();
            for (long id : ((ReleaseSegmentsEvent) event).segmentIds) {
                ids.add(Long.toString(id));
            }
            NadiSplitReader.release(queue, ids);
        } else {
            super.handleSourceEvents(event);
        }
    }

    @Override
    public void addSplits(List<NadiSplit> splits) {
        List<NadiSplit> toRead = new ArrayList<>();
        List<NadiSplit> markers = new ArrayList<>();
        for (NadiSplit s : splits) {
            (s.finished ? markers : toRead).add(s);
        }
        if (!markers.isEmpty()) {
            for (NadiSplit m : markers) {
                finishedMarkers.put(m.splitId(), m);
            }
            report(markers);
        }
        if (!toRead.isEmpty()) {
            super.addSplits(toRead);
        }
    }

    @Override
    protected void onSplitFinished(Map<String, NadiSplitState> finished) {
        List<NadiSplit> done = new ArrayList<>();
        for (NadiSplitState s : finished.values()) {
            NadiSplit marker = s.split.asFinished(s.offset);
            finishedMarkers.put(marker.splitId(), marker);
            if (!reported.remove(marker.splitId())) {
                done.add(marker);
            }
        }
        if (!done.isEmpty()) {
            report(done);
        }
    }

    private void report(List<NadiSplit> done) {
        long[] ids = new long[done.size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = done.get(i).segmentId;
        }
        context.sendSourceEventToCoordinator(new SegmentsFinishedEvent(ids));
    }

    @Override
    public List<NadiSplit> snapshotState(long checkpointId) {
        List<NadiSplit> state = new ArrayList<>(super.snapshotState(checkpointId));
        state.addAll(finishedMarkers.values());
        return state;
    }

    @Override
    protected NadiSplitState initializedState(NadiSplit split) {
        return new NadiSplitState(split);
    }

    @Override
    protected NadiSplit toSplitType(String splitId, NadiSplitState state) {
        return state.toSplit();
    }

    /** Deserializes an event and advances its split's offset past it; passes end markers on. */
    private static final class Emitter<T> implements RecordEmitter<NadiRecord, T, NadiSplitState> {
        private final NadiDeserializationSchema<T> deserializer;
        private final OutputCollector<T> collector = new OutputCollector<>();
        Consumer<NadiSplitState> onDrained;

        Emitter(NadiDeserializationSchema<T> deserializer) {
            this.deserializer = deserializer;
        }

        @Override
        public void emitRecord(NadiRecord r, SourceOutput<T> output, NadiSplitState state) throws Exception {
            if (r.kind == NadiRecord.Kind.START) {
                return; // SourceReaderBase made the split's watermark output: nothing else to do
            }
            if (r.kind == NadiRecord.Kind.WATERMARK) {
                output.emitWatermark(new org.apache.flink.api.common.eventtime.Watermark(r.offset - 1));
                return;
            }
            if (r.kind == NadiRecord.Kind.END) {
                state.offset = r.nextOffset;
                onDrained.accept(state);
                return;
            }
            collector.output = output;
            deserializer.deserialize(r.payload, r.segment, r.offset, collector);
            state.offset = r.nextOffset;
        }
    }

    private static final class OutputCollector<T> implements org.apache.flink.util.Collector<T> {
        SourceOutput<T> output;

        @Override
        public void collect(T record) {
            output.collect(record);
        }

        @Override
        public void close() {}
    }
}
