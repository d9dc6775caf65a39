package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.source.NadiSource;
import io.nadi.proto.controller.v1.SegmentLocation;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Acceptance 2: an unbounded source job (parallelism 2, exactly-once sink) runs while stream A
 * is written to and split and merged through the real CLI ({@code nadi stream scale}); between
 * the merge and the last split the job fails once and restarts from its last checkpoint
 * (restoring which segments were finished and where each reader stood). Stream B then holds
 * every event exactly once with each key's sequence numbers in order: the source followed every
 * successor, only after its predecessors, and nothing was read twice.
 */
class ScalingITCase {
    static final int KEYS = 40;
    static final int EVENTS = 12_000;
    static final int CHUNK = 200;

    /** Throws once, at the first event after {@code ARMED} is set and a checkpoint completed. */
    static final class FailOnce extends RichMapFunction<String, String> implements CheckpointListener {
        static final AtomicBoolean ARMED = new AtomicBoolean();
        static final AtomicBoolean FAILED = new AtomicBoolean();
        static final AtomicBoolean CHECKPOINTED = new AtomicBoolean();

        @Override
        public String map(String value) {
            if (ARMED.get() && CHECKPOINTED.get() && FAILED.compareAndSet(false, true)) {
                throw new RuntimeException("injected failure after the stream was scaled");
            }
            return value;
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) {
            CHECKPOINTED.set(ARMED.get());
        }
    }

    @Test
    @Timeout(value = 240, unit = TimeUnit.SECONDS)
    void splitAndMergeWhileTheJobRuns() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            StreamId a = StreamId.parse("it/a");
            client.createStream("it", "a", 2);
            client.createStream("it", "b", 2);

            StreamExecutionEnvironment env = FlinkJobs.env(300);
            NadiSource<String> source = NadiSource.<String>builder()
                    .controller(server.controller())
                    .stream("it/a")
                    .deserializer(new SimpleStringSchema())
                    .unbounded()
                    .build();
            env.fromSource(source, WatermarkStrategy.noWatermarks(), "nadi-a")
                    .keyBy(KeyedEvents::keyOf)
                    .map(new FailOnce())
                    .keyBy(KeyedEvents::keyOf)
                    .sinkTo(FlinkJobs.keyedSink(server.controller(), "it/b"));
            JobClient job = env.executeAsync("scaling-it");
            long t0 = System.nanoTime();

            // One writer, paced, while the stream is scaled under it (it follows the successors).
            AtomicInteger written = new AtomicInteger();
            CompletableFuture<Void> writer = CompletableFuture.runAsync(() -> {
                try (RoutedWriter w = RoutedWriter.forStream(client, a)) {
                    for (int i = 0; i < EVENTS; i++) {
                        String k = KeyedEvents.key(i % KEYS);
                        w.write(k, (k + "," + (i / KEYS)).getBytes(StandardCharsets.UTF_8));
                        if ((i + 1) % CHUNK == 0) {
                            w.flush();
                            written.set(i + 1);
                            Thread.sleep(25);
                        }
                    }
                    w.flush();
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });

            awaitWritten(written, writer, 2_000);
            List<SegmentLocation> s = client.activeSegments("it", "a");
            server.cli("stream", "scale", "it/a", "--split", id(s.get(0)));             // 2 → 3 segments
            awaitWritten(written, writer, 5_000);
            s = client.activeSegments("it", "a");
            server.cli("stream", "scale", "it/a", "--merge", id(s.get(1)) + "," + id(s.get(2))); // 3 → 2
            FailOnce.ARMED.set(true);
            awaitWritten(written, writer, 8_000);
            s = client.activeSegments("it", "a");
            server.cli("stream", "scale", "it/a", "--split", id(s.get(1)), "--into", "3"); // 2 → 4
            writer.get(120, TimeUnit.SECONDS);
            assertEquals(4, client.activeSegments("it", "a").size());

            // Blocks until B holds EVENTS events (committed at checkpoints), at most 60 s idle.
            List<String> first = server.cli("read", "it/b", "--from-start", "--max", Integer.toString(EVENTS),
                    "--idle-timeout", "60").lines().toList();
            long ms = (System.nanoTime() - t0) / 1_000_000;
            assertEquals(EVENTS, first.size(), "events that reached B");
            // Several more checkpoints pass while the final read waits for its idle timeout.
            List<String> lines = server.cli("read", "it/b", "--from-start", "--idle-timeout", "2").lines().toList();
            FlinkJobs.cancel(job); // its sink writers abort their open transactions while nadi still runs
            KeyedEvents.assertExactlyOnceInOrder(lines, KEYS, EVENTS);
            assertTrue(FailOnce.FAILED.get(), "the injected failure never happened");
            System.out.printf("scaling: %d events through 3 scalings (2→3→2→4 segments) and a restart in %d ms%n",
                    EVENTS, ms);
        }
    }

    private static String id(SegmentLocation l) {
        return Long.toString(l.getSegment().getId());
    }

    /** Waits until the writer has written {@code n} events (or failed). */
    private static void awaitWritten(AtomicInteger written, CompletableFuture<Void> writer, int n) throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        while (written.get() < n && !writer.isDone()) {
            if (System.currentTimeMillis() > deadline) {
                throw new AssertionError("writer stuck at " + written.get() + " events");
            }
            Thread.sleep(5);
        }
        if (writer.isCompletedExceptionally()) {
            writer.get();
        }
    }
}
