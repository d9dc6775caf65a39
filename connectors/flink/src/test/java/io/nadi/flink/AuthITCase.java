package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.nadi.flink.client.NadiAuthException;
import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiException;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.sink.NadiSerializationSchema;
import io.nadi.flink.sink.NadiSink;
import io.nadi.flink.source.NadiSource;
import io.nadi.proto.controller.v1.SegmentLocation;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.configuration.TaskManagerOptions;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.runtime.executiongraph.failover.ExecutionFailureHandler;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.InstantiationUtil;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The connector against {@code nadi standalone --auth required} (docs/security.md): a job whose
 * token's principal holds the grants it needs copies every event exactly once (through an
 * injected failure and restore), in DataStream and SQL; a job without a token, or with a token
 * lacking write on the output, fails within seconds with {@code UNAUTHENTICATED} /
 * {@code PERMISSION_DENIED} (the server's message) although its restart strategy would restart
 * it for ever, and the output stream holds nothing. Tokens never show in messages or
 * {@code toString}.
 */
class AuthITCase {
    static final int KEYS = 40;
    static final int EVENTS = 20_000;
    /** A refused job must have failed by then (its restart strategy alone would retry for ever). */
    static final long FAIL_FAST_MS = 30_000;

    /** Throws once, at the first event after half the input once a checkpoint completed (as in ExactlyOnceITCase). */
    static final class FailOnce extends RichMapFunction<String, String> implements CheckpointListener {
        static final AtomicBoolean FAILED = new AtomicBoolean();
        static final AtomicBoolean CHECKPOINTED = new AtomicBoolean();
        static final AtomicLong SEEN = new AtomicLong();
        static final AtomicLong FAILED_AT = new AtomicLong();

        @Override
        public String map(String value) throws Exception {
            long n = SEEN.incrementAndGet();
            if (n % 20 == 0) {
                Thread.sleep(1); // ~ 1 s for the input: several checkpoints before and after the failure
            }
            if (n >= EVENTS / 2 && CHECKPOINTED.get() && FAILED.compareAndSet(false, true)) {
                FAILED_AT.set(n);
                throw new RuntimeException("injected failure after " + n + " events");
            }
            return value;
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) {
            CHECKPOINTED.set(true);
        }
    }

    /** Streams it/in (filled with keyed events, 3 segments) and it/out (2 segments, empty), made by admin. */
    private static void createStreams(NadiServer server) throws Exception {
        try (NadiClient admin = server.adminClient()) {
            admin.createStream("it", "in", 3);
            admin.createStream("it", "out", 2);
            KeyedEvents.write(admin, StreamId.parse("it/in"), KEYS, 0, EVENTS);
        }
    }

    private static void grant(NadiServer server, String principal, String permission, String stream) throws Exception {
        StreamId s = StreamId.parse(stream);
        server.cli("acl", "grant", principal, permission, "prn::/scope:" + s.scope() + "/stream:" + s.stream());
    }

    private static List<String> readAll(NadiServer server, String stream) throws Exception {
        return server.cli("read", stream, "--from-start", "--idle-timeout", "1").lines().toList();
    }

    private static NadiSource<String> source(NadiServer server, String token) {
        return NadiSource.<String>builder()
                .controller(server.controller())
                .token(token)
                .stream("it/in")
                .deserializer(new SimpleStringSchema())
                .boundedAtTail()
                .build();
    }

    private static NadiSink<String> sink(NadiServer server, String token, DeliveryGuarantee guarantee) {
        return NadiSink.<String>builder()
                .controller(server.controller())
                .token(token)
                .stream("it/out")
                .serializer(NadiSerializationSchema.of(new SimpleStringSchema(), KeyedEvents::keyOf))
                .deliveryGuarantee(guarantee)
                .transactionLease(Duration.ofSeconds(60))
                .maxBufferedBytes(8 * 1024)
                .build();
    }

    /** As {@link FlinkJobs#env}, but restarting (almost) for ever: only a non-recoverable failure ends the job. */
    private static StreamExecutionEnvironment restartingForever() {
        Configuration conf = new Configuration();
        conf.set(RestartStrategyOptions.RESTART_STRATEGY, "fixed-delay");
        conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_ATTEMPTS, Integer.MAX_VALUE);
        conf.set(RestartStrategyOptions.RESTART_STRATEGY_FIXED_DELAY_DELAY, Duration.ofMillis(500));
        conf.set(TaskManagerOptions.NUM_TASK_SLOTS, 4);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(2);
        env.enableCheckpointing(250);
        return env;
    }

    /** Runs the job; returns the messages of its failure's causes; fails the test unless it failed within the bound. */
    private static String failureOf(StreamExecutionEnvironment env, String name) throws Exception {
        long t0 = System.nanoTime();
        return failureOf(env.executeAsync(name), name, t0);
    }

    /**
     * The messages of the failure's causes of a job submitted at {@code t0} (nanoTime); fails the
     * test (cancelling the job) unless it failed within the bound.
     */
    private static String failureOf(JobClient job, String name, long t0) throws Exception {
        try {
            job.getJobExecutionResult().get(FAIL_FAST_MS, TimeUnit.MILLISECONDS);
            fail("job " + name + " succeeded");
        } catch (TimeoutException e) {
            FlinkJobs.cancel(job);
            fail("job " + name + " did not fail within " + FAIL_FAST_MS + " ms: a refused call was retried");
        } catch (ExecutionException e) {
            long ms = (System.nanoTime() - t0) / 1_000_000;
            StringBuilder chain = new StringBuilder();
            for (Throwable c = e; c != null; c = c.getCause()) {
                chain.append(c).append('\n');
            }
            System.out.printf("auth: job %s failed %d ms after its submission%n", name, ms);
            return chain.toString();
        }
        throw new AssertionError("unreachable");
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void aJobWithGrantedTokenCopiesEveryEventExactlyOnce() throws Exception {
        try (NadiServer server = NadiServer.startWithAuth("alice")) {
            createStreams(server);
            grant(server, "alice", "read", "it/in");
            grant(server, "alice", "write", "it/out");
            String token = server.token("alice");

            StreamExecutionEnvironment env = FlinkJobs.env(250);
            NadiSource<String> source = source(server, token);
            NadiSink<String> sink = sink(server, token, DeliveryGuarantee.EXACTLY_ONCE);
            assertFalse(source.toString().contains(token) || sink.toString().contains(token), source + " " + sink);
            assertTrue(source.toString().contains("token=<hidden>"), source.toString());
            env.fromSource(source, WatermarkStrategy.noWatermarks(), "nadi-in")
                    .keyBy(KeyedEvents::keyOf)
                    .map(new FailOnce())
                    .sinkTo(sink);
            long t0 = System.nanoTime();
            JobClient job = env.executeAsync("auth-exactly-once-it");
            job.getJobExecutionResult().get(120, TimeUnit.SECONDS);
            long ms = (System.nanoTime() - t0) / 1_000_000;

            assertTrue(FailOnce.FAILED.get(), "the injected failure never happened");
            List<String> lines = readAll(server, "it/out");
            KeyedEvents.assertExactlyOnceInOrder(lines, KEYS, EVENTS);
            System.out.printf("auth: %d events copied with a token through a failure after %d events in %d ms"
                    + " (map saw %d)%n", EVENTS, FailOnce.FAILED_AT.get(), ms, FailOnce.SEEN.get());
            assertTrue(FailOnce.SEEN.get() > EVENTS, "no event was processed twice: the failure tested nothing");
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void withoutATokenTheJobFailsFastWithUnauthenticated() throws Exception {
        try (NadiServer server = NadiServer.startWithAuth("alice")) {
            createStreams(server);
            // The whole pipeline without a token: the source's enumerator is refused first.
            StreamExecutionEnvironment env = restartingForever();
            env.fromSource(source(server, null), WatermarkStrategy.noWatermarks(), "nadi-in")
                    .sinkTo(sink(server, null, DeliveryGuarantee.EXACTLY_ONCE));
            String chain = failureOf(env, "auth-no-token-it");
            assertTrue(chain.contains("UNAUTHENTICATED") && chain.contains("requires a bearer token"), chain);

            // The sink alone (bounded input) without a token: its writer is refused.
            StreamExecutionEnvironment env2 = restartingForever();
            DataStream<String> events = env2.fromData(List.of("key1,0", "key2,0", "key1,1"));
            events.sinkTo(sink(server, null, DeliveryGuarantee.AT_LEAST_ONCE));
            chain = failureOf(env2, "auth-no-token-sink-it");
            assertTrue(chain.contains("UNAUTHENTICATED") && chain.contains("it/out"), chain);

            assertEquals(List.of(), readAll(server, "it/out"));
        }
    }

    @Test
    @Timeout(value = 150, unit = TimeUnit.SECONDS)
    void aTokenWithoutWritePermissionFailsFastWithPermissionDenied() throws Exception {
        try (NadiServer server = NadiServer.startWithAuth("bob")) {
            createStreams(server);
            grant(server, "bob", "read", "it/in");
            grant(server, "bob", "read", "it/out"); // may look at the output, not write it
            String token = server.token("bob");
            // Exactly-once: the controller refuses the transaction; at-least-once: the segment
            // store refuses the appends.
            for (DeliveryGuarantee g : List.of(DeliveryGuarantee.EXACTLY_ONCE, DeliveryGuarantee.AT_LEAST_ONCE)) {
                StreamExecutionEnvironment env = restartingForever();
                env.fromSource(source(server, token), WatermarkStrategy.noWatermarks(), "nadi-in")
                        .keyBy(KeyedEvents::keyOf)
                        .sinkTo(sink(server, token, g));
                String chain = failureOf(env, "auth-read-only-" + g + "-it");
                assertTrue(chain.contains("PERMISSION_DENIED")
                        && chain.contains("bob lacks write on prn::/scope:it/stream:out"), chain);
                assertFalse(chain.contains(token), "the token is in the failure: " + chain);
            }
            assertEquals(List.of(), readAll(server, "it/out"));
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void sqlTablesTakeTheTokenOption() throws Exception {
        try (NadiServer server = NadiServer.startWithAuth("carol")) {
            try (NadiClient admin = server.adminClient()) {
                admin.createStream("sql", "people", 2);
            }
            grant(server, "carol", "write", "sql/people");
            String token = server.token("carol");
            Configuration conf = new Configuration();
            conf.setString("parallelism.default", "2");
            conf.setString("execution.checkpointing.interval", "300ms");
            conf.setString("restart-strategy.type", "fixed-delay");
            conf.setString("restart-strategy.fixed-delay.attempts", String.valueOf(Integer.MAX_VALUE));
            TableEnvironment t = TableEnvironment.create(
                    EnvironmentSettings.newInstance().inStreamingMode().withConfiguration(conf).build());
            String with = "WITH ('connector' = 'nadi', 'controller' = '" + server.controller()
                    + "', 'stream' = 'sql/people', 'format' = 'csv', 'scan.bounded' = 'true'";
            t.executeSql("CREATE TABLE people (name STRING, age INT) " + with + ", 'token' = '" + token + "')");
            t.executeSql("CREATE TABLE anonymous (name STRING, age INT) " + with + ")");

            String insert = "INSERT INTO people VALUES ('ada', 36), ('grace', 85), ('alan', 41)";
            assertFalse(t.explainSql(insert).contains(token), "the token is in the plan");
            t.executeSql(insert).await(60, TimeUnit.SECONDS);
            Set<String> read = new HashSet<>();
            try (CloseableIterator<Row> rows = t.executeSql("SELECT name, age FROM people").collect()) {
                rows.forEachRemaining(r -> read.add(r.getField(0) + "," + r.getField(1)));
            }
            assertEquals(Set.of("ada,36", "grace,85", "alan,41"), read);

            long t0 = System.nanoTime();
            JobClient anonymous = t.executeSql("INSERT INTO anonymous VALUES ('eve', 1)").getJobClient().orElseThrow();
            String chain = failureOf(anonymous, "sql-insert-without-token", t0);
            assertTrue(chain.contains("UNAUTHENTICATED"), chain);
            assertEquals(3, readAll(server, "sql/people").size());
        }
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void refusalsAreNonRecoverableEvenAfterSerialization() throws Exception {
        try (NadiServer server = NadiServer.startWithAuth("dave")) {
            createStreams(server);
            SegmentLocation seg;
            try (NadiClient admin = server.adminClient()) {
                seg = admin.activeSegments("it", "in").get(0);
            }
            // A segment store refuses a call without a token, as the controller does.
            try (NadiClient anonymous = new NadiClient(server.controller())) {
                NadiAuthException e = assertThrows(NadiAuthException.class,
                        () -> anonymous.segmentInfo(seg.getEndpoint(), seg.getSegment().getQualifiedName()));
                assertEquals("UNAUTHENTICATED", e.reason());
                assertFalse(e.isRetryable());
                // A task's failure reaches the job manager serialized: the class (and so its
                // non-recoverable mark) must survive that, wrapped as Flink wraps it.
                Throwable wrapped = InstantiationUtil.deserializeObject(
                        InstantiationUtil.serializeObject(new RuntimeException("task failed", e)),
                        getClass().getClassLoader());
                assertTrue(wrapped.getCause() instanceof NadiAuthException, String.valueOf(wrapped.getCause()));
                assertTrue(ExecutionFailureHandler.isUnrecoverableError(wrapped));
            }
            // A token whose principal holds no grant: PERMISSION_DENIED from the controller.
            String token = server.token("dave");
            try (NadiClient dave = new NadiClient(server.controller(), token)) {
                NadiException e = assertThrows(NadiAuthException.class, () -> dave.getStream("it", "in"));
                assertEquals("PERMISSION_DENIED", e.reason());
                assertTrue(e.getMessage().contains("dave lacks read on prn::/scope:it/stream:in"), e.getMessage());
                assertFalse(e.getMessage().contains(token));
                assertFalse(dave.security().toString().contains(token), dave.security().toString());
            }
            // A wrong token: UNAUTHENTICATED, the server's reason in the message.
            try (NadiClient wrong = new NadiClient(server.controller(), token + "x")) {
                NadiException e = assertThrows(NadiAuthException.class, () -> wrong.getStream("it", "in"));
                assertEquals("UNAUTHENTICATED", e.reason());
                assertTrue(e.getMessage().contains("not known"), e.getMessage());
            }
        }
    }
}
