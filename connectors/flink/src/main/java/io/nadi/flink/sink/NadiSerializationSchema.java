package io.nadi.flink.sink;

import java.io.Serializable;
import org.apache.flink.api.common.serialization.SerializationSchema;

/**
 * Turns a record into a Nadi event: its payload and its routing key. Events with the same key go
 * to the same segment and keep their order; a {@code null} key spreads events over the segments.
 * Use {@link #of(SerializationSchema, KeyExtractor)} to combine a Flink schema with a key.
 */
public interface NadiSerializationSchema<T> extends Serializable {

    /** Extracts the routing key of a record ({@code null}: no key). */
    @FunctionalInterface
    interface KeyExtractor<T> extends Serializable {
        String key(T record);
    }

    /** Called once per writer before the first record. */
    default void open(SerializationSchema.InitializationContext context) throws Exception {}

    /** The event's payload (at most 8 MiB). */
    byte[] serialize(T record);

    /** The event's routing key, or {@code null} for none. */
    String routingKey(T record);

    /** A Flink {@link SerializationSchema} for the payload, and a key extractor (may be null). */
    static <T> NadiSerializationSchema<T> of(SerializationSchema<T> schema, KeyExtractor<T> keys) {
        return new NadiSerializationSchema<T>() {
            private static final long serialVersionUID = 1L;

            @Override
            public void open(SerializationSchema.InitializationContext context) throws Exception {
                schema.open(context);
            }

            @Override
            public byte[] serialize(T record) {
                return schema.serialize(record);
            }

            @Override
            public String routingKey(T record) {
                return keys == null ? null : keys.key(record);
            }
        };
    }
}
