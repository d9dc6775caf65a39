package io.nadi.flink.source;

/**
 * One event as the split reader hands it to the emitter: where it is, where the next one is. Three
 * markers carry no event: {@link Kind#START} when a split is added (so that its watermark output
 * exists, and holds the reader's watermark, before its first event), {@link Kind#END} when a
 * segment was read to its sealed end (drained), and {@link Kind#WATERMARK} when the split has
 * passed a writers' watermark ({@code offset} holds its time; see {@link WriterWatermarks}).
 */
final class NadiRecord {
    enum Kind { EVENT, START, END, WATERMARK }

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

    /** The split passed the writers' watermark {@code timeMs} (Nadi's: no more events below it). */
    static NadiRecord watermark(String segment, long timeMs) {
        return new NadiRecord(Kind.WATERMARK, segment, timeMs, timeMs, null);
    }
}
