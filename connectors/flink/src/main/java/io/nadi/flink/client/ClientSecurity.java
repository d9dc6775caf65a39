package io.nadi.flink.client;

import java.io.Serializable;

/**
 * How a client authenticates itself, like the Rust client's {@code ClientSecurity}
 * ({@code docs/security.md}): a bearer token sent as {@code authorization: Bearer <token>} on
 * every call to every server (controller and segment stores).
 *
 * <p>No TLS: the Rust client's {@code tls} has no counterpart here, because Debian's netty
 * 4.1.48 (which this connector is built against) cannot negotiate ALPN with the JDK's TLS, and
 * gRPC needs it. {@code https://} URLs are refused with a message saying so.
 *
 * <p>Immutable and serializable: sources and sinks carry it to the task managers inside the job
 * graph. {@link #toString()} never shows the token, and no error message built here contains it.
 */
public final class ClientSecurity implements Serializable {
    private static final long serialVersionUID = 1L;
    private static final ClientSecurity NONE = new ClientSecurity(null);

    /** The bearer token, already checked to be a valid header value; null: send none. */
    private final String token;

    private ClientSecurity(String token) {
        this.token = token;
    }

    /** No token: for servers started with {@code --auth none} (the default). */
    public static ClientSecurity none() {
        return NONE;
    }

    /**
     * This security with {@code token} as the bearer token; null removes it. Surrounding
     * whitespace is dropped (a token read from a file ends with a newline).
     *
     * @throws IllegalArgumentException if the token is empty or not printable ASCII (it could
     *     not be sent as a header); the message does not contain the token
     */
    public ClientSecurity withToken(String token) {
        return new ClientSecurity(checkToken(token));
    }

    /** True if calls carry a bearer token. */
    public boolean hasToken() {
        return token != null;
    }

    /** The token; package-private so that only the channel set-up sees it. */
    String token() {
        return token;
    }

    private static String checkToken(String token) {
        if (token == null) {
            return null;
        }
        String t = token.strip();
        if (t.isEmpty()) {
            throw new IllegalArgumentException("the token is empty");
        }
        for (int i = 0; i < t.length(); i++) {
            char c = t.charAt(i);
            if (c < 0x20 || c > 0x7e) {
                throw new IllegalArgumentException(
                        "the token cannot be sent as a header (it must be printable ASCII; character " + i + " is not)");
            }
        }
        return t;
    }

    @Override
    public String toString() {
        return "ClientSecurity{token=" + (token == null ? "none" : "<hidden>") + "}";
    }
}
