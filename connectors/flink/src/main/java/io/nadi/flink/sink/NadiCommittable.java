package io.nadi.flink.sink;

import java.io.IOException;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;

/** A pre-committed (flushed) Nadi transaction that the committer commits after the checkpoint. */
public final class NadiCommittable {
    final String txnId;
    /** The stream, {@code scope/stream}, for messages. */
    final String stream;

    NadiCommittable(String txnId, String stream) {
        this.txnId = txnId;
        this.stream = stream;
    }

    public String txnId() {
        return txnId;
    }

    @Override
    public String toString() {
        return "transaction " + txnId + " on " + stream;
    }

    /** Checkpoint format (version 1); also used for the writer state's transaction ids. */
    static final class Serializer implements SimpleVersionedSerializer<NadiCommittable> {
        static final Serializer INSTANCE = new Serializer();

        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(NadiCommittable c) throws IOException {
            DataOutputSerializer out = new DataOutputSerializer(96);
            out.writeUTF(c.txnId);
            out.writeUTF(c.stream);
            return out.getCopyOfBuffer();
        }

        @Override
        public NadiCommittable deserialize(int version, byte[] bytes) throws IOException {
            if (version != 1) {
                throw new IOException("unknown Nadi committable version " + version);
            }
            DataInputDeserializer in = new DataInputDeserializer(bytes);
            return new NadiCommittable(in.readUTF(), in.readUTF());
        }
    }
}
