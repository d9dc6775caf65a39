package io.nadi.flink.client;

import java.util.Map;
import org.apache.flink.runtime.throwable.ThrowableAnnotation;
import org.apache.flink.runtime.throwable.ThrowableType;

/**
 * A call refused by a server started with {@code --auth required} ({@code docs/security.md}):
 * {@code UNAUTHENTICATED} (no token, or one the server does not accept: unknown, malformed,
 * expired) or {@code PERMISSION_DENIED} (the token's principal lacks a grant). The message is
 * the server's (it names the principal, the permission and the resource) plus what to do.
 *
 * <p>Never retryable: the same call with the same token fails again. The Flink annotation
 * marks it as a <em>non-recoverable</em> error, so a job that hits it fails at once instead of
 * being restarted by its restart strategy (for a checkpointed job, by default, for ever). Fix
 * the token or the grants, then resubmit the job (from its last checkpoint if needed). Outside
 * Flink the annotation is simply absent (the JVM ignores annotations it cannot load).
 *
 * <p>It keeps no gRPC exception as its cause: gRPC's {@code Status} is not serializable, and a
 * task's failure reaches the job manager serialized. With such a cause the whole chain would
 * arrive as Flink's {@code SerializedThrowable}, and the job manager could not see that the
 * failure is non-recoverable. The server's message is in this exception's own message.
 */
@ThrowableAnnotation(ThrowableType.NonRecoverableError)
public final class NadiAuthException extends NadiException {
    private static final long serialVersionUID = 1L;

    NadiAuthException(String reason, String message, Map<String, String> metadata) {
        super(reason, message + hint(reason), metadata, null);
    }

    /** True for the reasons this class stands for. */
    static boolean isAuthReason(String reason) {
        return "UNAUTHENTICATED".equals(reason) || "PERMISSION_DENIED".equals(reason);
    }

    private static String hint(String reason) {
        if ("UNAUTHENTICATED".equals(reason)) {
            return "; the connector's token is set with the builders' token(...) or the table option 'token'";
        }
        return "; grant the token's principal the permission: nadi acl grant PRINCIPAL read|write RESOURCE";
    }

    @Override
    public boolean isRetryable() {
        return false;
    }
}
