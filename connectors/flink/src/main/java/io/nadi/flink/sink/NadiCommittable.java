package io.nadi.flink.sink;

import io.nadi.flink.internal.V1Serializer;
import java.io.IOException;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;

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

    /** Checkpoint format; also used for the writer state's transaction ids. */
    static final class Serializer extends V1Serializer<NadiCommittable> {
        static final Serializer INSTANCE = new Serializer();

        private Serializer() {
            super("Nadi committable");
        }

        @Override
        protected void write(NadiCommittable c, DataOutputView out) throws IOException {
            out.writeUTF(c.txnId);
            out.writeUTF(c.stream);
        }

        @Override
        protected NadiCommittable read(DataInputView in) throws IOException {
            return new NadiCommittable(in.readUTF(), in.readUTF());
        }
    }
}
