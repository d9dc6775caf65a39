package io.nadi.flink.client;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Nadi's event framing ({@code docs/protocol.md}, "Event framing"), which is Pravega's: {@code
 * type: u32 BE = 0 | length: u32 BE | payload}, at most 8 MiB per event. An event's offset is the
 * segment offset of its header.
 */
public final class EventFraming {
    /** Largest payload of one event. */
    public static final int MAX_EVENT_SIZE = 8 * 1024 * 1024;

    private EventFraming() {}

    /** Size of an event's header: type and length. */
    public static final int HEADER_LEN = 8;

    static void put(ByteArrayOutputStream out, byte[] payload) {
        int n = payload.length;
        for (int i = 0; i < 4; i++) {
            out.write(0);
        }
        out.write((n >>> 24) & 0xFF);
        out.write((n >>> 16) & 0xFF);
        out.write((n >>> 8) & 0xFF);
        out.write(n & 0xFF);
        out.write(payload, 0, n);
    }

    /** One decoded event: its offset, the offset of the next event, and its payload. */
    public static final class Event {
        public final long offset;
        public final long nextOffset;
        public final byte[] payload;

        Event(long offset, long nextOffset, byte[] payload) {
            this.offset = offset;
            this.nextOffset = nextOffset;
            this.payload = payload;
        }
    }

    /** Splits whole framed events that start at segment offset {@code base}. */
    public static List<Event> decode(ByteBuffer data, long base) throws NadiException {
        ByteBuffer b = data.duplicate().order(ByteOrder.BIG_ENDIAN);
        List<Event> events = new ArrayList<>();
        int start = b.position();
        while (b.hasRemaining()) {
            long offset = base + (b.position() - start);
            if (b.remaining() < HEADER_LEN) {
                throw new NadiException("DATA_CORRUPT", "truncated event frame at offset " + offset);
            }
            int type = b.getInt();
            if (type != 0) {
                throw new NadiException("DATA_CORRUPT", "event header of type " + type + " (not 0) at offset " + offset);
            }
            int len = b.getInt();
            if (len < 0 || len > MAX_EVENT_SIZE || len > b.remaining()) {
                throw new NadiException("DATA_CORRUPT", "bad event length " + len + " at offset " + offset);
            }
            byte[] payload = new byte[len];
            b.get(payload);
            events.add(new Event(offset, offset + HEADER_LEN + len, payload));
        }
        return events;
    }
}
