package io.nadi.flink.source;

import com.google.protobuf.ByteString;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.nadi.flink.client.EventFraming;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.SegmentReads;
import io.nadi.proto.segment.v1.ReadRequest;
import io.nadi.proto.segment.v1.ReadResponse;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.flink.connector.base.source.reader.RecordsBySplits;
import org.apache.flink.connector.base.source.reader.RecordsWithSplitIds;
import org.apache.flink.connector.base.source.reader.splitreader.SplitReader;
import org.apache.flink.connector.base.source.reader.splitreader.SplitsAddition;
import org.apache.flink.connector.base.source.reader.splitreader.SplitsChange;

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
 */
final class NadiSplitReader implements SplitReader<NadiRecord, NadiSplit> {
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

    NadiSplitReader(NadiClient client, LinkedBlockingQueue<Object> queue) {
        this.client = client;
        this.queue = queue;
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
            out.addFinishedSplit(id);
        }
        finishedWithoutRead.clear();
        for (String id : deferredReleases) {
            if (drained.remove(id)) {
                out.addFinishedSplit(id);
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
        return out.build();
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
            out.addFinishedSplit(r.split.splitId());
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
        for (Read r : reads.values()) {
            if (r.call != null) {
                r.call.cancel("reader closed", null);
            }
        }
        reads.clear();
        client.close();
    }
}
