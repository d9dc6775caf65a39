package io.nadi.flink.source;

import java.io.IOException;
import java.io.Serializable;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;
import org.apache.flink.util.Collector;

/**
 * Turns one Nadi event (its payload, and where it was read) into zero or more records. Use
 * {@link #of(DeserializationSchema)} to wrap any Flink {@link DeserializationSchema} (e.g.
 * {@code SimpleStringSchema}, or a table format's row schema).
 */
public interface NadiDeserializationSchema<T> extends Serializable, ResultTypeQueryable<T> {

    /** Called once per reader before the first event. */
    default void open(DeserializationSchema.InitializationContext context) throws Exception {}

    /**
     * Deserializes one event. {@code segment} is its qualified segment name and {@code offset}
     * its position in that segment (unique per event in the stream, with the segment).
     */
    void deserialize(byte[] payload, String segment, long offset, Collector<T> out) throws IOException;

    /** Wraps a Flink {@link DeserializationSchema}: the payload is the whole message. */
    static <T> NadiDeserializationSchema<T> of(DeserializationSchema<T> schema) {
        return new NadiDeserializationSchema<T>() {
            private static final long serialVersionUID = 1L;

            @Override
            public void open(DeserializationSchema.InitializationContext context) throws Exception {
                schema.open(context);
            }

            @Override
            public void deserialize(byte[] payload, String segment, long offset, Collector<T> out) throws IOException {
                schema.deserialize(payload, out);
            }

            @Override
            public TypeInformation<T> getProducedType() {
                return schema.getProducedType();
            }
        };
    }
}
