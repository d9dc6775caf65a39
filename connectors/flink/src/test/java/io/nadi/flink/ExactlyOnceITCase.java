package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.source.NadiSource;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.state.CheckpointListener;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Acceptance 1: stream A (pre-filled with keyed events carrying per-key sequence numbers) →
 * bounded Nadi source → a map that throws once mid-way (after a checkpoint completed) → exactly-once
 * Nadi sink → stream B. Checked with the real CLI's reader: B holds every event exactly once, in
 * per-key order, although part of the input was processed twice.
 */
class ExactlyOnceITCase {
    static final int KEYS = 40;
    static final int EVENTS = 20_000;

    /** Throws once, at the first event after half the input once a checkpoint completed. */
    static final class FailOnce extends RichMapFunction<String, String> implements CheckpointListener {
        static final AtomicBoolean FAILED = new AtomicBoolean();
        static final AtomicBoolean CHECKPOINTED = new AtomicBoolean();
        static final AtomicLong SEEN = new AtomicLong();

        @Override
        public String map(String value) throws Exception {
            long n = SEEN.incrementAndGet();
            if (n % 20 == 0) {
                Thread.sleep(1); // ~ 2 s for the input: several checkpoints before and after the failure
            }
            if (n >= EVENTS / 2 && CHECKPOINTED.get() && FAILED.compareAndSet(false, true)) {
                throw new RuntimeException("injected failure after " + n + " events");
            }
            return value;
        }

        @Override
        public void notifyCheckpointComplete(long checkpointId) {
            CHECKPOINTED.set(true);
        }
    }

    @Test
    @Timeout(value = 180, unit = TimeUnit.SECONDS)
    void failureMidwayKeepsEveryEventExactlyOnceInKeyOrder() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "a", 3);
            client.createStream("it", "b", 2);
            KeyedEvents.write(client, StreamId.parse("it/a"), KEYS, 0, EVENTS);

            StreamExecutionEnvironment env = FlinkJobs.env(250);
            NadiSource<String> source = NadiSource.<String>builder()
                    .controller(server.controller())
                    .stream("it/a")
                    .deserializer(new SimpleStringSchema())
                    .boundedAtTail()
                    .build();
            env.fromSource(source, WatermarkStrategy.noWatermarks(), "nadi-a")
                    .keyBy(KeyedEvents::keyOf)
                    .map(new FailOnce())
                    .sinkTo(FlinkJobs.keyedSink(server.controller(), "it/b"));
            long t0 = System.nanoTime();
            env.execute("exactly-once-it");
            long ms = (System.nanoTime() - t0) / 1_000_000;

            assertTrue(FailOnce.FAILED.get(), "the injected failure never happened");
            List<String> lines = server.cli("read", "it/b", "--from-start", "--idle-timeout", "2").lines().toList();
            KeyedEvents.assertExactlyOnceInOrder(lines, KEYS, EVENTS);
            System.out.printf("exactly-once: %d events through a failure in %d ms (map saw %d, B holds %d)%n",
                    EVENTS, ms, FailOnce.SEEN.get(), lines.size());
            assertTrue(FailOnce.SEEN.get() > EVENTS, "no event was processed twice: the failure tested nothing");
        }
    }
}
