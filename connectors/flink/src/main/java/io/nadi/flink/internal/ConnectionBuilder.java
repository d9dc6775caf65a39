package io.nadi.flink.internal;

import io.nadi.flink.client.StreamId;

/** What the source and sink builders share: where the controller is and which stream. */
public abstract class ConnectionBuilder<B extends ConnectionBuilder<B>> {
    private String controller;
    private StreamId stream;

    @SuppressWarnings("unchecked")
    private B self() {
        return (B) this;
    }

    /** The controller URL set, checked. */
    public String requireController() {
        if (controller == null) {
            throw new IllegalArgumentException("controller URL is required");
        }
        return controller;
    }

    /** The stream set, checked. */
    public StreamId requireStream() {
        if (stream == null) {
            throw new IllegalArgumentException("stream (scope/stream) is required");
        }
        return stream;
    }

    /** The controller's gRPC URL, e.g. {@code http://127.0.0.1:9090}. */
    public B controller(String url) {
        this.controller = url;
        return self();
    }

    /** The stream, {@code scope/stream}; it must exist. */
    public B stream(String scopeAndStream) {
        this.stream = StreamId.parse(scopeAndStream);
        return self();
    }
}
