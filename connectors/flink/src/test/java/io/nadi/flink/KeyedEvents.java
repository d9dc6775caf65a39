package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Test events {@code KEY,SEQ}: {@code keys} keys, each with sequence numbers 0, 1, 2, ... in the
 * order written, and the check that a stream holds each exactly once, in per-key order.
 */
final class KeyedEvents {
    private KeyedEvents() {}

    static String key(int k) {
        return "key" + k;
    }

    /** Writes events {@code from..to} (global index i: key i % keys, sequence i / keys), flushed. */
    static void write(NadiClient client, StreamId stream, int keys, int from, int to) throws NadiException {
        try (RoutedWriter w = RoutedWriter.forStream(client, stream)) {
            for (int i = from; i < to; i++) {
                w.write(key(i % keys), (key(i % keys) + "," + (i / keys)).getBytes(StandardCharsets.UTF_8));
            }
            w.flush();
        }
    }

    /** The routing key of an event line (the text before the comma). */
    static String keyOf(String line) {
        return line.substring(0, line.indexOf(','));
    }

    /**
     * Asserts that {@code lines} hold events 0..total-1 exactly once, and that each key's sequence
     * numbers appear in increasing order (0, 1, 2, ...).
     */
    static void assertExactlyOnceInOrder(List<String> lines, int keys, int total) {
        Map<String, Integer> next = new HashMap<>();
        int duplicates = 0;
        int reordered = 0;
        for (String line : lines) {
            String k = keyOf(line);
            int seq = Integer.parseInt(line.substring(line.indexOf(',') + 1).trim());
            int expected = next.getOrDefault(k, 0);
            if (seq < expected) {
                duplicates++;
            } else if (seq > expected) {
                reordered++;
            }
            next.put(k, Math.max(expected, seq + 1));
        }
        int missing = 0;
        for (int k = 0; k < keys; k++) {
            int perKey = total / keys + (k < total % keys ? 1 : 0);
            missing += Math.max(0, perKey - next.getOrDefault(key(k), 0));
        }
        if (duplicates + reordered + missing > 0 || lines.size() != total) {
            fail("expected " + total + " events exactly once in per-key order, got " + lines.size() + " lines: "
                    + duplicates + " duplicated/out of order backwards, " + reordered + " ahead of a gap, " + missing
                    + " missing at the end");
        }
        assertEquals(total, lines.size());
    }
}
