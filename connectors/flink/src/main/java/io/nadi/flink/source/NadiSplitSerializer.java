package io.nadi.flink.source;

import java.io.IOException;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.apache.flink.core.memory.DataOutputView;

/** Checkpoint format of {@link NadiSplit} (version 1). */
public final class NadiSplitSerializer implements SimpleVersionedSerializer<NadiSplit> {
    public static final NadiSplitSerializer INSTANCE = new NadiSplitSerializer();

    @Override
    public int getVersion() {
        return 1;
    }

    @Override
    public byte[] serialize(NadiSplit s) throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(64);
        write(s, out);
        return out.getCopyOfBuffer();
    }

    @Override
    public NadiSplit deserialize(int version, byte[] bytes) throws IOException {
        if (version != 1) {
            throw new IOException("unknown Nadi split version " + version);
        }
        return read(new DataInputDeserializer(bytes));
    }

    static void write(NadiSplit s, DataOutputView out) throws IOException {
        out.writeLong(s.segmentId);
        out.writeUTF(s.segment);
        out.writeUTF(s.endpoint);
        out.writeLong(s.offset);
        out.writeLong(s.endOffset);
        out.writeBoolean(s.finished);
    }

    static NadiSplit read(DataInputView in) throws IOException {
        return new NadiSplit(in.readLong(), in.readUTF(), in.readUTF(), in.readLong(), in.readLong(), in.readBoolean());
    }
}
