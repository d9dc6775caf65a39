package io.nadi.flink.client;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.netty.NettyChannelBuilder;
import io.nadi.proto.controller.v1.AbortTxnRequest;
import io.nadi.proto.controller.v1.BeginTxnRequest;
import io.nadi.proto.controller.v1.CommitTxnRequest;
import io.nadi.proto.controller.v1.ControllerServiceGrpc;
import io.nadi.proto.controller.v1.CreateScopeRequest;
import io.nadi.proto.controller.v1.CreateStreamRequest;
import io.nadi.proto.controller.v1.GetActiveSegmentsRequest;
import io.nadi.proto.controller.v1.GetHeadSegmentsRequest;
import io.nadi.proto.controller.v1.GetStreamCutRequest;
import io.nadi.proto.controller.v1.GetStreamRequest;
import io.nadi.proto.controller.v1.GetStreamHistoryRequest;
import io.nadi.proto.controller.v1.GetStreamHistoryResponse;
import io.nadi.proto.controller.v1.GetSuccessorsRequest;
import io.nadi.proto.controller.v1.GetWatermarksRequest;
import io.nadi.proto.controller.v1.GetWatermarksResponse;
import io.nadi.proto.controller.v1.GetTxnRequest;
import io.nadi.proto.controller.v1.NoteWriterTimeRequest;
import io.nadi.proto.controller.v1.PingTxnRequest;
import io.nadi.proto.controller.v1.ScalingPolicy;
import io.nadi.proto.controller.v1.SegmentLocation;
import io.nadi.proto.controller.v1.SegmentOffset;
import io.nadi.proto.controller.v1.StreamConfig;
import io.nadi.proto.controller.v1.StreamInfo;
import io.nadi.proto.controller.v1.SuccessorSegment;
import io.nadi.proto.controller.v1.TransactionServiceGrpc;
import io.nadi.proto.controller.v1.TxnInfo;
import io.nadi.proto.segment.v1.GetSegmentInfoRequest;
import io.nadi.proto.segment.v1.SegmentInfo;
import io.nadi.proto.segment.v1.SegmentStoreGrpc;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.net.InetSocketAddress;
import java.net.URI;
import java.util.ArrayDeque;
import java.util.Collection;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A small blocking client of Nadi's public gRPC API (controller, transactions, segment store),
 * as the Flink connector needs it. One instance owns one channel per endpoint and its own netty
 * event loop, shut down synchronously in {@link #close()}: inside a Flink job jar, a shared gRPC
 * event loop would outlive the job's class loader.
 *
 * <p>Controller calls are retried for up to {@link #RETRY_FOR_MS} while the answer is retryable
 * ({@code UNAVAILABLE}: a leader election, a store restarting), like the Rust client does.
 * Every failure is a {@link NadiException} with the server's stable reason; a refused token or
 * a missing permission is a {@link NadiAuthException}, never retried.
 *
 * <p>Security ({@link ClientSecurity}, {@code docs/security.md}): with a token, every call on
 * every channel (controller and segment stores alike) carries {@code authorization: Bearer
 * <token>}, added by one {@link ClientInterceptor}. The token is never logged and never part of
 * a message. Channels are plaintext: {@code https://} URLs are refused (see
 * {@link ClientSecurity} for why).
 */
public final class NadiClient implements AutoCloseable {
    /** How long controller calls are retried while the answer is retryable. */
    public static final long RETRY_FOR_MS = 10_000;
    /** Largest gRPC message accepted (the protocol allows 16 MiB + 64 KiB). */
    static final int MAX_MESSAGE = 17 * 1024 * 1024;

    private static final Metadata.Key<String> AUTHORIZATION =
            Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

    private final String controller;
    private final ClientSecurity security;
    private final EventLoopGroup loop;
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();

    /** A client of the controller at {@code controllerUrl} (e.g. {@code http://127.0.0.1:9090}), without a token. */
    public NadiClient(String controllerUrl) {
        this(controllerUrl, ClientSecurity.none());
    }

    /**
     * A client presenting {@code token} (null: none) on every call, for servers started with
     * {@code --auth required}.
     *
     * @throws IllegalArgumentException if the token is empty or not printable ASCII
     */
    public NadiClient(String controllerUrl, String token) {
        this(controllerUrl, ClientSecurity.none().withToken(token));
    }

    /** A client with the given {@link ClientSecurity} (null: none). */
    public NadiClient(String controllerUrl, ClientSecurity security) {
        this.controller = controllerUrl;
        this.security = security == null ? ClientSecurity.none() : security;
        this.loop = new NioEventLoopGroup(1, new DefaultThreadFactory("nadi-grpc", true));
    }

    /** The controller URL this client talks to. */
    public String controllerUrl() {
        return controller;
    }

    /** What this client's channels present (its token, if any). */
    public ClientSecurity security() {
        return security;
    }

    ManagedChannel channel(String endpoint) {
        return channels.computeIfAbsent(endpoint, e -> {
            URI uri = URI.create(e.contains("://") ? e : "http://" + e);
            if ("https".equals(uri.getScheme())) {
                throw new IllegalArgumentException("TLS is not supported by the Flink connector (Debian's netty"
                        + " cannot negotiate ALPN with the JDK's TLS): cannot call " + e);
            }
            if (uri.getHost() == null || uri.getPort() < 0) {
                throw new IllegalArgumentException("not a gRPC endpoint (want http://HOST:PORT): " + e);
            }
            NettyChannelBuilder b = NettyChannelBuilder.forAddress(new InetSocketAddress(uri.getHost(), uri.getPort()))
                    .usePlaintext()
                    .eventLoopGroup(loop)
                    .channelType(NioSocketChannel.class)
                    .directExecutor()
                    .maxInboundMessageSize(MAX_MESSAGE)
                    .flowControlWindow(8 * 1024 * 1024);
            if (security.hasToken()) {
                b.intercept(new BearerToken(security.token()));
            }
            return b.build();
        });
    }

    /**
     * Adds {@code authorization: Bearer <token>} to every call that does not carry one already.
     * Holds the token; its {@code toString} does not show it.
     */
    private static final class BearerToken implements ClientInterceptor {
        private final String header;

        BearerToken(String token) {
            this.header = "Bearer " + token;
        }

        @Override
        public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
            return new ForwardingClientCall.SimpleForwardingClientCall<Q, R>(next.newCall(method, options)) {
                @Override
                public void start(Listener<R> listener, Metadata headers) {
                    if (!headers.containsKey(AUTHORIZATION)) {
                        headers.put(AUTHORIZATION, header);
                    }
                    super.start(listener, headers);
                }
            };
        }

        @Override
        public String toString() {
            return "BearerToken(<hidden>)";
        }
    }

    private ControllerServiceGrpc.ControllerServiceBlockingStub ctl() {
        return ControllerServiceGrpc.newBlockingStub(channel(controller)).withDeadlineAfter(30, TimeUnit.SECONDS);
    }

    private TransactionServiceGrpc.TransactionServiceBlockingStub txn() {
        return TransactionServiceGrpc.newBlockingStub(channel(controller)).withDeadlineAfter(60, TimeUnit.SECONDS);
    }

    /** Async stub of the segment store at {@code endpoint}, for reads and appends. */
    SegmentStoreGrpc.SegmentStoreStub store(String endpoint) {
        return SegmentStoreGrpc.newStub(channel(endpoint));
    }

    /** Runs a controller call, retrying while the answer is retryable. */
    private <T> T call(String what, Supplier<T> f) throws NadiException {
        long deadline = System.currentTimeMillis() + RETRY_FOR_MS;
        long backoff = 50;
        while (true) {
            try {
                return f.get();
            } catch (RuntimeException e) {
                if (!NadiException.isStatus(e)) {
                    throw e;
                }
                NadiException n = NadiException.from(e, what);
                if (!n.isRetryable() || System.currentTimeMillis() + backoff > deadline) {
                    throw n;
                }
                try {
                    Thread.sleep(backoff);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw n;
                }
                backoff = Math.min(backoff * 2, 1000);
            }
        }
    }

    /** Creates the scope if missing and the stream with {@code segments} segments if missing. */
    public void createStream(String scope, String stream, int segments) throws NadiException {
        try {
            call("create scope " + scope, () -> ctl().createScope(CreateScopeRequest.newBuilder().setScope(scope).build()));
        } catch (NadiException e) {
            if (!e.reason().equals("ALREADY_EXISTS_SCOPE")) {
                throw e;
            }
        }
        StreamConfig config = StreamConfig.newBuilder()
                .setScaling(ScalingPolicy.newBuilder().setMinSegments(segments).build())
                .build();
        try {
            call("create stream " + scope + "/" + stream, () -> ctl().createStream(CreateStreamRequest.newBuilder()
                    .setScope(scope).setStream(stream).setConfig(config).build()));
        } catch (NadiException e) {
            if (!e.reason().equals("ALREADY_EXISTS_STREAM")) {
                throw e;
            }
        }
    }

    /** The stream's configuration, state and active segments. {@code NOT_FOUND_STREAM} names it. */
    public StreamInfo getStream(String scope, String stream) throws NadiException {
        return call("stream " + scope + "/" + stream,
                () -> ctl().getStream(GetStreamRequest.newBuilder().setScope(scope).setStream(stream).build()))
                .getStream();
    }

    /** The segments writers route to now, with their stores, sorted by {@code key_low}. */
    public List<SegmentLocation> activeSegments(String scope, String stream) throws NadiException {
        return call("active segments of " + scope + "/" + stream, () -> ctl().getActiveSegments(
                GetActiveSegmentsRequest.newBuilder().setScope(scope).setStream(stream).build())).getSegmentsList();
    }

    /** Where a reader from the beginning starts: the head segments, with their stores. */
    public List<SegmentLocation> headSegments(String scope, String stream) throws NadiException {
        return call("head segments of " + scope + "/" + stream, () -> ctl().getHeadSegments(
                GetHeadSegmentsRequest.newBuilder().setScope(scope).setStream(stream).build())).getSegmentsList();
    }

    /** The tail stream cut: each active segment at its current durable length. */
    public List<SegmentOffset> tailCut(String scope, String stream) throws NadiException {
        return call("tail cut of " + scope + "/" + stream, () -> ctl().getStreamCut(GetStreamCutRequest.newBuilder()
                .setScope(scope).setStream(stream).setWhich(GetStreamCutRequest.Which.WHICH_TAIL).build())).getCutList();
    }

    /** The head stream cut: each head segment at its start offset. */
    public List<SegmentOffset> headCut(String scope, String stream) throws NadiException {
        return call("head cut of " + scope + "/" + stream, () -> ctl().getStreamCut(GetStreamCutRequest.newBuilder()
                .setScope(scope).setStream(stream).setWhich(GetStreamCutRequest.Which.WHICH_HEAD_UNSPECIFIED).build()))
                .getCutList();
    }

    /**
     * The stream cut at {@code timeMs} (ms since the Unix epoch): reading from it returns exactly
     * the events appended at or after that time (append times have 1 s resolution). Fails with
     * {@code TIME_IN_FUTURE} for a time ahead of the controller's clock and
     * {@code TIME_BEFORE_STREAM} for one before the stream was created (docs/protocol.md, "Seek
     * by time").
     */
    public List<SegmentOffset> cutAt(String scope, String stream, long timeMs) throws NadiException {
        return call("cut at " + timeMs + " ms of " + scope + "/" + stream, () -> ctl().getStreamCut(
                GetStreamCutRequest.newBuilder().setScope(scope).setStream(stream)
                        .setWhich(GetStreamCutRequest.Which.WHICH_TIME).setTimeMs(timeMs).build())).getCutList();
    }

    /**
     * Where the given segments of a stream are served (a cut names segments by id only). The
     * active segments answer most cuts; the others are found by walking the segment graph from
     * the head through {@code GetSuccessors}, which needs only read access to the stream (unlike
     * {@code GetClusterInfo}). {@code NOT_FOUND_SEGMENT} if one is not in the stream's graph.
     */
    public Map<Long, SegmentLocation> locate(String scope, String stream, Collection<Long> segmentIds)
            throws NadiException {
        Map<Long, SegmentLocation> found = new HashMap<>();
        Set<Long> wanted = new HashSet<>(segmentIds);
        for (SegmentLocation l : activeSegments(scope, stream)) {
            if (wanted.contains(l.getSegment().getId())) {
                found.put(l.getSegment().getId(), l);
            }
        }
        if (found.size() == wanted.size()) {
            return found;
        }
        long maxEpoch = 0;
        for (long id : wanted) {
            maxEpoch = Math.max(maxEpoch, id >>> 32);
        }
        Deque<SegmentLocation> todo = new ArrayDeque<>(headSegments(scope, stream));
        Set<Long> seen = new HashSet<>();
        while (!todo.isEmpty() && found.size() < wanted.size()) {
            SegmentLocation l = todo.poll();
            long id = l.getSegment().getId();
            if (!seen.add(id)) {
                continue;
            }
            if (wanted.contains(id)) {
                found.put(id, l);
            }
            if ((id >>> 32) < maxEpoch) { // a successor may still be one of the wanted segments
                for (SuccessorSegment s : successors(scope, stream, id)) {
                    todo.add(s.getSegment());
                }
            }
        }
        if (found.size() < wanted.size()) {
            Set<Long> missing = new HashSet<>(wanted);
            missing.removeAll(found.keySet());
            throw new NadiException("NOT_FOUND_SEGMENT", "segments " + missing + " are not in the segment graph of "
                    + scope + "/" + stream);
        }
        return found;
    }

    /** Every epoch of the stream with its segments (ids, names, key ranges), oldest first. */
    public GetStreamHistoryResponse streamHistory(String scope, String stream) throws NadiException {
        return call("history of " + scope + "/" + stream, () -> ctl().getStreamHistory(
                GetStreamHistoryRequest.newBuilder().setScope(scope).setStream(stream).build()));
    }

    /**
     * Notes a writer's time (docs/protocol.md, "Watermarks"): every event {@code writerId} appends
     * from now on has an event time {@code >= timeMs}; {@code positions} are, for every segment it
     * appended to, the offset just past its last acknowledged event there (or a higher event
     * boundary, such as the segment's length in an acknowledgement; send them all each time); {@code closed}: the writer is done; {@code idleTimeoutMs} (0: the controller's
     * 10 s) is how long after this note it stops holding the watermark back if it notes nothing
     * more. Returns the stream's watermark after the note (0: none yet).
     */
    public long noteWriterTime(String scope, String stream, String writerId, long timeMs,
            Collection<SegmentOffset> positions, boolean closed, long idleTimeoutMs) throws NadiException {
        return call("note time " + timeMs + " of writer " + writerId + " on " + scope + "/" + stream,
                () -> ctl().noteWriterTime(NoteWriterTimeRequest.newBuilder().setScope(scope).setStream(stream)
                        .setWriterId(writerId).setTimeMs(timeMs).addAllPosition(positions).setClosed(closed)
                        .setIdleTimeoutMs(idleTimeoutMs).build())).getWatermarkMs();
    }

    /** The stream's recent watermarks with {@code time_ms > afterMs}, oldest first, and its writers' counts. */
    public GetWatermarksResponse getWatermarks(String scope, String stream, long afterMs) throws NadiException {
        return call("watermarks of " + scope + "/" + stream, () -> ctl().getWatermarks(
                GetWatermarksRequest.newBuilder().setScope(scope).setStream(stream).setAfterMs(afterMs).build()));
    }

    /** The successors of a sealed segment, each with all its predecessors; empty while active. */
    public List<SuccessorSegment> successors(String scope, String stream, long segmentId) throws NadiException {
        return call("successors of segment " + segmentId + " of " + scope + "/" + stream,
                () -> ctl().getSuccessors(GetSuccessorsRequest.newBuilder()
                        .setScope(scope).setStream(stream).setSegmentId(segmentId).build())).getSuccessorsList();
    }

    /** Start offset, durable length, sealed flag and writers' last event numbers of a segment. */
    public SegmentInfo segmentInfo(String endpoint, String segment) throws NadiException {
        return call("segment " + segment, () -> SegmentStoreGrpc.newBlockingStub(channel(endpoint))
                .withDeadlineAfter(30, TimeUnit.SECONDS)
                .getSegmentInfo(GetSegmentInfoRequest.newBuilder().setSegment(segment).build()));
    }

    /** Opens a transaction on the stream with the given lease (0: the controller's default). */
    public TxnInfo beginTxn(String scope, String stream, long leaseMs) throws NadiException {
        return call("begin transaction on " + scope + "/" + stream, () -> txn().beginTxn(BeginTxnRequest.newBuilder()
                .setScope(scope).setStream(stream).setLeaseMs(leaseMs).build())).getTxn();
    }

    /** A transaction's state and segments. */
    public TxnInfo getTxn(String txnId) throws NadiException {
        return call("transaction " + txnId, () -> txn().getTxn(GetTxnRequest.newBuilder().setTxnId(txnId).build()))
                .getTxn();
    }

    /** Extends an open transaction's lease to now + {@code leaseMs}. */
    public TxnInfo pingTxn(String txnId, long leaseMs) throws NadiException {
        return call("ping transaction " + txnId, () -> txn().pingTxn(
                PingTxnRequest.newBuilder().setTxnId(txnId).setLeaseMs(leaseMs).build())).getTxn();
    }

    /** Commits; committing a committed transaction succeeds. {@code TXN_ABORTED} if it was aborted. */
    public TxnInfo commitTxn(String txnId) throws NadiException {
        return call("commit transaction " + txnId, () -> txn().commitTxn(
                CommitTxnRequest.newBuilder().setTxnId(txnId).build())).getTxn();
    }

    /** Aborts; aborting an aborted transaction succeeds. {@code TXN_NOT_OPEN} if committing/committed. */
    public TxnInfo abortTxn(String txnId) throws NadiException {
        return call("abort transaction " + txnId, () -> txn().abortTxn(
                AbortTxnRequest.newBuilder().setTxnId(txnId).build())).getTxn();
    }

    @Override
    public void close() {
        for (ManagedChannel c : channels.values()) {
            c.shutdownNow();
        }
        for (ManagedChannel c : channels.values()) {
            try {
                c.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        channels.clear();
        loop.shutdownGracefully(0, 1, TimeUnit.SECONDS).syncUninterruptibly();
    }
}
