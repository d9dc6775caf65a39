package io.nadi.flink.source;

/**
 * One event as the split reader hands it to the emitter: where it is, where the next one is. Two
 * markers carry no event: {@link Kind#START} when a split is added (so that its watermark output
 * exists, and holds the reader's watermark, before its first event) and {@link Kind#END} when a
 * segment was read to its sealed end (drained).
 */
final class NadiRecord {
    enum Kind { EVENT, START, END }

    final Kind kind;
    final String segment;
    final long offset;
    final long nextOffset;
    final byte[] payload;

    NadiRecord(String segment, long offset, long nextOffset, byte[] payload) {
        this(Kind.EVENT, segment, offset, nextOffset, payload);
    }

    private NadiRecord(Kind kind, String segment, long offset, long nextOffset, byte[] payload) {
        this.kind = kind;
        this.segment = segment;
        this.offset = offset;
        this.nextOffset = nextOffset;
        this.payload = payload;
    }

    static NadiRecord marker(Kind kind, String segment, long offset) {
        return new NadiRecord(kind, segment, offset, offset, null);
    }
}
