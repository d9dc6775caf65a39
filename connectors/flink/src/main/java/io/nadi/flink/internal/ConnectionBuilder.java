package io.nadi.flink.internal;

import io.nadi.flink.client.ClientSecurity;
import io.nadi.flink.client.StreamId;

/**
 * What the source and sink builders share: where the controller is, which stream, and the
 * token to present ({@link ClientSecurity}).
 */
public abstract class ConnectionBuilder<B extends ConnectionBuilder<B>> {
    private String controller;
    private StreamId stream;
    private ClientSecurity security = ClientSecurity.none();

    @SuppressWarnings("unchecked")
    private B self() {
        return (B) this;
    }

    /** The controller URL set, checked. */
    public String requireController() {
        if (controller == null) {
            throw new IllegalArgumentException("controller URL is required");
        }
        if (controller.startsWith("https://")) {
            // Fail at build time, not in the running job (see ClientSecurity on TLS).
            throw new IllegalArgumentException("TLS is not supported by the Flink connector (Debian's netty cannot"
                    + " negotiate ALPN with the JDK's TLS): use an http:// controller URL, not " + controller);
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

    /** The token set ({@link ClientSecurity#none()} by default). */
    public ClientSecurity security() {
        return security;
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

    /**
     * The bearer token to present on every call (controller and segment stores), for servers
     * started with {@code --auth required}; null (the default): none. Its principal needs read
     * on a source's stream and write on a sink's ({@code docs/security.md}). The token travels
     * inside the job graph to the task managers; it is never logged. Not read from
     * {@code NADI_TOKEN}: pass {@code System.getenv("NADI_TOKEN")} to use that.
     *
     * @throws IllegalArgumentException if the token is empty or not printable ASCII
     */
    public B token(String token) {
        this.security = security.withToken(token);
        return self();
    }

    /** The token as a {@link ClientSecurity} (null: none), e.g. one taken from another builder. */
    public B security(ClientSecurity security) {
        this.security = security == null ? ClientSecurity.none() : security;
        return self();
    }
}
