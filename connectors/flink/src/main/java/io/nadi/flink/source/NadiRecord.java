package io.nadi.flink.source;

/** One event as the split reader hands it to the emitter: where it is, where the next one is. */
final class NadiRecord {
    final String segment;
    final long offset;
    final long nextOffset;
    final byte[] payload;

    NadiRecord(String segment, long offset, long nextOffset, byte[] payload) {
        this.segment = segment;
        this.offset = offset;
        this.nextOffset = nextOffset;
        this.payload = payload;
    }
}
