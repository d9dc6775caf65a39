package io.nadi.flink.client;

import com.google.protobuf.Any;
import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.io.IOException;
import java.util.HashMap;
import java.util.Map;

/**
 * An error from Nadi, carrying the stable {@code reason} of the server's {@code ErrorInfo}
 * (for example {@code NOT_FOUND_STREAM}, {@code SEALED}, {@code TXN_ABORTED}; see
 * {@code docs/protocol.md}). Branch on {@link #reason()}, never on the message. A status
 * without a Nadi {@code ErrorInfo} (transport failures) is mapped by its gRPC code as the
 * protocol says: {@code UNAVAILABLE}, {@code DEADLINE_EXCEEDED}, {@code CANCELLED} and
 * {@code UNKNOWN} become {@code UNAVAILABLE}; {@code UNAUTHENTICATED} and
 * {@code PERMISSION_DENIED} keep their names (a server refuses a call without a valid token
 * before any Nadi code runs, so that status carries no {@code ErrorInfo}) and are thrown as
 * {@link NadiAuthException}.
 */
public class NadiException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String reason;
    private final Map<String, String> metadata;

    public NadiException(String reason, String message) {
        this(reason, message, Map.of(), null);
    }

    public NadiException(String reason, String message, Map<String, String> metadata, Throwable cause) {
        super(message + " [" + reason + "]", cause);
        this.reason = reason;
        this.metadata = Map.copyOf(metadata);
    }

    /** The stable reason code, e.g. {@code NOT_FOUND_STREAM}. */
    public String reason() {
        return reason;
    }

    /** The error's metadata (e.g. {@code actual_length} on {@code OFFSET_MISMATCH}). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** True if the same request may succeed later ({@code UNAVAILABLE}, {@code STORAGE_FULL}, ...). */
    public boolean isRetryable() {
        switch (reason) {
            case "UNAVAILABLE":
            case "STORAGE_FULL":
            case "SCALE_IN_PROGRESS":
            case "CHECKPOINT_IN_PROGRESS":
                return true;
            default:
                return false;
        }
    }

    /** Maps a gRPC failure to a {@link NadiException}, prefixing the message with {@code what}. */
    public static NadiException from(Throwable t, String what) {
        if (t instanceof NadiException) {
            return (NadiException) t;
        }
        Status status = Status.fromThrowable(t);
        String desc = status.getDescription() != null ? status.getDescription() : status.getCode().toString();
        com.google.rpc.Status detail = StatusProto.fromThrowable(t);
        if (detail != null) {
            for (Any any : detail.getDetailsList()) {
                if (any.getTypeUrl().endsWith("/google.rpc.ErrorInfo")) {
                    Map<String, String> meta = new HashMap<>();
                    String[] reasonAndDomain = parseErrorInfo(any.getValue(), meta);
                    if (reasonAndDomain != null && "nadi".equals(reasonAndDomain[1])) {
                        return of(reasonAndDomain[0], what + ": " + desc, meta, t);
                    }
                }
            }
        }
        String reason;
        switch (status.getCode()) {
            case UNAVAILABLE:
            case DEADLINE_EXCEEDED:
            case CANCELLED:
            case UNKNOWN:
                reason = "UNAVAILABLE";
                break;
            case RESOURCE_EXHAUSTED:
                reason = "STORAGE_FULL";
                break;
            case INVALID_ARGUMENT:
                reason = "INVALID_ARGUMENT";
                break;
            case UNAUTHENTICATED:
                reason = "UNAUTHENTICATED";
                break;
            case PERMISSION_DENIED:
                reason = "PERMISSION_DENIED";
                break;
            default:
                reason = "INTERNAL";
        }
        return of(reason, what + ": " + desc, Map.of(), t);
    }

    private static NadiException of(String reason, String message, Map<String, String> meta, Throwable cause) {
        if (NadiAuthException.isAuthReason(reason)) {
            return new NadiAuthException(reason, message, meta);
        }
        return new NadiException(reason, message, meta, cause);
    }

    /**
     * Decodes {@code google.rpc.ErrorInfo {string reason = 1; string domain = 2; map<string,
     * string> metadata = 3;}} (Debian's common-protos jar predates the class): returns
     * {reason, domain} and fills {@code meta}, or null if the bytes are not such a message.
     */
    private static String[] parseErrorInfo(ByteString bytes, Map<String, String> meta) {
        try {
            CodedInputStream in = bytes.newCodedInput();
            String reason = "";
            String domain = "";
            for (int tag = in.readTag(); tag != 0; tag = in.readTag()) {
                switch (tag) {
                    case (1 << 3) | 2:
                        reason = in.readStringRequireUtf8();
                        break;
                    case (2 << 3) | 2:
                        domain = in.readStringRequireUtf8();
                        break;
                    case (3 << 3) | 2: {
                        CodedInputStream entry = in.readBytes().newCodedInput();
                        String k = "";
                        String v = "";
                        for (int t2 = entry.readTag(); t2 != 0; t2 = entry.readTag()) {
                            if (t2 == ((1 << 3) | 2)) {
                                k = entry.readStringRequireUtf8();
                            } else if (t2 == ((2 << 3) | 2)) {
                                v = entry.readStringRequireUtf8();
                            } else {
                                entry.skipField(t2);
                            }
                        }
                        meta.put(k, v);
                        break;
                    }
                    default:
                        in.skipField(tag);
                }
            }
            return new String[] {reason, domain};
        } catch (java.io.IOException e) {
            return null;
        }
    }

    static boolean isStatus(Throwable t) {
        return t instanceof StatusRuntimeException || t instanceof io.grpc.StatusException;
    }
}
