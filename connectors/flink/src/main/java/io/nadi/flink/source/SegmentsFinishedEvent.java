package io.nadi.flink.source;

import java.util.Arrays;
import org.apache.flink.api.connector.source.SourceEvent;

/** Reader → enumerator: these segments were read to their end (sealed, or at the stop cut). */
public final class SegmentsFinishedEvent implements SourceEvent {
    private static final long serialVersionUID = 1L;

    final long[] segmentIds;

    public SegmentsFinishedEvent(long[] segmentIds) {
        this.segmentIds = segmentIds;
    }

    @Override
    public String toString() {
        return "SegmentsFinished" + Arrays.toString(segmentIds);
    }
}
