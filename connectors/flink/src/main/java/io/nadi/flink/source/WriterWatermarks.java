package io.nadi.flink.source;

import io.nadi.proto.controller.v1.Watermark;
import io.nadi.proto.controller.v1.WatermarkSegment;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * The stream's writers' watermarks as a reader applies them (docs/protocol.md, "Watermarks"; the
 * Rust client applies the same rule). The controller records a watermark W each time the
 * minimum noted time of the stream's active writers rises, with a cut: every segment's highest
 * noted position, and the segment's key range.
 *
 * <pre>
 *   a reader of segment s, key range [lo, hi), at position o (just past its last emitted event)
 *   has passed W  iff  for every cut entry c of W overlapping [lo, hi)
 *                      (c.key_low &lt; hi &amp;&amp; lo &lt; c.key_high):
 *                        c.segment_id == s.id &amp;&amp; o &gt;= c.offset      (read past c here)
 *                     or epoch(c) &lt; epoch(s)                         (c is older: an ancestor,
 *                                                                  read before s was handed out)
 *   epoch(id) = id &gt;&gt;&gt; 32
 *   a split's watermark = the highest W it has passed (never going down); none: it holds back
 * </pre>
 *
 * A cut entry of a newer segment (or of another segment of the same epoch, which cannot
 * overlap) means the watermark's events may lie where this split does not read: only the
 * successor's split passes it. Keeps the last {@link #KEEP} watermarks, as the controller does,
 * so that a split added later (a successor) can pass older ones at once. Not thread-safe: the
 * split reader's fetch thread owns it.
 */
final class WriterWatermarks {
    /** How many watermarks are kept (the controller keeps as many). */
    static final int KEEP = 256;

    /** One watermark: its time and cut. */
    static final class Mark {
        final long timeMs;
        final List<WatermarkSegment> cut;

        Mark(long timeMs, List<WatermarkSegment> cut) {
            this.timeMs = timeMs;
            this.cut = cut;
        }
    }

    /** Oldest first, times strictly rising. */
    private final ArrayDeque<Mark> marks = new ArrayDeque<>();

    /** The highest watermark time known (-1: none): the next poll asks for those above it. */
    long highest() {
        return marks.isEmpty() ? -1 : marks.peekLast().timeMs;
    }

    /** Adds the watermarks above {@link #highest()}, oldest first; true if any was new. */
    boolean add(List<Watermark> polled) {
        boolean any = false;
        for (Watermark w : polled) {
            if (w.getTimeMs() > highest()) {
                marks.addLast(new Mark(w.getTimeMs(), new ArrayList<>(w.getCutList())));
                any = true;
            }
        }
        while (marks.size() > KEEP) {
            marks.pollFirst();
        }
        return any;
    }

    /**
     * The highest watermark time above {@code current} that a reader of {@code segmentId} (key
     * range [lo, hi)) at {@code position} has passed, or {@code current} if none.
     */
    long passed(long segmentId, double lo, double hi, long position, long current) {
        for (Iterator<Mark> it = marks.descendingIterator(); it.hasNext();) {
            Mark m = it.next();
            if (m.timeMs <= current) {
                break;
            }
            if (hasPassed(m.cut, segmentId, lo, hi, position)) {
                return m.timeMs;
            }
        }
        return current;
    }

    /** The rule of the class comment, for one watermark's cut. */
    static boolean hasPassed(List<WatermarkSegment> cut, long segmentId, double lo, double hi, long position) {
        for (WatermarkSegment c : cut) {
            if (!(c.getKeyLow() < hi && lo < c.getKeyHigh())) {
                continue; // another key range
            }
            if (c.getSegmentId() == segmentId) {
                if (position < c.getOffset()) {
                    return false;
                }
            } else if ((c.getSegmentId() >>> 32) >= (segmentId >>> 32)) {
                return false; // a newer segment (or the same epoch's other): its events are not read here
            }
        }
        return true;
    }
}
