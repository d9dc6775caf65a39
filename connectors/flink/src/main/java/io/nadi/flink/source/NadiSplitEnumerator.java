package io.nadi.flink.source;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.StreamId;
import io.nadi.proto.controller.v1.Segment;
import io.nadi.proto.controller.v1.SegmentLocation;
import io.nadi.proto.controller.v1.SegmentOffset;
import io.nadi.proto.controller.v1.SuccessorSegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
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
 *   start: head segments (from their start offsets), active segments (from their lengths) or
 *          the segments of the cut at a time (from the cut's offsets);
 *          bounded: also the tail stream cut, where reading stops
 *   reader: "segment S finished" ──► GetSuccessors(S) ──► each successor whose predecessors are
 *          all finished becomes a split (once), and goes to a reader
 *   bounded: every split finished and nothing pending ──► no more splits (the job ends)
 * </pre>
 *
 * A successor is handed out only after all its predecessors were read to their end, and a key
 * maps to one segment per epoch, so per-key order holds across splits and merges.
 *
 * <p>Order downstream: the predecessors' last events may still be in flight in their reader's
 * output when the successor starts. If one reader finished all the predecessors (a split, or a
 * merge of segments it read), the successor goes to that reader: its output channel is FIFO.
 * Otherwise the successor waits for a checkpoint that began after the predecessors finished to
 * complete: the predecessors' events then precede that checkpoint's barrier, the successor's
 * follow it, and an operator with aligned checkpoints (keyed by the routing key) processes them
 * in that order. Without checkpointing, a successor waits at most {@link #NO_CHECKPOINT_WAIT_MS}.
 * Controller
 * calls run on Flink's worker thread ({@code callAsync}); their results are applied on the
 * coordinator thread. Everything is idempotent: a repeated "finished" report (after a restore)
 * asks for the successors again and hands out only those never handed out.
 */
final class NadiSplitEnumerator implements SplitEnumerator<NadiSplit, NadiEnumeratorState> {
    private static final Logger LOG = LoggerFactory.getLogger(NadiSplitEnumerator.class);

    private final SplitEnumeratorContext<NadiSplit> context;
    private final NadiClient client;
    private final StreamId stream;
    private final NadiSource.StartMode startMode;
    private final long startMs;
    private final boolean bounded;
    private boolean initialized;
    private final TreeSet<Long> assigned;
    private final TreeSet<Long> finished;
    private final List<NadiSplit> pending;
    private final Map<Long, Long> stopCut;
    private int inFlight;
    private int nextReader;
    /** Which reader finished each segment (since this enumerator started; not checkpointed). */
    private final Map<Long, Integer> finishedBy = new HashMap<>();
    /** Pending splits that should go to a given reader (see the class comment). */
    private final Map<Long, Integer> preferredReader = new HashMap<>();
    /** Successors waiting for a checkpoint to complete before they are handed out. */
    private final List<Waiting> waiting = new ArrayList<>();
    private long lastSnapshotAt = System.currentTimeMillis();
    /** Drained segments (by the reader holding them) whose successors are not all handed out. */
    private final Map<Long, Integer> holding = new HashMap<>();
    /** The successors of each finished segment, once known. */
    private final Map<Long, List<Long>> successorsOf = new HashMap<>();

    /** Without any checkpoint for this long, waiting successors are handed out anyway. */
    static final long NO_CHECKPOINT_WAIT_MS = 10_000;

    /** A successor waiting for checkpoint {@code afterCheckpoint} (-1: the next one) to complete. */
    private static final class Waiting {
        final NadiSplit split;
        final int reader;
        final long since = System.currentTimeMillis();
        long afterCheckpoint = -1;

        Waiting(NadiSplit split, int reader) {
            this.split = split;
            this.reader = reader;
        }
    }

    NadiSplitEnumerator(SplitEnumeratorContext<NadiSplit> context, String controller, ClientSecurity security,
            StreamId stream, NadiSource.StartMode startMode, long startMs, boolean bounded, NadiEnumeratorState state) {
        this.context = context;
        this.client = new NadiClient(controller, security);
        this.stream = stream;
        this.startMode = startMode;
        this.startMs = startMs;
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
        context.callAsync(() -> null, (ignored, error) -> releaseWithoutCheckpoint(), 1000, 1000);
    }

    /**
     * The first splits (worker thread): head, tail or the cut at a time, and in bounded mode the
     * stop cut. The time cut is taken before the stop cut, so the stop cut is at or after it.
     */
    private List<NadiSplit> discoverStart() throws NadiException {
        List<SegmentOffset> timeCut = startMode == NadiSource.StartMode.TIMESTAMP ? timeCut() : null;
        Map<Long, Long> cut = new HashMap<>();
        if (bounded) {
            for (SegmentOffset o : client.tailCut(stream.scope(), stream.stream())) {
                cut.put(o.getSegmentId(), o.getOffset());
            }
        }
        List<NadiSplit> splits = new ArrayList<>();
        if (timeCut != null) {
            List<Long> ids = new ArrayList<>();
            for (SegmentOffset o : timeCut) {
                ids.add(o.getSegmentId());
            }
            Map<Long, SegmentLocation> where = client.locate(stream.scope(), stream.stream(), ids);
            for (SegmentOffset o : timeCut) {
                SegmentLocation l = where.get(o.getSegmentId());
                splits.add(new NadiSplit(o.getSegmentId(), l.getSegment().getQualifiedName(), l.getEndpoint(),
                        o.getOffset(), cut.getOrDefault(o.getSegmentId(), NadiSplit.NO_END), false));
            }
        } else {
            boolean fromStart = startMode == NadiSource.StartMode.EARLIEST;
            List<SegmentLocation> first = fromStart
                    ? client.headSegments(stream.scope(), stream.stream())
                    : client.activeSegments(stream.scope(), stream.stream());
            for (SegmentLocation l : first) {
                Segment seg = l.getSegment();
                var info = client.segmentInfo(l.getEndpoint(), seg.getQualifiedName());
                long offset = fromStart ? info.getStartOffset() : info.getLength();
                splits.add(new NadiSplit(seg.getId(), seg.getQualifiedName(), l.getEndpoint(), offset,
                        cut.getOrDefault(seg.getId(), NadiSplit.NO_END), false));
            }
        }
        stopCut.putAll(cut);
        return splits;
    }

    /**
     * The cut at the start time. A time before the stream was created ({@code TIME_BEFORE_STREAM})
     * means every event: the head. {@code TIME_IN_FUTURE} fails the start.
     */
    private List<SegmentOffset> timeCut() throws NadiException {
        try {
            return client.cutAt(stream.scope(), stream.stream(), startMs);
        } catch (NadiException e) {
            if (!e.reason().equals("TIME_BEFORE_STREAM")) {
                throw e;
            }
            LOG.info("start time {} ms is before stream {} was created: starting at its head", startMs, stream);
            return client.headCut(stream.scope(), stream.stream());
        }
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
            finishedBy.put(id, subtaskId);
            holding.put(id, subtaskId);
            followSuccessors(id);
        }
        signalIfDone();
    }

    /** Asks for the successors of a finished segment and adds those now ready. */
    private void followSuccessors(long id) {
        if (bounded && stopCut.containsKey(id)) {
            holding.remove(id);
            return; // read up to the stop cut (finished, not drained): nothing after it
        }
        inFlight++;
        context.callAsync(() -> client.successors(stream.scope(), stream.stream(), id), (succ, error) -> {
            inFlight--;
            if (error != null) {
                throw new IllegalStateException("cannot get the successors of segment " + id + " of " + stream
                        + ": " + error.getMessage(), error);
            }
            List<Long> ids = new ArrayList<>();
            for (SuccessorSegment s : succ) {
                ids.add(s.getSegment().getSegment().getId());
            }
            successorsOf.put(id, ids);
            for (SuccessorSegment s : succ) {
                Segment seg = s.getSegment().getSegment();
                if (assigned.contains(seg.getId()) || !finished.containsAll(s.getPredecessorIdsList())) {
                    continue;
                }
                NadiSplit split = new NadiSplit(seg.getId(), seg.getQualifiedName(), s.getSegment().getEndpoint(), 0,
                        bounded ? stopCut.getOrDefault(seg.getId(), NadiSplit.NO_END) : NadiSplit.NO_END, false);
                Integer reader = sameReader(s.getPredecessorIdsList());
                if (reader != null && context.registeredReaders().containsKey(reader)) {
                    add(split);
                    preferredReader.put(split.segmentId, reader);
                } else {
                    assigned.add(split.segmentId);
                    waiting.add(new Waiting(split, reader == null ? -1 : reader));
                }
            }
            assignPending();
            releaseHeld();
            signalIfDone();
        });
    }

    /**
     * Releases every drained segment whose successors were all handed out (or that has none):
     * its reader finishes it now. Sent after the successors' assignment, so a successor that goes
     * to the same reader holds the watermark before its predecessor lets go of it.
     */
    private void releaseHeld() {
        Set<Long> notOut = new HashSet<>();
        for (NadiSplit p : pending) {
            notOut.add(p.segmentId);
        }
        for (Waiting w : waiting) {
            notOut.add(w.split.segmentId);
        }
        Map<Integer, List<Long>> release = new HashMap<>();
        for (java.util.Iterator<Map.Entry<Long, Integer>> it = holding.entrySet().iterator(); it.hasNext();) {
            Map.Entry<Long, Integer> e = it.next();
            List<Long> succ = successorsOf.get(e.getKey());
            if (succ == null) {
                continue; // not asked yet
            }
            boolean allOut = true;
            for (long s : succ) {
                allOut &= assigned.contains(s) && !notOut.contains(s);
            }
            if (allOut) {
                release.computeIfAbsent(e.getValue(), k -> new ArrayList<>()).add(e.getKey());
                it.remove();
            }
        }
        for (Map.Entry<Integer, List<Long>> e : release.entrySet()) {
            if (context.registeredReaders().containsKey(e.getKey())) {
                context.sendEventToSourceReader(e.getKey(),
                        new ReleaseSegmentsEvent(e.getValue().stream().mapToLong(Long::longValue).toArray()));
            }
        }
    }

    /** The reader that finished all of these segments, or null if several (or unknown). */
    private Integer sameReader(List<Long> segments) {
        Integer reader = null;
        for (long p : segments) {
            Integer r = finishedBy.get(p);
            if (r == null || (reader != null && !reader.equals(r))) {
                return null;
            }
            reader = r;
        }
        return reader;
    }

    /** Hands pending splits to registered readers: the preferred one, else round-robin. */
    private void assignPending() {
        List<Integer> readers = new ArrayList<>(new TreeSet<>(context.registeredReaders().keySet()));
        if (readers.isEmpty() || pending.isEmpty()) {
            return;
        }
        Map<Integer, List<NadiSplit>> assignment = new HashMap<>();
        for (NadiSplit s : pending) {
            Integer preferred = preferredReader.remove(s.segmentId);
            int reader = preferred != null && readers.contains(preferred)
                    ? preferred
                    : readers.get(Math.floorMod(nextReader++, readers.size()));
            assignment.computeIfAbsent(reader, k -> new ArrayList<>()).add(s);
        }
        pending.clear();
        context.assignSplits(new SplitsAssignment<>(assignment));
        releaseHeld();
    }

    /** Bounded mode: once every handed-out segment is finished, the readers get no more splits. */
    private void signalIfDone() {
        if (!bounded || !initialized || inFlight > 0 || !pending.isEmpty() || !waiting.isEmpty()
                || !finished.containsAll(assigned)) {
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
        lastSnapshotAt = System.currentTimeMillis();
        List<NadiSplit> unassigned = new ArrayList<>(pending);
        for (Waiting w : waiting) {
            if (w.afterCheckpoint < 0) {
                w.afterCheckpoint = checkpointId;
            }
            // After a restore from this checkpoint every reader starts from it: no wait needed.
            unassigned.add(w.split);
        }
        return new NadiEnumeratorState(initialized, new TreeSet<>(assigned), new TreeSet<>(finished), unassigned,
                new HashMap<>(stopCut));
    }

    @Override
    public void notifyCheckpointComplete(long checkpointId) {
        release(w -> w.afterCheckpoint >= 0 && w.afterCheckpoint <= checkpointId);
    }

    /** Without checkpoints, waiting successors go out after {@link #NO_CHECKPOINT_WAIT_MS}. */
    private void releaseWithoutCheckpoint() {
        long now = System.currentTimeMillis();
        if (now - lastSnapshotAt > NO_CHECKPOINT_WAIT_MS) {
            release(w -> now - w.since > NO_CHECKPOINT_WAIT_MS);
        }
    }

    private void release(java.util.function.Predicate<Waiting> ready) {
        boolean any = false;
        for (java.util.Iterator<Waiting> it = waiting.iterator(); it.hasNext();) {
            Waiting w = it.next();
            if (ready.test(w)) {
                it.remove();
                pending.add(w.split);
                if (w.reader >= 0) {
                    preferredReader.put(w.split.segmentId, w.reader);
                }
                any = true;
            }
        }
        if (any) {
            assignPending();
            signalIfDone();
        }
    }

    @Override
    public void close() {
        client.close();
    }
}
