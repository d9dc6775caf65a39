package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiRouting;
import io.nadi.flink.client.StreamId;
import org.junit.jupiter.api.Test;

/** The routing hash against the test vectors of docs/protocol.md (the Rust client's VECTORS). */
class NadiRoutingTest {
    private static final Object[][] VECTORS = {
        {"", 0xef46db3751d8e999L, 0.9346749315317059},
        {"a", 0xd24ec4f1a98c6e5bL, 0.8215144243236395},
        {"key0", 0x6290e6bc61d244bbL, 0.3850235185544273},
        {"order-42", 0xb5623ec0a2fa4fceL, 0.708530351667812},
        {"Nadi", 0x6b32413a1d1299feL, 0.41873557728565414},
        {"key96", 0x36a1e996d5455793L, 0.21340808803986033},
        {"\u00fcn\u00efcode", 0xaff510094968e696L, 0.6873331091568704},
    };

    @Test
    void documentedVectors() {
        for (Object[] v : VECTORS) {
            String key = (String) v[0];
            assertEquals(Long.toHexString((Long) v[1]), Long.toHexString(NadiRouting.hash(key)), "hash of " + key);
            assertEquals((Double) v[2], NadiRouting.keyPoint(key), 0.0, "point of " + key);
        }
    }

    @Test
    void longKeysUseTheStripedPath() {
        // 32+ bytes go through XXH64's four-lane loop (value from Python's xxhash package).
        String key = "a-routing-key-that-is-longer-than-thirty-two-bytes-" + "x".repeat(100);
        assertEquals("d91be126ff10cab4", Long.toHexString(NadiRouting.hash(key)));
        assertEquals(0.8480816574293072, NadiRouting.keyPoint(key), 0.0);
    }

    @Test
    void streamNamesAreValidated() {
        assertEquals("demo/orders", StreamId.parse("demo/orders").toString());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> StreamId.parse("demo"));
        assertTrue(e.getMessage().contains("SCOPE/STREAM"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> StreamId.parse("_sys/x"));
    }
}
