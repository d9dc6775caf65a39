package io.nadi.flink.source;

import io.nadi.flink.internal.V1Serializer;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;

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

    /** Checkpoint format. */
    public static final class Serializer extends V1Serializer<NadiEnumeratorState> {
        public static final Serializer INSTANCE = new Serializer();

        private Serializer() {
            super("Nadi enumerator state");
        }

        @Override
        protected void write(NadiEnumeratorState s, DataOutputView out) throws IOException {
            out.writeBoolean(s.initialized);
            writeIds(s.assigned, out);
            writeIds(s.finished, out);
            out.writeInt(s.pending.size());
            for (NadiSplit split : s.pending) {
                NadiSplitSerializer.INSTANCE.write(split, out);
            }
            out.writeInt(s.stopCut.size());
            for (Map.Entry<Long, Long> e : s.stopCut.entrySet()) {
                out.writeLong(e.getKey());
                out.writeLong(e.getValue());
            }
        }

        @Override
        protected NadiEnumeratorState read(DataInputView in) throws IOException {
            boolean initialized = in.readBoolean();
            Set<Long> assigned = readIds(in);
            Set<Long> finished = readIds(in);
            List<NadiSplit> pending = new ArrayList<>();
            for (int i = in.readInt(); i > 0; i--) {
                pending.add(NadiSplitSerializer.INSTANCE.read(in));
            }
            Map<Long, Long> stopCut = new HashMap<>();
            for (int i = in.readInt(); i > 0; i--) {
                stopCut.put(in.readLong(), in.readLong());
            }
            return new NadiEnumeratorState(initialized, assigned, finished, pending, stopCut);
        }

        private static void writeIds(Set<Long> ids, DataOutputView out) throws IOException {
            out.writeInt(ids.size());
            for (long id : ids) {
                out.writeLong(id);
            }
        }

        private static Set<Long> readIds(DataInputView in) throws IOException {
            Set<Long> ids = new HashSet<>();
            for (int i = in.readInt(); i > 0; i--) {
                ids.add(in.readLong());
            }
            return ids;
        }
    }
}
