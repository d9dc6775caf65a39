package io.nadi.flink.source;

import io.nadi.flink.internal.V1Serializer;
import java.io.IOException;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;

/** Checkpoint format of {@link NadiSplit}. */
public final class NadiSplitSerializer extends V1Serializer<NadiSplit> {
    public static final NadiSplitSerializer INSTANCE = new NadiSplitSerializer();

    private NadiSplitSerializer() {
        super("Nadi split");
    }

    @Override
    protected void write(NadiSplit s, DataOutputView out) throws IOException {
        out.writeLong(s.segmentId);
        out.writeUTF(s.segment);
        out.writeUTF(s.endpoint);
        out.writeLong(s.offset);
        out.writeLong(s.endOffset);
        out.writeBoolean(s.finished);
    }

    @Override
    protected NadiSplit read(DataInputView in) throws IOException {
        return new NadiSplit(in.readLong(), in.readUTF(), in.readUTF(), in.readLong(), in.readLong(), in.readBoolean());
    }
}
