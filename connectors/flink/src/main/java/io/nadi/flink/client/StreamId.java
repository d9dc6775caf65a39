package io.nadi.flink.client;

import java.io.Serializable;
import java.util.regex.Pattern;

/** A stream named {@code scope/stream}, validated by Nadi's name rules ({@code docs/protocol.md}). */
public final class StreamId implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

    private final String scope;
    private final String stream;

    public StreamId(String scope, String stream) {
        if (!NAME.matcher(scope).matches() || !NAME.matcher(stream).matches()) {
            throw new IllegalArgumentException("invalid stream name '" + scope + "/" + stream
                    + "': scope and stream are 1..=128 characters of [A-Za-z0-9._-], starting with a letter or digit");
        }
        this.scope = scope;
        this.stream = stream;
    }

    /** Parses {@code scope/stream}. */
    public static StreamId parse(String s) {
        int slash = s == null ? -1 : s.indexOf('/');
        if (slash < 0 || s.indexOf('/', slash + 1) >= 0) {
            throw new IllegalArgumentException("invalid stream '" + s + "': expected SCOPE/STREAM");
        }
        return new StreamId(s.substring(0, slash), s.substring(slash + 1));
    }

    public String scope() {
        return scope;
    }

    public String stream() {
        return stream;
    }

    @Override
    public String toString() {
        return scope + "/" + stream;
    }
}
