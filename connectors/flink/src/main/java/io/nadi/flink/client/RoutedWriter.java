package io.nadi.flink.client;

import io.nadi.proto.controller.v1.SegmentLocation;
import io.nadi.proto.controller.v1.SegmentOffset;
import io.nadi.proto.controller.v1.SuccessorSegment;
import io.nadi.proto.controller.v1.TxnInfo;
import io.nadi.proto.controller.v1.TxnSegment;
import io.nadi.proto.segment.v1.SegmentInfo;
import io.nadi.proto.segment.v1.WriterState;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * Buffers events routed by key and makes them durable on {@link #flush()}: the Java twin of the
 * Rust {@code EventWriter}, simplified to the Flink sink's needs (one thread; write, then flush
 * at a checkpoint or when the buffer is full).
 *
 * <pre>
 *   write(key, payload) ─► point = keyPoint(key) ─► the route whose [low, high) holds it
 *                          (no key: round-robin) ─► that segment's buffer
 *   flush() ─► each buffer to its segment's append stream ─► wait for every ack (durable)
 *      SEALED (the stream scaled): the store's last event number for this writer says which
 *        events it holds; the rest go, in order, to the successors owning their keys, which
 *        replace the sealed segment in the routing table; then the loop goes on.
 *      UNAVAILABLE: reopen; the setup ack says what is stored; re-send only the rest.
 * </pre>
 *
 * Per-key order holds: a key's events sit in one buffer, are numbered and stored in order, and
 * re-routed events go ahead of any later event of the same key. A transaction writer
 * ({@link #forTransaction}) has a fixed set of segments: {@code SEALED} is an error there.
 *
 * <p>Event time (docs/protocol.md, "Watermarks"): {@link #noteTime} flushes, then tells the
 * controller that every event this writer appends from now on has an event time at or above
 * the given time, with its position in every segment it appended to (the durable length an
 * acknowledgement reported: at or past its last acknowledged event there). The stream's watermark is the minimum over the writers that noted within their
 * {@linkplain #idleTimeout idle timeout} and are not closed; {@link #close} of a writer that
 * noted says it is closed.
 */
public final class RoutedWriter implements AutoCloseable {
    private static final long ACK_TIMEOUT_MS = 60_000;
    private static final int MAX_RECONNECTS = 10;

    /** A slice [low, high) of the key space and the segment that takes its events. */
    private static final class Route {
        final long segmentId;
        final String segment;
        final String endpoint;
        final double low;
        final double high;

        Route(long segmentId, String segment, String endpoint, double low, double high) {
            this.segmentId = segmentId;
            this.segment = segment;
            this.endpoint = endpoint;
            this.low = low;
            this.high = high;
        }
    }

    /** A buffered event: its routing point (NaN without a key) and payload. */
    private static final class Ev {
        final double point;
        final byte[] payload;

        Ev(double point, byte[] payload) {
            this.point = point;
            this.payload = payload;
        }
    }

    private final NadiClient client;
    private final StreamId stream;
    private final String writerId;
    /** True for a transaction's segments: they never scale. */
    private final boolean fixed;
    private List<Route> routes;
    private final Map<Long, List<Ev>> buffers = new LinkedHashMap<>();
    private final Map<Long, Route> bySegment = new HashMap<>();
    private final Map<Long, SegmentAppender> appenders = new HashMap<>();
    private long bufferedBytes;
    private long written;
    private int unkeyed;
    /**
     * Every segment this writer appended to: a durable length at or past its last event there.
     * Sent whole with every note: notes live in the controller leader's memory, and a new leader
     * learns a writer's older segments only from its next note.
     */
    private final Map<Long, Long> positions = new HashMap<>();
    /** The last time noted; -1 before the first note. */
    private long notedTime = -1;
    private boolean closedNoted;
    /** Idle timeout sent with every note; 0: the controller's default (10 s). */
    private long idleTimeoutMs;

    private RoutedWriter(NadiClient client, StreamId stream, String writerId, boolean fixed, List<Route> routes) {
        this.client = client;
        this.stream = stream;
        this.writerId = writerId;
        this.fixed = fixed;
        setRoutes(routes);
    }

    /** A writer to the stream's active segments that follows scaling; a random writer id. */
    public static RoutedWriter forStream(NadiClient client, StreamId stream) throws NadiException {
        List<Route> routes = new ArrayList<>();
        for (SegmentLocation l : client.activeSegments(stream.scope(), stream.stream())) {
            routes.add(new Route(l.getSegment().getId(), l.getSegment().getQualifiedName(), l.getEndpoint(),
                    l.getSegment().getKeyLow(), l.getSegment().getKeyHigh()));
        }
        return new RoutedWriter(client, stream, "flink-" + UUID.randomUUID(), false, routes);
    }

    /** A writer into an open transaction's segments, writer id = transaction id. */
    public static RoutedWriter forTransaction(NadiClient client, TxnInfo txn) {
        List<Route> routes = new ArrayList<>();
        for (TxnSegment s : txn.getSegmentsList()) {
            routes.add(new Route(s.getParentId(), s.getQualifiedName(), s.getEndpoint(), s.getKeyLow(), s.getKeyHigh()));
        }
        return new RoutedWriter(client, new StreamId(txn.getScope(), txn.getStream()), txn.getTxnId(), true, routes);
    }

    private void setRoutes(List<Route> r) {
        r.sort(Comparator.comparingDouble(x -> x.low));
        routes = r;
        for (Route x : r) {
            bySegment.put(x.segmentId, x);
        }
    }

    /** This writer's id on the segment stores and in its time notes. */
    public String writerId() {
        return writerId;
    }

    /**
     * How long after a {@link #noteTime note} this writer, if it notes nothing more, stops
     * holding the stream's watermark back (it is idle). Default (and zero): the controller's,
     * 10 s. Sent with every note.
     */
    public RoutedWriter idleTimeout(Duration timeout) {
        if (timeout.isNegative()) {
            throw new IllegalArgumentException("idle timeout must not be negative: " + timeout);
        }
        this.idleTimeoutMs = timeout.toMillis();
        return this;
    }

    /**
     * Flushes, then notes this writer's time: every event it appends after this call has an event
     * time {@code >= timeMs} (never lower than its previous note). Returns the stream's watermark
     * after the note (0: none yet). Not for transaction writers (their events have no position
     * before the commit).
     *
     * @throws NadiException as {@link #flush()}, or {@code INVALID_ARGUMENT} for a time below the
     *     previous note; a server without watermarks answers {@code UNIMPLEMENTED} ({@code INTERNAL})
     */
    public long noteTime(long timeMs) throws NadiException {
        if (fixed) {
            throw new IllegalStateException("a transaction writer cannot note its time: its events have no position"
                    + " in the stream before the commit");
        }
        if (timeMs < notedTime) {
            throw new IllegalArgumentException("time " + timeMs + " ms is below this writer's previous note, "
                    + notedTime + " ms");
        }
        flush();
        long watermark = sendNote(timeMs, false);
        notedTime = timeMs;
        return watermark;
    }

    /** The last time noted, -1 if none. */
    public long notedTime() {
        return notedTime;
    }

    private long sendNote(long timeMs, boolean closed) throws NadiException {
        List<SegmentOffset> all = new ArrayList<>();
        for (Map.Entry<Long, Long> e : positions.entrySet()) {
            all.add(SegmentOffset.newBuilder().setSegmentId(e.getKey()).setOffset(e.getValue()).build());
        }
        long watermark = client.noteWriterTime(stream.scope(), stream.stream(), writerId, timeMs, all, closed,
                idleTimeoutMs);
        return watermark;
    }

    private void notePosition(long segmentId, long position) {
        if (position > 0) {
            positions.merge(segmentId, position, Math::max);
        }
    }

    /** Bytes buffered and not yet flushed (flush when this grows large). */
    public long bufferedBytes() {
        return bufferedBytes;
    }

    /** Events written since this writer was made (buffered or flushed). */
    public long written() {
        return written;
    }

    /** Buffers one event, routed by {@code key} (null: round-robin). */
    public void write(String key, byte[] payload) {
        if (payload.length > EventFraming.MAX_EVENT_SIZE) {
            throw new IllegalArgumentException("event of " + payload.length + " bytes is over Nadi's limit of "
                    + EventFraming.MAX_EVENT_SIZE + " bytes");
        }
        double point = key == null ? Double.NaN : NadiRouting.keyPoint(key);
        Route r = pick(routes, point);
        buffers.computeIfAbsent(r.segmentId, k -> new ArrayList<>()).add(new Ev(point, payload));
        bufferedBytes += payload.length + EventFraming.HEADER_LEN;
        written++;
    }

    private Route pick(List<Route> rs, double point) {
        if (Double.isNaN(point)) {
            return rs.get(Math.floorMod(unkeyed++, rs.size()));
        }
        for (Route r : rs) {
            if (NadiRouting.inRange(point, r.low, r.high)) {
                return r;
            }
        }
        return rs.get(rs.size() - 1);
    }

    /** Returns once every event written so far is durable; follows scaling on the way. */
    public void flush() throws NadiException {
        int reconnects = 0;
        while (!buffers.isEmpty()) {
            Map<Long, List<Ev>> sending = new LinkedHashMap<>(buffers);
            buffers.clear();
            Map<Long, Long> firstNumbers = new HashMap<>();
            for (Map.Entry<Long, List<Ev>> e : sending.entrySet()) {
                SegmentAppender a = appender(e.getKey());
                List<byte[]> payloads = new ArrayList<>(e.getValue().size());
                for (Ev ev : e.getValue()) {
                    payloads.add(ev.payload);
                }
                firstNumbers.put(e.getKey(), a.send(payloads));
            }
            for (Map.Entry<Long, List<Ev>> e : sending.entrySet()) {
                long seg = e.getKey();
                SegmentAppender a = appenders.get(seg);
                try {
                    a.awaitAcked(ACK_TIMEOUT_MS);
                    notePosition(seg, a.durableLength());
                } catch (NadiException failure) {
                    notePosition(seg, a.durableLength());
                    a.close();
                    appenders.remove(seg);
                    Route route = bySegment.get(seg);
                    List<Ev> unstored = unstored(route, e.getValue(), firstNumbers.get(seg), failure);
                    if (failure.reason().equals("SEALED") && !fixed) {
                        reroute(route, unstored);
                    } else if (failure.isRetryable() && ++reconnects <= MAX_RECONNECTS) {
                        buffers.computeIfAbsent(seg, k -> new ArrayList<>()).addAll(0, unstored);
                        sleep(100L * reconnects);
                    } else {
                        throw failure;
                    }
                }
            }
        }
        bufferedBytes = 0;
    }

    /** The events of a failed send that the store does not hold for this writer. */
    private List<Ev> unstored(Route route, List<Ev> sent, long firstNumber, NadiException failure)
            throws NadiException {
        if (!failure.reason().equals("SEALED") && !failure.isRetryable()) {
            throw failure;
        }
        SegmentInfo info = client.segmentInfo(route.endpoint, route.segment);
        long stored = -1;
        for (WriterState w : info.getWritersList()) {
            if (w.getWriterId().equals(writerId)) {
                stored = w.getLastEventNumber();
            }
        }
        long skip = Math.max(0, Math.min(sent.size(), stored - firstNumber + 1));
        if (skip > 0) {
            notePosition(route.segmentId, info.getLength()); // stored, never acknowledged: within the length
        }
        return new ArrayList<>(sent.subList((int) skip, sent.size()));
    }

    /** Replaces a sealed segment by its successors and routes its unstored events to them. */
    private void reroute(Route sealed, List<Ev> unstored) throws NadiException {
        List<SuccessorSegment> succ = client.successors(stream.scope(), stream.stream(), sealed.segmentId);
        if (succ.isEmpty()) {
            throw new NadiException("SEALED", "stream " + stream + " is sealed");
        }
        List<Route> next = new ArrayList<>();
        for (SuccessorSegment s : succ) {
            SegmentLocation l = s.getSegment();
            double low = Math.max(l.getSegment().getKeyLow(), sealed.low);
            double high = Math.min(l.getSegment().getKeyHigh(), sealed.high);
            if (low < high) {
                next.add(new Route(l.getSegment().getId(), l.getSegment().getQualifiedName(), l.getEndpoint(), low, high));
            }
        }
        if (next.isEmpty()) {
            throw new NadiException("INTERNAL", "no successor of " + sealed.segment + " covers its key range");
        }
        next.sort(Comparator.comparingDouble(x -> x.low));
        for (Ev ev : unstored) {
            buffers.computeIfAbsent(pick(next, ev.point).segmentId, k -> new ArrayList<>()).add(ev);
        }
        List<Route> swapped = new ArrayList<>();
        for (Route r : routes) {
            if (r.segmentId != sealed.segmentId) {
                swapped.add(r);
                continue;
            }
            for (Route n : next) {
                double low = Math.max(n.low, r.low);
                double high = Math.min(n.high, r.high);
                if (low < high) {
                    swapped.add(new Route(n.segmentId, n.segment, n.endpoint, low, high));
                }
            }
        }
        setRoutes(swapped);
    }

    private SegmentAppender appender(long seg) throws NadiException {
        SegmentAppender a = appenders.get(seg);
        if (a == null) {
            Route r = bySegment.get(seg);
            a = new SegmentAppender(client, r.endpoint, r.segment, writerId);
            appenders.put(seg, a);
        }
        return a;
    }

    private static void sleep(long ms) throws NadiException {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new NadiException("UNAVAILABLE", "interrupted");
        }
    }

    /**
     * Drops buffered events and closes the append streams (flush first to keep them). A writer
     * that noted its time says it is closed (best effort: if that fails, its idle timeout
     * releases the watermark).
     */
    @Override
    public void close() {
        buffers.clear();
        if (notedTime >= 0 && !closedNoted) {
            closedNoted = true;
            try {
                sendNote(notedTime, true);
            } catch (NadiException | RuntimeException e) {
                // best effort: the idle timeout ends the writer's hold on the watermark
            }
        }
        for (SegmentAppender a : appenders.values()) {
            a.close();
        }
        appenders.clear();
    }
}
