package io.nadi.flink.client;

import java.nio.charset.StandardCharsets;

/**
 * Nadi's routing hash, re-implemented from {@code docs/protocol.md}: a key maps to the point
 * {@code (XXH64(utf8(key), seed 0) >>> 11) / 2^53} in [0, 1), and the segment whose
 * {@code [key_low, key_high)} holds the point owns the key. Identical to the Rust client's
 * {@code nadi_proto::routing::key_point}, so Java and Rust writers route a key to the same segment.
 */
public final class NadiRouting {
    private NadiRouting() {}

    /** The 64-bit XXH64 (seed 0) of the key's UTF-8 bytes. */
    public static long hash(String key) {
        return XxHash64.hash(key.getBytes(StandardCharsets.UTF_8), 0L);
    }

    /** The key's point in [0, 1): the hash's top 53 bits, exactly representable as a double. */
    public static double keyPoint(String key) {
        return (hash(key) >>> 11) * 0x1.0p-53;
    }

    /** True if the half-open range [low, high) holds the point. */
    public static boolean inRange(double point, double low, double high) {
        return low <= point && point < high;
    }
}
