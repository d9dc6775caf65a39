package io.nadi.flink.source;

/** A split being read: the offset of the next event not yet emitted (what a checkpoint records). */
final class NadiSplitState {
    final NadiSplit split;
    long offset;

    NadiSplitState(NadiSplit split) {
        this.split = split;
        this.offset = split.offset;
    }

    NadiSplit toSplit() {
        return split.at(offset);
    }
}
