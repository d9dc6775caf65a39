package io.nadi.flink.source;

import java.util.Arrays;
import org.apache.flink.api.connector.source.SourceEvent;

/**
 * Enumerator → reader: the successors of these drained segments were handed out, so the reader
 * may finish them (and drop their watermarks).
 */
public final class ReleaseSegmentsEvent implements SourceEvent {
    private static final long serialVersionUID = 1L;

    final long[] segmentIds;

    public ReleaseSegmentsEvent(long[] segmentIds) {
        this.segmentIds = segmentIds;
    }

    @Override
    public String toString() {
        return "ReleaseSegments" + Arrays.toString(segmentIds);
    }
}
