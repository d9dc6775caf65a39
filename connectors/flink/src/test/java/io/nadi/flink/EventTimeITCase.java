package io.nadi.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.nadi.flink.client.NadiClient;
import io.nadi.flink.client.NadiRouting;
import io.nadi.flink.client.RoutedWriter;
import io.nadi.flink.client.StreamId;
import io.nadi.flink.source.NadiSource;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.ProcessFunction;
import org.apache.flink.streaming.api.functions.sink.legacy.DiscardingSink;
import org.apache.flink.util.Collector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Per-split watermarks: one reader reads two segments; one segment's events (times 0..20 s) are
 * read first while the other is still empty, then the other gets events with times 0..20 s too.
 * With a watermark per segment, the empty segment holds the watermark back, and no event is
 * ever behind it. One watermark for the whole reader would have run ahead to 20 s and made the
 * second segment's events late (checked: assigning watermarks after the source fails this test).
 * Then the watermark moves on with both segments (the min of the two), and a segment that falls
 * behind holds it there while the other runs ahead.
 */
class EventTimeITCase {
    static final int PER_KEY = 2_000;
    static final AtomicLong LATE = new AtomicLong();
    static final AtomicLong SEEN = new AtomicLong();
    /** The watermark when the last event ({@code key0,50000}) was processed. */
    static final AtomicLong LAST_WATERMARK = new AtomicLong();

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aSegmentWithoutEventsHoldsTheWatermarkBack() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "times", 2);
            StreamId stream = StreamId.parse("it/times");
            // "key0" (point 0.385) lives in segment [0, 0.5), "a" (0.822) in [0.5, 1).
            assertTrue(NadiRouting.keyPoint("key0") < 0.5 && NadiRouting.keyPoint("a") >= 0.5);

            JobClient job = startJob(server, "it/times");

            write(client, stream, "key0");
            awaitSeen(PER_KEY);
            // Give the periodic watermark (every 50 ms) several chances to run ahead.
            Thread.sleep(500);
            write(client, stream, "a");
            awaitSeen(2 * PER_KEY);
            assertEquals(0, LATE.get(), "events behind the watermark");

            // Both segments at 30 s, then only key0's goes on (40 s, 50 s): the watermark that
            // reaches the last event is the slower segment's, 30 s - 1 ms.
            int seen = 2 * PER_KEY;
            for (String event : new String[] {"key0,30000", "a,30000", "key0,40000", "key0,50000"}) {
                Thread.sleep(200); // several periodic watermarks (every 50 ms) between events
                try (RoutedWriter w = RoutedWriter.forStream(client, stream)) {
                    w.write(event.substring(0, event.indexOf(',')), event.getBytes(StandardCharsets.UTF_8));
                    w.flush();
                }
                awaitSeen(++seen);
            }
            FlinkJobs.cancel(job);
            assertEquals(29_999, LAST_WATERMARK.get(), "watermark at the last event");
            assertEquals(0, LATE.get(), "events behind the watermark");
        }
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void theWatermarkWaitsForTheSuccessorsOfASplitSegment() throws Exception {
        try (NadiServer server = NadiServer.start(); NadiClient client = new NadiClient(server.controller())) {
            client.createStream("it", "scaled", 2);
            StreamId stream = StreamId.parse("it/scaled");
            JobClient job = startJob(server, "it/scaled");
            write(client, stream, "key0", 0, PER_KEY / 2); // segment 0: 0 .. 10 s
            write(client, stream, "a", 0, PER_KEY);        // segment 1: 0 .. 20 s
            awaitSeen(PER_KEY / 2 + PER_KEY);
            // Segment 0 ends (sealed); key0 goes on in a successor, from 10 s. Until the successor
            // is read, the watermark must stay at segment 0's 10 s, not jump to segment 1's 20 s.
            server.cli("stream", "scale", "it/scaled", "--split", "0");
            Thread.sleep(300); // several periodic watermarks while segment 0 is drained
            write(client, stream, "key0", PER_KEY / 2, PER_KEY);
            awaitSeen(2 * PER_KEY);
            FlinkJobs.cancel(job);
            assertEquals(0, LATE.get(), "events behind the watermark");
        }
    }

    /** A parallelism-1 job over {@code stream} that counts events behind the watermark. */
    private static JobClient startJob(NadiServer server, String stream) throws Exception {
        LATE.set(0);
        SEEN.set(0);
        StreamExecutionEnvironment env = FlinkJobs.env(500);
        env.setParallelism(1);
        env.getConfig().setAutoWatermarkInterval(50);
        NadiSource<String> source = NadiSource.<String>builder().controller(server.controller())
                .stream(stream).deserializer(new SimpleStringSchema()).build();
        WatermarkStrategy<String> wm = WatermarkStrategy.<String>forMonotonousTimestamps()
                .withTimestampAssigner((line, ts) -> Long.parseLong(line.substring(line.indexOf(',') + 1)));
        env.fromSource(source, wm, "nadi-times")
                .process(new ProcessFunction<String, String>() {
                    @Override
                    public void processElement(String v, Context ctx, Collector<String> out) {
                        if (ctx.timestamp() < ctx.timerService().currentWatermark()) {
                            LATE.incrementAndGet();
                        }
                        LAST_WATERMARK.set(ctx.timerService().currentWatermark());
                        SEEN.incrementAndGet();
                    }
                })
                .addSink(new DiscardingSink<>());
        return env.executeAsync("event-time-it");
    }

    private static void write(NadiClient client, StreamId stream, String key) throws Exception {
        write(client, stream, key, 0, PER_KEY);
    }

    /** Events {@code key,T} with T = 0, 10, 20, ... ms for sequence numbers {@code from..to}. */
    private static void write(NadiClient client, StreamId stream, String key, int from, int to) throws Exception {
        try (RoutedWriter w = RoutedWriter.forStream(client, stream)) {
            for (int seq = from; seq < to; seq++) {
                w.write(key, (key + "," + (seq * 10)).getBytes(StandardCharsets.UTF_8));
            }
            w.flush();
        }
    }

    private static void awaitSeen(long n) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 60_000;
        while (SEEN.get() < n) {
            if (System.currentTimeMillis() > deadline) {
                throw new AssertionError("only " + SEEN.get() + " of " + n + " events read");
            }
            Thread.sleep(10);
        }
    }
}
