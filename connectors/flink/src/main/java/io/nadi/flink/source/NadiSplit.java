package io.nadi.flink.source;

import java.util.Objects;
import org.apache.flink.api.connector.source.SourceSplit;

/**
 * One segment as a Flink split: read from {@code offset} (an event boundary) to the segment's
 * end ({@code endOffset} = {@link #NO_END}: until it is sealed and read to its end) or to a
 * stream cut's offset (bounded mode). The split id is the packed segment id
 * {@code (epoch << 32) | number}.
 *
 * <p>A split with {@code finished} set is a marker kept in the reader's checkpointed state: the
 * segment was read to its end, and the reader tells the enumerator again after a restore, so a
 * "finished" report sent just before a checkpoint cannot be lost (see {@link NadiSourceReader}).
 */
public final class NadiSplit implements SourceSplit {
    /** {@code endOffset} of a split read until its segment is sealed and read to its end. */
    public static final long NO_END = -1;

    final long segmentId;
    final String segment;
    final String endpoint;
    final long offset;
    final long endOffset;
    final boolean finished;

    public NadiSplit(long segmentId, String segment, String endpoint, long offset, long endOffset, boolean finished) {
        this.segmentId = segmentId;
        this.segment = segment;
        this.endpoint = endpoint;
        this.offset = offset;
        this.endOffset = endOffset;
        this.finished = finished;
    }

    @Override
    public String splitId() {
        return Long.toString(segmentId);
    }

    public long segmentId() {
        return segmentId;
    }

    /** The qualified segment name. */
    public String segment() {
        return segment;
    }

    /** Offset of the next event to read. */
    public long offset() {
        return offset;
    }

    NadiSplit at(long newOffset) {
        return new NadiSplit(segmentId, segment, endpoint, newOffset, endOffset, finished);
    }

    NadiSplit asFinished(long finalOffset) {
        return new NadiSplit(segmentId, segment, endpoint, finalOffset, endOffset, true);
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof NadiSplit)) {
            return false;
        }
        NadiSplit s = (NadiSplit) o;
        return segmentId == s.segmentId && offset == s.offset && endOffset == s.endOffset && finished == s.finished
                && segment.equals(s.segment) && endpoint.equals(s.endpoint);
    }

    @Override
    public int hashCode() {
        return Objects.hash(segmentId, offset, endOffset, finished);
    }

    @Override
    public String toString() {
        return segment + "@" + offset + (endOffset == NO_END ? "" : ".." + endOffset) + (finished ? " (finished)" : "");
    }
}
