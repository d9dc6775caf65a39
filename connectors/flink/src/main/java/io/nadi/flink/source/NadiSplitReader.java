package io.nadi.flink.source;

import com.google.protobuf.ByteString;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.nadi.flink.client.EventFraming;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.SegmentReads;
import io.nadi.flink.client.StreamId;
import io.nadi.proto.controller.v1.EpochInfo;
import io.nadi.proto.controller.v1.GetWatermarksResponse;
import io.nadi.proto.controller.v1.Segment;
import io.nadi.proto.segment.v1.ReadRequest;
import io.nadi.proto.segment.v1.ReadResponse;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.flink.connector.base.source.reader.RecordsBySplits;
import org.apache.flink.connector.base.source.reader.RecordsWithSplitIds;
import org.apache.flink.connector.base.source.reader.splitreader.SplitReader;
import org.apache.flink.connector.base.source.reader.splitreader.SplitsAddition;
import org.apache.flink.connector.base.source.reader.splitreader.SplitsChange;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads the assigned segments, one server-streaming {@code Read} per segment, multiplexed into
 * one fetch loop.
 *
 * <pre>
 *   segment A: Read(offset, follow) ──► message ─┐   flow control: one message per segment is
 *   segment B: Read(offset, follow) ──► message ─┼─► queue ─► fetch(): decode whole events,
 *   ...                                          ┘   records per split; request the next message
 * </pre>
 *
 * A segment read to the stop cut's offset (bounded mode) is finished. A segment the store says is
 * sealed and read to its end ({@code end_of_segment}) is <em>drained</em> instead: the reader
 * gets an end marker record (payload {@code null}) and reports it to the enumerator, but the split
 * stays open, holding its watermark, until the enumerator has handed out its successors and
 * {@linkplain #release releases} it. So the watermark cannot run ahead in the gap between a
 * segment's end and its successors' start. Reads follow the tail (no polling): the store
 * pushes new events as they become durable. A lost connection is reopened from the next unread
 * offset a few times before the fetch fails (and Flink restarts from the last checkpoint).
 *
 * <p>With writers' watermarks ({@code watermarksFromWriters()}), a poller thread asks the
 * controller for the stream's new watermarks every {@link #WATERMARK_POLL_MS} (only those above
 * the highest it has) and, when a split's key range is not known yet, for the stream's history;
 * both arrive through the queue. Every fetch (at least every 200 ms, records or not) then
 * checks each split that moved or saw new watermarks against {@link WriterWatermarks}'s rule and
 * adds a {@link NadiRecord.Kind#WATERMARK} marker after the split's events when its watermark
 * rose: the emitter turns it into the split's Flink watermark without emitting a record, so an
 * idle writer's timeout advances the job's watermark even when no event arrives.
 */
final class NadiSplitReader implements SplitReader<NadiRecord, NadiSplit> {
    private static final Logger LOG = LoggerFactory.getLogger(NadiSplitReader.class);
    /** How often the stream's writers' watermarks are polled. */
    static final long WATERMARK_POLL_MS = 200;
    private static final int MAX_BYTES_PER_MESSAGE = 256 * 1024;
    private static final int MAX_REOPENS = 5;
    private static final Object WAKE = new Object();

    /** Drained splits the enumerator released: finish them now. */
    private static final class Release {
        final List<String> splitIds;

        Release(List<String> splitIds) {
            this.splitIds = splitIds;
        }
    }

    /** Watermarks the poller fetched (oldest first). */
    private static final class Polled {
        final GetWatermarksResponse response;

        Polled(GetWatermarksResponse response) {
            this.response = response;
        }
    }

    /** Key ranges of the stream's segments, from its history: id → {low, high}. */
    private static final class Ranges {
        final Map<Long, double[]> ranges;

        Ranges(Map<Long, double[]> ranges) {
            this.ranges = ranges;
        }
    }

    /** The poller failed for good (e.g. a server without watermarks): the fetch fails with it. */
    private static final class PollFailure {
        final NadiException error;

        PollFailure(NadiException error) {
            this.error = error;
        }
    }

    /** A split's place for the watermark rule. */
    private static final class Tracked {
        final long segmentId;
        final String segment;
        /** Just past the last event added to the output. */
        long position;
        /** The highest watermark passed (and emitted); -1: none. */
        long watermark = -1;

        Tracked(long segmentId, String segment, long position) {
            this.segmentId = segmentId;
            this.segment = segment;
            this.position = position;
        }
    }

    /** One open read of a segment. */
    private final class Read implements ClientResponseObserver<ReadRequest, ReadResponse> {
        final NadiSplit split;
        long next;
        int reopens;
        volatile ClientCallStreamObserver<ReadRequest> call;

        Read(NadiSplit split, long next) {
            this.split = split;
            this.next = next;
        }

        @Override
        public void beforeStart(ClientCallStreamObserver<ReadRequest> c) {
            call = c;
            c.disableAutoRequestWithInitial(1);
        }

        @Override
        public void onNext(ReadResponse r) {
            queue.add(new Item(this, r, null));
        }

        @Override
        public void onError(Throwable t) {
            queue.add(new Item(this, null, t));
        }

        @Override
        public void onCompleted() {
            queue.add(new Item(this, null, null));
        }
    }

    /** A message, a failure, or (both null) the end of one read. */
    private static final class Item {
        final Read read;
        final ReadResponse response;
        final Throwable error;

        Item(Read read, ReadResponse response, Throwable error) {
            this.read = read;
            this.response = response;
            this.error = error;
        }
    }

    private final NadiClient client;
    /** Read responses, wake-ups and releases; shared with the source reader (see {@link #release}). */
    private final LinkedBlockingQueue<Object> queue;
    private final Map<String, Read> reads = new HashMap<>();
    private final Set<String> finishedWithoutRead = new LinkedHashSet<>();
    /** Splits read to their sealed end, waiting for their release. */
    private final Set<String> drained = new LinkedHashSet<>();
    /** Splits added since the last fetch: each gets a start marker. */
    private final List<NadiSplit> started = new ArrayList<>();
    /**
     * Releases seen in the last fetch, applied in the next one: the enumerator assigns the
     * successors before it releases their predecessors, and Flink runs the successors' addition
     * between two fetches, so their start markers (and watermark outputs) come first.
     */
    private List<String> deferredReleases = new ArrayList<>();

    /** Writers' watermarks: null when off. */
    private final WriterWatermarks watermarks;
    private final ScheduledExecutorService poller;
    /** Open splits by id, for the watermark rule (only with writers' watermarks). */
    private final Map<String, Tracked> tracked = new HashMap<>();
    /** Splits to check against the watermarks in this fetch. */
    private final Set<String> dirty = new LinkedHashSet<>();
    private final Map<Long, double[]> keyRanges = new HashMap<>();
    /** Set by the fetch thread when a split's key range is unknown: the poller reads the history. */
    private final AtomicBoolean rangesWanted = new AtomicBoolean();

    NadiSplitReader(NadiClient client, LinkedBlockingQueue<Object> queue) {
        this(client, queue, null);
    }

    /** {@code watermarksOf}: the stream whose writers' watermarks to apply, or null for none. */
    NadiSplitReader(NadiClient client, LinkedBlockingQueue<Object> queue, StreamId watermarksOf) {
        this.client = client;
        this.queue = queue;
        if (watermarksOf == null) {
            this.watermarks = null;
            this.poller = null;
        } else {
            this.watermarks = new WriterWatermarks();
            this.poller = Executors.newSingleThreadScheduledExecutor(r -> {
                Thread t = new Thread(r, "nadi-watermarks-" + watermarksOf);
                t.setDaemon(true);
                return t;
            });
            long[] after = {-1};
            poller.scheduleWithFixedDelay(() -> poll(watermarksOf, after), 0, WATERMARK_POLL_MS, TimeUnit.MILLISECONDS);
        }
    }

    /** The poller thread: new watermarks, and the key ranges when wanted, into the queue. */
    private void poll(StreamId stream, long[] after) {
        try {
            if (rangesWanted.getAndSet(false)) {
                Map<Long, double[]> ranges = new HashMap<>();
                for (EpochInfo e : client.streamHistory(stream.scope(), stream.stream()).getEpochsList()) {
                    for (Segment seg : e.getSegmentsList()) {
                        ranges.put(seg.getId(), new double[] {seg.getKeyLow(), seg.getKeyHigh()});
                    }
                }
                queue.add(new Ranges(ranges));
            }
            GetWatermarksResponse r = client.getWatermarks(stream.scope(), stream.stream(), Math.max(0, after[0]));
            if (r.getWatermarksCount() > 0) {
                after[0] = r.getWatermarks(r.getWatermarksCount() - 1).getTimeMs();
                LOG.debug("writers' watermarks of {} up to {} ({} active writers)", stream, after[0],
                        r.getActiveWriters());
                queue.add(new Polled(r));
            }
        } catch (NadiException e) {
            if (e.isRetryable()) {
                LOG.warn("cannot get the writers' watermarks of {} now (trying again): {}", stream, e.getMessage());
                return;
            }
            queue.add(new PollFailure(e));
            throw new IllegalStateException(e); // ends the schedule
        } catch (RuntimeException e) {
            queue.add(new PollFailure(NadiException.from(e, "watermarks of " + stream)));
            throw e;
        }
    }

    /** Called from any thread: finish these drained splits (their successors were handed out). */
    static void release(LinkedBlockingQueue<Object> queue, List<String> splitIds) {
        queue.add(new Release(splitIds));
    }

    @Override
    public void handleSplitsChanges(SplitsChange<NadiSplit> change) {
        if (!(change instanceof SplitsAddition)) {
            throw new UnsupportedOperationException("unsupported split change " + change);
        }
        for (NadiSplit s : change.splits()) {
            started.add(s);
            if (watermarks != null) {
                tracked.put(s.splitId(), new Tracked(s.segmentId, s.segment, s.offset));
                dirty.add(s.splitId());
            }
            if (s.endOffset != NadiSplit.NO_END && s.offset >= s.endOffset) {
                finishedWithoutRead.add(s.splitId());
                continue;
            }
            Read r = new Read(s, s.offset);
            reads.put(s.splitId(), r);
            open(r);
        }
    }

    private void open(Read r) {
        ReadRequest req = ReadRequest.newBuilder()
                .setSegment(r.split.segment)
                .setOffset(r.next)
                .setFollow(r.split.endOffset == NadiSplit.NO_END)
                .setMaxBytesPerMessage(MAX_BYTES_PER_MESSAGE)
                .build();
        SegmentReads.read(client, r.split.endpoint, req, r);
    }

    @Override
    public RecordsWithSplitIds<NadiRecord> fetch() throws IOException {
        RecordsBySplits.Builder<NadiRecord> out = new RecordsBySplits.Builder<>();
        for (NadiSplit s : started) {
            out.add(s.splitId(), NadiRecord.marker(NadiRecord.Kind.START, s.segment, s.offset));
        }
        started.clear();
        for (String id : finishedWithoutRead) {
            finish(id, out);
        }
        finishedWithoutRead.clear();
        for (String id : deferredReleases) {
            if (drained.remove(id)) {
                finish(id, out);
            }
        }
        deferredReleases = new ArrayList<>();
        List<Object> items = new ArrayList<>();
        try {
            Object first = queue.poll(200, TimeUnit.MILLISECONDS);
            if (first != null) {
                items.add(first);
                queue.drainTo(items, 64);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return out.build();
        }
        for (Object o : items) {
            if (o == WAKE) {
                continue;
            }
            if (o instanceof Release) {
                deferredReleases.addAll(((Release) o).splitIds);
                continue;
            }
            if (o instanceof Polled) {
                if (watermarks.add(((Polled) o).response.getWatermarksList())) {
                    dirty.addAll(tracked.keySet());
                }
                continue;
            }
            if (o instanceof Ranges) {
                keyRanges.putAll(((Ranges) o).ranges);
                dirty.addAll(tracked.keySet());
                continue;
            }
            if (o instanceof PollFailure) {
                NadiException e = ((PollFailure) o).error;
                throw new NadiException(e.reason(), "cannot follow the writers' watermarks (does the server support"
                        + " NoteWriterTime/GetWatermarks?): " + e.getMessage(), e.metadata(), e);
            }
            Item item = (Item) o;
            Read r = item.read;
            if (reads.get(r.split.splitId()) != r) {
                continue; // a read that was finished or replaced already
            }
            if (item.response != null) {
                if (handle(r, item.response, out)) {
                    end(r, item.response.getEndOfSegment(), out);
                } else {
                    r.call.request(1);
                }
            } else {
                reopenOrFail(r, item.error);
            }
        }
        if (watermarks != null) {
            emitWatermarks(out);
        }
        return out.build();
    }

    /**
     * Adds a watermark marker for every changed split whose writers' watermark rose, after its
     * events in this fetch (the emitter emits them in order).
     */
    private void emitWatermarks(RecordsBySplits.Builder<NadiRecord> out) {
        for (String id : dirty) {
            Tracked t = tracked.get(id);
            if (t == null) {
                continue;
            }
            double[] range = keyRanges.get(t.segmentId);
            if (range == null) {
                rangesWanted.set(true); // checked again when the ranges arrive
                continue;
            }
            long passed = watermarks.passed(t.segmentId, range[0], range[1], t.position, t.watermark);
            if (passed > t.watermark) {
                LOG.debug("split {} at {} passed the writers' watermark {}", t.segment, t.position, passed);
                t.watermark = passed;
                out.add(id, NadiRecord.watermark(t.segment, passed));
            }
        }
        dirty.clear();
    }

    /** The split is done: no more records or watermarks for it. */
    private void finish(String splitId, RecordsBySplits.Builder<NadiRecord> out) {
        tracked.remove(splitId);
        dirty.remove(splitId);
        out.addFinishedSplit(splitId);
    }

    /** Adds the message's events; true if the split is finished. */
    private boolean handle(Read r, ReadResponse resp, RecordsBySplits.Builder<NadiRecord> out) throws IOException {
        ByteString data = resp.getData();
        if (resp.getOffset() != r.next && !data.isEmpty()) {
            throw new NadiException("INTERNAL", "segment " + r.split.segment + ": expected data at offset " + r.next
                    + ", got " + resp.getOffset());
        }
        for (EventFraming.Event ev : EventFraming.decode(data.asReadOnlyByteBuffer(), resp.getOffset())) {
            if (r.split.endOffset != NadiSplit.NO_END && ev.offset >= r.split.endOffset) {
                return true;
            }
            out.add(r.split.splitId(), new NadiRecord(r.split.segment, ev.offset, ev.nextOffset, ev.payload));
            r.next = ev.nextOffset;
        }
        Tracked t = tracked.get(r.split.splitId());
        if (t != null && t.position != r.next) {
            t.position = r.next;
            dirty.add(r.split.splitId());
        }
        r.reopens = 0;
        return resp.getEndOfSegment() || (r.split.endOffset != NadiSplit.NO_END && r.next >= r.split.endOffset);
    }

    /** The split's read is over: finished at the stop cut, or drained at its sealed end. */
    private void end(Read r, boolean sealedEnd, RecordsBySplits.Builder<NadiRecord> out) {
        reads.remove(r.split.splitId());
        if (r.call != null) {
            r.call.cancel("segment read to its end", null);
        }
        if (r.split.endOffset == NadiSplit.NO_END && sealedEnd) {
            drained.add(r.split.splitId());
            out.add(r.split.splitId(), NadiRecord.marker(NadiRecord.Kind.END, r.split.segment, r.next));
        } else {
            finish(r.split.splitId(), out);
        }
    }

    private void reopenOrFail(Read r, Throwable error) throws NadiException {
        NadiException e = error == null ? null : NadiException.from(error, "read of segment " + r.split.segment);
        if (e != null && !e.isRetryable()) {
            throw e;
        }
        if (++r.reopens > MAX_REOPENS) {
            throw e != null ? e : new NadiException("UNAVAILABLE", "read of segment " + r.split.segment + " kept ending");
        }
        Read again = new Read(r.split, r.next);
        again.reopens = r.reopens;
        reads.put(r.split.splitId(), again);
        try {
            Thread.sleep(100L * r.reopens);
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
        }
        open(again);
    }

    @Override
    public void wakeUp() {
        queue.add(WAKE);
    }

    @Override
    public void close() {
        if (poller != null) {
            poller.shutdownNow();
            try {
                poller.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        for (Read r : reads.values()) {
            if (r.call != null) {
                r.call.cancel("reader closed", null);
            }
        }
        reads.clear();
        client.close();
    }
}
