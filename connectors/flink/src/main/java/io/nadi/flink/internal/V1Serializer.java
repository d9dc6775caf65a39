package io.nadi.flink.internal;

import java.io.IOException;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.core.memory.DataOutputView;

/**
 * The connector's checkpoint formats (splits, enumerator state, committables): version 1, one
 * {@link #write}/{@link #read} pair each. A later format bumps the version and keeps reading 1.
 */
public abstract class V1Serializer<T> implements SimpleVersionedSerializer<T> {
    private final String what;

    protected V1Serializer(String what) {
        this.what = what;
    }

    protected abstract void write(T value, DataOutputView out) throws IOException;

    protected abstract T read(DataInputView in) throws IOException;

    @Override
    public final int getVersion() {
        return 1;
    }

    @Override
    public final byte[] serialize(T value) throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(128);
        write(value, out);
        return out.getCopyOfBuffer();
    }

    @Override
    public final T deserialize(int version, byte[] bytes) throws IOException {
        if (version != 1) {
            throw new IOException("unknown " + what + " version " + version + " (this connector reads version 1)");
        }
        return read(new DataInputDeserializer(bytes));
    }
}
