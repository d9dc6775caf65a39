package io.nadi.flink.source;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.flink.core.io.SimpleVersionedSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;

/**
 * The enumerator's checkpointed state: which segments were ever handed out, which were read to
 * their end, the splits not handed out yet, and (bounded mode) the stop cut. A segment's offset
 * while it is read lives in the reader's state, not here.
 */
public final class NadiEnumeratorState {
    final boolean initialized;
    final Set<Long> assigned;
    final Set<Long> finished;
    final List<NadiSplit> pending;
    /** Bounded mode: segment id → offset to stop at; segments in it have no successors read. */
    final Map<Long, Long> stopCut;

    NadiEnumeratorState(boolean initialized, Set<Long> assigned, Set<Long> finished, List<NadiSplit> pending,
            Map<Long, Long> stopCut) {
        this.initialized = initialized;
        this.assigned = assigned;
        this.finished = finished;
        this.pending = pending;
        this.stopCut = stopCut;
    }

    static NadiEnumeratorState empty() {
        return new NadiEnumeratorState(false, new HashSet<>(), new HashSet<>(), new ArrayList<>(), new HashMap<>());
    }

    /** Checkpoint format (version 1). */
    public static final class Serializer implements SimpleVersionedSerializer<NadiEnumeratorState> {
        public static final Serializer INSTANCE = new Serializer();

        @Override
        public int getVersion() {
            return 1;
        }

        @Override
        public byte[] serialize(NadiEnumeratorState s) throws IOException {
            DataOutputSerializer out = new DataOutputSerializer(256);
            out.writeBoolean(s.initialized);
            out.writeInt(s.assigned.size());
            for (long id : s.assigned) {
                out.writeLong(id);
            }
            out.writeInt(s.finished.size());
            for (long id : s.finished) {
                out.writeLong(id);
            }
            out.writeInt(s.pending.size());
            for (NadiSplit split : s.pending) {
                NadiSplitSerializer.write(split, out);
            }
            out.writeInt(s.stopCut.size());
            for (Map.Entry<Long, Long> e : s.stopCut.entrySet()) {
                out.writeLong(e.getKey());
                out.writeLong(e.getValue());
            }
            return out.getCopyOfBuffer();
        }

        @Override
        public NadiEnumeratorState deserialize(int version, byte[] bytes) throws IOException {
            if (version != 1) {
                throw new IOException("unknown Nadi enumerator state version " + version);
            }
            DataInputDeserializer in = new DataInputDeserializer(bytes);
            boolean initialized = in.readBoolean();
            Set<Long> assigned = new HashSet<>();
            for (int i = in.readInt(); i > 0; i--) {
                assigned.add(in.readLong());
            }
            Set<Long> finished = new HashSet<>();
            for (int i = in.readInt(); i > 0; i--) {
                finished.add(in.readLong());
            }
            List<NadiSplit> pending = new ArrayList<>();
            for (int i = in.readInt(); i > 0; i--) {
                pending.add(NadiSplitSerializer.read(in));
            }
            Map<Long, Long> stopCut = new HashMap<>();
            for (int i = in.readInt(); i > 0; i--) {
                stopCut.put(in.readLong(), in.readLong());
            }
            return new NadiEnumeratorState(initialized, assigned, finished, pending, stopCut);
        }
    }
}
