package io.nadi.flink.source;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.StreamId;
import io.nadi.proto.controller.v1.Segment;
import io.nadi.proto.controller.v1.SegmentLocation;
import io.nadi.proto.controller.v1.SegmentOffset;
import io.nadi.proto.controller.v1.SuccessorSegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.apache.flink.api.connector.source.SplitEnumerator;
import org.apache.flink.api.connector.source.SplitEnumeratorContext;
import org.apache.flink.api.connector.source.SplitsAssignment;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Discovers the stream's segments and hands them to readers as splits, following scaling:
 *
 * <pre>
 *   start: head segments (from their start offsets) or active segments (from their lengths);
 *          bounded: also the tail stream cut, where reading stops
 *   reader: "segment S finished" ──► GetSuccessors(S) ──► each successor whose predecessors are
 *          all finished becomes a split (once), and goes to a reader
 *   bounded: every split finished and nothing pending ──► no more splits (the job ends)
 * </pre>
 *
 * A successor is handed out only after all its predecessors were read to their end, and a key
 * maps to one segment per epoch, so per-key order holds across splits and merges. Controller
 * calls run on Flink's worker thread ({@code callAsync}); their results are applied on the
 * coordinator thread. Everything is idempotent: a repeated "finished" report (after a restore)
 * asks for the successors again and hands out only those never handed out.
 */
final class NadiSplitEnumerator implements SplitEnumerator<NadiSplit, NadiEnumeratorState> {
    private static final Logger LOG = LoggerFactory.getLogger(NadiSplitEnumerator.class);

    private final SplitEnumeratorContext<NadiSplit> context;
    private final NadiClient client;
    private final StreamId stream;
    private final boolean fromStart;
    private final boolean bounded;
    private boolean initialized;
    private final TreeSet<Long> assigned;
    private final TreeSet<Long> finished;
    private final List<NadiSplit> pending;
    private final Map<Long, Long> stopCut;
    private int inFlight;
    private int nextReader;

    NadiSplitEnumerator(SplitEnumeratorContext<NadiSplit> context, String controller, StreamId stream,
            boolean fromStart, boolean bounded, NadiEnumeratorState state) {
        this.context = context;
        this.client = new NadiClient(controller);
        this.stream = stream;
        this.fromStart = fromStart;
        this.bounded = bounded;
        this.initialized = state.initialized;
        this.assigned = new TreeSet<>(state.assigned);
        this.finished = new TreeSet<>(state.finished);
        this.pending = new ArrayList<>(state.pending);
        this.stopCut = new HashMap<>(state.stopCut);
    }

    @Override
    public void start() {
        if (!initialized) {
            inFlight++;
            context.callAsync(this::discoverStart, (splits, error) -> {
                inFlight--;
                if (error != null) {
                    throw new IllegalStateException("Nadi source cannot start on stream " + stream + ": "
                            + error.getMessage(), error);
                }
                initialized = true;
                for (NadiSplit s : splits) {
                    add(s);
                }
                assignPending();
            });
        } else {
            // After a restore: successors of finished segments that were not handed out yet.
            for (long id : new ArrayList<>(finished)) {
                followSuccessors(id);
            }
            assignPending();
        }
    }

    /** The first splits (worker thread): head or tail, and in bounded mode the stop cut. */
    private List<NadiSplit> discoverStart() throws NadiException {
        Map<Long, Long> cut = new HashMap<>();
        if (bounded) {
            for (SegmentOffset o : client.tailCut(stream.scope(), stream.stream())) {
                cut.put(o.getSegmentId(), o.getOffset());
            }
        }
        List<SegmentLocation> first = fromStart
                ? client.headSegments(stream.scope(), stream.stream())
                : client.activeSegments(stream.scope(), stream.stream());
        List<NadiSplit> splits = new ArrayList<>();
        for (SegmentLocation l : first) {
            Segment seg = l.getSegment();
            var info = client.segmentInfo(l.getEndpoint(), seg.getQualifiedName());
            long offset = fromStart ? info.getStartOffset() : info.getLength();
            splits.add(new NadiSplit(seg.getId(), seg.getQualifiedName(), l.getEndpoint(), offset,
                    cut.getOrDefault(seg.getId(), NadiSplit.NO_END), false));
        }
        stopCut.putAll(cut);
        return splits;
    }

    private void add(NadiSplit s) {
        if (assigned.add(s.segmentId)) {
            pending.add(s);
        }
    }

    @Override
    public void handleSourceEvent(int subtaskId, org.apache.flink.api.connector.source.SourceEvent event) {
        if (!(event instanceof SegmentsFinishedEvent)) {
            LOG.warn("unexpected source event {}", event);
            return;
        }
        for (long id : ((SegmentsFinishedEvent) event).segmentIds) {
            finished.add(id);
            followSuccessors(id);
        }
        signalIfDone();
    }

    /** Asks for the successors of a finished segment and adds those now ready. */
    private void followSuccessors(long id) {
        if (bounded && stopCut.containsKey(id)) {
            return; // read up to the stop cut: nothing after it
        }
        inFlight++;
        context.callAsync(() -> client.successors(stream.scope(), stream.stream(), id), (succ, error) -> {
            inFlight--;
            if (error != null) {
                throw new IllegalStateException("cannot get the successors of segment " + id + " of " + stream
                        + ": " + error.getMessage(), error);
            }
            for (SuccessorSegment s : succ) {
                Segment seg = s.getSegment().getSegment();
                if (assigned.contains(seg.getId()) || !finished.containsAll(s.getPredecessorIdsList())) {
                    continue;
                }
                add(new NadiSplit(seg.getId(), seg.getQualifiedName(), s.getSegment().getEndpoint(), 0,
                        bounded ? stopCut.getOrDefault(seg.getId(), NadiSplit.NO_END) : NadiSplit.NO_END, false));
            }
            assignPending();
            signalIfDone();
        });
    }

    /** Hands pending splits to registered readers, round-robin. */
    private void assignPending() {
        List<Integer> readers = new ArrayList<>(new TreeSet<>(context.registeredReaders().keySet()));
        if (readers.isEmpty() || pending.isEmpty()) {
            return;
        }
        Map<Integer, List<NadiSplit>> assignment = new HashMap<>();
        for (NadiSplit s : pending) {
            int reader = readers.get(Math.floorMod(nextReader++, readers.size()));
            assignment.computeIfAbsent(reader, k -> new ArrayList<>()).add(s);
        }
        pending.clear();
        context.assignSplits(new SplitsAssignment<>(assignment));
    }

    /** Bounded mode: once every handed-out segment is finished, the readers get no more splits. */
    private void signalIfDone() {
        if (!bounded || !initialized || inFlight > 0 || !pending.isEmpty() || !finished.containsAll(assigned)) {
            return;
        }
        for (int reader : context.registeredReaders().keySet()) {
            context.signalNoMoreSplits(reader);
        }
    }

    @Override
    public void handleSplitRequest(int subtaskId, String requesterHostname) {
        // Splits are pushed as they become ready; nothing to do.
    }

    @Override
    public void addSplitsBack(List<NadiSplit> splits, int subtaskId) {
        pending.addAll(splits);
        assignPending();
    }

    @Override
    public void addReader(int subtaskId) {
        assignPending();
        signalIfDone();
    }

    @Override
    public NadiEnumeratorState snapshotState(long checkpointId) {
        return new NadiEnumeratorState(initialized, new TreeSet<>(assigned), new TreeSet<>(finished),
                new ArrayList<>(pending), new HashMap<>(stopCut));
    }

    @Override
    public void close() {
        client.close();
    }
}
