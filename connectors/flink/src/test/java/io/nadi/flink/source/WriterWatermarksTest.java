package io.nadi.flink.source;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.proto.controller.v1.Watermark;
import io.nadi.proto.controller.v1.WatermarkSegment;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The reader rule of writers' watermarks (the same as the Rust client's), on a split stream. */
class WriterWatermarksTest {
    // Epoch 0: s0 [0, 0.5), s1 [0.5, 1). Epoch 1: s0 split into s2 [0, 0.25), s3 [0.25, 0.5).
    static final long S0 = 0;
    static final long S1 = 1;
    static final long S2 = (1L << 32) | 2;
    static final long S3 = (1L << 32) | 3;

    static WatermarkSegment c(long id, double lo, double hi, long offset) {
        return WatermarkSegment.newBuilder().setSegmentId(id).setKeyLow(lo).setKeyHigh(hi).setOffset(offset).build();
    }

    static Watermark w(long time, WatermarkSegment... cut) {
        return Watermark.newBuilder().setTimeMs(time).addAllCut(List.of(cut)).build();
    }

    @Test
    void aSplitPassesAWatermarkOnceItReadPastTheCutInItsOwnSegment() {
        List<WatermarkSegment> cut = List.of(c(S0, 0, 0.5, 100), c(S1, 0.5, 1, 40));
        assertFalse(WriterWatermarks.hasPassed(cut, S0, 0, 0.5, 99));
        assertTrue(WriterWatermarks.hasPassed(cut, S0, 0, 0.5, 100));
        assertTrue(WriterWatermarks.hasPassed(cut, S1, 0.5, 1, 40));
        assertFalse(WriterWatermarks.hasPassed(cut, S1, 0.5, 1, 0));
    }

    @Test
    void olderCutSegmentsArePassedNewerOnesAreNot() {
        // A cut of the old segment: its successors passed it (they start after it was read).
        List<WatermarkSegment> old = List.of(c(S0, 0, 0.5, 100), c(S1, 0.5, 1, 40));
        assertTrue(WriterWatermarks.hasPassed(old, S2, 0, 0.25, 0));
        assertTrue(WriterWatermarks.hasPassed(old, S3, 0.25, 0.5, 0));
        // A cut in a successor: the drained predecessor never passes it, the successor does at its offset.
        List<WatermarkSegment> later = List.of(c(S0, 0, 0.5, 100), c(S2, 0, 0.25, 10), c(S1, 0.5, 1, 40));
        assertFalse(WriterWatermarks.hasPassed(later, S0, 0, 0.5, 100));
        assertFalse(WriterWatermarks.hasPassed(later, S2, 0, 0.25, 9));
        assertTrue(WriterWatermarks.hasPassed(later, S2, 0, 0.25, 10));
        assertTrue(WriterWatermarks.hasPassed(later, S3, 0.25, 0.5, 0)); // no cut entry of its own range or newer
    }

    @Test
    void aSplitsWatermarkIsTheHighestPassedAndNeverGoesDown() {
        WriterWatermarks marks = new WriterWatermarks();
        assertEquals(-1, marks.passed(S0, 0, 0.5, 1_000, -1));
        assertTrue(marks.add(List.of(w(10, c(S0, 0, 0.5, 100)), w(20, c(S0, 0, 0.5, 200)))));
        assertFalse(marks.add(List.of(w(20, c(S0, 0, 0.5, 200)))), "not above the highest: ignored");
        assertEquals(20, marks.highest());
        assertEquals(-1, marks.passed(S0, 0, 0.5, 50, -1));
        assertEquals(10, marks.passed(S0, 0, 0.5, 150, -1));
        assertEquals(20, marks.passed(S0, 0, 0.5, 200, 10));
        assertEquals(20, marks.passed(S0, 0, 0.5, 150, 20), "never down");
        for (int t = 21; t < 21 + WriterWatermarks.KEEP; t++) {
            marks.add(List.of(w(t, c(S0, 0, 0.5, 300))));
        }
        assertEquals(20 + WriterWatermarks.KEEP, marks.highest());
        assertEquals(-1, marks.passed(S0, 0, 0.5, 250, -1), "the oldest were dropped");
    }
}
